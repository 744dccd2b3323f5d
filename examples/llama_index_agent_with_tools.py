"""A LlamaIndex ``FunctionAgent`` with two tools (a calculator and a document lookup) whose
every model call is routed by GreenServ; its event stream shows each step.

As in ``langchain_agent_with_tools.py``, the bundled models are *declared* tool-capable and get
the tools in a Hermes system prompt; they are too small to call tools (BENCHMARKS.md: no call
on 10 tool requests), so the agent ends with their prose answer. With a tool-capable model in
``models=`` (a remote vLLM server, say) the same code runs the full loop.

python examples/llama_index_agent_with_tools.py
"""

from __future__ import annotations

import asyncio
import dataclasses

from agent_tools import QUESTIONS, calculator, lookup
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool

from greenserv_core.models.bundled import bundled_specs
from llama_index_greenserv import GreenServLLM


async def ask(llm: GreenServLLM, question: str) -> str:
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(fn=calculator), FunctionTool.from_defaults(fn=lookup)], llm=llm
    )
    handler = agent.run(question)
    async for event in handler.stream_events():
        if isinstance(event, AgentOutput) and event.raw:  # a model call; raw is GreenServ's routing record
            record = event.raw
            energy = f"{record['energy_joules']:.1f} J {'measured' if record['energy_measured'] else 'estimated'}"
            calls = "; ".join(f"{c.tool_name}({c.tool_kwargs})" for c in event.tool_calls) or "none"
            print(f"  [{record['model']}, {energy} ({record['energy_source']})] tool calls: {calls}")
        elif isinstance(event, ToolCallResult):
            print(f"    {event.tool_name} -> {event.tool_output}")
    return str(await handler)


def main(max_tokens: int = 48) -> tuple[GreenServLLM, list[str]]:
    pool = [dataclasses.replace(spec, capabilities=frozenset({"tools"})) for spec in bundled_specs()]
    # the agent reads the LLM's metadata on the event loop: build the router (load the models) off it first
    llm = asyncio.run(GreenServLLM(models=pool, tradeoff=0.4, max_tokens=max_tokens).awarm())
    answers = []
    for question in QUESTIONS:
        print(f"> {question}")
        answer = asyncio.run(ask(llm, question))
        print(f"  answer: {answer.strip()[:200]}")
        answers.append(answer)
    return llm, answers


if __name__ == "__main__":
    main()
