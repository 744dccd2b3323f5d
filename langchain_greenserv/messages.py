"""LangChain messages → GreenServ chat messages (``{"role", "content"}``)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage

from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import VALID_ROLES, Message

__all__ = ["to_greenserv_messages"]


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        else:
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise InvalidInputError(f"GreenServ's local models take text only; got a {kind!r} content block")
    return "".join(parts)


def to_greenserv_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """Map system, human and AI messages (and ``ChatMessage`` with those roles).

    >>> to_greenserv_messages([SystemMessage("Be brief."), HumanMessage("Hi")])
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    """
    out: list[Message] = []
    for index, message in enumerate(messages):
        if isinstance(message, SystemMessage):
            role = "system"
        elif isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, AIMessage):
            if message.tool_calls:
                raise InvalidInputError(f"messages[{index}] carries tool calls; this model does not take tools")
            role = "assistant"
        elif isinstance(message, ChatMessage) and message.role in VALID_ROLES - {"tool"}:
            role = message.role
        elif isinstance(message, ChatMessage) and message.role == "human":
            role = "user"
        else:
            raise InvalidInputError(
                f"messages[{index}] is a {type(message).__name__} (type {message.type!r}); GreenServ's local models "
                "take system, human and AI messages"
            )
        out.append({"role": role, "content": _text(message)})
    return out
