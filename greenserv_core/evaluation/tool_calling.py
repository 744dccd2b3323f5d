"""How often local models call tools correctly (prints Markdown for BENCHMARKS.md).

A fixed set of 10 requests, each answerable with one of two tools (a calculator and a
document lookup), is sent to each model with both tools offered. A model whose chat
template renders no tools is declared tool-capable for this run, so it gets the Hermes
system prompt (``ModelSpec(capabilities={"tools"})``). Each answer is classed as: a valid
call to the expected tool, a valid call to the other tool, an invalid call (it does not
parse or does not fit the schema), or no call.

    python -m greenserv_core.evaluation.tool_calling
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections import Counter
from collections.abc import Sequence

from greenserv_core.backends.base import GenerationSettings
from greenserv_core.models.bundled import bundled_specs
from greenserv_core.models.transformers_backend import TransformersBackend
from greenserv_core.tools import ToolSpec, parse_tool_calls

__all__ = ["PROMPTS", "TOOLS", "main"]

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


def classify(text: str, expected: str) -> str:
    """One of ``right tool``, ``other tool``, ``invalid call``, ``no call``."""
    parsed = parse_tool_calls(text, TOOLS)
    if parsed.invalid_tool_calls:
        return "invalid call"
    if not parsed.tool_calls:
        return "no call"
    return "right tool" if parsed.tool_calls[0].name == expected else "other tool"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, tools=TOOLS)
    kinds = ("right tool", "other tool", "invalid call", "no call")
    print(f"| model | tools offered through | {' | '.join(kinds)} |")
    print("|---|---|---|---|---|---|")
    for spec in bundled_specs():
        backend = TransformersBackend(
            dataclasses.replace(spec, capabilities=frozenset({"tools"})), meter="cpu-estimate"
        )
        through = "chat template" if backend.template_takes_tools else "Hermes system prompt"
        counts = Counter(
            classify(backend.generate([{"role": "user", "content": prompt}], settings).text, expected)
            for prompt, expected in PROMPTS
        )
        cells = " | ".join(f"{counts[k]}/{len(PROMPTS)}" for k in kinds)
        print(f"| {spec.name} | {through} | {cells} |")


if __name__ == "__main__":
    main()
