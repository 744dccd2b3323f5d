"""Benchmark of the bundled local models on this machine (prints Markdown for BENCHMARKS.md).

* load time: first (GGUF → de-quantised model directory, into a temporary cache) and cached;
* decoding speed (output tokens per second) and joules per query, per model;
* the router's added latency over calling the same model directly, as a ratio in one run
  (``static:<model>`` routing, so both paths run the same model on the same prompts);
* with ``--dtypes float32,bfloat16``, each model in each dtype, with its direct latency as a
  ratio of float32's in the same run (``auto`` is the backend's default choice).

    python -m greenserv_core.evaluation.local_models --queries 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from greenserv_core.backends.base import GenerationSettings
from greenserv_core.datasets import load_task
from greenserv_core.features import FeatureExtractor
from greenserv_core.messages import Message
from greenserv_core.models.bundled import BUNDLED_MODELS, bundled_pool, convert_gguf
from greenserv_core.models.transformers_backend import TransformersBackend
from greenserv_core.router import GreenServRouter

__all__ = ["main"]


def _prompts(n: int, seed: int) -> list[str]:
    tasks = ("triviaqa", "gsm8k", "boolq", "mmlu")
    per = n // len(tasks) + 1
    return [ex.prompt for task in tasks for ex in load_task(task, limit=per, seed=seed)][:n]


def _first_load_seconds(name: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        convert_gguf(BUNDLED_MODELS[name].locate(), Path(folder) / name)
        return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-first-load", action="store_true")
    parser.add_argument("--dtypes", default="auto", help="comma-separated dtypes to compare; float32 is the baseline")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prompts = _prompts(args.queries, args.seed)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    features = FeatureExtractor.default()
    features.extract("warm-up")  # load the embedder outside the timed region
    print(
        "| model | dtype | first load (GGUF → model dir) s | cached load s | output tok/s (mean) | J per query "
        "(mean, source) | direct p50 s | routed p50 s | routed / direct | direct p50 / float32's |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    float32_p50: dict[str, float] = {}
    for dtype in sorted(args.dtypes.split(","), key=lambda name: name != "float32"):  # the baseline first
        for backend in bundled_pool(meter="auto", dtype=None if dtype == "auto" else dtype):
            assert isinstance(backend, TransformersBackend)
            first = (
                "skipped" if args.skip_first_load or dtype != "float32" else f"{_first_load_seconds(backend.name):.1f}"
            )
            row = _measure(backend, prompts, settings, features, args.seed)
            loaded = str(next(backend.load().parameters()).dtype).removeprefix("torch.")
            if dtype == "float32":
                float32_p50[backend.name] = row["direct"]
            baseline = float32_p50.get(backend.name)
            ratio = f"{row['direct'] / baseline:.2f}" if baseline else "–"
            print(
                f"| {backend.name} | {dtype} ({loaded}) | {first} | {row['cached']:.2f} | {row['speed']:.1f} | "
                f"{row['joules']:.1f} ({row['sources']}) | {row['direct']:.2f} | {row['routed']:.2f} | "
                f"{row['routed'] / row['direct']:.3f} | {ratio} |"
            )
            backend.unload()


def _measure(
    backend: TransformersBackend,
    prompts: Sequence[str],
    settings: GenerationSettings,
    features: FeatureExtractor,
    seed: int,
) -> dict[str, Any]:
    backend.load()
    cached = backend.load_seconds or 0.0
    backend.generate([{"role": "user", "content": "Hello"}], GenerationSettings(max_new_tokens=4))  # warm-up
    router = GreenServRouter([backend], strategy=f"static:{backend.name}", features=features, seed=seed)
    direct, routed, speeds, joules, sources = [], [], [], [], set()
    for prompt in prompts:  # interleaved, so drift in machine load hits both paths alike
        messages: list[Message] = [{"role": "user", "content": prompt}]
        started = time.perf_counter()
        result = backend.generate(messages, settings)
        direct.append(time.perf_counter() - started)
        speeds.append(result.output_tokens / result.latency_s)
        joules.append(result.energy.joules)
        sources.add(result.energy.source)
        started = time.perf_counter()
        router.generate(messages, max_new_tokens=settings.max_new_tokens)
        routed.append(time.perf_counter() - started)
    return {
        "cached": cached,
        "speed": statistics.mean(speeds),
        "joules": statistics.mean(joules),
        "sources": ", ".join(sorted(sources)),
        "direct": statistics.median(direct),
        "routed": statistics.median(routed),
    }


if __name__ == "__main__":
    main()
