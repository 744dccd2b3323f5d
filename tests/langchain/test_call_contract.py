"""ChatGreenServ keeps LangChain's calling conventions: ``stop`` strings, the per-call ``stream=``
switch, list content (``output_version="v1"``), the package versions in ``metadata``, and
router arguments that would be ignored beside a ready router."""

from __future__ import annotations

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import ConfigurableField
from pydantic import BaseModel

from greenserv_core import FakeBackend, GreenServRouter, InvalidInputError
from greenserv_core.adapters import CALL_OPTIONS
from langchain_greenserv import ChatGreenServ, GreenServFeedbackHandler
from tests.conftest import make_hashing_extractor
from tests.langchain.test_chat_greenserv import make_llm, multiply, tool_llm
from tests.scripted_tools import scripted_tool_backend


class Person(BaseModel):
    name: str
    age: int


def _solo() -> ChatGreenServ:
    echo = FakeBackend("solo", reply=lambda messages: "alpha beta gamma")
    return ChatGreenServ(router=GreenServRouter([echo], features=make_hashing_extractor(), seed=0))


def test_a_stop_string_is_one_stop_sequence() -> None:
    llm = _solo()
    assert llm.invoke("go", stop=["beta"]).content == "alpha "
    assert llm.invoke("go", stop="beta").content == "alpha "  # type: ignore[arg-type]  # not 'b', 'e', 't', 'a'
    assert llm.bind(stop="beta").invoke("go").content == "alpha "
    assert ChatGreenServ(router=llm.router, stop="beta").invoke("go").content == "alpha "
    assert llm._get_ls_params(stop="beta")["ls_stop"] == ["beta"]  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="stop"):
        llm.invoke("go", stop=[""])


def test_the_per_call_stream_switch_is_langchains_not_an_unknown_option() -> None:
    llm = make_llm()
    for stream in (True, False):
        assert llm.invoke("hi", stream=stream).response_metadata["model_name"] in ("small", "large")


def test_the_package_versions_are_in_the_metadata() -> None:
    assert "langchain-core" in (make_llm().metadata or {})["lc_versions"]


def test_arguments_that_build_a_router_are_refused_beside_a_ready_one() -> None:
    router = GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), tradeoff=0.1, seed=0)
    for given in ({"strategy": "random"}, {"models": ["small"]}, {"embedder": "static"}, {"meter": "estimate"}):
        with pytest.raises(ValueError, match="router= and " + next(iter(given)) + "="):
            ChatGreenServ(router=router, **given)
    llm = ChatGreenServ(router=router)  # the adapter reports the router's own λ and policy
    assert llm._identifying_params["tradeoff"] == 0.1 and llm._identifying_params["strategy"] == router.policy
    assert llm.invoke("hi").response_metadata["greenserv"]["tradeoff"] == 0.1
    assert llm.invoke("hi", tradeoff=0.9).response_metadata["greenserv"]["tradeoff"] == 0.9  # λ per call
    assert ChatGreenServ(router=router, max_joules=50.0).max_joules == 50.0  # a per-call default still applies


def test_a_tradeoff_beside_a_ready_router_is_every_calls_and_configurable() -> None:
    router = GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), tradeoff=0.1, seed=0)
    for lam in (0.7, 0.4, 0.0):  # the default's value and zero too
        llm = ChatGreenServ(router=router, tradeoff=lam)
        assert llm.invoke("hi").response_metadata["greenserv"]["tradeoff"] == lam
        assert llm._identifying_params["tradeoff"] == lam  # a cached answer of another λ is not this one's
    configurable = ChatGreenServ(router=router).configurable_fields(tradeoff=ConfigurableField(id="λ"))
    answer = configurable.invoke("hi", config={"configurable": {"λ": 0.9}})
    assert answer.response_metadata["greenserv"]["tradeoff"] == 0.9
    assert llm.feedback(answer, 1.0).applied  # the copy answered with the same router


def test_settings_that_change_an_answer_tell_cached_answers_apart() -> None:
    first, second = make_llm(top_p=0.5), make_llm(top_p=0.9)
    assert first._identifying_params != second._identifying_params
    assert make_llm(stop=["x"])._identifying_params != make_llm()._identifying_params


def test_a_models_own_stop_is_in_its_cache_key_and_its_cached_answers_keep_to_it() -> None:
    """LangChain put the call's stop (None) over the model's: a model with stop=["there"] was
    handed another model's cached answer, which ran past its stop."""
    from langchain_core.caches import InMemoryCache

    router = GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), seed=0)
    cache = InMemoryCache()
    plain, stopped = (
        ChatGreenServ(router=router, cache=cache),
        ChatGreenServ(router=router, stop=["there"], cache=cache),
    )
    assert plain._get_llm_string() != stopped._get_llm_string()
    assert plain.invoke("hello there").content == "small: hello there"
    assert stopped.invoke("hello there").content == "small: hello "
    assert stopped._get_llm_string(stop=["x"]) == plain._get_llm_string(stop=["x"])  # a call's stop replaces it


def test_a_protocol_streams_token_callbacks_get_every_chunk_as_stream_sends_them() -> None:
    """With the run manager (stream_events v3), chunks without text (the last: usage, tool
    calls) never reached on_llm_new_token."""
    from langchain_core.callbacks import BaseCallbackHandler

    class Tokens(BaseCallbackHandler):
        def __init__(self) -> None:
            self.chunks: list[ChatGenerationChunk] = []

        def on_llm_new_token(self, token: str, *, chunk: ChatGenerationChunk, **kwargs: object) -> None:  # type: ignore[override]
            self.chunks.append(chunk)

    for make in (make_llm, lambda: tool_llm().bind_tools([Person])):
        streamed, evented = Tokens(), Tokens()
        list(make().stream("make 'Ann' aged 42", config={"callbacks": [streamed]}))  # type: ignore[operator]
        for _ in make().stream_events("make 'Ann' aged 42", version="v3", config={"callbacks": [evented]}):  # type: ignore[operator]
            pass
        assert len(evented.chunks) == len(streamed.chunks) > 0
        assert any(getattr(c.message, "usage_metadata", None) for c in evented.chunks)


def test_generate_names_the_models_that_answered() -> None:
    """Its combined llm_output was {}: LangChain's default dropped each run's model_name."""
    llm = make_llm()
    output = llm.generate([[HumanMessage("hi")], [HumanMessage("What is 2 + 2?")]]).llm_output
    assert output is not None and len(output["model_names"]) == 2
    assert set(output["model_names"]) <= {"small", "large"}


@pytest.mark.parametrize("name", ["temperature", "top_p"])
def test_none_is_a_settings_default(name: str) -> None:
    """As ChatOpenAI takes temperature=None; it was refused."""
    assert getattr(make_llm(**{name: None}), name) == getattr(make_llm(), name)


def test_list_content_is_read_as_its_text() -> None:
    llm = ChatGreenServ(
        router=GreenServRouter([scripted_tool_backend("caller")], features=make_hashing_extractor(), seed=0),
        output_version="v1",
    )
    for method in ("json_mode", "json_schema", "function_calling"):
        assert llm.with_structured_output(Person, method=method).invoke("'Ada' aged 36") == Person(name="Ada", age=36)
    prompts: list[str] = []
    plain = make_llm()
    handler = GreenServFeedbackHandler(plain, evaluator=lambda prompt, output: prompts.append(prompt) or 1.0)
    plain.invoke([HumanMessage(content=[{"type": "text", "text": "What is 2 + 2?"}])], config={"callbacks": [handler]})
    assert prompts == ["What is 2 + 2?"]


def test_a_streamed_structured_answer_keeps_the_reason_it_was_refused() -> None:
    sloppy = FakeBackend(
        "sloppy",
        capabilities=frozenset({"tools"}),
        tool_reply=lambda m, t: '<tool_call>{"name": "Person", "arguments": {"name": "Ada"}}</tool_call>',
    )
    router = GreenServRouter([sloppy], features=make_hashing_extractor(), seed=0)
    structured = ChatGreenServ(router=router).with_structured_output(Person)
    with pytest.raises(OutputParserException, match="'age' is a required property"):
        list(structured.stream("a person"))
    streaming = ChatGreenServ(router=router, streaming=True).with_structured_output(Person)
    with pytest.raises(OutputParserException, match="'age' is a required property"):
        streaming.invoke("a person")


def test_the_feedback_handler_leaves_other_routers_answers_alone() -> None:
    drafter, reviewer = make_llm(), make_llm()
    handler = GreenServFeedbackHandler(reviewer, evaluator=lambda prompt, output: 1.0)
    (drafter | StrOutputParser() | reviewer).invoke("draft a haiku", config={"callbacks": [handler]})
    assert len(handler.runs) == 1 and handler.errors == []
    (run,) = handler.runs.values()
    assert run.score == 1.0 and reviewer.greenserv_router.pending_.known(run.decision_id)
    assert len(drafter.greenserv_router.pending_) == 1  # the drafter's answer waits for its own score


def test_configured_copies_of_a_model_that_builds_its_router_share_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.features import FeatureExtractor

    monkeypatch.setattr(FeatureExtractor, "default", classmethod(lambda cls, **kwargs: make_hashing_extractor()))
    llm = ChatGreenServ(models=[FakeBackend("small"), FakeBackend("big")], tradeoff=0.3, seed=0)
    configurable = llm.configurable_fields(tradeoff=ConfigurableField(id="λ"))
    answers = [configurable.invoke("hi", config={"configurable": {"λ": lam}}) for lam in (0.9, 0.1)]
    assert [a.response_metadata["greenserv"]["tradeoff"] for a in answers] == [0.9, 0.1]
    router = llm.greenserv_router
    assert sum(router.stats_[m]["decisions"] for m in router.models) == 2  # both copies routed with it
    assert llm.feedback(answers[0], 1.0).applied  # the copy's decision is the original's router's
    assert llm.invoke("hi").response_metadata["greenserv"]["tradeoff"] == 0.3  # its own λ, as before
    other = configurable.with_config(configurable={"λ": 0.5})
    assert other.invoke("hi").response_metadata["greenserv"]["tradeoff"] == 0.5
    assert llm.model_copy().greenserv_router is router
    capped = llm.configurable_fields(max_joules=ConfigurableField(id="cap"), seed=ConfigurableField(id="seed"))
    for cap, seed in ((1e6, 1), (2e6, 2)):  # options every call sends build no other router
        capped.invoke("hi", config={"configurable": {"cap": cap, "seed": seed}})
    assert sum(router.stats_[m]["decisions"] for m in router.models) == 6
    # a copy that builds another router (another policy) gets its own, built once
    linucb = llm.configurable_fields(strategy=ConfigurableField(id="policy"))
    for _ in range(2):
        linucb.invoke("hi", config={"configurable": {"policy": "linucb"}})
    built = llm.model_copy(update={"strategy": "linucb"}).greenserv_router
    assert built is not router and sum(built.stats_[m]["decisions"] for m in built.models) == 2


def test_tool_results_follow_the_order_of_the_calls_they_answer() -> None:
    from langchain_core.messages import AIMessage, ToolMessage

    from langchain_greenserv.messages import to_greenserv_messages

    calls = [{"name": "a", "args": {}, "id": "x"}, {"name": "b", "args": {}, "id": "y"}]
    turns = to_greenserv_messages(
        [
            HumanMessage("Run a and b."),
            AIMessage("", tool_calls=calls),
            ToolMessage("result of b", tool_call_id="y"),
            ToolMessage("result of a", tool_call_id="x"),
            HumanMessage("Thanks."),
        ]
    )
    assert [t["content"] for t in turns[2:4]] == [
        "<tool_response>\nresult of a\n</tool_response>",
        "<tool_response>\nresult of b\n</tool_response>",
    ]
    assert turns[4] == {"role": "user", "content": "Thanks."}


# ---- what other chat models take (found by a review of the adapter, 2026-12-05) -----------


def test_the_pool_name_does_not_change_when_the_router_is_built() -> None:
    """LangChain's cache key and traces name the pool before the first call and after it."""
    remote = ChatGreenServ(models=["http://127.0.0.1:9/v1#qwen", "http://127.0.0.1:9/v1#llama"], embedder="static")
    before = (remote._get_ls_params()["ls_model_name"], remote._get_llm_string())
    assert remote.greenserv_router.models == ["qwen", "llama"]  # what the first call does (connects lazily)
    assert (remote._get_ls_params()["ls_model_name"], remote._get_llm_string()) == before
    assert before[0] == "greenserv[http://127.0.0.1:9/v1#qwen,http://127.0.0.1:9/v1#llama]"


def test_bind_tools_takes_strict_and_parallel_tool_calls() -> None:
    two = FakeBackend(
        "caller",
        capabilities=frozenset({"chat_template", "tools"}),
        tool_reply=lambda m, t: (
            '<tool_call>{"name": "multiply", "arguments": {"a": 2, "b": 3}}</tool_call>\n'
            '<tool_call>{"name": "multiply", "arguments": {"a": 4, "b": 5}}</tool_call>'
        ),
    )
    llm = ChatGreenServ(router=GreenServRouter([two], features=make_hashing_extractor(), seed=0))
    assert len(llm.bind_tools([multiply], strict=True).invoke("2*3 and 4*5?").tool_calls) == 2
    single = llm.bind_tools([multiply], parallel_tool_calls=False)
    assert [c["args"] for c in single.invoke("2*3 and 4*5?").tool_calls] == [{"a": 2, "b": 3}]
    merged = None
    for chunk in single.stream("2*3 and 4*5?"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and len(merged.tool_calls) == 1
    assert len(llm.bind_tools([multiply]).invoke("2*3?", parallel_tool_calls=False).tool_calls) == 1
    with pytest.raises(InvalidInputError, match="parallel_tool_calls"):
        llm.bind_tools([multiply], parallel_tool_calls="no")  # type: ignore[arg-type]
    # tool_choice=False makes no choice, as ChatOpenAI reads it
    assert len(llm.bind_tools([multiply], tool_choice=False).invoke("2*3?").tool_calls) == 2


def test_openai_response_formats_and_json_mode_without_a_schema() -> None:
    llm = tool_llm()
    assert llm.with_structured_output(None, method="json_mode").invoke("A person called 'Ada'") == {
        "answer": "A person called 'Ada'"
    }
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    openai_shaped = {"type": "json_schema", "json_schema": {"name": "Answer", "schema": schema, "strict": True}}
    assert llm.bind(response_format=openai_shaped).invoke("A person called 'Ada'").content.startswith("{")
    assert llm.bind(response_format={"type": "json_object"}).invoke("A person called 'Ada'").content.startswith("{")
    with pytest.raises(InvalidInputError, match="json_schema"):
        llm.bind(response_format={"type": "json_schema", "json_schema": "no"}).invoke("hi")
    with pytest.raises(InvalidInputError, match="needs a schema"):
        llm.with_structured_output(None)


def test_options_given_as_none_take_the_defaults() -> None:
    from greenserv_core.adapters import generation_options

    llm = make_llm()
    for option in ("temperature", "top_p", "max_tokens", "seed", "timeout", "tradeoff"):
        assert llm.invoke("hi", **{option: None}).content  # type: ignore[arg-type]
    assert ChatGreenServ(router=llm.router, max_tokens=None)._get_ls_params()["ls_max_tokens"] == 256
    traced = ChatGreenServ(router=llm.router, temperature=0.3)
    assert traced._get_ls_params(temperature=None)["ls_temperature"] == 0.3  # was None: traced as given
    assert traced._get_ls_params(temperature=0.0)["ls_temperature"] == 0.0
    defaults = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "seed": 7, "max_latency_s": 2.0}
    options = generation_options(
        dict.fromkeys([*CALL_OPTIONS - {"model", "stop"}]),
        owner="X",
        timeout=5.0,
        max_joules=20.0,
        tradeoff=0.3,
        **defaults,  # type: ignore[arg-type]
    )
    assert (options["temperature"], options["top_p"], options["max_new_tokens"]) == (0.7, 0.9, 64)
    assert (options["seed"], options["max_latency_s"], options["max_time_s"]) == (7, 2.0, 5.0)
    assert (options["max_joules"], options["tradeoff"]) == (20.0, 0.3)  # a cap is not lifted by None


def test_a_run_id_given_again_routes_again_and_each_answer_is_scored_as_its_own() -> None:
    import uuid

    from greenserv_core import DecisionAlreadyScoredError

    llm = make_llm()
    run_id = uuid.uuid4()
    first = llm.invoke("first question", config={"run_id": run_id})
    second = llm.invoke("second question", config={"run_id": run_id})
    first_id, second_id = (m.response_metadata["greenserv"]["decision_id"] for m in (first, second))
    assert first_id != second_id
    assert llm.feedback(second, 0.0).decision_id == second_id  # each message scores its own answer
    assert llm.feedback(first, 1.0).decision_id == first_id
    with pytest.raises(DecisionAlreadyScoredError):
        llm.feedback(str(run_id), 1.0)  # the run id names its first answer
    seen: list[str] = []
    handler = GreenServFeedbackHandler(llm, evaluator=lambda prompt, output: seen.append(prompt) or 1.0)
    again = uuid.uuid4()
    for question in ("third question", "fourth question"):
        llm.invoke(question, config={"run_id": again, "callbacks": [handler]})
    assert seen == ["third question", "fourth question"]  # the evaluator scores both answers


def test_tool_choice_names_a_tool_given_bare_or_as_a_tool_spec() -> None:
    from greenserv_core.tools import ToolSpec

    reply = '<tool_call>{"name": "now", "arguments": {}}</tool_call>'
    now = FakeBackend("m", capabilities=frozenset({"tools"}), tool_reply=lambda m, t: reply)
    llm = ChatGreenServ(router=GreenServRouter([now], features=make_hashing_extractor(), seed=0))
    bare = {"name": "now", "description": "The time.", "parameters": {"type": "object", "properties": {}}}
    for tools in ([bare], [ToolSpec("now", "", "{}")]):  # forms the router takes: were KeyError, TypeError
        assert [c["name"] for c in llm.invoke("time?", tools=tools, tool_choice="now").tool_calls] == ["now"]
    with pytest.raises(InvalidInputError, match="names no bound tool"):
        llm.invoke("time?", tools=[bare], tool_choice="later")


def test_structured_output_refuses_json_it_cannot_read_as_a_parsing_error() -> None:
    """A 5,000-digit number or a deep nest in a JSON-mode answer raised ValueError or
    RecursionError, past ``include_raw=True``."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

    class City(BaseModel):
        city: str

    for answer in ('{"city": "Paris", "n": ' + "1" * 5000 + "}", '{"city": "P", "n": ' + "[" * 3000 + "]" * 3000 + "}"):
        backend = FakeBackend(
            "json",
            context_window=20_000,
            capabilities=frozenset({"chat_template", "json_mode"}),
            json_reply=lambda messages, wanted, answer=answer: answer,
        )
        llm = ChatGreenServ(router=GreenServRouter([backend], features=make_hashing_extractor(), seed=0))
        for wanted, method in ((schema, "json_schema"), (City, "json_mode"), (None, "json_mode")):
            with pytest.raises(OutputParserException):
                llm.with_structured_output(wanted, method=method).invoke("Capital?")  # type: ignore[arg-type]
            raw = llm.with_structured_output(wanted, method=method, include_raw=True).invoke("Capital?")  # type: ignore[arg-type]
            assert isinstance(raw["parsing_error"], OutputParserException)  # type: ignore[index]
