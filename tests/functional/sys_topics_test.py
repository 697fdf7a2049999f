"""The $SYS topics (issue 14): every --sys-interval seconds the broker publishes, retained, the
topics Mosquitto publishes under Mosquitto's names; mosquitto_sub reads them with `$SYS/#`, `#`
does not match them, line-protocol sessions see them too, their values follow the broker's
state, and --sys-interval 0 turns them off.

Run by ctest as SysTopics.Stock (tests/CMakeLists.txt).
"""
import json
import subprocess
import unittest

import mqtt_harness as h
from mqtt_harness import TIMEOUT, LineSession, run, wait_until

# Every topic docs/operations.md lists.
TOPICS = {
    "$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected",
    "$SYS/broker/clients/total", "$SYS/broker/clients/expired", "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent", "$SYS/broker/publish/messages/received",
    "$SYS/broker/publish/messages/sent", "$SYS/broker/publish/messages/dropped",
    "$SYS/broker/bytes/received", "$SYS/broker/bytes/sent", "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count", "$SYS/broker/store/messages/count",
} | {"$SYS/broker/load/%s/%s" % (series, window)
     for series in ("messages/received", "messages/sent", "bytes/received", "bytes/sent")
     for window in ("1min", "5min", "15min")}


def sys_values(port, count=len(TOPICS), topic="$SYS/#"):
    """{topic: payload} once mosquitto_sub has got `count` distinct topics for `topic` (an update
    may come in the middle of the retained ones: the latest value of each topic counts)."""
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", topic, "-v", "-W",
                            str(int(TIMEOUT))], stdout=subprocess.PIPE, text=True)
    values = {}
    try:
        while len(values) < count:
            line = sub.stdout.readline()
            assert line, "mosquitto_sub ended after %s" % sorted(values)
            line = line.rstrip("\n")
            # "topic payload": topics may hold a space ("retained messages/count"), so known
            # topics are matched whole.
            name = next((t for t in TOPICS if line.startswith(t + " ")), None)
            assert name is not None, "unknown $SYS line: %r" % line
            values[name] = line[len(name) + 1:]
    finally:
        sub.kill()
        sub.wait()
        sub.stdout.close()
    return values


class Stock(unittest.TestCase):
    def setUp(self):
        self.broker = h.Broker("--sys-interval", "1")

    def tearDown(self):
        self.assertEqual(self.broker.stop(), 0)

    def test_mosquitto_sub_reads_every_topic_retained(self):
        values = sys_values(self.broker.mqtt_port)
        self.assertEqual(set(values), TOPICS)
        version = run(h.BROKER, "--version").stdout.split()[-1]
        self.assertEqual(values["$SYS/broker/version"], "tern version " + version)
        self.assertRegex(values["$SYS/broker/uptime"], r"^\d+ seconds$")
        for topic in TOPICS - {"$SYS/broker/version", "$SYS/broker/uptime"}:
            self.assertRegex(values[topic], r"^\d+(\.\d\d)?$", topic)

    def test_hash_does_not_match_them(self):
        sub = subprocess.Popen(["mosquitto_sub", "-p", str(self.broker.mqtt_port), "-t", "#",
                                "-v", "-C", "1", "-W", str(int(TIMEOUT))],
                               stdout=subprocess.PIPE, text=True)
        try:
            # The $SYS topics are retained already (published at start-up and every second): a
            # '#' subscription would get them first. Its first message is the sentinel.
            wait_until(lambda: run("mosquitto_pub", "-p", str(self.broker.mqtt_port), "-t",
                                   "sentinel", "-m", "x").returncode == 0 and
                       sub.poll() is not None, "the sentinel")
            self.assertEqual(sub.stdout.read(), "sentinel x\n")
        finally:
            sub.kill()
            sub.wait()
            sub.stdout.close()

    def test_values_follow_the_broker_and_line_sessions_see_them(self):
        # The first publication counted the retained store before it held its own 27.
        wait_until(lambda: sys_values(self.broker.mqtt_port, 1,
                                      "$SYS/broker/retained messages/count") ==
                   {"$SYS/broker/retained messages/count": "27"}, "27 retained messages")
        session = LineSession(self.broker.line_port, "sys-reader")
        try:
            self.assertEqual(session.request("SUBSCRIBE@$SYS/broker/clients/total"), "SUBACK")
            self.assertRegex(session.push(), r"^RETAINED@\$SYS/broker/clients/total@\d+$")
            for i in range(3):
                self.assertEqual(session.request("PUBLISH@counted/%d@v" % i), "PUBACK")
            # Within a few intervals: one line session connected, three publishes counted.
            wait_until(lambda: sys_values(self.broker.mqtt_port, 1,
                                          "$SYS/broker/publish/messages/received") ==
                       {"$SYS/broker/publish/messages/received": "3"}, "received to reach 3")
            # The session sees updates live: clients/total is 1 now, later 2 with a second one.
            other = LineSession(self.broker.line_port, "sys-other")
            try:
                wait_until(lambda: session.push() == "MESSAGE@$SYS/broker/clients/total@2",
                           "clients/total 2 to be pushed")
            finally:
                other.close()
            listed = json.loads(session.request("LIST@$SYS/broker/version")[len("LIST@"):])
            self.assertEqual(list(listed), ["$SYS/broker/version"])
        finally:
            session.close()


class Off(unittest.TestCase):
    def test_sys_interval_0_publishes_nothing(self):
        broker = h.Broker("--sys-interval", "0")
        try:
            session = LineSession(broker.line_port, "lister")
            self.assertEqual(session.request("LIST@$SYS/#"), "LIST@{}")
            session.close()
        finally:
            self.assertEqual(broker.stop(), 0)

    def test_a_bad_interval_is_refused(self):
        result = run(h.BROKER, "--sys-interval", "-1")
        self.assertEqual(result.returncode, 2)
        self.assertIn("--sys-interval must be between 0 (off) and 86400 seconds", result.stderr)


if __name__ == "__main__":
    h.main()
