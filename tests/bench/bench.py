"""rill vs Kafka Streams and Flink, side by side, on the same broker, input and machine.

Systems (--systems): rill; kstreams, the Kafka Streams peer with
exactly_once_v2; kstreams-txn, the same peer with transactional state stores
(KIP-892, enable.transactional.statestores=true), in the default list when
the peer's Kafka Streams version has them (4.4 and later); flink, the
original design's Flink SQL job (Java Table API, a local mini-cluster in one
JVM, exactly-once Kafka sink, JDBC upsert into Postgres), in the default list
when its jar is built (tests/bench/run sets RILL_BENCH_FLINK_SKIPPED when its
build failed, and the run goes on without it). RILL_BENCH_RILL_FLAGS adds
flags to every rill worker (an experiment: e.g. "--memory-limit-mb 160
--commit-interval-ms 1000"; the figures are then not the standard run's).

Run through tests/bench/run, which sources $RILL_RUN_DIR/env (deploy/local/up)
and builds the peer jars. For each input profile the input topic is preloaded
once with sales-producer (synthetic event time, so windows close), then each
system reads the SAME topic under a fresh application id:

  throughput   events / wall second from process start until the group's
               committed offsets cover the input topic and the repartition
               topic (results commit in the same transaction as the offsets);
  CPU          events per CPU-second (utime + stime of the worker process,
               /proc/<pid>/stat, all its threads);
  memory       peak RSS (VmHWM, /proc/<pid>/status) of the worker process;
  restore      stop the worker, delete its state directory, start it again:
               changelog records restored / wall time of the restore, from
               the workers' own restore log lines (not for Flink: its state
               lives in its checkpoints, which that deletes);
  correctness  every output topic (read_committed) against the ground truth
               computed here from the input, against rill's, and the Postgres
               tables of rill and Flink against their output topics;
  ceilings     the kcat consume ceiling: kcat reading the whole input topic,
               one untimed warm-up read then three timed (--ceiling-runs),
               the best counts, the spread is reported; the two-hop ceiling
               (consume, produce, consume): kcat -C | kcat -P into a fresh
               repartition topic read concurrently by a third kcat, best of
               three (--no-two-hop skips it);
  scaling      (--scaling; default on in full mode, off with --quick) rill
               alone with 1, 2, 3 worker processes in one group on the first
               profile's topic, each output verified like the main runs'.

Then, once, latency: a live producer at a fixed rate with sale_ts = now; for
each result the time from the window's close (end + grace, wall clock) until
it is visible in the output topic (every system) and in Postgres (rill and
Flink: the Kafka Streams peer does not write Postgres); and the worker's CPU
from the producer's start to its end (the steady part, start-up left out).
Targets: issue 13's (targets()).

Every wait is bounded. Writes docs/benchmarks.json and docs/benchmarks.md
unless --no-docs.
"""
import argparse
import atexit
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from rill_harness import wait_until  # noqa: E402  (bounded polling, shared with the tests)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("RILL_BUILD_DIR", os.path.join(ROOT, "build"))
PEER_DIR = os.path.join(ROOT, "tests", "bench", "peers", "kafka-streams")
PEER_JAR = os.path.join(PEER_DIR, "target", "sales-aggregator-kstreams.jar")
# rocksdbjni that each Kafka Streams release depends on (mvn dependency:tree)
ROCKSDBJNI = {"4.4.0": "10.1.3", "3.9.1": "7.9.2"}
KS_SYSTEMS = ("kstreams", "kstreams-txn")
FLINK_DIR = os.path.join(ROOT, "tests", "bench", "peers", "flink")
FLINK_JAR = os.path.join(FLINK_DIR, "target", "sales-aggregator-flink.jar")
ALL_SYSTEMS = ("rill",) + KS_SYSTEMS + ("flink",)


def flink_versions():
    """{flink, kafka connector, jdbc connector, postgresql driver} of the Flink peer's pom.xml."""
    with open(os.path.join(FLINK_DIR, "pom.xml")) as f:
        text = f.read()
    out = {}
    for key, prop in (("flink", "flink.version"), ("kafka_connector", "flink.kafka.version"),
                      ("jdbc_connector", "flink.jdbc.version"), ("postgresql_jdbc", "postgresql.version")):
        m = re.search(rf"<{re.escape(prop)}>([^<]+)</{re.escape(prop)}>", text)
        out[key] = m.group(1) if m else "?"
    return out


def flink_available():
    """(True, "") when the Flink peer can run, else (False, why)."""
    if os.environ.get("RILL_BENCH_FLINK_SKIPPED"):
        return False, os.environ["RILL_BENCH_FLINK_SKIPPED"]
    if not os.path.exists(FLINK_JAR):
        return False, f"{FLINK_JAR} is missing (hint: mvn -q -f tests/bench/peers/flink/pom.xml package)"
    return True, ""


def peer_kafka_version():
    """kafka.version of the peer's pom.xml (the Kafka Streams it is built with)."""
    with open(os.path.join(PEER_DIR, "pom.xml")) as f:
        m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", f.read())
    return m.group(1) if m else ""


def has_txn_stores(version):
    """Transactional state stores (KIP-892) came with Kafka Streams 4.4."""
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (4, 4)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def env(name):
    v = os.environ.get(name)
    if not v:
        sys.exit(f"bench: {name} is not set (hint: deploy/local/up, then source $RILL_RUN_DIR/env; "
                 f"tests/bench/run does it)")
    return v


BOOTSTRAP = env("RILL_BOOTSTRAP_SERVERS")
PG_DSN = env("RILL_PG_DSN")
PG_JDBC = {}  # the Flink peer's connection: url, user, password (pg_jdbc(), when Flink runs)


def pg_jdbc():
    """PG_DSN as JDBC sees it: the URL and the user and password libpq used
    (the password may come from PGPASSFILE, which pgjdbc does not read)."""
    try:
        with psycopg.connect(PG_DSN, connect_timeout=5) as c:
            i = c.info
            host, port, db, user, pw = i.host, i.port, i.dbname, i.user, i.password or ""
    except psycopg.Error as e:
        sys.exit(f"bench: cannot connect to Postgres ({PG_DSN}) for the Flink peer: {e}")
    if host.startswith("/"):
        sys.exit(f"bench: the Flink peer needs Postgres over TCP, RILL_PG_DSN names a socket ({host}) "
                 "(hint: host=127.0.0.1 port=...)")
    PG_JDBC.update(url=f"jdbc:postgresql://{host}:{port}/{db}", user=user, password=pw)
TAG = uuid.uuid4().hex[:6]
WORK = tempfile.mkdtemp(prefix="rill-bench-")


def say(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


# ---- processes -----------------------------------------------------------------------

_procs = []


def _on_term(sig, frame):
    raise SystemExit(128 + sig)


signal.signal(signal.SIGTERM, _on_term)


@atexit.register
def _cleanup():
    for p in _procs:
        if p.poll() is None:
            p.kill()


def spawn(args, log_path, env_extra=None):
    e = dict(os.environ)
    e.update(env_extra or {})
    p = subprocess.Popen(args, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=e,
                         start_new_session=True)
    _procs.append(p)
    return p


def stop(p, timeout=60):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def cpu_seconds(pid):
    """utime + stime of the process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def log_text(path):
    with open(path, errors="replace") as f:
        return f.read()


# ---- Kafka helpers -----------------------------------------------------------------------

def create_topics(spec, config=None):
    a = AdminClient({"bootstrap.servers": BOOTSTRAP})
    futs = a.create_topics([NewTopic(n, p, 1, config=config or {}) for n, p in spec.items()],
                           operation_timeout=15)
    for f in futs.values():
        f.result(timeout=30)
    wait_until(lambda: all(n in a.list_topics(timeout=10).topics for n in spec), 30, "topics", 0.2)


def topic_exists(name):
    a = AdminClient({"bootstrap.servers": BOOTSTRAP})
    return name in a.list_topics(timeout=10).topics


def delete_topics(names):
    """Best effort (the two-hop ceiling's copies of the input: disk, not correctness)."""
    a = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for n, f in a.delete_topics(list(names), operation_timeout=15).items():
        try:
            f.result(timeout=30)
        except Exception as e:  # noqa: BLE001 (a leftover topic is only disk)
            say(f"deleting {n}: {e}")


class Probe:
    """Committed offsets of one group against the end offsets of topics, with
    long-lived consumers (creating one per check costs more than the check)."""

    def __init__(self, group):
        self.group = group
        self.c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group,
                           "enable.auto.commit": False})
        self.ends = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"bench-probe-{TAG}",
                              "enable.auto.commit": False, "isolation.level": "read_committed",
                              "enable.partition.eof": True})
        self.parts = {}

    def partitions(self, topic):
        if topic not in self.parts:
            md = self.c.list_topics(topic, timeout=10).topics.get(topic)
            if md is None or not md.partitions:
                return []
            self.parts[topic] = sorted(md.partitions)
        return self.parts[topic]

    def end_offsets(self, topic):
        """The end offsets, or None when a read times out (polled again)."""
        try:
            return {p: self.ends.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                    for p in self.partitions(topic)}
        except KafkaException as e:
            if e.args and e.args[0].code() == KafkaError._TIMED_OUT:
                say(f"end offsets of {topic} not readable yet ({e.args[0].str()}); polling again")
                return None
            raise

    def committed(self, topic):
        """The group's committed offsets, or {} (nothing known yet) when the
        read times out: a stable read waits while a transaction's offsets are
        pending, and a group committing every 100 ms can keep one pending for
        the whole 10 s (seen in a full run, at the closing events: the run
        died there). The callers poll again within their own bound."""
        try:
            offs = self.c.committed([TopicPartition(topic, p) for p in self.partitions(topic)], timeout=10)
        except KafkaException as e:
            if e.args and e.args[0].code() in (KafkaError._TIMED_OUT, KafkaError.UNSTABLE_OFFSET_COMMIT):
                say(f"{self.group}: committed offsets of {topic} not readable yet ({e.args[0].str()}); polling again")
                return {}
            raise
        return {tp.partition: tp.offset for tp in offs}

    def consumed(self, topic, transactional):
        """True when no record lies beyond the group's committed offsets. A
        transactional topic ends in control markers: once every committed
        offset is within one of the end the last record was followed by its
        commit marker (the topic's producers finished with the input); a
        larger small gap (abort markers) is checked for records, all
        partitions at once."""
        parts = self.partitions(topic)
        if not parts:
            return False
        ends, com = self.end_offsets(topic), self.committed(topic)
        if ends is None:
            return False
        gaps = []
        for p in parts:
            e, c = ends[p], com.get(p, -1)
            if e == 0 or c >= e or (transactional and c >= 0 and c >= e - 1):
                continue
            if not transactional or c < 0 or e - c > 3:
                return False
            gaps.append((p, c, e))
        if gaps:
            now = time.monotonic()
            if now - getattr(self, "_last_gap_check", 0) < 1.0:
                return False
            self._last_gap_check = now
            return self.records_in_gaps(topic, gaps) == 0
        return True

    def records_in_gaps(self, topic, gaps):
        self.ends.assign([TopicPartition(topic, p, c) for p, c, _ in gaps])
        end_of = {p: e for p, _, e in gaps}
        left, n, deadline = set(end_of), 0, time.monotonic() + 5
        while left and time.monotonic() < deadline:
            m = self.ends.poll(0.1)
            if m is None:
                continue
            if m.error():
                if m.error().code() == -191 and m.offset() >= end_of[m.partition()]:
                    left.discard(m.partition())
                continue
            if m.offset() < end_of[m.partition()]:
                n += 1
            else:
                left.discard(m.partition())
        self.ends.unassign()
        return n if not left else max(n, 1)

    def close(self):
        self.c.close()
        self.ends.close()


def read_all(topic, isolation="read_committed", timeout=600):
    """Every record value (and key) of a topic, up to the end offsets at call time."""
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "enable.partition.eof": True, "fetch.max.bytes": 52428800})
    parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(topic, p, -2) for p in parts])
    done = {p for p in parts if ends[p] == 0}
    out = []
    deadline = time.monotonic() + timeout
    while len(done) < len(parts):
        if time.monotonic() > deadline:
            c.close()
            raise RuntimeError(f"reading {topic}: end not reached in {timeout}s")
        for m in c.consume(10000, 0.5):
            if m.error():
                if m.error().code() == -191 and m.offset() >= ends[m.partition()]:
                    done.add(m.partition())
                continue
            out.append((m.key(), m.value()))
    c.close()
    return out


# ---- the systems ------------------------------------------------------------------------------

class Worker:
    """One worker process (rill's sales-aggregator, the Kafka Streams peer or the Flink peer)."""

    def __init__(self, system, app, input_topic, output_topic, window_ms, grace_ms, threads, table=None):
        self.system, self.app = system, app
        # kind: the program (rill, the Kafka Streams peer, the Flink peer); system: the variant
        self.kind = system if system in ("rill", "flink") else "kstreams"
        self.txn_stores = system == "kstreams-txn"
        self.input, self.output = input_topic, output_topic
        self.window_ms, self.grace_ms, self.threads = window_ms, grace_ms, threads
        self.table = table
        self.state_dir = tempfile.mkdtemp(prefix=f"{system}-state-", dir=WORK)
        self.proc, self.log_path, self.t_start = None, None, None

    @property
    def repartition_topic(self):
        """The topic between the two stages, None for Flink (its shuffle is in memory)."""
        if self.kind == "flink":
            return None
        return f"{self.app}-repartition" if self.system == "rill" else f"{self.app}-by-seller-repartition"

    def args(self):
        if self.system == "rill":
            return [os.path.join(BUILD, "sales-aggregator"), "--application-id", self.app,
                    "--bootstrap-servers", BOOTSTRAP, "--pg-dsn", PG_DSN, "--pg-table", self.table,
                    "--state-dir", self.state_dir, "--input-topic", self.input,
                    "--output-topic", self.output, "--dlq-topic", f"{self.app}-dlq",
                    "--window-size-ms", str(self.window_ms), "--grace-ms", str(self.grace_ms),
                    "--commit-interval-ms", "100", "--num-stream-threads", str(self.threads),
                    # windows close by event time only, as the ground truth and
                    # the peers close them: rill's idle rule (30 s) would close
                    # the last windows by the wall clock while a 10M-event
                    # verification reads the outputs (seen: 6,312 windows
                    # beyond the truth's 60,000, in every 10M run)
                    "--idle-timeout-ms", "0",
                    # extra flags for one experiment (e.g. a small memory limit)
                    *os.environ.get("RILL_BENCH_RILL_FLAGS", "").split()]
        if self.kind == "flink":
            # parallelism = stream threads; checkpoint interval = the others' commit interval
            return ["java", "-jar", FLINK_JAR, BOOTSTRAP, self.app, self.input, self.output,
                    str(self.window_ms), str(self.grace_ms), str(self.threads), self.state_dir,
                    PG_JDBC["url"], self.table, "100"]
        return ["java", "-jar", PEER_JAR, BOOTSTRAP, self.app, self.input, self.output,
                str(self.window_ms), str(self.grace_ms), str(self.threads), self.state_dir,
                "true" if self.txn_stores else "false"]

    def start(self, label):
        self.log_path = os.path.join(WORK, f"{self.app}-{label}.log")
        self.t_start = time.monotonic()
        self.t_start_wall = time.time()
        extra = {"PGUSER": PG_JDBC["user"], "PGPASSWORD": PG_JDBC["password"]} if self.kind == "flink" else None
        self.proc = spawn(self.args(), self.log_path, extra)
        return self

    def log(self):
        return log_text(self.log_path)

    def alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.system} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return True

    def ready(self):
        self.alive()
        if self.system == "rill":
            return "event=partitions_assigned" in self.log()
        return "state=RUNNING" in self.log()

    def stop(self):
        stop(self.proc)

    def wipe_state(self):
        shutil.rmtree(self.state_dir, ignore_errors=True)
        os.makedirs(self.state_dir)

    def restore_stats(self):
        """(records, wall seconds from the first restore start to the last end, lines)."""
        spans, records = [], 0
        for line in self.log().splitlines():
            kv = dict(re.findall(r"(\w+)=(\S+)", line))
            if self.system == "rill" and kv.get("event") == "task_restored":
                end = datetime.datetime.strptime(kv["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                el = int(kv["elapsed_ms"]) / 1000.0
                spans.append((end - el, end))
                records += int(kv["records"])
            elif self.kind == "kstreams" and kv.get("event") == "restore_end":
                end = int(kv["t_ms"]) / 1000.0
                el = max(int(kv["elapsed_ms"]), 0) / 1000.0
                spans.append((end - el, end))
                records += int(kv["records"])
        if not spans:
            return 0, 0.0, 0
        return records, max(e for _, e in spans) - min(s for s, _ in spans), len(spans)


# ---- input ------------------------------------------------------------------------------------

def preload(topic, events, sellers, partitions, start_s, per_s, window_ms, grace_ms, seed=42):
    """The input topic, once: per_s events per second of event time from
    start_s (one sales-producer run per event-second, random partition per
    record), then closing events whose time closes every window before them.

    Why seconds of many events rather than a step per event: a consumer takes
    a partition in chunks (one fetch is up to 1 MB, ~13,000 events), and the
    aggregation's stream time is the largest event time seen; if event time
    advanced 1 ms per event (12 ms per record within one of 12 partitions),
    one chunk would span 160 s of event time and most records of the other
    partitions would arrive after their window closed (late, dropped) in both
    systems. At 30,000 events per event-second a chunk spans about 5 s.

    The grace is 60 s (--grace-ms): the two stream threads of a worker
    consume their source partitions independently, and under a backlog one
    can run a second or two ahead of the other (30,000-60,000 events, 1-2 s
    of event time per 30,000). With a 10 s grace the 10-million-event run
    dead-lettered 7% of its records as late in rill, and Kafka Streams dropped
    a similar share, so neither output matched the ground truth; 60 s leaves
    room for about 1.8 million events of drift."""
    create_topics({topic: partitions})
    t0 = time.monotonic()
    secs = (events + per_s - 1) // per_s
    for i in range(secs):
        n = min(per_s, events - i * per_s)
        args = [os.path.join(BUILD, "sales-producer"), "--bootstrap-servers", BOOTSTRAP, "--topic", topic,
                "--count", str(n), "--rate", "0", "--seed", str(seed + i), "--num-sellers", str(sellers),
                "--start-ts", str(start_s + i), "--ts-step-ms", "0", "--quiet",
                "-X", "sticky.partitioning.linger.ms=0", "-X", "linger.ms=20"]
        subprocess.run(args, check=True, timeout=600, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0, start_s + secs - 1


def produce_closing(topic, sellers, last_s, window_ms, grace_ms, seed=7):
    """Closing events (amount 1) at a time that closes every window of the
    preload: random sellers, many per task (stream time is per task). They are
    produced only after every system has consumed the preload: read in the
    same chunk as data of other partitions, they would make that data late."""
    close_s = last_s + (window_ms + grace_ms) // 1000 + 5
    args = [os.path.join(BUILD, "sales-producer"), "--bootstrap-servers", BOOTSTRAP, "--topic", topic,
            "--count", str(max(200, sellers)), "--rate", "0", "--num-sellers", str(sellers), "--quiet",
            "--seed", str(seed), "--start-ts", str(close_s), "--ts-step-ms", "0",
            "--min-amount", "1", "--max-amount", "1", "-X", "sticky.partitioning.linger.ms=0"]
    subprocess.run(args, check=True, timeout=600, stderr=subprocess.DEVNULL)
    return max(200, sellers)


def ground_truth(topic, window_ms, grace_ms):
    """{(seller, window_start_ms): (sum, count)} of the windows closed by the
    final event time, computed from the input topic alone (no lateness: the
    truth of the data, not of any engine's arrival order)."""
    t = {}
    max_ts = -1
    n = bad = 0
    for _, v in read_all(topic):
        n += 1
        try:
            d = json.loads(v)
            s, a, ts = d["seller_id"], d["amount_usd"], d["sale_ts"] * 1000
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        max_ts = max(max_ts, ts)
        ws = ts - ts % window_ms
        c = t.get((s, ws))
        t[(s, ws)] = (a, 1) if c is None else (c[0] + a, c[1] + 1)
    closed = {k: v for k, v in t.items() if k[1] + window_ms + grace_ms <= max_ts}
    return closed, n, bad


def output_results(topic):
    got, dup = {}, 0
    for k, v in read_all(topic):
        r = json.loads(v)
        key = (r["seller_id"], r["window_start_ms"])
        if key in got:
            dup += 1
        got[key] = (r["total_amount_usd"], r["sales_count"])
    return got, dup


def compare(got, want):
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    wrong = [k for k in want if k in got and got[k] != want[k]]
    return {"expected": len(want), "got": len(got), "missing": len(missing), "unexpected": len(extra),
            "wrong": len(wrong), "equal": not missing and not extra and not wrong,
            "examples": [str(x) for x in (missing[:2] + extra[:2] + wrong[:2])]}


def pg_rows(table):
    try:
        with psycopg.connect(PG_DSN, connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute(f'SELECT seller_id, (extract(epoch from window_start)*1000)::bigint, '
                        f'total_amount_usd, sales_count FROM "{table}"')
            return {(r[0], r[1]): (r[2], r[3]) for r in cur.fetchall()}
    except psycopg.Error as e:
        say(f"postgres: {e}")
        return {}


def count_records(topic):
    if not topic_exists(topic):
        return 0
    return len(read_all(topic, timeout=120))


# ---- measurements -------------------------------------------------------------------------------

def all_consumed(probe, w, topic):
    """The group's committed offsets cover the input and (rill, Kafka Streams) the repartition topic."""
    if not probe.consumed(topic, False):
        return False
    return w.repartition_topic is None or probe.consumed(w.repartition_topic, True)


def wait_consumed(w, topic, timeout):
    """w: a worker, or the workers of one group (the scaling runs)."""
    ws = w if isinstance(w, list) else [w]
    probe = Probe(ws[0].app)
    try:
        deadline = time.monotonic() + timeout
        while not all_consumed(probe, ws[0], topic):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ws[0].app} did not consume {topic} within {timeout}s")
            for x in ws:
                x.alive()
            time.sleep(0.1)
    finally:
        probe.close()


def run_throughput(system, prof, threads, timeout):
    app = f"bench-{system}-{prof['name']}-{TAG}"
    out = f"{app}-out"
    create_topics({out: prof["partitions"]})
    w = Worker(system, app, prof["topic"], out, prof["window_ms"], prof["grace_ms"], threads,
               table=f"bench_{prof['name']}_{TAG}".replace("-", "_"))
    probe = Probe(app)
    say(f"{system}: throughput on {prof['topic']} ({prof['total']} events), app {app}")
    w.start("run")
    t_first = None
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{system} did not consume {prof['topic']} within {timeout}s")
            w.alive()
            if t_first is None and any(o > 0 for o in probe.committed(prof["topic"]).values()):
                t_first = time.monotonic()
            if all_consumed(probe, w, prof["topic"]):
                break
            time.sleep(0.1)
        t_end = time.monotonic()
        cpu, rss = cpu_seconds(w.proc.pid), peak_rss_mb(w.proc.pid)
    finally:
        probe.close()
    wall = t_end - w.t_start
    res = {"app": app, "output_topic": out, "wall_s": round(wall, 3),
           "events_per_s": round(prof["total"] / wall),
           "first_commit_s": round(t_first - w.t_start, 3) if t_first else None,
           "events_per_s_after_first_commit": round(prof["total"] / (t_end - t_first)) if t_first and t_end > t_first else None,
           "cpu_s": round(cpu, 2), "events_per_cpu_s": round(prof["total"] / cpu) if cpu else None,
           "peak_rss_mb": round(rss, 1), "log": w.log_path}
    say(f"{system}: {res['events_per_s']} events/s, {res['events_per_cpu_s']} events/CPU-s, "
        f"peak RSS {res['peak_rss_mb']} MB, {wall:.1f} s")
    return w, res


def run_scaling(prof, n, threads, timeout):
    """rill with n worker processes in one group (one application id, fresh),
    each with `threads` stream threads, on the profile's input topic:
    events / seconds from the first process start until the group's committed
    offsets cover the input and repartition topics; CPU summed over the
    processes. They stay up, idle, for the closing events and verification."""
    app = f"bench-rill-x{n}-{prof['name']}-{TAG}"
    out = f"{app}-out"
    create_topics({out: prof["partitions"]})
    table = f"bench_{prof['name']}_x{n}_{TAG}".replace("-", "_")
    ws = [Worker("rill", app, prof["topic"], out, prof["window_ms"], prof["grace_ms"], threads, table=table)
          for _ in range(n)]
    probe = Probe(app)
    say(f"scaling: rill x{n} ({threads} stream thread(s) each) on {prof['topic']}, app {app}")
    for i, w in enumerate(ws):
        w.start(f"x{n}-{i + 1}")
    t0 = ws[0].t_start
    deadline = time.monotonic() + timeout
    try:
        while not all_consumed(probe, ws[0], prof["topic"]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"rill x{n} did not consume {prof['topic']} within {timeout}s")
            for w in ws:
                w.alive()
            time.sleep(0.1)
        t_end = time.monotonic()
        cpus = [cpu_seconds(w.proc.pid) for w in ws]
        rss = [peak_rss_mb(w.proc.pid) for w in ws]
    finally:
        probe.close()
    wall, cpu = t_end - t0, sum(cpus)
    res = {"processes": n, "stream_threads_each": threads, "app": app, "output_topic": out, "table": table,
           "wall_s": round(wall, 3), "events_per_s": round(prof["total"] / wall), "cpu_s": round(cpu, 2),
           "cpu_s_each": [round(c, 2) for c in cpus],
           "events_per_cpu_s": round(prof["total"] / cpu) if cpu else None,
           "peak_rss_mb_each": [round(r, 1) for r in rss], "logs": [w.log_path for w in ws]}
    say(f"scaling: rill x{n}: {res['events_per_s']} events/s, {res['events_per_cpu_s']} events/CPU-s, "
        f"{wall:.1f} s")
    return ws, res


def run_restore(w, timeout):
    """Stop, delete the state, restart; the restore rate from the worker's own lines."""
    say(f"{w.system}: restore: stop, delete state, restart")
    w.stop()
    w.wipe_state()
    w.start("restore")
    done_pat = "event=app_ready" if w.system == "rill" else "state=RUNNING"

    def restored():
        w.alive()
        txt = w.log()
        if w.system == "rill":
            # every aggregate task (the ones with a store) has restored
            return done_pat in txt and \
                txt.count("event=task_restored") >= max(len(re.findall(r"event=task_created .*kind=aggregate", txt)), 1)
        return done_pat in txt and "event=restore_start" in txt and \
            txt.count("event=restore_end") >= txt.count("event=restore_start")
    try:
        wait_until(restored, timeout, f"{w.system} to restore")
    except AssertionError:
        if w.kind == "kstreams" and "state=RUNNING" in w.log():
            pass  # nothing to restore
        else:
            raise
    time.sleep(1.0)
    to_ready = time.monotonic() - w.t_start
    records, span, n = w.restore_stats()
    cpu, rss = cpu_seconds(w.proc.pid), peak_rss_mb(w.proc.pid)
    w.stop()
    res = {"records": records, "restore_s": round(span, 3), "stores": n,
           "records_per_s": round(records / span) if span > 0 else None,
           "process_start_to_restored_s": round(to_ready, 2), "cpu_s": round(cpu, 2),
           "peak_rss_mb": round(rss, 1), "log": w.log_path}
    say(f"{w.system}: restored {records} records in {span:.2f} s ({res['records_per_s']} records/s)")
    return res


def wait_rusage(procs, timeout, what, tail_timeout=None, last=None):
    """Wait (bounded) for every process of procs and reap each with os.wait4:
    {pid: (monotonic time of its exit, its rusage)}. A process that fails
    (exit status not 0) stops the wait; tail_timeout bounds how long `last`
    may run after all the others ended (e.g. a consumer counting records
    that will never come)."""
    done, deadline = {}, time.monotonic() + timeout
    while len(done) < len(procs):
        for p in procs:
            if p.pid in done:
                continue
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                done[p.pid] = (time.monotonic(), ru)
                if p.returncode != 0:
                    for q in procs:
                        if q.pid not in done:
                            q.kill()
                    raise RuntimeError(f"{what}: {' '.join(p.args[3:6])} ... exited with {p.returncode}")
        if len(done) == len(procs):
            break
        now = time.monotonic()
        if last is not None and tail_timeout and last.pid not in done and len(done) == len(procs) - 1:
            deadline = min(deadline, max(done[q.pid][0] for q in procs if q is not last) + tail_timeout)
        if now > deadline:
            for q in procs:
                if q.pid not in done:
                    q.kill()
            raise RuntimeError(f"{what} did not finish in time")
        time.sleep(0.02)
    return done


def kcat(*args):
    return ["kcat", "-b", BOOTSTRAP, *args]


def run_figures(total, wall, rusages):
    """events/s, CPU (the sum of the processes' rusage), events/CPU-s, the sum of their peak RSS."""
    cpu = sum(ru.ru_utime + ru.ru_stime for ru in rusages)
    return {"wall_s": round(wall, 3), "events_per_s": round(total / wall), "cpu_s": round(cpu, 2),
            "events_per_cpu_s": round(total / cpu) if cpu else None,
            "peak_rss_mb": round(sum(ru.ru_maxrss for ru in rusages) / 1024.0, 1)}


def best_of(runs, **extra):
    """The run with the most events/s (its figures at the top level, as the
    systems' are) and the spread of all runs."""
    eps = [r["events_per_s"] for r in runs]
    best = max(runs, key=lambda r: r["events_per_s"])
    return dict(best) | {"best_of": len(runs),
                         "spread": {"min_events_per_s": min(eps), "median_events_per_s": round(statistics.median(eps)),
                                    "max_events_per_s": max(eps)},
                         "runs": runs} | extra


def ceiling_once(prof, label):
    """kcat reading the whole input topic once (output to /dev/null)."""
    log = open(os.path.join(WORK, f"kcat-{prof['name']}-{label}.log"), "w")
    t0 = time.monotonic()
    p = subprocess.Popen(kcat("-C", "-t", prof["topic"], "-o", "beginning", "-e", "-q", "-f", "%o\n"),
                         stdout=subprocess.DEVNULL, stderr=log)
    _procs.append(p)
    done = wait_rusage([p], 600, "kcat consume")
    log.close()
    t1, ru = done[p.pid]
    return run_figures(prof["total"], t1 - t0, [ru])


def run_ceiling(prof, runs):
    """The kcat consume ceiling on a warm page cache: one untimed read, then
    `runs` timed reads; the best is the ceiling, the others its spread."""
    say(f"kcat consume ceiling: {prof['topic']}, one warm-up read, then {runs} timed")
    w = ceiling_once(prof, "warmup")
    out = []
    for i in range(runs):
        out.append(ceiling_once(prof, f"run{i + 1}"))
    res = best_of(out, warmup_wall_s=w["wall_s"])
    say(f"kcat consume ceiling: best {res['events_per_s']} events/s, spread {res['spread']}")
    return res


def two_hop_once(prof, label):
    """The two-hop ceiling once: the input consumed and produced to a fresh
    repartition topic (same partition count) by plain kcat processes, and
    that topic consumed concurrently by a third, until it has read every
    record. Values only, one per line (the events are single-line JSON): the
    input has no key, and keying by seller would need parsing, which is
    processing; so the producer spreads records by librdkafka's default
    partitioner for unkeyed records."""
    rep = f"{prof['topic']}-2hop-{label}"
    create_topics({rep: prof["partitions"]})
    log = open(os.path.join(WORK, f"two-hop-{prof['name']}-{label}.log"), "w")
    try:
        t0 = time.monotonic()
        c2 = subprocess.Popen(kcat("-C", "-t", rep, "-o", "beginning", "-c", str(prof["total"]), "-q",
                                   "-f", "%o\n"), stdout=subprocess.DEVNULL, stderr=log)
        _procs.append(c2)
        c1 = subprocess.Popen(kcat("-C", "-t", prof["topic"], "-o", "beginning", "-e", "-q", "-f", "%s\n"),
                              stdout=subprocess.PIPE, stderr=log)
        _procs.append(c1)
        pr = subprocess.Popen(kcat("-P", "-t", rep), stdin=c1.stdout, stderr=log)
        _procs.append(pr)
        c1.stdout.close()  # the producer's end only: c1 sees SIGPIPE if the producer dies
        done = wait_rusage([c1, pr, c2], 600, "two-hop kcat", tail_timeout=120, last=c2)
    finally:
        log.close()
        delete_topics([rep])
    return run_figures(prof["total"], done[c2.pid][0] - t0, [done[p.pid][1] for p in (c1, pr, c2)])


def run_two_hop(prof, runs):
    say(f"two-hop ceiling (consume, produce, consume): {prof['topic']}, {runs} runs")
    res = best_of([two_hop_once(prof, f"run{i + 1}") for i in range(runs)])
    say(f"two-hop ceiling: best {res['events_per_s']} events/s, {res['events_per_cpu_s']} events/CPU-s, "
        f"spread {res['spread']}")
    return res


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, int(round(q / 100.0 * len(xs) + 0.5)) - 1))
    return xs[i]


def run_latency(system, seconds, rate, sellers, window_ms, grace_ms, partitions, threads):
    """Live producer (sale_ts = now) at a fixed rate; per result: visible time
    minus (window end + grace), in the output topic and (rill) in Postgres."""
    app = f"bench-{system}-live-{TAG}"
    inp, out = f"{app}-in", f"{app}-out"
    table = f"bench_live_{system}_{TAG}"
    create_topics({inp: partitions, out: partitions})
    w = Worker(system, app, inp, out, window_ms, grace_ms, threads, table=table)
    w.start("latency")
    wait_until(w.ready, 90, f"{system} to start", 0.2)
    if system != "rill":
        # the JVM peers say RUNNING before every task has started (Flink: the job, not its tasks)
        time.sleep(3 if w.kind == "flink" else 1)
    seen_kafka, seen_pg = {}, {}
    stop_ev = threading.Event()

    def kafka_watch():
        c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"bench-watch-{uuid.uuid4().hex[:8]}",
                      "enable.auto.commit": False, "isolation.level": "read_committed",
                      "fetch.wait.max.ms": 10, "auto.offset.reset": "earliest"})
        c.subscribe([out])
        while not stop_ev.is_set():
            for m in c.consume(1000, 0.05):
                if m.error():
                    continue
                now = time.time() * 1000
                r = json.loads(m.value())
                seen_kafka.setdefault((r["seller_id"], r["window_start_ms"]), now)
        c.close()

    def pg_watch():
        try:
            conn = psycopg.connect(PG_DSN, connect_timeout=5, autocommit=True)
        except psycopg.Error:
            return
        since = 0
        while not stop_ev.is_set():
            try:
                rows = conn.execute(
                    f'SELECT seller_id, (extract(epoch from window_start)*1000)::bigint FROM "{table}" '
                    f'WHERE window_start >= to_timestamp(%s)', (since / 1000.0,)).fetchall()
            except psycopg.Error:
                rows = []  # the table is created by the worker
            now = time.time() * 1000
            for s, ws in rows:
                seen_pg.setdefault((s, ws), now)
                since = max(since, ws - 2 * window_ms)
            time.sleep(0.02)
        conn.close()

    threads_ = [threading.Thread(target=kafka_watch, daemon=True)]
    if w.kind in ("rill", "flink"):
        threads_.append(threading.Thread(target=pg_watch, daemon=True))
    for t in threads_:
        t.start()
    prod = spawn([os.path.join(BUILD, "sales-producer"), "--bootstrap-servers", BOOTSTRAP, "--topic", inp,
                  "--count", str(rate * seconds), "--rate", str(rate), "--num-sellers", str(sellers),
                  "--quiet", "-X", "linger.ms=5"], os.path.join(WORK, f"{app}-producer.log"))
    say(f"{system}: latency: {rate} events/s for {seconds} s, {sellers} sellers, "
        f"window {window_ms} ms, grace {grace_ms} ms")
    t0 = time.time() * 1000
    # CPU over the steady part only (producer start to producer end): the
    # worker's total also holds its start-up (group join, store open, for the
    # JVMs class loading and JIT), which says nothing about a low steady rate
    cpu0, m0 = cpu_seconds(w.proc.pid), time.monotonic()
    try:
        prod.wait(seconds + 60)
    except subprocess.TimeoutExpired:
        prod.kill()
    cpu1, m1 = cpu_seconds(w.proc.pid), time.monotonic()
    time.sleep(2)
    stop_ev.set()
    for t in threads_:
        t.join(10)
    cpu, rss = cpu_seconds(w.proc.pid), peak_rss_mb(w.proc.pid)
    w.stop()

    def summary(seen):
        lat = [v - (ws + window_ms + grace_ms) for (s, ws), v in seen.items() if ws >= t0 - window_ms]
        return {"results": len(lat), "p50_ms": round(pct(lat, 50)) if lat else None,
                "p99_ms": round(pct(lat, 99)) if lat else None,
                "max_ms": round(max(lat)) if lat else None}
    res = {"kafka": summary(seen_kafka), "cpu_s": round(cpu, 2), "peak_rss_mb": round(rss, 1),
           "steady_s": round(m1 - m0, 2), "steady_cpu_s": round(cpu1 - cpu0, 2),
           "steady_cores": round((cpu1 - cpu0) / (m1 - m0), 4) if m1 > m0 else None}
    if w.kind in ("rill", "flink"):
        res["postgres"] = summary(seen_pg)
    say(f"{system}: latency {res}")
    return res


# ---- environment ---------------------------------------------------------------------------------

def machine():
    def cmd(args):
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    java = cmd(["java", "-version"]) or subprocess.run(["java", "-version"], capture_output=True,
                                                        text=True).stderr.splitlines()[0]
    ks = peer_kafka_version()
    broker = os.environ.get("RILL_KAFKA_VERSION") or cmd(
        [os.path.join(ROOT, "deploy", "local", "kafka", "kafka"), "version"]) or "?"
    pgv = ""
    try:
        with psycopg.connect(PG_DSN, connect_timeout=5) as c:
            pgv = c.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error:
        pass
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "librdkafka": cmd(["pkg-config", "--modversion", "rdkafka"]),
        "rocksdb_rill": cmd(["dpkg-query", "-W", "-f", "${Version}", "librocksdb-dev"]),
        "rocksdbjni_kafka_streams": f"{ROCKSDBJNI.get(ks, '?')} (kafka-streams {ks} dependency)",
        "kafka": f"{broker} (broker), {ks} (kafka-streams)", "java": java.splitlines()[0] if java else "",
        "flink": "{flink} (flink-connector-kafka {kafka_connector}, flink-connector-jdbc {jdbc_connector}, "
                 "postgresql JDBC {postgresql_jdbc}; the peer's pom.xml)".format(**flink_versions()),
        "postgres": pgv, "kcat": cmd(["kcat", "-V"]).splitlines()[0] if cmd(["kcat", "-V"]) else "",
    }


# ---- report ------------------------------------------------------------------------------------------

def ratio(a, b):
    return round(a / b, 2) if a and b else None


def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float) and v >= 100:
        v = round(v)
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer()):
        return f"{int(v):,}{unit}"
    return f"{v}{unit}"


FIGURES = [  # (name, result key, restore run?)
    ("throughput (events/s, start to all committed)", "events_per_s", False),
    ("events per CPU-second", "events_per_cpu_s", False),
    ("CPU seconds", "cpu_s", False),
    ("peak RSS (MB)", "peak_rss_mb", False),
    ("restore (records/s)", "records_per_s", True),
    ("restore: changelog records", "records", True),
    ("restore: seconds", "restore_s", True),
]


def figure(p, system, key, restore):
    return p.get(f"{system}_restore" if restore else system, {}).get(key)


def table_rows(p):
    """(name, rill, KS, KS txn stores, Flink, kcat consume ceiling, two-hop ceiling,
    rill/KS, rill/KS txn, rill/Flink, rill/consume ceiling, rill/two-hop ceiling)."""
    rows = []
    for name, key, restore in FIGURES:
        a, b, t, f = (figure(p, s, key, restore) for s in ("rill", "kstreams", "kstreams-txn", "flink"))
        c = None if restore else p.get("kcat", {}).get(key)
        h = None if restore else p.get("two_hop", {}).get(key)
        rows.append((name, a, b, t, f, c, h, ratio(a, b), ratio(a, t), ratio(a, f), ratio(a, c), ratio(a, h)))
    return rows


def render_table(p):
    txn, fl, hop = "kstreams-txn" in p, "flink" in p, "two_hop" in p
    head = "| figure | rill | Kafka Streams |" + (" KS + txn stores |" if txn else "") + \
        (" Flink |" if fl else "") + " kcat consume ceiling |" + (" two-hop ceiling |" if hop else "") + \
        " rill / KS |" + (" rill / KS txn |" if txn else "") + (" rill / Flink |" if fl else "") + \
        " rill / consume ceiling |" + (" rill / two-hop ceiling |" if hop else "")
    lines = [head, "| --- |" + " ---: |" * (head.count("|") - 2)]
    for name, a, b, t, f, c, h, r1, r2, r4, r3, r5 in table_rows(p):
        cells = [a, b] + ([t] if txn else []) + ([f] if fl else []) + [c] + ([h] if hop else []) + [r1] + \
            ([r2] if txn else []) + ([r4] if fl else []) + [r3] + ([r5] if hop else [])
        lines.append(f"| {name} | " + " | ".join(fmt(x) for x in cells) + " |")
    return "\n".join(lines)


CEILINGS = (("kcat", "kcat consume ceiling (kcat -C, input topic)"),
            ("two_hop", "two-hop ceiling (consume, produce, consume: kcat -C piped to kcat -P, and kcat -C)"))


def render_ceilings(p):
    """Each ceiling's best run and the spread of its timed runs."""
    lines = ["| ceiling | best events/s | min | median | max | best events/CPU-s | runs: wall s / CPU s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for key, name in CEILINGS:
        c = p.get(key)
        if not c or "spread" not in c:
            continue
        sp = c["spread"]
        runs = ", ".join(f"{r['wall_s']} / {r['cpu_s']}" for r in c["runs"])
        lines.append(f"| {name} | {fmt(c['events_per_s'])} | {fmt(sp['min_events_per_s'])} | "
                     f"{fmt(sp['median_events_per_s'])} | {fmt(sp['max_events_per_s'])} | "
                     f"{fmt(c['events_per_cpu_s'])} | {runs} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def render_scaling(sc):
    """rill with 1, 2, 3 worker processes: figures, ratio to 1 process, correctness."""
    runs = sc.get("runs", [])
    one = next((r for r in runs if r["processes"] == 1), None)
    lines = ["| processes | stream threads each | events/s | events/CPU-s | CPU s | peak RSS each (MB) | "
             "events/s vs 1 process | events/CPU-s vs 1 process | closed windows (got / truth) | wrong | "
             "output = truth |",
             "| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in runs:
        v = r.get("vs_truth", {})
        lines.append(f"| {r['processes']} | {r['stream_threads_each']} | {fmt(r['events_per_s'])} | "
                     f"{fmt(r['events_per_cpu_s'])} | {fmt(r['cpu_s'])} | "
                     f"{', '.join(fmt(x) for x in r['peak_rss_mb_each'])} | "
                     f"{fmt(ratio(r['events_per_s'], one and one['events_per_s']))} | "
                     f"{fmt(ratio(r['events_per_cpu_s'], one and one['events_per_cpu_s']))} | "
                     f"{fmt(v.get('got'))} / {fmt(v.get('expected'))} | {fmt(v.get('wrong'))} | "
                     f"{'–' if not v else ('yes' if v.get('equal') else '**no**')} |")
    return "\n".join(lines)


def render_txn_table(p):
    """Kafka Streams with transactional state stores / without, figure by figure."""
    if "kstreams-txn" not in p or "kstreams" not in p:
        return ""
    lines = ["| figure | KS | KS + txn stores | txn / plain |", "| --- | ---: | ---: | ---: |"]
    for name, key, restore in FIGURES:
        b, t = figure(p, "kstreams", key, restore), figure(p, "kstreams-txn", key, restore)
        lines.append(f"| {name} | {fmt(b)} | {fmt(t)} | {fmt(ratio(t, b))} |")
    return "\n".join(lines)


def targets(res):
    """Issue 13's targets. CPU, memory and restore on the first profile (as the
    issue states them), throughput against the ceilings on every profile."""
    main = res["profiles"][0] if res["profiles"] else {}
    pn = main.get("name", "?")
    r, k = main.get("rill", {}), main.get("kstreams", {})
    rr, kr = main.get("rill_restore", {}), main.get("kstreams_restore", {})
    lat = res.get("latency", {}).get("rill", {})
    t = []

    def add(name, value, goal, ok):
        t.append({"target": name, "goal": goal, "value": value,
                  "reached": None if ok is None or value is None else bool(ok)})
    for peer, label in (("kstreams", "Kafka Streams"), ("kstreams-txn", "Kafka Streams + txn stores")):
        if peer == "kstreams" or peer in main:
            x = ratio(r.get("events_per_cpu_s"), main.get(peer, {}).get("events_per_cpu_s"))
            add(f"events per CPU-second vs {label} ({pn})", x, ">= 5x", x is not None and x >= 5)
    x = ratio(r.get("events_per_cpu_s"), main.get("flink", {}).get("events_per_cpu_s"))
    add(f"events per CPU-second vs the Flink job ({pn})", x, ">= 10x", x is not None and x >= 10)
    for p in res["profiles"]:
        pr = p.get("rill", {})
        x = ratio(pr.get("events_per_s"), p.get("kcat", {}).get("events_per_s"))
        add(f"throughput / kcat consume ceiling, best of {p.get('kcat', {}).get('best_of', 1)} ({p['name']})",
            x, ">= 0.5", x is not None and x >= 0.5)
        x = ratio(pr.get("events_per_s"), p.get("two_hop", {}).get("events_per_s"))
        add(f"throughput / two-hop ceiling (consume, produce, consume) ({p['name']})", x,
            "informational", None)
    x = ratio(r.get("peak_rss_mb"), k.get("peak_rss_mb"))
    add(f"peak RSS vs Kafka Streams ({pn})", x, "<= 0.125 (1/8)", x is not None and x <= 0.125)
    x = ratio(rr.get("records_per_s"), kr.get("records_per_s"))
    add(f"restore records/s vs Kafka Streams ({pn})", x, ">= 10x", x is not None and x >= 10)
    x = ratio(rr.get("restore_s"), kr.get("restore_s"))
    add(f"restore time vs Kafka Streams, the same state back ({pn}; the changelogs differ in record count)",
        x, "<= 0.1", x is not None and x <= 0.1)
    x = lat.get("postgres", {}).get("p99_ms")
    add("p99 window close -> visible in Postgres, 100 ms commit interval (ms)", x, "<= 300",
        x is not None and x <= 300)
    x = lat.get("steady_cores")
    add("CPU at a steady low rate, latency run, producer start to end (cores)", x, "<= 0.05",
        x is not None and x <= 0.05)
    hb = res.get("holdback") or {}
    x = hb.get("p99_ms")
    add("p99 window close -> visible in Postgres while one of three workers is killed once, "
        "exact totals (tests/bench/holdback.py; ms)", x, "<= 2000",
        x is not None and x <= 2000 and hb.get("late") == 0)
    return t


def run_holdback(timeout):
    """tests/bench/holdback.py in a process of its own: its JSON line, or
    {"error": ...} (the run goes on without it)."""
    p = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "holdback.py")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)  # its workers and producer go with it on a timeout
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate(timeout=60)
        return {"error": f"holdback.py did not finish in {timeout} s"}
    lines = [x for x in out.splitlines() if x.startswith("{")]
    if p.returncode or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return {"error": f"holdback.py exited {p.returncode}: {tail}"}
    try:
        return json.loads(lines[-1])
    except ValueError as e:
        return {"error": f"holdback.py printed no JSON line: {e}"}


def render_holdback(hb):
    if "error" in hb:
        return f"## Holdback: one of three workers killed once\n\nNot measured: {hb['error']}\n"
    rows = [("p99 over every (seller, window) result of the run, the kill included (ms)", fmt(hb.get("p99_ms"))),
            ("steady p50 / p99 before the kill (ms)", f"{fmt(hb['steady_p50_ms'])} / {fmt(hb['steady_p99_ms'])}"),
            ("windows held back (latency > max(2 x steady p99, 1 s))", fmt(hb["held_windows"])),
            ("the longest hold (ms)", fmt(hb["max_hold_ms"])),
            ("from the kill until latency was back to steady (s)", fmt(hb["held_for_s"])),
            ("p50 after (ms)", fmt(hb["after_p50_ms"])),
            ("late records", fmt(hb["late"])),
            ("windows verified exact (Kafka = Postgres = truth) / events",
             f"{fmt(hb['windows_verified'])} / {fmt(hb['events'])}")]
    return ("## Holdback: one of three workers killed once (`tests/bench/holdback.py`)\n\n"
            f"Three workers, {hb['partitions']} input partitions, {hb['sellers']} sellers, live input at "
            f"{fmt(hb['rate'])} events/s for {hb['seconds']} s, {hb['window_ms']} ms windows, {hb['grace_ms']} ms "
            f"grace; one worker is SIGKILLed at {hb['kill_at_s']} s and started again {hb['restart_after_s']} s "
            "later (as a supervisor would); "
            + ("each worker with its own `group.instance.id`, as deploy/k8s runs them. "
               if hb.get("static_membership") else "no `group.instance.id`. ")
            + "Latency of a result = first seen in Postgres (polled every 50 ms) "
            "minus its window's close (end + grace).\n\n| | figure |\n| --- | ---: |\n"
            + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n\n"
            + ("A held window waits for the killed worker's partitions: the restarted worker takes them "
               "back under its instance id (no rebalance of the others) and restores them from its local "
               "store.\n" if hb.get("static_membership") else
               "A held window waits for the killed worker's partitions: they stay with the dead member "
               "until the group's session timeout expires, then the new owner restores them.\n"))


def print_report(res):
    for p in res["profiles"]:
        print(f"\n== profile {p['name']}: {p['total']:,} events, {p['sellers']:,} sellers, "
              f"{p['partitions']} partitions ==")
        print(render_table(p))
        if render_ceilings(p):
            print("\nceilings (best of the timed runs on a warm page cache, and their spread):")
            print(render_ceilings(p))
        if render_txn_table(p):
            print("\nKafka Streams, transactional state stores on vs off:")
            print(render_txn_table(p))
        v = p.get("verify", {})
        print(f"correctness: {json.dumps(v)}")
    if res.get("scaling"):
        print(f"\n== scaling: rill worker processes on {res['scaling']['profile']} ==")
        print(render_scaling(res["scaling"]))
    if res.get("latency"):
        print("\n== latency (window close = end + grace -> visible) ==")
        for s, l in res["latency"].items():
            print(f"{s}: {json.dumps(l)}")
    if res.get("holdback"):
        print(f"\n== holdback (one of three workers killed once) ==\n{json.dumps(res['holdback'])}")
    print("\n== targets ==")
    for t in res["targets"]:
        mark = {True: "REACHED", False: "not reached",
                None: "not measured" if t["value"] is None else "informational"}[t["reached"]]
        print(f"{t['target']}: {t['value']} (goal {t['goal']}): {mark}")


def write_docs(res, md_path, json_path):
    with open(json_path, "w") as f:
        json.dump(res, f, indent=2, sort_keys=False)
        f.write("\n")
    m, s = res["machine"], res["settings"]
    out = []
    out.append("# Benchmarks: rill vs Kafka Streams and Flink\n")
    out.append("Generated by `tests/bench/run` "
               f"({'quick mode' if s['quick'] else 'full mode'}) on {res['date']}; raw figures in "
               f"[benchmarks.json](benchmarks.json). Systems `{s['systems']}` and the ceilings ran in one run, on the "
               "same single-broker Kafka, the same preloaded input topic and the same machine, one after "
               "the other (never concurrently).\n")
    sizes = ", ".join("{:,} events ({})".format(p["total"], p["name"]) for p in res["profiles"])
    out.append(f"**Run size: {sizes}.** " + res.get("size_note", "") + "\n")
    out.append("## Machine and versions\n")
    out.append("| | |\n| --- | --- |")
    for k in ("nproc", "cpu", "memory_gb", "kernel", "kafka", "librdkafka", "rocksdb_rill",
              "rocksdbjni_kafka_streams", "java", "flink", "postgres", "kcat"):
        out.append(f"| {k} | {m.get(k)} |")
    out.append("")
    out.append("## Settings\n")
    out.append("| | |\n| --- | --- |")
    for k, v in s.items():
        out.append(f"| {k} | {v} |")
    out.append("")
    for p in res["profiles"]:
        out.append(f"## Profile `{p['name']}`: {p['total']:,} events, {p['sellers']:,} sellers, "
                   f"{p['partitions']} partitions\n")
        out.append(f"Input: `{p['topic']}`, event time from {p['start_s']} (epoch s), "
                   f"{p['events_per_event_second']:,} events per second of event time, window {p['window_ms']} ms, "
                   f"grace {p['grace_ms']} ms; preload took {p['preload_s']} s. After every system had consumed it, "
                   f"{p.get('closing_events')} closing events (event time past every window's close) were "
                   "appended and consumed by each, then the outputs were verified.\n")
        out.append("Ceilings: the **kcat consume ceiling** is kcat reading the input topic "
                   "(`kcat -C -o beginning -e`); the **two-hop ceiling (consume, produce, consume)** is "
                   "this design's physical work without processing: kcat reading the input, piped to a kcat "
                   "producer writing a fresh repartition topic (same partition count), read concurrently by a "
                   "third kcat until it has every record. Each is the best of its timed runs on a warm page "
                   "cache (one untimed read first); CPU and peak RSS of the two-hop ceiling are the sums over "
                   "its three processes. See *How it is measured*.\n")
        out.append(render_table(p) + "\n")
        if render_ceilings(p):
            out.append("The ceilings' timed runs (events/s; each run's wall and CPU seconds):\n")
            out.append(render_ceilings(p) + "\n")
        if render_txn_table(p):
            out.append("Kafka Streams with transactional state stores (`enable.transactional.statestores=true`, "
                       "KIP-892) against the same peer without them:\n")
            out.append(render_txn_table(p) + "\n")
        v = p.get("verify", {})
        out.append("Correctness (closed windows, read_committed):\n")
        for key, val in v.items():
            out.append(f"- {key}: `{json.dumps(val)}`")
        out.append("")
    if res.get("scaling"):
        sc = res["scaling"]
        out.append(f"## Scaling: rill with 1, 2 and 3 worker processes (profile `{sc['profile']}`)\n")
        out.append(f"The same input topic (`{sc['topic']}`, {sc['total']:,} events), one run per process count, "
                   f"each under a fresh application id (one consumer group), the processes started together; "
                   f"**each process runs {sc['stream_threads_each']} stream thread(s)** "
                   f"({sc['why_threads']}). Throughput = events / seconds from the first process start until the "
                   "group's committed offsets cover the input and repartition topics; CPU = the sum over the "
                   "processes. Each run's output topic was verified against the ground truth after the closing "
                   "events, as the main systems' were.\n")
        out.append(render_scaling(sc) + "\n")
    if res.get("latency"):
        L = res["latency"]
        s2 = res["latency_settings"]
        out.append("## Latency\n")
        out.append(f"Live producer: {s2['rate']} events/s for {s2['seconds']} s, {s2['sellers']} sellers, "
                   f"sale_ts = now (seconds), window {s2['window_ms']} ms, grace {s2['grace_ms']} ms, "
                   "commit interval 100 ms. Latency of a result = when it was first seen by a "
                   "read_committed consumer (fetch.wait.max.ms 10) or by a Postgres poll (every 20 ms) "
                   "minus the wall time of the window's close (end + grace).\n")
        out.append("| | results | p50 (ms) | p99 (ms) | max (ms) |\n| --- | ---: | ---: | ---: | ---: |")
        for sysn, l in L.items():
            for where in ("postgres", "kafka"):
                if where in l:
                    x = l[where]
                    out.append(f"| {sysn} → {where} | {fmt(x['results'])} | {fmt(x['p50_ms'])} | "
                               f"{fmt(x['p99_ms'])} | {fmt(x['max_ms'])} |")
        out.append("\nWorker CPU over the steady part (from the producer's start to its end; the process's "
                   "start-up is not in it):\n")
        for sysn, l in L.items():
            if l.get("steady_cores") is not None:
                out.append(f"- {sysn}: {l['steady_cores']} cores ({l['steady_cpu_s']} CPU-s in {l['steady_s']} s; "
                           f"{l['cpu_s']} CPU-s from process start to the end of the run)")
        out.append("\nKafka Streams does not write Postgres, so it has no Postgres row; rill's figures "
                   "include its Postgres transaction in every commit. Flink's Kafka results become visible "
                   "when the checkpoint that holds them completes (every 100 ms), its Postgres rows when the "
                   "JDBC sink flushes (every 100 ms and at each checkpoint).\n")
    if res.get("holdback"):
        out.append(render_holdback(res["holdback"]))
    if res.get("extract_micro"):
        x = res["extract_micro"]
        out.append("## Micro benchmark: parsing one event\n")
        out.append(f"`build/tests/extract-bench` ({x['records']:,} producer-shaped records, one thread): the engine's "
                   f"path (fast scan, jansson for the rest) {x['fast_ns']} ns per record, jansson alone "
                   f"{x['jansson_ns']} ns: {x['ratio']}x. See [performance.md](performance.md).\n")
    out.append("## Targets (issue 13)\n")
    out.append("| target | goal | measured | reached |\n| --- | --- | ---: | --- |")
    for t in res["targets"]:
        mark = {True: "yes", False: "**no**", None: "not measured" if t["value"] is None else "–"}[t["reached"]]
        out.append(f"| {t['target']} | {t['goal']} | {fmt(t['value'])} | {mark} |")
    out.append("")
    out.append(res.get("notes_md", ""))
    with open(md_path, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")


NOTES_MD = """## How it is measured

- **Throughput**: events in the topic / seconds from starting the process until the group's committed
  offsets cover every record of the input topic and of the repartition topic (polled every 100 ms;
  results commit in the same transaction as those offsets, so everything is in the output by then).
  It includes process start-up, group join and, for Kafka Streams, JVM start-up; the JSON also has
  the rate after the first commit (`events_per_s_after_first_commit`).
- **CPU**: utime + stime of the worker process (all threads, /proc/PID/stat) at that moment.
  The broker and Postgres are not counted for either system.
- **Memory**: VmHWM of the worker process.
- **Restore**: after the throughput run the worker is stopped (SIGTERM), its state directory deleted
  and it is started again on the same application id; rill's `task_restored` lines and the peer's
  `StateRestoreListener` (`restore_end`) give records and times; the rate is all records restored
  divided by the span from the first restore start to the last restore end. The two changelogs differ
  in content (rill: one record per window change that survived its write cache; Kafka Streams: the
  window store and the suppression buffer changelogs), so the record counts differ.
- **kcat consume ceiling**: `kcat -C -o beginning -e -f '%o\\n'` on the input topic, output to
  /dev/null. One untimed read first (a warm page cache: one full run measured 511k events/s, another
  1.65M), then three timed reads (`--ceiling-runs`); the best is the ceiling the ratios use, and the
  JSON and the ceilings table give the spread (min, median, max events/s, each run's wall and CPU).
- **Two-hop ceiling (consume, produce, consume)**: the physical work of this design (the input
  consumed, a repartition topic produced, that topic consumed again) by plain librdkafka clients
  without processing: `kcat -C -t IN -o beginning -e -q -f '%s\\n' | kcat -P -t REP` and,
  concurrently, `kcat -C -t REP -o beginning -c TOTAL -q` (REP created fresh for each run with the
  input's partition count, deleted after it). Without keys: the input records have none
  (sales-producer writes unkeyed records) and keying by seller would need the JSON parsed, which is
  processing; values go one per line (the events are single-line JSON), spread by librdkafka's
  default partitioner. Wall time = from the start until the second consumer has read every record;
  CPU = the sum of the three processes' rusage (os.wait4), peak RSS the sum of theirs. Best of three
  (after the consume ceiling's warm-up), spread as above. It is a floor on the work, not an equal
  peer: **rill's hop is transactional** (exactly-once: a transactional producer, offsets and
  watermark records in the same transaction, read_committed downstream) **and the kcat producer is
  not** (kcat 1.7.1 on librdkafka 2.0.2: `enable.idempotence` defaults to false, acks=all); rill's
  repartition records are compact (key = seller, a small binary value), kcat's are the input JSON.
- **Scaling** (`--scaling`, on by default in full mode): rill alone, with 1, 2 and 3 worker processes
  in one consumer group (one fresh application id per run, each process with its own state
  directory, all sharing one Postgres table), on the first profile's input topic, started together,
  after the main systems' runs (whose workers stay up, idle, as they do while the later systems run).
  Each process runs 1 stream thread (`--scaling-threads`): on this 2-core machine one thread per
  process makes the process count the only variable (2 processes x 1 thread is the main run's 2
  threads, split over processes; 3 processes oversubscribe the 2 cores on purpose). Throughput and
  CPU as for the main runs (CPU summed over the processes); each run's output topic (and its
  Postgres table against it) verified against the ground truth after the closing events.
- **CPU at a steady low rate**: the latency run's worker CPU from the live producer's start to its
  end (/proc/PID/stat sampled at both), divided by that time: the process's start-up (group join,
  store open, JVM start) is not in it. The JSON keeps the whole process's `cpu_s` too.
- **Correctness**: the ground truth is computed from the input topic alone (sum and count per seller
  and window, for windows closed by the last event time). Both output topics are compared with it and
  with each other, and rill's Postgres table with rill's output topic. A record whose window had
  already closed when it reached the aggregation (late, because of the order in which partitions were
  consumed) is left out of the window by both systems: rill sends it to its dead-letter topic
  (`rill_late_or_bad_dead_letters` counts that topic), Kafka Streams drops it with a WARN line
  "Skipping record for expired window" (`kstreams_late_dropped` counts those lines). A window with a
  late record then differs from the truth, and the table shows it as such.
- What the engine changed to get here, each change measured: [performance.md](performance.md).
- Both systems: 2 stream threads, exactly-once (rill: Kafka transactions + fenced Postgres writes;
  Kafka Streams: `exactly_once_v2`), commit interval 100 ms, default RocksDB settings of each, Kafka
  Streams' default record cache (10 MB).
- `kstreams-txn` is the same Kafka Streams peer with transactional state stores
  (`enable.transactional.statestores=true`, KIP-892, Kafka Streams 4.4; the default
  `statestore.uncommitted.max.bytes`, 64 MB): writes wait in a buffer until their changelog
  transaction commits, so after a crash the local state is still valid and is not wiped. The
  restore measured here deletes the state directory on purpose, so both variants restore
  everything; the difference it measures is the cost of the buffer on the processing path.

## The Flink peer (`flink`): the original design's job

- **What runs**: `tests/bench/peers/flink` (`SalesAggregatorFlink.java`, `pom.xml`), the Flink SQL
  job of the original design written with Flink's Java Table API in streaming mode: a Kafka table
  on the input (JSON, `ts = TO_TIMESTAMP_LTZ(sale_ts * 1000)`, `WATERMARK FOR ts AS ts - grace`),
  `TUMBLE(ts, window)` grouped by seller with `SUM(amount_usd)` and `COUNT(*)`, and one statement
  set writing the same aggregation to a Kafka table (the JSON the others write, keyed by seller) and
  to a JDBC table in Postgres with rill's `aggregated_sales` columns (`PRIMARY KEY (seller_id,
  window_start) NOT ENFORCED`: the Postgres dialect's `INSERT ... ON CONFLICT DO UPDATE`). The peer
  creates that table with rill's DDL when it is missing.
- **How it runs**: `java -jar tests/bench/peers/flink/target/sales-aggregator-flink.jar` starts a
  local mini-cluster inside that one JVM (`StreamExecutionEnvironment.createLocalEnvironment`),
  parallelism 2 (the others' 2 stream threads), default memory settings and the default
  (heap, `hashmap`) state backend, so CPU and peak RSS are those of one process, as for the others.
  `tests/bench/run` builds the jar with Maven (bounded, in the terminal's foreground) when it is
  missing or older than its sources; when the build fails it prints one line naming the log and the
  run goes on without Flink (bench.py is told by `RILL_BENCH_FLINK_SKIPPED`). CI does not run it.
- **Versions** (all pinned in the pom): Flink 2.0.0, flink-connector-kafka 4.0.1-2.0 (kafka-clients
  3.9.1), flink-connector-jdbc-core and -postgres 4.0.0-2.0, the PostgreSQL JDBC driver 42.7.7, log4j
  2.24.3, Java 17. The JDBC connector has a single release for Flink 2.x, built for 2.0, which is
  why the peer is not on Flink 2.1-2.3 (Kafka connector 5.0.0-2.1/-2.2 exist); 2.0.0 rather than a
  later 2.0.x because `flink-table-planner-loader` 2.0.1 is not in the registry we build from.
- **Exactly-once**: checkpoints every 100 ms (`execution.checkpointing.interval`, the others'
  commit interval), mode `EXACTLY_ONCE`, to the filesystem under the state directory; the Kafka
  sink has `sink.delivery-guarantee = exactly-once` and `sink.transactional-id-prefix = <app id>`,
  so results are committed to Kafka when the checkpoint that holds them completes (read_committed
  readers see them then). The source commits its offsets to the group `<app id>` when a
  checkpoint completes: that is the "all committed" end of the throughput figure, as the
  committed offsets are for the others (Flink has no repartition topic: its shuffle between the
  source and the window stays in memory). The JDBC sink is at-least-once with idempotent upserts
  (flushed every 100 ms, up to 5,000 rows, and at each checkpoint): after a failure rows may be
  written again with the same values, as rill's may, but they are not in a transaction fenced
  with the Kafka offsets as rill's are.
- **Semantics against rill**: Flink's watermark is per Kafka partition (split) *max event time
  seen − grace*, the minimum of those over the partitions of a source subtask and over the
  subtasks at the window operator; a window closes when that watermark passes its end, i.e.
  when every partition's largest event time reached end + grace, which is rill's closing rule
  (stream time = minimum over input partitions of their progress; Kafka Streams instead closes by
  its task's largest event time). Lateness differs: Flink drops a
  record only if it is behind that *global* watermark (silently: a metric, no dead-letter topic),
  rill dead-letters a record behind its *own partition's* progress. Idleness differs: Flink
  holds every window back while any partition receives nothing (no `withIdleness` /
  `table.exec.source.idle-timeout` is set, as none is by default; setting it trades the hold-back
  for late records, like rill's `idle.timeout.ms`, whose default is 30 s). The watermark is also
  emitted every 200 ms (`pipeline.auto-watermark-interval`), which adds to close → visible latency.
- **Not measured for Flink**: restore. The benchmark's restore deletes the state directory, and
  Flink's state is in its checkpoints there; a Flink restart without a checkpoint or savepoint
  starts from the committed offsets with empty windows, which is not a restore.
"""


# ---- main ------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run (about 2-4 minutes)")
    ap.add_argument("--events", type=int, help="events per profile (quick 300000, full 10000000)")
    ap.add_argument("--profiles", default="sellers10k,sellers4",
                    help="comma list of sellers10k (10,000 sellers) and sellers4 (the original 4)")
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2, help="stream threads of each system")
    ap.add_argument("--window-ms", type=int, default=60000)
    ap.add_argument("--grace-ms", type=int, default=60000, help="see preload() for why 60 s")
    ap.add_argument("--event-rate", type=int, default=30000,
                    help="preloaded events per second of event time (see preload())")
    ap.add_argument("--systems", help="comma list of rill, kstreams, kstreams-txn, flink (default: all "
                    "four; kstreams-txn only when the peer's Kafka Streams has transactional state stores, "
                    "flink only when its jar is built)")
    ap.add_argument("--no-restore", action="store_true")
    ap.add_argument("--ceiling-runs", type=int, default=3,
                    help="timed runs of each ceiling after one warm-up read; the best counts (default 3)")
    ap.add_argument("--no-two-hop", action="store_true", help="skip the two-hop ceiling")
    ap.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=None,
                    help="rill with 1, 2, 3 worker processes on the first profile (default: on in full "
                    "mode, off with --quick)")
    ap.add_argument("--scaling-processes", default="1,2,3", help="process counts of the scaling runs")
    ap.add_argument("--scaling-threads", type=int, default=1,
                    help="stream threads of each process in the scaling runs (default 1, see NOTES_MD)")
    ap.add_argument("--latency-seconds", type=int, help="live producer duration (quick 40, full 120); 0 = skip")
    ap.add_argument("--latency-rate", type=int, default=2000)
    ap.add_argument("--latency-sellers", type=int, default=1000)
    ap.add_argument("--latency-window-ms", type=int, help="(quick 5000, full 10000)")
    ap.add_argument("--latency-grace-ms", type=int, help="(quick 1000, full 2000)")
    ap.add_argument("--holdback", action=argparse.BooleanOptionalAction, default=None,
                    help="run tests/bench/holdback.py (one of three workers killed once; default: full mode)")
    ap.add_argument("--timeout", type=int, default=1800, help="bound on each system's run, seconds")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.{md,json}")
    ap.add_argument("--json", default=os.path.join(ROOT, "docs", "benchmarks.json"))
    ap.add_argument("--md", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    a = ap.parse_args()

    events = a.events or (300000 if a.quick else 10000000)
    if a.ceiling_runs < 1:
        sys.exit("bench: --ceiling-runs must be at least 1")
    scaling = a.scaling if a.scaling is not None else not a.quick
    scale_ns = [int(x) for x in a.scaling_processes.split(",") if x] if scaling else []
    lat_s = a.latency_seconds if a.latency_seconds is not None else (40 if a.quick else 120)
    lat_w = a.latency_window_ms or (5000 if a.quick else 10000)
    lat_g = a.latency_grace_ms or (1000 if a.quick else 2000)
    ks_version = peer_kafka_version()
    flink_ok, flink_why = flink_available()
    default_systems = "rill,kstreams" + (",kstreams-txn" if has_txn_stores(ks_version) else "")
    if flink_ok:
        default_systems += ",flink"
    elif not a.systems:
        say(f"bench: the Flink peer is skipped: {flink_why}")
    systems = [s for s in (a.systems or default_systems).split(",") if s]
    for s in systems:
        if s not in ALL_SYSTEMS:
            sys.exit(f"bench: unknown system '{s}' (want {', '.join(ALL_SYSTEMS)})")
    if "flink" in systems:
        if not flink_ok:
            sys.exit(f"bench: the Flink peer cannot run: {flink_why}")
        pg_jdbc()
    if "kstreams-txn" in systems and not has_txn_stores(ks_version):
        sys.exit(f"bench: kstreams-txn needs Kafka Streams 4.4 or later; the peer is built with {ks_version}")
    for prog in ("sales-aggregator", "sales-producer"):
        if not os.access(os.path.join(BUILD, prog), os.X_OK):
            sys.exit(f"bench: {BUILD}/{prog} is missing (hint: cmake --build build, or set RILL_BUILD_DIR)")
    if any(s in KS_SYSTEMS for s in systems) and not os.path.exists(PEER_JAR):
        sys.exit(f"bench: {PEER_JAR} is missing (hint: mvn -q -f tests/bench/peers/kafka-streams/pom.xml package)")

    profiles_def = {"sellers10k": 10000, "sellers4": 4}
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": machine(),
           "settings": {"quick": a.quick, "events_per_profile": events, "partitions": a.partitions,
                        "stream_threads": a.threads, "window_ms": a.window_ms, "grace_ms": a.grace_ms,
                        "commit_interval_ms": 100, "events_per_event_second": a.event_rate,
                        "exactly_once": "rill: Kafka txn + fenced Postgres; Kafka Streams: exactly_once_v2"
                        + ("; Flink: EXACTLY_ONCE checkpoints every 100 ms, transactional Kafka sink, "
                           "idempotent JDBC upsert" if "flink" in systems else ""),
                        "systems": ",".join(systems),
                        "kafka_streams_transactional_state_stores": "kstreams-txn only" if "kstreams-txn" in systems
                        else "off",
                        "rill_postgres_sink": "on (pg.dsn set)", "kafka_streams_postgres_sink": "none",
                        "flink_postgres_sink": "JDBC upsert (flink-connector-jdbc-postgres), flushed every 100 ms "
                        "and at each checkpoint" if "flink" in systems else "not run",
                        "broker": "1 broker, KRaft, replication factor 1, same host",
                        "ceiling_runs": f"1 warm-up + {a.ceiling_runs} timed, best counts",
                        "two_hop_ceiling": "off" if a.no_two_hop else "kcat -C piped to kcat -P (no keys), and kcat -C",
                        "scaling": f"rill x {a.scaling_processes} processes, {a.scaling_threads} stream "
                        "thread(s) each" if scale_ns else "off"},
           "profiles": []}
    say(f"work dir {WORK}; bootstrap {BOOTSTRAP}; {events} events per profile")
    t_all = time.monotonic()
    for name in [p for p in a.profiles.split(",") if p]:
        sellers = profiles_def[name]
        span_ms = events // a.event_rate * 1000
        now_s = int(time.time())
        start_s = (now_s - span_ms // 1000 - 3600) // 60 * 60  # in the past, minute-aligned
        topic = f"bench-in-{name}-{events}-{TAG}"
        say(f"preload {topic}: {events} events, {sellers} sellers, {a.partitions} partitions")
        pre_s, last_s = preload(topic, events, sellers, a.partitions, start_s, a.event_rate,
                                 a.window_ms, a.grace_ms)
        total = sum(Probe(f"bench-x-{TAG}").end_offsets(topic).values())
        prof = {"name": name, "topic": topic, "events": events, "total": total, "sellers": sellers,
                "partitions": a.partitions, "start_s": start_s, "events_per_event_second": a.event_rate,
                "window_ms": a.window_ms, "grace_ms": a.grace_ms, "preload_s": round(pre_s, 1)}
        say(f"preloaded {total} records in {pre_s:.1f} s")
        prof["kcat"] = run_ceiling(prof, a.ceiling_runs)
        if not a.no_two_hop:
            prof["two_hop"] = run_two_hop(prof, a.ceiling_runs)
        workers = {}
        for s in systems:  # each on the same preload; the ones done stay up, idle
            w, r = run_throughput(s, prof, a.threads, a.timeout)
            prof[s] = r
            workers[s] = w
        scale_ws = []  # (workers, result) of each scaling run, first profile only
        if scale_ns and not res["profiles"]:
            res["scaling"] = {"profile": name, "topic": topic, "total": total,
                              "stream_threads_each": a.scaling_threads,
                              "why_threads": "one per process: on this 2-core machine the process count is then "
                              "the only variable; 3 processes oversubscribe the cores"
                              if a.scaling_threads == 1 else "--scaling-threads", "runs": []}
            for n in scale_ns:
                ws, r = run_scaling(prof, n, a.scaling_threads, a.timeout)
                scale_ws.append((ws, r))
                res["scaling"]["runs"].append(r)
        n_close = produce_closing(topic, sellers, last_s, a.window_ms, a.grace_ms)
        prof["closing_events"] = n_close
        prof["total_with_closing"] = prof["total"] + n_close
        say(f"produced {n_close} closing events; waiting for every system to consume them")
        for s, w in workers.items():
            wait_consumed(w, topic, 300)
        for ws, _ in scale_ws:
            wait_consumed(ws, topic, 300)
        say("verifying outputs against the ground truth")
        truth, n_in, n_bad = ground_truth(topic, a.window_ms, a.grace_ms)
        v = {"input_records": n_in, "bad_input": n_bad, "closed_windows": len(truth)}
        outs = {}
        for s in systems:
            got, dup = output_results(prof[s]["output_topic"])
            outs[s] = got
            v[f"{s}_vs_truth"] = compare(got, truth) | {"duplicates": dup}
        if "rill" in outs:
            pgr = pg_rows(workers["rill"].table)
            v["rill_postgres_vs_rill_kafka"] = compare(pgr, outs["rill"])
            v["rill_late_or_bad_dead_letters"] = count_records(f"{prof['rill']['app']}-dlq")
        if "flink" in outs:
            v["flink_postgres_vs_flink_kafka"] = compare(pg_rows(workers["flink"].table), outs["flink"])
            if "rill" in outs:
                v["rill_vs_flink"] = compare(outs["rill"], outs["flink"])
        for s in [s for s in KS_SYSTEMS if s in outs]:
            ktext = log_text(workers[s].log_path)
            m = re.findall(r"event=bad_records count=(\d+)", ktext)
            v[f"{s}_bad_records"] = int(m[-1]) if m else 0
            # Kafka Streams drops a late record with this WARN line (rill dead-letters it)
            v[f"{s}_late_dropped"] = ktext.count("Skipping record for expired window")
            if "rill" in outs:
                v[f"rill_vs_{s}"] = compare(outs["rill"], outs[s])
        prof["verify"] = v
        say(f"verify: {json.dumps(v)}")
        for ws, r in scale_ws:
            got, dup = output_results(r["output_topic"])
            r["vs_truth"] = compare(got, truth) | {"duplicates": dup}
            r["postgres_vs_kafka"] = compare(pg_rows(r["table"]), got)
            r["late_or_bad_dead_letters"] = count_records(f"{r['app']}-dlq")
            say(f"scaling x{r['processes']}: vs truth {json.dumps(r['vs_truth'])}, "
                f"postgres vs kafka equal {r['postgres_vs_kafka']['equal']}")
            for w in ws:
                w.stop()
        for s, w in workers.items():
            if a.no_restore or w.kind == "flink":  # Flink's state is in the checkpoints a wipe deletes
                w.stop()
            else:
                prof[f"{s}_restore"] = run_restore(w, a.timeout)
        res["profiles"].append(prof)

    if lat_s > 0:
        res["latency_settings"] = {"rate": a.latency_rate, "seconds": lat_s, "sellers": a.latency_sellers,
                                   "window_ms": lat_w, "grace_ms": lat_g}
        res["latency"] = {}
        for s in systems:
            res["latency"][s] = run_latency(s, lat_s, a.latency_rate, a.latency_sellers, lat_w, lat_g,
                                            a.partitions, a.threads)
    if a.holdback if a.holdback is not None else not a.quick:
        say("holdback: tests/bench/holdback.py (about 3 minutes)")
        res["holdback"] = run_holdback(900)
        say(f"holdback: {json.dumps(res['holdback'])}")
    micro = os.path.join(BUILD, "tests", "extract-bench")
    if os.access(micro, os.X_OK):
        try:
            res["extract_micro"] = json.loads(subprocess.run([micro], capture_output=True, text=True,
                                                             timeout=300, check=True).stdout)
            say(f"extract micro benchmark: {res['extract_micro']}")
        except (subprocess.SubprocessError, ValueError) as e:
            say(f"extract micro benchmark failed: {e}")
    res["targets"] = targets(res)
    res["elapsed_s"] = round(time.monotonic() - t_all, 1)
    res["notes_md"] = NOTES_MD
    print_report(res)
    if not a.no_docs:
        write_docs(res, a.md, a.json)
        say(f"wrote {a.md} and {a.json}")
    say(f"done in {res['elapsed_s']} s; logs in {WORK}")


if __name__ == "__main__":
    main()
