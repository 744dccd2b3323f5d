"""Shared check for adapters' async methods: does the event loop keep running meanwhile?"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from greenserv_core import FakeBackend

T = TypeVar("T")

SLOW_ANSWER = "slow answer"


def slow_backend(seconds: float = 0.3) -> FakeBackend:
    """A model that blocks its thread for ``seconds`` per call, then answers ``SLOW_ANSWER``."""

    def slow(messages: Any) -> str:
        time.sleep(seconds)
        return SLOW_ANSWER

    return FakeBackend("slow", reply=slow)


def run_while_ticking(work: Callable[[], Awaitable[T]]) -> tuple[int, T]:
    """Run ``work()`` beside a 10 ms ticker; return how often the ticker ran, and the result."""

    async def main() -> tuple[int, T]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            result = await work()
        finally:
            task.cancel()
        return ticks, result

    return asyncio.run(main())
