"""Step latency of the local transformers backend: processor, vision encoder, prefill, decoding.

    python benchmarks/bench_model.py --random 3b            # Qwen2.5-VL-3B architecture, random weights
    python benchmarks/bench_model.py --model DIR_OR_HUB_ID  # real weights
    python benchmarks/bench_model.py --random tiny --device cpu --new-tokens 8   # smoke run anywhere

Each configuration loads the model through ``TransformersBackend`` (the path users take) and times one
agent step on a synthetic phone screenshot (default 1080x2400, default pixel limits: 3354 image tokens).
``--cache static`` also times transformers' static KV cache (its decoding step is compiled on first use);
prompts of two more lengths, as history grows, show whether a step stays fast. Random weights rarely emit the stop
token, so a step decodes close to ``--new-tokens`` tokens; the count is printed.
"""

from __future__ import annotations

import argparse
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
    import torch

    messages = prompts[0]
    images = [image for m in messages for image in m.images]
    text = render_chatml(messages)
    processor, model = backend.processor, backend.model
    row: dict[str, Any] = {}
    row["processor_ms"] = timed(
        torch, lambda: processor(text=[text], images=images, return_tensors="pt"), repeats
    )
    inputs = processor(text=[text], images=images, return_tensors="pt").to(backend.device)
    row["prompt_tokens"] = int(inputs["input_ids"].shape[1])
    row["image_tokens"] = int((inputs["input_ids"] == backend.image_token_id).sum())
    with torch.inference_mode():
        pixels = inputs["pixel_values"]
        grid = inputs["image_grid_thw"]
        row["vision_ms"] = timed(torch, lambda: model.model.get_image_features(pixels, grid), repeats)
        row["prefill_ms"] = timed(torch, lambda: model(**inputs, use_cache=True), repeats)

    t0 = time.perf_counter()
    first = backend.complete(messages)  # warm-up (and, for a static cache, compilation)
    row["first_step_ms"] = (time.perf_counter() - t0) * 1000
    steps = [backend.complete(messages) for _ in range(repeats)]
    row["step_ms"] = statistics.median(s.usage.total_s * 1000 for s in steps)
    row["ttft_ms"] = statistics.median((s.usage.time_to_first_token_s or 0) * 1000 for s in steps)
    row["output_tokens"] = steps[-1].usage.output_tokens or first.usage.output_tokens
    decoded = max(1, (row["output_tokens"] or 1) - 1)
    row["decode_ms_per_token"] = (row["step_ms"] - row["ttft_ms"]) / decoded
    for n, other in enumerate(prompts[1:], start=2):  # other prompt lengths, as history grows
        t0 = time.perf_counter()
        completion = backend.complete(other)
        row[f"prompt{n}_tokens"] = completion.usage.prompt_tokens
        row[f"prompt{n}_first_step_ms"] = (time.perf_counter() - t0) * 1000
        row[f"prompt{n}_step_ms"] = backend.complete(other).usage.total_s * 1000
    if backend.cache_implementation is None:  # the floor: generate alone, no streamer, no stop token
        with torch.inference_mode():
            new = row["output_tokens"]
            kwargs = {"do_sample": False, "max_new_tokens": new, "min_new_tokens": new}
            row["bare_generate_ms"] = timed(torch, lambda: model.generate(**inputs, **kwargs), repeats)
    if torch.cuda.is_available():
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


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
    parser.add_argument(
        "--cache",
        default="dynamic",
        help="comma-separated cache implementations: dynamic,static (default: dynamic)",
    )
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as scratch:
        model_id = args.model
        if args.random:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the builder lives with the tests
            from tests.model.tiny_qwen import build_tiny_qwen25vl

            t0 = time.perf_counter()
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
            model_id = str(
                build_tiny_qwen25vl(Path(scratch) / "model", size=args.random, device=device, dtype=dtype)
            )
            print(f"built a random {args.random} checkpoint in {time.perf_counter() - t0:.1f} s")

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
        prompts = [
            dialect.messages("Open the Settings app and turn on Wi-Fi", image, space, []),
            dialect.messages("Open the Settings app and turn on Wi-Fi", image, space, history[:2]),
            dialect.messages("Open the Settings app and turn on Wi-Fi", image, space, history),
        ]
        print(f"screen {screen} -> model image {space.model}; device {device}")
        if torch.cuda.is_available():
            print(f"gpu: {torch.cuda.get_device_name()}, torch {torch.__version__}")

        rows = {}
        for cache in [c.strip() for c in args.cache.split(",") if c.strip()]:
            t0 = time.perf_counter()
            backend = TransformersBackend(
                model_id,
                device=device,
                dtype=args.dtype,
                min_pixels=args.min_pixels,
                max_pixels=args.max_pixels,
                max_new_tokens=args.new_tokens,
                cache_implementation=None if cache == "dynamic" else cache,
            )
            load_s = time.perf_counter() - t0
            try:
                row = bench(backend, prompts, args.repeats)
            finally:
                described = backend.describe()
                backend.close()
            row["load_s"] = load_s
            rows[cache] = row
            print(
                f"\n[{cache} cache] {described['architecture']} {described['dtype']} {described['processor']}"
            )
            for key, value in row.items():
                print(
                    f"  {key:28s} {value:10.1f}" if isinstance(value, float) else f"  {key:28s} {value:>10}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
