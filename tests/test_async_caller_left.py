"""An async stream whose caller left (cancelled, or closed before its end) tries no other model
and escalates no cascade, as an async call whose caller left does; an answer whose last piece
reached the consumer stays scorable."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import pytest

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.async_bridge import iterate_in_thread
from greenserv_core.backends.base import GenerationSettings
from greenserv_core.errors import ModelUnavailableError
from greenserv_core.messages import Message
from greenserv_core.routing.results import RoutedChunk
from tests.conftest import make_hashing_extractor

ASK = "What is 2 + 2?"

VIA = ["bridge", "langchain", "llama_index"]
"""The async streams that run the router's stream through :func:`iterate_in_thread`."""


class Unsure:
    """A confidence signal that always asks the cascade to escalate."""

    name = "unsure"

    def __call__(self, result: object) -> float:
        return 0.0


def _blocking(started: threading.Event, release: threading.Event, *, fails: bool) -> FakeBackend:
    """A model that sets ``started`` as it answers, works until ``release``, then answers, or
    fails having spent 5 J (its server went away)."""

    def reply(messages: Sequence[Message]) -> str:
        started.set()
        release.wait(5.0)
        if fails:
            raise ModelUnavailableError("server down", spent_joules=5.0)
        return "CHEAP-ANSWER"

    return FakeBackend("a", reply=reply)


def _router(first: FakeBackend, second: FakeBackend) -> GreenServRouter:
    """``first`` is far cheaper, so it is chosen first."""
    router = GreenServRouter([first, second], features=make_hashing_extractor(), tradeoff=0.4, seed=0)
    router.learn(ASK, first.info.name, energy_joules=0.1, latency_s=0.01)
    router.learn(ASK, second.info.name, energy_joules=500.0, latency_s=0.01)
    return router


def _stream(router: GreenServRouter, via: str, model: str | None = None) -> AsyncIterator[object]:
    """The async stream of ``ASK`` as ``via`` runs it (each is the router's stream over the bridge),
    on ``model`` (``None``: the one routed to)."""
    options = {} if model is None else {"model": model}
    if via == "bridge":
        return iterate_in_thread(lambda: router.stream(ASK, models=None if model is None else [model]))
    if via == "langchain":
        pytest.importorskip("langchain_core")
        from langchain_greenserv import ChatGreenServ

        return ChatGreenServ(router=router).astream(ASK, **options)
    pytest.importorskip("llama_index.core")
    from llama_index.core.base.llms.types import ChatMessage

    from llama_index_greenserv import GreenServLLM

    async def pieces() -> AsyncIterator[object]:
        llm = GreenServLLM(router=router)
        async for piece in await llm.astream_chat([ChatMessage(role="user", content=ASK)], **options):
            yield piece

    return pieces()


def _bridges() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "greenserv-async-bridge"}


def cancel_stream_once_started(
    pieces: Callable[[], AsyncIterator[object]], started: threading.Event, release: threading.Event
) -> None:
    """Consume ``pieces()`` as a caller does, cancel it once ``started`` is set, check the
    cancellation reached the caller, then set ``release``; returns once the bridge's thread is done."""
    before = _bridges()

    async def leave() -> None:
        async def consume() -> None:
            async for _ in pieces():
                pass

        task = asyncio.ensure_future(consume())
        assert await asyncio.to_thread(started.wait, 5.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()

    asyncio.run(leave())
    for thread in _bridges() - before:
        thread.join(5.0)
        assert not thread.is_alive()


@pytest.mark.parametrize("via", VIA)
def test_an_async_stream_whose_caller_left_tries_no_other_model(via: str, caplog: pytest.LogCaptureFixture) -> None:
    started, release = threading.Event(), threading.Event()
    other = FakeBackend("b", joules_per_token=50.0)
    router = _router(_blocking(started, release, fails=True), other)

    with caplog.at_level("WARNING", logger="greenserv"):
        cancel_stream_once_started(lambda: _stream(router, via), started, release)
    assert other.calls == 0  # was 1: the other model answered nobody
    assert router.stats_["a"]["energy_joules"] == 5.0 and router.stats_["b"]["energy_joules"] == 0.0  # was 50 J more
    assert len(router.pending_) == 0
    said = [record.getMessage() for record in caplog.records]
    assert any("the caller had left, so no other model is tried" in line for line in said)  # was "routing … to another"
    assert not any("CancelledError" in line for line in said)  # the library's own signal, logged as a fault


@pytest.mark.parametrize("via", VIA)
def test_an_async_stream_whose_caller_left_escalates_no_cascade(via: str) -> None:
    started, release = threading.Event(), threading.Event()
    first, then = _blocking(started, release, fails=False), FakeBackend("b", joules_per_token=50.0)
    router = _router(first, then)
    cascade = router.add_cascade("a", "b", signal=Unsure(), threshold=0.5)  # type: ignore[arg-type]

    waited = _router(FakeBackend("a"), FakeBackend("b", joules_per_token=50.0))
    waited.add_cascade("a", "b", signal=Unsure(), threshold=0.5)  # type: ignore[arg-type]
    answer = list(waited.stream(ASK, models=[cascade]))[-1].generation
    assert answer is not None and [step.model for step in answer.chain] == ["a", "b"]  # a caller that waits

    cancel_stream_once_started(lambda: _stream(router, via, cascade), started, release)
    assert then.calls == 0  # was 1: the second model answered nobody
    spent = (
        FakeBackend("a", reply=lambda m: "CHEAP-ANSWER")
        .generate([{"role": "user", "content": ASK}], GenerationSettings())
        .energy.joules
    )
    assert router.stats_[cascade]["energy_joules"] == spent  # the first answer, charged
    assert len(router.pending_) == 0


def test_a_stream_left_after_its_last_piece_reached_the_caller_stays_scorable() -> None:
    router = GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), seed=0)
    last: list[RoutedChunk] = []
    started, release = threading.Event(), threading.Event()

    def then_wait() -> Iterator[RoutedChunk]:  # the stream's end comes late: the caller left before it
        for piece in router.stream(ASK):
            last[:] = [piece]
            yield piece
        started.set()
        release.wait(5.0)

    cancel_stream_once_started(lambda: iterate_in_thread(then_wait), started, release)
    assert last and last[0].generation is not None
    router.feedback(last[0].decision.decision_id, 1.0)  # kept: its answer reached the caller

    async def closed_after_the_last_piece() -> str:
        pieces = iterate_in_thread(lambda: router.stream(ASK))
        async for piece in pieces:
            if piece.generation is not None:
                await pieces.aclose()  # type: ignore[attr-defined]
                return piece.decision.decision_id
        raise AssertionError("no last piece")

    router.feedback(asyncio.run(closed_after_the_last_piece()), 1.0)


def test_a_stream_cancelled_while_its_last_piece_waits_for_the_caller_cannot_be_scored() -> None:
    router = GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), seed=0)
    decisions: list[str] = []
    started, release = threading.Event(), threading.Event()

    def recorded_then_held() -> Iterator[RoutedChunk]:  # the answer is recorded, not yet handed over
        pieces = list(router.stream(ASK))
        decisions.append(pieces[-1].decision.decision_id)
        started.set()
        release.wait(5.0)
        yield from pieces

    cancel_stream_once_started(lambda: iterate_in_thread(recorded_then_held), started, release)
    assert decisions and len(router.pending_) == 0


@pytest.mark.parametrize("via", VIA)
def test_a_stream_left_with_break_as_its_loop_ends_is_closed_once_and_quietly(
    via: str, caplog: pytest.LogCaptureFixture
) -> None:
    router = GreenServRouter([FakeBackend("only", joules_per_token=1.0)], features=make_hashing_extractor(), seed=0)
    before = _bridges()

    async def leave_with_break() -> None:
        async for _ in _stream(router, via):
            break  # not closed: the loop's shutdown closes what is left open

    with caplog.at_level("ERROR", logger="asyncio"):
        asyncio.run(leave_with_break())
    for thread in _bridges() - before:
        thread.join(5.0)
        assert not thread.is_alive()
    assert not [r for r in caplog.records if r.name == "asyncio"]  # was 'aclose(): ... already running'
    assert router.stats_["only"]["energy_joules"] > 0 and len(router.pending_) == 0


def test_the_bridge_closes_once_when_closed_twice_at_once() -> None:
    closed: list[bool] = []

    def numbers() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            closed.append(True)

    async def close_twice() -> list[int]:
        bridge = iterate_in_thread(numbers)
        got = [await bridge.__anext__(), await bridge.__anext__()]
        await asyncio.gather(bridge.aclose(), bridge.aclose())
        await bridge.aclose()
        got.extend([x async for x in bridge])
        return got

    assert asyncio.run(close_twice()) == [0, 1] and closed == [True]


def test_a_bridge_left_open_when_its_loop_ends_is_closed_by_the_loop() -> None:
    router = GreenServRouter([FakeBackend("only", joules_per_token=1.0)], features=make_hashing_extractor(), seed=0)
    kept: list[object] = []
    before = _bridges()

    async def take_one() -> None:
        bridge = iterate_in_thread(lambda: router.stream(ASK))
        kept.append(bridge)  # still referenced when asyncio.run ends
        await bridge.__anext__()

    asyncio.run(take_one())
    assert not _bridges() - before  # was still running: nothing closed it until it was dropped
    assert router.stats_["only"]["energy_joules"] > 0 and len(router.pending_) == 0


def test_a_bridge_closed_while_another_task_reads_it_ends_that_reader() -> None:
    release = threading.Event()

    def slow() -> Iterator[int]:
        yield 0
        release.wait(5.0)
        yield 1

    async def close_while_reading() -> object:
        bridge = iterate_in_thread(slow)
        await bridge.__anext__()
        reader = asyncio.ensure_future(bridge.__anext__())
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(bridge.aclose())  # (an async generator raised RuntimeError here)
        await asyncio.sleep(0.05)
        release.set()
        await closing
        return await asyncio.gather(reader, return_exceptions=True)

    assert [type(r) for r in asyncio.run(close_while_reading())] == [StopAsyncIteration]  # type: ignore[union-attr]


def test_a_blocking_iterator_that_raises_stop_async_iteration_is_an_error_not_an_end() -> None:
    def odd() -> Iterator[int]:
        yield 0
        raise StopAsyncIteration

    async def read() -> list[int]:
        return [x async for x in iterate_in_thread(odd)]

    with pytest.raises(RuntimeError, match="StopAsyncIteration"):
        asyncio.run(read())
