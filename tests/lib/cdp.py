"""Headless Chromium driven over the DevTools protocol, standard library only.

Chromium's --remote-debugging-pipe speaks the protocol over two file
descriptors (it reads commands on fd 3 and writes answers and events on fd
4, each message JSON ending in a NUL byte), so no websocket client is
needed. One page, one session (flat mode). Every wait is bounded.

    with Browser() as b:
        b.navigate("http://127.0.0.1:8080/")
        n = b.eval("document.querySelectorAll('circle').length")
        b.screenshot("out.png")
"""
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class Browser:
    def __init__(self, width=1280, height=1000, timeout=30):
        self.width, self.height, self.timeout = width, height, timeout
        self.events, self.exceptions, self.console = [], [], []
        self._id, self._buf = 0, b""

    def __enter__(self):
        exe = chromium_path()
        assert exe, "chromium not found (deploy/local/install-deps installs Debian's chromium)"
        self.profile = tempfile.mkdtemp(prefix="rill-chromium-")
        r, self._w = os.pipe()
        self._r, w = os.pipe()
        # above 9, so that bash's renumbering to 3 and 4 cannot clobber them
        to_chrome_r, from_chrome_w = fcntl.fcntl(r, fcntl.F_DUPFD, 10), fcntl.fcntl(w, fcntl.F_DUPFD, 10)
        os.close(r)
        os.close(w)
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--hide-scrollbars",
                "--mute-audio", f"--user-data-dir={self.profile}", f"--window-size={self.width},{self.height}",
                "--remote-debugging-pipe", "about:blank"]
        # bash numbers the pipe ends 3 and 4 for chromium, whatever they are here
        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-',
             "bash", *args], pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        try:
            targets = self.call("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
            for domain in ("Page", "Runtime"):
                self.call(f"{domain}.enable", session=True)
            self.call("Emulation.setDeviceMetricsOverride", session=True, width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=5)
                except Exception:
                    pass
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        finally:
            for fd in (self._r, self._w):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    # ---- the protocol ------------------------------------------------------------------

    def _read_message(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()}):\n{self.log_text()}")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=False, timeout=None, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self._event(m)

    def _event(self, m):
        method = m.get("method")
        if method == "Runtime.exceptionThrown":
            self.exceptions.append(m["params"]["exceptionDetails"])
        elif method == "Runtime.consoleAPICalled":
            self.console.append(m["params"])
        self.events.append(method)

    def log_text(self):
        try:
            with open(os.path.join(self.profile, "chromium.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    # ---- what tests use ----------------------------------------------------------------

    def navigate(self, url):
        r = self.call("Page.navigate", session=True, url=url)
        assert not r.get("errorText"), f"navigate {url}: {r['errorText']}"
        return r

    def eval(self, expression):
        """The value of a JavaScript expression in the page (JSON-able)."""
        r = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)
        data = base64.b64decode(r["data"])
        with open(path, "wb") as f:
            f.write(data)
        return len(data)
