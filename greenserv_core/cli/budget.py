"""``greenserv bench budget``: energy budgets replayed, held against the budget and the fronts."""

from __future__ import annotations

import argparse
import math
from typing import Any

from greenserv_core.cli.common import (
    PLOT_SUFFIXES,
    add_feature_options,
    at_least,
    check_arrival_rate,
    check_fraction,
    check_output_file,
    embedding_store,
    mean_and_interval,
    print_table,
    progress_shown,
    refuse_repeats,
    seed_number,
    table_features,
    tradeoff_list,
    write_json,
)
from greenserv_core.errors import InvalidInputError

__all__ = ["add_commands", "budget_rows", "spend_rows"]


def _numbers(flag: str, text: str) -> list[float]:
    """``"0.25,0.5"`` → ``[0.25, 0.5]``.

    >>> _numbers("--fractions", "0.25, 0.5")
    [0.25, 0.5]
    """
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as error:
        raise InvalidInputError(f"{flag} is comma-separated numbers, got {text!r}") from error


def _positive(flag: str, text: str) -> list[float]:
    """``--fractions`` or ``--joules-per-query``: at least one number, each positive and finite.

    >>> _positive("--fractions", "0.5,0")
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: --fractions takes positive finite numbers, got '0.5,0'
    """
    values = _numbers(flag, text)
    if not values or any(not 0 < value < math.inf for value in values):  # NaN too
        raise InvalidInputError(f"{flag} takes positive finite numbers, got {text!r}")
    refuse_repeats(flag, values, text, "number")
    return values


def _share(value: dict[str, float] | None) -> str:
    return "–" if value is None else mean_and_interval(value, digits=1, scale=100, unit="%")


def _share_and_max(value: dict[str, float] | None, most: float | None) -> str:
    """A share with the most any run reached, or ``–`` where none was measured (not '0.0%').

    >>> _share_and_max(None, None)
    '–'
    """
    return "–" if value is None else f"{_share(value)} ({100 * (most or 0):.1f}%)"


def spend_rows(spend: dict[str, Any]) -> list[dict[str, str]]:
    """One row per strategy of a replay report's ``budget`` part."""
    rows = []
    for name, found in spend["strategies"].items():
        row = {
            "strategy": name,
            "mean spend / budget": _share(found["spend_over_budget"]),
            f"worst {spend['window_queries']} queries / budget": _share(found["worst_window_over_budget"]),
            "mean λ": f"{found['mean_tradeoff']['mean']:.3f}",
        }
        if "time_windows" in found:
            windows = found["time_windows"]
            row["first time window / budget"] = _share(windows["first_over_budget"])
            row["worst later time window / budget"] = _share(windows["worst_over_budget"])
            row["time windows over budget"] = _share(windows["share_over_budget"])
        rows.append(row)
    return rows


def _accuracy(value: float | None) -> str:
    return "below its cheapest point" if value is None else f"{value:.3f}"


def budget_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per budget of a :func:`~greenserv_core.evaluation.budgets.budget_sweep` report."""
    rows = []
    for row in report["budgets"]:
        spend = row["spend"]
        window = row.get("window_queries", 500)  # a short table is checked over shorter runs
        out = {
            "budget": f"{row['budget']} ({100 * row['share_of_best_single_model']:.0f}%)",
            "mean spend / budget": _share(spend["spend_over_budget"]),
            f"worst {window} / budget (max run)": _share_and_max(
                spend["worst_window_over_budget"], spend["worst_window_over_budget_max"]
            ),
        }
        if "time_windows" in spend:
            out["first time window / budget"] = _share(spend["time_windows"]["first_over_budget"])
            out["worst later time window / budget (max run)"] = _share_and_max(
                spend["time_windows"]["worst_over_budget"], spend["time_windows"]["worst_over_budget_max"]
            )
        out.update(
            {
                "accuracy": mean_and_interval(row["accuracy"]),
                "single-model front": _accuracy(row["single_model_front_accuracy"]),
                "fixed-λ front": _accuracy(row["fixed_tradeoff_front_accuracy"]),
                "most a fixed λ spends / budget": _most(row),
                "fixed-price front": _accuracy(row["fixed_price_front_accuracy"]),
                f"static mix: accuracy, worst {window} / budget": _static(row.get("static_mix")),
                "mean λ": f"{spend['mean_tradeoff']['mean']:.3f}",
            }
        )
        rows.append(out)
    return rows


def _most(row: dict[str, Any]) -> str:
    """The most joules per query any fixed λ of the grid spent, as a share of the budget
    (window budgets: of their mean per query, ``–`` where the report predates the field)."""
    most = row.get("most_spent_at_a_fixed_tradeoff")
    return "–" if most is None else f"{100 * most / row['joules_per_query']:.1f}%"


def _static(found: dict[str, Any] | None) -> str:
    """The static mix's accuracy and worst run of 500 (``–`` for a window budget)."""
    if found is None or found["accuracy"] is None:
        return "–"
    worst = found["worst_window_over_budget"]
    return f"{found['accuracy']:.3f}, " + ("–" if worst is None else f"{100 * worst['mean']:.1f}%")


def _window(text: str | None) -> float | None:
    """``--window``: a duration such as ``1h``, ``15min`` or ``30s``, in seconds."""
    if text is None:
        return None
    from greenserv_core.budget import EnergyBudget

    message = f"--window is a duration such as 1h, 15min or 30s, got {text!r}"
    try:
        window = EnergyBudget.parse(f"1J/{text}").window_s  # (the budget's errors would quote '1J/…')
    except InvalidInputError:
        raise InvalidInputError(message) from None
    if window is None:
        raise InvalidInputError(message)
    return window


def _budget(args: argparse.Namespace) -> int:
    from greenserv_core.cli.common import parse_strategies
    from greenserv_core.evaluation.budgets import DEFAULT_FRACTIONS, budget_sweep
    from greenserv_core.evaluation.table import read_table

    strategies = parse_strategies(args.strategy, replay=True, oracle=False)  # a policy or a diagnostic
    if len(strategies) != 1:
        raise InvalidInputError(f"--strategy takes one policy or diagnostic, got {strategies}")
    (strategy,) = strategies
    window = _window(args.window)
    if args.fractions is not None and args.joules_per_query is not None:
        raise InvalidInputError("give --fractions or --joules-per-query, not both")
    fractions = list(DEFAULT_FRACTIONS) if args.fractions is None else _positive("--fractions", args.fractions)
    joules = [] if args.joules_per_query is None else _positive("--joules-per-query", args.joules_per_query)
    tradeoffs = tradeoff_list(args.tradeoffs)
    at_least("--runs", args.runs, 1)
    check_fraction("--feedback-rate", args.feedback_rate)
    check_arrival_rate(args.arrival_rate, window=window is not None)
    if args.window_queries is not None and window is not None:
        raise InvalidInputError("--window-queries guards budgets per query, not per --window of time: give one of them")
    if args.window_queries is not None:
        at_least("--window-queries", args.window_queries, 2)
    check_output_file("--json", args.json, not_to={"--table": args.table})
    check_output_file("--plot", args.plot, PLOT_SUFFIXES, not_to={"--table": args.table, "--json": args.json})
    table = read_table(args.table)
    report = budget_sweep(
        table,
        fractions=fractions,
        joules_per_query=joules,
        window_s=window,
        arrival_rate=args.arrival_rate,
        strategy=strategy,
        price_on=args.price_on,
        window_queries=args.window_queries,
        tradeoffs=tradeoffs,
        runs=args.runs,
        seed=args.seed,
        feedback_rate=args.feedback_rate,
        make_features=table_features(args, table),
        embedding_store=embedding_store(args),
        progress=progress_shown(),
    )
    if table.simulated:
        print("NOTE: this table is SIMULATED")
    best = report["reference"]["best_single_model"]
    print(
        f"best single model: {best['model']}, {best['joules_per_query']:.1f} J per query, accuracy "
        f"{best['accuracy']:.3f}; strategy {strategy}, {args.runs} runs"
    )
    print_table(budget_rows(report))  # shown before any file is written: a bad path loses nothing
    write_json(args.json, report)
    if args.plot:
        from greenserv_core.evaluation.plots import plot_budget

        print(f"wrote {plot_budget(report, args.plot)}")
    return 0


def add_commands(bench: Any) -> None:
    """Add ``budget`` to the ``bench`` subparsers."""
    from greenserv_core.bandits import DEFAULT_POLICY
    from greenserv_core.budget.pacer import DEFAULT_PRICE_ON, PRICE_UNITS
    from greenserv_core.evaluation.budgets import DEFAULT_TRADEOFF_GRID

    budget = bench.add_parser(
        "budget", help="replay energy budgets: spend against the budget, accuracy against the fronts"
    )
    budget.add_argument("--table", required=True)
    budget.add_argument(
        "--fractions",
        default=None,
        help="budgets as shares of the best single model's joules per query (default: 0.25,0.5,0.75)",
    )
    budget.add_argument("--joules-per-query", metavar="J,J", help="budgets in joules per query (instead of fractions)")
    budget.add_argument(
        "--window", metavar="DURATION", help="hold each budget per time window (e.g. 1h) instead of per query"
    )
    budget.add_argument(
        "--arrival-rate", type=float, metavar="Q_PER_S", help="Poisson arrivals for --window (queries per second)"
    )
    budget.add_argument(
        "--strategy", default=DEFAULT_POLICY, help="the policy or diagnostic to pace (default: the router's policy)"
    )
    budget.add_argument(
        "--price-on",
        choices=PRICE_UNITS,
        default=DEFAULT_PRICE_ON,
        help="the cost λ weighs: the router's energy scale (default) or joules over the per-query budget",
    )
    budget.add_argument(
        "--window-queries",
        type=int,
        metavar="N",
        help="also aim to hold every run of N answers to the budget (the pacer's guard; off by default)",
    )
    budget.add_argument(
        "--tradeoffs",
        default=",".join(f"{t:g}" for t in DEFAULT_TRADEOFF_GRID),
        help="the fixed-λ grid the budgets are compared with",
    )
    budget.add_argument("--runs", type=int, default=5)
    budget.add_argument("--seed", type=seed_number, default=0)
    budget.add_argument("--feedback-rate", type=float, default=1.0)
    budget.add_argument("--json", help="write the full report here")
    budget.add_argument("--plot", help="write spend-over-time, λ and accuracy-vs-energy plots (PNG) here")
    add_feature_options(budget)
    budget.set_defaults(run=_budget)
