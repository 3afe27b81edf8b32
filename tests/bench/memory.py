"""Peak RSS of one sales-aggregator process against memory.limit.mb.

Usage (the local stack's environment sourced, a build in RILL_BUILD_DIR):
  python tests/bench/memory.py [--limit-mb 152] [--partitions 96]
                               [--sellers 100000] [--events 200000] [--threads 2]
  (--limit-mb 0: leave memory.limit.mb unset, i.e. the default 1024)

Creates fresh topics with --partitions partitions, preloads --events sales
events over --sellers sellers (synthetic event time, 10-minute windows, so
nearly every seller has an open window at once), then runs one aggregator
with memory.limit.mb = --limit-mb (no Postgres sink) until the group has
consumed the input and the repartition topic. Samples VmRSS every 0.2 s and
reports VmHWM (the kernel's peak) at the end, as one JSON line:
  {"limit_mb":..,"reserved_mb":..,"budget_mb":..,"peak_rss_mb":..,"within":true,..}
memory.limit.mb includes the reserved fixed overhead (docs/operations.md,
"Memory": 64 MB + 256 KB per partition + 8 MB per thread); the rest is the
budget of caches and buffers. within: peak RSS <= memory.limit.mb. Every
wait is bounded.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402



def reserved_mb(partitions, threads):  # docs/operations.md, "Memory"
    return 64 + -(-partitions * 256 // 1024) + 8 * threads


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit-mb", type=int, default=152)
    ap.add_argument("--partitions", type=int, default=96)
    ap.add_argument("--sellers", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=600)
    a = ap.parse_args()

    names = h.app_topics(a.partitions, prefix="mem")
    window_ms = 600_000
    base_s = h.aligned_base(window_ms, minutes_ago=30) // 1000
    rc = subprocess.run([os.path.join(h.BUILD, "sales-producer"), "--bootstrap-servers", h.BOOTSTRAP,
                         "--topic", names["input"], "--count", str(a.events), "--rate", "0",
                         "--num-sellers", str(a.sellers), "--seed", "1", "--quiet",
                         "--start-ts", str(base_s), "--ts-step-ms", "2"],
                        capture_output=True, timeout=a.timeout).returncode
    assert rc == 0, "preload failed"
    env = {"RILL_MEMORY_LIMIT_MB": str(a.limit_mb)} if a.limit_mb else {}
    w = h.Aggregator(names["app"], "--window-size-ms", str(window_ms), "--grace-ms", "20000",
                     "--idle-timeout-ms", "0", "--num-stream-threads", str(a.threads),
                     input_topic=names["input"], output_topic=names["output"], pg_dsn=None,
                     env_extra=env)
    t0 = time.monotonic()
    w.start()
    samples = []
    try:
        w.wait_ready(timeout=120)
        ready_s = time.monotonic() - t0
        topics = [names["input"], names["app"] + "-repartition"]

        def tick():
            samples.append(status_kb(w.proc.pid, "VmRSS") / 1024)
        h.wait_consumed(names["app"], topics, timeout=a.timeout, tick=tick)
        wall_s = time.monotonic() - t0
        peak = status_kb(w.proc.pid, "VmHWM") / 1024
    finally:
        w.stop()
        shutil.rmtree(w.state_dir, ignore_errors=True)
    limit = a.limit_mb or 1024
    res = reserved_mb(a.partitions, a.threads)
    print(json.dumps({"limit_mb": limit, "reserved_mb": res, "budget_mb": limit - res,
                      "peak_rss_mb": round(peak), "within": peak <= limit,
                      "max_sampled_rss_mb": round(max(samples or [0])),
                      "partitions": a.partitions, "sellers": a.sellers, "events": a.events,
                      "threads": a.threads, "ready_s": round(ready_s, 1), "wall_s": round(wall_s, 1)}))


if __name__ == "__main__":
    main()
