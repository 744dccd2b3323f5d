"""Prompt text for models: the tokenizer's chat template when there is one, else a plain format.

The plain format (for base models such as Gemma-3-270m) is::

    <system text>            (only if there are system messages)

    User: <text>
    Assistant: <text>
    User: <text>
    Assistant:

Generation stops at ``"\\nUser:"`` (added to the caller's stop strings), so a base model
does not write the user's next turn.
"""

from __future__ import annotations

from collections.abc import Sequence

from greenserv_core.messages import Message

__all__ = ["PLAIN_STOPS", "StopBuffer", "fold_system_into_user", "plain_prompt", "truncate_at_stop"]

PLAIN_STOPS = ("\nUser:",)
_SPEAKER = {"user": "User", "assistant": "Assistant", "tool": "Tool"}


def plain_prompt(messages: Sequence[Message]) -> str:
    """Render messages in the plain format.

    >>> print(plain_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]))
    Be brief.
    <BLANKLINE>
    User: Hi
    Assistant:
    """
    system = "\n".join(m["content"].strip() for m in messages if m["role"] == "system")
    turns = [f"{_SPEAKER[m['role']]}: {m['content'].strip()}" for m in messages if m["role"] != "system"]
    head = f"{system}\n\n" if system else ""
    return head + "\n".join(turns) + "\nAssistant:"


def fold_system_into_user(messages: Sequence[Message]) -> list[Message]:
    """For chat templates without a system role: the system text opens the first user message.

    >>> fold_system_into_user([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    [{'role': 'user', 'content': 'Be brief.\\n\\nHi'}]
    """
    system = "\n\n".join(m["content"].strip() for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest  # type: ignore[return-value]
    for message in rest:
        if message["role"] == "user":
            message["content"] = f"{system}\n\n{message['content']}"
            return rest  # type: ignore[return-value]
    return [{"role": "user", "content": system}, *rest]  # type: ignore[list-item]


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; return (text, whether one was found).

    >>> truncate_at_stop("Paris.\\nUser: next", ["\\nUser:"])
    ('Paris.', True)
    """
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class StopBuffer:
    """Streams text while holding back any tail that could start a stop string.

    >>> buffer = StopBuffer(["\\nUser:"])
    >>> buffer.push("Paris.\\nUs"), buffer.push("er: more"), buffer.stopped
    ('Paris.', '', True)
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def push(self, delta: str) -> str:
        if self.stopped:
            return ""
        self.text += delta
        cut, found = truncate_at_stop(self.text, self.stops)
        if found:
            self.stopped = True
            out = cut[self.emitted :]
            self.emitted = len(cut)
            return out
        hold = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.text)), 0, -1):
                if self.text.endswith(stop[:size]):
                    hold = max(hold, size)
                    break
        safe = len(self.text) - hold
        out = self.text[self.emitted : safe] if safe > self.emitted else ""
        self.emitted = max(self.emitted, safe)
        return out

    def flush(self) -> str:
        if self.stopped:
            return ""
        out = self.text[self.emitted :]
        self.emitted = len(self.text)
        return out
