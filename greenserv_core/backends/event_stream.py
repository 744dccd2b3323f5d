r"""An OpenAI-compatible server's streamed answer read as the SSE specification says: its
lines (:func:`event_lines`), its events (:func:`data_joined`), the answer's time limit
(:func:`until_late`, :class:`DeadlineGuard`) and tool calls that arrive in pieces
(:func:`merge_tool_call_delta`, :func:`joined_tool_calls`). Used by
:class:`~greenserv_core.backends.openai_compatible.OpenAICompatibleBackend`.

>>> lines = event_lines(['data: {"choices": [{"delta": {"content": "4"}}]}\n\ndata: [DONE]\n'])
>>> [line for line, _ in data_joined(lines)]
['data: {"choices": [{"delta": {"content": "4"}}]}', '', 'data: [DONE]']
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx

__all__ = [
    "DeadlineGuard",
    "data_joined",
    "event_lines",
    "joined_tool_calls",
    "merge_tool_call_delta",
    "prepend",
    "until_late",
]


def until_late(lines: Iterator[str], deadline: float) -> Iterator[str]:
    """``lines``, ended quietly once the answer's time is up (``deadline``, a
    ``time.perf_counter()`` value) while it waits on the server: by a read that timed out, a
    connection that :class:`DeadlineGuard` shut, or a line that came only past it (the answer
    is then cut, as a local model's is); a failure before that is raised. A line that is there
    when a slow caller asks for it, past the deadline, is passed on: the caller's time is not
    the model's."""
    while True:
        asked = time.perf_counter()
        try:
            line = next(lines)
        except StopIteration:
            return
        except httpx.TransportError:
            if time.perf_counter() < deadline:
                raise
            return
        if asked < deadline <= time.perf_counter():  # the server kept it waiting past the time limit
            return
        yield line


def _split_lines(text: str) -> list[str]:
    """``text`` split at CR, LF and CRLF only (an event stream's line ends), by string methods:
    a regular expression scanned a long event ten times slower."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def event_lines(chunks: Iterable[str]) -> Iterator[str]:
    r"""The lines of an event stream's text ``chunks``, ended by CR, LF or CRLF only, as the SSE
    specification says. (httpx's ``iter_lines`` also ends a line at U+2028, U+2029, U+0085 and
    the other breaks of ``str.splitlines``, which servers such as vLLM send unescaped inside an
    event's JSON: the event was cut in two and its text lost.)

    >>> list(event_lines(["data: a\u2028b\r", "\ndata: c\rdata: d\n", "\n", "data: e"]))
    ['data: a\u2028b', 'data: c', 'data: d', '', 'data: e']
    """
    parts: list[str] = []  # the line under way (joined once it ends: a long line is not copied chunk by chunk)
    for chunk in chunks:
        if not (parts and parts[-1].endswith("\r")) and "\n" not in chunk and "\r" not in chunk:
            parts.append(chunk)
            continue
        text = "".join(parts) + chunk
        held = text.endswith("\r")  # perhaps the first half of a CRLF: its line ends with the next chunk
        lines = _split_lines(text[:-1] if held else text)
        rest = lines.pop() + ("\r" if held else "")
        parts = [rest] if rest else []
        yield from lines
    if parts:
        lines = _split_lines("".join(parts))
        yield from lines[:-1] if lines[-1] == "" else lines


def data_joined(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any] | None]]:
    r"""Server-sent event ``lines`` with the ``data:`` lines of one event joined into one line,
    by newlines, as the SSE specification says (an event ends at a blank line). A ``data:``
    line whose data so far is a whole event (a JSON object, or ``[DONE]``) ends its event at
    once, for servers that put no blank line between events. Each line comes with its data's
    JSON object where that was decoded here to see that the event is whole (else ``None``).

    >>> list(data_joined(['data: {"a":', "data: 1}", "", "data: [DONE]", "data: {}"]))
    [('data: {"a":\n1}', {'a': 1}), ('', None), ('data: [DONE]', None), ('data: {}', {})]
    """
    held: list[str] = []
    blank = True  # whether the data held is all whitespace: "[DONE]" can end it only then (it is in one line)
    for line in lines:
        field, _, value = line.partition(":")
        if field == "data":
            value = value[1:] if value.startswith(" ") else value
            held.append(value)
            done = blank and value.strip() == "[DONE]"
            blank = blank and not value.strip()
            # the data held is no whole object (else it was sent on): it can become one only where this line's
            # last character outside JSON's whitespace is "}", so the data is decoded only then
            if done or value.rstrip(" \t\n\r").endswith("}"):
                data = "\n".join(held)
                decoded = None if done else _json_object(data)
                if decoded is not None or done:
                    held, blank = [], True
                    yield f"data: {data}", decoded
            continue
        if held:  # a blank line (or another field) ends the event
            yield "data: " + "\n".join(held), None
            held, blank = [], True
        yield line, None
    if held:
        yield "data: " + "\n".join(held), None


def _json_object(data: str) -> dict[str, Any] | None:
    """An event's ``data`` decoded, where it is a whole JSON object; else ``None``."""
    try:
        decoded = json.loads(data)
    except json.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None


class DeadlineGuard:
    """Shuts a streamed response's connection at ``deadline`` (a ``time.perf_counter()``
    value), so that a read blocked on a server that stalls late in an answer ends then: the
    read timeout is fixed when the request is sent, to the time left then, and would let such
    a stall hold the answer that long again. A response without a socket (a mock transport)
    is left alone. :meth:`cancel` before the response is closed, so that a connection handed
    back to the pool is never shut."""

    def __init__(self, response: httpx.Response, deadline: float) -> None:
        stream = response.extensions.get("network_stream")
        get_info = getattr(stream, "get_extra_info", None)
        self._socket = get_info("socket") if callable(get_info) else None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        wait = max(0.0, deadline - time.perf_counter())
        if self._socket is not None and wait < threading.TIMEOUT_MAX:  # (beyond it a timer cannot wait: no limit)
            self._timer = threading.Timer(wait, self._shut)
            self._timer.daemon = True
            self._timer.start()

    def _shut(self) -> None:
        with self._lock:
            if self._socket is None:
                return
            with contextlib.suppress(OSError):  # closed meanwhile
                self._socket.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        with self._lock:
            self._socket = None
        if self._timer is not None:
            self._timer.cancel()


def prepend(first: str | None, rest: Iterator[str]) -> Iterator[str]:
    if first is not None:
        yield first
    yield from rest


def merge_tool_call_delta(calls: dict[int, dict[str, Any]], delta: Mapping[str, Any], aliases: dict[int, int]) -> None:
    """Streamed tool calls arrive in pieces keyed by ``index``; gather their argument text (in
    ``"pieces"``, joined by :func:`joined_tool_calls`). A piece with a new ``id``, or a name for
    a call that has one, starts a new call even at an index already taken (Ollama numbers every
    call 0; Gemini sends no index), once the call under way has whole arguments: until then it
    goes on with it (LM Studio gives every piece an id of its own; other servers repeat the
    name in every piece); ``aliases`` keeps where each of the server's indices points now.

    >>> calls, aliases = {}, {}
    >>> for piece in ({"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}},
    ...               {"index": 0, "function": {"arguments": "}"}},
    ...               {"index": 0, "id": "b", "function": {"name": "g", "arguments": "{}"}}):
    ...     merge_tool_call_delta(calls, piece, aliases)
    >>> [(c["function"]["name"], c["function"]["arguments"]) for c in joined_tool_calls(calls)]
    [('f', '{}'), ('g', '{}')]
    >>> calls, aliases = {}, {}
    >>> for n, text in enumerate(('{"a": ', "12", "}")):  # a new id in every piece
    ...     piece = {"index": 0, "id": f"c{n}", "function": {"name": "add", "arguments": text}}
    ...     merge_tool_call_delta(calls, piece, aliases)
    >>> [(c["function"]["name"], c["function"]["arguments"]) for c in joined_tool_calls(calls)]
    [('add', '{"a": 12}')]
    """
    index = delta.get("index")
    given = 0 if index is None else int(index)  # missing, or null as pydantic-based servers send it
    key = aliases.get(given, given)
    function = delta.get("function") or {}
    existing = calls.get(key)
    if existing is not None:
        new_id = bool(delta.get("id")) and bool(existing.get("id")) and delta["id"] != existing["id"]
        new_name = bool(function.get("name")) and bool(existing["function"]["name"]) and not delta.get("id")
        if (new_id or new_name) and _whole_json("".join(existing["pieces"])):
            key = max(calls) + 1
            aliases[given] = key
    call = calls.setdefault(key, {"function": {"name": None, "arguments": ""}, "pieces": []})
    if delta.get("id"):
        call["id"] = delta["id"]
    if function.get("name"):
        call["function"]["name"] = function["name"]
    if function.get("arguments"):
        piece = function["arguments"]  # a server may send them as a JSON value, as generate() takes them
        call["pieces"].append(piece if isinstance(piece, str) else json.dumps(piece))


def _whole_json(text: str) -> bool:
    """Whether ``text`` is one whole JSON value (a call's arguments, all of them)."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def joined_tool_calls(calls: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The calls gathered by :func:`merge_tool_call_delta`, in index order, their argument text joined."""
    joined = []
    for _, call in sorted(calls.items()):
        function = {**call["function"], "arguments": "".join(call["pieces"])}
        joined.append({**{k: v for k, v in call.items() if k != "pieces"}, "function": function})
    return joined
