"""Workers stay up through what can be recovered (issue 15 item 1).

A broker away for twice transaction.timeout.ms makes the coordinator abort
the open transactions and bump the producers' epochs: librdkafka reports a
fatal error. Before, the worker ended itself (status 1) and the crash suite
needed a supervisor to restart it. Now the thread drops its uncommitted
state, makes a new producer with the same transactional id and goes on, in
the same process. Postgres frozen for as long costs failed, retried commits,
never the process. No supervisor here: a worker that exits fails the test."""
import os
import re
import signal
import subprocess
import sys
import time


sys.path.insert(0, os.path.dirname(__file__))
from scenario import Scenario, h  # noqa: E402

T_MS = 10000  # transaction.timeout.ms, the engine's default


def pids(sc):
    return [w.proc.pid for w in sc.workers]


def assert_same_processes(sc, before):
    for w, pid in zip(sc.workers, before):
        assert w.proc.pid == pid and w.proc.poll() is None, \
            f"worker {pid} is not the same running process:\n{w.log()[-3000:]}"
    assert sc.supervisor_restarts == 0


def test_broker_frozen_for_twice_the_transaction_timeout_costs_no_process():
    # A private broker (its own ports and data), so that taking it away
    # harms no other test, frozen (SIGSTOP: connections stay open, nothing
    # is refused) for twice transaction.timeout.ms under load. When it
    # answers again the coordinator may abort the transactions that timed
    # out and bump the producers' epochs, a fatal error for the threads that
    # had one open: they recreate their producer (in the runs here the
    # retried commits succeeded first). Either way the same processes go on.
    # Not a stopped or killed single broker: its restart hits a broker bug
    # in about one run of three (the markers of a transaction whose commit
    # was pending are skipped when the coordinator reloads it before the
    # partitions' leaders are known: "Couldn't find leader endpoint ... can
    # be skipped"), which leaves a hanging transaction that blocks every
    # read_committed reader until an operator aborts it
    # (docs/troubleshooting.md); CI saw it as a 300 s stall. A broker
    # stopped in a replicated cluster: test_outages.py.
    # The broker's own session timeout outlasts the freeze, so that its
    # controller does not fence it when it resumes. Fenced, every partition
    # is without a leader for a moment, and a coordinator that writes an
    # abort's markers in that moment skips them ("Couldn't find leader
    # endpoint ... can be skipped"): the aborted records then belong to the
    # producer's next transaction and are committed with it, a double count
    # no client can prevent (seen here in 1 run of 10, and once in CI: the
    # broker's data showed the abort's markers missing from every
    # repartition partition; docs/troubleshooting.md). What this test is
    # about, the coordinator aborting the transactions that timed out while
    # the engine's threads wait, needs no fencing of the broker.
    with h.private_kafka("recovery-broker",
                         env_extra={"RILL_KAFKA_BROKER_SESSION_TIMEOUT_MS": "90000"}) as kafka:
        sc = Scenario(partitions=6, workers=3, sellers=8)
        try:
            sc.start()
            before = pids(sc)
            sc.start_load(count=30000, rate=1500)
            time.sleep(4)
            pid = kafka.pid(1)
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(2 * T_MS / 1000)
            finally:
                os.kill(pid, signal.SIGCONT)
            sc.drain_producer()
            sc.finish(timeout=300)
            assert_same_processes(sc, before)
            logs = "\n".join(w.all_logs() for w in sc.workers)
            assert "event=commit_recovered" in logs or "event=thread_recovered" in logs, logs[-3000:]
            assert "unrecoverable" not in logs, logs[-3000:]
        finally:
            sc.stop_all()


def test_transaction_aborted_by_the_coordinator_recovers_in_process():
    # The thread stalls inside a transaction (a fault point holds it before
    # its Kafka commit) for longer than transaction.timeout.ms, while its
    # consumer stays in the group. The coordinator aborts the transaction
    # and bumps the producer's epoch; the thread's commit then fails with a
    # fatal error. Before, the process ended itself (status 1); now the
    # thread recreates its producer, replays the aborted input, and the
    # totals are exact, with the same process.
    sc = Scenario(partitions=4, workers=1, sellers=8)
    try:
        sc.start(env_extra={"RILL_FAULT": "before_kafka_commit:20",
                            "RILL_FAULT_PAUSE_MS": str(T_MS + 8000)})
        before = pids(sc)
        sc.start_load(count=8000, rate=1000)
        w = sc.workers[0]
        h.wait_until(lambda: "event=fault_fired" in w.log(), 60, "the stall")
        h.wait_until(lambda: "event=thread_recovered" in w.log() or w.proc.poll() is not None,
                     90, "the thread to recover (or the process to end)")
        sc.finish(timeout=300)
        assert_same_processes(sc, before)
        log = w.log()
        assert "event=thread_recovering" in log and "event=thread_recovered" in log, log[-3000:]
        assert "unrecoverable" not in log, log[-3000:]
    finally:
        sc.stop_all()


def postgres_pids():
    """The local stack's postmaster ("postgres -D <data> -p <port>") and
    every process it forked."""
    port = h.PG_DSN.split("port=")[1].split()[0]
    mains = [int(x) for x in subprocess.run(["pgrep", "-f", f"postgres -D .* -p {port}$"],
                                            capture_output=True, text=True).stdout.split()]
    allp = list(mains)
    for m in mains:
        allp += [int(k) for k in subprocess.run(["pgrep", "-P", str(m)], capture_output=True,
                                                text=True).stdout.split()]
    return allp


def freeze_postgres_under_load(sc):
    """Freeze the local Postgres for twice transaction.timeout.ms while the
    scenario's load runs: the commits in flight fail and are aborted."""
    time.sleep(4)
    frozen = postgres_pids()
    assert frozen, "the local Postgres processes"
    try:
        for p in frozen:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass  # a backend that ended after the listing
        time.sleep(2 * T_MS / 1000)
    finally:
        # always: a Postgres left stopped would fail every later test
        for p in frozen:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass


def postgres_frozen_under_load(timeout, env_extra=None):
    """Three workers under load while Postgres is frozen for twice
    transaction.timeout.ms; the totals must be exact and the same processes
    running at the end. @returns every worker's log."""
    sc = Scenario(partitions=6, workers=3, sellers=8)
    try:
        sc.start(env_extra=env_extra)
        before = pids(sc)
        sc.start_load(count=30000, rate=1500)
        freeze_postgres_under_load(sc)
        sc.drain_producer()
        sc.finish(timeout=timeout)
        assert_same_processes(sc, before)
        return "\n".join(w.all_logs() for w in sc.workers)
    finally:
        sc.stop_all()


def test_postgres_frozen_for_twice_the_transaction_timeout_costs_no_process():
    logs = postgres_frozen_under_load(timeout=300)
    assert "event=commit_failed" in logs and "event=commit_recovered" in logs, logs[-3000:]


def test_an_abort_that_never_ends_recreates_the_producer():
    # The commits that Postgres' freeze fails are aborted, and the first
    # abort of every worker is not answered (fault point abort_unanswered:
    # as when the coordinator stays away past the abort's retries). The
    # producer is left inside a transaction that never ended. Before, the
    # thread went on with it: every begin_transaction failed ("not valid in
    # state InTransaction"), nothing ever committed again, and the partitions
    # stalled while the process looked alive. Now the producer is recreated
    # and the totals are exact.
    logs = postgres_frozen_under_load(timeout=240, env_extra={"RILL_FAULT": "abort_unanswered"})
    # fault_armed names the point at start-up; fault_fired only when an
    # abort really went unanswered
    assert "event=fault_fired point=abort_unanswered" in logs, logs[-3000:]
    assert "event=thread_recovered" in logs, logs[-3000:]


def test_a_rewind_refused_after_an_abort_is_retried_from_the_loop():
    # After an abort every task seeks back to its last commit. librdkafka
    # gives that seek up at once while a rebalance is pending (seen by the
    # network-cut test, 1 run in 14). Before, the thread then ended the
    # process (positions unknown); now the tasks are paused and the loop
    # seeks again after its next poll. The commits that Postgres' freeze
    # fails are aborted, and the first rewind of every worker is refused
    # (fault point rewind_refused): the same processes go on, exact totals.
    logs = postgres_frozen_under_load(timeout=240, env_extra={"RILL_FAULT": "rewind_refused"})
    assert "event=fault_fired point=rewind_refused" in logs, logs[-3000:]
    assert "event=rewind_failed" in logs, logs[-3000:]
    assert "event=rewind_done" in logs, logs[-3000:]  # sought again from the loop
    assert "unrecoverable" not in logs, logs[-3000:]


def restarted_with_input_behind(point, event):
    # A task that starts running with its input before its committed offset
    # (librdkafka reads the committed offset itself at assignment; a commit
    # between that read and the task's own would leave the fetch behind the
    # position the store was restored to) must not count those records
    # again. The fail point puts the input 20 records behind at one task's
    # start, after a clean restart; the verifier checks the totals.
    sc = Scenario(partitions=4, workers=1, sellers=8)
    w = sc.workers[0]
    try:
        sc.start()
        sc.start_load(count=24000, rate=3000)
        time.sleep(4)  # thousands of records committed on every partition
        assert w.stop() == 0, w.log()[-3000:]
        w.start(env_extra={"RILL_FAULT": point})
        h.wait_until(lambda: f"event=fault_fired point={point}" in w.log() or w.proc.poll() is not None,
                     60, f"the fail point {point}")
        sc.finish(timeout=240)
        log = w.log()
        assert f"event={event}" in log, log[-3000:]
        return log
    finally:
        sc.stop_all()


def test_records_dropped_before_a_task_ran_are_refetched_from_its_position():
    # fetch_behind: the first record dropped while the task was not running
    # lies before its committed offset; the seek goes to the position
    # instead (event fetch_before_position). Fails without that check and
    # the one below: 20 records counted twice.
    restarted_with_input_behind("fetch_behind", "fetch_before_position")


def test_records_below_a_running_tasks_position_are_not_counted_again():
    # position_behind: the consumer's fetch itself starts 20 records before
    # the position; each such record is skipped (event
    # record_before_position_skipped). Fails without that check: 20 records
    # counted twice.
    restarted_with_input_behind("position_behind", "record_before_position_skipped")


def test_a_batch_refetched_after_a_rebalance_loses_and_doubles_nothing():
    # A batch during which a rebalance callback ran is not processed: its
    # running tasks are sought back to their positions and fetch it again.
    # The storm test's rebalances rarely land inside a batch call, so the
    # fail point batch_refetch makes the 5th batch of a backlog (up to 1000
    # records over several partitions) take that path, then load goes on.
    # Fails if the refetch does not seek, or seeks past the positions (its
    # records lost: seen with the seek removed); a seek before them would be
    # caught by the skip check (the position_behind test).
    sc = Scenario(partitions=4, workers=1, sellers=8)
    w = sc.workers[0]
    try:
        sc.start_load(count=30000, rate=30000)
        sc.wait_load()
        sc.start(env_extra={"RILL_FAULT": "batch_refetch:5"})
        sc.start_load(count=6000, rate=3000)
        sc.finish(timeout=240)
        log = w.log()
        assert "event=fault_fired point=batch_refetch" in log, log[-3000:]
        refetched = [int(x) for x in re.findall(r"event=batch_refetched \S+ records=(\d+) partitions=[1-9]", log)]
        assert refetched and refetched[0] > 1, log[-3000:]
    finally:
        sc.stop_all()
