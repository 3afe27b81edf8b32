"""deploy/grafana/rill-dashboard.json queries only metrics that a real
aggregator's /metrics serves (and is well-formed Grafana JSON)."""
import json
import os
import re
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402

DASH = os.path.join(h.ROOT, "deploy", "grafana", "rill-dashboard.json")
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "clamp_min", "le", "instance", "topic",
                "partition", "job", "label_values", "without", "on", "avg", "max", "min"}


def queried_metrics(d):
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in d["templating"]["list"] if v["type"] == "query"]
    names = set()
    for e in exprs:
        e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
        e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
        for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
            if w not in PROMQL_WORDS:
                names.add(w)
    return names


def test_dashboard_is_valid_and_every_metric_exists():
    d = json.load(open(DASH))
    assert d["uid"] and d["panels"]
    assert len({p["id"] for p in d["panels"]}) == len(d["panels"])
    names = queried_metrics(d)
    assert "rill_consumer_lag" in names and "rill_commit_latency_ms_bucket" in names, names

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    n = h.app_topics(partitions=2, prefix="graf")
    a = h.Aggregator(n["app"], "--http-port", str(port), input_topic=n["input"], output_topic=n["output"],
                     pg_dsn=None)
    a.start().wait_ready()
    try:
        h.produce(n["input"], [(None, h.event("s1", 3, int(time.time())))])

        def served():
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            got = {ln.split("{")[0].split(" ")[0] for ln in body.splitlines() if ln and not ln.startswith("#")}
            return got if "rill_consumer_lag" in got else None
        got = h.wait_until(served, 60, "/metrics with the per-task gauges")
    finally:
        a.stop()
    missing = sorted(names - got)
    assert not missing, f"the dashboard queries metrics /metrics does not serve: {missing}"
