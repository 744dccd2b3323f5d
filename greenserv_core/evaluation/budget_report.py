"""How a replayed router kept to its energy budget: realised spend against the budget over a
run, over every run of ``window`` queries, and over every time window of a window budget.

>>> import numpy as np
>>> spend = np.array([10.0, 30.0, 20.0, 20.0])
>>> float(worst_window(spend, budget=20.0, window=2, skip=0))  # 30 J and 20 J: 25% over
1.25
>>> float(worst_window(spend, budget=20.0, window=2, skip=2))
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from greenserv_core.budget import EnergyBudget
from greenserv_core.evaluation.learning_curves import mean_ci95
from greenserv_core.evaluation.table import Matrices

__all__ = ["WINDOW_QUERIES", "spend_curve", "spend_report", "static_mix", "time_windows", "worst_window"]

WINDOW_QUERIES = 500
"""The length, in queries, of the windows a per-query budget is checked over (after the first)."""
_CURVE_POINTS = 200


class _Run(Protocol):
    run: int
    chosen: np.ndarray
    tradeoffs: np.ndarray
    arrivals: np.ndarray | None


def worst_window(spend: np.ndarray, *, budget: float, window: int, skip: int) -> float | None:
    """The highest mean spend of ``window`` consecutive queries starting at or after ``skip``,
    as a share of the per-query ``budget`` (``None`` when the run is too short)."""
    if len(spend) < skip + window:
        return None
    sums = np.convolve(spend[skip:], np.ones(window), mode="valid")
    return float(sums.max() / (window * budget))


def time_windows(spend: np.ndarray, arrivals: np.ndarray, window_s: float) -> np.ndarray:
    """The joules spent in each whole window of ``window_s`` seconds, counted from the first
    arrival as the pacer counts them (the last, partial one left out).

    >>> time_windows(np.full(5, 10.0), np.array([8.0, 9.0, 12.0, 19.0, 27.0]), 10.0).tolist()
    [30.0]
    """
    since = arrivals - arrivals[0]
    index = (since // window_s).astype(int)
    whole = int(since[-1] // window_s)  # windows 0 .. whole-1 are complete
    return np.bincount(index[index < whole], weights=spend[index < whole], minlength=whole)


def spend_curve(spend: np.ndarray, budget: float, window: int) -> dict[str, list[float]]:
    """The running mean spend and the mean of the last ``window`` queries, as shares of the
    budget, at up to 200 steps."""
    steps = np.unique(np.linspace(0, len(spend) - 1, min(_CURVE_POINTS, len(spend))).astype(int))
    cumulative = np.cumsum(spend)
    running = cumulative / np.arange(1, len(spend) + 1)
    lagged = np.concatenate([[0.0], cumulative])
    start = np.maximum(0, steps + 1 - window)
    recent = (cumulative[steps] - lagged[start]) / (steps + 1 - start)
    return {
        "step": (steps + 1).tolist(),
        "running_mean": (running[steps] / budget).round(4).tolist(),
        "recent_mean": (recent / budget).round(4).tolist(),
    }


def spend_report(
    budget: EnergyBudget,
    results: Mapping[str, Sequence[_Run]],
    data_of: Callable[[int], Matrices],
    *,
    window: int = WINDOW_QUERIES,
) -> dict[str, Any]:
    """Per strategy, means with 95% intervals over runs: realised mean spend over the budget
    (a window budget: its rate times the time from the run's first arrival to its last, shared
    among the run's n queries; that time holds n − 1 gaps, so the ratio reads n/(n − 1) high:
    0.01% at 7,586 queries, 0.3% at 320), the worst run of
    ``window`` queries after the first ``window`` (a quarter of the stream when that is
    shorter), the worst and mean time window (window
    budgets), the λ in force, and the spend curve of the first run."""
    queries = min((len(r.chosen) for runs in results.values() for r in runs), default=0)
    window = max(1, min(window, queries // 4))  # a short stream is checked over shorter runs
    out: dict[str, Any] = {"budget": budget.describe(), "window_queries": window, "strategies": {}}
    for strategy, runs in results.items():
        if strategy == "oracle":
            continue
        ratios, worst, worst_time, mean_time, over, lambdas, first = [], [], [], [], [], [], []
        curve: dict[str, list[float]] = {}
        for result in runs:
            data = data_of(result.run)
            spend = data.energy[np.arange(len(result.chosen)), result.chosen]
            per_query = budget.per_query_joules
            if per_query is None:
                assert result.arrivals is not None and budget.window_s is not None
                elapsed = float(result.arrivals[-1] - result.arrivals[0])  # the pacer's clock starts at the first
                per_query = budget.joules / budget.window_s * elapsed / len(spend)
                windows = time_windows(spend, result.arrivals, budget.window_s) / budget.joules
                if len(windows) > 1:
                    first.append(float(windows[0]))
                    worst_time.append(float(windows[1:].max()))  # after the first, as for runs of queries
                    mean_time.append(float(windows.mean()))
                    over.append(float((windows > 1.0).mean()))
            ratios.append(float(spend.mean() / per_query))
            found = worst_window(spend, budget=per_query, window=window, skip=window)
            if found is not None:
                worst.append(found)
            lambdas.append(float(result.tradeoffs.mean()))
            if not curve:
                curve = spend_curve(spend, per_query, window)
                curve["tradeoff"] = [round(float(result.tradeoffs[int(s) - 1]), 4) for s in curve["step"]]
        row: dict[str, Any] = {
            "spend_over_budget": mean_ci95(ratios),
            "spend_over_budget_runs": [round(r, 4) for r in ratios],
            "worst_window_over_budget": mean_ci95(worst) if worst else None,
            "worst_window_over_budget_max": max(worst) if worst else None,
            "mean_tradeoff": mean_ci95(lambdas),
            "curve": curve,
        }
        if budget.window_s is not None:
            row["time_windows"] = {
                "first_over_budget": mean_ci95(first) if first else None,
                "worst_over_budget": mean_ci95(worst_time) if worst_time else None,
                "worst_over_budget_max": max(worst_time) if worst_time else None,
                "mean_over_budget": mean_ci95(mean_time) if mean_time else None,
                "share_over_budget": mean_ci95(over) if over else None,
            }
        out["strategies"][strategy] = row
    return out


def static_mix(
    data: Matrices, budget: float, orders: Sequence[np.ndarray], *, window: int = WINDOW_QUERIES
) -> dict[str, Any]:
    """What a router told every model's mean accuracy and joules per task type would do with
    a mean of ``budget`` joules per query, and no controller: one price for every task (the
    Lagrangian of the budget), a fixed model per task at that price, and two neighbouring
    prices mixed at random so that the mean spend meets the budget exactly. Its accuracy is
    the most a per-task router can buy with the budget; its worst run of ``window`` queries
    after the first, over each stream order, is what the query mix alone does to the spend.
    ``None`` in the report when no price spends the budget (it is below the cheapest mix or
    above the dearest)."""
    tasks = np.asarray(data.tasks)
    names = sorted(set(data.tasks))
    task_of = np.searchsorted(names, tasks)
    accuracy = np.stack([data.accuracy[tasks == t].mean(axis=0) for t in names])
    joules = np.stack([data.energy[tasks == t].mean(axis=0) for t in names])
    share = np.array([(tasks == t).mean() for t in names])
    rows = np.arange(len(names))

    def choice(price: float) -> np.ndarray:
        picked: np.ndarray = (accuracy - price * joules).argmax(axis=1)
        return picked

    def spend(price: float) -> float:
        return float((share * joules[rows, choice(price)]).sum())

    low, high = 0.0, 1.0
    while spend(high) > budget and high < 1e6:
        high *= 2
    if spend(low) < budget or spend(high) > budget:
        return {"accuracy": None, "worst_window_over_budget": None}
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if spend(middle) > budget else (low, middle)
    dear, cheap = choice(low), choice(high)
    dear_spend, cheap_spend = spend(low), spend(high)
    mix = (budget - cheap_spend) / (dear_spend - cheap_spend) if dear_spend > cheap_spend else 0.0
    accuracy_mean = mix * float((share * accuracy[rows, dear]).sum()) + (1 - mix) * float(
        (share * accuracy[rows, cheap]).sum()
    )
    worst = []
    for run, order in enumerate(orders):
        rng = np.random.default_rng([run, 29])
        picked = np.where(rng.random(len(order)) < mix, dear[task_of[order]], cheap[task_of[order]])
        found = worst_window(data.energy[order, picked], budget=budget, window=window, skip=window)
        if found is not None:
            worst.append(found)
    return {
        "accuracy": accuracy_mean,
        "worst_window_over_budget": mean_ci95(worst) if worst else None,
        "worst_window_over_budget_max": max(worst) if worst else None,
    }
