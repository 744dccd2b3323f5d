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
