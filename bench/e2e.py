#!/usr/bin/env python3
"""The end-to-end benchmark of Sluice (`scripts/bench e2e`): webhook → JetStream → sensor → http trigger.

One run builds `sluice` (release) and the `sluice-bench` helpers, starts its own nats-server (free
loopback port, temporary store), an HTTP sink, `sluice sensor` and `sluice eventsource` as separate
processes, drives closed-loop load at the webhook, then measures the baselines (axum hello-world under
the same load; raw async-nats JetStream publish + consume via `cargo bench -p sluice-eventbus --bench
jetstream`), prints a table and writes everything to `<target dir>/bench/e2e.json`.

Numbers are reported, never asserted: the exit code is 0 unless something failed to build or start.
Every process started here is killed at the end, also on error, Ctrl-C or SIGTERM. Only the Python
standard library is used.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Per-event logs off; the sensor keeps its runner's info lines (one "sensor started" at start) because
# that line is how readiness is detected. The pipeline's per-firing info lines stay off.
SLUICE_LOG_SENSOR = "warn,sluice_sensor::runner=info,sluice_sensor::runner::pipeline=warn"
SLUICE_LOG_EVENTSOURCE = "warn"
TARGETS = {
    "e2e_events_per_s": 20_000,
    "accept_vs_hello": 0.3,
    "accept_p99_ms": 10.0,
    "idle_rss_mib": 15.0,
}


class Failed(Exception):
    """Something needed for the run did not build or start."""


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout, proc=None, log_file=None):
    """Polls `check()` every 50 ms until truthy or `timeout` s; fails early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = ""
    if log_file is not None and Path(log_file).exists():
        tail = "\n" + "\n".join(Path(log_file).read_text(errors="replace").splitlines()[-20:])
    raise Failed(f"{what} did not happen within {timeout} s{tail}")


def http(method, url, body=None, timeout=5.0):
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


def http_ok(url):
    try:
        return http("GET", url, timeout=1.0)[0] == 200
    except OSError:
        return False


class Processes:
    """Every child of the run; each in its own process group, so the group is stopped as a whole."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, log_path, env=None, stdout_path=None):
        log(f"starting {name}")
        stdout = open(stdout_path or log_path, "ab")
        stderr = open(log_path, "ab") if stdout_path else subprocess.STDOUT
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            env={**os.environ, **(env or {})}, cwd=ROOT, start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def stop(self, proc, timeout=10.0):
        """SIGTERM to the child's group, SIGKILL after `timeout` s."""
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass

    def stop_all(self):
        for _, proc in reversed(self.procs):
            try:
                self.stop(proc, timeout=5.0)
            except Exception as e:  # keep stopping the others
                log(f"failed to stop pid {proc.pid}: {e}")


def vm_rss_kib(pid, field="VmRSS"):
    """A KiB field of /proc/PID/status: VmRSS (all resident pages), RssAnon (heap, stacks: memory
    the process owns) or RssFile (resident pages of mapped files: the binary's code and read-only
    data, shared with every process mapping the same file and reclaimable by the kernel)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


class RssSampler(threading.Thread):
    """Samples VmRSS of each named pid every 250 ms until stopped (at most `limit` s); keeps the peak."""

    def __init__(self, pids, limit):
        super().__init__(daemon=True)
        self.pids, self.limit = pids, limit
        self.peak = {name: 0 for name in pids}
        self.samples = 0
        self.done = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.limit
        while not self.done.is_set() and time.monotonic() < deadline:
            for name, pid in self.pids.items():
                rss = vm_rss_kib(pid)
                if rss is not None and rss > self.peak[name]:
                    self.peak[name] = rss
            self.samples += 1
            self.done.wait(0.25)


def mib(kib):
    return None if kib is None else round(kib / 1024, 1)


def read_listening(path, proc):
    def check():
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith("{") and "listening" in line:
                    return json.loads(line)["listening"]
        return None
    return wait_until(f"{path.stem} listening", check, 30, proc, path)


def run_load(procs, bench_bin, url, args, tmp, name, watch):
    """Runs the load generator; returns its report and the CPU seconds each watched pid used meanwhile."""
    out = tmp / f"load-{name}.json"
    before = {n: cpu_seconds(p) for n, p in watch.items()}
    started = time.monotonic()
    proc = procs.start(
        f"load generator ({name})",
        [str(bench_bin), "load", "--url", url, "--connections", str(args.connections),
         "--duration", str(args.duration)],
        tmp / f"load-{name}.log", stdout_path=out,
    )
    watch = {**watch, "load generator": proc.pid}
    before["load generator"] = 0.0
    after = {}
    try:
        while proc.poll() is None:
            if time.monotonic() - started > args.duration + 60:
                raise Failed(f"the load generator ({name}) did not finish")
            after = {n: cpu_seconds(p) for n, p in watch.items()}
            time.sleep(0.1)
    finally:
        procs.stop(proc)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise Failed(f"the load generator ({name}) failed: {(tmp / f'load-{name}.log').read_text()}")
    report = json.loads(out.read_text())
    cpu = {
        n: round(100 * (after[n] - before[n]) / elapsed, 1)
        for n in watch if after.get(n) is not None and before.get(n) is not None
    }
    return report, cpu


def start_profiles(args, pids):
    """`perf record` (call graphs, software clock) on each process for the middle of the load."""
    profilers = []
    seconds = max(5.0, args.duration / 2)
    for name, pid in pids.items():
        out = target_dir() / "bench" / f"perf-{name}.data"
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            ["perf", "record", "-F", "499", "-g", "-p", str(pid), "-o", str(out), "--", "sleep",
             str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        profilers.append((name, proc, out))
    return profilers


def finish_profiles(profilers, out_dir):
    """Waits for the profilers; writes each top-of-profile report next to the JSON; returns their paths."""
    reports = {}
    for name, proc, data in profilers:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        report = out_dir / f"perf-{name}.txt"
        with open(report, "w") as f:
            subprocess.run(["perf", "report", "--stdio", "--no-children", "--sort", "dso,symbol",
                            "--percent-limit", "1", "-g", "none", "-i", str(data)],
                           stdout=f, stderr=subprocess.DEVNULL, timeout=300)
        reports[name] = str(report)
    return reports


def write_manifests(tmp, es_port, sink_addr, concurrency):
    (tmp / "eventsource.yaml").write_text(f"""\
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata:
  name: bench
spec:
  webhook:
    in:
      port: "{es_port}"
      endpoint: /in
      method: POST
""")
    (tmp / "sensor.yaml").write_text(f"""\
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata:
  name: bench
spec:
  dependencies:
    - name: d
      eventSourceName: bench
      eventName: in
  triggers:
    - concurrency: {concurrency}
      template:
        name: sink
        http:
          url: http://{sink_addr}/trigger
          method: POST
          payload:
            - src:
                dependencyName: d
                dataKey: body
              dest: ""
""")


def cargo(*argv, env=None, timeout=3600):
    log("cargo " + " ".join(argv))
    result = subprocess.run(["cargo", *argv], cwd=ROOT, env={**os.environ, **(env or {})},
                            timeout=timeout)
    if result.returncode != 0:
        raise Failed(f"`cargo {' '.join(argv)}` failed")


def target_dir():
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise Failed(f"cargo metadata failed: {out.stderr}")
    return Path(json.loads(out.stdout)["target_directory"])


def nats_server_bin():
    # `env` installs nats-server when missing (it never starts or stops the shared test server).
    out = subprocess.run([str(ROOT / "scripts/services.sh"), "env", "nats"], capture_output=True,
                         text=True, timeout=600)
    for line in out.stdout.splitlines():
        if line.startswith("NATS_SERVER_BIN="):
            path = line.split("=", 1)[1]
            if os.access(path, os.X_OK):
                return path
    raise Failed(f"no nats-server from scripts/services.sh env nats: {out.stderr}")


def e2e(args, procs, tmp, sluice_bin, bench_bin, nats_bin, result):
    # nats-server with JetStream on a free port and a store in the temp dir.
    nats_port = free_port()
    (tmp / "nats").mkdir()
    nats = procs.start("nats-server", [nats_bin, "-a", "127.0.0.1", "-p", str(nats_port), "-js",
                                       "-sd", str(tmp / "nats")], tmp / "nats.log")

    def nats_up():
        try:
            with socket.create_connection(("127.0.0.1", nats_port), timeout=0.5):
                return True
        except OSError:
            return False
    wait_until("nats-server listening", nats_up, 30, nats, tmp / "nats.log")
    bus = f"nats://127.0.0.1:{nats_port}"

    sink = procs.start("sink", [str(bench_bin), "sink", "--addr", "127.0.0.1:0"], tmp / "sink.log",
                       stdout_path=tmp / "sink.out")
    sink_addr = read_listening(tmp / "sink.out", sink)

    es_port = free_port()
    write_manifests(tmp, es_port, sink_addr, args.trigger_concurrency)
    common = ["--bus", bus, "--listen", "127.0.0.1", "--metrics-address", "127.0.0.1:0",
              "--log-format", "json"]
    # The sensor first: it creates its durable, so nothing published afterwards can pass unseen.
    sensor = procs.start("sluice sensor", [str(sluice_bin), "sensor", "-f", str(tmp / "sensor.yaml"),
                                           *common], tmp / "sensor.log",
                         env={"SLUICE_LOG": SLUICE_LOG_SENSOR, **args.sluice_env})
    wait_until("sensor started", lambda: '"message":"sensor started"' in
               (tmp / "sensor.log").read_text(errors="replace"), 60, sensor, tmp / "sensor.log")
    es = procs.start("sluice eventsource", [str(sluice_bin), "eventsource", "-f",
                                            str(tmp / "eventsource.yaml"), *common],
                     tmp / "eventsource.log", env={"SLUICE_LOG": SLUICE_LOG_EVENTSOURCE, **args.sluice_env})
    wait_until("eventsource GET /health", lambda: http_ok(f"http://127.0.0.1:{es_port}/health"), 60,
               es, tmp / "eventsource.log")

    # Idle: started and settled, before any event.
    time.sleep(1.0)
    idle = {"sluice eventsource": vm_rss_kib(es.pid), "sluice sensor": vm_rss_kib(sensor.pid),
            "nats-server": vm_rss_kib(nats.pid)}
    pids = {"sluice eventsource": es.pid, "sluice sensor": sensor.pid, "nats-server": nats.pid}
    idle_anon = {n: vm_rss_kib(p, "RssAnon") for n, p in pids.items()}
    idle_file = {n: vm_rss_kib(p, "RssFile") for n, p in pids.items()}
    log("idle RSS (MiB): " + ", ".join(f"{n} {mib(v)} (anonymous {mib(idle_anon[n])}, file {mib(idle_file[n])})"
                                         for n, v in idle.items()))

    # One event through the whole chain proves it works before the clock starts; then a clean sink.
    status, _ = http("POST", f"http://127.0.0.1:{es_port}/in", b'{"t": 0, "id": 0}', timeout=30)
    if status // 100 != 2:
        raise Failed(f"the warm-up event got HTTP {status}")
    sink_url = f"http://{sink_addr}"

    def sink_stats():
        return json.loads(http("GET", f"{sink_url}/stats")[1])
    wait_until("the warm-up event reaching the sink", lambda: sink_stats()["received"] >= 1, 30,
               sensor, tmp / "sensor.log")
    http("POST", f"{sink_url}/reset", b"")

    # The load, with RSS sampled until the drain is over.
    drain_limit = max(60.0, 3 * args.duration)
    pids = {"sluice eventsource": es.pid, "sluice sensor": sensor.pid, "nats-server": nats.pid}
    sampler = RssSampler(pids, args.duration + 60 + drain_limit + 10)
    sampler.start()
    watch = {**pids, "sink": sink.pid}
    log(f"load: {args.connections} connections for {args.duration} s at POST /in")
    profilers = start_profiles(args, {"eventsource": es.pid, "sensor": sensor.pid}) if args.profile else []
    load, cpu = run_load(procs, bench_bin, f"http://127.0.0.1:{es_port}/in", args, tmp, "e2e", watch)
    profiles = finish_profiles(profilers, target_dir() / "bench")
    at_load_end = sink_stats()
    accepted = load["ok"]
    log(f"load done: {accepted} accepted; waiting for the sink to have them all")

    drain_started = time.monotonic()
    stats = at_load_end
    while stats["distinct_ids"] < accepted and time.monotonic() - drain_started < drain_limit:
        time.sleep(0.1)
        stats = sink_stats()
    sampler.done.set()
    sampler.join(timeout=5)
    drained = stats["distinct_ids"] >= accepted
    after_drain = {"sluice eventsource": vm_rss_kib(es.pid), "sluice sensor": vm_rss_kib(sensor.pid)}
    for p in (es, sensor):
        if p.poll() is not None:
            raise Failed(f"a sluice process exited during the load (code {p.returncode})")

    last, start = stats["last_arrival_us"], load["start_us"]
    e2e_span = (last - start) / 1e6 if last > start else None
    result["e2e"] = {
        "bus": "nats-server JetStream (own instance, temp store)",
        "profiles": profiles,
        "sluice_log": {"eventsource": SLUICE_LOG_EVENTSOURCE, "sensor": SLUICE_LOG_SENSOR},
        "load": load,
        "sink_at_load_end": at_load_end,
        "sink": stats,
        "drained": drained,
        "missing_at_sink": max(0, accepted - stats["distinct_ids"]),
        "duplicates_at_sink": stats["received"] - stats["distinct_ids"],
        "drain_s": max(0.0, (last - load["end_us"]) / 1e6) if drained else None,
        "drain_limit_s": drain_limit,
        "e2e_events_per_s": stats["distinct_ids"] / e2e_span if e2e_span else 0.0,
        "triggers_per_s_during_load": at_load_end["received"] / load["elapsed_s"],
        "rss_mib": {
            "idle": {n: mib(v) for n, v in idle.items()},
            "idle_anonymous": {n: mib(v) for n, v in idle_anon.items()},
            "idle_file": {n: mib(v) for n, v in idle_file.items()},
            "peak": {n: mib(v) for n, v in sampler.peak.items()},
            "after_drain": {n: mib(v) for n, v in after_drain.items()},
            "samples": sampler.samples,
        },
        "cpu_percent_during_load": cpu,
    }
    for p in (es, sensor, sink, nats):
        procs.stop(p)


def hello(args, procs, tmp, bench_bin, result):
    server = procs.start("hello-world", [str(bench_bin), "hello", "--addr", "127.0.0.1:0"],
                         tmp / "hello.log", stdout_path=tmp / "hello.out")
    addr = read_listening(tmp / "hello.out", server)
    log(f"hello-world baseline: {args.connections} connections for {args.duration} s")
    load, cpu = run_load(procs, bench_bin, f"http://{addr}/", args, tmp, "hello",
                         {"hello-world": server.pid})
    procs.stop(server)
    result["hello_world"] = {"load": load, "cpu_percent_during_load": cpu}


def jetstream(procs, nats_bin, tgt, tmp, result):
    log("raw JetStream baseline: cargo bench -p sluice-eventbus --bench jetstream")
    # In the run's process group, so stopping it also stops the bench binary and its nats-server.
    proc = procs.start("jetstream bench", ["cargo", "bench", "-p", "sluice-eventbus", "--bench",
                                           "jetstream"], tmp / "jetstream.log",
                       env={"NATS_SERVER_BIN": nats_bin})
    try:
        proc.wait(timeout=900)
    except subprocess.TimeoutExpired:
        raise Failed("the jetstream bench did not finish in 900 s")
    finally:
        procs.stop(proc)
    if proc.returncode != 0:
        raise Failed(f"the jetstream bench failed:\n{(tmp / 'jetstream.log').read_text()[-3000:]}")
    result["jetstream"] = json.loads((tgt / "bench" / "jetstream.json").read_text())


def table(result):
    rows = []
    e = result.get("e2e")
    h = result.get("hello_world")
    j = result.get("jetstream")

    def fmt_rate(v):
        return f"{v:,.0f}/s"

    def ms(us):
        return f"{us / 1000:.2f} ms"

    def check(ok):
        return "ok" if ok else "MISSED"

    if e:
        load = e["load"]
        lat = load["accept_latency"]
        e2e_lat = e["sink"]["event_to_trigger_latency"]
        rate = e["e2e_events_per_s"]
        rows += [
            ("end-to-end events/s (distinct at sink / (last arrival - load start))", fmt_rate(rate),
             f">= {TARGETS['e2e_events_per_s']:,}/s  {check(rate >= TARGETS['e2e_events_per_s'])}"),
            ("accepted events/s (2xx from /in)", fmt_rate(load["ok_per_second"]), ""),
            ("accepted / non-2xx / transport errors",
             f"{load['ok']} / {load['non_2xx']} / {load['errors']}", ""),
            ("triggers/s during load (sink arrivals)", fmt_rate(e["triggers_per_s_during_load"]), ""),
            ("accept latency p50 / p99", f"{ms(lat['p50_us'])} / {ms(lat['p99_us'])}",
             f"p99 <= {TARGETS['accept_p99_ms']:.0f} ms  "
             f"{check(lat['p99_us'] / 1000 <= TARGETS['accept_p99_ms'])}"),
            ("event->trigger latency p50 / p99", f"{ms(e2e_lat['p50_us'])} / {ms(e2e_lat['p99_us'])}",
             ""),
            ("drain time (load end -> sink has all)",
             f"{e['drain_s']:.2f} s" if e["drained"] else
             f"not drained in {e['drain_limit_s']:.0f} s ({e['missing_at_sink']} missing)", ""),
            ("duplicates at sink", str(e["duplicates_at_sink"]), ""),
        ]
        for name in ("sluice eventsource", "sluice sensor"):
            idle = e["rss_mib"]["idle"][name]
            rows.append((f"RSS {name} idle / peak", f"{idle} / {e['rss_mib']['peak'][name]} MiB",
                         f"idle <= {TARGETS['idle_rss_mib']:.0f} MiB  "
                         f"{check(idle is not None and idle <= TARGETS['idle_rss_mib'])}"))
            anon, file = e["rss_mib"]["idle_anonymous"][name], e["rss_mib"]["idle_file"][name]
            rows.append((f"  of which anonymous / file-backed (idle)", f"{anon} / {file} MiB", ""))
        for name, pct in e["cpu_percent_during_load"].items():
            rows.append((f"CPU % during load: {name}", f"{pct} %", "100 % = one core"))
    if h:
        hl = h["load"]
        rows.append(("hello-world req/s, p50 / p99", f"{fmt_rate(hl['ok_per_second'])}, "
                     f"{ms(hl['accept_latency']['p50_us'])} / {ms(hl['accept_latency']['p99_us'])}",
                     ""))
        if e:
            ratio = e["load"]["ok_per_second"] / max(hl["ok_per_second"], 1e-9)
            result["accept_vs_hello"] = ratio
            rows.append(("accept rate / hello-world rate", f"{ratio:.2f}",
                         f">= {TARGETS['accept_vs_hello']}  {check(ratio >= TARGETS['accept_vs_hello'])}"))
    if j:
        for run in j["runs"]:
            rows.append((f"JetStream publish->consume+ack ({run['run']})",
                         fmt_rate(run["publish_to_ack_events_per_second"]),
                         "baseline" if run["run"].startswith("raw") else ""))
    w = [max(len(r[i]) for r in rows) for i in range(3)] if rows else [0, 0, 0]
    lines = [f"{'metric':<{w[0]}}  {'value':<{w[1]}}  target", "-" * (w[0] + w[1] + w[2] + 4)]
    lines += [f"{a:<{w[0]}}  {b:<{w[1]}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(prog="scripts/bench e2e", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--connections", type=int, default=50, help="connections (default 50)")
    parser.add_argument("--trigger-concurrency", type=int, default=64,
                        help="the trigger's `concurrency` (Sluice extension; 1 = in bus order; default 64)")
    parser.add_argument("--profile", action="store_true",
                        help="perf record the sluice processes during the load; reports in <target>/bench/perf-*.txt")
    parser.add_argument("--no-build", action="store_true", help="use the binaries already built")
    parser.add_argument("--skip-hello", action="store_true", help="skip the hello-world baseline")
    parser.add_argument("--skip-jetstream", action="store_true",
                        help="skip the raw JetStream baseline (cargo bench)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, manifests)")
    parser.add_argument("--sluice-env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the two sluice processes only (repeatable), "
                             "e.g. LD_PRELOAD=… to compare allocators without rebuilding")
    args = parser.parse_args()
    try:
        args.sluice_env = dict(kv.split("=", 1) for kv in args.sluice_env)
    except ValueError:
        parser.error("--sluice-env takes KEY=VALUE")
    if not 1 <= args.trigger_concurrency <= 1024:
        parser.error("--trigger-concurrency must be from 1 to 1024")
    if not 0 < args.duration <= 3600 or not 0 < args.connections <= 10_000:
        parser.error("--duration must be in (0, 3600] and --connections in [1, 10000]")

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    # Also when started with SIGINT ignored (a background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    result = {
        "bench": "e2e",
        "started_utc": now_utc(),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(),
                    "kernel": os.uname().release},
        "settings": {"duration_s": args.duration, "connections": args.connections,
                     "trigger_concurrency": args.trigger_concurrency,
                     "sluice_env": args.sluice_env},
        "targets": TARGETS,
    }
    code = 0
    try:
        tgt = target_dir()
        if not args.no_build:
            cargo("build", "--release", "--bin", "sluice")
            cargo("build", "--release", "-p", "sluice-bench")
            if not args.skip_jetstream:
                cargo("bench", "-p", "sluice-eventbus", "--bench", "jetstream", "--no-run")
        sluice_bin, bench_bin = tgt / "release" / "sluice", tgt / "release" / "sluice-bench"
        for b in (sluice_bin, bench_bin):
            if not b.exists():
                raise Failed(f"{b} is missing (build it, or drop --no-build)")
        nats_bin = nats_server_bin()
        result["machine"]["loadavg_before_load"] = os.getloadavg()
        result["measured_utc"] = now_utc()
        log(f"measuring at {result['measured_utc']}, load average {os.getloadavg()}")
        e2e(args, procs, tmp, sluice_bin, bench_bin, nats_bin, result)
        if not args.skip_hello:
            hello(args, procs, tmp, bench_bin, result)
        if not args.skip_jetstream:
            jetstream(procs, nats_bin, tgt, tmp, result)
        result["finished_utc"] = now_utc()
        print()
        print(f"Sluice end-to-end benchmark, measured {result['measured_utc']} on "
              f"{os.cpu_count()} CPUs (load average before: "
              f"{', '.join(f'{x:.2f}' for x in result['machine']['loadavg_before_load'])}); "
              f"{args.connections} connections x {args.duration:g} s; trigger concurrency {args.trigger_concurrency}; "
              f"SLUICE_LOG=warn (sensor: +runner=info for its one start line)")
        print(table(result))
        out = tgt / "bench" / "e2e.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"wrote {out}")
    except Failed as e:
        log(f"failed: {e}")
        code = 1
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    finally:
        procs.stop_all()
        if args.keep or code != 0:
            log(f"logs and manifests kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
