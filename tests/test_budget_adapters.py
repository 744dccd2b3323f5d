"""Energy budgets and the per-query joule cap through the adapters (ChatGreenServ,
GreenServLLM) and ``greenserv chat``, over fake backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from greenserv_core import FakeBackend, FeatureExtractor, GreenServRouter, InvalidInputError, NoEligibleModelError, cli
from greenserv_core.adapters import CALL_OPTIONS, check_energy_budget
from greenserv_core.budget import BudgetPacer, EnergyBudget
from langchain_greenserv import ChatGreenServ
from llama_index_greenserv import GreenServLLM
from tests.conftest import make_hashing_extractor

PROMPT = "What is 2 + 2?"


def fake_pool() -> list[FakeBackend]:
    """A cheap and a dear model: on PROMPT (8 new tokens at most) about 14 J and 126 J."""
    return [FakeBackend("small", joules_per_token=1.0), FakeBackend("large", joules_per_token=9.0)]


@pytest.fixture
def hashing_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routers the adapters build get the dependency-free hashing features."""
    monkeypatch.setattr(FeatureExtractor, "default", classmethod(lambda cls, **kwargs: make_hashing_extractor()))


def warm_router() -> GreenServRouter:
    """A router whose energy model has measured both models on PROMPT (pinned calls)."""
    router = GreenServRouter(fake_pool(), features=make_hashing_extractor(), tradeoff=0.4, seed=0)
    for _ in range(3):
        for model in ("small", "large"):
            router.generate(PROMPT, models=[model], max_new_tokens=8)
    predicted = router.route(PROMPT, max_new_tokens=8).predicted_joules
    assert predicted["small"] is not None and predicted["small"] < 30.0  # type: ignore[operator]
    assert predicted["large"] is not None and predicted["large"] > 100.0  # type: ignore[operator]
    return router


# ---- the budget's checks ----------------------------------------------------------------------


def test_check_energy_budget_keeps_plain_serialisable_values() -> None:
    assert check_energy_budget(None) is None
    assert check_energy_budget(50) == 50.0 and isinstance(check_energy_budget(50), float)
    assert check_energy_budget("2Wh/h") == "2Wh/h"
    assert check_energy_budget(EnergyBudget.per_query(12.5)) == 12.5
    window = EnergyBudget.per_window(joules=500.0, window_s=30.0)
    assert EnergyBudget.parse(str(check_energy_budget(window))) == window  # the exact budget, as text
    for bad, reason in [
        ("fifty joules", "cannot read the energy budget"),
        (-5, "positive"),
        (float("nan"), "positive"),
        (True, "energy_budget must be"),
        ([50], "energy_budget must be"),
        (BudgetPacer(EnergyBudget.per_query(5.0)), "router="),
    ]:
        with pytest.raises(InvalidInputError, match=reason):
            check_energy_budget(bad)
    assert "max_joules" in CALL_OPTIONS


@pytest.mark.parametrize("adapter", [ChatGreenServ, GreenServLLM])
def test_bad_budgets_and_caps_are_refused_when_the_model_is_made(adapter: Any) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"energy_budget": "fifty joules"}, "cannot read the energy budget 'fifty joules'"),
        ({"energy_budget": "5 apples/h"}, "unknown energy unit 'apples'"),
        ({"energy_budget": 0}, "the energy budget must be a positive finite number"),
        ({"energy_budget": True}, "energy_budget must be joules per query"),
        ({"max_joules": -1.0}, "max_joules must be a positive finite number"),
        ({"max_joules": float("inf")}, "max_joules must be a positive finite number"),
        ({"max_joules": "a lot"}, "max_joules must be a positive finite number"),
    ]
    for kwargs, reason in cases:
        # pydantic's ValidationError (a ValueError) carries the router's own message; no router is built
        with pytest.raises(ValueError, match=reason):
            adapter(**kwargs)
    with pytest.raises(ValueError, match="router= and energy_budget="):
        adapter(router=warm_router(), energy_budget=50.0)


def test_the_fields_are_plain_and_identify_the_model() -> None:
    llm = ChatGreenServ(energy_budget=EnergyBudget.parse("2Wh/h"), max_joules=40)  # type: ignore[arg-type]
    assert llm.energy_budget == "7200.0J/3600.0s" and llm.max_joules == 40.0
    params = llm._identifying_params
    assert params["energy_budget"] == "7200.0J/3600.0s" and params["max_joules"] == 40.0
    assert ChatGreenServ()._identifying_params["energy_budget"] is None
    dumped = GreenServLLM(energy_budget="50J/query", max_joules=40).model_dump()
    assert dumped["energy_budget"] == "50J/query" and dumped["max_joules"] == 40.0


# ---- routing under a budget -------------------------------------------------------------------


@pytest.mark.usefixtures("hashing_features")
def test_chat_greenserv_routes_under_a_budget_and_says_so() -> None:
    llm = ChatGreenServ(models=fake_pool(), energy_budget=30.0, tradeoff=0.3, max_tokens=8)
    assert llm.greenserv_router.energy_budget == EnergyBudget.per_query(30.0)
    answers = [llm.invoke(PROMPT) for _ in range(4)]
    budgets = [message.response_metadata["greenserv"]["budget"] for message in answers]
    assert all(b["budget"] == "30 J per query" and b["per_query_joules"] == 30.0 for b in budgets)
    assert budgets[0]["tradeoff"] == 0.3  # `tradeoff` only starts the budget
    assert [b["answers"] for b in budgets] == [0, 1, 2, 3]  # counted before each answer
    for message, budget in zip(answers, budgets, strict=True):
        assert message.response_metadata["greenserv"]["tradeoff"] == budget["tradeoff"]  # the λ in force
    status = llm.greenserv_router.budget_
    assert status is not None and status.answers == 4
    # a λ given for one call overrides the budget for that call (and says so: no budget part)
    pinned = llm.invoke(PROMPT, tradeoff=0.9).response_metadata["greenserv"]
    assert pinned["tradeoff"] == 0.9 and pinned["budget"] is None
    # streaming carries the record, budget included, on the last chunk
    chunks = list(llm.stream(PROMPT))
    assert chunks[-1].response_metadata["greenserv"]["budget"]["budget"] == "30 J per query"


@pytest.mark.usefixtures("hashing_features")
def test_a_window_budget_reports_what_is_left() -> None:
    llm = ChatGreenServ(models=fake_pool(), energy_budget="2Wh/h", max_tokens=8)
    first, second = llm.invoke(PROMPT), llm.invoke(PROMPT)
    before = first.response_metadata["greenserv"]["budget"]
    after = second.response_metadata["greenserv"]["budget"]
    assert before["budget"] == "2 Wh per 1 h" and before["window_remaining_joules"] == 7200.0
    spent = first.response_metadata["greenserv"]["energy_joules"]
    assert after["window_remaining_joules"] == pytest.approx(7200.0 - spent)


@pytest.mark.usefixtures("hashing_features")
@pytest.mark.parametrize("adapter", [ChatGreenServ, GreenServLLM])
def test_a_copy_with_the_same_budget_written_another_way_spends_it_with_the_original(adapter: Any) -> None:
    """A copy whose budget was the same written otherwise built a router of its own, and the
    two spent two windows' worth of one window's budget."""
    llm = adapter(models=fake_pool(), energy_budget=EnergyBudget.per_window(wh=2, window_s=3600), max_tokens=8)
    same = llm.model_copy(update={"energy_budget": "2Wh/h"})
    other = llm.model_copy(update={"energy_budget": "3Wh/h"})
    llm.complete(PROMPT) if adapter is GreenServLLM else llm.invoke(PROMPT)
    assert same.greenserv_router is llm.greenserv_router
    assert other.greenserv_router is not llm.greenserv_router  # another budget: a router of its own
    per_query = llm.model_copy(update={"energy_budget": 30.0})
    assert per_query.model_copy(update={"energy_budget": "30J/query"}).greenserv_router is per_query.greenserv_router
    given = same.model_copy(update={"energy_budget": EnergyBudget.parse("2Wh/h")})  # unchecked by model_copy
    given.complete(PROMPT) if adapter is GreenServLLM else given.invoke(PROMPT)  # (it failed on every call)
    assert given.greenserv_router is llm.greenserv_router


@pytest.mark.usefixtures("hashing_features")
def test_greenserv_llm_routes_under_a_budget_and_says_so() -> None:
    llm = GreenServLLM(models=fake_pool(), energy_budget="30J/query", max_tokens=8)
    completion = llm.complete(PROMPT)
    chat = llm.chat([ChatMessage(role=MessageRole.USER, content=PROMPT)])
    streamed = list(llm.stream_complete(PROMPT))[-1]
    for response in (completion, chat, streamed):
        assert response.raw is not None and response.raw == response.additional_kwargs
        assert response.raw["budget"]["budget"] == "30 J per query"
        assert response.raw["tradeoff"] == response.raw["budget"]["tradeoff"]
    assert [r.raw["budget"]["answers"] for r in (completion, chat, streamed)] == [0, 1, 2]  # type: ignore[index]


def test_without_a_budget_the_record_says_none() -> None:
    llm = ChatGreenServ(router=warm_router(), max_tokens=8)
    assert llm.invoke(PROMPT).response_metadata["greenserv"]["budget"] is None


def test_a_pacer_starts_at_its_own_lambda_and_a_tradeoff_it_does_not_use_is_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def first_lambda(tradeoff: float, budget: BudgetPacer | EnergyBudget) -> float:
        router = GreenServRouter(
            fake_pool(), features=make_hashing_extractor(), tradeoff=tradeoff, energy_budget=budget
        )
        budget_status = router.route(PROMPT, max_new_tokens=8).budget
        assert budget_status is not None
        return budget_status.tradeoff

    with caplog.at_level("WARNING", logger="greenserv"):
        assert first_lambda(0.9, BudgetPacer(EnergyBudget.per_query(30.0))) == 0.4  # the pacer's initial_tradeoff
    assert "tradeoff=0.9 is not used" in caplog.text and "initial_tradeoff=0.4" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="greenserv"):  # nothing to say: the default, or the pacer's own λ
        assert first_lambda(0.4, BudgetPacer(EnergyBudget.per_query(30.0), initial_tradeoff=0.7)) == 0.7
        assert first_lambda(0.7, BudgetPacer(EnergyBudget.per_query(30.0), initial_tradeoff=0.7)) == 0.7
        assert first_lambda(0.9, EnergyBudget.per_query(30.0)) == 0.9  # a bare budget starts at `tradeoff`
    assert "is not used" not in caplog.text


# ---- the per-query cap ----------------------------------------------------------------------


def answered_by(messages: Iterator[AIMessage]) -> set[str]:
    return {message.response_metadata["model_name"] for message in messages}


def test_max_joules_per_call_leaves_out_the_dear_model() -> None:
    llm = ChatGreenServ(router=warm_router(), max_tokens=8)
    assert answered_by(llm.invoke(PROMPT, max_joules=50.0, tradeoff=0.0) for _ in range(8)) == {"small"}
    with pytest.raises(NoEligibleModelError, match=r"exceeds the cap 5\.0 J"):
        llm.invoke(PROMPT, max_joules=5.0)
    with pytest.raises(InvalidInputError, match="max_joules"):
        llm.invoke(PROMPT, max_joules=-1.0)


def test_max_joules_of_the_model_is_every_calls_default() -> None:
    llm = ChatGreenServ(router=warm_router(), max_tokens=8, max_joules=50.0)
    assert answered_by(llm.invoke(PROMPT) for _ in range(8)) == {"small"}
    with pytest.raises(NoEligibleModelError, match="exceeds the cap"):
        llm.invoke(PROMPT, max_joules=5.0)  # a call's own cap replaces the default


def test_greenserv_llm_max_joules() -> None:
    llm = GreenServLLM(router=warm_router(), max_tokens=8)
    models = {llm.complete(PROMPT, max_joules=50.0).additional_kwargs["model"] for _ in range(8)}
    assert models == {"small"}
    with pytest.raises(NoEligibleModelError, match="exceeds the cap"):
        llm.complete(PROMPT, max_joules=5.0)
    capped = GreenServLLM(router=warm_router(), max_tokens=8, max_joules=5.0)
    with pytest.raises(NoEligibleModelError, match="exceeds the cap"):
        capped.chat([ChatMessage(role=MessageRole.USER, content=PROMPT)])


@pytest.mark.usefixtures("hashing_features")
def test_a_budgeted_adapters_cap_is_sent_with_each_call_and_not_given_to_the_shared_router() -> None:
    """The router took the building copy's cap: a copy without one was then refused for it."""
    llm = GreenServLLM(models=fake_pool(), max_joules=75.0, energy_budget=30.0)
    router = llm.greenserv_router
    assert router.max_joules is None and router.budget_ is not None
    capped = GreenServLLM(models=fake_pool(), max_joules=1e-6, energy_budget=30.0)
    free = capped.model_copy(update={"max_joules": None})
    assert capped.greenserv_router is free.greenserv_router  # the capped copy built the shared router
    for _ in range(4):  # was refused for the cap of the copy that built the router, once joules were known
        assert free.complete("What is 2 + 2?").text
    with pytest.raises(NoEligibleModelError):  # its own cap holds
        capped.complete("What is 2 + 2?")


# ---- greenserv chat ---------------------------------------------------------------------------


@pytest.fixture
def fake_chat_pool(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``greenserv chat`` over the fake pool; returns the calls to build it."""
    from greenserv_core.models import pool as pool_module

    built: list[str] = []

    def build(models: Any, meter: str = "auto", option: str | None = None) -> list[FakeBackend]:
        built.append(meter)
        return fake_pool()

    monkeypatch.setattr(pool_module, "build_backends", build)
    return built


def answer_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("  tokens ")]


def test_chat_prints_the_lambda_of_the_budget_on_each_line(
    tmp_path: Path, fake_chat_pool: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    common = ["chat", "--embedder", "static", "--max-new-tokens", "8", "--state", str(state)]
    assert cli.main([*common, "--budget-joules-per-query", "40", "--max-joules", "500"]) == 0
    out = capsys.readouterr().out
    assert "budget 40 J per query, λ set per query (starts at 0.40) | at most 500 J predicted per answer" in out
    lines = answer_lines(out)
    assert len(lines) == 6 and all("| budget 40 J per query: λ " in line for line in lines)
    assert "| budget 40 J per query: λ 0.40, mean " in lines[0] and lines[0].endswith(" over 1")  # after answer 1
    assert "mean " in lines[-1] and "budget 40 J per query: λ " in out.splitlines()[-2]  # the final status
    # the state remembers its budget ...
    assert cli.main(common) == 0
    out = capsys.readouterr().out
    assert "loaded learned state" in out and all("| budget 40 J per query: λ " in s for s in answer_lines(out))
    # ... and refuses another one, saying why
    assert cli.main([*common, "--budget", "2Wh/h"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("greenserv: error: ") and len(err.splitlines()) == 1
    assert "saved under the budget 40 J per query" in err and "2 Wh per 1 h" in err


def test_chat_with_a_window_budget_and_without_a_budget(
    fake_chat_pool: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["chat", "--embedder", "static", "--max-new-tokens", "8", "--budget", "500J/30s"]) == 0
    lines = answer_lines(capsys.readouterr().out)
    described = EnergyBudget.parse("500J/30s").describe()
    assert len(lines) == 6
    assert all(f"| budget {described}: λ " in line and "J left in this window" in line for line in lines)
    assert cli.main(["chat", "--embedder", "static", "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "λ = 0.4\n" in out and not any("budget" in line for line in answer_lines(out))


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--budget-joules-per-query", "abc", "--budget-joules-per-query must be a positive number of joules"),
        ("--budget-joules-per-query", "-5", "--budget-joules-per-query must be a positive number of joules"),
        ("--budget-joules-per-query", "nan", "--budget-joules-per-query must be a positive number of joules"),
        ("--max-joules", "0", "--max-joules must be a positive number of joules"),
        ("--budget", "2 apples/h", "unknown energy unit 'apples'"),
        ("--budget", "2Wh", "cannot read the energy budget"),
    ],
)
def test_chat_rejects_a_bad_budget_before_loading_models(
    option: str, value: str, reason: str, fake_chat_pool: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["chat", option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("greenserv: error: ") and reason in err and len(err.splitlines()) == 1
    assert fake_chat_pool == []  # no model was loaded


def test_chat_budget_options_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["chat", "--budget-joules-per-query", "40", "--budget", "2Wh/h"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
