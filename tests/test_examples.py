"""Every example runs and shows what it claims.

The examples with real models run them end to end; as the tiny bundled models prove little by
their answers, the tests check what the router *received* (history, retrieved context, tools:
:func:`spy_routed_calls`), and run each agent loop once more over a scripted tool-calling
model, so that the tool-result path is really taken.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.example_checks import RoutedCall, clumsy_tool_model, spy_routed_calls
from tests.scripted_tools import scripted_tool_backend

EXAMPLES = Path(__file__).parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.append(str(EXAMPLES))  # as when an example runs as a script: its shared helpers import
TOOL_NAMES = ("calculator", "lookup")


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[RoutedCall]:
    return spy_routed_calls(monkeypatch)


def test_learning_from_feedback_prefers_the_cheap_model_where_it_is_as_good() -> None:
    module = load("learning_from_feedback")
    windows = module.main()
    late = {task: windows[-2][task] + windows[-1][task] for task in ("gsm8k", "boolq")}  # the last 200 queries
    assert late["boolq"]["small"] > 0.8 * late["boolq"].total()  # equal accuracy: the cheap one
    assert late["gsm8k"]["large"] > 0.8 * late["gsm8k"].total()  # maths needs the large one
    first = windows[0]["gsm8k"]
    assert first["large"] / first.total() < 0.8  # it learned that: at first it did not know
    unlearned = module.main(feedback_rate=0.0)[-1]["gsm8k"]  # and it learned it from the feedback
    assert unlearned["large"] < 0.2 * unlearned.total()


def test_langchain_chain_with_feedback_scores_every_answer() -> None:
    module = load("langchain_chain_with_feedback")
    handler = module.main(max_tokens=16)
    assert len(handler.runs) == 3 and not handler.errors
    assert all(run.score in (0.0, 1.0) for run in handler.runs.values())
    assert sum(run.score or 0 for run in handler.runs.values()) >= 1  # the capital questions are easy
    assert module.contains_answer("What is the capital of Italy?", "Paris.") == 0.0


def test_langchain_conversation_keeps_history(routed: list[RoutedCall]) -> None:
    messages = load("langchain_conversation").main(max_tokens=12)
    assert len(messages) == 6
    assert messages[0].content == "Hi! My name is Ada." and messages[-1].type == "ai"
    assert len(routed) == 3
    for turn, call in enumerate(routed):  # each turn was routed with the whole conversation so far
        assert call.contents("user", "assistant") == [str(m.content) for m in messages[: 2 * turn + 1]]


def test_langchain_rag_answers_from_the_retrieved_documents(routed: list[RoutedCall]) -> None:
    answer, found = load("langchain_rag").main(max_tokens=24)
    assert "Eiffel" in found[0]
    assert answer.strip()
    [call] = routed
    assert all(doc in "\n".join(call.contents("system")) for doc in found)  # the context the model got
    assert call.contents("user") == ["When was the Eiffel Tower completed?"]


def test_llama_index_rag_answers_from_the_source_and_scores_the_right_answer(routed: list[RoutedCall]) -> None:
    module = load("llama_index_rag")
    handler = module.main(max_tokens=24)
    assert len(handler.seen) >= 2 and not handler.errors
    seen = list(handler.seen.values())
    assert all(s.model in {"smollm2-135m-instruct", "gemma-3-270m"} for s in seen)
    for question, source in zip(module.QUESTIONS, (module.DOCUMENTS[0], module.DOCUMENTS[2]), strict=True):
        assert any(question in call.text and source in call.text for call in routed)  # retrieved, then asked
    answers = list(module.QUESTIONS.values())
    for s in seen:
        [asked] = [q for q in module.QUESTIONS if q in s.prompt]
        assert s.score == float(module.QUESTIONS[asked] in s.output.lower())  # the score is the answer's
        other = answers[1 - list(module.QUESTIONS).index(asked)]
        assert handler.evaluator(s.prompt, f"It is {other}.") == 0.0  # no credit for the other question's answer
        assert handler.evaluator(s.prompt, f"It is {module.QUESTIONS[asked]}.") == 1.0


def test_llama_index_chat_engine_answers_from_the_index_and_keeps_the_conversation(routed: list[RoutedCall]) -> None:
    module = load("llama_index_chat_engine")
    history = module.main(max_tokens=16)
    assert len(history) == 4
    assert history[0].content == "What does GreenServ do?"
    first, last = routed[0], routed[-1]
    assert module.DOCUMENTS[0] in first.text and first.contents("user") == [module.TURNS[0]]  # retrieved context
    assert any(doc in last.text for doc in module.DOCUMENTS)
    assert [str(m.content) for m in history[:2]] == last.contents("user", "assistant")[:2]  # the first turn
    assert last.contents("user")[-1] == module.TURNS[1]


def test_langchain_agent_sends_tool_results_and_errors_back(routed: list[RoutedCall]) -> None:
    """The loop over a model that makes a malformed call, then a good one, then answers."""
    module = load("langchain_agent_with_tools")
    from langchain_greenserv import ChatGreenServ

    transcript = module.run_agent(ChatGreenServ(models=[clumsy_tool_model()]), "Ask the calculator for '17 * 23'.")
    assert [m.type for m in transcript] == ["human", "ai", "tool", "ai", "tool", "ai"]
    assert transcript[1].invalid_tool_calls and transcript[2].status == "error"
    assert transcript[3].tool_calls[0]["args"] == {"expression": "17 * 23"}
    assert [transcript[2].tool_call_id, transcript[4].tool_call_id] == [
        transcript[1].invalid_tool_calls[0]["id"],
        transcript[3].tool_calls[0]["id"],
    ]
    assert "391" in str(transcript[-1].content)
    assert all(call.tools == TOOL_NAMES for call in routed) and len(routed) == 3
    assert "'expression' is a required property" in routed[1].contents("tool")[0]  # the model was told why
    assert "391.0" in routed[2].contents("tool")[-1]  # and got the result
    failed = module.run_tool({"name": "calculator", "args": {"expression": "17 times 23"}, "id": "c1"})
    assert failed.status == "error" and failed.tool_call_id == "c1"


def test_langchain_agent_with_tools_routes_every_step_to_tool_capable_models(routed: list[RoutedCall]) -> None:
    module = load("langchain_agent_with_tools")
    assert module.calculator.invoke({"expression": "17 * 23"}) == "391.0"
    assert "1889" in module.lookup.invoke({"topic": "Eiffel Tower"})
    transcripts = module.main(max_tokens=24)
    assert len(transcripts) == 2
    assert routed and all(call.tools == TOOL_NAMES for call in routed)  # every step was offered the tools
    for transcript in transcripts:
        replies = [m for m in transcript if m.type == "ai"]
        assert replies and all(r.response_metadata["model_name"] for r in replies)
        # every call the model made, valid or not, was answered
        calls = [c["id"] for r in replies for c in [*r.tool_calls, *r.invalid_tool_calls]]
        assert calls == [m.tool_call_id for m in transcript if m.type == "tool"]


def test_llama_index_agent_runs_the_tools_it_offers(routed: list[RoutedCall]) -> None:
    """The agent over a scripted model that calls the tool it is asked for."""
    module = load("llama_index_agent_with_tools")
    from llama_index_greenserv import GreenServLLM

    answer = asyncio.run(module.ask(GreenServLLM(models=[scripted_tool_backend()]), "Ask lookup about 'Eiffel Tower'."))
    assert "1889" in answer
    assert len(routed) == 2 and all(call.tools == TOOL_NAMES for call in routed)
    assert "1889" in routed[1].contents("tool")[0]  # the tool's result went back to the model


def test_llama_index_agent_with_tools_runs_every_step_through_the_router(routed: list[RoutedCall]) -> None:
    module = load("llama_index_agent_with_tools")
    llm, answers = module.main(max_tokens=24)
    assert len(answers) == 2 and all(answer.strip() for answer in answers)
    router = llm.greenserv_router
    assert sum(router.stats_[name]["decisions"] for name in router.models) == len(routed) >= 2
    assert all(call.tools == TOOL_NAMES for call in routed)


def test_energy_budget_spends_the_budget_where_accuracy_pays(capsys: pytest.CaptureFixture[str]) -> None:
    result = load("energy_budget").main(steps=600)
    assert 0.9 * 30 <= result["mean_joules"] <= 1.01 * 30
    late = result["late"]
    assert late["gsm8k"]["large"] > 5 * late["boolq"]["large"]  # the dear model goes where it pays
    progress = re.findall(r"after (\d+) queries: .*, mean ([\d.]+) J over (\d+)", capsys.readouterr().out)
    assert [(after, over) for after, _, over in progress] == [("300", "300"), ("600", "600")]
    assert float(progress[-1][1]) == pytest.approx(result["mean_joules"], abs=0.05)  # the spend so far


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
