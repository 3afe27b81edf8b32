"""deploy/local/demo against the shared stack (DEMO_EXTERNAL_STACK=1, the
programs of RILL_BUILD_DIR, fresh topics and table): the live salesctl watch
view fills with committed windows that Postgres agrees with, and a status line;
piped it writes plain lines, under a terminal (script -qec) it redraws in
place; Ctrl-C stops every process the demo started, in both cases."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import rill_harness as h  # noqa: E402

DEMO = os.path.join(h.ROOT, "deploy", "local", "demo")

free_port = h.free_port


def descendants(pid):
    """Every live process below pid (walks /proc by parent id)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def demo_env(tag):
    e = dict(os.environ)
    e.update({"RILL_BUILD_DIR": h.BUILD, "DEMO_EXTERNAL_STACK": "1", "DEMO_DIR": tempfile.mkdtemp(prefix="demo-"),
              "DEMO_INPUT": f"demo-sales-{tag}", "DEMO_OUTPUT": f"demo-agg-{tag}", "DEMO_TABLE": f"demo_agg_{tag}",
              "DEMO_APP_ID": f"demo-app-{tag}", "DEMO_HTTP_PORT": str(free_port()), "DEMO_RATE": "100"})
    h.create_topics({e["DEMO_INPUT"]: 4, e["DEMO_OUTPUT"]: 4})
    return e


def run_demo(cmd, env, out_path, stdin=None):
    out = open(out_path, "wb")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=stdin, env=env, start_new_session=True)
    h._started.append(p)
    return p


def watch_until_committed(p, out_path):
    seen = set()

    def ready():
        seen.update(descendants(p.pid))
        assert p.poll() is None, f"demo exited early:\n{open(out_path, errors='replace').read()[-3000:]}"
        text = open(out_path, errors="replace").read()
        return ("agrees" in text and "events/s" in text) and text
    text = h.wait_until(ready, 120, "a committed window that Postgres agrees with, and a status line", interval=0.5)
    seen.update(descendants(p.pid))
    return text, seen


def assert_all_gone(p, seen, out_path):
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"demo did not stop on SIGINT:\n{open(out_path, errors='replace').read()[-2000:]}")
    h.wait_until(lambda: not [q for q in seen if alive(q)], 15, "every process the demo started to stop")
    names = {"sales-aggregator", "sales-producer", "salesctl"}
    started = {open(f"/proc/{q}/comm").read().strip() for q in seen if os.path.exists(f"/proc/{q}/comm")}
    assert not started & names, f"still running: {started & names}"


def test_demo_piped_plain_lines_and_ctrl_c_stops_everything():
    env = demo_env(h.uniq("p").split("-")[1])
    out_path = env["DEMO_DIR"] + "/out.txt"
    p = run_demo([DEMO], env, out_path)
    try:
        text, seen = watch_until_committed(p, out_path)
        comms = {open(f"/proc/{q}/comm").read().strip() for q in seen if alive(q)}
        assert {"sales-aggregato", "sales-producer", "salesctl"} <= comms, comms
        assert "\033[" not in text, "escapes in piped output"
        line = next(ln for ln in text.splitlines() if ln.startswith("result ") and "postgres=agrees" in ln)
        assert "seller=seller-" in line and "total_usd=" in line and "sales=" in line, line
        status = next(ln for ln in text.splitlines() if ln.startswith("status "))
        assert "events/s" in status and "lag" in status and "dead letters" in status, status
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        assert_all_gone(p, seen, out_path)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_demo_under_a_terminal_redraws_in_place_and_ctrl_c_stops_everything():
    env = demo_env(h.uniq("t").split("-")[1])
    out_path = env["DEMO_DIR"] + "/out.txt"
    r, w = os.pipe()
    # script gives the demo a pseudo-terminal; a ^C written to script's input
    # is turned into SIGINT by the terminal's line discipline, as in a real one
    p = run_demo(["script", "-qec", DEMO, "/dev/null"], env, out_path, stdin=r)
    os.close(r)
    try:
        text, seen = watch_until_committed(p, out_path)
        assert "\033[H\033[J" in text, "no in-place redraw on a terminal"
        assert "CLOSED WINDOW" in text and "RUNNING USD" in text and "POSTGRES" in text
        os.write(w, b"\x03")
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"Ctrl-C did not stop the demo:\n{open(out_path, errors='replace').read()[-2000:]}")
        assert_all_gone(p, seen, out_path)
    finally:
        os.close(w)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
