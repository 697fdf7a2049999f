#!/usr/bin/python3
"""Persistence of MQTT sessions (`broker --data-dir DIR`), checked from outside the process.

Kill9Sessions: Paho publishers (3.1.1 and 5.0, persistent sessions) send unique QoS 1 and QoS 2
messages to four persistent subscribers (3.1.1 clean session 0 and 5.0 Session Expiry Interval
3600; two online during the load, two offline) of a broker in sync mode, which is killed
(SIGKILL, at an instant drawn from a fixed seed) and restarted on the same directory. The
publishers come back to their sessions and send again what had no acknowledgement; each
subscriber reconnects to its session: every QoS 1 message reached it at least once and every QoS
2 message exactly once, counted over both lives of the broker.
Qos2ResendAfterACrashBeforeItsId: the broker kills itself while writing a QoS 2 packet id; the
resend after the restart reaches offline and online subscribers once.
SessionsSurviveSigterm: offline sessions with their subscriptions (QoS, No Local, Subscription
Identifier) and queued messages survive SIGTERM; clean sessions connected at the stop do not.
SessionExpiryAcrossRestart: `--session-expiry` and the 5.0 Session Expiry Interval run on while
the broker is down (wall-clock deadlines): sessions past them are gone after the restart, the
others are still there.

Run by ctest as DurabilitySessions.<Case> (tests/CMakeLists.txt):
durability_sessions_test.py --broker BIN Case. Brokers (durability_test.Tern) run on free loopback
ports and are stopped by their PID; every wait is bounded by the harness deadline
(mqtt_harness.TIMEOUT, scaled by TERN_TEST_TIMEOUT_SCALE), and so are the expiry intervals.

Subscribers keep one Paho client object across the restart: like a client's own session state, it
remembers the QoS 2 messages it answered PUBREC to and delivers them once, at PUBREL (a new object
would forget them and drop the message when the broker resends only the PUBREL).
"""
import collections
import random
import re
import struct
import threading
import time
import types

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import mqtt_harness as h
from mqtt_harness import TIMEOUT
from durability_test import Case, Mqtt, Trace, paho_load
from mqtt5_clients_test import connect_properties, packet, publish5, s16

SCALE = TIMEOUT / 10.0  # TERN_TEST_TIMEOUT_SCALE
QUIET = 0.5 * SCALE  # no message for this long: nothing more is on its way
LOADED = re.compile(r"loaded (\d+) persistent MQTT session\(s\) with (\d+) queued or in-flight "
                    r"message\(s\)")
ROLLED_BACK = re.compile(r"(\d+) deliveries of (\d+) QoS 2 publish\(es\) whose packet id was "
                         r"not stored rolled back")
Got = collections.namedtuple("Got", "payload topic qos dup life ids mid")


def sessions_loaded(b):
    """(N, M) of the one `loaded N persistent MQTT session(s) with M queued ...` line."""
    found = LOADED.findall(b.stderr())
    assert len(found) == 1, ("want one 'loaded N persistent MQTT session(s)' line on stderr by "
                             "the time the listeners are up, got %d; stderr:\n%s"
                             % (len(found), b.stderr()[-3000:]))
    return int(found[0][0]), int(found[0][1])


class Sub:
    """A Paho subscriber (3.1.1 clean session `clean`, or 5.0 with Session Expiry Interval
    `expiry`) with all it got, each message tagged with the broker life it came in (1 or 2)."""

    def __init__(self, name, version, clean=False, expiry=3600, slow=0.0):
        self.name, self.v5, self.expiry, self.slow = name, version == 5, expiry, slow
        self.cond = threading.Condition()
        self.got, self.connacks, self.subacks, self.life, self.last = [], [], {}, 1, 0.0
        kw = {} if self.v5 else {"clean_session": clean}
        self.c = paho.Client(client_id=name, reconnect_on_failure=False,
                             protocol=paho.MQTTv5 if self.v5 else paho.MQTTv311, **kw)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe

    def _on_connect(self, _c, _u, flags, rc, props=None):
        with self.cond:
            self.connacks.append((flags.get("session present", 0), getattr(rc, "value", rc),
                                  getattr(props, "SessionExpiryInterval", None)))
            self.cond.notify_all()

    def _on_message(self, _c, _u, m):
        ids = tuple(getattr(m.properties, "SubscriptionIdentifier", ())) if self.v5 else ()
        with self.cond:
            self.got.append(Got(m.payload.decode("utf-8", "replace"), m.topic, m.qos, m.dup,
                                self.life, ids, m.mid))
            self.last = time.monotonic()
            self.cond.notify_all()
        if self.slow:  # its PUBACK / PUBREC waits: the broker queues beyond the in-flight window
            time.sleep(self.slow)

    def _on_subscribe(self, _c, _u, mid, codes, *_):
        with self.cond:
            self.subacks[mid] = [getattr(x, "value", x) for x in codes]
            self.cond.notify_all()

    def connect(self, port, clean_start=False):
        """(session present, return code, granted expiry) of the CONNACK."""
        n = len(self.connacks)
        if self.v5:
            props = connect_properties(SessionExpiryInterval=self.expiry)
            self.c.connect("127.0.0.1", port, keepalive=60, clean_start=clean_start,
                           properties=props)
        else:
            self.c.connect("127.0.0.1", port, keepalive=60)
        self.c.loop_start()
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.connacks) > n, TIMEOUT), \
                "%s: no CONNACK" % self.name
            present, rc, granted = self.connacks[-1]
        assert rc == 0, "%s: CONNACK %r" % (self.name, self.connacks[-1])
        return present, rc, granted

    def subscribe(self, topic_filter, qos, sub_id=None, **options):
        props = None
        if sub_id is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        if self.v5:
            rc, mid = self.c.subscribe(topic_filter, options=paho.SubscribeOptions(qos=qos,
                                                                                   **options),
                                       properties=props)
        else:
            rc, mid = self.c.subscribe(topic_filter, qos)
        assert rc == paho.MQTT_ERR_SUCCESS, rc
        with self.cond:
            assert self.cond.wait_for(lambda: mid in self.subacks, TIMEOUT), "no SUBACK"
            assert self.subacks[mid] == [qos], "%s SUBSCRIBE %s: %r" % (self.name, topic_filter,
                                                                        self.subacks[mid])

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()

    def lost(self):
        """After the broker died: its network thread ends (no reconnect of its own)."""
        self.c.loop_stop()
        with self.cond:
            self.life += 1

    def wait(self, done, timeout=TIMEOUT):
        """Waits until done(got) and QUIET without a message, or the timeout; the messages."""
        began = time.monotonic()
        deadline = began + timeout
        with self.cond:
            while time.monotonic() < deadline:
                if done(self.got) and time.monotonic() - max(self.last, began) >= QUIET:
                    break
                self.cond.wait(0.05)
            return list(self.got)


def published(info):
    """Whether Paho got the acknowledgement (PUBACK, PUBCOMP) of publish `info`. A publish made
    while the connection was going down has rc NO_CONN, yet Paho keeps it and sends it once it
    connects again; Paho 1.x's is_published() raises for it, so its flag is read directly."""
    if info.rc == paho.MQTT_ERR_NO_CONN:
        with info._condition:  # noqa: SLF001 -- no public accessor for this case in Paho 1.x
            return info._published  # noqa: SLF001
    return info.rc == paho.MQTT_ERR_SUCCESS and info.is_published()


class Pub(threading.Thread):
    """Paho publisher of unique payloads `name:seq` at QoS 1 and 2 to `p/<k>/q<qos>/<name>`, k a
    subscriber drawn from its seed; at most `rate` a second (so a fast machine does not end the load
    before the kill), `limit` in all, 100 not yet acknowledged. A persistent session (3.1.1 clean
    session 0, 5.0 Session Expiry Interval 3600), so that after the restart its client can come back
    to it and send again what was not acknowledged (come_back). Ends when phase.stop is set (after
    the broker died); acked: those Paho reported published (PUBACK for QoS 1, PUBCOMP for QoS 2)."""

    def __init__(self, port, name, version, seed, subscribers, phase, limit, rate):
        super().__init__(daemon=True)
        self.port, self.name, self.version, self.subscribers = port, name, version, subscribers
        self.rng, self.phase, self.limit, self.ready = random.Random(seed), phase, limit, \
            threading.Event()
        self.sent, self.acked, self.errors, self.done_at, self.rate = [], [], [], None, rate
        self.progress = 0  # acknowledged so far (paho_load counts them as they come)

    def run(self):
        try:
            self.load()
        except Exception as e:  # noqa: BLE001 -- reported by the test
            self.errors.append("%s: %r" % (self.name, e))
        finally:
            self.ready.set()

    def load(self):
        def publish(c):
            if len(self.sent) >= self.limit:
                return None
            k, qos = self.rng.randrange(self.subscribers), self.rng.choice((1, 2))
            payload = "%s:%d" % (self.name, len(self.sent))
            info = c.publish("p/%d/q%d/%s" % (k, qos, self.name), payload, qos=qos)
            return info, k, qos, payload

        v5 = self.version == 5
        try:
            paho_load(self, paho.MQTTv5 if v5 else paho.MQTTv311, publish, self.sent,
                      pace=lambda n, elapsed: elapsed < n / self.rate,
                      connect_options=self.connect_options(True) if v5 else None,
                      reconnect_on_failure=False, **({} if v5 else {"clean_session": False}))
            self.done_at = time.monotonic()
        finally:
            self.count_acks()

    def connect_options(self, clean_start):
        return {"clean_start": clean_start,
                "properties": connect_properties(SessionExpiryInterval=3600)}

    def count_acks(self):
        self.acked = [(k, qos, p) for info, k, qos, p in self.sent if published(info)]

    def come_back(self, port):
        """After the restart: the same client object connects to its session again, and Paho
        sends the PUBLISHes not acknowledged again (DUP) and the PUBRELs not completed, as a
        client does [MQTT-4.4.0-1]. Returns once all it ever published is acknowledged (or the
        deadline passed); acked counts both lives."""
        c = self.client
        c.connect("127.0.0.1", port, keepalive=60,
                  **(self.connect_options(False) if self.version == 5 else {}))
        c.loop_start()
        deadline = time.monotonic() + TIMEOUT
        pending = [info for info, *_ in self.sent
                   if info.rc in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN)]
        while time.monotonic() < deadline and not all(published(i) for i in pending):
            time.sleep(0.02)
        c.disconnect()
        c.loop_stop()
        self.count_acks()


class Kill9Sessions(Case):
    # (name, MQTT version, online during the load, seconds its on_message takes: k9-sub-5-on
    # falls behind, so the broker holds a queue beyond its in-flight window when it is killed)
    SUBS = [("k9-sub-311-on", 4, True, 0), ("k9-sub-311-off", 4, False, 0),
            ("k9-sub-5-on", 5, True, 0.002), ("k9-sub-5-off", 5, False, 0)]
    PUBS = [("k9-pub-311", 4), ("k9-pub-5", 5), ("k9-pub-311b", 4)]
    RATE, LIMIT = 1000, 4000  # per publisher: the load lasts 4 s, the kill comes 0.3-1.5 s
    # after the 200th ack

    def test_acknowledged_messages_reach_persistent_sessions_across_kill_9(self):
        for seed in (1, 2, 3):
            with self.subTest(seed=seed):
                self.round(seed)

    def round(self, seed):
        data = self.data_dir("round-%d" % seed)
        args = ("--durability", "sync", "--max-queued-messages", "100000")
        b = self.start(data, *args)
        subs = [Sub(name, version, slow=slow) for name, version, _, slow in self.SUBS]
        for k, s in enumerate(subs):
            self.assertEqual(s.connect(b.mqtt_port, clean_start=True)[0], 0, s.name)
            s.subscribe("p/%d/q1/#" % k, 1)
            s.subscribe("p/%d/q2/#" % k, 2)
        for s, (_, _, online, _) in zip(subs, self.SUBS):
            if not online:
                s.disconnect()
        phase = types.SimpleNamespace(go=threading.Event(), stop=threading.Event())
        pubs = [Pub(b.mqtt_port, name, version, seed * 10 + i, len(subs), phase, self.LIMIT,
                    self.RATE)
                for i, (name, version) in enumerate(self.PUBS)]
        for p in pubs:
            p.start()
        for p in pubs:
            self.assertTrue(p.ready.wait(TIMEOUT), p.name + " did not connect")
        self.assertEqual([e for p in pubs for e in p.errors], [])
        phase.go.set()
        delay = self.load_until_the_kill(b, seed, lambda: sum(p.progress for p in pubs))
        still = [p.name for p in pubs if p.done_at is None]
        b.kill()  # SIGKILL to its PID, mid-load
        phase.stop.set()
        for p in pubs:
            p.join(2 * TIMEOUT)
            self.assertFalse(p.is_alive(), p.name + " did not end after the broker died")
        self.assertEqual([e for p in pubs for e in p.errors], [])
        for s, (_, _, online, _) in zip(subs, self.SUBS):
            if online:
                s.lost()
            else:
                s.life += 1
        before = [len(s.got) for s in subs]

        b = self.start(data, *args)
        loaded = sessions_loaded(b)
        acked_before = sum(len(pub.acked) for pub in pubs)
        rolled_back = [int(n) for n in ROLLED_BACK.findall(b.stderr())[0]]
        present = [s.connect(b.mqtt_port)[0] for s in subs]
        for pub in pubs:
            pub.come_back(b.mqtt_port)
        sent = {p: (k, qos) for pub in pubs for _, k, qos, p in pub.sent}
        acked = {p: (k, qos) for pub in pubs for k, qos, p in pub.acked}
        want = [{p for p, (kk, _) in acked.items() if kk == k} for k in range(len(subs))]
        deadline = time.monotonic() + TIMEOUT  # one for all: each waits for what is left of it
        got = [s.wait(lambda g, w=w: w <= {m.payload for m in g},
                      max(QUIET, deadline - time.monotonic())) for s, w in zip(subs, want)]
        for s in subs:
            s.disconnect()
        self.assertEqual(b.stop(), 0)

        problems, rows, dups2 = [], [], []
        for k, (s, (_, _, online, _)) in enumerate(zip(subs, self.SUBS)):
            copies = collections.defaultdict(list)
            for m in got[k]:
                copies[m.payload].append(m)
            count = collections.Counter({p: len(c) for p, c in copies.items()})
            for m in got[k]:
                if m.payload not in sent:
                    problems.append("%s got %r on %s: never sent" % (s.name, m.payload, m.topic))
                elif sent[m.payload] != (k, m.qos):
                    problems.append("%s got %r on %s at QoS %d, sent to subscriber %d at QoS %d"
                                    % (s.name, m.payload, m.topic, m.qos, *sent[m.payload]))
            missing = sorted(p for p in want[k] if count[p] == 0)
            if missing:
                problems.append("%s (%s): %d acknowledged messages never arrived, e.g. %s" % (
                    s.name, "online" if online else "offline", len(missing), missing[:10]))
            d1 = {p: n for p, n in count.items() if n > 1 and sent.get(p, (0, 1))[1] == 1}
            d2 = {p: n for p, n in count.items() if n > 1 and sent.get(p, (0, 1))[1] == 2}
            for p in sorted(d2):
                dups2.append("%s (%s during the load): QoS 2 %r %s %d times: %s" % (
                    s.name, "online" if online else "offline", p,
                    "acknowledged" if p in acked else "not acknowledged", count[p],
                    ", ".join("life %d packet id %d dup=%d" % (m.life, m.mid, m.dup)
                              for m in copies[p])))
            rows.append("  %-15s %-7s before kill %5d, after %5d; acked for it: QoS 1 %d, "
                        "QoS 2 %d; distinct got %d; QoS 1 duplicates %d (%d of them DUP=0), "
                        "QoS 2 duplicates %d; missing %d" % (
                            s.name, "online" if online else "offline", before[k],
                            len(got[k]) - before[k],
                            sum(1 for p in want[k] if acked[p][1] == 1),
                            sum(1 for p in want[k] if acked[p][1] == 2), len(count),
                            sum(n - 1 for n in d1.values()),
                            sum(1 for p in d1 for m in copies[p][1:] if not m.dup),
                            sum(n - 1 for n in d2.values()), len(missing)))
        print("seed %d: kill -9 after %.2f s of load (publishers still publishing: %s); sent %d, "
              "acknowledged %d (%d before the kill; QoS 1 %d, QoS 2 %d; %s); restart log: loaded "
              "%d session(s) with %d queued or in-flight message(s), %d deliveries of %d QoS 2 "
              "publishes rolled back; session present %r\n%s" % (
                  seed, delay, still, len(sent), len(acked), acked_before,
                  sum(1 for _, q in acked.values() if q == 1),
                  sum(1 for _, q in acked.values() if q == 2),
                  ", ".join("%s %d/%d" % (p.name, len(p.acked), len(p.sent)) for p in pubs),
                  loaded[0], loaded[1], rolled_back[0], rolled_back[1], present, "\n".join(rows)))
        for line in dups2:
            print("  " + line)
        self.assertEqual(still, [p.name for p in pubs], "the load ended before the kill")
        self.assertGreater(len(acked), 100, "too few acknowledged publishes to check anything")
        self.assertEqual(loaded[0], len(subs) + len(pubs),
                         "persistent sessions in the start-up log")
        self.assertEqual(len(acked), len(sent), "publishes never acknowledged after the restart")
        self.assertEqual(present, [1] * len(subs), "CONNACK session present after the restart")
        self.assertEqual(problems[:20], [], "seed %d: %d problems" % (seed, len(problems)))
        self.assertEqual(dups2[:20], [], "seed %d: %d QoS 2 messages delivered more than once"
                         % (seed, len(dups2)))


def publish_all(port, messages, name="durability-sessions-pub", version=4):
    """Publishes (topic, payload, qos) in order from a Paho client; all acknowledged."""
    c = paho.Client(client_id=name, reconnect_on_failure=False,
                    protocol=paho.MQTTv5 if version == 5 else paho.MQTTv311)
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    try:
        infos = [c.publish(t, p, qos=q) for t, p, q in messages]
        for info, m in zip(infos, messages):
            info.wait_for_publish(TIMEOUT)
            assert info.is_published(), "%r not acknowledged within %.0f s" % (m, TIMEOUT)
    finally:
        c.disconnect()
        c.loop_stop()


class Qos2WaitsForItsEntry(Case):
    def test_a_qos2_publish_to_a_persistent_session_leaves_once_its_entry_is_synced(self):
        # --durability sync: a QoS 2 message goes to a persistent session only once its entry
        # ("sent, packet id N") is on disk. Sent before, a crash would leave it queued or missing
        # on disk, and the restarted broker would send it again under a new packet id, a copy the
        # client cannot recognize (docs/durability.md). Online subscribers (the message goes in
        # flight at once) and one that was offline (it goes from its queue when it comes back),
        # for each protocol; epoll, so that the sends are system calls strace sees.
        data = self.data_dir()
        b = self.start(data, "--durability", "sync", "--io", "epoll", traced=True)
        trace = Trace(b, self.tmp)
        topics = []
        for version in (4, 5):
            live = Mqtt(b.mqtt_port, "q2-live-%d" % version, version, clean=False)
            live.subscribe("q2/live/%d" % version, 2)
            back = Mqtt(b.mqtt_port, "q2-back-%d" % version, version, clean=False)
            back.subscribe("q2/back/%d" % version, 2)
            back.close()
            pub = Mqtt(b.mqtt_port, "q2-pub-%d" % version, version)
            for topic in ("q2/live/%d" % version, "q2/back/%d" % version):
                self.assertEqual(pub.publish(topic, "v", qos=2, retain=False), 0, topic)
                pub.release()
                topics.append(topic)
            first, _ = live.read()
            self.assertEqual(first & 0xF6, 0x34, "the live subscriber's QoS 2 PUBLISH")
            back = Mqtt(b.mqtt_port, "q2-back-%d" % version, version, clean=False)
            first, _ = back.read()
            self.assertEqual(first & 0xF6, 0x34, "the queued QoS 2 PUBLISH after the reconnect")
            for c in (live, back, pub):
                c.close()
        self.assertEqual(b.stop(), 0)
        events = trace.events()
        for topic in topics:
            # The only send holding the topic is its PUBLISH (maybe after the CONNACK, in one).
            named = struct.pack(">H", len(topic)) + topic.encode()
            sent = next((i for i, e in enumerate(events) if e[1].startswith("socket:")
                         and named in e[2]), None)
            self.assertIsNotNone(sent, "%s: the PUBLISH to its subscriber was not traced" % topic)
            client = ("q2-%s-%s" % (topic.split("/")[1], topic[-1])).encode()
            # Its connection's first send (the CONNACK) and the PUBLISH: the subscriber's queue
            # entry (key q/<client id>\0<sequence>) must be written and synced between the two.
            connected = next(i for i, e in enumerate(events) if e[1] == events[sent][1])
            writes = [i for i in range(connected, sent)
                      if events[i][0].startswith(("write", "pwrite"))
                      and events[i][1].startswith(data + "/") and b"q/" + client + b"\x00"
                      in events[i][2]]
            self.assertTrue(writes, "%s: sent before its entry for %s was written" % (topic,
                                                                                     client))
            log = events[writes[-1]][1]
            synced = [i for i in range(writes[-1], sent)
                      if events[i][0] in ("fdatasync", "fsync") and events[i][1] == log]
            self.assertTrue(synced, "%s: the PUBLISH left before %s was synced" % (topic, log))


class Qos2PacketIdAfterItsDeliveries(Case):
    def test_a_qos2_packet_id_is_synced_after_the_entries_of_its_deliveries(self):
        # --durability sync: a restart that finds a persistent publisher's QoS 2 packet id answers
        # the client's resend without delivering it again. So the id must reach the disk only
        # after the queue entries of the publish's deliveries (on both workers) did, and the
        # PUBREC leave only after the id did. Written before them, a crash in between would lose
        # the message for those sessions (docs/durability.md). Offline subscribers (their entries
        # stay on disk), for each protocol; epoll, so that the PUBREC is a system call strace sees.
        data = self.data_dir()
        b = self.start(data, "--durability", "sync", "--io", "epoll", traced=True)
        trace = Trace(b, self.tmp)
        cases = []
        for version in (4, 5):
            subscribers = ["q2id-sub-%d-%d" % (version, k) for k in range(4)]
            for name in subscribers:
                sub = Mqtt(b.mqtt_port, name, version, clean=False)
                sub.subscribe("q2id/%d" % version, 2)
                sub.close()
            publisher = "q2id-pub-%d" % version
            pub = Mqtt(b.mqtt_port, publisher, version, clean=False)
            pub.pid = 100 * version  # the next publish uses 100 * version + 1
            self.assertEqual(pub.publish("q2id/%d" % version, "v", qos=2, retain=False), 0)
            pub.release()
            pub.close()
            cases.append((publisher, pub.pid, subscribers))
        self.assertEqual(b.stop(), 0)
        events = trace.events()

        def writes_of(key):
            return [i for i, e in enumerate(events) if e[0].startswith(("write", "pwrite"))
                    and e[1].startswith(data + "/") and key in e[2]]

        def synced_between(first, last, log):
            return any(events[i][0] in ("fdatasync", "fsync") and events[i][1] == log
                       for i in range(first, last))

        for publisher, pid, subscribers in cases:
            ids = writes_of(b"i/" + publisher.encode() + b"\x00" + struct.pack(">H", pid))
            self.assertTrue(ids, "%s: its packet id %d was not written" % (publisher, pid))
            written = ids[0]
            for name in subscribers:
                entries = [i for i in writes_of(b"q/" + name.encode() + b"\x00") if i < written]
                self.assertTrue(entries, "%s: packet id %d written before the entry for %s"
                                % (publisher, pid, name))
                self.assertTrue(synced_between(entries[-1], written, events[entries[-1]][1]),
                                "%s: packet id %d written before the entry for %s was synced"
                                % (publisher, pid, name))
            pubrec = next((i for i, e in enumerate(events) if e[1].startswith("socket:")
                           and e[2][:1] == b"\x50" and e[2][2:4] == struct.pack(">H", pid)),
                          None)
            self.assertIsNotNone(pubrec, "%s: the PUBREC was not traced" % publisher)
            self.assertTrue(synced_between(written, pubrec, events[written][1]),
                            "%s: the PUBREC left before packet id %d was synced" % (publisher, pid))


def settled(subs, n):
    """What each of `subs` got once each got at least `n` messages (or the deadline passed) and
    then QUIET passed without a message to any."""
    deadline = time.monotonic() + TIMEOUT
    for sub in subs:
        with sub.cond:
            sub.cond.wait_for(lambda: len(sub.got) >= n, max(0.0, deadline - time.monotonic()))
    while True:
        last = max(sub.last for sub in subs)
        if time.monotonic() - last >= QUIET or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return [list(sub.got) for sub in subs]


def publishes(c):
    """(packet id, DUP) of each PUBLISH raw connection `c` gets until QUIET passes without a
    packet or the broker closes it; answers none."""
    got = []
    c.sock.settimeout(QUIET)
    while True:
        try:
            p = c.read()
        except OSError:  # the timeout
            return got
        if p is None:
            return got
        first, body = p
        if first >> 4 == 3:
            at = 2 + struct.unpack(">H", body[:2])[0]
            got.append((struct.unpack(">H", body[at:at + 2])[0], bool(first & 0x08)))


class Qos2ResendAfterACrashBeforeItsId(Case):
    def test_a_qos2_resend_after_a_crash_before_its_packet_id_was_stored_is_delivered_once(self):
        # --durability sync writes a persistent publisher's QoS 2 packet id only once the queue
        # entries of its deliveries are durable, and the PUBREC after it. The broker is made to
        # die (SIGKILL) just before it writes the id (--test-crash-before-key): the entries are on
        # disk, the id is not, the client got no PUBREC. After the restart the client publishes
        # the message again (DUP) and completes it, and each persistent subscriber (four offline,
        # four online at the crash, spread over both workers) gets it exactly once: the restart
        # rolled back the first copy's deliveries, and the online ones were not sent it before
        # the id was durable. Then, in the same data directory, publishes that did get their
        # PUBREC survive a kill -9 and are not rolled back: one completed (its id erased), one
        # awaiting its PUBREL (its id on disk), and one released before the one awaiting (its id
        # kept as released). For each protocol.
        for version in (4, 5):
            data = self.data_dir("data-%d" % version)
            topic = "q2re/%d" % version
            publisher = "q2re-pub-%d" % version
            key = b"i/" + publisher.encode() + b"\x00" + struct.pack(">H", 1)
            b = self.start(data, "--durability", "sync", "--test-crash-before-key", key.hex())
            subs = [Sub("q2re-sub-%d-%d" % (version, k), version) for k in range(4)]
            for sub in subs:
                sub.connect(b.mqtt_port)
                sub.subscribe(topic, 2)
                sub.disconnect()
            # Online ones by hand: Paho hands a QoS 2 message over at its PUBREL, which would hide
            # a PUBLISH received before the crash; a client may as well deliver at the PUBLISH.
            online = ["q2re-live-%d-%d" % (version, k) for k in range(4)]
            live = [Mqtt(b.mqtt_port, name, version, clean=False) for name in online]
            for c in live:
                c.subscribe(topic, 2)
            pub = Mqtt(b.mqtt_port, publisher, version, clean=False)
            self.assertIsNone(pub.publish(topic, "once", qos=2, retain=False),
                              "a PUBREC came: the broker was to die before writing the id")
            self.assertEqual(b.wait_exit(), -9, "the broker did not kill itself at the id")
            pub.close()
            before = [publishes(c) for c in live]

            b = self.start(data, "--durability", "sync")
            rolled = ROLLED_BACK.findall(b.stderr())
            self.assertEqual(len(rolled), 1, b.stderr()[-3000:])
            self.assertEqual(int(rolled[0][0]), len(subs) + len(live),
                             "deliveries rolled back at the restart")
            live = [Mqtt(b.mqtt_port, name, version, clean=False) for name in online]
            pub = Mqtt(b.mqtt_port, publisher, version, clean=False)
            pub.send(bytes([0x3C]) + publish5(topic, b"once", 2, 1)[1:] if version == 5 else
                     packet(0x3C, s16(topic) + struct.pack(">H", 1) + b"once"))
            first, body = pub.read()
            self.assertEqual((first >> 4, body[:2]), (5, struct.pack(">H", 1)),
                             "the PUBREC of the resend")
            pub.pid = 1
            pub.release()
            for sub in subs:
                sub.connect(b.mqtt_port)
            for sub, got in zip(subs, settled(subs, 1)):
                self.assertEqual([m.payload for m in got], ["once"],
                                 "%s: the message before and after the crash" % sub.name)
                sub.disconnect()
            for name, c, first in zip(online, live, before):
                after = publishes(c)
                self.assertEqual((len(first), len(after)), (0, 1),
                                 "%s (online at the crash): PUBLISHes of the message before and "
                                 "after the crash (packet id, DUP): %r, %r" % (name, first, after))
                c.close()

            # Acknowledged publishes are kept: 2 completed, 3 awaiting its PUBREL, 4 released
            # while 3 still waits.
            for payload in ("two", "three", "four"):
                self.assertEqual(pub.publish(topic, payload, qos=2, retain=False), 0, payload)
                if payload == "two":
                    pub.release()
            pub.send(packet(0x62, struct.pack(">H", 4)))
            pub.expect(7)
            b.kill()
            pub.close()
            b = self.start(data, "--durability", "sync")
            rolled = ROLLED_BACK.findall(b.stderr())
            self.assertEqual([int(n) for n in rolled[0]], [0, 0], b.stderr()[-3000:])
            pub = Mqtt(b.mqtt_port, publisher, version, clean=False)
            pub.send(packet(0x62, struct.pack(">H", 3)))  # the PUBREL it still owes
            pub.expect(7)
            for sub in subs:
                sub.got.clear()
                sub.connect(b.mqtt_port)
            for sub, got in zip(subs, settled(subs, 3)):
                self.assertEqual(sorted(m.payload for m in got), ["four", "three", "two"],
                                 "%s: acknowledged QoS 2 publishes across a kill -9" % sub.name)
                sub.disconnect()
            pub.close()
            self.assertEqual(b.stop(), 0)


def home(client_id, workers):
    """The worker a client id's session lives on (SessionTable::homeOf: FNV-1a)."""
    h = 1469598103934665603
    for byte in client_id.encode():
        h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h % workers


def homed_on(prefix, worker, workers):
    return next(n for n in ("%s-%d" % (prefix, i) for i in range(1000))
                if home(n, workers) == worker)


class SharedRerouteWaitsForItsTaker(Case):
    def test_a_shared_delivery_handed_on_to_a_third_worker_is_durable_before_the_puback(self):
        # --durability sync, three workers: a publisher on worker 0 and a shared subscription
        # with a persistent member offline on worker 1 and one online on worker 2 (it never
        # acknowledges, so its entries stay on disk). Round robin gives every other message to
        # the offline member, which declines it, and worker 1 hands it on to worker 2. Each
        # PUBACK must leave only after the entry of the member that took the message (its m/
        # record, with the payload, is in the same write) was synced; worker 1 wrote nothing,
        # so its answer to the publisher's fence has to wait for worker 2's. epoll, so that the
        # PUBACKs are system calls strace sees.
        data = self.data_dir()
        b = self.start(data, "--durability", "sync", "--io", "epoll", "--workers", "3",
                       traced=True)
        trace = Trace(b, self.tmp)
        away = Mqtt(b.mqtt_port, homed_on("rr-away", 1, 3), 4, clean=False)
        away.subscribe("$share/g/rr", 1)
        away.close()
        taker = Mqtt(b.mqtt_port, homed_on("rr-taker", 2, 3), 4, clean=False)
        taker.subscribe("$share/g/rr", 1)
        pub = Mqtt(b.mqtt_port, homed_on("rr-pub", 0, 3), 4)
        payloads = ["rr-payload-%d" % k for k in range(6)]
        for payload in payloads:
            self.assertEqual(pub.publish("rr", payload, qos=1, retain=False), 0, payload)
        for c in (pub, taker):
            c.close()
        self.assertEqual(b.stop(), 0)
        events = trace.events()
        for pid, payload in enumerate(payloads, 1):
            puback = next((i for i, e in enumerate(events) if e[1].startswith("socket:")
                           and e[2][:2] == b"\x40\x02" and e[2][2:4] == struct.pack(">H", pid)),
                          None)
            self.assertIsNotNone(puback, "%s: its PUBACK was not traced" % payload)
            writes = [i for i in range(puback) if events[i][0].startswith(("write", "pwrite"))
                      and events[i][1].startswith(data + "/") and payload.encode() in events[i][2]]
            self.assertTrue(writes, "%s: acknowledged before the member's entry was written"
                            % payload)
            log = events[writes[-1]][1]
            self.assertTrue(any(events[i][0] in ("fdatasync", "fsync") and events[i][1] == log
                                for i in range(writes[-1], puback)),
                            "%s: acknowledged before the member's entry was synced" % payload)


class SessionsSurviveSigterm(Case):
    def test_offline_sessions_survive_sigterm_and_clean_ones_do_not(self):
        data = self.data_dir()
        b = self.start(data)
        v311, v5 = Sub("st-311", 4), Sub("st-5", 5)
        clean311, clean5 = Sub("st-clean-311", 4, clean=True), Sub("st-clean-5", 5, expiry=0)
        for s in (v311, v5, clean311, clean5):
            self.assertEqual(s.connect(b.mqtt_port, clean_start=True)[0], 0, s.name)
        v311.subscribe("s/311/#", 1)
        v311.subscribe("s/all/#", 2)
        v5.subscribe("s/5/#", 1, sub_id=7, noLocal=True)
        v5.subscribe("s/all/#", 2, sub_id=9)
        clean311.subscribe("s/clean/#", 1)
        clean5.subscribe("s/clean/#", 1)
        v311.disconnect()
        v5.disconnect()  # the clean ones stay connected through the stop
        queued = ([("s/311/t", "q311-%d" % i, 1) for i in range(50)]
                  + [("s/5/t", "q5-%d" % i, 1) for i in range(50)]
                  + [("s/all/t", "all-%d" % i, 2) for i in range(20)]
                  + [("s/clean/t", "clean-%d" % i, 1) for i in range(20)])
        publish_all(b.mqtt_port, queued)
        for s in (clean311, clean5):  # live deliveries to the clean sessions
            got = s.wait(lambda g: len(g) >= 20)
            self.assertEqual([m.payload for m in got], ["clean-%d" % i for i in range(20)])
        self.assertEqual(b.stop(), 0)
        for s in (clean311, clean5):
            s.lost()

        b = self.start(data)
        self.assertEqual(sessions_loaded(b), (2, 140), "(sessions, queued messages) loaded")
        # Connecting with clean session 0 / clean start 0: a stored session would be resumed.
        again311, again5 = Sub("st-clean-311", 4), Sub("st-clean-5", 5)
        for s in (again311, again5):
            self.assertEqual(s.connect(b.mqtt_port)[0], 0, "%s: a clean session connected at "
                             "the SIGTERM is present after the restart" % s.name)
        self.assertEqual(v311.connect(b.mqtt_port)[0], 1, "3.1.1 session present")
        self.assertEqual(v5.connect(b.mqtt_port)[0], 1, "5.0 session present")
        want311 = ([("s/311/t", "q311-%d" % i, 1, ()) for i in range(50)]
                   + [("s/all/t", "all-%d" % i, 2, ()) for i in range(20)])
        want5 = ([("s/5/t", "q5-%d" % i, 1, (7,)) for i in range(50)]
                 + [("s/all/t", "all-%d" % i, 2, (9,)) for i in range(20)])

        def by_topic(got):
            return sorted(((m.topic, m.payload, m.qos, m.ids) for m in got),
                          key=lambda m: (m[0], int(m[1].rsplit("-", 1)[1])))

        for s, want in ((v311, want311), (v5, want5)):
            got = s.wait(lambda g, n=len(want): len(g) >= n)
            self.assertEqual(by_topic(got), want, "%s: queued messages after the restart "
                             "(topic, payload, QoS, subscription ids)" % s.name)
            for topic in {w[0] for w in want}:  # one publisher: each topic's order is kept
                self.assertEqual([m.payload for m in got if m.topic == topic],
                                 [w[1] for w in want if w[0] == topic], "%s: order" % s.name)
        # The subscriptions were restored: new publishes arrive without a new SUBSCRIBE, No Local
        # still holds (st-5 does not get its own), and the clean ones' filters are gone.
        v5.c.publish("s/5/t", "own", qos=1).wait_for_publish(TIMEOUT)
        publish_all(b.mqtt_port, [("s/311/t", "new", 1), ("s/5/t", "new", 1),
                                  ("s/all/t", "new", 2), ("s/clean/t", "new", 1)])
        got311 = v311.wait(lambda g: len(g) >= 72)[70:]
        got5 = v5.wait(lambda g: len(g) >= 72)[70:]
        self.assertEqual(sorted((m.topic, m.payload, m.qos) for m in got311),
                         [("s/311/t", "new", 1), ("s/all/t", "new", 2)])
        self.assertEqual(sorted((m.topic, m.payload, m.qos, m.ids) for m in got5),
                         [("s/5/t", "new", 1, (7,)), ("s/all/t", "new", 2, (9,))],
                         "st-5 after the restart (No Local: not its own publish)")
        for s in (again311, again5):
            self.assertEqual([(m.topic, m.payload) for m in s.wait(lambda g: True)], [],
                             "%s: the session of a clean connection got messages" % s.name)
        for s in (v311, v5, again311, again5):
            s.disconnect()
        self.assertEqual(b.stop(), 0)


class WillAfterKill9(Case):
    """A client connected when the broker is killed lost its connection without DISCONNECT: after
    the restart its stored will is published (after its delay), once."""

    def test_the_will_of_a_client_connected_at_the_crash_is_published_after_the_restart(self):
        data = self.data_dir()
        b = self.start(data)
        watcher = Sub("will-watcher", 4)
        self.assertEqual(watcher.connect(b.mqtt_port, clean_start=True)[0], 0)
        watcher.subscribe("will/#", 1)
        watcher.disconnect()  # offline: the will is queued for it after the restart
        wills = []
        for name, version, delay in (("will-311", 4, 0), ("will-5", 5, 1)):
            c = paho.Client(client_id=name, reconnect_on_failure=False,
                            protocol=paho.MQTTv5 if version == 5 else paho.MQTTv311,
                            **({} if version == 5 else {"clean_session": False}))
            props = None
            if version == 5:
                props = Properties(PacketTypes.WILLMESSAGE)
                props.WillDelayInterval = delay
            c.will_set("will/" + name, "gone-" + name, qos=1, properties=props)
            if version == 5:
                c.connect("127.0.0.1", b.mqtt_port, keepalive=60, clean_start=True,
                          properties=connect_properties(SessionExpiryInterval=3600))
            else:
                c.connect("127.0.0.1", b.mqtt_port, keepalive=60)
            c.loop_start()
            wills.append(c)
        # Both CONNECTs were handled (a round trip through each connection) before the kill.
        for c in wills:
            c.publish("will/ping", "x", qos=1).wait_for_publish(TIMEOUT)
        b.kill()
        for c in wills:
            c.loop_stop()
        b = self.start(data)
        self.assertEqual(watcher.connect(b.mqtt_port)[0], 1)
        got = watcher.wait(lambda g: sum(m.topic != "will/ping" for m in g) >= 2)
        self.assertEqual(sorted((m.topic, m.payload) for m in got if m.topic != "will/ping"),
                         [("will/will-311", "gone-will-311"), ("will/will-5", "gone-will-5")],
                         "the wills after the restart")
        watcher.disconnect()
        self.assertEqual(b.stop(), 0)
        # Sent once: a second restart does not send them again.
        b = self.start(data)
        again = Sub("will-watcher", 4)
        self.assertEqual(again.connect(b.mqtt_port)[0], 1)
        self.assertEqual([m.topic for m in again.wait(lambda g: True)
                          if m.topic.startswith("will/will-")], [], "a will sent twice")
        again.disconnect()
        self.assertEqual(b.stop(), 0)


class SessionExpiryAcrossRestart(Case):
    EXPIRY = round(5 * SCALE)  # --session-expiry, whole seconds

    def test_expiry_runs_on_while_the_broker_is_down(self):
        data, e = self.data_dir(), self.EXPIRY
        args = ("--session-expiry", "%g" % e)
        b = self.start(data, *args)
        early311, early5 = Sub("ex-early-311", 4), Sub("ex-early-5", 5, expiry=e - 1)
        late311, late5 = Sub("ex-late-311", 4), Sub("ex-late-5", 5, expiry=3600)
        subs = (early311, early5, late311, late5)
        granted = {}
        for s in subs:
            present, _, granted[s.name] = s.connect(b.mqtt_port, clean_start=True)
            self.assertEqual(present, 0, s.name)
            s.subscribe("e/%s/#" % s.name, 1)
        early311.disconnect()
        early5.disconnect()
        t0 = time.monotonic()  # early-311 ends at t0 + e, early-5 at t0 + e - 1
        time.sleep(e - 2)
        late311.disconnect()
        late5.disconnect()
        t1 = time.monotonic()  # the late ones end at t1 + e
        publish_all(b.mqtt_port, [("e/%s/t" % s.name, "m%d" % i, 1) for s in subs
                                  for i in range(3)])
        self.assertEqual(b.stop(), 0)
        downtime = time.monotonic()
        time.sleep(max(0.0, t0 + e + 1 - time.monotonic()))  # early deadlines passed by 1 s
        b = self.start(data, *args)
        restarted = time.monotonic()
        loaded = sessions_loaded(b)
        # Reconnected at once, before the first expiry sweep could run.
        fresh311, fresh5 = Sub("ex-early-311", 4), Sub("ex-early-5", 5, expiry=e - 1)
        early_present = [fresh311.connect(b.mqtt_port)[0], fresh5.connect(b.mqtt_port)[0]]
        late_present = [late311.connect(b.mqtt_port)[0], late5.connect(b.mqtt_port)[0]]
        reconnected = time.monotonic()
        print("--session-expiry %g; granted expiry in CONNACK %r; late sessions offline %.1f s "
              "after the restart (deadline %.1f s), broker down %.1f s; restart log: loaded %d "
              "session(s) with %d queued message(s); early sessions present %r, late %r"
              % (e, granted, reconnected - t1, e, restarted - downtime, *loaded, early_present,
                 late_present))
        self.assertLess(reconnected - t1, e, "the test was too slow to see a session alive")
        self.assertEqual(early_present, [0, 0], "sessions whose expiry passed while the broker "
                         "was down: session present (ex-early-311, ex-early-5)")
        self.assertEqual(late_present, [1, 1], "sessions whose expiry has not passed: session "
                         "present (ex-late-311, ex-late-5)")
        for s in (late311, late5):
            got = s.wait(lambda g: len(g) >= 3)
            self.assertEqual([(m.topic, m.payload) for m in got],
                             [("e/%s/t" % s.name, "m%d" % i) for i in range(3)], s.name)
        publish_all(b.mqtt_port, [("e/%s/t" % s.name, "after", 1) for s in subs])
        for s in (late311, late5):
            self.assertEqual([m.payload for m in s.wait(lambda g: len(g) >= 4)][3:], ["after"],
                             "%s: its subscription after the restart" % s.name)
        for s in (fresh311, fresh5):
            self.assertEqual([(m.topic, m.payload) for m in s.wait(lambda g: True)], [],
                             "%s: an expired session's queue or subscription survived" % s.name)
        for s in (fresh311, fresh5, late311, late5):
            s.disconnect()
        self.assertEqual(b.stop(), 0)


if __name__ == "__main__":
    h.main()
