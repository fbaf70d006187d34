"""`make demo`'s pure parts (scripts/demo.py): the walkthrough's frames and captions follow the dashboard's pages,
a caption bar is added below a screenshot, the API call's page shows the request and its answer, and the ffmpeg
command lines turn three tiny made-up frames into an MP4 and a GIF with the right durations, sizes and colours
(skipped without ffmpeg). The recording itself (servers, browser) runs in `make demo`, not here."""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.code

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cs_demo", ROOT / "scripts" / "demo.py")
assert _spec and _spec.loader
demo = importlib.util.module_from_spec(_spec)
sys.modules["cs_demo"] = demo
_spec.loader.exec_module(demo)

FFMPEG = shutil.which("ffmpeg") and shutil.which("ffprobe")
NO_FFMPEG = "no ffmpeg/ffprobe on PATH: install it with `bash .ci/get-ffmpeg` (Debian's ffmpeg package)"
COLOURS = [(220, 40, 40), (40, 200, 60), (40, 70, 220)]


def dashboard_pages() -> list[str]:
    "The url paths of the dashboard's pages, in the sidebar's order, read from app/dashboard/main.py's PAGES."
    tree = ast.parse((ROOT / "app" / "dashboard" / "main.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "PAGES")
    return [url for _, _, _, url in ast.literal_eval(node.value)]


def test_every_dashboard_page_has_a_caption_and_the_plan_follows_the_sidebar():
    pages = dashboard_pages()
    assert set(demo.CAPTIONS) == set(pages)
    frames = demo.plan(pages, seconds=2.0)
    assert [f.name for f in frames] == [*pages, "api"]
    n = len(frames)
    assert [f.caption.split("  ", 1)[0] for f in frames] == [f"{i}/{n}" for i in range(1, n + 1)]
    assert frames[1].caption.endswith(demo.CAPTIONS[pages[1]]) and "/api/v1/predict" in frames[-1].caption
    assert all(f.seconds == 2.0 for f in frames)


def test_plan_refuses_an_unknown_page_and_a_non_positive_duration():
    with pytest.raises(demo.DemoError, match=r"no caption for the dashboard page\(s\) \['billing'\]"):
        demo.plan(["overview", "billing"])
    with pytest.raises(demo.DemoError, match="positive"):
        demo.plan(["overview"], seconds=0)


def test_caption_bar_below_the_screenshot(tmp_path):
    shot = tmp_path / "shot.png"
    Image.new("RGB", (400, 250), COLOURS[0]).save(shot)  # not the target size: scaled to it
    out = tmp_path / "frames" / "f.png"
    demo.caption_frame(shot, "1/2  Overview: " + "a very long caption " * 20, out, size=(200, 120))
    with Image.open(out) as img:
        frame = img.convert("RGB")
    assert frame.size == (200, 120 + demo.CAPTION_H)
    assert frame.getpixel((100, 60)) == COLOURS[0]
    bar = frame.crop((0, 120, 200, 120 + demo.CAPTION_H))
    colours = {c for _, c in bar.getcolors(maxcolors=100_000)}
    assert (17, 24, 39) in colours and any(min(c) > 200 for c in colours)  # dark bar, light text on it
    assert frame.getpixel((199, 120 + demo.CAPTION_H // 2)) == (17, 24, 39)  # the long text was cut, not overflowing


def test_api_call_page_shows_the_request_and_a_shortened_answer():
    answer = {"forecasts": [{"coin": "bitcoin", "price": 10600.606180675171, "note": "<b>"}],
              "rows": list(range(200))}
    page = demo.api_call_html("POST", "http://127.0.0.1:9/api/v1/predict", {"coin": "bitcoin", "horizon": 24},
                              200, 12.4, answer, max_lines=30)
    assert "curl -s -X POST http://127.0.0.1:9/api/v1/predict" in page
    assert "-d &#x27;" + json.dumps({"coin": "bitcoin", "horizon": 24}).replace('"', "&quot;") + "&#x27;" in page
    assert "HTTP 200 in 12 ms" in page
    assert "10600.6," in page and "10600.606" not in page
    assert "&lt;b&gt;" in page and "<b>" not in page
    shown = page.split("<pre>")[1].split("</pre>")[0].splitlines()
    assert len(shown) == 30 and shown[-1] == f"… {len(json.dumps(demo._shorten(answer), indent=2).splitlines()) - 29} more lines"


def test_concat_script_durations_quoting_and_the_repeated_last_image(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "it's.png"
    text = demo.concat_script([(a, 1.5), (b, 2)])
    assert text == f"file '{a}'\nduration 1.5\nfile '{tmp_path}/it'\\''s.png'\nduration 2\n"
    repeated = demo.concat_script([(a, 1.5), (b, 2)], repeat_last=True)
    assert repeated == text + f"file '{tmp_path}/it'\\''s.png'\n"
    with pytest.raises(demo.DemoError, match="no frames"):
        demo.concat_script([])
    with pytest.raises(demo.DemoError, match="positive duration"):
        demo.concat_script([(a, 0)])


def _close(pixel, colour, tol=30):
    return all(abs(p - c) <= tol for p, c in zip(pixel, colour, strict=False))


@pytest.mark.skipif(not FFMPEG, reason=NO_FFMPEG)
def test_ffmpeg_makes_an_mp4_and_a_gif_from_three_frames(tmp_path):
    seconds = [0.5, 1.0, 1.5]
    frames = []
    for i, (colour, s) in enumerate(zip(COLOURS, seconds, strict=True)):
        Image.new("RGB", (160, 100), colour).save(tmp_path / f"{i}.png")
        frames.append((tmp_path / f"{i}.png", s))
    mp4, gif = demo.encode(frames, tmp_path / "out", stem="t", width=80)
    assert (mp4.name, gif.name) == ("t.mp4", "t.gif")

    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height,pix_fmt:format=duration",
         "-of", "json", str(mp4)], capture_output=True, text=True, check=True).stdout)
    stream = probe["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"], stream["pix_fmt"]) == ("h264", 160, 100, "yuv420p")
    assert float(probe["format"]["duration"]) == pytest.approx(sum(seconds), abs=0.11)
    for t, colour in ((0.25, COLOURS[0]), (1.0, COLOURS[1]), (2.8, COLOURS[2])):  # each image for its own time
        still = tmp_path / f"at{t}.png"
        subprocess.run(["ffmpeg", "-v", "error", "-ss", str(t), "-i", str(mp4), "-frames:v", "1", str(still)], check=True)
        with Image.open(still) as img:
            assert _close(img.convert("RGB").getpixel((80, 50)), colour), (t, colour)

    with Image.open(gif) as img:
        assert img.size == (80, 50) and img.n_frames == 3 and img.info.get("loop") == 0
        durations, pixels = [], []
        for i in range(img.n_frames):
            img.seek(i)
            durations.append(img.info["duration"])
            pixels.append(img.convert("RGB").getpixel((40, 25)))
    assert durations == pytest.approx([s * 1000 for s in seconds], abs=20)  # GIF delays are in 1/100 s
    assert all(_close(p, c) for p, c in zip(pixels, COLOURS, strict=True)), pixels


@pytest.mark.skipif(not FFMPEG, reason=NO_FFMPEG)
def test_a_gif_is_never_scaled_up(tmp_path):
    Image.new("RGB", (60, 40), COLOURS[0]).save(tmp_path / "a.png")
    _, gif = demo.encode([(tmp_path / "a.png", 1.0)], tmp_path, width=960)
    with Image.open(gif) as img:
        assert img.size == (60, 40)
