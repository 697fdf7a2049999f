#!/usr/bin/python3
"""Persistence of retained messages (`broker --data-dir DIR`), checked from outside the process.

Kill9Retained: line-protocol and Paho MQTT 3.1.1/5.0 publishers load a broker in sync mode, which
is killed (SIGKILL, at an instant drawn from a fixed seed) and restarted on the same directory:
each topic holds its last acknowledged value or a later one; and under strace, each ack is sent
after the fdatasync of the log holding it. SigtermFlushesAsync: in async mode a SIGTERM writes
all that was acknowledged, and syncs it. RestartWith100kRetained: 100,000 retained messages
load at start-up. StorageErrors: `--test-storage-faults FILE` makes retained publishes fail (line
ERROR@storage, MQTT 5.0 PUBACK 0x80, 3.1.1 a closed connection) while the rest works, then the
broker recovers; deletes reach the disk. CorruptDataDirRefusesToStart: garbage over DIR/CURRENT
or a directory another broker holds stops start-up.

Run by ctest as Durability.<Case> (tests/CMakeLists.txt): durability_test.py --broker BIN Case.
Brokers run on free loopback ports and are stopped by their PID; every wait is bounded by the
harness deadline (mqtt_harness.TIMEOUT, scaled for sanitizer builds), or 6 times it for bulk.
"""
import codecs
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import types
import unittest

import paho.mqtt.client as paho

import mqtt_harness as h
from mqtt_harness import TIMEOUT, LineSession
from mqtt5_clients_test import RawClient, connect5, packet, publish5, s16

BULK = 6 * TIMEOUT  # the deadline of a wait on 100,000 messages
LOADED = re.compile(r"loaded (\d+) retained message\(s\)")


class Tern:
    """A broker process: stdout (the listening lines) read on a thread, stderr appended to a file
    that can be read while it runs."""

    def __init__(self, workdir, data_dir, *extra, traced=False):
        fd, self.log_path = tempfile.mkstemp(prefix="broker-", suffix=".log", dir=workdir)
        os.close(fd)
        io = ["--io", os.environ["TERN_TEST_IO"]] if os.environ.get("TERN_TEST_IO") else []
        io = [] if "--io" in extra else io
        data = ["--data-dir", data_dir] if data_dir else []
        data += [] if "--sys-interval" in extra else ["--sys-interval", "0"]
        env = dict(os.environ)
        if traced:  # LeakSanitizer cannot run under ptrace (strace): ASan builds skip it here
            env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
        with open(self.log_path, "ab") as log:  # O_APPEND: our reads do not move its offset
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                [h.BROKER, "--port", "0", "--mqtt-port", "auto",
                 *([] if "--workers" in extra else ["--workers", "2"]),
                 "--log-level", "info", *io, *data, *extra],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        self.ports, self.stdout, self.eof = {}, [], False
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.stdout.append(line)
                m = re.search(r"listening on 127\.0\.0\.1:(\d+) \(([^)]+)\)", line)
                if m:
                    self.ports[m.group(2)] = int(m.group(1))
                self.cond.notify_all()
        self.proc.stdout.close()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def listening(self):
        return {"line protocol", "mqtt"} <= self.ports.keys()

    def wait_listening(self, timeout=TIMEOUT):
        with self.cond:
            self.cond.wait_for(lambda: self.listening() or self.eof, timeout)
            up = self.listening()
        if not up:
            self.kill()
            raise AssertionError("broker did not start within %.0f s (exit %s); stdout %r; "
                                 "stderr:\n%s" % (timeout, self.proc.poll(), self.stdout,
                                                  self.stderr()))
        self.up_after = time.monotonic() - self.started
        self.line_port, self.mqtt_port = self.ports["line protocol"], self.ports["mqtt"]
        return self

    def stderr(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def loaded(self):
        """N of the one `loaded N retained message(s)` line, logged before the listeners open."""
        found = LOADED.findall(self.stderr())
        assert len(found) == 1, ("want one 'loaded N retained message(s)' line on stderr by the "
                                 "time the listeners are up, got %d; stderr:\n%s"
                                 % (len(found), self.stderr()[-3000:]))
        return int(found[0])

    def wait_exit(self, timeout=TIMEOUT):
        """The exit code, or None if it still runs after timeout."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.reader.join(TIMEOUT)
        return code

    def stop(self, timeout=TIMEOUT):
        """SIGTERM to its PID; the exit code (a broker that does not exit fails the test)."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.wait_exit(timeout)
        if code is None:
            self.kill()
            raise AssertionError("broker did not exit within %.0f s of SIGTERM" % timeout)
        if code != 0:  # the test fails on it: show why
            print("broker exit %d; stderr:\n%s" % (code, self.stderr()[-3000:]))
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class Trace:
    """strace on a running broker: its writes, sends and syncs in order, to check what only a crash
    of the machine (not of the process) would show: whether the store's log was synced."""

    CALLS = "trace=write,writev,sendto,sendmsg,pwrite64,pwritev,pwritev2,fdatasync,fsync"
    LINE = re.compile(r'^\d+ +(\w+)\(\d+<([^>]*)>(?:, (?:\[\{iov_base=)?"((?:[^"\\]|\\.)*)")?')

    def __init__(self, broker, workdir):
        assert shutil.which("strace"), "strace is missing: tools/deps installs it"
        self.out = os.path.join(workdir, "strace-%d" % broker.proc.pid)
        self.proc = subprocess.Popen(["strace", "-f", "-qq", "-x", "-y", "-s", "4096", "-e",
                                      self.CALLS, "-o", self.out, "-p", str(broker.proc.pid)])
        tasks = "/proc/%d/task" % broker.proc.pid
        deadline = time.monotonic() + TIMEOUT
        while not all(self.traced(os.path.join(tasks, t, "status")) for t in os.listdir(tasks)):
            assert time.monotonic() < deadline, "strace did not attach to every thread"
            time.sleep(0.01)

    @staticmethod
    def traced(status):
        with open(status) as f:
            return re.search(r"TracerPid:\s+[1-9]", f.read()) is not None

    def events(self):
        """[(call, file, bytes)] once the broker has exited."""
        self.proc.wait(TIMEOUT)
        with open(self.out) as f:
            found = [self.LINE.match(line) for line in f]
        return [(m.group(1), m.group(2), codecs.escape_decode((m.group(3) or "").encode())[0])
                for m in found if m]


class LineSocket:
    """The CONNECT socket of a line-protocol session: requests pipelined, replies read in order."""

    def __init__(self, port, client_id):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.pending = []
        reply = self.request("CONNECT@" + client_id)
        assert reply.startswith("CONNACK@"), "CONNECT@%s: %r" % (client_id, reply)

    def send(self, frames):
        self.sock.sendall("".join(f + "\n" for f in frames).encode())

    def replies(self):
        """The whole reply lines one recv completes (maybe none); EOFError when closed."""
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("the broker closed the line-protocol socket")
        lines = (self.buf + chunk).split(b"\n")
        self.buf = lines.pop()
        return [line.decode("utf-8", "replace") for line in lines]

    def reply(self):
        while not self.pending:
            self.pending = self.replies()
        return self.pending.pop(0)

    def request(self, frame):
        self.send([frame])
        return self.reply()

    def close(self):
        self.sock.close()


def list_retained(port, topic_filter):
    """{topic: contents} of the retained messages matching the filter (line-protocol LIST)."""
    s = LineSocket(port, "durability-list")
    try:
        reply = s.request("LIST@" + topic_filter)
    finally:
        s.close()
    assert reply.startswith("LIST@"), "LIST@%s: %r" % (topic_filter, reply)
    return json.loads(reply[len("LIST@"):])


def retained_via_mqtt(port, topic_filter, done, timeout):
    """{topic: payload} of the retained messages a Paho subscriber to the filter receives, collected
    until done(received) or the deadline."""
    got, cond = {}, threading.Condition()

    def on_message(_c, _u, m):
        with cond:
            if m.retain:
                got[m.topic] = m.payload.decode("utf-8", "replace")
            cond.notify_all()

    c = paho.Client(client_id="durability-reader", protocol=paho.MQTTv311)
    c.on_message = on_message
    c.connect("127.0.0.1", port, keepalive=60)
    c.subscribe(topic_filter, qos=0)
    c.loop_start()
    try:
        with cond:
            cond.wait_for(lambda: done(got), timeout)
            return dict(got)
    finally:
        c.disconnect()
        c.loop_stop()


class Mqtt(RawClient):
    """One MQTT 3.1.1 or 5.0 connection by hand, for the exact PUBACK reason codes."""

    def __init__(self, port, client_id, version, clean=True):
        super().__init__(port)
        self.version, self.pid = version, 0
        if version == 5:  # not clean: a session that lasts an hour after the connection
            self.send(connect5(client_id, clean, b"" if clean else b"\x11" + struct.pack(">I", 3600)))
        else:
            self.send(packet(0x10, s16("MQTT") + bytes([4, 0x02 if clean else 0])
                             + struct.pack(">H", 60) + s16(client_id)))
        body = self.expect(2)
        assert body[1] == 0, "CONNACK %r for %s" % (body, client_id)

    def subscribe(self, topic_filter, qos):
        body = struct.pack(">H", 1) + (b"\x00" if self.version == 5 else b"")
        self.send(packet(0x82, body + s16(topic_filter) + bytes([qos])))
        self.expect(9)

    def read(self):
        try:
            return super().read()
        except (ConnectionResetError, BrokenPipeError):
            return None

    def publish(self, topic, payload, qos=1, retain=True):
        """The PUBACK (QoS 1) or PUBREC (QoS 2) reason code; None when the broker closed the
        connection instead; nothing at QoS 0."""
        self.pid = self.pid % 65535 + 1
        payload = payload.encode()
        if self.version == 5:
            data = publish5(topic, payload, qos, self.pid, retain=retain)
        else:
            data = packet(0x30 | qos << 1 | int(retain), s16(topic)
                          + (struct.pack(">H", self.pid) if qos else b"") + payload)
        try:
            self.send(data)
        except OSError:
            return None
        if qos == 0:
            return None
        got = self.read()
        if got is None:
            return None
        first, body = got
        assert first >> 4 == 3 + qos, "packet type %d answers a QoS %d publish" % (first >> 4, qos)
        assert body[:2] == struct.pack(">H", self.pid), "ack for another packet id"
        return body[2] if len(body) > 2 else 0

    def release(self):
        """PUBREL for the last QoS 2 publish; the PUBCOMP."""
        self.send(packet(0x62, struct.pack(">H", self.pid)))
        self.expect(7)


def paho_load(p, protocol, publish, records, pace=None, window=100, connect_options=None,
              **client_options):
    """The load of a Paho publisher thread `p` (with port, name, phase, ready and progress):
    connects, sets p.ready, waits for p.phase.go, then until p.phase.stop calls publish(client),
    which publishes one message and returns its record (its MessageInfo first) or None to end,
    and appends the record to `records`. At most `window` publishes are unacknowledged, and none is
    made while pace(count, seconds since go) is true. p.progress counts acknowledgements as Paho
    reports them (PUBACK, PUBCOMP). A record was acknowledged if its info.rc is 0 and
    info.is_published() once this returned (Paho 1.x raises from is_published() for a publish
    that was never sent). The client stays in p.client (its network thread stopped), so that a
    test can connect it again with its session state; connect_options go to its connect()."""
    c = paho.Client(client_id=p.name, protocol=protocol, **client_options)
    p.client = c
    connected, lock = threading.Event(), threading.Lock()

    def on_publish(*_):
        with lock:
            p.progress += 1

    c.on_connect = lambda _c, _u, _f, rc, *_p: rc == 0 and connected.set()
    c.on_publish = on_publish
    c.connect("127.0.0.1", p.port, keepalive=60, **(connect_options or {}))
    c.loop_start()
    try:
        assert connected.wait(TIMEOUT), "no CONNACK"
        p.ready.set()
        p.phase.go.wait()
        began = time.monotonic()
        while not p.phase.stop.is_set():
            with lock:
                outstanding = len(records) - p.progress
            if outstanding >= window or (pace and pace(len(records), time.monotonic() - began)):
                time.sleep(0.0005)
                continue
            record = publish(c)
            if record is None:
                return
            records.append(record)
    finally:
        c.loop_stop()


class Publisher(threading.Thread):
    """Retained publishes of increasing sequence numbers over topics of its own (so one
    connection's order decides each topic's last value); records what it sent and the highest
    sequence acknowledged per topic. Ends quietly when the broker dies under it."""

    def __init__(self, port, name, topics, seed, phase):
        super().__init__(daemon=True)
        self.port, self.name, self.topics = port, name, topics
        self.rng, self.phase, self.ready = random.Random(seed), phase, threading.Event()
        self.seq, self.acks, self.sent, self.acked, self.errors = 0, 0, {}, {}, []
        self.progress = 0  # acknowledgements so far, counted as they come (acks: at the end)

    def next(self):
        self.seq += 1
        topic = self.rng.choice(self.topics)
        self.sent.setdefault(topic, set()).add(self.seq)
        return topic, self.seq

    def ack(self, topic, seq):
        self.acks += 1
        self.acked[topic] = max(self.acked.get(topic, 0), seq)

    def run(self):
        try:
            self.load()
        except (OSError, EOFError) as e:
            if not self.phase.dying.is_set():  # else the connection died with the broker
                self.errors.append("%s: %r before the kill" % (self.name, e))
        except Exception as e:  # noqa: BLE001 -- reported by the test
            self.errors.append("%s: %r" % (self.name, e))
        finally:
            self.ready.set()


class LinePublisher(Publisher):
    WINDOW = 256

    def load(self):
        s = LineSocket(self.port, self.name)
        try:
            self.ready.set()
            self.phase.go.wait()
            pending = collections.deque()
            while not self.phase.stop.is_set():
                if len(pending) < self.WINDOW:
                    batch = [self.next() for _ in range(64)]
                    pending.extend(batch)
                    s.send("PUBLISH@%s@%d@retain" % ts for ts in batch)
                for line in s.replies():
                    topic, seq = pending.popleft()
                    if line != "PUBACK":
                        self.errors.append("%s: PUBLISH@%s@%d@retain got %r" % (self.name, topic,
                                                                                seq, line))
                        return
                    self.ack(topic, seq)
                    self.progress += 1
        finally:
            s.close()


class MqttPublisher(Publisher):
    def __init__(self, protocol, *args):
        super().__init__(*args)
        self.protocol = protocol

    def load(self):
        def publish(c):
            topic, seq = self.next()
            return c.publish(topic, str(seq), qos=1, retain=True), topic, seq

        infos = []
        try:
            paho_load(self, self.protocol, publish, infos)
        finally:
            for info, topic, seq in infos:
                if info.rc == 0 and info.is_published():  # its PUBACK came
                    self.ack(topic, seq)


class Case(unittest.TestCase):
    maxDiff = None
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tern-durability-")
        self.brokers = []
        self.t0 = time.monotonic()

    def tearDown(self):
        for b in self.brokers:
            b.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        print("%s: %.1f s" % (self.id(), time.monotonic() - self.t0))

    def start(self, data, *extra, listening=True, timeout=TIMEOUT, traced=False):
        b = Tern(self.tmp, data, *extra, traced=traced)
        self.brokers.append(b)
        return b.wait_listening(timeout) if listening else b

    def data_dir(self, name="data"):
        return os.path.join(self.tmp, name, "store")  # not there yet: the broker makes it

    def load_until_the_kill(self, b, seed, acks, floor=200):
        """Lets the load run until the instant of the kill: once `acks()` has counted `floor`
        acknowledged publishes (a loaded machine may take a second to get going, and a kill
        before anything was acknowledged checks nothing), then for a time drawn from the seed.
        Returns how long the load ran."""
        start, deadline = time.monotonic(), time.monotonic() + TIMEOUT
        while acks() < floor and time.monotonic() < deadline and b.proc.poll() is None:
            time.sleep(0.01)
        self.assertIsNone(b.proc.poll(), "the broker died under load by itself")
        self.assertGreaterEqual(acks(), floor, "the load did not get going")
        time.sleep(random.Random(seed).uniform(0.3, 1.5))
        self.assertIsNone(b.proc.poll(), "the broker died under load by itself")
        return time.monotonic() - start

    def publish_retained(self, port, pairs, name="durability-pub"):
        """Pipelines `PUBLISH@topic@contents@retain` for each pair on one socket; all PUBACK."""
        s = LineSocket(port, name)
        try:
            s.send("PUBLISH@%s@%s@retain" % p for p in pairs)
            for topic, contents in pairs:
                reply = s.reply()
                self.assertEqual(reply, "PUBACK", "PUBLISH@%s@%s@retain" % (topic, contents))
        finally:
            s.close()


class Kill9Retained(Case):
    def test_every_acknowledged_retained_value_survives_kill_9(self):
        for seed in (1, 2, 3):
            with self.subTest(seed=seed):
                self.round(seed)

    def test_acks_wait_for_the_fdatasync(self):
        # Sync mode: a crash of the machine, not only kill -9, loses nothing acknowledged: each
        # ack is sent after the store's log holding the publish was synced (epoll: the sends are
        # system calls strace sees).
        data = self.data_dir()
        b = self.start(data, "--durability", "sync", "--io", "epoll", traced=True)
        trace = Trace(b, self.tmp)
        line = LineSocket(b.line_port, "sync-line")
        self.assertEqual(line.request("PUBLISH@sync/line@v@retain"), "PUBACK")
        v5, v311 = Mqtt(b.mqtt_port, "sync-v5", 5), Mqtt(b.mqtt_port, "sync-v311", 4)
        self.assertEqual(v5.publish("sync/v5q1", "v"), 0)
        self.assertEqual(v5.publish("sync/v5q2", "v", qos=2), 0)
        v5.release()
        self.assertEqual(v311.publish("sync/v311", "v"), 0)
        for c in (line, v5, v311):
            c.close()
        self.assertEqual(b.stop(), 0)
        events = trace.events()
        acks = {"sync/line": lambda d: d.startswith(b"PUBACK\n"),  # MQTT: type and packet id
                "sync/v5q1": lambda d: d[:1] == b"\x40" and d[2:4] == b"\x00\x01",
                "sync/v5q2": lambda d: d[:1] == b"\x50" and d[2:4] == b"\x00\x02",
                "sync/v311": lambda d: d[:1] == b"\x40" and d[2:4] == b"\x00\x01"}
        at = 0  # the publishes were made one after the other: so were their acks
        for topic, ack in acks.items():
            acked = next((i for i in range(at, len(events)) if events[i][1].startswith("socket:")
                          and ack(events[i][2])), None)
            self.assertIsNotNone(acked, "%s: its ack was not traced" % topic)
            written = [i for i in range(at, acked) if events[i][0].startswith(("write", "pwrite"))
                       and events[i][1].startswith(data + "/") and topic.encode() in events[i][2]]
            self.assertTrue(written, "%s: acknowledged before it was written to %s" % (topic,
                                                                                     data))
            log = events[written[0]][1]
            synced = [i for i in range(written[0], acked)
                      if events[i][0] in ("fdatasync", "fsync") and events[i][1] == log]
            self.assertTrue(synced, "%s: the ack %r was sent before %s was synced" % (
                topic, events[acked][2], log))
            at = acked + 1

    def round(self, seed):
        data = self.data_dir("round-%d" % seed)
        b = self.start(data, "--durability", "sync")
        topics = ["t/%d" % i for i in range(200)]
        phase = types.SimpleNamespace(go=threading.Event(), dying=threading.Event(),
                                      stop=threading.Event())
        args = lambda i: (topics[i::4], seed * 10 + i, phase)  # noqa: E731
        publishers = [LinePublisher(b.line_port, "k9-line-0", *args(0)),
                      LinePublisher(b.line_port, "k9-line-1", *args(1)),
                      MqttPublisher(paho.MQTTv311, b.mqtt_port, "k9-v311", *args(2)),
                      MqttPublisher(paho.MQTTv5, b.mqtt_port, "k9-v5", *args(3))]
        for p in publishers:
            p.start()
        for p in publishers:
            self.assertTrue(p.ready.wait(TIMEOUT), p.name + " did not connect")
        self.assertEqual([e for p in publishers for e in p.errors], [])
        phase.go.set()
        delay = self.load_until_the_kill(b, seed, lambda: sum(p.progress for p in publishers))
        phase.dying.set()
        b.kill()  # SIGKILL to its PID, mid-load
        phase.stop.set()
        for p in publishers:
            p.join(2 * TIMEOUT)
            self.assertFalse(p.is_alive(), p.name + " did not end after the broker died")
        self.assertEqual([e for p in publishers for e in p.errors], [])
        sent = {t: s for p in publishers for t, s in p.sent.items()}
        acked = {t: seq for p in publishers for t, seq in p.acked.items()}
        acks = sum(p.acks for p in publishers)

        b = self.start(data)
        loaded = b.loaded()
        listed = list_retained(b.line_port, "t/#")
        via_mqtt = retained_via_mqtt(b.mqtt_port, "t/#", lambda got: acked.keys() <= got.keys(),
                                     TIMEOUT)
        problems = []
        for topic, seq in sorted(acked.items()):
            value = listed.get(topic)
            if value is None:
                problems.append("%s: no retained message, %d was acknowledged" % (topic, seq))
            elif not value.isdigit() or int(value) not in sent[topic]:
                problems.append("%s: %r was never sent there" % (topic, value))
            elif int(value) < seq:
                problems.append("%s: %s after the restart, %d was acknowledged" % (topic, value,
                                                                                   seq))
            if via_mqtt.get(topic) != value:
                problems.append("%s: an MQTT subscriber got %r, LIST says %r" % (
                    topic, via_mqtt.get(topic), value))
        for topic, value in sorted(listed.items()):
            if topic not in acked and (not value.isdigit()
                                       or int(value) not in sent.get(topic, ())):
                problems.append("%s: %r was never sent there" % (topic, value))
        print("seed %d: kill -9 after %.2f s of load; %d acks (%s); %d topics checked, %d "
              "retained after the restart, log: loaded %d" % (
                  seed, delay, acks, ", ".join("%s %d" % (p.name, p.acks) for p in publishers),
                  len(acked), len(listed), loaded))
        self.assertGreater(acks, 100, "too few acknowledged publishes to check anything")
        self.assertEqual(problems[:20], [], "seed %d: %d problems, %d acknowledged topics" % (
            seed, len(problems), len(acked)))
        self.assertEqual(loaded, len(listed), "the start-up log and LIST disagree")
        self.assertEqual(b.stop(), 0)


class SigtermFlushesAsync(Case):
    def test_sigterm_writes_every_acknowledged_retained_message(self):
        data = self.data_dir()
        b = self.start(data, "--durability", "async", "--flush-interval", "60000",
                       "--sys-interval", "1", traced=True)  # $SYS: retained, not stored
        trace = Trace(b, self.tmp)
        expected, pairs = {}, []
        for value in ("first", "last"):  # the second publish of each topic replaces the first
            for i in range(900):
                pairs.append(("s/line/%d" % i, "%s-%d" % (value, i)))
        self.publish_retained(b.line_port, pairs)
        expected.update(pairs)
        m = Mqtt(b.mqtt_port, "async-v5", 5)
        for value in ("first", "last"):
            for i in range(100):
                topic = "s/mqtt/%d" % i
                expected[topic] = "%s-%d" % (value, i)
                self.assertEqual(m.publish(topic, expected[topic]), 0, topic)
        m.close()
        self.assertEqual(len(expected), 1000)
        h.wait_until(lambda: list_retained(b.line_port, "$SYS/#"), "the $SYS topics")
        self.assertEqual(b.stop(), 0)
        # A crash of the machine after the exit loses nothing: the store's log was synced after
        # its last write (or a table file holding it was written and synced).
        events = trace.events()
        wal = [i for i, (call, f, _) in enumerate(events) if call in ("write", "writev", "pwrite64")
               and f.startswith(data + "/") and f.endswith(".log")]
        self.assertTrue(wal, "no write to %s/*.log traced" % data)
        synced = [(call, f) for call, f, _ in events[wal[-1]:] if call in ("fdatasync", "fsync")
                  and (f == events[wal[-1]][1] or f.endswith(".sst"))]
        self.assertTrue(synced, "SIGTERM: the last write to %s was not synced before the exit"
                        % events[wal[-1]][1])

        b = self.start(data)
        self.assertEqual(b.loaded(), 1000)
        listed = list_retained(b.line_port, "s/#")
        wrong = sorted((t, listed.get(t), v) for t, v in expected.items() if listed.get(t) != v)
        self.assertEqual(wrong[:10], [], "%d of 1000 topics wrong after SIGTERM and restart "
                                         "(topic, found, expected)" % len(wrong))
        self.assertEqual(len(listed), 1000)
        self.assertEqual(list_retained(b.line_port, "$SYS/#"), {}, "$SYS topics were stored")
        self.assertEqual(b.stop(), 0)


class RestartWith100kRetained(Case):
    N = 100_000

    def test_a_restart_loads_100000_retained_messages(self):
        data = self.data_dir()
        # Async: in sync mode the line protocol syncs once per publish of a pipelining socket.
        b = self.start(data, "--durability", "async")
        s = LineSocket(b.line_port, "bulk")
        sender = threading.Thread(target=lambda: [
            s.send("PUBLISH@big/%d@v%d@retain" % (i, i) for i in range(at, min(self.N, at + 1000)))
            for at in range(0, self.N, 1000)], daemon=True)
        began = time.monotonic()
        sender.start()
        acked, deadline = 0, time.monotonic() + BULK
        while acked < self.N:
            self.assertLess(time.monotonic(), deadline, "only %d PUBACKs within %.0f s"
                            % (acked, BULK))
            for line in s.replies():
                self.assertEqual(line, "PUBACK", "reply %d" % acked)
                acked += 1
        sender.join(TIMEOUT)
        s.close()
        print("100000 retained publishes acknowledged in %.1f s" % (time.monotonic() - began))
        self.assertEqual(b.stop(BULK), 0)

        b = self.start(data, timeout=BULK)
        print("restart with 100000 retained messages: listeners up %.2f s after the process "
              "started" % b.up_after)
        self.assertEqual(b.loaded(), self.N)
        self.assertIn("loaded 100000 retained message(s)", b.stderr())
        began = time.monotonic()
        got = retained_via_mqtt(b.mqtt_port, "#", lambda got: len(got) >= self.N, BULK)
        print("a '#' subscriber got %d retained messages in %.1f s" % (
            len(got), time.monotonic() - began))
        self.assertEqual(len(got), self.N, "distinct retained topics a '#' subscriber got")
        wrong = [(t, v) for t, v in got.items() if v != "v" + t[len("big/"):]]
        self.assertEqual(wrong[:10], [], "%d wrong values" % len(wrong))
        self.assertEqual(b.stop(BULK), 0)


class StorageErrors(Case):
    def test_faults_refuse_retained_publishes_and_the_broker_recovers(self):
        data, faults = self.data_dir(), os.path.join(self.tmp, "faults")
        b = self.start(data, "--test-storage-faults", faults)
        watcher = LineSession(b.line_port, "watcher")
        self.addCleanup(watcher.close)
        self.assertEqual(watcher.request("SUBSCRIBE@live/#"), "SUBACK")
        line = LineSocket(b.line_port, "faulty-line")
        self.addCleanup(line.close)
        v5, v311 = Mqtt(b.mqtt_port, "faulty-v5", 5), Mqtt(b.mqtt_port, "faulty-v311", 4)
        self.addCleanup(v5.close)
        self.assertEqual(line.request("PUBLISH@r/line@before@retain"), "PUBACK")
        self.assertEqual(v5.publish("r/v5", "before"), 0)
        self.assertEqual(v311.publish("r/v311", "before"), 0)

        open(faults, "w").close()  # from now on every write to the store fails
        reply = line.request("PUBLISH@r/line@during@retain")
        self.assertTrue(reply.startswith("ERROR@storage@"), "line retained publish during the "
                        "fault: %r, want ERROR@storage@<text>" % reply)
        self.assertEqual(v5.publish("r/v5", "during"), 0x80, "MQTT 5.0 PUBACK reason code")
        try:
            code = v311.publish("r/v311", "during")
        except (AssertionError, OSError) as e:
            self.fail("MQTT 3.1.1 retained publish during the fault: %r, want the connection "
                      "closed" % e)
        self.assertIsNone(code, "MQTT 3.1.1 retained publish during the fault: PUBACK, want "
                          "the connection closed without it")
        v311.close()
        # What needs no disk goes on: non-retained publishes of every protocol, delivered.
        self.assertEqual(line.request("PUBLISH@live/line@during"), "PUBACK")
        self.assertEqual(watcher.push(), "MESSAGE@live/line@during")
        self.assertLess(v5.publish("live/v5", "during", qos=2, retain=False), 0x80, "PUBREC")
        v5.release()
        self.assertEqual(watcher.push(), "MESSAGE@live/v5@during")
        v311 = Mqtt(b.mqtt_port, "faulty-v311", 4)
        self.assertEqual(v311.publish("live/v311", "during", retain=False), 0)
        self.assertEqual(watcher.push(), "MESSAGE@live/v311@during")
        v311.publish("live/v311", "qos0", qos=0, retain=False)
        self.assertEqual(watcher.push(), "MESSAGE@live/v311@qos0")
        v311.close()

        os.remove(faults)  # the broker recovers by itself: retry until each is acknowledged
        def line_after():
            reply = line.request("PUBLISH@r/line@after@retain")
            self.assertTrue(reply == "PUBACK" or reply.startswith("ERROR@storage@"), reply)
            return reply == "PUBACK"

        def v5_after():
            code = v5.publish("r/v5", "after")
            self.assertIn(code, (0, 0x80), "MQTT 5.0 PUBACK reason code")
            return code == 0

        def v311_after():
            c = Mqtt(b.mqtt_port, "faulty-v311", 4)
            try:
                return c.publish("r/v311", "after") == 0
            finally:
                c.close()

        todo, deadline = [line_after, v5_after, v311_after], time.monotonic() + TIMEOUT
        while todo and time.monotonic() < deadline:
            todo = [attempt for attempt in todo if not attempt()]
            time.sleep(0.05 if todo else 0)
        self.assertEqual([a.__name__ for a in todo], [], "not acknowledged within %.0f s of "
                         "removing the fault file" % TIMEOUT)

        # Deletes (an empty retained publish) reach the disk too, also across protocols.
        v311 = Mqtt(b.mqtt_port, "faulty-v311", 4)
        self.addCleanup(v311.close)
        self.assertEqual(line.request("PUBLISH@del/line@x@retain"), "PUBACK")
        self.assertEqual(v5.publish("del/v5", "x"), 0)
        self.assertEqual(v311.publish("del/cross", "x"), 0)
        self.assertEqual(len(list_retained(b.line_port, "del/#")), 3)
        self.assertEqual(line.request("PUBLISH@del/line@@retain"), "PUBACK")
        self.assertEqual(v5.publish("del/v5", ""), 0)
        self.assertEqual(line.request("PUBLISH@del/cross@@retain"), "PUBACK")
        self.assertEqual(list_retained(b.line_port, "del/#"), {})
        self.assertEqual(b.stop(), 0)

        b = self.start(data)
        self.assertEqual(list_retained(b.line_port, "#"),
                         {"r/line": "after", "r/v5": "after", "r/v311": "after"})
        self.assertEqual(b.loaded(), 3)
        self.assertEqual(b.stop(), 0)


class DiskFull(Case):
    """A really full file system: a small tmpfs (needs root and mount; said, and skipped, where the
    machine does not allow it). Retained publishes are refused once the store's reserve (16 MiB
    kept free) would be passed, the broker serves on, and it recovers once there is room."""

    def mount(self, size):
        options = "size=%s" % size if not os.path.ismount(self.fs) else "remount,size=%s" % size
        return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", self.fs],
                              capture_output=True, text=True, timeout=TIMEOUT)

    def test_a_full_disk_refuses_retained_publishes_and_the_broker_recovers(self):
        self.fs = os.path.join(self.tmp, "fs")
        os.makedirs(self.fs)
        mounted = self.mount("24m") if os.geteuid() == 0 else None
        if mounted is None or mounted.returncode != 0:
            self.skipTest("cannot mount a small tmpfs here (needs root and mount): %s" %
                          (mounted.stderr.strip() if mounted else "not root"))
        self.addCleanup(lambda: subprocess.run(["umount", "-l", self.fs], capture_output=True))
        data = os.path.join(self.fs, "store")
        b = self.start(data)
        line = LineSocket(b.line_port, "filler")
        self.addCleanup(line.close)
        payload = "x" * 60000
        acked, refused = [], 0
        for i in range(400):  # 24 MB: about 130 of them fit before the reserve
            reply = line.request("PUBLISH@full/%d@%s@retain" % (i, payload))
            if reply == "PUBACK":
                acked.append(i)
                continue
            self.assertTrue(reply.startswith("ERROR@storage@"), "full disk: %r" % reply[:200])
            refused += 1
            if refused == 3:
                break
        print("full disk: %d acknowledged, then %d refused" % (len(acked), refused))
        self.assertGreater(len(acked), 10)
        self.assertEqual(refused, 3, "the disk never filled up")
        self.assertIn("No space left", b.stderr())
        # What needs no disk goes on.
        self.assertEqual(line.request("PUBLISH@live/x@during"), "PUBACK")
        # Room again: retained publishes are acknowledged again, by themselves.
        self.assertEqual(self.mount("96m").returncode, 0)
        deadline = time.monotonic() + TIMEOUT
        while line.request("PUBLISH@full/after@room@retain") != "PUBACK":
            self.assertLess(time.monotonic(), deadline, "no recovery once there was room")
            time.sleep(0.05)
        self.assertEqual(b.stop(), 0)
        again = self.start(data)
        self.assertEqual(again.loaded(), len(acked) + 1)
        self.assertEqual(again.stop(), 0)


class CorruptDataDirRefusesToStart(Case):
    def refused(self, b, why):
        code = b.wait_exit(TIMEOUT)
        self.assertIsNotNone(code, "%s: the broker still runs (listening: %r)" % (why, b.ports))
        print("%s: exit %d, stderr:\n%s" % (why, code, b.stderr().rstrip()))
        self.assertNotEqual(code, 0, why)
        self.assertEqual(b.ports, {}, "%s: listeners opened: %r" % (why, b.stdout))
        return b.stderr()

    def test_garbage_over_current_stops_start_up_naming_the_repair(self):
        data = self.data_dir()
        b = self.start(data)
        self.publish_retained(b.line_port, [("c/1", "kept")])
        self.assertEqual(b.stop(), 0)
        current = os.path.join(data, "CURRENT")
        self.assertTrue(os.path.isfile(current), "no RocksDB CURRENT file in " + data)
        with open(current, "wb") as f:
            f.write(b"\xde\xad\xbe\xef not a manifest \x00\xff" * 8)
        stderr = self.refused(self.start(data, listening=False), "garbage over CURRENT")
        lines = [line for line in stderr.splitlines() if "ldb --db=" in line and data in line]
        self.assertEqual(len(lines), 1, "want one stderr line with 'ldb --db=' and %s" % data)

    def test_a_second_broker_on_a_held_directory_does_not_start(self):
        data = self.data_dir()
        first = self.start(data)
        self.publish_retained(first.line_port, [("lock/a", "1")])
        self.refused(self.start(data, listening=False), "a second broker on the same directory")
        # The first one serves on, and its store is intact.
        self.publish_retained(first.line_port, [("lock/b", "2")])
        self.assertEqual(list_retained(first.line_port, "lock/#"), {"lock/a": "1", "lock/b": "2"})
        self.assertEqual(first.stop(), 0)
        again = self.start(data)
        self.assertEqual(again.loaded(), 2)
        self.assertEqual(list_retained(again.line_port, "lock/#"), {"lock/a": "1", "lock/b": "2"})
        self.assertEqual(again.stop(), 0)


if __name__ == "__main__":
    h.main()
