"""Step latency of the local transformers backend, transformers' stock path beside screenpilot's, in one run.

    python benchmarks/bench_model.py --random 3b            # Qwen2.5-VL-3B architecture, random weights
    python benchmarks/bench_model.py --model DIR_OR_HUB_ID  # real weights
    python benchmarks/bench_model.py --random tiny --device cpu --new-tokens 8   # smoke run anywhere

Both paths load the model through ``TransformersBackend`` (the path users take) and time agent steps on a
synthetic phone screenshot (default 1080x2400, default pixel limits: 3354 image tokens):

- **stock**: transformers as shipped: its vision encoder (one attention call per window), a dynamic cache,
  the whole prompt prefilled every step;
- **screenpilot**: the backend's defaults: all windows of a vision layer in one attention call, the system
  prompt's KV computed once and reused, and on one CUDA GPU the decoding step as CUDA graphs over a static
  cache sized in buckets (its first step compiles). ``fast_paths`` shows which are on here, and why not.

Rows: processor, vision encoder, prefill (time to the first token less the processor), decoding per token,
whole step, the first step (compilation), the step at two longer prompts as history grows (their first call
shows whether a longer prompt recompiles), peak GPU memory; the last column is stock / screenpilot. Random
weights rarely emit the stop token, so a step decodes close to ``--new-tokens`` tokens; the count is printed.
``--json FILE`` also writes the numbers, rewritten after each path, so a run cut short keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from screenpilot.actions.coords import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, Size
from screenpilot.model.base import Message, render_chatml
from screenpilot.model.dialect import PastStep
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.transformers_backend import TransformersBackend


def screenshot(size: Size) -> Image.Image:
    """A phone-like screen with some structure (content does not change the cost, size does)."""
    image = Image.new("RGB", tuple(size), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size.width, size.height // 20), fill=(40, 90, 160))
    for row in range(12):
        top = size.height // 10 + row * size.height // 14
        draw.rectangle(
            (size.width // 20, top, size.width * 19 // 20, top + size.height // 20), fill=(220, 225, 235)
        )
        draw.text((size.width // 10, top + 10), f"Item {row}", fill=(20, 20, 20))
    return image


def sync(torch: Any) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(torch: Any, fn: Any, repeats: int) -> float:
    """Median wall time of ``fn`` in ms, after one warm-up call."""
    fn()
    sync(torch)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(torch)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench(backend: TransformersBackend, prompts: list[list[Message]], repeats: int) -> dict[str, Any]:
    """Timings of one backend on the first prompt, and of one step at each longer prompt."""
    import torch

    messages = prompts[0]
    images = [image for m in messages for image in m.images]
    text = render_chatml(messages)
    processor, model = backend.processor, backend.model
    row: dict[str, Any] = {}
    row["processor_ms"] = timed(
        torch, lambda: processor(text=[text], images=images, return_tensors="pt"), repeats
    )
    inputs = processor(text=[text], images=images, return_tensors="pt").to(model.device)
    row["prompt_tokens"] = int(inputs["input_ids"].shape[1])
    row["image_tokens"] = int((inputs["input_ids"] == backend.image_token_id).sum())
    with torch.inference_mode():
        pixels, grid = inputs["pixel_values"], inputs["image_grid_thw"]
        row["vision_ms"] = timed(torch, lambda: model.model.get_image_features(pixels, grid), repeats)

    t0 = time.perf_counter()
    first = backend.complete(messages)  # warm-up (and, with decoding graphs, compilation)
    row["first_step_ms"] = (time.perf_counter() - t0) * 1000
    steps = [backend.complete(messages) for _ in range(repeats)]
    row["step_ms"] = statistics.median(s.usage.total_s * 1000 for s in steps)
    ttft = statistics.median((s.usage.time_to_first_token_s or 0) * 1000 for s in steps)
    row["prefill_ms"] = ttft - row["processor_ms"]  # vision included
    row["output_tokens"] = steps[-1].usage.output_tokens or first.usage.output_tokens
    row["decode_ms_per_token"] = (row["step_ms"] - ttft) / max(1, (row["output_tokens"] or 1) - 1)
    for n, other in enumerate(prompts[1:], start=2):  # longer prompts, as history grows
        t0 = time.perf_counter()
        completion = backend.complete(other)
        row[f"prompt{n}_tokens"] = completion.usage.prompt_tokens
        row[f"prompt{n}_first_step_ms"] = (time.perf_counter() - t0) * 1000
        row[f"prompt{n}_step_ms"] = backend.complete(other).usage.total_s * 1000
    if torch.cuda.is_available():
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


#: The two paths: backend options for each.
PATHS: dict[str, dict[str, Any]] = {
    "stock": {"batched_vision": False, "reuse_system_kv": False, "decode_graphs": False},
    "screenpilot": {},
}


def run_path(
    model_id: str, options: dict[str, Any], args: argparse.Namespace, prompts: Any
) -> dict[str, Any]:
    """Load the model with ``options``, time it, and unload it."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    backend = TransformersBackend(
        model_id,
        device=args.device,
        dtype=args.dtype,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        max_new_tokens=args.new_tokens,
        **options,
    )
    load_s = time.perf_counter() - t0
    try:
        row = bench(backend, prompts, args.repeats)
        described = backend.describe()
    finally:
        backend.close()
    row["load_s"] = load_s
    row["fast_paths"] = described["fast_paths"]
    row["model"] = f"{described['architecture']} {described['dtype']} {described['processor']}"
    return row


def report(rows: dict[str, dict[str, Any]]) -> None:
    """The two paths side by side, and stock / screenpilot for each time."""
    stock, ours = rows["stock"], rows["screenpilot"]
    print(f"\nmodel: {ours['model']}")
    for lever, state in ours["fast_paths"].items():
        print(f"  {lever:16s} {state}")
    print(f"\n  {'':28s} {'stock':>10s} {'screenpilot':>12s} {'ratio':>8s}")
    for key, value in ours.items():
        if key in ("fast_paths", "model"):
            continue
        before = stock.get(key)
        cells = [_cell(before, 10), _cell(value, 12)]
        timed_row = key.endswith(("_ms", "_ms_per_token", "_gib", "_s"))
        ratio = f"{before / value:8.2f}" if timed_row and before and value else f"{'':8s}"
        print(f"  {key:28s} {cells[0]} {cells[1]} {ratio}")


def _cell(value: Any, width: int) -> str:
    return f"{value:{width}.1f}" if isinstance(value, float) else f"{value!s:>{width}}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="local directory or hub id of a Qwen2.5-VL checkpoint")
    source.add_argument("--random", choices=["tiny", "3b"], help="build a random checkpoint of this size")
    parser.add_argument("--screen", default="1080x2400", help="device screen size (default: %(default)s)")
    parser.add_argument("--min-pixels", type=int, default=QWEN_MIN_PIXELS)
    parser.add_argument("--max-pixels", type=int, default=QWEN_MAX_PIXELS)
    parser.add_argument("--new-tokens", type=int, default=64, help="max_new_tokens per step (default: 64)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--json", help="write each path's numbers here as soon as that path is done")
    args = parser.parse_args(argv)

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as scratch:
        model_id = args.model
        if args.random:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the builder lives with the tests
            from tests.model.tiny_qwen import build_tiny_qwen25vl

            t0 = time.perf_counter()
            dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
            folder = Path(scratch) / "model"
            model_id = str(build_tiny_qwen25vl(folder, size=args.random, device=args.device, dtype=dtype))
            print(f"built a random {args.random} checkpoint in {time.perf_counter() - t0:.1f} s")
        prompts = phone_prompts(args)
        if torch.cuda.is_available():
            print(f"gpu: {torch.cuda.get_device_name()}, torch {torch.__version__}")
        rows: dict[str, dict[str, Any]] = {}
        for name, options in PATHS.items():
            rows[name] = run_path(model_id, options, args, prompts)
            if args.json:  # a run cut short still leaves the paths it finished
                Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
        report(rows)
    return 0


def phone_prompts(args: argparse.Namespace) -> list[list[Message]]:
    """One step's prompt at three lengths of history."""
    dialect = Qwen25VLDialect("mobile_use", min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    screen = Size.parse(args.screen)
    space = dialect.coordinate_space(screen)
    image = screenshot(screen)
    history = [
        PastStep('{"name": "mobile_use", "arguments": {"action": "open", "text": "Settings"}}'),
        PastStep('{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [540, 612]}}'),
        PastStep(
            '{"name": "mobile_use", "arguments": {"action": "swipe", "coordinate": [540, 1800], '
            '"coordinate2": [540, 600]}}'
        ),
        PastStep('{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [980, 402]}}'),
    ]
    goal = "Open the Settings app and turn on Wi-Fi"
    print(f"screen {screen} -> model image {space.model}; device {args.device}")
    return [
        dialect.messages(goal, image, space, []),
        dialect.messages(goal, image, space, history[:2]),
        dialect.messages(goal, image, space, history),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
