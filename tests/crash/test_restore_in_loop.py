"""Restores run in the stream thread's loop, between polls, never in the
rebalance callback (issue 15 item 2). Before, a store restored inside the
callback: a restore longer than max.poll.interval.ms got the member evicted
in the middle of it, and the thread's other tasks waited for it."""
import datetime
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from scenario import Scenario, h  # noqa: E402


def metric(port, name):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = None
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


def test_a_restore_longer_than_max_poll_interval_neither_evicts_nor_stalls_the_thread():
    # A changelog of ~20,000 windows; the second worker restores it from
    # nothing, throttled (a fault point pauses 200 ms at each batch of 500
    # records: 10 s or more in all, against max.poll.interval.ms
    # 7 s). Meanwhile its source tasks keep consuming and committing the
    # input that arrives, and nothing is evicted; the totals are exact.
    mpi = ["-X", "max.poll.interval.ms=7000"]
    sc = Scenario(partitions=4, workers=1, sellers=20000, extra=mpi,
                  window_ms=3600000, grace_ms=20000)
    sc.in_order = True
    try:
        sc.load_then_stop(count=40000, rate=20000)
        port = h.free_port()
        sc.flags += ["--restore-batch-records", "500", "--http-port", str(port)]
        w1 = sc.new_worker()
        sc.workers = [w1]
        w1.start(env_extra={"RILL_FAULT": "mid_restore", "RILL_FAULT_PAUSE_MS": "200",
                            "RILL_FAULT_EVERY": "1"})
        h.wait_until(lambda: "event=restore_start" in w1.log(), 60, "the restore to start")
        commits0 = None
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end and commits0 is None:
            commits0 = metric(port, "rill_commits_total")
            time.sleep(0.2)
        sc.start_load(count=3000, rate=500)   # input while the stores restore
        time.sleep(5)
        log = w1.log()
        restored = log.count("event=task_restored")
        assert restored < 4, "the restore was meant to outlast the test's input: " + log[-2000:]
        commits = metric(port, "rill_commits_total")
        assert commits is not None and commits > (commits0 or 0), \
            f"the thread's source tasks must commit during the restore ({commits0} -> {commits})"
        h.wait_until(lambda: w1.log().count("event=task_restored") >= 4, 120, "every store restored")
        sc.finish(timeout=300)
        log = w1.all_logs()
        assert "maximum poll interval" not in log and "MAXPOLL" not in log, log[-3000:]
        assert "lost=1" not in log, "no eviction: " + log[-3000:]
        assert w1.proc.poll() is None
        assert log.count("event=restore_done") >= 4
        # the restores, end to end, outlasted max.poll.interval.ms
        stamps = [datetime.datetime.fromisoformat(line[3:27].replace("Z", "+00:00"))
                  for line in log.splitlines()
                  if "event=restore_start" in line or "event=restore_done" in line]
        span = (max(stamps) - min(stamps)).total_seconds()
        assert span > 7, f"the restores took {span:.1f} s, not longer than max.poll.interval.ms"
    finally:
        sc.stop_all()
