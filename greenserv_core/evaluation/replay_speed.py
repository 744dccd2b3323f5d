"""How fast a replay runs: 10,000 queries × 16 models by default (``greenserv bench replay-speed``).

The paper pool's calibration covers four tasks, 7,586 distinct real prompts in all. To reach
10,000 distinct prompts this speed-only table lets further real tasks (ARC, OpenBookQA, SciQ,
PIQA, BoolQ) borrow the MMLU calibration rows; its outcomes mean nothing, only its size does.
Timed, in one process: the batched MiniLM pass over every prompt (cold, in the embedder's
default precision), loading those vectors back from the on-disk store a later replay uses,
one replay run per strategy (features from the cache, policy, cost models, feedback) in turn,
then each again, warm, with ``random``'s second run as the baseline of the ratios (the
process's first run pays one-off costs), and, where the default is bfloat16 autocast, the
same cold pass in float32 for comparison.

    greenserv bench replay-speed --calibration ../shared/data/paper_pool_calibration.csv
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.replay import default_features, replay
from greenserv_core.evaluation.simulate import read_calibration, simulate_table
from greenserv_core.features import FeatureExtractor, SentenceTransformerEmbedder
from greenserv_core.features.bundled import DEFAULT_EMBEDDER
from greenserv_core.features.task_classifier import instruction_text

__all__ = ["DEFAULT_STRATEGIES", "ReplaySpeedReport", "SpeedStep", "run_replay_speed"]

DEFAULT_STRATEGIES = ("random", "linucb", "thompson", "epsilon")

_BORROWING = ("arc_easy", "arc_challenge", "openbookqa", "sciq", "piqa", "boolq")


@dataclass(frozen=True)
class SpeedStep:
    """One timed step; ``ratio`` is its seconds over the random-routing run's, warm (None without one)."""

    step: str
    seconds: float
    ratio: float | None


@dataclass(frozen=True)
class ReplaySpeedReport:
    machine: str
    steps: list[SpeedStep]

    def table(self) -> list[dict[str, str]]:
        """Rows for :func:`~greenserv_core.evaluation.markdown.markdown_table`."""
        return [
            {
                "step": s.step,
                "seconds": f"{s.seconds:.2f}" if s.seconds < 1 else f"{s.seconds:.1f}",
                "ratio to the random-routing run, again": "–" if s.ratio is None else f"{s.ratio:.2f}",
            }
            for s in self.steps
        ]


def run_replay_speed(
    calibration: str | Path,
    *,
    queries: int = 10_000,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    queries_per_task: int = 2500,
    embedder: str = DEFAULT_EMBEDDER,
    make_features: Callable[[int], Callable[[], FeatureExtractor]] | None = None,
    make_embedder: Callable[..., Any] = SentenceTransformerEmbedder,
) -> ReplaySpeedReport:
    """Simulate the speed-only table from ``calibration`` (it needs MMLU rows; ``queries_per_task``
    drawn per task, the first ``queries`` query ids kept) and time each step.

    ``embedder`` names the bundled features' embedder (default ``"static"``, or ``"minilm"``);
    ``make_features`` replaces them (a factory of the kind of
    :func:`~greenserv_core.evaluation.replay.default_features`); for MiniLM,
    ``make_embedder(precision=..., cache_size=0)`` builds the embedders timed alone.
    """
    if make_features is None:
        make_features = functools.partial(default_features, embedder=embedder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    calibration_rows = read_calibration(calibration)
    with_mmlu = {c.model for c in calibration_rows if c.task == "mmlu"}
    lacking = sorted({c.model for c in calibration_rows} - with_mmlu)
    if lacking:  # the tasks below borrow the MMLU rows; simulate_table would name the first borrower instead
        raise InvalidInputError(
            f"{calibration}: the speed-only table needs an 'mmlu' row for every model (its rows are lent to "
            f"{', '.join(_BORROWING)}); none for {lacking}"
        )
    borrowed = [dataclasses.replace(c, task=task) for task in _BORROWING for c in calibration_rows if c.task == "mmlu"]
    tasks = sorted({c.task for c in calibration_rows}) + list(_BORROWING)
    table = simulate_table(calibration_rows + borrowed, queries_per_task=queries_per_task, tasks=tasks, seed=0)
    keep = sorted(set(table.columns["query_id"]))[:queries]
    kept = set(keep)
    rows = [i for i, q in enumerate(table.columns["query_id"]) if q in kept]
    table.columns = {name: [values[i] for i in rows] for name, values in table.columns.items()}
    data = table.matrices()
    with tempfile.TemporaryDirectory() as store:
        features = make_features(len(data.queries))
        first = replay(table, list(strategies), runs=1, tradeoff=0.4, embedding_store=store, make_features=features)
        started = time.perf_counter()
        fresh = make_features(len(data.queries))()  # a fresh embedder, as a later replay
        fresh.warm(data.prompts, store=store)
        loaded = time.perf_counter() - started
        stored = getattr(fresh.embedder, "preload", None) is not None
        # each strategy again, warm: the first run in a process pays its first-run costs, so
        # the first strategy's run is no baseline for the others
        report = replay(table, list(strategies), runs=1, tradeoff=0.4, embedding_store=store, make_features=features)
    default = make_embedder(cache_size=0) if embedder == "minilm" else None
    bfloat16 = bool(getattr(default, "uses_bfloat16", lambda n: False)(len(data.queries)))
    float32 = None
    if bfloat16:
        full = make_embedder(precision="float32", cache_size=0)
        texts = sorted({instruction_text(prompt) for prompt in data.prompts})
        started = time.perf_counter()
        full.embed(texts)  # loading the model included, as in the replay's warm-up
        float32 = time.perf_counter() - started
    machine = (
        f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
        f"{len(data.queries)} distinct real prompts × {len(data.models)} models (speed-only table); "
        f"embedder: {embedder}" + (f", precision: {'bfloat16 autocast' if bfloat16 else 'float32'}" if default else "")
    )
    baseline = report["strategies"]["random"]["seconds_per_run"]["mean"] if "random" in report["strategies"] else None

    def step(name: str, seconds: float) -> SpeedStep:
        return SpeedStep(name, seconds, seconds / baseline if baseline else None)

    warmup = first["timing"]["feature_warmup_s"]
    what = "batched MiniLM" if embedder == "minilm" else f"the {embedder} embedder"
    steps = [step(f"features: {what} over every prompt (cold)", warmup)]
    if float32 is not None:
        steps.append(step("features: the same cold pass in float32", float32))
    if stored:
        steps.append(step("features: the same vectors from the on-disk store", loaded))
    else:  # an embedder without a store embeds them again
        steps.append(step(f"features: the same prompts again ({embedder} keeps no store: embedded again)", loaded))
    for order, (name, summary) in enumerate(first["strategies"].items()):
        label = " (the process's first run)" if order == 0 else ""
        steps.append(step(f"replay run: {name}, in turn{label}", summary["seconds_per_run"]["mean"]))
    for name, summary in report["strategies"].items():
        steps.append(step(f"replay run: {name}, again", summary["seconds_per_run"]["mean"]))
    return ReplaySpeedReport(machine, steps)
