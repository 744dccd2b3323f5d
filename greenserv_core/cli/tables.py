"""``greenserv bench simulate``, ``collect``, ``confidence`` and ``verify``: outcome tables, drawn or
measured, and how well their answers' confidence (or the models' verdicts on their own
answers) tells right from wrong."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from greenserv_core.cli.common import (
    add_meter_option,
    at_least,
    check_meter,
    check_output_file,
    number,
    print_table,
    progress_shown,
    seed_number,
)
from greenserv_core.errors import InvalidInputError

__all__ = ["add_commands"]


def _keep_existing(out: str, force: bool) -> None:
    """Refuse to replace an existing table (say, a real one collected over hours) unless ``--force``."""
    if not force and Path(out).exists():
        raise InvalidInputError(f"--out {out} exists: an outcome table is not replaced (another name, or --force)")


def _simulate(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.simulate import read_calibration, simulate_table
    from greenserv_core.evaluation.table import check_table_suffix, write_table

    check_table_suffix(args.out, "--out")  # before the draws
    check_output_file("--out", args.out, not_to={"--calibration": args.calibration})
    _keep_existing(args.out, args.force)
    at_least("--queries-per-task", args.queries_per_task, 1)
    if args.confidence_auroc is not None and not 0.5 < args.confidence_auroc < 1:
        raise InvalidInputError(f"--confidence-auroc must lie strictly between 0.5 and 1, got {args.confidence_auroc}")
    table = simulate_table(
        read_calibration(args.calibration),
        queries_per_task=args.queries_per_task,
        seed=args.seed,
        confidence_auroc=args.confidence_auroc,
    )
    try:
        path = write_table(table, args.out)
    except OSError as error:
        raise InvalidInputError(f"--out {args.out}: cannot write the table: {error.strerror or error}") from error
    print(f"wrote a SIMULATED outcome table: {len(table)} rows, {table.metadata['models']} models → {path}")
    short = {t: n for t, n in table.metadata["queries_by_task"].items() if n < args.queries_per_task}
    if short:
        print(
            f"NOTE: fewer than --queries-per-task {args.queries_per_task} examples in "
            + ", ".join(f"{task} ({n})" for task, n in short.items())
            + ": every example of those tasks was drawn"
        )
    return 0


def _collect(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.collect import collect
    from greenserv_core.evaluation.table import check_table_suffix
    from greenserv_core.models.bundled import BUNDLED_MODELS, bundled_pool

    check_table_suffix(args.out, "--out")  # before any model loads
    check_output_file("--out", args.out, writable=True)
    wanted = None if args.models is None else [name.strip() for name in args.models.split(",") if name.strip()]
    if wanted is not None:
        unknown = sorted(set(wanted) - set(BUNDLED_MODELS))
        if unknown or not wanted:
            raise InvalidInputError(
                f"--models takes comma-separated bundled models, of {list(BUNDLED_MODELS)}; "
                + (f"unknown: {unknown}" if unknown else f"got {args.models!r}")
                + " (leave --models out for all of them)"
            )
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    repeated = sorted({task for task in tasks if tasks.count(task) > 1})
    if repeated:  # the table would list them twice, and be another collection than the same tasks once
        raise InvalidInputError(f"--tasks names {repeated} twice; give each task once")
    pool = bundled_pool(names=wanted, meter=args.meter)  # only the models asked for need to be set up
    check_meter(args.meter, pool)  # before any model loads
    try:
        table = collect(
            pool,
            args.out,
            tasks=tasks,
            limit=args.limit,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=progress_shown(),
            confidence=not args.no_confidence,
        )
    except KeyboardInterrupt:
        from greenserv_core.evaluation.collect import journal_path

        print(f"\ninterrupted: finished rows are kept in {journal_path(args.out)}; run the same command to go on")
        return 130
    data = table.matrices()
    print(f"outcome table: {len(data.queries)} queries × {len(data.models)} models → {args.out}")
    print(f"energy source: {', '.join(table.metadata['energy_sources'])}")
    rows = []
    for task in dict.fromkeys(data.tasks):
        mine = [i for i, t in enumerate(data.tasks) if t == task]
        for j, model in enumerate(data.models):
            rows.append(
                {
                    "task": task,
                    "model": model,
                    "accuracy": f"{data.accuracy[mine, j].mean():.3f}",
                    "J per query": f"{data.energy[mine, j].mean():.2f}",
                    "latency s": f"{data.latency[mine, j].mean():.2f}",
                }
            )
    print_table(rows)
    return 0


def _confidence(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.confidence_report import confidence_report
    from greenserv_core.evaluation.table import read_table

    table = read_table(args.table)
    print_table(
        [
            {
                "task": row["task"],
                "model": row["model"],
                "signal": row["signal"],
                "answers": str(row["answers"]),
                "accuracy": number(row["accuracy"]),
                "confidence right / wrong": f"{number(row['confidence_right'])} / {number(row['confidence_wrong'])}",
                "AUROC": number(row["auroc"]),
            }
            for row in confidence_report(table)
        ]
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from greenserv_core.confidence import SelfVerification
    from greenserv_core.evaluation.confidence_report import confidence_report
    from greenserv_core.evaluation.table import check_table_suffix, read_table
    from greenserv_core.evaluation.verify import verify_table
    from greenserv_core.models.bundled import bundled_pool

    signal = SelfVerification(samples=args.samples, seed=args.seed)  # checks --samples before any model loads
    check_table_suffix(args.out, "--out")
    check_output_file("--out", args.out, not_to={"--table": args.table}, writable=True)
    _keep_existing(args.out, args.force)
    table = read_table(args.table)
    wanted = set(table.columns["model"])
    pool = [b for b in bundled_pool(names=sorted(wanted), meter=args.meter) if b.info.name in wanted]
    check_meter(args.meter, pool)  # before any model loads
    verified = verify_table(table, pool, args.out, signal=signal, batch_size=args.batch_size, progress=progress_shown())
    before = (
        {(row["task"], row["model"]): row for row in confidence_report(table)} if "confidence" in table.columns else {}
    )
    print(f"wrote {args.out}: the answers of {args.table}, with {signal.name} as their confidence")
    rows = []
    for row in confidence_report(verified):
        old = before.get((row["task"], row["model"]))
        rows.append(
            {
                "task": row["task"],
                "model": row["model"],
                "answers": str(row["answers"]),
                "accuracy": number(row["accuracy"]),
                "AUROC: the table's signal": "–" if old is None else number(old["auroc"]),
                f"AUROC: {signal.name}": number(row["auroc"]),
            }
        )
    print_table(rows)
    for model, cost in verified.metadata["verification"].items():
        share = cost["joules"] / cost["answer_joules"] if cost["answer_joules"] > 0 else float("nan")
        print(
            f"{model}: verifying {cost['answers']} answers cost {cost['joules']:.1f} J "
            f"({', '.join(cost['energy_sources'])}), {share:.0%} of the answers' own {cost['answer_joules']:.1f} J"
        )
    return 0


def add_commands(bench: Any) -> None:
    """Add ``simulate``, ``collect``, ``confidence`` and ``verify`` to the ``bench`` subparsers."""
    from greenserv_core.datasets import TASKS
    from greenserv_core.evaluation.collect import DEFAULT_TASKS, UNSCORED_TASKS
    from greenserv_core.models.bundled import BUNDLED_MODELS

    simulate = bench.add_parser("simulate", help="draw a SIMULATED paper-scale table from calibration figures")
    simulate.add_argument("--calibration", required=True, help="CSV of per-(model, task) figures")
    simulate.add_argument("--out", required=True, help="table path (.parquet or .csv); an existing one is kept")
    simulate.add_argument("--force", action="store_true", help="replace an existing --out")
    simulate.add_argument("--queries-per-task", type=int, default=2500)
    simulate.add_argument("--seed", type=seed_number, default=0)
    simulate.add_argument(
        "--confidence-auroc",
        type=float,
        help="also draw each answer's confidence, at this AUROC for its correctness (e.g. 0.8)",
    )
    simulate.set_defaults(run=_simulate)
    collect = bench.add_parser("collect", help="run the bundled models over labelled tasks into a real table")
    collect.add_argument("--out", required=True, help="table path (.parquet or .csv); resumes from <out>.rows.jsonl")
    collect.add_argument(
        "--tasks",
        default=",".join(DEFAULT_TASKS),
        help=f"comma-separated, of: {', '.join(sorted(set(TASKS) - UNSCORED_TASKS))}",
    )
    collect.add_argument("--limit", type=int, default=200, help="queries per task (seeded sample)")
    collect.add_argument("--seed", type=seed_number, default=0)
    collect.add_argument("--batch-size", type=int, default=8)
    collect.add_argument("--models", help=f"comma-separated, of: {', '.join(BUNDLED_MODELS)} (default: all)")
    add_meter_option(collect)
    collect.add_argument(
        "--no-confidence", action="store_true", help="do not ask for log-probabilities (no confidence column)"
    )
    collect.set_defaults(run=_collect)
    confidence = bench.add_parser(
        "confidence", help="how well the answers' confidence tells right from wrong (AUROC per model and task)"
    )
    confidence.add_argument("--table", required=True, help="an outcome table with a confidence column")
    confidence.set_defaults(run=_confidence)
    verify = bench.add_parser(
        "verify",
        help="ask each bundled model whether its own answers in a table are right (self-verification) "
        "and report how well its verdicts tell right from wrong",
    )
    verify.add_argument("--table", required=True, help="a table from `greenserv bench collect`")
    verify.add_argument(
        "--out", required=True, help="where to write the copy with the verdicts as its confidence (a new file)"
    )
    verify.add_argument("--force", action="store_true", help="replace an existing --out")
    verify.add_argument(
        "--samples", type=int, default=1, help="1: one greedy verdict, read with its probability; K: K sampled verdicts"
    )
    verify.add_argument("--seed", type=seed_number, default=0, help="the first sampled verdict's seed")
    verify.add_argument("--batch-size", type=int, default=8)
    add_meter_option(verify)
    verify.set_defaults(run=_verify)
