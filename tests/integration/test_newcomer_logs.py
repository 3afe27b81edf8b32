"""Every line a worker writes parses as logfmt (and as JSON with
--log-format json), including the lines of a crash-suite run: a Postgres
outage whose libpq errors carry quotes, newlines and tabs, dead letters,
and a worker killed at a fault point and restarted."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "crash"))
import logfmt  # noqa: E402
import rill_harness as h  # noqa: E402
from scenario import Scenario  # noqa: E402


def test_parser_rejects_what_broke_lines_before():
    assert logfmt.parse('ts=1 level=error event=x error="a \\"b\\"\\nc"') == [
        ("ts", "1"), ("level", "error"), ("event", "x"), ("error", 'a "b"\nc')]
    assert logfmt.parse("thread=w0 the new owner") == [("thread", "w0"), ("the", None), ("new", None),
                                                       ("owner", None)]
    for bad in ['error="a "b""', 'error="unterminated', 'error="a\tb"', "dir=/a=b", "k=v  j=w",
                'k=a"b', 'error="x\\q"']:
        try:
            logfmt.parse(bad)
        except logfmt.LogfmtError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def _outage_run(extra):
    """A small crash-suite run: one worker whose Postgres goes through a proxy
    that is cut for a while, bad records (dead letters), a kill at a fault
    point, then the verifier. Returns the worker's log text."""
    proxy = h.TcpProxy("127.0.0.1", int(h.PG_DSN.split("port=")[1].split()[0]))
    sc = Scenario(partitions=2, workers=1, sellers=4, extra=("--log-level", "debug", *extra))
    w = sc.workers[0]
    w.flags[w.flags.index("--pg-dsn") + 1] = proxy.dsn(h.PG_DSN)
    w.env_extra.update(proxy.pg_env())
    try:
        sc.start()
        sc.produce_raw([(None, b'{"seller_id": "s\\"q", "amount_usd": "x\\ny"}'), (None, b"\x00\xff not json"),
                        (None, b'{"seller_id":"bad seller \\" \\\\ \\n","amount_usd":-1}')])
        sc.start_load(count=3000, rate=1000)
        time.sleep(1.5)
        proxy.cut()
        h.wait_until(lambda: "commit_failed" in w.log(), 30, "a commit to fail while Postgres is cut")
        time.sleep(2)
        proxy.heal()
        h.wait_until(lambda: "commit_recovered" in w.log(), 60, "the commits to recover")
        sc.wait_load()
        w.kill()
        sc.start(env_extra={"RILL_FAULT": "after_pg_commit"}, wait=False)
        sc.start_load(count=500, rate=1000)
        sc.wait_died(w)
        sc.finish()
        return w
    finally:
        sc.stop_all()
        proxy.close()


def test_every_line_of_a_crash_run_is_logfmt():
    w = _outage_run(())
    text = w.all_logs()
    assert "event=commit_failed" in text, "the run must have logged the Postgres outage"
    problems = [p for path in w.logs for p in logfmt.check_file(path)]
    assert not problems, "lines that are not logfmt:\n" + "\n".join(problems[:20])
    lines = [ln for ln in text.splitlines() if ln]
    assert len(lines) > 20
    # values that needed escaping were logged and decode back to their text
    values = [v or "" for ln in lines for _, v in logfmt.parse(ln)]
    assert any(c in v for v in values for c in '"\n\t\\'), "no value needed escaping: the run proved nothing"


def test_every_line_is_json_with_log_format_json():
    w = h.Aggregator(h.uniq("logjson"), "--log-format", "json", "--log-level", "debug", pg_dsn=None,
                     input_topic=h.uniq("no-such-input"))
    w.start()
    try:
        time.sleep(4)
    finally:
        w.stop()
    lines = [ln for ln in w.log().splitlines() if ln]
    assert lines
    for ln in lines:
        d = json.loads(ln)
        assert {"ts", "level", "event", "msg"} <= d.keys(), ln
        logfmt.parse(d["msg"]) if d["msg"] else None
