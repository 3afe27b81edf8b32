"""The docs match the programs: every flag and environment variable that
--help prints is in docs/configuration.md, every log event the docs explain
is one the code emits, and the README's two commands exist."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("RILL_BUILD_DIR", os.path.join(ROOT, "build"))


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def test_configuration_reference_lists_every_flag_and_variable():
    out = subprocess.run([os.path.join(BUILD, "sales-aggregator"), "--help"], capture_output=True,
                         text=True, timeout=30).stdout
    flags = set(re.findall(r"--[a-z][a-z0-9-]+", out))
    envs = set(re.findall(r"RILL_[A-Z0-9_]+", out))
    assert len(flags) > 20 and len(envs) > 20
    doc = read("docs/configuration.md")
    assert not sorted(f for f in flags if f not in doc), "flags missing from docs/configuration.md"
    assert not sorted(e for e in envs if e not in doc), "variables missing from docs/configuration.md"
    prod = subprocess.run([os.path.join(BUILD, "sales-producer"), "--help"], capture_output=True,
                          text=True, timeout=30).stdout
    assert not sorted(f for f in set(re.findall(r"--[a-z][a-z0-9-]+", prod)) if f not in doc)


def test_documented_log_events_exist_in_the_code():
    code = ""
    for d in ("base", "engine", "state", "connectors", "apps"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, d)):
            for f in files:
                if f.endswith(".c"):
                    with open(os.path.join(dirpath, f)) as fh:
                        code += fh.read()
    emitted = set(re.findall(r'rill_log\(RILL_LOG_\w+,\s*"(\w+)"', code))
    for doc in ("docs/troubleshooting.md", "docs/operations.md", "docs/architecture.md"):
        named = set(re.findall(r"event=(\w+)", read(doc)))
        assert not sorted(named - emitted), f"{doc} names events the code never logs"


def test_readme_quick_start_commands_exist():
    readme = read("README.md")
    for cmd in ("deploy/local/demo", "tests/run"):
        assert cmd in readme and os.access(os.path.join(ROOT, cmd), os.X_OK)
    assert read(".ci/run").strip().endswith("exec tests/run")


def test_configuration_table_is_what_help_prints():
    """The property table of docs/configuration.md, row by row, is generated
    from --help (key, flag, variable, default): a changed default fails here."""
    out = subprocess.run([os.path.join(BUILD, "sales-aggregator"), "--help"], capture_output=True,
                         text=True, timeout=30).stdout
    rows = re.findall(r"^  (--[a-z0-9-]+) +.*\n +env (RILL_[A-Z0-9_]+), default (.*)$", out, re.M)
    doc = read("docs/configuration.md")
    table = doc[doc.index("generated-table:begin"):doc.index("generated-table:end")]
    for flag, env, default in rows:
        key = flag[2:].replace("-", ".")
        d = default if default == "(none)" else f"`{default}`"
        assert f"| `{key}` | `{flag}` | `{env}` | {d} |" in table, f"row of {key} differs from --help"


def test_salesctl_help_in_the_docs_is_what_it_prints():
    """docs/configuration.md quotes `salesctl --help` verbatim, and explains
    every command and flag it lists."""
    out = subprocess.run([os.path.join(BUILD, "salesctl"), "--help"], capture_output=True,
                         text=True, timeout=30).stdout
    doc = read("docs/configuration.md")
    section = doc[doc.index("## salesctl"):doc.index("## Self-check")]
    quoted = re.search(r"`salesctl --help`:\n\n```\n(.*?)```", section, re.S)
    assert quoted, "docs/configuration.md: no `salesctl --help` block in the salesctl section"
    assert quoted.group(1) == out, "the salesctl --help block differs from what salesctl --help prints"
    prose = section[quoted.end():]
    commands = set(re.findall(r"^  salesctl (\w+)", out, re.M))
    assert commands >= {"watch", "query", "dlq", "serve"}, commands
    assert not sorted(c for c in commands if f"`{c}" not in prose), "commands not explained"
    assert not sorted(f for f in set(re.findall(r"--[a-z][a-z0-9-]+", out)) if f not in prose), \
        "salesctl flags not explained below the --help block"
