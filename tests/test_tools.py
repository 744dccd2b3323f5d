"""Tool specs, the prompt that offers them, and parsing tool calls out of model text."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenserv_core.errors import InvalidInputError
from greenserv_core.tools import InvalidToolCall, ToolSpec, parse_tool_calls, tools_system_prompt
from tests.timing import assert_linear_time

WEATHER = ToolSpec.from_openai(
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
                "required": ["city"],
            },
        },
    }
)
ADD = ToolSpec.from_openai(
    {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    }
)
TOOLS = [WEATHER, ADD]


def test_a_tool_spec_names_bad_json_and_a_description_that_is_not_text() -> None:
    with pytest.raises(InvalidInputError, match="parameters_json must be a JSON schema as text"):
        ToolSpec("add", "Add.", "{'type': 'object'}")
    with pytest.raises(InvalidInputError, match="description must be a string"):
        ToolSpec("add", None, "{}")  # type: ignore[arg-type]


def test_tool_specs_are_validated_hashable_and_round_trip() -> None:
    assert ToolSpec.from_openai(WEATHER.to_openai()) == WEATHER and len({WEATHER, ADD, WEATHER}) == 2
    with pytest.raises(InvalidInputError, match="name"):
        ToolSpec.from_openai({"function": {"name": "bad name!", "parameters": {}}})
    with pytest.raises(InvalidInputError, match="type 'object'"):
        ToolSpec.from_openai({"function": {"name": "f", "parameters": {"type": "string"}}})
    with pytest.raises(InvalidInputError, match="invalid parameters schema"):
        ToolSpec.from_openai({"function": {"name": "f", "parameters": {"type": "object", "required": "city"}}})
    with pytest.raises(InvalidInputError, match="mapping"):
        ToolSpec.from_openai("get_weather")  # type: ignore[arg-type]
    prompt = tools_system_prompt(TOOLS)
    assert "<tools>" in prompt and '"get_weather"' in prompt and "<tool_call>" in prompt


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        'Let me check.\n<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}</tool_call>',
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}',  # cut off before the closing tag
    ],
)
def test_the_formats_small_models_write_parse_to_one_valid_call(text: str) -> None:
    parsed = parse_tool_calls(text, TOOLS)
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert parsed.invalid_tool_calls == () and "tool_call" not in parsed.text and "{" not in parsed.text


def test_several_calls_and_prose() -> None:
    text = (
        "I will call two tools.\n"
        '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>\n'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "C"}}</tool_call>'
    )
    parsed = parse_tool_calls(text, TOOLS)
    assert [c.name for c in parsed.tool_calls] == ["add", "get_weather"]
    assert parsed.text == "I will call two tools."
    assert len({c.id for c in parsed.tool_calls}) == 2 and all(c.id.startswith("call_") for c in parsed.tool_calls)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', "not valid JSON"),
        ('<tool_call>{"name": "send_email", "arguments": {}}</tool_call>', "unknown tool 'send_email'"),
        ('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>', "'b' is a required property"),
        ('<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>', "must be a JSON object"),
        ('<tool_call>{"name": "get_weather", "arguments": "city=Paris"}</tool_call>', "not valid JSON"),
        ('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "K"}}</tool_call>', "schema"),
        ('<tool_call>["add"]</tool_call>', "JSON object"),
    ],
)
def test_bad_calls_become_invalid_calls_with_a_reason(text: str, reason: str) -> None:
    parsed = parse_tool_calls(text, TOOLS)
    assert parsed.tool_calls == () and len(parsed.invalid_tool_calls) == 1
    assert reason in parsed.invalid_tool_calls[0].error
    assert isinstance(parsed.invalid_tool_calls[0], InvalidToolCall)


@pytest.mark.parametrize(
    "text",
    [
        "Paris is sunny today.",
        '{"city": "Paris"}',  # JSON, but not a call
        'The JSON is {"name": "add", "arguments": {"a": 1, "b": 2}} as you asked.',  # prose around bare JSON
        "",
        '{"name": "Ada Lovelace", "born": 1815}',  # a JSON record with a name, not a call
        '{"name": {"first": "Ada", "last": "Lovelace"}}',  # a name that is not even text
        "Wrap each call in a <tool_call> tag, then wait for the result.",  # the tag named in prose
    ],
)
def test_plain_answers_have_no_calls(text: str) -> None:
    parsed = parse_tool_calls(text, TOOLS)
    assert parsed.tool_calls == () and parsed.invalid_tool_calls == () and parsed.text == text


@given(st.text(max_size=200))
def test_parsing_never_raises_on_any_text(text: str) -> None:
    parsed = parse_tool_calls(text, TOOLS)
    for call in parsed.tool_calls:
        assert call.name in {"get_weather", "add"}


@given(st.integers(), st.integers())
def test_valid_arguments_survive_parsing_exactly(a: int, b: int) -> None:
    text = f"<tool_call>{json.dumps({'name': 'add', 'arguments': {'a': a, 'b': b}})}</tool_call>"
    assert parse_tool_calls(text, TOOLS).tool_calls[0].arguments == {"a": a, "b": b}


def test_the_tool_calling_benchmark_classes_answers() -> None:
    from greenserv_core.evaluation.tool_calling import PROMPTS, TOOLS, classify

    assert len(PROMPTS) == 10 and {expected for _, expected in PROMPTS} == {t.name for t in TOOLS}
    right = '<tool_call>{"name": "calculator", "arguments": {"expression": "17 * 23"}}</tool_call>'
    assert classify(right, "calculator") == "right tool"
    assert classify(right, "lookup") == "other tool"
    assert classify('<tool_call>{"name": "lookup", "arguments": {}}</tool_call>', "lookup") == "invalid call"
    assert classify("17 * 23 is 391.", "calculator") == "no call"


def test_a_quoted_number_the_schema_wants_as_a_number_is_unquoted_and_nothing_else_is() -> None:
    from greenserv_core.tools import parse_tool_calls

    multiply = ToolSpec.from_openai(
        {
            "name": "multiply",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "number"}, "note": {"type": "string"}},
                "required": ["a", "b"],
            },
        }
    )

    def call(arguments: str) -> object:
        return parse_tool_calls(f'<tool_call>{{"name": "multiply", "arguments": {arguments}}}</tool_call>', [multiply])

    assert call('{"a": "6", "b": " 7.5", "note": "12"}').tool_calls[0].arguments == {"a": 6, "b": 7.5, "note": "12"}
    for refused in ('{"a": "six", "b": 7}', '{"a": "6.5", "b": 7}', '{"a": "6"}', '{"a": 6, "b": "nan"}'):
        parsed = call(refused)
        assert parsed.tool_calls == () and "do not match the schema" in parsed.invalid_tool_calls[0].error


def test_a_quoted_boolean_the_schema_wants_as_a_boolean_is_unquoted_as_pydantic_reads_it() -> None:
    """The score of ``score_tool_calls`` is the parser's verdict; the adapters' Pydantic
    models read ``"true"`` as ``True``, so the parser does too, and a call the caller gets is
    not scored as refused."""
    from greenserv_core.tools import parse_tool_calls

    flag = ToolSpec.from_openai(
        {
            "name": "flag",
            "parameters": {"type": "object", "properties": {"on": {"type": "boolean"}, "note": {"type": "string"}}},
        }
    )

    def call(arguments: str) -> object:
        return parse_tool_calls(f'<tool_call>{{"name": "flag", "arguments": {arguments}}}</tool_call>', [flag])

    assert call('{"on": "true", "note": "false"}').tool_calls[0].arguments == {"on": True, "note": "false"}
    assert call('{"on": " FALSE "}').tool_calls[0].arguments == {"on": False}
    for refused in ('{"on": "yes"}', '{"on": "1"}', '{"on": "truth"}'):
        parsed = call(refused)
        assert parsed.tool_calls == () and "do not match the schema" in parsed.invalid_tool_calls[0].error


def test_a_block_cut_short_before_its_arguments_is_an_invalid_call_and_a_named_tag_stays_prose() -> None:
    tools = [ToolSpec.from_openai({"name": "multiply", "parameters": {"type": "object", "properties": {}}})]
    for cut in ("<tool_call>", " <tool_call>\n", "<tool_call></tool_call>"):
        parsed = parse_tool_calls(cut, tools)
        assert not parsed.tool_calls and "cut short" in parsed.invalid_tool_calls[0].error
    for prose in ("the <tool_call> tag wraps a call", "a call opens with <tool_call>"):
        named = parse_tool_calls(prose, tools)
        assert named.text == prose and not named.invalid_tool_calls


def test_an_empty_tag_pair_named_in_prose_stays_prose_and_is_no_call() -> None:
    said = "<think>I must return the call within <tool_call></tool_call> XML tags.</think>"
    parsed = parse_tool_calls(
        f'{said}\n\n<tool_call>\n{{"name": "get_weather", "arguments": {{"city": "Paris"}}}}\n</tool_call>', TOOLS
    )
    assert [c.name for c in parsed.tool_calls] == ["get_weather"] and not parsed.invalid_tool_calls  # was an empty call
    assert parsed.text == said  # the words were cut out
    for prose in ("Calls go in <tool_call></tool_call> tags.", "<tool_call>\n</tool_call> wraps a call"):
        named = parse_tool_calls(prose, TOOLS)
        assert named.text == prose and not named.invalid_tool_calls
    assert "cut short" in parse_tool_calls(" <tool_call>\n</tool_call>\n", TOOLS).invalid_tool_calls[0].error


def test_llama_calls_separated_by_semicolons_and_a_tag_named_in_prose_before_a_call() -> None:
    add = ToolSpec("add", "Add.", '{"type": "object", "properties": {"a": {"type": "integer"}}}')
    now = ToolSpec("now", "The time.", '{"type": "object", "properties": {}}')
    parsed = parse_tool_calls('{"name": "add", "parameters": {"a": 2}}; {"name": "now", "parameters": {}}', [add, now])
    assert [c.name for c in parsed.tool_calls] == ["add", "now"] and parsed.text == ""  # was prose
    text = 'I will answer with a <tool_call> tag. <tool_call>{"name": "now", "arguments": {}}</tool_call>'
    parsed = parse_tool_calls(text, [add, now])
    assert [c.name for c in parsed.tool_calls] == ["now"] and not parsed.invalid_tool_calls  # was invalid JSON
    assert parsed.text == "I will answer with a <tool_call> tag."
    assert parse_tool_calls('{"name": "add"} and more', [add]).tool_calls == ()  # not only JSON: prose


def test_a_call_whose_arguments_name_the_tag_is_one_call_and_refused_text_stays_out_of_server_history() -> None:
    from greenserv_core.tools import with_tool_calls
    from greenserv_core.tools.calls import split_tool_calls

    write = ToolSpec("write_file", "Write.", '{"type": "object", "properties": {"text": {"type": "string"}}}')
    text = (
        '<tool_call>{"name": "write_file", "arguments": {"text": "Open each call with a <tool_call> tag."}}</tool_call>'
    )
    parsed = parse_tool_calls(text, [write])
    assert [c.arguments["text"] for c in parsed.tool_calls] == ["Open each call with a <tool_call> tag."]
    assert not parsed.invalid_tool_calls  # was two broken blocks
    prose, calls = split_tool_calls(with_tool_calls("Calling.", [("add", "a=1, b=2"), ("now", {})]))
    assert calls == [("now", "{}")] and '"arguments": "a=1, b=2"' in prose  # vLLM json.loads every call's arguments


def test_a_closing_tag_inside_the_arguments_stays_in_its_call() -> None:
    from greenserv_core.tools.calls import split_tool_calls, with_tool_calls

    echo = ToolSpec("echo", "Echo.", '{"type": "object", "properties": {"text": {"type": "string"}}}')
    text = 'Calling.<tool_call>{"name": "echo", "arguments": {"text": "use </tool_call> to end"}}</tool_call>'
    parsed = parse_tool_calls(text, [echo, ADD])
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("echo", {"text": "use </tool_call> to end"})]
    assert not parsed.invalid_tool_calls and parsed.text.strip() == "Calling."  # was an invalid call and leftovers
    two = with_tool_calls("", [("echo", {"text": "</tool_call>"}), ("add", {"a": 1, "b": 2})])
    assert [name for name, _ in split_tool_calls(two)[1]] == ["echo", "add"]  # was only "add": results misplaced


def test_whole_floats_reach_an_integer_parameter_as_ints() -> None:
    parsed = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 3.0, "b": 1e3}}</tool_call>', [ADD])
    [call] = parsed.tool_calls
    assert call.arguments == {"a": 3, "b": 1000} and all(type(v) is int for v in call.arguments.values())


# ---- review fixes (local models) ------------------------------------------------------------------
def test_openai_tool_names_may_start_with_a_digit_and_a_null_description_is_empty() -> None:
    for name in ("3d_render", "2fa-check", "a.b", "_x"):
        assert ToolSpec.from_openai({"type": "function", "function": {"name": name}}).name == name
    with pytest.raises(InvalidInputError, match="name"):
        ToolSpec.from_openai({"function": {"name": "x" * 65}})
    now = ToolSpec.from_openai({"type": "function", "function": {"name": "now", "description": None}})
    assert now.description == "" and '"description": ""' in tools_system_prompt([now])  # was "None"
    render = ToolSpec.from_openai({"name": "3d_render", "parameters": {"type": "object", "properties": {}}})
    [call] = parse_tool_calls('<tool_call>{"name": "3d_render", "arguments": {}}</tool_call>', [render]).tool_calls
    assert call.name == "3d_render"


# ---- review fixes (tool calls) ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('<tool_call>{"name": "add", "arguments": {"a": ' + "9" * 5000 + ', "b": 1}}</tool_call>', "4300 digits"),
        ("<tool_call>" + "[" * 3000, "nests too deeply"),
        ('{"name": "add", "arguments": {"a": "' + "9" * 5000 + '", "b": 1}}', "do not match the schema"),
        ('{"name": "add", "arguments": {"a": 1.0, "b": 2, "c": ' + "[" * 600 + "]" * 600 + "}}", "nests too deeply"),
        ('{"name": "add", "arguments": "{\\"a\\": ' + "[" * 3000 + '"}', "not valid JSON"),
    ],
)
def test_json_python_cannot_read_or_check_is_an_invalid_call(text: str, reason: str) -> None:
    parsed = parse_tool_calls(text, TOOLS)  # each raised ValueError or RecursionError
    assert parsed.tool_calls == () and reason in parsed.invalid_tool_calls[0].error


@pytest.mark.parametrize("text", ['{"name": "add", "arguments": {"a": ' + "9" * 5000 + ', "b": 1}}', "[" * 3000])
def test_bare_json_python_cannot_read_is_prose(text: str) -> None:
    parsed = parse_tool_calls(text, TOOLS)  # each raised ValueError or RecursionError
    assert parsed.text == text and parsed.tool_calls == () and parsed.invalid_tool_calls == ()


def test_a_blank_argument_string_reads_as_no_arguments() -> None:
    now = ToolSpec("now", "The time.", '{"type": "object", "properties": {}}')
    for arguments in ('""', '" "'):  # a streamed call with no arguments is rendered with ""
        parsed = parse_tool_calls(f'<tool_call>{{"name": "now", "arguments": {arguments}}}</tool_call>', [now])
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("now", {})]  # was "not valid JSON"


def test_a_bare_json_call_whose_arguments_name_the_tag_is_a_call() -> None:
    echo = ToolSpec("echo", "Echo.", '{"type": "object", "properties": {"s": {"type": "string"}}}')
    parsed = parse_tool_calls('{"name": "echo", "parameters": {"s": "wrap it in <tool_call>"}}', [echo])
    assert [c.arguments for c in parsed.tool_calls] == [{"s": "wrap it in <tool_call>"}]  # was prose
    assert parsed.text == "" and not parsed.invalid_tool_calls


def test_whole_floats_from_2_to_the_52_on_reach_an_integer_parameter_as_ints() -> None:
    [call] = parse_tool_calls('{"name": "add", "arguments": {"a": 1e16, "b": 9007199254740990.0}}', [ADD]).tool_calls
    assert call.arguments == {"a": 10**16, "b": 9007199254740990}
    assert all(type(v) is int for v in call.arguments.values())  # were floats: value + 0.5 == value there
    big = ToolSpec("big", "", '{"type": "object", "properties": {"x": {"type": "number"}}}')
    [number] = parse_tool_calls('{"name": "big", "arguments": {"x": 1e16}}', [big]).tool_calls
    assert type(number.arguments["x"]) is float  # a number parameter keeps its float


def test_a_tool_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="name"):  # was accepted, then no call could name it
        ToolSpec.from_openai({"name": "add\n", "parameters": {}})


@pytest.mark.parametrize(
    "parameters",
    [{"type": "object", "properties": {"a": {"enum": {1, 2}}}}, {"type": "object", "properties": {1: {}, "a": {}}}],
)
def test_parameters_that_are_not_json_are_bad_input(parameters: dict[object, object]) -> None:
    with pytest.raises(InvalidInputError, match="not JSON"):  # was a raw TypeError
        ToolSpec.from_openai({"name": "x", "parameters": parameters})


def test_a_json_list_in_a_block_is_its_calls() -> None:
    calls = '[{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "add", "arguments": {"a": 3}}]'
    text = f"<tool_call>{calls}</tool_call>"
    parsed = parse_tool_calls(text, TOOLS)
    assert [c.arguments for c in parsed.tool_calls] == [{"a": 1, "b": 2}]  # was one call refused as not an object
    assert "'b' is a required property" in parsed.invalid_tool_calls[0].error and parsed.text == ""


# ---- review fixes (parsing time) ----------------------------------------------------------------------
def test_a_fence_followed_by_a_long_run_of_white_space_is_read_at_once() -> None:
    cut = "```json\n" + "\n" * 1500 + "x"  # a fenced answer running into newlines, cut at the token limit
    block = "<tool_call>```" + " \n" * 800 + "}</tool_call>"
    started = time.perf_counter()
    parsed, in_block = parse_tool_calls(cut, TOOLS), parse_tool_calls(block, TOOLS)
    assert time.perf_counter() - started < 1.0  # the fence pattern read the white space three ways: 6 s
    assert parsed.text == cut and not parsed.invalid_tool_calls
    assert "not valid JSON" in in_block.invalid_tool_calls[0].error
    [call] = parse_tool_calls('```\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```', TOOLS).tool_calls
    assert call.arguments == {"a": 1, "b": 2}


def test_a_model_looping_on_the_tool_call_tag_is_read_in_linear_time() -> None:
    """Each block searched the rest of the text for closing tags (12,000 tags: 1 s; with fences, 19 s)."""
    from greenserv_core.tools.calls import split_tool_calls

    looping, fenced = "<tool_call>" * 12000 + "</tool_call>" * 8, "<tool_call>```" * 3000 + "</tool_call>"
    parsed = parse_tool_calls(looping, TOOLS)
    assert parsed.text == looping and not parsed.invalid_tool_calls  # its empty pair is not the whole answer: prose
    assert split_tool_calls(looping) == (looping, [])
    assert len(parse_tool_calls(fenced, TOOLS).invalid_tool_calls) == 3000
    assert_linear_time(lambda n: parse_tool_calls("<tool_call>" * n + "</tool_call>" * 8, TOOLS), 3000)
    assert_linear_time(lambda n: parse_tool_calls("<tool_call>```" * n + "</tool_call>", TOOLS), 750)


def test_many_bare_json_objects_in_a_row_are_read_in_linear_time() -> None:
    """The rest of the text was copied after each object (100,000 objects: 2.5 s)."""
    text = "{} ; " * 1000
    parsed = parse_tool_calls(text, TOOLS)
    assert parsed.text == text and not parsed.tool_calls and not parsed.invalid_tool_calls
    assert_linear_time(lambda n: parse_tool_calls("{} ; " * n, TOOLS), 25_000)


def test_parsing_never_raises_on_what_a_schema_cannot_check() -> None:
    """A ``$ref`` the tool's schema does not hold, and ``Infinity`` against ``multipleOf``,
    raised from jsonschema when the model called the tool (after its joules were spent)."""
    answer = '<tool_call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>'
    for reference in ({"$dynamicRef": "#meta"},):
        spec = ToolSpec("weather", "Weather.", json.dumps({"type": "object", "properties": {"city": reference}}))
        out = parse_tool_calls(answer, [spec])
        assert not out.tool_calls and out.invalid_tool_calls[0].error.startswith("the schema of 'weather' cannot be")
    pay = ToolSpec("pay", "Pay.", json.dumps({"type": "object", "properties": {"amount": {"multipleOf": 0.01}}}))
    for amount in ("Infinity", "-Infinity", "NaN"):
        out = parse_tool_calls(f'<tool_call>{{"name": "pay", "arguments": {{"amount": {amount}}}}}</tool_call>', [pay])
        assert not out.tool_calls and "cannot be checked" in out.invalid_tool_calls[0].error


@pytest.mark.parametrize("reference", ["#/$defs/missing", "city.json", "https://example.com/city.json"])
def test_a_tool_whose_schema_refers_nowhere_is_refused_when_made(reference: str) -> None:
    """It was taken, and every call to it then failed its check (and, with score_tool_calls,
    was scored 0 for a fault of the tool's, not the model's)."""
    schema = {"type": "object", "properties": {"city": {"$ref": reference}}}
    with pytest.raises(InvalidInputError, match="points nowhere"):
        ToolSpec("weather", "Weather.", json.dumps(schema))
    held = {**schema, "$defs": {"City": {"type": "string"}}, "properties": {"city": {"$ref": "#/$defs/City"}}}
    assert ToolSpec("weather", "Weather.", json.dumps(held)).name == "weather"  # one it holds: taken
    own_base = {"type": "object", "properties": {"city": {"$id": "https://x/c", "$ref": "#/$defs/C"}}}
    assert ToolSpec("weather", "", json.dumps(own_base)).name == "weather"  # another base: left to each call


def test_a_bare_json_call_may_name_the_tag_in_a_string_argument() -> None:
    """The tag inside the string opened a Hermes block cut short, whose invalid JSON was taken
    as the answer's call: the valid bare call was refused and half of it kept as prose."""
    note = ToolSpec("note", "", json.dumps({"type": "object", "properties": {"text": {"type": "string"}}}))
    for written in ("<tool_call>[x", 'Write <tool_call>{"name": ...}</tool_call>', "<tool_call>x"):
        call = json.dumps({"name": "note", "arguments": {"text": written}})
        for text in (call, f"```json\n{call}\n```"):
            out = parse_tool_calls(text, [note])
            assert [c.arguments for c in out.tool_calls] == [{"text": written}] and out.text == ""
            assert not out.invalid_tool_calls
    broken = parse_tool_calls('I will note it. <tool_call>{"name": "note", "arguments": {"text": ', [note])
    assert broken.text == "I will note it." and "not valid JSON" in broken.invalid_tool_calls[0].error  # as before


def test_bad_tool_specs_are_refused_with_invalid_input_error_whatever_they_hold() -> None:
    from greenserv_core.tools.spec import as_tool_specs

    deep: dict[str, object] = {"type": "object"}
    for _ in range(150):
        deep = {"type": "object", "properties": {"x": deep}}
    for make in (
        lambda: ToolSpec("t", "", '{"type": "object", "default": ' + "1" * 5000 + "}"),  # was a ValueError
        lambda: ToolSpec("t", "", '{"type": "object", "default": ' + "[" * 5000 + "]" * 5000 + "}"),  # RecursionError
        lambda: ToolSpec.from_openai({"name": "t", "parameters": deep}),  # was a RecursionError
        lambda: ToolSpec.from_openai({"description": 10**5000}),  # no name: its error message raised a ValueError
        lambda: as_tool_specs(5),  # type: ignore[arg-type]  # was a TypeError
    ):
        with pytest.raises(InvalidInputError):
            make()


@pytest.mark.parametrize(
    ("function", "refused"),
    [
        ({"name": None}, "a tool name must match"),  # was the tool 'None'
        ({"name": 123}, "a tool name must match"),  # was '123'
        ({"name": "add", "description": ["Adds", "numbers"]}, "description must be a string"),
        ({"name": "add", "parameters": []}, "of type 'object'"),  # was an empty schema
        ({"name": "add", "parameters": ""}, "of type 'object'"),
    ],
)
def test_an_openai_tool_is_checked_as_a_tool_spec_is_never_made_text(function: dict[str, object], refused: str) -> None:
    with pytest.raises(InvalidInputError, match=refused):
        ToolSpec.from_openai(function)
    assert ToolSpec.from_openai({"name": "now", "description": None, "parameters": {}}).description == ""


def test_a_fake_models_answer_cut_by_its_token_limit_keeps_its_text_as_written() -> None:
    """The cut joined the tokens with spaces ('< tool_call > { " name "'): the markup leaked
    into the answer's text, where the time limit's cut kept it as written."""
    from greenserv_core import GreenServRouter
    from greenserv_core.backends import GenerationSettings
    from greenserv_core.tools.spec import as_tool_specs
    from tests.conftest import make_hashing_extractor
    from tests.scripted_tools import scripted_tool_backend

    add = {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}
    ask = [{"role": "user", "content": "add 2 and 3"}]
    cut = scripted_tool_backend().generate(ask, GenerationSettings(max_new_tokens=12, tools=as_tool_specs([add])))
    assert (cut.text, cut.finish_reason) == ('<tool_call>\n{"name": "add",', "length")
    router = GreenServRouter([scripted_tool_backend()], features=make_hashing_extractor(), seed=0)
    answer = router.generate("add 2 and 3", tools=[add], max_new_tokens=12)
    assert answer.text == "" and not answer.tool_calls and len(answer.invalid_tool_calls) == 1


def test_a_quoted_number_is_unquoted_for_a_field_with_an_enum_too() -> None:
    """The enum's error made the unquoting give up: '2' was refused where a plain integer took it."""
    enum = ToolSpec(
        "pick", "", json.dumps({"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}})
    )
    out = parse_tool_calls('<tool_call>{"name": "pick", "arguments": {"n": "2"}}</tool_call>', [enum])
    assert [call.arguments for call in out.tool_calls] == [{"n": 2}]
    out = parse_tool_calls('<tool_call>{"name": "pick", "arguments": {"n": "5"}}</tool_call>', [enum])
    assert not out.tool_calls and "do not match the schema" in out.invalid_tool_calls[0].error  # outside it: refused


def test_a_call_left_open_then_prose_keeps_both() -> None:
    """Both were lost: no call, no text, and an invalid call ("Extra data")."""
    now = ToolSpec("now", "", "{}")
    out = parse_tool_calls('<tool_call>\n{"name": "now", "arguments": {}}\nI will wait for the result.', [now])
    assert (out.text, len(out.tool_calls), out.invalid_tool_calls) == ("I will wait for the result.", 1, ())


@pytest.mark.parametrize(
    ("text", "prose"),
    [
        ('```JSON\n{"name": "now", "arguments": {}}\n```', ""),  # the call stayed as prose
        ('<tool_call>\n```JSON\n{"name": "now", "arguments": {}}\n```\n</tool_call>', ""),  # "not valid JSON"
        ('Calling it.\n```\n<tool_call>{"name": "now", "arguments": {}}</tool_call>\n```', "Calling it."),
    ],
)
def test_a_fence_is_read_in_any_case_and_one_left_empty_goes(text: str, prose: str) -> None:
    out = parse_tool_calls(text, [ToolSpec("now", "", "{}")])
    assert (out.text, len(out.tool_calls), out.invalid_tool_calls) == (prose, 1, ())


def test_only_the_fence_that_wrapped_a_call_goes_and_two_calls_left_open_stay_calls() -> None:
    """A review of the fixes above: every empty-looking fence pair went, merging the prose's two
    code blocks; and the second of two calls in an open block was shown as prose."""
    run = ToolSpec("run", "", "{}")
    prose = "Two steps:\n```\npip install x\n```\n```\npython -m x\n```"
    out = parse_tool_calls(prose + '\n<tool_call>{"name": "run", "arguments": {}}</tool_call>', [run])
    assert out.text == prose and len(out.tool_calls) == 1
    two = '<tool_call>\n{"name": "run", "arguments": {}}\n{"name": "run", "arguments": {}}'
    out = parse_tool_calls(two, [run])
    assert out.text == "" and not out.tool_calls and len(out.invalid_tool_calls) == 1  # as the closed block


@pytest.mark.parametrize("keyword", ["const", "default", "examples"])
def test_a_ref_key_inside_data_is_no_reference(keyword: str) -> None:
    data: object = [{"$ref": "other.json"}] if keyword == "examples" else {"$ref": "#/nowhere"}
    schema = {"type": "object", "properties": {"doc": {"type": "object", keyword: data}}}
    assert ToolSpec("edit", "", json.dumps(schema)).name == "edit"  # was refused: "points nowhere"


@pytest.mark.parametrize(
    ("text", "prose"),
    [
        (
            'Checking.\n```json\n<tool_call>\n{"name": "run", "arguments": {}}\n```\nI will report back.',
            "Checking.\n\nI will report back.",
        ),
        ('<tool_call>\n{"name": "run", "arguments": {}}\n```', ""),
    ],
)
def test_a_call_left_open_inside_a_fence_is_still_a_call(text: str, prose: str) -> None:
    """A fence closing after an open block made it an invalid call (a review of the fixes above)."""
    out = parse_tool_calls(text, [ToolSpec("run", "", "{}")])
    assert (out.text, len(out.tool_calls), out.invalid_tool_calls) == (prose, 1, ())


@pytest.mark.parametrize("name", ["default", "enum", "examples"])
def test_a_property_named_as_a_data_keyword_still_has_its_ref_checked(name: str) -> None:
    schema = {"type": "object", "properties": {name: {"$ref": "#/$defs/Missing"}}}
    with pytest.raises(InvalidInputError, match="points nowhere"):
        ToolSpec("set_mode", "", json.dumps(schema))
