"""Self-verification (AutoMix) as a confidence signal: the verdict's reading, its cost in a
cascade, saving, and the `bench verify` measurement on a collected table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from greenserv_core import FakeBackend, GreenServRouter, InvalidInputError
from greenserv_core.backends.base import GenerationResult, GenerationSettings
from greenserv_core.cascades import CascadeBackend
from greenserv_core.confidence import SelfVerification, VerifyingSignal, signal_from_name
from greenserv_core.confidence.self_verification import verdict_of
from greenserv_core.energy.base import EnergyReading
from greenserv_core.errors import CascadeMemberUnavailableError, ModelUnavailableError
from greenserv_core.evaluation.table import OutcomeTable, read_table
from greenserv_core.evaluation.verify import verify_table
from greenserv_core.messages import Message, last_user_text
from tests.conftest import make_hashing_extractor, use_fake_pool

ASK: list[Message] = [{"role": "user", "content": "What is 2 + 2?"}]
SHORT = GenerationSettings(max_new_tokens=8)


def _reply(text: str, logprobs: tuple[float, ...] | None = None) -> GenerationResult:
    return GenerationResult(text, 10, 1, 0.1, EnergyReading(1.0, "fake", False), token_logprobs=logprobs)


def _judging(answer: str, verdict: str, logprob: float = math.log(0.9), seconds: float = 0.0) -> FakeBackend:
    """Answers ``answer``; asked to verify (the question names the proposed answer), says ``verdict``."""

    def reply(messages: Sequence[Message]) -> str:
        return verdict if "Proposed answer:" in last_user_text(messages) else answer

    return FakeBackend("small", seconds_per_token=seconds, reply=reply, logprobs=lambda m, text: [logprob])


@pytest.mark.parametrize(
    ("text", "verdict"),
    [("Yes", True), (" yes.", True), ("\nCorrect", True), ("True", True), ("No", False), ("incorrect", False),
     ("Wrong!", False), ("Yesterday", None), ("maybe", None), ("", None), ("The answer is yes", None)],
)  # fmt: skip
def test_the_verdict_is_read_from_the_reply_s_first_word(text: str, verdict: bool | None) -> None:
    assert verdict_of(text) is verdict


def test_a_greedy_verdict_reads_its_own_probability() -> None:
    signal = SelfVerification()
    assert signal.read([_reply("Yes", (math.log(0.8), math.log(0.5)))]) == pytest.approx(0.9)  # the first token only
    assert signal.read([_reply("No", (math.log(0.7),))]) == pytest.approx(0.15)
    # after a line break, the word's own token: the line break's probability is not the verdict's
    assert signal.read([_reply("\nYes", (math.log(0.3), math.log(0.9)))]) == pytest.approx(0.95)
    assert signal.read([_reply("Yes")]) == 1.0 and signal.read([_reply("No")]) == 0.0  # no log-probabilities
    assert signal.read([_reply("**Yes**", (math.log(0.05), math.log(0.9)))]) == 1.0  # not read from the formatting
    unsure_no, unsure_yes = (
        signal.read([_reply("No", (math.log(0.4),))]),
        signal.read([_reply("Yes", (math.log(0.4),))]),
    )
    assert (
        unsure_no is not None and unsure_yes is not None and unsure_no < 0.5 < unsure_yes
    )  # a "No" never reads as sure
    assert signal.read([_reply("Perhaps", (math.log(0.9),))]) is None
    assert signal.read([_reply("Yes", (math.nan,))]) is None
    (settings,) = signal.settings()
    assert settings.temperature == 0.0 and settings.logprobs


def test_sampled_verdicts_give_the_share_of_yes() -> None:
    signal = SelfVerification(samples=4, seed=7)
    settings = signal.settings()
    assert [s.seed for s in settings] == [7, 8, 9, 10] and all(s.temperature == 1.0 for s in settings)
    assert signal.read([_reply("Yes"), _reply("No"), _reply("yes"), _reply("hmm")]) == pytest.approx(2 / 3)
    assert signal.read([_reply("hmm")] * 4) is None
    assert signal.name == "self-verification-4;seed=7" and SelfVerification(4).name == "self-verification-4"


@pytest.mark.parametrize(
    "kwargs",
    [{"samples": 0}, {"samples": 1.5}, {"samples": True}, {"temperature": 0}, {"temperature": -1.0},
     {"seed": -1}, {"max_new_tokens": 0}],
)  # fmt: skip
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        SelfVerification(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "signal",
    [SelfVerification(), SelfVerification(8), SelfVerification(2, seed=1234567),
     SelfVerification(3, temperature=0.7, max_new_tokens=5)],
)  # fmt: skip
def test_its_name_rebuilds_it_with_every_setting(signal: SelfVerification) -> None:
    rebuilt = signal_from_name(signal.name)
    assert isinstance(rebuilt, SelfVerification)
    assert vars(rebuilt) == vars(signal)


@pytest.mark.parametrize(
    "name",
    ["self-verification-1", "self-verification-x", "self-verification-", "self-verification;seed=1.5",
     "self-verification;seed=0", "self-verification;colour=red", "self-verification;seed=2;seed=3",
     "self-verification;temperature=nan", "self-verification;seed=03", "self-verification-\u00b2",
     "self-verification-\u0663"],  # digits other than ASCII's: '²' was a bare ValueError
)  # fmt: skip
def test_a_name_that_is_not_one_is_refused(name: str) -> None:
    with pytest.raises(InvalidInputError, match="no bundled confidence signal"):
        signal_from_name(name)


def test_verify_asks_the_model_that_answered_about_that_answer() -> None:
    small = _judging("4", "Yes", math.log(0.9))
    answer = small.generate(ASK, SHORT)
    check = SelfVerification().verify(ASK, answer, small)
    assert isinstance(SelfVerification(), VerifyingSignal)
    assert check.confidence == pytest.approx(0.95) and len(check.calls) == 1 and small.calls == 2
    charged = check.charged(answer)
    assert charged.energy.joules == pytest.approx(answer.energy.joules + check.calls[0].energy.joules)
    assert charged.output_tokens == answer.output_tokens and charged.text == "4"


@pytest.mark.parametrize(("verdict", "action"), [("Yes", "kept"), ("No", "escalated")])
def test_a_cascade_charges_the_question_to_its_first_answer(verdict: str, action: str) -> None:
    small = _judging("4", verdict, math.log(0.9), seconds=0.01)
    big = FakeBackend("big", joules_per_token=5.0, reply=lambda m: "four")
    cascade = CascadeBackend(small, big, signal=SelfVerification(), threshold=0.5)
    result = cascade.generate(ASK, SHORT)
    first = result.chain[0]
    twin, signal = _judging("4", verdict, math.log(0.9), seconds=0.01), SelfVerification()
    answer, question = twin.generate(ASK, SHORT), twin.generate(signal.prompt(ASK, "4"), signal.settings()[0])
    assert small.calls == 2 and first.action == action
    assert first.confidence == pytest.approx(0.95 if verdict == "Yes" else 0.05)
    assert first.energy_joules == pytest.approx(answer.energy.joules + question.energy.joules)
    assert first.latency_s == pytest.approx(answer.latency_s + question.latency_s)
    assert first.confidence_joules == pytest.approx(question.energy.joules)
    assert first.confidence_s == pytest.approx(question.latency_s)
    assert result.energy.joules == pytest.approx(sum(step.energy_joules for step in result.chain))
    assert result.text == ("4" if verdict == "Yes" else "four")


def test_the_question_teaches_the_first_model_alone_nothing_of_its_cost() -> None:
    small = FakeBackend("small", joules_per_token=1.0, reply=lambda m: "7", logprobs=lambda m, t: [-0.05])
    big = FakeBackend("big", joules_per_token=9.0, reply=lambda m: "8")
    router = GreenServRouter(
        [small, big],
        features=make_hashing_extractor(),
        seed=0,
        cascades=[("small", "big")],
        cascade_signal=SelfVerification(),
    )
    alone = router.generate("What is 3 + 4?", models=["small"], max_new_tokens=4)
    for _ in range(10):
        answer = router.generate("What is 3 + 4?", models=["small->big"], max_new_tokens=4)
        router.feedback(answer.decision_id, 1.0)
    assert answer.chain[0].energy_joules > 3 * alone.energy_joules  # the cascade pays for the question
    predicted = router.route("What is 3 + 4?", models=["small"], max_new_tokens=4).predicted_joules["small"]
    assert predicted == pytest.approx(alone.energy_joules, rel=0.05)  # the model alone does not


def test_a_cap_on_joules_counts_the_question_before_escalating() -> None:
    """The cap was checked on the two models' predicted answers alone: the question, which only
    the cascade pays, took the query to 76 J against a cap of 47 J."""
    from tests.test_cascade_routing import _router

    ask = "What is 2 + 2?"
    small = FakeBackend(
        "small",
        joules_per_token=1.0,
        reply=lambda m: "No" if "Proposed answer" in m[-1]["content"] else "4",
        logprobs=lambda m, t: [math.log(0.9)],
    )
    big = FakeBackend("big", joules_per_token=5.0, reply=lambda m: "4")
    router = _router(small=small, big=big, cascade_signal=SelfVerification())
    settings = GenerationSettings(max_new_tokens=8)
    alone = {m.info.name: m.generate([{"role": "user", "content": ask}], settings).energy.joules for m in (small, big)}
    for _ in range(20):  # the members' cost models learn their own answers
        router.learn(ask, "small", energy_joules=alone["small"])
        router.learn(ask, "big", energy_joules=alone["big"])
    cap = alone["small"] + alone["big"] + 5.0  # both answers fit; with the question they do not
    answer = router.generate(ask, max_new_tokens=8, max_joules=cap)
    assert [step.action for step in answer.chain] == ["kept"] and answer.energy_joules <= cap
    assert "the first step spent" in answer.chain[0].reason
    uncapped = router.generate(ask, max_new_tokens=8)
    assert [step.action for step in uncapped.chain] == ["escalated", "answered"]  # the rule would escalate


@pytest.mark.parametrize(("verdict", "shown"), [("Yes", ["4"]), ("No", ["four"])])
def test_a_streamed_cascade_shows_only_the_kept_answer_and_charges_the_question(verdict: str, shown: list[str]) -> None:
    small = _judging("4", verdict, math.log(0.9))
    cascade = CascadeBackend(small, FakeBackend("big", reply=lambda m: "four"), signal=SelfVerification())
    chunks = list(cascade.stream(ASK, SHORT))
    text = "".join(chunk.delta for chunk in chunks)
    final = chunks[-1].result
    assert final is not None and text.strip() == shown[0] and ("4" in text) == (verdict == "Yes")
    twin, signal = _judging("4", verdict, math.log(0.9)), SelfVerification()
    answer, question = twin.generate(ASK, SHORT), twin.generate(signal.prompt(ASK, "4"), signal.settings()[0])
    assert final.chain[0].energy_joules == pytest.approx(answer.energy.joules + question.energy.joules)


def test_a_signal_class_instead_of_an_instance_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="instance"):
        CascadeBackend(FakeBackend("small"), FakeBackend("big"), signal=SelfVerification)  # type: ignore[arg-type]


def test_a_failing_verification_names_the_first_model() -> None:
    class FailsOnSecondCall(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            if self.calls >= 1:
                raise ModelUnavailableError("server went away")
            return super().generate(messages, settings)

    cascade = CascadeBackend(FailsOnSecondCall("small"), FakeBackend("big"), signal=SelfVerification())
    with pytest.raises(CascadeMemberUnavailableError) as caught:
        cascade.generate(ASK, SHORT)
    assert caught.value.member == "small"


def test_a_router_saves_and_reloads_the_cascade_s_verification(tmp_path: Path) -> None:
    features = make_hashing_extractor()
    pool = [_judging("4", "Yes"), FakeBackend("big")]
    router = GreenServRouter(pool, features=features, seed=0)
    router.add_cascade("small", "big", signal=SelfVerification(samples=3))
    answer = router.generate(ASK, max_new_tokens=8, models=["small->big"])
    chain = answer.record()["chain"]
    assert chain[0]["confidence"] == 1.0 and chain[0]["action"] == "kept"  # three sampled "Yes"
    twin, signal = _judging("4", "Yes"), SelfVerification(samples=3)
    questions = [twin.generate(signal.prompt(ASK, "4"), settings) for settings in signal.settings()]
    own = twin.generate(ASK, GenerationSettings(max_new_tokens=8)).energy.joules
    assert answer.energy_joules == pytest.approx(own + sum(q.energy.joules for q in questions))
    path = tmp_path / "router.json"
    router.save(path)
    loaded = GreenServRouter.load(path, [_judging("4", "Yes"), FakeBackend("big")], features=features)
    cascade = loaded.backend("small->big")
    assert isinstance(cascade, CascadeBackend) and isinstance(cascade.signal, SelfVerification)
    assert cascade.signal.samples == 3


def _table(outputs: list[str], accuracy: list[float], models: list[str]) -> OutcomeTable:
    n = len(outputs)
    return OutcomeTable(
        {
            "query_id": [f"q{i}" for i in range(n)],
            "task": ["arc_easy"] * n,
            "prompt": [f"Question {i}: pick one." for i in range(n)],
            "reference": ["A"] * n,
            "model": models,
            "output": outputs,
            "accuracy": accuracy,
            "energy_joules": [2.0] * n,
            "energy_source": ["fake"] * n,
            "latency_s": [0.1] * n,
            "input_tokens": [5] * n,
            "output_tokens": [1] * n,
            "confidence": [0.5] * n,
        },
        {"generator": "greenserv collect"},
    )


def test_verify_table_replaces_the_confidence_and_states_the_cost(tmp_path: Path) -> None:
    def says_a_is_right(messages: Sequence[Message]) -> str:
        return "Yes" if "Proposed answer:\nA" in last_user_text(messages) else "No"

    table = _table(["A", "B", "A", "C"], [1.0, 0.0, 1.0, 0.0], ["m", "m", "n", "n"])
    judges = [FakeBackend(name, joules_per_token=0.5, reply=says_a_is_right) for name in ("m", "n")]
    out = tmp_path / "verified.parquet"
    signal = SelfVerification()
    questions = [
        signal.prompt([{"role": "user", "content": p}], a)
        for p, a in zip(table.columns["prompt"][:2], "AB", strict=True)
    ]
    expected = sum(judges[0].generate(q, signal.settings()[0]).energy.joules for q in questions)  # m's two questions
    verified = verify_table(table, judges, out, batch_size=3)
    assert verified.columns["confidence"] == [1.0, 0.0, 1.0, 0.0]
    asked = [judges[0].generate(q, signal.settings()[0]).energy.joules for q in questions]
    assert verified.columns["confidence_joules"][:2] == pytest.approx(asked)
    for column in ("output", "accuracy", "energy_joules", "prompt"):
        assert verified.columns[column] == table.columns[column]  # the answers are untouched
    cost = verified.metadata["verification"]["m"]
    assert cost["answers"] == 2 and cost["joules"] == pytest.approx(expected) and cost["answer_joules"] == 4.0
    assert verified.metadata["confidence_signals"] == {"arc_easy": "self-verification"}
    assert verified.metadata["generator"] == "greenserv collect"
    back = read_table(out)
    assert back.columns["confidence"] == [1.0, 0.0, 1.0, 0.0]
    assert back.columns["confidence_joules"] == pytest.approx(verified.columns["confidence_joules"])


def test_verify_table_needs_every_model_of_the_table(tmp_path: Path) -> None:
    table = _table(["A", "B"], [1.0, 0.0], ["m", "absent"])
    with pytest.raises(InvalidInputError, match="absent"):
        verify_table(table, [FakeBackend("m")], tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
    with pytest.raises(InvalidInputError, match="batch_size"):
        verify_table(table, [FakeBackend("m"), FakeBackend("absent")], tmp_path / "out.parquet", batch_size=0)


def test_bench_verify_refuses_bad_samples_before_loading_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core import cli
    from greenserv_core.models import bundled as bundled_module

    def no_models(**kwargs: object) -> list[object]:
        raise AssertionError("models were loaded")

    monkeypatch.setattr(bundled_module, "bundled_pool", no_models)
    args = ["bench", "verify", "--table", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "o.parquet")]
    assert cli.main([*args, "--samples", "0"]) == 2
    assert "samples must be an integer >= 1" in capsys.readouterr().err


def test_bench_verify_prints_both_signals_aurocs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core import cli
    from greenserv_core.evaluation.table import write_table
    from greenserv_core.models import bundled as bundled_module

    def says_a_is_right(messages: Sequence[Message]) -> str:
        return "Yes" if "Proposed answer:\nA" in last_user_text(messages) else "No"

    monkeypatch.setattr(bundled_module, "bundled_pool", lambda **kwargs: [FakeBackend("m", reply=says_a_is_right)])
    table_path = write_table(_table(["A", "B", "A", "C"], [1.0, 0.0, 1.0, 0.0], ["m"] * 4), tmp_path / "t.parquet")
    out = tmp_path / "o.parquet"
    assert cli.main(["bench", "verify", "--table", str(table_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| all | m | 4 | 0.500 | 0.500 | 1.000 |" in printed  # the table's flat 0.5 against the verdicts
    assert "verifying 4 answers cost" in printed and out.exists()


def _asking_table(asking: list[float | None]) -> OutcomeTable:
    """Two queries × two models; the small model's confidence cost ``asking`` joules to read."""
    table = _table(["A", "A", "B", "A"], [1.0, 1.0, 0.0, 1.0], ["small", "big", "small", "big"])
    table.columns["query_id"] = ["q0", "q0", "q1", "q1"]
    table.columns["prompt"] = ["Question 0: pick one."] * 2 + ["Question 1: pick one."] * 2  # one question per id
    table.columns["energy_joules"] = [1.0, 10.0, 1.0, 10.0]
    table.columns["confidence"] = [0.9, None, 0.1, None]
    table.columns["confidence_joules"] = asking
    return OutcomeTable(table.columns, table.metadata)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_keeps_what_reading_each_confidence_cost(tmp_path: Path, suffix: str) -> None:
    from greenserv_core.evaluation.table import write_table

    table = _asking_table([3.0, None, 5.0, None])
    back = read_table(write_table(table, tmp_path / f"t{suffix}"))
    assert back.columns["confidence_joules"] == [3.0, None, 5.0, None]
    joules = back.matrices().confidence_joules
    assert joules is not None and joules.tolist() == [[3.0, 0.0], [5.0, 0.0]]
    for bad in (-1.0, float("inf"), "lots"):
        with pytest.raises(InvalidInputError, match="confidence_joules"):
            _asking_table([bad, None, 0.0, None])  # type: ignore[list-item]
    missing = _asking_table([float("nan"), None, 2.0, None]).matrices().confidence_joules  # NaN: pandas' empty
    assert missing is not None and missing.tolist() == [[0.0, 0.0], [2.0, 0.0]]


def test_the_cascade_benchmarks_charge_the_confidence_to_the_first_answer() -> None:
    import numpy as np

    from greenserv_core.evaluation.cascade_replay import STRATEGIES, run_cascades
    from greenserv_core.evaluation.cascades import task_settings

    free, asked = _asking_table([0.0, None, 0.0, None]), _asking_table([3.0, None, 5.0, None])
    rows = np.ones(2, dtype=bool)
    cost = {s.label: s.joules for s in task_settings(free.matrices(), rows) if s.cascade}
    charged = {s.label: s.joules for s in task_settings(asked.matrices(), rows) if s.cascade}
    assert cost and all(charged[label] == pytest.approx(cost[label] + 4.0) for label in cost)  # the mean question
    data = asked.matrices()
    for strategy in STRATEGIES[1:]:  # with the learned rule, and the control that never escalates
        for seed in range(4):
            setting = {"policy": "static:small->big", "strategy": strategy, "tradeoff": 0.4, "seed": seed}
            run = run_cascades(data, [("small", "big")], make_features=make_hashing_extractor, **setting)  # type: ignore[arg-type]
            # each query once: its answer (1 J), its question (3 or 5 J), and big's 10 J where it escalated
            assert run.cascade_share == 1.0
            assert run.joules_per_query == pytest.approx(1.0 + 4.0 + 10.0 * run.escalated_share)


def test_collect_sends_a_verifying_signal_to_bench_verify(tmp_path: Path) -> None:
    from greenserv_core.evaluation.collect import collect

    with pytest.raises(InvalidInputError, match="bench verify"):
        collect([FakeBackend("m")], tmp_path / "t.csv", tasks=["arc_easy"], limit=1, signal=SelfVerification())  # type: ignore[arg-type]
    assert not (tmp_path / "t.csv").exists()


def test_chat_offers_self_verified_cascades(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core import cli

    fakes = [_judging("4", "No", math.log(0.9)), FakeBackend("big", reply=lambda m: "four")]
    use_fake_pool(monkeypatch, fakes)
    argv = ["chat", "--cascade", "small->big", "--cascade-signal", "self-verification"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "small (confidence 0.05" in out and "escalated → big" in out  # a cascade query's chain: "No" at 0.9
    assert cli.main(["chat", "--cascade-signal", "self-verification"]) == 2
    assert "give at least one --cascade" in capsys.readouterr().err
    assert cli.main([*argv[:3], "--cascade-signal", "mood-ring"]) == 2
    assert "no bundled confidence signal is named 'mood-ring'" in capsys.readouterr().err


def test_chat_keeps_a_saved_cascade_s_signal(tmp_path: Path) -> None:
    from greenserv_core.cli.chat import _check_saved_signal

    router = GreenServRouter([_judging("4", "Yes"), FakeBackend("big")], features=make_hashing_extractor(), seed=0)
    router.add_cascade("small", "big", signal=SelfVerification())
    state = tmp_path / "state.json"
    _check_saved_signal(router, "small->big", "self-verification", state)  # the same signal: fine
    with pytest.raises(InvalidInputError, match="holds the cascade small->big with the signal self-verification"):
        _check_saved_signal(router, "small->big", "self-verification-4", state)


def test_the_router_gives_its_cascades_the_named_signal() -> None:
    router = GreenServRouter(
        [_judging("4", "Yes"), FakeBackend("big")],
        features=make_hashing_extractor(),
        cascades=[("small", "big")],
        cascade_signal="self-verification-3",
        seed=0,
    )
    cascade = router.backend("small->big")
    assert isinstance(cascade, CascadeBackend) and isinstance(cascade.signal, SelfVerification)
    assert cascade.signal.samples == 3
    with pytest.raises(InvalidInputError, match="no bundled confidence signal"):
        GreenServRouter([FakeBackend("a"), FakeBackend("b")], cascades=[("a", "b")], cascade_signal="mood-ring")


@pytest.fixture
def hashing_features(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core import FeatureExtractor

    monkeypatch.setattr(FeatureExtractor, "default", classmethod(lambda cls, **kwargs: make_hashing_extractor()))


@pytest.mark.usefixtures("hashing_features")
def test_both_adapters_cascade_with_self_verification() -> None:
    from langchain_greenserv import ChatGreenServ
    from llama_index_greenserv import GreenServLLM

    options = {"cascades": [("small", "big")], "max_tokens": 8, "seed": 0}
    chat = ChatGreenServ(models=[_judging("4", "No"), FakeBackend("big", reply=lambda m: "four")], **options)  # type: ignore[arg-type]
    assert chat.cascade_signal is None
    chat = ChatGreenServ(
        models=[_judging("4", "No"), FakeBackend("big", reply=lambda m: "four")],
        cascade_signal=SelfVerification(samples=2),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )
    assert chat.cascade_signal == "self-verification-2"  # kept as its name: serialisable
    message = chat.invoke("What is 2 + 2?", model="small->big")
    chain = message.response_metadata["greenserv"]["chain"]
    assert message.content == "four" and chain[0]["confidence"] == 0.0 and chain[0]["action"] == "escalated"
    llm = GreenServLLM(
        models=[_judging("4", "Yes"), FakeBackend("big")],
        cascade_signal="self-verification",
        **options,  # type: ignore[arg-type]
    )
    raw = llm.complete("What is 2 + 2?", model="small->big").raw
    assert raw is not None and raw["chain"][0]["confidence"] == pytest.approx(0.95)
    with pytest.raises(ValueError, match="no bundled confidence signal"):
        GreenServLLM(models=[FakeBackend("a")], cascade_signal="mood-ring")
    router = GreenServRouter([_judging("4", "Yes"), FakeBackend("big")], features=make_hashing_extractor(), seed=0)
    with pytest.raises(ValueError, match="cascade_signal"):
        ChatGreenServ(router=router, cascade_signal="self-verification")


def test_questions_answered_before_a_failed_one_are_charged() -> None:
    class FailsThirdQuestion(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            result = super().generate(messages, settings)
            if self.calls == 4:  # the answer, two questions, then the third question fails
                raise ModelUnavailableError("server went away", spent_joules=1.0)
            return result

    ask: list[Message] = [{"role": "user", "content": "3 + 5?"}]
    small = FailsThirdQuestion("small", joules_per_token=1.0, reply=lambda m: "Yes")
    signal = SelfVerification(samples=3)
    alone = FakeBackend("x", joules_per_token=1.0, reply=lambda m: "Yes")
    answer = alone.generate(ask, GenerationSettings(max_new_tokens=4)).energy.joules
    question = alone.generate(signal.prompt(ask, "Yes"), signal.settings()[0]).energy.joules
    with pytest.raises(CascadeMemberUnavailableError) as raised:
        CascadeBackend(small, FakeBackend("big"), signal=signal).generate(ask, GenerationSettings(max_new_tokens=4))
    assert raised.value.spent_joules == pytest.approx(answer + 2 * question + 1.0)  # was answer + 1.0


def test_questions_answered_before_a_plain_error_are_charged_to_the_budget() -> None:
    """Only a ModelUnavailableError carried the questions' spend: after any other error the
    budget counted the answer alone (7 J of 75 J)."""
    spent: list[float] = []

    class BreaksThirdQuestion(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            if self.calls == 3:  # the answer, two questions, then a bug on the third question
                self.calls += 1
                raise RuntimeError("tokenizer bug")
            result = super().generate(messages, settings)
            spent.append(result.energy.joules)
            return result

    small = BreaksThirdQuestion("small", joules_per_token=1.0, reply=lambda m: "Yes")
    router = GreenServRouter(
        [small, FakeBackend("big", joules_per_token=5.0)],
        cascades=[("small", "big")],
        features=make_hashing_extractor(),
        seed=0,
        energy_budget=100.0,
        strategy="static:small->big",
        cascade_signal=SelfVerification(samples=3),
    )
    with pytest.raises(RuntimeError, match="tokenizer bug"):
        router.generate("What is 2 + 2?", max_new_tokens=8)
    assert len(spent) == 3
    budget = router.budget_
    assert budget is not None and budget.spent_joules == pytest.approx(sum(spent))


def test_the_questions_keep_to_the_time_the_answer_left_of_max_time_s() -> None:
    """They were asked with no time limit: a cascade under max_time_s=0.5 took 2.18 s."""
    small = FakeBackend("small", seconds_per_token=0.02, reply=lambda m: "4", logprobs=lambda m, t: [-0.1])
    cascade = CascadeBackend(small, FakeBackend("big", seconds_per_token=0.05), signal=SelfVerification(samples=3))
    result = cascade.generate(ASK, GenerationSettings(max_new_tokens=8, max_time_s=0.5))
    assert result.latency_s <= 0.5 + 1e-9
    unlimited = cascade.generate(ASK, GenerationSettings(max_new_tokens=8))
    assert unlimited.chain[0].confidence_s > 0.5  # the same questions take longer than the limit


def test_no_question_is_asked_once_the_time_is_spent() -> None:
    asked: list[float | None] = []

    class Judge(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            asked.append(settings.max_time_s)
            return _reply("Yes")  # 0.1 s each

    verification = SelfVerification(samples=4).verify(ASK, _reply("4"), Judge("judge"), max_time_s=0.25)
    assert asked == pytest.approx([0.25, 0.15, 0.05])  # each has what the ones before it left; none past it
    assert len(verification.calls) == 3 and verification.confidence == 1.0
    assert SelfVerification().verify(ASK, _reply("4"), Judge("judge"), max_time_s=0.0).confidence is None


def test_a_seed_beyond_a_floats_whole_numbers_round_trips() -> None:
    signal = SelfVerification(samples=4, seed=2**53 + 1)
    again = signal_from_name(signal.name)
    assert isinstance(again, SelfVerification) and again.seed == 2**53 + 1  # was None: read through float()


def test_a_seed_a_later_draw_cannot_use_is_refused_when_built() -> None:
    with pytest.raises(InvalidInputError, match="seed \\+ samples - 1"):  # was accepted; each query then failed
        SelfVerification(samples=2, seed=2**63 - 1)
    with pytest.raises(InvalidInputError, match="no bundled confidence signal"):  # nor rebuilt from a name
        signal_from_name(f"self-verification-2;seed={2**63 - 1}")
    last = SelfVerification(samples=2, seed=2**63 - 2)
    assert [s.seed for s in last.settings()] == [2**63 - 2, 2**63 - 1]


def test_numpy_settings_are_taken_as_python_numbers() -> None:
    import numpy as np

    signal = SelfVerification(
        samples=np.int64(4),  # type: ignore[arg-type]
        seed=np.int64(3),  # type: ignore[arg-type]
        max_new_tokens=np.int32(5),  # type: ignore[arg-type]
        temperature=np.float32(0.5),  # type: ignore[arg-type]
    )
    assert signal.name == "self-verification-4;temperature=0.5;seed=3;max_new_tokens=5"
    assert all(type(value) in (int, float) for value in vars(signal).values())
    assert signal.settings()[0].seed == 3
    with pytest.raises(InvalidInputError):
        SelfVerification(samples=np.bool_(True))  # type: ignore[arg-type]


def test_a_failed_question_after_answers_names_both_sources_as_the_cascade_does() -> None:
    class FailsSecondQuestion(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            result = super().generate(messages, settings)
            if self.calls == 3:  # the answer, one question, then the second question fails
                raise ModelUnavailableError(
                    "server went away", spent_joules=1.0, spent_source="cpu-time-estimate", spent_measured=False
                )
            return result

    ask: list[Message] = [{"role": "user", "content": "3 + 5?"}]
    small = FailsSecondQuestion("small", joules_per_token=1.0, reply=lambda m: "Yes")
    with pytest.raises(CascadeMemberUnavailableError) as raised:
        CascadeBackend(small, FakeBackend("big"), signal=SelfVerification(samples=2)).generate(
            ask, GenerationSettings(max_new_tokens=4)
        )
    source = small.generate(ask, GenerationSettings(max_new_tokens=4)).energy.source
    # the answers' and the failed call's sources, joined: was the failed call's alone
    assert raised.value.spent_source == f"{source}+cpu-time-estimate"
    assert not raised.value.spent_measured


def test_a_verifying_signal_written_without_a_time_limit_still_runs_under_one() -> None:
    """The cascade passed max_time_s to every signal: one written to the older signature
    raised a TypeError on any query with a time limit."""
    from greenserv_core.confidence.base import Verification

    class Older:
        name = "older"

        def verify(self, messages: Sequence[Message], answer: GenerationResult, model: object) -> Verification:
            return Verification(0.9)

    small = FakeBackend("small", seconds_per_token=0.01, reply=lambda m: "4")
    cascade = CascadeBackend(small, FakeBackend("big"), signal=Older())  # type: ignore[arg-type]
    result = cascade.generate(ASK, GenerationSettings(max_new_tokens=8, max_time_s=5.0))
    assert result.chain[0].confidence == 0.9
