"""Event time that failures cannot bend (unkeyed input, repartition hop).

Lateness is a property of each input partition's own data: a record is late
only when its window end + grace is at or before the progress of its OWN
partition. An aggregation's stream time is the minimum over every input
partition's progress, so a slow, stalled or quiet partition holds windows
back instead of losing its records; an idle, caught-up partition advances to
wall-clock time through the log (idle.timeout.ms), so windows still close.
Each test here failed on the engine before watermarks (stream time was the
largest event time seen by the aggregation task, from any partition)."""
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402

W = 10000
G = 2000


def start(names, *extra, env_extra=None):
    return h.Aggregator(names["app"], "--window-size-ms", str(W), "--grace-ms", str(G), *extra,
                        input_topic=names["input"], output_topic=names["output"], table=names["table"],
                        env_extra=env_extra).start().wait_ready()


def produce(names, partition, events):
    h.produce(names["input"], [(None, h.event(s, a, t // 1000)) for s, a, t in events], partition=partition)


def wait_results(names, want, timeout=60):
    def done():
        got = h.as_truth(h.results(names["output"]))
        return got if len(got) >= len(want) else None
    got = h.wait_until(done, timeout, f"{len(want)} windows")
    assert got == want, f"missing {set(want) - set(got)}, extra {set(got) - set(want)}, " \
                        f"wrong {[(k, got[k], want[k]) for k in want if k in got and got[k] != want[k]]}"
    pg = h.wait_until(lambda: (lambda r: r if len(r) >= len(want) else None)(h.pg_results(names["table"])),
                      30, "Postgres rows")
    assert {k: v[:2] for k, v in pg.items()} == want
    return got


def test_only_records_behind_their_own_partition_are_late():
    # Partition 0 runs 5 minutes of event time ahead of partition 1. Before,
    # partition 0's records pushed the aggregation's stream time past all of
    # partition 1's windows, and partition 1's on-time records were late.
    # Now only the one record that is behind its own partition by more than
    # the grace is late.
    names = h.app_topics(partitions=2)
    base = h.aligned_base(W, minutes_ago=30)
    ahead = [("a", 10 + i, base + 300000 + i * 1000) for i in range(20)]
    behind = [("b", 100 + i, base + i * 1000) for i in range(20)]
    straggler = ("a", 5000, base + 300000 + 2000)            # 17 s behind partition 0
    agg = start(names)
    produce(names, 0, ahead[:19] + [straggler] + ahead[19:])
    time.sleep(1)
    produce(names, 1, behind)
    end = base + 400000
    h.close_every_partition(names["input"], "c", end // 1000)
    want = h.truth(ahead + behind, W, closed_before_ms=end - W - G)
    wait_results(names, want)
    dead = h.wait_until(lambda: h.dlq(names["input"] + "-dlq"), 30, "the straggler in the DLQ")
    assert [(d["reason"], d["headers"]["rill.source.partition"]) for d in dead] == [("late", "0")], dead
    assert b'"amount_usd": 5000' in dead[0]["value"]
    assert agg.stop() == 0


def test_a_slow_partition_holds_windows_back_instead_of_losing_records():
    # Both partitions get real-time-like input, but partition 1's producer
    # stalls for longer than the grace and then catches up with its backlog.
    names = h.app_topics(partitions=2)
    base = h.aligned_base(W, minutes_ago=30)
    port = h.free_port()
    agg = start(names, "--http-port", str(port))
    p0 = [("fast", 1, base + i * 500) for i in range(40)]          # 20 s of event time
    p1_first = [("slow", 10, base + i * 500) for i in range(4)]    # 2 s, then a stall
    p1_rest = [("slow", 10, base + i * 500) for i in range(4, 40)]
    produce(names, 1, p1_first)
    produce(names, 0, p0)
    time.sleep(4)                                                  # > grace: partition 1 stalled
    # nothing may close while partition 1 is behind: its windows are open
    assert h.results(names["output"]) == []
    # and the operator sees why: partition 1 holds every aggregation task back
    def held():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/tasks", timeout=5) as r:
            t = json.loads(r.read())["tasks"]
        aggs = [x for x in t if x["kind"] == "aggregate"]
        return aggs if len(aggs) == 2 and all(x["held_by_source"] == 1 and x["held_back_ms"] >= 17000
                                              for x in aggs) else None
    h.wait_until(held, 10, "/tasks to name partition 1 as the one holding windows back")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert 'rill_stream_time_held_by_source{' in r.read().decode()
    produce(names, 1, p1_rest)
    end = base + 60000
    h.close_every_partition(names["input"], "c", end // 1000)
    want = h.truth(p0 + p1_first + p1_rest, W, closed_before_ms=end - W - G)
    wait_results(names, want)
    assert h.dlq(names["input"] + "-dlq") == []
    assert agg.stop() == 0


def test_an_empty_and_a_quiet_partition_still_close_windows_by_the_idle_rule_and_replay_alike():
    # Three partitions: 0 has records, 1 is empty, 2 has records and goes
    # quiet. With idle advances (caught up, no record for idle.timeout.ms)
    # every source moves to wall-clock time and the windows close. The
    # worker is killed right after the Postgres commit of the transaction
    # that closes them (an idle advance in flight): the restarted worker
    # replays to the same results.
    names = h.app_topics(partitions=3)
    base = h.aligned_base(W, minutes_ago=30)
    events0 = [("x", 3 + i, base + i * 700) for i in range(10)]
    events2 = [("y", 7 + i, base + i * 900) for i in range(10)]
    # the default idle.timeout.ms (30 s): on, so that this works out of the box
    agg = start(names, env_extra={"RILL_FAULT": "after_pg_commit"})
    produce(names, 0, events0)
    produce(names, 2, events2)
    # the first commit with results dies after Postgres, before Kafka
    rc = agg.wait_exit(90)
    assert rc == -9 and "fault_fired" in agg.log(), agg.log()[-2000:]
    agg.env_extra = {}
    agg.start().wait_ready()
    want = h.truth(events0 + events2, W)
    wait_results(names, want, timeout=120)
    assert h.dlq(names["input"] + "-dlq") == []
    assert agg.stop() == 0


def test_partitions_added_while_running_are_waited_for_and_survive_a_restart():
    # Issue 11 item 7. Two input partitions, then two more are added while
    # the aggregator runs. Before, the new partitions were never consumed
    # (their records missing from the totals) and a restart refused to start
    # ("internal topic has 2 partitions but input has 4"). Now each new
    # partition is a new source: every aggregation task learns of it from
    # the old sources' watermarks and holds its windows for it, so its
    # records -- far behind the old partitions' event time, in order within
    # their own partition -- are counted, not late; the empty new partition
    # releases the windows by the idle rule; and a restart goes on.
    from confluent_kafka.admin import NewPartitions
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "crash"))
    import verifier  # noqa: E402
    names = h.app_topics(partitions=2)
    base = h.aligned_base(W, minutes_ago=30)
    # idle after 15 s: not before the test has written the old partitions'
    # second part (an idle advance moves a partition to wall-clock time)
    flags = ("--idle-timeout-ms", "15000")
    agg = start(names, *flags)
    old = [(f"o{i % 3}", 1 + i, base + i * 1000) for i in range(20)]        # 20 s of event time
    for p in (0, 1):
        produce(names, p, old)
    h.wait_until(lambda: len(h.results(names["output"])) >= 3, 60, "the first windows to close")
    a = h.admin()
    for f in a.create_partitions([NewPartitions(names["input"], 4)], operation_timeout=15).values():
        f.result(timeout=30)
    learnt = lambda: agg.log().count("event=sources_added") >= 4 and "to=4" in agg.log()  # noqa: E731
    try:
        h.wait_until(learnt, 30, "the aggregation tasks to learn of the new partitions")
    except AssertionError:
        pass  # what follows tells what went wrong
    ahead = [(f"o{i % 3}", 100 + i, base + 20000 + i * 1000) for i in range(40)]  # to base + 60 s
    behind = [(f"n{i % 2}", 1000 + i, base + 25000 + i * 500) for i in range(20)]  # base + 25..35 s
    for p in (0, 1):
        produce(names, p, ahead)
    time.sleep(1)
    produce(names, 2, behind)              # partition 3 stays empty
    h.wait_until(lambda: any(r["seller_id"] == "n0" for r in h.results(names["output"])), 90,
                 "the new partition's windows (held for it, released by the idle rule)")
    assert agg.stop() == 0
    # the restart reads 4 input partitions and 2 aggregation partitions
    agg = start(names, *flags)
    # every partition was moved to wall-clock time by the idle rule: the
    # records after the restart are written in real time
    now = int(time.time() * 1000)
    later = [(f"o{i % 3}", 7, now + i * 100) for i in range(10)]
    for p in range(4):
        produce(names, p, later)
    every = old * 2 + ahead * 2 + behind + later * 4
    want = h.truth(every, W)               # everything closes by the idle rule
    wait_results(names, want, timeout=150)
    assert not [d for d in h.dlq(names["input"] + "-dlq") if d["reason"] == "late"]
    rep = verifier.verify(names["input"], names["output"], names["input"] + "-dlq", names["table"],
                          names["app"], W, G, False)
    assert not rep["problems"], rep["problems"][:10]
    log = agg.log()
    assert "input_partitions_added" in log and "from=2 to=4" in log, log[-2000:]
    assert agg.stop() == 0


def test_hopping_windows_count_each_event_in_every_window_that_holds_it():
    # 10 s windows starting every 5 s (window.advance.ms): every event is in
    # two windows, each window closes on its own end + grace, and the results
    # in Kafka and Postgres are those of plain arithmetic over the events.
    names = h.app_topics(partitions=2)
    base = h.aligned_base(W, minutes_ago=30)
    events = [("a" if i % 3 else "b", 1 + i, base + i * 700) for i in range(60)]  # 42 s
    agg = start(names, "--window-advance-ms", "5000")
    produce(names, 0, events[0::2])
    produce(names, 1, events[1::2])
    end = base + 120000
    h.close_every_partition(names["input"], "c", end // 1000)
    want = h.truth(events, W, closed_before_ms=end - G, advance_ms=5000)
    assert len(want) > 2 * len(h.truth(events, W)) - 4  # overlapping windows, not tumbling ones
    wait_results(names, want)
    assert h.dlq(names["input"] + "-dlq") == []
    assert "advance_ms=5000" in agg.log()
    assert agg.stop() == 0


def test_a_hopping_window_that_does_not_fit_the_window_size_stops_startup():
    names = h.app_topics(partitions=1)
    for bad in ("20000", "30"):  # larger than the window; more than 256 windows per event
        agg = h.Aggregator(names["app"], "--window-size-ms", str(W), "--window-advance-ms", bad,
                           input_topic=names["input"], output_topic=names["output"], table=names["table"])
        agg.start()
        assert agg.wait_exit(60) == 1, agg.log()[-2000:]
        assert "window.advance.ms " + bad + " does not fit window.size.ms 10000" in agg.log()
