"""What the stock-client suites share (mqtt_stock_clients_test.py, mqtt5_clients_test.py): a
broker of our own on free loopback ports, stopped by its PID; a line-protocol session for
cross-protocol checks and STATS; bounded waits.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

# The broker binary under test: each suite's main() sets it from --broker.
BROKER = None
# The one deadline of every wait, scaled like the C++ harness's for sanitizer builds, whose broker
# is several times slower (TERN_TEST_TIMEOUT_SCALE, set by tests/CMakeLists.txt). Every wait on it
# is a bound on something expected sooner, never a pause that a passing test sits out.
TIMEOUT = 10.0 * float(os.environ.get("TERN_TEST_TIMEOUT_SCALE", "1"))


class Broker:
    def __init__(self, *extra, listeners=()):
        """Starts a broker on free ports; waits for its line and MQTT listeners and for the other
        `listeners` it names ("metrics", "mqtt+tls", ...), whose ports land in self.ports."""
        # stderr goes to a file, not a pipe: a broker that logs a lot must never block on it.
        self.log = tempfile.TemporaryFile(mode="w+")
        # The I/O backend under test, as the C++ harness takes it (tools/test runs both).
        io = ["--io", os.environ["TERN_TEST_IO"]] if os.environ.get("TERN_TEST_IO") else []
        # The $SYS topics are off unless the test asks for them: the retained messages and
        # counts a test sees are then its own.
        sys_topics = [] if "--sys-interval" in extra else ["--sys-interval", "0"]
        self.proc = subprocess.Popen(
            [BROKER, "--port", "0", "--mqtt-port", "auto", "--workers", "2", "--log-level", "warn",
             *io, *sys_topics, *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.ports = {}
        wanted = {"line protocol", "mqtt", *listeners}
        deadline = time.time() + TIMEOUT
        while not wanted <= self.ports.keys() and time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"listening on 127\.0\.0\.1:(\d+) \(([^)]+)\)", line)
            if m:
                self.ports[m.group(2)] = int(m.group(1))
        self.line_port = self.ports.get("line protocol")
        self.mqtt_port = self.ports.get("mqtt")
        if not wanted <= self.ports.keys():
            self.proc.kill()
            self.log.seek(0)
            raise RuntimeError("broker did not start: " + self.log.read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc.stdout.close()
        if code != 0:
            self.log.seek(0)
            sys.stderr.write("broker stderr:\n" + self.log.read())
        self.log.close()
        return code


class LineSession:
    """A line-protocol session (three sockets) for cross-protocol checks and STATS."""

    def __init__(self, port, client_id):
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                        for _ in range(3)]
        self.buffers = [b"", b"", b""]
        reply = self.request("CONNECT@" + client_id)
        token = reply.split("@")[2]
        assert self.request("ATTACH@%s@request" % token, 1) == "ATTACHACK@request"
        assert self.request("ATTACH@%s@push" % token, 2) == "ATTACHACK@push"

    def read_line(self, index):
        while b"\n" not in self.buffers[index]:
            chunk = self.sockets[index].recv(65536)
            if not chunk:
                raise EOFError("socket %d closed" % index)
            self.buffers[index] += chunk
        line, _, rest = self.buffers[index].partition(b"\n")
        self.buffers[index] = rest
        return line.decode("utf-8", "replace")

    def request(self, frame, index=0):
        self.sockets[index].sendall(frame.encode() + b"\n")
        return self.read_line(index)

    def push(self):
        return self.read_line(2)

    def stats(self):
        return json.loads(self.request("STATS")[len("STATS@"):])

    def close(self):
        for s in self.sockets:
            s.close()


def run(*args, stdin=None):
    return subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=TIMEOUT)


def wait_until(predicate, what):
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)




def main():
    """Runs the calling suite's unittest tests against the broker named by --broker."""
    global BROKER
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    args, rest = parser.parse_known_args()
    BROKER = os.path.abspath(args.broker)
    unittest.main(module="__main__", argv=[sys.argv[0], *rest], verbosity=2)
