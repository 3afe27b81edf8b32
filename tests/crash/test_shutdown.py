"""Graceful shutdown and rolling restarts.

SIGTERM must end the process within shutdown.timeout.ms (plus the time to
write the last log lines) whatever the servers do: with the broker silent,
with Postgres silent. A rolling restart of three workers under load loses
and doubles nothing (the verifier), and the pause each restart causes is
measured and printed (docs/operations.md reports the figures).

The broker case runs a private one-broker cluster on its own ports (the
shared broker is not ours to stop) and freezes it (SIGSTOP); the Postgres case puts a TcpProxy in
front of the shared server and freezes it (connections stay open, nothing
is forwarded: the worst case, a network cut rather than a refusal).
"""
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from scenario import Scenario, h  # noqa: E402

SHUTDOWN_MS = int(os.environ.get("RILL_TEST_SHUTDOWN_MS", "8000"))  # given to the outage tests' workers
EXIT_MARGIN_S = 4      # after the deadline: the last log lines and _exit
EXIT_ABANDONED = 3     # sales-aggregator's status when the deadline abandoned work
# as a user runs it: two stream threads, librdkafka's default session timeout
# (45 s; the harness's 6 s would let the session expire before the close)
USER_FLAGS = ("--num-stream-threads", "2", "-X", "session.timeout.ms=45000")


def sigterm_and_time(w, timeout):
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    rc = w.wait_exit(timeout)
    took = time.monotonic() - t0
    if rc is None:
        w.kill()
    return rc, took


def assert_exits_in_bound(w, what):
    bound = SHUTDOWN_MS / 1000 + EXIT_MARGIN_S
    rc, took = sigterm_and_time(w, timeout=bound + 60)
    print(f"\n{what}: SIGTERM to exit {took:.1f}s, status {rc}")
    assert rc is not None and took <= bound, \
        f"{what}: the worker took {took:.1f}s to exit after SIGTERM (bound {bound}s, status {rc}):\n" \
        + w.log()[-4000:]
    assert rc in (0, 1, EXIT_ABANDONED), f"status {rc}:\n{w.log()[-3000:]}"
    return rc, took


def test_sigterm_with_the_broker_unreachable_exits_within_the_bound():
    with h.private_kafka("shutdown-broker") as kafka:
        sc = Scenario(partitions=4, workers=1, sellers=8, extra=USER_FLAGS)
        w = sc.workers[0]
        try:
            sc.start(env_extra={"RILL_SHUTDOWN_TIMEOUT_MS": str(SHUTDOWN_MS)})
            sc.start_load(count=200000, rate=3000)
            time.sleep(4)
            # frozen, not stopped: a broker behind a network cut answers
            # nothing (a stopped one refuses connections, and every call
            # fails at once)
            pid = kafka.pid(1)
            os.kill(pid, signal.SIGSTOP)
            try:
                sc.producer.kill()
                time.sleep(1)
                rc, _ = assert_exits_in_bound(w, "broker frozen")
            finally:
                os.kill(pid, signal.SIGCONT)
            if rc == EXIT_ABANDONED:
                assert "event=shutdown_abandoned" in w.log(), w.log()[-3000:]
        finally:
            sc.stop_all()


def test_sigterm_with_postgres_silent_exits_within_the_bound():
    host, port = "127.0.0.1", 15432
    for part in h.PG_DSN.split():
        if part.startswith("host="):
            host = part[5:]
        elif part.startswith("port="):
            port = int(part[5:])
    proxy = h.TcpProxy(host, port)
    sc = Scenario(partitions=4, workers=1, sellers=8, extra=USER_FLAGS)
    n = sc.names
    w = h.Aggregator(n["app"], *sc.flags, input_topic=n["input"], output_topic=n["output"],
                     table=n["table"], pg_dsn=proxy.dsn(h.PG_DSN),
                     env_extra=dict(proxy.pg_env(), RILL_SHUTDOWN_TIMEOUT_MS=str(SHUTDOWN_MS)))
    sc.workers = [w]
    try:
        sc.start()
        sc.start_load(count=200000, rate=3000)
        time.sleep(4)
        proxy.freeze()
        time.sleep(2)
        rc, _ = assert_exits_in_bound(w, "postgres silent")
        if rc == EXIT_ABANDONED:
            assert "event=shutdown_abandoned" in w.log(), w.log()[-3000:]
    finally:
        sc.stop_all()
        proxy.close()


# ---- rolling restart -------------------------------------------------------------------

class ProgressGaps:
    """Samples the group's committed input offsets every 50 ms (plus the
    probe's round trip) and tells, for an interval, the longest time in which
    a partition's committed offset did not move."""

    def __init__(self, group, topic):
        from confluent_kafka import Consumer, TopicPartition
        # one probe client, kept: it fetches the group's committed offsets
        # without joining the group
        self.c = Consumer({"bootstrap.servers": h.BOOTSTRAP, "group.id": group,
                           "enable.auto.commit": False})
        parts = self.c.list_topics(topic, timeout=10).topics[topic].partitions
        self.tps = [TopicPartition(topic, p) for p in parts]
        self.samples = []          # (mono time, {partition: committed offset})
        self.done = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.done:
            try:
                offs = self.c.committed(self.tps, timeout=5)
                self.samples.append((time.monotonic(), {tp.partition: tp.offset for tp in offs}))
            except Exception:  # noqa: BLE001 -- a failed probe is a missing sample
                pass
            time.sleep(0.05)

    def longest_stall(self, t0, t1):
        """The longest time within [t0, t1] in which the committed offset of
        one partition did not move (the pause its records saw), over all
        partitions; the load keeps every partition busy."""
        pts = [(t, v) for t, v in self.samples if t0 <= t <= t1]
        if not pts:
            return None
        worst = 0.0
        for p in pts[0][1]:
            stall, since, last = 0.0, pts[0][0], pts[0][1].get(p)
            for t, v in pts[1:]:
                if v.get(p) != last:
                    stall = max(stall, t - since)
                    since, last = t, v.get(p)
            worst = max(worst, stall, pts[-1][0] - since)
        return worst

    def stop(self):
        if not self.done:
            self.done = True
            self.t.join(10)
            self.c.close()


def rolling_restart(static):
    extra = ("-X", "session.timeout.ms=10000") if static else ()
    sc = Scenario(partitions=6, workers=3, sellers=12, extra=extra)
    if static:
        for i, w in enumerate(sc.workers):
            w.flags += ["--group-instance-id", f"roll-{i}"]
    n = sc.names
    gaps = None
    report = []
    try:
        sc.start()
        sc.start_load(count=120000, rate=2000)
        gaps = ProgressGaps(n["app"], n["input"])
        tb = time.monotonic()
        time.sleep(5)
        baseline = gaps.longest_stall(tb, time.monotonic())

        def assignments():
            return sum(x.all_logs().count("event=partitions_assigned") for x in sc.workers)
        for i, w in enumerate(sc.workers):
            a0 = assignments()
            t0 = time.monotonic()
            rc, took = sigterm_and_time(w, timeout=60)
            assert rc == 0, f"worker {i} status {rc} after {took:.1f}s:\n{w.log()[-3000:]}"
            assert "event=shutdown_done" in w.log(), w.log()[-3000:]
            w.start()
            # back to work: tasks assigned to it again (not the empty first
            # step of a cooperative rebalance)
            h.wait_until(lambda: re.search(r"event=partitions_assigned \S+ count=[1-9]", w.log())
                         or w.proc.poll() is not None, 60, f"worker {i} to get tasks again")
            assert w.proc.poll() is None, w.log()[-3000:]
            t_ready = time.monotonic()
            time.sleep(4)  # the group settles, progress resumes
            report.append((i, took, t_ready - t0, gaps.longest_stall(t0, time.monotonic()),
                           assignments() - a0))
        gaps.stop()
        sc.finish(timeout=300)
        rebalances = assignments()
        print(f"\nrolling restart ({'static' if static else 'dynamic'} membership): "
              f"{rebalances} assignments logged in all; before any restart the longest stall of a "
              f"partition's committed offset was {'unmeasured' if baseline is None else f'{baseline:.1f}s'}")
        for i, took, down, gap, na in report:
            # no sample in the interval: every probe of it failed (logged as unmeasured)
            gap = "unmeasured" if gap is None else f"{gap:.1f}s"
            print(f"  worker {i}: SIGTERM to exit {took:.1f}s, SIGTERM to tasks again {down:.1f}s, "
                  f"longest stall of a partition's committed offset {gap}, "
                  f"{na} assignments logged by all workers")
        return report, rebalances
    finally:
        if gaps:
            gaps.stop()
        sc.stop_all()


def test_rolling_restart_of_three_workers_under_load():
    report, _ = rolling_restart(static=False)
    for i, took, *_ in report:
        assert took < 10, f"worker {i} took {took:.1f}s to stop"


def test_rolling_restart_with_static_membership():
    report, _ = rolling_restart(static=True)
    for i, took, *_ in report:
        assert took < 10, f"worker {i} took {took:.1f}s to stop"
