"""The report on bad input: unwritable outputs, crafted paths, bad bytes, secrets, incomplete runs, many episodes."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from screenpilot.cli.main import main
from screenpilot.model.replay import ReplayModel
from screenpilot.tasks.report import render_report, write_report
from screenpilot.tasks.runner import BenchSettings, ModelPerEpisode, run_suite
from screenpilot.tasks.suite import Task, load_suite
from tests.tasks.fakes import FakeSource, ShellFakeEnv
from tests.tasks.test_report import bench_dir, call, make_run

__all__ = ["bench_dir"]  # the fixture, shared with test_report.py


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("screenpilot: error: "), err
    return err


def embedded_sizes(html: str) -> list[tuple[int, int]]:
    """The pixel sizes of every image embedded in the page."""
    sizes = []
    for data in re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html):
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            sizes.append(image.size)
    return sizes


# -- where the report goes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["missing/dir/x.html", "a-directory", "/proc/x.html"])
def test_an_output_that_cannot_be_written_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    run_dir = make_run(tmp_path, [call(action="terminate", status="success")])
    (tmp_path / "a-directory").mkdir()
    output = Path(where) if where.startswith("/") else tmp_path / where
    capsys.readouterr()
    assert main(["report", str(run_dir), "--output", str(output)]) == 2
    assert "cannot write the report to" in one_error_line(capsys)
    assert not output.parent.is_dir() or not list(output.parent.glob("*.tmp"))


@pytest.mark.parametrize("kind", ["empty", "file", "missing"])
def test_a_folder_that_is_no_run_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    folder = tmp_path / kind
    if kind == "empty":
        folder.mkdir()
    elif kind == "file":
        folder.write_text("x")
    assert main(["report", str(folder)]) == 2
    assert "neither a bench folder" in one_error_line(capsys)


def test_the_report_can_be_written_elsewhere_and_links_still_reach_the_screens(tmp_path: Path) -> None:
    run_dir = make_run(
        tmp_path, [call(action="click", coordinate=[10, 10]), call(action="terminate", status="success")]
    )
    (tmp_path / "pages").mkdir()
    page = write_report(run_dir, output=tmp_path / "pages" / "r.html")
    links = re.findall(r'<a class="full" href="([^"]+)"', page.read_text())
    assert [(page.parent / link).resolve() for link in links] == [
        (run_dir / "screens" / f"step-000{i}.png").resolve() for i in (1, 2)
    ]


# -- full-size screenshots ---------------------------------------------------------------------------------------


def test_each_thumbnail_opens_the_full_size_screenshot(bench_dir: Path) -> None:
    page = write_report(bench_dir, thumb=120)
    html = page.read_text()
    links = re.findall(r'<a class="full" href="([^"]+)"[^>]*><img src="data:image/jpeg', html)
    assert len(links) == 6  # every step's thumbnail
    for link in links:
        target = page.parent / link
        assert target.is_file() and target.is_relative_to(bench_dir / "episodes")
        with Image.open(target) as full:
            assert full.size == (360, 640)  # the screen as recorded, not the 120 px thumbnail
    assert all(max(size) == 120 for size in embedded_sizes(html))


# -- paths that lead out of the run folder -----------------------------------------------------------------------


def test_paths_out_of_the_run_folder_are_never_followed(tmp_path: Path, bench_dir: Path) -> None:
    outside = make_run(tmp_path, [call(action="terminate", status="success")], name="other")
    secret = tmp_path / "secret.png"
    Image.new("RGB", (37, 41), (1, 2, 3)).save(secret)
    for step in (outside / "screens").iterdir():
        Image.new("RGB", (37, 41), (1, 2, 3)).save(step)
    (bench_dir / "episodes" / "link").symlink_to(outside)
    lines = [
        {"task": "swipe", "trial": 2, "folder": "../other"},
        {"task": "swipe", "trial": 3, "folder": str(outside)},
        {"task": "swipe", "trial": 4, "folder": "episodes/link"},
    ]
    with open(bench_dir / "results.jsonl", "a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps({**line, "success": False, "steps": 1, "duration_s": 1.0}) + "\n")
    # Steps of a real episode that point their screenshots out of it: absolute, "..", and a symlink.
    episode = bench_dir / "episodes" / "hostile" / "trial-1"
    (episode / "screens" / "step-0003.png").unlink()
    (episode / "screens" / "step-0003.png").symlink_to(secret)
    trajectory = episode / "trajectory.jsonl"
    records = [json.loads(line) for line in trajectory.read_text().splitlines()]
    records[0]["screenshot"] = str(secret)
    records[1]["screenshot"] = "../../../../secret.png"
    trajectory.write_text("".join(json.dumps(r) + "\n" for r in records))

    html = render_report(bench_dir)
    assert (37, 41) not in embedded_sizes(html)
    assert html.count("lies outside the run folder: not read") == 6
    assert "episode folder &#39;../other&#39; lies outside" in html
    assert "(37, 41)" not in html and str(secret) in html  # named, never shown


# -- failed episodes stay open -----------------------------------------------------------------------------------


def test_failed_episodes_stay_expanded_among_many(tmp_path: Path, fake_source: FakeSource) -> None:
    suite_file = tmp_path / "suite.yaml"
    tasks = ["ok1", "bad1", "ok2", "bad2", "ok3"]
    suite_file.write_text(
        "tasks:\n"
        + "".join(
            f"  - {{id: {t}, goal: g, env: android, success: {{answer: {{exact: x}}}}}}\n" for t in tasks
        )
    )
    answers: list[tuple[str | None, str]] = [
        (t, call(action="answer", text="x" if t.startswith("ok") else "y")) for t in tasks
    ]
    out = tmp_path / "bench"
    run_suite(
        load_suite(suite_file),
        out,
        fake_source,
        ModelPerEpisode(lambda: ReplayModel(answers, name="replay:many")),
        BenchSettings(progress=False, dialect_options={"answer_action": True}),
    )
    html = render_report(out)
    tags = re.findall(r'<details class="episode" id="ep-([a-z0-9]+)-[^"]*" ?(open)?>', html)
    assert sorted(tags) == sorted([(t, "" if t.startswith("ok") else "open") for t in tasks])


# -- each error once ---------------------------------------------------------------------------------------------


class NoAppsSource(FakeSource):
    def build(self, task: Task, worker: int) -> ShellFakeEnv:
        env = ShellFakeEnv(self.root / f"worker-{worker}", unsupported={"open_app"})
        self.built.append(env)
        return env


def test_a_failed_step_shows_its_error_once(tmp_path: Path) -> None:
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text("tasks:\n  - {id: t, goal: g, env: android, success: {answer: {exact: x}}}\n")
    answers: list[tuple[str | None, str]] = [
        (None, call(action="open", text="Settings")),
        (None, call(action="terminate", status="failure")),
    ]
    out = tmp_path / "bench"
    run_suite(
        load_suite(suite_file),
        out,
        NoAppsSource(tmp_path / "devices"),
        ModelPerEpisode(lambda: ReplayModel(answers, name="replay:once")),
        BenchSettings(progress=False, max_retries=0),
    )
    html = render_report(out)
    error = "The fake environment cannot do action=open_app."
    assert html.count(f'<div class="error">{error}</div>') == 1
    assert html.count(error) == 2  # the error line, and the feedback the model was shown


# -- bad bytes ---------------------------------------------------------------------------------------------------


def test_bad_bytes_in_results_and_trajectory_show_as_bad_lines(
    bench_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = len((bench_dir / "results.jsonl").read_bytes().split(b"\n"))  # the first appended line
    with open(bench_dir / "results.jsonl", "ab") as fh:
        fh.write(b'{"task": "bad\xff\xfe", "trial": 1}\n')
        fh.write(b'{"task": "x", "trial": "one", "success": true, "steps": 0}\n')
        fh.write(b"not json\n")
    trajectory = bench_dir / "episodes" / "swipe" / "trial-1" / "trajectory.jsonl"
    lines = trajectory.read_bytes().split(b"\n")
    lines.insert(1, b'{"index": 9, "outputs": ["caf\xe9"]}')
    lines.insert(2, b'{"index": 10}')
    trajectory.write_bytes(b"\n".join(lines))
    assert main(["report", str(bench_dir)]) == 0
    html = (bench_dir / "report.html").read_text(encoding="utf-8")
    assert f"results.jsonl line {first}: not UTF-8: " + "{&#34;task&#34;: &#34;bad\\xff\\xfe&#34;" in html
    assert f"results.jsonl line {first + 1}: not a result line (field &#39;trial&#39;)" in html
    assert f"results.jsonl line {first + 2}: not JSON" in html
    assert (
        "trajectory.jsonl line 2: not UTF-8: {&#34;index&#34;: 9, &#34;outputs&#34;: [&#34;caf\\xe9&#34;]}"
        in html
    )
    assert "trajectory.jsonl line 3: not a step record" in html
    assert html.count("Unreadable step line") == 2
    assert html.count('<a class="full"') == 6  # every good step still shown


def test_bad_bytes_in_a_run_folder_report(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, [call(action="terminate", status="success")])
    with open(run_dir / "trajectory.jsonl", "ab") as fh:
        fh.write(b"\xc3\x28 torn")
    (run_dir / "run.json").write_bytes(b'{"goal": "\xff"}')
    html = render_report(run_dir)
    assert "trajectory.jsonl line 2: incomplete (no line end): \\xc3( torn" in html
    assert "run.json: not UTF-8, not shown" in html


# -- incomplete runs ---------------------------------------------------------------------------------------------


def test_an_incomplete_run_says_so_at_the_top(bench_dir: Path) -> None:
    summary = json.loads((bench_dir / "summary.json").read_text())
    interrupted = [{"task": "swipe", "trial": 2}]
    fields = {"planned": 12, "finished": 4, "interrupted": interrupted, "not_started": 7, "complete": False}
    summary.update(fields)
    (bench_dir / "summary.json").write_text(json.dumps(summary))
    html = render_report(bench_dir)
    banner = (
        '<p class="progress incomplete" id="progress">'
        "4 of 12 planned episodes finished — run incomplete: 1 interrupted, 7 not started</p>"
    )
    assert banner in html
    assert html.index(banner) < html.index('<table class="summary"')


def test_a_complete_run_is_not_called_incomplete(bench_dir: Path) -> None:
    summary = json.loads((bench_dir / "summary.json").read_text())
    (bench_dir / "summary.json").write_text(
        json.dumps({**summary, "planned": 2, "finished": 2, "complete": True})
    )
    html = render_report(bench_dir)
    assert '<p class="progress" id="progress">2 of 2 planned episodes finished</p>' in html
    assert 'class="progress incomplete"' not in html


# -- secrets -----------------------------------------------------------------------------------------------------


def test_api_keys_on_a_recorded_command_line_are_never_shown(bench_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads((bench_dir / "manifest.json").read_text())
    manifest["command"] = [
        "screenpilot",
        "bench",
        "--api-key",
        "sk-one",
        "--api-key=sk-two",
        "--api-k",
        "sk-3",
    ]
    manifest["shell"] = "screenpilot bench s.yaml --api-key sk-four --api-key='sk five' --api-ke=sk-6 --out x"
    (bench_dir / "manifest.json").write_text(json.dumps(manifest))
    html = render_report(bench_dir)
    assert "sk-" not in html and "sk five" not in html
    assert "--api-key REDACTED --api-key=REDACTED --api-ke=REDACTED --out x" in html
    assert "&#34;--api-key=REDACTED&#34;,\n    &#34;--api-k&#34;,\n    &#34;REDACTED&#34;" in html
    run_dir = make_run(tmp_path, [call(action="terminate", status="success")])
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "command": ["run", "--api-key", "sk-seven"]}))
    assert "sk-seven" not in render_report(run_dir)


def test_a_copied_report_folder_still_renders(bench_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bench_dir, copy, symlinks=True)
    assert "lies outside" not in render_report(copy)


def test_the_summary_names_its_columns_and_has_a_table_per_tag(
    tmp_path: Path, fake_source: FakeSource
) -> None:
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        "tasks:\n"
        "  - {id: a, goal: g, env: android, tags: [fast, web], success: {answer: {exact: x}}}\n"
        "  - {id: b, goal: g, env: android, tags: [web], success: {answer: {exact: x}}}\n"
    )
    answers: list[tuple[str | None, str]] = [
        ("a", call(action="answer", text="x")),
        ("b", call(action="answer", text="y")),
    ]
    out = tmp_path / "bench"
    run_suite(
        load_suite(suite_file),
        out,
        fake_source,
        ModelPerEpisode(lambda: ReplayModel(answers, name="replay:tags")),
        BenchSettings(progress=False, dialect_options={"answer_action": True}),
    )
    html = render_report(out)
    tags = html[html.index('<table class="summary" id="tags">') :]
    tags = tags[: tags.index("</table>")]
    assert "<td>fast</td><td>1</td><td>1/1</td>" in tags and "<td>web</td><td>2</td><td>1/2</td>" in tags
    assert "<th>seconds per agent step</th><th>setup s per episode</th>" in html
    assert '<tr class="overall"><td>overall</td><td>2/2</td>' in html


def test_a_run_stopped_midway_is_marked_incomplete_in_its_report(
    tmp_path: Path, fake_source: FakeSource
) -> None:
    import io

    from screenpilot.tasks.runner import SuiteRunner
    from tests.tasks.test_runner import StoppingModel, settings

    path = tmp_path / "s.yaml"
    path.write_text(
        "tasks:\n"
        "  - {id: answer, goal: g, env: android, success: {answer: {normalized: '42'}}}\n"
        "  - {id: note, goal: g, env: android, success: {shell: 'true'}}\n"
        "  - {id: later, goal: g, env: android, success: {shell: 'true'}}\n"
    )
    holder: list[SuiteRunner] = []
    model = StoppingModel(holder)  # stops the run during the second answer, as Ctrl-C does
    runner = SuiteRunner(
        load_suite(path),
        tmp_path / "out",
        fake_source,
        ModelPerEpisode(lambda: model),
        settings(),
        stream=io.StringIO(),
    )
    holder.append(runner)
    runner.run()
    html = render_report(tmp_path / "out")
    assert (
        '<p class="progress incomplete" id="progress">1 of 3 planned episodes finished — run incomplete: '
        in html
    )
    assert "1 interrupted, 1 not started" in html
    assert '<tr class="overall"><td>overall</td><td>1/3</td>' in html
    # The episode that was running shows the step it took, and says it was interrupted.
    episode = html[html.index("note / trial 1 (interrupted)") :]
    assert '<span class="bad">failure</span>\n      (interrupted; 1 steps' in episode
    assert episode.count('<a class="full"') == 1
