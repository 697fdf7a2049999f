// MQTT 5.0 in the tern broker with MQTT.js (npm `mqtt`, pinned in package.json), the client of
// browser and Node.js applications, as a third independent stock client beside Paho and
// mosquitto (tests/functional/mqtt5_clients_test.py). Run by ctest:
//
//   node --test tests/functional/mqttjs/mqtt5_mqttjs_test.mjs   (TERN_BROKER=<broker binary>)
//
// The package comes from `npm ci` in this directory (tools/deps does it). Each test starts its own
// broker on free loopback ports and stops it by its PID; every wait is bounded.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { test } from "node:test";

const mqtt = await import("mqtt").then((m) => m.default, () => {
  throw new Error("MQTT.js is not installed: run tools/deps (npm ci in tests/functional/mqttjs)");
});

const BROKER = process.env.TERN_BROKER;
const TIMEOUT_MS = 10000 * Number(process.env.TERN_TEST_TIMEOUT_SCALE || 1);

if (!BROKER) throw new Error("TERN_BROKER must name the broker binary");

// A broker of the test's own: `--mqtt-port auto` on 127.0.0.1, the port read from its stdout.
async function startBroker(...extra) {
  const io = process.env.TERN_TEST_IO ? ["--io", process.env.TERN_TEST_IO] : [];
  const proc = spawn(BROKER, ["--port", "0", "--mqtt-port", "auto", "--workers", "2",
    "--log-level", "warn", ...io, ...extra], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: proc.stdout });
  const port = await withDeadline(new Promise((resolve, reject) => {
    lines.on("line", (line) => {
      const m = /listening on 127\.0\.0\.1:(\d+) \(mqtt\)/.exec(line);
      if (m) resolve(Number(m[1]));
    });
    proc.on("exit", (code) => reject(new Error(`broker exited with ${code} before listening`)));
  }), "the broker's MQTT port");
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    proc,
    // SIGTERM, and the exit status (0 when it shut down cleanly).
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      const exited = new Promise((resolve) => proc.on("exit", (code) => resolve(code)));
      proc.kill("SIGTERM");
      try {
        return await withDeadline(exited, "the broker's exit");
      } catch (e) {
        proc.kill("SIGKILL");
        throw e;
      }
    },
  };
}

function withDeadline(promise, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT_MS);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

async function waitUntil(predicate, what) {
  const end = Date.now() + TIMEOUT_MS;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// A connected MQTT 5.0 client that records what it receives.
// Messages are recorded from the start: a resumed session's queue follows the CONNACK at once.
async function client(broker, options = {}) {
  const c = mqtt.connect(broker.url, {
    protocolVersion: 5, reconnectPeriod: 0, connectTimeout: TIMEOUT_MS, ...options,
  });
  c.received = [];
  c.on("message", (topic, payload, packet) => c.received.push({ topic, payload, packet }));
  await withDeadline(new Promise((resolve, reject) => {
    c.once("connect", resolve);
    c.once("error", reject);
  }), "CONNACK");
  return c;
}

// Each test gets a broker and closes the clients it made.
function brokerTest(name, body, ...brokerArgs) {
  test(name, async () => {
    const broker = await startBroker(...brokerArgs);
    const clients = [];
    const make = async (options) => {
      const c = await client(broker, options);
      clients.push(c);
      return c;
    };
    try {
      await body({ broker, make });
    } finally {
      for (const c of clients) c.end(true);
      assert.equal(await broker.stop(), 0, "the broker exits cleanly");
    }
  });
}

brokerTest("CONNACK says what the server offers and assigns a client id", async ({ make }) => {
  const c = await make({ clientId: "", clean: true });
  const connack = c.connackPacket;
  assert.ok(connack, "the CONNACK packet is kept");
  assert.equal(connack.reasonCode, 0);
  assert.match(connack.properties.assignedClientIdentifier, /^tern-/);
  assert.equal(connack.properties.topicAliasMaximum, 16);
  assert.ok(connack.properties.maximumPacketSize > 0);
  assert.equal(connack.properties.sharedSubscriptionAvailable, undefined, "default 1: offered");
});

brokerTest("publish properties pass through, with the remaining expiry", async ({ make }) => {
  const sub = await make({ clientId: "props-sub" });
  await sub.subscribeAsync("p/#", { qos: 1 });
  const pub = await make({ clientId: "props-pub" });
  await pub.publishAsync("p/x", "hello", {
    qos: 1,
    properties: {
      payloadFormatIndicator: true,
      messageExpiryInterval: 60,
      contentType: "text/plain",
      responseTopic: "p/reply",
      correlationData: Buffer.from([1, 2, 3]),
      userProperties: { a: "1", b: ["2", "3"] },
    },
  });
  await waitUntil(() => sub.received.length === 1, "the message");
  const { topic, payload, packet } = sub.received[0];
  assert.equal(topic, "p/x");
  assert.equal(payload.toString(), "hello");
  const p = packet.properties;
  assert.equal(p.payloadFormatIndicator, true);
  assert.ok(p.messageExpiryInterval === 60 || p.messageExpiryInterval === 59, p.messageExpiryInterval);
  assert.equal(p.contentType, "text/plain");
  assert.equal(p.responseTopic, "p/reply");
  assert.deepEqual([...p.correlationData], [1, 2, 3]);
  assert.deepEqual({ ...p.userProperties }, { a: "1", b: ["2", "3"] });
});

brokerTest("subscription identifiers, No Local and Retain As Published", async ({ make }) => {
  const c = await make({ clientId: "opts" });
  await c.subscribeAsync("id/#", { qos: 0, properties: { subscriptionIdentifier: 7 } });
  await c.subscribeAsync("nl/#", { qos: 0, nl: true });
  await c.subscribeAsync("rap/#", { qos: 0, rap: true });
  const other = await make({ clientId: "other" });
  await other.subscribeAsync("nl/#", { qos: 0 });
  await c.publishAsync("nl/x", "own", { qos: 1 });  // not back to c, to the other one
  await c.publishAsync("id/x", "with-id", { qos: 1 });
  await other.publishAsync("rap/x", "kept-flag", { qos: 1, retain: true });
  await waitUntil(() => c.received.length === 2 && other.received.length === 1, "deliveries");
  const byTopic = Object.fromEntries(c.received.map((m) => [m.topic, m.packet]));
  assert.equal(byTopic["nl/x"], undefined, "No Local");
  assert.equal(byTopic["id/x"].properties.subscriptionIdentifier, 7);
  assert.equal(byTopic["rap/x"].retain, true, "Retain As Published");
  assert.equal(other.received[0].topic, "nl/x");
});

brokerTest("retain handling 2 sends no retained message, 0 does", async ({ make }) => {
  const pub = await make({ clientId: "rh-pub" });
  await pub.publishAsync("rh/t", "kept", { qos: 1, retain: true });
  const never = await make({ clientId: "rh-never" });
  await never.subscribeAsync("rh/#", { qos: 0, rh: 2 });
  const always = await make({ clientId: "rh-always" });
  await always.subscribeAsync("rh/#", { qos: 0, rh: 0 });
  await waitUntil(() => always.received.length === 1, "the retained message");
  assert.equal(always.received[0].packet.retain, true);
  await pub.publishAsync("rh/t", "live", { qos: 1 });
  await waitUntil(() => never.received.length === 1, "the live message");
  assert.equal(never.received[0].payload.toString(), "live");
});

brokerTest("topic aliases towards a client that accepts them", async ({ make }) => {
  const sub = await make({ clientId: "alias", properties: { topicAliasMaximum: 4 } });
  await sub.subscribeAsync("al/#", { qos: 0 });
  const pub = await make({ clientId: "alias-pub" });
  for (let n = 0; n < 3; n++) await pub.publishAsync("al/one", `m${n}`, { qos: 1 });
  await waitUntil(() => sub.received.length === 3, "three messages");
  // MQTT.js resolves the alias: every message has its topic; the broker sent the topic once.
  assert.deepEqual(sub.received.map((m) => m.topic), ["al/one", "al/one", "al/one"]);
  assert.ok(sub.received.every((m) => m.packet.properties?.topicAlias === 1));
});

brokerTest("a persistent session resumes with its queued QoS 1 messages", async ({ broker, make }) => {
  const first = await make({ clientId: "keep", clean: false,
    properties: { sessionExpiryInterval: 60 } });
  await first.subscribeAsync("q/#", { qos: 1 });
  await first.endAsync();
  const pub = await make({ clientId: "q-pub" });
  await pub.publishAsync("q/x", "while-away", { qos: 1 });
  const again = await client(broker, { clientId: "keep", clean: false,
    properties: { sessionExpiryInterval: 60 } });
  try {
    assert.equal(again.connackPacket.sessionPresent, true);
    await waitUntil(() => again.received.length === 1, "the queued message");
    assert.equal(again.received[0].payload.toString(), "while-away");
  } finally {
    again.end(true);
  }
});

brokerTest("shared subscription members take turns, each message once", async ({ make }) => {
  const a = await make({ clientId: "share-a" });
  const b = await make({ clientId: "share-b" });
  await a.subscribeAsync("$share/js/work/#", { qos: 1 });
  await b.subscribeAsync("$share/js/work/#", { qos: 1 });
  const pub = await make({ clientId: "share-pub" });
  const sent = [];
  for (let n = 0; n < 20; n++) {
    sent.push(`job${n}`);
    await pub.publishAsync("work/x", `job${n}`, { qos: 1 });
  }
  await waitUntil(() => a.received.length + b.received.length === 20, "every job");
  const got = [...a.received, ...b.received].map((m) => m.payload.toString()).sort();
  assert.deepEqual(got, [...sent].sort());
  // One publisher, two members that keep up: the round robin alternates.
  assert.equal(a.received.length, 10);
  assert.equal(b.received.length, 10);
});

brokerTest("server shutdown sends DISCONNECT 0x8B", async ({ broker, make }) => {
  const c = await make({ clientId: "bye" });
  let reason;
  c.on("disconnect", (packet) => { reason = packet.reasonCode; });
  assert.equal(await broker.stop(), 0);
  await waitUntil(() => reason !== undefined, "the DISCONNECT");
  assert.equal(reason, 0x8b);
});
