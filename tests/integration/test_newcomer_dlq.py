"""salesctl dlq against the real broker: dead letters grouped by reason with
counts and examples; dlq replay re-submits the original bytes and keys of the
selected reason to the input topic exactly once per replay (one Kafka
transaction with its marker on <dlq>-replays), refuses to replay the same
records twice unless --force, and --skip-replayed replays only new ones."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402

SALESCTL = os.path.join(h.BUILD, "salesctl")


def ctl(*args):
    p = subprocess.run([SALESCTL, *args], capture_output=True, text=True, timeout=180)
    return p.returncode, p.stdout, p.stderr


def replayed_in(topic):
    out = []
    for m in h.read_topic(topic):
        hd = dict((k, v.decode()) for k, v in (m.headers() or []))
        if "rill.replay.id" in hd:
            out.append((m.key(), m.value(), hd["rill.replay.id"], hd["rill.replay.of"]))
    return out


def test_dlq_lists_by_reason_and_replays_exactly_once():
    n = h.app_topics(partitions=2, prefix="dlq")
    dlq = n["input"] + "-dlq"
    now = int(time.time())
    wrong = [(f"s{i}".encode(), f'{{"seller_id":"s{i}","amount_usd":"{i + 5}","sale_ts":{now}}}'.encode())
             for i in range(3)]
    broken = [(b"k", b'{"seller_id": not json'), (None, b"\x00\xff")]
    a = h.Aggregator(n["app"], "--input-keyed", input_topic=n["input"], output_topic=n["output"], pg_dsn=None)
    a.start().wait_ready()
    try:
        h.produce(n["input"], wrong + broken)
        h.wait_until(lambda: len(h.dlq(dlq)) >= 5, 60, "5 dead letters")
    finally:
        a.stop()

    rc, out, err = ctl("dlq", "--bootstrap-servers", h.BOOTSTRAP, "--topic", dlq)
    assert rc == 0, err
    assert f"{dlq}: 5 dead letters, 2 reasons" in out, out
    lines = out.splitlines()
    assert any(ln.startswith("wrong_type") and ln.split()[1] == "3" for ln in lines), out
    assert any(ln.startswith("malformed_json") and ln.split()[1] == "1" for ln in lines) or \
        any(ln.split()[:2] in (["malformed_json", "2"], ["invalid_utf8", "1"]) for ln in lines), out
    assert "amount_usd must be an integer, got string" in out and f"from {n['input']}[" in out, out

    # a dry run changes nothing
    rc, out, err = ctl("dlq", "replay", "--bootstrap-servers", h.BOOTSTRAP, "--topic", dlq, "--reason", "wrong_type",
                       "--dry-run")
    assert rc == 0 and "dry run: 3 dead letters" in out, out + err
    assert replayed_in(n["input"]) == []

    rc, out, err = ctl("dlq", "replay", "--bootstrap-servers", h.BOOTSTRAP, "--topic", dlq, "--reason", "wrong_type",
                       "--since", "1h")
    assert rc == 0, err
    assert f"replayed 3 dead letters (reason wrong_type) to {n['input']}" in out, out
    got = replayed_in(n["input"])
    assert sorted((k, v) for k, v, _, _ in got) == sorted(wrong), "original keys and bytes, each once"
    assert len({rid for _, _, rid, _ in got}) == 1
    marker = h.read_topic(dlq + "-replays")
    assert len(marker) == 1 and b'"count":3' in marker[0].value()

    # the same replay again is refused, and nothing is produced
    rc, out, err = ctl("dlq", "replay", "--bootstrap-servers", h.BOOTSTRAP, "--topic", dlq, "--reason", "wrong_type")
    assert rc == 3 and "already replayed" in err and "--force" in err, (rc, out, err)
    assert len(replayed_in(n["input"])) == 3

    # --skip-replayed: nothing new to replay; a new dead letter is replayed alone
    rc, out, err = ctl("dlq", "replay", "--bootstrap-servers", h.BOOTSTRAP, "--topic", dlq, "--reason", "wrong_type",
                       "--skip-replayed")
    assert rc == 0 and "no dead letters to replay" in out, out + err
    h.produce(dlq, [(b"s9", b'{"x":1}')])  # not read_committed-relevant: plain produce, no headers
    assert len(replayed_in(n["input"])) == 3

    # --force replays them again, as a new replay
    rc, out, err = ctl("dlq", "replay", "--bootstrap-servers", h.BOOTSTRAP, "--topic", dlq, "--reason", "wrong_type",
                       "--force")
    assert rc == 0, err
    got = replayed_in(n["input"])
    assert len(got) == 6 and len({rid for _, _, rid, _ in got}) == 2

    # bad usage is refused with a hint
    rc, _, err = ctl("dlq", "replay", "--topic", dlq)
    assert rc == 2 and "--reason" in err
    rc, _, err = ctl("dlq", "replay", "--topic", dlq, "--reason", "late", "--since", "yesterday")
    assert rc == 2 and "is not a time" in err
