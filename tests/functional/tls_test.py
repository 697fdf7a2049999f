"""TLS and credentials with stock clients (issue 12): mosquitto_pub/sub with --cafile, --cert/--key
and -u/-P, a password file made by mosquitto_passwd, Paho with TLS and a password, openssl s_client
speaking the line protocol, client certificates as user names, the ATTACH identity rule, a reload
of the certificate, and bad input on the TLS ports (garbage, plain text, a handshake that stops).

Certificates are made at test time by `openssl req` into a temporary directory; no key is committed.
Run by ctest as MqttStockClients.Tls (tests/CMakeLists.txt).
"""
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import paho.mqtt.client as paho

import mqtt_harness as h
from mqtt_harness import run, wait_until


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=h.TIMEOUT)


class Certificates:
    """A CA, a server certificate for 127.0.0.1 and client certificates, by `openssl req`."""

    def __init__(self, directory, name="ca"):
        self.dir = directory
        self.ca_key = os.path.join(directory, name + ".key")
        self.ca = os.path.join(directory, name + ".pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.ca_key, "-out", self.ca, "-days", "2", "-subj", "/CN=" + name)
        self.server_cert, self.server_key = self.issue("localhost", name + "-server",
                                                       "subjectAltName=IP:127.0.0.1,DNS:localhost")

    def issue(self, common_name, base, extension=None):
        key = os.path.join(self.dir, base + ".key")
        csr = os.path.join(self.dir, base + ".csr")
        cert = os.path.join(self.dir, base + ".crt")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=" + common_name)
        extra = []
        if extension:
            ext = os.path.join(self.dir, base + ".ext")
            with open(ext, "w") as f:
                f.write(extension + "\n")
            extra = ["-extfile", ext]
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                "-CAcreateserial", "-out", cert, "-days", "2", *extra)
        return cert, key


class TlsBroker(h.Broker):
    """A broker with TLS listeners; tls_line_port and tls_mqtt_port from its start-up lines."""

    def __init__(self, certs, *extra, cert=None, key=None):
        super().__init__("--tls-cert", cert or certs.server_cert, "--tls-key",
                         key or certs.server_key, "--tls-port", "auto", "--mqtt-tls-port", "auto",
                         *extra)
        ports = {}
        deadline = time.time() + h.TIMEOUT
        while len(ports) < 2 and time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            for kind in ("line protocol+tls", "mqtt+tls"):
                if line.strip().endswith("(" + kind + ")"):
                    ports[kind] = int(line.split(":")[1].split(" ")[0])
        if len(ports) < 2:
            self.stop()
            raise RuntimeError("broker did not report its TLS listeners")
        self.tls_line_port = ports["line protocol+tls"]
        self.tls_mqtt_port = ports["mqtt+tls"]

    def log_text(self):
        self.log.seek(0)
        return self.log.read()


def tls_socket(port, ca, cert=None, key=None):
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=h.TIMEOUT)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def read_line(sock, buffer=b""):
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        buffer += chunk
    line, _, rest = buffer.partition(b"\n")
    return line.decode("utf-8", "replace"), rest


def request(sock, frame):
    sock.sendall(frame.encode() + b"\n")
    return read_line(sock)[0]


def closed_by_peer(sock):
    """True once the peer closes `sock` (reads until EOF or an error, within the deadline)."""
    sock.settimeout(h.TIMEOUT)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True
    except socket.timeout:
        return False


class SClient:
    """One `openssl s_client` process: a TLS socket driven through its stdin and stdout."""

    def __init__(self, port, ca):
        self.proc = subprocess.Popen(
            ["openssl", "s_client", "-quiet", "-connect", "127.0.0.1:%d" % port, "-CAfile", ca,
             "-verify_return_error", "-verify_ip", "127.0.0.1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buffer = b""

    def send(self, frame):
        self.proc.stdin.write(frame.encode() + b"\n")
        self.proc.stdin.flush()

    def line(self):
        deadline = time.time() + h.TIMEOUT
        while b"\n" not in self.buffer:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise AssertionError("s_client: no line in time")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError("s_client ended")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def close(self):
        # -quiet implies -ign_eof: s_client does not end at the end of its input.
        self.proc.terminate()
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=h.TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def paho_connect(port, ca, username=None, password=None, cert=None, key=None, client_id="paho"):
    """Connects Paho 3.1.1 over TLS; returns (client, CONNACK return code)."""
    client = paho.Client(client_id=client_id, protocol=paho.MQTTv311)
    client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
    if username is not None:
        client.username_pw_set(username, password)
    result = {}
    client.on_connect = lambda c, u, f, rc: result.setdefault("rc", rc)
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_until(lambda: "rc" in result, "CONNACK")
    return client, result["rc"]


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tern-tls-")
        cls.certs = Certificates(cls.dir)
        cls.alice = cls.certs.issue("alice", "alice")
        cls.bob = cls.certs.issue("bob", "bob")
        cls.other = Certificates(os.path.join(cls.dir), name="otherca")
        cls.mallory = cls.other.issue("alice", "mallory")  # right name, untrusted CA

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def broker(self, *extra, **kw):
        b = TlsBroker(self.certs, *extra, **kw)
        self.addCleanup(b.stop)
        return b

    def sub(self, port, topic, count, *extra):
        return subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-C", str(count),
             "-W", str(int(h.TIMEOUT)), "-v", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def pub(self, port, topic, message, *extra):
        return run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-m",
                   message, *extra)

    def wait_subscribed(self, broker, count):
        session = h.LineSession(broker.line_port, "watcher%d" % count)
        try:
            wait_until(lambda: session.stats()["subscriptions"] >= count, "the subscription")
        finally:
            session.close()

    def test_mosquitto_clients_over_tls_and_across_protocols(self):
        b = self.broker()
        ca = ["--cafile", self.certs.ca]
        sub = self.sub(b.tls_mqtt_port, "t/#", 2, *ca)
        self.wait_subscribed(b, 1)
        line = h.LineSession(b.line_port, "plain")
        self.assertEqual(line.request("SUBSCRIBE@t/#"), "SUBACK")
        self.assertEqual(self.pub(b.tls_mqtt_port, "t/a", "over tls", *ca).returncode, 0)
        big = "x" * 200_000  # many TLS records
        big_file = os.path.join(self.dir, "big")
        with open(big_file, "w") as f:
            f.write(big)
        r = run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.tls_mqtt_port), "-t", "t/big",
                "-f", big_file, *ca)
        self.assertEqual(r.returncode, 0, r.stderr)
        out, err = sub.communicate(timeout=h.TIMEOUT)
        self.assertEqual(sub.returncode, 0, err)
        self.assertEqual(out.splitlines(), ["t/a over tls", "t/big " + big])
        self.assertEqual(line.push(), "MESSAGE@t/a@over tls")
        # And the other way: a plain publish reaches the TLS subscriber.
        sub = self.sub(b.tls_mqtt_port, "u", 1, *ca)
        self.wait_subscribed(b, 2)
        self.assertEqual(line.request("PUBLISH@u@from plain"), "PUBACK")
        out, err = sub.communicate(timeout=h.TIMEOUT)
        self.assertEqual(out.strip(), "u from plain", err)
        stats = line.stats()
        self.assertGreaterEqual(stats["tls"]["handshakes"], 4)
        self.assertEqual(stats["tls"]["failures"], 0)
        line.close()

    def test_a_client_that_does_not_trust_the_server_fails(self):
        b = self.broker()
        r = self.pub(b.tls_mqtt_port, "t", "x", "--cafile", self.other.ca)
        self.assertNotEqual(r.returncode, 0)
        wait_until(lambda: h.LineSession(b.line_port, "s").stats()["tls"]["failures"] >= 1,
                   "the failed handshake counted")

    def test_passwords_from_mosquitto_passwd_over_tls(self):
        passwords = os.path.join(self.dir, "passwords")
        r = run("mosquitto_passwd", "-c", "-b", passwords, "alice", "wonderland")
        self.assertEqual(r.returncode, 0, r.stderr)
        # --max-line: a 100 KB password is a frame like any other (a longer line than the limit is
        # ERROR@too-long, tests/functional/hostile_input_test.cpp).
        b = self.broker("--password-file", passwords, "--max-line", "200000")
        ca = ["--cafile", self.certs.ca]
        # Retained, so that the subscriber started afterwards sees what was accepted, only that.
        refused = self.pub(b.tls_mqtt_port, "t", "bad", *ca, "-u", "alice", "-P", "nope", "-r")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("not authori", (refused.stderr + refused.stdout).lower())
        ok = self.pub(b.tls_mqtt_port, "t", "good", *ca, "-u", "alice", "-P", "wonderland", "-r")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        sub = self.sub(b.tls_mqtt_port, "t", 1, *ca, "-u", "alice", "-P", "wonderland")
        out, err = sub.communicate(timeout=h.TIMEOUT)
        self.assertEqual(out.strip(), "t good", err)
        # Paho over TLS: the right password, a wrong one, none, and the longest MQTT carries.
        client, rc = paho_connect(b.tls_mqtt_port, self.certs.ca, "alice", "wonderland")
        self.assertEqual(rc, 0)
        client.loop_stop()
        client.disconnect()
        for password in ("wrong", None, "p" * 65_535):
            client, rc = paho_connect(b.tls_mqtt_port, self.certs.ca, "alice", password)
            self.assertEqual(rc, 5, password and password[:10])  # not authorized
            client.loop_stop()
        client, rc = paho_connect(b.tls_mqtt_port, self.certs.ca)  # anonymous: refused
        self.assertEqual(rc, 5)
        client.loop_stop()
        # The line protocol over TLS, with openssl s_client: one session's three sockets.
        first = SClient(b.tls_line_port, self.certs.ca)
        self.addCleanup(first.close)
        first.send("CONNECT@sc@alice@nope")
        self.assertTrue(first.line().startswith("ERROR@not-authorized@"))
        first.send("CONNECT@sc@alice@wonderland")
        reply = first.line()
        self.assertTrue(reply.startswith("CONNACK@sc@"), reply)
        token = reply.split("@")[2]
        second = SClient(b.tls_line_port, self.certs.ca)
        push = SClient(b.tls_line_port, self.certs.ca)
        self.addCleanup(second.close)
        self.addCleanup(push.close)
        second.send("ATTACH@%s@request" % token)
        self.assertEqual(second.line(), "ATTACHACK@request")
        push.send("ATTACH@%s@push" % token)
        self.assertEqual(push.line(), "ATTACHACK@push")
        first.send("SUBSCRIBE@news")
        self.assertEqual(first.line(), "SUBACK")
        ok = self.pub(b.tls_mqtt_port, "news", "hi", *ca, "-u", "alice", "-P", "wonderland")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertEqual(push.line(), "MESSAGE@news@hi")
        second.send("PUBLISH@news@from s_client")
        self.assertEqual(second.line(), "PUBACK")
        self.assertEqual(push.line(), "MESSAGE@news@from s_client")
        # A 100 KB password on the line protocol: checked and refused like any wrong one, and the
        # socket may try again.
        sock = tls_socket(b.tls_line_port, self.certs.ca)
        reply = request(sock, "CONNECT@big@alice@" + "p" * 100_000)
        self.assertTrue(reply.startswith("ERROR@not-authorized@"), reply)
        self.assertTrue(request(sock, "CONNECT@big@alice@wonderland").startswith("CONNACK@big@"))
        sock.close()

    def test_terns_own_client_and_loadgen_over_tls_with_credentials(self):
        passwords = os.path.join(self.dir, "passwords-tools")
        r = run("mosquitto_passwd", "-c", "-b", passwords, "alice", "wonderland")
        self.assertEqual(r.returncode, 0, r.stderr)
        password_file = os.path.join(self.dir, "alice-password")
        with open(password_file, "w") as f:
            f.write("wonderland\n")
        b = self.broker("--password-file", passwords)
        tools = os.path.dirname(h.BROKER)
        common = ["--host", "127.0.0.1", "--tls", "--cafile", self.certs.ca, "--username",
                  "alice", "--password-file", password_file]
        sub = subprocess.Popen(
            [os.path.join(tools, "client"), "sub", "-t", "tools/#", "-C", "1", "-W",
             str(int(h.TIMEOUT)), "-v", "-p", str(b.tls_line_port), *common],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Retained, so that the subscriber gets it whenever its subscription lands.
        wait_until(lambda: self.pub(b.tls_mqtt_port, "tools/ping", "p", "--cafile",
                                    self.certs.ca, "-u", "alice", "-P", "wonderland",
                                    "-r").returncode == 0, "a retained ping")
        out, err = sub.communicate(timeout=h.TIMEOUT)
        self.assertEqual(sub.returncode, 0, err)
        self.assertEqual(out.strip(), "tools/ping p")
        r = run(os.path.join(tools, "client"), "pub", "-t", "tools/x", "-m", "bad", "-p",
                str(b.tls_line_port), "--host", "127.0.0.1", "--tls", "--cafile", self.certs.ca,
                "--username", "alice", "--password", "nope")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not-authorized", r.stderr + r.stdout)
        for protocol, port in (("line", b.tls_line_port), ("mqtt", b.tls_mqtt_port),
                               ("mqtt5", b.tls_mqtt_port)):
            r = subprocess.run(
                [os.path.join(tools, "loadgen"), "--protocol", protocol, "--port", str(port),
                 *common, "--clients", "10", "--fanout", "2", "--rate", "500", "--duration",
                 "1", "--warmup", "0.2", "--qos", "0" if protocol == "line" else "1",
                 "--quiet"], capture_output=True, text=True, timeout=6 * h.TIMEOUT)
            self.assertEqual(r.returncode, 0, protocol + ": " + r.stdout + r.stderr)
            self.assertIn("lost 0", r.stdout, protocol)

    def test_client_certificates_required(self):
        b = self.broker("--tls-ca", self.certs.ca, "--require-client-cert")
        ca = ["--cafile", self.certs.ca]
        alice = ["--cert", self.alice[0], "--key", self.alice[1]]
        sub = self.sub(b.tls_mqtt_port, "t", 1, *ca, *alice)
        self.wait_subscribed(b, 1)
        self.assertNotEqual(self.pub(b.tls_mqtt_port, "t", "none", *ca).returncode, 0)
        untrusted = ["--cert", self.mallory[0], "--key", self.mallory[1]]
        self.assertNotEqual(self.pub(b.tls_mqtt_port, "t", "m", *ca, *untrusted).returncode, 0)
        r = self.pub(b.tls_mqtt_port, "t", "certified", *ca, *alice)
        self.assertEqual(r.returncode, 0, r.stderr)
        out, err = sub.communicate(timeout=h.TIMEOUT)
        self.assertEqual(out.strip(), "t certified", err)

    def test_identity_as_username_with_an_acl(self):
        acl = os.path.join(self.dir, "acl")
        with open(acl, "w") as f:
            f.write("user alice\ntopic readwrite alice/#\n")
        b = self.broker("--tls-ca", self.certs.ca, "--use-identity-as-username", "--acl-file",
                        acl)
        ca = ["--cafile", self.certs.ca]
        alice = ["--cert", self.alice[0], "--key", self.alice[1]]
        sub = self.sub(b.tls_mqtt_port, "alice/#", 1, *ca, *alice)
        self.wait_subscribed(b, 1)
        # bob's certificate is valid but bob may not write there; alice may; a client without a
        # certificate has no identity and is refused.
        bob = ["--cert", self.bob[0], "--key", self.bob[1]]
        self.assertEqual(self.pub(b.tls_mqtt_port, "alice/x", "from bob", *ca, *bob).returncode, 0)
        client, rc = paho_connect(b.tls_mqtt_port, self.certs.ca)
        self.assertEqual(rc, 5)
        client.loop_stop()
        r = self.pub(b.tls_mqtt_port, "alice/x", "from alice", *ca, *alice, "-u", "ignored")
        self.assertEqual(r.returncode, 0, r.stderr)
        out, err = sub.communicate(timeout=h.TIMEOUT)
        self.assertEqual(out.strip(), "alice/x from alice", err)
        # The line protocol: the certificate is the user; without one, ERROR@not-authorized.
        sock = tls_socket(b.tls_line_port, self.certs.ca)
        self.assertTrue(request(sock, "CONNECT@x").startswith("ERROR@not-authorized@"))
        sock.close()
        sock = tls_socket(b.tls_line_port, self.certs.ca, *self.alice)
        self.assertTrue(request(sock, "CONNECT@alice-line").startswith("CONNACK@"))
        self.assertEqual(request(sock, "SUBSCRIBE@alice/y"), "SUBACK")
        self.assertTrue(request(sock, "SUBSCRIBE@bob/y").startswith("ERROR@not-authorized@"))
        sock.close()

    def test_attach_needs_the_connect_sockets_identity(self):
        b = self.broker("--tls-ca", self.certs.ca)
        first = tls_socket(b.tls_line_port, self.certs.ca, *self.alice)
        reply = request(first, "CONNECT@certified")
        token = reply.split("@")[2]
        for cert in ((), self.bob):
            other = tls_socket(b.tls_line_port, self.certs.ca, *cert)
            self.assertTrue(request(other, "ATTACH@%s@push" % token)
                            .startswith("ERROR@not-authorized@"))
            other.close()
        plain = socket.create_connection(("127.0.0.1", b.line_port), timeout=h.TIMEOUT)
        self.assertTrue(request(plain, "ATTACH@%s@push" % token).startswith("ERROR@not-authorized@"))
        plain.close()
        same = tls_socket(b.tls_line_port, self.certs.ca, *self.alice)
        self.assertEqual(request(same, "ATTACH@%s@push" % token), "ATTACHACK@push")
        # A session whose CONNECT presented no certificate takes any socket with the token.
        anon = tls_socket(b.tls_line_port, self.certs.ca)
        token = request(anon, "CONNECT@anon").split("@")[2]
        plain = socket.create_connection(("127.0.0.1", b.line_port), timeout=h.TIMEOUT)
        self.assertEqual(request(plain, "ATTACH@%s@push" % token), "ATTACHACK@push")
        for s in (first, same, anon, plain):
            s.close()

    def test_start_up_refusals(self):
        certs = ["--tls-cert", self.certs.server_cert, "--tls-key", self.certs.server_key]
        cases = [
            (["--tls-cert", self.certs.server_cert], "--tls-cert and --tls-key go together"),
            (["--require-client-cert"], "need --tls-cert"),
            ([*certs, "--require-client-cert"], "need --tls-ca"),
            ([*certs, "--use-identity-as-username"], "need --tls-ca"),
            ([*certs, "--mqtt-tls-port", "x"], "--mqtt-tls-port must be"),
            # Client certificates authenticate only the TLS listeners: beyond loopback the plain
            # ones must be off too (the refusal comes before anything is bound).
            (["--bind", "0.0.0.0", *certs, "--tls-ca", self.certs.ca, "--require-client-cert"],
             "refusing to listen on 0.0.0.0 without authentication"),
            (["--tls-cert", "/nonexistent.pem", "--tls-key", self.certs.server_key],
             "/nonexistent.pem"),
        ]
        for args, expected in cases:
            # Refused before any listener is bound (the TLS ports' defaults are never opened).
            r = run(h.BROKER, "--port", "0", "--mqtt-port", "0", *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(expected, r.stderr, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_bad_input_on_the_tls_ports(self):
        b = self.broker("--handshake-timeout", "1")
        cases = [
            (b.tls_mqtt_port, b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"),  # plain MQTT
            (b.tls_line_port, b"CONNECT@plain\n"),  # plain line protocol
            (b.tls_line_port, os.urandom(4096)),  # garbage
            (b.tls_mqtt_port, b"\x16\x03\x01\x02\x00" + os.urandom(512)),  # a broken ClientHello
        ]
        for port, data in cases:
            sock = socket.create_connection(("127.0.0.1", port), timeout=h.TIMEOUT)
            sock.sendall(data)
            self.assertTrue(closed_by_peer(sock), data[:20])
            sock.close()
        # A handshake that stops halfway: closed by the handshake timeout.
        sock = socket.create_connection(("127.0.0.1", b.tls_mqtt_port), timeout=h.TIMEOUT)
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        start = time.time()
        self.assertTrue(closed_by_peer(sock))
        self.assertGreater(time.time() - start, 0.5)
        sock.close()
        # TLS to a plain port: the handshake fails and the broker goes on.
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            tls_socket(b.mqtt_port, self.certs.ca).close()
        line = h.LineSession(b.line_port, "after")
        stats = line.stats()
        self.assertGreaterEqual(stats["tls"]["failures"], 4)
        line.close()
        client, rc = paho_connect(b.tls_mqtt_port, self.certs.ca)
        self.assertEqual(rc, 0)
        client.loop_stop()
        client.disconnect()

    def test_sighup_reloads_the_certificate(self):
        cert = os.path.join(self.dir, "live.crt")
        key = os.path.join(self.dir, "live.key")
        shutil.copy(self.certs.server_cert, cert)
        shutil.copy(self.certs.server_key, key)
        b = self.broker(cert=cert, key=key)
        old = tls_socket(b.tls_line_port, self.certs.ca)
        self.assertTrue(request(old, "CONNECT@old").startswith("CONNACK@"))
        # A bad file: the certificate in force stays.
        with open(cert, "w") as f:
            f.write("not a certificate\n")
        b.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "the TLS certificate and key are kept" in b.log_text(), "the refusal")
        tls_socket(b.tls_line_port, self.certs.ca).close()
        # Another CA's certificate: new connections get it, the open one goes on.
        shutil.copy(self.other.server_cert, cert)
        shutil.copy(self.other.server_key, key)
        b.proc.send_signal(signal.SIGHUP)

        def serves_the_new_certificate():
            try:
                tls_socket(b.tls_line_port, self.other.ca).close()
                return True
            except ssl.SSLError:
                return False
        wait_until(serves_the_new_certificate, "the new certificate")
        with self.assertRaises(ssl.SSLError):
            tls_socket(b.tls_line_port, self.certs.ca)
        self.assertEqual(request(old, "SUBSCRIBE@still/here")[0:6], "SUBACK")
        old.close()


if __name__ == "__main__":
    h.main()
