"""Crash-scenario scaffolding: a set of aggregator workers on fresh topics, a
live producer, and the end-of-scenario check by the independent verifier."""
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
import rill_harness as h  # noqa: E402
import verifier  # noqa: E402

W = 5000
G = 20000


class Scenario:
    def __init__(self, partitions=4, workers=1, keyed=False, sellers=8, extra=(), window_ms=W, grace_ms=G,
                 replication=1):
        self.names = h.app_topics(partitions, prefix="c", replication=replication)
        self.keyed = keyed
        self.window_ms, self.grace_ms = window_ms, grace_ms
        self.sellers = [f"seller-{i + 1}" for i in range(sellers)]
        self.base_s = h.aligned_base(window_ms, minutes_ago=30) // 1000
        self.flags = ["--window-size-ms", str(window_ms), "--grace-ms", str(grace_ms),
                      "--commit-interval-ms", "100", *(["--input-keyed"] if keyed else []), *extra]
        self.workers = [self.new_worker() for _ in range(workers)]
        self.producer = None
        self.produced = 0
        self.restore_logs = []
        self.supervisor_restarts = 0
        self.in_order = True   # a test that feeds records out of order clears it

    def new_worker(self):
        n = self.names
        return h.Aggregator(n["app"], *self.flags, input_topic=n["input"], output_topic=n["output"],
                            table=n["table"])

    # ---- load -----------------------------------------------------------------
    def start_load(self, count, rate, seed=1):
        """Synthetic event time: base + 2 ms per event, so event time advances
        steadily (about 2 s of event time per 1000 events)."""
        args = [os.path.join(h.BUILD, "sales-producer"), "--bootstrap-servers", h.BOOTSTRAP,
                "--topic", self.names["input"], "--count", str(count), "--rate", str(rate),
                "--seed", str(seed), *(["--num-sellers", str(len(self.sellers))] if len(self.sellers) > 100
                                       else ["--sellers", ",".join(self.sellers)]), "--quiet",
                "--start-ts", str(self.base_s + self.produced * 2 // 1000), "--ts-step-ms", "2"]
        if self.keyed:
            args.append("--keyed")
        self.producer = subprocess.Popen(args, stderr=subprocess.PIPE)
        self.produced += count
        return self.producer

    def wait_load(self, timeout=300):
        _, err = self.producer.communicate(timeout=timeout)
        assert self.producer.returncode == 0, f"producer failed: {err.decode()[-500:]}"

    def drain_producer(self, timeout=120):
        """Let the producer finish; after a broker outage it may have failed
        part-way, which is fine: the verifier reads what the topic holds."""
        try:
            self.producer.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.producer.kill()
        self.producer = None

    def load_then_stop(self, count, rate=4000):
        """Start the (single) worker, load count events, wait until they are
        consumed, stop the worker cleanly; returns it."""
        self.start()
        self.start_load(count=count, rate=rate)
        self.wait_load()
        h.wait_consumed(self.names["app"], [self.names["input"]])
        w = self.workers[0]
        assert w.stop() == 0
        return w

    def produce_raw(self, records):
        h.produce(self.names["input"], records)

    # ---- workers --------------------------------------------------------------------
    def start(self, i=None, env_extra=None, wait=True):
        for w in (self.workers if i is None else [self.workers[i]]):
            w.start(env_extra=env_extra)
            if wait:
                w.wait_ready()
        return self

    def running(self):
        return [w for w in self.workers if w.proc and w.proc.poll() is None]

    def wait_died(self, w, timeout=90):
        rc = w.wait_exit(timeout)
        assert rc is not None, f"worker did not die at the fault point within {timeout}s:\n{w.log()[-2000:]}"
        assert rc == -signal.SIGKILL, f"worker exited with {rc}, not killed at the fault point:\n{w.log()[-2000:]}"
        assert "event=fault_fired" in w.log(), w.log()[-2000:]

    # ---- the end ---------------------------------------------------------------------
    def wait_consumed(self, topics, timeout, tick):
        """h.wait_consumed; on a timeout the failure carries what every worker
        logged last (librdkafka's lines left out), so that a stall seen only
        on CI can be read there."""
        try:
            h.wait_consumed(self.names["app"], topics, timeout=timeout, tick=tick)
        except AssertionError as e:
            tails = []
            for w in self.workers:
                lines = [l for l in (w.log() if w.log_path else "").splitlines()
                         if "event=librdkafka" not in l and "event=commit " not in l]
                tails.append(f"--- worker {w.proc.pid if w.proc else None}, last lines:\n"
                             + "\n".join(l[:300] for l in lines[-25:]))
            raise AssertionError(f"{e}\n" + "\n".join(tails)) from None

    def finish(self, timeout=180, keep=None, supervise=False):
        """Ensure every worker runs, let them consume everything, close the
        windows with one late-time event per seller, wait for the results, and
        return the verifier's report (asserting it is clean). keep: the
        workers that must be running at the end (default all; dead ones are
        restarted first). A worker that exits while the scenario finishes
        fails the test: workers recover in-process from what can be
        recovered (issue 15); supervise=True restarts it instead, as
        Kubernetes would, for a test that kills workers on purpose then."""
        if self.producer and self.producer.poll() is None:
            self.wait_load()
        keep = self.workers if keep is None else keep
        for w in keep:
            if not w.proc or w.proc.poll() is not None:
                # killed or stopped by the test: started again; but a worker
                # that ended itself (a fatal error) fails the test
                rc = w.proc.returncode if w.proc else None
                assert supervise or rc in (None, 0, -signal.SIGKILL, -signal.SIGTERM), \
                    f"a worker ended itself with status {rc}:\n{w.log()[-3000:]}"
                w.start()
        for w in keep:
            w.wait_ready()

        def tick():
            for w in keep:
                if w.proc.poll() is not None:
                    assert supervise, f"a worker exited (status {w.proc.returncode}) while the " \
                        f"scenario finished:\n{w.log()[-3000:]}"
                    self.supervisor_restarts += 1
                    w.start()
        topics = [self.names["input"]] + ([] if self.keyed else [f"{self.names['app']}-repartition"])
        self.wait_consumed(topics, timeout, tick)
        end_s = self.base_s + self.produced * 2 // 1000 + (self.window_ms + self.grace_ms) // 1000 + 5
        # A source partition that was caught up and quiet for idle.timeout.ms
        # advanced to wall-clock time (the idle rule), which is past the
        # synthetic event time of the load: a closing event at that time
        # would be late there. At wall-clock time it closes everything.
        end_s = max(end_s, int(time.time()) + 1)
        if self.keyed:
            h.produce(self.names["input"], [(s.encode(), h.event(s, 1, end_s)) for s in self.sellers])
        else:
            # every source partition must move past the windows (stream time
            # is the minimum over them): one closing event in each
            for p in range(len(h.end_offsets(self.names["input"]))):
                h.produce(self.names["input"], [(None, h.event(self.sellers[p % len(self.sellers)], 1, end_s))],
                          partition=p)
        self.wait_consumed(topics, timeout, tick)
        deadline = time.monotonic() + 60
        while True:
            rep = self.verify()
            missing = [p for p in rep["problems"] if "missing window" in p or "postgres:" in p]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert not rep["problems"], "verifier found discrepancies:\n" + "\n".join(rep["problems"][:30]) + \
            "\n--- worker logs (tail) ---\n" + "\n".join(w.all_logs()[-3000:] for w in self.workers)
        assert rep["windows"] > 0 and rep["kafka_results"] == rep["windows"]
        if self.in_order:
            # live input in order per input partition: no failure may make a
            # record late (event time is per source partition)
            assert rep["late"] == 0, f"{rep['late']} records dead-lettered as late by failures"
        return rep

    def verify(self):
        n = self.names
        return verifier.verify(n["input"], n["output"], n["input"] + "-dlq", n["table"], n["app"],
                               self.window_ms, self.grace_ms, self.keyed)

    def stop_all(self):
        for w in self.workers:
            try:
                w.stop()
            except AssertionError:
                w.kill()
        if self.producer and self.producer.poll() is None:
            self.producer.kill()

    def restores(self):
        import re
        out = []
        for w in self.workers:
            for line in w.all_logs().splitlines():
                if "event=restore_done" in line or "event=task_restored" in line:
                    out.append(dict(re.findall(r"(\w+)=(\S+)", line)))
        return out


def pick(seq, rng=random.Random(5)):
    return rng.choice(seq)
