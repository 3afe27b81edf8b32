"""A worker cut off the network, then reconnected (issue 15).

One worker runs in its own network namespace, joined to the host by a veth
pair; the others run on the host. Under load the veth link is taken down
for longer than the session timeout (the harness sets session.timeout.ms =
6000) and than transaction.timeout.ms (10 s): the group evicts the cut-off
worker, the others take over its partitions, and the coordinator aborts its
open transaction. Then the link comes back. The cut-off worker must be
fenced in Kafka (its old transaction never commits: its commit cycle fails,
its producer is recreated or its assignment is found lost), fenced in
Postgres (the new owners took newer epochs of its aggregation partitions,
so no write with its old ones can pass: refused as epoch_lost if it tries),
rejoin by itself (the same process: no test supervisor) and the totals must
be exact, with no record late.

Everything of the network is private to the test: the namespace and the
veth pair have random names (rill-<hex>) and a random /30 in 10.213.0.0/16,
and are removed in a finally even when the test fails. The shared broker
advertises 127.0.0.1, which the namespace cannot reach, so the test runs a
private broker that listens on and advertises the host side of the veth
(deploy/local/kafka/kafka with RILL_KAFKA_HOST). The shared Postgres listens
on 127.0.0.1 only: the namespaced worker reaches it through a TcpProxy on
the host side of the veth. Needs root (ip netns, veth); skipped otherwise."""
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest


sys.path.insert(0, os.path.dirname(__file__))
from scenario import Scenario, h  # noqa: E402

KAFKA = os.path.join(h.ROOT, "deploy", "local", "kafka", "kafka")
SESSION_MS = 6000  # the harness's session.timeout.ms
T_MS = 10000       # transaction.timeout.ms, the engine's default
# How long the link stays down: longer than both, so that the group evicts
# the worker and the coordinator aborts its open transaction.
# RILL_NETCUT_S sets it (longer cuts, for exploring).
CUT_S = int(os.environ.get("RILL_NETCUT_S", "16"))
assert CUT_S * 1000 > max(SESSION_MS, T_MS), "RILL_NETCUT_S must exceed the session and transaction timeouts"


def sh(*args, timeout=30, check=True):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"{' '.join(args)}: {p.stdout}{p.stderr}"
    return p


def can_netns():
    return os.geteuid() == 0 and shutil.which("ip") is not None


class Netns:
    """A network namespace joined to the host by a veth pair in a random
    private /30: host side .1 (self.host_ip), namespace side .2 (self.ns_ip).
    cut() takes the host side of the link down: the namespace side loses its
    carrier and every packet to or from it is dropped (silence, not an
    error, as a pulled cable); heal() brings it back. close() removes the
    namespace and the pair, whatever state they are in."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.name = f"rill-{tag}"
        self.host_dev, self.ns_dev = f"rill-{tag}-h", f"rill-{tag}-n"  # <= 15 characters
        used = sh("ip", "-o", "-4", "addr", "show").stdout
        for _ in range(50):
            x, y = random.randrange(256), random.randrange(64) * 4
            self.host_ip, self.ns_ip = f"10.213.{x}.{y + 1}", f"10.213.{x}.{y + 2}"
            if f"10.213.{x}." not in used:
                break
        else:
            raise AssertionError(f"no free /30 in 10.213.0.0/16:\n{used}")
        self.created = False

    def open(self):
        self.created = True
        sh("ip", "netns", "add", self.name)
        sh("ip", "link", "add", self.host_dev, "type", "veth", "peer", "name", self.ns_dev)
        sh("ip", "link", "set", self.ns_dev, "netns", self.name)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_dev)
        sh("ip", "link", "set", self.host_dev, "up")
        self.ns("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_dev)
        self.ns("ip", "link", "set", self.ns_dev, "up")
        self.ns("ip", "link", "set", "lo", "up")
        return self

    def ns(self, *args, timeout=30):
        return sh("ip", "netns", "exec", self.name, *args, timeout=timeout)

    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def cut(self):
        sh("ip", "link", "set", self.host_dev, "down")

    def heal(self):
        sh("ip", "link", "set", self.host_dev, "up")

    def reachable(self, port, timeout=3):
        """A TCP connection from inside the namespace to host_ip:port works."""
        code = (f"import socket; socket.create_connection(({self.host_ip!r}, {port}), "
                f"timeout={timeout}).close()")
        return subprocess.run([*self.prefix(), sys.executable, "-c", code], capture_output=True,
                              timeout=timeout + 10).returncode == 0

    def close(self):
        if not self.created:
            return
        # deleting the namespace destroys its end of the pair, and with it
        # the host end; the explicit delete covers a namespace never made
        sh("ip", "netns", "delete", self.name, check=False)
        if sh("ip", "link", "show", self.host_dev, check=False).returncode == 0:
            sh("ip", "link", "delete", self.host_dev, check=False)


def free_port_pair(host):
    """An even port P such that P and P + 1 are free on host and 127.0.0.1
    (the broker's listener and its controller)."""
    for _ in range(100):
        p = random.randrange(20000, 60000, 2)
        ok = True
        for addr, port in ((host, p), ("127.0.0.1", p + 1)):
            s = socket.socket()
            try:
                s.bind((addr, port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    raise AssertionError("no free port pair for the private broker")


def agg_owned(log):
    """The aggregation partitions a worker's log says it owns at its end:
    task_created kind=aggregate minus task_closed."""
    owned = set()
    for line in log.splitlines():
        kv = dict(re.findall(r"(\w+)=(\S+)", line))
        if "event=task_created" in line and kv.get("kind") == "aggregate":
            owned.add((kv["topic"], int(kv["partition"])))
        elif "event=task_closed" in line and "topic" in kv:
            owned.discard((kv["topic"], int(kv["partition"])))
    return owned


# A host worker once exited here: its consumer's seek back after an abort
# failed at once while the rebalance that evicted the cut-off worker was
# pending (rewind_failed), and that was fatal. Now the tasks are paused and
# the loop seeks again (engine/worker.c, rewind_retry): any exit fails.


def assert_running(sc):
    """Every worker is still running: the harness restarts nobody, and
    Scenario.finish() would restart a dead worker silently."""
    for w in sc.workers:
        if w.proc.poll() is not None:
            log = w.log()
            raise AssertionError(f"worker {w.proc.pid} exited with {w.proc.returncode}:\n{log[-3000:]}")


def epochs(app):
    return {(t, p): e for t, p, e in
            h.pg("SELECT topic, partition, epoch FROM rill_sink_progress WHERE app_id = %s", (app,))}


@pytest.mark.skipif(not can_netns(), reason="needs root and iproute2 (ip netns, veth)")
def test_worker_cut_off_the_network_past_the_session_timeout_is_fenced_and_rejoins():
    net = Netns()
    run_dir = os.path.join(h.ROOT, ".run", f"netcut-{net.name}")
    kenv = None
    proxy = None
    saved = h.BOOTSTRAP
    try:
        try:
            net.open()
        except AssertionError as e:
            if "Operation not permitted" in str(e):
                pytest.skip(f"no network namespaces here: {e}")
            raise
        port = free_port_pair(net.host_ip)
        kenv = dict(os.environ, RILL_RUN_DIR=run_dir, RILL_KAFKA_PORT=str(port),
                    RILL_KAFKA_HOST=net.host_ip)
        p = subprocess.run([KAFKA, "up"], capture_output=True, text=True, timeout=240, env=kenv)
        assert p.returncode == 0, p.stdout + p.stderr
        h.BOOTSTRAP = subprocess.run([KAFKA, "bootstrap-servers"], capture_output=True, text=True,
                                     env=kenv, timeout=30).stdout.strip()
        assert h.BOOTSTRAP == f"{net.host_ip}:{port}", h.BOOTSTRAP
        assert net.reachable(port), f"the private broker at {h.BOOTSTRAP} from namespace {net.name}"
        pg_port = int(h.PG_DSN.split("port=")[1].split()[0])
        proxy = h.TcpProxy("127.0.0.1", pg_port, bind_host=net.host_ip)
        assert net.reachable(proxy.port), "the Postgres proxy from the namespace"

        # keyed input: every input partition is an aggregation task, so the
        # cut-off worker surely owns some (with a repartition hop,
        # cooperative-sticky may leave it only source tasks, which have no
        # Postgres epoch to fence)
        sc = Scenario(partitions=6, workers=2, sellers=12, keyed=True)  # the two on the host
        n = sc.names
        cutoff = h.Aggregator(n["app"], *sc.flags, input_topic=n["input"], output_topic=n["output"],
                              table=n["table"], pg_dsn=proxy.dsn(h.PG_DSN), env_extra=proxy.pg_env(),
                              prefix=net.prefix())
        sc.workers.insert(0, cutoff)
        others = sc.workers[1:]
        try:
            sc.start()
            before = [w.proc.pid for w in sc.workers]
            # `ip netns exec` execs the program: the pid is the aggregator's
            with open(f"/proc/{cutoff.proc.pid}/comm") as f:
                assert f.read().strip().startswith("sales-aggrega")
            sc.start_load(count=45000, rate=1500)  # 30 s: flows through the cut
            # it owns aggregation partitions and has written with their epochs
            h.wait_until(lambda: agg_owned(cutoff.log()) and
                         all(k in epochs(n["app"]) for k in agg_owned(cutoff.log())),
                         60, "the namespaced worker to own aggregation partitions with epochs")
            time.sleep(3)
            owned = agg_owned(cutoff.log())
            old = {k: e for k, e in epochs(n["app"]).items() if k in owned}
            mark_cut = len(cutoff.log())
            mark_others = [len(w.log()) for w in others]
            net.cut()
            t_cut = time.monotonic()
            try:
                # the others take over its partitions, and with them newer
                # Postgres epochs: from now on a write with its old ones
                # matches no progress row (refused)
                h.wait_until(lambda: all(epochs(n["app"]).get(k, 0) > e for k, e in old.items()),
                             CUT_S + 20, "the other workers to take the cut-off worker's partitions "
                             f"with newer epochs (its epochs {old})")
                assert any("event=partitions_assigned" in w.log()[m:] for w, m in zip(others, mark_others))
                assert_running(sc)
                time.sleep(max(0.0, CUT_S - (time.monotonic() - t_cut)))
            finally:
                net.heal()
            t_heal = time.monotonic()
            mark_heal = len(cutoff.log())
            # it rejoins by itself: the same process gets partitions again
            h.wait_until(lambda: "event=partitions_assigned" in cutoff.log()[mark_heal:] or
                         cutoff.proc.poll() is not None, 90, "the cut-off worker to rejoin")
            rejoin_s = time.monotonic() - t_heal
            assert_running(sc)
            sc.drain_producer()
            try:
                rep = sc.finish(timeout=300)
            except AssertionError:
                assert_running(sc)  # which worker exited, and why
                raise
            for w, pid in zip(sc.workers, before):
                assert w.proc.pid == pid and w.proc.poll() is None, \
                    f"worker {pid} is not the same running process:\n{w.log()[-3000:]}"
            assert sc.supervisor_restarts == 0
            after = cutoff.log()[mark_cut:]
            # fenced in Kafka: the transaction it had open when cut off never
            # committed -- its commit cycle failed (the coordinator aborted it
            # and bumped the producer's epoch: the producer is recreated) or
            # its assignment was found lost before it could commit
            assert ("event=commit_failed" in after or "event=thread_recovering" in after or
                    re.search(r"event=partitions_revoked .*lost=1", after)), after[-4000:]
            assert "unrecoverable" not in after, after[-4000:]
            # back in the group with work: owns partitions again at the end
            assert cutoff.log()[mark_heal:].count("event=task_created") > 0, after[-4000:]
            print(f"netcut: cut {CUT_S} s, rejoined {rejoin_s:.1f} s after the link came back; "
                  f"old epochs {old}; windows {rep['windows']}; "
                  f"recovering={after.count('event=thread_recovering')} "
                  f"epoch_lost={after.count('event=epoch_lost')} "
                  f"lost={len(re.findall(r'partitions_revoked .*lost=1', after))}")
        finally:
            sc.stop_all()
    finally:
        h.BOOTSTRAP = saved
        if proxy:
            proxy.close()
        if kenv:
            subprocess.run([KAFKA, "down"], capture_output=True, text=True, timeout=120, env=kenv)
            shutil.rmtree(run_dir, ignore_errors=True)
        net.close()
