"""``--model`` text classified in one place: folder, hub id, server URL or replay source."""

from __future__ import annotations

from pathlib import Path

import pytest

from screenpilot.errors import SetupError
from screenpilot.model.spec import ModelSpec, parse_model_spec


def test_url_with_a_scheme_is_a_server() -> None:
    assert parse_model_spec("https://gpu-box:8000/v1") == ModelSpec("server", "https://gpu-box:8000/v1")


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("localhost:8000/v1", "http://localhost:8000/v1"),
        ("127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("gpu-box.lan:8000", "http://gpu-box.lan:8000"),
        ("[::1]:8000/v1", "http://[::1]:8000/v1"),
    ],
)
def test_host_port_without_a_scheme_is_a_plain_http_server(text: str, url: str) -> None:
    assert parse_model_spec(text) == ModelSpec("server", url)


def test_hub_id_is_local_and_marked_as_hub() -> None:
    assert parse_model_spec("Qwen/Qwen2.5-VL-7B-Instruct") == ModelSpec(
        "local", "Qwen/Qwen2.5-VL-7B-Instruct", hub=True
    )


def test_existing_folder_is_local_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Qwen2.5-VL-7B-Instruct").mkdir()
    monkeypatch.chdir(tmp_path)
    spec = parse_model_spec("./Qwen2.5-VL-7B-Instruct")
    assert spec == ModelSpec("local", str(tmp_path / "Qwen2.5-VL-7B-Instruct"))


def test_folder_shaped_like_a_hub_id_is_a_folder_when_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models" / "qwen").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert parse_model_spec("models/qwen") == ModelSpec("local", str(tmp_path / "models" / "qwen"))


def test_mistyped_folder_says_no_such_folder_and_the_close_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Qwen2.5-VL-7B-Instruct").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SetupError) as caught:
        parse_model_spec("./Qwen2.5-VL-7B-Instrct")
    message = str(caught.value)
    assert message.startswith(
        "no such folder: ./Qwen2.5-VL-7B-Instrct (did you mean Qwen2.5-VL-7B-Instruct?)"
    )
    assert "hub id (org/name)" in message and "http://HOST:PORT/v1" in message and "replay:FILE" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text", ["Qwen2.5-VL-7B-Instrct", "/no/such/model", "~/nowhere/x", "a/b/c", "org/../name", ""]
)
def test_text_of_no_accepted_form_is_one_line_naming_the_forms(text: str) -> None:
    with pytest.raises(SetupError, match=r"^[^\n]*a model is a model folder, a hub id \(org/name\)"):
        parse_model_spec(text)


def test_other_schemes_are_refused() -> None:
    with pytest.raises(SetupError, match=r"only http:// and https://"):
        parse_model_spec("ftp://host/v1")


def test_server_url_without_a_host_is_refused() -> None:
    with pytest.raises(SetupError, match=r"names no host"):
        parse_model_spec("http:///v1")


def test_file_is_refused_with_the_replay_hint(tmp_path: Path) -> None:
    answers = tmp_path / "answers.jsonl"
    answers.write_text("{}\n")
    with pytest.raises(SetupError, match=r"is a file; pass the model's folder \(or replay:"):
        parse_model_spec(str(answers))


def test_replay_source_must_exist(tmp_path: Path) -> None:
    answers = tmp_path / "answers.jsonl"
    answers.write_text("{}\n")
    assert parse_model_spec(f"replay:{answers}") == ModelSpec("replay", str(answers))
    assert str(parse_model_spec(f"replay:{answers}")) == f"replay:{answers}"
    with pytest.raises(SetupError, match=r"does not exist"):
        parse_model_spec(f"replay:{tmp_path / 'missing.jsonl'}")
    with pytest.raises(SetupError, match=r"needs a file"):
        parse_model_spec("replay:")
