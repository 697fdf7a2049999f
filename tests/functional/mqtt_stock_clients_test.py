#!/usr/bin/python3
"""MQTT features of the tern broker, exercised with stock clients: Debian's mosquitto_pub and
mosquitto_sub, and Paho (python3-paho-mqtt). Run by ctest with Debian's /usr/bin/python3:

    mqtt_stock_clients_test.py --broker build/release/broker [unittest options]

Each test class starts its own broker on free loopback ports (--port 0 --mqtt-port auto) and stops
it by its PID. Every wait is bounded.
"""
import subprocess
import threading
import time
import unittest

import paho.mqtt.client as paho

import mqtt_harness
from mqtt_harness import TIMEOUT, Broker, LineSession, run, wait_until

class PahoClient:
    """A Paho client with its network loop on a thread and its messages in a list."""

    def __init__(self, port, client_id, clean_session=True, keepalive=60, will=None, loop=True):
        self.messages = []
        self.connack = None
        self.disconnected = threading.Event()
        self.lock = threading.Lock()
        self.client = paho.Client(client_id=client_id, clean_session=clean_session,
                                  protocol=paho.MQTTv311)
        if will:
            self.client.will_set(*will)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, rc: self.disconnected.set()
        self.subacked = set()
        self.client.on_subscribe = lambda c, u, mid, granted: self.subacked.add(mid)
        self.client.connect("127.0.0.1", port, keepalive=keepalive)
        if loop:
            self.client.loop_start()
            wait_until(lambda: self.connack is not None, "CONNACK")

    def _on_connect(self, client, userdata, flags, rc):
        self.connack = (flags.get("session present", 0), rc)

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append((message.topic, message.payload, message.qos, message.retain))

    def subscribe(self, topic, qos):
        # The SUBACK may arrive before subscribe() returns: record acknowledged ids from the start.
        result, mid = self.client.subscribe(topic, qos)
        assert result == paho.MQTT_ERR_SUCCESS
        wait_until(lambda: mid in self.subacked, "SUBACK")

    def wait_messages(self, count):
        wait_until(lambda: len(self.messages) >= count, "%d messages" % count)
        with self.lock:
            return list(self.messages)

    def stop(self, graceful=True):
        if graceful:
            self.client.disconnect()
        self.client.loop_stop()


class MosquittoClients(unittest.TestCase):
    def setUp(self):
        self.broker = Broker()
        self.port = str(self.broker.mqtt_port)
        self.line = LineSession(self.broker.line_port, "observer")

    def tearDown(self):
        self.line.close()
        self.assertEqual(self.broker.stop(), 0)

    def wait_subscriptions(self, count):
        wait_until(lambda: self.line.stats()["subscriptions"] == count,
                   "%d subscriptions in the broker" % count)

    def start_sub(self, *args):
        """Starts mosquitto_sub once the broker holds no subscription, and waits until its (single)
        subscription is in place. A previous mosquitto_sub's clean session ends asynchronously
        after it exits, hence the first wait."""
        self.wait_subscriptions(0)
        proc = subprocess.Popen(["mosquitto_sub", "-p", self.port, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.wait_subscriptions(1)
        return proc

    def test_qos_levels_both_ways(self):
        for qos in (0, 1, 2):
            with self.subTest(qos=qos):
                sub = self.start_sub("-t", "m/q%d" % qos, "-q", str(qos), "-C", "1", "-v")
                pub = run("mosquitto_pub", "-p", self.port, "-t", "m/q%d" % qos, "-q", str(qos),
                          "-m", "hello %d" % qos)
                self.assertEqual(pub.returncode, 0, pub.stderr)
                out, err = sub.communicate(timeout=TIMEOUT)
                self.assertEqual(sub.returncode, 0, err)
                self.assertEqual(out, "m/q%d hello %d\n" % (qos, qos))

    def test_retained_set_replace_delete(self):
        self.assertEqual(run("mosquitto_pub", "-p", self.port, "-t", "r/t", "-m", "one", "-r",
                             "-q", "1").returncode, 0)
        self.assertEqual(run("mosquitto_pub", "-p", self.port, "-t", "r/t", "-m", "two", "-r",
                             "-q", "1").returncode, 0)
        got = run("mosquitto_sub", "-p", self.port, "-t", "r/#", "-C", "1", "-v", "-W", "5")
        self.assertEqual(got.stdout, "r/t two\n")
        self.assertEqual(run("mosquitto_pub", "-p", self.port, "-t", "r/t", "-n", "-r").returncode,
                         0)
        none = run("mosquitto_sub", "-p", self.port, "-t", "r/#", "-C", "1", "-W", "1")
        self.assertEqual(none.stdout, "")  # -W expired: nothing retained any more

    def test_cross_protocol_both_ways(self):
        sub = self.start_sub("-t", "cross/#", "-C", "1", "-v")
        self.assertEqual(self.line.request("PUBLISH@cross/line@from the line"), "PUBACK")
        out, _ = sub.communicate(timeout=TIMEOUT)
        self.assertEqual(out, "cross/line from the line\n")
        self.wait_subscriptions(0)
        self.assertEqual(self.line.request("SUBSCRIBE@back/*"), "SUBACK")
        pub = run("mosquitto_pub", "-p", self.port, "-t", "back/mqtt", "-m", "from mosquitto",
                  "-q", "1")
        self.assertEqual(pub.returncode, 0, pub.stderr)
        self.assertEqual(self.line.push(), "MESSAGE@back/mqtt@from mosquitto")

    def test_many_messages_from_stdin_lines(self):
        sub = self.start_sub("-t", "bulk", "-q", "2", "-C", "200")
        lines = "".join("message %d\n" % i for i in range(200))
        pub = run("mosquitto_pub", "-p", self.port, "-t", "bulk", "-q", "2", "-l", stdin=lines)
        self.assertEqual(pub.returncode, 0, pub.stderr)
        out, _ = sub.communicate(timeout=TIMEOUT)
        self.assertEqual(out, lines)  # QoS 2: each exactly once, in order


class PahoFeatures(unittest.TestCase):
    def setUp(self):
        self.broker = Broker()
        self.port = self.broker.mqtt_port
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.stop(graceful=False)
        self.assertEqual(self.broker.stop(), 0)

    def client(self, *args, **kwargs):
        c = PahoClient(self.port, *args, **kwargs)
        self.clients.append(c)
        return c

    def test_qos_both_ways_exactly_once(self):
        sub = self.client("paho-sub")
        sub.subscribe("p/#", 2)
        pub = self.client("paho-pub")
        infos = [pub.client.publish("p/%d" % (i % 3), "m%d" % i, qos=i % 3) for i in range(60)]
        for info in infos:
            info.wait_for_publish()
        got = sub.wait_messages(60)
        time.sleep(0.2)
        self.assertEqual(len(sub.messages), 60)
        self.assertEqual(sorted(m[1] for m in got), sorted(b"m%d" % i for i in range(60)))
        self.assertEqual({m[2] for m in got}, {0, 1, 2})

    def test_will_on_abnormal_disconnect_only(self):
        watcher = self.client("watcher")
        watcher.subscribe("will/#", 1)
        dying = self.client("dying", will=("will/dying", "gone", 1, False))
        dying.client.loop_stop()
        dying.client.socket().close()  # no DISCONNECT
        got = watcher.wait_messages(1)
        self.assertEqual(got[0][:3], ("will/dying", b"gone", 1))
        polite = self.client("polite", will=("will/polite", "unused", 1, False))
        polite.client.disconnect()
        time.sleep(0.3)
        self.assertEqual(len(watcher.messages), 1)

    def test_persistent_session_across_reconnect(self):
        first = self.client("durable", clean_session=False)
        self.assertEqual(first.connack, (0, 0))
        first.subscribe("dur/#", 1)
        first.stop()
        pub = self.client("durable-pub")
        for i in range(3):
            pub.client.publish("dur/x", "queued %d" % i, qos=1).wait_for_publish()
        back = self.client("durable", clean_session=False)
        self.assertEqual(back.connack, (1, 0))  # session present
        got = back.wait_messages(3)
        self.assertEqual([m[1] for m in got], [b"queued 0", b"queued 1", b"queued 2"])

    def test_keepalive_timeout_closes_and_sends_the_will(self):
        watcher = self.client("ka-watcher")
        watcher.subscribe("ka/#", 0)
        # Keep-alive 1 s and no network loop: no PINGREQ is ever sent.
        silent = PahoClient(self.port, "silent", keepalive=1, will=("ka/silent", "expired", 0,
                                                                    False), loop=False)
        got = watcher.wait_messages(1)
        self.assertEqual(got[0][:2], ("ka/silent", b"expired"))
        sock = silent.client.socket()
        sock.settimeout(TIMEOUT)
        received = b""
        while True:  # the CONNACK, then end of stream: closed by the broker
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        self.assertEqual(received, b"\x20\x02\x00\x00")

    def test_takeover_disconnects_the_first_client(self):
        first = self.client("twin")
        second = self.client("twin")
        # Paho reconnects by itself after a takeover; only the disconnect matters here.
        self.assertTrue(first.disconnected.wait(TIMEOUT))
        self.assertEqual(second.connack, (0, 0))


if __name__ == "__main__":
    mqtt_harness.main()
