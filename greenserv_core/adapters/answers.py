"""What comes back from the router, in the plain form both adapters translate into their
framework's objects: the tool calls an answer made, a stream's pieces (the text held back
while tools are offered), and the decision id an answer is scored by.

>>> from greenserv_core import FakeBackend, FeatureExtractor, GreenServRouter
>>> from greenserv_core.features import HashingEmbedder, TaskClassifier
>>> embedder = HashingEmbedder(16)
>>> clf = TaskClassifier().fit(embedder.embed(["2+2?", "hi"]), ["math", "chat"], embedder.name)
>>> caller = FakeBackend("caller", capabilities=frozenset({"tools"}),
...     tool_reply=lambda m, t: 'Sure. <tool_call>{"name": "now", "arguments": {}}</tool_call>')
>>> router = GreenServRouter([caller], features=FeatureExtractor(embedder, clf), seed=0)
>>> tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]
>>> pieces = list(answer_pieces(router.stream("What time is it?", tools=tools), tools_offered=True))
>>> [piece.delta for piece in pieces]
['Sure.']
>>> valid, invalid = tool_calls_of(pieces[-1].generation)
>>> valid[0]["name"], valid[0]["arguments"], invalid
('now', {}, [])
>>> decision_id_of("feedback for this", record=pieces[-1].generation.record()) == pieces[-1].generation.decision_id
True
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from greenserv_core.errors import InvalidInputError
from greenserv_core.router import RoutedChunk, RoutedGeneration
from greenserv_core.tools.calls import SCHEMA_MISMATCH

__all__ = [
    "InvalidToolCallData",
    "Piece",
    "ToolCallData",
    "answer_pieces",
    "decision_id_in",
    "decision_id_of",
    "schema_refused",
    "tool_calls_of",
    "why_no_tool_call",
]


class ToolCallData(TypedDict):
    """A call an answer made: its id, the tool's name and the parsed arguments."""

    id: str
    name: str
    arguments: dict[str, Any]


class InvalidToolCallData(TypedDict):
    """A call that cannot be run, as the model wrote it, and ``error`` saying why."""

    id: str
    name: str | None
    arguments: str | None
    error: str


def tool_calls_of(result: RoutedGeneration) -> tuple[list[ToolCallData], list[InvalidToolCallData]]:
    """The valid and the refused calls of a routed answer, as plain data."""
    valid = [ToolCallData(id=c.id, name=c.name, arguments=c.arguments) for c in result.tool_calls]
    invalid = [
        InvalidToolCallData(id=c.id, name=c.name, arguments=c.arguments, error=c.error)
        for c in result.invalid_tool_calls
    ]
    return valid, invalid


def schema_refused(refused: Iterable[Mapping[str, object]], name: str | None = None) -> list[ToolCallData]:
    """The refused calls (of tool ``name``, or any) that named a tool and gave a JSON object,
    refused only by the tool's JSON schema: a small model quoting a number, say. Pydantic
    coerces such arguments where the schema refuses them, so structured output may still
    read them (as ``json_schema`` mode does).

    >>> schema_refused([{"id": "c1", "name": "P", "arguments": '{"age": "42"}',
    ...                  "error": "arguments do not match the schema of 'P': '42' is not of type 'integer'"}])
    [{'id': 'c1', 'name': 'P', 'arguments': {'age': '42'}}]
    """
    found: list[ToolCallData] = []
    for call in refused:
        tool, text, error = call.get("name"), call.get("arguments"), str(call.get("error", ""))
        if not isinstance(tool, str) or (name is not None and tool != name) or not error.startswith(SCHEMA_MISMATCH):
            continue
        try:
            arguments = json.loads(text) if isinstance(text, str) else text
        except (ValueError, RecursionError):
            continue
        if isinstance(arguments, dict):
            found.append(ToolCallData(id=str(call.get("id", "")), name=tool, arguments=arguments))
    return found


def why_no_tool_call(refused: Iterable[Mapping[str, object]]) -> str:
    """Why an answer gave no usable call: the errors of its refused calls, if any.

    >>> why_no_tool_call([{"error": "unknown tool 'divide'"}]), why_no_tool_call([])
    ("unknown tool 'divide'", 'the answer made no tool call')
    """
    return "; ".join(str(call.get("error")) for call in refused) or "the answer made no tool call"


@dataclass(frozen=True)
class Piece:
    """A piece of a routed stream as an adapter hands it on: new text, and on the last piece
    the routed answer."""

    delta: str
    generation: RoutedGeneration | None = None


def answer_pieces(chunks: Iterable[RoutedChunk], *, tools_offered: bool) -> Iterator[Piece]:
    """The router's stream as :class:`Piece` objects. While tools are offered the text is held
    back, since tool-call markup is parsed only at the end: the answer's prose (the calls taken
    out) then comes whole in the last piece; otherwise the last piece's ``delta`` is empty."""
    for chunk in chunks:
        if chunk.generation is not None:
            yield Piece(chunk.generation.text if tools_offered else "", chunk.generation)
            return
        if not tools_offered:
            yield Piece(chunk.delta)


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def decision_id_in(record: object) -> str | None:
    """The decision id of a routing record (:meth:`RoutedGeneration.record`, as an adapter
    attached it to an answer), or ``None`` if ``record`` is not one.

    >>> decision_id_in({"decision_id": "d-1", "model": "small"}), decision_id_in(None)
    ('d-1', None)
    """
    if isinstance(record, Mapping) and record.get("decision_id"):
        return str(record["decision_id"])
    return None


def decision_id_of(target: object, record: object = None) -> str:
    """The key an answer is scored by: the decision id of its routing ``record``, else
    ``target`` as an id: a UUID, or a string as given, except that a framework's run-scoped
    message id (``lc_run--<run id>`` or ``lc_run--<run id>-<index>``) gives its run id. Anything
    else is refused by its type (its text is not shown: a query engine's response holds its sources).

    >>> decision_id_of("lc_run--5b4e0f1c-0000-4000-8000-000000000000-0")
    '5b4e0f1c-0000-4000-8000-000000000000'
    >>> decision_id_of(None, record={"decision_id": "d-1"})
    'd-1'
    """
    if (found := decision_id_in(record)) is not None:
        return found
    if isinstance(target, uuid.UUID):
        return str(target)
    if isinstance(target, str) and target:
        if target.startswith("lc_run-") and (run_id := _UUID.search(target)):
            return run_id.group(0)
        return target
    given = "an empty string" if isinstance(target, str) else f"a {type(target).__name__}"  # not its (long) text
    raise InvalidInputError(
        f"feedback takes an answer of this model (LangChain: its message; LlamaIndex: its response, an agent's "
        f"output or its raw routing record), a decision id or a run id, got {given}; "
        "score an answer built from several model calls (a query engine's Response, a chain's output) through the "
        "framework's handler: GreenServEventHandler (LlamaIndex) or GreenServFeedbackHandler (LangChain)"
    )
