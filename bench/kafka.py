#!/usr/bin/env python3
"""The Kafka benchmark: kafka source → JetStream bus → sensor → kafka trigger, with its baseline.

One run, on the broker of `scripts/services.sh start kafka` (KAFKA_BROKERS; started here when unset):

1. baseline: `kafka-relay` (bench/src/bin/kafka_relay.rs), a raw rdkafka consume → produce loop with
   Sluice's default guarantees (one record at a time per partition, the output's delivery report
   awaited before the input offset is stored for commit);
2. sluice: `sluice sensor` (kafka trigger, default settings: one firing at a time, in bus order) and
   `sluice eventsource` (kafka source, consumer group, oldest) on a nats-server with JetStream started
   here in a temp dir.

Each run owns fresh input/output topics (3 partitions). `sluice-bench kafka-produce` floods the input
with N records `{"id", "t"}` (t = produce time, µs), then `sluice-bench kafka-collect` reads the output:
distinct ids, duplicates, missing, and produce → arrival latency. Rate = N / (last arrival − start of
produce). Latency of a flood includes the time a record waits behind the ones before it.

Prints a table and writes <target dir>/bench/kafka.json. `--debug` uses debug builds (numbers then
compare runs of the same build only). Nothing here asserts on timing.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import ROOT, Failed, Processes, cargo, free_port, log, nats_server_bin, now_utc, target_dir, wait_until  # noqa: E402

PARTITIONS = 3


def create_topics(bench_bin, brokers, names):
    run_json([str(bench_bin), "kafka-topics", "--brokers", brokers, "--partitions", str(PARTITIONS), *names], 120)


def run_json(argv, timeout):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise Failed(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(bench_bin, brokers, input_topic, output_topic, events, timeout):
    produced = run_json([str(bench_bin), "kafka-produce", "--brokers", brokers, "--topic", input_topic,
                         "--count", str(events)], timeout)
    collected = run_json([str(bench_bin), "kafka-collect", "--brokers", brokers, "--topic", output_topic,
                          "--count", str(events), "--timeout", str(timeout)], timeout + 60)
    seconds = max((collected["last_us"] - produced["started_us"]) / 1e6, 1e-9)
    return {
        "events": events,
        "produce_seconds": produced["seconds"],
        "seconds": seconds,
        "events_per_second": collected["distinct"] / seconds,
        "distinct": collected["distinct"],
        "duplicates": collected["duplicates"],
        "missing": collected["missing"],
        "exactly_once": collected["distinct"] == events and collected["duplicates"] == 0,
        "latency_us": collected["latency"],
    }


def baseline(args, procs, tmp, bench_dir, brokers):
    run = uuid.uuid4().hex[:8]
    inp, out = f"bench-base-in-{run}", f"bench-base-out-{run}"
    create_topics(bench_dir / "sluice-bench", brokers, [inp, out])
    relay = procs.start("kafka-relay", [str(bench_dir / "kafka-relay"), "--brokers", brokers, "--input", inp,
                                        "--output", out, "--group", f"bench-base-{run}",
                                        "--count", str(args.events)],
                        tmp / "relay.log", stdout_path=tmp / "relay.out")
    time.sleep(2)  # let the relay join its group before the flood (both runs get the same head start)
    result = measure(bench_dir / "sluice-bench", brokers, inp, out, args.events, args.timeout)
    procs.stop(relay)
    return result


def sluice(args, procs, tmp, bin_dir, brokers):
    run = uuid.uuid4().hex[:8]
    inp, out = f"bench-sl-in-{run}", f"bench-sl-out-{run}"
    create_topics(bin_dir / "sluice-bench", brokers, [inp, out])
    nats_port = free_port()
    (tmp / "nats").mkdir()
    nats = procs.start("nats-server", [nats_server_bin(), "-a", "127.0.0.1", "-p", str(nats_port), "-js",
                                       "-sd", str(tmp / "nats")], tmp / "nats.log")

    def nats_up():
        try:
            with socket.create_connection(("127.0.0.1", nats_port), timeout=0.5):
                return True
        except OSError:
            return False
    wait_until("nats-server listening", nats_up, 30, nats, tmp / "nats.log")
    (tmp / "eventsource.yaml").write_text(f"""\
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {{name: kbench}}
spec:
  kafka:
    records:
      url: "{brokers}"
      topic: {inp}
      jsonBody: true
      consumerGroup: {{groupName: bench-sl-{run}, oldest: true}}
""")
    (tmp / "sensor.yaml").write_text(f"""\
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: kbench}}
spec:
  dependencies:
    - {{name: d, eventSourceName: kbench, eventName: records}}
  triggers:
    - template:
        name: out
        kafka:
          url: "{brokers}"
          topic: {out}
          payload:
            - src: {{dependencyName: d, dataKey: body.id}}
              dest: id
            - src: {{dependencyName: d, dataKey: body.t}}
              dest: t
""")
    common = ["--bus", f"nats://127.0.0.1:{nats_port}", "--listen", "127.0.0.1", "--metrics-address",
              "127.0.0.1:0", "--log-format", "json"]
    sluice_bin = bin_dir / "sluice"
    sensor = procs.start("sluice sensor", [str(sluice_bin), "sensor", "-f", str(tmp / "sensor.yaml"), *common],
                         tmp / "sensor.log", env={"SLUICE_LOG": "warn,sluice=info"})
    wait_until("sensor started", lambda: '"sensor started"' in (tmp / "sensor.log").read_text(errors="replace"),
               60, sensor, tmp / "sensor.log")
    es = procs.start("sluice eventsource", [str(sluice_bin), "eventsource", "-f", str(tmp / "eventsource.yaml"),
                                            *common], tmp / "es.log", env={"SLUICE_LOG": "warn,sluice=info"})
    wait_until("eventsource consuming", lambda: '"consuming"' in (tmp / "es.log").read_text(errors="replace"),
               60, es, tmp / "es.log")
    time.sleep(2)
    result = measure(bin_dir / "sluice-bench", brokers, inp, out, args.events, args.timeout)
    procs.stop(es)
    procs.stop(sensor)
    procs.stop(nats)
    return result


def table(result):
    lines = ["", f"kafka benchmark ({result['events']} records, {result['partitions']} partitions, "
                 f"{result['build']} build, {result['started']})", ""]
    lines.append(f"{'run':<34}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'distinct':>10}{'dups':>6}{'missing':>9}")
    for name, r in (("baseline (rdkafka consume→produce)", result["baseline"]),
                    ("sluice (kafka→JetStream→kafka)", result["sluice"])):
        lat = r["latency_us"]
        lines.append(f"{name:<34}{r['events_per_second']:>10.1f}{lat['p50_us'] / 1000:>9.1f}"
                     f"{lat['p99_us'] / 1000:>9.1f}{r['distinct']:>10}{r['duplicates']:>6}{r['missing']:>9}")
    b, s = result["baseline"], result["sluice"]
    if b["events_per_second"] > 0:
        lines.append(f"  sluice/baseline throughput: {s['events_per_second'] / b['events_per_second']:.2f}; "
                     f"exactly once: baseline {b['exactly_once']}, sluice {s['exactly_once']}")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--timeout", type=int, default=600, help="seconds to wait for the output of one run")
    p.add_argument("--debug", action="store_true", help="use debug builds instead of release")
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    profile = "debug" if args.debug else "release"
    if not args.no_build:
        flags = [] if args.debug else ["--release"]
        cargo("build", *flags, "--bin", "sluice")
        cargo("build", *flags, "-p", "sluice-bench")
    bin_dir = target_dir() / profile
    if not os.environ.get("KAFKA_BROKERS"):
        out = subprocess.run([str(ROOT / "scripts" / "services.sh"), "start", "kafka"], capture_output=True,
                             text=True, timeout=3600)
        if out.returncode != 0:
            raise Failed(f"kafka did not start: {out.stderr[-2000:]}")
        for line in out.stdout.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                os.environ[k] = v
    brokers = os.environ["KAFKA_BROKERS"]
    procs = Processes()
    result = {"started": now_utc(), "events": args.events, "build": profile,
              "partitions": PARTITIONS}
    try:
        with tempfile.TemporaryDirectory(prefix="sluice-bench-kafka-") as tmp:
            (Path(tmp) / "base").mkdir()
            (Path(tmp) / "sluice").mkdir()
            result["baseline"] = baseline(args, procs, Path(tmp) / "base", bin_dir, brokers)
            log(f"baseline: {result['baseline']['events_per_second']:.1f} events/s")
            result["sluice"] = sluice(args, procs, Path(tmp) / "sluice", bin_dir, brokers)
            log(f"sluice: {result['sluice']['events_per_second']:.1f} events/s")
    finally:
        procs.stop_all()
    out_dir = target_dir() / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "kafka.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nsaved {out_dir / 'kafka.json'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as e:
        log(f"failed: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
