"""Tool calls parsed from a model's text, in the formats small open models write.

* Hermes / Qwen-2.5 style: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, one
  block per call, or a JSON list of calls in one block (an unclosed last block, cut off by the
  token limit, is still tried);
* bare JSON: the whole answer (optionally in a fenced code block) is one call object
  ``{"name": ..., "arguments"|"parameters": {...}}``, a list of them, or several separated by
  ``;`` (Llama-3.x style).

Every call is checked against the offered tools: a known name, an arguments object, and the
tool's JSON schema (``jsonschema``). A call that fails any check becomes an
:class:`InvalidToolCall` with the reason; parsing never raises on model output.

>>> from greenserv_core.tools.spec import ToolSpec
>>> add = ToolSpec("add", "Add.", '{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}')
>>> out = parse_tool_calls('Sure. <tool_call>{"name": "add", "arguments": {"a": 2}}</tool_call>', [add])
>>> out.text, out.tool_calls[0].name, out.tool_calls[0].arguments
('Sure.', 'add', {'a': 2})
>>> parse_tool_calls('{"name": "add", "arguments": {"a": "two"}}', [add]).invalid_tool_calls[0].error
"arguments do not match the schema of 'add': 'two' is not of type 'integer'"
"""

from __future__ import annotations

import bisect
import copy
import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from referencing.exceptions import Unresolvable

from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import Message
from greenserv_core.tools.spec import ToolSpec

__all__ = [
    "SCHEMA_MISMATCH",
    "InvalidToolCall",
    "ParsedOutput",
    "ToolCall",
    "in_call_order",
    "message_with_tool_calls",
    "parse_tool_calls",
    "split_tool_calls",
    "tool_result_text",
    "tool_result_turn",
    "with_tool_calls",
]

_BLOCK = re.compile(r"<tool_call>((?:(?!<tool_call>).)*?)(?:</tool_call>|(?=<tool_call>)|\Z)", re.DOTALL)
"""One Hermes block: it ends at its closing tag, at the next opening tag (a tag named in prose
before a call does not swallow the call), or at the end (a last call cut short)."""
_TO_LAST_CLOSE = re.compile(r"<tool_call>(.*)</tool_call>", re.DOTALL)
"""One Hermes block to the last closing tag before where the match is told to stop."""
_CLOSE = re.compile(r"</tool_call>")
_LONGEST_REACH = 8
"""How many later closing tags a block that does not read as JSON is tried to, at most."""
_SPACE = re.compile(r"\s*")
_FENCE_OPEN = re.compile(r"```(?i:json)?\s*")
_FENCE_CLOSE = re.compile(r"\s*```\s*")
_DECODER = json.JSONDecoder()
_RESPONSE = re.compile(r"\A\s*<tool_response>\n?(.*?)\n?</tool_response>\s*\Z", re.DOTALL)
_UNREADABLE = (ValueError, RecursionError, OverflowError)
"""What reading or checking a model's JSON raises: ``ValueError`` where it is not JSON
(``json.JSONDecodeError``) or holds a number of more than 4,300 digits, ``RecursionError``
where it nests too deeply."""


def _blocks(text: str) -> Iterator[re.Match[str]]:
    """The Hermes blocks of ``text`` in order (see :data:`_BLOCK`); a block that does not read
    as JSON runs on to a later closing tag where it does (an opening or closing tag inside the
    call's arguments ended it too soon)."""
    closes = [close.start() for close in _CLOSE.finditer(text)]  # found once: each block looks up its next ones
    at = 0
    while (match := _BLOCK.search(text, at)) is not None:
        if not _reads_as_json(match.group(1)):
            match = _reaching(text, match, closes) or match
        yield match
        at = max(match.end(), match.start() + 1)


def _reaching(text: str, block: re.Match[str], closes: Sequence[int]) -> re.Match[str] | None:
    """``block`` run on to a later closing tag (``closes``: where each starts) where the longer
    block reads as JSON (the arguments hold ``</tool_call>``), or ``None``. Only an object, a
    list or a string can hold a tag, and only the closing tag just after where that value ends
    can close it: the value is read once, not the block to each tag."""
    first = bisect.bisect_left(closes, block.end())
    later = closes[first : first + _LONGEST_REACH]
    opens = _past_space(text, block.start() + len("<tool_call>"))
    fence = _FENCE_OPEN.match(text, opens)
    starts = fence.end() if fence else opens
    if not later or text[starts : starts + 1] not in ("{", "[", '"'):
        return None
    try:
        end = _value_end(text, starts, later[-1])
    except RecursionError:  # too deep to read here: each tag tried, as the reading below may differ
        tried: Sequence[int] = later
    else:
        if end is None:
            return None
        tried = later[bisect.bisect_left(later, end) :][:1]
        after = (_FENCE_CLOSE if fence else _SPACE).match(text, end, tried[0]) if tried else None
        if after is None or after.end() != tried[0]:
            return None
    for close in tried:
        longer = _TO_LAST_CLOSE.match(text, block.start(), close + len("</tool_call>"))
        if longer is not None and _reads_as_json(longer.group(1)):
            return longer
    return None


def _past_space(text: str, at: int) -> int:
    """Where the white space at ``at`` in ``text`` ends."""
    space = _SPACE.match(text, at)
    return space.end() if space else at


def _value_end(text: str, start: int, bound: int) -> int | None:
    """Where the JSON object, list or string at ``start`` ends, or ``None`` where none ends
    before ``bound``; raises ``RecursionError`` where it nests too deeply. Read from ever
    larger pieces of ``text``: an error in ``text`` itself would count its lines up to there.

    >>> _value_end('<{"a": "b"} c', 1, 13), _value_end('<{"a": "b"} c', 1, 5), _value_end('{"a" b}', 0, 7)
    (11, None, None)
    """
    size = 256
    while True:
        stop = min(bound, start + size)
        try:
            return start + _DECODER.raw_decode(text[start:stop])[1]
        except json.JSONDecodeError as error:
            # the piece cut short: an error near its end, or a string it leaves open; else an error in the value
            cut = error.pos >= stop - start - 16 or error.msg.startswith("Unterminated string")
            if stop == bound or not cut:
                return None
        except ValueError:  # a number of more than 4,300 digits, perhaps cut short
            if stop == bound:
                return None
        size *= 2


def _unfenced(text: str) -> str | None:
    """What ``text`` (stripped) holds as a fenced code block, stripped and with a ``json``
    language tag (in any case) dropped; ``None`` where it is not one.

    >>> _unfenced('```json\\n{"a": 1}\\n```'), _unfenced("```py\\nx\\n```"), _unfenced("`````"), _unfenced("{}")
    ('{"a": 1}', 'py\\nx', None, None)
    >>> _unfenced('```JSON\\n{"a": 1}\\n```')
    '{"a": 1}'
    """
    if len(text) < 6 or not (text.startswith("```") and text.endswith("```")):
        return None
    inner = text[3:-3]
    return (inner[4:] if inner[:4].lower() == "json" else inner).strip()


def _block_json(source: str) -> Any:
    """The JSON a block holds (inside a fenced code block, if it is one); raises one of
    :data:`_UNREADABLE` where it holds none it can read."""
    source = source.strip()
    fenced = _unfenced(source)
    return json.loads(source if fenced is None else fenced)


_FENCE_BEFORE = re.compile(r"```(?i:json)?[ \t]*\n?[ \t]*\Z")
"""A fence opened just before a call (in the prose before it)."""
_FENCE_AFTER = re.compile(r"[ \t]*\n?[ \t]*```")
"""A fence closed just after a call."""


def _value_then_prose(source: str) -> tuple[Any, str, bool] | None:
    """The JSON object or list that ``source`` begins with, the prose after it (a block left
    open by the model, then its words) and whether a fence closed right after the value (one
    opened before the block: the call's wrapping), or ``None``.

    >>> _value_then_prose('{"name": "now"}\\nI will wait.'), _value_then_prose('{"name": "no')
    (({'name': 'now'}, 'I will wait.', False), None)
    >>> _value_then_prose('{"name": "now"}\\n```\\nI will wait.')
    ({'name': 'now'}, 'I will wait.', True)
    """
    if not source.startswith(("{", "[")):
        return None
    try:
        value, at = _DECODER.raw_decode(source)
    except _UNREADABLE:
        return None
    after = source[at:].strip()
    fenced = after.startswith("```")
    if fenced:
        after = after[3:].strip()
    if (not after and not fenced) or after.startswith(("{", "[")):  # none, or more JSON (a second call)
        return None
    return value, after, fenced


def _reads_as_json(source: str) -> bool:
    try:
        _block_json(source)
    except _UNREADABLE:
        return False
    return True


def _json_object(text: str) -> dict[str, Any] | None:
    """The object ``text`` holds as JSON, or ``None`` (not JSON, or not an object)."""
    try:
        value = json.loads(text)
    except _UNREADABLE:
        return None
    return value if isinstance(value, dict) else None


def _unreadable(error: Exception) -> str:
    """Why JSON could not be read or checked (one of :data:`_UNREADABLE`)."""
    if isinstance(error, json.JSONDecodeError):
        return error.msg
    return "it nests too deeply" if isinstance(error, RecursionError) else str(error).split(":")[0]


def _written(value: Any, text: str) -> str:
    """``value`` (one call read from ``text``) written back as JSON; ``text`` itself where it
    nests too deeply to be written."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except _UNREADABLE:
        return text.strip()


def _new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=_new_id)


@dataclass(frozen=True)
class InvalidToolCall:
    """A call the model attempted that cannot be run: ``error`` says why."""

    name: str | None
    arguments: str | None
    error: str
    id: str = field(default_factory=_new_id)


@dataclass(frozen=True)
class ParsedOutput:
    """The answer's prose (tool-call markup removed) and its valid and invalid calls."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    invalid_tool_calls: tuple[InvalidToolCall, ...] = ()


SCHEMA_MISMATCH = "arguments do not match the schema of "
"""How a refused call's error begins when only its arguments' types or fields were off."""


def _check(raw: Any, source: str, tools: dict[str, ToolSpec]) -> ToolCall | InvalidToolCall:
    """``raw`` (read from ``source``) checked as a call of one of ``tools``."""
    if not isinstance(raw, dict):
        return InvalidToolCall(None, source, "a tool call must be a JSON object with a name and arguments")
    name = raw.get("name")
    arguments = raw.get("arguments", raw.get("parameters", {}))
    try:
        text_arguments = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    except _UNREADABLE:  # nesting too deep to write back
        text_arguments = source
    if not isinstance(name, str) or name not in tools:
        known = ", ".join(sorted(tools)) or "none"
        return InvalidToolCall(
            name if isinstance(name, str) else None, text_arguments, f"unknown tool {name!r}; tools: {known}"
        )
    if isinstance(arguments, str):  # some models write the arguments as a JSON string ("" when none, streamed)
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except _UNREADABLE:
            return InvalidToolCall(name, text_arguments, "arguments are not valid JSON")
    if not isinstance(arguments, dict):
        return InvalidToolCall(name, text_arguments, "arguments must be a JSON object")
    try:
        return _schema_checked(name, arguments, text_arguments, tools[name])
    except _UNREADABLE as error:  # arguments nesting too deeply for the checks, Infinity against multipleOf
        return InvalidToolCall(name, text_arguments, f"arguments of {name!r} cannot be checked: {_unreadable(error)}")
    except Unresolvable as error:  # the tool's schema names a $ref it does not hold: the spec's fault, not the model's
        return InvalidToolCall(name, text_arguments, f"the schema of {name!r} cannot be checked: {error}")


def _schema_checked(name: str, arguments: dict[str, Any], written: str, tool: ToolSpec) -> ToolCall | InvalidToolCall:
    """The call of ``tool`` with ``arguments`` (``written`` as the model wrote them), checked by its schema."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(tool.parameters)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    if errors:
        coerced = _scalars_unquoted(arguments, errors)
        if coerced is not None and validator.is_valid(coerced):
            return ToolCall(name, _whole_numbers_as_ints(coerced, validator))
        return InvalidToolCall(name, written, f"{SCHEMA_MISMATCH}{name!r}: {errors[0].message}")
    return ToolCall(name, _whole_numbers_as_ints(arguments, validator))


def _whole_numbers_as_ints(arguments: dict[str, Any], validator: Any) -> dict[str, Any]:
    """``arguments`` with each whole float (``3.0``, ``1e3``) an ``int`` where the schema wants
    an integer there: JSON Schema counts ``3.0`` as one, a Python tool does not (``"ab"[:3.0]``
    fails). Where it wants one is found by trying a fraction in its place.

    >>> from jsonschema import Draft202012Validator
    >>> schema = {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "number"}}}
    >>> _whole_numbers_as_ints({"n": 3.0, "x": 2.0}, Draft202012Validator(schema))
    {'n': 3, 'x': 2.0}
    >>> capped = {"type": "object", "properties": {"x": {"type": "number", "maximum": 100}}}
    >>> _whole_numbers_as_ints({"x": 100.0}, Draft202012Validator(capped))
    {'x': 100.0}
    """
    places = list(_whole_floats(arguments, []))
    if not places:
        return arguments
    fixed = copy.deepcopy(arguments)
    for path, value in places:
        fraction_refused = True
        for half in (Fraction(1, 2), Fraction(-1, 2)):  # both sides: a bound such as maximum refuses one
            _put(fixed, path, Fraction(value) + half)  # exact: from 2**52 on, value + 0.5 is whole
            if validator.is_valid(fixed):
                fraction_refused = False
                break
        _put(fixed, path, int(value) if fraction_refused else value)
    return fixed


def _whole_floats(value: Any, path: list[Any]) -> Iterator[tuple[list[Any], float]]:
    """The places (key paths) of the whole, finite floats within ``value``."""
    if isinstance(value, float) and value.is_integer():
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _whole_floats(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _whole_floats(item, [*path, index])


def _put(holder: Any, path: Sequence[Any], value: Any) -> None:
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value


def _scalars_unquoted(arguments: dict[str, Any], errors: Sequence[Any]) -> dict[str, Any] | None:
    """``arguments`` with each quoted number or boolean the schema wanted as one unquoted
    (small models write ``{"age": "36", "ok": "true"}``; a Pydantic model reads them so too),
    or ``None`` when a type error is of another kind or none is of this kind. Errors of other
    keywords are left to the check of the result (a quoted ``"2"`` also fails its ``enum`` of
    numbers). Only a string that is exactly a number, or ``true`` / ``false`` in any case, is
    taken: ``"six"`` and ``"yes"`` stay refused.

    >>> from jsonschema import Draft202012Validator
    >>> schema = {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "number"},
    ...     "ok": {"type": "boolean"}}}
    >>> found = list(Draft202012Validator(schema).iter_errors({"n": "36", "x": " 2.5", "ok": "True"}))
    >>> _scalars_unquoted({"n": "36", "x": " 2.5", "ok": "True"}, found)
    {'n': 36, 'x': 2.5, 'ok': True}
    """
    fixed = copy.deepcopy(arguments)
    typed = [error for error in errors if error.validator == "type"]
    if not typed:
        return None
    for error in typed:
        wanted, value, path = error.validator_value, error.instance, list(error.absolute_path)
        kinds = [wanted] if isinstance(wanted, str) else list(wanted)
        scalar = _exact_scalar(value, kinds) if isinstance(value, str) and path else None
        if scalar is None:
            return None
        holder: Any = fixed
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = scalar
    return fixed


def _exact_scalar(text: str, kinds: Sequence[str]) -> bool | int | float | None:
    """``text`` as the number or boolean a schema wanted (``integer``, ``number`` or
    ``boolean``), if it is exactly one."""
    cleaned = text.strip()
    if "boolean" in kinds and cleaned.lower() in ("true", "false"):
        return cleaned.lower() == "true"
    if "integer" in kinds and re.fullmatch(r"[+-]?\d+", cleaned):
        try:
            return int(cleaned)
        except ValueError:  # more than 4,300 digits
            return None
    if "number" in kinds and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", cleaned):
        value = float(cleaned)
        return value if math.isfinite(value) else None
    return None


def _json_calls(text: str, offered: Mapping[str, ToolSpec]) -> list[Any] | None:
    """The call objects if ``text`` is nothing but JSON (optionally fenced) in which every
    object calls: it names an offered tool, or gives ``arguments`` (``parameters``); else
    ``None`` (a JSON answer that merely has a ``name``, such as a record asked for, is prose)."""
    stripped = text.strip()
    fenced = _unfenced(stripped)
    if fenced is not None:
        stripped = fenced
    if not stripped.startswith(("{", "[")):
        return None
    values = _json_values(stripped)
    if values is None:
        return None
    if not values or not all(isinstance(v, dict) and "name" in v for v in values):
        return None
    if not all(
        (isinstance(v["name"], str) and v["name"] in offered) or "arguments" in v or "parameters" in v for v in values
    ):
        return None
    return values


def _json_values(text: str) -> list[Any] | None:
    """The JSON value ``text`` holds (a list's items), or its objects in a row, separated by
    ``;`` or white space (Llama-3.x writes parallel calls ``{...}; {...}``); ``None`` when
    it is not only JSON.

    >>> _json_values('{"name": "a"}; {"name": "b"}'), _json_values('[1, 2]'), _json_values('{"a": 1} and')
    ([{'name': 'a'}, {'name': 'b'}], [1, 2], None)
    """
    try:
        value = json.loads(text)
    except _UNREADABLE:
        pass
    else:
        return value if isinstance(value, list) else [value]
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        try:
            value, at = decoder.raw_decode(text, at)
        except _UNREADABLE:
            return None
        if not isinstance(value, dict):
            return None
        values.append(value)
        at = _past_space(text, at)
        if text.startswith(";", at):
            at = _past_space(text, at + 1)
    return values


def parse_tool_calls(text: str, tools: Sequence[ToolSpec]) -> ParsedOutput:
    """Split ``text`` into prose and tool calls (see the module docstring)."""
    offered = {tool.name: tool for tool in tools}
    found: list[ToolCall | InvalidToolCall] = []
    prose = text
    if "<tool_call>" in text:
        kept: list[str] = []  # the prose around the calls
        end = 0
        words, words_end = len(text) - len(text.lstrip()), len(text.rstrip())  # where the answer's words are
        for match in _blocks(text):
            source = match.group(1).strip()
            closed = match.group(0).endswith("</tool_call>")
            if not source and (match.start() != words or match.end() < words_end):
                continue  # "<tool_call>" or an empty pair named in prose, not the whole answer cut short: it stays
            if source and not closed and not source.startswith(("{", "[", "```")):
                continue  # "<tool_call>" named in prose, not a call cut short: the text stays
            before, after = text[end : match.start()], match.end()
            opening, closing = _FENCE_BEFORE.search(before), _FENCE_AFTER.match(text, after)
            if opening is not None and closing is not None:  # a fence that wrapped the call goes with it
                before, after = before[: opening.start()], closing.end()
            kept.append(before)
            end = after
            if not source:  # an answer that is an empty block or the tag alone (cut short by a stop sequence)
                found.append(InvalidToolCall(None, "", "tool call has no arguments: cut short, or empty"))
                continue
            try:
                raw = _block_json(source)
            except _UNREADABLE as error:
                read = None if closed else _value_then_prose(source)  # a call left open, then prose
                if read is None:
                    found.append(InvalidToolCall(None, source, f"tool call is not valid JSON: {_unreadable(error)}"))
                    continue
                raw, prose_after, fenced = read
                source = source[: len(source) - len(prose_after)].strip().removesuffix("```").strip()
                if fenced and (opening := _FENCE_BEFORE.search(kept[-1])) is not None:  # the call's wrapping
                    kept[-1] = kept[-1][: opening.start()]
                kept.append("\n" + prose_after)
            found.extend(_check(r, source, offered) for r in (raw if isinstance(raw, list) and raw else [raw]))
        prose = "".join([*kept, text[end:]]).strip()
    if not any(isinstance(c, ToolCall) for c in found):
        # no valid Hermes call: bare JSON, whose string arguments may name the tag (a whole answer that is a
        # valid call is one, whatever a string in it holds)
        values = _json_calls(text, offered)
        if values is not None:
            bare = [_check(v, _written(v, text), offered) for v in values]
            if not found or any(isinstance(c, ToolCall) for c in bare):
                found, prose = bare, ""
        if not found:
            return ParsedOutput(prose)
    return ParsedOutput(
        prose,
        tuple(c for c in found if isinstance(c, ToolCall)),
        tuple(c for c in found if isinstance(c, InvalidToolCall)),
    )


def with_tool_calls(text: str, calls: Sequence[tuple[str | None, Mapping[str, Any] | str | None]]) -> str:
    """An assistant turn as the tools prompt teaches it: the text, then one Hermes block per
    ``(name, arguments)`` call (what :func:`parse_tool_calls` reads back). A refused call
    keeps what the model wrote: its name (``None``: none) and its argument text, as an object
    where that text is one, else as a string. With no calls the text is kept as it is (its
    leading spaces may be code's indentation). Arguments JSON cannot write raise ``TypeError``.

    >>> print(with_tool_calls("Checking.", [("now", {})]))
    Checking.
    <tool_call>
    {"name": "now", "arguments": {}}
    </tool_call>
    >>> with_tool_calls("    return x", [])
    '    return x'
    >>> print(with_tool_calls("", [("add", '{"a": "x"}'), (None, "{broken")]))
    <tool_call>
    {"name": "add", "arguments": {"a": "x"}}
    </tool_call>
    <tool_call>
    {"name": null, "arguments": "{broken"}
    </tool_call>
    """
    if not calls:
        return text
    blocks = [
        "<tool_call>\n"
        + json.dumps({"name": name, "arguments": _as_written(arguments)}, ensure_ascii=False)
        + "\n</tool_call>"
        for name, arguments in calls
    ]
    return "\n".join(part for part in (text.strip(), *blocks) if part)


def message_with_tool_calls(
    index: int, text: str, calls: Sequence[tuple[str | None, Mapping[str, Any] | str | None]]
) -> str:
    """:func:`with_tool_calls` for the ``index``-th message of a conversation: arguments JSON
    cannot write (a date, a set, nesting past the recursion limit) are refused as
    :class:`~greenserv_core.errors.InvalidInputError` naming the message.

    >>> message_with_tool_calls(1, "", [("book", {"on": {1, 2}})])
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: messages[1] tool_calls arguments are not JSON: ...
    """
    try:
        return with_tool_calls(text, calls)
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidInputError(f"messages[{index}] tool_calls arguments are not JSON: {error}") from error


def _as_written(arguments: Mapping[str, Any] | str | None) -> Any:
    """A call's arguments for its block: a mapping as an object, argument text as the object
    it holds (else as the text itself), none as ``{}``."""
    if arguments is None:
        return {}
    if isinstance(arguments, str):
        held = _json_object(arguments)
        return arguments if held is None else held
    return dict(arguments)


def tool_result_turn(text: str) -> str:
    """A tool's result as the content of a ``tool`` turn.

    >>> tool_result_turn("42")
    '<tool_response>\\n42\\n</tool_response>'
    """
    return f"<tool_response>\n{text}\n</tool_response>"


def tool_result_text(content: str) -> str:
    """The result inside a ``tool`` turn written by :func:`tool_result_turn` (any other text as it is).

    >>> tool_result_text(tool_result_turn("42")), tool_result_text("42")
    ('42', '42')
    """
    match = _RESPONSE.match(content)
    return match.group(1) if match else content


def split_tool_calls(text: str) -> tuple[str, list[tuple[str, str]]]:
    """An assistant turn's prose and its Hermes calls as ``(name, arguments as JSON text)``,
    unchecked (the calls of a past turn, as :func:`with_tool_calls` wrote them); a block that
    is not a call object with a name and an arguments object (a refused call's text, say)
    stays in the prose, since servers read every call's arguments as JSON.

    >>> split_tool_calls(with_tool_calls("Checking.", [("add", {"a": 2})]))
    ('Checking.', [('add', '{"a": 2}')])
    >>> split_tool_calls(with_tool_calls("", [("add", "a=1, b=2")]))[1]
    []
    """
    calls: list[tuple[str, str]] = []
    kept: list[str] = []  # the prose around the calls
    end = 0
    for match in _blocks(text):
        arguments = _call_arguments(match.group(1))
        if arguments is None:
            continue  # not a call a server could read: it stays in the prose
        name, text_arguments = arguments
        kept.append(text[end : match.start()])
        end = match.end()
        calls.append((name, text_arguments))
    return "".join([*kept, text[end:]]).strip(), calls


def _call_arguments(source: str) -> tuple[str, str] | None:
    """A block's call as ``(name, arguments as the JSON text of an object)``, or ``None``."""
    raw = _json_object(source.strip())
    if raw is None or not isinstance(raw.get("name"), str):
        return None
    arguments = raw.get("arguments", raw.get("parameters", {}))
    if isinstance(arguments, str):
        return (raw["name"], arguments) if _json_object(arguments) is not None else None
    return (raw["name"], json.dumps(arguments, ensure_ascii=False)) if isinstance(arguments, dict) else None


def in_call_order(messages: Sequence[Message], ids: Sequence[Sequence[str] | str | None]) -> list[Message]:
    """``messages`` with each run of ``tool`` turns after an assistant turn put in the order of
    that turn's calls, matched by id: ``ids[i]`` is the ids of an assistant turn's calls, the id
    of the call a tool turn answers, or ``None``. A framework's tool results may come in any
    order; a model, and a server that pairs them by position, reads them in the calls' order.
    A result whose id is not among the calls keeps its place after the matched ones.

    >>> turns = [{"role": "assistant", "content": "a, b"}, {"role": "tool", "content": "B"},
    ...          {"role": "tool", "content": "A"}]
    >>> [m["content"] for m in in_call_order(turns, [["1", "2"], "2", "1"])]
    ['a, b', 'A', 'B']
    """
    out: list[Message] = []
    calls: list[str] = []

    def place(i: int) -> int:
        given = ids[i]
        return calls.index(given) if isinstance(given, str) and given in calls else len(calls)

    index = 0
    while index < len(messages):
        if messages[index]["role"] != "tool":
            if messages[index]["role"] == "assistant":
                given = ids[index]
                calls = [] if given is None or isinstance(given, str) else list(given)
            out.append(messages[index])
            index += 1
            continue
        end = index
        while end < len(messages) and messages[end]["role"] == "tool":
            end += 1
        out.extend(messages[i] for i in sorted(range(index, end), key=place))  # sorted() is stable
        index = end
    return out
