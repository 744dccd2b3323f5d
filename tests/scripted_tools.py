"""A deterministic tool-calling model for tests: it writes real Hermes ``<tool_call>`` markup.

Rules, so that LangChain's standard tool and structured-output tests exercise the whole path
(prompt → routed model → parsed calls → ``AIMessage``) without a real model:

* after a tool result, it answers in prose quoting the result;
* otherwise it calls the tool the system message asks for (``tool_choice``), else a tool
  named in the user's text, else the first tool; arguments follow the tool's schema:
  the n-th numeric argument takes the n-th number in the user's text (else the last one),
  strings the first quoted phrase (else the user's words), booleans true, arrays and
  objects empty;
* asked for JSON (JSON mode), it answers with an object of the schema's properties filled by
  the same rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from greenserv_core import FakeBackend
from greenserv_core.messages import Message, last_user_text
from greenserv_core.tools import ToolSpec, with_tool_calls

_CHOICE = re.compile(r"Answer with a call to the function ([\w.\-]+)\.")


def _value(schema: dict[str, Any], text: str, position: int) -> Any:
    kind = schema.get("type")
    numbers = re.findall(r"-?\d+(?:\.\d+)?", text)
    if "enum" in schema:
        return schema["enum"][0]
    if kind in ("integer", "number"):
        found = numbers[min(position, len(numbers) - 1)] if numbers else "1"
        return int(float(found)) if kind == "integer" else float(found)
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    quoted = re.search(r"'([^']+)'", text)
    return quoted.group(1) if quoted else text.strip() or "something"


def tool_reply(messages: Sequence[Message], tools: tuple[ToolSpec, ...]) -> str:
    if messages[-1]["role"] == "tool":
        result = re.sub(r"</?tool_response>", "", messages[-1]["content"]).strip()
        return f"The tool says: {result}"
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    text = last_user_text(messages)
    chosen = _CHOICE.search(system)
    named = [t for t in tools if t.name in text]
    tool = next((t for t in tools if chosen and t.name == chosen.group(1)), None) or (named or list(tools))[0]
    properties = tool.parameters.get("properties", {})
    arguments = {key: _value(schema, text, i) for i, (key, schema) in enumerate(properties.items())}
    return with_tool_calls("", [(tool.name, arguments)])


def json_reply(messages: Sequence[Message], schema: dict[str, Any] | None) -> str:
    """JSON mode: an object with the schema's properties, filled by the same rules."""
    text = last_user_text(messages)
    if schema is None:
        return json.dumps({"answer": text})
    properties = schema.get("properties", {})
    return json.dumps({key: _value(prop, text, i) for i, (key, prop) in enumerate(properties.items())})


def scripted_tool_backend(name: str = "scripted-tools", **kwargs: Any) -> FakeBackend:
    return FakeBackend(
        name,
        capabilities=frozenset({"chat_template", "tools", "json_mode"}),
        tool_reply=tool_reply,
        json_reply=json_reply,
        **kwargs,
    )
