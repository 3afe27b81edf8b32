"""The scripts people type must finish in a real terminal.

A plain `timeout CMD` moves CMD into a background process group; in a real
terminal, anything that then changes terminal modes (apt/dpkg, stty, a JVM)
gets SIGTTOU and stops forever. CI has no terminal and never shows it, so
these tests make one: they run the commands under `script -qec` (a
pseudo-terminal with its own session) and watch the process states, failing
at once when any process of the run is stopped (state T) and failing when it
does not end in bounded time.
"""
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMON = ROOT / "deploy" / "local" / "lib" / "common.sh"

pytestmark = pytest.mark.skipif(shutil.which("script") is None, reason="script(1) (bsdutils) not installed")


def descendants(pid):
    """pids of every process below pid (from /proc), pid itself excluded."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append((int(d), fields[0]))
    out, todo = [], [pid]
    while todo:
        for child, state in children.get(todo.pop(), []):
            out.append((child, state))
            todo.append(child)
    return out


def run_in_pty(command, limit, env=None):
    """Run command (a shell string) in a pseudo-terminal. Returns (status,
    output, stopped) where stopped lists the processes seen in state T (the
    run is ended as soon as one is: a stopped process never resumes)."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"rill-pty-{os.getpid()}.log"
    p = subprocess.Popen(["script", "-qec", command, str(out)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                         env={**os.environ, **(env or {})}, start_new_session=True)
    deadline = time.monotonic() + limit
    stopped = []
    try:
        while p.poll() is None and time.monotonic() < deadline:
            stopped = [pid for pid, state in descendants(p.pid) if state == "T"]
            if stopped:
                break
            time.sleep(0.2)
        status = p.poll()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 9)
            p.wait(10)
    text = out.read_text(errors="replace") if out.exists() else ""
    out.unlink(missing_ok=True)
    return status, text, stopped


# The terminal-touching step apt/dpkg performs, without apt: tcsetattr on the tty.
TOUCH_TTY = "stty -g >/dev/null && stty sane && echo touched-the-tty"


def test_plain_timeout_stops_in_a_terminal_so_this_test_can_see_it():
    # The control: the old pattern really stops under a pty, and we see it.
    # (`; echo` keeps the shell as timeout's parent, as in a script: were
    # timeout exec'd by the shell, its group would be orphaned and the tty
    # call would fail with EIO instead of stopping.)
    status, text, stopped = run_in_pty(f"timeout 30 bash -c '{TOUCH_TTY}'; echo rc=$?", 20)
    assert stopped, f"plain timeout did not stop (status {status}): {text!r}"


def test_bounded_runs_in_the_terminal_foreground():
    status, text, stopped = run_in_pty(f". {COMMON}; bounded 30 bash -c '{TOUCH_TTY}'; echo rc=$?", 20)
    assert not stopped, f"a process stopped in the terminal: {stopped}"
    assert status == 0 and "touched-the-tty" in text and "rc=0" in text, (status, text)


def test_bounded_still_bounds():
    t0 = time.monotonic()
    status, text, stopped = run_in_pty(f". {COMMON}; bounded 1 sleep 30; echo rc=$?", 20)
    assert status == 0 and "rc=124" in text and time.monotonic() - t0 < 15, (status, text)


def test_no_script_calls_timeout_directly():
    # Every bounded call in the scripts people type goes through `bounded`.
    offenders = []
    for f in [ROOT / "tests" / "run", ROOT / "tests" / "bench" / "run",
              *sorted((ROOT / "deploy" / "local").rglob("*"))]:
        if not f.is_file() or f.suffix in (".xml", ".properties", ".md"):
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            code = line.split("#", 1)[0]
            if "timeout " in code and "--foreground" not in code and "_timeout" not in code \
                    and ".timeout" not in code and "timeout=" not in code:
                offenders.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def can_install():
    if shutil.which("apt-get") is None or shutil.which("dpkg-query") is None:
        return False
    return os.geteuid() == 0 or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg], capture_output=True, text=True)
    return r.stdout == "installed"


@pytest.mark.skipif(not can_install(), reason="needs root or passwordless sudo and apt-get")
def test_install_deps_installs_in_a_terminal():
    # The real apt path of install-deps, in a pseudo-terminal, with a tiny
    # package that the project does not need (removed again afterwards).
    pkg = "hello"
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if installed(pkg):
        subprocess.run([*sudo, "apt-get", "remove", "-y", pkg], capture_output=True, check=True, timeout=300)
    try:
        status, text, stopped = run_in_pty(str(ROOT / "deploy" / "local" / "install-deps"), 900,
                                           env={"RILL_INSTALL_DEPS_PACKAGES": pkg})
        assert not stopped, f"install-deps stopped in the terminal (processes {stopped}): {text[-2000:]}"
        assert status == 0, f"install-deps failed or did not finish in 900 s: {text[-2000:]}"
        assert installed(pkg) and "installed 1 package" in text, text[-2000:]
    finally:
        subprocess.run([*sudo, "apt-get", "remove", "-y", pkg], capture_output=True, timeout=300)
