"""The built-in MiniWoB++ suite: task selection, the bench command's refusals, the seed, and the page ending
the episode with its own verdict, through the real command line where it can."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

pytest.importorskip("miniwob")
pytest.importorskip("selenium")

from screenpilot.cli.main import main
from screenpilot.errors import SetupError
from screenpilot.tasks.miniwob import MiniwobEnv, load_miniwob_suite
from screenpilot.tasks.miniwob.suite import WGE_TASKS
from screenpilot.tasks.runner import read_results

HAVE_BROWSER = all(shutil.which(b) for b in ("chromium", "chromedriver", "Xvfb"))
browser = pytest.mark.skipif(not HAVE_BROWSER, reason="needs chromium, chromium-driver and Xvfb")


def test_selection_subsets_and_time_limits() -> None:
    default = load_miniwob_suite("miniwob")
    assert [t.id for t in default.tasks] == list(WGE_TASKS) and default.info["subset"] == "wge"
    picked = load_miniwob_suite("miniwob:click-button,enter-text")
    assert [t.id for t in picked.tasks] == ["click-button", "enter-text"]
    assert picked.sha256 != load_miniwob_suite("miniwob:click-button").sha256
    everything = load_miniwob_suite("miniwob:all")
    assert len(everything.tasks) > 100 and not any(t.id.startswith("flight") for t in everything.tasks)
    limits = {t.id: t.max_seconds for t in everything.tasks}
    assert limits["click-button"] == 10 + 5 and limits["book-flight"] == 30 + 5  # the page's own, plus margin
    assert picked.info == {**picked.info, "screen": "480x630", "zoom": 3, "package": "miniwob 1.1.0"}


def test_an_unknown_task_is_one_line() -> None:
    with pytest.raises(SetupError) as caught:
        load_miniwob_suite("miniwob:click-button,click-buton")
    assert "no MiniWoB++ task 'click-buton'" in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).endswith("; did you mean click-button?")
    with pytest.raises(SetupError, match=r"^no MiniWoB\+\+ task '': give task names"):
        load_miniwob_suite("miniwob:")  # an empty list (an unset shell variable) is not the default subset


def test_bench_refuses_other_envs_and_screen_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "miniwob:click-test", "--model", "replay:/nonexistent", "--out", str(tmp_path / "o")]
    assert main([*args, "--env", "fake"]) == 2
    assert "screenpilot: error: the MiniWoB++ suite runs on --env sandbox" in capsys.readouterr().err
    assert main([*args, "--env", "sandbox", "--screen-size", "800x600"]) == 2
    assert "leave out --app and --screen-size" in capsys.readouterr().err
    assert main([*args, "--env", "sandbox", "--task", "enter-text"]) == 2
    assert "no task 'enter-text'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.jsonl").exists()


def _replay(path: Path, *calls: Mapping[str, object]) -> str:
    lines = [
        json.dumps(
            {"output": f"<tool_call>\n{json.dumps({'name': 'computer_use', 'arguments': c})}\n</tool_call>"}
        )
        for c in calls
    ]
    path.write_text("\n".join(lines) + "\n")
    return f"replay:{path}"


# click-test with seed 7 puts its button around (353, 341) on the 480x630 screen: (350, 333) in the 476x616
# model image. With seed 8 the button is elsewhere (around (153, 471)), so the same click misses.
CLICK = {"action": "left_click", "coordinate": [350, 333]}
GIVE_UP = {"action": "terminate", "status": "failure"}


@browser
def test_bench_miniwob_from_the_command_line_consumes_the_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _replay(tmp_path / "answers.jsonl", CLICK, GIVE_UP)
    common = ["bench", "miniwob:click-test", "--env", "sandbox", "--model", model, "--no-progress"]
    assert main([*common, "--seed", "7", "--out", str(tmp_path / "s7")]) == 0
    assert main([*common, "--seed", "8", "--out", str(tmp_path / "s8")]) == 0
    (hit,), (miss,) = read_results(tmp_path / "s7"), read_results(tmp_path / "s8")
    assert hit["success"] and hit["steps"] == 1 and hit["agent_reason"] == "task_ended"
    assert hit["task_result"]["raw_reward"] == 1.0 and hit["task_result"]["seed"] == 7
    assert hit["task_result"]["utterance"] == "Click the button." and hit["task_result"]["time_limit_s"] == 10
    assert not miss["success"] and miss["steps"] == 2 and miss["task_result"]["done"] is False
    assert "did not end the episode" in miss["check"]["detail"]
    run = json.loads((tmp_path / "s7" / "episodes" / "click-test" / "trial-1" / "run.json").read_text())
    assert run["goal"] == "Click the button."
    manifest = json.loads((tmp_path / "s7" / "manifest.json").read_text())
    assert manifest["suite"]["screen"] == "480x630" and manifest["devices"][0]["env"]["zoom"] == 3

    # The same command again resumes: nothing is run twice.
    assert main([*common, "--seed", "7", "--out", str(tmp_path / "s7")]) == 0
    assert "0 episodes run, 1 already done" in capsys.readouterr().err


@browser
def test_same_seed_same_instance_and_the_page_ends_a_wrong_click() -> None:
    suite = load_miniwob_suite("miniwob:click-test-2")
    task = suite.tasks[0]
    env = MiniwobEnv()
    try:
        shots = []
        for seed in (3, 3, 4):
            env.begin_task(task, seed)
            shots.append(env.reset().screenshot.tobytes())
        assert shots[0] == shots[1] and shots[0] != shots[2]
        assert env.task_ended() is None
        env._browser.driver.execute_script("document.getElementById('subbtn2').click();")  # the wrong one
        assert "raw reward -1" in (env.task_ended() or "")
        result = env.task_result()
        assert result["done"] and result["raw_reward"] == -1.0 and result["seed"] == 4
    finally:
        env.close()


@browser
def test_the_pages_time_limit_ends_the_episode(tmp_path: Path) -> None:
    wait = {"action": "wait", "time": 4}
    model = _replay(tmp_path / "answers.jsonl", *[wait] * 6)
    out = tmp_path / "o"
    args = [
        "bench",
        "miniwob:click-test",
        "--env",
        "sandbox",
        "--model",
        model,
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    (line,) = read_results(out)
    assert not line["success"] and line["agent_reason"] == "task_ended" and line["steps"] < 6
    assert line["task_result"]["reward_reason"] == "timed out" and line["task_result"]["raw_reward"] == -1.0
    assert not line["error"] and not line["infra_error"]  # the page's verdict, not a broken run
    result = json.loads((out / line["folder"] / "result.json").read_text())
    assert (result["status"], result["reason"]) == ("failure", "task_ended")
    assert "timed out" in result["error"]
    assert "task_ended" in (out / "report.html").read_text()


def test_validate_lists_the_chosen_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "miniwob:click-button,enter-text"]) == 0
    out = capsys.readouterr().out
    assert "miniwob: 2 tasks" in out and "Click on a specific button in a generated form." in out
    assert main(["validate", "miniwob"]) == 0
    assert f"miniwob:wge: {len(WGE_TASKS)} tasks" in capsys.readouterr().out


def test_a_worker_without_chromium_is_refused_in_one_line_naming_the_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from screenpilot.tasks.miniwob import MiniwobWorkerEnvs

    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium, no chromedriver
    monkeypatch.delenv("MINIWOB_CHROME_BINARY", raising=False)
    monkeypatch.delenv("MINIWOB_CHROMEDRIVER", raising=False)
    with pytest.raises(SetupError) as caught:
        MiniwobWorkerEnvs()(0)  # what a Ray worker runs on its node before it takes an episode
    message = str(caught.value)
    assert "apt install chromium chromium-driver" in message and "\n" not in message
    monkeypatch.setenv("MINIWOB_CHROMEDRIVER", str(tmp_path / "chromedriver"))  # a path given, nothing there
    with pytest.raises(
        SetupError, match=r"^MINIWOB_CHROMEDRIVER=\S+/chromedriver is not an executable file$"
    ):
        MiniwobWorkerEnvs()(0)


def _carrying(variable: str) -> list[str]:
    """Running processes (not zombies) whose environment holds ``variable``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if variable.encode() in (proc / "environ").read_bytes().split(b"\0"):
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(f"{(proc / 'comm').read_text().strip()} (pid {proc.name})")
        except OSError:
            continue
    return found


@browser
def test_kill_9_of_bench_leaves_no_browser_running_and_the_run_resumes(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time
    import uuid

    model = _replay(tmp_path / "answers.jsonl", CLICK, GIVE_UP)
    out = tmp_path / "o"
    cmd = [
        "bench",
        "miniwob:click-test",
        "--env",
        "sandbox",
        "--model",
        model,
        "--no-progress",
        "--trials",
        "4",
    ]
    cmd += ["--out", str(out), "--no-report"]
    mark = f"SCREENPILOT_TEST_MARK={uuid.uuid4().hex}"  # inherited by everything the bench starts
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    bench = subprocess.Popen([sys.executable, "-m", "screenpilot", *cmd], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(read_results(out)) < 1:
            assert bench.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert any(p.startswith("chromium") for p in _carrying(mark))
    finally:
        bench.kill()
        bench.wait(10)
    deadline = time.monotonic() + 15
    while any(p.startswith(("chromium", "chromedriver")) for p in _carrying(mark)):
        assert time.monotonic() < deadline, _carrying(mark)
        time.sleep(0.2)
    done = len(read_results(out))
    assert main(cmd) == 0  # the same command resumes: every trial once
    lines = read_results(out)
    assert sorted(r["trial"] for r in lines) == [1, 2, 3, 4] and done < 4
