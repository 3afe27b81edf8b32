#!/usr/bin/env python3
"""How long a failure holds windows back, and that it makes no record late.

Three workers, 12 input partitions, live input (sale_ts = now) at a fixed
rate; one worker is SIGKILLed once and started again 2 s later (as a
supervisor would), each with its own group.instance.id as deploy/k8s
runs them (--no-static-membership: without). Per window: the time it
became visible in Postgres minus its close time (window end + grace); p99_ms is over every window of the run
(per seller), the kill included. Windows are also grouped by when they closed:
before the kill (steady state), from the kill until the latency is back to
steady (held back), after. The verifier checks the end state: exact totals,
Postgres = Kafka, zero late records.

Usage (the local stack up, a build in build/ or RILL_BUILD_DIR):
  tests/bench/holdback.py [--rate 1000] [--seconds 90] [--kill-at 30]
Prints one JSON line; tests/bench/bench.py runs it in full mode and writes it
into docs/benchmarks.md."""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "crash"))
from scenario import Scenario, h  # noqa: E402
import psycopg  # noqa: E402


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=90)
    ap.add_argument("--kill-at", type=float, default=30)
    ap.add_argument("--restart-after", type=float, default=2)
    ap.add_argument("--window-ms", type=int, default=5000)
    ap.add_argument("--grace-ms", type=int, default=2000)
    ap.add_argument("--static-membership", action=argparse.BooleanOptionalAction, default=True,
                    help="each worker with its own --group-instance-id, as deploy/k8s runs them "
                    "(the restarted worker takes its partitions back without waiting for the "
                    "session timeout)")
    a = ap.parse_args()
    ports = [h.free_port() for _ in range(3)]
    sc = Scenario(partitions=12, workers=0, sellers=200, window_ms=a.window_ms, grace_ms=a.grace_ms)
    for i, p in enumerate(ports):
        static = ("--group-instance-id", f"{sc.names['app']}-{i}") if a.static_membership else ()
        w = h.Aggregator(sc.names["app"], *sc.flags, "--http-port", str(p), *static,
                         input_topic=sc.names["input"], output_topic=sc.names["output"],
                         table=sc.names["table"])
        sc.workers.append(w)
    seen, stop = {}, threading.Event()

    def pg_watch():
        conn = psycopg.connect(h.PG_DSN, connect_timeout=5, autocommit=True)
        while not stop.is_set():
            try:
                rows = conn.execute(f'SELECT seller_id, (extract(epoch from window_start)*1000)::bigint '
                                    f'FROM "{sc.names["table"]}"').fetchall()
            except psycopg.Error:
                rows = []
            now = time.time() * 1000
            for s, ws in rows:
                seen.setdefault((s, ws), now)
            time.sleep(0.05)
        conn.close()

    try:
        sc.start()
        watcher = threading.Thread(target=pg_watch, daemon=True)
        watcher.start()
        prod = subprocess.Popen([os.path.join(h.BUILD, "sales-producer"), "--bootstrap-servers", h.BOOTSTRAP,
                                 "--topic", sc.names["input"], "--count", str(a.rate * a.seconds),
                                 "--rate", str(a.rate), "--num-sellers", "200", "--quiet"],
                                stderr=subprocess.PIPE)
        t0 = time.time() * 1000
        time.sleep(a.kill_at)
        victim = sc.workers[1]
        t_kill = time.time() * 1000
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        time.sleep(a.restart_after)
        victim.start()
        prod.wait(a.seconds + 120)
        time.sleep(a.window_ms / 1000 + a.grace_ms / 1000 + 5)
        stop.set()
        watcher.join(10)
        rep = sc.finish(timeout=300)
        W, G = a.window_ms, a.grace_ms
        pairs = [(ws + W + G, v - (ws + W + G)) for (s, ws), v in seen.items() if ws >= t0]
        lat = {}  # per window close: the latest of its sellers' results (the window whole)
        for c, v in pairs:
            lat[c] = max(lat.get(c, v), v)
        steady = [v for c, v in lat.items() if c < t_kill]
        p99 = pct(steady, 99) or 0
        after = sorted((c, v) for c, v in lat.items() if c >= t_kill)
        held = [(c, v) for c, v in after if v > max(2 * p99, 1000)]
        back = max((c for c, v in held), default=t_kill)
        out = {"rate": a.rate, "seconds": a.seconds, "sellers": 200, "partitions": 12, "workers": 3,
               "window_ms": W, "grace_ms": G, "kill_at_s": a.kill_at, "restart_after_s": a.restart_after,
               "static_membership": a.static_membership,
               "p99_ms": pct([v for c, v in pairs], 99), "results": len(pairs),
               "steady_p50_ms": pct(steady, 50), "steady_p99_ms": p99,
               "held_windows": len({c for c, v in held}),
               "max_hold_ms": round(max((v for c, v in held), default=0)),
               "held_for_s": round((back - t_kill) / 1000, 1),
               "after_p50_ms": pct([v for c, v in after if c > back], 50),
               "late": rep["late"], "windows_verified": rep["windows"], "events": rep["events"]}
        print(json.dumps(out))
    finally:
        sc.stop_all()


if __name__ == "__main__":
    main()
