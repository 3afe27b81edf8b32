"""A flood of interactive queries does not starve the probes or the stream
threads (review finding 13: each query scanned every store while holding the
tasks lock, with no bound on how many ran at once)."""
import http.client
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402

W = 60000
FLOODERS = 96          # more clients than the endpoint has connection threads (64)
FLOOD_S = 10


def request(port, path, timeout=5):
    """(status, headers, body), or (None, None, error) when the server did not answer."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    except OSError as e:
        return None, None, repr(e)
    finally:
        c.close()


def test_query_flood_leaves_probes_and_processing_alive():
    names = h.app_topics(partitions=4)
    port = h.free_port()
    agg = h.Aggregator(names["app"], "--window-size-ms", str(W), "--input-keyed",
                       "--http-port", str(port), input_topic=names["input"],
                       output_topic=names["output"], table=names["table"]).start().wait_ready()
    try:
        h.wait_until(lambda: request(port, "/readyz")[0] == 200, 30, "readiness")
        now = int(time.time())
        sellers = [f"f{i}" for i in range(50)]
        h.produce(names["input"], [(s.encode(), h.event(s, 1, now)) for s in sellers for _ in range(20)])
        h.wait_until(lambda: request(port, "/query?key=f1")[0] == 200, 30, "a first committed window")

        stop = threading.Event()
        codes, lock = {}, threading.Lock()
        hostile = urllib.parse.quote("\x01" * 1024, safe="")  # the most expensive key to escape

        def flood(i):
            while not stop.is_set():
                key = hostile if i % 2 else f"f{i % 50}"
                st, hdr, _ = request(port, f"/query?key={key}", timeout=10)
                with lock:
                    codes[st] = codes.get(st, 0) + 1
                    if st == 503:
                        codes["retry_after"] = codes.get("retry_after", 0) + ("Retry-After" in hdr)

        threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(FLOODERS)]
        for t in threads:
            t.start()
        probes = []
        t_end = time.monotonic() + FLOOD_S
        try:
            time.sleep(1)  # the flood is on
            # the stream threads go on: records produced during the flood are processed
            h.produce(names["input"], [(s.encode(), h.event(s, 2, now)) for s in sellers])
            while time.monotonic() < t_end:
                t0 = time.monotonic()
                st, _, body = request(port, "/healthz", timeout=5)
                probes.append((st, round(time.monotonic() - t0, 2), body))
                time.sleep(0.2)
            during = request(port, "/query?key=f7", timeout=10)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        failed = [p for p in probes if p[0] != 200]
        assert probes and not failed, f"/healthz failed during the flood: {failed[:5]} of {len(probes)}"
        assert codes.get(503, 0) > 0, f"the flood was never answered busy: {codes}"
        assert codes.get("retry_after") == codes.get(503), codes
        assert set(k for k in codes if k != "retry_after") <= {200, 400, 404, 503, None}, codes
        assert codes.get(200, 0) + codes.get(404, 0) > 0, f"no query was answered at all: {codes}"
        # the records produced during the flood were counted by the stream thread
        want = {"key": "f7", "count": 21, "sum": 22}

        def answered():
            st, _, body = request(port, "/query?key=f7")
            if st != 200:
                return None
            import json
            w = json.loads(body)["windows"]
            return w and (w[0]["count"], w[0]["sum"]) == (want["count"], want["sum"])
        h.wait_until(answered, 30, f"f7's running total to include the flood-time record (during: {during[0]})")
    finally:
        agg.stop()
