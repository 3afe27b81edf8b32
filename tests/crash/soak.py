"""Soak: the SIGKILL-cycle scenario with many cycles, then a summary.
Not run in CI. Usage: tests/crash/soak [--cycles N] [--workers 3] [--partitions 12]"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from test_cluster import kill_cycles  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--rate", type=int, default=1500)
    ap.add_argument("--interval", type=float, default=3.0)
    a = ap.parse_args()
    t0 = time.monotonic()

    def report(c, el):
        if c % 10 == 0:
            print(f"soak: cycle {c}/{a.cycles} at {el:.0f}s", flush=True)

    try:
        rep = kill_cycles(a.cycles, workers=a.workers, partitions=a.partitions, rate=a.rate,
                          interval=a.interval, report=report)
        problems = []
    except AssertionError as e:
        print(f"soak: FAILED: {str(e)[:4000]}")
        sys.exit(1)
    r = rep["restores"] or [0]
    summary = {"cycles": a.cycles, "workers": a.workers, "partitions": a.partitions,
               "events": rep["events"], "windows_verified": rep["windows"], "late": rep["late"],
               "discrepancies": len(problems), "restores": len(rep["restores"]),
               "restore_ms_median": statistics.median(r), "restore_ms_max": max(r),
               "elapsed_s": round(time.monotonic() - t0)}
    print("soak: summary " + json.dumps(summary))


if __name__ == "__main__":
    main()
