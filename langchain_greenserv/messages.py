"""LangChain messages → GreenServ chat messages (``{"role", "content"}``).

An ``AIMessage`` that called tools keeps its calls as Hermes ``<tool_call>`` blocks after its
text, and a ``ToolMessage`` becomes a ``tool`` turn wrapped in ``<tool_response>``: the format
the tool prompt teaches, so a model sees its own earlier calls and their results. The results
follow in the order of the calls they answer (by ``tool_call_id``), as a model and a server
that pairs them by position read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage

from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import VALID_ROLES, Message
from greenserv_core.tools import in_call_order, message_with_tool_calls, tool_result_turn

__all__ = ["to_greenserv_messages"]

_REASONING = ("reasoning", "thinking", "redacted_thinking")
"""Content blocks of a reasoning model's thoughts (LangChain's standard, Anthropic's)."""


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            text = block.get("text")
            parts.append("" if text is None else str(text))
        elif isinstance(block, dict) and block.get("type") in ("tool_use", "tool_call"):
            continue  # the same calls are in message.tool_calls, rendered below
        elif isinstance(block, dict) and block.get("type") in _REASONING:
            continue  # an earlier model's reasoning: not part of the conversation, as chat templates drop it
        else:
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise InvalidInputError(f"GreenServ's local models take text only; got a {kind!r} content block")
    return "".join(parts)


def _refused(message: AIMessage) -> list[dict[str, Any]]:
    """The turn's refused calls: ``invalid_tool_calls``, and those a GreenServ stream put in
    its metadata (LangChain rebuilds a stream's calls from its chunks), once each."""
    streamed = message.response_metadata.get("invalid_tool_calls") or []
    refused: list[dict[str, Any]] = [dict(c) for c in message.invalid_tool_calls]
    seen = {c.get("id") for c in refused} | {c.get("id") for c in message.tool_calls}
    return refused + [dict(c) for c in streamed if isinstance(c, dict) and c.get("id") not in seen]


def _with_calls(message: AIMessage, index: int) -> tuple[str, list[str]]:
    """The turn's text with its calls, and the calls' ids in that order: the valid ones, then
    those refused (as the model wrote them, so that it sees them, and an error result
    answering one has its call); the ``index``-th message, for errors."""
    calls: list[Any] = [*message.tool_calls, *_refused(message)]
    content = message_with_tool_calls(index, _text(message), [(c.get("name"), c.get("args")) for c in calls])
    return content, [str(c.get("id")) for c in calls]


_CHAT_ROLES = {
    **{role: role for role in VALID_ROLES},
    "human": "user",
    "ai": "assistant",
    "developer": "system",  # OpenAI's system role for reasoning models
}
"""The roles a generic ``ChatMessage`` may name, as LangChain's own types and LlamaIndex's
roles map them."""


def to_greenserv_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """Map system, human, AI and tool messages (and ``ChatMessage`` with those roles).

    >>> to_greenserv_messages([SystemMessage("Be brief."), HumanMessage("Hi")])
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    >>> to_greenserv_messages([ToolMessage("21 °C", tool_call_id="call_1")])[0]["content"]
    '<tool_response>\\n21 °C\\n</tool_response>'
    >>> to_greenserv_messages([ChatMessage("21 °C", role="tool"), ChatMessage("Go on.", role="developer")])
    [{'role': 'tool', 'content': '<tool_response>\\n21 °C\\n</tool_response>'}, {'role': 'system', 'content': 'Go on.'}]
    """
    out: list[Message] = []
    ids: list[list[str] | str | None] = []
    for index, message in enumerate(messages):
        if isinstance(message, AIMessage):
            content, call_ids = _with_calls(message, index)
            ids.append(call_ids)
        else:
            content = _text(message)
            ids.append(message.tool_call_id if isinstance(message, ToolMessage) else None)
        if isinstance(message, SystemMessage):
            role = "system"
        elif isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, AIMessage):
            role = "assistant"
        elif isinstance(message, ToolMessage):
            role, content = "tool", tool_result_turn(content)
        elif isinstance(message, ChatMessage) and message.role in _CHAT_ROLES:
            role = _CHAT_ROLES[message.role]
            if role == "tool":  # as a ToolMessage's: the wrapper the tool prompt teaches
                content = tool_result_turn(content)
        else:
            raise InvalidInputError(
                f"messages[{index}] is a {type(message).__name__} (type {message.type!r}); GreenServ takes "
                "system, human, AI and tool messages"
            )
        out.append({"role": role, "content": content})
    return in_call_order(out, ids)  # results in the order of the calls they answer
