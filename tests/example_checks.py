"""Helpers for ``test_examples.py``: what the router was asked, and a scripted tool-calling model.

An example's output from the tiny bundled models proves little (they ignore history, skip tool
calls); what the router *received* shows that the example wired history, retrieved context and
tools through. :func:`spy_routed_calls` records it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.messages import Message
from greenserv_core.tools import ToolSpec, as_tool_specs, with_tool_calls
from tests.scripted_tools import tool_reply


@dataclass(frozen=True)
class RoutedCall:
    """One query the router was asked to answer: its messages and the names of the tools offered."""

    messages: tuple[Message, ...]
    tools: tuple[str, ...]

    def contents(self, *roles: str) -> list[str]:
        """The contents of the messages with these roles (all, if none are named)."""
        return [str(m["content"]) for m in self.messages if not roles or m["role"] in roles]

    @property
    def text(self) -> str:
        return "\n".join(self.contents())


def spy_routed_calls(monkeypatch: pytest.MonkeyPatch) -> list[RoutedCall]:
    """Record every query any ``GreenServRouter`` generates or streams an answer for (each is
    still answered as before)."""
    calls: list[RoutedCall] = []

    def note(messages: Sequence[Message] | str, options: dict[str, Any]) -> None:
        conversation = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        tools = tuple(spec.name for spec in as_tool_specs(options.get("tools")))
        calls.append(RoutedCall(tuple(conversation), tools))  # type: ignore[arg-type]

    generate, stream = GreenServRouter.generate, GreenServRouter.stream

    def spy_generate(self: GreenServRouter, messages: Sequence[Message] | str, **options: Any) -> Any:
        note(messages, options)
        return generate(self, messages, **options)

    def spy_stream(self: GreenServRouter, messages: Sequence[Message] | str, **options: Any) -> Iterator[Any]:
        note(messages, options)
        return stream(self, messages, **options)

    monkeypatch.setattr(GreenServRouter, "generate", spy_generate)
    monkeypatch.setattr(GreenServRouter, "stream", spy_stream)
    return calls


def clumsy_tool_reply(messages: Sequence[Message], tools: tuple[ToolSpec, ...]) -> str:
    """A model that gets its first call wrong (an argument the tool does not take), calls the
    tool properly once told why (:func:`tests.scripted_tools.tool_reply` on the user's words),
    and answers from the tool's result after that."""
    answered = sum(m["role"] == "assistant" for m in messages)
    if answered == 0:
        return with_tool_calls("", [(tools[0].name, {"wrong_argument": 1})])
    if answered == 1:
        return tool_reply([m for m in messages if m["role"] == "user"], tools)
    return tool_reply(messages, tools)


def clumsy_tool_model() -> FakeBackend:
    return FakeBackend("clumsy-tools", capabilities=frozenset({"chat_template", "tools"}), tool_reply=clumsy_tool_reply)
