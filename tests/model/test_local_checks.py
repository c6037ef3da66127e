"""The local backend's fast checks (folder, hub cache, hub) run before torch is imported; deadlines bound
generation. The hub cases run in a fresh interpreter, with the environment a user would have."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from screenpilot.errors import SetupError
from screenpilot.model.base import DeadlineExceeded, SupportsCheck

pytest.importorskip("huggingface_hub")

ROOT = Path(__file__).resolve().parents[2]

CONSTRUCT = """
import json, sys
from screenpilot.errors import SetupError
from screenpilot.model.transformers_backend import TransformersBackend
try:
    TransformersBackend(sys.argv[1], min_pixels=3136, max_pixels=12845056)
    error = None
except SetupError as exc:
    error = str(exc)
print(json.dumps({"error": error, "torch": "torch" in sys.modules}))
"""


def construct(model: str, tmp_path: Path, **env: str) -> dict[str, object]:
    """Build a TransformersBackend for ``model`` in a fresh interpreter with an empty hub cache."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environ.update({"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1", **env})
    done = subprocess.run(
        [sys.executable, "-c", CONSTRUCT, model],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_default_model_offline_and_not_cached_fails_at_once_without_torch(tmp_path: Path) -> None:
    result = construct("Qwen/Qwen2.5-VL-3B-Instruct", tmp_path, HF_HUB_OFFLINE="1")
    assert result["error"] == (
        "Qwen/Qwen2.5-VL-3B-Instruct is not in the local hub cache and the hub is offline (HF_HUB_OFFLINE=1). "
        "Download it where the hub is reachable (`hf download Qwen/Qwen2.5-VL-3B-Instruct --local-dir DIR`; "
        "older huggingface_hub: `huggingface-cli download`) and pass --model DIR."
    )
    assert result["torch"] is False


def test_unreachable_hub_and_no_cache_fails_at_once_without_torch(tmp_path: Path) -> None:
    endpoint = refused_url()
    result = construct("Qwen/Qwen2.5-VL-3B-Instruct", tmp_path, HF_ENDPOINT=endpoint)
    assert isinstance(result["error"], str)
    assert result["error"].startswith(
        f"Qwen/Qwen2.5-VL-3B-Instruct is not in the local hub cache and the hub ({endpoint}) cannot be reached"
    )
    assert "`hf download Qwen/Qwen2.5-VL-3B-Instruct --local-dir DIR`" in result["error"]
    assert result["torch"] is False


def test_mistyped_folder_fails_without_torch(tmp_path: Path) -> None:
    (tmp_path / "Qwen2.5-VL-7B-Instruct").mkdir()
    result = construct(str(tmp_path / "Qwen2.5-VL-7B-Instrct"), tmp_path)
    assert result["error"] == (
        f"no such folder: {tmp_path / 'Qwen2.5-VL-7B-Instrct'} (did you mean {tmp_path / 'Qwen2.5-VL-7B-Instruct'}?); "
        "a model is a model folder, a hub id (org/name), a server URL (http://HOST:PORT/v1) or replay:FILE"
    )
    assert result["torch"] is False


def test_a_silent_hub_is_given_up_on_within_the_timeout(
    tmp_path: Path, silent_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from screenpilot.model.transformers_backend import check_local_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", silent_url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        SetupError, match=rf"the hub \({silent_url}\) did not answer within 0\.5 s\. Download"
    ):
        check_local_model("Qwen/Qwen2.5-VL-3B-Instruct", timeout_s=0.5)


def hub_cache(tiny_qwen_dir: Path, cache: Path, repo: str) -> None:
    """Lay ``tiny_qwen_dir`` out as the hub cache does after a download of ``repo``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(tiny_qwen_dir, folder / "snapshots" / commit)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)


def test_a_cached_hub_model_loads_from_the_cache_when_the_hub_is_out_of_reach(
    tiny_qwen_dir: Path, tmp_path: Path
) -> None:
    hub_cache(tiny_qwen_dir, tmp_path / "hf-home" / "hub", "tiny-org/tiny-qwen")
    result = construct("tiny-org/tiny-qwen", tmp_path, HF_ENDPOINT=refused_url())
    assert result["error"] is None


def test_a_deadline_stops_generation_and_keeps_what_was_generated(tmp_path: Path) -> None:
    from tests.model.test_transformers_backend import backend_for, prompt_for
    from tests.model.tiny_qwen import build_tiny_qwen25vl

    # After "\n" the model says <tool_call> forever: only max_new_tokens or the deadline stop it.
    folder = build_tiny_qwen25vl(tmp_path / "endless", chain=["Ċ", "<tool_call>", "<tool_call>"])
    backend = backend_for(folder, max_new_tokens=5000)
    assert isinstance(backend, SupportsCheck)
    try:
        backend.check()
        # 2 s leaves room for the prefill on a loaded machine, far from the 5000 tokens' end
        completion = backend.complete(prompt_for(), deadline=time.monotonic() + 2.0)
        with pytest.raises(DeadlineExceeded, match="ran out before the model was asked"):
            backend.complete(prompt_for(), deadline=time.monotonic() - 1)
    finally:
        backend.close()
    assert completion.usage.output_tokens is not None and 0 < completion.usage.output_tokens < 5000
    assert completion.text.startswith("<tool_call><tool_call>")
    with pytest.raises(SetupError, match="is closed"):
        backend.check()
