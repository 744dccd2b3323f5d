"""A tool as the model sees it: name, description and a JSON schema of its arguments.

:class:`ToolSpec` is frozen and hashable (the schema is kept as canonical JSON), so a set of
tools can be part of :class:`~greenserv_core.backends.base.GenerationSettings`: requests
that offer the same tools may share a batch, others never do.

>>> spec = ToolSpec.from_openai({"type": "function", "function": {"name": "add",
...     "description": "Add two integers.", "parameters": {"type": "object",
...     "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}})
>>> spec.name, sorted(spec.parameters["properties"])
('add', ['a', 'b'])
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import Message

__all__ = ["ToolSpec", "as_tool_specs", "tools_system_prompt", "with_tools_prompt"]

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
"""A tool's name: OpenAI's rule (``[A-Za-z0-9_-]{1,64}``) and dots, which local models and most
servers take; OpenAI's own API refuses a name with a dot (HTTP 400), so give such a server none."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters_json: str  # canonical JSON of the arguments' JSON schema

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):  # not match: its "$" takes "add\n"
            raise InvalidInputError(f"a tool name must match {_NAME.pattern}, got {self.name!r}")
        if not isinstance(self.description, str):
            raise InvalidInputError(f"tool {self.name!r}: description must be a string, got {self.description!r}")
        try:
            schema = json.loads(self.parameters_json)
        except (TypeError, ValueError, RecursionError) as error:  # (a 5,000-digit number; deep nesting)
            raise InvalidInputError(
                f"tool {self.name!r}: parameters_json must be a JSON schema as text, "
                f"got {self.parameters_json!r} ({error})"
            ) from None
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise InvalidInputError(f"tool {self.name!r}: parameters must be a JSON schema of type 'object'")
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            raise InvalidInputError(f"tool {self.name!r}: invalid parameters schema: {error.message}") from error
        except RecursionError:
            raise InvalidInputError(f"tool {self.name!r}: the parameters schema nests too deeply to check") from None
        unresolved = _unresolved_ref(schema)
        if unresolved is not None:  # every call would fail its check, and its answer be scored for it
            raise InvalidInputError(f"tool {self.name!r}: the parameters schema's $ref {unresolved!r} points nowhere")

    @property
    def parameters(self) -> dict[str, Any]:
        parameters: dict[str, Any] = json.loads(self.parameters_json)
        return parameters

    @classmethod
    def from_openai(cls, tool: Mapping[str, Any]) -> ToolSpec:
        """From the OpenAI tool format ``{"type": "function", "function": {name, description, parameters}}``
        (or the bare ``function`` object)."""
        if not isinstance(tool, Mapping):
            raise InvalidInputError(f"a tool must be a mapping in the OpenAI tool format, got {type(tool).__name__}")
        function = tool.get("function", tool) if tool.get("type", "function") == "function" else None
        if not isinstance(function, Mapping) or "name" not in function:
            raise InvalidInputError(f"a tool needs a function with a name, got {_shown(tool)}")
        parameters = function.get("parameters")
        if parameters is None or parameters == {}:  # none: a tool of no arguments (any other value is checked)
            parameters = {"type": "object", "properties": {}}
        try:
            parameters_json = json.dumps(parameters, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError) as error:  # a set inside, keys of mixed types, a cycle
            raise InvalidInputError(
                f"tool {_shown(function['name'])}: parameters must be a JSON schema, "
                f"got data that is not JSON ({error})"
            ) from None
        description = function.get("description")
        return cls(  # the name and description as given: checked there, never made text
            function["name"],
            "" if description is None else description,  # null: none
            parameters_json,
        )

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples", "example"})
"""Keywords of a schema whose values are data, not schemas: a ``"$ref"`` key there is no reference."""
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
"""Keywords of a schema whose values map names to schemas (a property may be named ``default``)."""


def _unresolved_ref(schema: dict[str, Any]) -> str | None:
    """The first ``$ref`` of ``schema`` that cannot be resolved within it (``None``: all can).
    A subschema with an ``$id`` of its own sets another base, and its references are left
    to the check of each call.

    >>> _unresolved_ref({"properties": {"when": {"$ref": "#/$defs/Date"}}})
    '#/$defs/Date'
    >>> _unresolved_ref({"$defs": {"Date": {"type": "string"}}, "properties": {"when": {"$ref": "#/$defs/Date"}}})
    """
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    resource = DRAFT202012.create_resource(schema)
    resolver = Registry().with_resource(resource.id() or "", resource).resolver(base_uri=resource.id() or "")
    pending: list[tuple[object, bool]] = [(schema, False)]  # (a node, whether it maps names to schemas)
    while pending:
        node, named = pending.pop()
        if isinstance(node, dict) and named:  # "properties", "$defs" ...: every value is a schema
            pending.extend((value, False) for value in node.values())
        elif isinstance(node, dict):
            if node is not schema and "$id" in node:
                continue  # another base
            reference = node.get("$ref")
            if isinstance(reference, str):
                try:
                    resolver.lookup(reference)
                except Unresolvable:
                    return reference
            pending.extend((value, key in _NAMED_SCHEMAS) for key, value in node.items() if key not in _DATA_KEYWORDS)
        elif isinstance(node, list):
            pending.extend((item, False) for item in node)
    return None


def _shown(value: object, limit: int = 300) -> str:
    """``value``'s repr for an error message, cut at ``limit`` characters (a repr that cannot be
    made, of a 5,000-digit number or a deep nest, is named by its type)."""
    try:
        shown = repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__} that cannot be shown"
    return shown if len(shown) <= limit else shown[:limit] + "…"


def as_tool_specs(tools: Sequence[ToolSpec | Mapping[str, Any]] | None) -> tuple[ToolSpec, ...]:
    """Tools given as :class:`ToolSpec` objects or OpenAI-format mappings, as a tuple of specs.

    >>> [t.name for t in as_tool_specs([{"name": "now", "parameters": {}}])]
    ['now']
    """
    if tools is None:
        return ()
    if isinstance(tools, (str, Mapping)):
        raise InvalidInputError("tools must be a list of tools, not a single tool")
    if not isinstance(tools, Iterable):
        raise InvalidInputError(f"tools must be a list of tools, got {type(tools).__name__}")
    try:
        listed = list(tools)
    except TypeError:  # (a 0-d numpy array: iterable by its type, not when iterated)
        raise InvalidInputError(f"tools must be a list of tools, got {tools!r}") from None
    return tuple(t if isinstance(t, ToolSpec) else ToolSpec.from_openai(t) for t in listed)


def tools_system_prompt(tools: Sequence[ToolSpec]) -> str:
    """Instructions offering ``tools`` in the Hermes format, for chat templates that take no tools.

    >>> print(tools_system_prompt([ToolSpec("now", "The time.", "{}")]).splitlines()[0])
    You may call one or more functions to assist with the user query.
    """
    listed = "\n".join(json.dumps(t.to_openai(), ensure_ascii=False) for t in tools)
    return (
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{listed}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def with_tools_prompt(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> list[Message]:
    """``messages`` with :func:`tools_system_prompt` after the system text, as one leading
    system message (what a model whose template takes no tools is shown).

    >>> [m["role"] for m in with_tools_prompt([{"role": "user", "content": "Hi"}], [ToolSpec("now", "", "{}")])]
    ['system', 'user']
    """
    if not tools:
        return list(messages)
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    return [{"role": "system", "content": "\n\n".join([*system, tools_system_prompt(tools)])}, *rest]
