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
