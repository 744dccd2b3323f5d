"""A small tool-calling agent (a calculator and a document lookup) whose every step is routed.

The loop is the usual one: bind the tools, call the model, run the tool calls it makes, send
the results back as ``ToolMessage``s, and stop when it answers in prose. A malformed call
(``invalid_tool_calls``) or a failing tool is answered with an error message, so that the
model can correct it. Only models that take tools are eligible for these calls. The bundled
models' chat templates render no tools, so here they are *declared* tool-capable
(``ModelSpec(capabilities={"tools"})``) and get the tools in a Hermes system prompt. They are
far too small to call tools reliably (BENCHMARKS.md: neither made a valid call on 10 tool
requests). Put a tool-capable instruct model (e.g. one whose
chat template renders ``tools``) in ``models=`` for a real agent; the code stays the same.

python examples/langchain_agent_with_tools.py
"""

from __future__ import annotations

import dataclasses
from typing import Any

from agent_tools import QUESTIONS
from agent_tools import calculator as calculate
from agent_tools import lookup as find_document
from langchain_core.messages import BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.tools import tool

from greenserv_core.models.bundled import bundled_specs
from langchain_greenserv import ChatGreenServ

calculator = tool(calculate)
lookup = tool(find_document)
TOOLS = {t.name: t for t in (calculator, lookup)}


def run_tool(call: ToolCall) -> ToolMessage:
    """Run one tool call; a failing tool answers with an error (as LangGraph's ``ToolNode`` does)."""
    try:
        return ToolMessage(TOOLS[call["name"]].invoke(call["args"]), tool_call_id=call["id"])
    except (ArithmeticError, SyntaxError, ValueError) as error:
        return ToolMessage(f"Error: {error}", tool_call_id=call["id"], status="error")


def run_agent(llm: Any, question: str, max_steps: int = 3) -> list[BaseMessage]:
    """The tool loop: at most ``max_steps`` model calls. A malformed call (``invalid_tool_calls``)
    is answered with an error, so that the model can retry."""
    agent = llm.bind_tools(list(TOOLS.values()))
    messages: list[BaseMessage] = [HumanMessage(question)]
    for _ in range(max_steps):
        reply = agent.invoke(messages)
        messages.append(reply)
        meta = reply.response_metadata["greenserv"]
        energy = f"{meta['energy_joules']:.1f} J {'measured' if meta['energy_measured'] else 'estimated'}"
        calls = [f"{c['name']}({c['args']})" for c in reply.tool_calls]
        calls += [f"invalid ({c['error']}): {c['args']}" for c in reply.invalid_tool_calls]
        print(f"  [{meta['model']}, {energy} ({meta['energy_source']})] tool calls: {'; '.join(calls) or 'none'}")
        if not calls:
            break
        messages += [run_tool(call) for call in reply.tool_calls]
        messages += [
            ToolMessage(f"Error: {c['error']}", tool_call_id=str(c["id"]), status="error")
            for c in reply.invalid_tool_calls
        ]
    return messages


def main(max_tokens: int = 48) -> list[list[BaseMessage]]:
    pool = [dataclasses.replace(spec, capabilities=frozenset({"tools"})) for spec in bundled_specs()]
    llm = ChatGreenServ(models=pool, tradeoff=0.4, max_tokens=max_tokens)
    transcripts = []
    for question in QUESTIONS:
        print(f"> {question}")
        transcript = run_agent(llm, question)
        print(f"  answer: {str(transcript[-1].content).strip()[:200]}")
        transcripts.append(transcript)
    return transcripts


if __name__ == "__main__":
    main()
