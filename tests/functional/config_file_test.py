"""Running tern as a service (issue 14): the sample configuration dist/tern.conf names every option
of `broker --help`, `broker --check-config FILE` accepts it and refuses bad files with one line and
exit status 2 without opening a socket, a broker started with --config serves the file's ports,
and dist/tern.service passes `systemd-analyze verify` where systemd is there to run it.

Run by ctest as BrokerConfig.Files (tests/CMakeLists.txt).
"""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

import mqtt_harness as h
from mqtt_harness import run

DIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "dist")
SAMPLE = os.path.join(DIST, "tern.conf")
# Options that are not settings of a broker: they act and exit, or name the file itself.
NOT_SETTINGS = {"help", "version", "config", "check-config"}


def long_options():
    out = run(h.BROKER, "--help").stdout
    return {m.group(1) for m in re.finditer(r"^  (?:-\w,)?--([a-z][a-z-]*)", out, re.M)}


def sample_keys():
    with open(SAMPLE) as f:
        return {m.group(1) for m in re.finditer(r"^#?([a-z][a-z-]*) =", f.read(), re.M)}


def uncommented_sample(directory):
    """The sample with every setting that has a value uncommented: each default stated."""
    with open(SAMPLE) as f:
        text = re.sub(r"^#([a-z][a-z-]* = .+)$", r"\1", f.read(), flags=re.M)
    path = os.path.join(directory, "all.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def check(path, *extra):
    return run(h.BROKER, "--check-config", path, *extra)


class SampleConfig(unittest.TestCase):
    def test_every_option_of_help_is_in_the_sample(self):
        options = long_options() - NOT_SETTINGS
        self.assertGreater(len(options), 20, "broker --help lists the options")
        self.assertEqual(options - sample_keys(), set(), "options missing from dist/tern.conf")
        self.assertEqual(sample_keys() - options, set(), "keys of dist/tern.conf that are no option")

    def test_sample_as_shipped_and_with_every_default_stated_is_valid(self):
        with tempfile.TemporaryDirectory() as d:
            for path in (SAMPLE, uncommented_sample(d)):
                r = check(path)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("the configuration is valid", r.stdout)


class CheckConfig(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def refused(self, text, expected, *extra):
        r = check(write(self.dir, "bad.conf", text), *extra)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn(expected, r.stderr)
        return r

    def test_bad_values_are_refused_with_one_line(self):
        self.refused("workers = 0\n", "workers")
        self.refused("mqtt-port = 70000\n", "--mqtt-port")
        self.refused("io = carrier-pigeon\n", "--io")
        self.refused("no-such-option = 1\n", "no-such-option")

    def test_rules_between_options_are_checked(self):
        # A key without its certificate, and a non-loopback bind without credentials.
        self.refused("tls-key = \"/nonexistent.key\"\n", "--tls-cert")
        self.refused("bind = \"0.0.0.0\"\n", "0.0.0.0")

    def test_files_it_names_are_read(self):
        self.refused("password-file = \"%s/missing\"\n" % self.dir, "--password-file")
        acl = write(self.dir, "acl", "frobnicate a/b\n")
        self.refused("acl-file = \"%s\"\n" % acl, "--acl-file")
        cert = write(self.dir, "cert.pem", "not a certificate\n")
        self.refused("tls-cert = \"%s\"\ntls-key = \"%s\"\n" % (cert, cert), "cert.pem")

    def test_a_missing_file_and_a_second_config_are_refused(self):
        r = check(os.path.join(self.dir, "nowhere.conf"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("nowhere.conf", r.stderr)
        good = write(self.dir, "good.conf", "port = 9100\n")
        r = check(good, "--config", good)
        self.assertEqual(r.returncode, 2, r.stdout)

    def test_it_opens_no_socket(self):
        # The file's port is taken: a start would fail to bind, a check does not try.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            path = write(self.dir, "busy.conf",
                         "port = %d\nmqtt-port = off\nlog-level = \"warn\"\n" % port)
            r = check(path)
            self.assertEqual(r.returncode, 0, r.stderr)
            started = run(h.BROKER, "--config", path)
            self.assertEqual(started.returncode, 2, started.stdout)

    def test_the_equals_form_is_the_same_check(self):
        path = write(self.dir, "good.conf", "max-inflight = 5\n")
        r = run(h.BROKER, "--check-config=" + path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(path, r.stdout)


class ConfigFile(unittest.TestCase):
    def test_a_broker_started_from_a_file_uses_its_settings(self):
        with tempfile.TemporaryDirectory() as d:
            path = write(d, "tern.conf", "max-subscriptions = 1\nlog-level = \"warn\"\n")
            broker = h.Broker("--config", path)
            try:
                line = h.LineSession(broker.line_port, "from-file")
                self.assertEqual(line.request("SUBSCRIBE@a/one"), "SUBACK")
                self.assertTrue(line.request("SUBSCRIBE@a/two").startswith(
                    "ERROR@too-many-subscriptions"))
                line.close()
            finally:
                self.assertEqual(broker.stop(), 0)


class ServiceUnit(unittest.TestCase):
    def test_unit_file_is_valid(self):
        unit = os.path.join(DIST, "tern.service")
        with open(unit) as f:
            text = f.read()
        self.assertIn("--check-config /etc/tern/tern.conf", text)
        self.assertIn("ExecReload=/bin/kill -HUP $MAINPID", text)
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is not installed: the unit's syntax is not verified")
        with tempfile.TemporaryDirectory() as d:
            # verify resolves ExecStart: point it at the broker under test.
            copy = os.path.join(d, "tern.service")
            with open(copy, "w") as f:
                f.write(text.replace("/usr/local/bin/broker", h.BROKER))
            r = subprocess.run([analyze, "verify", copy], capture_output=True, text=True,
                               timeout=h.TIMEOUT)
            problems = [l for l in r.stderr.splitlines() if "tern.service" in l]
            self.assertEqual(problems, [], r.stderr)


if __name__ == "__main__":
    h.main()
