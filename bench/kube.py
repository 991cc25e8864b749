#!/usr/bin/env python3
"""The Kubernetes benchmark: Workflows submitted per second from a webhook burst.

For each trigger concurrency (default 1, 8 and 32): `sluice run` with a webhook EventSource and a
Sensor whose argoWorkflow trigger submits one Workflow per event into its own namespace; a burst of
N events (default 1,000) is posted by `sluice-bench load --requests N`; the run ends when the
sensor's `argo_events_action_triggered_total` reaches N. Rate = N / (last firing − first request).
Then every Workflow is listed once to check that each event made exactly one.

The ceiling, in the same run: `sluice-bench kube-create` creating N Workflows straight through the
API with 32 in flight (no Sluice in between) — the API server's own rate on this machine.

Prints a table and writes <target dir>/bench/kube.json. Needs the test API server
(`scripts/services.sh start kube`, started here when KUBE_API_URL is not set) and PyYAML.
Numbers are for comparing runs on one machine; nothing here asserts on them.
"""

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import (  # noqa: E402  (the shared helpers of the e2e benchmark)
    ROOT,
    Failed,
    Processes,
    cargo,
    free_port,
    http,
    log,
    now_utc,
    target_dir,
    wait_until,
)


class Api:
    """A minimal client of the test API server (static token, its own CA)."""

    def __init__(self, url, token, ca_file):
        self.url = url.rstrip("/")
        self.token = token
        self.ctx = ssl.create_default_context(cafile=ca_file)

    def call(self, method, path, body=None, ok=(200, 201)):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=60) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return None
            raise Failed(f"{method} {path}: {e.code} {e.read()[:300]!r}")

    def ensure(self, path, body):
        """Creates the object unless it exists (409)."""
        self.call("POST", path, body, ok=(200, 201, 409))

    def count_workflows(self, namespace):
        """The Workflows in `namespace` and the distinct `id` arguments they carry."""
        items, cont = [], ""
        while True:
            page = self.call("GET", f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/workflows"
                                    f"?limit=500{'&continue=' + cont if cont else ''}")
            items += page.get("items", [])
            cont = page.get("metadata", {}).get("continue", "")
            if not cont:
                break
        ids = set()
        for wf in items:
            for p in wf.get("spec", {}).get("arguments", {}).get("parameters", []):
                if p.get("name") == "id":
                    ids.add(p.get("value"))
        return len(items), len(ids)


def install_crds(api):
    import yaml  # PyYAML (Debian python3-yaml)

    fixture = ROOT / "integration-tests" / "fixtures" / "argo-workflows-crds.yaml"
    for doc in yaml.safe_load_all(fixture.read_text()):
        if doc:
            api.ensure("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    # A new CRD serves its resource a moment after it is created.
    wait_until("the Workflow resource to be served",
               lambda: _served(api), timeout=60)


def _served(api):
    try:
        api.call("GET", "/apis/argoproj.io/v1alpha1/workflows?limit=1")
        return True
    except Failed:
        return False


def namespace(api, name):
    api.call("DELETE", f"/api/v1/namespaces/{name}", ok=(200, 202, 404))
    wait_until(f"namespace {name} to be gone", lambda: _gone(api, name), timeout=120)
    api.ensure("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _gone(api, name):
    try:
        api.call("GET", f"/api/v1/namespaces/{name}")
        return False
    except Failed as e:
        return " 404 " in str(e)


def write_manifests(tmp, port, ns, concurrency):
    (tmp / "eventsource.yaml").write_text(f"""\
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {{name: burst, namespace: {ns}}}
spec:
  webhook:
    in: {{port: "{port}", endpoint: /in, method: POST}}
""")
    (tmp / "sensor.yaml").write_text(f"""\
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: burst, namespace: {ns}}}
spec:
  dependencies:
    - {{name: d, eventSourceName: burst, eventName: in}}
  triggers:
    - concurrency: {concurrency}
      atLeastOnce: true
      retryStrategy: {{steps: 5, duration: 100ms, factor: 2}}
      template:
        name: submit
        argoWorkflow:
          operation: submit
          source:
            resource:
              apiVersion: argoproj.io/v1alpha1
              kind: Workflow
              metadata: {{generateName: burst-}}
              spec:
                entrypoint: main
                arguments: {{parameters: [{{name: id}}]}}
                templates: [{{name: main, container: {{image: alpine, command: [true]}}}}]
          parameters:
            - src: {{dependencyName: d, dataKey: body.id}}
              dest: spec.arguments.parameters.0.value
""")


def triggered(metrics_url):
    """Sum of argo_events_action_triggered_total (0 while the endpoint is not up)."""
    try:
        status, text = http("GET", metrics_url)
    except Exception:
        return 0
    if status != 200:
        return 0
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith("argo_events_action_triggered_total"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def burst(args, procs, api, sluice_bin, bench_bin, tmp, concurrency):
    ns = f"bench-burst-c{concurrency}"
    namespace(api, ns)
    run_dir = tmp / f"c{concurrency}"
    run_dir.mkdir()
    port, metrics_port = free_port(), free_port()
    write_manifests(run_dir, port, ns, concurrency)
    log_path = run_dir / "sluice.log"
    proc = procs.start(f"sluice run (concurrency {concurrency})",
                       [str(sluice_bin), "run", str(run_dir), "--metrics-address", f"127.0.0.1:{metrics_port}",
                        "--state-dir", str(run_dir / "state")],
                       log_path, env={"SLUICE_LOG": "warn"})
    wait_until("the webhook port", lambda: _port_open(port), timeout=60, proc=proc, log_file=log_path)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    start = time.time()
    out = subprocess.run([str(bench_bin), "load", "--url", f"http://127.0.0.1:{port}/in",
                          "--connections", str(args.connections), "--duration", "600",
                          "--requests", str(args.events)], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise Failed(f"load failed: {out.stderr}")
    load = json.loads(out.stdout)
    accepted_at = time.time()
    samples = []
    deadline = time.time() + max(120.0, args.events / 5)
    last = 0
    while time.time() < deadline:
        last = triggered(metrics_url)
        samples.append((time.time() - start, last))
        if last >= load["ok"]:
            break
        time.sleep(0.05)
    done = time.time()
    procs.stop(proc)
    workflows, ids = api.count_workflows(ns)
    elapsed = done - start
    return {
        "concurrency": concurrency,
        "namespace": ns,
        "events_sent": args.events,
        "events_accepted": load["ok"],
        "accept_seconds": accepted_at - start,
        "triggered": last,
        "seconds": elapsed,
        "workflows_per_second": last / elapsed if elapsed > 0 else 0,
        "workflows_listed": workflows,
        "distinct_ids": ids,
        "accept_latency_us": load["accept_latency"],
    }


def _port_open(port):
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def ceiling(args, api, bench_bin):
    ns = "bench-ceiling"
    namespace(api, ns)
    out = subprocess.run([str(bench_bin), "kube-create", "--namespace", ns, "--count", str(args.events),
                          "--concurrency", "32"], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise Failed(f"kube-create failed: {out.stderr}")
    return json.loads(out.stdout)


def table(result):
    lines = ["", f"kube benchmark ({result['events']} events per run, {result['started']})", ""]
    lines.append(f"{'run':<28}{'workflows/s':>12}{'seconds':>10}{'listed':>8}{'distinct':>10}")
    for r in result["bursts"]:
        lines.append(f"{'sluice, concurrency ' + str(r['concurrency']):<28}{r['workflows_per_second']:>12.1f}"
                     f"{r['seconds']:>10.2f}{r['workflows_listed']:>8}{r['distinct_ids']:>10}")
    c = result["ceiling"]
    lines.append(f"{'API ceiling (32 in flight)':<28}{c['created_per_second']:>12.1f}{c['elapsed_s']:>10.2f}"
                 f"{c['created']:>8}{'':>10}")
    for r in result["bursts"]:
        lines.append(f"  concurrency {r['concurrency']}: {100 * r['workflows_per_second'] / c['created_per_second']:.0f}% "
                     f"of the ceiling; burst accepted in {r['accept_seconds']:.2f} s "
                     f"(p99 {r['accept_latency_us'].get('p99_us', 0) / 1000:.1f} ms)")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated trigger concurrencies")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    if not args.no_build:
        cargo("build", "--release", "--bin", "sluice")
        cargo("build", "--release", "-p", "sluice-bench")
    tgt = target_dir()
    sluice_bin, bench_bin = tgt / "release" / "sluice", tgt / "release" / "sluice-bench"
    started_kube = False
    if not os.environ.get("KUBE_API_URL"):
        log("starting the test API server (scripts/services.sh start kube)")
        out = subprocess.run([str(ROOT / "scripts" / "services.sh"), "start", "kube"], capture_output=True,
                             text=True, timeout=7200)
        if out.returncode != 0:
            raise Failed(f"kube did not start: {out.stderr[-2000:]}")
        for line in out.stdout.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                os.environ[k] = v
        started_kube = True
    api = Api(os.environ["KUBE_API_URL"], os.environ["KUBE_TOKEN"], os.environ["KUBE_CA_FILE"])
    procs = Processes()
    result = {"started": now_utc(), "events": args.events, "bursts": []}
    try:
        install_crds(api)
        with tempfile.TemporaryDirectory(prefix="sluice-bench-kube-") as tmp:
            for c in [int(x) for x in args.concurrency.split(",") if x]:
                result["bursts"].append(burst(args, procs, api, sluice_bin, bench_bin, Path(tmp), c))
                log(f"concurrency {c}: {result['bursts'][-1]['workflows_per_second']:.1f} workflows/s")
        result["ceiling"] = ceiling(args, api, bench_bin)
    finally:
        procs.stop_all()
        if started_kube:
            subprocess.run([str(ROOT / "scripts" / "services.sh"), "stop", "kube"], timeout=120)
    out_dir = tgt / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "kube.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nsaved {out_dir / 'kube.json'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as e:
        log(f"failed: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
