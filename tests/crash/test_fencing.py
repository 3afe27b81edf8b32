"""Zombies are fenced, whatever they write and whenever they wake up.

A zombie is a worker frozen (SIGSTOP) past its session timeout: its
partitions move to another worker, and when it wakes up it still believes it
owns them. These tests make it wake up exactly where the review found holes:

* with nothing to consume, only windows to close by an idle advance: its
  transaction carried no input offsets, and exactly-once v2 fences a zombie
  only when offsets are sent (review finding 3);
* with its Postgres epoch deferred (Postgres was away when it was assigned):
  it took a newer epoch than the real owner when it woke up, and the real
  owner was then refused by Postgres forever (review finding 4).
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402


def count_windows(rows):
    out = {}
    for r in rows:
        k = (r["seller_id"], r["window_start_ms"])
        out[k] = out.get(k, 0) + 1
    return out


def test_zombie_closing_windows_by_idle_advance_is_fenced_without_postgres():
    # Without Postgres, Kafka's fencing is all there is. Window W holds the
    # only records and closes by idle advance (wall clock) a few seconds from
    # now. The first worker's thread stalls right when it closes W (a fault
    # point freezes the thread, librdkafka's threads go on) for longer than
    # max.poll.interval.ms: it leaves the group, the second worker takes the
    # partition, restores W and closes it. Then the stalled thread goes on
    # with its commit: a transaction with results and no input offsets.
    names = h.app_topics(partitions=1)
    window = 10000
    now = int(time.time() * 1000)
    ws = now - now % window
    grace = ws + window + 6000 - now        # W closes at wall time now + 6 s
    flags = ("--input-keyed", "--window-size-ms", str(window), "--grace-ms", str(grace),
             "--idle-timeout-ms", "1000", "-X", "max.poll.interval.ms=7000")
    zombie = h.Aggregator(names["app"], *flags, input_topic=names["input"],
                          output_topic=names["output"], pg_dsn=None,
                          env_extra={"RILL_FAULT": "closing_windows",
                                     "RILL_FAULT_PAUSE_MS": "15000"}).start().wait_ready()
    h.produce(names["input"], [(b"s1", h.event("s1", 5, now // 1000)) for _ in range(3)])
    h.wait_consumed(names["app"], [names["input"]], timeout=30)
    owner = h.Aggregator(names["app"], *flags, input_topic=names["input"],
                         output_topic=names["output"], pg_dsn=None).start().wait_ready()
    try:
        h.wait_until(lambda: "fault_fired" in zombie.log(), 30, "the first worker to close W")
        h.wait_until(lambda: count_windows(h.results(names["output"])).get(("s1", ws)), 60,
                     "the second worker to close W")
        time.sleep(12)  # the stalled thread resumes and commits (or is fenced)
        got = count_windows(h.results(names["output"]))
        assert got == {("s1", ws): 1}, f"W emitted {got} times; stalled worker's log:\n{zombie.log()[-3000:]}"
        assert h.results(names["output"])[0]["total_amount_usd"] == 15
        assert "cannot send offsets" in zombie.log() or "lost=1" in zombie.log(), zombie.log()[-3000:]
    finally:
        zombie.kill()
        owner.stop()


def test_zombie_with_a_deferred_epoch_does_not_fence_the_real_owner():
    # The zombie is assigned a partition while Postgres is away for it, so
    # its epoch is deferred. Its thread then stalls while closing a window
    # (fault point, past max.poll.interval.ms): it leaves the group, the
    # owner takes the partition back with a new epoch and commits. When the
    # stalled thread goes on, it must not take an epoch newer than the
    # owner's (it did: the owner was then refused by Postgres forever).
    names = h.app_topics(partitions=2)
    window = 60000
    base = h.aligned_base(window, minutes_ago=30)
    flags = ("--input-keyed", "--window-size-ms", str(window), "--grace-ms", "0",
             "-X", "max.poll.interval.ms=7000")
    proxy = h.TcpProxy("127.0.0.1", int(h.PG_DSN.split("port=")[1].split()[0]))
    owner = h.Aggregator(names["app"], *flags, input_topic=names["input"],
                         output_topic=names["output"], table=names["table"]).start().wait_ready()
    zombie = h.Aggregator(names["app"], *flags, input_topic=names["input"],
                          output_topic=names["output"], table=names["table"],
                          pg_dsn=proxy.dsn(h.PG_DSN),
                          env_extra={**proxy.pg_env(), "RILL_FAULT": "closing_windows",
                                     "RILL_FAULT_PAUSE_MS": "15000"})

    def send(windows):
        # per partition p, seller sp: 3 records in each window of windows
        evs = [("s%d" % p, 10 + i + 100 * k, (base + k * window) // 1000 + i)
               for k in windows for p in range(2) for i in range(3)]
        for p in range(2):
            h.produce(names["input"], [(s.encode(), h.event(s, a, t)) for s, a, t in evs
                                       if s == "s%d" % p], partition=p)
        return evs

    try:
        zombie.start()
        # Postgres goes away for the zombie between its start and its
        # assignment (a cooperative rebalance takes two rounds: seconds)
        h.wait_until(lambda: "thread_started" in zombie.log(), 60, "the zombie's thread")
        proxy.cut()
        h.wait_until(lambda: "epoch_deferred" in zombie.log() or zombie.proc.poll() is not None,
                     60, "the zombie's assignment with Postgres away")
        assert zombie.proc.poll() is None, zombie.log()[-3000:]
        proxy.heal()
        events = send([0, 1])            # window 1's records close window 0
        h.wait_until(lambda: "fault_fired" in zombie.log(), 30, "the zombie's stall")
        h.wait_until(lambda: "event=commit_failed" in zombie.log() or "event=commit " in zombie.log(),
                     40, "the stalled zombie to go on after the owner took its partition", interval=0.05)
        zombie.kill()    # before it rejoins: the owner keeps the partition and its epoch
        events += send([2])              # window 2 closes window 1
        want = h.truth([(s, a, t * 1000) for s, a, t in events], window,
                       closed_before_ms=base + 2 * window)
        h.wait_until(lambda: {k: (v[0], v[1]) for k, v in h.pg_results(names["table"]).items()} == want,
                     45, f"the owner's results in Postgres ({want}); owner log tail:\n"
                         + "\n".join(owner.log().splitlines()[-15:]))
        assert owner.log().count("fenced in Postgres") <= 1, owner.log()[-3000:]
    finally:
        zombie.kill()
        owner.stop()
        proxy.close()


def test_idle_advance_waits_for_records_behind_an_open_transaction():
    # A producer holds a transaction with records of window W open for
    # longer than idle.timeout.ms. The read_committed consumer cannot read
    # past it, so the task processes nothing for a while although its
    # partition has records: that is not idle. An advance to wall-clock time
    # made those records late (review finding 5); idle now means that the
    # position is at the end of the log (read_uncommitted high watermark).
    from confluent_kafka import Producer
    names = h.app_topics(partitions=1)
    window = 60000
    base = h.aligned_base(window, minutes_ago=30)
    agg = h.Aggregator(names["app"], "--input-keyed", "--window-size-ms", str(window), "--grace-ms", "0",
                       "--idle-timeout-ms", "2000", input_topic=names["input"],
                       output_topic=names["output"], table=names["table"])
    try:
        agg.start().wait_ready()
        p = Producer({"bootstrap.servers": h.BOOTSTRAP, "transactional.id": h.uniq("slow-producer"),
                      "transaction.timeout.ms": 60000})
        p.init_transactions(30)
        p.begin_transaction()
        second = [("s1", 100, base // 1000 + 10 + i) for i in range(3)]
        for e in second:
            p.produce(names["input"], key=b"s1", value=h.event(*e), partition=0)
        p.flush(30)
        first = [("s1", 7, base // 1000 + i) for i in range(3)]
        h.produce(names["input"], [(b"s1", h.event(*e)) for e in first])  # behind the open one
        time.sleep(7)                    # > idle.timeout.ms, with the transaction open
        p.commit_transaction(30)
        h.wait_until(lambda: h.results(names["output"]), 60, "the window to close by idle advance")
        got = h.as_truth(h.results(names["output"]))
        dead = h.dlq(names["input"] + "-dlq")
        assert not dead, f"dead letters: {[(d['reason'], d['detail']) for d in dead]}"
        assert got == {("s1", base): (321, 6)}, got
    finally:
        agg.stop()
