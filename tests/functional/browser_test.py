"""MQTT over WebSockets from a real browser (issue 14): headless Chromium (Debian chromium, installed
by tools/deps) loads tests/functional/browser/mqtt_page.html, whose MQTT.js browser bundle connects
to `broker --ws-port` over ws://127.0.0.1:PORT, once per MQTT version (3.1.1 and 5.0). A Paho
client over TCP sees the page's "ready" (page -> TCP), sends it a short message and a 1 MB one
(TCP -> page), gets the page's verdict on each (the page compares what arrived with what was sent)
and the page's own 1 MB message, byte for byte.

Chromium runs in a session of its own with a fresh profile directory and is stopped by its process
group. Its log (the page's console included) is printed when a test fails.

Run by ctest as WebSocket.Browser (tests/CMakeLists.txt).
"""
import json
import os
import pathlib
import signal
import subprocess
import tempfile
import threading
import unittest
import uuid

import paho.mqtt.client as paho

import mqtt_harness as h
from mqtt_harness import TIMEOUT

PAGE = pathlib.Path(__file__).resolve().parent / "browser" / "mqtt_page.html"
BUNDLE = pathlib.Path(__file__).resolve().parent / "mqttjs/node_modules/mqtt/dist/mqtt.min.js"
BIG = 1_000_000  # as the page: a megabyte, under --max-packet-size (1 MiB) with the headers


def pattern(seed):
    """The page's pattern: byte i is (i * 7 + seed) mod 251."""
    return bytes((i * 7 + seed) % 251 for i in range(BIG))


class Chromium:
    """Headless Chromium showing one page until stop()."""

    def __init__(self, url):
        self.dir = tempfile.TemporaryDirectory(prefix="tern-chromium-")
        self.log = open(os.path.join(self.dir.name, "chromium.log"), "w+")
        env = dict(os.environ, HOME=self.dir.name, XDG_CONFIG_HOME=self.dir.name,
                   XDG_CACHE_HOME=self.dir.name)
        # --no-sandbox: the tests run as root on CI, where Chromium's sandbox refuses to start.
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--enable-logging=stderr",
             "--v=0", "--user-data-dir=" + os.path.join(self.dir.name, "profile"), url],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)

    def stop(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        self.dir.cleanup()
        return text


class Browser(unittest.TestCase):
    def setUp(self):
        self.assertTrue(BUNDLE.exists(), "%s is missing: run tools/deps" % BUNDLE)
        self.broker = h.Broker("--ws-port", "auto", listeners=("mqtt+ws",))

    def tearDown(self):
        self.assertEqual(self.broker.stop(), 0)

    def test_a_page_with_mqttjs_and_a_tcp_client_exchange_messages_both_ways(self):
        nonce = uuid.uuid4().hex[:12]
        got = []
        arrived = threading.Condition()

        def on_message(_c, _u, m):
            with arrived:
                got.append((m.topic, m.payload))
                arrived.notify_all()

        tcp = paho.Client(client_id="tcp-" + nonce, protocol=paho.MQTTv311)
        tcp.on_message = on_message
        subscribed = threading.Event()
        tcp.on_subscribe = lambda *_args: subscribed.set()
        tcp.connect("127.0.0.1", self.broker.mqtt_port, keepalive=30)
        tcp.loop_start()
        self.addCleanup(tcp.loop_stop)
        self.addCleanup(tcp.disconnect)
        tcp.subscribe("browser/%s/#" % nonce, qos=1)
        self.assertTrue(subscribed.wait(TIMEOUT))

        url = "%s?port=%d&nonce=%s&versions=4,5" % (
            PAGE.as_uri(), self.broker.ports["mqtt+ws"], nonce)
        chromium = Chromium(url)
        log = None
        try:
            def wait_for(topic, n=1):
                """The payloads of the first n messages on topic (fails after the deadline)."""
                with arrived:
                    ok = arrived.wait_for(
                        lambda: sum(t == topic for t, _ in got) >= n, TIMEOUT * 3)
                    if not ok:
                        self.fail("nothing on %s; got %s" % (topic, [t for t, _ in got]))
                    return [p for t, p in got if t == topic][:n]

            for version in (4, 5):
                with self.subTest(version=version):
                    base = "browser/%s/v%d" % (nonce, version)
                    self.assertEqual(wait_for(base + "/ready"), [b"ready"])
                    tcp.publish(base + "/to-page", "hello-" + nonce, qos=1)
                    verdict = json.loads(wait_for(base + "/from-page")[0])
                    self.assertEqual(verdict, {"ok": True, "length": 18,
                                               "got": "hello-" + nonce})
                    tcp.publish(base + "/to-page", pattern(version), qos=1)
                    verdict = json.loads(wait_for(base + "/from-page", 2)[1])
                    self.assertEqual(verdict, {"ok": True, "length": BIG, "got": "big"})
                    mine = wait_for(base + "/big")[0]
                    self.assertEqual(len(mine), BIG)
                    self.assertTrue(mine == pattern(version + 100), "the page's 1 MB differs")
        except BaseException:
            log = chromium.stop()
            print("chromium log:\n" + log)
            raise
        finally:
            if log is None:
                chromium.stop()


if __name__ == "__main__":
    h.main()
