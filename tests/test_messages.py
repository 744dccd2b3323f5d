import pytest

from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import last_user_text, validate_messages


def test_string_becomes_user_message() -> None:
    assert validate_messages("hello") == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([], "empty"),
        ({"role": "user", "content": "x"}, "list"),
        (42, "list"),
        ([{"role": "user", "content": 3}], "content must be a string"),
        ([{"role": "wizard", "content": "x"}], "role 'wizard'"),
        (["just text"], "mapping"),
        ([{"role": "user", "content": "   "}], "every message is empty"),
    ],
)
def test_bad_messages_name_the_problem(messages: object, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        validate_messages(messages)


def test_last_user_text_prefers_the_last_user_turn() -> None:
    messages = validate_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"},
        ]
    )
    assert last_user_text(messages) == "second"


def test_a_str_enum_role_comes_out_as_the_plain_role() -> None:
    import enum

    class Role(str, enum.Enum):  # as LlamaIndex's MessageRole
        SYSTEM = "system"
        USER = "user"

    clean = validate_messages([{"role": Role.SYSTEM, "content": "Be brief."}, {"role": Role.USER, "content": "2+2?"}])
    assert [m["role"] for m in clean] == ["system", "user"]  # was ['Role.SYSTEM', 'Role.USER']
    assert all(type(m["role"]) is str for m in clean)


def test_a_turn_of_emoji_newer_than_pythons_tables_or_private_use_characters_is_text() -> None:
    newer, private = chr(0x1FAE9), chr(0xE000)  # Unicode 16 (unassigned before Python 3.14); private use
    assert validate_messages(f"{newer} {newer}") == [{"role": "user", "content": f"{newer} {newer}"}]
    chat = validate_messages(
        [{"role": "user", "content": "Translate 'cat' into French."}, {"role": "user", "content": private * 3}]
    )
    assert last_user_text(chat) == private * 3  # was the earlier turn
    with pytest.raises(InvalidInputError, match="every message is empty"):
        validate_messages(" " + chr(0x200B) + chr(0x2028) + chr(0))  # zero-width, line separator, NUL: nothing shows


GET_TEMP = {"id": "c1", "type": "function", "function": {"name": "get_temp", "arguments": '{"city": "Paris"}'}}
GET_TEMP_BLOCK = '<tool_call>\n{"name": "get_temp", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.mark.parametrize("content", ["", None])
def test_an_assistant_turns_tool_calls_reach_the_model_as_hermes_blocks(content: str | None) -> None:
    clean = validate_messages(
        [
            {"role": "user", "content": "Temperature in Paris?"},
            {"role": "assistant", "content": content, "tool_calls": [GET_TEMP]},  # None: refused before
            {"role": "tool", "tool_call_id": "c1", "content": "22"},
        ]
    )
    assert clean[1] == {"role": "assistant", "content": GET_TEMP_BLOCK}  # was an empty turn
    assert clean[2] == {"role": "tool", "content": "22"}


def test_tool_calls_keep_the_turns_text_take_object_arguments_and_order_the_results() -> None:
    rome = {"id": "c2", "function": {"name": "get_temp", "arguments": {"city": "Rome"}}}  # an object, as HF templates
    clean = validate_messages(
        [
            {"role": "user", "content": "Paris and Rome?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": (GET_TEMP, rome)},
            {"role": "tool", "tool_call_id": "c2", "content": "25"},
            {"role": "tool", "tool_call_id": "c1", "content": "22"},
        ]
    )
    assert clean[1]["content"] == (
        "Checking.\n"
        + GET_TEMP_BLOCK
        + '\n<tool_call>\n{"name": "get_temp", "arguments": {"city": "Rome"}}\n</tool_call>'
    )
    assert [m["content"] for m in clean[2:]] == ["22", "25"]  # in the order of the calls they answer
    assert validate_messages(clean) == clean  # validated again (a backend does): the same
    plain = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "tool_calls": []}]
    assert validate_messages(plain) == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


@pytest.mark.parametrize(
    ("tool_calls", "needle"),
    [
        ({"function": {"name": "f"}}, "tool_calls must be a list"),
        ("get_temp()", "tool_calls must be a list"),
        ([42], r"tool_calls\[0\]"),
        ([{"function": {"arguments": "{}"}}], r"tool_calls\[0\]"),
        ([{"function": {"name": "", "arguments": "{}"}}], r"tool_calls\[0\]"),
        ([GET_TEMP, {"function": {"name": "f", "arguments": 3}}], r"tool_calls\[1\]"),
        ([{"function": {"name": "f", "arguments": {"at": {1, 2}}}}], "not JSON"),
    ],
)
def test_malformed_tool_calls_are_refused(tool_calls: object, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        validate_messages(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "", "tool_calls": tool_calls}]
        )


def test_only_an_assistant_turn_makes_tool_calls() -> None:
    with pytest.raises(InvalidInputError, match="only an assistant turn"):
        validate_messages([{"role": "user", "content": "Hi", "tool_calls": [GET_TEMP]}])
    with pytest.raises(InvalidInputError, match="content must be a string"):
        validate_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}])


def test_tool_calls_already_written_into_the_turns_text_are_not_written_twice() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
    once = validate_messages(
        [{"role": "user", "content": "Time?"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    )
    again = validate_messages([{"role": "user", "content": "Time?"}, {**once[1], "tool_calls": [call]}])
    assert again == once and again[1]["content"].count("<tool_call>") == 1  # was 2


def test_tool_call_arguments_nested_past_the_recursion_limit_are_refused_by_message() -> None:
    deep: dict[str, object] = {}
    for _ in range(5000):
        deep = {"a": deep}
    turns = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": deep}]},
    ]
    with pytest.raises(InvalidInputError, match=r"messages\[1\] tool_calls arguments are not JSON"):  # RecursionError
        validate_messages(turns)  # type: ignore[arg-type]
