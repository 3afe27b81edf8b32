"""sales-stats: the engine's second application on the same sales events
(per seller, over hopping windows, the number of sales, their average and
the largest amount), to its own topic and its own Postgres table, checked
against plain arithmetic over the events. Its crash scenario is
tests/crash/test_sales_stats.py."""
import json
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402

from stats_harness import A, G, W, check, events_for, stats, stats_truth  # noqa: E402


def test_count_average_and_largest_sale_per_seller_over_hopping_windows():
    names = h.app_topics(partitions=2)
    base = h.aligned_base(W, minutes_ago=30)
    ev = events_for(base)
    port = h.free_port()
    agg = stats(names, "--http-port", str(port)).start().wait_ready()
    h.produce(names["input"], [(None, h.event(s, a, t // 1000)) for s, a, t in ev[0::2]], partition=0)
    h.produce(names["input"], [(None, h.event(s, a, t // 1000)) for s, a, t in ev[1::2]], partition=1)
    end = base + 200000
    h.close_every_partition(names["input"], "closer", end // 1000)
    want = stats_truth(ev, end - G)
    assert any(v[1] != int(v[1]) for v in want.values())  # averages with fractions
    assert len(want) >= 3 * (63000 // A)  # overlapping windows: every event in four
    check(names, want)
    # the table is its own: count, average (double precision), largest
    cols = h.pg("SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s ORDER BY ordinal_position", (names["table"],))
    assert [tuple(c) for c in cols] == [
        ("seller_id", "text"), ("window_start", "timestamp with time zone"),
        ("window_end", "timestamp with time zone"), ("sales_count", "bigint"),
        ("avg_amount_usd", "double precision"), ("max_amount_usd", "bigint")]
    # interactive queries name the same figures: the closing seller's open
    # windows hold its two events (one per partition, amount 1 each)
    def answer():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/query?key=closer", timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError:  # 404 until the committed state is in the store
            return None
    body = h.wait_until(answer, 30, "the closing seller's open windows from /query")
    assert body["windows"], body
    assert all((x["count"], x["avg"], x["max"]) == (2, 1.0, 1) for x in body["windows"]), body
    assert "advance_ms=5000" in agg.log()
    assert h.dlq(names["input"] + "-dlq") == []
    assert agg.stop() == 0
