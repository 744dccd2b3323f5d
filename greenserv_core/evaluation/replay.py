"""Replay an outcome table through the real :class:`GreenServRouter`, with partial feedback.

Each run streams the table's queries in its own shuffled order. For each query the router
chooses a model from the prompt alone (the same features and policies users get); only the
chosen model's row is revealed: its joules and latency go to ``record_outcome`` and, for a
``feedback_rate`` share of queries, its accuracy to ``feedback``. ``oracle`` picks the best
model per query with hindsight (the regret baseline); it is not a router.

Reward, for evaluation: ``(1-λ)·accuracy − λ·energy_norm`` with energy normalised per task
by the table's min and max.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from greenserv_core.backends.base import GenerationResult, GenerationSettings, ModelInfo, StreamChunk
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.table import Matrices, OutcomeTable
from greenserv_core.features.complexity import approximate_tokens
from greenserv_core.features.extractor import FeatureExtractor
from greenserv_core.messages import Message
from greenserv_core.router import GreenServRouter

__all__ = ["ReplayModel", "baselines", "replay", "summarise"]


class ReplayModel:
    """A pool member whose outcomes come from the table; it is never asked to generate."""

    def __init__(self, name: str) -> None:
        self._info = ModelInfo(name=name, context_window=1_000_000)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(approximate_tokens(m["content"]) for m in messages)

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        raise InvalidInputError("a replayed model does not generate; its outcomes come from the table")

    def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
        raise InvalidInputError("a replayed model does not generate; its outcomes come from the table")


@dataclass
class RunResult:
    strategy: str
    run: int
    accuracy: float
    energy_joules: float
    reward: float
    regret: float
    shares: dict[str, float]
    cumulative_regret: list[float]


def _run(
    strategy: str,
    data: Matrices,
    energy_norm: np.ndarray,
    *,
    tradeoff: float,
    feedback_rate: float,
    seed: int,
    make_features: Any,
    policy_params: dict[str, Any] | None,
) -> RunResult:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.queries))
    reward = (1 - tradeoff) * data.accuracy - tradeoff * energy_norm
    best = reward.max(axis=1)
    chosen = np.empty(len(order), dtype=int)
    if strategy == "oracle":
        chosen[:] = reward[order].argmax(axis=1)
    else:
        router = GreenServRouter(
            [ReplayModel(m) for m in data.models],
            strategy=strategy,
            tradeoff=tradeoff,
            seed=seed,
            features=make_features(),
            policy_params=policy_params,
        )
        index = {m: j for j, m in enumerate(data.models)}
        for step, q in enumerate(order):
            decision = router.route(data.prompts[q], max_new_tokens=1)
            j = index[decision.model]
            chosen[step] = j
            router.record_outcome(
                decision.decision_id, energy_joules=float(data.energy[q, j]), latency_s=float(data.latency[q, j])
            )
            if rng.random() < feedback_rate:
                router.feedback(decision.decision_id, float(data.accuracy[q, j]))
    got = reward[order, chosen]
    counts = np.bincount(chosen, minlength=len(data.models))
    return RunResult(
        strategy,
        seed,
        float(data.accuracy[order, chosen].mean()),
        float(data.energy[order, chosen].sum()),
        float(got.mean()),
        float((best[order] - got).sum()),
        {m: float(c / len(order)) for m, c in zip(data.models, counts, strict=True) if c},
        np.cumsum(best[order] - got).tolist(),
    )


def _ci95(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    half = 1.96 * array.std(ddof=1) / math.sqrt(len(array)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "ci95": float(half)}


def summarise(results: list[RunResult]) -> dict[str, Any]:
    models = sorted({m for r in results for m in r.shares})
    return {
        "accuracy": _ci95([r.accuracy for r in results]),
        "energy_joules": _ci95([r.energy_joules for r in results]),
        "energy_wh": _ci95([r.energy_joules / 3600 for r in results]),
        "reward": _ci95([r.reward for r in results]),
        "cumulative_regret": _ci95([r.regret for r in results]),
        "shares": {m: _ci95([r.shares.get(m, 0.0) for r in results]) for m in models},
    }


def baselines(table: OutcomeTable, tradeoff: float) -> dict[str, dict[str, Any]]:
    """Mean accuracy, joules per query and reward of fixed choices, computed from the table:
    the expected random choice, the best single model, the best fixed model per task (the
    most a policy that sees only the task type can reach), and the per-query oracle."""
    data = table.matrices()
    reward = (1 - tradeoff) * data.accuracy - tradeoff * data.energy_norm()
    tasks = np.asarray(data.tasks)
    per_task = np.zeros(len(data.queries), dtype=int)
    for task in set(data.tasks):
        rows = tasks == task
        per_task[rows] = int(reward[rows].mean(axis=0).argmax())
    single = int(reward.mean(axis=0).argmax())
    rows = np.arange(len(data.queries))
    choices = {
        "best_single_model": np.full(len(rows), single),
        "best_fixed_model_per_task": per_task,
        "oracle": reward.argmax(axis=1),
    }
    out: dict[str, dict[str, Any]] = {
        "random": {
            "accuracy": float(data.accuracy.mean()),
            "joules_per_query": float(data.energy.mean()),
            "reward": float(reward.mean()),
        },
    }
    for name, chosen in choices.items():
        out[name] = {
            "accuracy": float(data.accuracy[rows, chosen].mean()),
            "joules_per_query": float(data.energy[rows, chosen].mean()),
            "reward": float(reward[rows, chosen].mean()),
        }
    out["best_single_model"]["model"] = data.models[single]
    return out


def replay(
    table: OutcomeTable,
    strategies: Sequence[str],
    *,
    tradeoff: float = 0.4,
    runs: int = 5,
    seed: int = 0,
    feedback_rate: float = 1.0,
    make_features: Any = None,
    policy_params: dict[str, dict[str, Any]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Replay every strategy ``runs`` times; returns the JSON-ready report."""
    if not 0 <= feedback_rate <= 1:
        raise InvalidInputError(f"feedback_rate must be in [0, 1], got {feedback_rate}")
    data = table.matrices()
    energy_norm = data.energy_norm()
    if make_features is None:
        from greenserv_core.features import SentenceTransformerEmbedder, TaskClassifier

        embedder = SentenceTransformerEmbedder(cache_size=len(data.queries) + 16)
        classifier = TaskClassifier.bundled()

        def make_features() -> FeatureExtractor:
            return FeatureExtractor(embedder, classifier)

    report: dict[str, Any] = {
        "settings": {
            "tradeoff": tradeoff,
            "runs": runs,
            "seed": seed,
            "feedback_rate": feedback_rate,
            "queries": len(data.queries),
            "models": len(data.models),
        },
        "simulated": table.simulated,
        "table_metadata": table.metadata,
        "strategies": {},
        "baselines": baselines(table, tradeoff),
    }
    jobs = [(s, seed + r) for s in strategies for r in range(runs)]
    iterator: Any = jobs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(jobs, desc="replay", unit="run")
    results: dict[str, list[RunResult]] = {}
    for strategy, run_seed in iterator:
        params = (policy_params or {}).get(strategy.split(":")[0])
        results.setdefault(strategy, []).append(
            _run(
                strategy,
                data,
                energy_norm,
                tradeoff=tradeoff,
                feedback_rate=feedback_rate,
                seed=run_seed,
                make_features=make_features,
                policy_params=params,
            )
        )
    for strategy, runs_of in results.items():
        report["strategies"][strategy] = summarise(runs_of)
    return report
