"""JSON mode: the ``json_mode`` capability, the request a remote server gets, and LangChain's
``with_structured_output(method="json_mode" | "json_schema")``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from langchain_core.exceptions import OutputParserException
from pydantic import BaseModel

from greenserv_core import FakeBackend, GreenServRouter, InvalidInputError, NoEligibleModelError
from greenserv_core.backends import GenerationSettings, JsonFormat, OpenAICompatibleBackend
from greenserv_core.messages import Message
from greenserv_core.routing.request import json_format as read_response_format
from langchain_greenserv import ChatGreenServ
from tests.conftest import make_hashing_extractor

CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


class City(BaseModel):
    city: str


def json_backend(name: str, answer: str) -> FakeBackend:
    def reply(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
        return answer

    return FakeBackend(name, capabilities=frozenset({"chat_template", "json_mode"}), json_reply=reply)


def router(*backends: FakeBackend) -> GreenServRouter:
    return GreenServRouter(list(backends), features=make_hashing_extractor(), seed=0)


def test_json_requests_go_only_to_models_with_json_mode() -> None:
    pool = router(json_backend("json", '{"city": "Paris"}'), FakeBackend("plain"))
    for _ in range(5):
        answer = pool.generate("Capital of France?", response_format=CITY)
        assert answer.model == "json" and json.loads(answer.text) == {"city": "Paris"}
        assert answer.decision.excluded["plain"] == "lacks the capability json_mode"
    with pytest.raises(NoEligibleModelError, match="no model in the pool has the capability json_mode"):
        router(FakeBackend("plain")).generate("Capital of France?", response_format="json")


def test_bad_response_formats_are_refused() -> None:
    pool = router(json_backend("json", "{}"))
    with pytest.raises(InvalidInputError, match="not a valid JSON schema"):
        pool.generate("Hi", response_format={"type": "no-such-type"})
    with pytest.raises(InvalidInputError, match="response_format"):
        pool.generate("Hi", response_format="yaml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("json_format", "expected"),
    [
        (JsonFormat(), {"type": "json_object"}),
        (JsonFormat.from_schema(CITY), {"type": "json_schema", "json_schema": {"name": "answer", "schema": CITY}}),
    ],
)
def test_a_remote_server_gets_openai_response_format(json_format: JsonFormat, expected: dict[str, Any]) -> None:
    seen: list[dict[str, Any]] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": '{"city": "Paris"}'}}]})

    remote = OpenAICompatibleBackend("http://gpu:8000/v1", "m", transport=httpx.MockTransport(server))
    remote.generate([{"role": "user", "content": "Capital?"}], GenerationSettings(json=json_format))
    assert seen[0]["response_format"] == expected


@pytest.mark.parametrize("method", ["json_mode", "json_schema"])
def test_structured_output_through_json_mode(method: str) -> None:
    chat = ChatGreenServ(router=router(json_backend("json", '{"city": "Paris"}'), FakeBackend("plain")))
    assert chat.with_structured_output(City, method=method).invoke("Capital of France?") == City(city="Paris")
    assert chat.with_structured_output(CITY, method=method).invoke("Capital of France?") == {"city": "Paris"}


@pytest.mark.parametrize(
    ("answer", "why"), [("Paris", "not JSON"), ("[1]", "not an object"), ('{"town": "Paris"}', "does not fit")]
)
def test_answers_the_schema_rejects_raise_output_parser_exception(answer: str, why: str) -> None:
    chat = ChatGreenServ(router=router(json_backend("json", answer)))
    with pytest.raises(OutputParserException, match=why):
        chat.with_structured_output(CITY, method="json_schema").invoke("Capital of France?")
    raw = chat.with_structured_output(City, method="json_mode", include_raw=True).invoke("Capital of France?")
    assert raw["parsed"] is None and isinstance(raw["parsing_error"], OutputParserException)


def test_unknown_methods_are_refused() -> None:
    chat = ChatGreenServ(router=router(json_backend("json", "{}")))
    with pytest.raises(InvalidInputError, match="method"):
        chat.with_structured_output(City, method="xml")  # type: ignore[arg-type]


def _sent_response_format(response_format: Any) -> dict[str, Any]:
    """The ``response_format`` a remote server gets for a router call's ``response_format``."""
    seen: list[dict[str, Any]] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": '{"reasoning": "", "answer": 4}'}}]})

    remote = OpenAICompatibleBackend(
        "http://gpu:8000/v1",
        "m",
        transport=httpx.MockTransport(server),
        capabilities=frozenset({"chat_template", "json_mode"}),
    )
    pool = GreenServRouter([remote], features=make_hashing_extractor(), seed=0)
    pool.generate("What is 2+2? Answer in JSON.", response_format=response_format, max_new_tokens=16)
    sent: dict[str, Any] = seen[-1]["response_format"]
    return sent


MATH = {
    "type": "object",
    "properties": {"reasoning": {"type": "string"}, "answer": {"type": "integer"}},
    "required": ["reasoning", "answer"],
    "additionalProperties": False,
}


def test_a_schema_reaches_the_server_in_the_callers_order() -> None:
    # servers generate the properties in the schema's order: reasoning first, then the answer
    sent = _sent_response_format(MATH)["json_schema"]["schema"]
    assert list(sent) == list(MATH) and list(sent["properties"]) == ["reasoning", "answer"]  # were sorted
    assert JsonFormat.from_schema(MATH) == JsonFormat.from_schema(dict(MATH))  # equal and hashable as before
    assert len({JsonFormat.from_schema(MATH), JsonFormat.from_schema(json.loads(json.dumps(MATH)))}) == 1


def test_openais_json_schema_keeps_its_name_and_strict() -> None:
    described = {"name": "math", "schema": MATH, "strict": True}
    sent = _sent_response_format({"type": "json_schema", "json_schema": described})
    assert sent == {"type": "json_schema", "json_schema": described}  # was named "answer", without strict
    loose = _sent_response_format({"type": "json_schema", "json_schema": {"schema": MATH, "strict": None}})
    assert loose == {"type": "json_schema", "json_schema": {"name": "answer", "schema": MATH}}
    assert JsonFormat.from_schema(MATH, name="math") != JsonFormat.from_schema(MATH)
    with pytest.raises(InvalidInputError, match="strict"):
        read_response_format({"type": "json_schema", "json_schema": {"name": "math", "schema": MATH, "strict": "yes"}})
    with pytest.raises(InvalidInputError, match="name"):
        read_response_format({"type": "json_schema", "json_schema": {"name": 3, "schema": MATH}})


def test_a_read_only_mapping_is_a_schema() -> None:
    from types import MappingProxyType

    read_only = MappingProxyType({**CITY, "properties": MappingProxyType({"city": MappingProxyType({})})})
    assert JsonFormat.from_schema(read_only).schema == {**CITY, "properties": {"city": {}}}  # was a TypeError
    described = MappingProxyType({"name": "city", "schema": MappingProxyType(CITY)})
    expected = JsonFormat.from_schema(CITY, name="city")
    assert read_response_format({"type": "json_schema", "json_schema": described}) == expected
    with pytest.raises(InvalidInputError, match="not a valid JSON schema"):
        JsonFormat.from_schema({"type": "object", "default": {1, 2}})  # no JSON form
