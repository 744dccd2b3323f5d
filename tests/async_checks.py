"""Shared checks for the adapters: does the event loop keep running while an async method
works, and which generation settings reached the model?"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest

from greenserv_core import FakeBackend
from greenserv_core.async_bridge import run_in_thread
from greenserv_core.backends.base import GenerationResult, GenerationSettings
from greenserv_core.messages import Message

T = TypeVar("T")

SLOW_ANSWER = "slow answer"


def slow_backend(seconds: float = 0.3) -> FakeBackend:
    """A model that blocks its thread for ``seconds`` per call, then answers ``SLOW_ANSWER``."""

    def slow(messages: Any) -> str:
        time.sleep(seconds)
        return SLOW_ANSWER

    return FakeBackend("slow", reply=slow)


class SettingsRecorder(FakeBackend):
    """A fake model that keeps the settings of every generation (streams included)."""

    def __init__(self, name: str = "recorder", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.settings: list[GenerationSettings] = []

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        self.settings.append(settings)
        return super().generate(messages, settings)


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


def cancel_once_started(call: Callable[[], object], started: threading.Event, release: threading.Event) -> None:
    """Run ``call`` as the adapters' async methods do (:func:`run_in_thread`), cancel it once
    ``started`` is set, check the cancellation reached the caller, then set ``release`` (the
    worker may finish); returns once the worker thread is done (``asyncio.run`` waits for it)."""

    async def leave() -> None:
        task = asyncio.ensure_future(run_in_thread(call))
        await asyncio.to_thread(started.wait, 5.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()

    asyncio.run(leave())
