"""Fixed cascades on an outcome table: what escalating after a cheap answer could buy.

A cascade ``A → B @ τ`` answers with model ``A`` and keeps that answer when its confidence
(the table's ``confidence`` column) is at least ``τ``; otherwise it also asks ``B`` and
answers with ``B``. Its joules are both calls' when it escalates, plus what reading ``A``'s
confidence cost where the table records it (``confidence_joules``). This module puts every
single model and every cascade of a cheaper ``A`` and a dearer ``B`` (thresholds at the
5%, 10%, … 95% quantiles of ``A``'s confidence on the task) on one footing. It then reports:

* the best fixed setting per task at a trade-off λ, with cascades and without. "Without" is
  the replay's best-fixed-model-per-task ceiling; every reward is
  ``(1-λ)·accuracy − λ·energy_norm`` on the table's own per-task energy scale, where an
  escalated answer can cost more than the scale's top;
* the accuracy–energy front of the whole table with and without cascades (for each price of
  energy, the best setting per task; mixing two settings reaches the hull between them), its
  AIQ, and the joules each front needs to reach the best single model's accuracy.

Every setting is chosen with hindsight on the whole table, like the best fixed model per task:
this says what a cascade *can* pay at the table's confidence AUROC, not what a router learns.

    greenserv bench cascades --table sim_conf80.parquet --tradeoff 0.4

>>> from greenserv_core.evaluation.table import OutcomeTable
>>> rows = {"query_id": ["q1", "q1", "q2", "q2"], "task": ["t"] * 4, "prompt": ["a", "a", "b", "b"],
...         "reference": [""] * 4, "model": ["small", "big"] * 2, "output": [""] * 4,
...         "accuracy": [1.0, 1.0, 0.0, 1.0], "energy_joules": [1.0, 10.0, 1.0, 10.0],
...         "energy_source": ["x"] * 4, "latency_s": [0.1] * 4, "input_tokens": [1] * 4,
...         "output_tokens": [1] * 4, "confidence": [0.9, 0.8, 0.2, 0.7]}
>>> report = cascade_report(OutcomeTable(rows), tradeoff=0.4)
>>> report["per_task"]["t"]["with_cascades"]["setting"]   # keep the small model's sure answer
'small → big @ 0.235'
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.frontier import aiq, pareto_front, upper_hull
from greenserv_core.evaluation.table import Matrices, OutcomeTable

__all__ = ["CascadeSetting", "cascade_report", "joules_to_reach", "task_settings"]

QUANTILES = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))
"""The thresholds tried for each cascade: these quantiles of the first model's confidence."""


@dataclass(frozen=True)
class CascadeSetting:
    """One fixed way to answer a task's queries: a single model, or a cascade."""

    label: str
    accuracy: float
    joules: float
    escalated: float
    """The share of queries that went on to the second model (0 for a single model)."""
    cascade: bool = False
    pair: tuple[str, str] | None = None
    """A cascade's first and second model (``None`` for a single model)."""


def task_settings(data: Matrices, rows: np.ndarray) -> list[CascadeSetting]:
    """Every single model and every cascade (cheaper first, each threshold) on ``rows``."""
    if data.confidence is None:
        raise InvalidInputError("cascades need the table's confidence column (collect it, or simulate with one)")
    accuracy, energy, confidence = data.accuracy[rows], data.energy[rows], data.confidence[rows]
    asking = np.zeros_like(energy) if data.confidence_joules is None else data.confidence_joules[rows]
    mean_joules = energy.mean(axis=0)
    settings = [
        CascadeSetting(model, float(accuracy[:, j].mean()), float(mean_joules[j]), 0.0)
        for j, model in enumerate(data.models)
    ]
    for a, first in enumerate(data.models):
        known = ~np.isnan(confidence[:, a])
        if not known.any():
            continue
        thresholds = np.unique(np.quantile(confidence[known, a], QUANTILES))
        sure = confidence[:, a][:, None] >= thresholds[None, :]  # (queries, thresholds); NaN escalates
        for b, second in enumerate(data.models):
            if mean_joules[b] <= mean_joules[a]:
                continue
            kept_accuracy = np.where(sure, accuracy[:, a][:, None], accuracy[:, b][:, None]).mean(axis=0)
            first_joules = energy[:, a].mean() + asking[:, a].mean()  # the answer, and reading its confidence
            joules = first_joules + np.where(sure, 0.0, energy[:, b][:, None]).mean(axis=0)
            escalated = 1.0 - sure.mean(axis=0)
            for t, threshold in enumerate(thresholds):
                settings.append(
                    CascadeSetting(
                        f"{first} → {second} @ {threshold:.3g}",
                        float(kept_accuracy[t]),
                        float(joules[t]),
                        float(escalated[t]),
                        cascade=True,
                        pair=(first, second),
                    )
                )
    return settings


def _best(settings: list[CascadeSetting], low: float, high: float, tradeoff: float) -> tuple[CascadeSetting, float]:
    """The setting of highest reward on the task's energy scale ``[low, high]``, and that reward."""
    span = high - low if high > low else 1.0
    rewards = [(1 - tradeoff) * s.accuracy - tradeoff * (s.joules - low) / span for s in settings]
    best = int(np.argmax(rewards))
    return settings[best], rewards[best]


def _front(per_task: list[tuple[float, list[CascadeSetting]]], prices: np.ndarray) -> list[tuple[float, float]]:
    """(joules per query, accuracy) of the whole table, for each price of a joule: the best
    setting per task at that price, weighted by the task's share of the queries; and last, the
    cheap end no finite price may reach: each task's cheapest setting (the most accurate of them)."""
    points = []
    for price in [*prices, None]:
        accuracy = joules = 0.0
        for share, settings in per_task:
            if price is None:
                best = min(settings, key=lambda s: (s.joules, -s.accuracy))
            else:
                best = max(settings, key=lambda s: s.accuracy - price * s.joules)
            accuracy += share * best.accuracy
            joules += share * best.joules
        points.append((joules, accuracy))
    return points


def joules_to_reach(hull: list[tuple[float, float]], accuracy: float) -> float | None:
    """The least joules per query at which the hull reaches ``accuracy`` (``None``: never); an
    accuracy the hull's points reach but for rounding (a mean summed another way) counts.

    >>> joules_to_reach([(10.0, 0.2), (26.0, 0.38888888888888884)], 7 / 18)
    26.0
    """
    if not hull:
        return None
    if hull[0][1] >= accuracy - _ROUNDING:
        return hull[0][0]
    for (c1, q1), (c2, q2) in itertools.pairwise(hull):
        if q2 >= accuracy - _ROUNDING:
            return min(c2, c1 + (accuracy - q1) / (q2 - q1) * (c2 - c1))
    return None


_ROUNDING = 1e-12
"""How far below an accuracy a mean may fall and still reach it (floating-point sums)."""


def cascade_report(table: OutcomeTable | Matrices, *, tradeoff: float = 0.4) -> dict[str, Any]:
    """Best fixed settings with and without cascades, and both fronts (see the module)."""
    if not 0 <= tradeoff <= 1:
        raise InvalidInputError(f"tradeoff must be in [0, 1], got {tradeoff!r}")
    data = table if isinstance(table, Matrices) else table.matrices()
    tasks = np.asarray(data.tasks)
    total = len(tasks)
    per_task: dict[str, Any] = {}
    weighted: list[tuple[float, list[CascadeSetting]]] = []
    singles: list[tuple[float, list[CascadeSetting]]] = []
    ceiling = {"without": 0.0, "with": 0.0}
    for task in sorted(set(data.tasks)):
        rows = tasks == task
        low, high = float(data.energy[rows].min()), float(data.energy[rows].max())
        settings = task_settings(data, rows)
        alone = [s for s in settings if not s.cascade]
        share = float(rows.sum()) / total
        weighted.append((share, settings))
        singles.append((share, alone))
        entry: dict[str, Any] = {"queries": int(rows.sum())}
        for name, pool in (("without_cascades", alone), ("with_cascades", settings)):
            best, value = _best(pool, low, high, tradeoff)
            entry[name] = {
                "setting": best.label,
                "accuracy": best.accuracy,
                "joules_per_query": best.joules,
                "escalated": best.escalated,
                "reward": value,
                "pair": None if best.pair is None else list(best.pair),
            }
            ceiling["without" if name == "without_cascades" else "with"] += share * value
        per_task[task] = entry
    joules_all = [s.joules for _, pool in singles for s in pool]
    prices = np.concatenate([[0.0], np.geomspace(1e-7, 10.0, 400) / max(1.0, float(np.median(joules_all)))])
    rewards = (1 - tradeoff) * data.accuracy - tradeoff * data.energy_norm()
    references = {
        "best_single_model": int(rewards.mean(axis=0).argmax()),  # by reward at λ, as the replay's baseline
        "most_accurate_model": int(data.accuracy.mean(axis=0).argmax()),
    }
    low, high = float(data.energy.mean(axis=0).min()), float(data.energy.mean(axis=0).max())
    fronts: dict[str, Any] = {}
    for name, task_pools in (("without_cascades", singles), ("with_cascades", weighted)):
        hull = upper_hull(pareto_front(_front(task_pools, prices)))
        fronts[name] = {"hull": hull, "aiq": aiq(hull, low=low, high=high) if high > low else None, "to_reach": {}}
        for reference, j in references.items():
            reach = joules_to_reach(hull, float(data.accuracy[:, j].mean()))
            its_joules = float(data.energy[:, j].mean())  # 0: no share of it to speak of
            fronts[name]["to_reach"][reference] = {
                "joules_per_query": reach,
                "share_of_its_joules": None if reach is None or not its_joules else reach / its_joules,
            }
    return {
        "tradeoff": tradeoff,
        "simulated": bool(getattr(table, "simulated", False)),
        "references": {
            reference: {
                "model": data.models[j],
                "accuracy": float(data.accuracy[:, j].mean()),
                "joules_per_query": float(data.energy[:, j].mean()),
            }
            for reference, j in references.items()
        },
        "best_fixed_per_task_reward": ceiling,
        "per_task": per_task,
        "fronts": fronts,
        "aiq_range_joules": [low, high],
    }
