"""A rebalance storm under load (issue 13, item 4): while input flows, the
group rebalances every 2-4 seconds, and the independent verifier then
demands exact totals in Kafka and Postgres and zero late records: the
revocation commit, task hand-over with its state and batched consumption
across rebalances. A rebalance seldom lands inside a batch call (none did
in the runs that introduced this test): test_recovery.py's batch_refetch
test forces that path.

Every rebalance is a clean one (no SIGKILL: the other crash tests kill):
  - restart: a random worker of the three gets SIGTERM, leaves the group
    (dynamic membership), and starts again: two rebalances;
  - scale:   a fourth worker joins (3 -> 4) and, a few seconds later, is
    stopped with SIGTERM (4 -> 3); it keeps its state directory between
    visits, as a pod with a persistent volume would. While it is up, a
    restart may happen among four.
A rebalance without any process exit is left out: the product has no
trigger for one, and a foreign consumer in the group would take partitions
and commit nothing.

The schedule is random, seeded (printed; RILL_STORM_SEED replays one);
RILL_STORM_SECONDS sets the length of the load (default 65 s at 2,000
events/s). The test asserts that the rebalances happened (revocations
counted in every worker's log), so it cannot pass without the storm."""
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from scenario import Scenario, h  # noqa: E402

RATE = 2000
SECONDS = int(os.environ.get("RILL_STORM_SECONDS", "65"))
MIN_REVOCATIONS = 15


def rebalance_counts(workers):
    """(assignments, revocations with partitions, of which lost) logged by
    every process every worker ran, the way test_shutdown counts them."""
    logs = "\n".join(w.all_logs() for w in workers if w.logs)
    assigned = logs.count("event=partitions_assigned")
    revoked = len(re.findall(r"event=partitions_revoked \S+ count=[1-9]", logs))
    lost = len(re.findall(r"event=partitions_revoked .*lost=1", logs))
    return assigned, revoked, lost


def test_rebalance_every_few_seconds_under_load_is_exactly_once():
    seed = int(os.environ.get("RILL_STORM_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    print(f"\nrebalance storm: seed {seed} (RILL_STORM_SEED={seed} replays the schedule)")
    # the product's default grace (10 s), as test_cluster: a worker's source
    # partitions pause during a hand-over while the others go on; event time
    # is per source partition, so that makes nothing late
    sc = Scenario(partitions=12, workers=3, sellers=16, grace_ms=10000)
    base = list(sc.workers)
    extra = sc.new_worker()
    sc.workers.append(extra)          # in the failure tails and stop_all
    actions = {"restart": 0, "scale_out": 0, "scale_in": 0}
    try:
        sc.start(0)
        sc.start(1)
        sc.start(2)
        sc.start_load(count=RATE * SECONDS, rate=RATE)
        t0 = time.monotonic()
        # bounded: the load's length plus room for a slow producer
        deadline = t0 + SECONDS * 1.5
        while sc.producer.poll() is None and time.monotonic() < deadline:
            time.sleep(rng.uniform(2, 4))
            if sc.producer.poll() is not None:
                break
            extra_up = extra.proc is not None and extra.proc.poll() is None
            if extra_up and rng.random() < 0.7:
                # 4 -> 3: it commits and hands its tasks back
                rc = extra.stop()
                assert rc == 0, f"the fourth worker's status after SIGTERM: {rc}:\n{extra.log()[-3000:]}"
                actions["scale_in"] += 1
                continue
            # random, but neither kind runs ahead of the other by more than
            # two: both happen whatever the seed
            lead = actions["restart"] - actions["scale_out"]
            if extra_up or lead <= -2 or (lead < 2 and rng.random() < 0.5):
                # a leave and a join; with the fourth worker up, among four
                w = rng.choice(base)
                rc = w.stop()
                assert rc == 0, f"status after SIGTERM: {rc}:\n{w.log()[-3000:]}"
                assert "event=shutdown_done" in w.log(), w.log()[-3000:]
                w.start().wait_ready()
                actions["restart"] += 1
            else:
                extra.start().wait_ready()      # 3 -> 4
                actions["scale_out"] += 1
        if extra.proc and extra.proc.poll() is None:
            assert extra.stop() == 0, extra.log()[-3000:]
            actions["scale_in"] += 1
        storm_s = time.monotonic() - t0
        assigned, revoked, lost = rebalance_counts(sc.workers)
        rep = sc.finish(timeout=240, keep=base)
        print(f"rebalance storm: {revoked} revocations ({lost} lost), {assigned} assignments, "
              f"{actions['restart']} restarts, {actions['scale_out']} scale-outs, "
              f"{actions['scale_in']} scale-ins in {storm_s:.0f}s of load; {sc.produced} events "
              f"produced, {rep['events']} valid, {rep['windows']} windows, exact")
        assert revoked >= MIN_REVOCATIONS, \
            f"only {revoked} revocations with partitions were logged (want >= {MIN_REVOCATIONS}): " \
            f"the storm did not happen; actions {actions}"
        assert actions["restart"] >= 2 and actions["scale_out"] >= 2, f"both kinds of rebalance: {actions}"
    finally:
        sc.stop_all()
