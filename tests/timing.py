"""A guard against super-linear work that holds on a slow or busy machine: a run's time is
compared with the same run on an input ``factor`` times larger, in the same test, instead of
with a fixed number of seconds."""

from __future__ import annotations

import time
from collections.abc import Callable


def assert_linear_time(
    run: Callable[[int], object], n: int, *, factor: int = 4, slack: float = 2.0, repeats: int = 3
) -> None:
    """``run(factor * n)`` takes under ``slack * factor`` times as long as ``run(n)`` (best of
    ``repeats`` each): linear work takes about ``factor`` times as long, quadratic
    ``factor ** 2``."""
    small, large = (min(_seconds(run, size) for _ in range(repeats)) for size in (n, factor * n))
    assert large < slack * factor * small, (
        f"{factor}x the input took {large / small:.1f}x as long ({small:.3f} s, {large:.3f} s)"
    )


def _seconds(run: Callable[[int], object], size: int) -> float:
    started = time.perf_counter()
    run(size)
    return time.perf_counter() - started
