"""End-to-end tests of sales-aggregator against the real local Kafka and
PostgreSQL: every result is compared with ground truth computed here, in
plain Python, from the events the test produced."""
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402

W = 10000  # window size ms
G = 2000   # grace ms
FLAGS = ["--window-size-ms", str(W), "--grace-ms", str(G), "--commit-interval-ms", "100"]


def start(names, *extra, **kw):
    return h.Aggregator(names["app"], *FLAGS, *extra, input_topic=names["input"],
                        output_topic=names["output"], table=names["table"], **kw).start().wait_ready()


def closing_events(sellers, ts_s):
    """One event per seller far enough ahead to close every earlier window
    (on whichever task owns the seller)."""
    return [(s, 1, ts_s * 1000) for s in sellers]


def check(names, events, close_before_ms, timeout=60, keyed=False):
    """Wait until Kafka and Postgres hold exactly the true closed windows."""
    want = h.truth(events, W, closed_before_ms=close_before_ms)

    def kafka_done():
        got = h.as_truth(h.results(names["output"]))
        return got if len(got) >= len(want) else None

    got = h.wait_until(kafka_done, timeout, f"{len(want)} windows in {names['output']}")
    assert got == want, f"Kafka results differ:\nmissing {set(want) - set(got)}\nextra {set(got) - set(want)}\n" \
                        f"wrong {[(k, got[k], want[k]) for k in want if k in got and got[k] != want[k]][:5]}"
    pgr = h.wait_until(lambda: (lambda r: r if len(r) >= len(want) else None)(h.pg_results(names["table"])),
                       30, "Postgres rows")
    assert {k: v[:2] for k, v in pgr.items()} == want
    for (seller, ws), (_, _, we) in pgr.items():
        assert we == ws + W
    return got


def gen_events(sellers, base_ms, n, rng_seed=7, disorder_ms=1500):
    """n events spread over several windows, out of order by less than grace."""
    import random
    r = random.Random(rng_seed)
    ev = []
    for i in range(n):
        ts = base_ms + i * 37 + r.randint(-disorder_ms, 0)
        ev.append((r.choice(sellers), r.randint(1, 1000), max(base_ms, ts) // 1000 * 1000))
    return ev


def test_unkeyed_input_is_repartitioned_and_exact():
    names = h.app_topics(partitions=4)
    sellers = [f"s-{i}" for i in range(12)] + ["quo\"te", "it's'); DROP TABLE x;--", "ünï €"]
    base = h.aligned_base(W)
    events = gen_events(sellers, base, 3000)
    # Unkeyed producers spread a time range over partitions in batches, so
    # the repartition topic sees event time out of order by up to the whole
    # range: the grace covers it, as it would have to in production.
    grace = 10 * 60000
    agg = start(names, "--grace-ms", str(grace))
    h.produce(names["input"], [(None, h.event(s, a, t // 1000)) for s, a, t in events])
    h.wait_consumed(names["app"], [names["input"], f"{names['app']}-repartition"])
    end_ts = base + 3000 * 37 + 3 * W + grace
    h.close_every_partition(names["input"], sellers[0], end_ts // 1000)
    got = check(names, events, close_before_ms=end_ts - W - grace)
    assert len(got) > 3 * len(sellers)
    # the repartition hop really happened, and nothing went to the DLQ
    assert h.read_topic(f"{names['app']}-repartition")
    assert h.dlq(names["input"] + "-dlq") == []
    assert agg.stop() == 0


def test_keyed_input_skips_repartition():
    names = h.app_topics(partitions=3)
    sellers = ["a", "b", "c", "d"]
    base = h.aligned_base(W)
    events = gen_events(sellers, base, 2000, rng_seed=11)
    agg = start(names, "--input-keyed")
    h.produce(names["input"], [(s.encode(), h.event(s, a, t // 1000)) for s, a, t in events])
    end_ts = base + 2000 * 37 + 3 * W
    h.produce(names["input"], [(s.encode(), h.event(s, 1, end_ts // 1000)) for s in sellers])
    check(names, events, close_before_ms=end_ts - W - G)
    topics = h.admin().list_topics(timeout=10).topics
    assert f"{names['app']}-repartition" not in topics
    assert f"{names['app']}-sales-windows-changelog" in topics
    assert agg.stop() == 0


def test_keyed_input_with_a_key_that_is_not_the_seller_is_dead_lettered():
    # --input-keyed trusts the producer to partition by seller. A record of
    # seller s1 keyed otherwise lands in another partition than s1's other
    # records: two tasks (here of one thread) would own one window, and one
    # Postgres statement would upsert its row twice, which Postgres refuses
    # on every retry (review finding 6). It is dead-lettered instead.
    names = h.app_topics(partitions=2)
    base = h.aligned_base(W)
    good = [("s1", 10 + i, base + i * 100) for i in range(5)]
    bad = [("s1", 1000, base + 50), ("s2", 2000, base + 60)]
    agg = start(names, "--input-keyed")
    h.produce(names["input"], [(b"s1", h.event(s, a, t // 1000)) for s, a, t in good], partition=0)
    h.produce(names["input"], [(b"not-s1", h.event(*bad[0][:2], bad[0][2] // 1000)),
                               (None, h.event(*bad[1][:2], bad[1][2] // 1000))], partition=1)
    time.sleep(1)
    # both partitions close their windows in the same commit cycle
    end_ts = base + 3 * W
    h.produce(names["input"], [(b"s1", h.event("s1", 1, end_ts // 1000))], partition=0)
    h.produce(names["input"], [(b"s2", h.event("s2", 1, end_ts // 1000))], partition=1)
    check(names, good, close_before_ms=end_ts - W - G)
    dead = h.wait_until(lambda: (lambda d: d if len(d) >= 2 else None)(h.dlq(names["input"] + "-dlq")), 30,
                        "the two mismatched records in the dead-letter topic")
    assert sorted(d["reason"] for d in dead) == ["key_mismatch", "key_mismatch"], dead
    assert all("--input-keyed" in d["detail"] for d in dead)
    assert agg.stop() == 0


def _wkey(wstart, key):
    import struct
    return struct.pack(">Q", (wstart & 0xFFFFFFFFFFFFFFFF) ^ (1 << 63)) + key


def _agg(total, count, first, last):
    import struct
    return b"\x94" + b"".join(b"\xd3" + struct.pack(">q", v) for v in (total, count, first, last))


def test_restore_drops_windows_closed_before_it_without_emitting_them():
    # A changelog whose tombstone of a closed window was compacted away (as
    # after delete.retention.ms): the window's stale partial value is still
    # there, and the stream time record says it is closed. Restoring it and
    # emitting it at the first flush overwrote the real result (review
    # finding 2); it is dropped instead, and open windows stay.
    import struct
    names = h.app_topics(partitions=1)
    base = h.aligned_base(W)
    changelog = f"{names['app']}-sales-windows-changelog"
    h.create_topics({changelog: 1}, config={"cleanup.policy": "compact"})
    stream_time = base + 5 * W
    h.produce(changelog, [
        (_wkey(base, b"s1"), _agg(5, 1, base, base)),                  # closed: stale
        (_wkey(base + 5 * W, b"s1"), _agg(7, 1, stream_time, stream_time)),  # open
        # stream time, and the bound below which windows were closed at it
        (b"\x01", struct.pack(">qq", stream_time, stream_time - W - G - (stream_time - G) % W)),
    ], partition=0)
    agg = start(names, "--input-keyed")
    # one more record in the open window makes the task commit (and flush)
    h.produce(names["input"], [(b"s1", h.event("s1", 3, stream_time // 1000))], partition=0)
    h.wait_consumed(names["app"], [names["input"]], timeout=30)
    # then a record that closes the open window
    h.produce(names["input"], [(b"s1", h.event("s1", 1, (stream_time + 3 * W) // 1000))], partition=0)
    got = h.wait_until(lambda: h.as_truth(h.results(names["output"])), 30, "the open window's result")
    assert got == {("s1", base + 5 * W): (10, 2)}, got
    assert ("s1", base) not in h.pg_results(names["table"])
    assert "stale_windows_dropped" in agg.log()
    assert agg.stop() == 0


def test_a_result_with_the_longest_control_character_seller_id_is_emitted():
    # seller.id.max.bytes allows 1023 bytes; a control character escapes to 6
    # bytes in the JSON result. The result buffer was 2048 bytes: the format
    # failed and the commit with it, on every retry (review finding 11).
    names = h.app_topics(partitions=1)
    base = h.aligned_base(W)
    seller = "\x01" * 1023
    agg = start(names, "--input-keyed", "--seller-id-max-bytes", "1023")
    value = json.dumps({"seller_id": seller, "amount_usd": 9, "sale_ts": base // 1000}).encode()
    closing = json.dumps({"seller_id": seller, "amount_usd": 1, "sale_ts": (base + 3 * W) // 1000}).encode()
    h.produce(names["input"], [(seller.encode(), value), (seller.encode(), closing)], partition=0)
    rows = h.wait_until(lambda: h.results(names["output"]), 30, "the long seller's result")
    assert [(r["seller_id"], r["total_amount_usd"], r["sales_count"]) for r in rows] == [(seller, 9, 1)]
    assert h.pg_results(names["table"])[(seller, base)][:2] == (9, 1)
    assert agg.stop() == 0


def test_a_restart_with_a_smaller_grace_emits_the_windows_it_closes_instead_of_dropping_them():
    # The stale-window drop after a restore must not take windows that were
    # open under the previous grace: they were never emitted.
    names = h.app_topics(partitions=1)
    base = h.aligned_base(W)
    state = None
    agg = start(names, "--input-keyed", "--grace-ms", "60000")
    state = agg.state_dir
    h.produce(names["input"], [(b"s1", h.event("s1", 4, base // 1000)),
                               (b"s1", h.event("s1", 1, (base + W + 30000) // 1000))], partition=0)
    h.wait_consumed(names["app"], [names["input"]], timeout=30)
    assert agg.stop() == 0
    assert h.results(names["output"]) == []          # open under a 60 s grace
    agg = h.Aggregator(names["app"], *FLAGS, "--input-keyed", "--grace-ms", "2000", state_dir=state,
                       input_topic=names["input"], output_topic=names["output"],
                       table=names["table"]).start().wait_ready()
    h.produce(names["input"], [(b"s1", h.event("s1", 1, (base + W + 31000) // 1000))], partition=0)
    got = h.wait_until(lambda: h.as_truth(h.results(names["output"])), 30, "the window closed by the new grace")
    assert got == {("s1", base): (4, 1)}, got
    assert "stale_windows_dropped" not in agg.log()
    assert agg.stop() == 0


def test_late_events_go_to_dlq_and_out_of_order_within_grace_counts():
    names = h.app_topics(partitions=1)
    base = h.aligned_base(W) // 1000
    agg = start(names, "--input-keyed")
    seq = [("x", 10, base + 1), ("x", 20, base + 9),      # window 0
           ("x", 5, base + 11),                            # window 1, stream time 11s
           ("x", 7, base + 3),                             # out of order, within grace (11 < 10+2)
           ("x", 1, base + 12),                            # stream time 12s: window 0 closes
           ("x", 100, base + 4),                           # late: window 0 closed
           ("x", 1, base + 40)]                            # closes window 1
    h.produce(names["input"], [(b"x", h.event(s, a, t)) for s, a, t in seq])
    got = h.wait_until(lambda: (lambda r: r if len(r) >= 2 else None)(h.as_truth(h.results(names["output"]))),
                       60, "two windows")
    assert got == {("x", base * 1000): (37, 3), ("x", base * 1000 + W): (6, 2)}
    dead = h.wait_until(lambda: h.dlq(names["input"] + "-dlq"), 30, "late record in DLQ")
    assert len(dead) == 1 and dead[0]["reason"] == "late"
    assert json.loads(dead[0]["value"])["amount_usd"] == 100  # original bytes
    assert dead[0]["headers"]["rill.source.offset"] == "5"
    assert agg.stop() == 0


BAD = [
    (b"{not json", "malformed_json"),
    (b"", "malformed_json"),
    (b"[1,2,3]", "not_an_object"),
    (b'{"amount_usd": 5, "sale_ts": %d}', "missing_field"),
    (b'{"seller_id": 42, "amount_usd": 5, "sale_ts": %d}', "wrong_type"),
    (b'{"seller_id": "ok", "amount_usd": "5", "sale_ts": %d}', "wrong_type"),
    (b'{"seller_id": "ok", "amount_usd": -5, "sale_ts": %d}', "invalid_amount"),
    (b'{"seller_id": "ok", "amount_usd": 5.5, "sale_ts": %d}', "invalid_amount"),
    (b'{"seller_id": "", "amount_usd": 5, "sale_ts": %d}', "invalid_seller_id"),
    (b'{"seller_id": "' + b"L" * 300 + b'", "amount_usd": 5, "sale_ts": %d}', "invalid_seller_id"),
    (b'{"seller_id": "\xff\xfe", "amount_usd": 5, "sale_ts": %d}', "invalid_utf8"),
    (b'{"seller_id": "ok", "amount_usd": 5, "sale_ts": 99999999999}', "invalid_timestamp"),
    (b'{"seller_id": "ok", "amount_usd": 5, "sale_ts": -3}', "invalid_timestamp"),
    (b'{"seller_id": "ok", "amount_usd": 5, "sale_ts": 1.5}', "invalid_timestamp"),
    (b'{"seller_id": "big", "amount_usd": 9223372036854775807, "sale_ts": %d}', None),  # valid
    (b'{"seller_id": "big", "amount_usd": 1, "sale_ts": %d}', "sum_overflow"),
]


def test_every_bad_input_is_dead_lettered_and_processing_goes_on():
    for keyed in (False, True):
        names = h.app_topics(partitions=2)
        base = h.aligned_base(W) // 1000
        agg = start(names, *(["--input-keyed"] if keyed else []))
        recs = []
        for raw, _ in BAD:
            v = raw % base if b"%d" in raw else raw
            # keyed input is keyed by seller (the others are rejected before the key matters)
            recs.append(((b"big" if b'"big"' in raw else b"k") if keyed else None, v))
        recs.append((b"good" if keyed else None, h.event("good", 42, base + 1)))
        # close the window on every task: "good" and "big" live wherever they hash
        for s in ("good", "big"):
            recs.append((s.encode() if keyed else None, h.event(s, 1, base + 60)))
        h.produce(names["input"], recs, partition=0)
        if not keyed:  # the other source partition moves on too
            h.produce(names["input"], [(None, h.event("good", 1, base + 60))], partition=1)
        want_reasons = sorted(r for _, r in BAD if r)
        dead = h.wait_until(lambda: (lambda d: d if len(d) >= len(want_reasons) else None)(h.dlq(names["input"] + "-dlq")),
                            60, "dead letters")
        assert sorted(d["reason"] for d in dead) == want_reasons
        by_reason = {d["reason"]: d for d in dead}
        assert by_reason["malformed_json"]["detail"]
        assert by_reason["invalid_utf8"]["value"] == BAD[10][0] % base  # original bytes, untouched
        res = h.wait_until(lambda: (lambda r: r if len(r) >= 2 else None)(h.as_truth(h.results(names["output"]))),
                           60, "results after bad input")
        assert res[("good", base * 1000)] == (42, 1)
        assert res[("big", base * 1000)] == (9223372036854775807, 1)
        assert agg.stop() == 0


def test_idle_timeout_closes_windows_of_a_quiet_partition():
    names = h.app_topics(partitions=1)
    base = h.aligned_base(W, minutes_ago=5) // 1000
    agg = start(names, "--input-keyed", "--idle-timeout-ms", "1500")
    h.produce(names["input"], [(b"q", h.event("q", 5, base + 1)), (b"q", h.event("q", 6, base + 2))])
    got = h.wait_until(lambda: h.as_truth(h.results(names["output"])), 30, "idle-closed window")
    assert got == {("q", base * 1000): (11, 2)}
    assert h.pg_results(names["table"])[("q", base * 1000)][:2] == (11, 2)
    assert agg.stop() == 0


def _restored(log):
    return [dict(re.findall(r"(\w+)=(\S+)", line)) for line in log.splitlines() if "event=task_restored" in line]


def test_restart_restores_only_the_changelog_tail_clean_and_after_sigkill():
    names = h.app_topics(partitions=2)
    sellers = ["r1", "r2", "r3", "r4", "r5"]
    base = h.aligned_base(W)
    agg = start(names, "--input-keyed")
    ev1 = [(s, i + 1, base + i * 10) for i in range(200) for s in sellers[i % 5:i % 5 + 1]]
    h.produce(names["input"], [(s.encode(), h.event(s, a, t // 1000)) for s, a, t in ev1])
    h.wait_until(lambda: "event=commit" in agg.log() or h.pg("SELECT count(*) FROM rill_sink_progress WHERE app_id=%s AND next_offset > 0", (names["app"],))[0][0] >= 2,
                 30, "first commit")
    time.sleep(1)
    assert agg.stop() == 0
    # clean restart: the store is up to date, nothing to replay
    agg.start().wait_ready()
    h.wait_until(lambda: len(_restored(agg.log())) == 2, 30, "restore of both tasks")
    for r in _restored(agg.log()):
        assert int(r["records"]) == 0, r
        assert int(r["from_offset"]) > 0, r      # started from the stored offset, not 0
    # more input, then SIGKILL mid-flight, then restart
    ev2 = [(s, 1000 + i, base + 2000 + i * 10) for i in range(300) for s in sellers[i % 5:i % 5 + 1]]
    h.produce(names["input"], [(s.encode(), h.event(s, a, t // 1000)) for s, a, t in ev2])
    time.sleep(2)
    agg.kill()
    agg.start().wait_ready()
    h.wait_until(lambda: len(_restored(agg.log())) == 2, 30, "restore after kill")
    for r in _restored(agg.log()):
        assert int(r["from_offset"]) > 0, r
        assert int(r["records"]) < 400, r        # a tail, never the whole changelog
    end = base + 10 * W
    h.produce(names["input"], [(s.encode(), h.event(s, 1, end // 1000)) for s in sellers])
    check(names, ev1 + ev2, close_before_ms=end - W - G)
    assert agg.stop() == 0


def test_bad_flags_and_unreachable_servers_fail_with_one_line():
    exe = os.path.join(h.BUILD, "sales-aggregator")
    cases = [
        ([exe, "--window-size-ms=abc", "--pg-dsn", h.PG_DSN], 2, "window.size.ms"),
        ([exe, "--no-such-flag"], 2, "--no-such-flag"),
        ([exe, "--pg-dsn", "host=x password=secret"], 1, "PGPASSWORD"),
        ([exe, "--bootstrap-servers", h.BOOTSTRAP, "--pg-dsn", h.PG_DSN, "--input-topic", "no-such-topic-zz",
          "--state-dir", tempfile.mkdtemp(prefix="rill-flagtest-")], 1, "no-such-topic-zz"),
        ([exe, "--bootstrap-servers", "127.0.0.1:1", "--pg-dsn", h.PG_DSN,
          "--state-dir", tempfile.mkdtemp(prefix="rill-flagtest-")],
         1, "cannot reach Kafka"),
        # timeouts that contradict each other (review finding 9)
        ([exe, "--pg-dsn", h.PG_DSN, "--commit-interval-ms", "6000"], 1, "at most half of transaction.timeout.ms"),
        ([exe, "--pg-dsn", h.PG_DSN, "--transaction-timeout-ms", "6000"], 1, "Postgres statement bound"),
    ]
    for args, code, needle in cases:
        rc, out, err = h.run_program(args, timeout=60)
        lines = [l for l in err.splitlines() if l.startswith("sales-aggregator:")]
        assert rc == code, (args, rc, err)
        assert len(lines) == 1 and needle in lines[0], (args, err)
        assert "secret" not in err
    rc, out, _ = h.run_program([exe, "--help"])
    assert rc == 0 and "--window-size-ms" in out and "RILL_WINDOW_SIZE_MS" in out
    # Postgres unreachable
    names = h.app_topics(partitions=1)
    rc, out, err = h.run_program([exe, "--bootstrap-servers", h.BOOTSTRAP, "--input-topic", names["input"],
                                  "--output-topic", names["output"], "--state-dir", tempfile.mkdtemp(prefix="rill-flagtest-"),
                                  "--application-id", names["app"],
                                  "--pg-dsn", "host=127.0.0.1 port=1 dbname=x user=y"], timeout=60)
    assert rc == 1 and "cannot connect to Postgres at 127.0.0.1:1" in err, err


def test_producer_generates_valid_events():
    names = h.app_topics(partitions=2)
    exe = os.path.join(h.BUILD, "sales-producer")
    rc, _, err = h.run_program([exe, "--bootstrap-servers", h.BOOTSTRAP, "--topic", names["input"],
                                "--count", "500", "--rate", "0", "--seed", "3", "--keyed"])
    assert rc == 0, err
    assert "delivered=500" in err
    msgs = h.read_topic(names["input"])
    assert len(msgs) == 500
    sellers = set()
    for m in msgs:
        d = json.loads(m.value())
        assert set(d) == {"seller_id", "amount_usd", "sale_ts"}
        assert m.key().decode() == d["seller_id"]
        assert isinstance(d["amount_usd"], int) and 1 <= d["amount_usd"] <= 1000
        assert abs(d["sale_ts"] - time.time()) < 120
        sellers.add(d["seller_id"])
    assert sellers == {"seller-1", "seller-2", "seller-3", "seller-4"}
    rc, _, err = h.run_program([exe, "--rate", "x"])
    assert rc == 2 and err.count("\n") == 1 and "--rate" in err


def test_static_membership_restart_within_session_timeout_causes_no_rebalance():
    names = h.app_topics(partitions=4)
    first = start(names, "--input-keyed", "--group-instance-id", "worker-a")   # likely the group leader
    other = start(names, "--input-keyed", "--group-instance-id", "worker-b")   # the one we restart
    h.wait_until(lambda: "task_created" in first.log() and "task_created" in other.log(), 30, "both own tasks")
    time.sleep(4)  # the group settles
    count = lambda log: log.count("partitions_revoked") + log.count("partitions_assigned")  # noqa: E731
    before = count(first.log())
    parts = sorted(re.findall(r"task_created .*partition=(\d+)", other.log()))
    other.kill()
    other.start().wait_ready()  # same group.instance.id, back well within session.timeout.ms (6 s)
    time.sleep(8)               # longer than the session timeout: a rebalance would have shown by now
    assert count(first.log()) == before, "the other member saw a rebalance"
    assert sorted(re.findall(r"task_created .*partition=(\d+)", other.log())) == parts
    assert "thread=worker-b-0" in other.log()  # stable id -> stable transactional id
    assert first.stop() == 0 and other.stop() == 0


def test_a_worker_fenced_by_a_duplicate_group_instance_id_stops_with_the_reason_and_nothing_is_lost():
    # Two workers given the same --group-instance-id (a bad setting): the
    # group keeps the one that joined last and fences the first one's
    # consumer (FENCED_INSTANCE_ID, fatal in librdkafka). The fenced worker
    # must stop with the reason and a hint, not stay up consuming nothing
    # while its producer (the same transactional id) and the other's fence
    # each other in turn; the totals stay exact. Failed before the fix: the
    # first worker logged consumer_error and ran on.
    names = h.app_topics(partitions=4)
    sellers = ["a", "b", "c", "d", "e", "f"]
    base = h.aligned_base(W)
    events = gen_events(sellers, base, 1500, rng_seed=5)
    first = start(names, "--input-keyed", "--group-instance-id", "dup")
    h.produce(names["input"], [(s.encode(), h.event(s, a, t // 1000)) for s, a, t in events[:700]])
    h.wait_consumed(names["app"], [names["input"]])
    second = start(names, "--input-keyed", "--group-instance-id", "dup")
    rc = first.wait_exit(60)
    log = first.log()
    assert rc not in (None, 0), f"the fenced worker still runs (rc {rc}):\n{log[-3000:]}"
    assert "FENCED_INSTANCE_ID" in log and "same --group-instance-id" in log, log[-3000:]
    assert second.proc.poll() is None, second.log()[-3000:]
    h.produce(names["input"], [(s.encode(), h.event(s, a, t // 1000)) for s, a, t in events[700:]])
    end_ts = base + 1500 * 37 + 3 * W
    h.produce(names["input"], [(s.encode(), h.event(s, 1, end_ts // 1000)) for s in sellers])
    check(names, events, close_before_ms=end_ts - W - G)
    assert second.stop() == 0
