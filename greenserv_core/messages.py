"""Chat messages as plain ``{"role": ..., "content": ...}`` mappings, validated once at the edge."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from greenserv_core.errors import InvalidInputError

__all__ = ["VALID_ROLES", "Message", "check_unicode", "last_user_text", "validate_messages"]

VALID_ROLES = frozenset({"system", "user", "assistant", "tool"})
_ROLE_NAMES = {role: role for role in VALID_ROLES}
"""Each role as a plain string, also when given as a ``str`` enum member (LlamaIndex's ``MessageRole.USER``)."""


class Message(TypedDict):
    """One chat turn, in the format of Hugging Face chat templates."""

    role: str
    content: str


def check_unicode(text: str, what: str) -> None:
    """Refuse ``text`` that is not valid Unicode (a lone surrogate, e.g. from JSON's
    ``"\\ud800"``), naming it as ``what``.

    >>> check_unicode("café", "prompt 0")
    >>> check_unicode("bad " + chr(0xD800), "prompt 1")
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: prompt 1 is not valid Unicode text (surrogates not allowed at 4)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInputError(f"{what} is not valid Unicode text ({error.reason} at {error.start})") from error


def validate_messages(messages: object) -> list[Message]:
    """Return a clean copy of ``messages`` or raise :class:`InvalidInputError`.

    A bare string is accepted as one user message. An assistant turn's OpenAI-style
    ``tool_calls`` (its content may then be ``None``) follow its text as Hermes ``<tool_call>``
    blocks, as the framework adapters write a turn's calls, and the ``tool`` turns after it are
    put in the order of the calls they answer (by ``tool_call_id``).

    >>> validate_messages("Hi")
    [{'role': 'user', 'content': 'Hi'}]
    >>> validate_messages([])
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: messages is empty: give at least one message
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence):
        raise InvalidInputError(
            f"messages must be a list of {{'role', 'content'}} mappings or a string, got {type(messages).__name__}"
        )
    if len(messages) == 0:
        raise InvalidInputError("messages is empty: give at least one message")
    clean: list[Message] = []
    ids: list[list[str] | str | None] = []  # an assistant turn's call ids, or the id a tool turn answers
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidInputError(
                f"messages[{index}] must be a mapping with 'role' and 'content', got {type(message).__name__}"
            )
        role = message.get("role")
        content = message.get("content")
        if not isinstance(role, str) or role not in VALID_ROLES:
            raise InvalidInputError(f"messages[{index}] has role {role!r}; expected one of {sorted(VALID_ROLES)}")
        calls = message.get("tool_calls")
        if calls is not None and (isinstance(calls, (str, bytes, Mapping)) or not isinstance(calls, Sequence)):
            raise InvalidInputError(f"messages[{index}] tool_calls must be a list of calls, got {calls!r}")
        answered = message.get("tool_call_id")
        ids.append(answered if isinstance(answered, str) and answered else None)
        if calls:
            if role != "assistant":
                raise InvalidInputError(f"messages[{index}] has tool_calls: only an assistant turn makes calls")
            content = "" if content is None else content
            if isinstance(content, str):  # other content is refused below
                content, ids[-1] = _with_calls(index, content, calls)
        if not isinstance(content, str):
            raise InvalidInputError(f"messages[{index}] content must be a string, got {type(content).__name__}")
        check_unicode(content, f"messages[{index}] content")
        clean.append({"role": _ROLE_NAMES[role], "content": content})
    if not any(_has_text(m["content"]) for m in clean):
        raise InvalidInputError("every message is empty: nothing to answer")
    if any(isinstance(given, list) for given in ids):
        from greenserv_core.tools.calls import in_call_order  # the tools package imports this module

        return in_call_order(clean, ids)  # results in the order of the calls they answer, as the adapters do
    return clean


def _with_calls(index: int, content: str, calls: Sequence[object]) -> tuple[str, list[str]]:
    """An assistant turn's text with its OpenAI-style ``tool_calls``
    (``{"function": {"name", "arguments"}}``, or the bare name and arguments) after it as Hermes
    blocks, and the calls' ids (``""`` where a call has none); arguments are JSON text or an object.

    >>> call = {"id": "c1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
    >>> _with_calls(0, "Checking.", [call])
    ('Checking.\\n<tool_call>\\n{"name": "now", "arguments": {}}\\n</tool_call>', ['c1'])
    """
    from greenserv_core.tools.calls import message_with_tool_calls, with_tool_calls  # (the tools package imports this)

    written: list[tuple[str | None, Mapping[str, Any] | str | None]] = []
    ids: list[str] = []
    for number, call in enumerate(calls):
        function = call.get("function", call) if isinstance(call, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        arguments = function.get("arguments") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name or not isinstance(arguments, (str, Mapping, type(None))):
            raise InvalidInputError(
                f"messages[{index}] tool_calls[{number}] must be {{'function': {{'name': ..., 'arguments': JSON "
                f"text or an object}}}}, got {call!r}"
            )
        written.append((name, arguments))
        given = call.get("id") if isinstance(call, Mapping) else None
        ids.append(given if isinstance(given, str) else "")
    rendered = message_with_tool_calls(index, "", written)
    if rendered in content:  # (the calls written into the text already, as a framework may send them)
        return content, ids
    return with_tool_calls(content, written), ids


def _has_text(content: str) -> bool:
    """Whether ``content`` holds a visible character (not only spaces, zero-width or control
    characters). A character this Python's Unicode tables do not know yet (an emoji newer than
    them) or one for private use counts as visible.

    >>> _has_text(" " + chr(0x200B) + chr(0)), _has_text("a"), _has_text(chr(0x1FA77))
    (False, True, True)
    """
    return any(not ch.isspace() and unicodedata.category(ch) not in _INVISIBLE for ch in content)


_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
"""Unicode categories that show nothing: controls, formats (zero-width), surrogates, separators."""


def last_user_text(messages: Sequence[Message]) -> str:
    """The text the query is about: the last user turn, else the last non-empty turn.

    >>> last_user_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}])
    '2+2?'
    """
    for message in reversed(messages):
        if message["role"] == "user" and _has_text(message["content"]):
            return message["content"]
    for message in reversed(messages):
        if _has_text(message["content"]):
            return message["content"]
    raise InvalidInputError("every message is empty: nothing to answer")
