"""salesctl serve, end to end in headless Chromium: a real aggregator (its
HTTP endpoint for /query and /metrics, the shared Kafka and PostgreSQL), the
real salesctl serve, and the page loaded by Debian's chromium, driven over
the DevTools protocol (tests/lib/cdp.py). The page must show exactly the
committed windows that Postgres holds (every point's seller, window, total
and count), the open windows' running totals that /query answers, and the
dead letters of /metrics; a window committed later must appear without a
reload. The test writes docs/img/dashboard.png, the README's screenshot.
Also: the server's bounds (methods, bodies, long URLs) from outside."""
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import cdp  # noqa: E402
import rill_harness as h  # noqa: E402

W = 10000  # window size, ms
SELLERS = ["seller-1", "seller-2", "seller-3", "seller-4"]
SCREENSHOT = os.path.join(h.ROOT, "docs", "img", "dashboard.png")

pytestmark = pytest.mark.skipif(cdp.chromium_path() is None and not os.environ.get("CI"),
                                reason="chromium not installed (deploy/local/install-deps installs it)")


def get(port, path, method="GET", data=None, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)
    except (urllib.error.URLError, ConnectionError):
        return 0, b"", {}


def start_serve(port, agg_port, table):
    log = tempfile.NamedTemporaryFile(prefix=f"salesctl-serve-{port}-", suffix=".log", delete=False)
    p = subprocess.Popen([os.path.join(h.BUILD, "salesctl"), "serve", "--port", str(port),
                          "--workers", f"127.0.0.1:{agg_port}", "--pg-table", table, "--interval-ms", "500"],
                         stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    h._started.append(p)
    h.wait_until(lambda: p.poll() is not None or get(port, "/healthz")[0] == 200, 30, "salesctl serve to listen")
    assert p.poll() is None, open(log.name, errors="replace").read()
    return p


def produce_windows(topic, base, first, last, rng, per=(3, 9)):
    """Events for windows first..last of every seller (keyed by seller),
    per[0]..per[1] each; returns them as (seller, amount, ts_s)."""
    events = []
    for k in range(first, last + 1):
        for s in SELLERS:
            for _ in range(rng.randint(*per)):
                events.append((s, rng.randint(50, 2000), (base + k * W) // 1000 + rng.randint(0, W // 1000 - 1)))
    h.produce(topic, [(s.encode(), h.event(s, a, t)) for s, a, t in events])
    return events


def close_through(topic, base, k):
    """One event per seller in window k+1: closes window k (grace 0) and
    opens k+1 with a known running total (seller i: i+1 USD)."""
    ts = (base + (k + 1) * W) // 1000
    h.produce(topic, [(s.encode(), h.event(s, i + 1, ts)) for i, s in enumerate(SELLERS)])


def pg_points(table):
    return {(s, ws): (t, c) for (s, ws), (t, c, _) in h.pg_results(table).items()}


PAGE_POINTS = """[...document.querySelectorAll('#chart circle.pt')].map(c => [c.dataset.seller,
  +c.dataset.startMs, +c.dataset.total, +c.dataset.count])"""
PAGE_OPEN = """[...document.querySelectorAll('#sellers tbody tr')].filter(r => r.dataset.seller).map(r =>
  [r.dataset.seller, r.cells[5].dataset.openTotal, r.cells[6].dataset.openCount, r.cells[4].dataset.openStart])"""


def page_points(b):
    return {(s, ws): (t, c) for s, ws, t, c in b.eval(PAGE_POINTS)}


def test_dashboard_shows_postgres_windows_open_windows_and_metrics_live_in_chromium():
    names = h.app_topics(partitions=2, prefix="web")
    agg_port, port = h.free_port(), h.free_port()
    agg = h.Aggregator(names["app"], "--window-size-ms", str(W), "--grace-ms", "0", "--idle-timeout-ms", "0",
                       "--input-keyed", "--http-port", str(agg_port), input_topic=names["input"],
                       output_topic=names["output"], table=names["table"]).start().wait_ready()
    rng = random.Random(12)
    base = h.aligned_base(W, minutes_ago=20)
    # 12 windows per seller, three records the parser refuses (dead letters)
    events = produce_windows(names["input"], base, 0, 11, rng)
    h.produce(names["input"], [(b"seller-1", b"{broken"), (b"seller-2", b"[]"), (b"seller-3", b"not json")])
    close_through(names["input"], base, 11)
    want = h.truth([(s, a, t * 1000) for s, a, t in events], W)
    h.wait_until(lambda: pg_points(names["table"]) == want, 60, "the 48 windows in Postgres")
    assert len(want) == 48
    serve = start_serve(port, agg_port, names["table"])

    with cdp.Browser(width=1280, height=1000) as b:
        b.navigate(f"http://127.0.0.1:{port}/")
        # every committed window of the table, with its total and count, and nothing else
        shown = h.wait_until(lambda: (lambda p: p if p == want else None)(page_points(b)), 30,
                             "the page to draw the windows Postgres holds")
        assert len(shown) == 48 and all(t > 0 for t, _ in shown.values())
        # the open windows: window 12, the running totals /query answers (seller i: i+1 USD, 1 sale)
        want_open = sorted([s, str(i + 1), "1", str(base + 12 * W)] for i, s in enumerate(SELLERS))
        h.wait_until(lambda: sorted(b.eval(PAGE_OPEN)) == want_open, 30, "the open windows' running totals")
        for s in SELLERS:
            code, body, _ = get(agg_port, f"/query?key={s}")
            assert code == 200 and json.loads(body)["windows"][0]["sum"] == SELLERS.index(s) + 1
        # the workers' metrics: dead letters counted, lag and throughput drawn
        status, last = h.wait_until(lambda: (lambda t: t if "dead letters 3" in t[0] and t[1] == "3" else None)(
            b.eval("[document.getElementById('status').textContent, document.getElementById('dead').dataset.last]")),
            30, "the status line and the dead-letter chart to show 3 dead letters")
        assert "workers 1/1" in status, status
        assert b.eval("document.querySelectorAll('#throughput polyline').length") == 2

        # a new window, committed while the page is open, appears without a reload
        b.eval("window.__same_page = 'yes'")
        polls_before = int(b.eval("document.body.dataset.polls"))
        for i in range(6):  # a few batches, so the throughput chart has something to show
            events += produce_windows(names["input"], base, 12, 12, rng, per=(0, 2))
            time.sleep(0.7)
        close_through(names["input"], base, 12)
        want = h.truth([(s, a, t * 1000) for s, a, t in events] +
                       [(s, i + 1, base + 12 * W) for i, s in enumerate(SELLERS)], W)
        h.wait_until(lambda: pg_points(names["table"]) == want, 60, "window 12 in Postgres")
        assert len(want) == 52
        shown = h.wait_until(lambda: (lambda p: p if p == want else None)(page_points(b)), 30,
                             "the page to draw window 12 without a reload")
        assert {ws for _, ws in shown} == {base + k * W for k in range(13)}
        assert b.eval("window.__same_page") == "yes", "the page was reloaded"
        assert int(b.eval("document.body.dataset.polls")) > polls_before
        want_open = sorted([s, str(i + 1), "1", str(base + 13 * W)] for i, s in enumerate(SELLERS))
        h.wait_until(lambda: sorted(b.eval(PAGE_OPEN)) == want_open, 30, "the open windows to move on to window 13")
        assert not b.exceptions, f"the page threw: {b.exceptions}"
        os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
        assert b.screenshot(SCREENSHOT) > 20000, "a blank screenshot"

    serve.terminate()
    assert serve.wait(15) == 0
    assert agg.stop() == 0


def test_serve_bounds_requests_and_refuses_a_password_in_the_dsn():
    port = h.free_port()
    p = subprocess.Popen([os.path.join(h.BUILD, "salesctl"), "serve", "--port", str(port), "--pg-dsn", "none"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    h._started.append(p)
    try:
        h.wait_until(lambda: p.poll() is not None or get(port, "/healthz")[0] == 200, 30, "salesctl serve")
        code, body, hdr = get(port, "/")
        assert code == 200 and b'src="/dashboard.js"' in body and "text/html" in hdr["Content-Type"]
        assert "default-src 'self'" in hdr["Content-Security-Policy"]
        code, body, hdr = get(port, "/dashboard.js")
        assert code == 200 and b"/api/state" in body and hdr["X-Content-Type-Options"] == "nosniff"
        code, body, _ = get(port, "/api/state")
        d = json.loads(body)
        assert code == 200 and d["windows"] == [] and "not configured" in d["postgres"]["error"]
        assert get(port, "/api/state", method="POST", data=b"x")[0] == 405
        assert get(port, "/api/state", method="GET", data=b"abcde")[0] == 413
        assert get(port, "/" + "a" * 2000)[0] == 414
        assert get(port, "/" + "a" * 40000)[0] in (414, 431)
        assert get(port, "/../etc/passwd")[0] == 404
        assert get(port, "/healthz")[0] == 200  # still answering
    finally:
        p.terminate()
        p.wait(15)
    # a password never comes from a flag
    r = subprocess.run([os.path.join(h.BUILD, "salesctl"), "serve", "--port", "0", "--pg-dsn",
                        "host=127.0.0.1 password=secret"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "must not contain a password" in r.stderr and "secret" not in r.stderr
