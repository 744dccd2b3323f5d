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
    prompts: list[str] = []
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
    if not prompts:
        raise InvalidInputError(f"{path} holds no prompts")
    return prompts


def write_prompts(path: str | Path, prompts: Sequence[str]) -> None:
    """Write ``prompts`` to ``path``, one JSON string per line."""
    with open(path, "w", encoding="utf-8") as out:
        for prompt in prompts:
            out.write(json.dumps(prompt) + "\n")
