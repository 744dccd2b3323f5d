"""The energy-budget benchmark: does the router spend its budget, and what does it buy?

For each budget (by default 25%, 50% and 75% of the best single model's joules per query on
the table), the default policy is replayed with the budget (:func:`replay` with
``energy_budget``), and its realised spend is held against the budget: over the run, over
every run of 500 queries after the first 500, and (window budgets) over every time window.
Its accuracy is compared, at the spend it realised, with two fronts from the same table:

* the **single-model front**: the upper convex hull of the single models' (joules per query,
  accuracy), what mixing two models at random reaches;
* the **fixed-λ front**: the same policy replayed without a budget at every λ of a grid (its
  points, then their hull: mixing two λ at random), so that the budget is judged against
  the trade-off knob it replaces, at the same spend. The most any of its points spends is
  reported too (``most_spent_at_a_fixed_tradeoff``): a budget above it cannot be spent by
  the policy at any λ, so its underspend is the policy's choice, not the pacer's;
* the **static mix** (:func:`~greenserv_core.evaluation.budget_report.static_mix`): a router
  told every model's accuracy and joules per task type, meeting the budget exactly with a
  fixed choice per task: the accuracy the budget can buy at most, and how far the query
  mix alone moves the spend of a run of 500 queries;
* the **fixed-price front**: the same policy, pricing energy in the budget's own units but
  at a fixed λ of the grid, with no controller (:class:`FixedPrice`): what the controller
  itself costs or buys, apart from the units. With ``price_on="energy_scale"`` (the default)
  those are the fixed-λ router's units, so the two fronts coincide; with ``"joules"`` the
  budget prices joules with one price for every task type.

Everything comes from one call, so every figure is measured in the same run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from greenserv_core.bandits import DEFAULT_POLICY
from greenserv_core.budget import DEFAULT_PRICE_ON, BudgetPacer, EnergyBudget
from greenserv_core.budget.pacer import check_price_on
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.budget_report import static_mix
from greenserv_core.evaluation.diagnostics import DIAGNOSTICS
from greenserv_core.evaluation.frontier import hull_quality_at
from greenserv_core.evaluation.replay import (
    PEERS_UNPACED,
    baselines,
    default_features,
    peer_strategies,
    replay,
    stream_order,
)
from greenserv_core.evaluation.sweep import sweep
from greenserv_core.evaluation.table import OutcomeTable
from greenserv_core.features.extractor import FeatureExtractor
from greenserv_core.reward import DEFAULT_TRADEOFF

__all__ = ["DEFAULT_FRACTIONS", "DEFAULT_TRADEOFF_GRID", "FixedPrice", "budget_sweep"]

DEFAULT_FRACTIONS = (0.25, 0.5, 0.75)
"""Budgets as shares of the best single model's joules per query."""
DEFAULT_TRADEOFF_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class FixedPrice(BudgetPacer):
    """A pacer that never moves: λ stays ``initial_tradeoff``, energy is priced in the units of
    ``price_on`` over ``budget``'s joules per query, and nothing is ever said to be out of reach.
    A benchmark baseline, not a way to hold a budget."""

    def _resolve(self, now: float, per_query: float) -> None:
        self._since_resolve = 0


def _positive_finite(value: object) -> bool:
    """Whether ``value`` is a real number (not a bool) above 0 and finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return 0 < float(value) < math.inf
    except OverflowError:  # a Fraction beyond any float
        return False


def _check_strategy(strategy: str) -> None:
    """A strategy a budget can pace: a policy or a diagnostic (never the oracle, nor a peer: see
    :data:`~greenserv_core.evaluation.replay.PEERS_UNPACED`)."""
    from greenserv_core.bandits.registry import POLICIES, strategy_forms

    if strategy == "oracle":
        raise InvalidInputError("the oracle is never paced: a budget sweep takes a policy or a diagnostic")
    if isinstance(strategy, str) and peer_strategies([strategy]):
        raise InvalidInputError(
            f"the peer {strategy!r} cannot be paced: {PEERS_UNPACED}; a budget sweep takes a policy or a diagnostic"
        )
    if not isinstance(strategy, str) or (strategy.partition(":")[0] not in POLICIES and strategy not in DIAGNOSTICS):
        raise InvalidInputError(
            f"unknown strategy {strategy!r}; choose one of {', '.join(strategy_forms())} or the diagnostics "
            f"{', '.join(DIAGNOSTICS)}"
        )


def _points(report: dict[str, Any], strategy: str, queries: int, tradeoff: float) -> dict[str, float]:
    summary = report["strategies"][strategy]
    return {
        "tradeoff": tradeoff,
        "accuracy": summary["accuracy"]["mean"],
        "joules_per_query": summary["energy_joules"]["mean"] / queries,
        "reward": summary["reward"]["mean"],
    }


def budget_sweep(
    table: OutcomeTable,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    joules_per_query: Sequence[float] = (),
    window_s: float | None = None,
    arrival_rate: float | None = None,
    strategy: str = DEFAULT_POLICY,
    price_on: str = DEFAULT_PRICE_ON,
    window_queries: int | None = None,
    tradeoffs: Sequence[float] = DEFAULT_TRADEOFF_GRID,
    runs: int = 5,
    seed: int = 0,
    feedback_rate: float = 1.0,
    make_features: Callable[[], FeatureExtractor] | None = None,
    embedding_store: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Replay ``strategy`` under each budget, at each fixed λ, and at each fixed price (λ of the
    grid in the budget's units, over the best single model's joules per query); returns the
    JSON-ready report.

    The budgets are ``joules_per_query`` when given, else ``fractions`` of the best single
    model's joules per query (the best by reward at the default λ). With ``window_s`` each
    becomes a window budget of that many joules per query times ``arrival_rate`` (queries per
    second, Poisson) times ``window_s``: the same mean spend, held per window of time.
    ``price_on`` and ``window_queries`` (the guard on runs of answers, off by default) are the
    pacer's (see :class:`~greenserv_core.budget.BudgetPacer`).
    """
    _check_strategy(strategy)  # everything is refused before any replay runs
    if not tradeoffs:
        raise InvalidInputError("the budget sweep needs at least one tradeoff for its fixed-λ front")
    check_price_on(price_on)
    if window_s is not None and not _positive_finite(window_s):
        raise InvalidInputError(f"window_s must be a positive finite number of seconds, got {window_s!r}")
    if arrival_rate is not None and not _positive_finite(arrival_rate):
        raise InvalidInputError(
            f"arrival_rate must be a positive finite number of queries per second, got {arrival_rate!r}"
        )
    if window_s is not None and arrival_rate is None:
        raise InvalidInputError("a window budget needs arrival_rate (queries per second)")
    if window_queries is not None:  # a bad guard is refused before any replay runs
        if window_s is not None:
            raise InvalidInputError("window_queries guards budgets per query, not per window of time")
        BudgetPacer(EnergyBudget.per_query(1.0), window_queries=window_queries)
    if not fractions and not joules_per_query:
        raise InvalidInputError("give budgets as fractions or joules_per_query")
    if not all(_positive_finite(f) for f in fractions):
        raise InvalidInputError(f"budget fractions must be positive finite numbers, got {list(fractions)}")
    if not all(_positive_finite(j) for j in joules_per_query):
        raise InvalidInputError(f"joules_per_query must be positive finite numbers, got {list(joules_per_query)}")
    data = table.matrices()
    if make_features is None:
        make_features = default_features(len(set(data.prompts)))
    reference = baselines(data, DEFAULT_TRADEOFF)["best_single_model"]
    amounts = list(joules_per_query) or [f * reference["joules_per_query"] for f in fractions]
    budgets = [  # built before any replay: a budget the pacer would refuse is refused now
        EnergyBudget.per_query(amount)
        if window_s is None
        else EnergyBudget.per_window(joules=amount * (arrival_rate or 0.0) * window_s, window_s=window_s)
        for amount in amounts
    ]
    unit = EnergyBudget.per_query(reference["joules_per_query"])
    singles = [(float(data.energy[:, j].mean()), float(data.accuracy[:, j].mean())) for j in range(len(data.models))]
    bar: Any = None

    def advance(report: dict[str, Any]) -> dict[str, Any]:
        """Count a replay on one bar over them all: each fixed λ, each fixed price, each budget (shown from the
        first replay on: a table the λ sweep refuses shows no bar before its error)."""
        nonlocal bar
        if progress:
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=2 * len(tradeoffs) + len(budgets), desc="budget sweep", unit="replay")
            bar.update()
        return report

    alike: dict[str, Any] = {  # what every replay of the sweep shares
        "runs": runs,
        "seed": seed,
        "feedback_rate": feedback_rate,
        "make_features": make_features,
        "embedding_store": embedding_store,
    }
    fixed = [  # one λ at a time, so that the bar moves
        point
        for t in tradeoffs
        for point in advance(sweep(table, [strategy], [t], **alike))["strategies"][strategy]["points"]
    ]
    fixed_points = [(p["joules_per_query"], p["accuracy"]) for p in fixed]
    most_spent = max((p["joules_per_query"] for p in fixed), default=None)

    def paced(pacer: BudgetPacer) -> dict[str, Any]:
        return advance(
            replay(
                table,
                [strategy],
                tradeoff=DEFAULT_TRADEOFF,
                **alike,
                energy_budget=pacer,
                arrival_rate=arrival_rate if pacer.budget.window_s is not None else None,
            )
        )

    priced = [
        _points(
            paced(FixedPrice(unit, price_on=price_on, initial_tradeoff=min(t, 0.999))),
            strategy,
            len(data.queries),
            float(t),
        )
        for t in tradeoffs
    ]
    priced_points = [(p["joules_per_query"], p["accuracy"]) for p in priced]
    orders = [stream_order(seed + run, len(data.queries))[1] for run in range(runs)]  # the replay's streams
    rows: list[dict[str, Any]] = []
    for amount, budget in zip(amounts, budgets, strict=True):
        report = paced(BudgetPacer(budget, price_on=price_on, window_queries=window_queries))
        summary = report["strategies"][strategy]
        spend = report["budget"]["strategies"][strategy]
        realised = summary["energy_joules"]["mean"] / len(data.queries)
        accuracy = summary["accuracy"]["mean"]
        window = report["budget"]["window_queries"]
        oracle = static_mix(data, amount, orders, window=window) if window_s is None else None
        single_front = hull_quality_at(singles, realised)
        fixed_front = hull_quality_at(fixed_points, realised)
        priced_front = hull_quality_at(priced_points, realised)
        rows.append(
            {
                "budget": budget.describe(),
                "joules_per_query": amount,
                "share_of_best_single_model": amount / reference["joules_per_query"],
                "realised_joules_per_query": realised,
                "accuracy": summary["accuracy"],
                "reward": summary["reward"],
                "spend": spend,
                "window_queries": window,
                "single_model_front_accuracy": single_front,
                "fixed_tradeoff_front_accuracy": fixed_front,
                "most_spent_at_a_fixed_tradeoff": most_spent,
                "ahead_of_single_model_front": None if single_front is None else accuracy - single_front,
                "ahead_of_fixed_tradeoff_front": None if fixed_front is None else accuracy - fixed_front,
                "fixed_price_front_accuracy": priced_front,
                "static_mix": oracle,
                "ahead_of_fixed_price_front": None if priced_front is None else accuracy - priced_front,
            }
        )
    if bar is not None:
        bar.close()
    return {
        "settings": {
            "strategy": strategy,
            "price_on": price_on,
            "window_queries": window_queries,
            "runs": runs,
            "seed": seed,
            "feedback_rate": feedback_rate,
            "tradeoffs": [float(t) for t in tradeoffs],
            "window_s": window_s,
            "arrival_rate_per_s": arrival_rate,
            "queries": len(data.queries),
            "models": len(data.models),
        },
        "simulated": table.simulated,
        "reference": {"best_single_model": reference},
        "single_models": [
            {"model": m, "joules_per_query": c, "accuracy": q} for m, (c, q) in zip(data.models, singles, strict=True)
        ],
        "fixed_tradeoff": fixed,
        "fixed_price": {"unit_joules_per_query": unit.joules, "points": priced},
        "budgets": rows,
    }
