"""Test harness for the end-to-end and crash suites.

Talks to the real local stack (deploy/local/up writes $RILL_RUN_DIR/env, which
tests/run sources) with confluent-kafka and psycopg, starts the real programs
from the build directory, and computes ground truth independently of the
engine's code. Every wait is bounded.
"""
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("RILL_BUILD_DIR", os.path.join(ROOT, "build"))


def env(name):
    v = os.environ.get(name)
    if not v:
        raise RuntimeError(f"{name} is not set: run deploy/local/up and source $RILL_RUN_DIR/env (tests/run does)")
    return v


BOOTSTRAP = env("RILL_BOOTSTRAP_SERVERS")
PG_DSN = env("RILL_PG_DSN")


def group_flags():
    """The workers' group protocol flags. Classic (the default; librdkafka
    2.0.2 knows no other): a short session and heartbeat, or tests crawl.
    RILL_TEST_GROUP_PROTOCOL=consumer (a build against librdkafka >= 2.12 and
    a Kafka 4 broker; RILL_TEST_REMOTE_ASSIGNOR names the broker's assignor):
    KIP-848's protocol, whose session and heartbeat the broker holds
    (deploy/local/kafka sets them short) and librdkafka refuses from the
    client."""
    proto = os.environ.get("RILL_TEST_GROUP_PROTOCOL", "classic")
    if proto == "classic":
        return ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"]
    if proto != "consumer":
        raise RuntimeError(f"RILL_TEST_GROUP_PROTOCOL={proto!r}: want classic or consumer")
    assignor = os.environ.get("RILL_TEST_REMOTE_ASSIGNOR")
    return ["-X", "group.protocol=consumer", *(["-X", f"group.remote.assignor={assignor}"] if assignor else [])]


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_ports(n):
    """A port P with P .. P+n-1 all free on 127.0.0.1 right now (a private
    Kafka cluster: broker b listens on P+2(b-1), its controller on +1)."""
    import socket
    for _ in range(100):
        base = (20000 + free_port() % 12000) & ~1  # below the ephemeral range
        socks = []
        try:
            for i in range(n):
                sk = socket.socket()
                socks.append(sk)
                sk.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            pass
        finally:
            for sk in socks:
                sk.close()
    raise AssertionError(f"no {n} consecutive free ports")


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(pred, timeout, what, interval=0.2):
    """Poll pred() until it returns a truthy value; fail after timeout seconds."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# ---- Kafka ------------------------------------------------------------------

def admin():
    return AdminClient({"bootstrap.servers": BOOTSTRAP})


def create_topics(spec, config=None, replication=1):
    """spec: {name: partitions}"""
    a = admin()  # keep the handle alive until the futures resolve
    futs = a.create_topics([NewTopic(n, p, replication, config=config or {}) for n, p in spec.items()],
                           operation_timeout=15)
    for f in futs.values():
        f.result(timeout=30)
    wait_until(lambda: all(n in a.list_topics(timeout=10).topics for n in spec), 30, "topics")


def produce(topic, records, partition=None):
    """records: iterable of (key bytes|None, value bytes). Idempotent producer."""
    p = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "linger.ms": 5})
    errors = []

    def dr(err, msg):
        if err:
            errors.append(err)

    n = 0
    for key, value in records:
        kw = {"partition": partition} if partition is not None else {}
        while True:
            try:
                p.produce(topic, value=value, key=key, on_delivery=dr, **kw)
                break
            except BufferError:
                p.poll(0.1)
        n += 1
        if n % 10000 == 0:
            p.poll(0)
    left = p.flush(60)
    assert left == 0 and not errors, f"produce to {topic}: {left} undelivered, errors {errors[:3]}"
    return n


def close_every_partition(topic, seller, ts_s):
    """One event at ts_s in every partition of topic: with unkeyed input an
    aggregation's stream time is the minimum over all input partitions, so
    each must move past the windows to close them."""
    for p in sorted(end_offsets(topic)):
        produce(topic, [(None, event(seller, 1, ts_s))], partition=p)


def event(seller, amount, ts_s):
    return json.dumps({"seller_id": seller, "amount_usd": amount, "sale_ts": ts_s}).encode()


def read_topic(topic, isolation="read_committed", timeout=60):
    """All records of topic, reading each partition until its position reaches
    the end offset captured at the start (transaction markers included)."""
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": uniq("reader"),
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10).topics[topic]
    parts = sorted(md.partitions)
    ends = {}
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = hi
    c.assign([TopicPartition(topic, p, 0 if True else -2) for p in parts])
    # offset 0 may be below log start after deletion; BEGINNING is safer
    c.assign([TopicPartition(topic, p, -2) for p in parts])
    out = []
    done = {p for p in parts if ends[p] == 0}
    deadline = time.monotonic() + timeout
    while len(done) < len(parts):
        if time.monotonic() > deadline:
            c.close()
            raise AssertionError(f"reading {topic}: end not reached in {timeout}s (ends {ends}, done {done})")
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                if m.offset() >= ends[m.partition()]:
                    done.add(m.partition())
            continue
        out.append(m)
    c.close()
    return out


def end_offsets(topic):
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": uniq("probe")})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.close()
    return ends


def committed(group, topic):
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group, "enable.auto.commit": False})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    offs = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
    c.close()
    return {tp.partition: tp.offset for tp in offs}


def records_between(topic, partition, start, end, timeout=30):
    """How many committed records lie in [start, end) of one partition (the
    range may hold only transaction markers)."""
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": uniq("probe"), "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True})
    c.assign([TopicPartition(topic, partition, max(start, 0) if start >= 0 else -2)])
    n, deadline = 0, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == -191 and m.offset() >= end:
                    return n
                continue
            if m.offset() < end:
                n += 1
            else:
                return n
        raise AssertionError(f"{topic}[{partition}]: end {end} not reached in {timeout}s")
    finally:
        c.close()


_TRANSIENT = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
              KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.REQUEST_TIMED_OUT,
              KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
              # right after a broker answers again its metadata may not list
              # the partitions' leaders yet (seen after a SIGSTOP/SIGCONT)
              KafkaError._UNKNOWN_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.NOT_LEADER_FOR_PARTITION}


def wait_consumed(group, topics, timeout=60, tick=None):
    """Wait until the group's committed offsets leave no record unconsumed in
    any partition of topics. The end offset of a transactional topic is often
    one or more markers (commit, abort), so 'committed == end' is the wrong
    test: what counts is that no record lies between committed and end.
    tick, when given, runs before every check (e.g. a supervisor's restart)."""
    def done():
        if tick:
            tick()
        try:
            for t in topics:
                ends = end_offsets(t)
                com = committed(group, t)
                for p, e in ends.items():
                    if e > 0 and com.get(p, -1) < e and records_between(t, p, com.get(p, -1), e) > 0:
                        return None
        except KafkaException as e:
            # right after a broker restart the group coordinator answers
            # NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS for a while: not yet
            if e.args and e.args[0].code() in _TRANSIENT:
                return None
            raise
        return True
    wait_until(done, timeout, f"group {group} to consume {topics}", interval=0.5)


def results(topic="aggregated-sales", **kw):
    """Output records as a list of dicts (with '_key')."""
    rows = []
    for m in read_topic(topic, **kw):
        d = json.loads(m.value())
        d["_key"] = m.key().decode() if m.key() is not None else None
        rows.append(d)
    return rows


def dlq(topic, **kw):
    out = []
    for m in read_topic(topic, **kw):
        h = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
        out.append({"value": m.value(), "key": m.key(), "reason": h.get("rill.error.reason"),
                    "detail": h.get("rill.error.detail"), "headers": h})
    return out


# ---- Postgres -----------------------------------------------------------------

def pg(sql, params=None):
    with psycopg.connect(PG_DSN, connect_timeout=5) as conn:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None


def pg_results(table="aggregated_sales", since_ms=None):
    rows = pg(f'SELECT seller_id, (extract(epoch from window_start)*1000)::bigint, '
              f'(extract(epoch from window_end)*1000)::bigint, total_amount_usd, sales_count FROM "{table}"')
    return {(r[0], r[1]): (r[3], r[4], r[2]) for r in rows}


# ---- ground truth ---------------------------------------------------------------

def truth(events, window_ms, closed_before_ms=None, advance_ms=None):
    """events: iterable of (seller, amount, ts_ms). {(seller, wstart): (sum, count)}
    computed with plain integer arithmetic, independent of the engine.
    advance_ms: hopping windows (a window starts at every multiple of it and
    holds [start, start + window_ms)); None: tumbling."""
    t = {}
    step = advance_ms or window_ms
    for seller, amount, ts in events:
        for ws in range(ts - ts % step, ts - window_ms, -step):
            if closed_before_ms is not None and ws + window_ms > closed_before_ms:
                continue
            s, c = t.get((seller, ws), (0, 0))
            t[(seller, ws)] = (s + amount, c + 1)
    return t


def as_truth(rows):
    """Output rows -> {(seller, wstart): (sum, count)}; asserts no duplicates."""
    t = {}
    for r in rows:
        k = (r["seller_id"], r["window_start_ms"])
        assert k not in t, f"window {k} emitted twice: {t[k]} and {r}"
        assert r["_key"] == r["seller_id"]
        t[k] = (r["total_amount_usd"], r["sales_count"])
    return t


# ---- programs -----------------------------------------------------------------------

_started = []


@atexit.register
def _kill_leftovers():
    """No test leaves a process behind, even when it fails half-way."""
    for p in _started:
        if p.poll() is None:
            p.kill()


class Aggregator:
    """One sales-aggregator process with its own state directory and log."""

    def __init__(self, app_id, *flags, state_dir=None, env_extra=None, input_topic="sales-usd",
                 output_topic="aggregated-sales", table="aggregated_sales", pg_dsn=PG_DSN,
                 prefix=(), program="sales-aggregator"):
        """pg_dsn=None runs without the Postgres sink. prefix: words put before
        the program, e.g. ("ip", "netns", "exec", NS) to run it in another
        network namespace (the process started is then the prefix's, which
        execs the aggregator: same pid, same signals). program: the binary
        in the build directory (sales-stats takes the same flags)."""
        self.app_id = app_id
        self.program = program
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="rill-state-")
        pg_flags = ["--pg-dsn", pg_dsn, "--pg-table", table] if pg_dsn else ["--pg-dsn", "none"]
        self.flags = ["--application-id", app_id, "--bootstrap-servers", BOOTSTRAP,
                      *pg_flags, "--state-dir", self.state_dir,
                      "--input-topic", input_topic, "--output-topic", output_topic,
                      *group_flags(), *flags]
        self.env_extra = env_extra or {}
        self.prefix = list(prefix)
        self.proc = None
        self.log_path = None
        self.logs = []

    def start(self, env_extra=None):
        fd, self.log_path = tempfile.mkstemp(prefix=f"{self.app_id}-", suffix=".log")
        os.close(fd)
        self.logs.append(self.log_path)
        e = dict(os.environ)
        e.update(self.env_extra)
        e.update(env_extra or {})
        self.proc = subprocess.Popen([*self.prefix, os.path.join(BUILD, self.program), *self.flags],
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, env=e)
        _started.append(self.proc)
        return self

    def signal(self, sig):
        self.proc.send_signal(sig)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def all_logs(self):
        out = []
        for p in self.logs:
            with open(p, errors="replace") as f:
                out.append(f.read())
        return "\n".join(out)

    def wait_ready(self, timeout=60):
        wait_until(lambda: "partitions_assigned" in self.log() or self.proc.poll() is not None,
                   timeout, f"{self.app_id} to join the group")
        assert self.proc.poll() is None, f"aggregator exited:\n{self.log()[-3000:]}"
        return self

    def stop(self, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"aggregator did not stop on SIGTERM in {timeout}s:\n{self.log()[-3000:]}")
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def run_program(args, timeout=60, env_extra=None):
    e = dict(os.environ)
    e.update(env_extra or {})
    p = subprocess.run(args, capture_output=True, timeout=timeout, env=e)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def app_topics(partitions=4, prefix="t", replication=1):
    """Fresh input/output topics and names for one test."""
    tag = uuid.uuid4().hex[:8]
    names = {"input": f"{prefix}-sales-{tag}", "output": f"{prefix}-agg-{tag}",
             "app": f"{prefix}-app-{tag}", "table": f"agg_{tag}"}
    create_topics({names["input"]: partitions, names["output"]: partitions}, replication=replication)
    return names


def aligned_base(window_ms, minutes_ago=20):
    now_ms = int(time.time() * 1000)
    b = now_ms - minutes_ago * 60000
    return b - b % window_ms


# ---- a Kafka cluster of its own ------------------------------------------------------

class PrivateKafka:
    """What private_kafka yields: the environment of deploy/local/kafka/kafka
    for this cluster, and a way to call that script."""

    def __init__(self, env):
        self.env = env

    def run(self, *args, timeout=180):
        p = subprocess.run([os.path.join(ROOT, "deploy", "local", "kafka", "kafka"), *args],
                           capture_output=True, text=True, timeout=timeout, env=self.env)
        assert p.returncode == 0, f"kafka {' '.join(args)}: {p.stdout}{p.stderr}"
        return p.stdout.strip()

    def pid(self, broker=1):
        return int(self.run("pid", str(broker)) or 0)


@contextlib.contextmanager
def private_kafka(name, port=None, brokers=1, env_extra=None):
    """A Kafka cluster of its own (its run directory .run/<name>-<port>, its
    ports from `port`, free ones by default), for a test that stops,
    freezes or cuts it off: no other test, nor another run of the suite on
    this machine, is harmed. BOOTSTRAP points at it meanwhile; always taken
    down."""
    global BOOTSTRAP
    port = port or free_ports(2 * brokers)
    name = f"{name}-{port}"
    env = dict(os.environ, RILL_RUN_DIR=os.path.join(ROOT, ".run", name), RILL_KAFKA_PORT=str(port),
               **(env_extra or {}))
    k = PrivateKafka(env)
    saved = BOOTSTRAP
    try:
        k.run("up", "--brokers", str(brokers), timeout=240)
        BOOTSTRAP = k.run("bootstrap-servers", timeout=30)
        yield k
    finally:
        BOOTSTRAP = saved
        if os.environ.get("RILL_EVIDENCE_DIR"):  # a copy of the brokers' data, to read later
            try:  # of running brokers: good enough to read, never a reason to skip the down
                shutil.copytree(env["RILL_RUN_DIR"], os.path.join(os.environ["RILL_EVIDENCE_DIR"], name),
                                symlinks=True, ignore_dangling_symlinks=True, dirs_exist_ok=True)
            except (OSError, shutil.Error) as e:
                print(f"private_kafka: evidence copy incomplete: {e}")
        subprocess.run([os.path.join(ROOT, "deploy", "local", "kafka", "kafka"), "down"],
                       capture_output=True, text=True, timeout=120, env=env)


# ---- a network cut, on loopback ------------------------------------------------------

class TcpProxy:
    """A TCP proxy on 127.0.0.1 (or bind_host) in front of one server. cut() closes every
    connection and refuses new ones (a server gone away); freeze() keeps the
    connections open but forwards nothing (a network cut: the peer sees
    silence, not an error); heal() forwards again. Threads, all bounded by
    the sockets' lifetime; close() ends them."""

    def __init__(self, target_host, target_port, bind_host="127.0.0.1"):
        """bind_host: the local address to listen on (e.g. the host side of a
        veth pair, for a client in another network namespace)."""
        import socket
        import threading
        self.target = (target_host, target_port)
        self.bind_host = bind_host
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((bind_host, 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.state = "open"
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.state != "open":
                c.close()
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        import time as _t
        try:
            while not self.closed:
                data = src.recv(65536)
                if not data:
                    break
                while self.state == "frozen" and not self.closed:
                    _t.sleep(0.05)
                if self.state == "cut":
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def _drop_all(self):
        import socket
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def cut(self):
        self.state = "cut"
        self._drop_all()

    def freeze(self):
        self.state = "frozen"

    def heal(self):
        self.state = "open"

    def close(self):
        self.closed = True
        self.cut()
        self.lsock.close()

    def dsn(self, dsn):
        """dsn with host and port replaced by this proxy's."""
        import re
        d = re.sub(r"\bhost=\S+", f"host={self.bind_host}", dsn)
        return re.sub(r"\bport=\S+", f"port={self.port}", d)

    def pg_env(self):
        """PGPASSWORD for a client going through this proxy (the passfile's
        line names the real port, so it would not match)."""
        with open(env("PGPASSFILE")) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 5:
                    return {"PGPASSWORD": parts[4]}
        return {}
