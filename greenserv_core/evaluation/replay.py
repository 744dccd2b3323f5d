"""Replay an outcome table through the real :class:`GreenServRouter`, with partial feedback.

Each run streams the table's queries in its own shuffled order. For each query the router
chooses a model from the prompt alone (the same features and policies users get); only the
chosen model's row is revealed: its joules and latency go to ``record_outcome`` and, for a
``feedback_rate`` share of queries, its accuracy to ``feedback``. ``oracle`` picks the best
model per query with hindsight (the regret baseline); it is not a router. ``known-accuracy``
is a diagnostic: the real router (features, energy and latency models, online energy scale)
with a policy that knows each model's mean accuracy on each task of the table beforehand and
learns nothing, so the gap between it and the best fixed model per task is what the online
energy estimates alone cost.
``task-thompson`` is the other diagnostic: the real router with an idealised learner, Beta–
Bernoulli Thompson sampling per (true task, model), told each query's true task and blind to
everything else; what it leaves of the gap is what learning the accuracies costs a learner
that needs no classifier and wastes nothing on features that do not matter.

Pool changes (:class:`PoolChange`) replay a model joining or leaving mid-stream: a model
that joins at step k is absent before it, one that leaves at step k is removed from the
router there; the oracle and the regret only count the models present at each step.

Reward, for evaluation: ``(1-λ)·accuracy − λ·energy_norm`` with energy normalised per task
by the table's min and max. The router normalises by the joules it has seen (its online scale,
as deployed); ``energy_scale="table"`` is a diagnostic that hands it the table's scale
instead (per task type it predicts), so that the router optimises exactly the reward it is
scored on and what is left is the cost of learning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from greenserv_core.backends.base import GenerationResult, GenerationSettings, ModelInfo, StreamChunk
from greenserv_core.bandits import Policy, StatelessArmsPolicy
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.frontier import pareto_front
from greenserv_core.evaluation.table import Matrices, OutcomeTable
from greenserv_core.features.complexity import approximate_tokens
from greenserv_core.features.extractor import FeatureExtractor
from greenserv_core.features.task_classifier import instruction_text
from greenserv_core.messages import Message
from greenserv_core.reward import EnergyNormalizer
from greenserv_core.router import GreenServRouter

__all__ = [
    "DIAGNOSTICS",
    "PoolChange",
    "ReplayModel",
    "baselines",
    "default_features",
    "relative",
    "replay",
    "replay_query",
    "summarise",
    "table_energy_ranges",
]

_CURVE_POINTS = 200


@dataclass(frozen=True)
class PoolChange:
    """A model joining (``add``) or leaving (``remove``) the pool before query number ``step``.

    >>> PoolChange.parse("add", "qwen2.5-7b@3000")
    PoolChange(action='add', model='qwen2.5-7b', step=3000)
    """

    action: Literal["add", "remove"]
    model: str
    step: int

    @classmethod
    def parse(cls, action: Literal["add", "remove"], text: str) -> PoolChange:
        model, at, step = text.rpartition("@")
        if not at or not model or not step.isdigit():
            raise InvalidInputError(f"a pool change is NAME@STEP (e.g. qwen2.5-7b@3000), got {text!r}")
        return cls(action, model, int(step))


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


class _KnownAccuracy(StatelessArmsPolicy):
    """Scores each arm with its mean accuracy on the current query's task, from the table."""

    name = "known-accuracy"

    def __init__(self, dimension: int, accuracy: dict[str, dict[str, float]], *, seed: int | None = None) -> None:
        super().__init__(dimension, seed=seed)
        self.accuracy = accuracy
        self.task = ""  # the replay tells it each query's true task

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        return {arm: (self.accuracy[self.task][arm], 0.0) for arm in arms}

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        """Learns nothing: it already knows."""


class _TaskThompson(Policy):
    """Beta(1, 1)–Bernoulli Thompson sampling per (task, arm), on the current query's true task.

    Learned state, per arm in ``arms_``: {task: [successes + 1, failures + 1]}."""

    name = "task-thompson"

    def __init__(self, dimension: int, *, seed: int | None = None) -> None:
        super().__init__(dimension, seed=seed)
        self.task = ""

    def _new_arm_state(self) -> dict[str, list[float]]:
        return {}

    def _arm_state(self, state: dict[str, list[float]]) -> dict[str, Any]:
        return {task: list(counts) for task, counts in state.items()}

    def _load_arm_state(self, data: dict[str, Any]) -> dict[str, list[float]]:
        return {task: [float(a), float(b)] for task, (a, b) in data.items()}

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        draws = {}
        for arm in arms:
            a, b = self.arms_[arm].get(self.task, (1.0, 1.0))
            draws[arm] = (float(self.rng_.beta(a, b)), 0.0)
        return draws

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        counts = self.arms_[arm].setdefault(self.task, [1.0, 1.0])
        counts[0] += reward
        counts[1] += 1.0 - reward


DIAGNOSTICS = ("known-accuracy", "task-thompson")


def _mean_accuracy_per_task(data: Matrices) -> dict[str, dict[str, float]]:
    tasks = np.asarray(data.tasks)
    return {
        task: dict(zip(data.models, data.accuracy[tasks == task].mean(axis=0).tolist(), strict=True))
        for task in set(data.tasks)
    }


@dataclass
class RunResult:
    strategy: str
    run: int
    accuracy: float
    energy_joules: float
    reward: float
    regret: float
    shares: dict[str, float]
    cumulative_regret: np.ndarray
    energy_scale: dict[str, float] = field(default_factory=dict)  # top of the router's energy scale, per task type
    seconds: float = 0.0


def replay_query(
    router: GreenServRouter,
    data: Matrices,
    q: int,
    index: dict[str, int],
    rng: np.random.Generator,
    feedback_rate: float,
) -> tuple[int, bool]:
    """Route query ``q`` and reveal only the chosen model's row: its joules and latency always,
    its accuracy with probability ``feedback_rate``. Returns the chosen column and whether
    feedback was given."""
    decision = router.route(data.prompts[q], max_new_tokens=1)
    j = index[decision.model]
    router.record_outcome(
        decision.decision_id, energy_joules=float(data.energy[q, j]), latency_s=float(data.latency[q, j])
    )
    scored = bool(rng.random() < feedback_rate)
    if scored:
        router.feedback(decision.decision_id, float(data.accuracy[q, j]))
    return j, scored


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
    changes: Sequence[PoolChange],
    energy_ranges: dict[str, list[float]] | None = None,
) -> RunResult:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.queries))
    reward = (1 - tradeoff) * data.accuracy - tradeoff * energy_norm
    index = {m: j for j, m in enumerate(data.models)}
    present = np.ones((len(order), len(data.models)), dtype=bool)  # which models are in the pool at each step
    for change in changes:
        if change.action == "add":
            present[: change.step, index[change.model]] = False
        else:
            present[change.step :, index[change.model]] = False
    available = np.where(present, reward[order], -np.inf)
    best = available.max(axis=1)
    chosen = np.empty(len(order), dtype=int)
    scale: dict[str, float] = {}
    if strategy == "oracle":
        chosen[:] = available.argmax(axis=1)
    else:
        features = make_features()
        diagnostic: _KnownAccuracy | _TaskThompson | None = None
        if strategy == "known-accuracy":
            diagnostic = _KnownAccuracy(features.dimension, _mean_accuracy_per_task(data), seed=seed)
        elif strategy == "task-thompson":
            diagnostic = _TaskThompson(features.dimension, seed=seed)
        router = GreenServRouter(
            [ReplayModel(m) for m in data.models if present[0, index[m]]],
            policy=diagnostic if diagnostic is not None else strategy,
            tradeoff=tradeoff,
            seed=seed,
            features=features,
            policy_params=policy_params if diagnostic is None else None,
            energy_scale=None if energy_ranges is None else EnergyNormalizer(energy_ranges),
        )
        due = sorted((c for c in changes if c.step > 0), key=lambda c: c.step)  # step 0: already in the pool
        for step, q in enumerate(order):
            while due and due[0].step == step:
                change = due.pop(0)
                if change.action == "add":
                    router.add_model(ReplayModel(change.model))
                else:
                    router.remove_model(change.model)
            if diagnostic is not None:
                diagnostic.task = data.tasks[q]
            chosen[step], _ = replay_query(router, data, q, index, rng, feedback_rate)
        scale = {task: high for task, (_, high) in router.normalizer_.ranges_.items()}
    got = reward[order, chosen]
    counts = np.bincount(chosen, minlength=len(data.models))
    return RunResult(
        strategy,
        seed,
        float(data.accuracy[order, chosen].mean()),
        float(data.energy[order, chosen].sum()),
        float(got.mean()),
        float((best - got).sum()),
        {m: float(c / len(order)) for m, c in zip(data.models, counts, strict=True) if c},
        np.cumsum(best - got),
        scale,
    )


def _ci95(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    half = 1.96 * array.std(ddof=1) / math.sqrt(len(array)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "ci95": float(half)}


def summarise(results: list[RunResult]) -> dict[str, Any]:
    """Means with 95% confidence intervals over runs, plus the mean cumulative-regret curve
    (at most 200 points), seconds per run, and the largest joules the router saw per task
    type (the top of its online energy scale; the table's is ``baselines.per_task.max_joules``)."""
    models = sorted({m for r in results for m in r.shares})
    curves = np.mean([r.cumulative_regret for r in results], axis=0)
    steps = np.unique(np.linspace(0, len(curves) - 1, min(_CURVE_POINTS, len(curves))).astype(int))
    return {
        "accuracy": _ci95([r.accuracy for r in results]),
        "energy_joules": _ci95([r.energy_joules for r in results]),
        "energy_wh": _ci95([r.energy_joules / 3600 for r in results]),
        "reward": _ci95([r.reward for r in results]),
        "cumulative_regret": _ci95([r.regret for r in results]),
        "shares": {m: _ci95([r.shares.get(m, 0.0) for r in results]) for m in models},
        "regret_curve": {"step": (steps + 1).tolist(), "mean": curves[steps].round(4).tolist()},
        "seconds_per_run": _ci95([r.seconds for r in results]),
        "energy_scale_seen": {
            task: _ci95([r.energy_scale[task] for r in results if task in r.energy_scale])
            for task in sorted({t for r in results for t in r.energy_scale})
        },
    }


def baselines(table: OutcomeTable | Matrices, tradeoff: float) -> dict[str, dict[str, Any]]:
    """Mean accuracy, joules per query and reward of fixed choices, computed from the table:
    the expected random choice, the best single model, the best fixed model per task (the
    most a policy that sees only the task type can reach), and the per-query oracle; and per
    task, how close the runners-up come to the best model (what a learner must tell apart)."""
    data = table if isinstance(table, Matrices) else table.matrices()
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
    out["per_task"] = {}
    for task in sorted(set(data.tasks)):
        means = reward[tasks == task].mean(axis=0)
        ranked = np.argsort(-means)
        out["per_task"][task] = {
            "queries": int((tasks == task).sum()),
            "best_model": data.models[ranked[0]],
            "best_reward": float(means[ranked[0]]),
            "runner_up_gap": float(means[ranked[0]] - means[ranked[1]]) if len(ranked) > 1 else None,
            "models_within_0.05": int((means >= means[ranked[0]] - 0.05).sum() - 1),
            "max_joules": float(data.energy[tasks == task].max()),
        }
    return out


def default_features(distinct_prompts: int) -> Callable[[], FeatureExtractor]:
    """A factory of fresh feature extractors (own clustering) that share one MiniLM embedder
    whose cache holds every prompt, and the bundled task classifier."""
    from greenserv_core.features import SentenceTransformerEmbedder, TaskClassifier

    embedder = SentenceTransformerEmbedder(cache_size=distinct_prompts + 16)
    classifier = TaskClassifier.bundled()

    def make_features() -> FeatureExtractor:
        return FeatureExtractor(embedder, classifier)

    return make_features


def table_energy_ranges(data: Matrices, features: FeatureExtractor) -> dict[str, list[float]]:
    """The table's [min, max] joules over every model, per task type the router predicts for
    the prompts (the scale ``energy_scale="table"`` hands the router)."""
    texts = [instruction_text(prompt) for prompt in data.prompts]
    vectors = features.embedder.embed(texts)
    labels = np.asarray([features.task_classifier.predict(vector).label for vector in vectors])
    return {
        str(label): [float(data.energy[labels == label].min()), float(data.energy[labels == label].max())]
        for label in sorted(set(labels.tolist()))
    }


def _check_changes(changes: Sequence[PoolChange], data: Matrices) -> None:
    for change in changes:
        if change.model not in data.models:
            raise InvalidInputError(f"pool change names {change.model!r}, which the table does not have")
        if not 0 <= change.step < len(data.queries):
            raise InvalidInputError(f"pool change step {change.step} is outside 0..{len(data.queries) - 1}")
    if len({c.model for c in changes}) != len(changes):
        raise InvalidInputError("each model may join or leave at most once")
    if len({c.model for c in changes if c.action == "add"}) == len(data.models):
        raise InvalidInputError("at least one model must be in the pool from the start")


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
    changes: Sequence[PoolChange] = (),
    embedding_store: str | Path | None = None,
    energy_scale: Literal["online", "table"] = "online",
    progress: bool = False,
) -> dict[str, Any]:
    """Replay every strategy ``runs`` times; returns the JSON-ready report.

    ``policy_params`` maps a strategy name to its policy's parameters (e.g.
    ``{"linucb": {"alpha": 0.3}}``). Every prompt is embedded once, in batches, before the
    first run (``timing.feature_warmup_s``); the runs then hit the embedder's cache. With
    ``embedding_store`` (a folder) those vectors are kept on disk for the next replay of the
    same prompts (see :meth:`FeatureExtractor.warm`). ``energy_scale="table"`` gives every
    router the table's energy scale (:func:`table_energy_ranges`) instead of its online one: a
    diagnostic, see the module's docstring.
    """
    if not 0 <= feedback_rate <= 1:
        raise InvalidInputError(f"feedback_rate must be in [0, 1], got {feedback_rate}")
    if energy_scale not in ("online", "table"):
        raise InvalidInputError(f"energy_scale must be 'online' or 'table', got {energy_scale!r}")
    data = table.matrices()
    _check_changes(changes, data)
    energy_norm = data.energy_norm()
    if make_features is None:
        make_features = default_features(len(set(data.prompts)))
    started = time.perf_counter()
    extractor = make_features()
    extractor.warm(data.prompts, store=embedding_store)
    warmup = time.perf_counter() - started
    energy_ranges = table_energy_ranges(data, extractor) if energy_scale == "table" else None

    report: dict[str, Any] = {
        "settings": {
            "tradeoff": tradeoff,
            "runs": runs,
            "seed": seed,
            "feedback_rate": feedback_rate,
            "queries": len(data.queries),
            "models": len(data.models),
            "policy_params": policy_params or {},
            "pool_changes": [f"{c.action} {c.model}@{c.step}" for c in changes],
            "energy_scale": energy_scale,
        },
        "timing": {"feature_warmup_s": round(warmup, 3)},
        "simulated": table.simulated,
        "table_metadata": table.metadata,
        "strategies": {},
        "baselines": baselines(data, tradeoff),
        "single_models": [
            {
                "model": m,
                "joules_per_query": float(data.energy[:, j].mean()),
                "accuracy": float(data.accuracy[:, j].mean()),
            }
            for j, m in enumerate(data.models)
        ],
    }
    report["single_models_pareto"] = [
        list(p) for p in pareto_front([(s["joules_per_query"], s["accuracy"]) for s in report["single_models"]])
    ]
    jobs = [(s, seed + r) for s in strategies for r in range(runs)]
    iterator: Any = jobs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(jobs, desc="replay", unit="run")
    results: dict[str, list[RunResult]] = {}
    for strategy, run_seed in iterator:
        params = (policy_params or {}).get(strategy.split(":")[0])
        started = time.perf_counter()
        result = _run(
            strategy,
            data,
            energy_norm,
            tradeoff=tradeoff,
            feedback_rate=feedback_rate,
            seed=run_seed,
            make_features=make_features,
            policy_params=params,
            changes=changes,
            energy_ranges=energy_ranges,
        )
        result.seconds = time.perf_counter() - started
        results.setdefault(strategy, []).append(result)
    for strategy, runs_of in results.items():
        report["strategies"][strategy] = summarise(runs_of)
    report["relative"] = relative(report)
    return report


def relative(report: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per strategy: accuracy and energy as changes against the ``random`` run of the same replay
    (``None`` without one), and the share of the reward gap it closes between random routing
    and the best fixed model per task, and between random routing and the per-query oracle
    (both from the table's fixed choices)."""
    fixed = report["baselines"]
    floor = fixed["random"]["reward"]
    random_run = report["strategies"].get("random")
    out: dict[str, dict[str, float | None]] = {}
    for name, summary in report["strategies"].items():
        reward = summary["reward"]["mean"]
        out[name] = {
            "accuracy_vs_random": (
                summary["accuracy"]["mean"] / random_run["accuracy"]["mean"] - 1 if random_run else None
            ),
            "energy_vs_random": (
                summary["energy_joules"]["mean"] / random_run["energy_joules"]["mean"] - 1 if random_run else None
            ),
            "gap_closed_to_best_fixed_per_task": _share(reward, floor, fixed["best_fixed_model_per_task"]["reward"]),
            "gap_closed_to_oracle": _share(reward, floor, fixed["oracle"]["reward"]),
        }
    return out


def _share(value: float, low: float, high: float) -> float | None:
    return (value - low) / (high - low) if high > low else None
