"""Shared helpers of the perf/ scripts: build, start and stop a broker, sample it, run loadgen.

Every scenario starts its own broker on a free loopback port (`broker --port 0`, which prints
"tern broker listening on 127.0.0.1:<port> (line protocol)"; with mqtt=True also
`--mqtt-port auto`, "... (mqtt)"), samples the broker's CPU time (/proc/PID/stat utime+stime), its
RSS (/proc/PID/statm) and the whole machine's busy time (/proc/stat) every 50 ms with
time.monotonic() stamps, and lines those samples up with the phase boundaries loadgen writes in its
JSON (timeline_monotonic_s, the same CLOCK_MONOTONIC clock). Mosquitto (perf/compare) is sampled
the same way. Results go to perf/results/.

Debian's /usr/bin/python3 and its standard library only.
"""

import datetime
import json
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TERN_BUILD_DIR runs the binaries of another build (e.g. build/asan) and skips building.
BUILD = os.environ.get("TERN_BUILD_DIR") or os.path.join(ROOT, "build", "release")
RESULTS = os.path.join(ROOT, "perf", "results")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
LISTENING = re.compile(r"tern broker listening on ([0-9.]+):(\d+) \((line protocol|mqtt)\)")
# Descriptors for the broker and loadgen: 10k three-socket sessions need 30k on each side.
NOFILE = 1 << 17
# loadgen threads by default: half the cores. The broker and loadgen share this machine; loadgen
# with one thread per core leaves the broker no core of its own, and the time slices the
# scheduler then shares out add milliseconds of latency that belong to neither (measured on 2
# cores at 50k/s: p50 4.1 ms with 2 loadgen threads, 74 us with 1; docs/performance.md).
LOADGEN_THREADS = max(1, (os.cpu_count() or 2) // 2)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build():
    """Builds the release preset (a no-op when up to date)."""
    if os.environ.get("TERN_BUILD_DIR"):
        return
    subprocess.run([os.path.join(ROOT, "tools", "build"), "release"], check=True,
                   stdout=sys.stderr)


def parse_quantity(text):
    """'50k' -> 50000.0, '1.5M' -> 1500000.0 (as loadgen accepts them)."""
    multipliers = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
    if text and text[-1] in multipliers:
        return float(text[:-1]) * multipliers[text[-1]]
    return float(text)


def format_rate(value):
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}"


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def descriptor_limit():
    """The most descriptors a child can get: the hard limit, or NOFILE if we may raise it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, max(hard, NOFILE)))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return max(hard, NOFILE)
    except (ValueError, OSError):
        return hard


def host_info():
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "commit": commit}


def machine_cpu_seconds():
    """(busy, steal): CPU seconds the whole machine (all cores) spent running something, and
    seconds the hypervisor gave its cores to other virtual machines, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user and nice).
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return busy / CLOCK_TICKS, fields[7] / CLOCK_TICKS


def free_port():
    """A loopback TCP port that was free a moment ago (for servers that cannot pick their own)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SampledProcess:
    """A broker process of our own (self.process), sampled every 50 ms until stop().

    Subclasses start the process, then call _start_sampling()."""

    workers = 1
    name = "broker"

    def _start_sampling(self):
        self.samples = []  # (monotonic s, cpu s, rss bytes, machine busy s, machine steal s)
        self._stopping = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # Fields 14 and 15 of stat(5) (utime, stime); fields[0] here is field 3.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self):
        with open(f"/proc/{self.process.pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES

    def _sample(self):
        while not self._stopping.is_set():
            try:
                self.samples.append((time.monotonic(), self.cpu_seconds(), self.rss_bytes(),
                                     *machine_cpu_seconds()))
            except (OSError, IndexError, ValueError):
                return
            self._stopping.wait(0.05)

    def _at(self, when, column):
        """A sampled column interpolated linearly at monotonic time `when`."""
        samples = list(self.samples)
        if not samples:
            return 0.0
        if when <= samples[0][0]:
            return samples[0][column]
        for before, after in zip(samples, samples[1:]):
            if before[0] <= when <= after[0]:
                span = after[0] - before[0]
                weight = (when - before[0]) / span if span > 0 else 0
                return before[column] + weight * (after[column] - before[column])
        return samples[-1][column]

    def cpu_between(self, start, end):
        return max(0.0, self._at(end, 1) - self._at(start, 1))

    def machine_busy_between(self, start, end):
        """CPU seconds the whole machine (every process, every core) was busy in [start, end]."""
        return max(0.0, self._at(end, 3) - self._at(start, 3))

    def machine_steal_between(self, start, end):
        """CPU seconds the hypervisor ran other virtual machines on our cores in [start, end]."""
        return max(0.0, self._at(end, 4) - self._at(start, 4))

    def rss_between(self, start, end):
        """(median, max) RSS in bytes over the samples inside [start, end]."""
        inside = sorted(s[2] for s in list(self.samples) if start <= s[0] <= end)
        if not inside:
            value = self._at((start + end) / 2, 2)
            return value, value
        return inside[len(inside) // 2], inside[-1]

    def stop(self):
        """Stops the process we started, by its PID (SIGTERM, SIGKILL after 10 s)."""
        if hasattr(self, "_stopping"):
            self._stopping.set()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Broker(SampledProcess):
    """A tern broker of our own on free loopback ports; with mqtt=True MQTT is served too
    (self.mqtt_port), otherwise it is off."""

    name = "tern"

    def __init__(self, workers, extra_args=(), log_path=None, mqtt=False):
        command = [os.path.join(BUILD, "broker"), "--port", "0", "--workers", str(workers),
                   "--mqtt-port", "auto" if mqtt else "0", *extra_args]
        self.workers = workers
        self._log = open(log_path or os.devnull, "w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True, preexec_fn=_raise_nofile)
        self.port = None
        self.mqtt_port = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (self.port is None or
                                               (mqtt and self.mqtt_port is None)):
            line = self.process.stdout.readline()
            if not line:
                break
            match = LISTENING.search(line)
            if match and match.group(3) == "mqtt":
                self.mqtt_port = int(match.group(2))
            elif match:
                self.port = int(match.group(2))
        if self.port is None or (mqtt and self.mqtt_port is None):
            self.stop()
            raise RuntimeError(f"the broker did not report its ports: {' '.join(command)}")
        # Keep reading stdout so that the broker never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self._start_sampling()

    def _drain(self):
        for _ in self.process.stdout:
            pass


def run_loadgen(broker, args, label, port=None):
    """Runs loadgen against `broker` (at `port`, default broker.port) with `args`; returns its
    JSON report plus the broker's figures over the measured window."""
    os.makedirs(os.path.join(RESULTS, "raw"), exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    json_path = os.path.join(RESULTS, "raw", f"{label}-{stamp}.json")
    port = broker.port if port is None else port
    command = [os.path.join(BUILD, "loadgen"), "--port", str(port), "--quiet",
               "--json", json_path, *[str(a) for a in args]]
    completed = subprocess.run(command, capture_output=True, text=True, preexec_fn=_raise_nofile)
    if not os.path.exists(json_path) or os.path.getsize(json_path) == 0:
        raise RuntimeError(f"loadgen wrote no report ({completed.returncode}): "
                           f"{' '.join(command)}\n{completed.stderr}")
    with open(json_path) as report_file:
        report = json.load(report_file)
    report["exit_status"] = completed.returncode
    timeline = report.get("timeline_monotonic_s", {})
    start, end = timeline.get("measure_start", 0), timeline.get("measure_end", 0)
    cpu = broker.cpu_between(start, end) if end > start else 0.0
    delivered = report.get("measured_delivered", 0)
    busy = broker.machine_busy_between(start, end) if end > start else 0.0
    window = end - start if end > start else 0.0
    # Whatever kept the machine busy besides this broker and this loadgen: other people's work.
    foreign = max(0.0, busy - cpu - report.get("loadgen_cpu_s", 0.0))
    report["broker"] = {
        "name": broker.name,
        "workers": broker.workers,
        "cpu_s": cpu,
        "cpu_util": cpu / window if window else 0.0,
        "cpu_us_per_delivery": cpu * 1e6 / delivered if delivered else None,
        "rss_bytes": broker.rss_between(start, end)[1] if end > start else broker.rss_bytes(),
    }
    report["machine"] = {
        "busy_cores": busy / window if window else 0.0,
        "foreign_cores": foreign / window if window else 0.0,
        "steal_cores": broker.machine_steal_between(start, end) / window if window else 0.0,
        "loadavg_after": os.getloadavg()[0],
    }
    with open(json_path, "w") as report_file:  # the raw report keeps the broker's figures too
        json.dump(report, report_file, indent=2)
    return report


def step_summary(report):
    """The figures of one run that the charts and tables use."""
    latency = report["latency_us"]
    return {
        "target_rate": report["target_rate"],
        "publish_rate": report["publish_rate"],
        "delivery_rate": report["delivery_rate"],
        "p50_us": latency["p50"], "p90_us": latency["p90"], "p99_us": latency["p99"],
        "p999_us": latency["p999"], "p9999_us": latency["p9999"], "max_us": latency["max"],
        "puback_p99_us": report["puback_latency_us"]["p99"],
        "lost": report["lost"], "duplicated": report["duplicated"],
        "reordered": report["reordered"], "errors": report["errors"]["total"],
        "behind": report["behind"], "sent": report["sent"],
        "loadgen_cpu_util": report["loadgen_cpu_util"],
        "loadgen_busy_util": report.get("loadgen_busy_util"),
        "broker_cpu_s": report["broker"]["cpu_s"],
        "broker_cpu_util": report["broker"]["cpu_util"],
        "broker_cpu_us_per_delivery": report["broker"]["cpu_us_per_delivery"],
        "broker_rss_bytes": report["broker"]["rss_bytes"],
        "foreign_cores": report.get("machine", {}).get("foreign_cores"),
        "steal_cores": report.get("machine", {}).get("steal_cores"),
        "exit_status": report["exit_status"],
    }


def write_result(scenario, parameters, body, stamp=None):
    """Writes perf/results/<scenario>-<time>.json and returns its path."""
    os.makedirs(RESULTS, exist_ok=True)
    stamp = stamp or datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(RESULTS, f"{scenario}-{stamp}.json")
    document = {"scenario": scenario, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "host": host_info(), "parameters": parameters, **body}
    with open(path, "w") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
    log(f"wrote {os.path.relpath(path, ROOT)}")
    return path


# --- Mosquitto, for perf/compare -----------------------------------------------------------------

MOSQUITTO = "/usr/sbin/mosquitto"
POLICY_RC_D = "/usr/sbin/policy-rc.d"


def system_mosquitto_pids():
    """PIDs of mosquitto processes that are not ours (e.g. a system service): never touched."""
    found = subprocess.run(["pgrep", "-x", "mosquitto"], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def ensure_mosquitto():
    """Installs Debian's mosquitto if missing, without letting its system service start.

    During the install /usr/sbin/policy-rc.d answers 101 ("action forbidden"), so the package's
    maintainer scripts do not start the service (which would take port 1883); an existing
    policy-rc.d is left as it is. Returns the version line of `mosquitto -h`."""
    if not os.path.exists(MOSQUITTO):
        log("mosquitto is not installed: apt-get install -y mosquitto (service start forbidden)")
        wrote_policy = False
        if not os.path.exists(POLICY_RC_D):
            with open(POLICY_RC_D, "w") as policy:
                policy.write("#!/bin/sh\n# perf/compare: no service starts during its install.\n"
                             "exit 101\n")
            os.chmod(POLICY_RC_D, 0o755)
            wrote_policy = True
        try:
            environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "mosquitto"],
                           check=True, env=environment, stdout=sys.stderr)
        finally:
            if wrote_policy:
                os.remove(POLICY_RC_D)
    others = system_mosquitto_pids()
    if others:
        log(f"note: mosquitto processes not started by perf/compare are running (PIDs {others}); "
            "they are left alone, ours listens on its own port")
    text = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    return next((line for line in text.splitlines() if "version" in line), "mosquitto")


class Mosquitto(SampledProcess):
    """Our own `mosquitto -c <generated config>` on a free loopback port, a child process stopped
    by its PID. `settings` become config lines ("max_inflight_messages": 20, ...)."""

    name = "mosquitto"

    def __init__(self, settings, directory, log_path=None):
        self.port = free_port()
        self.mqtt_port = self.port
        os.makedirs(directory, exist_ok=True)
        self.config_path = os.path.join(directory, f"mosquitto-{self.port}.conf")
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 "log_dest stderr", "log_type error", "log_type warning"]
        lines += [f"{key} {value}" for key, value in settings.items()]
        self.config = "\n".join(lines) + "\n"
        with open(self.config_path, "w") as config:
            config.write(self.config)
        self._log = open(log_path or os.devnull, "w")
        self.process = subprocess.Popen([MOSQUITTO, "-c", self.config_path],
                                        stdout=self._log, stderr=self._log,
                                        preexec_fn=_raise_nofile)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port}")
        if self.process.poll() is not None:
            self.stop()
            raise RuntimeError(f"mosquitto exited at start-up; config {self.config_path}")
        self._start_sampling()
