"""`vemo serve` in a real browser: headless Chromium loads the page, uploads a clip, and the label, the chart
and the annotated video appear. Skips when no Chromium is installed (`make setup` installs it as root).

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`), the way Puppeteer
does it: no driver binary to match the browser's version, no websocket library. With the environment
variable VEMO_SERVE_SCREENSHOT=FILE.png the page is also saved as a screenshot (how docs/serve.png is
made, with VEMO_SERVE_CHECKPOINT naming the model to serve instead of the test's untrained one).
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="vemo serve needs fastapi (pip install 'vemo[serve]')")
import uvicorn  # noqa: E402

from vemo.reporting.document import find_chromium  # noqa: E402
from vemo.serve import create_app  # noqa: E402

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed (Debian: apt install chromium)")


class DevTools:
    """A headless Chromium and a blocking DevTools client: JSON messages separated by NUL bytes, commands
    written to the browser's fd 3, answers and events read from its fd 4."""

    def __init__(self, exe: str, profile: Path, size: str = "1100,1150"):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds() -> None:  # in the child, before exec: the pipe ends go to fds 3 and 4
            w = os.dup(from_browser_w) if from_browser_w == 3 else from_browser_w
            os.dup2(to_browser_r, 3)
            os.dup2(w, 4)

        args = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                "--hide-scrollbars", "--mute-audio", f"--window-size={size}", f"--user-data-dir={profile}"]  # fmt: skip
        self.proc = subprocess.Popen(
            [exe, *args, "about:blank"],
            preexec_fn=fds,  # the simplest way to place two pipes at fixed fds
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer, self._next_id, self.session = b"", 0, None

    def send(self, method: str, timeout: float = 30, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"still false after {timeout} s: {expression}")

    def set_file(self, selector: str, path: Path) -> None:
        root = self.send("DOM.getDocument", depth=0)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", nodeId=node, files=[str(path)])  # fires the input's change event

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        os.close(self._to_browser)  # Chromium exits when its pipe closes
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._from_browser)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    """vemo serve (uvicorn, a real socket on loopback) in a thread, for the test's tiny model."""
    from test_serve import save_tiny_checkpoint

    checkpoint = os.environ.get("VEMO_SERVE_CHECKPOINT") or save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(checkpoint), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def a_clip(tmp_path):
    """A real CREMA-D clip when ../shared has them, else a synthetic talking face."""
    from conftest import CREMA_SAMPLE, write_video
    from test_serve import synthetic_face_frames

    real = sorted((CREMA_SAMPLE / "VideoFlash").glob("*HAP*.flv"))
    return real[0] if real else write_video(tmp_path / "face.mp4", synthetic_face_frames(), fps=15)


COLOURED_PIXELS = """(() => {
  const c = document.getElementById("chart"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const rgb = [d[i], d[i + 1], d[i + 2]];
    if (Math.max(...rgb) - Math.min(...rgb) > 80) n++;  // coloured: a class line, not grey grid or text
  }
  return n;
})()"""


def test_upload_in_a_real_browser_shows_label_chart_and_video(server_url, a_clip, tmp_path):
    browser = DevTools(find_chromium(), tmp_path / "profile")
    try:
        browser.open(server_url)
        limits = browser.wait_for("document.getElementById('limits').textContent", timeout=30)
        assert "classes:" in limits  # the page reached /api/health
        browser.set_file("#file", a_clip)
        state = browser.wait_for(
            "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state"
        )
        assert state == "done", browser.evaluate("document.getElementById('error').innerText")
        labels = browser.evaluate("Array.from(document.querySelectorAll('#legend span'), s => s.textContent)")
        assert browser.evaluate("document.getElementById('label').textContent") in labels
        assert browser.evaluate(COLOURED_PIXELS) > 300  # the class lines were drawn
        assert browser.wait_for("document.getElementById('video').readyState >= 2", timeout=30)  # the MP4 plays
        browser.evaluate("(v => { v.currentTime = v.duration; })(document.getElementById('video'))")
        overlay = browser.wait_for(
            "!document.getElementById('video').seeking"
            " && document.getElementById('overlay').textContent !== '\u2026'"  # the text before any window
            " && document.getElementById('overlay').textContent"
        )
        assert overlay.split()[0] in labels
        assert browser.evaluate("document.getElementById('csv').getAttribute('href')").endswith("windows.csv")
        if os.environ.get("VEMO_SERVE_SCREENSHOT"):
            browser.screenshot(Path(os.environ["VEMO_SERVE_SCREENSHOT"]))
    finally:
        browser.close()


def test_an_error_is_shown_in_plain_words(server_url, tmp_path):
    not_a_video = tmp_path / "holiday.mp4"
    not_a_video.write_text("this is a shopping list, not a video\n" * 40)
    browser = DevTools(find_chromium(), tmp_path / "profile")
    try:
        browser.open(server_url)
        browser.wait_for("document.getElementById('limits').textContent", timeout=30)
        browser.set_file("#file", not_a_video)
        assert browser.wait_for("document.body.dataset.state === 'error'")
        text = browser.evaluate("document.getElementById('error-text').textContent")
        assert text == "This file is not a video or an image that vemo can read."
    finally:
        browser.close()
