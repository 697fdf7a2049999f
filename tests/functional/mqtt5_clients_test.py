#!/usr/bin/python3
"""MQTT 5.0 in the tern broker, exercised with two independent stock clients (Paho's MQTTv5 from
python3-paho-mqtt and Debian's mosquitto_pub/mosquitto_sub -V mqttv5) and, where a test needs the
exact bytes of a reason code, with packets written by hand. Run by ctest with /usr/bin/python3:

    mqtt5_clients_test.py --broker build/release/broker [unittest options]

Each test starts its own broker on free loopback ports and stops it by its PID; every wait is
bounded (mqtt_harness.TIMEOUT).
"""
import json
import socket
import struct
import subprocess
import threading
import time
import unittest

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import mqtt_harness
from mqtt_harness import TIMEOUT, Broker, LineSession, run, wait_until


# ---- MQTT 5.0 packets by hand ---------------------------------------------------------------

def vbi(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def s16(data):
    if isinstance(data, str):
        data = data.encode()
    return struct.pack(">H", len(data)) + data


def packet(first, body):
    return bytes([first]) + vbi(len(body)) + body


def props(raw=b""):
    return vbi(len(raw)) + raw


def connect5(client_id, clean=True, properties=b"", will=None, keepalive=60):
    flags = 0x02 if clean else 0
    payload = s16(client_id)
    if will:
        topic, message, will_props = will
        flags |= 0x04
        payload += props(will_props) + s16(topic) + s16(message)
    body = s16("MQTT") + bytes([5, flags]) + struct.pack(">H", keepalive) + props(properties)
    return packet(0x10, body + payload)


def publish5(topic, payload, qos=0, packet_id=1, properties=b"", retain=False):
    body = s16(topic) + (struct.pack(">H", packet_id) if qos else b"") + props(properties)
    return packet(0x30 | (qos << 1) | (1 if retain else 0), body + payload)


def subscribe5(packet_id, entries, properties=b""):
    body = struct.pack(">H", packet_id) + props(properties)
    for topic_filter, options in entries:
        body += s16(topic_filter) + bytes([options])
    return packet(0x82, body)


class RawClient:
    """One MQTT 5.0 connection over a plain socket: sends bytes, reads whole packets."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def read(self):
        """The next packet as (first byte, body), or None when the broker closed the socket."""
        deadline = time.time() + TIMEOUT
        while True:
            if len(self.buffer) >= 2:
                length, shift, at = 0, 0, 1
                while at < len(self.buffer):
                    byte = self.buffer[at]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    at += 1
                    if not byte & 0x80:
                        break
                else:
                    at = None
                if at is not None and len(self.buffer) >= at + length:
                    first, body = self.buffer[0], self.buffer[at:at + length]
                    self.buffer = self.buffer[at + length:]
                    return first, body
            if time.time() > deadline:
                raise AssertionError("no packet within the deadline")
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk

    def expect(self, packet_type):
        got = self.read()
        assert got is not None, "closed while waiting for packet type %d" % packet_type
        assert got[0] >> 4 == packet_type, "got packet type %d, wanted %d" % (got[0] >> 4,
                                                                              packet_type)
        return got[1]

    def closed(self):
        return self.read() is None

    def close(self):
        self.sock.close()


def reason_of_disconnect(body):
    return body[0] if body else 0x00


# ---- Paho MQTTv5 ----------------------------------------------------------------------------

class Paho5:
    """A Paho MQTTv5 client with its network loop on a thread and its messages in a list."""

    def __init__(self, port, client_id="", clean_start=True, properties=None, will=None):
        self.messages = []
        self.connack = None
        self.lock = threading.Lock()
        self.acked = {}
        self.client = paho.Client(client_id=client_id, protocol=paho.MQTTv5)
        if will:
            self.client.will_set(*will)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.acked.__setitem__(mid, codes)
        self.client.on_unsubscribe = lambda c, u, mid, p, codes: self.acked.__setitem__(mid, codes)
        self.client.connect("127.0.0.1", port, clean_start=clean_start, properties=properties)
        self.client.loop_start()
        wait_until(lambda: self.connack is not None, "CONNACK")

    def _on_connect(self, client, userdata, flags, reason, properties):
        self.connack = (flags.get("session present", 0), reason, properties)

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append(message)

    def subscribe(self, topic, **options):
        result, mid = self.client.subscribe(topic, options=paho.SubscribeOptions(**options))
        assert result == paho.MQTT_ERR_SUCCESS
        wait_until(lambda: mid in self.acked, "SUBACK")
        return self.acked[mid]

    def wait_messages(self, count):
        wait_until(lambda: len(self.messages) >= count, "%d messages" % count)
        with self.lock:
            return list(self.messages)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def publish_properties(**values):
    p = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def connect_properties(**values):
    p = Properties(PacketTypes.CONNECT)
    for name, value in values.items():
        setattr(p, name, value)
    return p


class Mqtt5(unittest.TestCase):
    def setUp(self):
        self.broker = Broker()
        self.port = self.broker.mqtt_port
        self.line = LineSession(self.broker.line_port, "observer")
        self.paho = []
        self.raw = []

    def tearDown(self):
        for c in self.paho:
            c.stop()
        for r in self.raw:
            r.close()
        self.line.close()
        if self.broker is not None:
            self.assertEqual(self.broker.stop(), 0)

    def client(self, *args, **kwargs):
        c = Paho5(self.port, *args, **kwargs)
        self.paho.append(c)
        return c

    def raw_client(self, *connect_args, **connect_kwargs):
        r = RawClient(self.port)
        self.raw.append(r)
        r.send(connect5(*connect_args, **connect_kwargs))
        return r, r.expect(2)

    # -- CONNECT / CONNACK --------------------------------------------------------------------

    def test_connack_says_what_the_server_offers_and_assigns_an_id(self):
        c = self.client("")
        present, reason, properties = c.connack
        self.assertEqual(reason.value, 0)
        self.assertEqual(present, 0)
        assigned = properties.AssignedClientIdentifier
        self.assertTrue(assigned.startswith("tern-"), assigned)
        # Shared Subscription Available is absent: its default (1, available) holds.
        self.assertFalse(hasattr(properties, "SharedSubscriptionAvailable"))
        self.assertGreater(properties.MaximumPacketSize, 0)

    def test_enhanced_authentication_is_refused_with_0x8c(self):
        r = RawClient(self.port)
        self.raw.append(r)
        r.send(connect5("auth", properties=b"\x15" + s16("SCRAM-SHA-1")))
        body = r.expect(2)
        self.assertEqual(body[1], 0x8C)  # Bad authentication method
        self.assertTrue(r.closed())

    def test_session_expiry_resumes_inside_the_interval_and_ends_after_it(self):
        expiry = connect_properties(SessionExpiryInterval=1)
        first = self.client("expiring", properties=expiry)
        first.subscribe("exp/#", qos=1)
        first.stop()
        second = self.client("expiring", clean_start=False, properties=expiry)
        self.assertEqual(second.connack[0], 1, "session present inside the interval")
        second.stop()
        self.paho.remove(first)
        self.paho.remove(second)
        # 1 s offline (expiries are swept once a second): the session and its subscription end.
        wait_until(lambda: self.line.stats()["subscriptions"] == 0, "the session to expire")
        third = self.client("expiring", clean_start=False, properties=expiry)
        self.assertEqual(third.connack[0], 0, "no session after the interval")

    def test_session_expiry_zero_ends_the_session_at_disconnect(self):
        first = self.client("short", properties=connect_properties(SessionExpiryInterval=0))
        first.subscribe("short/#", qos=1)
        first.stop()
        self.paho.remove(first)
        wait_until(lambda: self.line.stats()["subscriptions"] == 0, "the session to end")
        again = self.client("short", clean_start=False)
        self.assertEqual(again.connack[0], 0)

    def test_takeover_sends_disconnect_0x8e_to_the_old_connection(self):
        old, _ = self.raw_client("twice")
        new, connack = self.raw_client("twice")
        self.assertEqual(connack[1], 0x00)
        self.assertEqual(reason_of_disconnect(old.expect(14)), 0x8E)  # Session taken over
        self.assertTrue(old.closed())

    def test_keep_alive_timeout_sends_disconnect_0x8d(self):
        watcher = self.client("ka-watcher")
        watcher.subscribe("ka/#", qos=0)
        r, _ = self.raw_client("ka", keepalive=1, will=("ka/will", "timed out", b""))
        self.assertEqual(reason_of_disconnect(r.expect(14)), 0x8D)  # after 1.5 s of silence
        self.assertTrue(r.closed())
        self.assertEqual(watcher.wait_messages(1)[0].payload, b"timed out")

    def test_sigterm_sends_disconnect_0x8b(self):
        r, _ = self.raw_client("stopping")
        broker, self.broker = self.broker, None
        self.line.close()
        self.assertEqual(broker.stop(), 0)
        self.assertEqual(reason_of_disconnect(r.expect(14)), 0x8B)  # Server shutting down
        self.assertTrue(r.closed())

    # -- PUBLISH ------------------------------------------------------------------------------

    def test_properties_pass_through_in_order_and_a_311_subscriber_gets_none(self):
        v5 = self.client("sub5")
        v5.subscribe("props/#", qos=1)
        v311 = paho.Client(client_id="sub311", protocol=paho.MQTTv311)
        got311 = []
        v311.on_message = lambda c, u, m: got311.append(m.payload)
        v311.connect("127.0.0.1", self.port)
        v311.loop_start()
        wait_until(lambda: v311.is_connected(), "3.1.1 CONNACK")
        v311.subscribe("props/#", 1)
        wait_until(lambda: self.line.stats()["subscriptions"] == 2, "two subscriptions")
        pub = self.client("pub5")
        users = [("z", "1"), ("a", "2"), ("z", "3")]  # order and repeats kept [MQTT-3.3.2-18]
        info = pub.client.publish("props/x", "héllo", qos=1, properties=publish_properties(
            UserProperty=users, ResponseTopic="reply/here", CorrelationData=b"\x00\x01",
            ContentType="text/plain", PayloadFormatIndicator=1))
        info.wait_for_publish(TIMEOUT)
        message = v5.wait_messages(1)[0]
        self.assertEqual(message.payload, "héllo".encode())
        p = message.properties
        self.assertEqual(p.UserProperty, users)
        self.assertEqual(p.ResponseTopic, "reply/here")
        self.assertEqual(p.CorrelationData, b"\x00\x01")
        self.assertEqual(p.ContentType, "text/plain")
        self.assertEqual(p.PayloadFormatIndicator, 1)
        wait_until(lambda: got311 == ["héllo".encode()], "the 3.1.1 delivery")
        v311.disconnect()
        v311.loop_stop()

    def test_message_expiry_is_enforced_and_the_remaining_interval_forwarded(self):
        offline = self.client("offline5", properties=connect_properties(SessionExpiryInterval=60))
        offline.subscribe("exp/#", qos=1)
        offline.stop()
        self.paho.remove(offline)
        pub = self.client("pub-exp")
        for payload, interval in (("short", 1), ("long", 100)):
            pub.client.publish("exp/t", payload, qos=1, properties=publish_properties(
                MessageExpiryInterval=interval)).wait_for_publish(TIMEOUT)
        for topic, interval in (("ret/short", 1), ("ret/long", 100)):
            pub.client.publish(topic, topic, qos=1, retain=True, properties=publish_properties(
                MessageExpiryInterval=interval)).wait_for_publish(TIMEOUT)
        time.sleep(1.5)  # the interval of "short" passes while it is queued (and retained)
        # Expired retained messages reach no subscriber, of any protocol.
        self.assertEqual(self.line.request("SUBSCRIBE@ret/#"), "SUBACK")
        self.assertEqual(self.line.request("PUBLISH@ret/sync@after"), "PUBACK")
        pushed = [self.line.push(), self.line.push()]  # the replay, then the live message
        self.assertEqual(pushed, ["RETAINED@ret/long@ret/long", "MESSAGE@ret/sync@after"])
        # LIST shows only what is still retained.
        listed = json.loads(self.line.request("LIST@ret/#")[len("LIST@"):])
        self.assertEqual(listed, {"ret/long": "ret/long"})
        got311 = []
        v311 = paho.Client(client_id="ret311", protocol=paho.MQTTv311)
        v311.on_message = lambda c, u, m: got311.append(m.payload)
        v311.connect("127.0.0.1", self.port)
        v311.loop_start()
        v311.subscribe("ret/#", 1)
        wait_until(lambda: b"ret/long" in got311, "the unexpired retained message")
        time.sleep(0.3)
        self.assertEqual(got311, [b"ret/long"])
        v311.disconnect()
        v311.loop_stop()
        back = self.client("offline5", clean_start=False,
                           properties=connect_properties(SessionExpiryInterval=60))
        messages = back.wait_messages(1)
        time.sleep(0.3)  # nothing else arrives
        self.assertEqual([m.payload for m in back.messages], [b"long"])
        left = messages[0].properties.MessageExpiryInterval
        self.assertTrue(97 <= left <= 99, left)
        self.assertGreaterEqual(self.line.stats()["drops"]["expired"], 3)

    def test_acknowledgement_reason_codes(self):
        r, _ = self.raw_client("utf8")
        r.send(publish5("u/t", b"\xff\xfe", qos=1, packet_id=3, properties=b"\x01\x01"))
        self.assertEqual(r.expect(4), b"\x00\x03\x99")  # Payload format invalid
        r.send(publish5("u/t", "ok ü".encode(), qos=1, packet_id=4, properties=b"\x01\x01"))
        self.assertEqual(r.expect(4), b"\x00\x04")  # Success, short form
        r.send(publish5("$SYS/x", b"mine", qos=1, packet_id=5))
        self.assertEqual(r.expect(4), b"\x00\x05\x87")  # $SYS is the broker's: Not authorized
        r.send(packet(0x62, b"\x00\x63"))  # PUBREL of an id never received
        self.assertEqual(r.expect(7), b"\x00\x63\x92")  # Packet Identifier not found

    def test_protocol_errors_get_a_disconnect_with_their_reason(self):
        cases = [
            ("topic alias above the maximum", publish5("t", b"x", properties=b"\x23\x00\x11"),
             0x94),
            ("topic alias never set", publish5("", b"x", properties=b"\x23\x00\x02"), 0x82),
            ("malformed property", publish5("t", b"x", properties=b"\x7f\x00"), 0x81),
            ("repeated property", publish5("t", b"x", properties=b"\x01\x00\x01\x00"), 0x82),
            ("AUTH without a method", packet(0xF0, b"\x18\x00"), 0x82),
            ("subscription identifier 0", subscribe5(1, [("a", 0)], b"\x0b\x00"), 0x82),
        ]
        for what, data, reason in cases:
            with self.subTest(what):
                r, _ = self.raw_client("errors")
                r.send(data)
                body = r.expect(14)
                self.assertEqual(reason_of_disconnect(body), reason)
                self.assertTrue(r.closed())

    # -- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------------------------

    def test_suback_and_unsuback_reason_codes(self):
        r, _ = self.raw_client("codes")
        r.send(subscribe5(7, [("ok/#", 1), ("bad/#/x", 0), ("$share/g/t", 0), ("nl", 0x06)]))
        self.assertEqual(r.expect(9), b"\x00\x07\x00" + bytes([0x01, 0x8F, 0x00, 0x02]))
        r.send(packet(0xA2, b"\x00\x08" + props() + s16("ok/#") + s16("never")))
        self.assertEqual(r.expect(11), b"\x00\x08\x00\x00\x11")  # Success, No subscription existed

    def test_retain_handling(self):
        self.assertEqual(self.line.request("PUBLISH@rh/t@kept@retain"), "PUBACK")
        r, _ = self.raw_client("rh")
        r.send(subscribe5(1, [("rh/#", 0x20)]))  # 2: never
        r.expect(9)
        r.send(subscribe5(2, [("rh2/#", 0x10)]))  # 1: only when new (it is)
        r.expect(9)
        self.assertEqual(self.line.request("PUBLISH@rh2/t@also@retain"), "PUBACK")
        # The live publish to rh2/t arrives; then RH 1 on the existing rh2/# sends nothing more,
        # while RH 0 on rh/# sends the retained message.
        live = r.expect(3)
        self.assertIn(b"also", live)
        r.send(subscribe5(3, [("rh2/#", 0x10)]))
        r.expect(9)
        r.send(subscribe5(4, [("rh/#", 0x00)]))
        r.expect(9)
        retained = r.read()
        self.assertEqual(retained[0] & 0x01, 1, "retain flag")
        self.assertIn(b"kept", retained[1])

    def test_no_local_and_retain_as_published(self):
        c = self.client("self")
        c.subscribe("nl/#", qos=1, noLocal=True)
        c.subscribe("rap/#", qos=1, retainAsPublished=True)
        other = self.client("other")
        for who in (c, other):
            who.client.publish("nl/t", "from " + who.client._client_id.decode(),
                               qos=1).wait_for_publish(TIMEOUT)
        got = c.wait_messages(1)
        time.sleep(0.3)
        self.assertEqual([m.payload for m in c.messages], [b"from other"])  # not its own
        other.client.publish("rap/t", "kept", qos=1, retain=True).wait_for_publish(TIMEOUT)
        other.client.publish("rap/t", "live", qos=1).wait_for_publish(TIMEOUT)
        got = c.wait_messages(3)
        self.assertEqual([(m.payload, m.retain) for m in got[1:]], [(b"kept", 1), (b"live", 0)])
        # A 3.1.1-style subscriber gets the retain flag 0 on live deliveries.
        plain = self.client("plain")
        plain.subscribe("rap2/#", qos=1)
        other.client.publish("rap2/t", "x", qos=1, retain=True).wait_for_publish(TIMEOUT)
        self.assertEqual(plain.wait_messages(1)[0].retain, 0)

    def test_subscription_identifiers_several_per_delivery(self):
        r, connack = self.raw_client("ids")
        self.assertNotIn(b"\x29\x00", connack, "Subscription Identifier Available is not 0")
        r.send(subscribe5(1, [("id/#", 1)], b"\x0b\x07"))
        r.expect(9)
        r.send(subscribe5(2, [("id/+", 0)], b"\x0b\x81\x01"))  # 129, two bytes
        r.expect(9)
        r.send(subscribe5(3, [("id/x", 0)]))  # no identifier
        r.expect(9)
        self.assertEqual(self.line.request("PUBLISH@id/x@both"), "PUBACK")
        body = r.expect(3)
        topic_end = 2 + len("id/x")
        self.assertIn(b"\x0b\x07", body[topic_end:])
        self.assertIn(b"\x0b\x81\x01", body[topic_end:])
        self.assertTrue(body.endswith(b"both"))

    def test_topic_aliases_both_ways(self):
        r, connack = self.raw_client("alias-sub", properties=b"\x22\x00\x04")  # TAM 4
        self.assertIn(b"\x22\x00\x10", connack, "Topic Alias Maximum 16 offered")
        r.send(subscribe5(1, [("al/#", 0)]))
        r.expect(9)
        pub, _ = self.raw_client("alias-pub")
        pub.send(publish5("al/long/topic", b"one", properties=b"\x23\x00\x01"))
        pub.send(publish5("", b"two", properties=b"\x23\x00\x01"))  # the alias alone
        first, second = r.expect(3), r.expect(3)
        # Towards the subscriber: the topic and alias 1 first, then the alias alone.
        self.assertEqual(first, s16("al/long/topic") + props(b"\x23\x00\x01") + b"one")
        self.assertEqual(second, s16("") + props(b"\x23\x00\x01") + b"two")
        # A subscriber that accepts no aliases gets the topic every time.
        plain = self.client("alias-plain")
        plain.subscribe("al/#", qos=0)
        pub.send(publish5("", b"three", properties=b"\x23\x00\x01"))
        self.assertEqual(plain.wait_messages(1)[0].topic, "al/long/topic")

    def test_outbound_topic_aliases_stop_at_the_clients_maximum(self):
        r, _ = self.raw_client("alias-cap", properties=b"\x22\x00\x02")  # TAM 2
        r.send(subscribe5(1, [("cap/#", 0)]))
        r.expect(9)
        for topic in ("cap/a", "cap/b", "cap/c", "cap/a"):
            self.assertEqual(self.line.request("PUBLISH@%s@x" % topic), "PUBACK")
        got = [r.expect(3) for _ in range(4)]
        self.assertEqual(got[0], s16("cap/a") + props(b"\x23\x00\x01") + b"x")
        self.assertEqual(got[1], s16("cap/b") + props(b"\x23\x00\x02") + b"x")
        self.assertEqual(got[2], s16("cap/c") + props() + b"x")  # no alias left: in full
        self.assertEqual(got[3], s16("") + props(b"\x23\x00\x01") + b"x")

    def test_more_qos2_than_the_receive_maximum_gets_disconnect_0x93(self):
        small = Broker("--max-awaiting-rel", "2")
        try:
            r = RawClient(small.mqtt_port)
            r.send(connect5("rm-server"))
            self.assertIn(b"\x21\x00\x02", r.expect(2), "Receive Maximum 2 announced")
            for packet_id in (1, 2):
                r.send(publish5("q2/t", b"x", qos=2, packet_id=packet_id))
                r.expect(5)  # PUBREC; no PUBREL: both stay awaiting release
            r.send(publish5("q2/t", b"x", qos=2, packet_id=3))
            self.assertEqual(reason_of_disconnect(r.expect(14)), 0x93)
            self.assertTrue(r.closed())
            r.close()
        finally:
            self.assertEqual(small.stop(), 0)

    # -- Flow control and limits --------------------------------------------------------------

    def test_receive_maximum_of_the_client_is_honoured(self):
        r, _ = self.raw_client("slow", properties=b"\x21\x00\x02")  # Receive Maximum 2
        r.send(subscribe5(1, [("rm/#", 1)]))
        r.expect(9)
        pub = self.client("rm-pub")
        for i in range(5):  # QoS 1: the Receive Maximum counts unacknowledged QoS 1 and 2 only
            pub.client.publish("rm/t", "m%d" % i, qos=1).wait_for_publish(TIMEOUT)
        first, second = r.expect(3), r.expect(3)
        r.sock.settimeout(0.5)
        try:
            extra = r.buffer + r.sock.recv(100)
        except socket.timeout:
            extra = r.buffer
        r.sock.settimeout(TIMEOUT)
        self.assertEqual(extra, b"", "a third would pass the client's Receive Maximum")
        packet_id = first[2 + len("rm/t"):4 + len("rm/t")]
        r.send(packet(0x40, packet_id))  # PUBACK the first: one more may come
        self.assertIn(b"m2", r.expect(3))
        self.assertIn(b"m1", second)

    def test_maximum_packet_size_of_the_client_is_honoured_and_counted(self):
        r, _ = self.raw_client("small", properties=b"\x27\x00\x00\x00\x40")  # 64 bytes
        r.send(subscribe5(1, [("mps/#", 0)]))
        r.expect(9)
        self.assertEqual(self.line.request("PUBLISH@mps/t@" + "x" * 200), "PUBACK")
        self.assertEqual(self.line.request("PUBLISH@mps/t@small"), "PUBACK")
        self.assertIn(b"small", r.expect(3))  # the large one was not sent
        self.assertEqual(self.line.stats()["drops"]["too_large"], 1)

    # -- Wills --------------------------------------------------------------------------------

    def test_disconnect_with_will_publishes_it_and_a_normal_one_does_not(self):
        watcher = self.client("watcher")
        watcher.subscribe("will/#", qos=1)
        for client_id, reason, expected in (("w1", 0x04, [b"w1 gone"]), ("w2", 0x00, [])):
            r, _ = self.raw_client(client_id, will=("will/" + client_id, client_id + " gone",
                                                    b"\x26" + s16("k") + s16("v")))
            r.send(packet(0xE0, bytes([reason])))
            self.assertTrue(r.closed())
            time.sleep(0.3)
            got = [m.payload for m in watcher.messages if m.topic == "will/" + client_id]
            self.assertEqual(got, expected, client_id)
        self.assertEqual(watcher.messages[0].properties.UserProperty, [("k", "v")])

    def test_will_delay_interval(self):
        watcher = self.client("delay-watcher")
        watcher.subscribe("delay/#", qos=1)

        def wills(name):
            return [m.payload for m in watcher.messages if m.topic == "delay/" + name]
        will_delay_1 = b"\x18\x00\x00\x00\x01"
        # Delay 1 s, session 60 s: sent after the delay, not at once.
        r, _ = self.raw_client("d1", properties=b"\x11\x00\x00\x00\x3c",
                               will=("delay/d1", "d1 gone", will_delay_1))
        r.close()
        time.sleep(0.3)
        self.assertEqual(wills("d1"), [])
        wait_until(lambda: wills("d1") == [b"d1 gone"], "the delayed will")
        # A reconnect inside the delay cancels it.
        r, _ = self.raw_client("d2", properties=b"\x11\x00\x00\x00\x3c",
                               will=("delay/d2", "d2 gone", will_delay_1))
        r.close()
        d2_closed = time.time()
        # (with a will of its own, which must wait for this connection's end)
        again, connack = self.raw_client("d2", clean=False,
                                         properties=b"\x11\x00\x00\x00\x3c",
                                         will=("delay/d2", "d2 again", will_delay_1))
        self.assertEqual(connack[0], 1, "session present")
        # Delay 30 s, session 1 s: sent when the session ends.
        r, _ = self.raw_client("d3", properties=b"\x11\x00\x00\x00\x01",
                               will=("delay/d3", "d3 gone", b"\x18\x00\x00\x00\x1e"))
        r.close()
        wait_until(lambda: wills("d3") == [b"d3 gone"], "the will at the session's end")
        time.sleep(max(0.0, d2_closed + 2.5 - time.time()))  # past d2's delay and a sweep
        self.assertEqual(wills("d2"), [])

    # -- mosquitto_pub / mosquitto_sub -V mqttv5 -----------------------------------------------

    def test_mosquitto_clients_v5_with_properties(self):
        sub = subprocess.Popen(
            ["mosquitto_sub", "-p", str(self.port), "-V", "mqttv5", "-t", "mq/#", "-C", "1",
             "-F", "%t|%p|%P|%E", "-q", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: self.line.stats()["subscriptions"] == 1, "mosquitto_sub's subscription")
        pub = run("mosquitto_pub", "-p", str(self.port), "-V", "mqttv5", "-t", "mq/x", "-m", "hi",
                  "-q", "1", "-D", "publish", "user-property", "k", "v", "-D", "publish",
                  "message-expiry-interval", "30")
        self.assertEqual(pub.returncode, 0, pub.stderr)
        out, err = sub.communicate(timeout=TIMEOUT)
        self.assertEqual(sub.returncode, 0, err)
        topic, payload, users, expiry = out.strip().split("|")
        self.assertEqual((topic, payload, users), ("mq/x", "hi", "k:v"))
        self.assertIn(int(expiry), (29, 30))


if __name__ == "__main__":
    mqtt_harness.main()
