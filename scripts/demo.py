"""`make demo`: a short walkthrough of the running system, recorded as `docs/demo/demo.mp4` and `docs/demo/demo.gif`.

On the simulator only, in a temporary data directory (never ../shared/data): `cryptosentinel run` ingests, builds the
features, trains and predicts; `cryptosentinel serve` and `cryptosentinel dashboard` start on free loopback ports;
headless Chromium (the DevTools driver of `tests/test_dashboard_browser.py`) opens every dashboard page and waits
until its charts have drawn; a real `POST /api/v1/predict` and its JSON answer are rendered as a page too. Each
screenshot gets a caption bar (Pillow), and ffmpeg assembles an MP4 (H.264) and a GIF (palettegen/paletteuse).
Every process it started is stopped on exit, also on an error or Ctrl-C.

Needs `chromium` and `ffmpeg` on PATH (`make demo` installs both from Debian's packages). Run:
`.venv/bin/python scripts/demo.py [--out docs/demo] [--days 120] [--coins bitcoin,ethereum]`."""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's `cryptosentinel` sits beside its python
VIEWPORT = (1440, 900)  # the browser's window: each frame is this, plus the caption bar
CAPTION_H = 56
GIF_WIDTH = 960  # the GIF is scaled down to stay small for the README
SECONDS = 3.5  # how long each frame shows
CAPTIONS = {  # dashboard page (url path) -> what the frame says
    "overview": "Overview: each coin's price, the latest forecast with its interval, volatility, regime and alerts",
    "forecasts": "Forecasts: the price forecast with its 80% and 95% bands, the volatility forecast, champion skill",
    "history": "Prediction history: forecasts against what happened, interval coverage and rolling skill",
    "explain": "Explainability: global SHAP importance, the latest forecast's contributions, the gate's decisions",
    "regimes": "Market regime: regimes over the price, the PCA projection and the regime map",
    "drift": "Data drift: integrity and drift results, each feature's drift score over time",
    "pipeline": "Pipeline: the flows' runs, their executed notebooks and the time since each last succeeded",
}
API_CAPTION = "The API: a real POST /api/v1/predict and its JSON answer (the same forecasts the dashboard shows)"


class DemoError(RuntimeError):
    "A step of the demo failed: the message says which and why."


@dataclass(frozen=True)
class Frame:
    name: str  # file stem of the screenshot: a dashboard page's url path, or "api"
    caption: str  # the text of the caption bar, numbered "i/n"
    seconds: float = SECONDS


def plan(pages: Sequence[str], seconds: float = SECONDS) -> list[Frame]:
    "The walkthrough: every dashboard page in the sidebar's order, then the API call; each with its numbered caption."
    missing = [p for p in pages if p not in CAPTIONS]
    if missing:
        raise DemoError(f"no caption for the dashboard page(s) {missing}: add them to CAPTIONS in scripts/demo.py")
    if seconds <= 0:
        raise DemoError(f"seconds per frame must be positive, got {seconds}")
    texts = [(p, CAPTIONS[p]) for p in pages] + [("api", API_CAPTION)]
    return [Frame(name, f"{i}/{len(texts)}  {text}", seconds) for i, (name, text) in enumerate(texts, 1)]


def caption_frame(shot: Path, caption: str, out: Path, size: tuple[int, int] = VIEWPORT) -> None:
    "The screenshot scaled to `size` with a dark caption bar below it, written as a PNG."
    from PIL import Image, ImageDraw, ImageFont
    with Image.open(shot) as img:
        page = img.convert("RGB").resize(size, Image.Resampling.LANCZOS) if img.size != size else img.convert("RGB")
    frame = Image.new("RGB", (size[0], size[1] + CAPTION_H), (17, 24, 39))
    frame.paste(page, (0, 0))
    draw = ImageDraw.Draw(frame)
    font = ImageFont.load_default(size=22)
    text = caption
    while draw.textlength(text, font=font) > size[0] - 40 and len(text) > 1:  # a long caption ends in an ellipsis
        text = text[:-2] + "…"
    draw.text((20, size[1] + CAPTION_H // 2), text, font=font, fill=(243, 244, 246), anchor="lm")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.save(out, optimize=True)


def concat_script(frames: Sequence[tuple[Path, float]], repeat_last: bool = False) -> str:
    """ffmpeg's concat-demuxer list: each image with its duration. A constant-rate output needs the last image listed
    again (else the demuxer ends at its start); a variable-rate one (the GIF) would show that copy as an extra frame."""
    if not frames:
        raise DemoError("no frames to assemble")
    if any(s <= 0 for _, s in frames):
        raise DemoError(f"every frame needs a positive duration, got {[s for _, s in frames]}")
    def quoted(p: Path) -> str:
        return "'" + str(p.resolve()).replace("'", "'\\''") + "'"
    lines = [f"file {quoted(p)}\nduration {s:g}" for p, s in frames]
    return "\n".join(lines + [f"file {quoted(frames[-1][0])}"] * repeat_last) + "\n"


def mp4_command(listing: Path, out: Path, seconds: float) -> list[str]:
    """H.264 at 10 frames per second, `seconds` long, even dimensions, yuv420p for every player, the index first for
    the web."""
    return ["ffmpeg", "-y", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
            "-vf", "fps=10,scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p", "-c:v", "libx264", "-preset", "medium",
            "-tune", "stillimage", "-crf", "28", "-movflags", "+faststart", "-t", f"{seconds:g}", str(out)]


def gif_command(listing: Path, out: Path, last_seconds: float, width: int = GIF_WIDTH) -> list[str]:
    """One frame per image with its own delay (variable frame rate; the last one's is `last_seconds`, else the muxer
    repeats the one before), scaled down to `width` at most, one palette for the whole walkthrough (palettegen)
    applied with light dithering (paletteuse); loops forever."""
    graph = (f"scale='min({width},iw)':-1:flags=lanczos,split[a][b];[a]palettegen=max_colors=128:stats_mode=full[p];"
             "[b][p]paletteuse=dither=bayer:bayer_scale=5")
    return ["ffmpeg", "-y", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
            "-filter_complex", graph, "-fps_mode", "vfr", "-loop", "0",
            "-final_delay", str(round(last_seconds * 100)), str(out)]


def encode(frames: Sequence[tuple[Path, float]], out_dir: Path, stem: str = "demo",
           width: int = GIF_WIDTH) -> tuple[Path, Path]:
    "Write `<stem>.mp4` and `<stem>.gif` (at most `width` wide) into out_dir from (png, seconds) frames of one size."
    if shutil.which("ffmpeg") is None:
        raise DemoError("no ffmpeg on PATH: run `bash .ci/get-ffmpeg` (Debian's ffmpeg package)")
    with tempfile.TemporaryDirectory(prefix="cs-demo-enc-") as tmp:
        constant, variable = Path(tmp) / "constant.txt", Path(tmp) / "variable.txt"
        constant.write_text(concat_script(frames, repeat_last=True))
        variable.write_text(concat_script(frames))
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs = (out_dir / f"{stem}.mp4", out_dir / f"{stem}.gif")
        total = sum(s for _, s in frames)
        for cmd in (mp4_command(constant, Path(tmp) / outputs[0].name, total),
                    gif_command(variable, Path(tmp) / outputs[1].name, frames[-1][1], width)):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise DemoError(f"ffmpeg failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
        for out in outputs:  # replaced only once both are made
            shutil.move(Path(tmp) / out.name, out)
    return outputs


def _shorten(obj: Any) -> Any:
    "Floats to 6 significant digits, for reading on a frame."
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _shorten(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_shorten(v) for v in obj]
    return obj


def api_call_html(method: str, url: str, body: dict[str, Any] | None, status: int, millis: float,
                  answer: Any, max_lines: int = 80) -> str:
    "A page showing the request as a curl command and the JSON answer (floats shortened, long answers cut)."
    curl = f"curl -s -X {method} {url}"
    if body is not None:
        curl += f" -H 'Content-Type: application/json' -d '{json.dumps(body)}'"
    lines = json.dumps(_shorten(answer), indent=2).splitlines()
    if len(lines) > max_lines:
        lines = [*lines[:max_lines - 1], f"… {len(lines) - max_lines + 1} more lines"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
html {{ overflow: hidden; }}
body {{ margin: 0; padding: 28px 36px; background: #0f172a; color: #e2e8f0; font: 15px/1.45 monospace; }}
h1 {{ font: 600 22px sans-serif; margin: 0 0 14px; color: #f8fafc; }}
.cmd {{ background: #1e293b; padding: 12px 16px; border-radius: 6px; color: #a5f3fc; white-space: pre-wrap; }}
.status {{ margin: 12px 0; color: #86efac; }}
pre {{ margin: 0; column-count: 2; column-gap: 40px; font-size: 13.5px; line-height: 1.35; }}
</style></head><body><h1>CryptoSentinel API</h1>
<div class="cmd">$ {html.escape(curl)}</div>
<div class="status">HTTP {status} in {millis:.0f} ms &middot; floats shown to 6 significant digits</div>
<pre>{html.escape(chr(10).join(lines))}</pre></body></html>"""


# --- the running system ---------------------------------------------------------------------------------------------

def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, ok: Any, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 180.0) -> None:
    "Poll `url` until `ok(response)`; a clear error with the log's tail if the process ends or time runs out."
    import httpx
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if ok(httpx.get(url, timeout=5)):
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {proc.returncode}" if proc.poll() is not None else f"not up after {timeout:.0f} s"
            raise DemoError(f"{what} {state}; the end of its log ({log}):\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@contextlib.contextmanager
def _process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    "A command in its own process group (uvicorn workers, streamlit under the CLI); the whole group stopped at the end."
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    "SIGTERM to the process's group, then SIGKILL to what is left of it after `grace` seconds."
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reaps the leader; its children go to init, which reaps them
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def record(work: Path, out_dir: Path, days: int, coins: list[str]) -> tuple[Path, Path]:
    "Build the simulated system in `work`, serve it, capture the frames, encode them into out_dir."
    import httpx
    sys.path.insert(0, str(ROOT / "tests"))
    from test_dashboard_browser import MIN_CHARTS, PAGES, TITLES, check, chromium, open_page, screenshot

    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        raise DemoError("no chromium on PATH: run `bash .ci/get-chromium` (Debian's chromium package)")
    frames = plan(PAGES)
    env = {**os.environ, "CRYPTOSENTINEL_DATA_DIR": str(work / "data"), "CRYPTOSENTINEL_REPORTS_DIR": str(work / "reports"),
           "CRYPTOSENTINEL_SOURCE": "synthetic", "CRYPTOSENTINEL_COINS": ",".join(coins),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MPLBACKEND": "Agg",
           "STREAMLIT_CLIENT_TOOLBAR_MODE": "minimal"}  # no "Deploy" button on the frames
    t0 = time.perf_counter()
    print(f"demo: `cryptosentinel run` on the simulator ({len(coins)} coins, {days} days) in {work}", flush=True)
    log = work / "run.log"
    with log.open("wb") as sink:
        code = subprocess.call([str(BIN / "cryptosentinel"), "run", "--source", "synthetic", "--days", str(days),
                                "--coins", ",".join(coins)], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    if code != 0:
        raise DemoError(f"`cryptosentinel run` exited with {code}; the end of its log ({log}):\n{log.read_text()[-3000:]}")
    print(f"demo: pipelines done in {time.perf_counter() - t0:.0f} s", flush=True)

    api_port, app_port = _free_port(), _free_port()
    api, app = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{app_port}"
    shots = work / "shots"
    with _process([str(BIN / "cryptosentinel"), "serve", "--port", str(api_port), "--workers", "1"], env,
                  work / "serve.log") as serve:
        _wait(f"{api}/ready", lambda r: r.status_code == 200, serve, work / "serve.log", "`cryptosentinel serve`")
        with _process([str(BIN / "cryptosentinel"), "dashboard", "--port", str(app_port), "--api-url", api], env,
                      work / "dashboard.log") as dash:
            _wait(f"{app}/_stcore/health", lambda r: r.text.strip() == "ok", dash, work / "dashboard.log",
                  "`cryptosentinel dashboard`")
            print(f"demo: API on {api}, dashboard on {app}; capturing {len(frames)} frames", flush=True)
            with chromium(*VIEWPORT) as cdp:
                for page in PAGES:
                    url = f"{app}/" if page == "overview" else f"{app}/{page}"  # the default page is served at /
                    took, probe = open_page(cdp, TITLES[page], MIN_CHARTS[page], url)
                    try:
                        check(cdp, page, took, probe)
                    except AssertionError as exc:
                        raise DemoError(f"the dashboard's {page} page did not render well: {exc}") from exc
                    screenshot(cdp, shots / f"{page}.png")
                    print(f"  {page:<10} drawn in {took:5.1f} s", flush=True)
                body = {"coin": coins[0], "horizon": 24}
                started = time.perf_counter()
                answer = httpx.post(f"{api}/api/v1/predict", json=body, timeout=60)
                millis = (time.perf_counter() - started) * 1000
                if answer.status_code != 200:
                    raise DemoError(f"POST /api/v1/predict answered {answer.status_code}: {answer.text[:500]}")
                page_file = work / "api.html"
                page_file.write_text(api_call_html("POST", f"{api}/api/v1/predict", body, answer.status_code, millis,
                                                   answer.json()))
                cdp.call("Page.navigate", url=page_file.as_uri())
                deadline = time.monotonic() + 30
                while cdp.eval("document.readyState") != "complete" or cdp.eval("location.protocol") != "file:":
                    if time.monotonic() > deadline:
                        raise DemoError("chromium did not load the API call's page within 30 s")
                    time.sleep(0.1)
                screenshot(cdp, shots / "api.png")
    for f in frames:
        caption_frame(shots / f"{f.name}.png", f.caption, work / "frames" / f"{f.name}.png")
    outputs = encode([(work / "frames" / f"{f.name}.png", f.seconds) for f in frames], out_dir)
    print(f"demo: recorded in {time.perf_counter() - t0:.0f} s", flush=True)
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "demo", help="where demo.mp4 and demo.gif go")
    parser.add_argument("--days", type=int, default=120, help="days of simulated prices (>= 120 for the volatility models)")
    parser.add_argument("--coins", default="bitcoin,ethereum", help="comma-separated coin ids")
    args = parser.parse_args(argv)
    coins = [c.strip() for c in args.coins.split(",") if c.strip()]
    if not coins or args.days < 1:
        parser.error("--coins needs at least one coin and --days a positive number")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `finally` blocks stop the servers on a kill too
    work = Path(tempfile.mkdtemp(prefix="cs-demo-"))
    done = False
    try:
        outputs = record(work, args.out, args.days, coins)
        done = True
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:  # the logs stay for a look when it failed
        if done:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"demo: logs kept in {work}", file=sys.stderr)
    for out in outputs:
        print(f"demo: {out} {out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
