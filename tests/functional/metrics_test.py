"""The Prometheus endpoint (issue 14): `broker --metrics-port` serves GET /metrics in the text
exposition format, checked by promtool (the Prometheus package's own linter); its counters follow
the traffic of both protocols; every metric is documented in docs/operations.md; bad HTTP gets an
HTTP error and leaves the broker serving; and a real Prometheus server (Debian `prometheus`,
started here on a free loopback port with a generated configuration, stopped by its PID) scrapes
it and answers queries about it through its HTTP API.

Run by ctest as Metrics.Endpoint and Metrics.Prometheus (tests/CMakeLists.txt).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import mqtt_harness as h
from mqtt_harness import TIMEOUT, LineSession, run, wait_until

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                    "operations.md")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=TIMEOUT) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def parse(text):
    """{(name, labels): value} of every sample line; labels as a sorted tuple of pairs."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def histogram(samples, name):
    """The cumulative bucket counts of histogram `name` (ending with +Inf), checked to be
    cumulative and to end with its _count; its _sum must not be negative."""
    buckets = sorted(((float(dict(labels)["le"]), v) for (n, labels), v in samples.items()
                      if n == name + "_bucket"))
    assert buckets and buckets[-1][0] == float("inf"), (name, buckets)
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), (name, counts)
    assert counts[-1] == value(samples, name + "_count"), (name, counts)
    assert value(samples, name + "_sum") >= 0
    return counts


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Endpoint(unittest.TestCase):
    def setUp(self):
        # With a data directory, so that the store's metrics are exposed (and linted) too.
        self.data = tempfile.TemporaryDirectory(prefix="tern-metrics-")
        self.broker = h.Broker("--metrics-port", "auto", "--data-dir", self.data.name,
                               listeners=("metrics",))
        self.port = self.broker.ports["metrics"]

    def tearDown(self):
        self.assertEqual(self.broker.stop(), 0)
        self.data.cleanup()

    def test_the_exposition_passes_promtool(self):
        status, content_type, body = scrape(self.port)
        self.assertEqual(status, 200)
        self.assertEqual(content_type, "text/plain; version=0.0.4; charset=utf-8")
        lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                              text=True, timeout=TIMEOUT)
        self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)
        families = re.findall(r"^# TYPE (\S+) (counter|gauge)$", body, re.M)
        self.assertGreater(len(families), 25)
        for name, kind in families:
            self.assertEqual(name.endswith("_total"), kind == "counter", name)

    def test_every_metric_is_documented_and_every_documented_one_exists(self):
        body = scrape(self.port)[2]
        exposed = set(re.findall(r"^# TYPE (\S+) ", body, re.M))
        with open(DOCS) as f:
            documented = set(re.findall(r"^\| `((?:tern|process)_[a-z_]+)`", f.read(), re.M))
        self.assertEqual(exposed - documented, set(), "in /metrics, not in docs/operations.md")
        self.assertEqual(documented - exposed, set(), "in docs/operations.md, not in /metrics")

    def test_counters_follow_the_traffic_of_both_protocols(self):
        before = parse(scrape(self.port)[2])
        self.assertEqual(value(before, "tern_messages_received_total"), 0)
        self.assertEqual(value(before, "tern_workers"), 2)
        subscriber = LineSession(self.broker.line_port, "metrics-sub")
        publisher = LineSession(self.broker.line_port, "metrics-pub")
        try:
            self.assertEqual(subscriber.request("SUBSCRIBE@m/#"), "SUBACK")
            for i in range(5):
                self.assertEqual(publisher.request("PUBLISH@m/x@%d" % i), "PUBACK")
            for i in range(5):
                self.assertEqual(subscriber.push(), "MESSAGE@m/x@%d" % i)
            pub = run("mosquitto_pub", "-p", str(self.broker.mqtt_port), "-q", "1", "-r",
                      "-t", "m/r", "-m", "kept")
            self.assertEqual(pub.returncode, 0, pub.stderr)
            self.assertEqual(subscriber.push(), "MESSAGE@m/r@kept")
            # An MQTT session that stays: mosquitto_sub gets the retained message and waits.
            sub = subprocess.Popen(["mosquitto_sub", "-p", str(self.broker.mqtt_port), "-q", "1",
                                    "-t", "m/#", "-C", "2", "-W", str(int(TIMEOUT))],
                                   stdout=subprocess.PIPE, text=True)
            try:
                self.assertEqual(sub.stdout.readline().strip(), "kept")
                after = parse(scrape(self.port)[2])
                self.assertEqual(value(after, "tern_messages_received_total"), 6)
                self.assertEqual(value(after, "tern_messages_delivered_total"), 7)
                self.assertEqual(value(after, "tern_sessions", protocol="line"), 2)
                self.assertEqual(value(after, "tern_sessions", protocol="mqtt"), 1)
                self.assertEqual(value(after, "tern_connections", protocol="line"), 6)
                self.assertEqual(value(after, "tern_connections", protocol="mqtt"), 1)
                self.assertEqual(value(after, "tern_retained_messages"), 1)
                self.assertEqual(value(after, "tern_subscriptions"), 2)
                self.assertEqual(value(after, "tern_messages_dropped_total", reason="queue_full"),
                                 0)
                self.assertGreaterEqual(value(after, "tern_connections_accepted_total"), 8)
                # A publish is at least "PUBLISH@m/x@0\n" in and "MESSAGE@m/x@0\n" out.
                self.assertGreater(value(after, "tern_bytes_received_total"), 5 * 14)
                self.assertGreater(value(after, "tern_bytes_sent_total"), 5 * 14)
                self.assertGreater(value(after, "process_open_fds"), 8)
                self.assertGreater(value(after, "process_resident_memory_bytes"), 1 << 20)
                self.assertLessEqual(abs(value(after, "process_start_time_seconds") - time.time()),
                                     60)
                for worker in ("0", "1"):
                    busy = value(after, "tern_worker_busy_seconds_total", worker=worker)
                    self.assertGreaterEqual(busy, 0)
                    self.assertLessEqual(busy, value(after, "process_cpu_seconds_total") + 1)
                    self.assertGreaterEqual(busy, value(before, "tern_worker_busy_seconds_total",
                                                        worker=worker))
                    self.assertGreaterEqual(value(after, "tern_worker_inbox_items", worker=worker),
                                            0)
                # The latency histograms: cumulative buckets ending in +Inf == _count; the
                # turns that handled these publishes are counted.
                turns = histogram(after, "tern_worker_turn_seconds")
                self.assertGreater(turns[-1], 0)
                histogram(after, "tern_inbox_wait_seconds")
                # A refusal shows under its reason.
                self.assertTrue(publisher.request("PUBLISH@$SYS/x@1").startswith("ERROR@"))
                wait_until(lambda: value(parse(scrape(self.port)[2]), "tern_refusals_total",
                                         reason="sys_topic") == 1, "the sys_topic refusal")
            finally:
                sub.kill()
                sub.wait()
                sub.stdout.close()
        finally:
            subscriber.close()
            publisher.close()
        # Connections and sessions go when their clients do.
        wait_until(lambda: value(parse(scrape(self.port)[2]), "tern_connections",
                                 protocol="line") == 0, "the line connections to close")
        final = parse(scrape(self.port)[2])
        self.assertEqual(value(final, "tern_sessions", protocol="line"), 0)

    def test_deliveries_between_workers_show_in_the_inbox_wait_histogram(self):
        # Eight subscribers: their client ids (fixed, so the same every run) are homed on both
        # workers, so the publisher's deliveries cross to the other one.
        before = histogram(parse(scrape(self.port)[2]), "tern_inbox_wait_seconds")[-1]
        subscribers = [LineSession(self.broker.line_port, "wait-sub-%d" % i) for i in range(8)]
        publisher = LineSession(self.broker.line_port, "wait-pub")
        try:
            for s in subscribers:
                self.assertEqual(s.request("SUBSCRIBE@w/#"), "SUBACK")
            for i in range(3):
                self.assertEqual(publisher.request("PUBLISH@w/x@%d" % i), "PUBACK")
            for s in subscribers:
                for i in range(3):
                    self.assertEqual(s.push(), "MESSAGE@w/x@%d" % i)
            after = histogram(parse(scrape(self.port)[2]), "tern_inbox_wait_seconds")[-1]
            self.assertGreater(after, before)
        finally:
            for s in subscribers + [publisher]:
                s.close()

    def test_other_paths_and_methods_and_bad_requests_are_http_errors(self):
        with self.assertRaises(urllib.error.HTTPError) as e:
            scrape(self.port, "/")
        self.assertEqual(e.exception.code, 404)
        request = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.port, data=b"x",
                                         method="POST")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request, timeout=TIMEOUT)
        self.assertEqual(e.exception.code, 405)
        self.assertEqual(e.exception.headers.get("Allow"), "GET, HEAD")
        # A header past the 32 KiB a connection may hold: 431 and a close (or only the close: the
        # kernel resets a connection closed with unread input, and the reset may overtake the
        # answer).
        with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as s:
            try:
                s.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100000 + b"\r\n\r\n")
                answer = s.recv(4096)
                self.assertRegex(answer, rb"^HTTP/1\.[01] 431 ")
            except ConnectionResetError:
                pass
        # Garbage and clients that stop mid-request stay open until the 10 s idle timeout; a
        # scrape meanwhile is served, and so are the broker's clients.
        stalled = []
        try:
            for junk in (b"\x00\xff\r\n\r\n", b"GET /metr", b"GET /metrics HTTP/1.1\r\nHost"):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
                stalled.append(s)
                s.sendall(junk)
            self.assertEqual(scrape(self.port)[0], 200)
        finally:
            for s in stalled:
                s.close()
        session = LineSession(self.broker.line_port, "still-served")
        self.assertEqual(session.request("SUBSCRIBE@a"), "SUBACK")
        session.close()

    def test_head_answers_without_a_body(self):
        request = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.port, method="HEAD")
        with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.read(), b"")


class Options(unittest.TestCase):
    def test_the_endpoint_is_off_unless_asked_for(self):
        broker = h.Broker()
        try:
            self.assertNotIn("metrics", broker.ports)
        finally:
            self.assertEqual(broker.stop(), 0)

    def test_a_taken_metrics_port_stops_start_up_naming_the_option(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run(h.BROKER, "--port", "0", "--mqtt-port", "off", "--metrics-port",
                         str(port))
            self.assertEqual(result.returncode, 2)
            self.assertIn("--metrics-port off turns it off", result.stderr)

    def test_a_bad_value_is_refused(self):
        result = run(h.BROKER, "--metrics-port", "http")
        self.assertEqual(result.returncode, 2)
        self.assertIn("--metrics-port must be a port number", result.stderr)


class Prometheus(unittest.TestCase):
    """A real Prometheus server scrapes the broker every second; its HTTP API shows the values."""

    def setUp(self):
        self.assertIsNotNone(shutil.which("prometheus"),
                             "prometheus is missing: tools/deps installs the Debian package")
        self.broker = h.Broker("--metrics-port", "auto", listeners=("metrics",))
        self.dir = tempfile.mkdtemp(prefix="tern-prometheus-")
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: tern\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % self.broker.ports["metrics"])
        self.api = free_port()
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w+")
        self.prometheus = subprocess.Popen(
            ["prometheus", "--config.file", config, "--storage.tsdb.path",
             os.path.join(self.dir, "data"), "--web.listen-address", "127.0.0.1:%d" % self.api],
            stdout=self.log, stderr=subprocess.STDOUT)

    def tearDown(self):
        self.prometheus.terminate()
        try:
            self.prometheus.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.prometheus.kill()
            self.prometheus.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.assertEqual(self.broker.stop(), 0)

    def query(self, expression):
        """The value of an instant query with one result, or None (no result, not up yet)."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            self.api, urllib.parse.urlencode({"query": expression}))
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
                answer = json.load(r)
        except OSError:
            return None
        results = answer.get("data", {}).get("result", [])
        return float(results[0]["value"][1]) if len(results) == 1 else None

    def wait_for(self, expression, wanted):
        # Prometheus takes a few seconds to start and scrapes once a second: a longer wait.
        deadline = time.time() + 6 * TIMEOUT
        seen = None
        while time.time() < deadline:
            seen = self.query(expression)
            if seen == wanted:
                return
            time.sleep(0.2)
        self.log.seek(0)
        self.fail("%s is %s, not %s; prometheus log:\n%s" % (expression, seen, wanted,
                                                             self.log.read()[-3000:]))

    def test_prometheus_scrapes_tern_and_sees_the_counters_move(self):
        self.wait_for('up{job="tern"}', 1)
        self.wait_for('tern_messages_received_total{job="tern"}', 0)
        session = LineSession(self.broker.line_port, "scraped")
        try:
            self.assertEqual(session.request("SUBSCRIBE@p/#"), "SUBACK")
            for i in range(20):
                self.assertEqual(session.request("PUBLISH@p/%d@v" % i), "PUBACK")
            self.wait_for('tern_messages_received_total{job="tern"}', 20)
            self.wait_for('tern_messages_delivered_total{job="tern"}', 20)
            self.wait_for('tern_sessions{job="tern",protocol="line"}', 1)
            # Prometheus read every family without a complaint about the format.
            self.assertEqual(self.query('scrape_samples_scraped{job="tern"}') is not None, True)
        finally:
            session.close()
        self.wait_for('tern_connections{job="tern",protocol="line"}', 0)


if __name__ == "__main__":
    h.main()
