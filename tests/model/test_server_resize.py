"""A server that resizes the screenshot again is refused at the first call, for every dialect.

The scripted server counts prompt tokens as a Qwen-family server with given pixel limits would (its own
``smart_resize``); the backend compares the image tokens it reports with what the dialect's resize implies.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.cli.main import main
from screenpilot.errors import SetupError
from screenpilot.model.base import Message
from screenpilot.model.dialect import Dialect, SupportsImageTokens
from screenpilot.model.dialects import DIALECT_NAMES, make_dialect
from screenpilot.model.openai_backend import OpenAIBackend
from tests.model.openai_server import Reply, ScriptedServer, TokenCounter

pytest.importorskip("httpx")

PHONE = Size(1080, 2400)
FACTORS = {"qwen2.5-vl": 28, "qwen3-vl": 32, "ui-tars-1.5": 28}


def dialect_named(name: str) -> SupportsImageTokens:
    dialect = make_dialect(name, "mobile")
    assert isinstance(dialect, SupportsImageTokens)
    return dialect


def first_prompt(dialect: Dialect, screen: Size = PHONE) -> list[Message]:
    screenshot = Image.new("RGB", tuple(screen), (90, 140, 200))
    return dialect.messages("Open the settings app", screenshot, dialect.coordinate_space(screen), [])


def sent_size(messages: list[Message]) -> tuple[int, int]:
    (size,) = [p.image.size for m in messages for p in m.content if hasattr(p, "image")]
    return size


def server_like(name: str, **limits: int) -> ScriptedServer:
    """A server for dialect ``name``'s model with the dialect's own pixel limits, or those given."""
    dialect = dialect_named(name)
    wanted = {"min_pixels": dialect.min_pixels, "max_pixels": dialect.max_pixels, **limits}
    return ScriptedServer(tokens=TokenCounter(factor=FACTORS[name], **wanted))


def backend_for(server: ScriptedServer, dialect: SupportsImageTokens) -> OpenAIBackend:
    model = OpenAIBackend(server.url, served_model="qwen", backoff_s=0.01)
    model.expect_image_tokens(dialect)
    return model


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_a_server_with_the_dialects_limits_passes_and_is_asked_once(name: str) -> None:
    dialect = dialect_named(name)
    messages = first_prompt(dialect)  # type: ignore[arg-type]
    with server_like(name) as server:
        model = backend_for(server, dialect)
        try:
            model.complete(messages)
            model.complete(messages)
        finally:
            model.close()
    real, text_only, again = server.posts
    assert [m["content"] for m in text_only.json["messages"]] == [
        m["content"] if isinstance(m["content"], str) else "".join(p.get("text", "") for p in m["content"])
        for m in real.json["messages"]
    ]  # the same text, without the image
    assert text_only.json["max_tokens"] == 1
    assert again.json == real.json  # the size is checked once


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_a_server_with_a_narrower_max_pixels_is_refused_naming_the_setting(name: str) -> None:
    dialect = dialect_named(name)
    messages = first_prompt(dialect)  # type: ignore[arg-type]
    width, height = sent_size(messages)
    factor = FACTORS[name]
    narrow = TokenCounter(factor=factor, min_pixels=dialect.min_pixels, max_pixels=1280 * factor * factor)
    expected = dialect.image_tokens(PHONE)
    assert expected == (width // factor) * (height // factor)
    with ScriptedServer(tokens=narrow) as server:
        model = backend_for(server, dialect)
        try:
            with pytest.raises(SetupError) as refused:
                model.complete(messages)
            posts = len(server.posts)
            with pytest.raises(SetupError) as again:  # repeated without asking the server anything
                model.complete(messages)
        finally:
            model.close()
    limits = json.dumps({"min_pixels": dialect.min_pixels, "max_pixels": dialect.max_pixels})
    assert str(refused.value) == (
        f"the server resized the image: expected {expected} image tokens for a {width}x{height} image, "
        f"it counted {narrow.image_tokens(width, height)}; serve the model with --mm-processor-kwargs "
        f"'{limits}' (vLLM; the same limits on other servers) so its resize is a no-op"
    )
    assert narrow.image_tokens(width, height) < expected
    assert str(again.value) == str(refused.value) and len(server.posts) == posts


def test_a_server_that_enlarges_a_small_image_is_refused() -> None:
    dialect = dialect_named("qwen2.5-vl")
    messages = first_prompt(dialect, Size(120, 160))  # type: ignore[arg-type]
    with server_like("qwen2.5-vl", min_pixels=256 * 28 * 28) as server:
        model = backend_for(server, dialect)
        try:
            with pytest.raises(
                SetupError, match=r"expected 24 image tokens for a 112x168 image, it counted 2\d\d;"
            ):
                model.complete(messages)
        finally:
            model.close()


def test_a_server_that_reports_no_token_count_is_used_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dialect = dialect_named("qwen2.5-vl")
    plain = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}}]}
    with ScriptedServer(tokens=TokenCounter(max_pixels=1280 * 28 * 28)) as server:
        server.script.append(Reply(body=json.dumps(plain)))
        model = backend_for(server, dialect)
        try:
            with caplog.at_level(logging.WARNING, logger="screenpilot.model"):
                assert model.complete(first_prompt(dialect)).text == "hello"  # type: ignore[arg-type]
        finally:
            model.close()
    assert len(server.posts) == 1  # nothing to compare with: no text-only request
    assert "reports no prompt token count" in caplog.text


def test_run_against_a_resizing_server_stops_at_the_first_step_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with server_like("qwen2.5-vl", max_pixels=1280 * 28 * 28) as server:
        args = ["run", "Open the settings app", "--env", "fake", "--model", server.url]
        code = main([*args, "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(
        "screenpilot: error: the server resized the image: expected 3354 image tokens"
    )
    assert len(server.posts) == 2  # the first step's call and its text-only count; nothing executed after


def test_run_against_a_server_with_matching_limits_runs(tmp_path: Path) -> None:
    with server_like("qwen2.5-vl") as server:
        args = ["run", "Open the settings app", "--env", "fake", "--model", server.url, "--max-steps", "2"]
        code = main([*args, "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 1  # the scripted model waits until the step limit
    assert len(server.posts) == 3  # two steps and one text-only count


def test_bench_against_a_resizing_server_stops_with_exit_2_and_records_no_episode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "tasks:\n"
        + "".join(
            f"  - {{id: t{i}, goal: 'Open the settings app', env: android, max_steps: 2, "
            "success: {answer: {normalized: '42'}}}\n"
            for i in range(4)
        )
    )
    out = tmp_path / "out"
    with server_like("qwen2.5-vl", max_pixels=100 * 28 * 28) as server:
        args = ["bench", str(suite), "--env", "fake", "--screen-size", "360x640", "--model", server.url]
        code = main([*args, "--jobs", "2", "--out", str(out), "--no-progress"])
    assert code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("screenpilot: error: the server resized the image: expected 299 image tokens")
    assert line.endswith("(4 episodes not run; run the same command again to resume)")
    assert not (out / "results.jsonl").exists() or (out / "results.jsonl").read_text() == ""
    assert len(server.posts) <= 3  # each worker's first call, one text-only count; nothing after the refusal


def test_eval_against_a_resizing_server_stops_at_the_first_example_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("RGB", (1080, 2400), (200, 200, 200)).save(tmp_path / "a.png")
    data = tmp_path / "g.jsonl"
    line = json.dumps({"image": "a.png", "instruction": "tap OK", "bbox": [500, 1150, 600, 1250]})
    data.write_text(line + "\n" + line + "\n")
    out = tmp_path / "g.json"
    with server_like("qwen2.5-vl", max_pixels=1280 * 28 * 28) as server:
        code = main(
            ["eval", "grounding", str(data), "--model", server.url, "--out", str(out), "--no-progress"]
        )
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("screenpilot: error: the server resized the image: expected 3354 image tokens")
    assert len(server.posts) == 2  # the first example's call and its text-only count
