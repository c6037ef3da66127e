"""The HTML report renders in a real headless Chromium, its images load, and model output stays text."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from screenpilot.actions.types import Click, Scroll, Swipe, TypeText
from screenpilot.cli.main import main
from screenpilot.errors import SetupError
from screenpilot.model.replay import ReplayModel
from screenpilot.tasks.report import draw_action, render_report, thumbnail_url, write_report
from screenpilot.tasks.runner import BenchSettings, ModelPerEpisode, run_suite
from screenpilot.tasks.suite import load_suite
from tests.tasks.fakes import FakeSource

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = (
    "<script>document.documentElement.setAttribute('data-pwned', '1')</script>"
    "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned', '2')\">"
)


def call(**arguments: object) -> str:
    return "<tool_call>\n" + json.dumps({"name": "mobile_use", "arguments": arguments}) + "\n</tool_call>"


def dump_dom(page: Path, tmp_path: Path) -> str:
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def html_tag(dom: str) -> str:
    """The opening <html ...> tag, where the page's script (and any injected one) sets attributes."""
    start = dom.index("<html")
    return dom[start : dom.index(">", start) + 1]


@pytest.fixture
def bench_dir(tmp_path: Path, fake_source: FakeSource) -> Path:
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        "tasks:\n"
        "  - {id: swipe, goal: 'Swipe & <b>type</b>', env: android, success: {answer: {exact: done}}}\n"
        "  - {id: hostile, goal: g, env: android, success: {answer: {exact: x}}}\n"
    )
    answers: list[tuple[str | None, str]] = [
        ("swipe", call(action="swipe", coordinate=[100, 500], coordinate2=[100, 100])),
        ("swipe", call(action="type", text="hello <world>")),
        ("swipe", call(action="answer", text="done")),
        ("hostile", HOSTILE + "\n" + call(action="click", coordinate=[50, 60])),
        ("hostile", "no call at all " + HOSTILE),
        ("hostile", call(action="terminate", status="failure")),
    ]
    out = tmp_path / "bench"
    run_suite(
        load_suite(suite_file),
        out,
        fake_source,
        ModelPerEpisode(lambda: ReplayModel(answers, name="replay:report")),
        BenchSettings(progress=False, max_retries=0, dialect_options={"answer_action": True}),
    )
    return out


def test_report_escapes_model_output(bench_dir: Path) -> None:
    html = render_report(bench_dir)
    assert "<script>document" not in html
    assert "&lt;script&gt;document.documentElement.setAttribute" in html
    assert "Swipe &amp; &lt;b&gt;type&lt;/b&gt;" in html
    assert "hello &lt;world&gt;" in html
    assert "<img src=x" not in html
    assert 'src="data:image/jpeg;base64,' in html
    assert "http://" not in html and "https://" not in html  # nothing external


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
def test_report_renders_in_chromium_with_every_image_loaded(bench_dir: Path, tmp_path: Path) -> None:
    page = write_report(bench_dir)
    assert page == bench_dir / "report.html"
    dom = dump_dom(page, tmp_path)
    assert 'data-images="6"' in dom  # one screen per step: 3 + 3
    assert 'data-images-loaded="6"' in dom
    assert "data-pwned" not in html_tag(dom)
    assert "<td>swipe</td>" in dom or ">swipe</a></td>" in dom
    assert "overall" in dom


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
def test_report_for_a_single_run_folder(bench_dir: Path, tmp_path: Path) -> None:
    run_dir = bench_dir / "episodes" / "hostile" / "trial-1"
    assert main(["report", str(run_dir), "--thumb", "200"]) == 0
    dom = dump_dom(run_dir / "report.html", tmp_path)
    assert 'data-images="3"' in dom and 'data-images-loaded="3"' in dom
    assert "data-pwned" not in html_tag(dom)
    assert "No function call found" in dom  # the parse error of step 2 is shown


def test_report_refuses_other_folders(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="neither a bench folder"):
        render_report(tmp_path)


def test_actions_are_drawn_where_they_happened() -> None:
    screen = Image.new("RGB", (360, 640), (255, 255, 255))
    clicked = draw_action(screen, Click(x=100, y=200))
    assert clicked.getpixel((100, 200)) != (255, 255, 255) or clicked.getpixel((100, 190)) != (255, 255, 255)
    assert clicked.getpixel((300, 600)) == (255, 255, 255)
    swiped = draw_action(screen, Swipe(x=180, y=500, x2=180, y2=100))
    assert swiped.getpixel((180, 300)) != (255, 255, 255)  # the arrow's shaft
    typed = draw_action(screen, TypeText(text="hello"))
    assert typed.crop((0, 560, 200, 640)).getcolors(1_000_000) != [(200 * 80, (255, 255, 255))]
    scrolled = draw_action(screen, Scroll(pixels=-300))
    assert scrolled.getpixel((180, 330)) != (255, 255, 255)
    assert screen.getpixel((100, 200)) == (255, 255, 255)  # the original is untouched
    url = thumbnail_url(Image.new("RGB", (1080, 2400)), 240)
    assert url.startswith("data:image/jpeg;base64,")


def test_report_of_a_run_with_no_finished_episode_yet(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"suite": {"name": "empty", "tasks": ["a"]}}))
    html = render_report(tmp_path)
    assert "screenpilot bench: empty" in html and "0 tasks, 0 episodes" in html


def test_report_for_a_screenpilot_run_folder(tmp_path: Path) -> None:
    replay = tmp_path / "r.jsonl"
    outputs = [
        call(action="long_press", coordinate=[100, 100], time=1),
        call(action="terminate", status="success"),
    ]
    replay.write_text("".join(json.dumps({"output": o}) + "\n" for o in outputs))
    run_dir = tmp_path / "run"
    args = [
        "run",
        "hold the icon",
        "--env",
        "fake",
        "--screen-size",
        "360x640",
        "--model",
        f"replay:{replay}",
    ]
    assert main([*args, "--out", str(run_dir), "--quiet", "--no-settle"]) == 0
    assert main(["report", str(run_dir)]) == 0
    html = (run_dir / "report.html").read_text()
    assert "screenpilot run: hold the icon" in html
    assert html.count('<img src="data:image/jpeg;base64,') == 2
    assert "&#34;action&#34;: &#34;long_press&#34;" in html  # the parsed action, escaped JSON


def test_episode_anchors_are_unique_and_links_reach_their_task(
    tmp_path: Path, fake_source: FakeSource
) -> None:
    import re

    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        "tasks:\n"
        "  - {id: a.b, goal: g, env: android, success: {answer: {exact: x}}}\n"
        "  - {id: a-b, goal: g, env: android, success: {answer: {exact: x}}}\n"
        "  - {id: a_b, goal: g, env: android, success: {answer: {exact: x}}}\n"
    )
    out = tmp_path / "bench"
    answers: list[tuple[str | None, str]] = [(None, call(action="answer", text="x"))] * 3
    run_suite(
        load_suite(suite_file),
        out,
        fake_source,
        ModelPerEpisode(lambda: ReplayModel(answers, name="replay:anchors")),
        BenchSettings(progress=False, dialect_options={"answer_action": True}),
    )
    html = render_report(out)
    ids = re.findall(r'<details class="episode" id="([^"]+)"', html)
    assert len(ids) == 3 and len(set(ids)) == 3
    for task in ("a.b", "a-b", "a_b"):
        (href,) = re.findall(rf'<a href="#([^"]+)">{re.escape(task)}</a>', html)
        episode = html[html.index(f'id="{href}"') :]
        assert (
            episode[: episode.index("</summary>")]
            .split("<summary>")[1]
            .strip()
            .startswith(f"{task} / trial 1")
        )


def label_strip(text: str) -> Image.Image:
    screen = Image.new("RGB", (1080, 2400), (255, 255, 255))
    return draw_action(screen, TypeText(text=text)).crop((0, 2100, 1080, 2400))


@pytest.mark.parametrize("text", ["Grüße", "ß", "世界", "日本語", "한국"])
def test_labels_draw_letters_beyond_ascii_not_boxes(text: str) -> None:
    # A private-use code point that no font has is drawn as the font's box: a covered letter must look different.
    boxes = label_strip("\U0010fffd" * len(text))
    for index, char in enumerate(text):
        boxed = text[:index] + "\U0010fffd" + text[index + 1 :]
        assert label_strip(text).tobytes() != label_strip(boxed).tobytes(), char
    assert label_strip(text).tobytes() != boxes.tobytes()


def test_labels_fall_back_to_the_builtin_font_and_the_page_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from screenpilot.tasks import fonts

    outputs = [call(action="type", text="Grüße"), call(action="terminate", status="success")]
    run_dir = make_run(tmp_path, outputs)
    assert "fonts-noto-cjk" not in render_report(run_dir)  # fonts are installed here
    monkeypatch.setattr(fonts, "FONT_PATHS", (str(tmp_path / "none.ttf"),))
    monkeypatch.setenv("PATH", str(tmp_path))  # no fc-match
    fonts.font_files.cache_clear()
    try:
        assert fonts.font_files() == ()
        strip = label_strip("Grüße, 世界")
        assert strip.getcolors(1_000_000) != [(1080 * 300, (255, 255, 255))]  # still drawn
        assert "apt-get install fonts-dejavu-core fonts-noto-cjk" in render_report(run_dir)
    finally:
        monkeypatch.undo()
        fonts.font_files.cache_clear()


def make_run(tmp_path: Path, outputs: list[str], name: str = "run") -> Path:
    """A real ``screenpilot run`` folder on the fake environment, driven by a replay file."""
    replay = tmp_path / f"{name}.jsonl"
    replay.write_text("".join(json.dumps({"output": o}) + "\n" for o in outputs))
    run_dir = tmp_path / name
    args = ["run", "goal", "--env", "fake", "--screen-size", "360x640", "--model", f"replay:{replay}"]
    assert main([*args, "--out", str(run_dir), "--quiet", "--no-settle"]) == 0
    return run_dir


def test_report_shows_the_overall_interval_beside_the_success_rate(bench_dir: Path) -> None:
    summary_path = bench_dir / "summary.json"
    summary = json.loads(summary_path.read_text())
    low, high = summary["overall"]["success_ci95"]
    html = render_report(bench_dir)
    expected = (
        f'<span class="meta" id="success-ci">(95% interval {100 * low:.1f}% to {100 * high:.1f}%)</span>'
    )
    assert expected in html
    # a summary.json edited by hand shows no interval rather than a broken or unescaped one
    for bad in (["<b>x</b>", 0.5], [0.1], "0.1-0.5", [0.9, 0.1], [True, 1]):
        summary["overall"]["success_ci95"] = bad
        summary_path.write_text(json.dumps(summary))
        html = render_report(bench_dir)
        assert 'id="success-ci"' not in html and "<b>x</b>" not in html
