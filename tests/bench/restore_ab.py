#!/usr/bin/env python3
"""Restore side by side: two builds of sales-aggregator restore the same
changelog from an empty state directory, alternating (docs/performance.md
section 12). Run after a benchmark run (tests/bench/bench.py, whose logs name
the application id and input topic) with the local stack's env sourced:

  tests/bench/restore_ab.py --app bench-rill-sellers10k-cc0f47 \\
      --input bench-in-sellers10k-10000000-cc0f47 \\
      --builds /tmp/old/build,build --order A,B,B,A,A,B,B,A

Prints, per run, the records restored and two spans to the last
task_restored line: from the first restore_start (the benchmark's) and from
the first partitions_assigned (which also holds the end-offset queries and
the stores' opening before the first restore_start). Every wait is bounded."""
import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from datetime import datetime


def ts(line):
    return datetime.fromisoformat(re.search(r"ts=(\S+)Z", line).group(1)).timestamp()


def one(build, app, topic, window_ms, grace_ms, threads, timeout):
    state = tempfile.mkdtemp(prefix="restore-ab-")
    fd, log = tempfile.mkstemp(prefix="restore-ab-", suffix=".log")
    args = [os.path.join(build, "sales-aggregator"), "--application-id", app,
            "--bootstrap-servers", os.environ["RILL_BOOTSTRAP_SERVERS"],
            "--pg-dsn", os.environ["RILL_PG_DSN"], "--pg-table", app.replace("-", "_"),
            "--state-dir", state, "--input-topic", topic, "--output-topic", f"{app}-out",
            "--dlq-topic", f"{app}-dlq", "--window-size-ms", str(window_ms), "--grace-ms", str(grace_ms),
            "--commit-interval-ms", "100", "--num-stream-threads", str(threads), "--idle-timeout-ms", "0"]
    p = subprocess.Popen(args, stdout=fd, stderr=subprocess.STDOUT)
    os.close(fd)
    try:
        end = time.monotonic() + timeout
        while True:
            text = open(log).read()
            aggs = len(re.findall(r"event=task_created .*kind=aggregate", text))
            if "event=app_ready" in text and aggs and text.count("event=task_restored") >= aggs:
                break
            if p.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"no complete restore ({'exited' if p.poll() is not None else 'timeout'}): {log}")
            time.sleep(0.2)
    finally:
        p.terminate()
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
        shutil.rmtree(state, ignore_errors=True)
    lines = open(log).read().splitlines()
    starts = [ts(x) for x in lines if "event=restore_start" in x]
    assigned = [ts(x) for x in lines if "event=partitions_assigned" in x]
    ends = [ts(x) for x in lines if "event=task_restored" in x and " records=0 " not in x]
    records = sum(int(re.search(r" records=(\d+)", x).group(1)) for x in lines if "event=task_restored" in x)
    os.unlink(log)
    if not (starts and ends and assigned):
        return records, 0.0, 0.0
    return records, max(ends) - min(starts), max(ends) - min(assigned)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app", required=True, help="the application id whose changelog is restored")
    ap.add_argument("--input", required=True, help="its input topic")
    ap.add_argument("--builds", required=True, help="A,B: two build directories")
    ap.add_argument("--order", default="A,B,B,A,A,B,B,A")
    ap.add_argument("--window-ms", type=int, default=60000)
    ap.add_argument("--grace-ms", type=int, default=60000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=120, help="seconds per restore")
    a = ap.parse_args()
    builds = dict(zip("AB", a.builds.split(",")))
    spans = {"A": [], "B": []}
    for tag in a.order.split(","):
        records, span, from_assigned = one(builds[tag], a.app, a.input, a.window_ms, a.grace_ms, a.threads,
                                           a.timeout)
        spans[tag].append((span, from_assigned))
        print(f"{tag} records={records} span_s={span:.3f} records_per_s={records / span if span else 0:,.0f} "
              f"from_assigned_s={from_assigned:.3f}", flush=True)
    if spans["A"] and spans["B"]:
        for i, name in enumerate(("span", "from assigned")):
            ma, mb = (sum(x[i] for x in v) / len(v) for v in (spans["A"], spans["B"]))
            print(f"mean {name}: A {ma:.3f} s, B {mb:.3f} s, B/A {mb / ma:.2f}")


if __name__ == "__main__":
    main()
