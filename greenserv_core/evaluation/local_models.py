"""Benchmark of the bundled local models on this machine (``greenserv bench local-models``).

* load time: first (GGUF → de-quantised model directory, into a temporary cache) and cached;
* decoding speed (output tokens per second) and joules per query, per model;
* the router's added latency over calling the same model directly, as a ratio in one run
  (``static:<model>`` routing, so both paths run the same model on the same prompts): the
  median over prompts of each prompt's routed over direct seconds, each path timed first
  on every other prompt;
* the router's own time per answer: each path's seconds outside the model's ``generate``
  (which every answer reports as its latency), routed less direct, per prompt. Repeated
  generations of one prompt can differ by hundreds of milliseconds on a small CPU, so the
  ratio above is noisy; this leaves the generation itself out and is much less so;
* with ``--dtypes float32,bfloat16``, each model in each dtype, with its direct latency as a
  ratio of float32's in the same run (``auto`` is the backend's default choice).

    greenserv bench local-models --queries 12
    greenserv bench local-models --models smollm2-135m-instruct --prompts prompts.jsonl   # a GPU machine
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greenserv_core.backends.base import GenerationSettings
from greenserv_core.backends.transformers import TransformersBackend
from greenserv_core.datasets import load_task
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.overhead import bundled_uncached
from greenserv_core.evaluation.prompt_files import read_prompts
from greenserv_core.features import FeatureExtractor
from greenserv_core.features.bundled import DEFAULT_EMBEDDER
from greenserv_core.features.complexity import forget_reading_ease
from greenserv_core.hardware import device_name
from greenserv_core.messages import Message
from greenserv_core.models.bundled import BUNDLED_MODELS, bundled_spec, convert_gguf
from greenserv_core.router import GreenServRouter

__all__ = ["LocalModelRow", "LocalModelsReport", "run_local_models"]


def _prompts(n: int, seed: int) -> list[str]:
    """``n`` real prompts taken in turn from TriviaQA, GSM8K, BoolQ and MMLU (each task gets
    ``n // 4`` or one more; the first tasks only got them before, and 12 held no MMLU)."""
    tasks = ("triviaqa", "gsm8k", "boolq", "mmlu")
    per = -(-n // len(tasks))
    drawn = [[ex.prompt for ex in load_task(task, limit=per, seed=seed)] for task in tasks]
    return [prompts[i] for i in range(per) for prompts in drawn if i < len(prompts)][:n]


def _cold_features() -> FeatureExtractor:
    """The default features with no embedding cache and no reading ease remembered (so that no
    model's routed calls are timed on what an earlier model's left behind), the embedder loaded."""
    features = bundled_uncached(DEFAULT_EMBEDDER)()
    forget_reading_ease()
    features.extract("warm-up")  # load the embedder outside the timed region
    forget_reading_ease()
    return features


def _first_load_seconds(name: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        convert_gguf(BUNDLED_MODELS[name].locate(), Path(folder) / name)
        return time.perf_counter() - started


@dataclass(frozen=True)
class LocalModelRow:
    """One model in one dtype; seconds, tokens per second and joules (means or medians)."""

    model: str
    dtype: str
    loaded_dtype: str
    first_load_s: float | None  # None: not measured
    cached_load_s: float
    tokens_per_s: float
    joules_per_query: float
    energy_sources: str
    direct_p50_s: float
    routed_p50_s: float
    direct_vs_float32: float | None  # None: no float32 run of this model
    paired_ratio: float | None = None  # median over prompts of routed / direct seconds
    router_ms: float | None = None  # median over prompts of the routed path's extra time outside generation

    @property
    def routed_vs_direct(self) -> float:
        """The median over prompts of each prompt's routed over direct seconds (the ratio of
        the two medians when the pairs are not known)."""
        return self.paired_ratio if self.paired_ratio is not None else self.routed_p50_s / self.direct_p50_s


@dataclass(frozen=True)
class LocalModelsReport:
    rows: list[LocalModelRow]
    machine: str = ""

    def table(self) -> list[dict[str, str]]:
        """Rows for :func:`~greenserv_core.evaluation.markdown.markdown_table`."""
        return [
            {
                "model": r.model,
                "dtype": f"{r.dtype} ({r.loaded_dtype})",
                "first load (GGUF → model dir) s": "skipped" if r.first_load_s is None else f"{r.first_load_s:.1f}",
                "cached load s": f"{r.cached_load_s:.2f}",
                "output tok/s (mean)": f"{r.tokens_per_s:.1f}",
                "J per query (mean, source)": f"{r.joules_per_query:.1f} ({r.energy_sources})",
                "direct p50 s": f"{r.direct_p50_s:.2f}",
                "routed p50 s": f"{r.routed_p50_s:.2f}",
                "routed / direct (paired p50)": f"{r.routed_vs_direct:.3f}",
                "router's own ms (p50)": "–" if r.router_ms is None else f"{r.router_ms:.1f}",
                "direct p50 / float32's": "–" if r.direct_vs_float32 is None else f"{r.direct_vs_float32:.2f}",
            }
            for r in self.rows
        ]


def run_local_models(
    *,
    queries: int = 12,
    max_new_tokens: int = 32,
    seed: int = 0,
    skip_first_load: bool = False,
    dtypes: Sequence[str] = ("auto",),
    models: Sequence[str] | None = None,
    prompts_file: str | None = None,
    progress: bool = False,
) -> LocalModelsReport:
    """Load and time every bundled model (or those named in ``models``) in every dtype
    (``float32``, the baseline, first), on a GPU when one is visible.

    The first load (GGUF conversion into a temporary folder) is timed in the first dtype only.
    ``prompts_file`` (see :mod:`~greenserv_core.evaluation.prompt_files`) replaces the bundled
    prompts. ``progress`` shows a bar, one step per model and dtype (minutes each on a CPU).
    """
    if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
        raise InvalidInputError(f"queries must be a positive integer, got {queries!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = list(models) if models else list(BUNDLED_MODELS)
    specs = [bundled_spec(name) for name in names]  # unknown or missing models fail here, before any timing
    prompts = read_prompts(prompts_file, limit=queries) if prompts_file else _prompts(queries, seed)
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    rows: list[LocalModelRow] = []
    float32_p50: dict[str, float] = {}
    ordered = sorted(dict.fromkeys(dtypes), key=lambda name: name != "float32")  # the baseline first
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ordered) * len(specs), desc="local models", unit="model")
    for dtype in ordered:
        for spec in specs:
            if bar is not None:
                bar.set_postfix_str(f"{spec.name} · {dtype}")
            backend = TransformersBackend(spec, meter="auto", dtype=None if dtype == "auto" else dtype)
            first = None if skip_first_load or dtype != ordered[0] else _first_load_seconds(backend.name)
            row = _measure(backend, prompts, settings, _cold_features(), seed)
            loaded = str(next(backend.load().parameters()).dtype).removeprefix("torch.")
            if dtype == "float32":
                float32_p50[backend.name] = row["direct"]
            baseline = float32_p50.get(backend.name)
            rows.append(
                LocalModelRow(
                    backend.name,
                    dtype,
                    loaded,
                    first,
                    row["cached"],
                    row["speed"],
                    row["joules"],
                    row["sources"],
                    row["direct"],
                    row["routed"],
                    row["direct"] / baseline if baseline else None,
                    row["paired"],
                    row["router_ms"],
                )
            )
            backend.unload()
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return LocalModelsReport(rows, _machine())


def _machine() -> str:
    import torch

    from greenserv_core.backends.devices import pick_device

    device = pick_device()
    return f"device: {device} ({device_name(device)}), torch {torch.__version__}"


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
    outside: dict[str, list[float]] = {"direct": [], "routed": []}  # seconds outside model.generate

    def call_direct(messages: list[Message]) -> None:
        started = time.perf_counter()
        result = backend.generate(messages, settings)
        direct.append(time.perf_counter() - started)
        outside["direct"].append(direct[-1] - result.latency_s)
        speeds.append(result.output_tokens / result.latency_s)
        joules.append(result.energy.joules)
        sources.add(result.energy.source)

    def call_routed(messages: list[Message]) -> None:
        started = time.perf_counter()
        answer = router.generate(messages, max_new_tokens=settings.max_new_tokens)
        routed.append(time.perf_counter() - started)
        outside["routed"].append(routed[-1] - answer.latency_s)

    # interleaved, so drift in machine load hits both paths alike, and each path goes first on
    # every other prompt, so a cache warmed by the first call does not favour the second
    for position, prompt in enumerate(prompts):
        messages: list[Message] = [{"role": "user", "content": prompt}]
        for call in (call_direct, call_routed) if position % 2 == 0 else (call_routed, call_direct):
            call(messages)
    return {
        "cached": cached,
        "speed": statistics.mean(speeds),
        "joules": statistics.mean(joules),
        "sources": ", ".join(sorted(sources)),
        "direct": statistics.median(direct),
        "routed": statistics.median(routed),
        "paired": statistics.median(r / d for r, d in zip(routed, direct, strict=True)),
        "router_ms": 1000 * statistics.median(r - d for r, d in zip(outside["routed"], outside["direct"], strict=True)),
    }
