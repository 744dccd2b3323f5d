"""The serving paths around a failing or vanishing model: what failed attempts cost on every
path, a model removed while its query was routed, a decision id held through failover, the
features extracted once, an async stream closed early, and bad batch and option input."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from greenserv_core import FakeBackend, GreenServRouter, InvalidInputError, NoEligibleModelError
from greenserv_core.async_bridge import iterate_in_thread
from greenserv_core.backends.base import GenerationResult, GenerationSettings, StreamChunk
from greenserv_core.errors import ModelUnavailableError, UnknownDecisionError
from greenserv_core.messages import Message
from tests.async_checks import cancel_once_started
from tests.conftest import make_hashing_extractor
from tests.services import redis_server

ASK = "What is 2 + 2?"


class Failing(FakeBackend):
    """Spends 5 J, then fails: before answering, or (``after``) after that many stream pieces."""

    def __init__(self, name: str, *, after: int | None = None, **options: float) -> None:
        super().__init__(name, **options)  # type: ignore[arg-type]
        self.after = after

    def _down(self, what: str) -> ModelUnavailableError:
        return ModelUnavailableError(f"{self.info.name} {what}", spent_joules=5.0, spent_s=0.1)

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        raise self._down("is down")

    def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
        if self.after is None:
            raise self._down("is down")
        for _ in range(self.after):
            yield StreamChunk("piece ")
        raise self._down("dropped mid-stream")


def _router(first: FakeBackend, second: FakeBackend | None = None) -> GreenServRouter:
    """``first`` is far cheaper, so it is chosen first; a budget counts what is spent."""
    pool = [first, second or FakeBackend("b", joules_per_token=50.0)]
    router = GreenServRouter(pool, features=make_hashing_extractor(), tradeoff=0.4, seed=0, energy_budget="1000J/query")
    router.learn(ASK, first.info.name, energy_joules=0.1, latency_s=0.01)
    router.learn(ASK, pool[1].info.name, energy_joules=500.0, latency_s=0.01)
    return router


def _joules_of(backend: FakeBackend) -> float:
    """What ``backend`` spends on the whole answer to ``ASK``."""
    return backend.generate([{"role": "user", "content": ASK}], GenerationSettings()).energy.joules


def _spent(router: GreenServRouter) -> tuple[float, float]:
    assert router.budget_ is not None
    return router.stats_["a"]["energy_joules"], router.budget_.spent_joules


def test_a_failed_attempt_is_charged_on_every_path_once() -> None:
    answered = _router(Failing("a", joules_per_token=0.01))
    generation = answered.generate(ASK)
    assert generation.model == "b" and [f.energy_joules for f in generation.failed_attempts] == [5.0]
    assert _spent(answered)[0] == 5.0

    mid_stream = _router(Failing("a", after=2, joules_per_token=0.01))
    stream = mid_stream.stream(ASK)
    first = next(stream)
    with pytest.raises(ModelUnavailableError, match="mid-stream"):
        list(stream)
    assert _spent(mid_stream) == (5.0, 5.0)  # the answer was lost, the joules were not
    with pytest.raises(UnknownDecisionError):
        mid_stream.feedback(first.decision.decision_id, 1.0)

    closed = _router(Failing("a", joules_per_token=0.01))
    stream = closed.stream(ASK)
    next(stream)  # b streams: a failed before its first piece
    stream.close()
    b_spent = _joules_of(FakeBackend("b", joules_per_token=50.0))
    assert closed.stats_["a"]["energy_joules"] == 5.0 and closed.stats_["b"]["energy_joules"] == b_spent
    assert closed.budget_ is not None and closed.budget_.spent_joules == 5.0 + b_spent  # b ran, unread

    nobody = _router(Failing("a", joules_per_token=0.01), Failing("b", joules_per_token=50.0))
    with pytest.raises(NoEligibleModelError):
        nobody.generate(ASK)
    assert _spent(nobody) == (5.0, 10.0)
    again = nobody.route(ASK, models=["a"])  # the id of the failed query is free; others route as before
    assert again.model == "a"


def test_a_model_removed_while_its_query_was_routed_fails_the_query_over() -> None:
    router = _router(FakeBackend("a", joules_per_token=0.01))
    route = router._executor.route

    def route_then_remove(*args: object) -> object:
        decision = route(*args)  # type: ignore[arg-type]
        if decision.model == "a" and "a" in router.models:
            router.remove_model("a")  # another thread, right between the decision and the model's call
        return decision

    router._executor.route = route_then_remove  # type: ignore[method-assign]
    assert router.generate(ASK).model == "b"
    router.add_model(FakeBackend("a", joules_per_token=0.01))
    router.learn(ASK, "a", energy_joules=0.1, latency_s=0.01)
    assert list(router.stream(ASK))[-1].generation.model == "b"  # type: ignore[union-attr]


def test_a_callers_decision_id_stays_reserved_while_its_query_fails_over() -> None:
    router = _router(Failing("a", joules_per_token=0.01))
    fail_over = router.learner_.fail_over
    taken: list[str] = []

    def fail_over_then_retry(decision: object) -> None:
        fail_over(decision)  # type: ignore[arg-type]
        try:  # a client retrying the same id while the first call is still being routed
            router.generate(ASK, decision_id="run-42", models=["b"])
        except InvalidInputError as error:
            taken.append(str(error))

    router.learner_.fail_over = fail_over_then_retry  # type: ignore[method-assign]
    assert router.generate(ASK, decision_id="run-42").model == "b"
    assert taken == ["decision id 'run-42' is already in use"]


def test_a_query_that_fails_over_is_embedded_and_clustered_once() -> None:
    router = _router(Failing("a", joules_per_token=0.01))
    before = int(router.features.clusterer.counts_.sum())
    router.generate(ASK)
    assert int(router.features.clusterer.counts_.sum()) == before + 1


def test_an_async_stream_closed_early_leaves_no_decision_to_score() -> None:
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("large", joules_per_token=9.0)], features=make_hashing_extractor(), seed=0
    )

    async def first_piece_then_close() -> str:
        pieces = iterate_in_thread(lambda: router.stream("Write a poem about rain in the city at night please"))
        first = await pieces.__anext__()
        await asyncio.sleep(0.02)  # the consumer is slower than the model
        await pieces.aclose()
        await asyncio.sleep(0.05)
        return first.decision.decision_id

    for _ in range(5):
        decision_id = asyncio.run(first_piece_then_close())
        with pytest.raises(UnknownDecisionError):
            router.feedback(decision_id, 1.0)


def test_an_async_stream_closed_early_cannot_be_scored_once_its_close_returns() -> None:
    router = GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), seed=0)

    async def first_piece_then_close_and_score() -> None:
        pieces = iterate_in_thread(lambda: router.stream("Write a poem about rain in the city at night please"))
        first = await pieces.__anext__()
        await pieces.aclose()
        with pytest.raises(UnknownDecisionError):  # was accepted, then never learned
            router.feedback(first.decision.decision_id, 1.0)

    for _ in range(5):
        asyncio.run(first_piece_then_close_and_score())
    assert not router.learner_.pending_._awaiting  # type: ignore[attr-defined]


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_stream_scored_then_closed_or_failed_no_longer_awaits_its_outcome(store: str, tmp_path: Path) -> None:
    def scored_then_ended(router: GreenServRouter) -> list[str]:
        ids = []
        stream = router.stream(ASK)  # closed after its first piece
        ids.append(next(stream).decision.decision_id)
        router.feedback(ids[-1], 1.0)
        stream.close()

        async def closed_through_the_bridge() -> str:
            pieces = iterate_in_thread(lambda: router.stream(ASK))
            first = await pieces.__anext__()
            router.feedback(first.decision.decision_id, 1.0)
            await pieces.aclose()
            return first.decision.decision_id

        ids.append(asyncio.run(closed_through_the_bridge()))
        stream = router.stream(ASK, models=["down"])  # fails mid-stream
        ids.append(next(stream).decision.decision_id)
        router.feedback(ids[-1], 1.0)
        with pytest.raises(ModelUnavailableError, match="mid-stream"):
            list(stream)
        return ids

    pool = [FakeBackend("a"), Failing("down", after=2)]
    if store == "memory":
        router = GreenServRouter(pool, features=make_hashing_extractor(), seed=0)
        scored_then_ended(router)
        assert router.learner_.pending_.state_dict()["awaiting"] == []  # was kept for good, and saved
        return
    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:
        pending = RedisPendingDecisions(url=url, prefix="t")
        router = GreenServRouter(pool, features=make_hashing_extractor(), pending=pending, seed=0)
        ids = scored_then_ended(router)
        assert not pending.client.exists(*[pending._awaiting(i) for i in ids])


@pytest.mark.parametrize("batch", ["Hello", [{"role": "user", "content": "Hello"}]])
def test_a_batch_that_is_one_query_is_refused(batch: object) -> None:
    router = _router(FakeBackend("a"))
    with pytest.raises(InvalidInputError, match="generate_batch takes a list of queries"):
        router.generate_batch(batch)  # type: ignore[arg-type]
    assert len(router.pending_) == 0


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("temperature", None, "temperature must be a number"),
        ("temperature", "0.5", "temperature must be a number"),
        ("top_p", None, "top_p must be a number"),
        ("seed", "abc", "seed must be None or an integer"),
        ("seed", 1.5, "seed must be None or an integer"),
        ("max_time_s", True, "max_time_s must be a positive number"),
        ("score_tool_calls", "no", "score_tool_calls must be True or False"),
    ],
)
def test_an_option_of_the_wrong_type_is_named(option: str, value: object, named: str) -> None:
    router = _router(FakeBackend("a"))
    with pytest.raises(InvalidInputError, match=named):
        router.generate(ASK, **{option: value})  # type: ignore[arg-type]


def test_a_stream_left_open_when_its_event_loop_closes_ends_its_thread_and_its_decision() -> None:
    import gc
    import threading
    import time

    router = GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), seed=0)
    loop = asyncio.new_event_loop()
    held: list[object] = []

    async def start() -> str:
        pieces = iterate_in_thread(lambda: router.stream("Write a poem about rain in the city at night please"))
        held.append(pieces)
        first = await pieces.__anext__()
        return first.decision.decision_id

    decision_id = loop.run_until_complete(start())
    loop.close()  # without shutting the async generators down
    held.clear()
    gc.collect()
    deadline = time.monotonic() + 10
    while any(t.name == "greenserv-async-bridge" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(t.name == "greenserv-async-bridge" for t in threading.enumerate())
    with pytest.raises(UnknownDecisionError):
        router.feedback(decision_id, 1.0)


def test_breaking_out_of_an_async_stream_leaves_no_thread_error(recwarn: pytest.WarningsRecorder) -> None:
    import threading

    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)  # type: ignore[assignment,return-value]
    try:
        router = GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), seed=0)

        async def first_only() -> None:
            async for _ in iterate_in_thread(lambda: router.stream("Write a poem about rain please")):
                break

        for _ in range(5):
            asyncio.run(first_only())
        import time

        time.sleep(1.0)
    finally:
        threading.excepthook = previous
    assert errors == []


def test_a_stream_closed_before_its_answer_charges_what_the_model_spent() -> None:
    router = _router(FakeBackend("a", joules_per_token=0.5))
    stream = router.stream(ASK)
    first = next(stream)
    stream.close()
    spent = _joules_of(FakeBackend("a", joules_per_token=0.5))
    assert _spent(router) == (spent, spent)
    with pytest.raises(UnknownDecisionError):  # and the unfinished answer cannot be scored
        router.feedback(first.decision.decision_id, 1.0)

    read = _router(FakeBackend("a", joules_per_token=0.5))
    generation = list(read.stream(ASK))[-1].generation
    assert generation is not None and _spent(read) == (spent, spent)  # a whole answer is charged once


def test_a_backend_that_reports_nothing_when_closed_charges_nothing() -> None:
    class Silent(FakeBackend):
        def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
            yield StreamChunk("piece ")
            yield StreamChunk("", self.generate(messages, settings))

    router = _router(Silent("a", joules_per_token=0.5))
    stream = router.stream(ASK)
    next(stream)
    stream.close()
    assert _spent(router) == (0.0, 0.0)  # the router does not invent joules


# ---- review fixes (2026-12-05) ----------------------------------------------------------------------
def test_a_batch_larger_than_the_pending_store_still_returns_every_answer(caplog: pytest.LogCaptureFixture) -> None:
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("large")], features=make_hashing_extractor(), max_pending=10, seed=0
    )
    answers = router.generate_batch([f"question {i}" for i in range(20)], max_new_tokens=4)  # raised
    assert len(answers) == 20 and "left the pending store before its answer came" in caplog.text
    store = router.learner_.pending_
    router.generate_batch(["one more"] * 5, max_new_tokens=4)  # answered ones go first, never those under way
    assert len(store) == 10


def test_a_model_replaced_under_its_name_after_routing_does_not_answer() -> None:
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
    with_tools = FakeBackend("b", capabilities=frozenset({"chat_template", "tools"}))
    router = GreenServRouter([FakeBackend("a"), with_tools], features=make_hashing_extractor(), seed=0)
    route = router._executor.route
    stand_in = FakeBackend("b", joules_per_token=1000.0)  # no tools, far dearer

    def replaced_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        decision = route(*args, **kwargs)
        if decision.model == "b" and router.backend("b") is with_tools:
            router.remove_model("b")
            router.add_model(stand_in)
        return decision

    router._executor.route = replaced_meanwhile  # type: ignore[method-assign]
    with pytest.raises(NoEligibleModelError, match="replaced in the pool"):
        router.generate("What is 2 + 2?", tools=tools, max_joules=50.0)
    assert stand_in.calls == 0  # was answered by the stand-in, unchecked


def test_a_failed_batch_charges_every_querys_share() -> None:
    class BatchDown(FakeBackend):
        def generate_batch(self, batch, settings):  # type: ignore[no-untyped-def]
            raise ModelUnavailableError("batch down", spent_joules=12.0, spent_s=1.0)

    router = GreenServRouter(
        [BatchDown("a"), FakeBackend("b")], features=make_hashing_extractor(), energy_budget="1000J/query", seed=0
    )
    with pytest.raises(NoEligibleModelError):
        router.generate_batch(["x one", "y two", "z three"], models=["a"])
    assert router.stats_["a"]["decisions"] == 0 and router.stats_["a"]["energy_joules"] == 12.0  # was 2 and 4 J
    assert router.budget_ is not None and router.budget_.spent_joules == 12.0


def test_a_failure_that_reports_no_number_of_joules_still_fails_over() -> None:
    class Garbled(FakeBackend):
        def generate(self, messages, settings):  # type: ignore[no-untyped-def]
            raise ModelUnavailableError("down", spent_joules=float("nan"))

    router = GreenServRouter(
        [Garbled("a"), FakeBackend("b")], features=make_hashing_extractor(), policy="random", seed=0
    )
    answers = [router.generate(f"hi {i}", decision_id=f"d{i}", max_new_tokens=4) for i in range(8)]  # raised
    failed = [attempt for answer in answers for attempt in answer.failed_attempts]
    assert {a.model for a in answers} == {"b"} and failed and all(a.energy_joules == 0.0 for a in failed)
    assert not router.learner_.rerouting_  # the id was held for good


def test_a_full_pending_store_drops_answered_decisions_before_those_under_way() -> None:
    import numpy as np

    from greenserv_core.pending import PendingDecision, PendingDecisions

    def decision(name: str) -> PendingDecision:
        return PendingDecision(name, "m", np.zeros(2), "chat", 5, 0.4, created_at=0.0)

    store = PendingDecisions(max_size=2, clock=lambda: 0.0)
    under_way, answered = decision("under-way"), decision("answered")
    store.add(under_way)
    store.add(answered)
    answered.energy_joules = 1.0
    store.add(decision("newest"))
    assert store.known("under-way") and [d.decision_id for d in store] == ["under-way", "newest"]


def test_decisions_and_answers_hold_no_backend_and_pickle() -> None:
    import pickle
    import threading

    class Locked(FakeBackend):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.lock = threading.Lock()  # as an HTTP client holds

    router = GreenServRouter([Locked("a"), Locked("b")], features=make_hashing_extractor(), seed=0)
    answer = router.generate("hi", max_new_tokens=4)
    assert pickle.loads(pickle.dumps(answer)).model == answer.model  # raised: cannot pickle '_thread.lock'


def test_an_outcome_for_an_id_never_issued_charges_nothing() -> None:
    router = GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), energy_budget=100.0, seed=0)
    with pytest.raises(UnknownDecisionError):
        router.record_outcome("no-such-id", energy_joules=1000.0, latency_s=1.0)
    assert router.budget_ is not None and router.budget_.spent_joules == 0.0


def test_a_cascade_batch_larger_than_the_pending_store_answers_every_query() -> None:
    from tests.test_cascade_routing import _router

    router = _router(0.2, max_pending=2)
    answers = router.generate_batch([f"What is {i} + 2?" for i in range(6)], max_new_tokens=8)
    assert [len(a.chain) for a in answers] == [2] * 6  # escalated by the fixed threshold where expired


def test_a_failed_attempts_numpy_joules_are_kept() -> None:
    import numpy as np

    from greenserv_core.routing.results import FailedAttempt

    attempt = FailedAttempt.of("m", ModelUnavailableError("down", spent_joules=np.float32(3.0), spent_measured=True))
    assert (attempt.energy_joules, attempt.energy_measured) == (3.0, True)


def test_an_answer_whose_decision_left_the_pending_store_still_teaches_its_cost() -> None:
    router = GreenServRouter(
        [FakeBackend("small", joules_per_token=2.0)],
        features=make_hashing_extractor(),
        max_pending=10,
        energy_budget="1000J/query",
        seed=0,
    )
    answers = router.generate_batch([f"question {i}" for i in range(20)], max_new_tokens=4)
    spent = sum(answer.energy_joules for answer in answers)
    assert router.budget_ is not None and router.budget_.spent_joules == pytest.approx(spent)
    assert router.stats_["small"]["energy_joules"] == pytest.approx(spent)
    pacer = router.learner_.pacer_
    assert pacer is not None and pacer.answers_ == 20  # was 10: 10 charged as failures
    assert router.learner_.energy_.ridge_.n[router.learner_.energy_.ridge_.rows(["small"])][0] == 20  # was 10


def test_an_expired_answer_of_a_model_removed_and_added_back_before_its_decision_is_learned() -> None:
    from greenserv_core.pending import PendingDecisions

    now = [1000.0]

    class Slow(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings):  # type: ignore[no-untyped-def]
            now[0] += 100.0  # the decision (kept 10 s) expires while the model answers
            return super().generate(messages, settings)

    router = GreenServRouter(
        [Slow("m", joules_per_token=2.0), FakeBackend("other")],
        features=make_hashing_extractor(),
        seed=0,
        pending=PendingDecisions(ttl_s=10.0, clock=lambda: now[0]),
        tradeoff=0.0,
    )
    router.remove_model("m")
    router.add_model(Slow("m", joules_per_token=2.0))
    answer = router.generate("What is 2 + 2?", models=["m"])
    assert router.stats_["m"]["energy_joules"] == answer.energy_joules  # was 0: "m" had once been removed


def test_a_wait_for_on_an_async_stream_keeps_its_timeout() -> None:
    import time

    def stalled() -> Iterator[str]:  # a server that takes 1.5 s for its next piece
        yield "first"
        time.sleep(1.5)
        yield "second"

    async def main() -> float:
        pieces = iterate_in_thread(stalled)
        await pieces.__anext__()
        started = time.perf_counter()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pieces.__anext__(), timeout=0.2)
        return time.perf_counter() - started

    assert asyncio.run(main()) < 1.0  # was 1.5 s: a cancelled stream waited for the thread's next item


class _DownAlways(FakeBackend):
    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        raise ModelUnavailableError("server down")


def _taught_to_prefer_large(router: GreenServRouter, queries: Sequence[str]) -> GreenServRouter:
    for query in list(queries) * 5:
        router.learn(query, "large", score=1.0, energy_joules=9.0, latency_s=0.1)
        router.learn(query, "small", score=0.0, energy_joules=1.0, latency_s=0.1)
    return router


def test_a_query_whose_decision_the_store_dropped_still_fails_over() -> None:
    queries = ["What is 2 + 2?", "Who wrote Hamlet?", "Tell me a joke.", "Solve 5x = 20."]
    router = GreenServRouter(
        [FakeBackend("small", joules_per_token=1.0), _DownAlways("large", joules_per_token=9.0)],
        features=make_hashing_extractor(),
        tradeoff=0.0,
        seed=0,
        max_pending=2,  # fewer than the batch: the first decisions leave the store before their model fails
    )
    _taught_to_prefer_large(router, queries)
    answers = router.generate_batch(queries)  # was InvalidInputError: decision id ... is already in use
    assert [answer.model for answer in answers] == ["small"] * 4


def test_a_failed_batchs_queries_that_never_ran_are_not_counted_as_decisions() -> None:
    router = GreenServRouter(
        [FakeBackend("a", context_window=64), FakeBackend("b", context_window=64)],
        features=make_hashing_extractor(),
        seed=0,
    )
    with pytest.raises(NoEligibleModelError):  # the second query fits no model: nothing runs
        router.generate_batch(["x one", "word " * 100, "z three"], max_new_tokens=8)
    assert router.stats_["a"]["decisions"] + router.stats_["b"]["decisions"] == 0  # was 1
    assert len(router.pending_) == 0


def test_a_failed_batch_counts_only_the_queries_of_a_group_that_ran() -> None:
    class BreaksFirst(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            if self.calls == 0:
                self.calls += 1
                raise RuntimeError("a bug in the backend, on the first query")
            return super().generate(messages, settings)

    router = GreenServRouter([BreaksFirst("only")], features=make_hashing_extractor(), seed=0)
    with pytest.raises(RuntimeError, match="a bug"):
        router.generate_batch(["q one", "q two", "q three", "q four"], max_new_tokens=8)
    assert router.stats_["only"]["decisions"] == 1  # was 4: the group's queries that never ran counted


def test_a_failed_batch_withdraws_the_queries_a_refused_batch_left_unrun() -> None:
    from greenserv_core.errors import BatchItemsUnavailableError

    class NamesNone(FakeBackend):
        def generate_batch(
            self, batch: Sequence[Sequence[Message]], settings: GenerationSettings
        ) -> list[GenerationResult]:
            raise BatchItemsUnavailableError({})  # names none of them: each query goes alone

        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            raise RuntimeError("a bug in the backend")

    router = GreenServRouter([NamesNone("solo")], features=make_hashing_extractor(), seed=0)
    with pytest.raises(RuntimeError, match="a bug"):
        router.generate_batch(["a?", "b?", "c?"], max_new_tokens=8)
    assert router.stats_["solo"]["decisions"] == 1  # was 3: the two that never ran counted


def test_unavailable_errors_with_fields_of_their_own_pickle_and_copy() -> None:
    import copy
    import pickle

    from greenserv_core.errors import BatchItemsUnavailableError, CascadeMemberUnavailableError

    cascade = CascadeMemberUnavailableError(
        "big is down", member="big", spent_joules=2.0, spent_s=0.5, spent_source="nvml", spent_measured=True
    )
    batch = BatchItemsUnavailableError({1: "past the context window"})
    batch.spent_joules = 3.0
    for error in (cascade, batch):
        for back in (pickle.loads(pickle.dumps(error)), copy.copy(error)):  # were TypeError / AttributeError
            assert type(back) is type(error) and back.args == error.args and vars(back) == vars(error)


def test_a_call_whose_caller_left_tries_no_other_model_and_leaves_no_decision() -> None:
    import threading
    import time

    from greenserv_core.async_bridge import run_in_thread

    class SlowlyDown(Failing):  # spends 5 J over 0.3 s, then fails
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            time.sleep(0.3)
            return super().generate(messages, settings)

    class Counted(FakeBackend):
        calls = 0

        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            Counted.calls += 1
            return super().generate(messages, settings)

    router = _router(SlowlyDown("a"), Counted("b", joules_per_token=50.0))

    async def left() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(run_in_thread(lambda: router.generate(ASK)), 0.05)

    asyncio.run(left())  # returns once the worker thread is done
    assert Counted.calls == 0 and _spent(router) == (5.0, 5.0) and len(router.pending_) == 0

    router = _router(FakeBackend("a"))
    answered, release = threading.Event(), threading.Event()

    def answer_then_wait() -> str:  # the caller leaves after the answer was recorded, before it is handed over
        decision_id = router.generate(ASK).decision_id
        answered.set()
        release.wait(5.0)
        return decision_id

    cancel_once_started(answer_then_wait, answered, release)
    assert len(router.pending_) == 0  # its answer never reached anyone: it cannot be scored


def test_leaving_while_an_answer_is_recorded_waits_for_nothing_and_it_is_forgotten_once() -> None:
    import threading
    import time

    from greenserv_core.async_bridge import Delivery

    done: list[str] = []
    recording, release = threading.Event(), threading.Event()

    def record() -> str:  # the learner's lock, held elsewhere for a store round-trip
        recording.set()
        release.wait(0.5)
        return "answer"

    def noted(what: str) -> Callable[[], None]:
        return lambda: done.append(what)

    during = Delivery()
    worker = threading.Thread(target=lambda: during.record(record, abandon=noted("abandoned"), forget=noted("during")))
    worker.start()
    assert recording.wait(5.0)
    started = time.monotonic()
    forget = during.leave()  # on the event loop: it must not wait for the recording
    assert time.monotonic() - started < 0.25  # was about 0.5 s: until the recording ended
    assert forget is None and during.left  # nothing recorded yet: the recording thread forgets it
    release.set()
    worker.join(5.0)
    assert done == ["during"]  # forgotten once, not kept

    after = Delivery()  # recorded, then left: what leave() returns forgets it, once
    assert after.record(lambda: "answer", abandon=noted("abandoned"), forget=noted("after")) == "answer"
    forget = after.leave()
    assert forget is not None and done == ["during"]
    forget()
    assert done == ["during", "after"] and after.leave() is None

    with pytest.raises(asyncio.CancelledError):  # left before: not recorded at all
        after.record(lambda: done.append("kept"), abandon=noted("abandoned"), forget=noted("again"))
    assert done == ["during", "after", "abandoned"]


def test_a_call_cancelled_while_learning_is_paused_leaves_the_event_loop_free() -> None:
    import threading
    import time

    from greenserv_core.async_bridge import run_in_thread

    answering, answer, paused, release = (threading.Event() for _ in range(4))

    def reply(messages: Sequence[Message]) -> str:
        answering.set()
        answer.wait(5.0)
        return "4"

    router = _router(FakeBackend("a", joules_per_token=0.01, reply=reply))

    def pause_learning() -> None:  # as SharedLearning.save does for a store round-trip
        with router.learning_paused():
            paused.set()
            release.wait(0.5)

    async def cancelled() -> float:
        call = asyncio.ensure_future(run_in_thread(lambda: router.generate(ASK)))
        await asyncio.to_thread(answering.wait, 5.0)
        threading.Thread(target=pause_learning).start()
        await asyncio.to_thread(paused.wait, 5.0)
        answer.set()  # its answer comes: recording it waits for the learner
        await asyncio.sleep(0.05)
        started = time.monotonic()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        took = time.monotonic() - started
        release.set()
        return took

    assert asyncio.run(cancelled()) < 0.25  # was about 0.45 s: the whole loop waited for the learner
    assert len(router.pending_) == 0 and router.stats_["a"]["energy_joules"] > 0  # charged, not scorable


def test_a_cascade_whose_caller_left_keeps_its_first_answer_and_runs_no_second_model() -> None:
    import math
    import threading

    from greenserv_core.bandits.static import StaticPolicy
    from greenserv_core.cascades import EscalationModel

    class Pinned(StaticPolicy):  # always the cascade, whose second model is worth paying for
        def _estimates(self, context: Any, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
            return {arm: (0.9 if arm == "b" else 0.0, 0.0) for arm in arms}

    asked, go = threading.Event(), threading.Event()

    def unsure(messages: Sequence[Message]) -> str:
        asked.set()
        go.wait(5.0)
        return "CHEAP-ANSWER"

    def cascade() -> tuple[GreenServRouter, FakeBackend, FakeBackend]:
        small = FakeBackend("a", joules_per_token=1.0, reply=unsure, logprobs=lambda m, t: [math.log(0.2)])
        big = FakeBackend("b", joules_per_token=5.0)
        features = make_hashing_extractor()
        router = GreenServRouter(
            [small, big],
            cascades=[("a", "b")],
            features=features,
            policy=Pinned(features.dimension, arm="a->b"),
            tradeoff=0.4,
            seed=0,
            escalation=EscalationModel(features.dimension, keep_rate=0.0, informed_after=0, seed=0),
        )
        return router, small, big

    awaited, _, big = cascade()
    go.set()
    assert awaited.generate(ASK).model == "a->b" and big.calls == 1  # a caller that waits: it escalates
    go.clear()
    asked.clear()
    router, small, big = cascade()

    cancel_once_started(lambda: router.generate(ASK), asked, go)
    assert big.calls == 0 and len(router.pending_) == 0  # was 1: the second model answered nobody
    assert router.stats_["a->b"]["energy_joules"] == _joules_of(small)  # the first answer, charged


def test_a_cascade_whose_caller_left_asks_its_first_model_no_verifying_question() -> None:
    """After the first answer, a verifying signal still asked the first model a second question
    (and the fixed threshold, with no confidence, escalated) for a caller that had left."""
    import threading

    from greenserv_core.cascades import CascadeBackend
    from greenserv_core.confidence.base import Verification

    asked, go = threading.Event(), threading.Event()
    verified: list[str] = []

    class Verifying:
        name = "counting-verification"

        def verify(self, messages: Sequence[Message], answer: GenerationResult, model: Any) -> Verification:
            verified.append(answer.text)
            return Verification(0.1)  # unsure: the threshold escalates

    def slow(messages: Sequence[Message]) -> str:
        asked.set()
        go.wait(5.0)
        return "CHEAP-ANSWER"

    def cascade() -> tuple[CascadeBackend, FakeBackend]:
        big = FakeBackend("big", joules_per_token=5.0)
        return CascadeBackend(FakeBackend("small", reply=slow), big, signal=Verifying(), threshold=0.5), big

    waited, big = cascade()
    go.set()
    assert waited.generate([{"role": "user", "content": "Hi"}], GenerationSettings()).text != "CHEAP-ANSWER"
    assert verified == ["CHEAP-ANSWER"] and big.calls == 1  # a caller that waits: asked, then escalated
    go.clear()
    asked.clear()
    verified.clear()
    left, big = cascade()

    cancel_once_started(lambda: left.generate([{"role": "user", "content": "Hi"}], GenerationSettings()), asked, go)
    assert verified == [] and big.calls == 0


# ---- review fixes (2026-12-06) ----------------------------------------------------------------------
def test_a_refused_batch_item_that_never_failed_over_is_not_counted_as_a_decision() -> None:
    from greenserv_core.errors import BatchItemsUnavailableError

    class RefusesLong(FakeBackend):
        def generate_batch(
            self, batch: Sequence[Sequence[Message]], settings: GenerationSettings
        ) -> list[GenerationResult]:
            unfit = {i: "too long" for i, messages in enumerate(batch) if "LONG" in str(messages[-1]["content"])}
            if unfit:
                raise BatchItemsUnavailableError(unfit)
            return [self.generate(messages, settings) for messages in batch]

    for batch in (["LONG one", "short two"], ["LONG one", "LONG two", "short three"]):
        router = GreenServRouter([RefusesLong("a")], features=make_hashing_extractor(), seed=0)
        with pytest.raises(NoEligibleModelError):  # the first refused query finds no other model
            router.generate_batch(batch, max_new_tokens=8)
        assert router.stats_["a"]["decisions"] == 0, batch  # was 1: the second refused query stayed counted
        assert len(router.pending_) == 0


# ---- review fixes (2026-12-06) ----------------------------------------------------------------------
def test_joules_spent_before_an_error_other_than_a_failure_are_charged() -> None:
    """A cascade's confidence signal that gives what the cascade refuses, and a backend whose
    latency reads NaN: the query fails with that error, and what the model spent is charged to
    its tally and the budget, as a failed attempt's is (nothing was charged)."""

    class Unreadable:
        name = "unreadable"

        def __call__(self, result: GenerationResult) -> Any:
            return "high"  # not a number

    spends = _joules_of(FakeBackend("small", joules_per_token=1.0)), _joules_of(FakeBackend("m", joules_per_token=2.0))
    for streamed in (False, True):

        def run(router: GreenServRouter, model: str, streamed: bool = streamed) -> None:
            with pytest.raises(InvalidInputError):
                if streamed:
                    list(router.stream(ASK, models=[model]))
                else:
                    router.generate(ASK, models=[model])

        small, big = FakeBackend("small", joules_per_token=1.0), FakeBackend("big", joules_per_token=9.0)
        cascade = GreenServRouter([small, big], features=make_hashing_extractor(), seed=0, energy_budget="1e6J/query")
        cascade.add_cascade("small", "big", signal=Unreadable())  # type: ignore[arg-type]
        run(cascade, "small->big")
        assert small.calls == 1 and big.calls == 0
        assert cascade.budget_ is not None and cascade.budget_.spent_joules == spends[0]  # was 0.0
        assert cascade.stats_["small->big"]["energy_joules"] == spends[0]
        assert len(cascade.pending_) == 0

        nan = FakeBackend("m", joules_per_token=2.0, seconds_per_token=float("nan"))
        timed = GreenServRouter(
            [nan, FakeBackend("n")], features=make_hashing_extractor(), seed=0, energy_budget="1e6J/query"
        )
        run(timed, "m")
        assert timed.budget_ is not None and timed.budget_.spent_joules == spends[1]  # was 0.0
        assert timed.stats_["m"]["energy_joules"] == spends[1]


@pytest.mark.parametrize(("at_piece", "streamed"), [(0, False), (0, True), (1, True)])
def test_a_cascades_first_answer_is_charged_when_its_second_model_raises_another_error(
    at_piece: int, streamed: bool
) -> None:
    class Low:  # always escalates
        name = "low"

        def __call__(self, result: GenerationResult) -> float:
            return 0.0

    class Breaks(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            raise RuntimeError("second model broke")

        def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
            if at_piece:
                yield StreamChunk("partial ")
            raise RuntimeError("second model broke")

    router = GreenServRouter(
        [FakeBackend("small", joules_per_token=1.0), Breaks("big", joules_per_token=9.0)],
        features=make_hashing_extractor(),
        seed=0,
        energy_budget="1e6J/query",
    )
    router.add_cascade("small", "big", signal=Low())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="second model broke"):
        if streamed:
            list(router.stream(ASK, models=["small->big"]))
        else:
            router.generate(ASK, models=["small->big"])
    spent = _joules_of(FakeBackend("small", joules_per_token=1.0))
    assert router.budget_ is not None and router.budget_.spent_joules == spent  # was 0.0 after the first piece
    assert router.stats_["small->big"]["energy_joules"] == spent


def test_a_batch_with_an_answer_the_router_refuses_charges_the_answers_after_it() -> None:
    class NanFirst(FakeBackend):
        def generate_batch(self, batch, settings):  # type: ignore[no-untyped-def]
            results = [self.generate(messages, settings) for messages in batch]
            return [dataclasses.replace(results[0], latency_s=float("nan")), *results[1:]]

    router = GreenServRouter([NanFirst("a")], features=make_hashing_extractor(), energy_budget="1e6J/query", seed=0)
    prompts = ["x one", "y two", "z three"]
    spent = sum(
        FakeBackend("a").generate([{"role": "user", "content": p}], GenerationSettings()).energy.joules for p in prompts
    )
    with pytest.raises(InvalidInputError, match="latency_s"):
        router.generate_batch(prompts)
    assert router.stats_["a"]["energy_joules"] == pytest.approx(spent)  # was the first answer's only
    assert router.budget_ is not None and router.budget_.spent_joules == pytest.approx(spent)
    assert len(router.pending_) == 0


def test_a_stream_scored_then_closed_after_its_wait_expired_closes_and_is_charged() -> None:
    """The in-process store's expired waiting copy raised UnknownDecisionError out of close(),
    and what the stream spent went uncharged (Redis's store says None there)."""
    from greenserv_core.pending import PendingDecisions

    now = [1000.0]
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("large")],
        features=make_hashing_extractor(),
        seed=0,
        pending=PendingDecisions(ttl_s=60.0, clock=lambda: now[0]),
    )
    stream = router.stream("Write a long story about a cat " * 3, models=["small"])
    first = next(stream)
    router.feedback(first.decision.decision_id, 1.0)  # scored while it streams: it awaits its outcome
    now[0] += 61.0  # closed more than ttl_s later
    stream.close()
    assert router.stats_["small"]["energy_joules"] > 0
