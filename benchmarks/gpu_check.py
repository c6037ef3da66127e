"""The model side on one CUDA GPU, in one go: environment, the GPU-marked tests, stock vs screenpilot timings.

    python3 benchmarks/gpu_check.py                      # on the GPU machine, from the repository root
    python3 benchmarks/gpu_check.py --budget-s 420       # the whole run's wall-clock limit (default 480 s)
    python benchmarks/gpu_check.py --download-wheels .whl   # where pip can reach PyPI: wheels to carry over

Stages, each in its own process group with its own time limit (killed, never waited on, when it runs over):

1. ``env``: Python, torch and its CUDA build, the GPU, transformers, and every module screenpilot imports;
   a CPU build of torch or a missing module fails here, with what to install, and the later stages are
   skipped;
2. ``gpu_tests``: ``pytest -m gpu tests/model/test_gpu.py`` (the transformers backend and its speed levers
   on CUDA: the batched window attention against transformers' per-window loop, the reused system-prompt KV
   and the decoding graphs against the stock path, no recompilation as the prompt grows, Qwen3-VL);
3. ``bench_model``: ``benchmarks/bench_model.py --random 3b`` (stock vs screenpilot side by side; each
   path's numbers are written to ``bench_model.json`` as soon as that path is done).

Each stage's output goes to ``<stage>.log`` in ``$OUT`` (or ``--out``; a temporary folder when neither is
set) and its last lines to stdout; ``summary.txt`` lists every stage as passed, failed, timed out or skipped,
then bench_model's headline numbers for each path it finished.
The exit status is 0 only when every stage passed.

A machine without internet access cannot ``pip install``: screenpilot's own dependencies that the GPU image
lacks travel as wheels. ``--download-wheels DIR`` fetches, where pip works, the wheels of the versions
installed here for CPython 3.12 on x86-64 Linux; on the GPU machine install them first::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Modules the GPU stages import, with the distribution that provides each.
REQUIRED = {
    "torch": "torch",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "huggingface_hub": "huggingface-hub",
    "accelerate": "accelerate",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic-core",
    "tenacity": "tenacity",
    "jinja2": "jinja2",
    "numpy": "numpy",
    "PIL": "pillow",
    "regex": "regex",
    "pytest": "pytest",
}

#: Distributions downloaded by ``--download-wheels``: screenpilot's core dependencies that a bare CUDA image
#: may lack, and transformers at the version tested here (with the one dependency it pins tighter).
WHEELS = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
    "tenacity",
    "transformers",
    "regex",
)


def probe() -> int:
    """Print which python, modules, torch, CUDA and GPU this is; 1 when a GPU stage cannot run here."""
    import importlib
    import platform
    import shutil

    print(f"python {sys.version.split()[0]} at {sys.executable} ({platform.machine()})")
    problems = []
    missing = []
    for module, dist in REQUIRED.items():
        try:
            importlib.import_module(module)
            print(f"  {module:16s} {metadata.version(dist)}")
        except Exception as exc:  # an import that fails for any reason is as good as missing
            missing.append(dist)
            print(f"  {module:16s} MISSING ({type(exc).__name__}: {_first_line(exc)})")
    if missing:
        problems.append(
            f"missing {' '.join(missing)}: carry them as wheels (--download-wheels, then pip install)"
        )
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        smi = subprocess.run(query, capture_output=True, text=True, timeout=30)
        print("nvidia-smi:", smi.stdout.strip() or smi.stderr.strip())
    else:
        print("nvidia-smi: not on PATH")
    if "torch" not in missing:
        problems += _torch_problems()
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


def _torch_problems() -> list[str]:
    import torch

    print(
        f"torch {torch.__version__}, CUDA build {torch.version.cuda}, GPU visible: {torch.cuda.is_available()}"
    )
    if torch.version.cuda is None:
        return [
            f"torch {torch.__version__} is a CPU build: run this with the python of a CUDA build of torch "
            "(on the GPU image: its python3), or install one "
            "(pip install torch --index-url https://download.pytorch.org/whl/cu128)"
        ]
    if not torch.cuda.is_available():
        return ["torch is a CUDA build but sees no GPU (the driver? CUDA_VISIBLE_DEVICES?)"]
    p = torch.cuda.get_device_properties(0)
    print(
        f"gpu: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}, "
        f"{p.multi_processor_count} SMs, bf16 {torch.cuda.is_bf16_supported()}, "
        f"cudnn {torch.backends.cudnn.version()}"
    )
    return []


def _first_line(exc: BaseException) -> str:
    return next((line for line in str(exc).splitlines() if line.strip()), "")


@dataclass
class Stage:
    name: str
    argv: list[str]
    timeout_s: float
    status: str = "skipped"
    seconds: float = 0.0


def run_stage(stage: Stage, out: Path, env: dict[str, str], budget_end: float, tail: int = 40) -> None:
    """Run one stage in its own process group, its output to ``<name>.log``; kill the group when it runs
    over its limit or the whole run's budget."""
    left = budget_end - time.monotonic()
    if left < 10:
        stage.status = "skipped (no time left)"
        return
    limit = min(stage.timeout_s, left)
    log = out / f"{stage.name}.log"
    print(f"\n=== {stage.name} (limit {limit:.0f} s): {' '.join(stage.argv)}", flush=True)
    t0 = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            stage.argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=limit)
            stage.status = "passed" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            stop_group(process)
            stage.status = f"timed out after {limit:.0f} s"
    stage.seconds = time.monotonic() - t0
    lines = log.read_text(errors="replace").splitlines()
    print("\n".join(lines[-tail:]))
    print(f"=== {stage.name}: {stage.status} in {stage.seconds:.0f} s", flush=True)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the stage's whole process group (compile workers included), SIGKILL 10 s later."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def stages(args: argparse.Namespace, out: Path) -> list[Stage]:
    python = sys.executable
    bench = [python, "benchmarks/bench_model.py", "--random", "3b", "--repeats", str(args.repeats)]
    bench += ["--new-tokens", str(args.new_tokens), "--json", str(out / "bench_model.json")]
    tests = [python, "-m", "pytest", "-m", "gpu", "-q", "-rA", "-p", "no:cacheprovider"]
    return [
        Stage("env", [python, __file__, "--probe"], 120),
        Stage("gpu_tests", [*tests, "tests/model/test_gpu.py"], args.tests_s),
        Stage("bench_model", bench, args.bench_s),
    ]


def stage_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")  # random weights: nothing to fetch, and no waiting on a hub
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    # The compiler's cache holds thousands of files: outside the output folder, which should hold only logs.
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="gpu-check-inductor-"))
    return env


def check(args: argparse.Namespace) -> int:
    out = Path(args.out or os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    budget_end = time.monotonic() + args.budget_s
    env = stage_env()
    todo = stages(args, out)
    for stage in todo:
        if stage.name != "env" and todo[0].status != "passed":
            stage.status = "skipped (the environment cannot run it)"
            continue
        run_stage(stage, out, env, budget_end)
    summary = [f"{s.name:12s} {s.status}" + (f" ({s.seconds:.0f} s)" if s.seconds else "") for s in todo]
    summary += bench_summary(out / "bench_model.json")
    (out / "summary.txt").write_text("\n".join(summary) + "\n")
    print("\nsummary (" + str(out) + "):\n  " + "\n  ".join(summary))
    return 0 if all(s.status == "passed" for s in todo) else 1


#: The rows of bench_model's table that the summary repeats.
HEADLINE = ("vision_ms", "prefill_ms", "decode_ms_per_token", "step_ms", "first_step_ms", "peak_gib")


def bench_summary(path: Path) -> list[str]:
    """bench_model's headline numbers, stock and screenpilot, from whatever paths it finished."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    lines = [f"{'bench_model':28s} {'stock':>10s} {'screenpilot':>12s}"]
    for key in HEADLINE:
        cells = [rows.get(name, {}).get(key) for name in ("stock", "screenpilot")]
        lines.append(f"  {key:26s} " + " ".join(_number(c, w) for c, w in zip(cells, (10, 12), strict=True)))
    return lines


def _number(value: object, width: int) -> str:
    return f"{value:{width}.1f}" if isinstance(value, int | float) else f"{'-':>{width}s}"


def download_wheels(folder: Path, names: Sequence[str] = WHEELS) -> int:
    """Wheels of the versions installed here, for CPython 3.12 on x86-64 Linux (the GPU image's Python)."""
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            print(f"{name} is not installed here; skipped", file=sys.stderr)
    platforms = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34)] + ["manylinux2014_x86_64"]
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder)]
    argv += ["--python-version", "3.12", "--implementation", "cp"]
    for platform in platforms:
        argv += ["--platform", platform]
    print(" ".join(argv + pins))
    return subprocess.run(argv + pins, timeout=600).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", help="where logs and results go (default: $OUT, else a temporary folder)")
    parser.add_argument("--budget-s", type=float, default=480, help="the whole run's limit (default: 480)")
    parser.add_argument("--tests-s", type=float, default=200, help="the GPU tests' limit (default: 200)")
    parser.add_argument("--bench-s", type=float, default=270, help="bench_model's limit (default: 270)")
    parser.add_argument("--repeats", type=int, default=2, help="bench_model --repeats (default: 2)")
    parser.add_argument("--new-tokens", type=int, default=64, help="bench_model --new-tokens (default: 64)")
    parser.add_argument("--download-wheels", metavar="DIR", help="only fetch the wheels to carry, into DIR")
    parser.add_argument("--probe", action="store_true", help="only the environment stage, in this process")
    args = parser.parse_args(argv)
    if args.probe:
        return probe()
    if args.download_wheels:
        return download_wheels(Path(args.download_wheels))
    return check(args)


if __name__ == "__main__":
    raise SystemExit(main())
