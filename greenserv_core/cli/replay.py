"""``greenserv bench replay`` and ``greenserv bench sweep``: an outcome table through the router."""

from __future__ import annotations

import argparse
from typing import Any

from greenserv_core.cli.common import (
    embedding_store,
    parse_strategies,
    percent,
    policy_params,
    print_table,
    strategy_help,
    write_json,
)

__all__ = ["add_commands"]


def _replay(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.replay import PoolChange, replay
    from greenserv_core.evaluation.table import read_table

    changes = [PoolChange.parse("add", c) for c in args.add_model] + [
        PoolChange.parse("remove", c) for c in args.remove_model
    ]
    strategies = parse_strategies(args.strategies, replay=True)
    params = policy_params(args.param)
    table = read_table(args.table)
    report = replay(
        table,
        strategies,
        tradeoff=args.tradeoff,
        runs=args.runs,
        seed=args.seed,
        feedback_rate=args.feedback_rate,
        policy_params=params,
        changes=changes,
        embedding_store=embedding_store(args),
        energy_scale=args.energy_scale,
        progress=True,
    )
    if table.simulated:
        print("NOTE: this table is SIMULATED")
    print(f"features for {report['settings']['queries']} prompts: {report['timing']['feature_warmup_s']:.1f} s")
    print_table(replay_rows(report))
    print("fixed choices from the table (accuracy / J per query / reward):")
    baselines = dict(report["baselines"])
    per_task = baselines.pop("per_task")
    for name, fixed in baselines.items():
        label = f"{name} ({fixed['model']})" if "model" in fixed else name
        print(f"  {label}: {fixed['accuracy']:.3f} / {fixed['joules_per_query']:.2f} / {fixed['reward']:.3f}")
    for task, facts in per_task.items():
        if facts["runner_up_gap"] is None:  # a one-model pool
            continue
        print(
            f"  {task}: best {facts['best_model']} (reward {facts['best_reward']:.3f}), runner-up "
            f"{facts['runner_up_gap']:.3f} behind, {facts['models_within_0.05']} models within 0.05"
        )
    write_json(args.json, report)
    if args.plot:
        from greenserv_core.evaluation.plots import plot_replay

        print(f"wrote {plot_replay(report, args.plot)}")
    return 0


def replay_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per strategy of a :func:`~greenserv_core.evaluation.replay.replay` report."""
    rows = []
    for name, summary in report["strategies"].items():
        rel = report["relative"][name]
        rows.append(
            {
                "strategy": name,
                **{
                    label: f"{summary[key]['mean']:.3f} ± {summary[key]['ci95']:.3f}"
                    for label, key in (("accuracy", "accuracy"), ("energy (Wh)", "energy_wh"), ("reward", "reward"))
                },
                "cumulative regret": f"{summary['cumulative_regret']['mean']:.1f}",
                "accuracy vs random": percent(rel["accuracy_vs_random"]),
                "energy vs random": percent(rel["energy_vs_random"]),
                "gap closed: best fixed per task": percent(rel["gap_closed_to_best_fixed_per_task"]),
                "gap closed: oracle": percent(rel["gap_closed_to_oracle"]),
                "s per run": f"{summary['seconds_per_run']['mean']:.1f}",
            }
        )
    return rows


def _sweep(args: argparse.Namespace) -> int:
    from greenserv_core.errors import InvalidInputError
    from greenserv_core.evaluation.sweep import sweep
    from greenserv_core.evaluation.table import read_table

    strategies = parse_strategies(args.strategies, replay=True)
    try:
        tradeoffs = [float(t) for t in args.tradeoffs.split(",")]
    except ValueError as error:
        raise InvalidInputError(f"--tradeoffs is comma-separated numbers, got {args.tradeoffs!r}") from error
    params = policy_params(args.param)
    table = read_table(args.table)
    report = sweep(
        table,
        strategies,
        tradeoffs,
        runs=args.runs,
        seed=args.seed,
        feedback_rate=args.feedback_rate,
        policy_params=params,
        embedding_store=embedding_store(args),
        progress=True,
    )
    if table.simulated:
        print("NOTE: this table is SIMULATED")
    low, high = report["cost_range_joules_per_query"]
    print(f"AIQ over {low:.2f}–{high:.2f} J per query (cheapest to dearest single model)")
    print_table(sweep_rows(report))
    write_json(args.json, report)
    if args.plot:
        from greenserv_core.evaluation.plots import plot_sweep

        print(f"wrote {plot_sweep(report, args.plot)}")
    return 0


def sweep_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """The single models, then one row per strategy of a :func:`~greenserv_core.evaluation.sweep.sweep` report."""
    points = "points (λ: accuracy @ J per query)"
    rows = [{"strategy": "single models", "AIQ": f"{report['single_models']['aiq']:.3f}", points: "fixed choices"}]
    for name, curve in report["strategies"].items():
        listed = ", ".join(
            f"{p['tradeoff']:g}: {p['accuracy']:.3f} @ {p['joules_per_query']:.1f}" for p in curve["points"]
        )
        rows.append({"strategy": name, "AIQ": f"{curve['aiq']:.3f}", points: listed})
    return rows


def add_commands(bench: Any) -> None:
    """Add ``replay`` and ``sweep`` to the ``bench`` subparsers."""
    replay = bench.add_parser("replay", help="replay a table through the router with partial feedback")
    replay.add_argument("--table", required=True)
    replay.add_argument(
        "--strategies",
        default="linucb,thompson,epsilon,epsilon-nc,random,oracle",
        help=f"comma-separated: {strategy_help(replay=True)}",
    )
    replay.add_argument("--tradeoff", type=float, default=0.4)
    replay.add_argument("--runs", type=int, default=5)
    replay.add_argument("--seed", type=int, default=0)
    replay.add_argument("--feedback-rate", type=float, default=1.0)
    replay.add_argument("--json", help="write the full report (CIs, shares, regret curves, settings) here")
    replay.add_argument("--plot", help="write regret, accuracy-vs-energy and selection-share plots (PNG) here")
    replay.add_argument("--add-model", action="append", default=[], metavar="NAME@STEP", help="model joins at STEP")
    replay.add_argument("--remove-model", action="append", default=[], metavar="NAME@STEP", help="model leaves at STEP")
    replay.add_argument("--param", action="append", default=[], metavar="STRATEGY.NAME=VALUE", help="policy parameter")
    replay.add_argument("--no-embedding-cache", action="store_true", help="embed every prompt again")
    replay.add_argument(
        "--energy-scale",
        choices=("online", "table"),
        default="online",
        help="online: the router normalises joules by what it has seen (as deployed); "
        "table: a diagnostic that gives it the table's per-task scale, the one it is scored on",
    )
    replay.set_defaults(run=_replay)
    sweep = bench.add_parser("sweep", help="accuracy-energy curves over λ, Pareto fronts and AIQ")
    sweep.add_argument("--table", required=True)
    sweep.add_argument(
        "--strategies", default="linucb,thompson,epsilon,random", help=f"comma-separated: {strategy_help(replay=True)}"
    )
    sweep.add_argument("--tradeoffs", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1")
    sweep.add_argument("--runs", type=int, default=3)
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--feedback-rate", type=float, default=1.0)
    sweep.add_argument("--param", action="append", default=[], metavar="STRATEGY.NAME=VALUE", help="policy parameter")
    sweep.add_argument("--json", help="write the full report here")
    sweep.add_argument("--plot", help="write the accuracy-vs-energy plot (PNG) here")
    sweep.add_argument("--no-embedding-cache", action="store_true", help="embed every prompt again")
    sweep.set_defaults(run=_sweep)
