"""The demo page (serve_app/web/) in a real browser: headless Debian Chromium driven through the
Chrome DevTools Protocol (a small client on the `websockets` package), against the app deployed
on the session's Ray cluster. Screenshots go to test-artifacts/ (gitignored)."""
from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

ARTIFACTS = REPO / "test-artifacts"
REGISTRY = """
- name: DCP
  type: prior
  description: Dark Channel Prior with guided-filter refinement
  paper: "He, Sun, Tang. Single Image Haze Removal Using Dark Channel Prior. CVPR 2009"
  importPath: algorithms.dcp
  id: 13
  children:
    - {name: default, type: prior, description: omega 0.95, params: {omega: 0.95, patch: 15}}
    - {name: mild, type: prior, description: omega 0.85, params: {omega: 0.85}}
- name: CAP
  type: prior
  description: Colour Attenuation Prior
  importPath: algorithms.cap
- name: NoWeights
  type: cnn
  description: a network whose weights file is absent
  importPath: algorithms.dcp
  children:
    - {name: ITS, type: indoor, description: missing, path: NoWeights/ITS/model.pth}
"""


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no Chromium on PATH: install the Debian package `chromium` (apt-get install chromium)")


class CDP:
    """A minimal Chrome DevTools Protocol client for one page target."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=20)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"CDP {method} got no reply in {timeout}s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def js(self, expression: str, timeout: float = 30):
        """Evaluate in the page (promises awaited) and return the JSON value."""
        res = self.call("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True,
                        returnByValue=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, what: str = ""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        message = self.js("document.getElementById('message').innerText")
        raise AssertionError(f"timed out after {timeout}s waiting for {what or expression}; page message: {message!r}")

    def set_file(self, selector: str, path: Path) -> None:
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(path)])

    def screenshot(self, target: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(data))
        return target

    def close(self) -> None:
        self.ws.close()


class Browser:
    """Headless Chromium with a fresh profile; DevTools on a free port (read from the profile)."""

    def __init__(self, width: int = 1280, height: int = 1000):
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-"))
        cmd = [
            chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--no-default-browser-check",
            f"--user-data-dir={self.profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--window-size={width},{height}", "about:blank",
        ]
        self.log = open(self.profile / "chromium.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Chromium did not start: {(self.profile / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])

    def page(self) -> CDP:
        targets = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        cdp = CDP(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "DOM"):
            cdp.call(f"{domain}.enable")
        return cdp

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def web_app(ray_serve, tmp_path_factory):
    from ray import serve

    from tests.conftest import deploy

    root = tmp_path_factory.mktemp("web")
    (root / "models.yaml").write_text(REGISTRY)
    (root / "weights").mkdir()
    settings = {"storage_backend": "local", "storage_dir": str(root / "storage"),
                "weights_root": str(root / "weights")}
    deploy({"registry_path": str(root / "models.yaml"), "settings": settings, "profile": "cpu",
            "models": ["DCP", "CAP", "NoWeights"]}, "web", "/")
    yield ray_serve.url
    serve.delete("web")


@pytest.fixture(scope="module")
def page(web_app):
    browser = Browser()
    cdp = browser.page()
    try:
        cdp.call("Page.navigate", url=web_app + "/")
        cdp.wait_for("document.readyState === 'complete' && document.getElementById('model').options.length > 1",
                     timeout=30, what="the model list")
        yield cdp
    finally:
        cdp.close()
        browser.stop()


# Pixels of the input preview and of the rendered result, read back through a canvas.
PIXEL_DIFF_JS = """
(() => {
  const read = (img) => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    return ctx.getImageData(0, 0, c.width, c.height).data;
  };
  const a = read(document.getElementById('before')), b = read(document.getElementById('after'));
  if (a.length !== b.length) return {sameSize: false};
  let sum = 0, changed = 0;
  for (let i = 0; i < a.length; i += 4) {
    const d = Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]);
    sum += d / 3;
    if (d > 6) changed++;
  }
  const n = a.length / 4;
  return {sameSize: true, meanAbsDiff: sum / n, changedFraction: changed / n,
          width: document.getElementById('after').naturalWidth};
})()
"""


SET_SLIDER = "(() => { const s = document.getElementById('slider'); s.value = %d; s.dispatchEvent(new Event('input')); })()"


def _dehaze_loaded_image(page) -> None:
    """Wait for the chosen image's preview, press Dehaze, wait for the result (must succeed)."""
    page.wait_for("!document.getElementById('run').disabled && document.getElementById('before').complete "
                  "&& document.getElementById('before').naturalWidth > 0", timeout=20, what="the input preview")
    page.js("document.getElementById('run').click()")
    page.wait_for("document.body.dataset.state === 'done' || document.body.dataset.state === 'error'",
                  timeout=90, what="the result")
    assert page.js("document.body.dataset.state") == "done", page.js("document.getElementById('message').innerText")


def test_models_list_shows_availability(page):
    models = page.js("[...document.getElementById('model').options].map(o => [o.value, o.disabled, o.title])")
    by_name = {m[0]: m for m in models}
    assert set(by_name) == {"DCP", "CAP", "NoWeights"}
    assert by_name["NoWeights"][1] is True and "NoWeights/ITS/model.pth" in by_name["NoWeights"][2]
    assert by_name["DCP"][1] is False
    variants = page.js("[...document.getElementById('variant').options].map(o => o.value)")
    assert variants == ["default", "mild"]
    facts = page.js("document.getElementById('facts').innerText")
    assert "Dark Channel Prior" in facts and "omega=0.95" in facts


def test_upload_dehaze_compare_and_download(page, shared_dir):
    hazy = shared_dir / "data" / "sots-indoor" / "hazy" / "1400_5.png"
    page.set_file("#file", hazy)
    _dehaze_loaded_image(page)
    diff = page.js(PIXEL_DIFF_JS)
    assert diff["sameSize"] and diff["width"] == 620, diff
    assert diff["meanAbsDiff"] > 5 and diff["changedFraction"] > 0.5, diff
    timing = page.js("document.getElementById('timing').innerText")
    assert "round trip" in timing and "inference" in timing, timing
    download = page.js("[document.getElementById('download').hidden, document.getElementById('download').download,"
                       " document.getElementById('download').href]")
    assert download[0] is False and download[1] == "1400_5-DCP-default.png" and download[2].startswith("blob:")
    # the slider moves the divider
    page.js(SET_SLIDER % 30)
    assert page.js("document.getElementById('after').style.clipPath") == "inset(0px 0px 0px 30%)"
    page.js(SET_SLIDER % 50)
    shot = page.screenshot(ARTIFACTS / "web-demo.png")
    assert shot.stat().st_size > 10_000


def test_a_non_image_is_explained_in_plain_words(page, tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is a shopping list, not a photo\n")
    page.set_file("#file", bogus)
    page.wait_for("!document.getElementById('run').disabled", timeout=10, what="the Dehaze button")
    page.js("document.getElementById('run').click()")
    page.wait_for("document.body.dataset.state === 'error'", timeout=30, what="the error message")
    message = page.js("document.getElementById('message').innerText")
    assert "not an image" in message and "HTTP 415" in message, message
    assert "Traceback" not in message and "{" not in message
    assert page.js("document.getElementById('download').hidden") is True
    page.screenshot(ARTIFACTS / "web-demo-error.png")


DROP_TARGET_CENTER = """
(() => { const r = document.getElementById('drop').getBoundingClientRect();
         return [r.left + r.width / 2, r.top + r.height / 2]; })()
"""


def test_drag_and_drop_a_file_onto_the_page(page, shared_dir):
    """A real drag of a file from outside the browser (CDP Input.dispatchDragEvent): the drop
    zone highlights while dragged over, and the dropped image is dehazed like a picked one."""
    hazy = shared_dir / "data" / "sots-indoor" / "hazy" / "1401_5.png"
    x, y = page.js(DROP_TARGET_CENTER)
    data = {"items": [], "files": [str(hazy)], "dragOperationsMask": 1}
    page.call("Input.dispatchDragEvent", type="dragEnter", x=x, y=y, data=data)
    page.call("Input.dispatchDragEvent", type="dragOver", x=x, y=y, data=data)
    assert page.js("document.getElementById('drop').classList.contains('over')") is True
    page.call("Input.dispatchDragEvent", type="drop", x=x, y=y, data=data)
    assert page.js("document.getElementById('drop').classList.contains('over')") is False
    _dehaze_loaded_image(page)
    diff = page.js(PIXEL_DIFF_JS)
    assert diff["sameSize"] and diff["meanAbsDiff"] > 5, diff
    assert page.js("document.getElementById('download').download") == "1401_5-DCP-default.png"
