"""How often local models call tools correctly (``greenserv bench tool-calling``).

A fixed set of 10 requests, each answerable with one of two tools (a calculator and a
document lookup), is sent to each model with both tools offered. A model whose chat
template renders no tools is declared tool-capable for this run, so it gets the Hermes
system prompt (``ModelSpec(capabilities={"tools"})``). Each answer is classed as: a valid
call to the expected tool, a valid call to the other tool, an invalid call (it does not
parse or does not fit the schema), or no call.

    greenserv bench tool-calling
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from greenserv_core.backends.base import GenerationSettings, ModelBackend
from greenserv_core.tools import ToolSpec, parse_tool_calls

__all__ = ["KINDS", "PROMPTS", "TOOLS", "ToolCallingReport", "ToolCallingRow", "classify", "run_tool_calling"]

TOOLS = (
    ToolSpec.from_openai(
        {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression and return the number.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string", "description": "e.g. 17 * 23"}},
                "required": ["expression"],
            },
        }
    ),
    ToolSpec.from_openai(
        {
            "name": "lookup",
            "description": "Find the stored document about a topic and return its text.",
            "parameters": {
                "type": "object",
                "properties": {"topic": {"type": "string"}},
                "required": ["topic"],
            },
        }
    ),
)
PROMPTS = (
    ("What is 17 times 23? Use the calculator.", "calculator"),
    ("Compute 144 divided by 12.", "calculator"),
    ("What is 2 to the power of 10?", "calculator"),
    ("Add 1234 and 5678.", "calculator"),
    ("How much is 15% of 240?", "calculator"),
    ("Find the document about the Eiffel Tower.", "lookup"),
    ("Look up the topic photosynthesis.", "lookup"),
    ("What does our document on the Roman Empire say?", "lookup"),
    ("Fetch the stored notes about black holes.", "lookup"),
    ("Use the lookup tool to find the document on volcanoes.", "lookup"),
)


KINDS = ("right tool", "other tool", "invalid call", "no call")


def classify(text: str, expected: str) -> str:
    """One of ``right tool``, ``other tool``, ``invalid call``, ``no call``."""
    parsed = parse_tool_calls(text, TOOLS)
    if parsed.invalid_tool_calls:
        return "invalid call"
    if not parsed.tool_calls:
        return "no call"
    return "right tool" if parsed.tool_calls[0].name == expected else "other tool"


@dataclass(frozen=True)
class ToolCallingRow:
    """One model's answers to :data:`PROMPTS`, counted by :data:`KINDS`."""

    model: str
    offered_through: str  # "chat template" or "Hermes system prompt"
    counts: dict[str, int]


@dataclass(frozen=True)
class ToolCallingReport:
    rows: list[ToolCallingRow]

    def table(self) -> list[dict[str, str]]:
        """Rows for :func:`~greenserv_core.evaluation.markdown.markdown_table`."""
        return [
            {
                "model": r.model,
                "tools offered through": r.offered_through,
                **{kind: f"{r.counts.get(kind, 0)}/{len(PROMPTS)}" for kind in KINDS},
            }
            for r in self.rows
        ]


def _bundled_tool_backends() -> list[ModelBackend]:
    from greenserv_core.backends.transformers import TransformersBackend
    from greenserv_core.models.bundled import bundled_specs

    return [
        TransformersBackend(dataclasses.replace(spec, capabilities=frozenset({"tools"})), meter="cpu-estimate")
        for spec in bundled_specs()
    ]


def run_tool_calling(
    *, max_new_tokens: int = 64, backends: Sequence[ModelBackend] | None = None, progress: bool = False
) -> ToolCallingReport:
    """Send :data:`PROMPTS` with :data:`TOOLS` to each backend (default: the bundled models,
    declared tool-capable) and class each answer; ``progress`` shows a bar, one step per answer."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = GenerationSettings(max_new_tokens=max_new_tokens, tools=TOOLS)
    pool = list(_bundled_tool_backends() if backends is None else backends)
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pool) * len(PROMPTS), desc="tool calling", unit="answer")
    rows = []
    for backend in pool:
        through = "chat template" if getattr(backend, "template_takes_tools", False) else "Hermes system prompt"
        counts: Counter[str] = Counter()
        for prompt, expected in PROMPTS:
            counts[classify(backend.generate([{"role": "user", "content": prompt}], settings).text, expected)] += 1
            if bar is not None:
                bar.set_postfix_str(backend.info.name)
                bar.update()
        rows.append(ToolCallingRow(backend.info.name, through, {kind: counts[kind] for kind in KINDS}))
    if bar is not None:
        bar.close()
    return ToolCallingReport(rows)
