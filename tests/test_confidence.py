"""Confidence signals, the log-probabilities behind them, and the confidence column of outcome
tables (issue 18, first part)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from greenserv_core import FakeBackend, InvalidInputError
from greenserv_core.backends import GenerationSettings
from greenserv_core.backends.base import EnergyReading, GenerationResult
from greenserv_core.backends.openai_compatible import OpenAICompatibleBackend
from greenserv_core.confidence import AnswerProbability, ConfidenceSignal, TokenQuantile, signal_for_task
from greenserv_core.evaluation.collect import collect
from greenserv_core.evaluation.confidence_report import auroc, confidence_report
from greenserv_core.evaluation.table import COLUMNS, OutcomeTable, read_table, write_table
from greenserv_core.messages import Message

ASK: list[Message] = [{"role": "user", "content": "What is 2 + 2?"}]


def _answer(*logprobs: float) -> GenerationResult:
    return GenerationResult("x", 5, len(logprobs), 0.1, EnergyReading(1.0, "fake", False), token_logprobs=logprobs)


def test_the_answer_probability_is_the_product_of_its_tokens() -> None:
    signal = AnswerProbability()
    assert isinstance(signal, ConfidenceSignal)
    assert signal(_answer(math.log(0.5), math.log(0.8))) == pytest.approx(0.4)
    assert signal(_answer()) is None
    assert signal(GenerationResult("x", 1, 1, 0.0, EnergyReading(1.0, "fake", False))) is None


def test_a_token_quantile_does_not_drift_with_the_answers_length() -> None:
    signal = TokenQuantile(0.1)
    unsure = math.log(0.2)
    short = _answer(unsure, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    long = _answer(*([unsure] * 3 + [0.0] * 27))  # the same share of unsure tokens, three times longer
    assert signal(short) == pytest.approx(signal(long), abs=0.1)
    mean_short = sum(map(math.exp, short.token_logprobs or ())) / 10
    assert signal(short) < mean_short  # the mean hides the unsure token
    assert signal.name == "token-quantile-0.1"
    with pytest.raises(InvalidInputError, match="q must be"):
        TokenQuantile(1.5)


def test_a_log_probability_above_zero_reads_as_a_sure_token_never_a_crash() -> None:
    assert AnswerProbability()(_answer(math.log(0.5), math.inf)) == pytest.approx(0.5)
    assert AnswerProbability()(_answer(-math.inf, math.inf)) == 0.0


def test_a_token_quantile_keeps_its_q_exactly_in_its_name() -> None:
    from greenserv_core.confidence import signal_from_name

    signal = TokenQuantile(0.1234567)
    assert signal_from_name(signal.name).q == 0.1234567  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "name", ["first-\u00b2-token-probability", "first-\u0663-token-probability", "first-x-token-probability"]
)
def test_a_count_in_digits_other_than_ascii_s_is_no_signal_s_name(name: str) -> None:
    from greenserv_core.confidence import signal_from_name

    with pytest.raises(InvalidInputError, match="no bundled confidence signal"):  # '²' was a bare ValueError
        signal_from_name(name)


def test_numpy_numbers_are_taken_as_python_numbers() -> None:
    import numpy as np

    first = AnswerProbability(first_tokens=np.int64(1))  # type: ignore[arg-type]
    quantile = TokenQuantile(np.float32(0.25))  # type: ignore[arg-type]
    assert first.name == "first-1-token-probability" and type(first.first_tokens) is int
    assert quantile.name == "token-quantile-0.25" and type(quantile.q) is float
    for bad in (True, np.float64(1.0), np.int64(0)):
        with pytest.raises(InvalidInputError, match="first_tokens"):
            AnswerProbability(first_tokens=bad)  # type: ignore[arg-type]
    for bad_q in (True, np.float32(math.nan), np.float64(1.5)):
        with pytest.raises(InvalidInputError, match="q must be"):
            TokenQuantile(bad_q)  # type: ignore[arg-type]


def test_the_escalation_model_refuses_confidences_and_labels_outside_0_1() -> None:
    import numpy as np

    from greenserv_core.cascades import EscalationModel

    model = EscalationModel(2)
    model.add("small", "small->big")
    x = np.array([1.0, 0.0])
    for bad in (math.nan, 1.5, -0.1):
        with pytest.raises(InvalidInputError, match="confidence"):
            model.learn_first("small", x, bad, 1.0)
    with pytest.raises(InvalidInputError, match="label"):
        model.learn_first("small", x, 0.5, 3.0)
    model.learn_first("small", x, np.float32(0.5), 1.0)  # type: ignore[arg-type]
    assert 0.5 < model.probability("small", x, 0.5) <= 1.0
    state = model.state_dict()
    state["thens"]["small->big"] = [1.0, 2.0, 3.0]
    fresh = EscalationModel(2)
    fresh.add("small", "small->big")
    with pytest.raises(InvalidInputError, match="offset and count"):
        fresh.load_state_dict(state)


def test_the_signal_suits_the_answers_length() -> None:
    assert isinstance(signal_for_task(3), AnswerProbability)
    assert isinstance(signal_for_task(160), TokenQuantile)


def test_logprobs_must_be_a_flag() -> None:
    with pytest.raises(InvalidInputError, match="logprobs"):
        GenerationSettings(logprobs="yes")  # type: ignore[arg-type]


def test_a_fake_gives_logprobs_only_when_asked() -> None:
    fake = FakeBackend("f", reply=lambda m: "four", logprobs=lambda m, text: [-0.1] * len(text.split()))
    assert fake.generate(ASK, GenerationSettings()).token_logprobs is None
    assert fake.generate(ASK, GenerationSettings(logprobs=True)).token_logprobs == (-0.1,)
    assert FakeBackend("g").generate(ASK, GenerationSettings(logprobs=True)).token_logprobs is None


def _server(seen: list[dict[str, object]], logprobs: object) -> OpenAICompatibleBackend:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        choice = {"finish_reason": "stop", "logprobs": logprobs}
        if body["stream"]:
            events = [
                {"choices": [{"delta": {"content": "4"}, "logprobs": logprobs}]},
                {"choices": [{"delta": {"content": "!"}, "logprobs": logprobs, "finish_reason": "stop"}]},
            ]
            lines = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            return httpx.Response(200, content=lines.encode(), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={"choices": [{"message": {"content": "4"}, **choice}]})

    return OpenAICompatibleBackend(
        "http://server:8000/v1", "remote", transport=httpx.MockTransport(handler), backoff_s=0.0, max_backoff_s=0.0
    )


def test_a_server_is_asked_for_logprobs_and_they_are_read() -> None:
    seen: list[dict[str, object]] = []
    server = _server(seen, {"content": [{"token": "4", "logprob": -0.25}]})
    assert server.generate(ASK, GenerationSettings()).token_logprobs is None
    assert "logprobs" not in seen[-1]
    assert server.generate(ASK, GenerationSettings(logprobs=True)).token_logprobs == (-0.25,)
    assert seen[-1]["logprobs"] is True
    streamed = list(server.stream(ASK, GenerationSettings(logprobs=True)))
    result = streamed[-1].result
    assert result is not None and result.token_logprobs == (-0.25, -0.25)


@pytest.mark.parametrize(
    "broken", [None, {"content": None}, {"content": [{"token": "4"}]}, {"content": [{"logprob": 2}]}]
)
def test_a_server_without_usable_logprobs_still_answers(broken: object) -> None:
    result = _server([], broken).generate(ASK, GenerationSettings(logprobs=True))
    assert result.text == "4" and result.token_logprobs is None


def _table(confidence: Sequence[float | None]) -> OutcomeTable:
    n = len(confidence)
    columns: dict[str, list[object]] = {
        "query_id": [f"q{i}" for i in range(n)],
        "task": ["t"] * n,
        "prompt": [f"p{i}" for i in range(n)],
        "reference": ["r"] * n,
        "model": ["m"] * n,
        "output": ["o"] * n,
        "accuracy": [1.0, 0.0] * (n // 2),
        "energy_joules": [1.0] * n,
        "energy_source": ["fake"] * n,
        "latency_s": [0.1] * n,
        "input_tokens": [3] * n,
        "output_tokens": [1] * n,
        "confidence": list(confidence),
    }
    return OutcomeTable(columns, {"confidence_signals": {"t": "answer-probability"}})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_confidence_column_round_trips_with_its_gaps(tmp_path: Path, suffix: str) -> None:
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    table = _table([0.9, None, 0.7, 0.2])
    back = read_table(write_table(table, tmp_path / f"t{suffix}"))
    assert back.columns["confidence"] == [0.9, None, 0.7, 0.2]
    data = back.matrices()
    assert data.confidence is not None and math.isnan(data.confidence[1, 0])


def test_a_table_without_confidence_still_reads_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    plain = _table([0.5, 0.5])
    del plain.columns["confidence"]
    back = read_table(write_table(OutcomeTable(plain.columns), tmp_path / "plain.csv"))
    assert "confidence" not in back.columns and back.matrices().confidence is None
    assert back.column_names() == list(COLUMNS)
    with pytest.raises(InvalidInputError, match="no confidence column"):
        confidence_report(back)
    with pytest.raises(InvalidInputError, match="confidence must lie in"):
        _table([0.5, 1.5])


def test_auroc_reads_how_well_confidence_separates_right_from_wrong() -> None:
    assert auroc([0.9, 0.2, 0.8, 0.1], [1, 0, 1, 0]) == 1.0
    assert auroc([0.1, 0.9, 0.2, 0.8], [1, 0, 1, 0]) == 0.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    assert auroc([0.4, 0.6], [0, 0]) is None
    with pytest.raises(InvalidInputError, match="differ in length"):
        auroc([0.1], [1, 0])


def test_collect_records_each_answers_confidence(tmp_path: Path) -> None:
    def reply(messages: Sequence[Message]) -> str:
        return "A"

    def logprobs(messages: Sequence[Message], text: str) -> list[float]:
        return [-0.1 if len(messages[-1]["content"]) % 2 else -2.0]

    table = collect(
        [FakeBackend("sure", reply=reply, logprobs=logprobs)], tmp_path / "t.csv", tasks=["arc_easy"], limit=6
    )
    assert table.metadata["confidence_signals"] == {"arc_easy": "answer-probability"}
    assert all(
        value in (pytest.approx(math.exp(-0.1)), pytest.approx(math.exp(-2.0))) for value in table.columns["confidence"]
    )
    rows = confidence_report(read_table(tmp_path / "t.csv"))
    assert [row["task"] for row in rows] == ["arc_easy", "all"]
    assert rows[0]["answers"] == 6 and rows[0]["signal"] == "answer-probability"


def test_the_simulator_draws_confidence_at_the_stated_auroc_without_changing_outcomes() -> None:
    from greenserv_core.evaluation.simulate import simulate_table
    from tests.test_evaluation import CALIBRATION

    plain = simulate_table(CALIBRATION, queries_per_task=300, seed=0)
    for target in (0.7, 0.8):
        table = simulate_table(CALIBRATION, queries_per_task=300, seed=0, confidence_auroc=target)
        for name in COLUMNS:
            assert table.columns[name] == plain.columns[name]
        assert table.metadata["confidence_auroc"] == target and table.simulated
        rows = [row for row in confidence_report(table) if row["task"] != "all"]
        assert rows and all(row["auroc"] == pytest.approx(target, abs=0.01) for row in rows)
        assert all(row["confidence_right"] > row["confidence_wrong"] for row in rows)
    data = simulate_table(CALIBRATION, queries_per_task=300, seed=0, confidence_auroc=0.8).matrices()
    assert data.confidence is not None
    hard = data.accuracy.mean(axis=1) < 0.3  # queries most models get wrong
    assert data.confidence[hard].mean() < data.confidence[~hard].mean()  # are unsure for every model
    with pytest.raises(InvalidInputError, match="confidence_auroc"):
        simulate_table(CALIBRATION, queries_per_task=10, confidence_auroc=1.0)


def test_collect_can_go_without_confidence_and_resumes_only_with_the_same_signal(tmp_path: Path) -> None:
    from greenserv_core.errors import StateFileError
    from greenserv_core.evaluation.collect import journal_path

    asked: list[bool] = []

    class Recording(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            asked.append(settings.logprobs)
            return super().generate(messages, settings)

    table = collect(
        [Recording("r", reply=lambda m: "A")], tmp_path / "plain.csv", tasks=["arc_easy"], limit=2, confidence=False
    )
    assert asked == [False, False] and "confidence" not in table.columns
    assert table.metadata["confidence_signals"] is None
    journal = journal_path(tmp_path / "half.csv")
    journal.write_text(
        json.dumps(
            {
                "greenserv_collect": 1,
                "tasks": ["arc_easy"],
                "limit": 2,
                "seed": 0,
                "models": ["r"],
                "confidence_signals": {"arc_easy": "other"},
            }
        )
        + "\n"
    )
    with pytest.raises(StateFileError, match="other settings"):
        collect([Recording("r")], tmp_path / "half.csv", tasks=["arc_easy"], limit=2)


def test_a_nan_logprob_gives_no_confidence() -> None:
    assert AnswerProbability()(_answer(-0.1, float("nan"))) is None
    assert TokenQuantile()(_answer(float("nan"))) is None


def test_an_empty_answer_has_no_confidence_to_speak_of() -> None:
    from greenserv_core.backends.base import EnergyReading, GenerationResult
    from greenserv_core.confidence import AnswerProbability, TokenQuantile

    empty = GenerationResult(" \n", 10, 1, 0.1, EnergyReading(1.0, "fake", False), token_logprobs=(0.0,))
    assert AnswerProbability()(empty) == 0.0 and TokenQuantile(0.1)(empty) == 0.0  # were 1.0: the end token's
    unread = GenerationResult("", 10, 0, 0.1, EnergyReading(1.0, "fake", False), token_logprobs=None)
    assert AnswerProbability()(unread) == 0.0  # a remote server's empty answer, without log-probabilities


def test_numpy_or_list_logprobs_are_kept_as_a_tuple_of_floats() -> None:
    import dataclasses

    import numpy as np

    from greenserv_core.cascades.backend import CascadeBackend

    reading = EnergyReading(1.0, "fake", False)
    logprobs = np.array([-0.1, -0.2, -0.3])
    answer = GenerationResult("B is it", 10, 3, 0.1, reading, token_logprobs=logprobs)  # type: ignore[arg-type]
    assert answer.token_logprobs == (-0.1, -0.2, -0.3) and {type(v) for v in answer.token_logprobs} == {float}
    assert AnswerProbability()(answer) == pytest.approx(math.exp(-0.6))  # were ValueError: truth value of an array
    assert TokenQuantile(0.1)(answer) == TokenQuantile(0.1)(_answer(-0.1, -0.2, -0.3))
    listed = GenerationResult("x", 1, 2, 0.1, reading, token_logprobs=[np.float32(-0.5), -1])  # type: ignore[arg-type]
    assert listed.token_logprobs == (-0.5, -1.0) and type(listed.token_logprobs[1]) is float
    assert dataclasses.replace(answer, text="B").token_logprobs == answer.token_logprobs
    assert dataclasses.replace(answer, token_logprobs=None).token_logprobs is None
    with pytest.raises(InvalidInputError, match="token_logprobs"):
        GenerationResult("x", 1, 1, 0.1, reading, token_logprobs=(-0.1, "high"))  # type: ignore[arg-type]

    class NumpyLogprobs(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            result = super().generate(messages, settings)
            logprobs = np.full(max(1, result.output_tokens), -0.1)
            return dataclasses.replace(result, token_logprobs=logprobs)  # type: ignore[arg-type]

    cascade = CascadeBackend(NumpyLogprobs("small", reply=lambda m: "the answer is B"), FakeBackend("big"))
    assert cascade.generate(ASK, GenerationSettings(max_new_tokens=4)).text  # was ValueError, after the small's joules
