"""How a replay run learns over time: metrics over the first queries of each run, how fast a
policy turns from a model that got worse (or better), and how fast it adopts a newcomer.

All of it is numpy over a run's steps (step = position in the run's own stream).

* Learning curve, at a horizon ``h``: over the first ``h`` steps, the run's reward, accuracy and
  joules against the same steps' baselines: the expected random choice (the mean over the
  models present at each step), the best fixed model per task (ranked on the whole table; the
  best one present at each step) and the per-query oracle.
* Re-adaptation to a :class:`~greenserv_core.evaluation.shifts.Shift`: the number of decisions
  from the shift's step (inclusive) until the model's share of the last ``WINDOW`` decisions
  first comes within ``MARGIN`` of its share under the new optimum (the share of post-shift
  queries, up to the next shift or pool change, whose task's best fixed model, by mean reward
  on the post-shift outcomes, is that model): at or below it + ``MARGIN`` when the model got
  worse, at or above it − ``MARGIN`` when it got better; searched up to the next shift or pool
  change (``None`` if not met by then).
* Newcomer: the number of decisions from a model's joining step until its share of the last
  ``WINDOW`` decisions first reaches half of its final share (its share of the last ``AROUND``
  steps, or of the last 20% of the steps since it joined when that is fewer); all of it up to
  the next shift or pool change (``None`` if not met by then).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "AROUND",
    "MARGIN",
    "WINDOW",
    "StepBaselines",
    "gap_share",
    "horizon_metrics",
    "mean_ci95",
    "new_optimum_share",
    "newcomer_time",
    "readapt_time",
    "relative_change",
    "share_around",
    "step_baselines",
    "summarise_values",
    "trailing_share",
]

WINDOW = 200
AROUND = 1_000
MARGIN = 0.05


@dataclass(frozen=True)
class StepBaselines:
    """Per step of a run: reward, accuracy and joules of the expected random choice among the
    models present; reward of the best fixed model per task present; reward of the oracle."""

    random_reward: np.ndarray
    random_accuracy: np.ndarray
    random_energy: np.ndarray
    fixed_reward: np.ndarray
    oracle_reward: np.ndarray


def step_baselines(
    reward: np.ndarray, accuracy: np.ndarray, energy: np.ndarray, present: np.ndarray, rank: np.ndarray
) -> StepBaselines:
    """``rank`` (step × model): each model's place in the ranking of its step's task on the
    whole table (0 = best); the best fixed choice at a step is the best-ranked model present."""
    count = present.sum(axis=1)
    rows = np.arange(len(reward))
    fixed = np.where(present, rank, np.iinfo(rank.dtype).max).argmin(axis=1)
    return StepBaselines(
        random_reward=np.where(present, reward, 0.0).sum(axis=1) / count,
        random_accuracy=np.where(present, accuracy, 0.0).sum(axis=1) / count,
        random_energy=np.where(present, energy, 0.0).sum(axis=1) / count,
        fixed_reward=reward[rows, fixed],
        oracle_reward=np.where(present, reward, -np.inf).max(axis=1),
    )


def _prefix_means(values: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    return np.asarray(np.cumsum(values)[horizons - 1] / horizons, dtype=float)


def gap_share(value: float, low: float, high: float) -> float | None:
    """The share of the gap from ``low`` to ``high`` that ``value`` closes (``None`` without a gap,
    or one within rounding: two means of the same outcomes may differ in their last bits).

    >>> gap_share(0.5, 0.25, 0.75), gap_share(0.5, 0.5, 0.5)
    (0.5, None)
    >>> gap_share(0.12744705546771024, 0.1274470554677102, 0.12744705546771024)  # the same, rounded apart
    """
    return (value - low) / (high - low) if high - low > _ROUNDING * max(1.0, abs(high), abs(low)) else None


_ROUNDING = 1e-9
"""A gap this small against its ends is rounding, not a gap."""


def relative_change(value: float, base: float) -> float | None:
    """``value`` against ``base`` as a change (``0.2``: 20% more); ``None`` where ``base`` is not
    positive (no ratio to it).

    >>> relative_change(1.2, 1.0), relative_change(1.0, 0.0)
    (0.19999999999999996, None)
    """
    return value / base - 1 if base > 0 else None


def horizon_metrics(
    reward: np.ndarray,
    accuracy: np.ndarray,
    energy: np.ndarray,
    base: StepBaselines,
    horizons: Sequence[int],
) -> list[dict[str, float | None]]:
    """One run's metrics over its first ``h`` steps, for each ``h`` in ``horizons``; ``reward``,
    ``accuracy`` and ``energy`` are what the run got at each step."""
    at = np.asarray(horizons, dtype=int)
    got, acc, joules = (_prefix_means(v, at) for v in (reward, accuracy, energy))
    low, fixed, oracle = (_prefix_means(v, at) for v in (base.random_reward, base.fixed_reward, base.oracle_reward))
    random_acc, random_joules = (_prefix_means(v, at) for v in (base.random_accuracy, base.random_energy))
    return [
        {
            "reward": float(got[i]),
            "accuracy": float(acc[i]),
            "joules_per_query": float(joules[i]),
            "gap_closed_to_best_fixed_per_task": gap_share(float(got[i]), float(low[i]), float(fixed[i])),
            "gap_closed_to_oracle": gap_share(float(got[i]), float(low[i]), float(oracle[i])),
            "accuracy_vs_random": relative_change(float(acc[i]), float(random_acc[i])),
            "energy_vs_random": relative_change(float(joules[i]), float(random_joules[i])),
            "random_reward": float(low[i]),
            "best_fixed_model_per_task_reward": float(fixed[i]),
            "oracle_reward": float(oracle[i]),
        }
        for i in range(len(at))
    ]


def mean_ci95(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% confidence half-width over runs (0 for a single run, which has no
    interval: the tables print its mean alone), with the number of runs: Student's t with
    n − 1 degrees of freedom times the standard error (4.30 of them for 3 runs, 2.78 for 5).
    Figures recorded before 2026-12-05 used 1.96 standard errors (BENCHMARKS.md says so).

    >>> round(mean_ci95([1.0, 2.0, 3.0])["ci95"], 3)  # 4.303 * 1 / sqrt(3)
    2.484
    >>> mean_ci95([0.5])
    {'mean': 0.5, 'ci95': 0.0, 'runs': 1}
    """
    from scipy.stats import t

    array = np.asarray(values, dtype=float)
    n = len(array)
    half = float(t.ppf(0.975, n - 1)) * array.std(ddof=1) / math.sqrt(n) if n > 1 else 0.0
    return {"mean": float(array.mean()), "ci95": float(half), "runs": n}


def summarise_values(values: Sequence[float | None]) -> dict[str, float] | None:
    """:func:`mean_ci95` over the runs that have a value (``None`` if none)."""
    present = [v for v in values if v is not None]
    return mean_ci95(present) if present else None


def trailing_share(chosen: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """At each step, the share of ``chosen`` (booleans) over the last ``window`` decisions
    (fewer at the start of the stream), that step's included."""
    counts = np.concatenate(([0], np.cumsum(chosen, dtype=np.int64)))
    steps = np.arange(len(chosen))
    start = np.maximum(0, steps - window + 1)
    return np.asarray((counts[steps + 1] - counts[start]) / (steps + 1 - start), dtype=float)


def _first(condition: np.ndarray, step: int) -> int | None:
    hits = np.flatnonzero(condition[step:])
    return int(hits[0]) + 1 if hits.size else None


def new_optimum_share(
    reward: np.ndarray, present: np.ndarray, task_index: np.ndarray, step: int, column: int, stop: int | None = None
) -> float:
    """The share of the queries from ``step`` on (to ``stop``, excluded: the next shift or pool
    change) whose task's best fixed model, by mean reward over those queries (models present
    only), is ``column``."""
    after = slice(step, stop)
    values, mask, tasks = reward[after], present[after], task_index[after]
    if not len(tasks):
        return 0.0
    best = np.full(int(task_index.max()) + 1, -1)
    for task in np.unique(tasks):
        rows = tasks == task
        total = np.where(mask[rows], values[rows], 0.0).sum(axis=0)
        seen = mask[rows].sum(axis=0)
        means = np.where(seen > 0, total / np.maximum(seen, 1), -np.inf)
        best[task] = int(means.argmax())
    return float((best[tasks] == column).mean())


def readapt_time(chosen: np.ndarray, step: int, target: float, *, worsens: bool, stop: int | None = None) -> int | None:
    """Decisions from ``step`` until the trailing share of ``chosen`` first comes within
    ``MARGIN`` of ``target`` (from above if ``worsens``, else from below); ``None`` if never
    before ``stop`` (the next shift or pool change; the end of the stream if ``None``)."""
    share = trailing_share(chosen)
    met = share <= target + MARGIN + 1e-12 if worsens else share >= target - MARGIN - 1e-12
    return _first(met[:stop], step)


def share_around(
    chosen: np.ndarray, step: int, span: int = AROUND, stop: int | None = None
) -> tuple[float | None, float | None]:
    """The share of ``chosen`` over the ``span`` steps before ``step`` and the ``span`` from it
    (fewer if ``stop``, the next shift or pool change, comes first)."""
    end = step + span if stop is None else min(step + span, stop)
    before, after = chosen[max(0, step - span) : step], chosen[step:end]
    return (float(before.mean()) if len(before) else None, float(after.mean()) if len(after) else None)


def newcomer_time(
    chosen: np.ndarray, step: int, optimum: float | None = None, stop: int | None = None
) -> dict[str, Any]:
    """Decisions from the joining ``step`` until the trailing share first reaches half of the
    final share (``None`` if never, or if the final share is 0), and that final share; with
    ``optimum`` (the model's share under the new optimum, :func:`new_optimum_share`), also
    until it first reaches half of that (``steps_to_half_optimum``): a policy that hardly uses
    the newcomer reaches half of its own small final share at once, never half the optimum's.
    All of it up to ``stop`` (the next shift or pool change; the end of the stream if ``None``):
    the final share is the share just before it, and a time not met before it is ``None``."""
    chosen = chosen[:stop]
    window = max(1, min(AROUND, round(0.2 * (len(chosen) - step))))
    final = float(chosen[-window:].mean())
    share = trailing_share(chosen)
    steps = _first((share >= final / 2 - 1e-12) & (share > 0), step) if final > 0 else None
    found: dict[str, Any] = {"steps_to_half": steps, "final_share": final, "final_window": window}
    if optimum is not None:
        found["steps_to_half_optimum"] = (
            _first((share >= optimum / 2 - 1e-12) & (share > 0), step) if optimum > 0 else None
        )
    return found
