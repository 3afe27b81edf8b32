"""Outages of the servers themselves: PostgreSQL stopped and restarted under
load, the Kafka broker restarted. Results stall, nothing is lost or doubled."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from scenario import Scenario, h  # noqa: E402

LOCAL = os.path.join(h.ROOT, "deploy", "local")


def sh(*args, timeout=120):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{args}: {p.stdout}{p.stderr}"
    return p.stdout


def test_postgres_down_stalls_results_then_catches_up():
    sc = Scenario(partitions=4, workers=2, sellers=8)
    try:
        sc.start()
        sc.start_load(count=30000, rate=2000)
        time.sleep(3)
        sh(os.path.join(LOCAL, "postgres"), "stop")
        try:
            time.sleep(8)
            logs = "\n".join(w.log() for w in sc.workers)
            assert "commit_failed" in logs, "commits must fail (and retry) while Postgres is down"
        finally:
            sh(os.path.join(LOCAL, "postgres"), "start")
        h.wait_until(lambda: any("commit_recovered" in w.log() for w in sc.workers), 60, "recovery")
        sc.finish()
    finally:
        sc.stop_all()


def test_broker_restart_under_load():
    sc = Scenario(partitions=4, workers=2, sellers=8)
    try:
        sc.start()
        sc.start_load(count=20000, rate=2000)
        time.sleep(3)
        sh(os.path.join(LOCAL, "kafka", "kafka"), "stop-broker", "1")
        time.sleep(5)
        sh(os.path.join(LOCAL, "kafka", "kafka"), "start-broker", "1")
        # the producer may have failed while the broker was away: top up
        try:
            sc.producer.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            sc.producer.kill()
        sc.producer = None
        sc.finish(timeout=300)
    finally:
        sc.stop_all()
