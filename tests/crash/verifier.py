"""The exactly-once verifier.

Recomputes, independently of the engine's code, what the sales aggregation
must have produced, and compares it with what is committed in Kafka and in
PostgreSQL. Exact equality is the only pass.

What it derives, from the logs alone:
  1. every input record, classified valid or bad by its own validation;
  2. the aggregation log of each task partition, in offset order: the input
     partitions for keyed input, else the committed repartition topic, which
     must hold every valid input record exactly once;
  3. lateness and stream time, by the engine's definition of event time:
     - keyed input: each partition is its own source; stream time is the
       largest event time so far; a record is late when its window end +
       grace <= stream time when it arrives;
     - unkeyed input: a record is late when its window end + grace <= the
       progress of its OWN input partition before it (the largest event time
       of the partition's earlier valid records, or an idle advance, which
       the committed watermark records of the repartition topic tell, with
       the input offset they were taken at); an aggregation partition's
       stream time is the minimum over all input partitions of the last
       progress they reported to it (none closes before all reported);
     plus sums that would overflow 64 bits, and the windows closed at the
     final stream time;
  4. the expected results: every closed window, once, with its sum and count.
Then it reports: missing windows, windows committed more than once in Kafka,
wrong totals or counts, unexpected windows, Postgres rows that differ from
Kafka, and dead letters that are neither bad input nor late (or bad/late
records missing from the dead-letter topic).

Usage: python verifier.py --input T --output T --dlq T --table TBL --app APP
                          --window-ms N --grace-ms N [--keyed]
"""
import argparse
import json
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402

INT64_MAX = 2**63 - 1
INT64_MIN = -2**63


def _no_dupes(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constants(name):
    raise ValueError(f"non-standard constant {name}")


def classify(raw, key_max=256, ts_millis=False):
    """(seller, amount, ts_ms) for a valid sales event, or None when bad.
    Written from the event format's definition, not from the engine."""
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
        d = json.loads(text, object_pairs_hook=_no_dupes, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(d, dict):
        return None
    s, a, t = d.get("seller_id"), d.get("amount_usd"), d.get("sale_ts")
    if not isinstance(s, str) or not s or "\x00" in s or len(s.encode()) > key_max:
        return None
    if type(a) is not int or a < 0 or a > INT64_MAX:
        return None
    if type(t) is not int or t < 0:
        return None
    ts = t if ts_millis else t * 1000
    if ts > INT64_MAX:
        return None
    import time as _t
    if ts > _t.time() * 1000 + 3600000:  # the engine's default max.future.ms
        return None
    return (s, a, ts)


def verify(input_topic, output_topic, dlq_topic, table, app, window_ms, grace_ms, keyed):
    problems = []
    W, G = window_ms, grace_ms

    # 1. input
    inp = h.read_topic(input_topic)
    valid, bad = {}, {}
    for m in inp:
        c = classify(m.value())
        (valid if c else bad)[(m.partition(), m.offset())] = (c, m.value())

    # 2. the aggregation log per task partition
    logs = {}  # partition -> [(coords, seller, amount, ts, raw)]
    if keyed:
        for (p, o), (c, raw) in sorted(valid.items()):
            logs.setdefault(p, []).append(((input_topic, p, o), c[0], c[1], c[2], raw))
    else:
        rep_topic = f"{app}-repartition"
        seen = {}
        wms = {}   # source partition -> [(next input offset, progress)]
        for m in h.read_topic(rep_topic):
            v = m.value()
            if v[:1] == b"\x02" and len(v) in (21, 25):
                src, progress, next_off = struct.unpack(">iqq", v[1:21])
                # the input partitions its writer knew of (added while running)
                count = struct.unpack(">i", v[21:25])[0] if len(v) == 25 else 0
                wms.setdefault(src, []).append((next_off, progress))
                logs.setdefault(m.partition(), []).append(
                    ((rep_topic, m.partition(), m.offset()), None, src, progress, max(count, src + 1)))
                continue
            ver, amount, ts = struct.unpack(">Bqq", v[:17])
            orig = v[17:]
            seen[orig] = seen.get(orig, 0) + 1
            logs.setdefault(m.partition(), []).append(
                ((rep_topic, m.partition(), m.offset()), m.key().decode(), amount, ts, orig))
        # lateness at the source partition (input coordinates)
        late_at_source = set()
        by_part = {}
        for (p, o), (c, raw) in valid.items():
            by_part.setdefault(p, []).append((o, c, raw))
        for p, recs in by_part.items():
            marks = sorted(wms.get(p, []))
            progress, k = None, 0
            for o, c, raw in sorted(recs):
                while k < len(marks) and marks[k][0] <= o:
                    progress = marks[k][1] if progress is None else max(progress, marks[k][1])
                    k += 1
                ws = c[2] - c[2] % W
                if progress is not None and ws + W + G <= progress:
                    late_at_source.add((input_topic, p, o))
                    continue
                progress = c[2] if progress is None else max(progress, c[2])
        want = {}
        for (p, o), (c, raw) in valid.items():
            if (input_topic, p, o) not in late_at_source:
                want[raw] = want.get(raw, 0) + 1
        for raw, n in want.items():
            if seen.get(raw, 0) != n:
                problems.append(f"repartition: input record {raw[:80]!r} appears {seen.get(raw, 0)} times, want {n}")
        for raw, n in seen.items():
            if raw not in want:
                problems.append(f"repartition: record {raw[:80]!r} is not valid input")

    # 3. stream time, lateness, overflow, windows
    expected, late, overflow = {}, set(), set()
    window_recs = {}  # (seller, window start) -> [(coords, amount, how the model took it)]
    if not keyed:
        late |= late_at_source
    for p, log in logs.items():
        st = None
        sums = {}
        srcs = {}
        nsrc = 0  # the sources known: learnt from the watermark records only
        for coords, seller, amount, ts, raw in sorted(log, key=lambda r: r[0][2]):
            if seller is None:            # a watermark: source amount reached ts
                srcs[amount] = max(srcs.get(amount, ts), ts)
                nsrc = max(nsrc, raw)
                if all(s in srcs for s in range(nsrc)):
                    lo = min(srcs[s] for s in range(nsrc))
                    if lo != INT64_MIN:
                        st = lo if st is None else max(st, lo)
                continue
            if keyed:
                st = ts if st is None else max(st, ts)
            ws = ts - ts % W
            recs = window_recs.setdefault((seller, ws), [])
            if st is None:
                pass
            elif ws + W + G <= st:
                late.add(coords)
                recs.append((coords, amount, f"late at stream time {st}"))
                continue
            s, n = sums.get((seller, ws), (0, 0))
            if s + amount > INT64_MAX:
                overflow.add(coords)
                recs.append((coords, amount, "overflow"))
                continue
            sums[(seller, ws)] = (s + amount, n + 1)
            recs.append((coords, amount, "counted"))
        for (seller, ws), v in sums.items():
            if st is not None and ws + W + G <= st:
                assert (seller, ws) not in expected, "a seller's windows live in one task"
                expected[(seller, ws)] = v

    # dead letters
    dead_late, dead_overflow, dead_bad = set(), set(), {}
    for d in h.dlq(dlq_topic):
        hd = d["headers"]
        coords = (hd.get("rill.source.topic"), int(hd.get("rill.source.partition", -1)),
                  int(hd.get("rill.source.offset", -1)))
        if d["reason"] == "late":
            if coords in dead_late:
                problems.append(f"dlq: late record {coords} dead-lettered twice")
            dead_late.add(coords)
        elif d["reason"] == "sum_overflow":
            dead_overflow.add(coords)
        else:
            dead_bad[coords] = dead_bad.get(coords, 0) + 1
    if dead_late != late:
        problems.append(f"dlq: late records differ: unexplained {sorted(dead_late - late)[:5]}, "
                        f"missing {sorted(late - dead_late)[:5]} ({len(dead_late)} vs {len(late)})")
    if dead_overflow != overflow:
        problems.append(f"dlq: overflow records differ: {sorted(dead_overflow ^ overflow)[:5]}")
    want_bad = {(input_topic, p, o) for (p, o) in bad}
    for coords, n in dead_bad.items():
        if coords not in want_bad:
            problems.append(f"dlq: record {coords} is neither bad nor late input")
        elif n != 1:
            problems.append(f"dlq: bad record {coords} dead-lettered {n} times")
    for coords in want_bad - set(dead_bad):
        problems.append(f"dlq: bad input {coords} missing from the dead-letter topic")

    # 4. Kafka output, read_committed
    got = {}
    for r in h.results(output_topic):
        k = (r["seller_id"], r["window_start_ms"])
        if k in got:
            problems.append(f"kafka: window {k} committed more than once")
        got[k] = (r["total_amount_usd"], r["sales_count"])
        if r["_key"] != r["seller_id"]:
            problems.append(f"kafka: record key {r['_key']!r} != seller {r['seller_id']!r}")
    for k in expected.keys() - got.keys():
        problems.append(f"kafka: missing window {k} {expected[k]}")
    for k in got.keys() - expected.keys():
        problems.append(f"kafka: unexpected window {k} {got[k]}")
    for k in expected.keys() & got.keys():
        if expected[k] != got[k]:
            # what the model made of each of the window's records: a count one
            # too high is a record counted twice, or one the model found late
            recs = window_recs.get(k, [])
            diff = abs(got[k][0] - expected[k][0])
            suspects = [r for r in recs if r[1] == diff or r[2] != "counted"]
            which = "these have the difference's amount or were not counted"
            if not suspects:
                suspects, which = recs[-6:], "none has the difference's amount; the last ones"
            detail = "; ".join(f"partition {c[1]} offset {c[2]} amount {a} {how}"
                               for c, a, how in suspects[:12])
            problems.append(f"kafka: window {k} is {got[k]}, want {expected[k]}; of its "
                            f"{len(recs)} records {which}: {detail}")

    # Postgres equals Kafka
    pgr = {k: v[:2] for k, v in h.pg_results(table).items()}
    if pgr != got:
        diff = sorted(set(pgr.items()) ^ set(got.items()))[:5]
        problems.append(f"postgres: {len(pgr)} rows differ from kafka's {len(got)}: {diff}")

    return {"problems": problems, "windows": len(expected), "events": len(valid), "bad": len(bad),
            "late": len(late), "kafka_results": len(got)}


def main():
    ap = argparse.ArgumentParser()
    for a in ("input", "output", "dlq", "table", "app"):
        ap.add_argument(f"--{a}", required=True)
    ap.add_argument("--window-ms", type=int, default=60000)
    ap.add_argument("--grace-ms", type=int, default=10000)
    ap.add_argument("--keyed", action="store_true")
    a = ap.parse_args()
    rep = verify(a.input, a.output, a.dlq, a.table, a.app, a.window_ms, a.grace_ms, a.keyed)
    for p in rep["problems"]:
        print("DISCREPANCY", p)
    print(json.dumps({k: v for k, v in rep.items() if k != "problems"} | {"discrepancies": len(rep["problems"])}))
    sys.exit(1 if rep["problems"] else 0)


if __name__ == "__main__":
    main()
