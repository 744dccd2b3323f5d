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
that needs no classifier and wastes nothing on features that do not matter. Both live in
:mod:`~greenserv_core.evaluation.diagnostics`.

Pool changes (:class:`PoolChange`) replay a model joining or leaving mid-stream: a model
that joins at step k is absent before it, one that leaves at step k is removed from the
router there; the oracle and the regret only count the models present at each step.

Learning over time (:mod:`~greenserv_core.evaluation.learning_curves`): metrics over the first
``h`` queries of each run (``horizons``), against the same queries' baselines. Drift
(:class:`~greenserv_core.evaluation.shifts.Shift`): a model's outcomes change from some step
on; the router, the reward, the oracle and the regret all see the shifted outcomes (the table
is not modified), and the report says how long each policy takes to re-adapt. A model joining
mid-stream is reported with the time each policy takes to adopt it.

``per_task`` keeps the first ``N`` queries of each task (table order); the baselines are those
of the cut table. ``warm_start`` teaches every router (not the oracle), before its stream, the
outcomes of every model on ``N`` labelled queries per task (:meth:`GreenServRouter.learn`):
with a cut, the ``N`` queries of each task that follow it, so that the stream is the cold
start's; without one, the last ``N`` of each task, which then leave the stream. A model that
joins mid-stream is taught its rows when it joins. ``overstate`` teaches a model's warm-start
scores raised by a margin (a wrong prior). The pieces: :mod:`~greenserv_core.evaluation.warm_start`.

Peers (``greenserv_core.evaluation.peers``, the ``bench`` extra) are replayed as policies of the
real router, like the diagnostics.

Reward, for evaluation: ``(1-λ)·accuracy − λ·energy_norm`` with energy normalised per task
by the table's min and max. The router normalises with its own online scale, as deployed
(``energy_scale="online"``: the router's default; ``"known"``, ``"seen"`` or ``"pool"`` pick one of
:data:`~greenserv_core.routing.energy_costs.ENERGY_SCALES`); ``energy_scale="table"`` is a
diagnostic that hands it the table's scale instead (per task type it predicts), so that the
router optimises exactly the reward it is scored on and what is left is the cost of learning.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from greenserv_core.backends.base import GenerationResult, GenerationSettings, ModelInfo, StreamChunk
from greenserv_core.bandits import Policy
from greenserv_core.bandits.base import check_seed
from greenserv_core.bandits.registry import make_policy
from greenserv_core.bandits.static import StaticPolicy
from greenserv_core.budget import BudgetPacer, EnergyBudget, as_energy_budget
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.budget_report import spend_report
from greenserv_core.evaluation.diagnostics import (
    DIAGNOSTICS,
    Diagnostic,
    KnownAccuracy,
    TaskThompson,
    mean_accuracy_per_task,
)
from greenserv_core.evaluation.frontier import pareto_front
from greenserv_core.evaluation.learning_curves import (
    StepBaselines,
    gap_share,
    horizon_metrics,
    mean_ci95,
    new_optimum_share,
    newcomer_time,
    readapt_time,
    relative_change,
    share_around,
    step_baselines,
    summarise_values,
)
from greenserv_core.evaluation.shifts import Shift, shift_outcomes
from greenserv_core.evaluation.table import Matrices, OutcomeTable
from greenserv_core.evaluation.warm_start import split_warm_start, teach_outcomes
from greenserv_core.features.complexity import approximate_tokens
from greenserv_core.features.extractor import FeatureExtractor, TaskEncoding
from greenserv_core.features.task_classifier import instruction_text
from greenserv_core.messages import Message
from greenserv_core.reward import EnergyNormalizer, check_tradeoff
from greenserv_core.router import GreenServRouter
from greenserv_core.routing.energy_costs import EnergyScaleName

__all__ = [
    "PEERS_UNPACED",
    "REPLAY_ENERGY_SCALES",
    "PoolChange",
    "ReplayEnergyScale",
    "ReplayModel",
    "Shift",
    "baselines",
    "default_features",
    "peer_strategies",
    "relative",
    "replay",
    "replay_query",
    "router_energy_scale",
    "stream_order",
    "summarise",
    "table_energy_ranges",
]

_CURVE_POINTS = 200
PEERS_UNPACED = (
    "an energy budget reads a peer's scores (a VW peer's probabilities, MABWiser's rewards net of cost) as accuracy "
    "estimates, and the peer learns an answer the budget sent to another model than it chose as routed by nobody, "
    "on another scale"
)
"""Why a replay under an energy budget refuses the peers."""


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
        if not at or not model or not (step.isascii() and step.isdigit()):  # (not "²", which int() refuses)
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


ReplayEnergyScale = Literal["online", "known", "seen", "pool", "table"]
REPLAY_ENERGY_SCALES: tuple[ReplayEnergyScale, ...] = ("online", "known", "seen", "pool", "table")
"""The router's energy scale in a replay: ``online`` (its default), one of
:data:`~greenserv_core.routing.energy_costs.ENERGY_SCALES`, or the diagnostic ``table``."""


def router_energy_scale(energy_scale: ReplayEnergyScale) -> EnergyScaleName | None:
    """The ``energy_scale`` a replay builds its routers with: ``None`` (the router's default)
    for ``online`` and for ``table`` (which hands it an :class:`EnergyNormalizer` instead),
    else the scale named.

    >>> router_energy_scale("online"), router_energy_scale("seen")
    (None, 'seen')
    """
    return None if energy_scale in ("online", "table") else cast(EnergyScaleName, energy_scale)


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
    chosen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # the model column at each step
    tradeoffs: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the λ in force at each step
    arrivals: np.ndarray | None = None  # seconds from the start at each step (window budgets)


class _SimulatedClock:
    """The replay's clock for a window budget: the arrival time of the query being routed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _pacer(budget: EnergyBudget | BudgetPacer | None, tradeoff: float, clock: _SimulatedClock) -> BudgetPacer | None:
    """A fresh pacer for one run on the replay's clock: ``budget``'s settings, started at ``tradeoff``."""
    if budget is None:
        return None
    if isinstance(budget, EnergyBudget):
        return BudgetPacer(budget, initial_tradeoff=tradeoff, clock=clock)
    return type(budget)(**{**budget.params(), "clock": clock})


def arrival_times(seed: int, queries: int, rate_per_s: float) -> np.ndarray:
    """Poisson arrivals at ``rate_per_s`` queries per second: each query's time in seconds
    (drawn from its own generator, so that nothing else of the run changes)."""
    rng = np.random.default_rng([seed, 17])
    return np.cumsum(rng.exponential(1.0 / rate_per_s, size=queries))


def replay_query(
    router: GreenServRouter,
    data: Matrices,
    q: int,
    index: dict[str, int],
    rng: np.random.Generator,
    feedback_rate: float,
) -> tuple[int, bool, float]:
    """Route query ``q`` and reveal only the chosen model's row: its joules and latency always,
    its accuracy with probability ``feedback_rate``. Returns the chosen column, whether
    feedback was given, and the λ in force."""
    decision = router.route(data.prompts[q], max_new_tokens=1)
    j = index[decision.model]
    router.record_outcome(
        decision.decision_id, energy_joules=float(data.energy[q, j]), latency_s=float(data.latency[q, j])
    )
    scored = bool(rng.random() < feedback_rate)
    if scored:
        router.feedback(decision.decision_id, float(data.accuracy[q, j]))
    return j, scored, decision.tradeoff


def stream_order(seed: int, queries: int) -> tuple[np.random.Generator, np.ndarray]:
    """A run's order of the queries, and its generator (which then draws the scored answers)."""
    rng = np.random.default_rng(seed)
    return rng, rng.permutation(queries)


@dataclass
class _Stream:
    """One run's stream, shared by all its strategies: the table's rows in the run's order with
    the shifts applied (``data``, step × model), the evaluation reward, the models present at
    each step, and the per-step baselines of the learning curve."""

    table: Matrices  # the (cut) table itself, unshifted
    order: np.ndarray
    data: Matrices
    reward: np.ndarray
    present: np.ndarray
    task_index: np.ndarray
    baselines: StepBaselines


def _presence(changes: Sequence[PoolChange], queries: int, models: Sequence[str]) -> np.ndarray:
    """Which models are in the pool at each step."""
    index = {m: j for j, m in enumerate(models)}
    present = np.ones((queries, len(models)), dtype=bool)
    for change in changes:
        if change.action == "add":
            present[: change.step, index[change.model]] = False
        else:
            present[change.step :, index[change.model]] = False
    return present


def _streams(
    data: Matrices, tradeoff: float, changes: Sequence[PoolChange], shifts: Sequence[Shift]
) -> Callable[[int], _Stream]:
    """A maker of each run's :class:`_Stream` by its seed (made once, then kept)."""
    energy_norm = data.energy_norm()
    reward = (1 - tradeoff) * data.accuracy - tradeoff * energy_norm
    names = sorted(set(data.tasks))
    task_index = np.searchsorted(names, np.asarray(data.tasks))
    rows_of = [task_index == t for t in range(len(names))]
    task_reward = np.stack([reward[rows].mean(axis=0) for rows in rows_of])
    rank = np.argsort(np.argsort(-task_reward, axis=1, kind="stable"), axis=1)  # 0: the task's best fixed model
    task_accuracy = np.stack([data.accuracy[rows].mean(axis=0) for rows in rows_of])
    low = np.asarray([data.energy[rows].min() for rows in rows_of])
    span = np.asarray([data.energy[rows].max() for rows in rows_of]) - low
    binary = np.all((data.accuracy == 0) | (data.accuracy == 1), axis=0)
    present = _presence(changes, len(data.queries), data.models)
    columns = {m: j for j, m in enumerate(data.models)}
    made: dict[int, _Stream] = {}
    stretches = _shifted_task_ranks(data, tradeoff, shifts, rows_of, (low, span), binary, columns) if shifts else []

    def make(seed: int) -> _Stream:
        if seed in made:
            return made[seed]
        _, order = stream_order(seed, len(data.queries))
        tasks = task_index[order]
        ordered = data.take(order)
        accuracy, energy, latency = ordered.accuracy, ordered.energy, ordered.latency
        norm = energy_norm[order]
        if shifts:
            accuracy, energy, latency = shift_outcomes(
                accuracy, energy, latency, task_accuracy[tasks], binary, shifts, columns, seed
            )
            if any(s.kind == "energy" for s in shifts):  # the table's scale, applied to the shifted joules
                scaled = (energy - low[tasks, None]) / np.where(span > 0, span, 1.0)[tasks, None]
                shifted = np.where(span[tasks, None] > 0, scaled, 0.0)
                norm = np.where(energy != data.energy[order], shifted, norm)
        step_reward = (1 - tradeoff) * accuracy - tradeoff * norm
        stream = replace(ordered, accuracy=accuracy, energy=energy, latency=latency)
        ranks = _stretch_ranks(stretches, tasks, len(step_reward)) if shifts else rank[tasks]
        made[seed] = _Stream(
            data,
            order,
            stream,
            step_reward,
            present,
            tasks,
            step_baselines(step_reward, accuracy, energy, present, ranks),
        )
        return made[seed]

    return make


def _shifted_task_ranks(
    data: Matrices,
    tradeoff: float,
    shifts: Sequence[Shift],
    rows_of: Sequence[np.ndarray],
    scale: tuple[np.ndarray, np.ndarray],
    binary: np.ndarray,
    columns: dict[str, int],
) -> list[tuple[int, np.ndarray]]:
    """Per stretch between shift steps, its first step and the (task × model) ranking (0: the
    task's best fixed model) on the whole table with the shifts made by then applied in
    expectation: a fixed model is ranked on what it is worth in that stretch, the same for
    every run, and a shift that changes no outcome changes no ranking."""
    low, span = scale
    out = []
    for start in sorted({0, *(max(s.step, 0) for s in shifts)}):
        accuracy, energy = data.accuracy.copy(), data.energy.copy()
        for shift in shifts:
            if shift.step > start:
                continue
            j = columns[shift.model]
            if shift.kind == "energy":
                energy[:, j] *= shift.amount
            elif shift.kind == "accuracy" and not binary[j]:
                accuracy[:, j] = np.clip(accuracy[:, j] + shift.amount, 0.0, 1.0)
            elif shift.kind == "accuracy":  # answers flipped at the rate that moves each task's mean by the amount
                for rows in rows_of:
                    accuracy[rows, j] = np.clip(accuracy[rows, j].mean() + shift.amount, 0.0, 1.0)
        task_reward = np.stack(
            [
                (1 - tradeoff) * accuracy[rows].mean(axis=0)
                - tradeoff * np.where(span[t] > 0, (energy[rows].mean(axis=0) - low[t]) / (span[t] or 1.0), 0.0)
                for t, rows in enumerate(rows_of)
            ]
        )
        out.append((start, np.argsort(np.argsort(-task_reward, axis=1, kind="stable"), axis=1)))
    return out


def _stretch_ranks(stretches: list[tuple[int, np.ndarray]], tasks: np.ndarray, steps: int) -> np.ndarray:
    """Each step's ranking of the models on its task, from the stretch the step falls in."""
    ranks = np.zeros((steps, stretches[0][1].shape[1]), dtype=np.int64)
    for (start, rank), stop in zip(stretches, [*(s for s, _ in stretches[1:]), steps], strict=True):
        ranks[start:stop] = rank[tasks[start:stop]]
    return ranks


def _peer(strategy: str, dimension: int, seed: int) -> Policy | None:
    """The peer policy named ``strategy``, or ``None`` if it is not a peer's name (the peers'
    module is only imported for names the registry and the diagnostics do not know)."""
    if not peer_strategies([strategy]):
        return None
    policy: Policy = importlib.import_module("greenserv_core.evaluation.peers").make_peer(
        strategy, dimension, seed=seed
    )
    return policy


def peer_strategies(strategies: Sequence[str]) -> list[str]:
    """Those of ``strategies`` that name a peer (see :mod:`greenserv_core.evaluation.peers`)."""
    from greenserv_core.bandits.registry import POLICIES

    unknown = [s for s in strategies if s.partition(":")[0] not in POLICIES and s not in (*DIAGNOSTICS, "oracle")]
    if not unknown:
        return []
    try:
        peers = importlib.import_module("greenserv_core.evaluation.peers")
    except ImportError:
        return []
    names = set(peers.peer_names())
    return [s for s in unknown if s in names]


def _run(
    strategy: str,
    stream: _Stream,
    *,
    tradeoff: float,
    feedback_rate: float,
    seed: int,
    make_features: Any,
    policy_params: dict[str, Any] | None,
    changes: Sequence[PoolChange],
    energy_ranges: dict[str, list[float]] | None = None,
    router_scale: EnergyScaleName | None = None,
    warm: Matrices | None = None,
    overstate: Mapping[str, float] | None = None,
    energy_budget: EnergyBudget | BudgetPacer | None = None,
    arrivals: np.ndarray | None = None,
) -> RunResult:
    data, present = stream.data, stream.present  # rows in the run's order, shifted outcomes
    rng, _ = stream_order(seed, len(data.queries))  # the stream's order; the generator then draws the scored answers
    index = {m: j for j, m in enumerate(data.models)}
    available = np.where(present, stream.reward, -np.inf)
    best = available.max(axis=1)
    chosen = np.empty(len(data.queries), dtype=int)
    tradeoffs = np.full(len(data.queries), tradeoff)
    clock = _SimulatedClock()
    scale: dict[str, float] = {}
    if strategy == "oracle":
        chosen[:] = available.argmax(axis=1)
    else:
        features = make_features()
        diagnostic: Diagnostic | None = None
        if strategy == "known-accuracy":
            diagnostic = KnownAccuracy(features.dimension, mean_accuracy_per_task(stream.table), seed=seed)
        elif strategy == "task-thompson":
            diagnostic = TaskThompson(features.dimension, seed=seed)
        peer = _peer(strategy, features.dimension, seed) if diagnostic is None else None
        custom = diagnostic if diagnostic is not None else peer
        router = GreenServRouter(
            [ReplayModel(m) for m in data.models if present[0, index[m]]],
            policy=custom if custom is not None else strategy,
            tradeoff=tradeoff,
            seed=seed,
            features=features,
            policy_params=policy_params if custom is None else None,
            energy_scale=router_scale if energy_ranges is None else EnergyNormalizer(energy_ranges),
            energy_budget=_pacer(energy_budget, tradeoff, clock),
        )
        if warm is not None:
            teach_outcomes(router, warm, [m for m in data.models if present[0, index[m]]], overstate or {}, diagnostic)
        # step 0: already in the pool; at one step, joins before leaves (as _check_changes counts them)
        due = sorted((c for c in changes if c.step > 0), key=lambda c: (c.step, c.action != "add"))
        for step in range(len(data.queries)):
            while due and due[0].step == step:
                change = due.pop(0)
                if change.action == "add":
                    router.add_model(ReplayModel(change.model))
                    if warm is not None:
                        teach_outcomes(router, warm, [change.model], overstate or {}, diagnostic)
                else:
                    router.remove_model(change.model)
            if diagnostic is not None:
                diagnostic.task = data.tasks[step]
            if arrivals is not None:
                clock.now = float(arrivals[step])
            chosen[step], _, tradeoffs[step] = replay_query(router, data, step, index, rng, feedback_rate)
        scale = {task: high for task, (_, high) in router.normalizer_.ranges_.items()}
    steps = np.arange(len(chosen))
    got = stream.reward[steps, chosen]
    counts = np.bincount(chosen, minlength=len(data.models))
    return RunResult(
        strategy,
        seed,
        float(data.accuracy[steps, chosen].mean()),
        float(data.energy[steps, chosen].sum()),
        float(got.mean()),
        float((best - got).sum()),
        {m: float(c / len(chosen)) for m, c in zip(data.models, counts, strict=True) if c},
        np.cumsum(best - got),
        scale,
        chosen=chosen,
        tradeoffs=tradeoffs,
        arrivals=arrivals,
    )


def summarise(results: list[RunResult]) -> dict[str, Any]:
    """Means with 95% confidence intervals over runs, plus the mean cumulative-regret curve
    (at most 200 points), seconds per run, and the largest joules the router saw per task
    type (the top of its online energy scale; the table's is ``baselines.per_task.max_joules``)."""
    models = sorted({m for r in results for m in r.shares})
    curves = np.mean([r.cumulative_regret for r in results], axis=0)
    steps = np.unique(np.linspace(0, len(curves) - 1, min(_CURVE_POINTS, len(curves))).astype(int))
    return {
        "accuracy": mean_ci95([r.accuracy for r in results]),
        "energy_joules": mean_ci95([r.energy_joules for r in results]),
        "energy_wh": mean_ci95([r.energy_joules / 3600 for r in results]),
        "reward": mean_ci95([r.reward for r in results]),
        "cumulative_regret": mean_ci95([r.regret for r in results]),
        "shares": {m: mean_ci95([r.shares.get(m, 0.0) for r in results]) for m in models},
        "regret_curve": {"step": (steps + 1).tolist(), "mean": curves[steps].round(4).tolist()},
        "seconds_per_run": mean_ci95([r.seconds for r in results]),
        "energy_scale_seen": {
            task: mean_ci95([r.energy_scale[task] for r in results if task in r.energy_scale])
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


def default_features(
    distinct_prompts: int, embedder: str | None = None, task_encoding: TaskEncoding = "onehot"
) -> Callable[[], FeatureExtractor]:
    """A factory of fresh feature extractors (own clustering) that share one bundled embedder
    and its bundled task classifier: ``embedder`` ``None`` is the router's default
    (:data:`~greenserv_core.features.bundled.DEFAULT_EMBEDDER`); ``"minilm"``'s cache then
    holds every prompt."""
    from greenserv_core.features.bundled import DEFAULT_EMBEDDER, bundled_features

    shared_embedder, classifier = bundled_features(embedder or DEFAULT_EMBEDDER, cache_size=distinct_prompts + 16)

    def make_features() -> FeatureExtractor:
        return FeatureExtractor(shared_embedder, classifier, task_encoding=task_encoding)

    return make_features


def table_energy_ranges(data: Matrices, features: FeatureExtractor) -> dict[str, list[float]]:
    """The table's [min, max] joules over every model, per task type the router predicts for
    the prompts (the scale ``energy_scale="table"`` hands the router)."""
    texts = [instruction_text(prompt) for prompt in data.prompts]
    vectors = features.embedder.embed(texts)
    labels = np.asarray(
        [features.task_classifier.predict(vector, text).label for vector, text in zip(vectors, texts, strict=True)]
    )
    return {
        str(label): [float(data.energy[labels == label].min()), float(data.energy[labels == label].max())]
        for label in sorted(set(labels.tolist()))
    }


def _check_model_step(what: str, model: str, step: int, data: Matrices) -> None:
    """A pool change or shift must name a model of the table and a step of its stream."""
    if model not in data.models:
        raise InvalidInputError(f"{what} names {model!r}, which the table does not have")
    if not 0 <= step < len(data.queries):
        raise InvalidInputError(f"{what} step {step} is outside 0..{len(data.queries) - 1}")


def _check_changes(changes: Sequence[PoolChange], data: Matrices) -> None:
    for change in changes:
        _check_model_step("pool change", change.model, change.step, data)
    if len({c.model for c in changes}) != len(changes):
        raise InvalidInputError("each model may join or leave at most once")
    if len({c.model for c in changes if c.action == "add" and c.step > 0}) == len(data.models):  # @0: from the start
        raise InvalidInputError("at least one model must be in the pool from the start")
    present = len(data.models) - sum(c.action == "add" for c in changes)
    for change in sorted(changes, key=lambda c: (c.step, c.action != "add")):  # joins before leaves at a step
        present += 1 if change.action == "add" else -1
        if present < 1:
            raise InvalidInputError(f"removing {change.model} at query {change.step} would leave the pool empty")


def _check_strategies(
    strategies: Sequence[str],
    dimension: int,
    seed: int,
    policy_params: Mapping[str, Mapping[str, Any]],
    data: Matrices,
    changes: Sequence[PoolChange],
) -> None:
    """Build each strategy's policy (or peer) once, so that a bad name or parameter, or a missing
    extra, is refused before any run; a static policy's model must be in the pool at every step.
    ``policy_params`` may only name the router's policies among ``strategies`` (others would be ignored)."""
    from greenserv_core.bandits.registry import POLICIES, check_policy_params

    for params in policy_params.values():
        check_policy_params(params or {}, "policy_params (--param)")  # the replay's own: seed, features' size, strategy
    running = {s.split(":")[0] for s in strategies}
    unused = sorted(set(policy_params) - running)
    if unused:
        raise InvalidInputError(f"policy_params names {unused}, which are not among the strategies {sorted(running)}")
    fixed = sorted(name for name in policy_params if name not in POLICIES)  # peers, diagnostics, the oracle
    if fixed:
        raise InvalidInputError(f"policy_params sets the router's policies only; {fixed} take no parameters")
    present = _presence(changes, len(data.queries), data.models)
    left_out = {m for j, m in enumerate(data.models) if not present[:, j].all()}
    for strategy in strategies:
        if strategy == "oracle" or strategy in DIAGNOSTICS or _peer(strategy, dimension, seed) is not None:
            continue
        policy = make_policy(strategy, dimension, seed=seed, **(policy_params.get(strategy.split(":")[0]) or {}))
        if isinstance(policy, StaticPolicy):
            if policy.arm not in data.models:
                raise InvalidInputError(f"{strategy} routes to {policy.arm!r}, which the table does not have")
            if policy.arm in left_out:
                raise InvalidInputError(
                    f"{strategy} routes every query to {policy.arm!r}, which a pool change leaves out of the pool"
                )


def _check_shifts(shifts: Sequence[Shift], data: Matrices) -> None:
    for shift in shifts:
        _check_model_step("shift", shift.model, shift.step, data)
        shift.check()


def _horizons(horizons: Sequence[int], queries: int) -> list[int]:
    """The horizons below the number of queries, sorted, and the end."""
    if any(h < 1 for h in horizons):
        raise InvalidInputError(f"horizons are numbers of queries >= 1, got {list(horizons)}")
    return sorted({int(h) for h in horizons if h < queries} | {queries})


def _learning_curve(
    results: dict[str, list[RunResult]], make_stream: Callable[[int], _Stream], horizons: list[int]
) -> dict[str, Any]:
    """Each strategy's metrics over the first ``h`` queries of its runs, means over runs."""
    metrics = ("reward", "accuracy", "joules_per_query", *_CURVE_METRICS)
    per_strategy: dict[str, list[dict[str, Any]]] = {}
    seeds: dict[int, list[dict[str, float | None]]] = {}
    for strategy, runs_of in results.items():
        points = []
        for result in runs_of:
            stream = make_stream(result.run)
            steps = np.arange(len(result.chosen))
            points.append(
                horizon_metrics(
                    stream.reward[steps, result.chosen],
                    stream.data.accuracy[steps, result.chosen],
                    stream.data.energy[steps, result.chosen],
                    stream.baselines,
                    horizons,
                )
            )
            seeds.setdefault(result.run, points[-1])
        per_strategy[strategy] = [
            {"queries": h, **{key: summarise_values([run[i][key] for run in points]) for key in metrics}}
            for i, h in enumerate(horizons)
        ]
    fixed = [
        {
            "queries": h,
            **{
                name: summarise_values([run[i][f"{name}_reward"] for run in seeds.values()])
                for name in ("random", "best_fixed_model_per_task", "oracle")
            },
        }
        for i, h in enumerate(horizons)
    ]
    return {"horizons": horizons, "baselines": fixed, "strategies": per_strategy}


_CURVE_METRICS = ("gap_closed_to_best_fixed_per_task", "gap_closed_to_oracle", "accuracy_vs_random", "energy_vs_random")


def _steps(values: list[int | None]) -> dict[str, Any]:
    done = [v for v in values if v is not None]
    return {"mean": float(np.mean(done)) if done else None, "runs": values, "reached": len(done)}


def _next_step(step: int, shifts: Sequence[Shift], changes: Sequence[PoolChange]) -> int | None:
    """The first step after ``step`` at which a shift or a pool change comes (``None``: none does).

    >>> _next_step(100, [Shift.parse("a@100:accuracy-0.1"), Shift.parse("a@300:accuracy+0.1")], [])
    300
    """
    later = [s.step for s in shifts if s.step > step] + [c.step for c in changes if c.step > step]
    return min(later, default=None)


def _optimum_shares(
    results: dict[str, list[RunResult]],
    make_stream: Callable[[int], _Stream],
    step: int,
    column: int,
    stop: int | None,
) -> dict[int, float]:
    """Per run, the share of the queries from ``step`` to ``stop`` (the next shift or pool change)
    whose task's best fixed model is the model in ``column`` (:func:`new_optimum_share`), on
    that run's stream."""
    shares = {}
    for run in dict.fromkeys(r.run for runs_of in results.values() for r in runs_of):
        stream = make_stream(run)
        shares[run] = new_optimum_share(stream.reward, stream.present, stream.task_index, step, column, stop)
    return shares


def _shift_report(
    shifts: Sequence[Shift],
    changes: Sequence[PoolChange],
    results: dict[str, list[RunResult]],
    models: list[str],
    make_stream: Callable[[int], _Stream],
) -> list[dict[str, Any]]:
    """Per shift: the model's share under the new optimum and, per strategy, the time to re-adapt
    and the model's share in the ``AROUND`` steps before and after the shift (the new optimum,
    the time to re-adapt and the share after it up to the next shift or pool change)."""
    out = []
    for shift in shifts:
        j = models.index(shift.model)
        stop = _next_step(shift.step, shifts, changes)
        targets = _optimum_shares(results, make_stream, shift.step, j, stop)
        per_strategy: dict[str, Any] = {}
        for strategy, runs_of in results.items():
            times: list[int | None] = []
            before: list[float | None] = []
            after: list[float | None] = []
            for result in runs_of:
                picked = result.chosen == j
                times.append(readapt_time(picked, shift.step, targets[result.run], worsens=shift.worsens, stop=stop))
                share = share_around(picked, shift.step, stop=stop)
                before.append(share[0])
                after.append(share[1])
            per_strategy[strategy] = {
                "readapt_steps": _steps(times),
                "share_before": summarise_values(before),
                "share_after": summarise_values(after),
            }
        out.append(
            {
                "shift": str(shift),
                "model": shift.model,
                "step": shift.step,
                "kind": shift.kind,
                "amount": shift.amount,
                "worsens": shift.worsens,
                "new_optimum_share": summarise_values(list(targets.values())),
                "strategies": per_strategy,
            }
        )
    return out


def _newcomer_report(
    changes: Sequence[PoolChange],
    shifts: Sequence[Shift],
    results: dict[str, list[RunResult]],
    models: list[str],
    make_stream: Callable[[int], _Stream],
) -> list[dict[str, Any]]:
    """Per model joining mid-stream, per strategy: the time to reach half of its final share,
    and half of its share under the new optimum (the queries from its joining up to the next
    shift or pool change whose task's best fixed model it is); the final share and both times
    up to the next shift or pool change."""
    out = []
    for change in changes:
        if change.action != "add":
            continue
        j = models.index(change.model)
        stop = _next_step(change.step, shifts, changes)
        targets = _optimum_shares(results, make_stream, change.step, j, stop)
        per_strategy: dict[str, Any] = {}
        window = 0
        for strategy, runs_of in results.items():
            found = [newcomer_time(r.chosen == j, change.step, targets[r.run], stop=stop) for r in runs_of]
            window = found[0]["final_window"]
            per_strategy[strategy] = {
                "steps_to_half": _steps([f["steps_to_half"] for f in found]),
                "steps_to_half_optimum": _steps([f["steps_to_half_optimum"] for f in found]),
                "final_share": summarise_values([f["final_share"] for f in found]),
            }
        out.append(
            {
                "model": change.model,
                "step": change.step,
                "final_window": window,
                "new_optimum_share": summarise_values(list(targets.values())),
                "strategies": per_strategy,
            }
        )
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
    changes: Sequence[PoolChange] = (),
    embedding_store: str | Path | None = None,
    energy_scale: ReplayEnergyScale = "online",
    progress: bool = False,
    per_task: int | None = None,
    horizons: Sequence[int] = (500, 2000),
    shifts: Sequence[Shift] = (),
    warm_start: int = 0,
    overstate: Mapping[str, float] | None = None,
    energy_budget: EnergyBudget | BudgetPacer | float | str | None = None,
    arrival_rate: float | None = None,
) -> dict[str, Any]:
    """Replay every strategy ``runs`` times; returns the JSON-ready report.

    ``policy_params`` maps a strategy name to its policy's parameters (e.g.
    ``{"linucb": {"alpha": 0.3}}``). Every prompt is embedded once, in batches, before the
    first run (``timing.feature_warmup_s``); the runs then hit the embedder's cache. With
    ``embedding_store`` (a folder) those vectors are kept on disk for the next replay of the
    same prompts (see :meth:`FeatureExtractor.warm`). ``energy_scale="table"`` gives every
    router the table's energy scale (:func:`table_energy_ranges`) instead of its online one: a
    diagnostic, see the module's docstring.

    ``per_task`` streams only the first ``N`` queries of each task; ``horizons`` are the
    numbers of queries of the learning curve (the end is always added); ``shifts`` change
    models' outcomes mid-stream; ``warm_start`` teaches ``N`` labelled queries per task first,
    with the ``overstate`` margins (model → added score) on their scores. See the module's
    docstring.

    ``energy_budget`` paces every router (not the oracle) to a budget (given as the router
    takes it: also joules per query, or text such as ``"2Wh/h"``); λ then only starts it.
    A window budget needs ``arrival_rate`` (queries per second): each run draws Poisson
    arrival times, and the router's clock is the arrival time of each query. The report's
    ``budget`` part holds the spend against the budget (see
    :func:`~greenserv_core.evaluation.budget_report.spend_report`).
    """
    check_tradeoff(tradeoff)
    repeated = sorted({s for s in strategies if list(strategies).count(s) > 1})
    if repeated:
        raise InvalidInputError(f"strategies named twice: {repeated}; each is one row of the report")
    budget = as_energy_budget(energy_budget)
    spec = budget.budget if isinstance(budget, BudgetPacer) else budget
    if spec is not None and spec.window_s is not None and arrival_rate is None:
        raise InvalidInputError("a window budget needs arrival_rate= (queries per second) to draw arrival times")
    if arrival_rate is not None and not (math.isfinite(arrival_rate) and arrival_rate > 0):
        raise InvalidInputError(f"arrival_rate must be a positive number of queries per second, got {arrival_rate!r}")
    if not 0 <= feedback_rate <= 1:
        raise InvalidInputError(f"feedback_rate must be in [0, 1], got {feedback_rate}")
    if runs < 1:
        raise InvalidInputError(f"runs must be at least 1, got {runs}")
    if check_seed(seed) is None:
        raise InvalidInputError("a replay needs a seed (an integer of 0 or more), got None")
    if energy_scale not in REPLAY_ENERGY_SCALES:
        raise InvalidInputError(f"energy_scale must be one of {REPLAY_ENERGY_SCALES}, got {energy_scale!r}")
    full = table.matrices()
    overstate = dict(overstate or {})
    unknown = [m for m in overstate if m not in full.models]
    if unknown:
        raise InvalidInputError(f"overstate names {unknown}, which the table does not have")
    if overstate and not warm_start:
        raise InvalidInputError("overstate changes warm-start scores; it needs warm_start >= 1")
    if warm_start and peer_strategies(strategies):
        raise InvalidInputError(
            f"the peers {peer_strategies(strategies)} would learn a warm start's rows as accuracy alone, on "
            "another scale than the rewards of the answers they route: replay them without warm_start"
        )
    if energy_budget is not None and peer_strategies(strategies):
        raise InvalidInputError(
            f"the peers {peer_strategies(strategies)} cannot be paced: {PEERS_UNPACED}; "
            "replay them without energy_budget"
        )
    data, warm = split_warm_start(full, per_task, warm_start)
    _check_changes(changes, data)
    _check_shifts(shifts, data)
    points = _horizons(horizons, len(data.queries))
    prompts = data.prompts + (warm.prompts if warm is not None else [])
    if make_features is None:
        make_features = default_features(len(set(prompts)))
    started = time.perf_counter()  # the warm-up's time includes building the features, as before
    extractor = make_features()
    _check_strategies(strategies, extractor.dimension, seed, policy_params or {}, data, changes)
    extractor.warm(prompts, store=embedding_store, progress=progress)
    warmup = time.perf_counter() - started
    energy_ranges = table_energy_ranges(data, extractor) if energy_scale == "table" else None
    router_scale = router_energy_scale(energy_scale)
    make_stream = _streams(data, tradeoff, changes, shifts)
    peers = peer_strategies(strategies)

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
            "per_task": per_task,
            "horizons": points,
            "shifts": [str(s) for s in shifts],
            "warm_start": warm_start,
            "overstate": overstate,
            "peers": peers,
            "energy_budget": None if spec is None else spec.describe(),
            "budget_price_on": budget.price_on if isinstance(budget, BudgetPacer) else None,
            "arrival_rate_per_s": arrival_rate,
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
    report["warm_start"] = _warm_report(warm, data, changes, per_task, warm_start, overstate)
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
            make_stream(run_seed),
            tradeoff=tradeoff,
            feedback_rate=feedback_rate,
            seed=run_seed,
            make_features=make_features,
            policy_params=params,
            changes=changes,
            energy_ranges=energy_ranges,
            router_scale=router_scale,
            warm=warm,
            overstate=overstate,
            energy_budget=budget,
            arrivals=None if arrival_rate is None else arrival_times(run_seed, len(data.queries), arrival_rate),
        )
        result.seconds = time.perf_counter() - started
        results.setdefault(strategy, []).append(result)
    for strategy, runs_of in results.items():
        report["strategies"][strategy] = summarise(runs_of)
    if changes or shifts:
        seeds = [seed + r for r in range(runs)]
        report["stream_baselines"] = _stream_baselines([make_stream(s).baselines for s in seeds])
    report["relative"] = relative(report)
    report["learning_curve"] = _learning_curve(results, make_stream, points)
    report["shifts"] = _shift_report(shifts, changes, results, data.models, make_stream)
    report["newcomers"] = _newcomer_report(changes, shifts, results, data.models, make_stream)
    if energy_budget is not None:
        assert spec is not None
        guard = energy_budget.window_queries if isinstance(energy_budget, BudgetPacer) else None
        window = {} if guard is None else {"window": guard}  # the runs the guard held are the runs checked
        report["budget"] = spend_report(spec, results, lambda run: make_stream(run).data, **window)
    return report


def _warm_report(
    warm: Matrices | None,
    data: Matrices,
    changes: Sequence[PoolChange],
    per_task: int | None,
    warm_start: int,
    overstate: Mapping[str, float],
) -> dict[str, Any]:
    """What the warm start taught every router: its queries, rows (query × model that is ever in
    the pool) and the joules those rows cost in the table."""
    if warm is None:
        return {"queries_per_task": 0, "queries": 0, "rows": 0, "joules": 0.0, "wh": 0.0, "overstated": {}}
    taught = _presence(changes, len(data.queries), data.models).any(axis=0)
    joules = float(warm.energy[:, taught].sum())
    return {
        "queries_per_task": warm_start,
        "queries": len(warm.queries),
        "rows": int(len(warm.queries) * taught.sum()),
        "joules": joules,
        "wh": joules / 3600,
        "overstated": dict(overstate),
        "source": "the queries after the per-task cut"
        if per_task is not None
        else "the last queries of each task, left out of the stream",
    }


def _stream_baselines(runs: Sequence[StepBaselines]) -> dict[str, dict[str, float]]:
    """The baselines of the streams the policies ran on, averaged over the runs: with a pool
    that changes, or outcomes that shift, only the models present at each step, with their
    outcomes as the stream has them (the learning curves' baselines, over the whole stream)."""
    return {
        "random": {"reward": float(np.mean([b.random_reward.mean() for b in runs]))},
        "best_fixed_model_per_task": {"reward": float(np.mean([b.fixed_reward.mean() for b in runs]))},
        "oracle": {"reward": float(np.mean([b.oracle_reward.mean() for b in runs]))},
    }


def relative(report: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per strategy: accuracy and energy as changes against the ``random`` run of the same replay
    (``None`` without one), and the share of the reward gap it closes between random routing
    and the best fixed model per task, and between random routing and the per-query oracle:
    the table's fixed choices, or, when the pool changes or outcomes shift, those of the
    streams the policies ran on (``stream_baselines``: the models present at each step)."""
    fixed = report.get("stream_baselines") or report["baselines"]
    floor = fixed["random"]["reward"]
    random_run = report["strategies"].get("random")
    out: dict[str, dict[str, float | None]] = {}
    for name, summary in report["strategies"].items():
        reward = summary["reward"]["mean"]
        out[name] = {  # (None where random routing's mean is 0: no ratio to it)
            "accuracy_vs_random": (
                relative_change(summary["accuracy"]["mean"], random_run["accuracy"]["mean"]) if random_run else None
            ),
            "energy_vs_random": (
                relative_change(summary["energy_joules"]["mean"], random_run["energy_joules"]["mean"])
                if random_run
                else None
            ),
            "gap_closed_to_best_fixed_per_task": gap_share(reward, floor, fixed["best_fixed_model_per_task"]["reward"]),
            "gap_closed_to_oracle": gap_share(reward, floor, fixed["oracle"]["reward"]),
        }
    return out
