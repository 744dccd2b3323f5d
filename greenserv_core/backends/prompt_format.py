"""Prompt text for models: the tokenizer's chat template when there is one, else a plain format.

The plain format (for base models such as Gemma-3-270m) is::

    <system text>            (only if there are system messages)

    User: <text>
    Assistant: <text>
    User: <text>
    Assistant:

A base model tends to go on with invented turns ("User: …", "Student: …"), so generation in
this format stops at a turn marker, :data:`TURN_MARKER`: a line that opens with a speaker's
name (:data:`SPEAKERS`) and a colon. The marker is not part of the answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from greenserv_core.messages import Message

__all__ = [
    "SPEAKERS",
    "TURN_MARKER",
    "StopBuffer",
    "fold_system_into_user",
    "plain_prompt",
    "truncate_answer",
    "truncate_at_stop",
]

SPEAKERS = (
    "User",
    "Assistant",
    "System",
    "Tool",
    "Human",
    "AI",
    "Bot",
    "Person",
    "Student",
    "Teacher",
    "Question",
    "Q",
)
"""The speaker names a base model invents turns for. Lines such as ``"Answer:"`` or ``"Note:"``
are part of an answer, so they are not markers."""
TURN_MARKER = re.compile(r"\n(?:" + "|".join(SPEAKERS) + r"):")
"""Where a turn of the plain format starts (``"\\nUser:"``, ``"\\nAssistant:"``, ``"\\nStudent:"`` …)."""
_PREFIXES = sorted({name[:i] for name in SPEAKERS for i in range(1, len(name) + 1)}, key=len, reverse=True)
_PARTIAL_TURN_MARKER = re.compile(r"\n(?:" + "|".join(_PREFIXES) + r")?\Z")  # a tail that may still become one
_LONGEST_MARKER = len(max(SPEAKERS, key=len)) + 2  # "\n" + name + ":": no marker (or partial one) is longer
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


def tool_turns_as_user(messages: Sequence[Message]) -> list[Message]:
    """For chat templates without a ``tool`` role: each tool turn becomes a user turn (its
    ``<tool_response>`` block as it is, the Hermes format's way), joined to a user turn just
    before it, so that roles still alternate; a user turn after a tool result joins it too
    (after a blank line).

    >>> tool_turns_as_user([{"role": "assistant", "content": "<tool_call>…</tool_call>"},
    ...                     {"role": "tool", "content": "<tool_response>4</tool_response>"},
    ...                     {"role": "tool", "content": "<tool_response>5</tool_response>"}])[1:]
    [{'role': 'user', 'content': '<tool_response>4</tool_response>\\n<tool_response>5</tool_response>'}]
    >>> tool_turns_as_user([{"role": "tool", "content": "<tool_response>4</tool_response>"},
    ...                     {"role": "user", "content": "Thanks."}])
    [{'role': 'user', 'content': '<tool_response>4</tool_response>\\n\\nThanks.'}]
    """
    out: list[Message] = []
    after_tool = False  # whether the last turn of ``out`` ends in a tool result
    for message in messages:
        if message["role"] == "user" and after_tool:
            out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{message['content']}"}
        elif message["role"] != "tool":
            out.append(message)
        elif out and out[-1]["role"] == "user":
            out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n{message['content']}"}
        else:
            out.append({"role": "user", "content": message["content"]})
        after_tool = message["role"] == "tool"
    return out


def truncate_at_stop(
    text: str, stops: Sequence[str], *, turn_markers: bool = False, new_from: int = 0
) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string (or :data:`TURN_MARKER` with ``turn_markers``);
    return (text, whether one was found). ``new_from``: the text before it holds none (a stream
    searched so far), so only a stop that ends at or after it is looked for.

    >>> truncate_at_stop("Paris.\\nUser: next", ["\\nUser:"])
    ('Paris.', True)
    >>> truncate_at_stop("Paris.\\nStudent: and Rome?", [], turn_markers=True)
    ('Paris.', True)
    >>> truncate_at_stop("2 + 2 = 4.\\nAnswer: 4", [], turn_markers=True)
    ('2 + 2 = 4.\\nAnswer: 4', False)
    """
    cuts = [i for i in (text.find(s, max(0, new_from - len(s) + 1)) for s in stops) if i >= 0]
    marker = TURN_MARKER.search(text, max(0, new_from - _LONGEST_MARKER + 1)) if turn_markers else None
    if marker is not None:
        cuts.append(marker.start())
    return (text[: min(cuts)], True) if cuts else (text, False)


def truncate_answer(
    text: str, stops: Sequence[str], *, turn_markers: bool = False, strip_leading: bool = False
) -> tuple[str, bool]:
    """:func:`truncate_at_stop` of an answer. With ``strip_leading`` (the plain format, whose
    ``Assistant:`` leaves white space), that leading white space is no part of the answer: it
    goes, and a stop within it alone is none (one that runs on into the answer, ``"\\nUser:"``,
    is).

    >>> truncate_answer("\\nA", ["\\n"], strip_leading=True), truncate_answer("\\nA", ["\\n"])
    (('A', False), ('', True))
    >>> truncate_answer("\\nUser: hi", [], turn_markers=True, strip_leading=True)
    ('', True)
    """
    lead = _leading_space(text) if strip_leading else 0
    cut, found = truncate_at_stop(text, stops, turn_markers=turn_markers, new_from=lead)
    return (cut.lstrip() if strip_leading else cut), found


def _leading_space(text: str) -> int:
    """How many characters of white space ``text`` begins with."""
    return len(text) - len(text.lstrip())


class StopBuffer:
    """Streams text while holding back any tail that could start a stop string (or a turn
    marker, with ``turn_markers``).

    >>> buffer = StopBuffer(["\\nUser:"])
    >>> buffer.push("Paris.\\nUs"), buffer.push("er: more"), buffer.stopped
    ('Paris.', '', True)
    >>> buffer = StopBuffer([], turn_markers=True)
    >>> buffer.push("Paris.\\nStud"), buffer.push("ent: and"), buffer.stopped
    ('Paris.', '', True)
    """

    def __init__(self, stops: Sequence[str], *, turn_markers: bool = False, strip_leading: bool = False) -> None:
        self.stops = [s for s in stops if s]
        self.turn_markers = turn_markers
        self.strip_leading = strip_leading
        """The text's leading white space is no part of it (the plain format's, after
        ``Assistant:``): not streamed, and no stop found within it alone."""
        self.text = ""
        self.emitted = 0
        self.stopped = False
        self._begun = not strip_leading

    def push(self, delta: str) -> str:
        if self.stopped:
            return ""
        before = len(self.text)
        self.text += delta
        if not self._begun:
            if not self.text.strip():  # white space so far: nothing to stream, no stop to look for
                return ""
            self._begun = True
            before = self.emitted = _leading_space(self.text)
        # no stop was in the text before, so one found now ends in ``delta``: only its tail is searched
        cut, found = truncate_at_stop(self.text, self.stops, turn_markers=self.turn_markers, new_from=before)
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
        tail = max(0, len(self.text) - _LONGEST_MARKER)  # a partial marker is shorter than a marker
        partial = _PARTIAL_TURN_MARKER.search(self.text, tail) if self.turn_markers else None
        if partial is not None:
            hold = max(hold, len(self.text) - partial.start())
        safe = len(self.text) - hold
        out = self.text[self.emitted : safe] if safe > self.emitted else ""
        self.emitted = max(self.emitted, safe)
        return out

    def flush(self) -> str:
        if self.stopped or not self._begun:
            return ""
        out = self.text[self.emitted :]
        self.emitted = len(self.text)
        return out
