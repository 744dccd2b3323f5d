"""ChatGreenServ's own behaviour, over fake backends (fast, deterministic)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, BaseMessage, FunctionMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tracers.context import collect_runs
from pydantic import BaseModel

from greenserv_core import (
    DecisionAlreadyScoredError,
    FakeBackend,
    GreenServRouter,
    InvalidInputError,
    ModelUnavailableError,
    NoEligibleModelError,
    UnknownDecisionError,
    UnknownModelError,
)
from greenserv_core.reward import DEFAULT_TRADEOFF
from langchain_greenserv import ChatGreenServ, GreenServFeedbackHandler, decision_id_of
from tests.async_checks import SLOW_ANSWER, SettingsRecorder, run_while_ticking, slow_backend
from tests.conftest import make_hashing_extractor


def make_llm(**kwargs) -> ChatGreenServ:  # type: ignore[no-untyped-def]
    backends = kwargs.pop("backends", None) or [
        FakeBackend("small", joules_per_token=1.0),
        FakeBackend("large", joules_per_token=5.0),
    ]
    router = GreenServRouter(backends, features=make_hashing_extractor(), tradeoff=0.4, seed=0)
    return ChatGreenServ(router=router, **kwargs)


def test_invoke_returns_routing_record_and_usage() -> None:
    llm = make_llm()
    message = llm.invoke([SystemMessage("Be brief."), HumanMessage("What is 2 + 2?")])
    assert isinstance(message, AIMessage)
    assert message.response_metadata["model_name"] in {"small", "large"}
    record = message.response_metadata["greenserv"]
    assert record["model"] == message.response_metadata["model_name"]
    assert record["energy_source"] == "fake" and record["energy_measured"] is False
    assert record["features"]["task"] in {"math", "chat", "qa"} and record["tradeoff"] == 0.4
    # the fakes count "Be brief." + "What is 2 + 2?" as 9 tokens, "<model>: What is 2 + 2?" as 8
    assert (record["input_tokens"], record["output_tokens"]) == (9, 8)
    assert record["energy_joules"] == {"small": 1.0, "large": 5.0}[record["model"]] * 17
    usage = message.usage_metadata
    assert usage is not None and (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (9, 8, 17)
    assert message.id is not None and decision_id_of(message.id) == record["decision_id"]


def test_feedback_by_message_message_id_and_collected_run_id() -> None:
    llm = make_llm()
    first = llm.invoke("hello")
    assert llm.feedback(first, 1.0).applied
    second = llm.invoke("hello again")
    assert llm.feedback(second.id, 0.0).applied
    with collect_runs() as runs:
        llm.invoke("third")
    assert llm.feedback(runs.traced_runs[0].id, 0.5).applied
    with pytest.raises(DecisionAlreadyScoredError):
        llm.feedback(first, 1.0)
    with pytest.raises(UnknownDecisionError, match="no routed answer"):
        llm.feedback("5b4e0f1c-0000-4000-8000-000000000000", 1.0)
    with pytest.raises(InvalidInputError):
        llm.feedback(first.id, float("nan"))


def test_stream_ends_with_one_last_chunk_carrying_usage_and_model() -> None:
    llm = make_llm()
    with collect_runs() as runs:
        chunks = list(llm.stream("tell me something"))
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    assert chunks[-1].chunk_position == "last" and chunks[-1].response_metadata["model_name"]
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert full.content.startswith(full.response_metadata["model_name"])
    assert llm.feedback(runs.traced_runs[0].id, 1.0).applied  # the run id finds the streamed decision


def test_a_stream_left_early_charges_what_its_model_spent() -> None:
    llm = make_llm()
    for chunk in llm.stream("tell me something long, please, in many words"):
        assert chunk.content
        break  # the reader leaves after the first piece
    spent = llm.router.stats_
    assert sum(model["energy_joules"] for model in spent.values()) > 0  # the model ran, unread


async def _first_piece_then_leave(llm: ChatGreenServ) -> None:
    async for _ in llm.astream("tell me something long, please, in many words"):
        break


def test_an_async_stream_left_early_charges_what_its_model_spent() -> None:
    import time

    llm = make_llm()
    asyncio.run(_first_piece_then_leave(llm))
    deadline = time.monotonic() + 10.0  # the bridge's thread closes the stream soon after, not before
    while not any(model["energy_joules"] for model in llm.router.stats_.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(model["energy_joules"] for model in llm.router.stats_.values()) > 0


def test_closing_the_async_stream_closes_the_models_stream_before_it_returns() -> None:
    llm = make_llm()

    async def first_piece_then_close() -> tuple[float, int]:
        chunks = llm._astream([HumanMessage("tell me something long, please, in many words")])
        await chunks.__anext__()
        await chunks.aclose()  # type: ignore[attr-defined]
        spent = sum(model["energy_joules"] for model in llm.router.stats_.values())
        return spent, len(llm.router.pending_)

    spent, pending = asyncio.run(first_piece_then_close())
    assert spent > 0 and pending == 0  # were 0 and 1: the bridge was closed later, by the event loop


def test_streaming_flag_makes_invoke_stream() -> None:
    llm = make_llm(streaming=True)
    message = llm.invoke("hi")
    assert message.response_metadata["greenserv"]["model"] == message.response_metadata["model_name"]
    assert llm.feedback(message, 1.0).applied


def test_unknown_arguments_and_message_types_are_refused() -> None:
    llm = make_llm()
    with pytest.raises(InvalidInputError, match="does not take"):
        llm.invoke("hi", frequency_penalty=0.3)
    with pytest.raises(InvalidInputError, match="FunctionMessage"):
        llm.invoke([HumanMessage("hi"), FunctionMessage("42", name="f")])
    with pytest.raises(InvalidInputError, match="image"):
        llm.invoke([HumanMessage(content=[{"type": "image", "url": "http://x/y.png"}])])
    with pytest.raises(Exception, match="Extra inputs"):
        ChatGreenServ(router=make_llm().greenserv_router, frequency_penalty=0.3)
    with pytest.raises(ValueError, match="tradeoff"):  # pydantic's ValidationError is a ValueError
        ChatGreenServ(tradeoff=1.5)
    with pytest.raises(ValueError, match="tradeoff"):
        ChatGreenServ(tradeoff=True)
    with pytest.raises(ValueError, match="max_retries"):
        ChatGreenServ(max_retries=-1)


def test_default_tradeoff_is_the_routers() -> None:
    assert ChatGreenServ().tradeoff_in_force == DEFAULT_TRADEOFF  # the router is built on first use only


def test_per_call_options_reach_the_router() -> None:
    llm = make_llm(max_tokens=3)
    message = llm.invoke("one two three four five six")
    assert message.usage_metadata["output_tokens"] <= 3  # type: ignore[index]
    assert llm.invoke("pin me", model="large").response_metadata["model_name"] == "large"
    stopped = llm.invoke("alpha beta gamma", stop=["beta"], max_tokens=50)
    assert "beta" not in stopped.content
    recorder = SettingsRecorder()
    timed = make_llm(backends=[recorder], top_p=0.9, timeout=30.0)
    timed.invoke("hi")
    timed.invoke("hi", top_p=0.5, timeout=2.0)
    assert [(s.top_p, s.max_time_s) for s in recorder.settings] == [(0.9, 30.0), (0.5, 2.0)]


def broken(error: Exception):  # type: ignore[no-untyped-def]
    def reply(messages):  # type: ignore[no-untyped-def]
        raise error

    return reply


def test_a_bug_in_a_model_is_not_retried() -> None:
    buggy = FakeBackend("buggy", reply=broken(RuntimeError("bug")))
    fine = FakeBackend("fine")
    llm = make_llm(backends=[buggy, fine], max_retries=2)  # accepted, but nothing is retried here
    with pytest.raises(RuntimeError, match="bug"):
        llm.invoke("hi", model="buggy")
    with pytest.raises(RuntimeError, match="bug"):
        list(llm.stream("hi", model="buggy"))
    assert buggy.calls == 2 and fine.calls == 0  # once per call, never again on the same model


def test_an_unavailable_model_fails_over_to_another_in_the_router() -> None:
    down = FakeBackend("down", reply=broken(ModelUnavailableError("server down")))
    llm = make_llm(backends=[down, FakeBackend("up")], max_retries=0)
    for _ in range(4):
        message = llm.invoke("hi")
        assert message.response_metadata["model_name"] == "up"
        assert llm.feedback(message, 1.0).applied
    streamed = list(llm.stream("hi"))
    assert streamed[-1].response_metadata["model_name"] == "up"
    assert down.calls >= 1  # it was chosen, failed, and the query went elsewhere


def test_lcel_chain_with_an_evaluator_scores_automatically() -> None:
    llm = make_llm()
    handler = GreenServFeedbackHandler(llm, evaluator=lambda prompt, output: float("small" in output))
    chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | llm | StrOutputParser()
    for q in ("first question", "second question", "third question"):
        chain.invoke({"q": q}, config={"callbacks": [handler]})
    assert len(handler.runs) == 3
    assert all(run.score in (0.0, 1.0) for run in handler.runs.values())
    assert all("Be brief." in run.prompt for run in handler.runs.values())
    total = sum(arm.n for arm in llm.greenserv_router.policy_.arms_.values())
    assert total == 3


def test_handler_records_for_later_feedback_across_invoke_stream_and_batch() -> None:
    llm = make_llm()
    handler = GreenServFeedbackHandler(llm)
    config = {"callbacks": [handler]}
    llm.invoke("a", config=config)
    list(llm.stream("b", config=config))
    llm.batch(["c", "d"], config=config)
    assert len(handler.runs) == 4
    for run_id in list(handler.runs):
        assert handler.feedback(run_id, 1.0).applied
    with pytest.raises(KeyError):
        handler.feedback("not-a-run", 1.0)


def test_failing_evaluator_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    llm = make_llm()

    def broken(prompt: str, output: str) -> float:
        raise ValueError("evaluator bug")

    handler = GreenServFeedbackHandler(llm, evaluator=broken)
    with caplog.at_level(logging.WARNING, logger="greenserv.langchain"):
        message = llm.invoke("hi", config={"callbacks": [handler]})
    assert message.content
    assert "evaluator bug" in caplog.text and len(handler.errors) == 1


def test_async_calls_do_not_block_the_event_loop() -> None:
    llm = make_llm(backends=[slow_backend()])

    async def work() -> tuple[AIMessage, list[str]]:
        message = await llm.ainvoke("hi")
        pieces = [chunk.content async for chunk in llm.astream("hi")]
        return message, pieces  # type: ignore[return-value]

    ticks, (message, pieces) = run_while_ticking(work)
    assert message.content == SLOW_ANSWER
    assert "".join(pieces) == SLOW_ANSWER
    assert ticks > 5  # the loop kept running while the model worked


def test_abatch_and_batch_return_one_answer_per_input() -> None:
    llm = make_llm()
    answers = llm.batch(["one", "two", "three"])
    assert [a.content.split(": ", 1)[1] for a in answers] == ["one", "two", "three"]
    answers = asyncio.run(llm.abatch(["four", "five"]))
    assert len({a.response_metadata["greenserv"]["decision_id"] for a in answers}) == 2


# ---- tools and structured output -----------------------------------------------------------


def tool_llm(**kwargs) -> ChatGreenServ:  # type: ignore[no-untyped-def]
    from tests.scripted_tools import scripted_tool_backend

    pool = [scripted_tool_backend("caller"), FakeBackend("no-tools", joules_per_token=0.01)]
    router = GreenServRouter(pool, features=make_hashing_extractor(), strategy="random", seed=0)
    return ChatGreenServ(router=router, **kwargs)


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


class Person(BaseModel):
    name: str
    age: int


def test_bound_tools_route_to_tool_capable_models_and_calls_come_back_parsed() -> None:
    llm = tool_llm()
    with_tools = llm.bind_tools([multiply])
    for _ in range(6):
        message = with_tools.invoke("What is 'six' times 7?")
        assert message.response_metadata["model_name"] == "caller"
        assert message.tool_calls[0]["name"] == "multiply" and message.tool_calls[0]["args"]["b"] == 7
        assert message.invalid_tool_calls == [] and message.content == ""
    # a whole tool round trip: the call and its result go back into the next turn
    call = message.tool_calls[0]
    history = [HumanMessage("What is 6 times 7?"), message, ToolMessage("42", tool_call_id=call["id"])]
    final = with_tools.invoke(history)
    assert final.content == "The tool says: 42" and final.tool_calls == []
    assert {llm.invoke("hi").response_metadata["model_name"] for _ in range(10)} == {"caller", "no-tools"}
    streamed = list(with_tools.stream("What is 'six' times 7?"))
    merged = streamed[0]
    for chunk in streamed[1:]:
        merged += chunk
    assert merged.tool_calls[0]["name"] == "multiply"


def test_invalid_calls_are_reported_not_raised() -> None:
    pool = [
        FakeBackend(
            "confused",
            capabilities=frozenset({"tools"}),
            tool_reply=lambda m, t: '<tool_call>{"name": "divide", "arguments": {"a": 1}}</tool_call>',
        )
    ]
    router = GreenServRouter(pool, features=make_hashing_extractor(), seed=0)
    message = ChatGreenServ(router=router).bind_tools([multiply]).invoke("What is 6 times 7?")
    assert message.tool_calls == [] and message.invalid_tool_calls[0]["name"] == "divide"
    assert "unknown tool 'divide'" in message.invalid_tool_calls[0]["error"]
    streamed = ChatGreenServ(router=router, streaming=True).bind_tools([multiply]).invoke("What is 6 times 7?")
    assert streamed.tool_calls == []
    assert "unknown tool 'divide'" in streamed.response_metadata["invalid_tool_calls"][0]["error"]


def test_structured_output_validates_and_says_why_it_fails() -> None:
    llm = tool_llm()
    person = llm.with_structured_output(Person).invoke("Make up a person called 'Ada' aged 36.")
    assert person == Person(name="Ada", age=36)
    as_dict = llm.with_structured_output(Person.model_json_schema()).invoke("'Ada' aged 36")
    assert as_dict == {"name": "Ada", "age": 36}
    broken = [
        FakeBackend(
            "sloppy",
            capabilities=frozenset({"tools"}),
            tool_reply=lambda m, t: '<tool_call>{"name": "Person", "arguments": {"name": "Ada"}}</tool_call>',
        )
    ]
    sloppy = ChatGreenServ(router=GreenServRouter(broken, features=make_hashing_extractor(), seed=0))
    with pytest.raises(OutputParserException, match="'age' is a required property"):
        sloppy.with_structured_output(Person).invoke("a person")
    raw = sloppy.with_structured_output(Person, include_raw=True).invoke("a person")
    assert raw["parsed"] is None and isinstance(raw["parsing_error"], OutputParserException)
    assert raw["raw"].invalid_tool_calls


def test_structured_output_takes_arguments_only_the_schema_refused_when_pydantic_fits_them() -> None:
    quoting = [
        FakeBackend(
            "quoting",
            capabilities=frozenset({"tools"}),
            tool_reply=lambda m, t: (
                '<tool_call>{"name": "Person", "arguments": {"name": "Ada", "age": "36"}}</tool_call>'
            ),
        )
    ]
    llm = ChatGreenServ(router=GreenServRouter(quoting, features=make_hashing_extractor(), seed=0))
    assert llm.with_structured_output(Person).invoke("a person") == Person(name="Ada", age=36)  # "36" unquoted
    assert llm.with_structured_output(Person.model_json_schema()).invoke("a person") == {"name": "Ada", "age": 36}
    flagged = [
        FakeBackend(
            "flagged",
            capabilities=frozenset({"tools"}),
            tool_reply=lambda m, t: '<tool_call>{"name": "Flag", "arguments": {"on": "yes"}}</tool_call>',
        )
    ]

    class Flag(BaseModel):
        on: bool

    llm = ChatGreenServ(router=GreenServRouter(flagged, features=make_hashing_extractor(), seed=0))
    assert llm.with_structured_output(Flag).invoke("a flag") == Flag(on=True)  # the schema refused it, Pydantic took it
    with pytest.raises(OutputParserException, match="is not of type 'boolean'"):  # a dict keeps the schema's verdict
        llm.with_structured_output(Flag.model_json_schema()).invoke("a flag")


def test_an_earlier_models_reasoning_blocks_are_left_out_of_the_history() -> None:
    history = [
        HumanMessage("What is 2 + 2?"),
        AIMessage(content=[{"type": "reasoning", "reasoning": "2 and 2"}, {"type": "text", "text": "4"}]),
        AIMessage(content=[{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "Four."}]),
        HumanMessage("And 3 + 3?"),
    ]
    from langchain_greenserv.messages import to_greenserv_messages

    assert [m["content"] for m in to_greenserv_messages(history)] == ["What is 2 + 2?", "4", "Four.", "And 3 + 3?"]
    with pytest.raises(InvalidInputError, match="'image'"):
        to_greenserv_messages([HumanMessage(content=[{"type": "image", "url": "https://x/y.png"}])])


def test_a_generic_message_maps_its_role_as_langchains_own_types_and_llama_index_do() -> None:
    """A ``ChatMessage(role="tool")`` reached the model without the wrapper a ``ToolMessage``
    gets (and LlamaIndex's tool turn), and the roles "ai" and "developer" were refused."""
    from langchain_core.messages import ChatMessage, SystemMessage, ToolMessage

    from langchain_greenserv.messages import to_greenserv_messages

    generic = [ChatMessage(text, role=role) for text, role in [("Be brief.", "developer"), ("Hi", "human"),
               ("Hello.", "ai"), ("noon", "tool")]]  # fmt: skip
    typed = [SystemMessage("Be brief."), HumanMessage("Hi"), AIMessage("Hello."), ToolMessage("noon", tool_call_id="c")]
    assert to_greenserv_messages(generic) == to_greenserv_messages(typed)
    with pytest.raises(InvalidInputError, match="messages\\[0\\] is a ChatMessage"):
        to_greenserv_messages([ChatMessage("x", role="critic")])


def test_tool_requests_no_model_can_serve_fail_clearly() -> None:
    llm = make_llm()
    with pytest.raises(NoEligibleModelError, match="no model in the pool has the capability tools"):
        llm.bind_tools([multiply]).invoke("6 times 7?")
    with pytest.raises(InvalidInputError, match="names no bound tool"):
        tool_llm().bind_tools([multiply], tool_choice="divide").invoke("6 times 7?")
    assert tool_llm().bind_tools([multiply], tool_choice="none").invoke("hi").tool_calls == []


def test_tool_calls_can_be_scored_automatically() -> None:
    llm = tool_llm(score_tool_calls=True)
    message = llm.bind_tools([multiply]).invoke("What is 'six' times 7?")
    assert message.tool_calls
    with pytest.raises(DecisionAlreadyScoredError):
        llm.feedback(message, 1.0)
    manual = tool_llm()
    plain = manual.bind_tools([multiply]).invoke("What is 'six' times 7?")
    assert plain.tool_calls and manual.feedback(plain, 1.0).applied  # off by default: the user scores


# ---- review fixes (2026-12-05) ----------------------------------------------------------------------
def test_a_bad_parallel_tool_calls_is_refused_before_the_model_runs() -> None:
    llm = tool_llm()
    with pytest.raises(InvalidInputError, match="parallel_tool_calls"):
        llm.bind_tools([multiply]).invoke("6 times 7", parallel_tool_calls="no")
    assert len(llm.router.pending_) == 0  # nothing ran, nothing charged


def test_a_malformed_tool_choice_is_refused_clearly() -> None:
    with pytest.raises(InvalidInputError, match="names no bound tool"):
        tool_llm().bind_tools([multiply], tool_choice={"function": "multiply"}).invoke("6 times 7")


def test_a_call_cut_short_by_a_stop_sequence_is_reported() -> None:
    message = tool_llm().bind_tools([multiply], tool_choice="multiply").invoke("6 and 7", stop=["\n"])
    assert not message.tool_calls and "cut short" in message.invalid_tool_calls[0]["error"]  # was erased


def test_the_callers_callback_manager_is_not_grown_per_model() -> None:
    from langchain_core.callbacks import CallbackManager
    from langchain_core.runnables import ConfigurableField

    manager = CallbackManager([])
    llm = make_llm(callbacks=manager)
    configurable = llm.configurable_fields(tradeoff=ConfigurableField(id="lam"))
    for _ in range(5):
        configurable.invoke("hi", config={"configurable": {"lam": 0.7}})
    assert manager.handlers == []  # was one recorder per copy


def test_answers_of_a_copy_that_builds_its_own_router_can_be_scored() -> None:
    from langchain_core.runnables import ConfigurableField

    llm = ChatGreenServ(
        models=[FakeBackend("small"), FakeBackend("large")], embedder="static", energy_budget="50J/query"
    )
    handler = GreenServFeedbackHandler(llm, evaluator=lambda prompt, output: 1.0)
    copy = llm.configurable_fields(tradeoff=ConfigurableField(id="lam"))
    copy.invoke("y", config={"configurable": {"lam": 0.7}, "callbacks": [handler]})
    assert len(handler.runs) == 1 and not handler.errors  # was dropped: not this model's router
    answer = copy.invoke("z", config={"configurable": {"lam": 0.7}})
    assert llm.feedback(answer, 1.0).applied  # was UnknownDecisionError


def test_the_evaluator_reads_the_tool_calls_an_answer_made() -> None:
    seen: list[str] = []
    llm = tool_llm()
    handler = GreenServFeedbackHandler(llm, evaluator=lambda prompt, output: seen.append(output) or 1.0)
    llm.bind_tools([multiply], tool_choice="multiply").invoke("6 and 7", config={"callbacks": [handler]})
    assert seen and '"name": "multiply"' in seen[0]  # was "": the call is the answer


# ---- review fixes (2026-12-06) ----------------------------------------------------------------------
def test_feedback_on_a_message_scores_its_own_decision_when_its_run_id_was_used_before() -> None:
    import uuid

    llm = make_llm()
    run_id = uuid.uuid4()
    streamed = None
    for chunk in llm.stream("first question", config={"run_id": run_id}):
        streamed = chunk if streamed is None else streamed + chunk
    invoked = llm.invoke("second question", config={"run_id": run_id})
    assert streamed is not None
    record = llm.feedback(invoked, 0.0)
    assert record.decision_id == invoked.response_metadata["greenserv"]["decision_id"]  # was the stream's
    assert llm.feedback(streamed, 1.0).applied  # was DecisionAlreadyScoredError


def test_a_refused_call_stays_in_the_history_and_stream_false_is_honoured() -> None:
    from langchain_greenserv.messages import to_greenserv_messages

    def refused(messages, tools):  # type: ignore[no-untyped-def]
        return 'Calling. <tool_call>{"name": "multiply", "arguments": {"a": "x", "b": 2}}</tool_call>'

    caller = FakeBackend("caller", capabilities=frozenset({"tools"}), tool_reply=refused)
    router = GreenServRouter([caller], features=make_hashing_extractor(), seed=0)
    answer = ChatGreenServ(router=router, streaming=True).bind_tools([multiply]).invoke("x times 2", stream=False)
    assert [c["name"] for c in answer.invalid_tool_calls] == ["multiply"]  # streamed anyway: they were lost
    error = ToolMessage("Error: a must be an integer", tool_call_id=answer.invalid_tool_calls[0]["id"], status="error")
    turns = to_greenserv_messages([HumanMessage("x times 2"), answer, error])
    assert '{"name": "multiply", "arguments": {"a": "x", "b": 2}}' in turns[1]["content"]  # was "Calling." alone
    streamed = ChatGreenServ(router=router, streaming=True).bind_tools([multiply]).invoke("x times 2")
    assert not streamed.invalid_tool_calls and streamed.response_metadata["invalid_tool_calls"]  # a stream's place
    turns = to_greenserv_messages([HumanMessage("x times 2"), streamed])
    assert turns[1]["content"].count("<tool_call>") == 1  # was "Calling." alone


def test_a_numpy_seed_is_a_seed() -> None:
    import numpy as np

    assert make_llm(seed=np.int64(7)).seed == 7  # refused as 7.0


# ---- review fixes (2026-12-07) ----------------------------------------------------------------------
def test_an_infinite_max_latency_is_refused_when_the_model_is_made() -> None:
    with pytest.raises(ValueError, match="max_latency_s must be a positive finite number"):
        make_llm(max_latency_s=float("inf"))  # was accepted, then every call refused it
    assert make_llm(timeout=float("inf")).invoke("hi").content  # a timeout may still be infinite: no limit


def test_a_falsy_model_pin_is_refused_not_dropped() -> None:
    llm = make_llm()
    for value, error in (("", UnknownModelError), (0, InvalidInputError), (False, InvalidInputError)):
        with pytest.raises(error):  # was routed freely, as if no model were pinned
            llm.invoke("What is 2 + 2?", model=value)
    assert llm.invoke("hi", model=None).response_metadata["model_name"] in {"small", "large"}  # None: the default


def test_a_bad_stop_is_refused_as_invalid_input_before_tracing() -> None:
    llm = make_llm(stop=["x"])
    with pytest.raises(InvalidInputError, match="stop must be"):
        llm.invoke("hi", stop=123)  # type: ignore[arg-type]  # was a TypeError from _get_ls_params
    assert llm._get_ls_params()["ls_stop"] == ["x"] and llm._get_ls_params(stop=["y"])["ls_stop"] == ["y"]


def test_structured_output_with_raw_streams_its_parsing_error() -> None:
    sloppy = FakeBackend(
        "sloppy",
        capabilities=frozenset({"tools"}),
        tool_reply=lambda m, t: '<tool_call>{"name": "Person", "arguments": {"name": "Ada"}}</tool_call>',
    )
    structured = make_llm(backends=[sloppy]).with_structured_output(Person, include_raw=True)
    streamed: dict = {}
    for part in structured.stream("a person"):  # raised OutputParserException
        streamed.update(part)

    async def astreamed() -> dict:
        merged: dict = {}
        async for part in structured.astream("a person"):
            merged.update(part)
        return merged

    for result in (streamed, asyncio.run(astreamed()), asyncio.run(structured.ainvoke("a person"))):
        assert result["parsed"] is None and isinstance(result["parsing_error"], OutputParserException)
        assert isinstance(result["raw"], AIMessage)
    fine = tool_llm().with_structured_output(Person, include_raw=True)
    parts = list(fine.stream("Make up a person called 'Ada' aged 36."))
    assert parts[-1]["parsed"] == Person(name="Ada", age=36) and parts[-1]["parsing_error"] is None


def test_calls_given_one_run_id_at_once_are_each_routed(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from langchain_greenserv import chat_models

    llm = make_llm()
    run_id = uuid.uuid4()
    first = llm.invoke("first question", config={"run_id": run_id})
    # a call beside it checked the run id before the first took it (check, then route)
    monkeypatch.setattr(ChatGreenServ, "_decision_key", lambda self, manager: chat_models._run_key(manager))
    second = llm.invoke("second question", config={"run_id": run_id})  # was "decision id ... is already in use"
    streamed = None
    for chunk in llm.stream("third question", config={"run_id": run_id}):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None
    decisions = [decision_id_of(m) for m in (first, second, streamed)]
    assert decisions[0] == str(run_id) and len(set(decisions)) == 3
    assert llm.feedback(run_id, 1.0).decision_id == str(run_id)  # the run id still names its first answer
    assert llm.feedback(second, 0.0).applied and llm.feedback(streamed, 0.0).applied


def test_a_text_block_whose_text_is_none_is_no_text() -> None:
    from langchain_greenserv.messages import to_greenserv_messages

    answer = AIMessage(content=[{"type": "text", "text": None}, {"type": "text", "text": "ok"}])
    assert to_greenserv_messages([HumanMessage("Hi"), answer])[1]["content"] == "ok"  # was "Noneok"


class _Wordy(FakeBackend):
    """Counts every word twice (a model whose tokenizer splits words)."""

    def count_tokens(self, messages):  # type: ignore[no-untyped-def]
        return 2 * super().count_tokens(messages)


def test_token_counts_are_the_pools_so_trim_messages_keeps_what_fits() -> None:
    from langchain_core.messages import trim_messages

    small, wordy = FakeBackend("small", context_window=96), _Wordy("wordy", context_window=96)
    llm = make_llm(backends=[small, wordy], max_tokens=16)
    text = "What is the capital of France? Please answer in one short sentence."
    counted = small.count_tokens([{"role": "user", "content": text}])
    assert llm.get_num_tokens(text) == 2 * counted > 0  # the largest count in the pool; was 0 (GPT-2's, offline)
    ask = [SystemMessage("Be brief."), HumanMessage(text)]
    assert llm.get_num_tokens_from_messages(ask, tools=[multiply]) > llm.get_num_tokens_from_messages(ask)
    history: list[BaseMessage] = [SystemMessage("Be brief.")]
    for i in range(8):
        history += [HumanMessage(f"Question {i}: {text}"), AIMessage(f"Answer {i}: Paris is the capital of France.")]
    history.append(HumanMessage("And of Italy?"))
    kept = trim_messages(history, max_tokens=60, token_counter=llm, strategy="last", include_system=True)
    assert llm.get_num_tokens_from_messages(kept) <= 60 < llm.get_num_tokens_from_messages(history)
    assert llm.invoke(kept).content  # was NoEligibleModelError: the whole history was kept


def test_the_embeddings_say_what_sharing_the_routers_embedder_costs() -> None:
    from langchain_greenserv import GreenServEmbeddings
    from tests.conftest import assert_docstring_says_what_sharing_costs

    assert_docstring_says_what_sharing_costs(GreenServEmbeddings.__doc__, GreenServEmbeddings().embedder.max_seq_length)
    assert "to share its loaded model" not in (GreenServEmbeddings.__doc__ or "")  # was the advice, silent on 128


def test_the_embeddings_take_a_bundled_embedders_name_and_refuse_what_cannot_embed() -> None:
    """A name was taken as the embedder itself (AttributeError at the first embedding), and an
    unknown argument such as device= was dropped without a word."""
    from pydantic import ValidationError

    from greenserv_core.features import HashingEmbedder
    from greenserv_core.features.static_embedder import StaticEmbedder
    from langchain_greenserv import GreenServEmbeddings

    assert isinstance(GreenServEmbeddings(embedder="static").embedder, StaticEmbedder)
    assert len(GreenServEmbeddings(embedder=HashingEmbedder(8)).embed_query("hi")) == 8
    for bad in ("mini-lm", 42):
        with pytest.raises(ValidationError, match="embedder must be one of"):
            GreenServEmbeddings(embedder=bad)
    with pytest.raises(ValidationError, match="device"):
        GreenServEmbeddings(device="cuda")  # type: ignore[call-arg]


def test_an_ainvoke_cancelled_before_its_answer_is_charged_but_neither_learned_nor_scorable() -> None:
    import uuid

    router = GreenServRouter([slow_backend()], features=make_hashing_extractor(), seed=0, energy_budget=1000.0)
    llm = ChatGreenServ(router=router)
    run_id = uuid.uuid4()

    async def cancelled() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(llm.ainvoke("hi", config={"run_id": run_id}), 0.05)

    asyncio.run(cancelled())  # returns once the worker thread has answered (asyncio.run waits for it)
    pacer = router.learner_.pacer_
    assert pacer is not None and pacer.spent_ > 0 and router.stats_["slow"]["energy_joules"] == pacer.spent_
    assert pacer.answers_ == 0 and len(router.pending_) == 0  # were 1 and 1: learned from, and left pending
    with pytest.raises(UnknownDecisionError):
        llm.feedback(str(run_id), 1.0)  # was applied: a score for an answer nobody read


def test_a_deep_copy_shares_the_router_and_what_it_learned() -> None:
    import copy

    llm = make_llm(stop=["!"])
    answer = llm.invoke("hi")
    twins = [copy.deepcopy(llm), llm.model_copy(deep=True)]  # were TypeError: cannot pickle a lock
    for twin in twins:
        assert twin.router is llm.router and twin.stop == ["!"] and twin.stop is not llm.stop
        assert twin.invoke("hi").response_metadata["model_name"] in {"small", "large"}
    assert twins[0].feedback(answer.id, 1.0).applied  # the original's answer, scored through the copy
    built = ChatGreenServ(models=[FakeBackend("small"), FakeBackend("large")], embedder="static")
    copied = copy.deepcopy(built)
    assert copied.greenserv_router is built.greenserv_router  # no router (no models loaded) of its own


def test_structured_output_in_json_schema_mode_sends_the_schemas_name_and_strict() -> None:
    from langchain_greenserv.chat_models import ChatGreenServ as Chat

    schema = {"title": "Weather", "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    bound = Chat(models=["fake"]).with_structured_output(schema, method="json_schema", strict=True)
    response_format = bound.first.kwargs["response_format"]  # type: ignore[attr-defined]
    assert response_format["json_schema"]["name"] == "Weather" and response_format["json_schema"]["strict"] is True


def test_turns_keep_their_spaces_and_unwritable_call_arguments_are_refused_by_message() -> None:
    import datetime

    from langchain_greenserv.messages import to_greenserv_messages

    code = "    return x + 1\nFix the indentation of the line above.\n"
    turns = to_greenserv_messages([HumanMessage(code), AIMessage("    def f():\n        pass"), HumanMessage("ok")])
    assert [t["content"] for t in turns[:2]] == [code, "    def f():\n        pass"]  # the AI turn was stripped
    called = AIMessage("", tool_calls=[{"name": "book", "args": {"on": datetime.date(2026, 1, 1)}, "id": "c1"}])
    with pytest.raises(InvalidInputError, match=r"messages\[1\] tool_calls arguments are not JSON"):  # was TypeError
        to_greenserv_messages([HumanMessage("book it"), called])
    deep: dict[str, object] = {}
    for _ in range(5000):  # nested past the recursion limit: was a bare RecursionError
        deep = {"a": deep}
    nested = AIMessage("", tool_calls=[{"name": "book", "args": deep, "id": "c1"}])
    with pytest.raises(InvalidInputError, match="not JSON"):
        to_greenserv_messages([HumanMessage("book it"), nested])
