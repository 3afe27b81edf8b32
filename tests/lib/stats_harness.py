"""What the sales-stats tests share (tests/integration/test_sales_stats.py
and tests/crash/test_sales_stats.py): the program with test-sized hopping
windows, its input, and the truth its results are checked against."""
import rill_harness as h

W, A, G = 20000, 5000, 2000  # the product runs 5 minutes every minute; scaled down here


def stats_truth(events, closed_before_ms):
    """{(seller, wstart): (count, avg, max)}: every window [s, s + W) with s a
    multiple of A that holds the event and closes before closed_before_ms."""
    acc = {}
    for seller, amount, ts in events:
        for ws in range(ts - ts % A, ts - W, -A):
            if ws + W > closed_before_ms:
                continue
            c, s, m = acc.get((seller, ws), (0, 0, None))
            acc[(seller, ws)] = (c + 1, s + amount, amount if m is None else max(m, amount))
    return {k: (c, s / c, m) for k, (c, s, m) in acc.items()}


def kafka_stats(topic):
    out = {}
    for r in h.results(topic):
        k = (r["seller_id"], r["window_start_ms"])
        assert k not in out, f"window {k} emitted twice"
        assert r["_key"] == r["seller_id"]
        out[k] = (r["sales_count"], r["avg_amount_usd"], r["max_amount_usd"])
    return out


def pg_stats(table):
    rows = h.pg(f'SELECT seller_id, (extract(epoch from window_start)*1000)::bigint, '
                f'(extract(epoch from window_end)*1000)::bigint, sales_count, avg_amount_usd, '
                f'max_amount_usd FROM "{table}"')
    assert all(r[2] - r[1] == W for r in rows), rows[:3]
    return {(r[0], r[1]): (r[3], r[4], r[5]) for r in rows}


def stats(names, *extra, env_extra=None):
    return h.Aggregator(names["app"], "--window-size-ms", str(W), "--window-advance-ms", str(A),
                        "--grace-ms", str(G), *extra, input_topic=names["input"],
                        output_topic=names["output"], table=names["table"], env_extra=env_extra,
                        program="sales-stats")


def events_for(base, n=90):
    # three sellers, amounts that make averages with fractions, 63 s of event time
    return [(f"s{i % 3}", 10 + (i * 37) % 101, base + i * 700) for i in range(n)]


def check(names, want):
    got = h.wait_until(lambda: (lambda g: g if len(g) >= len(want) else None)(kafka_stats(names["output"])),
                       90, f"{len(want)} windows in {names['output']}")
    assert got == want, f"missing {set(want) - set(got)}, extra {set(got) - set(want)}, " \
                        f"wrong {[(k, got[k], want[k]) for k in want if k in got and got[k] != want[k]]}"
    pg = h.wait_until(lambda: (lambda r: r if len(r) >= len(want) else None)(pg_stats(names["table"])),
                      30, "Postgres rows")
    assert pg == want  # the average is the same double in both (17 digits)
    return got
