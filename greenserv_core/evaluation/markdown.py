"""The one Markdown renderer of benchmark results: a list of rows → a pipe table.

>>> print(markdown_table([{"model": "small", "J per query": 1.5}, {"model": "a|b", "J per query": "–"}]))
| model | J per query |
|---|---|
| small | 1.5 |
| a\\|b | – |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from greenserv_core.errors import InvalidInputError

__all__ = ["markdown_table"]


def _cell(value: object) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    """A GitHub pipe table; the columns are ``columns``, else the first row's keys, in order.

    Cells are ``str(value)`` on one line, with ``|`` escaped; every row must have every column.

    >>> markdown_table([], columns=["step", "seconds"])
    '| step | seconds |\\n|---|---|'
    """
    names = list(columns if columns is not None else (rows[0] if rows else ()))
    if not names:
        raise InvalidInputError("a Markdown table needs at least one column")
    lines = [f"| {' | '.join(_cell(name) for name in names)} |", f"|{'---|' * len(names)}"]
    for number, row in enumerate(rows):
        missing = [name for name in names if name not in row]
        if missing:
            raise InvalidInputError(f"row {number} of the table lacks the columns {missing}")
        lines.append(f"| {' | '.join(_cell(row[name]) for name in names)} |")
    return "\n".join(lines)
