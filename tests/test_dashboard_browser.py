"""The dashboard in a real browser: headless Chromium (Debian's `chromium`) opens every page of a running
`streamlit run app/dashboard/main.py` on loopback, waits for the charts, saves a screenshot under
`reports/screenshots/`, and fails on a page error, an exception text or an empty chart. Each page's render time
(navigation to the last chart drawn, script idle) is printed and written to `reports/screenshots/render_times.json`.

Chromium is driven through its DevTools protocol with a small synchronous websocket client (`websockets`, already a
dependency of Streamlit): no browser download, no extra package. Without `chromium` on PATH the test is skipped with
the command that installs it."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dashboard import COINS, ENTRY, MIN_CHARTS, PAGES, ROOT, free_port, live_api, trained_sim

pytestmark = [pytest.mark.model, pytest.mark.slow]

SHOTS = ROOT / "reports" / "screenshots"
INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium"
PAGE_TIMEOUT_S = 60.0
TITLES = {"overview": "Overview", "forecasts": "Forecasts", "history": "Prediction history",
          "explain": "Explainability", "regimes": "Market regime", "drift": "Data drift", "pipeline": "Pipeline"}
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")

# what the page looks like now: script state, charts and whether each has drawn traces, exception boxes
PROBE_JS = """(() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const text = document.body ? document.body.innerText : '';
  return {
    state: app ? app.getAttribute('data-test-script-state') : null,
    running: !!(status && /Running/i.test(status.innerText)),
    plots: plots.length,
    drawn: plots.filter(p => p._fullData && p._fullData.length > 0 && p.querySelector('.main-svg')).length,
    empty: plots.filter(p => !(p._fullData && p._fullData.some(t => t.visible !== false)) || ![...p.querySelectorAll(
      '.cartesianlayer .trace path, .cartesianlayer .trace image, .cartesianlayer .hm image')].some(e => e.tagName === 'image' ||
      (/^M[^N]*\\d/.test(e.getAttribute('d') || '') && !/NaN/.test(e.getAttribute('d'))))).length,
    exceptions: document.querySelectorAll('[data-testid="stException"]').length,
    traceback: /Traceback \\(most recent call last\\)/.test(text),
    notfound: /Page not found/.test(text),
    title: (document.querySelector('h1') || {}).innerText || null,
    skeletons: document.querySelectorAll('[data-testid="stSkeleton"]').length,
    text: text.slice(0, 4000),
  };
})()"""


class Cdp:
    "The few DevTools protocol calls the test needs, over one websocket to a page target."
    def __init__(self, ws_url: str):
        from websockets.sync.client import connect
        self.ws = connect(ws_url, max_size=64 * 2**20, open_timeout=10)
        self.ids = itertools.count(1)
        self.errors: list[str] = []  # uncaught page exceptions (Runtime.exceptionThrown)

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        mid = next(self.ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("method") == "Runtime.exceptionThrown":
                d = msg["params"]["exceptionDetails"]
                self.errors.append((d.get("exception") or {}).get("description") or d.get("text", "?"))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str) -> Any:
        out = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return (out.get("result") or {}).get("value")

    def close(self) -> None:
        self.ws.close()


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 2000) -> Iterator[Cdp]:
    "Headless Chromium on a free debugging port, one page, closed at the end."
    assert BROWSER
    profile = tempfile.mkdtemp(prefix="cs-chromium-")
    proc = subprocess.Popen([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
                             "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
                             f"--window-size={width},{height}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        cdp = Cdp(page["webSocketDebuggerUrl"])
        cdp.call("Page.enable")
        cdp.call("Runtime.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        try:
            yield cdp
        finally:
            cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def streamlit_app(api_url: str, theme: str = "light") -> Iterator[str]:
    "`streamlit run` of the entrypoint on a free loopback port, pointed at the API; yields its URL."
    port = free_port()
    env = {**os.environ, "CRYPTOSENTINEL_API_URL": api_url}
    with tempfile.TemporaryFile() as log:
        yield from _serve(port, env, log, theme)


def _serve(port: int, env: dict[str, str], log: Any, theme: str) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ENTRY), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
                             "--theme.base", theme],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/_stcore/health", timeout=2).text.strip() == "ok":
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"streamlit did not start: {log.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def open_page(cdp: Cdp, title: str, min_charts: int, url: str | None = None,
              ) -> tuple[float, dict[str, Any]]:
    """Open a page (navigate to `url`, or click its link in the sidebar: a page change in the same session) and wait
    until its title shows, the script is idle and every chart has drawn (two probes in a row); (seconds, probe)."""
    t0 = time.perf_counter()
    if url is not None:
        cdp.call("Page.navigate", url=url)
    else:
        clicked = cdp.eval(f"""(() => {{ const a = [...document.querySelectorAll('[data-testid="stSidebarNav"] a')]
            .find(a => a.innerText.trim().endsWith({json.dumps(title)})); if (a) a.click(); return !!a; }})()""")
        assert clicked, f"no sidebar link {title!r}"
    deadline, settled_at = time.monotonic() + PAGE_TIMEOUT_S, None
    probe: dict[str, Any] = {}
    while time.monotonic() < deadline:
        probe = cdp.eval(PROBE_JS) or {}
        idle = probe.get("state") in ("notRunning", None) and not probe.get("running") and not probe.get("skeletons")
        done = (idle and probe.get("title") == title and probe.get("plots", 0) >= min_charts
                and probe.get("drawn") == probe.get("plots"))
        failed = probe.get("exceptions") or probe.get("traceback") or probe.get("notfound")
        if done or failed:
            if settled_at is not None:
                return settled_at, probe
            settled_at = time.perf_counter() - t0
        else:
            settled_at = None
        time.sleep(0.05)
    return float("nan"), probe


def check(cdp: Cdp, page: str, took: float, probe: dict[str, Any], theme: str = "light") -> None:
    "Fail on an exception box or text, Streamlit's page-not-found, a page error, a timeout or an empty chart."
    where = f"{page} ({theme})"
    assert not probe.get("exceptions") and not probe.get("traceback"), (where, probe.get("text"))
    assert not probe.get("notfound"), (where, "Streamlit says: page not found")
    assert took == took, f"{where}: not rendered within {PAGE_TIMEOUT_S:.0f} s: {probe}"
    assert probe["plots"] >= MIN_CHARTS[page] and probe["empty"] == 0, (where, probe)
    assert "Simulated data" in probe["text"], where
    assert not cdp.errors, (where, cdp.errors)


def screenshot(cdp: Cdp, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"]))


@pytest.mark.skipif(BROWSER is None, reason=f"no chromium on PATH: install it with `{INSTALL}`")
def test_every_page_in_headless_chromium(tmp_path_factory):
    settings, store, registry = trained_sim(tmp_path_factory)
    times: dict[str, dict[str, float]] = {}
    with live_api(settings, store, registry) as api:
        with streamlit_app(api) as app, chromium() as cdp:
            for visit in ("first", "cached"):  # a fresh session per page, then page changes in one session
                for page in PAGES:
                    url = (f"{app}/" if page == "overview" else f"{app}/{page}") if visit == "first" else None
                    took, probe = open_page(cdp, TITLES[page], MIN_CHARTS[page], url)
                    check(cdp, page, took, probe)
                    times.setdefault(page, {})[visit] = round(took, 3)
                    if visit == "first":
                        screenshot(cdp, SHOTS / f"{page}.png")
        with streamlit_app(api, theme="dark") as app, chromium() as cdp:  # the colours on a dark background
            for page in PAGES:
                took, probe = open_page(cdp, TITLES[page], MIN_CHARTS[page], f"{app}/" if page == "overview" else f"{app}/{page}")
                check(cdp, page, took, probe, "dark")
                screenshot(cdp, SHOTS / "dark" / f"{page}.png")
    (SHOTS / "render_times.json").write_text(json.dumps({"coins": COINS, "seconds": times}, indent=1))
    print("\nrender time per page (s): first visit (new session) / page change (same session, cached data)")
    for page, t in times.items():
        print(f"  {page:<10} {t['first']:6.2f} / {t['cached']:6.2f}   {SHOTS / (page + '.png')}")
    for page in PAGES:
        assert (SHOTS / f"{page}.png").stat().st_size > 10_000, page
        assert times[page]["cached"] < 10, (page, times[page])  # the goal is 2 s; bounded loosely here
