"""Shared helpers of the perf/ scripts: build, start and stop a broker, sample it, run loadgen.

Every scenario starts its own broker on a free loopback port (`broker --port 0`, which prints
"tern broker listening on 127.0.0.1:<port> (line protocol)"), samples the broker's CPU time
(/proc/PID/stat utime+stime) and RSS (/proc/PID/statm) every 50 ms with time.monotonic()
stamps, and lines those samples up with the phase boundaries loadgen writes in its JSON
(timeline_monotonic_s, the same CLOCK_MONOTONIC clock). Results go to perf/results/.

Debian's /usr/bin/python3 and its standard library only.
"""

import datetime
import json
import os
import platform
import re
import resource
import signal
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
LISTENING = re.compile(r"tern broker listening on ([0-9.]+):(\d+) \(line protocol\)")
# Descriptors for the broker and loadgen: 10k three-socket sessions need 30k on each side.
NOFILE = 1 << 17


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


class Broker:
    """A broker process of our own, sampled every 50 ms until stop()."""

    def __init__(self, workers, extra_args=(), log_path=None):
        command = [os.path.join(BUILD, "broker"), "--port", "0", "--workers", str(workers),
                   *extra_args]
        self.workers = workers
        self._log = open(log_path or os.devnull, "w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True, preexec_fn=_raise_nofile)
        self.port = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
                break
        if self.port is None:
            self.stop()
            raise RuntimeError(f"the broker did not report its port: {' '.join(command)}")
        # Keep reading stdout so that the broker never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self.samples = []  # (monotonic s, cpu s, rss bytes)
        self._stopping = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _drain(self):
        for _ in self.process.stdout:
            pass

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
                self.samples.append((time.monotonic(), self.cpu_seconds(), self.rss_bytes()))
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

    def rss_between(self, start, end):
        """(median, max) RSS in bytes over the samples inside [start, end]."""
        inside = sorted(s[2] for s in list(self.samples) if start <= s[0] <= end)
        if not inside:
            value = self._at((start + end) / 2, 2)
            return value, value
        return inside[len(inside) // 2], inside[-1]

    def stop(self):
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


def run_loadgen(broker, args, label):
    """Runs loadgen against `broker` with `args`; returns its JSON report plus broker figures."""
    os.makedirs(os.path.join(RESULTS, "raw"), exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    json_path = os.path.join(RESULTS, "raw", f"{label}-{stamp}.json")
    command = [os.path.join(BUILD, "loadgen"), "--port", str(broker.port), "--quiet",
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
    report["broker"] = {
        "workers": broker.workers,
        "cpu_s": cpu,
        "cpu_util": cpu / (end - start) if end > start else 0.0,
        "cpu_us_per_delivery": cpu * 1e6 / delivered if delivered else None,
        "rss_bytes": broker.rss_between(start, end)[1] if end > start else broker.rss_bytes(),
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
        "broker_cpu_s": report["broker"]["cpu_s"],
        "broker_cpu_util": report["broker"]["cpu_util"],
        "broker_cpu_us_per_delivery": report["broker"]["cpu_us_per_delivery"],
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
