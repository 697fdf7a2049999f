"""MQTT over WebSockets (issue 14): `broker --ws-port` speaks MQTT 3.1.1/5.0 in binary WebSocket
frames (RFC 6455, subprotocol "mqtt") to the same topic space as the TCP listeners.

Stock: Eclipse Paho (python3-paho-mqtt, its websockets transport) and mosquitto_sub over TCP
exchange messages both ways, a 1 MB message included (which crosses workers: CONNECT hands the
connection to its session's home worker, so framing and decoding follow it).
BadInput: a raw socket speaks broken HTTP and broken frames; each gets the HTTP status or the
close code RFC 6455 names (400, 403 for an Origin off --ws-origin, 405, 426, 431; 1002 for an
unmasked frame, 1003 for a text frame [MQTT-6.0.0-1], 1009 for a frame over the limit), ping is
answered with pong, a close with a close, a request that never ends is closed at
--handshake-timeout; the broker serves on after all of it.

Secure: the Stock tests again over `--wss-port` (TLS under the WebSocket layer; certificates
made at test time by openssl, as tls_test.py does).

Run by ctest as WebSocket.Stock, WebSocket.Secure and WebSocket.BadInput (tests/CMakeLists.txt).
"""
import base64
import os
import socket
import struct
import tempfile
import threading
import time
import unittest

import paho.mqtt.client as paho

import mqtt_harness as h
from mqtt_harness import TIMEOUT, run
from tls_test import Certificates

KEY = base64.b64encode(b"0123456789abcdef").decode()


def upgrade(port, extra="", method="GET", version="13"):
    return ("%s /mqtt HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: %s\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n%s\r\n" % (method, port, KEY, version, extra)).encode()


def frame(opcode, payload, mask=True):
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = b"\x37\xfa\x21\x3d"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_until_closed(s):
    """Everything the broker sends until it closes the connection."""
    data = b""
    s.settimeout(TIMEOUT)
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def read_response(s):
    s.settimeout(TIMEOUT)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode(), rest


# MQTT 3.1.1 CONNECT (clean session, keep-alive 60) of client id "raw".
CONNECT = bytes([0x10, 15, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 3]) + b"raw"


class Stock(unittest.TestCase):
    def setUp(self):
        self.broker = h.Broker("--ws-port", "auto", listeners=("mqtt+ws",))
        self.port = self.broker.ports["mqtt+ws"]

    def tearDown(self):
        self.assertEqual(self.broker.stop(), 0)

    ca = None  # Secure: the CA of the broker's certificate

    def client(self, name, protocol=paho.MQTTv311):
        c = paho.Client(client_id=name, transport="websockets", protocol=protocol)
        if self.ca:
            c.tls_set(ca_certs=self.ca)
        got = []
        arrived = threading.Condition()

        def on_message(_c, _u, m):
            with arrived:
                got.append((m.topic, m.payload))
                arrived.notify_all()

        c.on_message = on_message
        c.subscribed = threading.Event()
        c.on_subscribe = lambda *_args: c.subscribed.set()
        c.connect("127.0.0.1", self.port, keepalive=30)
        c.loop_start()
        self.addCleanup(c.loop_stop)
        self.addCleanup(c.disconnect)
        return c, got, arrived

    def wait_for(self, got, arrived, n):
        with arrived:
            self.assertTrue(arrived.wait_for(lambda: len(got) >= n, TIMEOUT), got)

    def test_paho_over_websockets_and_tcp_clients_exchange_messages(self):
        for protocol in (paho.MQTTv311, paho.MQTTv5):
            with self.subTest(protocol=protocol):
                prefix = "v%d" % protocol
                c, got, arrived = self.client("ws-" + prefix, protocol)
                c.subscribe(prefix + "/to-ws/#", qos=1)
                self.assertTrue(c.subscribed.wait(TIMEOUT))
                # TCP -> WebSocket.
                pub = run("mosquitto_pub", "-p", str(self.broker.mqtt_port), "-q", "1",
                          "-t", prefix + "/to-ws/a", "-m", "from tcp")
                self.assertEqual(pub.returncode, 0, pub.stderr)
                self.wait_for(got, arrived, 1)
                self.assertEqual(got[0], (prefix + "/to-ws/a", b"from tcp"))
                # WebSocket -> TCP, retained so that mosquitto_sub gets it after the fact.
                c.publish(prefix + "/to-tcp", b"from ws", qos=1, retain=True).wait_for_publish()
                sub = run("mosquitto_sub", "-p", str(self.broker.mqtt_port), "-t",
                          prefix + "/to-tcp", "-C", "1", "-W", str(int(TIMEOUT)))
                self.assertEqual(sub.returncode, 0, sub.stderr)
                self.assertEqual(sub.stdout, "from ws\n")

    def test_a_megabyte_crosses_both_ways(self):
        receiver, got, arrived = self.client("ws-big-r")
        receiver.subscribe("big/#", qos=1)
        self.assertTrue(receiver.subscribed.wait(TIMEOUT))
        sender, _, _ = self.client("ws-big-s")
        # A megabyte each (just under --max-packet-size, 1 MiB with the headers).
        payloads = [os.urandom(1_000_000), bytes(range(256)) * 3900]
        for i, p in enumerate(payloads):
            sender.publish("big/%d" % i, p, qos=1).wait_for_publish(TIMEOUT)
        self.wait_for(got, arrived, 2)
        self.assertEqual(sorted(got), [("big/%d" % i, p) for i, p in enumerate(payloads)])


class Secure(Stock):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        certs = Certificates(self.dir.name)
        self.ca = certs.ca
        self.broker = h.Broker("--tls-cert", certs.server_cert, "--tls-key", certs.server_key,
                               "--tls-port", "off", "--mqtt-tls-port", "off", "--wss-port", "auto",
                               listeners=("mqtt+wss",))
        self.port = self.broker.ports["mqtt+wss"]


class BadInput(unittest.TestCase):
    def setUp(self):
        self.broker = h.Broker("--ws-port", "auto", "--ws-origin", "https://good.example",
                               "--handshake-timeout", "1", listeners=("mqtt+ws",))
        self.port = self.broker.ports["mqtt+ws"]

    def tearDown(self):
        # After everything below, the broker still serves a good client.
        s = self.open()
        s.sendall(frame(2, CONNECT))
        s.settimeout(TIMEOUT)
        self.assertEqual(s.recv(6)[:2], b"\x82\x04")  # a binary frame with the CONNACK
        s.close()
        self.assertEqual(self.broker.stop(), 0)

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        self.addCleanup(s.close)
        return s

    def open(self):
        s = self.connect()
        s.sendall(upgrade(self.port, "Origin: https://good.example\r\n"))
        head, rest = read_response(s)
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        self.assertIn("Sec-WebSocket-Protocol: mqtt", head)
        self.assertEqual(rest, b"")
        return s

    def test_bad_handshakes_get_the_http_status_the_rfc_names(self):
        p = self.port
        cases = [
            (b"garbage\r\n\r\n", "400"),
            (upgrade(p, method="POST"), "405"),
            (upgrade(p, version="8"), "426"),
            (upgrade(p, "Origin: https://evil.example\r\n"), "403"),
            (upgrade(p).replace(b"Upgrade: websocket\r\n", b""), "400"),
            (b"GET / HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n", "431"),
        ]
        for request, status in cases:
            with self.subTest(status=status, request=request[:40]):
                s = self.connect()
                s.sendall(request)
                answer = read_until_closed(s).decode(errors="replace")
                self.assertTrue(answer.startswith("HTTP/1.1 " + status), answer[:200])

    def test_a_handshake_that_never_ends_is_closed_at_the_handshake_timeout(self):
        s = self.connect()
        s.sendall(upgrade(self.port)[:40])
        started = time.time()
        self.assertEqual(read_until_closed(s), b"")
        self.assertLess(time.time() - started, TIMEOUT)

    def close_code(self, data):
        self.assertGreaterEqual(len(data), 4, data)
        self.assertEqual(data[0], 0x88, data)
        return struct.unpack(">H", data[2:4])[0]

    def test_broken_frames_close_with_the_codes_the_rfc_names(self):
        cases = [
            ("unmasked", frame(2, CONNECT, mask=False), 1002),
            ("text", frame(1, b"hello"), 1003),
            ("reserved bit", bytes([0xc2]) + frame(2, b"x")[1:], 1002),
            # A frame announcing 1 TiB; libwslay judges a frame's length when its first payload
            # byte arrives, so one is sent.
            ("too large", bytes([0x82, 0xff]) + struct.pack(">Q", 1 << 40) + b"\0\0\0\0x", 1009),
            ("unknown opcode", frame(3, b""), 1002),
        ]
        for name, data, code in cases:
            with self.subTest(name):
                s = self.open()
                s.sendall(data)
                self.assertEqual(self.close_code(read_until_closed(s)), code)

    def test_ping_is_answered_and_a_close_is_echoed(self):
        s = self.open()
        s.sendall(frame(9, b"are you there"))
        self.assertEqual(s.recv(64), b"\x8a\x0dare you there")
        s.sendall(frame(8, struct.pack(">H", 1000) + b"bye"))
        self.assertEqual(read_until_closed(s), b"\x88\x05\x03\xe8bye")

    def test_an_mqtt_protocol_error_closes_the_connection_as_over_tcp(self):
        s = self.open()
        s.sendall(frame(2, b"\x30\x00"))  # PUBLISH before CONNECT: a protocol violation
        self.assertEqual(read_until_closed(s), b"")  # closed at once, nothing more sent

    def test_disconnect_ends_with_the_close_handshake(self):
        s = self.open()
        s.sendall(frame(2, CONNECT))
        self.assertEqual(s.recv(6), b"\x82\x04\x20\x02\x00\x00")  # CONNACK, accepted
        s.sendall(frame(2, b"\xe0\x00"))  # DISCONNECT
        self.assertEqual(self.close_code(read_until_closed(s)), 1000)


if __name__ == "__main__":
    h.main()
