"""Outages of the servers themselves: PostgreSQL stopped and restarted under
load, the Kafka broker restarted. Results stall, nothing is lost or doubled."""
import os
import signal
import subprocess

import pytest
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


@pytest.mark.skipif(os.environ.get("RILL_TEST_BROKER_FREEZE") != "1",
                    reason="opt-in (RILL_TEST_BROKER_FREEZE=1): after a 35 s SIGSTOP of the only "
                           "broker a changelog transaction stayed open on the broker for minutes "
                           "(LSO stuck), stalling a restore; under investigation")
def test_broker_frozen_longer_than_the_commit_call_timeout():
    # The broker stops answering (SIGSTOP) for longer than a commit call may
    # wait. The commit that was in flight times out, which is retriable: the
    # same call must be made again (an abort then fails with _CONFLICT, and so
    # did every begin after it, forever, while /healthz said ok: review
    # finding 8). After the broker is back, the thread either finishes that
    # commit or, if the coordinator aborted the transaction meanwhile, fails
    # and is restarted by its supervisor: exact either way, never stuck.
    sc = Scenario(partitions=4, workers=2, sellers=8)
    try:
        sc.start()
        sc.start_load(count=20000, rate=2000)
        time.sleep(3)
        pid = int(sh(os.path.join(LOCAL, "kafka", "kafka"), "pid", "1").strip() or 0)
        assert pid, "the broker's pid"
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(35)
        finally:
            os.kill(pid, signal.SIGCONT)
        sc.drain_producer()
        sc.finish(timeout=300)
        logs = "\n".join(w.all_logs() for w in sc.workers)
        assert "_CONFLICT" not in logs and "Conflicting" not in logs, logs[-3000:]
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
