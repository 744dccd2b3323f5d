"""The adapters' shared calling helpers: the lazily built routers that an adapter's copies share,
a call's options, the energy budget's check, feedback, and the token counts LlamaIndex reads."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from langchain_core.runnables import ConfigurableField
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler

from greenserv_core import FakeBackend, FeatureExtractor, GreenServRouter, InvalidInputError, NoEligibleModelError
from greenserv_core.adapters import DEFAULT_MAX_TOKENS, LazyRouter, check_energy_budget
from greenserv_core.errors import UnknownDecisionError
from greenserv_core.reward import DEFAULT_TRADEOFF
from langchain_greenserv import ChatGreenServ
from llama_index_greenserv import GreenServLLM
from tests.conftest import make_hashing_extractor

LONG = "one two three four five six seven eight nine ten eleven twelve"


def _router() -> GreenServRouter:
    return GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), seed=0)


def _pool() -> list[FakeBackend]:
    return [FakeBackend("small", joules_per_token=1.0), FakeBackend("large", joules_per_token=5.0)]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Routers the adapters build get the fake pool (each build noted) and the hashing features."""
    from greenserv_core.models import pool

    builds: list[object] = []

    def build_backends(models: object, meter: str = "auto", option: object = None) -> list[FakeBackend]:
        builds.append(models)
        return _pool()

    monkeypatch.setattr(pool, "build_backends", build_backends)
    monkeypatch.setattr(FeatureExtractor, "default", classmethod(lambda cls, **kwargs: make_hashing_extractor()))
    return builds


def test_a_router_being_built_holds_up_neither_a_built_one_nor_its_decisions() -> None:
    lazy = LazyRouter()
    built = lazy.get(_router, key="built")
    decision = built.route("What is 2 + 2?")
    release, builds = threading.Event(), []

    def slow_build() -> GreenServRouter:  # stands for loading another copy's models
        builds.append(1)
        release.wait(2.0)
        return _router()

    others = [threading.Thread(target=lambda: lazy.get(slow_build, key="slow")) for _ in range(3)]
    for thread in others:
        thread.start()
    try:
        while not builds:
            time.sleep(0.005)
        started = time.perf_counter()
        found = lazy.deciding(decision.decision_id)  # was held until the other build finished
        again = lazy.get(_router, key="built")
        assert time.perf_counter() - started < 1.0
        assert found is built and again is built and lazy.built("slow") is None
    finally:
        release.set()
        for thread in others:
            thread.join()
    assert len(builds) == 1 and lazy.built("slow") is not None  # one key is still built once


def test_a_copy_that_builds_the_shared_router_gives_it_none_of_its_settings(built: list[object]) -> None:
    base = ChatGreenServ(models=["small", "large"])
    fields = {name: ConfigurableField(id=name) for name in ("tradeoff", "max_joules", "max_latency_s")}
    configurable = base.configurable_fields(**fields)  # type: ignore[arg-type]
    copied = {"tradeoff": 0.9, "max_joules": 5.0, "max_latency_s": 1e-9}
    first = configurable.invoke("hi", config={"configurable": copied})  # builds the router
    assert first.response_metadata["greenserv"]["tradeoff"] == 0.9
    assert len(built) == 1  # built by the copy, shared by the base
    for model in ("small", "large"):  # both measured, so that a cap would bite
        assert base.invoke("one two three four five six", model=model).response_metadata["greenserv"]
    answer = base.invoke(LONG).response_metadata["greenserv"]  # was refused under the copy's cap and latency
    assert answer["tradeoff"] == DEFAULT_TRADEOFF == base._identifying_params["tradeoff"]  # was the copy's 0.9
    own = ChatGreenServ(models=["small", "large"], tradeoff=0.7, built_routers=base.built_routers)
    assert own.invoke(LONG).response_metadata["greenserv"]["tradeoff"] == 0.7 and len(built) == 1
    with pytest.raises(NoEligibleModelError, match="exceeds the cap"):
        configurable.invoke(LONG, config={"configurable": {"max_joules": 5.0}})

    llm = GreenServLLM(models=["small", "large"])
    copy = llm.model_copy(update=copied)
    assert copy.complete("hi").raw["tradeoff"] == 0.9  # type: ignore[index]
    assert len(built) == 2 and llm.greenserv_router is copy.greenserv_router
    for model in ("small", "large"):
        llm.complete("one two three four five six", model=model)
    assert llm.complete(LONG).raw["tradeoff"] == DEFAULT_TRADEOFF  # type: ignore[index]
    assert llm.model_copy(update={"tradeoff": 0.7}).complete(LONG).raw["tradeoff"] == 0.7  # type: ignore[index]
    with pytest.raises(NoEligibleModelError, match="exceeds the cap"):
        llm.model_copy(update={"max_joules": 5.0}).complete(LONG)


def test_a_copy_whose_seed_the_shared_router_lacks_is_warned_once(
    built: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    base = ChatGreenServ(models=["small", "large"], seed=0)
    seeded = base.configurable_fields(seed=ConfigurableField(id="seed"))
    llm = GreenServLLM(models=["small", "large"], seed=3)
    with caplog.at_level(logging.WARNING, logger="greenserv"):
        base.invoke("hi")  # builds the router with seed 0
        for _ in range(2):
            seeded.invoke("hi", config={"configurable": {"seed": 7}})  # shares it: policy draws still seed 0
        seeded.invoke("hi", config={"configurable": {"seed": 0}})  # the router's own seed
        base.model_copy(update={"seed": None}).invoke("hi")  # asks for no seed
        llm.complete("hi")
        copy = llm.model_copy(update={"seed": 11})
        for _ in range(2):
            copy.complete("hi")
    assert len(built) == 2 and copy.greenserv_router is llm.greenserv_router  # still shared across seeds
    warned = [r.getMessage() for r in caplog.records if "shares the router" in r.getMessage()]
    assert len(warned) == 2  # was silent: the copies' seeds 7 and 11 were dropped without a word
    assert warned[0].startswith("ChatGreenServ(seed=7) shares the router another copy built with seed=0")
    assert warned[1].startswith("GreenServLLM(seed=11) shares the router another copy built with seed=3")


def test_llama_index_token_counting_reads_the_routers_counts() -> None:
    counter = TokenCountingHandler(tokenizer=lambda text: list(text))  # one token a character: far off the router's
    router = GreenServRouter(_pool(), features=make_hashing_extractor(), seed=0)
    llm = GreenServLLM(router=router, callback_manager=CallbackManager([counter]))
    ask = [ChatMessage(role="user", content="What is two plus two?")]

    async def answers() -> list[Any]:
        streamed = [r async for r in await llm.astream_complete("2+2?")]
        chatted = [r async for r in await llm.astream_chat(ask)]
        return [await llm.acomplete("2+2?"), await llm.achat(ask), streamed[-1], chatted[-1]]

    responses = [llm.complete("2+2?"), llm.chat(ask), list(llm.stream_complete("2+2?"))[-1]]
    responses += [list(llm.stream_chat(ask))[-1], *asyncio.run(answers())]
    assert len(counter.llm_token_counts) == len(responses) == 8
    for response, event in zip(responses, counter.llm_token_counts, strict=True):
        record = response.raw
        assert record == response.additional_kwargs and record["usage"]["total_tokens"] == event.total_token_count
        assert (event.prompt_token_count, event.completion_token_count) == (
            record["input_tokens"],
            record["output_tokens"],
        )


def test_energy_budget_takes_the_real_numbers_the_router_takes(built: list[object]) -> None:
    for joules in (np.float32(50), np.int64(50), Fraction(50)):
        assert check_energy_budget(joules) == 50.0 and type(check_energy_budget(joules)) is float
        assert ChatGreenServ(models=["small"], energy_budget=joules).energy_budget == 50.0
        assert GreenServLLM(models=["small"], energy_budget=joules).energy_budget == 50.0
    with pytest.raises(InvalidInputError, match="energy_budget must be"):
        check_energy_budget(True)


def test_a_bad_call_option_is_named_as_the_caller_gave_it() -> None:
    def router() -> GreenServRouter:
        return GreenServRouter(_pool(), features=make_hashing_extractor(), seed=0)

    chat, llm = ChatGreenServ(router=router()), GreenServLLM(router=router())
    for option, value, said in [
        ("timeout", 0, "^timeout .*must be"),
        ("max_tokens", 0, "^max_tokens must be"),
        ("max_tokens", 10**400, "^max_tokens must be at most"),  # was max_new_tokens
        ("tradeoff", 10**400, "^tradeoff λ must be"),  # was an OverflowError
    ]:
        with pytest.raises(InvalidInputError, match=said):  # was max_time_s, max_new_tokens
            chat.invoke("hi", **{option: value})
        with pytest.raises(InvalidInputError, match=said):
            llm.complete("hi", **{option: value})


def test_a_field_takes_the_numbers_a_call_takes_and_refuses_what_a_call_refuses() -> None:
    """``max_joules`` and ``tradeoff`` as ``Decimal`` (a call takes them), and ``max_tokens``
    as ``True``, ``8.0`` or ``"8"`` (a call refuses them), alike as a field and per call."""
    import decimal

    from pydantic import ValidationError

    def router() -> GreenServRouter:
        return GreenServRouter(_pool(), features=make_hashing_extractor(), seed=0)

    for adapter in (ChatGreenServ, GreenServLLM):
        made = adapter(router=router(), max_joules=decimal.Decimal("50"), tradeoff=decimal.Decimal("0.5"))
        assert (made.max_joules, made.tradeoff) == (50.0, 0.5)
        assert type(made.max_joules) is float and type(made.tradeoff) is float
        assert adapter(router=router(), max_tokens=np.int64(8)).max_tokens == 8
        for bad in (True, 8.0, "8", 0):
            with pytest.raises(ValidationError, match="max_tokens must be an integer >= 1"):
                adapter(router=router(), max_tokens=bad)
        for field, huge in [("max_tokens", 10**400), ("tradeoff", 10**400), ("max_latency_s", 10**400)]:
            with pytest.raises(ValidationError, match=f"{field}.*must be"):  # was an OverflowError
                adapter(router=router(), **{field: huge})
    for adapter in (ChatGreenServ, GreenServLLM):  # the default, as documented (GreenServLLM refused it)
        assert adapter(router=router(), max_tokens=None).max_tokens_in_force == DEFAULT_MAX_TOKENS
    assert GreenServLLM(router=router(), max_tokens=None).metadata.num_output == DEFAULT_MAX_TOKENS


def test_feedback_for_an_unknown_id_builds_no_router(built: list[object]) -> None:
    unknown = "5b4e0f1c-0000-4000-8000-000000000000"
    for model in (ChatGreenServ(models=["small", "large"]), GreenServLLM(models=["small", "large"])):
        with pytest.raises(UnknownDecisionError, match=f"no routed answer for '{unknown}': unknown decision id"):
            model.feedback(unknown, 1.0)
        assert built == []  # no models loaded only to refuse it
    chat = ChatGreenServ(models=["small", "large"])
    chat.invoke("hi")
    with pytest.raises(UnknownDecisionError, match="no routed answer"):  # the router built answers
        chat.feedback(unknown, 1.0)
    assert len(built) == 1
