"""Operating the aggregator against the real stack: /healthz, /readyz,
/metrics, interactive queries (/query and salesctl query across two
workers), salesctl watch, structured JSON logs, and clear errors."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402

W = 60000
SALESCTL = os.path.join(h.BUILD, "salesctl")

free_port = h.free_port


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name, **labels):
    total, found = 0, False
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
                found = True
    return total if found else None


def start(names, port, *extra):
    return h.Aggregator(names["app"], "--window-size-ms", str(W), "--input-keyed", "--http-port", str(port),
                        *extra, input_topic=names["input"], output_topic=names["output"],
                        table=names["table"]).start().wait_ready()


def test_health_ready_metrics_and_query_on_one_worker():
    names = h.app_topics(partitions=2)
    port = free_port()
    agg = start(names, port, "--log-format", "json")
    h.wait_until(lambda: get(port, "/readyz")[0] == 200, 30, "readiness")
    assert get(port, "/healthz") == (200, "ok\n")
    base = int(time.time()) - 1
    sellers = ["m1", "m2", "m3"]
    events = [(s, 10 + i, base) for i in range(30) for s in sellers]
    h.produce(names["input"], [(s.encode(), h.event(s, a, t)) for s, a, t in events]
              + [(b"m1", b"{broken")])
    txt = h.wait_until(lambda: (lambda t: t if metric(t, "rill_records_processed_total") == 91 and
                                metric(t, "rill_commits_total") else None)(get(port, "/metrics")[1]),
                       30, "metrics to count every record")
    assert metric(txt, "rill_records_dead_lettered_total") == 1
    assert metric(txt, "rill_commit_latency_ms_count") >= 1
    assert metric(txt, "rill_postgres_write_latency_ms_count") >= 1
    assert metric(txt, "rill_consumer_lag", task="aggregate") is not None
    assert "rill_state_store_bytes" in txt and "rill_restore_records_total" in txt
    assert 'le="+Inf"' in txt and "# TYPE rill_commit_latency_ms histogram" in txt
    # interactive query: the committed running total of each open window
    ws = (base * 1000) - (base * 1000) % W
    for s in sellers:
        code, body = get(port, f"/query?key={s}")
        assert code == 200, body
        d = json.loads(body)
        assert d["key"] == s
        assert [(x["window_start_ms"], x["sum"], x["count"]) for x in d["windows"]] == \
               [(ws, sum(a for ss, a, _ in events if ss == s), 30)]
    assert get(port, "/query?key=nobody")[0] == 404
    assert get(port, "/query")[0] == 400
    assert get(port, "/nope")[0] == 404
    # structured logs: every line the engine writes is one JSON object
    agg.stop()
    lines = [l for l in agg.log().splitlines() if l.startswith("{")]
    assert lines and all(json.loads(l)["level"] in ("debug", "info", "warn", "error") for l in lines)
    assert any(json.loads(l)["event"] == "http_listening" for l in lines)


def get_bytes(port, path):
    """Like get, but the body as bytes (a broken answer must not hide behind a decode error)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_query_answers_are_valid_json_for_hostile_keys_and_unkeyed_keys_are_found():
    # unkeyed input: the worker scans only the partition that owns the key
    # (crc32 of the key, librdkafka's default partitioner); every seller must
    # still be found, whichever of the 4 partitions the repartition put it in
    names = h.app_topics(partitions=4)
    port = free_port()
    agg = h.Aggregator(names["app"], "--window-size-ms", str(W), "--http-port", str(port),
                       input_topic=names["input"], output_topic=names["output"],
                       table=names["table"]).start().wait_ready()
    h.wait_until(lambda: get(port, "/readyz")[0] == 200, 30, "readiness")
    # the review's case: 1,024 control characters escape to 6,146 bytes
    # (the second one with NUL bytes too: the key is taken with its length)
    for key in ["\x01" * 1024, "".join(chr(i % 32) for i in range(1024)), '"\\</>' * 200]:
        code, body = get_bytes(port, "/query?key=" + urllib.parse.quote(key, safe=""))
        assert code == 404, body[:300]
        assert body.endswith(b"}\n"), body[-300:]
        d = json.loads(body.decode("utf-8"))
        assert d["key"] == key and d["windows"] == [] and d["truncated"] is False, body[:300]
        assert set(d) == {"key", "instance", "windows", "truncated"}
    # bytes that are not UTF-8 come back as U+FFFD, still valid JSON
    code, body = get_bytes(port, "/query?key=%FF%FEx")
    assert code == 404 and json.loads(body.decode("utf-8"))["key"] == "\ufffd\ufffdx", body
    code, body = get(port, "/query?key=" + "k" * 1025)
    assert code == 400 and "1025 bytes, at most 1024" in json.loads(body)["error"], body
    assert get(port, "/healthz") == (200, "ok\n")
    base = int(time.time()) - 1
    sellers = [f"u{i}" for i in range(12)]
    h.produce(names["input"], [(None, h.event(s, 5, base)) for s in sellers for _ in range(2)])
    ws = (base * 1000) - (base * 1000) % W
    parts = set()
    def both_applied(s):
        # the two sales of a seller arrive through different input partitions,
        # so the first may be applied a cycle before the second: wait for both
        code, body = get(port, f"/query?key={s}")
        d = json.loads(body) if code == 200 else None
        return d if d and sum(x["count"] for x in d["windows"]) >= 2 else None
    for s in sellers:
        d = h.wait_until(lambda: both_applied(s), 30, f"query {s}")
        assert [(x["window_start_ms"], x["sum"], x["count"]) for x in d["windows"]] == [(ws, 10, 2)], d
        parts.add(d["windows"][0]["partition"])
    assert len(parts) > 1, f"the sellers should spread over the partitions: {parts}"
    agg.stop()


def test_salesctl_query_finds_the_owner_among_workers_and_watch_shows_results():
    names = h.app_topics(partitions=4)
    p1, p2 = free_port(), free_port()
    a1 = start(names, p1)
    a2 = start(names, p2)
    h.wait_until(lambda: get(p1, "/readyz")[0] == 200 and get(p2, "/readyz")[0] == 200, 60, "both ready")
    time.sleep(2)
    base = int(time.time()) - 1
    sellers = [f"q{i}" for i in range(8)]
    h.produce(names["input"], [(s.encode(), h.event(s, 7, base)) for s in sellers for _ in range(3)])
    time.sleep(2)
    owners = set()
    for s in sellers:
        out = h.wait_until(lambda: (lambda r: r if r.returncode == 0 else None)(
            subprocess.run([SALESCTL, "query", s, "--workers", f"127.0.0.1:{p1},127.0.0.1:{p2}"],
                           capture_output=True, text=True, timeout=30)), 30, f"query {s}")
        assert "total_amount_usd=21 sales_count=3" in out.stdout, out.stdout
        owners.add(out.stdout.split("instance ")[1].split(")")[0])
    assert len(owners) == 2, f"both workers should own some sellers: {owners}"
    # keyed input: the partition is the producer's choice, so the worker asked
    # first asks the other members; one address is enough
    for s in sellers:
        r = subprocess.run([SALESCTL, "query", s, "--workers", f"127.0.0.1:{p2}"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and "total_amount_usd=21 sales_count=3" in r.stdout, (r.stdout, r.stderr)
    r = subprocess.run([SALESCTL, "query", "absent", "--workers", f"127.0.0.1:{p1},127.0.0.1:{p2}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "no worker holds" in r.stderr
    r = subprocess.run([SALESCTL, "query", "x", "--workers", "127.0.0.1:1"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "no worker reachable" in r.stderr
    # close the windows, then watch shows the latest result per seller
    h.produce(names["input"], [(s.encode(), h.event(s, 1, base + 200)) for s in sellers])
    h.wait_until(lambda: len(h.results(names["output"])) >= len(sellers), 60, "results")
    r = subprocess.run([SALESCTL, "watch", "--once", "--bootstrap-servers", h.BOOTSTRAP, "--topic",
                        names["output"]], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    for s in sellers:
        line = [l for l in r.stdout.splitlines() if l.startswith(s + " ")]
        assert line and line[0].split()[2:4] == ["21", "3"], r.stdout  # seller, window, total, sales
    # live mode, piped: plain lines (no escapes) until stopped
    p = subprocess.Popen([SALESCTL, "watch", "--interval-ms", "200", "--bootstrap-servers", h.BOOTSTRAP,
                          "--topic", names["output"]], stdout=subprocess.PIPE, text=True)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert "status " in out and "\033[" not in out, out
    a1.stop()
    a2.stop()


def test_http_port_in_use_is_one_clear_line():
    names = h.app_topics(partitions=1)
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        rc, _, err = h.run_program([os.path.join(h.BUILD, "sales-aggregator"), "--application-id", names["app"],
                                    "--bootstrap-servers", h.BOOTSTRAP, "--pg-dsn", h.PG_DSN,
                                    "--input-topic", names["input"], "--output-topic", names["output"],
                                    "--state-dir", "/tmp/rill-porttest", "--http-port", str(port)], timeout=60)
        lines = [l for l in err.splitlines() if l.startswith("sales-aggregator:")]
        assert rc == 1 and len(lines) == 1 and f"port {port}" in lines[0], err
    finally:
        s.close()
