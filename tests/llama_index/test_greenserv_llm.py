"""GreenServLLM in LlamaIndex's conventions, over fake backends (fast, deterministic)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse, MessageRole
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent

from greenserv_core import DecisionAlreadyScoredError, FakeBackend, GreenServRouter, InvalidInputError
from greenserv_core.reward import DEFAULT_TRADEOFF
from llama_index_greenserv import GreenServEmbedding, GreenServEventHandler, GreenServLLM
from tests.async_checks import SLOW_ANSWER, SettingsRecorder, run_while_ticking, slow_backend
from tests.conftest import make_hashing_extractor

ASK = [ChatMessage(role=MessageRole.SYSTEM, content="Be brief."), ChatMessage(role=MessageRole.USER, content="2+2?")]


def make_llm(backends=None, **kwargs) -> GreenServLLM:  # type: ignore[no-untyped-def]
    backends = backends or [FakeBackend("small", context_window=1024), FakeBackend("large", context_window=4096)]
    router = GreenServRouter(backends, features=make_hashing_extractor(), tradeoff=0.4, seed=0)
    return GreenServLLM(router=router, **kwargs)


class Collector(GreenServEventHandler):
    """The handler, also keeping every event it was given."""

    events: list = []  # noqa: RUF012

    def handle(self, event, **kwargs):  # type: ignore[no-untyped-def]
        self.events.append(event)
        super().handle(event, **kwargs)


@pytest.fixture
def collector():  # type: ignore[no-untyped-def]
    dispatcher = get_dispatcher()
    handlers = []

    def make(llm: GreenServLLM, **kwargs) -> Collector:  # type: ignore[no-untyped-def]
        handler = Collector(llm=llm, events=[], **kwargs)
        dispatcher.add_event_handler(handler)
        handlers.append(handler)
        return handler

    yield make
    for handler in handlers:
        dispatcher.event_handlers.remove(handler)


def test_is_a_base_llm_with_honest_metadata() -> None:
    llm = make_llm(max_tokens=64)
    assert isinstance(llm, BaseLLM)
    meta = llm.metadata
    assert meta.context_window == 1024 and meta.num_output == 64 and meta.is_chat_model
    assert meta.model_name == "greenserv[small,large]"


def test_every_method_returns_the_right_type_with_the_routing_record() -> None:
    llm = make_llm()
    chat = llm.chat(ASK)
    completion = llm.complete("2+2?")
    assert isinstance(chat, ChatResponse) and isinstance(completion, CompletionResponse)
    for response in (chat, completion):
        record = response.additional_kwargs
        assert record == response.raw
        assert record["model"] in {"small", "large"} and record["energy_source"] == "fake"
        assert {
            "decision_id",
            "input_tokens",
            "output_tokens",
            "latency_s",
            "energy_joules",
            "features",
            "tradeoff",
        } <= set(record)
    assert chat.message.role == MessageRole.ASSISTANT and chat.message.content.startswith(
        chat.additional_kwargs["model"]
    )
    # the fakes count "Be brief." + "2+2?" as 7 tokens, "<model>: 2+2?" as 6, at 1 J a token
    record = chat.additional_kwargs
    assert (record["input_tokens"], record["output_tokens"], record["energy_joules"]) == (7, 6, 13.0)


def test_streams_carry_cumulative_text_and_deltas() -> None:
    llm = make_llm()
    for responses in (list(llm.stream_chat(ASK)), list(llm.stream_complete("tell me three things"))):
        texts = [r.message.content if isinstance(r, ChatResponse) else r.text for r in responses]
        deltas = [r.delta for r in responses]
        assert all(texts[i] == "".join(deltas[: i + 1]) for i in range(len(responses)))
        assert responses[-1].additional_kwargs["decision_id"] and responses[-1].delta == ""


def test_responses_say_why_the_answer_ended() -> None:
    """LangChain's answers say why they ended (``response_metadata["finish_reason"]``); a
    LlamaIndex response said nothing of it, so an answer cut by ``max_tokens`` looked whole."""
    llm = make_llm()
    assert llm.chat(ASK).additional_kwargs["finish_reason"] == "stop"
    assert llm.complete("tell me three things", max_tokens=2).additional_kwargs["finish_reason"] == "length"
    assert list(llm.stream_chat(ASK, max_tokens=2))[-1].additional_kwargs["finish_reason"] == "length"
    assert asyncio.run(llm.acomplete("2+2?")).raw["finish_reason"] == "stop"  # type: ignore[index]


def test_async_methods_are_real_async() -> None:
    llm = make_llm(backends=[slow_backend()])

    async def work():  # type: ignore[no-untyped-def]
        chat = await llm.achat(ASK)
        completion = await llm.acomplete("hi")
        chat_stream = [r async for r in await llm.astream_chat(ASK)]
        completion_stream = [r async for r in await llm.astream_complete("hi")]
        return chat, completion, chat_stream, completion_stream

    ticks, (chat, completion, chat_stream, completion_stream) = run_while_ticking(work)
    assert isinstance(chat, ChatResponse) and isinstance(completion, CompletionResponse)
    assert chat_stream[-1].message.content == completion_stream[-1].text == SLOW_ANSWER
    assert ticks > 5


def test_feedback_by_response_or_decision_id() -> None:
    llm = make_llm()
    response = llm.complete("hello")
    assert llm.feedback(response, 1.0).applied
    with pytest.raises(DecisionAlreadyScoredError):
        llm.feedback(response.additional_kwargs["decision_id"], 1.0)
    with pytest.raises(KeyError):
        llm.feedback("no-such-decision", 1.0)


def test_feedback_on_a_query_engines_response_names_its_type_and_the_handler_not_its_text() -> None:
    from llama_index.core.base.response.schema import Response
    from llama_index.core.schema import NodeWithScore, TextNode

    source = "The Eiffel Tower was completed in 1889. " * 20
    response = Response(response="1889", source_nodes=[NodeWithScore(node=TextNode(text=source), score=1.0)])
    with pytest.raises(InvalidInputError, match=r"got a Response; .*GreenServEventHandler") as refused:
        make_llm().feedback(response, 1.0)
    assert "Eiffel" not in str(refused.value) and len(str(refused.value)) < 400


def test_bad_input_is_refused() -> None:
    llm = make_llm()
    with pytest.raises(InvalidInputError, match="does not take"):
        llm.complete("hi", frequency_penalty=1)
    with pytest.raises(InvalidInputError, match="function"):
        llm.chat([ChatMessage(role=MessageRole.FUNCTION, content="42")])
    assert llm.complete("pin", model="large").additional_kwargs["model"] == "large"


def test_default_tradeoff_and_its_check_are_the_routers() -> None:
    assert GreenServLLM().tradeoff_in_force == DEFAULT_TRADEOFF  # the router is built on first use only
    for bad in (1.5, -0.1, True, "0.4"):
        with pytest.raises(ValueError, match="tradeoff"):
            GreenServLLM(tradeoff=bad)


def test_stop_top_p_and_timeout_as_defaults_and_per_call() -> None:
    recorder = SettingsRecorder()
    llm = make_llm([recorder], stop=["gamma"], top_p=0.9, timeout=30.0)
    assert llm.complete("alpha beta gamma delta").text == "recorder: alpha beta "
    assert llm.complete("alpha beta gamma", stop=["beta"], top_p=0.5, timeout=2.0).text == "recorder: alpha "
    assert [(s.stop, s.top_p, s.max_time_s) for s in recorder.settings] == [
        (("gamma",), 0.9, 30.0),
        (("beta",), 0.5, 2.0),
    ]
    call = {"stop": ["x"], "top_p": 0.25, "timeout": 5.0}
    recorder.settings.clear()
    llm.chat(ASK, **call)
    list(llm.stream_chat(ASK, **call))
    list(llm.stream_complete("hi", **call))

    async def work() -> None:
        await llm.achat(ASK, **call)
        await llm.acomplete("hi", **call)
        _ = [r async for r in await llm.astream_chat(ASK, **call)]
        _ = [r async for r in await llm.astream_complete("hi", **call)]

    asyncio.run(work())
    assert [(s.stop, s.top_p, s.max_time_s) for s in recorder.settings] == [(("x",), 0.25, 5.0)] * 7
    with pytest.raises(InvalidInputError, match="top_p"):
        llm.complete("hi", top_p=0.0)
    with pytest.raises(InvalidInputError, match="max_time_s"):
        llm.complete("hi", timeout=-1.0)


def test_instrumentation_events_carry_the_routing_record(collector) -> None:  # type: ignore[no-untyped-def]
    llm = make_llm()
    handler = collector(llm)
    llm.chat(ASK)
    llm.complete("hi")
    ends = [e for e in handler.events if isinstance(e, (LLMChatEndEvent, LLMCompletionEndEvent))]
    assert len(ends) == 2
    assert all(e.response.additional_kwargs["decision_id"] for e in ends)
    assert len(handler.seen) == 2


def test_handler_scores_automatically_and_counts_each_decision_once(collector) -> None:  # type: ignore[no-untyped-def]
    llm = make_llm()
    handler = collector(llm, evaluator=lambda prompt, output: 1.0)
    llm.chat(ASK)
    list(llm.stream_chat(ASK))
    response = llm.complete("hi")
    # deliver the completion's end event again, as a nested call would: still one feedback
    handler.handle(LLMCompletionEndEvent(prompt="hi", response=response))
    assert len(handler.seen) == 3 and all(s.score == 1.0 for s in handler.seen.values())
    assert sum(arm.n for arm in llm.greenserv_router.policy_.arms_.values()) == 3


def test_handler_logs_a_failing_evaluator(caplog: pytest.LogCaptureFixture) -> None:
    llm = make_llm()

    def broken(prompt: str, output: str) -> float:
        raise ValueError("evaluator bug")

    handler = GreenServEventHandler(llm=llm, evaluator=broken)
    response = llm.complete("hi")
    with caplog.at_level(logging.WARNING, logger="greenserv.llama_index"):
        handler.handle(LLMCompletionEndEvent(prompt="hi", response=response))
    assert "evaluator bug" in caplog.text and len(handler.errors) == 1


def test_handler_records_for_later_feedback() -> None:
    llm = make_llm()
    handler = GreenServEventHandler(llm=llm)
    response = llm.complete("hi")
    handler.handle(LLMCompletionEndEvent(prompt="hi", response=response))
    decision_id = response.additional_kwargs["decision_id"]
    assert handler.feedback(decision_id, 0.5).applied
    with pytest.raises(KeyError):
        handler.feedback("unseen", 1.0)


def test_a_handler_leaves_another_greenserv_llms_answers_alone(collector) -> None:  # type: ignore[no-untyped-def]
    answerer, condenser = make_llm(), make_llm()  # two GreenServLLMs, two routers; the dispatcher is global
    handler = collector(answerer, evaluator=lambda prompt, output: 1.0)
    answerer.complete("What is 2 + 2?")
    condenser.complete("Rewrite the question: what is 2 + 2?")
    assert len(handler.seen) == 1 and handler.errors == []


async def test_the_handler_scores_async_calls_off_the_event_loop(collector, caplog) -> None:  # type: ignore[no-untyped-def]
    llm = make_llm()
    threads: list[int] = []
    handler = collector(llm, evaluator=lambda prompt, output: threads.append(threading.get_ident()) or 1.0)
    await llm.achat(ASK)
    _ = [r async for r in await llm.astream_chat(ASK)]
    await handler.flush()
    assert len(threads) == 2 and threading.get_ident() not in threads  # was the loop's thread: a slow one stalled it
    assert len(handler.seen) == 2 and all(s.score == 1.0 for s in handler.seen.values())
    assert sum(arm.n for arm in llm.greenserv_router.policy_.arms_.values()) == 2  # the feedback arrived

    def broken(prompt: str, output: str) -> float:
        raise ValueError("evaluator bug")

    failing = collector(make_llm(), evaluator=broken)
    with caplog.at_level(logging.WARNING, logger="greenserv.llama_index"):
        await failing.llm.acomplete("hi")
        await failing.flush()
    assert "evaluator bug" in caplog.text and len(failing.errors) == 1


def test_per_call_numbers_are_taken_as_the_fields_take_them() -> None:
    import decimal

    import numpy as np

    llm = make_llm()
    response = llm.complete("hi", max_tokens=np.int64(8), temperature=decimal.Decimal("0.5"), seed=np.int64(3))
    assert response.text


def test_embedding_wraps_the_core_embedder() -> None:
    from greenserv_core.features import HashingEmbedder

    embedding = GreenServEmbedding(embedder=HashingEmbedder(16))
    assert len(embedding.get_query_embedding("q")) == 16
    assert len(embedding.get_text_embedding_batch(["a", "b"])) == 2


def test_embeddings_over_different_embedders_are_different_ingestion_cache_entries() -> None:
    from llama_index.core import Document
    from llama_index.core.ingestion import IngestionPipeline

    from greenserv_core.features import HashingEmbedder

    docs = [Document(text="The capital of France is Paris.")]
    first = IngestionPipeline(transformations=[GreenServEmbedding(embedder=HashingEmbedder(32))])
    first.run(documents=docs)
    second = IngestionPipeline(transformations=[GreenServEmbedding(embedder=HashingEmbedder(64))], cache=first.cache)
    assert len(second.run(documents=docs)[0].embedding) == 64  # was 32: the first embedder's vectors, from the cache
    embedding = GreenServEmbedding(embedder=HashingEmbedder(16))
    copy = GreenServEmbedding.from_dict(embedding.to_dict())
    assert embedding.to_dict()["model_name"] == copy.model_name == "hashing:16" and copy.embedder is embedding.embedder
    assert GreenServEmbedding(embedder=HashingEmbedder(16), model_name="mine").to_dict()["model_name"] == "mine"
    swapped = embedding.model_copy(update={"embedder": HashingEmbedder(8)})
    assert swapped.to_dict()["model_name"] == "hashing:8"  # the name follows the embedder it holds


def test_the_embedding_says_what_sharing_the_routers_embedder_costs() -> None:
    from tests.conftest import assert_docstring_says_what_sharing_costs

    assert_docstring_says_what_sharing_costs(GreenServEmbedding.__doc__, GreenServEmbedding().embedder.max_seq_length)


def test_closing_an_async_response_stream_closes_the_models_stream_before_it_returns() -> None:
    from greenserv_core.async_bridge import iterate_in_thread
    from llama_index_greenserv.llms import _aresponses, _completion_response

    llm = make_llm()
    ask = [{"role": "user", "content": "tell me something long, please, in many words"}]

    async def first_piece_then_close() -> tuple[float, int]:
        # what astream_chat/astream_complete return, under LlamaIndex's callback wrapper (which
        # does not close it: the event loop's finaliser does)
        responses = _aresponses(iterate_in_thread(lambda: llm._pieces(ask, {})), _completion_response)
        await responses.__anext__()
        await responses.aclose()
        spent = sum(model["energy_joules"] for model in llm.router.stats_.values())
        return spent, len(llm.router.pending_)

    spent, pending = asyncio.run(first_piece_then_close())
    assert spent > 0 and pending == 0  # were 0 and 1: the bridge was closed later, by the event loop


def test_the_declared_llama_index_core_has_the_blocks_the_adapter_imports() -> None:
    from pathlib import Path

    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    for extra in ("llama-index", "dev"):
        [core] = [r for r in map(Requirement, project["optional-dependencies"][extra]) if r.name == "llama-index-core"]
        # ThinkingBlock and ToolCallBlock (imported by llms.py) are in llama-index-core from 0.14.5 on
        assert core.specifier.contains("0.14.5") and not core.specifier.contains("0.14.4"), (extra, str(core))


# ---- tools and agents ---------------------------------------------------------------------


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def tool_llm() -> GreenServLLM:
    from tests.scripted_tools import scripted_tool_backend

    pool = [scripted_tool_backend("caller"), FakeBackend("no-tools", joules_per_token=0.01)]
    return GreenServLLM(router=GreenServRouter(pool, features=make_hashing_extractor(), strategy="random", seed=0))


def test_function_calling_routes_to_tool_capable_models_and_parses_calls() -> None:
    from llama_index.core.tools import FunctionTool

    tool = FunctionTool.from_defaults(fn=multiply)
    llm = tool_llm()
    assert llm.metadata.is_function_calling_model and not make_llm().metadata.is_function_calling_model
    for _ in range(5):
        response = llm.chat_with_tools([tool], user_msg="What is 'six' times 7?")
        assert response.additional_kwargs["model"] == "caller"
        selection = llm.get_tool_calls_from_response(response)[0]
        assert selection.tool_name == "multiply" and selection.tool_kwargs["b"] == 7
    streamed = list(llm.stream_chat_with_tools([tool], user_msg="What is 'six' times 7?"))
    assert llm.get_tool_calls_from_response(streamed[-1])[0].tool_name == "multiply"
    # the call and its result go back as the next turn
    history = [ChatMessage(role="user", content="What is 6 times 7?"), response.message]
    history.append(ChatMessage(role="tool", content="42", additional_kwargs={"tool_call_id": selection.tool_id}))
    assert llm.chat(history, tools=[tool.metadata.to_openai_tool()]).message.content == "The tool says: 42"
    with pytest.raises(ValueError, match="expected a tool call"):
        llm.get_tool_calls_from_response(llm.chat([ChatMessage(role="user", content="hi")]))


async def test_a_llama_index_function_agent_runs_its_loop_through_the_router() -> None:
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.tools import FunctionTool

    llm = tool_llm()
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(fn=multiply)], llm=llm)
    answer = await agent.run("What is 6 times 7?")
    assert "42" in str(answer)
    assert llm.greenserv_router.stats_["caller"]["decisions"] >= 2  # the call, then the answer


@pytest.mark.parametrize(("kind", "given", "read"), [(int, "36", 36), (bool, "true", True)])  # "true" failed
def test_structured_prediction_takes_arguments_only_the_schema_refused(kind: type, given: str, read: object) -> None:
    from llama_index.core.prompts import PromptTemplate
    from pydantic import create_model

    person = create_model("Person", name=(str, ...), value=(kind, ...))
    quoting = FakeBackend(
        "quoting",
        capabilities=frozenset({"tools"}),
        tool_reply=lambda m, t: (
            '<tool_call>{"name": "Person", "arguments": {"name": "Ada", "value": "' + given + '"}}</tool_call>'
        ),
    )
    llm = make_llm([quoting])
    assert llm.structured_predict(person, PromptTemplate("A person.")) == person(name="Ada", value=read)


def test_the_developer_role_is_a_system_turn() -> None:
    from llama_index_greenserv.llms import to_greenserv_messages

    turns = to_greenserv_messages([ChatMessage(role=MessageRole.DEVELOPER, content="Be brief."), ASK[1]])
    assert [t["role"] for t in turns] == ["system", "user"]


def test_callbacks_read_the_model_without_building_its_router() -> None:
    lazy = GreenServLLM(models=["http://gpu-1:8000/v1#qwen", "http://gpu-2:8000/v1#llama"])
    payload = lazy.to_payload()  # what every call's callbacks read first, on the event loop for async calls
    assert payload["class_name"] == "GreenServLLM" and lazy._built_router is None  # nothing was built
    assert make_llm().to_payload()["context_window"] == 1024  # a router already there: its full metadata


def test_structured_prediction_goes_through_a_tool_call() -> None:
    from llama_index.core.prompts import PromptTemplate
    from llama_index.core.tools import FunctionTool
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    llm = tool_llm()
    person = llm.structured_predict(Person, PromptTemplate("Make up a person called 'Ada' aged {age}."), age="36")
    assert person == Person(name="Ada", age=36)
    structured = llm.as_structured_llm(Person).chat([ChatMessage(role="user", content="A person called 'Ada', 36")])
    assert structured.raw == Person(name="Ada", age=36)
    tools = [FunctionTool.from_defaults(fn=multiply).metadata.to_openai_tool()]
    with pytest.raises(InvalidInputError, match="names no bound tool"):
        llm.chat([ChatMessage(role="user", content="hi")], tools=tools, tool_choice="divide")


# ---- review fixes (2026-12-06) ----------------------------------------------------------------------
def test_history_reads_anthropic_call_arguments_and_keeps_refused_calls() -> None:
    from llama_index.core.llms import ChatMessage

    from llama_index_greenserv.llms import to_greenserv_messages

    used = {"id": "toolu_1", "name": "multiply", "input": {"a": 3, "b": 4}, "type": "tool_use"}
    turns = to_greenserv_messages(
        [
            ChatMessage(role="user", content="3 times 4?"),
            ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [used]}),
            ChatMessage(role="tool", content="12", additional_kwargs={"tool_call_id": "toolu_1"}),
        ]
    )
    assert '"arguments": {"a": 3, "b": 4}' in turns[1]["content"]  # were {}
    refused = {"id": "c1", "name": "multiply", "arguments": '{"a": "x"}', "error": "…"}
    turns = to_greenserv_messages(
        [
            ChatMessage(role="assistant", content="Calling.", additional_kwargs={"invalid_tool_calls": [refused]}),
            ChatMessage(role="tool", content="Error: a must be an integer", additional_kwargs={"tool_call_id": "c1"}),
        ]
    )
    assert '{"name": "multiply", "arguments": {"a": "x"}}' in turns[0]["content"]  # was "Calling." alone


def test_llama_index_async_predictions_build_the_router_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from llama_index.core.prompts import PromptTemplate

    import greenserv_core.models.pool as pool

    def slow_build(models, meter="auto", option=None):  # type: ignore[no-untyped-def]
        time.sleep(0.5)  # loading the local models
        return [FakeBackend("small"), FakeBackend("large")]

    monkeypatch.setattr(pool, "build_backends", slow_build)
    llm = GreenServLLM(models=["small", "large"], embedder="static")
    ticks, answer = run_while_ticking(lambda: llm.apredict(PromptTemplate("What is 2 + 2?")))
    assert answer and ticks >= 20  # was 0: LlamaIndex read the metadata, which built the router, on the loop


def test_a_call_read_through_its_tools_schema_is_in_the_history_once() -> None:
    from llama_index.core.tools import FunctionTool

    from llama_index_greenserv.llms import to_greenserv_messages

    def toggle(flag: bool) -> str:
        """Toggle."""
        return str(flag)

    quoting = FakeBackend(
        "quoting",
        capabilities=frozenset({"tools"}),
        tool_reply=lambda m, t: '<tool_call>{"name": "toggle", "arguments": {"flag": "true"}}</tool_call>',
    )
    llm = GreenServLLM(router=GreenServRouter([quoting], features=make_hashing_extractor(), tradeoff=0.4, seed=0))
    response = llm.chat_with_tools([FunctionTool.from_defaults(fn=toggle)], user_msg="toggle it")
    turns = to_greenserv_messages([ChatMessage(role="user", content="toggle it"), response.message])
    assert turns[1]["content"].count("<tool_call>") == 1  # was 2: recovered, and refused too


# ---- review fixes (2026-12-07) ----------------------------------------------------------------------
def test_pickling_keeps_the_pool_or_refuses_and_leaves_the_llm_as_it_was() -> None:
    import pickle

    llm = make_llm()
    with pytest.raises(TypeError, match="cannot be pickled"):  # the copy silently routed over the bundled pool
        pickle.dumps(llm)
    assert llm.router is not None and llm.complete("hi").text  # was AttributeError: the router was deleted
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(GreenServLLM(models=[FakeBackend("small")], embedder="static"))
    named = GreenServLLM(models=["http://127.0.0.1:8000/v1#qwen"], embedder="static", temperature=0.3)
    before = dict(named.__dict__)
    back = pickle.loads(pickle.dumps(named))
    assert back.pool_name == named.pool_name == "greenserv[http://127.0.0.1:8000/v1#qwen]"
    assert back.temperature == 0.3 and back.built_routers is not named.built_routers
    assert named.__dict__ == before  # the original keeps its routers (built_routers was deleted)
    assert GreenServLLM.from_dict(named.to_dict()).pool_name == named.pool_name  # was greenserv[bundled]
    assert GreenServLLM.from_json(named.to_json()).pool_name == named.pool_name


def test_unknown_constructor_arguments_and_an_infinite_max_latency_are_refused() -> None:
    for arguments in ({"model": "small"}, {"frequency_penalty": 0.3}, {"max_new_tokens": 3}):
        with pytest.raises(ValueError, match="Extra inputs"):  # were silently ignored
            make_llm(**arguments)
    with pytest.raises(ValueError, match="max_latency_s must be a positive finite number"):
        make_llm(max_latency_s=float("inf"))  # was accepted, then every call refused it
    for value in (0, False):
        with pytest.raises(InvalidInputError, match="model names"):  # was routed freely
            make_llm().complete("hi", model=value)


def test_the_evaluator_reads_the_tool_calls_an_answer_made(collector) -> None:  # type: ignore[no-untyped-def]
    from llama_index.core.tools import FunctionTool

    seen: list[str] = []
    llm = tool_llm()
    collector(llm, evaluator=lambda prompt, output: seen.append(output) or 1.0)
    llm.chat_with_tools([FunctionTool.from_defaults(fn=multiply)], user_msg="What is 6 times 7?", tool_required=True)
    assert seen and '"name": "multiply"' in seen[0]  # was "": the call is the answer


def test_a_turn_that_only_called_a_tool_is_no_text_in_the_evaluators_prompt() -> None:
    llm = make_llm()
    prompts: list[str] = []
    handler = GreenServEventHandler(llm=llm, evaluator=lambda prompt, output: prompts.append(prompt) or 1.0)
    call = {"id": "c1", "name": "now", "arguments": {}}
    history = [
        ChatMessage(role="user", content="What time is it?"),
        ChatMessage(role="assistant", content=None, additional_kwargs={"tool_calls": [call]}),
        ChatMessage(role="tool", content="12:00", additional_kwargs={"tool_call_id": "c1"}),
    ]
    handler.handle(LLMChatEndEvent(messages=history, response=llm.chat(history)))
    assert prompts == ["What time is it?\n\n12:00"]  # was "What time is it?\nNone\n12:00"


def test_an_achat_cancelled_before_its_answer_is_charged_but_neither_learned_nor_scorable() -> None:
    router = GreenServRouter([slow_backend()], features=make_hashing_extractor(), seed=0, energy_budget=1000.0)
    llm = GreenServLLM(router=router)

    async def cancelled() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(llm.achat(ASK), 0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(llm.acomplete("hi"), 0.05)

    asyncio.run(cancelled())  # returns once the worker threads have answered (asyncio.run waits for them)
    pacer = router.learner_.pacer_
    assert pacer is not None and pacer.spent_ > 0 and router.stats_["slow"]["energy_joules"] == pacer.spent_
    assert router.stats_["slow"]["decisions"] == 2
    assert pacer.answers_ == 0 and len(router.pending_) == 0  # were 2 and 2: learned from, and left pending


def test_a_deep_copy_shares_the_router_and_what_it_learned() -> None:
    import copy

    llm = make_llm(stop=["!"])
    answer = llm.complete("hi")
    twins = [copy.deepcopy(llm), llm.model_copy(deep=True)]  # were TypeError: cannot pickle an RLock
    for twin in twins:
        assert twin.router is llm.router and twin.stop == ["!"] and twin.stop is not llm.stop
        assert twin.complete("hi").text
    assert twins[0].feedback(answer, 1.0).applied  # the original's answer, scored through the copy
    built = GreenServLLM(models=[FakeBackend("small"), FakeBackend("large")], embedder="static")
    copied = copy.deepcopy(built)
    assert copied.greenserv_router is built.greenserv_router  # no router (no models loaded) of its own


def test_turns_keep_their_spaces_and_unwritable_call_arguments_are_refused_by_message() -> None:
    import datetime

    from llama_index_greenserv.llms import to_greenserv_messages

    code = "    return x + 1\nFix the indentation of the line above.\n"
    turns = to_greenserv_messages(
        [ChatMessage(role="system", content=" Be brief. "), ChatMessage(role="user", content=code)]
    )
    assert [t["content"] for t in turns] == [" Be brief. ", code]  # was stripped: chat() and complete() differed
    called = ChatMessage(
        role="assistant",
        content="",
        additional_kwargs={"tool_calls": [{"name": "book", "arguments": {"on": datetime.date(2026, 1, 1)}}]},
    )
    with pytest.raises(InvalidInputError, match=r"messages\[1\] tool_calls arguments are not JSON"):  # was TypeError
        to_greenserv_messages([ChatMessage(role="user", content="book it"), called])
    deep: dict[str, object] = {}
    for _ in range(5000):  # nested past the recursion limit: was a bare RecursionError
        deep = {"a": deep}
    nested = ChatMessage(
        role="assistant", content="", additional_kwargs={"tool_calls": [{"name": "b", "arguments": deep}]}
    )
    with pytest.raises(InvalidInputError, match="not JSON"):
        to_greenserv_messages([ChatMessage(role="user", content="book it"), nested])


def test_chat_refuses_messages_that_are_not_chat_messages_by_the_librarys_error() -> None:
    llm = make_llm()
    with pytest.raises(InvalidInputError, match=r"messages\[0\] is a dict: give LlamaIndex ChatMessage"):
        llm.chat([{"role": "user", "content": "hi"}])  # type: ignore[list-item]  # was an AttributeError
