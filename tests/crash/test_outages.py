"""Outages of the servers themselves: PostgreSQL stopped and restarted under
load, the Kafka broker restarted. Results stall, nothing is lost or doubled."""
import os
import shutil
import signal
import subprocess

import pytest
from confluent_kafka import KafkaException
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from scenario import Scenario, h  # noqa: E402

LOCAL = os.path.join(h.ROOT, "deploy", "local")


def sh(*args, timeout=120):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{args}: {p.stdout}{p.stderr}"
    return p.stdout


def test_postgres_down_stalls_results_then_catches_up():
    sc = Scenario(partitions=4, workers=2, sellers=8)
    try:
        sc.start()
        sc.start_load(count=30000, rate=2000)
        time.sleep(3)
        sh(os.path.join(LOCAL, "postgres"), "stop")
        try:
            time.sleep(8)
            logs = "\n".join(w.log() for w in sc.workers)
            assert "commit_failed" in logs, "commits must fail (and retry) while Postgres is down"
        finally:
            sh(os.path.join(LOCAL, "postgres"), "start")
        h.wait_until(lambda: any("commit_recovered" in w.log() for w in sc.workers), 60, "recovery")
        sc.finish()
    finally:
        sc.stop_all()


def test_broker_restart_under_load():
    # A single broker restarted gracefully while the workers run under load
    # (transactions open, records in flight), then exact totals. On a broker
    # of its own: no other test's transactions.
    # The workers are frozen (SIGSTOP) for the moment the broker stops, and
    # the broker stopped once no commit is completing (no transaction in
    # PrepareCommit or PrepareAbort): a single broker makes every
    # partition leaderless while it stops, and its transaction coordinator
    # skips the markers of a commit it completes in that moment and records
    # it complete (a broker bug, docs/troubleshooting.md: "After a broker
    # restart some partitions never move again"). Measured on Kafka 4.4.0
    # without the freeze, 12 restarts: 3 went wrong, once every partition
    # of the commit left open (a hanging transaction), twice the changelog's
    # markers skipped while the group's offset commit landed (the abort that
    # ends the hang then drops state whose input is not read again: totals
    # too low). With the freeze, 13 runs of 13 exact. No client can make
    # the unfrozen case exact; the broker-side remedy is in that entry. The workers are thawed while the broker is down: they see
    # the outage, their open transactions fail and are replayed.
    with h.private_kafka("broker-restart") as kafka:
        restart_broker_under_load(kafka, Scenario(partitions=4, workers=2, sellers=8), 1, down_s=5,
                                  stop=stop_broker_frozen)


def restart_broker_under_load(kafka, sc, broker, down_s, stop=None):
    """Start sc's workers and a load, stop the broker (stop: how), start it
    again down_s later, and check exact totals."""
    try:
        sc.start()
        sc.start_load(count=20000, rate=2000)
        time.sleep(3)
        (stop or stop_broker)(kafka, sc, broker)
        time.sleep(down_s)
        kafka.run("start-broker", str(broker), timeout=120)
        sc.drain_producer()
        sc.finish(timeout=300)
    finally:
        sc.stop_all()


def stop_broker(kafka, sc, broker):
    kafka.run("stop-broker", str(broker), timeout=120)


def stop_broker_frozen(kafka, sc, broker):
    """The workers frozen while the broker stops, and it stopped once no
    commit is completing; thawed while it is down (see above)."""
    for w in sc.workers:
        w.signal(signal.SIGSTOP)
    try:
        # the commits in flight complete: no transaction of the
        # coordinator is still writing its markers
        h.wait_until(lambda: not completing_transactions(kafka), 30, "the commits in flight to complete")
        stop_broker(kafka, sc, broker)
    finally:
        for w in sc.workers:
            w.signal(signal.SIGCONT)


def completing_transactions(kafka):
    """The transactional ids whose coordinator is between a commit's or an
    abort's decision and its markers (PrepareCommit, PrepareAbort)."""
    out = kafka.run("tool", "org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server",
                    h.BOOTSTRAP, "list", timeout=60)
    return [line.split()[0] for line in out.splitlines()
            if "PrepareCommit" in line or "PrepareAbort" in line]


def test_commit_call_timing_out_is_retried_until_the_broker_answers():
    # Review finding 8: a commit call that times out (the coordinator does
    # not answer within the call's bound) is retriable, and librdkafka then
    # expects the same call again. The old engine aborted instead: the abort
    # failed with _CONFLICT (a commit still pending), and so did every begin
    # after it, forever, while /healthz said ok.
    # The broker is frozen (SIGSTOP) right before the thread's first Kafka
    # commit (a fault point holds the thread there, so the call is made with
    # little of its deadline left), for longer than that call may wait but
    # shorter than transaction.timeout.ms, so the coordinator does not abort
    # the transaction: the retried call must complete it, and the totals
    # must be exact, with the same process.
    # On a broker of its own: a freeze of the shared broker, which holds
    # every topic the suite made before, fenced it when it resumed (its
    # broker.session.timeout.ms was 4 s then), every partition lost its
    # leader for a moment, and the coordinator reloads the pending commit before the
    # leaders are back -- the broker bug of docs/troubleshooting.md ("After
    # a broker restart some partitions never move again"), a hanging
    # transaction: the likely cause of results that never came in one CI
    # run (not reproduced here: 12 runs on a broker with about 300
    # partitions). This test is about the commit call, so the broker is not
    # fenced: its session timeout outlasts the freeze.
    with h.private_kafka("commit-retry",
                         env_extra={"RILL_KAFKA_BROKER_SESSION_TIMEOUT_MS": "90000"}) as kafka:
        _commit_call_timing_out(kafka)


def _commit_call_timing_out(kafka):
    names = h.app_topics(partitions=2)
    window = 60000
    base = h.aligned_base(window, minutes_ago=30)
    T = 30000  # transaction.timeout.ms; the thread's deadline is 0.8 T after begin
    flags = ("--input-keyed", "--window-size-ms", str(window), "--grace-ms", "0",
             "--num-stream-threads", "1", "--transaction-timeout-ms", str(T),
             "--idle-timeout-ms", "2000")
    agg = h.Aggregator(names["app"], *flags, input_topic=names["input"],
                       output_topic=names["output"], table=names["table"],
                       env_extra={"RILL_FAULT": "before_kafka_commit",
                                  "RILL_FAULT_PAUSE_MS": "20000"})
    sellers = [f"s{i}" for i in range(4)]
    events = [(sellers[i % 4], i + 1, base + (i // 100) * window + i * 7) for i in range(300)]
    closing = [(s, 1, base + 10 * window) for s in sellers]  # closed by the idle advance
    pid = kafka.pid(1)
    assert pid, "the broker's pid"
    try:
        agg.start().wait_ready()
        h.produce(names["input"], [(s.encode(), h.event(s, a, ts // 1000)) for s, a, ts in events + closing])
        h.wait_until(lambda: "fault_fired" in agg.log(), 60, "the thread to reach its first Kafka commit")
        os.kill(pid, signal.SIGSTOP)
        try:
            # the thread resumes 20 s after the fault; its commit call has
            # what is left of 0.8 T (about 4 s) and times out; the broker
            # answers again 27 s after the fault, 3 s before T
            time.sleep(27)
        finally:
            os.kill(pid, signal.SIGCONT)
        want = h.truth(events + closing, window)
        got = {}

        def exact():
            nonlocal got
            try:
                got = h.as_truth(h.results(names["output"], timeout=20))
            except KafkaException:  # partition leaders while the broker re-registers
                return False
            return got == want
        try:
            h.wait_until(exact, 120, "the results after the broker came back")
        except AssertionError as e:
            diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
            raise AssertionError(f"{e}\n(want, got) where they differ: {sorted(diff.items())}\n"
                                 f"worker log:\n{agg.log()[-6000:]}") from None
        h.wait_until(lambda: {k: v[:2] for k, v in h.pg_results(names["table"]).items()} == want,
                     60, "Postgres to equal the expected totals")
        log = agg.log()
        assert agg.proc.poll() is None, "the same process goes on: " + log[-3000:]
        assert "txn_commit_retry" in log, "the commit call must have timed out and been retried: " + log[-3000:]
        assert "_CONFLICT" not in log and "Conflicting" not in log, log[-3000:]
        assert "unrecoverable" not in log, log[-3000:]
    finally:
        if agg.proc and agg.proc.poll() is None:
            agg.stop()
        os.kill(pid, signal.SIGCONT)


def test_one_of_three_brokers_stopped_under_load():
    """A separate 3-broker cluster (RF 3, min ISR 2) on its own ports; broker 2
    is stopped under load and started again."""
    with h.private_kafka("three-brokers", brokers=3) as kafka:
        assert h.BOOTSTRAP.count(",") == 2, h.BOOTSTRAP
        restart_broker_under_load(kafka, Scenario(partitions=6, workers=2, sellers=8, replication=3), 2,
                                  down_s=6)


def test_broker_down_during_a_restore_does_not_hold_the_thread():
    # A restore reads the changelog with a consumer of its own; in librdkafka
    # 2.0.2 rd_kafka_query_watermark_offsets ignores its timeout and retries
    # a request to a leader that is down until the leader is back, and the
    # restorer used it for its end offsets and, for a while, to wake its
    # fetcher when its queue ran empty: a broker down during a restore held
    # the stream thread in that call for the whole outage (seen failing with
    # 99e84c0's restorer: no line of the restore during the outage, and a
    # stop asked then was abandoned). With rd_kafka_offsets_for_times the
    # thread goes on (the restore's progress, or its begin timing out and
    # retried) and stops when asked; then exact totals.
    # Small fetches keep the restorer's queue running empty; a fail point
    # holds the restore 8 s after its third batch while the broker stops.
    restore_lines = ("event=restore_progress", "event=restore_done", "event=task_restored",
                     "event=task_open_failed", "event=restore_start")
    with h.private_kafka("restore-outage") as kafka:
        sc = Scenario(partitions=2, keyed=True)
        try:
            w = sc.load_then_stop(count=8000)
            shutil.rmtree(w.state_dir)   # the next start restores everything
            # and a session that outlasts the outage: the tasks stay assigned
            # (the member, which cannot leave while the broker is down, then
            # holds up the next join for up to that long)
            plain = list(w.flags)
            w.flags += ["--restore-batch-records", "10", "-X", "max.partition.fetch.bytes=2048",
                        "-X", "queued.max.messages.kbytes=1", "-X", "session.timeout.ms=30000"]
            w.start(env_extra={"RILL_FAULT": "mid_restore:3", "RILL_FAULT_PAUSE_MS": "8000"}).wait_ready()
            h.wait_until(lambda: "event=fault_fired" in w.log(), 60, "the restore to reach its third batch")
            fired = time.monotonic()
            kafka.run("stop-broker", "1", timeout=120)
            # the pause ends 8 s after the fault; then 15 s with the broker down
            time.sleep(max(0.0, fired + 8 - time.monotonic()))
            mark = len(w.log())
            time.sleep(15)
            during = [line for line in w.log()[mark:].splitlines() if "event=librdkafka" not in line]
            assert any(e in line for line in during for e in restore_lines), \
                "the stream thread logged nothing of its restore while the broker was down:\n" + \
                "\n".join(during[-30:])
            # a stop asked while the broker is still down is not abandoned
            assert w.stop(timeout=40) == 0, w.log()[-3000:]
            assert "event=shutdown_abandoned" not in w.log(), w.log()[-3000:]
            kafka.run("start-broker", "1", timeout=120)
            w.flags = plain
            sc.finish(timeout=300)
        finally:
            sc.stop_all()


def test_a_broker_down_when_a_restore_begins_does_not_stop_the_worker():
    # A restore begins by reading its changelog's end offsets, a call bounded
    # since the restorer stopped using rd_kafka_query_watermark_offsets (the
    # test above). With the broker down it gives up, and that used to count
    # as a failed attempt to open the task: three of them, 2 and 4 s apart,
    # and the worker stopped itself ("cannot open task"; 7 s into the outage
    # when it was seen, "All broker connections are down" coming at once).
    # A broker out of reach is not a fault of the task: it now
    # waits (task_open_waiting) up to restore.timeout.ms and begins once the
    # broker is back; the worker stays up, then exact totals.
    # A pause at the fault point holds the first restore's begin while the
    # broker stops (20 s: a slow machine's stop fits in it); the session
    # outlasts the outage (about 70 s and the restart), so the task stays
    # assigned to this worker through it.
    with h.private_kafka("restore-begin-outage") as kafka:
        sc = Scenario(partitions=2, keyed=True)
        try:
            w = sc.load_then_stop(count=4000)
            shutil.rmtree(w.state_dir)   # the next start restores everything
            w.flags += ["-X", "session.timeout.ms=120000"]
            w.start(env_extra={"RILL_FAULT": "restore_begin:1", "RILL_FAULT_PAUSE_MS": "20000"}).wait_ready()
            h.wait_until(lambda: "event=fault_fired" in w.log(), 60, "a restore about to begin")
            kafka.run("stop-broker", "1", timeout=120)
            h.wait_until(lambda: w.proc.poll() is not None or "event=task_open_waiting" in w.log(), 60,
                         "the restore's begin to find the broker down")
            # longer than three begins used to take to stop the worker
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline and w.proc.poll() is None:
                time.sleep(1)
            assert w.proc.poll() is None, f"the worker stopped while the broker was down:\n{w.log()[-3000:]}"
            assert "cannot open task" not in w.log(), w.log()[-3000:]
            kafka.run("start-broker", "1", timeout=120)
            h.wait_until(lambda: w.log().count("event=task_restored") >= 1, 120,
                         "the restore to end once the broker is back")
            assert w.proc.poll() is None, w.log()[-3000:]
            sc.finish(timeout=300)
        finally:
            sc.stop_all()


def test_queries_while_the_broker_is_down_are_refused_at_once():
    # A worker asked for a key that another worker owns describes the group to
    # find the owner (a description is reused 2 s). With the broker down a
    # describe takes up to 2.5 s and fails; each HTTP handler (a thread each,
    # two queries at once at most) described again, twice (the second time
    # forced), one after the other on the owners cache's lock: two queries
    # at once made four describes, the second answered after ~10 s. Now a
    # handler behind a describe that failed (or within 200 ms of it) gets
    # its error at once: one describe (one owners_unknown line) for both,
    # each refused (503, owner_unknown).
    import json
    import threading
    import urllib.error
    import urllib.request
    import zlib
    parts = 4

    def get(port, path, timeout=40):
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
                code, body = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            code, body = e.code, e.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            code, body = None, str(e)
        return code, body, time.monotonic() - t0

    def owned_agg(port):
        code, body, _ = get(port, "/tasks", timeout=10)
        if code != 200:
            return set()
        return {t["partition"] for t in json.loads(body)["tasks"] if t["kind"] == "aggregate"}

    with h.private_kafka("query-outage") as kafka:
        names = h.app_topics(partitions=parts)
        ports = [h.free_port() for _ in range(2)]
        ws = [h.Aggregator(names["app"], "--window-size-ms", "60000", "--idle-timeout-ms", "0",
                           "--http-port", str(p), input_topic=names["input"], output_topic=names["output"],
                           table=names["table"]).start() for p in ports]
        try:
            for w in ws:
                w.wait_ready()
            h.wait_until(lambda: owned_agg(ports[1]) - owned_agg(ports[0]), 60,
                         "the second worker to own an aggregate partition the first does not")
            remote = sorted(owned_agg(ports[1]) - owned_agg(ports[0]))[0]
            key = next(f"s{i}" for i in range(1000) if zlib.crc32(f"s{i}".encode()) % parts == remote)
            kafka.run("stop-broker", "1", timeout=120)
            time.sleep(3)   # past the life of any description
            mark = len(ws[0].log())
            answers = []
            threads = [threading.Thread(target=lambda: answers.append(get(ports[0], f"/query?key={key}")))
                       for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            summary = [(code, round(el, 1), body[-200:]) for code, body, el in answers]
            describes = ws[0].log()[mark:].count("event=owners_unknown")
            assert len(answers) == 2, summary
            assert all(code == 503 and '"reason":"owner_unknown"' in body for code, body, _ in answers), summary
            assert describes == 1, (describes, summary)
            kafka.run("start-broker", "1", timeout=120)
        finally:
            for w in ws:
                w.stop(timeout=60)
