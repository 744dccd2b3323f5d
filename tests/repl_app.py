"""``greenserv chat --interactive`` over two fake models and the hashing features, for the
tests that drive the chat in a pseudo-terminal (``tests/test_repl.py``): the real CLI code
path, without loading models. Usage: ``python -m tests.repl_app [chat options]``."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from greenserv_core import FakeBackend, FeatureExtractor, cli
from greenserv_core.backends.base import ModelBackend
from greenserv_core.messages import Message
from greenserv_core.models import pool
from tests.conftest import make_hashing_extractor


def _slow_reply(messages: Sequence[Message]) -> str:
    """The large model takes its time when asked to (so Ctrl-C can stop it)."""
    if "slowly" in str(messages[-1]["content"]):
        print("[slow answer started]", flush=True)  # (a Ctrl-C sent before it would stop the prompt instead)
        time.sleep(30)
    return f"large answer to: {messages[-1]['content']} (turn {sum(m['role'] == 'user' for m in messages)})"


def main(argv: Sequence[str]) -> int:
    backends: list[ModelBackend] = [
        FakeBackend("small", joules_per_token=1.0, reply=lambda m: "small answer"),
        FakeBackend("large", joules_per_token=9.0, reply=_slow_reply),
    ]
    pool.build_backends = lambda names, meter="auto", option=None: backends  # type: ignore[assignment]
    FeatureExtractor.default = classmethod(lambda cls, **kwargs: make_hashing_extractor())  # type: ignore[assignment,method-assign]
    return cli.main(["chat", "--interactive", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
