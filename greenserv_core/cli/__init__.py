"""The ``greenserv`` command: ``setup`` and ``chat`` (:mod:`~greenserv_core.cli.chat`), and
``bench``: outcome tables (:mod:`~greenserv_core.cli.tables`), their replay
(:mod:`~greenserv_core.cli.replay`), energy budgets replayed (:mod:`~greenserv_core.cli.budget`)
and the benchmarks of BENCHMARKS.md
(:mod:`~greenserv_core.cli.benchmarks`).

>>> build_parser().parse_args(["bench", "overhead", "--queries", "10"]).queries
10
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def _version() -> str:
    from greenserv_core import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    from greenserv_core.cli import benchmarks, budget, cascades, chat, demo, replay, tables

    parser = argparse.ArgumentParser(prog="greenserv", description="Energy-aware routing over local LLMs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the router and meters do")
    parser.add_argument("--version", action="version", version=f"greenserv {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo.add_commands(commands)
    chat.add_commands(commands)
    bench = commands.add_parser("bench", help="outcome tables, their replay, and the benchmarks").add_subparsers(
        dest="bench", required=True
    )
    tables.add_commands(bench)
    replay.add_commands(bench)
    budget.add_commands(bench)
    benchmarks.add_commands(bench)
    cascades.add_commands(bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from greenserv_core.errors import GreenServError
    from greenserv_core.evaluation.extras import missing_extra

    try:
        return int(args.run(args))
    except GreenServError as error:
        print(f"greenserv: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: a word, not a traceback, and the shell's code for it
        print("\ngreenserv: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_gone():
            raise  # another pipe (a worker's): not the reader's leaving
        return 141  # the reader left (`| head`): no traceback, and the shell's code for SIGPIPE
    except ModuleNotFoundError as error:  # a package of the bench extra, imported outside bench_import
        missing = missing_extra(error)
        if missing is None:
            raise
        print(f"greenserv: error: {missing}", file=sys.stderr)
        return 2


def _stdout_gone() -> bool:
    """Whether standard output's reader has left; if so, it is pointed at the null device (Python's
    flush at exit would fail again)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    else:
        return False
    with contextlib.suppress(OSError, ValueError):  # (a stream that is no file: nothing to point)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return True
