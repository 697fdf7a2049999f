#!/usr/bin/python3
"""Shared subscriptions ($share/<name>/<filter>) in the tern broker, with members of every
protocol: Paho MQTTv5 and MQTTv311 (python3-paho-mqtt), mosquitto_sub -V mqttv5, line-protocol
sessions, and hand-written MQTT 5.0 packets where a test needs a client that never acknowledges or
never reads. Run by ctest with /usr/bin/python3:

    shared_subscriptions_test.py --broker build/release/broker [unittest options]

Each test starts its own broker on free loopback ports and stops it by its PID; every wait is
bounded (mqtt_harness.TIMEOUT).
"""
import re
import socket
import subprocess
import threading
import unittest

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import mqtt_harness
from mqtt_harness import TIMEOUT, Broker, LineSession, run, wait_until
from mqtt5_clients_test import Paho5, RawClient, connect5, packet, s16, subscribe5


class Paho311:
    """A Paho MQTT 3.1.1 client with its loop on a thread and its payloads in a list."""

    def __init__(self, port, client_id):
        self.payloads = []
        self.lock = threading.Lock()
        self.acked = {}
        self.connected = False
        self.client = paho.Client(client_id=client_id, protocol=paho.MQTTv311)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc: setattr(self, "connected", rc == 0)
        self.client.on_subscribe = lambda c, u, mid, codes: self.acked.__setitem__(mid, codes)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(lambda: self.connected, "CONNACK")

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.payloads.append(message.payload.decode())

    def subscribe(self, topic, qos=0):
        result, mid = self.client.subscribe(topic, qos)
        assert result == paho.MQTT_ERR_SUCCESS
        wait_until(lambda: mid in self.acked, "SUBACK")
        return self.acked[mid]

    def received(self):
        with self.lock:
            return list(self.payloads)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


class LineMember:
    """A line-protocol session whose pushes a thread collects."""

    def __init__(self, port, client_id):
        self.session = LineSession(port, client_id)
        self.payloads = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self):
        try:
            while True:
                frame = self.session.push()
                kind, _, rest = frame.partition("@")
                if kind == "MESSAGE":
                    with self.lock:
                        self.payloads.append(rest.split("@", 1)[1])
        except (EOFError, OSError):
            return

    def received(self):
        with self.lock:
            return list(self.payloads)

    def close(self):
        self.session.close()


def receive_until_quiet(sock, quiet):
    """What `sock` receives until it has been silent for `quiet` seconds; None once it is closed
    and nothing came."""
    sock.settimeout(quiet)
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            return data
        except OSError:
            chunk = b""
        if not chunk:
            return data or None
        data += chunk


def payloads_of(paho5):
    with paho5.lock:
        return [m.payload.decode() for m in paho5.messages]


class SharedSubscriptions(unittest.TestCase):
    def setUp(self):
        self.broker = None
        self.start()

    def start(self, *extra):
        self.broker = Broker(*extra)
        self.port = self.broker.mqtt_port
        self.line = LineSession(self.broker.line_port, "observer")
        self.closers = [self.line.close]

    def tearDown(self):
        for close in reversed(self.closers):
            close()
        self.assertEqual(self.broker.stop(), 0)

    def paho5(self, client_id):
        c = Paho5(self.port, client_id)
        self.closers.append(c.stop)
        return c

    def paho311(self, client_id):
        c = Paho311(self.port, client_id)
        self.closers.append(c.stop)
        return c

    def line_member(self, client_id):
        m = LineMember(self.broker.line_port, client_id)
        self.closers.append(m.close)
        return m

    def raw5(self, client_id, **kwargs):
        r = RawClient(self.port)
        self.closers.append(r.close)
        r.send(connect5(client_id, **kwargs))
        r.expect(2)
        return r

    def publish(self, topic, payloads):
        for p in payloads:
            self.assertEqual(self.line.request("PUBLISH@%s@%s" % (topic, p)), "PUBACK")

    def wait_subscriptions(self, count):
        wait_until(lambda: self.stats()["shared_memberships"] == count, "%d memberships" % count)

    def stats(self):
        return self.line.stats()

    # -- one member per message, evenly, across protocols ------------------------------------

    def test_each_message_reaches_one_member_of_each_group_in_every_protocol(self):
        v5 = self.paho5("v5")
        v311 = self.paho311("v311")
        line = self.line_member("liner")
        self.assertEqual(v5.subscribe("$share/g/s/#", qos=1)[0].value, 1)
        self.assertEqual(v311.subscribe("$share/g/s/#", qos=1), (1,))
        self.assertEqual(line.session.request("SUBSCRIBE@$share/g/s/#"), "SUBACK")
        other = self.paho5("other")  # a group of its own: gets every message
        other.subscribe("$share/h/s/+", qos=0)
        plain = self.paho311("plain")  # an ordinary subscription: gets every message too
        plain.subscribe("s/#")
        self.wait_subscriptions(4)
        sent = ["m%d" % n for n in range(300)]
        self.publish("s/x", sent)
        members = [lambda: payloads_of(v5), v311.received, line.received]
        wait_until(lambda: sum(len(get()) for get in members) >= len(sent), "the group's share")
        wait_until(lambda: len(payloads_of(other)) >= len(sent), "group h")
        wait_until(lambda: len(plain.received()) >= len(sent), "the ordinary subscriber")
        got = [get() for get in members]
        together = [p for part in got for p in part]
        self.assertEqual(sorted(together), sorted(sent), "exactly once in the group")
        for part in got:
            # One publisher, one worker's round robin over three members that keep up.
            self.assertGreaterEqual(len(part), 80, [len(p) for p in got])
            self.assertLessEqual(len(part), 120, [len(p) for p in got])
        self.assertEqual(sorted(payloads_of(other)), sorted(sent))
        self.assertEqual(sorted(plain.received()), sorted(sent))
        self.assertEqual(self.stats()["messages_dropped"], 0)

    def test_publishers_on_every_worker_spread_evenly(self):
        members = [self.paho5("member%d" % n) for n in range(4)]
        for m in members:
            m.subscribe("$share/w/t", qos=0)
        self.wait_subscriptions(4)
        publishers = [LineSession(self.broker.line_port, "pub%d" % n) for n in range(4)]
        self.closers.extend(p.close for p in publishers)
        sent = []
        for round_ in range(100):
            for n, p in enumerate(publishers):
                payload = "p%d-%d" % (n, round_)
                sent.append(payload)
                self.assertEqual(p.request("PUBLISH@t@" + payload), "PUBACK")
        wait_until(lambda: sum(len(m.messages) for m in members) >= len(sent), "every message")
        got = [payloads_of(m) for m in members]
        self.assertEqual(sorted(p for part in got for p in part), sorted(sent))
        for part in got:
            self.assertGreaterEqual(len(part), 70, [len(p) for p in got])
            self.assertLessEqual(len(part), 130, [len(p) for p in got])

    def test_mosquitto_sub_members_share_the_messages(self):
        # One publisher, two members that keep up: the round robin alternates, 10 each.
        subs = [subprocess.Popen(
            ["mosquitto_sub", "-p", str(self.port), "-V", "mqttv5", "-t", "$share/mq/ms/#",
             "-C", "10", "-W", str(int(TIMEOUT)), "-q", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        self.wait_subscriptions(2)
        sent = ["n%d" % n for n in range(20)]
        pub = run("mosquitto_pub", "-p", str(self.port), "-V", "mqttv5", "-t", "ms/x", "-q", "1",
                  "-l", stdin="\n".join(sent) + "\n")
        self.assertEqual(pub.returncode, 0, pub.stderr)
        outs = []
        for s in subs:
            out, err = s.communicate(timeout=TIMEOUT)
            self.assertEqual(s.returncode, 0, err)
            outs.append(out.split())
        self.assertEqual([len(o) for o in outs], [10, 10])
        self.assertEqual(sorted(outs[0] + outs[1]), sorted(sent))

    # -- members that cannot take a message ---------------------------------------------------

    def test_a_member_whose_output_is_full_is_skipped(self):
        # A member that never reads, with a small receive buffer (set before connecting, so the
        # kernel does not grow it): its output fills while the other member keeps up.
        stuck = self.raw_member("stuck", "$share/f/big", rcvbuf=8192)
        # The other member reads as fast as it can (bytes into a buffer, parsed at the end).
        reader = self.raw_member("reader", "$share/f/big")
        reader_data = bytearray()
        stop = threading.Event()

        def drain():
            while not stop.is_set():
                chunk = receive_until_quiet(reader, 0.2)
                if chunk is None:
                    return
                reader_data.extend(chunk)
        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        self.wait_subscriptions(2)
        # 32 MB: stuck holds at most --max-queued-bytes (4 MiB) and what the kernel buffers (about
        # 4 MiB more), and the reader has room for a burst of 4 MiB between two of its writes.
        sent = ["%05d" % n + "x" * 8000 for n in range(4000)]
        self.publish("big", sent)
        # Each PUBLISH: topic "big", an empty property block (0x00), then the payload.
        pattern = re.compile(rb"big\x00(\d{5})x{8000}")
        # What stuck holds (in the broker's output and the kernel's buffers) comes once it reads.
        data = receive_until_quiet(stuck, 1.0) or b""
        held = [int(m.group(1)) for m in pattern.finditer(data)]
        self.assertLess(len(held), len(sent) // 2, "stuck was skipped once full")
        wait_until(lambda: len(pattern.findall(bytes(reader_data))) >= len(sent) - len(held),
                   "the reader's share")
        stop.set()
        thread.join(TIMEOUT)
        taken = [int(m.group(1)) for m in pattern.finditer(bytes(reader_data))]
        self.assertEqual(sorted(held + taken), list(range(len(sent))),
                         "each message to exactly one member")
        stats = self.stats()
        self.assertEqual(stats["messages_dropped"], 0, stats)

    def raw_member(self, client_id, topic_filter, rcvbuf=None):
        """A plain socket, connected with MQTT 5.0 and subscribed to `topic_filter` (QoS 0)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", self.port))
        self.closers.append(sock.close)
        r = RawClient.__new__(RawClient)
        r.sock, r.buffer = sock, b""
        r.send(connect5(client_id))
        r.expect(2)
        r.send(subscribe5(1, [(topic_filter, 0)]))
        r.expect(9)
        self.assertEqual(r.buffer, b"")
        return sock

    def test_unacknowledged_qos1_messages_go_to_another_member_when_a_session_ends(self):
        silent = self.raw5("silent")  # receives, never acknowledges
        silent.send(subscribe5(1, [("$share/q/work", 1)]))
        silent.expect(9)
        worker = self.paho5("worker")
        worker.subscribe("$share/q/work", qos=1)
        self.wait_subscriptions(2)
        sent = ["job%d" % n for n in range(6)]
        for p in sent:
            info = self.publisher().publish("work", p, qos=1)
            info.wait_for_publish(TIMEOUT)
        # Everything was published and acknowledged to the publisher: each message went to one of
        # the two members. Take what reached `silent` (until it has been quiet for a second).
        held = []
        silent.sock.settimeout(1.0)
        while True:
            try:
                got = silent.read()
            except (socket.timeout, AssertionError):
                break
            self.assertIsNotNone(got)
            self.assertEqual(got[0] >> 4, 3)
            held.append(got[1])
        self.assertGreater(len(held), 0)
        wait_until(lambda: len(worker.messages) >= len(sent) - len(held), "worker's own share")
        # The session ends with its connection (Session Expiry 0): what it held goes on.
        silent.sock.close()
        wait_until(lambda: len(worker.messages) >= len(sent), "the silent member's messages")
        self.assertEqual(sorted(payloads_of(worker)), sorted(sent))

    def publisher(self):
        if not hasattr(self, "_publisher"):
            self._publisher = paho.Client(client_id="publisher", protocol=paho.MQTTv311)
            self._publisher.connect("127.0.0.1", self.port)
            self._publisher.loop_start()
            self.closers.append(self._publisher.loop_stop)
            self.closers.append(self._publisher.disconnect)
        return self._publisher

    def test_a_member_that_leaves_gets_no_more(self):
        a = self.paho5("a")
        b = self.paho5("b")
        a.subscribe("$share/l/t", qos=0)
        b.subscribe("$share/l/t", qos=0)
        self.wait_subscriptions(2)
        result, mid = a.client.unsubscribe("$share/l/t")
        wait_until(lambda: mid in a.acked, "UNSUBACK")
        codes = a.acked[mid] if isinstance(a.acked[mid], list) else [a.acked[mid]]
        self.assertEqual([c.value for c in codes], [0])
        self.wait_subscriptions(1)
        sent = ["u%d" % n for n in range(20)]
        self.publish("t", sent)
        wait_until(lambda: len(b.messages) >= len(sent), "b's messages")
        self.assertEqual(sorted(payloads_of(b)), sorted(sent))
        self.assertEqual(a.messages, [])
        # The group ends with its last member; the name can be used again.
        b.client.unsubscribe("$share/l/t")
        self.wait_subscriptions(0)
        self.assertEqual(self.stats()["shared_groups"], 0)

    # -- what a shared subscription is not --------------------------------------------------

    def test_shared_subscriptions_get_no_retained_messages(self):
        self.assertEqual(self.line.request("PUBLISH@r/t@old@retain"), "PUBACK")
        a = self.paho5("a")
        a.subscribe("$share/r/r/#", qos=1)
        line = self.line_member("liner")
        self.assertEqual(line.session.request("SUBSCRIBE@$share/r2/r/#"), "SUBACK")
        self.publish("r/t", ["new"])
        wait_until(lambda: len(a.messages) == 1 and len(line.received()) == 1, "the live message")
        self.assertEqual(payloads_of(a), ["new"])
        self.assertEqual(line.received(), ["new"])

    def test_bad_share_names_and_no_local_are_refused(self):
        r = self.raw5("codes")
        r.send(subscribe5(3, [("$share/g", 0), ("$share//t", 0), ("$share/a+b/t", 0),
                              ("$share/g/t", 1)]))
        self.assertEqual(r.expect(9), b"\x00\x03\x00" + bytes([0x8F, 0x8F, 0x8F, 0x01]))
        # No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
        r.send(subscribe5(4, [("$share/g/t", 0x04)]))
        self.assertEqual(r.expect(14)[0], 0x82)
        self.assertTrue(r.closed())
        # 3.1.1 (by hand: Paho refuses to send these): SUBACK failure 0x80.
        old = RawClient(self.port)
        self.closers.append(old.close)
        old.send(packet(0x10, s16("MQTT") + bytes([4, 0x02, 0, 60]) + s16("old")))
        self.assertEqual(old.expect(2), b"\x00\x00")
        old.send(packet(0x82, b"\x00\x05" + s16("$share/#/t") + b"\x00" + s16("$share/g/t") +
                        b"\x01"))
        self.assertEqual(old.expect(9), b"\x00\x05\x80\x01")
        for bad in ("$share/g", "$share//t", "$share/*/t"):
            reply = self.line.request("SUBSCRIBE@" + bad)
            self.assertTrue(reply.startswith("ERROR@bad-filter@"), reply)

    def test_subscription_identifier_and_retain_as_published_on_a_shared_subscription(self):
        c = self.paho5("ids")
        sp = Properties(PacketTypes.SUBSCRIBE)
        sp.SubscriptionIdentifier = 42
        result, mid = c.client.subscribe(
            "$share/i/id/#", options=paho.SubscribeOptions(qos=1, retainAsPublished=True),
            properties=sp)
        wait_until(lambda: mid in c.acked, "SUBACK")
        c.subscribe("id/other", qos=0)  # an ordinary one with no identifier: not listed
        self.publish("id/x", ["one"])
        self.assertEqual(self.line.request("PUBLISH@id/y@two@retain"), "PUBACK")
        messages = c.wait_messages(2)
        self.assertEqual([m.properties.SubscriptionIdentifier for m in messages], [[42], [42]])
        self.assertEqual([m.retain for m in messages], [False, True])


if __name__ == "__main__":
    mqtt_harness.main()
