"""Run a blocking iterator in a worker thread and consume it asynchronously.

Local generation is blocking (torch); adapters' async methods use this so the event loop
keeps running while a model works. Closing the async iterator early stops the producer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

__all__ = ["iterate_in_thread"]

T = TypeVar("T")


async def iterate_in_thread(make_iterator: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Yield the items of ``make_iterator()``, which runs in a daemon thread.

    >>> async def demo():
    ...     return [x async for x in iterate_in_thread(lambda: iter(range(3)))]
    >>> asyncio.run(demo())
    [0, 1, 2]
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            iterator = make_iterator()
            try:
                for item in iterator:
                    loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
                    if stop.is_set():
                        break
            finally:
                close = getattr(iterator, "close", None)
                if callable(close):
                    close()  # a generator's finally blocks run now (e.g. generation stops)
            loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
        except BaseException as error:
            loop.call_soon_threadsafe(queue.put_nowait, ("error", error))

    threading.Thread(target=produce, name="greenserv-async-bridge", daemon=True).start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
