"""report.html in headless Chromium (Debian package ``chromium``; skipped only when it is not installed).

Two looks at the same file, loaded from disk with a fresh profile and Chromium's background traffic off:
- the plain command line (``--screenshot``) a person or CI would run: a real, non-blank 1280 x 2400 PNG,
  no "Uncaught" in the console log (saved to $QHARNESS_SCREENSHOT when that names a path);
- the DevTools protocol over ``--remote-debugging-pipe``: every request the page makes (only the file
  itself and data: URIs may appear), console errors, exceptions and CSP/network log entries, and the
  headline table and the plots laid out inside the first screen with their images decoded.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests import report_data as rd
from validator.report.html import render_report

WIDTH, HEIGHT = 1280, 2400
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
         '--host-resolver-rules=MAP * ~NOTFOUND']


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = _chromium()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install -y chromium)")]


@pytest.fixture(scope="module")
def report(tmp_path_factory, shapes_small) -> Path:
    out = rd.real_run(tmp_path_factory, "seg", shapes_small)
    summary = json.loads((out / "summary.json").read_text())
    gate, gate_md = rd.sample_gate(summary, passed=False)
    data = rd.load_run(out, shapes_small, gate=gate, gate_markdown=gate_md, history=rd.sample_history())
    path = tmp_path_factory.mktemp("report-browser") / "report.html"
    path.write_text(render_report(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ command line
def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (WIDTH, HEIGHT), (im.format, im.size)
        return np.asarray(im.convert("RGB"))


def test_screenshot_command_line(report, tmp_path):
    shot = tmp_path / "report.png"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", report.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and shot.exists(), log[-3000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
    px = _pixels(shot).astype(np.float32)
    assert px.shape == (HEIGHT, WIDTH, 3)
    assert px.std() > 20, "blank screenshot"
    assert (px.reshape(-1, 3).std(axis=0) > 10).all()
    # the FAIL badge (#c5221f) is painted in the top-left corner: the verdict is the first thing on screen
    top = px[:250, :400]
    red = (np.abs(top - np.array([197, 34, 31], np.float32)).sum(axis=-1) < 40).sum()
    assert red > 2000, red
    errors = [line for line in log.splitlines() if "Uncaught" in line or "ERROR:CONSOLE" in line]
    assert not errors, errors
    dest = os.environ.get("QHARNESS_SCREENSHOT")
    if dest:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, dest)


# ------------------------------------------------------------------------------------------ DevTools
class _Pipe:
    """Minimal DevTools client over --remote-debugging-pipe (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, argv: list[str], stderr=subprocess.DEVNULL):
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        # the child's ends go above 3 and 4 (so that one dup2 cannot clobber the other), then onto 3 and 4 in
        # the child, where Chromium expects them; every other descriptor of ours is non-inheritable (PEP 446)
        child_r, child_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 20), fcntl.fcntl(out_w, fcntl.F_DUPFD_CLOEXEC, 20)
        os.close(cmd_r)
        os.close(out_w)

        def onto_3_and_4():
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                     close_fds=False, preexec_fn=onto_3_and_4)
        os.close(child_r)
        os.close(child_w)
        self._next = 0
        self.events: list[dict] = []
        self._replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._out_r, "rb", buffering=0) as f:
            while chunk := f.read(65536):
                buf += chunk
                while b"\0" in buf:
                    msg, buf = buf.split(b"\0", 1)
                    self._replies.put(json.loads(msg))

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            reply = self._replies.get(timeout=max(0.1, end - time.monotonic()))
            if reply.get("id") == self._next:
                assert "error" not in reply, reply
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        end = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = self._replies.get(timeout=max(0.1, end - time.monotonic()))
            self.events.append(e)
            if e.get("method") == method:
                return e

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)


PROBE = """(() => {
  const vis = el => { if (!el) return null; const r = el.getBoundingClientRect();
    return {top: r.top, left: r.left, width: r.width, height: r.height}; };
  const table = document.querySelector('#table table.headline');
  const plots = Array.from(document.querySelectorAll('img.plot'));
  const shots = Array.from(document.querySelectorAll('img.shot'));
  const headCells = table ? Array.from(table.querySelectorAll('th')).map(th => th.textContent) : [];
  const firstPlot = plots.find(img => img.getBoundingClientRect().height > 0);
  const sortable = document.querySelector('table.sortable');
  let sorted = null;
  if (sortable) {
    const th = sortable.querySelectorAll('thead th')[0]; th.click();
    sorted = Array.from(sortable.tBodies[0].rows).map(r => r.cells[0].textContent);
  }
  return {ready: document.documentElement.getAttribute('data-report-ready'),
          table: vis(table), headCells, deltaCells: table ? table.querySelectorAll('td.dn1, td.dn2, td.d0, td.dp1,'
            + ' td.dp2').length : 0,
          plots: plots.length, plotsDecoded: plots.filter(i => i.complete && i.naturalWidth > 0).length,
          firstPlot: vis(firstPlot), shots: shots.length,
          shotsDecoded: shots.filter(i => i.complete && i.naturalWidth > 0).length,
          sections: Array.from(document.querySelectorAll('section')).map(s => s.id),
          badge: (document.querySelector('.badge') || {}).textContent, sorted};
})()"""


def test_devtools_dom_console_network(report, tmp_path):
    argv = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--remote-debugging-pipe",
            f"--window-size={WIDTH},{HEIGHT}", "about:blank"]
    cdp = _Pipe(argv)
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Runtime", "Log", "Page"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}, session=session)
        cdp.send("Page.navigate", {"url": report.as_uri()}, session=session)
        cdp.wait_event("Page.loadEventFired")
        probe = cdp.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session=session)
        result = probe["result"]["value"]
        shot = cdp.send("Page.captureScreenshot", {"format": "png"}, session=session)
        time.sleep(0.3)
        cdp.send("Runtime.evaluate", {"expression": "1"}, session=session)  # drain late events
    finally:
        cdp.close()

    urls = [e["params"]["request"]["url"] for e in cdp.events if e.get("method") == "Network.requestWillBeSent"]
    assert urls, "no request recorded at all: the Network domain did not report"
    outside = [u for u in urls if not (u == report.as_uri() or u.startswith("data:"))]
    assert not outside, outside
    failed = [e["params"] for e in cdp.events if e.get("method") == "Network.loadingFailed"]
    assert not failed, failed
    exceptions = [e["params"] for e in cdp.events if e.get("method") == "Runtime.exceptionThrown"]
    assert not exceptions, exceptions
    console = [e["params"] for e in cdp.events if e.get("method") == "Runtime.consoleAPICalled"
               and e["params"].get("type") in ("error", "warning", "assert")]
    assert not console, console
    log = [e["params"]["entry"] for e in cdp.events if e.get("method") == "Log.entryAdded"
           and e["params"]["entry"].get("level") in ("error", "warning")]
    assert not log, log  # CSP violations and failed loads land here

    assert result["ready"] == "1", "the page's script did not run"
    assert result["badge"] == "FAIL"
    assert result["headCells"][:3] == ["Model", "Det mAP@0.5", "Det mAP@0.5-0.95"]
    assert result["deltaCells"] >= 4
    t = result["table"]
    assert t and t["height"] > 50 and 0 <= t["top"] < HEIGHT - t["height"], t
    assert result["plots"] >= 6 and result["plotsDecoded"] == result["plots"], result
    p = result["firstPlot"]
    assert p and p["height"] > 100 and p["top"] + p["height"] / 2 < HEIGHT, ("first plot not on the first screen", p)
    assert result["shots"] >= 2 and result["shotsDecoded"] == result["shots"]
    for sid in ("table", "gate", "per-class", "pr", "sizes", "scores", "gallery", "history", "timing", "provenance"):
        assert sid in result["sections"], sid
    assert result["sorted"] == sorted(result["sorted"]), result["sorted"]  # clicking "class" sorts by name
    assert len(shot["data"]) > 10000


# ------------------------------------------------------------------------------------------ layout at any width
LAYOUT_PROBE = """(() => {
  const out = {overflow: [], clipped: [], shrunk: [], legends: []};
  for (const el of document.querySelectorAll('section, header.top')) {
    if (el.scrollWidth > el.clientWidth + 1)
      out.overflow.push([el.id || el.className, el.scrollWidth, el.clientWidth]);
  }
  // content cut by its box: an element that hides or scrolls its overflow while its content is wider (a
  // scrolled table shows cut in a screenshot, a print or a window without scrollbars)
  for (const el of document.querySelectorAll('section *, header.top *')) {
    const cs = getComputedStyle(el);
    const hides = ['hidden', 'clip', 'auto', 'scroll'].includes(cs.overflowX) || cs.textOverflow === 'ellipsis';
    if (hides && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
      out.clipped.push([el.tagName, (el.textContent || '').slice(0, 40), el.scrollWidth, el.clientWidth]);
  }
  // charts drawn below half their size are unreadable
  for (const img of document.querySelectorAll('img.plot')) {
    const r = img.getBoundingClientRect();
    if (img.naturalWidth && r.width < 0.5 * img.naturalWidth) out.shrunk.push([img.alt, r.width, img.naturalWidth]);
  }
  for (const li of document.querySelectorAll('.mlegend li')) out.legends.push(li.textContent);
  out.subsets = Array.from(document.querySelectorAll('.subset')).map(e => e.textContent);
  return out;
})()"""

LONG_NAMES = ["shapes-det"] + [f"shapes-det.{lay}.{s}.n64.channel.int8" for lay in ("split", "monolithic")
                               for s in ("minmax", "percentile99.99", "mse", "entropy")] + ["shapes-det.int8"]


@pytest.fixture(scope="module")
def reports(report, tmp_path_factory, shapes_small):
    """The 2-model seg report and a 10-model report (9 quantizer variants with their long names, a gate and
    a history): the pages must hold every model at 1400 and 1000 px without text cut or cards overflowing."""
    out = tmp_path_factory.mktemp("report-10")
    data = rd.synthetic(out, n_images=500, n_classes=12, names=LONG_NAMES, gallery_n=3)
    data["gate"], data["gate_markdown"] = rd.sample_gate(data["summary"], passed=False)
    data["history"] = rd.sample_history()
    path = out / "report.html"
    path.write_text(render_report(data), encoding="utf-8")
    diag_out, _ = rd.diagnosed_run(tmp_path_factory, shapes_small)  # the Diagnosis section, every part of it
    diag = out / "report-diagnosed.html"
    diag.write_text(render_report(rd.load_run(diag_out, shapes_small)), encoding="utf-8")
    return {"2": report, "10": path, "diagnosed": diag}


def _layout(path: Path, width: int, tmp_path: Path) -> dict:
    argv = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / f'profile-{width}'}", "--remote-debugging-pipe",
            f"--window-size={width},1200", "about:blank"]
    cdp = _Pipe(argv)
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        cdp.send("Page.enable", session=session)
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": 1200, "deviceScaleFactor": 1, "mobile": False}, session=session)
        cdp.send("Page.navigate", {"url": path.as_uri()}, session=session)
        cdp.wait_event("Page.loadEventFired")
        return cdp.send("Runtime.evaluate", {"expression": LAYOUT_PROBE, "returnByValue": True},
                        session=session)["result"]["value"]
    finally:
        cdp.close()


@pytest.mark.parametrize("width", [1400, 1000])
@pytest.mark.parametrize("which", ["2", "10", "diagnosed"])
def test_no_card_overflows_and_no_text_is_cut(reports, which, width, tmp_path):
    r = _layout(reports[which], width, tmp_path)
    assert not r["overflow"], r["overflow"]
    assert not r["clipped"], r["clipped"]
    assert not r["shrunk"], r["shrunk"]
    if which == "10":
        # every model findable: each full label appears in a legend or a table, and subsets say they are
        text = reports[which].read_text()
        for name in LONG_NAMES:
            assert name in text
        assert any("of 9 compared models" in s for s in r["subsets"]), r["subsets"]
