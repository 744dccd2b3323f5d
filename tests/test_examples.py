"""Every example runs and shows what it claims."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.append(str(EXAMPLES))  # as when an example runs as a script: its shared helpers import


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learning_from_feedback_prefers_the_cheap_model_where_it_is_as_good() -> None:
    late = load("learning_from_feedback").main()
    assert late["boolq"]["small"] > 0.8 * sum(late["boolq"].values())  # equal accuracy: the cheap one
    assert late["gsm8k"]["large"] > 0.8 * sum(late["gsm8k"].values())  # maths needs the large one


def test_langchain_chain_with_feedback_scores_every_answer() -> None:
    handler = load("langchain_chain_with_feedback").main(max_tokens=16)
    assert len(handler.runs) == 3 and not handler.errors
    assert all(run.score in (0.0, 1.0) for run in handler.runs.values())
    assert sum(run.score or 0 for run in handler.runs.values()) >= 1  # the capital questions are easy


def test_langchain_conversation_keeps_history() -> None:
    messages = load("langchain_conversation").main(max_tokens=12)
    assert len(messages) == 6
    assert messages[0].content == "Hi! My name is Ada." and messages[-1].type == "ai"


def test_langchain_rag_retrieves_the_right_document() -> None:
    answer, found = load("langchain_rag").main(max_tokens=24)
    assert "Eiffel" in found[0]
    assert answer.strip()


def test_llama_index_rag_answers_through_the_router_and_scores() -> None:
    handler = load("llama_index_rag").main(max_tokens=24)
    assert len(handler.seen) >= 2 and not handler.errors
    assert all(s.model in {"smollm2-135m-instruct", "gemma-3-270m"} for s in handler.seen.values())
    assert all(s.score in (0.0, 1.0) for s in handler.seen.values())


def test_llama_index_chat_engine_keeps_the_conversation() -> None:
    history = load("llama_index_chat_engine").main(max_tokens=16)
    assert len(history) == 4
    assert history[0].content == "What does GreenServ do?"


def test_langchain_agent_with_tools_routes_every_step_to_tool_capable_models() -> None:
    module = load("langchain_agent_with_tools")
    assert module.calculator.invoke({"expression": "17 * 23"}) == "391.0"
    assert "1889" in module.lookup.invoke({"topic": "Eiffel Tower"})
    transcripts = module.main(max_tokens=24)
    assert len(transcripts) == 2
    for transcript in transcripts:
        replies = [m for m in transcript if m.type == "ai"]
        assert replies and all(r.response_metadata["model_name"] for r in replies)
        # every tool the model called was run, and its result went back to it
        calls = [c["id"] for r in replies for c in r.tool_calls]
        assert calls == [m.tool_call_id for m in transcript if m.type == "tool"]


def test_llama_index_agent_with_tools_runs_every_step_through_the_router() -> None:
    module = load("llama_index_agent_with_tools")
    llm, answers = module.main(max_tokens=24)
    assert len(answers) == 2 and all(answer.strip() for answer in answers)
    router = llm.greenserv_router
    assert sum(router.stats_[name]["decisions"] for name in router.models) >= 2  # at least one call a question


def test_energy_budget_spends_the_budget_where_accuracy_pays() -> None:
    result = load("energy_budget").main(steps=600)
    assert 0.9 * 30 <= result["mean_joules"] <= 1.01 * 30
    late = result["late"]
    assert late["gsm8k"]["large"] > 5 * late["boolq"]["large"]  # the dear model goes where it pays


def test_cascades_escalate_where_the_cheap_model_is_unsure() -> None:
    result = load("cascades").main()
    late, answered, escalations = result["late"], result["answered"], result["escalations"]
    # maths: the small model is hopeless, so the large one answers (chosen, or escalated to)
    assert answered["gsm8k"]["large"] > 0.7 * sum(answered["gsm8k"].values())
    assert late["boolq"]["small->large"] + late["boolq"]["small"] > 0.5 * sum(late["boolq"].values())
    assert answered["boolq"]["small"] > 0.5 * sum(answered["boolq"].values())  # yes/no: mostly kept
    escalated = sum(escalations.values())
    assert escalated > 0
    assert escalations["small was wrong"] / escalated > 0.3  # the small model is wrong 30% of the time on boolq
