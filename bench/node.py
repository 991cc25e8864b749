#!/usr/bin/env python3
"""The chain of `scripts/bench e2e` (webhook → JetStream → sensor → http trigger) as pods on the real
node (`scripts bench node`): the chart installed by helm, an EventBus, an EventSource and a Sensor
applied with kubectl, load posted to the EventSource's Service from inside the node's network.

One run:
- builds `sluice` and `sluice-bench` (release) and starts the node with that `sluice` packed into
  the image (`SLUICE_NODE_BINARY`), or reuses a running node (it then repacks the image);
- installs the chart in its own namespace and times each CR from `kubectl apply` to Ready;
- reads each pod's idle memory and, around the load, its CPU from the kubelet's summary;
- posts one warm-up event, then closed-loop load (`sluice-bench load`) at the EventSource's cluster
  IP from the node's network namespace for `--duration` seconds; the sink (`sluice-bench sink`)
  listens on the node's address, where the sensor's trigger posts;
- the baseline of the same run: the same load at `sluice-bench hello` on the node's address (the
  load generator and the network path's own ceiling);
- prints one table and writes `<target dir>/bench/node.json`; removes the namespace.

Numbers are reported, never asserted. Needs root (the node does). Only the Python standard library.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import (  # noqa: E402  (the shared helpers of the benchmarks)
    Failed, Processes, cargo, http, log, now_utc, read_listening, target_dir, wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
NS = "sluice-bench-node"
WEBHOOK_PORT = 12000


class Node:
    """kubectl, helm and `ip netns exec` against the node of `scripts/services.sh start node helm`."""

    def __init__(self, env):
        self.env = env
        self.kubectl_bin = env["KUBECTL_BIN"]
        self.helm_bin = env["HELM_BIN"]
        self.netns = env["NODE_NETNS"]
        self.host_ip = env["NODE_HOST_IP"]
        self.image = env["SLUICE_IMAGE"]
        self.nats_version = env["NATS_IMAGE"].rsplit(":", 1)[1]

    def run(self, argv, stdin=None, timeout=300):
        out = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "KUBECONFIG": self.env["KUBECONFIG"]})
        if out.returncode != 0:
            raise Failed(f"`{' '.join(argv[:4])} …` failed: {out.stderr.strip()[-2000:]}")
        return out.stdout

    def kubectl(self, *args, stdin=None, timeout=300):
        return self.run([self.kubectl_bin, *args], stdin=stdin, timeout=timeout)

    def json(self, *args):
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def apply(self, manifest):
        self.kubectl("apply", "-n", NS, "-f", "-", stdin=manifest)

    def in_netns(self, argv):
        """`argv` run inside the node's network namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def summary(self):
        """The kubelet's stats summary: per pod of the namespace, (RSS bytes, working set bytes,
        CPU core-seconds so far), summed over its containers."""
        name = self.json("nodes")["items"][0]["metadata"]["name"]
        text = self.kubectl("get", "--raw", f"/api/v1/nodes/{name}/proxy/stats/summary")
        out = {}
        for pod in json.loads(text).get("pods", []):
            if pod["podRef"]["namespace"] != NS:
                continue
            rss = ws = cpu = 0
            for c in pod.get("containers", []):
                rss += c.get("memory", {}).get("rssBytes", 0)
                ws += c.get("memory", {}).get("workingSetBytes", 0)
                cpu += c.get("cpu", {}).get("usageCoreNanoSeconds", 0) / 1e9
            out[pod["podRef"]["name"]] = (rss, ws, cpu)
        return out

    def remove(self):
        for what in ("sensors", "eventsources", "eventbus"):
            try:
                self.kubectl("delete", what, "--all", "-n", NS, "--timeout=120s", timeout=180)
            except (Failed, subprocess.TimeoutExpired):
                pass
        for argv in ([self.helm_bin, "uninstall", "sluice", "-n", NS, "--wait", "--timeout", "120s"],
                     [self.kubectl_bin, "delete", "namespace", NS, "--ignore-not-found",
                      "--timeout=180s"]):
            try:
                self.run(argv, timeout=240)
            except (Failed, subprocess.TimeoutExpired):
                pass


def ready(node, workload, want):
    try:
        o = node.json(workload, "-n", NS)
    except Failed:
        return False
    s = o.get("status", {})
    return s.get("readyReplicas") == want and s.get("updatedReplicas") == want and s.get("replicas") == want


def time_to_ready(node, what, manifest, workload, want, timeout=300):
    started = time.monotonic()
    node.apply(manifest)
    deadline = started + timeout
    while time.monotonic() < deadline:
        if ready(node, workload, want):
            took = round(time.monotonic() - started, 1)
            log(f"{what}: Ready {took} s after apply")
            return took
        time.sleep(0.5)
    raise Failed(f"{what} was not Ready within {timeout} s")


def manifests(node, args, sink_port):
    bus = f"""
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata: {{name: default}}
spec:
  jetstream:
    version: "{node.nats_version}"
    replicas: {args.bus_replicas}
"""
    eventsource = f"""
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {{name: bench}}
spec:
  replicas: 1
  webhook:
    in: {{port: "{WEBHOOK_PORT}", endpoint: /in, method: POST}}
"""
    sensor = f"""
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: bench}}
spec:
  replicas: {args.sensor_replicas}
  dependencies:
    - {{name: d, eventSourceName: bench, eventName: in}}
  triggers:
    - concurrency: {args.trigger_concurrency}
      template:
        name: sink
        http:
          url: http://{node.host_ip}:{sink_port}/trigger
          method: POST
          payload:
            - src: {{dependencyName: d, dataKey: body}}
              dest: ""
"""
    return bus, eventsource, sensor


def start_node(args, sluice_bin):
    log("starting the node with the release image (scripts/services.sh start node helm)")
    out = subprocess.run([str(ROOT / "scripts/services.sh"), "start", "node", "helm"],
                         capture_output=True, text=True, timeout=3600,
                         env={**os.environ, "SLUICE_NODE_BINARY": str(sluice_bin)})
    if out.returncode != 0:
        raise Failed(f"the node did not start: {out.stderr[-3000:]}")
    env = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            env[key] = value
    for key in ("KUBECONFIG", "KUBECTL_BIN", "HELM_BIN", "NODE_NETNS", "NODE_HOST_IP", "SLUICE_IMAGE",
                "NATS_IMAGE"):
        if key not in env:
            raise Failed(f"scripts/services.sh start node helm did not print {key}")
    return env


def load(procs, node, bench_bin, url, args, tmp, name):
    """Closed-loop load from inside the node's network; returns the generator's report."""
    out = tmp / f"load-{name}.json"
    proc = procs.start(f"load generator ({name})",
                       node.in_netns([str(bench_bin), "load", "--url", url, "--connections",
                                      str(args.connections), "--duration", str(args.duration)]),
                       tmp / f"load-{name}.log", stdout_path=out)
    try:
        proc.wait(timeout=args.duration + 120)
    except subprocess.TimeoutExpired:
        raise Failed(f"the load generator ({name}) did not finish")
    finally:
        procs.stop(proc)
    if proc.returncode != 0:
        raise Failed(f"the load generator ({name}) failed: {(tmp / f'load-{name}.log').read_text()}")
    return json.loads(out.read_text())


def measure(args, procs, tmp, node, bench_bin, result):
    node.remove()
    node.kubectl("create", "namespace", NS)
    repository, tag = node.image.rsplit(":", 1)
    node.run([node.helm_bin, "install", "sluice", str(ROOT / "charts/sluice"), "-n", NS, "--wait",
              "--timeout", "180s", "--set", f"image.repository={repository}", "--set",
              f"image.tag={tag}", "--set", "image.pullPolicy=Never", "--set",
              f"nats.version={node.nats_version}"], timeout=300)

    sink = procs.start("sink", node.in_netns([str(bench_bin), "sink", "--addr", f"{node.host_ip}:0"]),
                       tmp / "sink.log", stdout_path=tmp / "sink.out")
    sink_addr = read_listening(tmp / "sink.out", sink)
    sink_port = int(sink_addr.rsplit(":", 1)[1])
    bus, eventsource, sensor = manifests(node, args, sink_port)
    ready_s = {
        f"EventBus (jetstream, {args.bus_replicas} replicas)": time_to_ready(
            node, "EventBus", bus, "statefulset/eventbus-default-js", args.bus_replicas),
        "EventSource (webhook)": time_to_ready(node, "EventSource", eventsource,
                                               "deployment/bench-eventsource", 1),
        f"Sensor ({args.sensor_replicas} replicas)": time_to_ready(
            node, "Sensor", sensor, "deployment/bench-sensor", args.sensor_replicas),
    }
    result["apply_to_ready_s"] = ready_s
    ip = node.json("service/bench-eventsource", "-n", NS)["spec"]["clusterIP"]
    url = f"http://{ip}:{WEBHOOK_PORT}/in"

    # Idle: settled, before any event.
    time.sleep(5)
    idle = node.summary()
    result["idle_memory_mib"] = {pod: {"rss": round(r / 2**20, 1), "working_set": round(w / 2**20, 1)}
                                 for pod, (r, w, _) in idle.items()}

    def sink_stats():
        return json.loads(subprocess.run(
            node.in_netns(["python3", "-c", "import sys,urllib.request;"
                           f"sys.stdout.write(urllib.request.urlopen('http://{sink_addr}/stats',"
                           "timeout=5).read().decode())"]),
            capture_output=True, text=True, timeout=30).stdout)

    warm = subprocess.run(node.in_netns(["python3", "-c", "import urllib.request;"
                                         f"r=urllib.request.Request('{url}',data=b'{{\"t\":0,\"id\":0}}',"
                                         "method='POST',headers={'Content-Type':'application/json'});"
                                         "print(urllib.request.urlopen(r,timeout=30).status)"]),
                          capture_output=True, text=True, timeout=60)
    if warm.stdout.strip() != "200":
        raise Failed(f"the warm-up event was not accepted: {warm.stdout} {warm.stderr[-1000:]}")
    wait_until("the warm-up event reaching the sink", lambda: sink_stats()["received"] >= 1, 60)
    # A clean sink: the warm-up event's stamp (t = 0) is not a latency.
    subprocess.run(node.in_netns(["python3", "-c", "import urllib.request;"
                                  f"urllib.request.urlopen(urllib.request.Request('http://{sink_addr}/reset',"
                                  "data=b'',method='POST'),timeout=5).read()"]),
                   capture_output=True, timeout=30, check=True)
    base = sink_stats()["received"]

    log(f"load: {args.connections} connections for {args.duration} s at {url} (from the node's network)")
    before = node.summary()
    started = time.monotonic()
    report = load(procs, node, bench_bin, url, args, tmp, "node")
    at_end = sink_stats()
    accepted = report["ok"]
    log(f"load done: {accepted} accepted; waiting for the sink to have them all")
    deadline = time.monotonic() + 300
    stats = at_end
    while stats["received"] - base < accepted and time.monotonic() < deadline:
        time.sleep(0.5)
        stats = sink_stats()
    drained_s = time.monotonic() - started
    after = node.summary()
    delivered = stats["received"] - base
    cpu = {pod: round(after[pod][2] - before[pod][2], 2) for pod in after if pod in before}
    result["node"] = {
        "load": report,
        "delivered": delivered,
        "lost": max(0, accepted - delivered),
        "accepted_per_s": accepted / report["elapsed_s"],
        "delivered_per_s": delivered / drained_s,
        "triggers_per_s_during_load": (at_end["received"] - base) / report["elapsed_s"],
        "sink": stats,
        "cpu_core_seconds": cpu,
        "cpu_us_per_event": {pod: round(1e6 * s / max(1, accepted), 1) for pod, s in cpu.items()},
    }

    hello = procs.start("hello-world", node.in_netns([str(bench_bin), "hello", "--addr",
                                                      f"{node.host_ip}:0"]),
                        tmp / "hello.log", stdout_path=tmp / "hello.out")
    addr = read_listening(tmp / "hello.out", hello)
    log(f"baseline: the same load at hello-world on {addr}")
    result["hello_world"] = {"load": load(procs, node, bench_bin, f"http://{addr}/", args, tmp, "hello")}
    procs.stop(hello)


def table(result, args):
    n, h = result["node"], result["hello_world"]["load"]
    lat = n["load"].get("accept_latency", {})
    hl = h.get("accept_latency", {})
    e2e = n["sink"].get("event_to_trigger_latency", {})

    def ms(us):
        return "-" if us is None else f"{us / 1000:.2f} ms"
    rows = [
        ("measure", "Sluice on the node", "hello-world baseline"),
        ("accepted events/s", f"{n['accepted_per_s']:,.0f}/s", f"{h['ok'] / h['elapsed_s']:,.0f}/s"),
        ("accept p50 / p99", f"{ms(lat.get('p50_us'))} / {ms(lat.get('p99_us'))}",
         f"{ms(hl.get('p50_us'))} / {ms(hl.get('p99_us'))}"),
        ("event → trigger p50 / p99", f"{ms(e2e.get('p50_us'))} / {ms(e2e.get('p99_us'))}", ""),
        ("end to end events/s (until drained)", f"{n['delivered_per_s']:,.0f}/s", ""),
        ("triggers/s during the load", f"{n['triggers_per_s_during_load']:,.0f}/s", ""),
        ("lost (accepted, never at the sink)", str(n["lost"]), ""),
        ("non-2xx answers / transport errors", f"{n['load'].get('non_2xx')} / {n['load'].get('errors')}",
         f"{h.get('non_2xx')} / {h.get('errors')}"),
    ]
    for pod, us in sorted(n["cpu_us_per_event"].items()):
        rows.append((f"CPU per event: {pod}", f"{us:,.0f} µs", ""))
    for cr, s in result["apply_to_ready_s"].items():
        rows.append((f"apply → Ready: {cr}", f"{s} s", ""))
    for pod, m in sorted(result["idle_memory_mib"].items()):
        rows.append((f"idle memory: {pod}", f"RSS {m['rss']} MiB, working set {m['working_set']} MiB", ""))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(width[i]) for i, c in enumerate(r)).rstrip() for r in rows)


def main():
    parser = argparse.ArgumentParser(prog="scripts/bench node", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--connections", type=int, default=50, help="connections (default 50)")
    parser.add_argument("--bus-replicas", type=int, default=3, help="NATS pods of the EventBus (default 3)")
    parser.add_argument("--sensor-replicas", type=int, default=1, help="sensor pods (default 1)")
    parser.add_argument("--trigger-concurrency", type=int, default=64,
                        help="the trigger's `concurrency` (default 64, as scripts/bench e2e)")
    parser.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    parser.add_argument("--keep", action="store_true", help="keep the namespace and the temp dir")
    args = parser.parse_args()
    if not 0 < args.duration <= 3600 or not 0 < args.connections <= 10_000:
        parser.error("--duration must be in (0, 3600] and --connections in [1, 10000]")
    if args.bus_replicas not in (1, 3, 5) or not 1 <= args.sensor_replicas <= 10:
        parser.error("--bus-replicas must be 1, 3 or 5 and --sensor-replicas from 1 to 10")

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-node-"))
    result = {
        "bench": "node",
        "started_utc": now_utc(),
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
        "settings": {"duration_s": args.duration, "connections": args.connections,
                     "bus_replicas": args.bus_replicas, "sensor_replicas": args.sensor_replicas,
                     "trigger_concurrency": args.trigger_concurrency},
    }
    code, node = 0, None
    try:
        tgt = target_dir()
        if not args.no_build:
            cargo("build", "--locked", "--release", "--bin", "sluice")
            cargo("build", "--locked", "--release", "-p", "sluice-bench")
        sluice_bin, bench_bin = tgt / "release" / "sluice", tgt / "release" / "sluice-bench"
        for b in (sluice_bin, bench_bin):
            if not b.exists():
                raise Failed(f"{b} is missing (build it, or drop --no-build)")
        node = Node(start_node(args, sluice_bin))
        result["image"] = node.image
        result["machine"]["loadavg_before_load"] = os.getloadavg()
        result["measured_utc"] = now_utc()
        measure(args, procs, tmp, node, bench_bin, result)
        result["finished_utc"] = now_utc()
        print()
        print(f"Sluice on the node (helm chart, release image), measured {result['measured_utc']} on "
              f"{os.cpu_count()} CPUs; {args.connections} connections x {args.duration:g} s; EventBus "
              f"{args.bus_replicas} NATS pods, sensor {args.sensor_replicas} pod(s), trigger concurrency "
              f"{args.trigger_concurrency}")
        print(table(result, args))
        out = tgt / "bench" / "node.json"
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
        if node is not None and not args.keep:
            log(f"removing namespace {NS}")
            node.remove()
        if args.keep or code != 0:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
