"""Shared helpers of the perf/ scripts: build, start and stop a broker, sample it, run loadgen.

Every scenario starts its own broker on a free loopback port (`broker --port 0`, which prints
"tern broker listening on 127.0.0.1:<port> (line protocol)"; with mqtt=True also
`--mqtt-port auto`, "... (mqtt)"), samples the broker's CPU time (/proc/PID/stat utime+stime), its
RSS (/proc/PID/statm) and the whole machine's busy time (/proc/stat) every 50 ms with
time.monotonic() stamps, and lines those samples up with the phase boundaries loadgen writes in its
JSON (timeline_monotonic_s, the same CLOCK_MONOTONIC clock). Mosquitto and NATS (perf/compare) are
sampled the same way, and their context switches are sampled from /proc/PID/task/*/status. While
loadgen runs, `perf stat` counts the broker's system calls (PerfStat), and the counts are cut at
the same window boundaries. Results go to perf/results/.

Debian's /usr/bin/python3 and its standard library only.
"""

import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TERN_BUILD_DIR runs the binaries of another build (e.g. build/asan) and skips building.
BUILD = os.environ.get("TERN_BUILD_DIR") or os.path.join(ROOT, "build", "release")
RESULTS = os.path.join(ROOT, "perf", "results")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
LISTENING = re.compile(r"tern broker listening on ([0-9.]+):(\d+) \((line protocol|mqtt|metrics)\)")
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
    # The commit of the binaries' source tree: BUILD's (a worktree's with TERN_BUILD_DIR), and
    # whether its src/ or include/ had uncommitted changes (a shared tree mid-edit); the scripts'
    # own commit beside it when they differ.
    source = BUILD if os.path.isdir(BUILD) else ROOT
    commit = _git(source, "rev-parse", "--short", "HEAD") or _git(ROOT, "rev-parse", "--short",
                                                                   "HEAD")
    dirty = _git(source, "status", "--porcelain", "--untracked-files=no", "--", ":/src",
                 ":/include")
    info = {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "commit": commit, "source_dirty": bool(dirty), "build_dir": BUILD}
    scripts = _git(ROOT, "rev-parse", "--short", "HEAD")
    if scripts != commit:
        info["scripts_commit"] = scripts
    return info


def _git(directory, *args):
    return subprocess.run(["git", "-C", directory, *args], capture_output=True,
                          text=True).stdout.strip()


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
        # (monotonic s, cpu s, rss bytes, machine busy s, machine steal s,
        #  voluntary context switches, involuntary context switches)
        self.samples = []
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

    def context_switches(self):
        """(voluntary, involuntary) context switches of every live thread of the process, from
        /proc/PID/task/*/status (/proc/PID/status alone counts only the main thread). A thread
        that has exited no longer counts: fine for brokers whose threads live as long as they."""
        voluntary = involuntary = 0
        task_dir = f"/proc/{self.process.pid}/task"
        for task in os.listdir(task_dir):
            try:
                with open(f"{task_dir}/{task}/status") as status:
                    for line in status:
                        if line.startswith("voluntary_ctxt_switches:"):
                            voluntary += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches:"):
                            involuntary += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                continue  # the thread exited between listdir and open
        return voluntary, involuntary

    def _sample(self):
        while not self._stopping.is_set():
            try:
                self.samples.append((time.monotonic(), self.cpu_seconds(), self.rss_bytes(),
                                     *machine_cpu_seconds(), *self.context_switches()))
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

    def context_switches_between(self, start, end):
        """(voluntary, involuntary) context switches of the process's threads in [start, end]."""
        return (max(0.0, self._at(end, 5) - self._at(start, 5)),
                max(0.0, self._at(end, 6) - self._at(start, 6)))

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
    (self.mqtt_port), otherwise it is off; with --metrics-port among extra_args, its port is
    self.metrics_port."""

    name = "tern"

    def __init__(self, workers, extra_args=(), log_path=None, mqtt=False):
        # loadgen opens every connection from 127.0.0.1 at once (up to 10^4 and more): not the
        # one-address attack --max-unauthenticated-per-address is there for.
        command = [os.path.join(BUILD, "broker"), "--port", "0", "--workers", str(workers),
                   "--mqtt-port", "auto" if mqtt else "0",
                   "--max-unauthenticated-per-address", "1000000", *extra_args]
        self.workers = workers
        self._log = open(log_path or os.devnull, "w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True, preexec_fn=_raise_nofile)
        self.port = None
        self.mqtt_port = None
        self.metrics_port = None
        metrics = "--metrics-port" in extra_args
        missing = lambda: (self.port is None or (mqtt and self.mqtt_port is None) or
                           (metrics and self.metrics_port is None))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and missing():
            line = self.process.stdout.readline()
            if not line:
                break
            match = LISTENING.search(line)
            if match and match.group(3) == "mqtt":
                self.mqtt_port = int(match.group(2))
            elif match and match.group(3) == "metrics":
                self.metrics_port = int(match.group(2))
            elif match:
                self.port = int(match.group(2))
        if missing():
            self.stop()
            raise RuntimeError(f"the broker did not report its ports: {' '.join(command)}")
        # Keep reading stdout so that the broker never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self._start_sampling()

    def _drain(self):
        for _ in self.process.stdout:
            pass


# --- System calls and context switches of a broker (perf stat) ------------------------------------

# The system calls broken down by perf/syscalls (and --syscalls breakdown): the ones an event-loop
# broker makes per message, on either backend, plus the sleeps and futexes of Go (NATS) and of
# throttling. Tracepoints missing on a kernel are left out; "other" is the rest of the total.
SYSCALL_BREAKDOWN = ("read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto",
                     "sendmsg", "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl",
                     "io_uring_enter", "futex", "nanosleep", "clock_nanosleep", "sched_yield")
TOTAL_SYSCALLS = "raw_syscalls:sys_enter"
CONTEXT_SWITCHES = "context-switches"
# What run_loadgen records about the broker's system calls: "total" (perf counts every system
# call; the context switches come from /proc, which costs nothing and agrees with perf's
# context-switches event within a few percent), "breakdown" (perf also counts its
# context-switches and one tracepoint per call of SYSCALL_BREAKDOWN), or "off" (only /proc's
# context switches). perf's per-thread counters cost the broker CPU, which its CPU per message
# then includes; measured on this machine (perf/README.md): about 0.1 us per system call and
# 0.7-0.8 us per context switch (the counters are switched out and in with the thread), so
# about 1.3 us per message at today's 6 calls and 0.8 switches per message, 5-6% of its CPU.
# TERN_PERF_SYSCALLS sets the default for every script.
SYSCALLS_MODES = ("off", "total", "breakdown")
SYSCALLS_DEFAULT = os.environ.get("TERN_PERF_SYSCALLS", "total")
TRACEFS_SYSCALLS = "/sys/kernel/tracing/events/syscalls"


def _interpolate(points, when):
    """A cumulative series [(monotonic s, value), ...] interpolated linearly at `when`."""
    if not points:
        return 0.0
    if when <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        if t0 <= when <= t1:
            return v0 + (v1 - v0) * ((when - t0) / (t1 - t0) if t1 > t0 else 0.0)
    return points[-1][1]


def available_breakdown():
    """The calls of SYSCALL_BREAKDOWN this kernel has a syscalls:sys_enter_* tracepoint for."""
    if not os.path.isdir(TRACEFS_SYSCALLS):
        return list(SYSCALL_BREAKDOWN)  # tracefs elsewhere or unreadable: perf finds them
    return [name for name in SYSCALL_BREAKDOWN
            if os.path.isdir(os.path.join(TRACEFS_SYSCALLS, f"sys_enter_{name}"))]


class PerfStat:
    """`perf stat -I <interval> -x, -e raw_syscalls:sys_enter[,context-switches,syscalls:...]
    -p PID` for as long as it runs (start() ... stop(), or a with-block), and the counts between
    any two CLOCK_MONOTONIC instants inside that time.

    perf prints every interval's counts stamped with CLOCK_MONOTONIC seconds since it enabled the
    counters; the instant it enabled them is found as the smallest (arrival time - stamp) over the
    lines (they reach us within a millisecond of being printed), so every interval's end is known
    on loadgen's clock, and the cumulative counts are interpolated linearly at the window
    boundaries, like the broker's CPU time. The error that leaves is part of the one interval that
    straddles each boundary: at loadgen's window end the load stops, which with 100 ms intervals
    misplaces at most 25 ms of traffic (0.5% of a 5 s window); the start falls inside steady
    warm-up load, where linear interpolation is exact up to noise. Threads the process creates
    after perf attached are counted too (perf's inheritance); when perf cannot start (no perf, no
    tracepoints), `error` says why and window() reports that instead of counts."""

    def __init__(self, pid, breakdown=False, interval_ms=100, context_switches=None):
        """breakdown: one tracepoint per call of SYSCALL_BREAKDOWN too; context_switches
        (default: with breakdown) perf's context-switches event too."""
        self.pid = pid
        self.interval_ms = interval_ms
        self.calls = available_breakdown() if breakdown else []
        switches = breakdown if context_switches is None else context_switches
        self.events = ([TOTAL_SYSCALLS] + ([CONTEXT_SWITCHES] if switches else []) +
                       [f"syscalls:sys_enter_{c}" for c in self.calls])
        self.command = ["perf", "stat", "-I", str(interval_ms), "-x", ",",
                        "-e", ",".join(self.events), "-p", str(pid)]
        self.error = None
        self.process = None
        self._rows = {}      # perf's stamp (s) -> {event: count in that interval}
        self._arrivals = {}  # perf's stamp -> our monotonic time when its first line arrived
        self._other = []     # lines that are not interval rows (perf's errors, warnings)
        self._first = threading.Event()
        self._lock = threading.Lock()

    def start(self, timeout=10.0):
        """Starts perf and waits for its first interval (the counters are on). False on failure."""
        if shutil.which("perf") is None:
            self.error = "perf is not installed (Debian linux-perf; tools/deps installs it)"
            return False
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._first.wait(timeout)  # the first interval, or perf's exit
        if not self._rows or self.process.poll() is not None:
            self.stop()
            detail = " ".join(line.strip() for line in self._other[:3])
            self.error = f"perf stat did not start ({' '.join(self.command)}): {detail}"
            return False
        return True

    def _read(self):
        for line in self.process.stderr:
            arrived = time.monotonic()
            fields = line.strip().split(",")
            try:
                stamp = float(fields[0])
                event, value = fields[3], fields[1]
            except (ValueError, IndexError):
                self._other.append(line)
                continue
            count = float(value) if value and value[0].isdigit() else 0.0  # "<not counted>"
            with self._lock:
                self._rows.setdefault(stamp, {})[event] = count
                self._arrivals.setdefault(stamp, arrived)
            self._first.set()
        self._first.set()  # perf exited (or never printed an interval): start() stops waiting

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_reader", None) is not None:
            self._reader.join(timeout=5)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _series(self):
        """{event: [(monotonic s, cumulative count), ...]} starting at the counters' start."""
        with self._lock:
            stamps = sorted(self._rows)
            rows = {stamp: dict(self._rows[stamp]) for stamp in stamps}
            enabled = min(self._arrivals[stamp] - stamp for stamp in stamps) if stamps else 0.0
        series = {}
        for event in self.events:
            total = 0.0
            points = [(enabled, 0.0)]
            for stamp in stamps:
                total += rows[stamp].get(event, 0.0)
                points.append((enabled + stamp, total))
            series[event] = points
        return series

    def counts_between(self, start, end):
        """{event: count in [start, end]}, interpolated; and whether perf covered all of it."""
        series = self._series()
        points = series[self.events[0]]
        covered = len(points) > 1 and points[0][0] <= start and end <= points[-1][0]
        return ({event: max(0.0, _interpolate(p, end) - _interpolate(p, start))
                 for event, p in series.items()}, covered)

    def window(self, start, end, delivered):
        """The broker's system calls and context switches in [start, end], in total, per second
        and per delivered message, as recorded with every result."""
        result = {"method": " ".join(self.command[:-2] + ["-p", "PID"]),
                  "interval_ms": self.interval_ms}
        if self.error:
            return {**result, "available": False, "reason": self.error}
        counts, covered = self.counts_between(start, end)
        seconds = end - start
        per = lambda n: n / delivered if delivered else None
        syscalls = counts[TOTAL_SYSCALLS]
        result.update({
            "available": True, "covered": covered, "window_s": seconds,
            "syscalls": syscalls, "syscalls_per_s": syscalls / seconds if seconds > 0 else None,
            "syscalls_per_delivery": per(syscalls)})
        if CONTEXT_SWITCHES in counts:
            switches = counts[CONTEXT_SWITCHES]
            result.update({
                "perf_context_switches": switches,
                "perf_context_switches_per_delivery": per(switches)})
        if self.calls:
            breakdown = {c: counts[f"syscalls:sys_enter_{c}"] for c in self.calls}
            breakdown["other"] = max(0.0, syscalls - sum(breakdown.values()))
            result["per_syscall"] = {c: {"count": n, "per_delivery": per(n)}
                                     for c, n in breakdown.items()}
        return result


def run_loadgen(broker, args, label, port=None, syscalls=None, interval_ms=100, loadgen=None):
    """Runs loadgen (the binary `loadgen`, default this build's) against `broker` (at `port`,
    default broker.port) with `args`; returns its
    JSON report plus the broker's figures over the measured window. `syscalls` ("off", "total",
    "breakdown"; default SYSCALLS_DEFAULT) says what PerfStat counts on the broker meanwhile
    (perf stat -I interval_ms): report["broker"]["syscalls"]."""
    os.makedirs(os.path.join(RESULTS, "raw"), exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    json_path = os.path.join(RESULTS, "raw", f"{label}-{stamp}.json")
    port = broker.port if port is None else port
    command = [loadgen or os.path.join(BUILD, "loadgen"), "--port", str(port), "--quiet",
               "--json", json_path, *[str(a) for a in args]]
    mode = SYSCALLS_DEFAULT if syscalls is None else syscalls
    if mode not in SYSCALLS_MODES:
        raise ValueError(f"syscalls must be one of {SYSCALLS_MODES}, not {mode!r}")
    counter = None
    if mode != "off":
        counter = PerfStat(broker.process.pid, breakdown=mode == "breakdown",
                           interval_ms=interval_ms)
        if not counter.start():
            log(f"note: no system-call counts: {counter.error}")
    try:
        completed = subprocess.run(command, capture_output=True, text=True,
                                   preexec_fn=_raise_nofile)
    finally:
        if counter is not None:
            counter.stop()
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
    if end > start:
        # perf stat's system calls (unless off) and /proc's context switches (always, split
        # voluntary / involuntary) over the same window.
        voluntary, involuntary = broker.context_switches_between(start, end)
        record = counter.window(start, end, delivered) if counter is not None else {
            "available": False, "reason": "not counted (syscalls off)"}
        per = lambda n: n / delivered if delivered else None
        switches = voluntary + involuntary
        record.update({
            "context_switches": switches,
            "context_switches_per_s": switches / window if window else None,
            "context_switches_per_delivery": per(switches),
            "proc_context_switches": {
                "voluntary": voluntary, "involuntary": involuntary,
                "voluntary_per_delivery": per(voluntary),
                "involuntary_per_delivery": per(involuntary)}})
        report["broker"]["syscalls"] = record
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
        # The broker's system calls (perf stat, PerfStat.window) and context switches (/proc,
        # voluntary and involuntary) over the window; see run_loadgen.
        "syscalls": report["broker"].get("syscalls"),
    }


def describe_syscalls(summary):
    """The system calls and context switches per delivery of a step summary for a log line:
    ", 5.24 syscalls, 0.87 context switches per delivery" (what was counted)."""
    record = summary.get("syscalls") or {}
    parts = []
    if record.get("available") and record.get("syscalls_per_delivery") is not None:
        parts.append(f"{record['syscalls_per_delivery']:.2f} syscalls")
    if record.get("context_switches_per_delivery") is not None:
        parts.append(f"{record['context_switches_per_delivery']:.2f} context switches")
    if not parts:
        return ""
    return (", " + ", ".join(parts) + " per delivery"
            + ("" if record.get("covered", True) else " (perf did not cover the whole window)"))


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


# --- Mosquitto and NATS, for perf/compare ---------------------------------------------------------

MOSQUITTO = "/usr/sbin/mosquitto"
NATS_SERVER = "/usr/sbin/nats-server"
POLICY_RC_D = "/usr/sbin/policy-rc.d"


def system_pids(name):
    """PIDs of processes called `name` (e.g. a system service): listed, never touched."""
    found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def system_mosquitto_pids():
    """PIDs of mosquitto processes that are not ours (e.g. a system service): never touched."""
    return system_pids("mosquitto")


def install_without_services(package):
    """apt-get install -y --no-install-recommends `package`, without letting a system service
    start: during the install /usr/sbin/policy-rc.d answers 101 ("action forbidden"), so the
    package's maintainer scripts do not start the service (which would take its well-known port);
    an existing policy-rc.d is left as it is."""
    log(f"{package} is not installed: apt-get install -y {package} (service start forbidden)")
    wrote_policy = False
    if not os.path.exists(POLICY_RC_D):
        with open(POLICY_RC_D, "w") as policy:
            policy.write("#!/bin/sh\n# perf/compare: no service starts during its install.\n"
                         "exit 101\n")
        os.chmod(POLICY_RC_D, 0o755)
        wrote_policy = True
    try:
        environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", package],
                       check=True, env=environment, stdout=sys.stderr)
    finally:
        if wrote_policy:
            os.remove(POLICY_RC_D)


def ensure_mosquitto():
    """Installs Debian's mosquitto if missing, without letting its system service start
    (install_without_services). Returns the version line of `mosquitto -h`."""
    if not os.path.exists(MOSQUITTO):
        install_without_services("mosquitto")
    others = system_mosquitto_pids()
    if others:
        log(f"note: mosquitto processes not started by perf/compare are running (PIDs {others}); "
            "they are left alone, ours listens on its own port")
    text = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    return next((line for line in text.splitlines() if "version" in line), "mosquitto")


def ensure_nats():
    """Installs Debian's nats-server if missing, the same way as mosquitto. Returns its version
    (`nats-server --version`: "nats-server: v2.9.10")."""
    if not os.path.exists(NATS_SERVER):
        install_without_services("nats-server")
    others = system_pids("nats-server")
    if others:
        log(f"note: nats-server processes not started by perf/compare are running (PIDs "
            f"{others}); they are left alone, ours listens on its own ports")
    return subprocess.run([NATS_SERVER, "--version"], capture_output=True,
                          text=True).stdout.strip() or "nats-server"


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


class Nats(SampledProcess):
    """Our own `nats-server -c <generated config>` with its MQTT listener on a free loopback port,
    a child process stopped by its PID, with its JetStream store in a temporary directory that
    stop() removes. NATS serves MQTT only with JetStream on (sessions, QoS 1 messages and
    retained messages live in JetStream streams) and only with a server_name; its own NATS client
    port is a random one (-1), unused. `settings` become lines of the mqtt block
    ("max_ack_pending": 20, ...). MQTT QoS 2 is not supported: a QoS 2 PUBLISH closes the
    connection ("publish QoS=2 not supported" in its log)."""

    name = "nats"
    workers = os.cpu_count()  # Go's GOMAXPROCS: every core

    def __init__(self, settings, directory=None, log_path=None):
        self.port = free_port()
        self.mqtt_port = self.port
        self.directory = tempfile.mkdtemp(prefix=f"tern-perf-nats-{self.port}-", dir=directory)
        self.config_path = os.path.join(self.directory, "nats.conf")
        mqtt = [f"listen: \"127.0.0.1:{self.port}\""]
        mqtt += [f"{key}: {value}" for key, value in settings.items()]
        self.config = (f"server_name: \"tern-perf-{self.port}\"\n"
                       "listen: \"127.0.0.1:-1\"\n"
                       f"jetstream {{\n  store_dir: \"{os.path.join(self.directory, 'js')}\"\n}}\n"
                       "mqtt {\n" + "".join(f"  {line}\n" for line in mqtt) + "}\n")
        with open(self.config_path, "w") as config:
            config.write(self.config)
        self.log_path = log_path or os.path.join(self.directory, "nats.log")
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen([NATS_SERVER, "-c", self.config_path],
                                        stdout=self._log, stderr=self._log,
                                        preexec_fn=_raise_nofile)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self._fail(f"nats-server did not listen on 127.0.0.1:{self.port}")
        if self.process.poll() is not None:
            self._fail("nats-server exited at start-up")
        self._start_sampling()

    def _fail(self, what):
        self.stop()
        try:
            with open(self.log_path) as log_file:
                tail = log_file.read()[-2000:]
        except OSError:
            tail = ""
        raise RuntimeError(f"{what}; config:\n{self.config}log:\n{tail}")

    def stop(self):
        super().stop()
        shutil.rmtree(self.directory, ignore_errors=True)
