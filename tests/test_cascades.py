"""Fixed cascades on outcome tables (issue 18): the settings, the ceilings and the fronts."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenserv_core import FakeBackend, GreenServRouter, cli
from greenserv_core.backends.base import EnergyReading, GenerationResult, GenerationSettings, JsonFormat, StreamChunk
from greenserv_core.cascades import CascadeBackend, Verdict, answers_agree
from greenserv_core.cascades.agreement import final_answer
from greenserv_core.cli.common import cascade_pair
from greenserv_core.errors import InvalidInputError, ModelUnavailableError
from greenserv_core.evaluation.cascades import cascade_report, task_settings
from greenserv_core.evaluation.replay import baselines
from greenserv_core.evaluation.scoring import extract_number, extract_yes_no
from greenserv_core.evaluation.simulate import simulate_table
from greenserv_core.evaluation.table import OutcomeTable, write_table
from greenserv_core.features.extractor import FeatureExtractor
from greenserv_core.messages import Message
from greenserv_core.tools import ToolSpec
from tests.test_evaluation import CALIBRATION
from tests.timing import assert_linear_time


def _two_models(confidence: list[float | None], joules: tuple[float, float] = (1.0, 10.0)) -> OutcomeTable:
    """Four queries; the small model (1 J) is right on the first two, the big one (10 J) on all."""
    models, n = ["small", "big"], len(confidence) // 2
    return OutcomeTable(
        {
            "query_id": [f"q{i // 2}" for i in range(2 * n)],
            "task": ["t"] * (2 * n),
            "prompt": [f"p{i // 2}" for i in range(2 * n)],
            "reference": [""] * (2 * n),
            "model": models * n,
            "output": [""] * (2 * n),
            "accuracy": [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0][: 2 * n],
            "energy_joules": list(joules) * n,
            "energy_source": ["x"] * (2 * n),
            "latency_s": [0.1] * (2 * n),
            "input_tokens": [1] * (2 * n),
            "output_tokens": [1] * (2 * n),
            "confidence": confidence,
        }
    )


def test_a_cascade_pays_both_calls_when_it_escalates() -> None:
    table = _two_models([0.9, 0.5, 0.8, 0.5, 0.2, 0.5, 0.1, 0.5])  # the small model is sure when right
    data = table.matrices()
    settings = task_settings(data, np.ones(4, dtype=bool))
    singles = {s.label: s for s in settings if not s.cascade}
    assert singles["small"].accuracy == 0.5 and singles["big"].joules == 10.0
    cascades = [s for s in settings if s.cascade]
    assert cascades and all(s.label.startswith("small → big @") for s in cascades)  # cheaper model first only
    halfway = next(s for s in cascades if s.escalated == 0.5)
    assert halfway.accuracy == 1.0 and halfway.joules == pytest.approx(1.0 + 0.5 * 10.0)


def test_with_a_signal_that_separates_the_cascade_beats_both_models() -> None:
    report = cascade_report(_two_models([0.9, 0.5, 0.8, 0.5, 0.2, 0.5, 0.1, 0.5]), tradeoff=0.4)
    best = report["per_task"]["t"]["with_cascades"]
    assert best["setting"].startswith("small → big") and best["accuracy"] == 1.0 and best["joules_per_query"] == 6.0
    ceiling = report["best_fixed_per_task_reward"]
    assert ceiling["with"] > ceiling["without"]


def test_without_confidence_there_is_no_cascade() -> None:
    table = _two_models([0.5] * 8)
    del table.columns["confidence"]
    with pytest.raises(InvalidInputError, match="confidence column"):
        cascade_report(OutcomeTable(table.columns))


def test_the_ceiling_without_cascades_is_the_replays_and_cascades_only_add() -> None:
    for auroc in (0.6, 0.9):
        table = simulate_table(CALIBRATION, queries_per_task=200, seed=1, confidence_auroc=auroc)
        report = cascade_report(table, tradeoff=0.4)
        ceiling = report["best_fixed_per_task_reward"]
        assert ceiling["without"] == pytest.approx(baselines(table, 0.4)["best_fixed_model_per_task"]["reward"])
        assert ceiling["with"] >= ceiling["without"]
        fronts = report["fronts"]
        assert fronts["with_cascades"]["aiq"] >= fronts["without_cascades"]["aiq"] - 1e-12
    sharp = cascade_report(simulate_table(CALIBRATION, queries_per_task=200, seed=1, confidence_auroc=0.95))
    blunt = cascade_report(simulate_table(CALIBRATION, queries_per_task=200, seed=1, confidence_auroc=0.55))

    def gain(report: dict[str, object]) -> float:
        ceiling = report["best_fixed_per_task_reward"]
        assert isinstance(ceiling, dict)
        return float(ceiling["with"] - ceiling["without"])

    assert gain(sharp) > gain(blunt)


def test_the_front_reaches_the_cheapest_setting_however_close_the_models_cost() -> None:
    for cheap, dear in ((1.0, 2.0), (100.0, 105.0), (1000.0, 1050.0)):  # the prices stopped at 10 / median joules
        report = cascade_report(_two_models([0.5] * 8, joules=(cheap, dear)), tradeoff=0.4)
        for front in report["fronts"].values():
            assert front["hull"] == [(cheap, 0.5), (dear, 1.0)]
            assert front["aiq"] == pytest.approx(0.75, abs=1e-3)


def test_a_model_that_spent_nothing_has_no_share_of_its_joules() -> None:
    report = cascade_report(_two_models([0.9, 0.5, 0.8, 0.5, 0.2, 0.5, 0.1, 0.5], joules=(0.0, 10.0)))
    assert report["references"]["best_single_model"] == {"model": "small", "accuracy": 0.5, "joules_per_query": 0.0}
    for front in report["fronts"].values():
        reach = front["to_reach"]
        assert reach["best_single_model"] == {"joules_per_query": 0.0, "share_of_its_joules": None}
        assert reach["most_accurate_model"]["share_of_its_joules"] == pytest.approx(
            reach["most_accurate_model"]["joules_per_query"] / 10.0
        )


def test_the_cascades_command_prints_and_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_table(_two_models([0.9, 0.5, 0.8, 0.5, 0.2, 0.5, 0.1, 0.5]), tmp_path / "t.csv")
    assert cli.main(["bench", "cascades", "--table", str(path), "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "small → big" in printed and "with cascades" in printed
    assert json.loads((tmp_path / "r.json").read_text())["tradeoff"] == 0.4


# ---- learned cascades replayed through the router (greenserv bench cascade-replay) -------------
def _sharp_table(
    queries: int = 120, joules: tuple[float, float] = (1.0, 10.0), *, small_always_right: bool = False
) -> OutcomeTable:
    """The small model (1 J) is right on even queries and says so (confidence 0.95, else 0.05);
    the big one (10 J) is always right. ``joules``: the small and the big model's instead;
    ``small_always_right``: the small model is right on every query too."""
    rows: dict[str, list[object]] = {k: [] for k in ("query_id", "task", "prompt", "reference", "model", "output")}
    rows.update({k: [] for k in ("accuracy", "energy_joules", "energy_source", "latency_s", "input_tokens")})
    rows.update({"output_tokens": [], "confidence": []})
    for q in range(queries):
        for model, spent in zip(("small", "big"), joules, strict=True):
            right = model == "big" or q % 2 == 0 or small_always_right
            for key, value in (
                ("query_id", f"q{q}"),
                ("task", "t"),
                ("prompt", f"What is {q} + {q}?"),
                ("reference", ""),
                ("model", model),
                ("output", ""),
                ("accuracy", float(right)),
                ("energy_joules", spent),
                ("energy_source", "x"),
                ("latency_s", 0.1),
                ("input_tokens", 5),
                ("output_tokens", 1),
                ("confidence", (0.95 if right else 0.05) if model == "small" else 0.9),
            ):
                rows[key].append(value)
    return OutcomeTable(rows)  # type: ignore[arg-type]


def test_the_learned_cascade_replay_escalates_where_it_pays() -> None:
    from greenserv_core.evaluation.cascade_replay import STRATEGIES, cascade_pairs, replay_cascades
    from tests.conftest import make_hashing_extractor

    table = _sharp_table()
    assert cascade_pairs(table, 0.4) == [("small", "big")]
    report = replay_cascades(table, runs=2, tradeoffs=(0.4,), make_features=make_hashing_extractor)
    entry = report["by_tradeoff"]["0.4"]
    assert set(STRATEGIES) <= set(entry)
    cascaded, control = entry["routing+cascades"], entry["cascade arms, never escalating"]
    assert cascaded["escalated_share"]["mean"] > 0 and control["escalated_share"]["mean"] == 0
    assert control["cascade_share"]["mean"] > 0
    assert cascaded["accuracy"]["mean"] > control["accuracy"]["mean"]  # escalating the unsure answers pays
    assert report["settings"]["cascades"] == ["small->big"]


def test_the_cascade_replay_takes_the_routers_energy_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.evaluation import cascade_replay
    from tests.conftest import make_hashing_extractor, spy_energy_scales

    built = spy_energy_scales(monkeypatch, cascade_replay)
    table = _sharp_table(40)
    for scale, given in (("seen", "seen"), ("online", None)):
        built.clear()
        report = cascade_replay.replay_cascades(
            table, runs=1, tradeoffs=(0.4,), make_features=make_hashing_extractor, energy_scale=scale
        )
        assert report["settings"]["energy_scale"] == scale and set(built) == {given}
    with pytest.raises(InvalidInputError, match="energy_scale"):
        cascade_replay.replay_cascades(table, runs=1, energy_scale="widest")  # type: ignore[arg-type]


def test_the_cascade_replay_command_prints_the_three_strategies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import replay
    from tests.conftest import make_hashing_extractor

    monkeypatch.setattr(replay, "default_features", lambda *args, **kwargs: make_hashing_extractor)
    from greenserv_core.evaluation import cascade_replay

    monkeypatch.setattr(cascade_replay, "default_features", lambda *args, **kwargs: make_hashing_extractor)
    path = write_table(_sharp_table(40), tmp_path / "t.csv")
    argv = ["bench", "cascade-replay", "--table", str(path), "--runs", "1", "--quiet", "--no-embedding-cache"]
    assert cli.main([*argv, "--tradeoffs", "0.4,0.8", "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "routing+cascades" in printed and "never escalating" in printed and "AIQ" in printed
    assert set(json.loads((tmp_path / "r.json").read_text())["fronts"]) >= {"routing", "routing+cascades"}
    with pytest.raises(InvalidInputError, match="FIRST->THEN"):
        cascade_pair("small")
    with pytest.raises(InvalidInputError, match="two different models"):  # chat refused it after the models loaded
        cascade_pair("small->small")


def test_the_cascade_replay_can_pace_one_budget_for_every_strategy() -> None:
    from greenserv_core.evaluation.cascade_replay import STRATEGIES, replay_cascades
    from tests.conftest import make_hashing_extractor

    table, pair = _sharp_table(200), [("small", "big")]
    free = replay_cascades(table, runs=2, tradeoffs=(0.0,), pairs=pair, make_features=make_hashing_extractor)
    paced = replay_cascades(
        table, runs=2, tradeoffs=(0.0,), pairs=pair, make_features=make_hashing_extractor, budget_joules_per_query=3.0
    )
    assert free["by_tradeoff"]["0.0"]["routing"]["joules_per_query"]["mean"] > 9.0  # λ = 0 buys the big model
    entry = paced["by_tradeoff"]["0.0"]
    for strategy in STRATEGIES:
        assert 2.5 < entry[strategy]["joules_per_query"]["mean"] < 3.6  # held near the budget (small: 1 J, big: 10 J)
    # at one spend, escalating the answers the small model doubts buys accuracy
    assert entry["routing+cascades"]["accuracy"]["mean"] > entry["routing"]["accuracy"]["mean"]
    assert paced["settings"]["budget_joules_per_query"] == 3.0
    assert paced["settings"]["price_on"] == "energy_scale"
    in_joules = replay_cascades(
        table,
        runs=2,
        tradeoffs=(0.0,),
        pairs=pair,
        make_features=make_hashing_extractor,
        budget_joules_per_query=3.0,
        price_on="joules",
    )
    assert in_joules["settings"]["price_on"] == "joules"
    for strategy in STRATEGIES:  # another price, another path to the same spend
        spent = in_joules["by_tradeoff"]["0.0"][strategy]["joules_per_query"]["mean"]
        assert 2.5 < spent < 3.6
    assert in_joules["by_tradeoff"] != paced["by_tradeoff"]
    with pytest.raises(InvalidInputError, match="price_on"):
        replay_cascades(
            table, runs=1, pairs=pair, make_features=make_hashing_extractor, budget_joules_per_query=3.0, price_on="J"
        )
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InvalidInputError):
            replay_cascades(
                table, runs=1, pairs=pair, make_features=make_hashing_extractor, budget_joules_per_query=bad
            )


def test_the_cascade_replay_fronts_take_models_that_cost_alike_or_nothing() -> None:
    from greenserv_core.evaluation.cascade_replay import STRATEGIES, replay_cascades
    from tests.conftest import make_hashing_extractor

    pair, lams = [("small", "big")], (0.2, 0.6)
    alike = replay_cascades(
        _sharp_table(20, (2.0, 2.0)), runs=1, tradeoffs=lams, pairs=pair, make_features=make_hashing_extractor
    )
    assert all(alike["fronts"][strategy]["aiq"] is None for strategy in STRATEGIES)  # no cost range: as bench cascades
    free = _sharp_table(20, (0.0, 10.0), small_always_right=True)  # the most accurate model spends nothing
    report = replay_cascades(free, runs=1, tradeoffs=lams, pairs=pair, make_features=make_hashing_extractor)
    assert report["most_accurate_model"]["joules_per_query"] == 0.0
    for strategy in STRATEGIES:
        front = report["fronts"][strategy]
        assert front["joules_to_reach_most_accurate"] is not None and front["share_of_its_joules"] is None


def test_the_cascade_replay_refuses_a_cascade_of_one_model_or_named_twice_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from greenserv_core.evaluation.cascade_replay import replay_cascades

    def no_features() -> FeatureExtractor:
        raise AssertionError("refused only after the work began")

    for pairs, match in (([("small", "small")], "two different models"), ([("small", "big")] * 2, "more than once")):
        with pytest.raises(InvalidInputError, match=match):
            replay_cascades(_sharp_table(20), runs=1, pairs=pairs, make_features=no_features)
    argv = ["bench", "cascade-replay", "--table", str(tmp_path / "absent.csv"), "--quiet"]
    for cascades, said in (
        (["small->small"], "two different models"),
        (["small->big", "small -> big"], "more than once"),
    ):
        assert cli.main([*argv, *(f"--cascade={c}" for c in cascades)]) == 2  # before the table is even read
        assert said in capsys.readouterr().err


# ---- the agreement proxy of a cascade that escalated (its other tests: tests/test_cascade_routing.py) ----------
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("9 * 2 = 18 #### 18\n\nQuestion: A baker has 24 rolls", "#### 18"),  # a question echoed after the mark
        ("Janet sells 9 eggs at $2 each. #### 18 (2 days at 9)", "9 * 2 = 18. #### 18"),
        ("#### The answer is 18 (9 for each of 2 days)", "18"),
        ("#### **1,200**", "It is 1200 J."),
    ],
)
def test_the_number_after_gsm8ks_mark_is_the_answer_as_scoring_reads_it(first: str, second: str) -> None:
    assert answers_agree(first, second) and answers_agree(second, first)
    assert final_answer(first) == ("number", extract_number(first))
    assert not answers_agree(first, "#### 24")


@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        ("Yes.", "The answer is yes.", True),
        ("Yes", "Answer: Yes", True),
        ("No", "Answer: no.", True),
        ("False", "The statement is false.", True),
        ("The answer is: **No**", "no", True),
        ("It is not true.", "No", True),  # "not true" is no, as scoring reads it
        ("Not false", "yes", True),
        ("Yes.", "The answer is no.", False),
        ("True", "I would say false", False),
    ],
)
def test_yes_or_no_is_read_after_the_answer_is_and_at_the_end_of_a_short_answer(
    first: str, second: str, agree: bool
) -> None:
    assert answers_agree(first, second) is agree and answers_agree(second, first) is agree
    assert final_answer(first) == ("yes/no", extract_yes_no(first))


@pytest.mark.parametrize(
    "text",
    [
        "There is no way to know",
        "Nobody can tell whether it is true",
        "I am not sure the answer was yes or no at all",
        "Answer: True Grit",  # a title, not true
        "The answer is No Doubt.",
    ],
)
def test_a_yes_or_no_word_inside_free_text_is_no_answer(text: str) -> None:
    assert final_answer(text) is None


@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        ("So the answer is no more than 5 apples.", "5", True),  # was read as no
        ("Let's check the answer is true: 6*7 = 42. The final answer is 42.", "42", True),  # not "true:"
        ("At first glance the answer is no, but on reflection the answer is yes.", "Yes.", True),  # the last said
        ("#### 9:30", "He arrives at 9:30.", True),  # a time after GSM8K's mark
    ],
)
def test_the_answer_said_last_and_ending_its_clause_is_the_one_read(first: str, second: str, agree: bool) -> None:
    assert answers_agree(first, second) is agree and answers_agree(second, first) is agree


@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        ("The meeting ends at 2:30.", "The meeting ends at 3:30.", False),  # not the minutes alone
        ("She arrives at 10:15 am", "11:15 am", False),
        ("It starts at 02:30.", "2:30", True),
        ("Finished in 1:05:30", "1:05:30", True),
        ("At 2:30 she had 7 apples", "7", True),  # the last value is the number after the time
    ],
)
def test_a_clock_time_is_one_value(first: str, second: str, agree: bool) -> None:
    assert answers_agree(first, second) is agree and answers_agree(second, first) is agree


@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        ("She is -$5 short.", "She is $5 short.", False),  # the sign before the dollar sign was dropped
        ("She is -$5 short.", "-5", True),
        ("#### -$5", "#### -5", True),
    ],
)
def test_a_sign_before_a_dollar_sign_is_the_numbers(first: str, second: str, agree: bool) -> None:
    assert answers_agree(first, second) is agree and answers_agree(second, first) is agree


def test_the_new_answer_readings_take_linear_time() -> None:
    assert_linear_time(lambda n: final_answer("answer is" + " " * n + "!"), 20_000)
    assert_linear_time(lambda n: final_answer("answer" + " " * n + "x"), 20_000)
    assert_linear_time(lambda n: final_answer("1:2:3:" * n), 5_000)
    assert_linear_time(lambda n: final_answer("12:30 " * n), 5_000)


def _tool(name: str, field: str) -> ToolSpec:
    return ToolSpec(name, "", json.dumps({"type": "object", "properties": {field: {"type": "string"}}}))


TOOLS = (_tool("get_weather", "city"), _tool("search_web", "query"))


def _call(name: str, arguments: dict[str, str]) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def _agreed(first: str, second: str, settings: GenerationSettings, *, stream: bool = False) -> bool | None:
    """Whether the cascade from a first model answering ``first`` (unsure) to one answering
    ``second`` says the two agreed."""
    caps = frozenset({"chat_template", "tools", "json_mode"})

    def model(name: str, text: str) -> FakeBackend:
        return FakeBackend(
            name,
            reply=lambda m: text,
            tool_reply=lambda m, t: text,
            json_reply=lambda m, s: text,
            logprobs=lambda m, t: [math.log(0.2)],
            capabilities=caps,
        )

    cascade = CascadeBackend(model("small", first), model("big", second), threshold=0.5)
    ask: list[Message] = [{"role": "user", "content": "What's the weather in London?"}]
    if stream:
        result = next(c.result for c in cascade.stream(ask, settings) if c.result is not None)
    else:
        result = cascade.generate(ask, settings)
    assert [s.action for s in result.chain] == ["escalated", "answered"]
    return result.chain[-1].agreed


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        (_call("get_weather", {"city": "Paris"}), _call("get_weather", {"city": "London"}), False),
        (_call("search_web", {"query": "Paris"}), _call("get_weather", {"city": "Paris"}), False),
        (_call("get_weather", {"city": "Paris"}), "Sure! " + _call("get_weather", {"city": "Paris"}), True),
        (_call("get_weather", {"city": "Paris"}), "It is sunny in Paris.", False),  # a call and none
        (
            _call("get_weather", {"city": "Paris"}) + _call("search_web", {"query": "Paris"}),
            _call("search_web", {"query": "Paris"}) + _call("get_weather", {"city": "Paris"}),
            True,  # the same calls in another order
        ),
        (_call("get_weather", {"city": "Paris"}), _call("get_weather", {"city": "Paris"}) * 2, False),
        ("The answer is 41.", "The answer is 42.", False),  # no call in either: read as prose
        ("Paris", "Paris is the capital", True),
        (
            _call("get_weather", {"city": "Paris", "days": 2}),
            _call("get_weather", {"city": "Paris", "days": 2.0}),
            True,
        ),
    ],
)
def test_a_cascade_compares_tool_calls_by_their_names_and_arguments(
    first: str, second: str, agree: bool, stream: bool
) -> None:
    settings = GenerationSettings(max_new_tokens=256, tools=TOOLS)
    assert _agreed(first, second, settings, stream=stream) is agree
    assert _agreed(second, first, settings, stream=stream) is agree


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        ('{"answer": "B", "confidence": "high"}', '{"answer": "C", "confidence": "high"}', False),
        (
            '{"answer": "yes", "reasoning": "the passage says so"}',
            '{"answer": "no", "reasoning": "the passage says so"}',
            False,
        ),
        ('{"answer": "B", "confidence": "high"}', '{ "confidence":"high",  "answer":"B" }', True),
        ('{"answer": 42}', '{"answer": 42.0}', True),
        (  # a free-text field worded otherwise: compared as text (the whole objects disagreed)
            '{"answer": "B", "reasoning": "Mitochondria make ATP, so B."}',
            '{"answer": "B", "reasoning": "B: the mitochondria make ATP."}',
            True,
        ),
        ('{"answer": "Paris"}', '{"answer": "paris"}', True),
        ('{"answer": "Paris"}', '{"answer": "Paris", "sure": true}', True),  # the answers named agree
        ('{"city": "Paris"}', '{"city": "Paris", "sure": true}', False),  # no answer named: other keys
        (  # a reasoning and how sure: left out (their numbers were compared, and the confidences)
            '{"reasoning": "6 times 7 is 42", "answer": 42, "confidence": 0.9}',
            '{"reasoning": "40 plus 2", "answer": "42", "confidence": 0.8}',
            True,
        ),
        ('{"city": "Paris", "why": "the capital since 987"}', '{"city": "Paris", "why": "its capital"}', True),
        ('{"city": "Lyon", "why": "the capital since 987"}', '{"city": "Paris", "why": "its capital"}', False),
        ('{"answer": 1e-05}', '{"answer": "0.00001"}', True),  # a number as an answer writes it
        ('{"answer": 2e-05}', '{"answer": "1e-05"}', False),  # (both read as 5)
        (  # a long text is a reasoning only by its name: an answer of many words is compared
            '{"summary": "The cat sat on the mat today", "n": 1}',
            '{"summary": "A dog ran in the park quickly", "n": 1}',
            False,
        ),
        ("The answer is 42.", '{"answer": 42}', True),  # one is no JSON: both read as prose
        ("Paris", '{"city": "London"}', False),
        ("The answer is 42.", "42", True),
    ],
)
def test_a_cascade_in_json_mode_compares_the_json_values(first: str, second: str, agree: bool, stream: bool) -> None:
    settings = GenerationSettings(max_new_tokens=256, json=JsonFormat())
    assert _agreed(first, second, settings, stream=stream) is agree
    assert _agreed(second, first, settings, stream=stream) is agree


class _Metered(FakeBackend):
    """A first model metered by NVML."""

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        result = super().generate(messages, settings)
        return dataclasses.replace(result, energy=EnergyReading(result.energy.joules, "nvml", True))


class _TimesOut(FakeBackend):
    """A second model that fails before it answers, having spent ``joules`` (read by NVML, not
    vouched for as measured) and 0.5 s."""

    def __init__(self, name: str, joules: float) -> None:
        super().__init__(name)
        self.joules = joules

    def _error(self) -> ModelUnavailableError:
        return ModelUnavailableError("big: timed out", spent_s=0.5, spent_joules=self.joules, spent_source="nvml")

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        raise self._error()

    def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
        raise self._error()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("joules", "expected"), [(0.0, (6.0, True)), (2.0, (8.0, False))])
def test_a_failure_that_spent_no_joules_leaves_the_kept_answer_measured(
    joules: float, expected: tuple[float, bool], stream: bool
) -> None:
    ask: list[Message] = [{"role": "user", "content": "Is the sky blue?"}]
    small = _Metered("small", reply=lambda m: "Yes", logprobs=lambda m, t: [math.log(0.2)])
    cascade = CascadeBackend(small, _TimesOut("big", joules))
    settings = GenerationSettings(max_new_tokens=8)
    if stream:
        kept = next(c.result for c in cascade.stream(ask, settings) if c.result is not None)
    else:
        kept = cascade.generate(ask, settings)
    assert kept.chain[-1].reason.startswith("escalation failed")
    assert (kept.energy.joules, kept.energy.source, kept.energy.measured) == (expected[0], "nvml", expected[1])
    assert kept.latency_s == pytest.approx(0.5)  # the failed call's seconds, still added


class _TimeLimited(FakeBackend):
    """A second model that notes the time limit (``max_time_s``) each call gives it."""

    def __init__(self, name: str) -> None:
        super().__init__(name, reply=lambda m: "8")
        self.limits: list[float | None] = []

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        self.limits.append(settings.max_time_s)
        return super().generate(messages, settings)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("limit", "left"), [(2.0, 1.3), (0.75, None), (None, None)])
def test_the_second_model_gets_what_the_first_step_left_of_the_time_limit(
    limit: float | None, left: float | None, stream: bool
) -> None:
    ask: list[Message] = [{"role": "user", "content": "Is the sky blue?"}]  # 5 tokens and 2 of answer: 0.7 s
    small = FakeBackend("small", seconds_per_token=0.1, reply=lambda m: "7.", logprobs=lambda m, t: [-3.0])
    big = _TimeLimited("big")
    settings = GenerationSettings(max_new_tokens=8, max_time_s=limit)
    if stream:
        pieces = list(CascadeBackend(small, big).stream(ask, settings))
        result = pieces[-1].result
        assert result is not None and "".join(p.delta for p in pieces) == result.text
    else:
        result = CascadeBackend(small, big).generate(ask, settings)
    if limit is None:  # no limit: the second model runs without one
        assert big.limits == [None] and [s.action for s in result.chain] == ["escalated", "answered"]
    elif left is not None:  # was given the whole limit again: 2.7 s in all
        assert big.limits == [pytest.approx(left)] and [s.action for s in result.chain] == ["escalated", "answered"]
    else:  # was run with the whole limit again; too little is left: the first answer is kept, and says why
        assert big.limits == [] and result.text == "7." and [s.action for s in result.chain] == ["kept"]
        assert result.chain[0].reason == (
            "kept: the first step took 0.7 s of the time limit of 0.75 s (max_time_s): too little is left for big"
        )


def test_a_rule_hears_the_first_steps_joules_and_seconds_by_the_hooks_it_has() -> None:
    ask: list[Message] = [{"role": "user", "content": "Is the sky blue?"}]
    small = FakeBackend("small", seconds_per_token=0.1, reply=lambda m: "7.", logprobs=lambda m, t: [-3.0])
    heard: list[tuple[str, float]] = []

    class JoulesOnly:  # a rule written before first_took: first_spent(joules) alone
        def first_spent(self, joules: float) -> None:
            heard.append(("joules", joules))

        def __call__(self, confidence: float | None) -> Verdict:
            return Verdict.kept(confidence, "kept")

    class Both(JoulesOnly):
        def first_took(self, seconds: float) -> None:
            heard.append(("seconds", seconds))

    result = CascadeBackend(small, FakeBackend("big")).generate(ask, GenerationSettings(max_new_tokens=8), JoulesOnly())
    assert result.text == "7." and [what for what, _ in heard] == ["joules"]  # was a TypeError: two arguments given
    heard.clear()
    CascadeBackend(small, FakeBackend("big")).generate(ask, GenerationSettings(max_new_tokens=8), Both())
    assert heard == [("joules", pytest.approx(result.energy.joules)), ("seconds", pytest.approx(result.latency_s))]


def test_a_rule_hears_which_signal_read_the_first_answers_confidence() -> None:
    from greenserv_core.confidence import TokenQuantile

    ask: list[Message] = [{"role": "user", "content": "Is the sky blue?"}]
    small = FakeBackend("small", reply=lambda m: "7.", logprobs=lambda m, t: [-3.0])
    heard: list[str] = []

    class Named:  # a learned rule weighs each signal's confidences by a correction of their own
        def first_signal(self, name: str) -> None:
            heard.append(name)

        def __call__(self, confidence: float | None) -> Verdict:
            return Verdict.kept(confidence, "kept")

    for signal, tokens in ((None, 8), (None, 64), (TokenQuantile(0.5), 8)):
        CascadeBackend(small, FakeBackend("big"), signal=signal).generate(
            ask, GenerationSettings(max_new_tokens=tokens), Named()
        )
    assert heard == ["answer-probability", "token-quantile-0.1", "token-quantile-0.5"]  # was never told


def test_the_cascade_replay_weighs_each_tasks_confidences_under_the_signal_its_table_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from greenserv_core.cascades import EscalationModel
    from greenserv_core.evaluation.cascade_replay import replay_cascades
    from tests.conftest import make_hashing_extractor

    table = simulate_table(CALIBRATION, queries_per_task=40, seed=1, confidence_auroc=0.8)
    table.metadata["confidence_signals"] = {"gsm8k": "token-quantile-0.1", "winogrande": "answer-probability"}
    named: set[str | None] = set()
    decide = EscalationModel.decide

    def recording(self: EscalationModel, *args: Any, **kwargs: Any) -> Verdict:
        named.add(kwargs.get("signal"))
        return decide(self, *args, **kwargs)

    monkeypatch.setattr(EscalationModel, "decide", recording)
    replay_cascades(table, runs=1, pairs=[("small", "large")], make_features=make_hashing_extractor)
    assert named == {"token-quantile-0.1", "answer-probability"}  # was {None}: one correction for both


def test_the_cascade_replay_teaches_each_member_its_own_cost_as_a_live_cascade_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from greenserv_core.evaluation.cascade_replay import replay_cascades
    from tests.conftest import make_hashing_extractor

    told: list[tuple[str, float, Sequence[tuple[str, float, float]]]] = []
    record = GreenServRouter.record_outcome

    def spy(self: GreenServRouter, decision_id: str, **kwargs: Any) -> None:
        model = self.pending_.get(decision_id).model
        told.append((model, kwargs["energy_joules"], list(kwargs.get("members", ()))))
        record(self, decision_id, **kwargs)

    monkeypatch.setattr(GreenServRouter, "record_outcome", spy)
    replay_cascades(_sharp_table(), runs=1, tradeoffs=(0.4,), make_features=make_hashing_extractor)
    cascades = [(joules, members) for model, joules, members in told if model == "small->big"]
    assert cascades and all(m[0][0] == "small" and len(m) in (1, 2) for _, m in cascades)  # were never given
    assert any(len(m) == 2 and m[1][0] == "big" for _, m in cascades)  # the escalated ones name the second
    assert all(joules == pytest.approx(sum(spent for _, spent, _ in m)) for joules, m in cascades)
    assert not [m for model, _, m in told if model != "small->big" and m]  # a single model's answer has none


# ---- review fixes (2026-12-08) ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        ("No", "No doubt, the answer is yes.", False),  # the first word was read before the named answer
        ("Yes", "Yes, I can answer that: the answer is no.", False),
        ("The answer is 18 (that is 3 * 6).", "18", True),  # the last number, 6, was read
        ("Answer: 12, since 3 * 4 = 12 and 2 + 2 = 4", "12", True),
        ("B, because the mitochondria make ATP.", "The answer is B.", True),  # read as free text
        ("[B]", "B", True),
        ("Option A is tempting, but the answer is B.", "B", True),  # read as A
        ("B or C", "C", False),  # a hedge commits to no letter
        # ... but free text that starts with a letter, or mentions one, is no choice
        ("D minor", "D major", False),
        ("C'est Paris.", "C'est Lyon.", False),
        ("B is 4 and A is 2", "B is 5", False),
        ("Yes. Take vitamin C.", "No. Take vitamin C.", False),
        ("The total is 12 (part B. shows it)", "12", True),
    ],
)
def test_agreement_reads_answers_as_scoring_does(first: str, second: str, agree: bool) -> None:
    from greenserv_core.evaluation.scoring import extract_choice, extract_number, extract_yes_no

    assert answers_agree(first, second) is agree and answers_agree(second, first) is agree
    kind = final_answer(second)
    if kind is not None and kind[0] == "choice":
        assert kind[1] == (extract_choice(second, 5) or "").lower()
    elif kind is not None and kind[0] == "number":
        assert kind[1] == extract_number(second)
    elif kind is not None:
        assert kind[1] == extract_yes_no(second)
