"""Run a blocking iterator in a worker thread and consume it asynchronously.

Local generation is blocking (torch); adapters' async methods use this so the event loop
keeps running while a model works. Closing the async iterator early stops the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

__all__ = ["iterate_in_thread"]

T = TypeVar("T")

_POLL_S = 0.5
"""How often a waiting thread checks that its consumer's event loop is still open."""

_CLOSE_WAIT_S = 30.0
"""How long closing the async iterator waits for the thread to close the blocking one (it
finishes the item under way first: a model's next token)."""


async def iterate_in_thread(make_iterator: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Yield the items of ``make_iterator()``, which runs in a daemon thread.

    The thread takes the next item only when the consumer asks for it, so closing the async
    iterator early always closes the blocking one before it ran further, and the close
    returns once it has (a router's stream closed after its first piece never reaches its
    answer, and so cannot be scored, from the moment ``aclose()`` returns).

    >>> async def demo():
    ...     return [x async for x in iterate_in_thread(lambda: iter(range(3)))]
    >>> asyncio.run(demo())
    [0, 1, 2]
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    stop = threading.Event()
    closed = threading.Event()  # the thread has closed the blocking iterator
    wanted = threading.Semaphore(0)  # one release per item the consumer asks for

    def post(kind: str, value: object) -> None:
        """Hand ``value`` to the consumer; a loop closed meanwhile (``asyncio.run`` ending after
        the consumer stopped) takes nothing more, and the thread ends quietly."""
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed
            stop.set()

    def asked() -> bool:
        """Wait until the consumer asks for an item; ``False`` once it stopped or its loop closed
        (a stream left open when the loop closes must not hold the thread forever)."""
        while not wanted.acquire(timeout=_POLL_S):
            if loop.is_closed():
                stop.set()
                return False
        return not stop.is_set()

    def produce() -> None:
        try:
            iterator = make_iterator()
            try:
                while asked():
                    try:
                        item = next(iterator)
                    except StopIteration:
                        break
                    post("item", item)
            finally:
                close = getattr(iterator, "close", None)
                if callable(close):
                    close()  # a generator's finally blocks run now (e.g. generation stops)
            post("end", None)
        except BaseException as error:
            post("error", error)
        finally:
            closed.set()

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
    except GeneratorExit:  # closed (aclose): return once the thread has closed it too
        stop.set()
        wanted.release()
        if not closed.is_set():
            with contextlib.suppress(RuntimeError):  # a loop shutting down its threads: it closes on its own
                await asyncio.to_thread(closed.wait, _CLOSE_WAIT_S)
        raise
    finally:  # ended, failed or cancelled: the thread closes the iterator on its own
        stop.set()
        wanted.release()  # wake the thread, which then closes the iterator
