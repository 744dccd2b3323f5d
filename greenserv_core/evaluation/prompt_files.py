"""Prompts for the timing benchmarks from a file, so that they run where the bundled evaluation
data is not installed (a GPU machine that cannot reach PyPI, say).

A prompts file holds one JSON value per line: a string, or an object with a ``"prompt"``
string. :func:`write_prompts` writes the first form.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "prompts.jsonl"
>>> write_prompts(path, ["What is 2 + 2?", "Name a prime."])
>>> read_prompts(path)
['What is 2 + 2?', 'Name a prime.']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from greenserv_core.errors import InvalidInputError

__all__ = ["read_prompts", "write_prompts"]


def read_prompts(path: str | Path, limit: int | None = None) -> list[str]:
    """The prompts in ``path`` (the first ``limit`` of them), or :class:`InvalidInputError`
    naming the line that is neither a string nor an object with a ``"prompt"`` string."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInputError(f"limit must be None or a positive integer, got {limit!r}")
    prompts: list[str] = []
    if not Path(path).exists():
        raise InvalidInputError(f"no prompts file at {path}")
    if Path(path).is_dir():
        raise InvalidInputError(f"the prompts file {path} is a folder")
    try:
        _read_lines(path, limit, prompts)
    except UnicodeDecodeError as error:
        raise InvalidInputError(f"{path} is not a prompts file (not UTF-8 text): {error}") from error
    if not prompts:
        raise InvalidInputError(f"{path} holds no prompts")
    return prompts


def _read_lines(path: str | Path, limit: int | None, prompts: list[str]) -> None:
    """Append the prompts of ``path``'s lines to ``prompts`` (see :func:`read_prompts`)."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise InvalidInputError(f"{path}, line {number}: not JSON ({error})") from error
            prompt = value.get("prompt") if isinstance(value, dict) else value
            if not isinstance(prompt, str) or not prompt:
                raise InvalidInputError(f'{path}, line {number}: expected a string or an object with a "prompt" string')
            prompts.append(prompt)
            if limit is not None and len(prompts) >= limit:
                break


def write_prompts(path: str | Path, prompts: Sequence[str]) -> None:
    """Write ``prompts`` to ``path``, one JSON string per line (its folder is made if missing)."""
    if Path(path).is_dir():
        raise InvalidInputError(f"{path} is a folder; give a file name for the prompts")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for prompt in prompts:
            out.write(json.dumps(prompt) + "\n")
