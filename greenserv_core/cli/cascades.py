"""``greenserv bench cascades``: what escalating after a cheap answer could buy on a table
(fixed cascades, with hindsight); ``greenserv bench cascade-replay``: what the router learns
with cascades as arms, against routing alone."""

from __future__ import annotations

import argparse
from typing import Any

from greenserv_core.cli.common import (
    add_feature_options,
    at_least,
    budget_option,
    cascade_pair,
    check_fraction,
    check_output_file,
    mean_and_interval,
    number,
    print_table,
    progress_shown,
    seed_number,
    table_features,
    tradeoff_list,
    write_json,
)
from greenserv_core.cli.replay import ENERGY_SCALE_CHOICES
from greenserv_core.errors import InvalidInputError

__all__ = ["add_commands"]


def _cascades(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.cascades import cascade_report
    from greenserv_core.evaluation.table import read_table

    check_output_file("--json", args.json, not_to={"--table": args.table})
    table = read_table(args.table)
    report = cascade_report(table, tradeoff=args.tradeoff)
    if table.simulated:
        print(
            "NOTE: this table is SIMULATED"
            + (
                f" (confidence AUROC {table.metadata['confidence_auroc']})"
                if "confidence_auroc" in table.metadata
                else ""
            )
        )
    print(f"best fixed setting per task at λ = {args.tradeoff} (chosen with hindsight on the whole table):")
    rows = []
    for task, entry in report["per_task"].items():
        for name in ("without_cascades", "with_cascades"):
            best = entry[name]
            rows.append(
                {
                    "task": task,
                    "": name.replace("_", " "),
                    "setting": best["setting"],
                    "accuracy": number(best["accuracy"]),
                    "J per query": number(best["joules_per_query"], "{:.2f}"),
                    "escalated": number(best["escalated"], "{:.0%}"),
                    "reward": number(best["reward"], "{:.4f}"),
                }
            )
    print_table(rows)
    ceiling = report["best_fixed_per_task_reward"]
    print(
        f"reward of the best fixed setting per task: {ceiling['without']:.4f} without cascades, "
        f"{ceiling['with']:.4f} with ({ceiling['with'] - ceiling['without']:+.4f})"
    )
    fronts = []
    for name, front in report["fronts"].items():
        for reference, reach in front["to_reach"].items():
            model = report["references"][reference]
            if reference != "best_single_model" and model == report["references"]["best_single_model"]:
                continue  # the same model: one row
            fronts.append(
                {
                    "front": name.replace("_", " "),
                    "AIQ": number(front["aiq"], "{:.4f}"),
                    "to reach": f"{reference.replace('_', ' ')} {model['model']} ({model['accuracy']:.3f}, "
                    f"{model['joules_per_query']:.1f} J)",
                    "J per query": number(reach["joules_per_query"], "{:.1f}"),
                    "share of its J": number(reach["share_of_its_joules"], "{:.1%}"),
                }
            )
    print_table(fronts)
    write_json(args.json, report)
    return 0


def _cascade_replay(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from greenserv_core.budget.pacer import DEFAULT_PRICE_ON
    from greenserv_core.cli.common import embedding_store, parse_strategies
    from greenserv_core.evaluation.cascade_replay import STRATEGIES, check_cascade_pairs, replay_cascades
    from greenserv_core.evaluation.table import read_table

    if len(parse_strategies(args.policy)) != 1:  # before the table is read and embedded
        raise InvalidInputError(f"--policy takes one policy, got {args.policy!r}")
    pairs = [cascade_pair(text) for text in args.cascade] or None
    check_cascade_pairs(pairs or [])  # before the table is read and embedded
    tradeoffs = tradeoff_list(args.tradeoffs)
    at_least("--runs", args.runs, 1)
    at_least("--warm-start", args.warm_start, 0)
    check_fraction("--feedback-rate", args.feedback_rate)
    budget_option(args.budget_joules_per_query, None)  # refused by its option's name
    if len(tradeoffs) > 1 and args.budget_joules_per_query is not None:  # each point would pace the same spend
        raise InvalidInputError(
            "--budget-joules-per-query paces every run to one spend, where λ is only where the pacer starts: "
            "a front over several --tradeoffs means nothing there; give one λ, or leave the budget out"
        )
    if args.price_on is not None and args.budget_joules_per_query is None:
        raise InvalidInputError("--price-on prices a budget: give --budget-joules-per-query too")
    price_on = DEFAULT_PRICE_ON if args.price_on is None else args.price_on
    check_output_file("--json", args.json, not_to={"--table": args.table})
    table = read_table(args.table)
    total = 3 * args.runs * len(tradeoffs)
    with tqdm(total=total, unit="run", desc="replaying", disable=args.quiet or not progress_shown()) as bar:

        def progress(message: str) -> None:
            bar.set_postfix_str(message)
            bar.update(1)

        report = replay_cascades(
            table,
            tradeoffs=tradeoffs,
            runs=args.runs,
            seed=args.seed,
            pairs=pairs,
            feedback_rate=args.feedback_rate,
            policy=args.policy,
            progress=None if args.quiet else progress,  # None: no feature warm-up bar either
            embedding_store=embedding_store(args),
            energy_scale=args.energy_scale,
            make_features=table_features(args, table),
            budget_joules_per_query=args.budget_joules_per_query,
            warm_start=args.warm_start,
            price_on=price_on,
        )
    if table.simulated:
        print("NOTE: this table is SIMULATED")
    budget = args.budget_joules_per_query
    paced = (
        ""
        if budget is None
        else f"; every strategy paces {budget:g} J per query (λ: where it starts; priced on {price_on})"
    )
    print(f"cascades: {', '.join(report['settings']['cascades'])}; energy scale: {args.energy_scale}{paced}")
    warm = report["warm_start"]
    if warm["queries"]:
        print(
            f"warm start: the last {args.warm_start} queries of each task, left out of the stream: {warm['rows']} "
            f"labelled answers taught, which cost {warm['joules']:.1f} J ({warm['wh']:.3f} Wh) in the table"
        )
    rows = []
    for lam, entry in report["by_tradeoff"].items():
        for name in STRATEGIES:
            result = entry[name]
            rows.append(
                {
                    "λ": lam,
                    "strategy": name,
                    "accuracy": mean_and_interval(result["accuracy"], digits=4),
                    "J per query": f"{result['joules_per_query']['mean']:.1f}",
                    "reward": mean_and_interval(result["reward"], digits=4),
                    "escalated": f"{result['escalated_share']['mean']:.1%}",
                }
            )
        base = entry["baselines"]
        for name in ("random", "best_single_model", "best_fixed_model_per_task", "oracle"):
            rows.append(
                {
                    "λ": lam,
                    "strategy": name.replace("_", " "),
                    "accuracy": f"{base[name]['accuracy']:.4f}",
                    "J per query": f"{base[name]['joules_per_query']:.1f}",
                    "reward": f"{base[name]['reward']:.4f}",
                    "escalated": "",
                }
            )
        hindsight = entry["hindsight_fixed_per_task_reward"]["with"]
        rows.append(
            {
                "λ": lam,
                "strategy": "best fixed per task with cascades (hindsight)",
                "accuracy": "",
                "J per query": "",
                "reward": f"{hindsight:.4f}",
                "escalated": "",
            }
        )
    print_table(rows)
    if "fronts" in report:
        best = report["most_accurate_model"]
        fronts = []
        for name in STRATEGIES:
            front = report["fronts"][name]
            fronts.append(
                {
                    "front over λ": name,
                    "AIQ": number(front["aiq"], "{:.4f}"),
                    f"J to reach {best['model']} ({best['accuracy']:.3f})": number(
                        front["joules_to_reach_most_accurate"], "{:.1f}"
                    ),
                    f"share of its {best['joules_per_query']:.1f} J": number(front["share_of_its_joules"], "{:.1%}"),
                }
            )
        print_table(fronts)
    write_json(args.json, report)
    return 0


def add_commands(bench: Any) -> None:
    """Add ``cascades`` and ``cascade-replay`` to the ``bench`` subparsers."""
    from greenserv_core.budget.pacer import DEFAULT_PRICE_ON, PRICE_UNITS

    cascades = bench.add_parser(
        "cascades", help="fixed cascades (cheap model, escalate when unsure) against single models, on a table"
    )
    cascades.add_argument("--table", required=True, help="an outcome table with a confidence column")
    cascades.add_argument("--tradeoff", type=float, default=0.4, help="λ of the reward")
    cascades.add_argument("--json", help="write the full report here")
    cascades.set_defaults(run=_cascades)
    learned = bench.add_parser(
        "cascade-replay", help="replay the router with cascades as arms against routing alone, on a table"
    )
    learned.add_argument("--table", required=True, help="an outcome table with a confidence column")
    learned.add_argument(
        "--cascade",
        action="append",
        default=[],
        metavar="FIRST->THEN",
        help="a cascade to offer (repeatable; default: the best fixed cascade of each task at the first λ)",
    )
    learned.add_argument("--tradeoffs", default="0.4", help="comma-separated λs; several give fronts and AIQ")
    learned.add_argument("--runs", type=int, default=5)
    learned.add_argument("--seed", type=seed_number, default=0)
    learned.add_argument("--policy", default="epsilon", help="the routing policy of both strategies")
    learned.add_argument("--feedback-rate", type=float, default=1.0)
    learned.add_argument(
        "--energy-scale",
        choices=ENERGY_SCALE_CHOICES,
        default="online",
        help="online: the router's own default scale (as deployed); known / seen / pool: one of its "
        "scales; table: a diagnostic, the table's scale",
    )
    learned.add_argument(
        "--budget-joules-per-query",
        type=float,
        metavar="J",
        help="every strategy paces this mean spend instead of holding λ (λ is where it starts), "
        "so their accuracy compares at one spend",
    )
    learned.add_argument(
        "--price-on",
        choices=PRICE_UNITS,
        help="with --budget-joules-per-query, the cost the pacer's λ weighs: the router's energy scale "
        f"(default: {DEFAULT_PRICE_ON}) or joules over the budget",
    )
    learned.add_argument(
        "--warm-start",
        type=int,
        default=0,
        metavar="N",
        help="teach every router all models' labelled answers to the last N queries of each task first "
        "(they leave the stream); a cascade learns what its rule would have done",
    )
    learned.add_argument("--json", help="write the full report here")
    add_feature_options(learned)
    learned.add_argument("--quiet", action="store_true", help="no progress bar")
    learned.set_defaults(run=_cascade_replay)
