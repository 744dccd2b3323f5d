"""The benchmarks of BENCHMARKS.md as ``greenserv bench <name>``: ``overhead``, ``local-models``,
``replay-speed``, ``tool-calling``, ``replicas``, ``synthetic-world`` and ``classifier``. Each runs a
function of :mod:`greenserv_core.evaluation` that returns its results, and prints them as a Markdown
table."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from greenserv_core.cli.common import (
    at_least,
    check_fraction,
    check_output_file,
    parse_strategies,
    print_table,
    progress_shown,
    refuse_repeats,
    seed_number,
    strategy_help,
)
from greenserv_core.errors import InvalidInputError
from greenserv_core.features.bundled import DEFAULT_EMBEDDER, EMBEDDERS

__all__ = ["add_commands"]


def _check_input_file(flag: str, path: str) -> None:
    """A file the command reads must be there, and not be a folder."""
    if not os.path.exists(path):
        raise InvalidInputError(f"{flag}: no file at {path}")
    if os.path.isdir(path):
        raise InvalidInputError(f"{flag} {path} is a folder, not a file")


def _check_device(device: str) -> None:
    """``--device``: ``cpu``, or ``cuda``/``cuda:N`` when this torch sees that GPU."""
    if device == "cpu":
        return
    kind, colon, number = device.partition(":")
    if kind != "cuda" or (colon and not (number.isascii() and number.isdigit())):  # (not "²")
        raise InvalidInputError(f"--device is cpu, cuda or cuda:N, got {device!r}")
    import torch

    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "it sees no GPU"
        raise InvalidInputError(f"--device {device} is not available: {why}; use --device cpu")
    if colon and int(number) >= torch.cuda.device_count():
        raise InvalidInputError(f"--device {device} is not available: torch sees {torch.cuda.device_count()} GPU(s)")


def _overhead(args: argparse.Namespace) -> int:
    from greenserv_core.budget import EnergyBudget
    from greenserv_core.evaluation.overhead import overhead_prompts, run_overhead
    from greenserv_core.evaluation.prompt_files import write_prompts

    at_least("--queries", args.queries, 1)
    if args.pool == "bundled" and args.models is not None:
        raise InvalidInputError("--models sizes the fake pool; --pool bundled routes over the bundled models")
    models = 16 if args.models is None else args.models
    at_least("--models", models, 1)
    if args.save_prompts and args.prompts:
        raise InvalidInputError("--save-prompts writes the bundled prompts; it does not go with --prompts (read)")
    check_output_file("--save-prompts", args.save_prompts, writable=True)  # a missing folder is made
    if args.save_prompts:
        prompts = overhead_prompts(args.queries, args.seed)
        write_prompts(args.save_prompts, prompts)
        short = f" (the bundled tasks hold only {len(prompts)} distinct)" if len(prompts) < args.queries else ""
        print(f"wrote {len(prompts)} prompts to {args.save_prompts}{short}")
        return 0
    embedders = [e.strip() for e in args.embedders.split(",") if e.strip()]
    unknown = [e for e in embedders if e not in EMBEDDERS]
    if unknown or not embedders:
        raise InvalidInputError(
            f"--embedders takes a comma-separated list of {list(EMBEDDERS)}, got {args.embedders!r}"
        )
    repeated = sorted({e for e in embedders if embedders.count(e) > 1})
    if repeated:
        raise InvalidInputError(f"--embedders names {repeated} twice; each embedder is timed once")
    if args.budget_joules_per_query is not None:
        EnergyBudget.per_query(args.budget_joules_per_query)  # a bad budget is refused before the timings
    _check_device(args.device)
    report = run_overhead(
        queries=args.queries,
        models=models,
        strategies=parse_strategies(args.strategies),
        embedders=embedders,
        seed=args.seed,
        energy_budget=args.budget_joules_per_query,
        prompts_file=args.prompts,
        device=args.device,
        progress=progress_shown(),
        pool=args.pool,
    )
    print(report.machine)
    print()
    print_table(report.table())
    return 0


def _local_models(args: argparse.Namespace) -> int:
    from greenserv_core.backends.devices import pick_dtype
    from greenserv_core.evaluation.local_models import run_local_models

    at_least("--queries", args.queries, 1)
    at_least("--max-new-tokens", args.max_new_tokens, 1)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not dtypes:
        raise InvalidInputError(f"--dtypes is comma-separated dtypes such as float32,bfloat16, got {args.dtypes!r}")
    for dtype in dtypes:  # before any model loads
        if dtype != "auto":
            try:
                pick_dtype("cpu", dtype)
            except InvalidInputError as error:
                raise InvalidInputError(f"--dtypes: {error}") from error
    models = None if args.models is None else [m.strip() for m in args.models.split(",") if m.strip()]
    if models is not None and not models:  # was every model
        raise InvalidInputError(f"--models names no model: {args.models!r}; leave it out for every bundled model")
    report = run_local_models(
        queries=args.queries,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        skip_first_load=args.skip_first_load,
        dtypes=dtypes,
        models=models,
        prompts_file=args.prompts,
        progress=progress_shown(),
    )
    print(report.machine)
    print()
    print_table(report.table())
    return 0


def _replay_speed(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.replay_speed import run_replay_speed

    at_least("--queries", args.queries, 1)
    report = run_replay_speed(
        args.calibration, queries=args.queries, strategies=parse_strategies(args.strategies), embedder=args.embedder
    )
    print(report.machine)
    print()
    print_table(report.table())
    return 0


def _tool_calling(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.tool_calling import run_tool_calling

    print_table(run_tool_calling(max_new_tokens=args.max_new_tokens, progress=progress_shown()).table())
    return 0


def _replicas(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.replicas import check_store, run_replicas
    from greenserv_core.reward import check_tradeoff

    strategies = parse_strategies(args.strategy)
    if len(strategies) != 1:
        raise InvalidInputError(f"--strategy takes one policy, got {strategies}")
    try:
        check_tradeoff(args.tradeoff)
    except InvalidInputError as error:
        raise InvalidInputError(f"--tradeoff: {error}") from None
    kind, where = check_store(args.store, option="--store", connect=True)
    if kind == "file":
        check_output_file("--store", where)  # not under a file: it would fail in the workers, after the set-ups
    at_least("--limit", args.limit, 1)
    at_least("--runs", args.runs, 1)
    if not (math.isfinite(args.interval) and args.interval > 0):
        raise InvalidInputError(f"--interval must be a positive number of seconds, got {args.interval:g}")
    try:
        counts = [int(n) for n in args.replicas.split(",")]
    except ValueError as error:
        raise InvalidInputError(f"--replicas is comma-separated counts, got {args.replicas!r}") from error
    refuse_repeats("--replicas", counts, args.replicas, "count")  # was run twice, shown once
    report = run_replicas(
        args.table,
        store=args.store,
        replicas=counts,
        runs=args.runs,
        limit=args.limit,
        interval_s=args.interval,
        strategy=strategies[0],
        tradeoff=args.tradeoff,
        embedding_store=args.embedding_store,
    )
    print(report.machine)
    print()
    print_table(report.table())
    return 0


def _synthetic_world(args: argparse.Namespace) -> int:
    from greenserv_core.errors import InvalidInputError
    from greenserv_core.evaluation.synthetic_world import run_synthetic_world

    try:
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError as error:
        raise InvalidInputError(f"--seeds is comma-separated integers, got {args.seeds!r}") from error
    if any(seed < 0 for seed in seeds):
        raise InvalidInputError(f"--seeds are integers of 0 or more, got {args.seeds!r}")
    refuse_repeats("--seeds", seeds, args.seeds, "seed")  # the same run twice would count as two
    at_least("--steps", args.steps, 1)
    at_least("--last", args.last, 1)
    if args.last > args.steps:
        raise InvalidInputError(f"--last must be at most --steps ({args.steps}), got {args.last}")
    check_fraction("--sparse-feedback", args.sparse_feedback)
    at_least("--queries-per-task", args.queries_per_task, 1)
    report = run_synthetic_world(
        strategies=parse_strategies(args.strategies),
        seeds=seeds,
        steps=args.steps,
        last=args.last,
        sparse_feedback=args.sparse_feedback,
        queries_per_task=args.queries_per_task,
    )
    print_table(report.table())
    return 0


def _classifier(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.task_generalisation import evaluate_generalisation
    from greenserv_core.features.bundled import bundled_classifier, bundled_embedder
    from greenserv_core.features.task_classifier import TaskClassifier

    at_least("--per-source", args.per_source, 1)
    at_least("--per-label", args.per_label, 1)
    if args.classifier:
        _check_input_file("--classifier", args.classifier)
    classifier = TaskClassifier.load(args.classifier) if args.classifier else bundled_classifier(args.embedder)
    embedder = bundled_embedder(args.embedder)
    report = evaluate_generalisation(
        embedder, classifier, per_source=args.per_source, in_distribution_per_label=args.per_label, seed=args.seed
    )
    print(f"task classifier over {report.embedder} ({len(report.labels)} task types)")
    print()
    print_table(report.table())
    return 0


def add_commands(bench: Any) -> None:
    """Add the benchmarks to the ``bench`` subparsers."""
    overhead = bench.add_parser("overhead", help="routing overhead per query over zero-cost fake models")
    overhead.add_argument("--queries", type=int, default=1000, help="distinct real prompts")
    overhead.add_argument("--models", type=int, help="fake models in the pool (default 16)")
    overhead.add_argument(
        "--pool",
        choices=["fake", "bundled"],
        default="fake",
        help="route over zero-cost fakes, or over the bundled local models (their chat templates and tokenizers "
        "read each prompt; no weights load)",
    )
    overhead.add_argument(
        "--strategies", default="linucb,thompson,epsilon,random", help=f"comma-separated {strategy_help()}"
    )
    overhead.add_argument(
        "--embedders",
        default="minilm,static",
        help=f"comma-separated features' embedders, of {list(EMBEDDERS)} (MiniLM's row is the ratios' baseline)",
    )
    overhead.add_argument("--seed", type=seed_number, default=0)
    overhead.add_argument(
        "--budget-joules-per-query",
        type=float,
        metavar="J",
        help="also time each strategy paced to this energy budget (the fake answers cost 1-5 J)",
    )
    overhead.add_argument("--device", default="cpu", help="where MiniLM embeds: cpu, cuda or cuda:N")
    overhead.add_argument("--prompts", metavar="FILE", help="time these prompts (JSON Lines), not the bundled ones")
    overhead.add_argument(
        "--save-prompts", metavar="FILE", help="only write the bundled prompts it would time to FILE (for --prompts)"
    )
    overhead.set_defaults(run=_overhead)

    local = bench.add_parser("local-models", help="load time, speed, joules and routed latency of the bundled models")
    local.add_argument("--queries", type=int, default=12)
    local.add_argument("--max-new-tokens", type=int, default=32)
    local.add_argument("--seed", type=seed_number, default=0)
    local.add_argument("--skip-first-load", action="store_true", help="do not time the GGUF conversion")
    local.add_argument("--dtypes", default="auto", help="comma-separated dtypes to compare; float32 is the baseline")
    local.add_argument("--models", help="comma-separated bundled models to time (default: all)")
    local.add_argument("--prompts", metavar="FILE", help="time these prompts (JSON Lines), not the bundled ones")
    local.set_defaults(run=_local_models)

    speed = bench.add_parser("replay-speed", help="how fast a replay of 10,000 queries × 16 models runs")
    speed.add_argument("--calibration", required=True, help="CSV of per-(model, task) figures, with MMLU rows")
    speed.add_argument("--queries", type=int, default=10_000)
    speed.add_argument(
        "--strategies", default="random,linucb,thompson,epsilon", help=f"comma-separated {strategy_help()}"
    )
    speed.add_argument("--embedder", choices=EMBEDDERS, default=DEFAULT_EMBEDDER, help="the features' embedder")
    speed.set_defaults(run=_replay_speed)

    tools = bench.add_parser("tool-calling", help="how often the bundled models call the offered tools correctly")
    tools.add_argument("--max-new-tokens", type=int, default=64)
    tools.set_defaults(run=_tool_calling)

    replicas = bench.add_parser("replicas", help="router replicas sharing learning through a store, under load")
    replicas.add_argument("--table", required=True)
    replicas.add_argument("--replicas", default="2,4", help="comma-separated replica counts")
    replicas.add_argument("--store", required=True, help="redis:<url> or file:<path>")
    replicas.add_argument("--runs", type=int, default=3)
    replicas.add_argument("--limit", type=int, default=None, help="route only this many queries per run")
    replicas.add_argument("--interval", type=float, default=0.2, help="seconds between syncs")
    replicas.add_argument("--strategy", default="linucb", help=f"one of the {strategy_help()}")
    replicas.add_argument("--tradeoff", type=float, default=0.4)
    replicas.add_argument(
        "--embedding-store",
        default=None,
        help="a folder to keep the prompts' vectors in (embedders that can load them again, such as MiniLM; "
        "the default static embedder needs none)",
    )
    replicas.set_defaults(run=_replicas)

    world = bench.add_parser("synthetic-world", help="do the policies learn the best model per task? (fake models)")
    world.add_argument(
        "--strategies", default="linucb,thompson,epsilon,epsilon-nc,random", help=f"comma-separated {strategy_help()}"
    )
    world.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run each")
    world.add_argument("--steps", type=int, default=2000, help="queries routed per run")
    world.add_argument("--last", type=int, default=500, help="score the share of these last queries")
    world.add_argument("--sparse-feedback", type=float, default=0.2, help="the share scored in the sparse runs")
    world.add_argument("--queries-per-task", type=int, default=60, help="real prompts per task to draw from")
    world.set_defaults(run=_synthetic_world)

    classifier = bench.add_parser(
        "classifier", help="task-classifier accuracy on held-out sources and everyday queries, and in-distribution F1"
    )
    classifier.add_argument("--embedder", choices=EMBEDDERS, default=DEFAULT_EMBEDDER)
    classifier.add_argument("--classifier", default=None, help="a saved classifier (default: the bundled one)")
    classifier.add_argument("--per-source", type=int, default=200, help="prompts per held-out source")
    classifier.add_argument("--per-label", type=int, default=200, help="in-distribution test prompts per task type")
    classifier.add_argument("--seed", type=seed_number, default=0)
    classifier.set_defaults(run=_classifier)
