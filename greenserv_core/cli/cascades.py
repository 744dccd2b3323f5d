"""``greenserv bench cascades``: what escalating after a cheap answer could buy on a table."""

from __future__ import annotations

import argparse
from typing import Any

from greenserv_core.cli.common import number, print_table, write_json

__all__ = ["add_commands"]


def _cascades(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.cascades import cascade_report
    from greenserv_core.evaluation.table import read_table

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


def add_commands(bench: Any) -> None:
    """Add ``cascades`` to the ``bench`` subparsers."""
    cascades = bench.add_parser(
        "cascades", help="fixed cascades (cheap model, escalate when unsure) against single models, on a table"
    )
    cascades.add_argument("--table", required=True, help="an outcome table with a confidence column")
    cascades.add_argument("--tradeoff", type=float, default=0.4, help="λ of the reward")
    cascades.add_argument("--json", help="write the full report here")
    cascades.set_defaults(run=_cascades)
