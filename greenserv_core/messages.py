"""Chat messages as plain ``{"role": ..., "content": ...}`` mappings, validated once at the edge."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import TypedDict

from greenserv_core.errors import InvalidInputError

__all__ = ["VALID_ROLES", "Message", "last_user_text", "validate_messages"]

VALID_ROLES = frozenset({"system", "user", "assistant", "tool"})
_ROLE_NAMES = {role: role for role in VALID_ROLES}
"""Each role as a plain string, also when given as a ``str`` enum member (LlamaIndex's ``MessageRole.USER``)."""


class Message(TypedDict):
    """One chat turn, in the format of Hugging Face chat templates."""

    role: str
    content: str


def validate_messages(messages: object) -> list[Message]:
    """Return a clean copy of ``messages`` or raise :class:`InvalidInputError`.

    A bare string is accepted as one user message.

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
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidInputError(
                f"messages[{index}] must be a mapping with 'role' and 'content', got {type(message).__name__}"
            )
        role = message.get("role")
        content = message.get("content")
        if role not in VALID_ROLES:
            raise InvalidInputError(f"messages[{index}] has role {role!r}; expected one of {sorted(VALID_ROLES)}")
        if not isinstance(content, str):
            raise InvalidInputError(f"messages[{index}] content must be a string, got {type(content).__name__}")
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate, e.g. from JSON's "\ud800"
            raise InvalidInputError(
                f"messages[{index}] content is not valid Unicode text ({error.reason} at {error.start})"
            ) from error
        clean.append({"role": _ROLE_NAMES[role], "content": content})
    if not any(_has_text(m["content"]) for m in clean):
        raise InvalidInputError("every message is empty: nothing to answer")
    return clean


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
