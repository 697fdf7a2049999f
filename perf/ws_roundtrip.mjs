// perf/ws_roundtrip.mjs: the time a big message takes from a client to the broker and back to
// the same client (it is subscribed to the topic it publishes on), with MQTT.js (npm mqtt, from
// tests/functional/mqttjs, installed by tools/deps) over mqtt:// (TCP) or ws:// (WebSockets).
// Used by perf/websocket; one message in flight at a time, QoS 0, after --warmup round trips.
//
// Usage: node perf/ws_roundtrip.mjs URL BYTES COUNT WARMUP
// Prints one JSON line: {"url", "bytes", "count", "ms": [each round trip in milliseconds]}.
import { createRequire } from "node:module";
import { randomBytes } from "node:crypto";

const require = createRequire(new URL("../tests/functional/mqttjs/package.json", import.meta.url));
const mqtt = require("mqtt");

const [url, bytesText, countText, warmupText] = process.argv.slice(2);
const bytes = Number(bytesText);
const count = Number(countText);
const warmup = Number(warmupText ?? "3");
if (!url || !(bytes > 0) || !(count > 0)) {
  console.error("usage: node perf/ws_roundtrip.mjs URL BYTES COUNT [WARMUP]");
  process.exit(2);
}

const payload = randomBytes(bytes);
const topic = `roundtrip/${randomBytes(6).toString("hex")}`;
const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10000 });
const timer = setTimeout(() => {
  console.error(`ws_roundtrip: no answer within 60 s from ${url}`);
  process.exit(1);
}, 60000);
client.on("error", (e) => {
  console.error(`ws_roundtrip: ${url}: ${e.message}`);
  process.exit(1);
});

const ms = [];
let sentAt = 0;
let done = 0;
function next() {
  sentAt = process.hrtime.bigint();
  client.publish(topic, payload, { qos: 0 });
}
client.on("message", (_topic, got) => {
  const elapsed = Number(process.hrtime.bigint() - sentAt) / 1e6;
  if (got.length !== bytes || !got.equals(payload)) {
    console.error(`ws_roundtrip: the message came back changed (${got.length} bytes)`);
    process.exit(1);
  }
  if (++done > warmup) ms.push(elapsed);
  if (ms.length === count) {
    clearTimeout(timer);
    console.log(JSON.stringify({ url, bytes, count, ms }));
    client.end(false, () => process.exit(0));
    return;
  }
  next();
});
client.on("connect", () => {
  client.subscribe(topic, { qos: 0 }, (err) => {
    if (err) {
      console.error(`ws_roundtrip: subscribe: ${err.message}`);
      process.exit(1);
    }
    next();
  });
});
