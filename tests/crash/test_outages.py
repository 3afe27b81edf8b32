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
        sc.drain_producer()
        sc.finish(timeout=300)
    finally:
        sc.stop_all()


def test_one_of_three_brokers_stopped_under_load():
    """A separate 3-broker cluster (RF 3, min ISR 2) on its own ports; broker 2
    is stopped under load and started again."""
    env = dict(os.environ, RILL_RUN_DIR=os.path.join(h.ROOT, ".run", "three-brokers"), RILL_KAFKA_PORT="19192")
    kafka = os.path.join(LOCAL, "kafka", "kafka")
    p = subprocess.run([kafka, "up", "--brokers", "3"], capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    saved = h.BOOTSTRAP
    try:
        h.BOOTSTRAP = subprocess.run([kafka, "bootstrap-servers"], capture_output=True, text=True,
                                     env=env, timeout=30).stdout.strip()
        assert h.BOOTSTRAP.count(",") == 2, h.BOOTSTRAP
        sc = Scenario(partitions=6, workers=2, sellers=8, replication=3)
        try:
            sc.start()
            sc.start_load(count=20000, rate=2000)
            time.sleep(3)
            p = subprocess.run([kafka, "stop-broker", "2"], capture_output=True, text=True, timeout=120, env=env)
            assert p.returncode == 0, p.stdout + p.stderr
            time.sleep(6)
            p = subprocess.run([kafka, "start-broker", "2"], capture_output=True, text=True, timeout=120, env=env)
            assert p.returncode == 0, p.stdout + p.stderr
            sc.drain_producer()
            sc.finish(timeout=300)
        finally:
            sc.stop_all()
    finally:
        h.BOOTSTRAP = saved
        subprocess.run([kafka, "down"], capture_output=True, text=True, timeout=120, env=env)
