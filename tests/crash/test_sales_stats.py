"""sales-stats' crash scenario: killed in the commit that closes its first
hopping windows (fail point closing_windows: their results are being
produced into the open transaction, nothing of it is committed), then
restarted from its store and the changelog; every hopping window is exact
in Kafka and in Postgres, none is emitted twice."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402
from stats_harness import G, W, check, events_for, stats, stats_truth  # noqa: E402


def test_killed_while_closing_its_first_windows_replays_to_the_same_windows():
    names = h.app_topics(partitions=2)
    base = h.aligned_base(W, minutes_ago=30)
    ev = events_for(base, n=120)
    agg = stats(names, env_extra={"RILL_FAULT": "closing_windows"}).start().wait_ready()
    h.produce(names["input"], [(None, h.event(s, a, t // 1000)) for s, a, t in ev[0::2]], partition=0)
    h.produce(names["input"], [(None, h.event(s, a, t // 1000)) for s, a, t in ev[1::2]], partition=1)
    end = base + 200000
    h.close_every_partition(names["input"], "closer", end // 1000)
    rc = agg.wait_exit(90)
    assert rc == -9 and "fault_fired point=closing_windows" in agg.log(), agg.log()[-2000:]
    agg.env_extra = {}
    agg.start().wait_ready()
    check(names, stats_truth(ev, end - G))
    assert h.dlq(names["input"] + "-dlq") == []
    assert agg.stop() == 0
