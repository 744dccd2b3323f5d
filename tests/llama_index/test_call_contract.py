"""GreenServLLM keeps LlamaIndex's calling conventions: one tool call unless parallel calls are
allowed, tool calls in the history in every shape LlamaIndex writes them, async streams that
check their options when called, a ``stop`` string, and router arguments beside a ready router."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.tools import FunctionTool

from greenserv_core import FakeBackend, GreenServRouter, InvalidInputError
from greenserv_core.tools import with_tool_calls
from llama_index_greenserv import GreenServLLM
from llama_index_greenserv.llms import to_greenserv_messages
from tests.conftest import make_hashing_extractor
from tests.llama_index.test_greenserv_llm import collector, make_llm  # noqa: F401  (a fixture)
from tests.scripted_tools import scripted_tool_backend

CALL = '<tool_call>\n{"name": "multiply", "arguments": {"a": 2, "b": 3}}\n</tool_call>'


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def _two_calls() -> GreenServLLM:
    """A model that answers with two multiply calls."""
    two = FakeBackend(
        "caller",
        capabilities=frozenset({"chat_template", "tools"}),
        tool_reply=lambda m, t: with_tool_calls("", [("multiply", {"a": 2, "b": 3}), ("multiply", {"a": 4, "b": 5})]),
    )
    return make_llm([two])


def test_one_tool_call_unless_parallel_calls_are_allowed() -> None:
    llm = _two_calls()
    tool = FunctionTool.from_defaults(fn=multiply)
    single = llm.chat_with_tools([tool], user_msg="2*3?")
    assert len(llm.get_tool_calls_from_response(single)) == 1
    both = llm.chat_with_tools([tool], user_msg="2*3?", allow_parallel_tool_calls=True)
    assert len(llm.get_tool_calls_from_response(both)) == 2
    assert str(llm.predict_and_call([tool], user_msg="2*3?")) == "6"


def test_tool_calls_in_the_history_are_read_in_every_shape() -> None:
    arguments = {"a": 2, "b": 3}
    ours = {"name": "multiply", "arguments": arguments}
    openai = {"id": "c1", "type": "function", "function": {"name": "multiply", "arguments": '{"a": 2, "b": 3}'}}
    block = ToolCallBlock(tool_call_id="c1", tool_name="multiply", tool_kwargs=arguments)
    shapes = [
        ChatMessage(role=MessageRole.ASSISTANT, additional_kwargs={"tool_calls": [ours]}),
        ChatMessage(role=MessageRole.ASSISTANT, additional_kwargs={"tool_calls": [openai]}),
        ChatMessage(role=MessageRole.ASSISTANT, blocks=[block]),
    ]
    for message in shapes:
        assert to_greenserv_messages([message])[0]["content"] == CALL
    as_text = ToolCallBlock(tool_name="multiply", tool_kwargs='{"a": 2, "b": 3}')
    said = ChatMessage(role=MessageRole.ASSISTANT, blocks=[TextBlock(text="Checking."), as_text])
    assert to_greenserv_messages([said])[0]["content"] == "Checking.\n" + CALL
    for bad in ({"id": "c1"}, {"name": "multiply", "arguments": "{not json"}):
        message = ChatMessage(role=MessageRole.ASSISTANT, additional_kwargs={"tool_calls": [bad]})
        with pytest.raises(InvalidInputError, match=r"messages\[1\]"):
            to_greenserv_messages([ChatMessage(role=MessageRole.USER, content="2*3?"), message])


def test_async_streams_check_their_options_when_called() -> None:
    llm = make_llm()

    async def call(method: str) -> None:
        await getattr(llm, method)(
            *(["hi"] if "complete" in method else [[ChatMessage(role="user", content="hi")]]), bogus=1
        )

    for method in ("astream_complete", "astream_chat"):
        with pytest.raises(InvalidInputError, match="bogus"):
            asyncio.run(call(method))


def test_async_streams_check_their_options_before_they_build_the_router(monkeypatch: pytest.MonkeyPatch) -> None:
    import greenserv_core.models.pool as pool

    def no_build(models, meter="auto", option=None):  # type: ignore[no-untyped-def]
        raise AssertionError("the router was built (every model loaded) before the options were checked")

    monkeypatch.setattr(pool, "build_backends", no_build)
    llm = GreenServLLM(models=["small", "large"], embedder="static")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    for options, refused in (({"bogus": 1}, "bogus"), ({"tool_choice": "nosuch", "tools": tools}, "nosuch")):
        with pytest.raises(InvalidInputError, match=refused):
            asyncio.run(llm.astream_chat([ChatMessage(role="user", content="hi")], **options))  # type: ignore[arg-type]
        completion_refused = "a completion takes no tools" if "tools" in options else refused
        with pytest.raises(InvalidInputError, match=completion_refused):
            asyncio.run(llm.astream_complete("hi", **options))  # type: ignore[arg-type]


def test_a_stop_string_is_one_stop_sequence() -> None:
    echo = FakeBackend("solo", reply=lambda messages: "alpha beta gamma")
    llm = GreenServLLM(router=GreenServRouter([echo], features=make_hashing_extractor(), seed=0))
    assert llm.complete("go", stop="beta").text == "alpha "
    assert llm.complete("go", stop=None).text == "alpha beta gamma"
    assert GreenServLLM(router=llm.router, stop=["beta"]).complete("go").text == "alpha "
    assert GreenServLLM(router=llm.router, stop="beta").complete("go").text == "alpha "


def test_arguments_that_build_a_router_are_refused_beside_a_ready_one() -> None:
    router = GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), tradeoff=0.1, seed=0)
    for given in ({"strategy": "random"}, {"models": ["small"]}, {"meter": "estimate"}, {"embedder": "static"}):
        with pytest.raises(ValueError, match="router= and " + next(iter(given)) + "="):
            GreenServLLM(router=router, **given)
    assert GreenServLLM(router=router).complete("hi").raw["tradeoff"] == 0.1  # the router's own
    llm = GreenServLLM(router=router, tradeoff=0.9)  # given beside a ready router: every call's λ
    assert llm.complete("hi").raw["tradeoff"] == 0.9
    assert llm.complete("hi", tradeoff=0.3).raw["tradeoff"] == 0.3
    assert GreenServLLM(router=router, tradeoff=0.4).complete("hi").raw["tradeoff"] == 0.4  # the default's value too


def test_an_answer_the_router_scored_itself_is_not_an_evaluator_failure(collector) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    llm = make_llm([scripted_tool_backend("caller")], score_tool_calls=True)
    handler = collector(llm, evaluator=lambda prompt, output: 1.0)
    llm.chat_with_tools([FunctionTool.from_defaults(fn=multiply)], user_msg="What is 6 times 7?")
    assert handler.errors == [] and len(handler.seen) == 1


def test_copies_share_the_router_they_would_build(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.features import FeatureExtractor

    monkeypatch.setattr(FeatureExtractor, "default", classmethod(lambda cls, **kwargs: make_hashing_extractor()))
    llm = GreenServLLM(models=[FakeBackend("small"), FakeBackend("big")], seed=0)
    router = llm.greenserv_router
    copy = llm.model_copy(update={"tradeoff": 0.9})
    assert copy.greenserv_router is router and copy.complete("hi").additional_kwargs["tradeoff"] == 0.9
    assert llm.model_copy(update={"strategy": "linucb"}).greenserv_router is not router
    budget = GreenServLLM(models=[FakeBackend("small"), FakeBackend("big")], energy_budget=30.0, tradeoff=0.2, seed=0)
    assert budget.call_tradeoff is None  # the budget sets λ; tradeoff is only where it starts
    assert budget.model_copy(update={"tradeoff": 0.6}).greenserv_router is not budget.greenserv_router


def test_tool_results_follow_the_order_of_the_calls_they_answer() -> None:
    history = [
        ChatMessage(role=MessageRole.USER, content="Run a and b."),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[
                ToolCallBlock(tool_call_id="x", tool_name="a", tool_kwargs={}),
                ToolCallBlock(tool_call_id="y", tool_name="b", tool_kwargs={}),
            ],
        ),
        ChatMessage(role=MessageRole.TOOL, content="result of b", additional_kwargs={"tool_call_id": "y"}),
        ChatMessage(role=MessageRole.TOOL, content="result of a", additional_kwargs={"tool_call_id": "x"}),
    ]
    turns = to_greenserv_messages(history)
    assert [t["content"] for t in turns[2:]] == [
        "<tool_response>\nresult of a\n</tool_response>",
        "<tool_response>\nresult of b\n</tool_response>",
    ]


def test_images_and_documents_are_refused_not_dropped() -> None:
    from llama_index.core.base.llms.types import DocumentBlock, ImageBlock, ThinkingBlock

    llm = make_llm()
    for block in (ImageBlock(url="https://example.com/cat.png"), DocumentBlock(data=b"%PDF-1.4", title="a.pdf")):
        message = ChatMessage(role="user", blocks=[TextBlock(text="Describe this."), block])
        with pytest.raises(InvalidInputError, match=rf"messages\[0\] has a {type(block).__name__}"):
            llm.chat([message])
    thought = ChatMessage(role="assistant", blocks=[ThinkingBlock(content="hmm"), TextBlock(text="Four.")])
    assert to_greenserv_messages([thought])[0]["content"] == "Four."  # a model's reasoning is left out
    from llama_index.core.base.llms.types import CacheControl, CachePoint

    marked = ChatMessage(
        role="user", blocks=[TextBlock(text="Hi."), CachePoint(cache_control=CacheControl(type="ephemeral"))]
    )
    assert to_greenserv_messages([marked])[0]["content"] == "Hi."  # a caching marker holds no content


def test_options_given_as_none_take_the_defaults() -> None:
    llm = make_llm()
    for option in ("temperature", "top_p", "max_tokens", "seed", "timeout", "tradeoff"):
        assert llm.chat([ChatMessage(role="user", content="hi")], **{option: None}).message.content


# ---- review fixes (2026-12-05) ----------------------------------------------------------------------
def test_streamed_tool_answers_keep_one_call_unless_parallel_calls_are_allowed() -> None:
    llm = _two_calls()
    tool = FunctionTool.from_defaults(fn=multiply)
    last = list(llm.stream_chat_with_tools([tool], user_msg="2*3?"))[-1]
    assert len(llm.get_tool_calls_from_response(last)) == 1  # LlamaIndex checks only chat_with_tools' answers

    async def streamed(allow: bool) -> int:
        final = None
        async for response in await llm.astream_chat_with_tools(
            [tool], user_msg="2*3?", allow_parallel_tool_calls=allow
        ):
            final = response
        assert final is not None
        return len(llm.get_tool_calls_from_response(final))

    assert asyncio.run(streamed(False)) == 1 and asyncio.run(streamed(True)) == 2


def test_a_tool_with_a_long_description_is_offered() -> None:
    def lookup(q: str) -> str:
        return q

    long = FunctionTool.from_defaults(fn=lookup, description="Look things up. " * 80)  # past OpenAI's 1024
    caller = FakeBackend(
        "caller",
        capabilities=frozenset({"chat_template", "tools"}),
        tool_reply=lambda m, t: with_tool_calls("", [("lookup", {"q": "x"})]),
    )
    response = make_llm([caller]).chat_with_tools([long], user_msg="look up x")
    assert response.message.additional_kwargs["tool_calls"][0]["arguments"] == {"q": "x"}


def test_bad_sampling_defaults_are_refused_when_the_model_is_made() -> None:
    from pydantic import ValidationError

    from langchain_greenserv import ChatGreenServ

    for bad, match in (
        ({"temperature": -3}, "temperature"),
        ({"top_p": 5}, "top_p"),
        ({"timeout": -1}, "timeout"),
        ({"seed": -1}, "seed"),
        ({"max_latency_s": 0}, "max_latency_s"),
    ):
        with pytest.raises(ValidationError, match=match):
            GreenServLLM(**bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match=match):
            ChatGreenServ(**bad)  # type: ignore[arg-type]
    from decimal import Decimal

    taken = GreenServLLM(temperature=Decimal("0.5"), timeout=float("inf"), max_latency_s=Decimal("2"))
    assert (taken.temperature, taken.timeout, taken.max_latency_s) == (0.5, float("inf"), 2.0)  # as calls take them


def test_async_embeddings_run_a_batch_at_a_time_off_the_event_loop() -> None:
    import threading

    from greenserv_core.features import HashingEmbedder
    from llama_index_greenserv import GreenServEmbedding

    class Counting(HashingEmbedder):
        def __init__(self) -> None:
            super().__init__(32)
            self.calls: list[tuple[int, bool]] = []

        def embed(self, texts):  # type: ignore[no-untyped-def]
            self.calls.append((len(texts), threading.current_thread() is threading.main_thread()))
            return super().embed(texts)

    embedder = Counting()
    model = GreenServEmbedding(embedder=embedder, embed_batch_size=10)
    vectors = asyncio.run(model.aget_text_embedding_batch([f"text {i}" for i in range(20)]))
    assert len(vectors) == 20 and embedder.calls == [(10, False), (10, False)]  # was 20 calls of 1, on the loop


def test_the_embedding_takes_a_bundled_embedders_name_and_serialises_without_it() -> None:
    """A name was taken as the embedder itself (AttributeError at the first embedding), and
    to_json() failed on the embedder object."""
    import json

    from pydantic import ValidationError

    from greenserv_core.features import HashingEmbedder
    from greenserv_core.features.static_embedder import StaticEmbedder
    from llama_index_greenserv import GreenServEmbedding

    assert isinstance(GreenServEmbedding(embedder="static").embedder, StaticEmbedder)
    with pytest.raises(ValidationError, match="embedder must be one of"):
        GreenServEmbedding(embedder=42)
    model = GreenServEmbedding(embedder=HashingEmbedder(8))
    data = json.loads(model.to_json())
    assert data["embedder"] == data["model_name"] == "hashing:8"
    with pytest.raises(ValidationError, match="embedder must be one of"):  # not rebuilt as another one
        GreenServEmbedding.from_json(model.to_json())
    bundled = GreenServEmbedding(embedder="minilm")
    again = GreenServEmbedding.from_json(bundled.to_json())
    assert again.embedder.name == bundled.embedder.name and again.embedder.max_seq_length == 256
    static = GreenServEmbedding(embedder="static")
    assert GreenServEmbedding.from_json(static.to_json()).embedder.name == static.embedder.name


def test_a_tool_call_s_start_event_still_serialises() -> None:
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler

    dumped: list[str] = []

    class Dumping(BaseEventHandler):
        def handle(self, event, **kwargs):  # type: ignore[no-untyped-def]
            dumped.append(event.model_dump_json())

    dispatcher = get_dispatcher()
    handler = Dumping()
    dispatcher.add_event_handler(handler)
    try:
        caller = FakeBackend(
            "caller",
            capabilities=frozenset({"chat_template", "tools"}),
            tool_reply=lambda m, t: with_tool_calls("", [("multiply", {"a": 2, "b": 3})]),
        )
        make_llm([caller]).chat_with_tools([FunctionTool.from_defaults(fn=multiply)], user_msg="2*3?")
    finally:
        dispatcher.event_handlers.remove(handler)
    assert any('"greenserv_tool_shaping":{"single":true}' in text for text in dumped)  # raised on the classes


def test_the_event_handler_reads_nothing_of_another_llms_answer() -> None:
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse
    from llama_index.core.instrumentation.events.llm import LLMChatEndEvent

    from greenserv_core import FakeBackend, GreenServRouter
    from llama_index_greenserv import GreenServEventHandler, GreenServLLM
    from tests.conftest import make_hashing_extractor

    llm = GreenServLLM(router=GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), seed=0))
    handler = GreenServEventHandler(llm=llm)
    call = {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": "{}"}}  # OpenAI's shape
    foreign = ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]})
    asked = [ChatMessage(role="user", content="time?")]
    event = LLMChatEndEvent(messages=asked, response=ChatResponse(message=foreign))
    handler.handle(event)  # was KeyError('name'): the tool calls were read before the answer was known as ours
    assert handler.errors == []


def test_a_call_recovered_through_the_tool_s_schema_holds_json_and_goes_back_as_history() -> None:
    import datetime

    def book(on: bool, day: datetime.date) -> str:
        """Book a day."""
        return f"{on} {day}"

    reply = '<tool_call>{"name": "book", "arguments": {"on": "true", "day": "2024-01-02"}}</tool_call>'
    llm = make_llm([FakeBackend("m", capabilities=frozenset({"tools"}), tool_reply=lambda m, t: reply)])
    tool = FunctionTool.from_defaults(fn=book)
    response = llm.chat_with_tools([tool], user_msg="book 2 Jan")
    call = response.message.additional_kwargs["tool_calls"][0]
    assert call["arguments"] == {"on": True, "day": "2024-01-02"}  # the day was a datetime.date
    tool_turn = ChatMessage(role="tool", content="ok", additional_kwargs={"tool_call_id": call["id"]})
    history = [ChatMessage(role="user", content="book 2 Jan"), response.message, tool_turn]
    assert llm.chat_with_tools([tool], chat_history=history).message  # was TypeError: date is not JSON serializable


def test_a_function_agents_output_and_a_routing_record_can_be_scored() -> None:
    """AgentOutput (its raw is the routing record) and the record itself were refused, though
    the error said an answer's message would do."""
    from llama_index.core.agent.workflow import FunctionAgent

    llm = make_llm([scripted_tool_backend()])

    async def run() -> object:
        return await FunctionAgent(tools=[FunctionTool.from_defaults(fn=multiply)], llm=llm).run("multiply 2 3")

    output = asyncio.run(run())
    assert llm.feedback(output, 1.0).applied
    chat = llm.chat([ChatMessage(role="user", content="hi")])
    assert llm.feedback(chat.raw, 0.5).score == 0.5
    with pytest.raises(InvalidInputError, match="LlamaIndex: its response, an agent's output or its raw routing"):
        llm.feedback(chat.message, 1.0)  # a message carries no decision id: the error says what does


@pytest.mark.parametrize("form", ["complete", "stream_complete", "acomplete", "astream_complete"])
def test_a_completion_refuses_tools_whose_calls_it_would_lose(form: str) -> None:
    """The model called the tool (34 tokens), and the completion's text came back empty."""
    llm = make_llm([scripted_tool_backend()])
    tools = [FunctionTool.from_defaults(fn=multiply).metadata.to_openai_tool()]

    async def call() -> object:
        made = getattr(llm, form)("multiply 2 3", tools=tools)
        return await made if asyncio.iscoroutine(made) else made

    with pytest.raises(InvalidInputError, match="a completion takes no tools"):
        asyncio.run(call())
    for nothing in ({"tools": []}, {"tool_choice": "none"}, {"tool_choice": False}, {"tool_required": False}):
        if form == "complete":  # offering nothing is no tool (a review: these were refused too)
            assert llm.complete("hi", **nothing).text is not None


def test_an_llm_written_without_its_pool_is_not_rebuilt_over_another() -> None:
    """to_dict() left a ready router (or backend objects) out, and from_dict() built the bundled pool."""
    llm = make_llm()
    data = llm.to_dict()
    with pytest.raises(InvalidInputError, match="written without its pool"):
        GreenServLLM.from_dict(data)
    router = GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), seed=0)
    assert GreenServLLM.from_dict(data, router=router).greenserv_router is router  # given again: taken
    objects = GreenServLLM(models=[FakeBackend("small")], embedder="static")
    with pytest.raises(InvalidInputError, match="models given as objects"):
        GreenServLLM.from_json(objects.to_json())


def test_awarm_builds_the_router_off_the_event_loop_and_metadata_on_it_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A FunctionAgent reads metadata on the event loop, which built the router (loading every
    model) there; awarm() builds it in a worker thread first, and the loop's read warns."""
    import threading

    import greenserv_core.router as router_module

    built_on: list[bool] = []
    original = router_module.GreenServRouter.__init__

    def recording(self: object, *args: object, **kwargs: object) -> None:
        built_on.append(threading.current_thread() is threading.main_thread())
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(router_module.GreenServRouter, "__init__", recording)
    monkeypatch.setattr("greenserv_core.log_once._SAID", set())  # (said once per process)
    warmed = asyncio.run(GreenServLLM(models=[FakeBackend("small")], embedder="static").awarm())
    assert built_on == [False] and warmed.metadata.model_name == "greenserv[small]"

    async def read_on_the_loop() -> object:
        return GreenServLLM(models=[FakeBackend("large")], embedder="static").metadata

    with caplog.at_level("WARNING", logger="greenserv.llama_index"):
        asyncio.run(read_on_the_loop())
    assert built_on == [False, True] and "await llm.awarm()" in caplog.text
