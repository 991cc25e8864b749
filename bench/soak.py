#!/usr/bin/env python3
"""The chaos soak of Sluice (`scripts/soak [--minutes M]`): cluster mode on real servers under mixed
faults, checking the delivery contract at the end.

It starts a 3-node NATS JetStream cluster on loopback ports (own stores in a temp dir; stream and
sensor state at 3 replicas), two `sluice eventsource` processes (a webhook source on each, and a
leader-elected Kafka source — the Lease lives in the kube-apiserver of `scripts/services.sh start
kube`) and two `sluice sensor` processes sharing one Sensor: a single-dependency http trigger per
source and an `a && b` trigger whose `a` comes from the webhook and `b` from Kafka. `sluice-bench
soak-load` sends open-loop load at a fixed rate, and `sluice-bench soak-sink` is the trigger target.

Every 20–40 s (at random, seeded) one fault happens: `kill -9` of an eventsource, a sensor or a NATS
node (restarted 2 s later, as a pod would be), SIGSTOP/SIGCONT of one of them for 10 s, or the
target answering 500 for 15 s. At the end it prints events accepted, fired and lost (accepted, never
fired: must be 0), repeats and whether every repeat carried its event's idempotency key (must), the
`a && b` firings against the pairs sent, p99 latency outside the fault windows, and RSS of each
process early and late in its life (no growth beyond 20 %). The exit code is 1 when a check fails.
Everything goes to `<target dir>/soak/soak.json`. Only the Python standard library is used.
"""

import argparse
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import (  # noqa: E402  (the shared helpers of the benchmarks)
    ROOT, Failed, Processes, free_port, http, http_ok, log, mib, nats_server_bin, read_listening,
    target_dir, vm_rss_kib, wait_until,
)

SLUICE_LOG_SENSOR = "warn,sluice_sensor::runner=info,sluice_sensor::runner::pipeline=warn"
# The leader's "leading" line tells when the Kafka source runs.
SLUICE_LOG_EVENTSOURCE = "warn,sluice::process=info"
# Latency is not judged in the first seconds of load: consumer groups are still joining.
WARM_UP_S = 15.0
RESTART_AFTER_S = 2.0
STOP_FOR_S = 10.0
FAIL_FOR_S = 15.0
# Events scheduled from a fault's start until this long after it ended are "inside" it for latency.
GRACE_S = 15.0
RSS_GROWTH_LIMIT = 0.20
# An instance's first RSS sample is taken this long after it started (warm, under load).
RSS_WARM_S = 20.0


def now_us():
    return int(time.time() * 1e6)


# ---------------------------------------------------------------------------------------------
# Id ranges: sorted, half-open [start, end) pairs, as the two reports give them.

def ranges_count(rs):
    return sum(b - a for a, b in rs)


def ranges_minus(rs, minus):
    """The ids in `rs` that are not in `minus` (both sorted, disjoint)."""
    out, j = [], 0
    for a, b in rs:
        cur = a
        while j < len(minus) and minus[j][1] <= cur:
            j += 1
        k = j
        while cur < b:
            if k < len(minus) and minus[k][0] < b:
                ma, mb = minus[k]
                if ma > cur:
                    out.append([cur, ma])
                cur = max(cur, mb)
                k += 1
            else:
                out.append([cur, b])
                cur = b
    return out


def ranges_union(*lists):
    merged = sorted(r for rs in lists for r in rs)
    out = []
    for a, b in merged:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def ranges_intersect(x, y):
    return ranges_minus(x, ranges_minus(x, y))


def sample(rs, n=10):
    ids = []
    for a, b in rs:
        ids.extend(range(a, min(b, a + n - len(ids))))
        if len(ids) >= n:
            break
    return ids


# ---------------------------------------------------------------------------------------------
# The processes.

class Member:
    """One restartable process: its start command and every instance it had."""

    def __init__(self, procs, name, argv, log_path, env=None, kind="sluice"):
        self.procs, self.name, self.argv, self.log_path = procs, name, argv, log_path
        self.env, self.kind = env or {}, kind
        self.proc = None
        self.instances = []  # {pid, started, rss_warm_kib, rss_last_kib, ended}
        self.stopped = False

    def start(self):
        self.proc = self.procs.start(self.name, self.argv, self.log_path, env=self.env)
        self.instances.append({"pid": self.proc.pid, "started": time.monotonic(),
                               "rss_warm_kib": None, "rss_last_kib": None, "ended": None})
        return self.proc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.instances[-1]["ended"] = time.monotonic()

    def signal(self, sig):
        os.killpg(self.proc.pid, sig)
        self.stopped = sig == signal.SIGSTOP

    def sample_rss(self):
        if not self.alive() or self.stopped:
            return
        inst = self.instances[-1]
        rss = vm_rss_kib(self.proc.pid)
        if rss is None:
            return
        inst["rss_last_kib"] = rss
        if inst["rss_warm_kib"] is None and time.monotonic() - inst["started"] >= RSS_WARM_S:
            inst["rss_warm_kib"] = rss


class RssWatch(threading.Thread):
    def __init__(self, members):
        super().__init__(daemon=True)
        self.members, self.done = members, threading.Event()

    def run(self):
        while not self.done.is_set():
            for m in self.members:
                m.sample_rss()
            self.done.wait(1.0)


def nats_config(tmp, i, ports):
    client, monitor, route = ports[i]
    routes = ", ".join(f"nats-route://127.0.0.1:{r}" for _, _, r in ports)
    store = tmp / f"nats-{i + 1}"
    store.mkdir(exist_ok=True)
    path = tmp / f"nats-{i + 1}.conf"
    path.write_text(f"""\
server_name: n{i + 1}
listen: 127.0.0.1:{client}
http: 127.0.0.1:{monitor}
jetstream {{
  store_dir: "{store}"
  max_memory_store: 256MB
  max_file_store: 8GB
}}
cluster {{
  name: soak
  listen: 127.0.0.1:{route}
  routes: [{routes}]
}}
""")
    return path


def write_manifests(tmp, run, nats_ports, es_ports, brokers, topic, pair_topic, sink):
    urls = ",".join(f"nats://127.0.0.1:{c}" for c, _, _ in nats_ports)
    (tmp / "bus.yaml").write_text(f"""\
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata:
  name: soak
spec:
  jetstreamExotic:
    url: {urls}
    streamConfig: |
      replicas: 3
      maxAge: 2h
""")
    for i, port in enumerate(es_ports):
        (tmp / f"eventsource-{i + 1}.yaml").write_text(f"""\
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata:
  name: soak
spec:
  webhook:
    in:
      port: "{port}"
      endpoint: /in
      method: POST
    pair:
      port: "{port}"
      endpoint: /pair
      method: POST
  kafka:
    events:
      url: {brokers}
      topic: {topic}
      jsonBody: true
      consumerGroup:
        groupName: soak-{run}-events
        oldest: true
    pairs:
      url: {brokers}
      topic: {pair_topic}
      jsonBody: true
      consumerGroup:
        groupName: soak-{run}-pairs
        oldest: true
""")
    # Upstream counts any HTTP answer as success unless `policy.status.allow` lists the good ones.
    retry = ("      policy:\n        status:\n          allow: [200]\n"
             "      retryStrategy:\n        steps: 10\n        duration: 1s\n        factor: 2\n")

    def single(name, dep):
        return f"""\
    - template:
        name: {name}
        conditions: {dep}
        http:
          url: http://{sink}/single
          method: POST
          payload:
            - src:
                dependencyName: {dep}
                dataKey: body
              dest: ""
{retry}      concurrency: 32
"""
    (tmp / "sensor.yaml").write_text(f"""\
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata:
  name: soak
spec:
  dependencies:
    - name: web
      eventSourceName: soak
      eventName: in
    - name: kafka
      eventSourceName: soak
      eventName: events
    - name: pa
      eventSourceName: soak
      eventName: pair
    - name: pb
      eventSourceName: soak
      eventName: pairs
  triggers:
{single("web", "web")}{single("kafka", "kafka")}    - template:
        name: pair
        conditions: "pa && pb"
        http:
          url: http://{sink}/pair
          method: POST
          payload:
            - src:
                dependencyName: pa
                dataKey: body
                useRawData: true
              dest: a
            - src:
                dependencyName: pb
                dataKey: body
                useRawData: true
              dest: b
{retry}""")


def ensure_services(procs_env):
    """KAFKA_BROKERS and KUBECONFIG from the environment (scripts/test exports them), else starts
    the two services; returns their settings and the names of the services this run started."""
    need = [name for name, key in (("kafka", "KAFKA_BROKERS"), ("kube", "KUBECONFIG"))
            if not procs_env.get(key)]
    settings = {k: procs_env[k] for k in ("KAFKA_BROKERS", "KUBECONFIG") if procs_env.get(k)}
    if need:
        log(f"starting services: {' '.join(need)}")
        out = subprocess.run([str(ROOT / "scripts/services.sh"), "start", *need], capture_output=True,
                             text=True, timeout=900)
        if out.returncode != 0:
            raise Failed(f"scripts/services.sh start {' '.join(need)} failed:\n{out.stderr[-3000:]}")
        for line in out.stdout.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                settings.setdefault(k, v)
    return settings, need


def jsz_replicas(monitor_port):
    """Replicas of every stream on the cluster (the event stream and the sensor's state bucket)."""
    url = f"http://127.0.0.1:{monitor_port}/jsz?streams=true&config=true"
    data = json.loads(http("GET", url, timeout=5)[1])
    out = {}
    for acc in data.get("account_details", []):
        for s in acc.get("stream_detail", []):
            out[s["name"]] = s.get("config", {}).get("num_replicas")
    return out


# ---------------------------------------------------------------------------------------------

def soak(args, procs, tmp, result):
    sluice_bin, bench_bin = args.sluice_bin, args.bench_bin
    rng = random.Random(args.seed)
    run = f"{int(time.time())}-{os.getpid()}"
    settings, started_services = ensure_services(os.environ)
    result["services_started"] = started_services
    brokers, kubeconfig = settings["KAFKA_BROKERS"], settings["KUBECONFIG"]

    # The NATS cluster.
    nats_bin = nats_server_bin()
    nats_ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    nats = [Member(procs, f"nats-{i + 1}", [nats_bin, "-c", str(nats_config(tmp, i, nats_ports))],
                   tmp / f"nats-{i + 1}.log", kind="nats") for i in range(3)]
    for m in nats:
        m.start()
    for i, m in enumerate(nats):
        wait_until(f"nats-{i + 1} healthy", lambda i=i: http_ok(
            f"http://127.0.0.1:{nats_ports[i][1]}/healthz"), 60, m.proc, m.log_path)

    # Topics, sink, manifests.
    topic, pair_topic = f"soak-{run}-events", f"soak-{run}-pairs"
    out = subprocess.run([str(bench_bin), "kafka-topics", "--brokers", brokers, "--partitions", "3",
                          topic, pair_topic], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise Failed(f"creating the Kafka topics failed: {out.stderr}")
    sink_proc = procs.start("soak sink", [str(bench_bin), "soak-sink", "--addr", "127.0.0.1:0"],
                            tmp / "sink.log", stdout_path=tmp / "sink.out")
    sink = read_listening(tmp / "sink.out", sink_proc)
    es_ports = [free_port(), free_port()]
    write_manifests(tmp, run, nats_ports, es_ports, brokers, topic, pair_topic, sink)

    common = ["--bus", str(tmp / "bus.yaml"), "--listen", "127.0.0.1", "--metrics-address",
              "127.0.0.1:0", "--log-format", "json"]
    env = {"SLUICE_LOG": SLUICE_LOG_EVENTSOURCE, "KUBECONFIG": kubeconfig}
    sensors = [Member(procs, f"sensor-{i + 1}", [str(sluice_bin), "sensor", "-f", str(tmp / "sensor.yaml"),
                                                 *common], tmp / f"sensor-{i + 1}.log",
                      env={"SLUICE_LOG": SLUICE_LOG_SENSOR, "HOSTNAME": f"sensor-{i + 1}"})
               for i in range(2)]
    eventsources = [Member(procs, f"eventsource-{i + 1}",
                           [str(sluice_bin), "eventsource", "-f", str(tmp / f"eventsource-{i + 1}.yaml"),
                            *common, "--leader-elect", "--lease-name", f"soak-{run}",
                            "--lease-namespace", "default", "--lease-identity", f"eventsource-{i + 1}",
                            "--lease-duration", "5s"],
                           tmp / f"eventsource-{i + 1}.log", env=env) for i in range(2)]
    # Sensors first: they create their durables, so nothing published later passes unseen.
    for m in sensors:
        m.start()
    for m in sensors:
        wait_until(f"{m.name} started", lambda m=m: '"message":"sensor started"' in
                   m.log_path.read_text(errors="replace"), 90, m.proc, m.log_path)
    for m in eventsources:
        m.start()
    for m, port in zip(eventsources, es_ports):
        wait_until(f"{m.name} GET /health", lambda port=port: http_ok(f"http://127.0.0.1:{port}/health"),
                   90, m.proc, m.log_path)
    wait_until("an eventsource leading (the Kafka source running)", lambda: any(
        '"message":"leading: starting' in m.log_path.read_text(errors="replace") for m in eventsources),
        60, None, eventsources[0].log_path)
    replicas = jsz_replicas(nats_ports[0][1])
    result["stream_replicas"] = replicas
    log(f"stream replicas: {replicas}")

    members = nats + eventsources + sensors
    watch = RssWatch(members)
    watch.start()

    # The load, then the faults until it ends.
    duration = args.minutes * 60.0
    load_out = tmp / "load.json"
    load = procs.start("soak load", [str(bench_bin), "soak-load", "--web",
                                     ",".join(f"127.0.0.1:{p}" for p in es_ports), "--brokers", brokers,
                                     "--topic", topic, "--pair-topic", pair_topic, "--rate",
                                     str(args.rate), "--duration", str(duration)],
                       tmp / "load.log", stdout_path=load_out)
    started = time.monotonic()
    windows, faults, restarts = [[now_us(), now_us() + int(WARM_UP_S * 1e6)]], [], []
    lo, hi = args.fault_every
    next_fault = started + rng.uniform(lo, hi)
    while load.poll() is None:
        time.sleep(0.2)
        for m in members:
            if not m.stopped and m.proc.poll() is not None and m.instances[-1]["ended"] is None:
                m.instances[-1]["ended"] = time.monotonic()
                # A leader that lost its Lease (it was stopped past the Lease's duration) exits on
                # purpose so that its run-once sources stop for sure; a pod's restart policy starts it
                # again as a candidate, and so does this supervisor. Any other exit is a failure.
                tail = m.log_path.read_text(errors="replace")[-4000:]
                if m.kind == "sluice" and "stopping to restart as a candidate" in tail:
                    log(f"{m.name} lost its Lease and exited, as designed; restarting it")
                    restarts.append({"process": m.name, "at_us": now_us(), "why": "lost the Lease"})
                    m.start()
                else:
                    raise Failed(f"{m.name} exited by itself (code {m.proc.returncode}); see {m.log_path}")
        if time.monotonic() >= next_fault and time.monotonic() - started < duration - 5:
            fault = inject(rng, nats, eventsources, sensors, sink)
            faults.append(fault)
            windows.append([fault["start_us"], fault["end_us"]])
            next_fault = time.monotonic() + rng.uniform(lo, hi)
    if load.returncode != 0:
        raise Failed(f"the load generator failed: {(tmp / 'load.log').read_text()[-2000:]}")
    load_report = json.loads(load_out.read_text())
    log("load done; draining")

    # Drain: until every accepted event has fired (or the limit: redeliveries wait out ack_wait).
    streams = load_report["streams"]
    want = {"web": streams["web"]["accepted"], "kafka": streams["kafka"]["accepted"]}
    drain_started = time.monotonic()
    progress = {}
    while time.monotonic() - drain_started < args.drain_limit:
        progress = json.loads(http("GET", f"http://{sink}/progress")[1])
        if all(progress[k] >= n for k, n in want.items()):
            break
        time.sleep(0.5)
    # A quiet period after the end condition, so late repeats are counted too.
    time.sleep(args.quiet)
    watch.done.set()
    watch.join(timeout=5)
    for m in members:
        m.sample_rss()

    report = json.loads(http("POST", f"http://{sink}/report",
                             json.dumps({"windows": windows, "grace_s": GRACE_S}).encode(), timeout=60)[1])
    result.update(check(load_report, report, faults, members, replicas, args,
                        time.monotonic() - drain_started))
    result["restarts"] = restarts
    for m in members:
        if m.alive():
            procs.stop(m.proc)
    procs.stop(sink_proc)


def inject(rng, nats, eventsources, sensors, sink):
    kind = rng.choice(["kill", "kill", "stop", "fail"])
    start = now_us()
    if kind == "fail":
        http("POST", f"http://{sink}/fail?seconds={FAIL_FOR_S}", b"")
        log(f"fault: the target answers 500 for {FAIL_FOR_S:.0f} s")
        time.sleep(FAIL_FOR_S)
        target = "target"
    else:
        m = rng.choice(nats + eventsources + sensors)
        target = m.name
        if kind == "kill":
            log(f"fault: kill -9 {m.name}; restart in {RESTART_AFTER_S:.0f} s")
            m.kill9()
            time.sleep(RESTART_AFTER_S)
            m.start()
        else:
            log(f"fault: SIGSTOP {m.name} for {STOP_FOR_S:.0f} s")
            m.signal(signal.SIGSTOP)
            time.sleep(STOP_FOR_S)
            m.signal(signal.SIGCONT)
    return {"kind": kind, "target": target, "start_us": start, "end_us": now_us()}


def check(load, sink, faults, members, replicas, args, drain_s):
    s_load, s_sink = load["streams"], sink["streams"]
    out = {"load": {k: {f: v for f, v in s.items() if not f.endswith("_ranges")} for k, s in s_load.items()},
           "faults": faults, "drain_s": round(drain_s, 1)}
    failures = []
    totals = {"accepted": 0, "fired": 0, "lost": 0, "unexpected": 0}
    streams = {}
    for name in ("web", "kafka"):
        accepted = s_load[name]["accepted_ranges"]
        unknown = s_load[name]["unknown_ranges"]
        refused = s_load[name].get("refused_ranges", [])
        arrived = s_sink[name]["arrived_ranges"]
        lost = ranges_minus(accepted, arrived)
        # A non-2xx answer tells the sender to retry; the event may have been stored all the same
        # (the eventsource's publish timed out after reaching the bus). Not a loss, not a surprise.
        unexpected = ranges_minus(arrived, ranges_union(accepted, unknown, refused))
        streams[name] = {
            "accepted": ranges_count(accepted), "unknown_outcome": ranges_count(unknown),
            "fired": s_sink[name]["distinct"], "lost": ranges_count(lost), "lost_sample": sample(lost),
            "fired_unknown_outcome": ranges_count(ranges_intersect(arrived, unknown)),
            "refused": ranges_count(refused),
            "fired_after_refusal": ranges_count(ranges_intersect(arrived, refused)),
            "unexpected": ranges_count(unexpected), "repeats": s_sink[name]["repeats"],
            "repeated_events": s_sink[name]["repeated_events"],
            "latency_ms": summary_ms(s_sink[name]["latency"]),
            "latency_outside_faults_ms": summary_ms(s_sink[name]["latency_outside_faults"]),
        }
        totals["accepted"] += streams[name]["accepted"]
        totals["fired"] += streams[name]["fired"]
        totals["lost"] += streams[name]["lost"]
        totals["unexpected"] += streams[name]["unexpected"]
        if lost:
            failures.append(f"{name}: {ranges_count(lost)} accepted events never fired (e.g. ids {sample(lost)})")
        if unexpected:
            failures.append(f"{name}: {ranges_count(unexpected)} firings of events never sent")

    # Pairs: both halves accepted → one `a && b` firing expected. Around faults the halves of two
    # pairs can meet (upstream keeps only each dependency's latest event), so only pairs sent well
    # outside every fault window must have fired with their own halves.
    pairs_sent = ranges_intersect(s_load["pair_a"]["accepted_ranges"], s_load["pair_b"]["accepted_ranges"])
    fired = s_sink["pairs"]["arrived_ranges"]
    every = load["pair_every_s"]
    start_us = load["start_us"]
    calm = []
    for a, b in pairs_sent:
        for k in range(a, b):
            t = start_us + int((k + 1) * every * 1e6)
            if not any(ws - 2e6 <= t <= we + GRACE_S * 1e6 for ws, we in ([f["start_us"], f["end_us"]] for f in faults)):
                calm.append([k, k + 1])
    calm = ranges_union(calm)
    calm_missing = ranges_minus(calm, fired)
    pairs = {"expected": ranges_count(pairs_sent), "fired_own_pair": ranges_count(fired),
             "fired_mixed": len(sink["mixed_pairs"]), "expected_outside_faults": ranges_count(calm),
             "missing_outside_faults": ranges_count(calm_missing), "missing_sample": sample(calm_missing),
             "repeats": s_sink["pairs"]["repeats"],
             "latency_outside_faults_ms": summary_ms(s_sink["pairs"]["latency_outside_faults"])}
    # Pairs meet their own halves only while the system keeps up: behind by more than the pair
    # interval, a dependency's backlog replaces held halves whatever the faults.
    behind_s = max((s_sink[n]["latency_outside_faults"].get("p99_us") or 0) / 1e6 for n in ("web", "kafka"))
    pairs["judged"] = behind_s <= every
    if not pairs["judged"]:
        pairs["not_judged_because"] = (f"p99 latency outside faults was {behind_s:.1f} s, more than the "
                                       f"{every:.0f} s between pairs: the machine could not keep up")
    if calm_missing and pairs["judged"]:
        failures.append(f"a && b: {ranges_count(calm_missing)} pairs sent outside faults never fired "
                        f"(e.g. {sample(calm_missing)})")

    keys = {k: sink[k] for k in ("shared_keys", "key_mismatches", "missing_keys", "bad_bodies")}
    out["bad_body_samples"] = sink.get("bad_body_samples", [])
    for k, v in keys.items():
        if v:
            failures.append(f"{k}: {v}")
    repeats = sum(s_sink[n]["repeats"] for n in ("web", "kafka", "pairs"))

    rss = []
    for m in members:
        for inst in m.instances:
            warm, last = inst["rss_warm_kib"], inst["rss_last_kib"]
            row = {"process": m.name, "pid": inst["pid"], "warm_mib": mib(warm), "last_mib": mib(last)}
            if warm and last:
                row["growth"] = round(last / warm - 1, 3)
                lived = (inst["ended"] or time.monotonic()) - inst["started"]
                row["lived_s"] = round(lived)
                # Judged on instances that lived long enough for growth to mean something.
                if m.kind == "sluice" and lived >= args.rss_min_life and row["growth"] > RSS_GROWTH_LIMIT:
                    failures.append(f"{m.name} (pid {inst['pid']}) RSS grew {row['growth']:.0%} "
                                    f"({row['warm_mib']} → {row['last_mib']} MiB)")
            rss.append(row)
    low = {n: r for n, r in replicas.items() if (r or 0) < 3}
    if low:
        failures.append(f"streams with fewer than 3 replicas on a 3-node cluster: {low}")
    out.update({"totals": totals, "streams": streams, "pairs": pairs, "keys": keys,
                "repeats": repeats, "rss": rss, "failures": failures})
    return out


def summary_ms(s):
    return {k.replace("_us", "_ms"): round(v / 1000, 1) if k.endswith("_us") else v for k, v in s.items()}


def table(r):
    t, ks = r["totals"], r["keys"]
    lines = [
        f"soak: {r['minutes']} min at {r['rate']} events/s, {len(r['faults'])} faults "
        f"({', '.join(sorted({f['kind'] + ' ' + f['target'] for f in r['faults']}))})",
        f"  accepted {t['accepted']}, fired {t['fired']}, lost {t['lost']} (must be 0), "
        f"fired but never sent {t['unexpected']}",
    ]
    for name, s in r["streams"].items():
        lines.append(f"  {name:6} accepted {s['accepted']}, fired {s['fired']}, lost {s['lost']}, "
                     f"unknown outcome {s['unknown_outcome']} ({s['fired_unknown_outcome']} fired), "
                     f"non-2xx {s['refused']} ({s['fired_after_refusal']} fired), "
                     f"repeats {s['repeats']} on {s['repeated_events']} events; p99 outside faults "
                     f"{s['latency_outside_faults_ms'].get('p99_ms')} ms, overall "
                     f"{s['latency_ms'].get('p99_ms')} ms")
    p = r["pairs"]
    if not p["judged"]:
        lines.append(f"  a && b not judged: {p['not_judged_because']}")
    lines.append(f"  a && b: {p['fired_own_pair']} own-pair firings + {p['fired_mixed']} mixed of "
                 f"{p['expected']} pairs sent; outside faults {p['expected_outside_faults'] - p['missing_outside_faults']}"
                 f"/{p['expected_outside_faults']}; p99 outside faults {p['latency_outside_faults_ms'].get('p99_ms')} ms")
    same = "yes" if not (ks["key_mismatches"] or ks["missing_keys"] or ks["shared_keys"]) else "NO"
    lines.append(f"  every repeat carried its event's idempotency key: {same} (mismatches "
                 f"{ks['key_mismatches']}, missing {ks['missing_keys']}, shared by two events {ks['shared_keys']})")
    if r.get("restarts"):
        lines.append(f"  restarts by the supervisor (as a pod's restart policy would): "
                     f"{', '.join(x['process'] + ' (' + x['why'] + ')' for x in r['restarts'])}")
    for row in r["rss"]:
        if row.get("growth") is not None:
            lines.append(f"  RSS {row['process']:14} pid {row['pid']:>7}: {row['warm_mib']} → {row['last_mib']} MiB "
                         f"({row['growth']:+.0%}, lived {row['lived_s']} s)")
    lines.append("  result: " + ("PASS" if not r["failures"] else "FAIL\n    " + "\n    ".join(r["failures"])))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=2000.0, help="events/s in all (half webhook, half Kafka)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--fault-every", type=float, nargs=2, default=[20.0, 40.0], metavar=("MIN", "MAX"))
    ap.add_argument("--drain-limit", type=float, default=240.0)
    ap.add_argument("--quiet", type=float, default=5.0, help="seconds to keep counting after the drain")
    ap.add_argument("--rss-min-life", type=float, default=120.0,
                    help="RSS growth is judged on instances that lived at least this long")
    ap.add_argument("--sluice-bin", type=Path, required=True)
    ap.add_argument("--bench-bin", type=Path, required=True)
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    result = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "minutes": args.minutes, "rate": args.rate, "seed": args.seed}
    procs = Processes()
    out_dir = target_dir() / "soak"
    out_dir.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="sluice-soak-"))
    try:
        log(f"seed {args.seed}; logs in {tmp}")
        soak(args, procs, tmp, result)
    except Failed as e:
        log(f"FAILED: {e}")
        result["error"] = str(e)
        return_code = 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    else:
        return_code = 1 if result["failures"] else 0
    finally:
        procs.stop_all()
        for name in result.get("services_started", []):
            subprocess.run([str(ROOT / "scripts/services.sh"), "stop", name], capture_output=True, timeout=120)
    result["logs"] = str(tmp)
    (out_dir / "soak.json").write_text(json.dumps(result, indent=2))
    if "failures" in result:
        print(table(result))
    print(f"soak: wrote {out_dir / 'soak.json'}; logs in {tmp}")
    return return_code


if __name__ == "__main__":
    sys.exit(main())
