"""Run a blocking iterator, or a blocking call, in a worker thread and await it.

Local generation is blocking (torch); adapters' async methods use this so the event loop
keeps running while a model works. Closing the async iterator early stops the producer; a
call, or a stream, cancelled (or closed) while it runs is no longer awaited (:class:`Delivery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

__all__ = ["Delivery", "ThreadBridge", "caller_left", "current_delivery", "iterate_in_thread", "run_in_thread"]

T = TypeVar("T")

logger = logging.getLogger("greenserv")

_POLL_S = 0.5
"""How often a waiting thread checks that its consumer's event loop is still open."""

_CLOSE_WAIT_S = 30.0
"""How long closing the async iterator waits for the thread to close the blocking one (it
finishes the item under way first: a model's next token)."""


class Delivery:
    """Whether the caller of a call run by :func:`run_in_thread` (or of a stream run by
    :func:`iterate_in_thread`) still awaits its answer.

    The router reads it in the worker thread (:func:`current_delivery`) before it routes and
    when an answer comes (:meth:`record`): once the caller has left (:meth:`leave`, on
    cancellation), no model is tried again and an answer that comes is not recorded as one;
    an answer recorded before the caller left, or while it left, is forgotten then, once. A
    model cannot be stopped mid-answer, so the thread runs on until its answer comes. Its lock
    is never held while an answer is recorded or forgotten (the learner's lock, a pending
    store's I/O): leaving never waits for them on the caller's event loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the flag and the list below only
        self._left = False
        self._forget: list[Callable[[], None]] = []

    @property
    def left(self) -> bool:
        """Whether the caller stopped waiting for the answer."""
        return self._left

    def check(self) -> None:
        """Raise :class:`asyncio.CancelledError` once the caller has left."""
        if self._left:
            raise asyncio.CancelledError("the caller stopped waiting for this answer")

    def record(self, record: Callable[[], T], *, abandon: Callable[[], None], forget: Callable[[], None]) -> T:
        """``record()`` (an answer's bookkeeping), unless the caller has left: then ``abandon()``
        runs instead and :class:`asyncio.CancelledError` is raised. If the caller leaves while
        ``record()`` runs, or later before the answer reaches it, ``forget()`` runs then."""
        if self._left:
            abandon()
            self.check()
        value = record()
        with self._lock:
            left = self._left
            if not left:
                self._forget.append(forget)  # leave() takes it from here
        if left:  # the caller left while it was recorded: leave() did not see it
            _forget_all([forget])
        return value

    def leave(self) -> Callable[[], None] | None:
        """The caller stopped waiting (its task was cancelled): no answer is recorded from now on.
        Returns what forgets the answers recorded for it so far (``None``: none), to run off the
        event loop, as it waits for the learner; leaving itself waits for nothing of the kind."""
        with self._lock:
            self._left = True
            forget, self._forget = self._forget, []
        return functools.partial(_forget_all, forget) if forget else None

    def delivered(self) -> None:
        """The answers recorded so far reached the caller: leaving no longer forgets them."""
        with self._lock:
            self._forget.clear()


def _forget_all(forget: list[Callable[[], None]]) -> None:
    """Run each ``forget``; one that fails is logged (nobody awaits it), and the others run."""
    for each in forget:
        try:
            each()
        except Exception:
            logger.warning("could not forget an answer whose caller stopped waiting", exc_info=True)


_DELIVERY: contextvars.ContextVar[Delivery | None] = contextvars.ContextVar("greenserv_delivery", default=None)


def current_delivery() -> Delivery | None:
    """The :class:`Delivery` of the call (or stream) run in this thread by :func:`run_in_thread`
    (:func:`iterate_in_thread`), else ``None``."""
    return _DELIVERY.get()


def caller_left() -> bool:
    """Whether this thread runs a call (:func:`run_in_thread`), or a stream
    (:func:`iterate_in_thread`), whose caller stopped waiting."""
    delivery = _DELIVERY.get()
    return delivery is not None and delivery.left


async def run_in_thread(function: Callable[[], T]) -> T:
    """``function()`` in a worker thread, as :func:`asyncio.to_thread` runs it, under a
    :class:`Delivery`. Cancelled while it runs, the cancellation propagates at once and the
    caller leaves the delivery: the thread runs on, and the router charges the answer it
    makes as it charges a failed attempt, without recording it or keeping its decision.

    >>> asyncio.run(run_in_thread(lambda: current_delivery() is not None))
    True
    """
    delivery = Delivery()
    context = contextvars.copy_context()
    context.run(_DELIVERY.set, delivery)
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, context.run, _no_stop_iteration, function)
    except asyncio.CancelledError:
        _leave(delivery, loop)
        raise


def _no_stop_iteration(function: Callable[[], T]) -> T:
    """``function()``, with a ``StopIteration`` it raises as a ``RuntimeError`` (a future cannot
    take a ``StopIteration``: the await would never end)."""
    try:
        return function()
    except StopIteration as error:
        raise RuntimeError(f"StopIteration raised in a worker thread: {error!r}") from error


def _leave(delivery: Delivery, loop: asyncio.AbstractEventLoop) -> None:
    """The caller left ``delivery``: what forgets its answers runs in a worker thread, not awaited
    (the loop never waits for the learner)."""
    forget = delivery.leave()
    if forget is not None:
        try:
            loop.run_in_executor(None, forget)
        except RuntimeError:  # the loop's executor was shut down meanwhile (or the loop closed)
            _forget_in_a_thread(forget)


def _forget_in_a_thread(forget: Callable[[], None]) -> None:
    """Run ``forget`` in a thread of its own; not while the interpreter exits, when a thread
    started never runs (and starting it may wait for ever): nothing is left to forget then."""
    if not sys.is_finalizing():
        threading.Thread(target=forget, name="greenserv-forget", daemon=True).start()


def iterate_in_thread(make_iterator: Callable[[], Iterator[T]]) -> ThreadBridge[T]:
    """Yield the items of ``make_iterator()``, which runs in a daemon thread.

    The thread takes the next item only when the consumer asks for it, so closing the async
    iterator early always closes the blocking one before it ran further, and the close
    returns once it has (a router's stream closed after its first piece never reaches its
    answer, and so cannot be scored, from the moment ``aclose()`` returns).

    It runs under a :class:`Delivery`, as :func:`run_in_thread` does: once the consumer is
    cancelled, or closes the async iterator, before its end, the caller has left (no other
    model is tried, a cascade does not escalate, an answer that comes is not recorded). An
    answer whose last piece already reached the consumer is kept (it can be scored).

    >>> async def demo():
    ...     return [x async for x in iterate_in_thread(lambda: iter(range(3)))]
    >>> asyncio.run(demo())
    [0, 1, 2]
    """
    return ThreadBridge(make_iterator)


class ThreadBridge(AsyncIterator[T]):
    """The async iterator :func:`iterate_in_thread` returns. Its event loop closes it as it
    closes an async generator left open when the loop shuts down; unlike one, :meth:`aclose` may
    be called any number of times, at once too (the loop's shutdown beside the async generator
    that wraps it, such as an adapter's stream left with ``break``), and each returns once the
    thread has closed the blocking iterator. One dropped unclosed leaves its caller's delivery,
    as a closed one does."""

    def __init__(self, make_iterator: Callable[[], Iterator[T]]) -> None:
        self._make_iterator = make_iterator
        self._loop: asyncio.AbstractEventLoop | None = None  # set when the thread starts
        self._queue: asyncio.Queue[tuple[str, object]] | None = None
        self._stop = threading.Event()
        self._closed = threading.Event()  # the thread has closed the blocking iterator
        self._wanted = threading.Semaphore(0)  # one release per item the consumer asks for
        self._delivery = Delivery()
        self._finished = False  # ended, failed, cancelled or closed: no more items
        self._ended = False  # the thread's end, or its error, reached the consumer

    def __aiter__(self) -> ThreadBridge[T]:
        return self

    def _start(self) -> asyncio.Queue[tuple[str, object]]:
        loop = self._loop = asyncio.get_running_loop()
        first_iteration = sys.get_asyncgen_hooks().firstiter
        if first_iteration is not None:  # the loop closes it at shutdown, as it closes an async generator
            first_iteration(self)  # type: ignore[arg-type]
        queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._queue = queue
        # the thread's functions hold these, not the bridge: one dropped unclosed is collected (__del__)
        stop, closed, wanted, delivery = self._stop, self._closed, self._wanted, self._delivery
        make_iterator = self._make_iterator

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
                # the caller closed the bridge: nobody reads the queue, so it is said here (not the
                # library's own signal that the caller left, which ends the stream as meant)
                if stop.is_set() and not (isinstance(error, asyncio.CancelledError) and delivery.left):
                    logger.warning("a stream the caller left raised %s: %s", type(error).__name__, error)
                post("error", error)
            finally:
                closed.set()

        context = contextvars.copy_context()
        context.run(_DELIVERY.set, self._delivery)
        threading.Thread(target=context.run, args=(produce,), name="greenserv-async-bridge", daemon=True).start()
        return queue

    async def __anext__(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        queue = self._queue if self._queue is not None else self._start()
        try:
            self._wanted.release()
            kind, value = await queue.get()
        except BaseException:  # cancelled: the thread finishes the item under way for nobody
            self._finish()
            raise
        if self._finished:  # closed by another task meanwhile: what came is for nobody
            raise StopAsyncIteration
        if kind == "end":
            self._ended = True
            self._finish()
            raise StopAsyncIteration
        if kind == "error":
            self._ended = True
            self._finish()
            assert isinstance(value, BaseException)
            if isinstance(value, StopAsyncIteration):  # (not an end: as an async generator reports it)
                raise RuntimeError("the iterator raised StopAsyncIteration") from value
            raise value
        self._delivery.delivered()  # the thread waits for the next ask: it recorded nothing since this item
        return value  # type: ignore[return-value]

    def _finish(self, *, collected: bool = False) -> None:
        """No more items: a consumer that left before the end leaves the delivery, and the thread
        is woken to close the iterator (once). ``collected``: from :meth:`__del__`, which may run in
        any thread, so what forgets the answers runs in a thread of its own, not on the loop."""
        if self._finished:
            return
        self._finished = True
        if not self._ended:
            if collected:
                forget = self._delivery.leave()
                if forget is not None:
                    _forget_in_a_thread(forget)
            elif self._loop is not None:
                _leave(self._delivery, self._loop)
        self._stop.set()
        self._wanted.release()

    async def aclose(self) -> None:
        """Stop early: returns once the thread has closed the blocking iterator (it finishes the
        item under way first); each of several closes, at once or later, returns then too."""
        if self._queue is None:  # never started: nothing runs
            self._finished = True
            return
        self._finish()
        if not self._closed.is_set():
            with contextlib.suppress(RuntimeError):  # a loop shutting down its threads: it closes on its own
                await asyncio.to_thread(self._closed.wait, _CLOSE_WAIT_S)

    def __del__(self) -> None:
        """Dropped unclosed mid-stream: the caller has left, and the thread closes the iterator."""
        if self._queue is not None:  # (never started: nothing runs)
            self._finish(collected=True)
