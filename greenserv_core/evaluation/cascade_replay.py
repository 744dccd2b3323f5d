"""Replay learned cascades through the real router: routing alone against routing with cascades.

Each run streams the table's queries in the run's order (as :func:`~greenserv_core.evaluation.
replay.replay` does) through a :class:`GreenServRouter` over the table's models, once with no
cascades ("routing"), once with ``cascades`` as more arms ("routing+cascades"), and once
with the same arms under a rule that never escalates (the control, which says what the extra
arms alone do). When the
router chooses a cascade ``A->B``, the table reveals ``A``'s confidence, read by the signal its
metadata names for the query's task (``confidence_signals``); the router's learned
escalation rule (:meth:`GreenServRouter.escalate`) keeps ``A``'s answer or pays for ``B``'s,
and the cost recorded is both calls' joules, plus what reading ``A``'s confidence cost where
the table records it (``confidence_joules``, e.g. a self-verification question; a table holds
no seconds for it, so the recorded latency is the answers' only). Feedback
scores the final answer only (with probability ``feedback_rate``). The agreement proxy needs
both answers' text, which an outcome table does not hold; here two answers agree when both
are correct, so a proxy label exists exactly when ``B`` is right, and a wrong pair of
answers counts as a disagreement.

Scored like every replay: accuracy, joules per query and the reward
``(1-λ)·accuracy − λ·energy_norm`` with the table's per-task energy scale (an escalated
answer can cost more than its top). Beside them: random, the best single model, the best
fixed model per task, the oracle, and the best fixed cascades chosen with hindsight
(:func:`~greenserv_core.evaluation.cascades.cascade_report`). With several ``tradeoffs``, each
strategy's accuracy–energy front over λ, its AIQ and the joules it needs to reach the most
accurate model's accuracy.

    greenserv bench replay-cascades --table sim_conf0.8.parquet --runs 5
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from greenserv_core.bandits.base import check_seed
from greenserv_core.budget import DEFAULT_PRICE_ON, BudgetPacer, EnergyBudget
from greenserv_core.budget.pacer import check_price_on
from greenserv_core.cascades import EscalationModel, Verdict
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.cascades import cascade_report, joules_to_reach
from greenserv_core.evaluation.frontier import aiq, pareto_front, upper_hull
from greenserv_core.evaluation.learning_curves import mean_ci95
from greenserv_core.evaluation.replay import (
    REPLAY_ENERGY_SCALES,
    ReplayEnergyScale,
    ReplayModel,
    baselines,
    default_features,
    router_energy_scale,
    stream_order,
    table_energy_ranges,
)
from greenserv_core.evaluation.table import Matrices, OutcomeTable
from greenserv_core.evaluation.warm_start import answers_report, split_warm_start, teach_answers
from greenserv_core.features.extractor import FeatureExtractor
from greenserv_core.reward import EnergyNormalizer
from greenserv_core.router import GreenServRouter
from greenserv_core.routing.energy_costs import EnergyScaleName

__all__ = ["CascadeRun", "cascade_pairs", "check_cascade_pairs", "replay_cascades", "run_cascades"]

STRATEGIES = ("routing", "routing+cascades", "cascade arms, never escalating")
"""Routing alone; routing with cascades; and the control: the same cascade arms whose rule
never escalates (each is then a copy of its first model), which tells what the escalation
itself buys apart from the policy having more arms to choose among."""


class _NeverEscalating(EscalationModel):
    """The control's rule: keep every first answer."""

    def decide(self, first: str, cascade: str, x: np.ndarray, confidence: float | None, **kwargs: Any) -> Verdict:
        return Verdict.kept(confidence, "kept: the control never escalates")


@dataclass(frozen=True)
class CascadeRun:
    """One run: what the final answers scored and cost, and how often a cascade was chosen
    and escalated (shares of all queries)."""

    strategy: str
    tradeoff: float
    run: int
    accuracy: float
    joules_per_query: float
    reward: float
    cascade_share: float
    escalated_share: float
    explored_keeps: int
    seconds: float


def cascade_pairs(table: OutcomeTable, tradeoff: float) -> list[tuple[str, str]]:
    """The cascades an operator would declare after ``greenserv bench cascades`` on a labelled
    sample: the model pairs of the best fixed cascade of each task at λ (chosen with
    hindsight; which of them pays on each query, and when to escalate, is left to the router).

    >>> rows = {"query_id": ["q1", "q1", "q2", "q2"], "task": ["t"] * 4, "prompt": ["a", "a", "b", "b"],
    ...         "reference": [""] * 4, "model": ["small", "big"] * 2, "output": [""] * 4,
    ...         "accuracy": [1.0, 1.0, 0.0, 1.0], "energy_joules": [1.0, 10.0, 1.0, 10.0],
    ...         "energy_source": ["x"] * 4, "latency_s": [0.1] * 4, "input_tokens": [1] * 4,
    ...         "output_tokens": [1] * 4, "confidence": [0.9, 0.8, 0.2, 0.7]}
    >>> cascade_pairs(OutcomeTable(rows), 0.4)
    [('small', 'big')]
    """
    return _pairs_of(cascade_report(table, tradeoff=tradeoff))


def _pairs_of(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The distinct model pairs of a cascade report's best fixed cascade per task."""
    pairs: list[tuple[str, str]] = []
    for entry in report["per_task"].values():
        pair = entry["with_cascades"]["pair"]
        if pair is not None and tuple(pair) not in pairs:
            pairs.append((pair[0], pair[1]))
    return pairs


def _named_signals(metadata: Mapping[str, Any]) -> dict[str, str] | None:
    """The confidence signal a table's ``metadata`` names for each task (``None``: it names none).

    >>> _named_signals({"confidence_signals": {"arc": "answer-probability", "gsm": None}})
    {'arc': 'answer-probability'}
    """
    named = metadata.get("confidence_signals")
    if not isinstance(named, dict):
        return None
    return {str(task): str(name) for task, name in named.items() if name is not None}


def _energy_scale(data: Matrices) -> tuple[np.ndarray, np.ndarray]:
    """Each query's task's lowest joules and span over the table (the evaluation's scale)."""
    tasks = np.asarray(data.tasks)
    low, span = np.zeros(len(tasks)), np.ones(len(tasks))
    for task in set(data.tasks):
        rows = tasks == task
        lo, hi = float(data.energy[rows].min()), float(data.energy[rows].max())
        low[rows], span[rows] = lo, (hi - lo) if hi > lo else 1.0
    return low, span


def run_cascades(
    data: Matrices,
    pairs: Sequence[tuple[str, str]],
    *,
    tradeoff: float,
    seed: int,
    make_features: Callable[[], FeatureExtractor],
    feedback_rate: float = 1.0,
    policy: str = "epsilon",
    strategy: str = "routing+cascades",
    energy_ranges: dict[str, list[float]] | None = None,
    dimension: int | None = None,
    router_scale: EnergyScaleName | None = None,
    budget_joules_per_query: float | None = None,
    warm: Matrices | None = None,
    signals: Mapping[str, str] | None = None,
    price_on: str = DEFAULT_PRICE_ON,
) -> CascadeRun:
    """One run of one strategy (``pairs`` empty: routing alone). ``energy_ranges`` hands the
    router the table's energy scale, ``router_scale`` names one of its own (default: its
    default; see ``energy_scale`` of :func:`replay_cascades`). With ``budget_joules_per_query``
    the router paces that mean spend (λ starts at ``tradeoff``; see
    :class:`~greenserv_core.budget.BudgetPacer`, whose ``price_on`` is ``price_on``); the
    reward is still scored at ``tradeoff``.
    ``warm``: labelled queries taught first, every model's answer to each (see
    :meth:`~greenserv_core.router.GreenServRouter.learn_answers`). ``signals``: the name of the
    confidence signal of each task (a table's ``confidence_signals``; a task it leaves out, or
    ``None``: unnamed), under which the escalation rule weighs and learns the confidences."""
    if data.confidence is None and pairs:
        raise InvalidInputError("cascades need the table's confidence column")
    started = time.perf_counter()
    rng, order = stream_order(seed, len(data.queries))
    index = {m: j for j, m in enumerate(data.models)}
    router = GreenServRouter(
        [ReplayModel(m) for m in data.models],
        policy=policy,
        tradeoff=tradeoff,
        seed=seed,
        features=make_features(),
        cascades=list(pairs),
        energy_scale=router_scale if energy_ranges is None else EnergyNormalizer(energy_ranges),
        escalation=_NeverEscalating(dimension or make_features().dimension) if strategy == STRATEGIES[2] else None,
        energy_budget=None
        if budget_joules_per_query is None
        else BudgetPacer(EnergyBudget.per_query(budget_joules_per_query), initial_tradeoff=tradeoff, price_on=price_on),
    )
    if warm is not None:
        teach_answers(router, warm, signals)
    members = {f"{a}->{b}": (index[a], index[b]) for a, b in pairs}
    accuracy = np.empty(len(order))
    joules = np.empty(len(order))
    cascaded = escalated = explored = 0
    for step, q in enumerate(order):
        decision = router.route(data.prompts[q], max_new_tokens=1)
        pair = members.get(decision.model)
        ran: list[tuple[str, float, float]] = []  # each member's own answer, as a live cascade reports them
        if pair is None:
            j = index[decision.model]
            accuracy[step], joules[step], seconds = data.accuracy[q, j], data.energy[q, j], data.latency[q, j]
        else:
            a, b = pair
            assert data.confidence is not None
            confidence = float(data.confidence[q, a])
            signal = None if signals is None else signals.get(data.tasks[q])
            verdict = router.escalate(decision.decision_id, None if np.isnan(confidence) else confidence, signal=signal)
            cascaded += 1
            explored += verdict.explored
            asking = 0.0 if data.confidence_joules is None else float(data.confidence_joules[q, a])
            ran.append((data.models[a], float(data.energy[q, a]), float(data.latency[q, a])))
            if verdict.escalate:
                ran.append((data.models[b], float(data.energy[q, b]), float(data.latency[q, b])))
                escalated += 1
                accuracy[step] = data.accuracy[q, b]
                joules[step] = data.energy[q, a] + asking + data.energy[q, b]
                seconds = data.latency[q, a] + data.latency[q, b]
                agreed = bool(data.accuracy[q, a] >= 0.5 and data.accuracy[q, b] >= 0.5)
                router.record_agreement(decision.decision_id, agreed)
            else:
                accuracy[step], seconds = data.accuracy[q, a], data.latency[q, a]
                joules[step] = data.energy[q, a] + asking
        router.record_outcome(
            decision.decision_id,
            energy_joules=float(joules[step]),
            latency_s=float(seconds),
            members=ran,
        )
        if rng.random() < feedback_rate:
            router.feedback(decision.decision_id, float(accuracy[step]))
    low, span = _energy_scale(data)
    rewards = (1 - tradeoff) * accuracy - tradeoff * (joules - low[order]) / span[order]
    queries = len(order)
    return CascadeRun(
        strategy,
        tradeoff,
        seed,
        float(accuracy.mean()),
        float(joules.mean()),
        float(rewards.mean()),
        cascaded / queries,
        escalated / queries,
        explored,
        time.perf_counter() - started,
    )


def _summary(runs: list[CascadeRun]) -> dict[str, Any]:
    return {
        "accuracy": mean_ci95([r.accuracy for r in runs]),
        "joules_per_query": mean_ci95([r.joules_per_query for r in runs]),
        "reward": mean_ci95([r.reward for r in runs]),
        "cascade_share": mean_ci95([r.cascade_share for r in runs]),
        "escalated_share": mean_ci95([r.escalated_share for r in runs]),
        "explored_keeps": mean_ci95([float(r.explored_keeps) for r in runs]),
        "seconds_per_run": mean_ci95([r.seconds for r in runs]),
    }


def check_cascade_pairs(pairs: Sequence[tuple[str, str]]) -> None:
    """Refuse a cascade of one model twice, or a cascade named twice, before any run (the
    router refuses them only when the runs with cascades build it).

    >>> check_cascade_pairs([("small", "big"), ("small", "big")])
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: cascades ['small->big'] are named more than once
    """
    for first, then in pairs:
        if first == then:
            raise InvalidInputError(f"a cascade needs two different models, got {first!r} twice")
    names = [f"{first}->{then}" for first, then in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InvalidInputError(f"cascades {twice} are named more than once")


def replay_cascades(
    table: OutcomeTable,
    *,
    tradeoffs: Sequence[float] = (0.4,),
    runs: int = 5,
    seed: int = 0,
    pairs: Sequence[tuple[str, str]] | None = None,
    feedback_rate: float = 1.0,
    policy: str = "epsilon",
    make_features: Callable[[], FeatureExtractor] | None = None,
    progress: Callable[[str], None] | None = None,
    embedding_store: str | Path | None = None,
    energy_scale: ReplayEnergyScale = "online",
    budget_joules_per_query: float | None = None,
    warm_start: int = 0,
    price_on: str = DEFAULT_PRICE_ON,
) -> dict[str, Any]:
    """Replay routing alone and routing with cascades at each λ of ``tradeoffs``, ``runs``
    times each; returns the JSON-ready report (see the module's docstring). ``pairs``
    default to :func:`cascade_pairs` at the first λ, the headline one. ``embedding_store``:
    as for :func:`~greenserv_core.evaluation.replay.replay`. ``energy_scale="online"``: the
    router's own default scale, as deployed; ``"known"``, ``"seen"`` or ``"pool"``: one of its
    scales; ``"table"``: the diagnostic that hands it the table's per-task scale, so that it
    optimises the reward it is scored on. ``budget_joules_per_query``: every strategy paces
    that mean spend instead of holding λ (each λ of ``tradeoffs`` is then where λ starts and
    what the reward is scored at), so the strategies' accuracy compares at one spend;
    ``price_on``: what the pacer's λ prices (:class:`~greenserv_core.budget.BudgetPacer`).
    ``warm_start``: the last ``N`` queries of each task leave the stream and teach every
    strategy's router every model's labelled answer to them first (a cascade learns what its
    rule would have done; the report states the joules those answers cost)."""
    if energy_scale not in REPLAY_ENERGY_SCALES:
        raise InvalidInputError(f"energy_scale must be one of {REPLAY_ENERGY_SCALES}, got {energy_scale!r}")
    if not tradeoffs:
        raise InvalidInputError("give at least one tradeoff λ")
    if runs < 1:
        raise InvalidInputError(f"runs must be at least 1, got {runs}")
    if check_seed(seed) is None:  # as replay() checks it: before the hindsight report and the features' warm-up
        raise InvalidInputError("a replay needs a seed (an integer of 0 or more), got None")
    if not 0 <= feedback_rate <= 1:  # NaN too
        raise InvalidInputError(f"feedback_rate must be in [0, 1], got {feedback_rate}")
    if budget_joules_per_query is not None:
        EnergyBudget.per_query(budget_joules_per_query)  # a bad budget is refused before any run
    check_price_on(price_on)
    full = table.matrices()
    if full.confidence is None or bool(np.isnan(full.confidence).all()):
        raise InvalidInputError(
            "cascades need the table's confidence column, with values (collect it, or simulate with one)"
        )
    data, warm = split_warm_start(full, None, warm_start)
    hindsight = {tradeoff: cascade_report(data, tradeoff=tradeoff) for tradeoff in tradeoffs}
    chosen = list(pairs) if pairs is not None else _pairs_of(hindsight[tradeoffs[0]])
    if not chosen:
        raise InvalidInputError(
            "no cascade pays on this table with hindsight, so none would be offered: name the cascades "
            "(pairs=, or --cascade FIRST->THEN)"
        )
    unknown = sorted({m for pair in chosen for m in pair} - set(data.models))
    if unknown:
        raise InvalidInputError(f"cascades name {unknown}, which the table does not have")
    check_cascade_pairs(chosen)
    if make_features is None:
        make_features = default_features(len(set(data.prompts)))
    extractor = make_features()
    extractor.warm(full.prompts, store=embedding_store, progress=progress is not None)
    ranges = table_energy_ranges(data, extractor) if energy_scale == "table" else None
    router_scale = router_energy_scale(energy_scale)
    signals = _named_signals(table.metadata)
    report: dict[str, Any] = {
        "settings": {
            "tradeoffs": [float(t) for t in tradeoffs],
            "runs": runs,
            "seed": seed,
            "feedback_rate": feedback_rate,
            "policy": policy,
            "energy_scale": energy_scale,
            "budget_joules_per_query": budget_joules_per_query,
            "price_on": price_on,
            "warm_start": warm_start,
            "queries": len(data.queries),
            "cascades": [f"{a}->{b}" for a, b in chosen],
            "agreement_proxy": "both answers correct (a table holds no answer text)",
        },
        "simulated": table.simulated,
        "warm_start": answers_report(warm),
        "by_tradeoff": {},
    }
    for tradeoff in tradeoffs:
        entry: dict[str, Any] = {}
        for strategy in STRATEGIES:
            results = []
            for run in range(runs):
                results.append(
                    run_cascades(
                        data,
                        [] if strategy == "routing" else chosen,
                        tradeoff=tradeoff,
                        seed=seed + run,
                        make_features=make_features,
                        feedback_rate=feedback_rate,
                        policy=policy,
                        strategy=strategy,
                        energy_ranges=ranges,
                        dimension=extractor.dimension,
                        router_scale=router_scale,
                        budget_joules_per_query=budget_joules_per_query,
                        warm=warm,
                        signals=signals,
                        price_on=price_on,
                    )
                )
                if progress is not None:
                    progress(f"λ={tradeoff} {strategy} run {run + 1}/{runs}")
            entry[strategy] = _summary(results)
        entry["baselines"] = baselines(data, tradeoff)
        entry["hindsight_fixed_per_task_reward"] = hindsight[tradeoff]["best_fixed_per_task_reward"]
        report["by_tradeoff"][str(float(tradeoff))] = entry
    mean_joules, mean_accuracy = data.energy.mean(axis=0), data.accuracy.mean(axis=0)
    low, high = float(mean_joules.min()), float(mean_joules.max())
    best = int(mean_accuracy.argmax())
    report["most_accurate_model"] = {
        "model": data.models[best],
        "accuracy": float(mean_accuracy[best]),
        "joules_per_query": float(mean_joules[best]),
    }
    if len(tradeoffs) > 1:
        report["fronts"] = {}
        its_joules = float(mean_joules[best])  # 0: no share of it to speak of
        for strategy in STRATEGIES:
            points = [
                (entry[strategy]["joules_per_query"]["mean"], entry[strategy]["accuracy"]["mean"])
                for entry in report["by_tradeoff"].values()
            ]
            hull = upper_hull(pareto_front(points))
            reach = joules_to_reach(hull, float(mean_accuracy[best]))
            report["fronts"][strategy] = {
                "points": [list(p) for p in points],
                "aiq": aiq(points, low=low, high=high) if high > low else None,  # as cascade_report's fronts
                "joules_to_reach_most_accurate": reach,
                "share_of_its_joules": None if reach is None or not its_joules else reach / its_joules,
            }
        report["fronts"]["cost_range_joules_per_query"] = [low, high]
    return report
