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

    The thread takes the next item only when the consumer asks for it, so closing the async
    iterator early always closes the blocking one before it ran further (a router's stream
    closed after its first piece never reaches its answer, and so cannot be scored).

    >>> async def demo():
    ...     return [x async for x in iterate_in_thread(lambda: iter(range(3)))]
    >>> asyncio.run(demo())
    [0, 1, 2]
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    stop = threading.Event()
    wanted = threading.Semaphore(0)  # one release per item the consumer asks for

    def produce() -> None:
        try:
            iterator = make_iterator()
            try:
                while True:
                    wanted.acquire()
                    if stop.is_set():
                        break
                    try:
                        item = next(iterator)
                    except StopIteration:
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
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
            wanted.release()
            kind, value = await queue.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        wanted.release()  # wake the thread, which then closes the iterator
