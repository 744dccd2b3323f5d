"""Learned cascades in the router: the cascade backend, streaming, the escalation rule and
its censored feedback, eligibility, the manual path, and saving."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenserv_core import (
    FakeBackend,
    GreenServRouter,
    InvalidInputError,
    LabelledAnswer,
    NoEligibleModelError,
    UnknownModelError,
)
from greenserv_core.backends.base import GenerationResult, GenerationSettings, StreamChunk
from greenserv_core.bandits import ArmScore
from greenserv_core.bandits.static import StaticPolicy
from greenserv_core.cascades import CascadeBackend, EscalationModel, Verdict, answers_agree
from greenserv_core.cascades.agreement import final_answer
from greenserv_core.confidence import ConfidenceSignal, VerifyingSignal
from greenserv_core.messages import Message
from greenserv_core.pending import PendingDecision
from greenserv_core.statistics import Statistics
from tests.conftest import make_hashing_extractor

ASK: list[Message] = [{"role": "user", "content": "What is 2 + 2?"}]
CHEAP = "CHEAP-ANSWER"
STRONG = "strong answer here"
SHORT = GenerationSettings(max_new_tokens=8)


def _small(confidence: float | None, text: str = CHEAP) -> FakeBackend:
    """The first model: ``text`` with one token log-probability giving ``confidence`` (``None``: none)."""
    logprob = None if confidence is None else math.log(confidence)
    return FakeBackend(
        "small",
        joules_per_token=1.0,
        seconds_per_token=0.001,
        reply=lambda m: text,
        logprobs=None if logprob is None else (lambda m, t: [logprob]),
    )


def _big(text: str = STRONG, context_window: int = 2048) -> FakeBackend:
    return FakeBackend(
        "big", joules_per_token=5.0, seconds_per_token=0.01, reply=lambda m: text, context_window=context_window
    )


class PinnedPolicy(StaticPolicy):
    """Always ``arm``, with a fixed accuracy estimate per model (``then_accuracy`` for ``big``),
    so that the learned escalation rule has a second model worth paying for."""

    def __init__(self, dimension: int, *, arm: str, then_accuracy: float) -> None:
        super().__init__(dimension, arm=arm)
        self.then_accuracy = then_accuracy

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        return {arm: (self.then_accuracy if arm == "big" else 0.0, 0.0) for arm in arms}


def _router(
    confidence: float | None = 0.2,
    *,
    small_text: str = CHEAP,
    big_text: str = STRONG,
    then_accuracy: float = 0.9,
    arm: str = "small->big",
    keep_rate: float = 0.0,
    policy: type[PinnedPolicy] | None = None,
    max_pending: int = 100_000,
    small: FakeBackend | None = None,
    big: FakeBackend | None = None,
    cascade_signal: ConfidenceSignal | VerifyingSignal | None = None,
) -> GreenServRouter:
    """``small`` and ``big`` with the cascade ``small->big``, always routed to ``arm``. With
    ``then_accuracy`` 0.9 (trusted at once: ``informed_after=0``) and no energy measured yet,
    the rule escalates any confidence < 0.9. ``small``, ``big``: other models (named so)."""
    features = make_hashing_extractor()
    return GreenServRouter(
        [small or _small(confidence, small_text), big or _big(big_text)],
        cascades=[("small", "big")],
        features=features,
        policy=(policy or PinnedPolicy)(features.dimension, arm=arm, then_accuracy=then_accuracy),
        tradeoff=0.4,
        seed=0,
        escalation=EscalationModel(features.dimension, keep_rate=keep_rate, informed_after=0, seed=0),
        max_pending=max_pending,
        cascade_signal=cascade_signal,
    )


def _firsts(router: GreenServRouter) -> tuple[np.ndarray, np.ndarray]:
    """What the corrections of ``small`` learned, under every signal (and none) together."""
    model = router.learner_.escalation_
    zz, zy = (sums.copy() for sums in model.firsts_["small"])
    for (first, _), (named_zz, named_zy) in model.signals_.items():
        if first == "small":
            zz, zy = zz + named_zz, zy + named_zy
    return zz, zy


# ---- 1. the cascade backend alone -------------------------------------------------------------
def test_a_confident_answer_is_kept_and_costs_only_the_first_model() -> None:
    small, big = _small(0.8), _big()
    result = CascadeBackend(small, big, threshold=0.5).generate(ASK, SHORT)
    assert result.text == CHEAP and big.calls == 0
    alone = small.generate(ASK, SHORT)
    assert result.energy.joules == alone.energy.joules and result.output_tokens == alone.output_tokens
    assert [(s.model, s.action, s.agreed) for s in result.chain] == [("small", "kept", None)]
    assert result.chain[0].confidence == pytest.approx(0.8)
    assert result.token_logprobs is None  # the first model was asked for them, the caller was not
    asked = CascadeBackend(small, big, threshold=0.5).generate(ASK, GenerationSettings(max_new_tokens=8, logprobs=True))
    assert asked.token_logprobs is not None and list(asked.token_logprobs) == pytest.approx([math.log(0.8)])


def test_an_unsure_answer_escalates_and_the_result_sums_both_calls() -> None:
    small, big = _small(0.3), _big()
    cascade = CascadeBackend(small, big, threshold=0.5)
    assert cascade.info.name == "small->big"
    result = cascade.generate(ASK, SHORT)
    first, second = small.generate(ASK, SHORT), big.generate(ASK, SHORT)
    assert result.text == STRONG
    assert result.energy.joules == pytest.approx(first.energy.joules + second.energy.joules)
    assert result.latency_s == pytest.approx(first.latency_s + second.latency_s)
    assert result.output_tokens == first.output_tokens + second.output_tokens
    assert result.token_logprobs is None
    steps = [(s.model, s.action, s.agreed) for s in result.chain]
    assert steps == [("small", "escalated", None), ("big", "answered", False)]
    assert result.chain[0].confidence == pytest.approx(0.3) and result.chain[1].confidence is None
    assert result.chain[0].text == CHEAP and result.chain[0].energy_joules == first.energy.joules


def test_the_fixed_threshold_keeps_at_the_threshold_and_escalates_without_a_signal() -> None:
    assert CascadeBackend(_small(0.5), _big(), threshold=0.5).generate(ASK, SHORT).text == CHEAP
    result = CascadeBackend(_small(None), _big(), threshold=0.0).generate(ASK, SHORT)
    assert result.text == STRONG and result.chain[0].confidence is None
    assert "no confidence signal" in result.chain[0].reason


def test_an_agreeing_second_answer_is_marked_agreed() -> None:
    result = CascadeBackend(_small(0.1, "Paris"), _big("Paris."), threshold=0.5).generate(ASK, SHORT)
    assert result.chain[-1].agreed is True


def test_a_given_escalation_rule_overrides_the_threshold() -> None:
    seen: list[float | None] = []

    def never(confidence: float | None) -> Verdict:
        seen.append(confidence)
        return Verdict(False, confidence, 1.0, 0.0, 0.0, False, "kept: test")

    result = CascadeBackend(_small(0.01), _big(), threshold=0.9).generate(ASK, SHORT, never)
    assert result.text == CHEAP and seen == [pytest.approx(0.01)] and result.chain[0].reason == "kept: test"


class _Given:
    """A confidence signal of one's own that gives ``value`` for every answer."""

    name = "given"

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, result: object) -> Any:
        return self.value


@pytest.mark.parametrize(
    ("value", "confidence", "escalated"), [(math.nan, None, True), (1.0000000000000002, 1.0, False), (-0.5, 0.0, True)]
)
def test_a_signal_s_nan_is_no_signal_and_a_number_outside_0_1_is_clipped(
    value: float, confidence: float | None, escalated: bool
) -> None:
    result = CascadeBackend(_small(None), _big(), signal=_Given(value), threshold=0.5).generate(ASK, SHORT)
    assert result.chain[0].confidence == confidence and (result.text == STRONG) is escalated  # NaN was kept
    router = GreenServRouter(
        [_small(None), _big()],
        features=make_hashing_extractor(),
        cascades=[("small", "big")],
        cascade_signal=_Given(value),
        policy="static:small->big",
        seed=0,
    )
    answer = router.generate(ASK, max_new_tokens=8)  # raised InvalidInputError after the first answer was paid
    assert answer.chain[0].confidence == confidence
    for bad in ("high", True):
        with pytest.raises(InvalidInputError, match="the confidence signal 'given' gave"):  # alone: a TypeError
            CascadeBackend(_small(None), _big(), signal=_Given(bad)).generate(ASK, SHORT)


def test_a_cascade_refuses_bad_members_and_thresholds() -> None:
    small, big = _small(0.5), _big()
    with pytest.raises(InvalidInputError, match="two different models"):
        CascadeBackend(small, _small(0.5))
    with pytest.raises(InvalidInputError, match="single ModelBackend"):
        CascadeBackend(CascadeBackend(small, big), FakeBackend("other"))
    with pytest.raises(InvalidInputError, match="single ModelBackend"):
        CascadeBackend(small, CascadeBackend(FakeBackend("a"), FakeBackend("b")))
    for bad in (1.5, -0.1, True, "0.5"):
        with pytest.raises(InvalidInputError, match="threshold"):
            CascadeBackend(small, big, threshold=bad)  # type: ignore[arg-type]


def test_a_cascade_and_the_escalation_model_take_any_real_number() -> None:
    from fractions import Fraction

    for half in (np.float32(0.5), Fraction(1, 2)):
        assert CascadeBackend(_small(0.5), _big(), threshold=half).threshold == 0.5  # type: ignore[arg-type]
        model = EscalationModel(2, keep_rate=half, ridge=half, then_prior=half)  # type: ignore[arg-type]
        assert (model.keep_rate, model.ridge, model.then_prior) == (0.5, 0.5, 0.5)
        assert type(model.keep_rate) is float


def test_the_cascade_fits_both_models() -> None:
    small = FakeBackend("small", context_window=4096, capabilities=frozenset({"chat_template", "tools"}))
    big = FakeBackend("big", context_window=512)
    info = CascadeBackend(small, big).info
    assert info.context_window == 512 and info.capabilities == frozenset({"chat_template"})


# ---- 2. streaming -------------------------------------------------------------------------------
def test_an_escalated_stream_shows_none_of_the_first_answer() -> None:
    small, big = _small(0.2), _big()
    chunks = list(CascadeBackend(small, big, threshold=0.5).stream(ASK, SHORT))
    pieces = [c.delta for c in chunks if c.result is None]
    assert len(pieces) == 3 and "".join(pieces) == STRONG
    assert all("CHEAP" not in c.delta for c in chunks)
    final = chunks[-1].result
    assert final is not None and final.text == STRONG
    assert [s.action for s in final.chain] == ["escalated", "answered"]
    expected = small.generate(ASK, SHORT).energy.joules + big.generate(ASK, SHORT).energy.joules
    assert final.energy.joules == pytest.approx(expected)


def test_a_kept_stream_shows_the_first_answer_in_one_piece() -> None:
    small, big = _small(0.9), _big()
    chunks = list(CascadeBackend(small, big, threshold=0.5).stream(ASK, SHORT))
    assert [c.delta for c in chunks] == [CHEAP, ""] and big.calls == 0
    final = chunks[-1].result
    assert final is not None and [s.action for s in final.chain] == ["kept"] and final.token_logprobs is None


def test_a_cascade_stream_closed_early_reports_every_model_it_ran() -> None:
    from greenserv_core.backends.abandoned import collecting_abandoned

    small, big = _small(0.2), _big()
    escalated = CascadeBackend(small, big, threshold=0.5).stream(ASK, SHORT)
    next(escalated)  # the second model's first piece
    with collecting_abandoned() as spent:
        escalated.close()
    assert [r.energy.joules for r in spent] == pytest.approx(
        [small.generate(ASK, SHORT).energy.joules, big.generate(ASK, SHORT).energy.joules]
    )
    kept = CascadeBackend(_small(0.9), _big(), threshold=0.5).stream(ASK, SHORT)
    next(kept)
    with collecting_abandoned() as spent:
        kept.close()
    assert [r.energy.joules for r in spent] == pytest.approx([_small(0.9).generate(ASK, SHORT).energy.joules])


def test_the_router_streams_only_the_escalated_answer() -> None:
    router = _router(0.2)
    chunks = list(router.stream(ASK, max_new_tokens=8))
    assert "".join(c.delta for c in chunks) == STRONG
    assert all("CHEAP" not in c.delta for c in chunks)
    final = chunks[-1].generation
    assert final is not None and final.model == "small->big" and final.text == STRONG
    assert [s.model for s in final.chain] == ["small", "big"]
    assert final.energy_joules == pytest.approx(sum(s.energy_joules for s in final.chain))
    assert router.feedback(final.decision_id, 1.0).applied


def test_the_router_streams_a_kept_answer() -> None:
    router = _router(0.95)
    chunks = list(router.stream(ASK, max_new_tokens=8))
    assert [c.delta for c in chunks] == [CHEAP, ""]
    final = chunks[-1].generation
    assert final is not None and [s.action for s in final.chain] == ["kept"]


def test_a_cascade_pinned_by_the_static_policy_streams_its_kept_answer() -> None:
    features = make_hashing_extractor()  # an unscored second model counts as always right: only a sure answer is kept
    router = GreenServRouter(
        [_small(1.0), _big()], cascades=[("small", "big")], features=features, policy="static:small->big", seed=0
    )
    chunks = list(router.stream(ASK, max_new_tokens=8))
    final = chunks[-1].generation
    assert final is not None and final.model == "small->big" and "".join(c.delta for c in chunks) == CHEAP


def test_a_cascade_pinned_by_the_static_policy_escalates_a_hopeless_answer() -> None:
    features = make_hashing_extractor()
    router = GreenServRouter(
        [_small(0.01), _big()], cascades=[("small", "big")], features=features, policy="static:small->big", seed=0
    )
    chunks = list(router.stream(ASK, max_new_tokens=8))
    assert "".join(c.delta for c in chunks) == STRONG


# ---- 3. the cascade as an arm of the router ---------------------------------------------------
def test_a_cascade_is_an_arm_but_not_a_model() -> None:
    router = _router()
    assert router.arms == ["small", "big", "small->big"]
    assert router.models == ["small", "big"]
    assert "small->big" in router.policy_.arms


def test_the_routed_generation_records_the_chain_and_the_summed_cost() -> None:
    router = _router(0.2)
    answer = router.generate(ASK, max_new_tokens=8)
    assert answer.model == "small->big" and answer.text == STRONG
    settings = GenerationSettings(max_new_tokens=8)
    expected = _small(0.2).generate(ASK, settings).energy.joules + _big().generate(ASK, settings).energy.joules
    assert answer.energy_joules == pytest.approx(expected)
    chain = answer.record()["chain"]
    assert [(s["model"], s["action"]) for s in chain] == [("small", "escalated"), ("big", "answered")]
    assert chain[1]["agreed"] is False and chain[0]["confidence"] == pytest.approx(0.2)
    assert router.stats_["small->big"]["energy_joules"] == pytest.approx(expected)
    record = router.feedback(answer.decision_id, 1.0)
    assert record.applied and record.model == "small->big"
    assert router.stats_["small->big"]["feedback"] == 1 and router.stats_["big"]["feedback"] == 0


def test_a_single_model_generation_has_no_chain() -> None:
    answer = _router(arm="big").generate(ASK, max_new_tokens=8)
    assert answer.model == "big" and answer.chain == () and answer.record()["chain"] == []


def test_a_batch_runs_each_query_through_the_cascade() -> None:
    answers = _router(0.2).generate_batch([ASK, "Who wrote Hamlet?"], max_new_tokens=8)
    assert [a.text for a in answers] == [STRONG, STRONG]
    assert all(len(a.chain) == 2 for a in answers)


def test_a_kept_answer_teaches_the_escalation_model() -> None:
    router = _router(0.8, then_accuracy=0.5)  # the second model is worse: keep
    zz, zy = _firsts(router)
    answer = router.generate(ASK, max_new_tokens=8)
    assert [s.action for s in answer.chain] == ["kept"]
    assert np.array_equal(_firsts(router)[1], zy)  # nothing learned before the feedback
    router.feedback(answer.decision_id, 1.0)
    new_zz, new_zy = _firsts(router)
    assert not np.array_equal(new_zy, zy) and not np.array_equal(new_zz, zz)
    assert new_zy[-1] == pytest.approx(1.0 - 0.8)  # the bias term: label − confidence


def test_an_escalated_answer_that_agrees_labels_the_first_answer() -> None:
    router = _router(0.2, small_text="Paris", big_text="Paris")
    answer = router.generate(ASK, max_new_tokens=8)
    assert answer.chain[-1].agreed is True
    assert router.pending_.get(answer.decision_id).cascade == {
        "first": "small",
        "then": "big",
        "first_accuracy": 0.0,
        "then_accuracy": 0.9,
        "then_scored": 0.0,
        "then_cost": 0.0,
        "confidence": pytest.approx(0.2),
        "escalated": True,
        "explored": False,
        "agreed": True,
        "signal": "answer-probability",  # the signal that read the confidence, whose correction the score teaches
    }
    _, zy = _firsts(router)
    router.feedback(answer.decision_id, 1.0)
    assert _firsts(router)[1][-1] == pytest.approx(zy[-1] + 1.0 - 0.2)
    then = router.learner_.escalation_.thens_["small->big"]
    assert then.tolist() == [pytest.approx(1.0 - 0.9), 1.0]


def test_a_disagreement_with_a_right_second_answer_labels_the_first_wrong() -> None:
    router = _router(0.2)
    answer = router.generate(ASK, max_new_tokens=8)
    assert answer.chain[-1].agreed is False
    router.feedback(answer.decision_id, 1.0)
    assert _firsts(router)[1][-1] == pytest.approx(0.0 - 0.2)


def test_a_disagreement_with_a_wrong_second_answer_teaches_the_first_nothing() -> None:
    router = _router(0.2)
    zz, zy = _firsts(router)
    answer = router.generate(ASK, max_new_tokens=8)
    assert answer.chain[-1].agreed is False
    router.feedback(answer.decision_id, 0.2)
    new_zz, new_zy = _firsts(router)
    assert np.array_equal(new_zz, zz) and np.array_equal(new_zy, zy)
    then = router.learner_.escalation_.thens_["small->big"]
    assert then.tolist() == [pytest.approx(0.2 - 0.9), 1.0]  # the second model's offset still learns


# ---- 4. the learned escalation rule -------------------------------------------------------------
def _model(keep_rate: float = 0.0, seed: int | None = 0) -> EscalationModel:
    model = EscalationModel(2, keep_rate=keep_rate, seed=seed)
    model.add("small", "small->big")
    return model


def _decide(model: EscalationModel, confidence: float | None, x: np.ndarray | None = None) -> Verdict:
    context = np.array([1.0, 0.0]) if x is None else x
    return model.decide("small", "small->big", context, confidence, then_accuracy=0.8, then_cost=0.1, value_scale=0.6)


def test_an_uninformative_confidence_is_learned_away() -> None:
    model, x = _model(), np.array([1.0, 0.0])
    assert model.probability("small", x, 0.2) == pytest.approx(0.2)
    assert _decide(model, 0.2).escalate
    for c in np.linspace(0.0, 1.0, 101):  # the first model is right whatever its confidence
        assert (
            model.learn("small", "small->big", x, float(c), escalated=False, score=1.0, then_accuracy=None, agreed=None)
            == "kept"
        )
    assert model.probability("small", x, 0.2) > 0.9
    assert not _decide(model, 0.2).escalate and not _decide(model, 0.05).escalate


def test_an_overconfident_first_model_is_learned_to_escalate() -> None:
    model, x = _model(), np.array([0.0, 1.0])
    assert not _decide(model, 0.9, x).escalate
    for i in range(300):  # confidence 0.9, right three times in ten
        model.learn_first("small", x, 0.9, 1.0 if i % 10 < 3 else 0.0)
    assert model.probability("small", x, 0.9) == pytest.approx(0.3, abs=0.02)
    verdict = _decide(model, 0.9, x)
    assert verdict.escalate and verdict.probability == pytest.approx(0.3, abs=0.02)


def test_exploration_keeps_some_answers_that_would_escalate() -> None:
    def verdicts(seed: int) -> list[Verdict]:
        model = _model(keep_rate=0.2, seed=seed)
        return [_decide(model, 0.0) for _ in range(2000)]

    first = verdicts(3)
    explored = [v.explored for v in first]
    assert all(not v.escalate for v in first if v.explored)
    assert all(v.escalate for v in first if not v.explored)
    assert 0.17 < sum(explored) / len(explored) < 0.23
    assert [v.explored for v in verdicts(3)] == explored  # the seed fixes it
    assert not any(_decide(_model(keep_rate=0.2), 0.99).explored for _ in range(100))  # only would-escalate


def test_the_learn_labels_follow_the_stated_proxy() -> None:
    model, x = _model(), np.array([1.0, 0.0])

    def learn(score: float, agreed: bool | None) -> str | None:
        return model.learn("small", "small->big", x, 0.3, escalated=True, score=score, then_accuracy=0.8, agreed=agreed)

    assert learn(1.0, True) == "agreed"
    assert learn(0.9, False) == "disagreed"
    assert learn(0.4, False) is None
    assert learn(1.0, None) is None
    assert model.thens_["small->big"].tolist() == [pytest.approx(0.2 + 0.1 - 0.4 + 0.2), 4.0]
    assert learn(0.5, False) == "disagreed"  # the boundary: a score of 0.5 counts as right


def test_then_prior_shrinks_the_second_models_offset_towards_zero() -> None:
    x = np.array([1.0, 0.0])
    verdicts = {}
    for then_prior in (1.0, 10.0):
        model = EscalationModel(2, keep_rate=0.0, then_prior=then_prior, seed=0)
        model.add("small", "small->big")
        for _ in range(5):  # the second model scored 0.5 below its estimate on each escalated query
            model.learn_then("small->big", 0.8, 0.3)
        assert model.then_offset("small->big") == pytest.approx(5 * -0.5 / (5 + then_prior))
        verdicts[then_prior] = model.decide(
            "small", "small->big", x, 0.4, then_accuracy=0.8, then_cost=0.05, value_scale=1.0
        )
    assert verdicts[1.0].gain == pytest.approx(0.8 - 2.5 / 6 - 0.4) and not verdicts[1.0].escalate
    assert verdicts[10.0].gain == pytest.approx(0.8 - 2.5 / 15 - 0.4) and verdicts[10.0].escalate


def test_the_second_model_counts_as_always_right_until_informed_after_scores() -> None:
    x = np.array([1.0, 0.0])

    def gain(informed_after: int, then_scored: float | None, offset: float = 0.0) -> float:
        model = EscalationModel(2, keep_rate=0.0, informed_after=informed_after, then_prior=1.0, seed=0)
        model.add("small", "small->big")
        if offset:
            model.learn_then("small->big", 0.5, 0.5 + 2 * offset)  # one answer: the offset is half its residual
        verdict = model.decide(
            "small", "small->big", x, 0.6, then_accuracy=0.5, then_cost=0.1, value_scale=1.0, then_scored=then_scored
        )
        assert verdict.escalate is (verdict.gain > 0.1)
        return verdict.gain

    # below informed_after the second model's estimate (0.5) counts as 1, its offset still added
    assert [gain(3, scored) for scored in (0, 2.0)] == [pytest.approx(1.0 - 0.6)] * 2
    assert gain(3, 2, offset=-0.2) == pytest.approx(1.0 - 0.2 - 0.6)
    assert [gain(3, scored) for scored in (3, 4.0, None)] == [pytest.approx(0.5 - 0.6)] * 3  # None: trusted
    assert gain(0, 0) == pytest.approx(0.5 - 0.6)  # trusted at once


def test_a_cascade_escalates_to_an_untried_second_model_until_informed_after_scores() -> None:
    router = _router(0.5, then_accuracy=0.3)  # the second model's estimate is below the first answer's confidence
    router.learner_.escalation_.informed_after = 2
    actions = []
    for _ in range(4):
        answer = router.generate(ASK, max_new_tokens=8)
        actions.append([step.action for step in answer.chain])
        router.feedback(answer.decision_id, 1.0)
    assert actions == [["escalated", "answered"]] * 2 + [["kept"]] * 2


def test_the_escalation_model_checks_its_arguments() -> None:
    for bad in ({"keep_rate": 1.5}, {"ridge": 0.0}, {"then_prior": -1.0}):
        with pytest.raises(InvalidInputError):
            EscalationModel(2, **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="dimension"):
        EscalationModel(0)
    with pytest.raises(InvalidInputError, match="unknown cascade"):
        _decide(EscalationModel(2), 0.5)


# ---- 5. eligibility and the pool ------------------------------------------------------------------
def test_a_requested_cascade_runs_models_that_were_not_requested() -> None:
    router = _router(arm="small")
    decision = router.route(ASK, models=["small", "small->big"])
    assert decision.model == "small" and set(decision.scores) == {"small", "small->big"}
    assert "not among the models requested" in decision.excluded["big"]
    only_small = router.route(ASK, models=["small"])
    assert "small->big" in only_small.excluded and "big" in only_small.excluded


def test_a_cascade_is_left_out_when_its_second_model_cannot_fit_the_prompt() -> None:
    features = make_hashing_extractor()
    router = GreenServRouter(
        [_small(0.5), _big(context_window=64)],
        cascades=[("small", "big")],
        features=features,
        policy="static:small",
        seed=0,
    )
    decision = router.route("What is 2 + 2? " * 10, max_new_tokens=8)
    assert decision.model == "small"
    assert "context window 64" in decision.excluded["big"]
    assert "small->big" in decision.excluded


def test_a_pinned_cascade_with_an_unavailable_member_is_refused() -> None:
    router = _router()
    big = router.backend("big")
    big.available = False  # type: ignore[attr-defined]  # a remote server that is down
    router.remove_model("small->big")  # the pool reads who reports availability when it is made
    router.add_cascade("small", "big")
    with pytest.raises(NoEligibleModelError) as error:
        router.route(ASK, models=["small->big"])
    assert "'big' is not eligible" in str(error.value)


def test_removing_a_member_removes_its_cascades() -> None:
    router = _router(arm="small")
    router.remove_model("big")
    assert router.arms == ["small"] and router.models == ["small"]
    assert "small->big" not in router.policy_.arms
    escalation = router.learner_.escalation_
    assert escalation.cascades_ == {} and escalation.firsts_ == {} and escalation.thens_ == {}
    assert router.route(ASK).model == "small"
    with pytest.raises(InvalidInputError, match="last model"):
        router.remove_model("small")


def test_removing_a_cascade_keeps_its_models() -> None:
    router = _router(arm="small")
    router.remove_model("small->big")
    assert router.arms == ["small", "big"] and router.learner_.escalation_.cascades_ == {}


def test_a_pending_cascade_decision_survives_its_removal() -> None:
    router = _router(0.2)
    decision = router.route(ASK)
    router.remove_model("small->big")
    verdict = router.escalate(decision.decision_id, 0.2)
    assert not verdict.escalate and "removed" in verdict.reason  # its second model may be gone: keep
    record = router.feedback(decision.decision_id, 1.0)
    assert not record.applied


def test_a_cascade_removed_before_its_outcome_still_teaches_its_members_that_stayed() -> None:
    """Its first model is still the one in the pool: its measured answer teaches its cost
    model, whether the outcome comes before the cascade leaves or after; the member removed
    with it learns nothing."""
    predictions = {}
    for removed_first in (False, True):
        router = _router(0.2)
        decision = router.route(ASK)
        router.escalate(decision.decision_id, 0.99)  # keeps the first answer
        if removed_first:
            router.remove_model("big")  # and with it the cascade
        router.record_outcome(decision.decision_id, energy_joules=14.0, latency_s=0.1, members=[("small", 14.0, 0.1)])
        if not removed_first:
            router.remove_model("big")
        x = router.features.extract(ASK, learn=False).vector
        predictions[removed_first] = router.learner_.energy_.predict("small", x, 6)
    assert predictions[True] is not None and predictions[True] == pytest.approx(predictions[False])


def test_a_cascade_removed_after_its_decision_expired_still_teaches_its_members_that_stayed() -> None:
    """The same when the decision left the pending store while its first model answered (the
    answer stands; its cost is learned from the decision itself): the first model, unchanged
    and still in the pool, learns the joules of its answer; before, it followed the removed
    cascade and learned nothing."""
    routers: list[GreenServRouter] = []

    def answer(messages: Sequence[Message]) -> str:
        router = routers[0]
        for pending in list(router.pending_):  # type: ignore[attr-defined]
            router.pending_.discard(pending.decision_id)  # expired while it ran
        router.remove_model("big")  # and with it the cascade
        return CHEAP

    predictions = {}
    for expired in (False, True):
        small = _small(0.99)
        if expired:
            small = FakeBackend(
                "small",
                joules_per_token=1.0,
                seconds_per_token=0.001,
                reply=answer,
                logprobs=lambda m, t: [math.log(0.99)],
            )
        router = _router(0.99, small=small)
        routers[:] = [router]
        generated = router.generate(ASK, max_new_tokens=8)  # kept: confident
        assert generated.model == "small->big" and [s.action for s in generated.chain] == ["kept"]
        if not expired:
            router.remove_model("big")
        x = router.features.extract(ASK, learn=False).vector
        predictions[expired] = router.learner_.energy_.predict("small", x, 6)
    assert predictions[True] is not None and predictions[True] == pytest.approx(predictions[False])


def test_a_cascade_removed_while_run_by_hand_keeps_its_first_answer_by_its_rule() -> None:
    router = _router(0.2)
    decision = router.route(ASK, max_new_tokens=8)
    cascade = router.backend("small->big")
    assert isinstance(cascade, CascadeBackend)
    router.remove_model("small->big")
    rule = router.escalation_rule(decision.decision_id)  # as escalate(): the learner keeps the answer
    result = cascade.generate(ASK, SHORT, rule)
    assert result.text == CHEAP and result.chain[0].action == "kept" and "removed" in result.chain[0].reason
    later = _router(0.2)
    pending = later.route(ASK, max_new_tokens=8)
    later.remove_model("small->big")
    rule = later.escalation_rule(pending.decision_id)
    later.learner_.pending_.discard(pending.decision_id)  # left the store: no threshold to fall back on, kept
    assert not rule(0.1).escalate


def test_cascades_are_added_by_pair_or_as_a_backend_of_the_pool() -> None:
    features = make_hashing_extractor()
    small, big = _small(0.5), _big()
    router = GreenServRouter([small, big], features=features, seed=0)
    router.add_model(CascadeBackend(small, big))
    assert router.arms == ["small", "big", "small->big"]
    assert router.add_cascade("big", "small") == "big->small"
    with pytest.raises(InvalidInputError, match="already in the pool"):
        router.add_cascade("small", "big")
    with pytest.raises(InvalidInputError, match="not this model of the pool"):
        router.add_model(CascadeBackend(_small(0.5), FakeBackend("other")))
    with pytest.raises(UnknownModelError):
        router.add_cascade("small", "huge")
    with pytest.raises(InvalidInputError, match="pair"):
        GreenServRouter([small, big], cascades=[("small",)], features=features)  # type: ignore[list-item]


# ---- 6. the manual path ---------------------------------------------------------------------------
def test_a_manual_cascade_escalates_once() -> None:
    router = _router()
    decision = router.route(ASK)
    assert decision.model == "small->big"
    verdict = router.escalate(decision.decision_id, 0.1)
    assert isinstance(verdict, Verdict) and verdict.escalate and verdict.probability == pytest.approx(0.1)
    assert verdict.to_dict()["escalate"] is True
    with pytest.raises(InvalidInputError, match="already decided"):
        router.escalate(decision.decision_id, 0.1)
    router.record_agreement(decision.decision_id, True)
    router.record_outcome(decision.decision_id, energy_joules=10.0, latency_s=0.1)
    assert router.feedback(decision.decision_id, 1.0).applied
    assert router.learner_.escalation_.firsts_["small"][1][-1] == pytest.approx(1.0 - 0.1)


def test_the_manual_path_refuses_what_does_not_apply() -> None:
    router = _router(arm="small")
    with pytest.raises(InvalidInputError, match="not a cascade"):
        router.escalate(router.route(ASK).decision_id, 0.5)
    router = _router()
    decision = router.route(ASK)
    with pytest.raises(InvalidInputError, match="did not escalate"):
        router.record_agreement(decision.decision_id, True)  # not decided yet
    for bad in (1.5, -0.1, True, float("nan")):
        with pytest.raises(InvalidInputError, match="confidence"):
            router.escalate(decision.decision_id, bad)
    kept = router.escalate(decision.decision_id, 1.0)
    assert not kept.escalate
    with pytest.raises(InvalidInputError, match="did not escalate"):
        router.record_agreement(decision.decision_id, False)
    other = router.route(ASK)
    router.escalate(other.decision_id, 0.1)
    with pytest.raises(InvalidInputError, match="agreed"):
        router.record_agreement(other.decision_id, "yes")  # type: ignore[arg-type]


def test_without_a_signal_the_first_models_estimate_stands_in() -> None:
    router = _router()
    decision = router.route(ASK)
    verdict = router.escalate(decision.decision_id, None)
    assert verdict.confidence is None and verdict.escalate  # the first model's estimate is 0
    assert router.pending_.get(decision.decision_id).cascade["confidence"] == 0.0  # type: ignore[index]


# ---- 7. saving and sharing ------------------------------------------------------------------------
def test_the_escalation_state_is_shared_under_its_prefix() -> None:
    router = _router(0.8, then_accuracy=0.5)
    answer = router.generate(ASK, max_new_tokens=8)
    router.feedback(answer.decision_id, 1.0)
    sums = router.statistics().sums
    keys = {key for key in sums if key.startswith("escalation/")}
    named = 'escalation/first-signal/["small", "answer-probability"]'  # the signal that read the answer
    assert keys == {
        "escalation/first/small/zz",  # what was taught with no signal's name (and by older versions)
        "escalation/first/small/zy",
        f"{named}/zz",
        f"{named}/zy",
        "escalation/then/small->big",
        "escalation/then-labelled/small->big",  # beside the offset, so older replicas read what they know
    }
    assert np.array_equal(sums["escalation/first/small/zy"] + sums[f"{named}/zy"], _firsts(router)[1])
    fresh = _router(0.8, then_accuracy=0.5)
    fresh.update_statistics(lambda _: router.statistics())
    assert np.array_equal(_firsts(fresh)[1], _firsts(router)[1])


def test_a_pending_cascade_plan_round_trips() -> None:
    router = _router()
    decision = router.route(ASK)
    router.escalate(decision.decision_id, 0.3)
    pending = router.pending_.get(decision.decision_id)
    again = PendingDecision.from_dict(pending.to_dict())
    assert again.cascade == pending.cascade and again.cascade is not None and again.cascade["escalated"]


def _trained(tmp_path: Path, keep_rate: float = 0.0, **settings: Any) -> tuple[GreenServRouter, Path]:
    features = make_hashing_extractor()
    router = GreenServRouter(
        [_small(0.3), _big()],
        cascades=[("small", "big")],
        features=features,
        policy="static:small->big",
        seed=0,
        escalation=EscalationModel(features.dimension, keep_rate=keep_rate, seed=0, **settings),
    )
    for _ in range(3):
        answer = router.generate(ASK, max_new_tokens=8)
        router.feedback(answer.decision_id, 1.0)
    path = tmp_path / "router.json"
    router.save(path)
    return router, path


def test_a_saved_router_keeps_its_cascade_and_escalation_state(tmp_path: Path) -> None:
    router, path = _trained(tmp_path)
    loaded = GreenServRouter.load(path, [_small(0.3), _big()], features=router.features)
    assert loaded.arms == ["small", "big", "small->big"] and loaded.models == ["small", "big"]
    for before, after in zip(_firsts(router), _firsts(loaded), strict=True):
        assert np.array_equal(before, after)
    assert loaded.learner_.escalation_.cascades_ == {"small->big": "small"}
    assert loaded.generate(ASK, max_new_tokens=8).model == "small->big"


def test_a_saved_router_keeps_its_escalation_settings(tmp_path: Path) -> None:
    router, path = _trained(tmp_path, keep_rate=0.0, ridge=2.0, then_prior=3.0, informed_after=4)
    loaded = GreenServRouter.load(path, [_small(0.3), _big()], features=router.features)
    settings = {"keep_rate": 0.0, "ridge": 2.0, "then_prior": 3.0, "informed_after": 4, "seed": 0}
    assert loaded.learner_.escalation_.params() == settings


def test_the_saved_state_holds_the_escalation_state(tmp_path: Path) -> None:
    router, _ = _trained(tmp_path)
    state = router.state_dict()
    assert state["escalation"]["cascades"] == {"small->big": "small"}
    assert state["escalation"]["keep_rate"] == 0.0
    assert list(state["policy"]["arms"]) == ["small", "big", "small->big"]


# ---- 8. agreement -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        ("B) Paris", "b", True),
        ("42", "42.", True),
        ("42", "41", False),
        ("Yes", "yes, it is", True),
        ("The capital of France is Paris.", "Paris is the capital of France", True),
        ("The capital of France is Paris.", "Berlin is a large German city today", False),
        ("", "", True),
        ("", "something", False),
        ("...", "x", False),
        ("The answer is 41.", "The answer is 42.", False),  # the same words around two numbers
        ("The answer is 42.", "42", True),
        ("It costs 1,200 J.", "1200", True),
        ("Answer: B", "B", True),
        ("The answer is (C).", "c) Rome", True),
        ("A dog", "A cat", False),  # an article, not a choice
        ("No.", "yes", False),
        ("True", "yes", True),
        ("Paris", "Paris, the capital", True),
        ("Paris", "It is London", False),
        ("Sydney", "Canberra, not Sydney.", False),  # named to be rejected, not agreed with
        ("9" * 400, "9" * 400, True),  # a number too long for a float is still compared, never a crash
        ("Mercury", "Venus is hotter than Mercury", False),
        ("The answer is 3/4.", "The answer is 1/4.", False),  # a fraction is one number
        ("The answer is 3/4.", "0.75", True),
        ("The answer is a dog", "Answer: A", False),  # the article is no choice
        ("e.g. 42", "42", True),  # nor is an abbreviation
        ("Pages 3-5", "pages 3 to 5", True),  # a dash between numbers is no sign
        ("1" * 20 + "0", "1" * 20 + "1", False),  # long numbers compared exactly
        ("9" * 5000, "9" * 5000, True),  # longer than int() reads: never a crash
        ("the answer is b.", "(B)", True),
        ("C. S. Lewis", "C. S. Forester", False),  # initials are no choice
        ("Answer: E. B. White", "E. E. Cummings", False),
        ("Answer: A kangaroo", "Answer: A koala", False),  # nor is the article after "Answer:"
        ("The answer is A because it is a marsupial", "(A)", True),  # a choice with its reason
        ("The answer is \u22123.", "The answer is 3.", False),  # a minus sign written as one
        ("The answer is \u22123.", "-3", True),
        ("four", "4", True),  # a number in words is that number
        ("The answer is Twenty-One.", "21", True),
        ("twenty one", "21.0", True),
        ("ninety-nine", "99", True),
        ("a hundred and five", "105", True),
        ("two thousand", "2,000", True),
        ("zero", "0", True),
        ("Step one: add them, so there are four.", "4", True),  # the last number in words
        ("Step 1: add them, so there are four.", "4", True),  # the last number, in digits or words
        ("There are four, 3 of them red.", "3", True),
        # the pronoun "one" is no number, unless it is the whole answer
        ("The one you mean is Canberra.", "Sydney is the largest one, not the capital.", False),
        ("Mercury is the one closest to the Sun.", "Venus: the hottest one.", False),
        ("So the total is forty-five; that is the right one.", "The answer is 45.", True),
        ("She has 12 cookies left, one for each day.", "12", True),
        ("One.", "1", True),
        ("The answer is **one**.", "1", True),
        ("Answer: one", "one", True),
        ("one hundred", "100", True),
        ("a hundred and one", "101", True),
        ("one thousand", "1,000", True),
        ("four", "5", False),
        ("twenty-first", "20", False),  # an ordinal is no number
        ("E. Paris", "(e)", True),  # a choice with its option's text
        ("B. the mitochondria", "B) mitochondria", True),  # its text in lower case too, as scoring reads it
        ("Answer: C. all of the above", "C", True),
        ("The answer is B. the mitochondria", "(b)", True),
        ("D. none of the above", "D) None of the above", True),
        ("E. coli", "(E)", True),  # a known limit: a name's initial before a lower-case word reads as a choice
        ("B. because it is blue", "Answer: B", True),  # a choice with its reason
        ("E:", "e)", True),
        ("**B. dog**", "The answer is **(b)**", True),  # emphasis read through, as scoring reads it
        ("**B. dog**", "C", False),
    ],
)
def test_answers_agree(first: str, second: str, agree: bool) -> None:
    assert answers_agree(first, second) is agree
    assert answers_agree(second, first) is agree


def test_spaces_after_answer_are_read_in_linear_time() -> None:
    """``"answer"`` then many spaces took seconds (10,000 spaces: 2 s; 100,000: minutes)."""
    started = time.perf_counter()
    assert final_answer("the answer is" + " " * 50_000 + "!") is None
    assert final_answer("one by one, " * 5_000) is None  # each "one" read the whole text again (7 s at 48k)
    assert time.perf_counter() - started < 1.0


def test_the_agreement_threshold_is_a_word_f1() -> None:
    first, second = "red green blue pink", "red green grey gold"  # F1 0.5 (not number words: they are numbers)
    assert answers_agree(first, second)
    assert not answers_agree(first, second, threshold=0.6)


# ---- a cascade requested by name, the adapters and the chat line ------------------------------
def test_a_query_may_request_a_cascade_by_name_alone() -> None:
    router = GreenServRouter(
        [_small(0.2), _big()], cascades=[("small", "big")], features=make_hashing_extractor(), seed=0
    )
    answer = router.generate(ASK, models=["small->big"], max_new_tokens=8)
    assert answer.model == "small->big" and [s.model for s in answer.chain] == ["small", "big"]
    # the models it runs were not offered on their own
    assert set(answer.decision.scores) == {"small->big"}
    assert answer.decision.excluded["small"] == answer.decision.excluded["big"]


@pytest.fixture
def hashing_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routers the adapters build get the dependency-free hashing features."""
    from greenserv_core import FeatureExtractor

    monkeypatch.setattr(FeatureExtractor, "default", classmethod(lambda cls, **kwargs: make_hashing_extractor()))


@pytest.mark.usefixtures("hashing_features")
def test_chat_greenserv_cascades_transparently() -> None:
    from langchain_greenserv import ChatGreenServ

    llm = ChatGreenServ(models=[_small(0.2), _big()], cascades=[("small", "big")], max_tokens=8, seed=0)
    message = llm.invoke("What is 2 + 2?", model="small->big")
    record = message.response_metadata["greenserv"]
    assert message.content == STRONG and record["model"] == "small->big"
    assert [step["model"] for step in record["chain"]] == ["small", "big"]
    assert record["energy_joules"] == pytest.approx(sum(step["energy_joules"] for step in record["chain"]))
    assert llm.feedback(message, 1.0).model == "small->big"  # the score reaches the cascade's decision
    # a stream of an escalated answer (the rule never keeps one to explore here)
    streaming = ChatGreenServ(router=_router(0.2, arm="small->big"), max_tokens=8)
    chunks = list(streaming.stream("What is 2 + 2?", model="small->big"))
    assert CHEAP not in "".join(str(chunk.content) for chunk in chunks)
    assert "".join(str(chunk.content) for chunk in chunks) == STRONG


def test_an_adapter_refuses_cascades_beside_a_ready_router() -> None:
    from langchain_greenserv import ChatGreenServ

    router = GreenServRouter([_small(0.2), _big()], features=make_hashing_extractor(), seed=0)
    with pytest.raises(ValueError, match="add_cascade"):
        ChatGreenServ(router=router, cascades=[("small", "big")])


@pytest.mark.usefixtures("hashing_features")
def test_greenserv_llm_streams_only_the_kept_answer() -> None:
    from llama_index_greenserv import GreenServLLM

    llm = GreenServLLM(models=[_small(0.2), _big()], cascades=[("small", "big")], max_tokens=8, seed=0)
    pieces = list(llm.stream_complete("What is 2 + 2?", model="small->big"))
    assert "".join(p.delta or "" for p in pieces) == STRONG
    final = pieces[-1].raw
    assert final is not None and [step["action"] for step in final["chain"]] == ["escalated", "answered"]
    assert llm.feedback(pieces[-1], 0.0).model == "small->big"


def test_the_chat_line_describes_the_chain(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core import cli
    from greenserv_core.models import pool

    monkeypatch.setattr(pool, "build_backends", lambda names, meter="auto", option=None: [_small(0.2), _big()])
    from greenserv_core import FeatureExtractor

    monkeypatch.setattr(FeatureExtractor, "default", classmethod(lambda cls, **kwargs: make_hashing_extractor()))
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("What is 2 + 2?\n\n"))
    assert cli.main(["chat", "--interactive", "--cascade", "small->big", "--strategy", "static:small->big"]) == 0
    out = capsys.readouterr().out
    assert "cascades small->big" in out
    assert "chain: small (confidence 0.20, " in out and "escalated → big (" in out


# ---- review fixes: members' costs, failures inside a cascade, removal, dimensions -----------------
def test_an_escalated_cascade_teaches_each_models_cost_model() -> None:
    router = _router(0.2)
    answer = router.generate(ASK, max_new_tokens=8)
    assert [s.action for s in answer.chain] == ["escalated", "answered"]
    x = answer.decision.features.vector
    tokens = answer.decision.features.prompt_tokens
    for step in answer.chain:  # each model of the chain learned what it spent
        assert router.energy_.predict(step.model, x, tokens) == pytest.approx(step.energy_joules, rel=0.2)


def test_escalated_scores_count_as_the_second_models_evidence() -> None:
    router = _router(0.2)
    router.learner_.escalation_.informed_after = 2
    for _ in range(2):
        router.feedback(router.generate(ASK, max_new_tokens=8).decision_id, 1.0)
    assert router.route(ASK, max_new_tokens=8).model == "small->big"
    plan = router.pending_.get(router.generate(ASK, max_new_tokens=8).decision_id).cascade
    assert plan is not None and plan["then_scored"] == 2.0


class _Down(FakeBackend):
    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> Any:
        from greenserv_core.errors import ModelUnavailableError

        raise ModelUnavailableError(f"{self.info.name} is down")


class _Preferring(StaticPolicy):
    """Its arm when eligible, else the first eligible one."""

    def _choose(self, scores: Mapping[str, ArmScore]) -> tuple[str, bool]:
        return (self.arm if self.arm in scores else next(iter(scores))), False


def test_a_failing_member_is_routed_around_not_only_its_cascade() -> None:
    features = make_hashing_extractor()
    down = _Down("small", reply=lambda m: CHEAP)
    router = GreenServRouter(
        [down, _big(), FakeBackend("other", reply=lambda m: "other answer")],
        cascades=[("small", "big"), ("small", "other")],
        features=features,
        policy=_Preferring(features.dimension, arm="small->big"),
        seed=0,
    )
    answer = router.generate(ASK, max_new_tokens=8)
    assert answer.model in {"big", "other"}  # neither cascade through the failed model was tried again
    assert "small" in answer.decision.excluded and "small->other" in answer.decision.excluded


def test_the_escalation_model_must_match_the_features() -> None:
    features = make_hashing_extractor()
    with pytest.raises(InvalidInputError, match="dimension"):
        GreenServRouter([_small(0.5), _big()], features=features, escalation=EscalationModel(3))


def test_a_saved_cascade_keeps_its_own_confidence_signal(tmp_path: Path) -> None:
    from greenserv_core.confidence import AnswerProbability, signal_from_name
    from greenserv_core.errors import StateFileError
    from greenserv_core.routing.saved import write_router_state

    features = make_hashing_extractor()
    router = GreenServRouter([_small(0.5), _big()], features=features, seed=0)
    router.add_cascade("small", "big", signal=AnswerProbability(first_tokens=1))
    path = tmp_path / "router.json"
    router.save(path)
    loaded = GreenServRouter.load(path, [_small(0.5), _big()], features=features)
    cascade = loaded.backend("small->big")
    assert isinstance(cascade, CascadeBackend) and cascade.signal is not None
    assert cascade.signal.name == "first-1-token-probability"
    state = router.state_dict()
    state["cascades"] = [["small", "big", "mood-ring"]]
    write_router_state(path, state)
    with pytest.raises(StateFileError, match="mood-ring"):  # an unknown signal is refused, not replaced
        GreenServRouter.load(path, [_small(0.5), _big()], features=features)
    with pytest.raises(InvalidInputError, match="no bundled confidence signal"):
        signal_from_name("token-quantile-x")


def test_the_escalation_rule_and_the_policy_draw_independent_numbers_from_one_seed() -> None:
    features = make_hashing_extractor()
    router = GreenServRouter(
        [_small(0.2), _big()], cascades=[("small", "big")], features=features, policy="epsilon", seed=0
    )
    policy_rng = router.learner_.policy_.rng_  # type: ignore[attr-defined]
    escalation_rng = router.learner_.escalation_.rng_
    assert not np.array_equal(policy_rng.random(8), escalation_rng.random(8))
    again = EscalationModel(features.dimension, seed=0)
    assert np.array_equal(again.rng_.random(8), EscalationModel(features.dimension, seed=0).rng_.random(8))


def test_a_cascade_keeps_its_first_answer_where_escalating_would_break_max_joules() -> None:
    def unsure_when_hard(messages: Sequence[Message], text: str) -> list[float]:
        return [-4.0] if "hard" in str(messages[-1]["content"]) else [-0.01]

    small = FakeBackend("small", joules_per_token=2.0, reply=lambda m: "7", logprobs=unsure_when_hard)
    big = FakeBackend("big", joules_per_token=3.0, reply=lambda m: "8")
    router = GreenServRouter([small, big], features=make_hashing_extractor(), cascades=[("small", "big")], seed=0)
    for _ in range(30):  # the cascade learns its cost on easy questions, which it keeps
        answer = router.generate("What is 3 + 5 easy?", models=["small->big"], max_new_tokens=4)
        router.feedback(answer.decision_id, 1.0)
    for _ in range(5):  # both models measured alone: 16 J and 24 J
        for model in ("small", "big"):
            router.feedback(router.generate("What is 3 + 5 easy?", models=[model], max_new_tokens=4).decision_id, 1.0)
    ask = "What is 3 + 5 hard?"
    loose = []
    while len(loose) < 10 and (not loose or loose[-1].chain[0].action != "escalated"):  # some are kept to explore
        loose.append(router.generate(ask, models=["small->big"], max_new_tokens=4, max_joules=50.0))
    assert [step.action for step in loose[-1].chain] == ["escalated", "answered"]
    capped = [router.generate(ask, models=["small->big"], max_new_tokens=4, max_joules=30.0) for _ in range(3)]
    assert all([step.action for step in a.chain] == ["kept"] and a.energy_joules <= 30.0 for a in capped)
    assert all("above the cap of 30.0 J" in a.chain[0].reason for a in capped)


def test_a_cascade_saved_with_a_signal_of_ones_own_loads_with_it(tmp_path: Path) -> None:
    from greenserv_core.errors import StateFileError

    class ShortIsSure:
        name = "short-is-sure"

        def __call__(self, result: Any) -> float:
            return 1.0 if len(result.text) < 5 else 0.2

    def pool() -> list[FakeBackend]:
        return [FakeBackend("small", reply=lambda m: "7"), FakeBackend("big", reply=lambda m: "8")]

    router = GreenServRouter(
        pool(), features=make_hashing_extractor(), seed=0, cascades=[("small", "big")], cascade_signal=ShortIsSure()
    )
    router.feedback(router.generate("2 + 5?", max_new_tokens=4).decision_id, 1.0)
    router.save(tmp_path / "state.json")
    with pytest.raises(
        StateFileError, match=r"signal 'short-is-sure', which is not bundled: pass it to load"
    ) as caught:
        GreenServRouter.load(tmp_path / "state.json", pool(), features=make_hashing_extractor())
    assert str(tmp_path / "state.json") in str(caught.value)  # the file is named
    signal = ShortIsSure()
    loaded = GreenServRouter.load(
        tmp_path / "state.json", pool(), features=make_hashing_extractor(), cascade_signals=[signal]
    )
    cascade = loaded.backend("small->big")
    assert isinstance(cascade, CascadeBackend) and cascade.signal is signal


def test_a_model_that_joins_again_under_a_name_is_not_trusted_for_the_names_old_scores(tmp_path: Path) -> None:
    router = GreenServRouter([_small(0.9), _big()], features=make_hashing_extractor(), seed=0)
    for _ in range(12):
        answer = router.generate(ASK, models=["big"], max_new_tokens=8)
        router.feedback(answer.decision_id, 1.0)
    router.remove_model("big")
    router.add_model(_big())
    router.add_cascade("small", "big")
    assert router.stats_["big"]["feedback"] == 12  # the name's history stays
    assert router.learner_._then_scored("small->big", "big") == 0  # the model now under it was never scored
    answer = router.generate(ASK, models=["big"], max_new_tokens=8)
    router.feedback(answer.decision_id, 1.0)
    assert router.learner_._then_scored("small->big", "big") == 1
    path = tmp_path / "router.json"
    router.save(path)
    loaded = GreenServRouter.load(path, [_small(0.9), _big()], features=make_hashing_extractor())
    assert loaded.learner_._then_scored("small->big", "big") == 1  # saved with the state


def test_an_escalated_stream_that_fails_midway_charges_both_models() -> None:
    from greenserv_core.errors import ModelUnavailableError

    class DiesMidStream(FakeBackend):
        def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
            yield StreamChunk(delta="strong ")
            raise ModelUnavailableError("connection reset mid-stream", spent_joules=7.0)

    features = make_hashing_extractor()
    small = _small(0.2)
    big = DiesMidStream("big", joules_per_token=5.0, reply=lambda m: "strong answer here")
    router = GreenServRouter(
        [small, big],
        cascades=[("small", "big")],
        features=features,
        policy=PinnedPolicy(features.dimension, arm="small->big", then_accuracy=0.9),
        seed=0,
        energy_budget="1000J/query",
        escalation=EscalationModel(features.dimension, keep_rate=0.0, informed_after=0, seed=0),
    )
    first = small.generate(ASK, GenerationSettings(max_new_tokens=8, logprobs=True)).energy.joules
    with pytest.raises(ModelUnavailableError, match="mid-stream"):
        list(router.stream(ASK, max_new_tokens=8))
    assert router.budget_ is not None and router.budget_.spent_joules == pytest.approx(first + 7.0)


# ---- review fixes (2026-12-05) ----------------------------------------------------------------------
class _OverEstimating(PinnedPolicy):
    """As :class:`PinnedPolicy`, with the first model's accuracy estimated past 1 (a linear
    estimate can pass it, by a rounding error or early on by far)."""

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        return {arm: (self.then_accuracy if arm == "big" else 1.0000000000000002, 0.0) for arm in arms}


def test_feedback_on_a_cascade_whose_first_model_gives_no_confidence_takes_the_estimate_within_0_and_1() -> None:
    from greenserv_core import LabelledAnswer

    router = _router(None, policy=_OverEstimating)
    answer = router.generate(ASK, max_new_tokens=8)
    record = router.feedback(answer.decision_id, 1.0)  # raised: confidence 1.0000000000000002
    assert record.applied and record.reward is not None
    answers = {
        "small": LabelledAnswer(score=1.0, energy_joules=5.0, latency_s=0.1),
        "big": LabelledAnswer(score=1.0, energy_joules=50.0, latency_s=1.0),
    }
    router.learn_answers(ASK, answers)  # raised after teaching the models, before the cascade
    assert router.stats_["small"]["labelled"] == router.stats_["small->big"]["labelled"] == 1


def test_a_failed_verification_charges_the_answer_it_was_to_check() -> None:
    from greenserv_core.confidence import SelfVerification
    from greenserv_core.errors import ModelUnavailableError

    class DownOnItsSecondCall(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings):  # type: ignore[no-untyped-def]
            if self.calls >= 1:
                self.calls += 1
                raise ModelUnavailableError("down", spent_joules=0.5, spent_s=0.01)
            return super().generate(messages, settings)

    small = DownOnItsSecondCall("small", joules_per_token=1.0, reply=lambda m: CHEAP)
    answered = FakeBackend("twin", joules_per_token=1.0, reply=lambda m: CHEAP).generate(ASK, SHORT)
    with pytest.raises(ModelUnavailableError) as failed:
        CascadeBackend(small, _big(), signal=SelfVerification()).generate(ASK, SHORT)
    assert failed.value.spent_joules == pytest.approx(answered.energy.joules + 0.5)  # was 0.5


def test_a_batch_routed_to_a_cascade_runs_as_many_at_once_as_its_models_serve() -> None:
    from greenserv_core.backends.base import concurrency_of

    small, big = _small(0.2), _big()
    small.max_concurrency, big.max_concurrency = 8, 3  # type: ignore[attr-defined]
    assert concurrency_of(CascadeBackend(small, big)) == 3  # was 1
    assert concurrency_of(CascadeBackend(_small(0.2), _big())) == 1


def test_the_cascades_offered_now_follow_the_pool() -> None:
    router = _router()
    router.add_model(FakeBackend("other"))
    router.add_cascade("small", "other")
    router.remove_model("big")
    assert router.cascade_pairs == [("small", "other")] and router.cascades == [("small", "big")]  # as given


# ---- the second model fails before it answers: the first answer is kept (2026-12-06) -----------------
class _DownAfterCharging(FakeBackend):
    """Fails every call before answering, having spent 3 J and 0.2 s."""

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> Any:
        from greenserv_core.errors import ModelUnavailableError

        raise ModelUnavailableError(f"{self.info.name} is down", spent_joules=3.0, spent_s=0.2)

    def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
        self.generate(messages, settings)
        yield StreamChunk("never")


def test_a_cascade_whose_second_model_fails_keeps_the_first_answer_and_counts_the_failed_call() -> None:
    from greenserv_core.errors import CascadeMemberUnavailableError

    small = _small(0.2)
    alone = small.generate(ASK, GenerationSettings(max_new_tokens=8, logprobs=True))
    result = CascadeBackend(small, _DownAfterCharging("big"), threshold=0.5).generate(ASK, SHORT)
    assert result.text == CHEAP  # raised CascadeMemberUnavailableError
    assert [(s.model, s.action) for s in result.chain] == [("small", "kept")]
    assert result.chain[0].reason.startswith("escalation failed: big is down")
    assert result.energy.joules == pytest.approx(alone.energy.joules + 3.0)
    assert result.latency_s == pytest.approx(alone.latency_s + 0.2)
    assert result.chain[0].energy_joules == pytest.approx(alone.energy.joules)  # the first model's own cost
    pieces = list(CascadeBackend(small, _DownAfterCharging("big"), threshold=0.5).stream(ASK, SHORT))
    assert "".join(p.delta for p in pieces) == CHEAP and pieces[-1].result is not None
    assert pieces[-1].result.energy.joules == pytest.approx(alone.energy.joules + 3.0)
    strict = CascadeBackend(small, _DownAfterCharging("big"), threshold=0.5, keep_first_on_failure=False)
    with pytest.raises(CascadeMemberUnavailableError, match="big is down"):
        strict.generate(ASK, SHORT)
    with pytest.raises(CascadeMemberUnavailableError, match="big is down"):
        list(strict.stream(ASK, SHORT))
    with pytest.raises(InvalidInputError, match="keep_first_on_failure"):
        CascadeBackend(small, _big(), keep_first_on_failure="yes")  # type: ignore[arg-type]


def _router_whose_second_model_is_down() -> GreenServRouter:
    return _router(0.2, big=_DownAfterCharging("big", joules_per_token=5.0))


def test_in_a_router_the_kept_first_answer_is_learned_as_kept_not_as_the_escalations_outcome() -> None:
    router = _router_whose_second_model_is_down()
    answer = router.generate(ASK, max_new_tokens=8)
    assert answer.model == "small->big" and answer.text == CHEAP  # was routed to "small" after the failure
    assert answer.chain[0].action == "kept" and not answer.failed_attempts
    plan = router.pending_.get(answer.decision_id).cascade
    assert plan is not None and plan["escalated"] is False  # was True: the score would have taught "big"'s offset
    before = router.learner_.escalation_.thens_["small->big"].copy()
    zz, _ = _firsts(router)
    router.feedback(answer.decision_id, 1.0)
    assert np.array_equal(router.learner_.escalation_.thens_["small->big"], before)
    assert not np.array_equal(_firsts(router)[0], zz)  # the first model's answer was labelled by the score
    streamed = _router_whose_second_model_is_down()  # scored while it streams, before its outcome is recorded
    before = streamed.learner_.escalation_.thens_["small->big"].copy()
    stream = streamed.stream(ASK, max_new_tokens=8)
    streamed.feedback(next(stream).decision.decision_id, 1.0)
    assert [s.action for s in list(stream)[-1].generation.chain] == ["kept"]  # type: ignore[union-attr]
    assert np.array_equal(streamed.learner_.escalation_.thens_["small->big"], before)  # taught "big"'s offset


def test_an_escalated_stream_scored_before_it_ends_still_learns_its_cost() -> None:
    router = _router(0.2)
    stream = router.stream(ASK, max_new_tokens=8)
    first = next(stream)
    assert router.feedback(first.decision.decision_id, 1.0).applied
    rest = list(stream)  # raised DecisionAlreadyScoredError at its end
    assert rest[-1].generation is not None and rest[-1].generation.model == "small->big"
    assert router.stats_["small->big"]["energy_joules"] > 0  # was 0: the outcome was never recorded
    assert not router.learner_.pending_._awaiting  # type: ignore[attr-defined]


def test_a_cascade_run_by_hand_teaches_its_models_their_costs_as_generate_does() -> None:
    automatic, by_hand = _router(0.2), _router(0.2)
    routed = automatic.generate(ASK, max_new_tokens=8)
    decision = by_hand.route(ASK, max_new_tokens=8)
    cascade = by_hand.backend(decision.model)
    assert isinstance(cascade, CascadeBackend)
    result = cascade.generate(ASK, SHORT, lambda c: by_hand.escalate(decision.decision_id, c))
    by_hand.record_agreement(decision.decision_id, bool(result.chain[-1].agreed))
    by_hand.record_outcome(
        decision.decision_id,
        energy_joules=result.energy.joules,
        latency_s=result.latency_s,
        members=[(s.model, s.energy_joules, s.latency_s) for s in result.chain],
    )
    x, tokens = routed.decision.features.vector, routed.decision.features.prompt_tokens
    for model in ("small", "big", "small->big"):  # by hand, the members learned nothing
        learned = by_hand.energy_.predict(model, x, tokens)
        assert learned is not None and learned == pytest.approx(automatic.energy_.predict(model, x, tokens))


def test_a_cascades_threshold_and_failure_setting_are_saved(tmp_path: Path) -> None:
    features = make_hashing_extractor()
    router = GreenServRouter([_small(0.5), _big()], features=features, seed=0)
    router.add_cascade("small", "big", threshold=0.9, keep_first_on_failure=False)
    router.save(tmp_path / "router.json")
    loaded = GreenServRouter.load(tmp_path / "router.json", [_small(0.5), _big()], features=features)
    cascade = loaded.backend("small->big")
    assert isinstance(cascade, CascadeBackend)
    assert (cascade.threshold, cascade.keep_first_on_failure) == (0.9, False)  # were the defaults after a load


def test_labelled_answers_teach_a_cascade_what_its_cap_lets_it_do() -> None:
    from greenserv_core import LabelledAnswer

    router = GreenServRouter(
        [FakeBackend("small", joules_per_token=1.0, logprobs=lambda m, t: [-3.0]), _big()],
        features=make_hashing_extractor(),
        seed=0,
        tradeoff=0.2,
        max_joules=150.0,
        cascades=[("small", "big")],
    )
    router.learn(ASK, "small", energy_joules=16.0, latency_s=0.1)
    router.learn(ASK, "big", energy_joules=144.0, latency_s=0.5)
    routed = router.generate(ASK, models=["small->big"], max_new_tokens=8)
    assert [s.action for s in routed.chain] == ["kept"] and "above the cap" in routed.chain[0].reason
    answers = {
        "small": LabelledAnswer(score=0.0, energy_joules=16.0, latency_s=0.1, confidence=0.05),
        "big": LabelledAnswer(score=1.0, energy_joules=144.0, latency_s=0.5),
    }
    assert router.learn_answers(ASK, answers) == {"small->big": False}  # was True: an escalation never allowed


@pytest.mark.parametrize(("question_joules", "escalated"), [(0.0, True), (20.0, False)])
def test_a_labelled_answer_teaches_a_cap_with_its_confidence_questions_joules(
    question_joules: float, escalated: bool
) -> None:
    from greenserv_core import LabelledAnswer

    router = GreenServRouter(
        [FakeBackend("small", joules_per_token=1.0), _big()],
        features=make_hashing_extractor(),
        seed=0,
        tradeoff=0.2,
        max_joules=170.0,  # both answers fit (160 J); with a 20 J question they do not
        cascades=[("small", "big")],
    )
    router.learn(ASK, "small", energy_joules=16.0, latency_s=0.1)
    router.learn(ASK, "big", energy_joules=144.0, latency_s=0.5)
    answers = {
        "small": LabelledAnswer(
            score=0.0, energy_joules=16.0, latency_s=0.1, confidence=0.05, confidence_joules=question_joules
        ),
        "big": LabelledAnswer(score=1.0, energy_joules=144.0, latency_s=0.5),
    }
    assert router.learn_answers(ASK, answers) == {"small->big": escalated}


def test_a_cascade_run_by_hand_with_its_rule_learns_a_kept_answer_whichever_comes_first() -> None:
    router = _router_whose_second_model_is_down()
    decision = router.route(ASK, max_new_tokens=8)
    cascade = router.backend(decision.model)
    assert isinstance(cascade, CascadeBackend)
    before, (zz, _) = router.learner_.escalation_.thens_["small->big"].copy(), _firsts(router)
    result = cascade.generate(ASK, SHORT, router.escalation_rule(decision.decision_id))
    assert result.text == CHEAP and result.chain[0].action == "kept"
    router.feedback(decision.decision_id, 0.0)  # scored before its outcome is recorded
    spent = {"energy_joules": result.energy.joules, "latency_s": result.latency_s}
    router.record_outcome(decision.decision_id, **spent, members=[("small", 1.0, 0.1)])
    assert np.array_equal(router.learner_.escalation_.thens_["small->big"], before)  # taught "big"'s offset
    assert not np.array_equal(_firsts(router)[0], zz)  # the first answer was labelled by its score
    plain = GreenServRouter([_small(0.2)], features=make_hashing_extractor(), seed=0)
    with pytest.raises(InvalidInputError, match="not to a cascade"):
        plain.escalation_rule(plain.route(ASK).decision_id)


@pytest.mark.parametrize("reading", [float("nan"), -30.0])
def test_a_second_models_unreadable_spend_does_not_erase_the_first_answers(reading: float) -> None:
    from greenserv_core.errors import ModelUnavailableError

    class Broken(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> Any:
            raise ModelUnavailableError("timed out", spent_joules=reading, spent_s=1.0, spent_measured=True)

    small = _small(0.2)
    first = small.generate(ASK, SHORT).energy.joules
    with pytest.raises(ModelUnavailableError) as raised:
        CascadeBackend(small, Broken("big"), threshold=0.5, keep_first_on_failure=False).generate(ASK, SHORT)
    assert raised.value.spent_joules == first  # was nan, or the first answer's joules less 30
    assert raised.value.spent_s == pytest.approx(small.generate(ASK, SHORT).latency_s + 1.0)
    assert not raised.value.spent_measured


def test_a_second_model_whose_stream_ends_at_once_keeps_the_first_answer() -> None:
    class Silent(FakeBackend):
        def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
            return iter(())

    cascade = CascadeBackend(_small(0.2), Silent("big"), threshold=0.5, keep_first_on_failure=True)
    chunks = list(cascade.stream(ASK, SHORT))  # raised CascadeMemberUnavailableError
    assert [c.delta for c in chunks] == [CHEAP, ""]
    assert chunks[-1].result is not None and chunks[-1].result.chain[0].action == "kept"


def test_a_fixed_thresholds_reason_shows_the_digits_that_decide() -> None:
    assert CascadeBackend(_small(0.2), _big(), threshold=0.9999).fixed_verdict(0.9996).reason == (
        "escalated: confidence 0.9996 < threshold 0.9999"  # was "1 < threshold 1"
    )
    assert CascadeBackend(_small(0.2), _big(), threshold=0.5).fixed_verdict(0.25).reason == (
        "escalated: confidence 0.25 < threshold 0.5"
    )


def test_escalation_rule_reads_the_store_under_the_learners_lock() -> None:
    import threading

    router = _router(0.2)
    decision = router.route(ASK, max_new_tokens=8)
    store, held = router.learner_.pending_, []
    read = store.get

    def get(decision_id: str) -> PendingDecision:
        other = threading.Thread(target=lambda: held.append(not router.learner_.lock.acquire(timeout=0)))
        other.start()
        other.join()
        return read(decision_id)

    store.get = get  # type: ignore[method-assign]
    router.escalation_rule(decision.decision_id)
    assert held == [True]  # was read beside a route's add: "OrderedDict mutated during iteration"


@pytest.mark.parametrize("limit", [{"max_latency_s": 2.0}, {"max_joules": 50.0}])
def test_a_requested_cascade_is_held_to_the_limits_its_models_break(limit: dict[str, float]) -> None:
    import dataclasses

    from greenserv_core.errors import NoEligibleModelError

    slow, fast = FakeBackend("a"), FakeBackend("b")
    slow._info = dataclasses.replace(slow.info, prior_seconds_per_token=1.0, prior_joules_per_token=100.0)
    router = GreenServRouter([slow, fast], features=make_hashing_extractor(), cascades=[("a", "b")], seed=0)
    with pytest.raises(NoEligibleModelError, match="its model 'a' is not eligible"):  # was routed to "a->b"
        router.route("What is 2 + 2 please?", models=["a->b"], **limit)  # type: ignore[arg-type]


def test_a_model_the_query_did_not_request_is_excluded_for_that_reason() -> None:
    features = make_hashing_extractor()
    tools = frozenset({"tools"})
    pool = [FakeBackend("a", capabilities=tools), FakeBackend("b"), FakeBackend("c", capabilities=tools)]
    router = GreenServRouter(pool, features=features, cascades=[("a", "c")], seed=0)
    decision = router.route(ASK, models=["a"], requires=["tools"])
    assert decision.excluded["b"] == "not among the models requested for this query"  # was "lacks the capability"


def test_a_saved_state_keeps_a_pending_cascade_plan_of_its_own() -> None:
    router = _router()
    decision = router.route("What is 2 + 2?")
    snapshot = router.state_dict()
    plan = next(item for item in snapshot["pending"]["items"] if item["decision_id"] == decision.decision_id)
    before = dict(plan["cascade"])
    router.escalate(decision.decision_id, 0.1)
    assert plan["cascade"] == before  # the snapshot did not change (was: escalating wrote into it)
    first, second = _router(), _router()
    first.learner_.load_state_dict(snapshot)
    second.learner_.load_state_dict(snapshot)
    first.escalate(decision.decision_id, 0.1)
    second.escalate(decision.decision_id, 0.1)  # was refused: both shared one plan, already decided


def _slow_small(seconds_per_token: float) -> FakeBackend:
    """A first model unsure of its answer (confidence 0.2), which takes 9 × ``seconds_per_token`` on :data:`ASK`."""
    return FakeBackend(
        "small", seconds_per_token=seconds_per_token, reply=lambda m: CHEAP, logprobs=lambda m, t: [math.log(0.2)]
    )


def test_a_cascade_left_too_little_of_max_time_s_keeps_its_first_answer_and_learns_it_as_kept() -> None:
    router = _router(small=_slow_small(0.1))  # its first step takes 0.9 s of 0.95 s
    answer = router.generate(ASK, max_new_tokens=8, max_time_s=0.95)
    assert [s.action for s in answer.chain] == ["kept"]  # was escalated, "big" given 0.95 s again
    assert answer.text == CHEAP and answer.chain[0].reason.endswith("too little is left for big")
    plan = router.pending_.get(answer.decision_id).cascade
    assert plan is not None and plan["escalated"] is False
    streamed = _router(small=_slow_small(0.1))  # scored while it streams, before its outcome is recorded
    before, (zz, _) = streamed.learner_.escalation_.thens_["small->big"].copy(), _firsts(streamed)
    stream = streamed.stream(ASK, max_new_tokens=8, max_time_s=0.95)
    streamed.feedback(next(stream).decision.decision_id, 1.0)
    assert [s.action for s in list(stream)[-1].generation.chain] == ["kept"]  # type: ignore[union-attr]
    assert np.array_equal(streamed.learner_.escalation_.thens_["small->big"], before)  # taught "big"'s offset
    assert not np.array_equal(_firsts(streamed)[0], zz)  # the first answer was labelled by its score


@pytest.mark.parametrize(("learned", "limit", "escalates"), [(True, 1.0, False), (True, 2.0, True), (False, 1.0, True)])
def test_a_cascade_keeps_its_first_answer_where_escalating_would_break_max_latency_s(
    learned: bool, limit: float, escalates: bool
) -> None:
    router = _router(0.1)
    if learned:  # each model alone takes 0.8 s, within the limit; both take 1.6 s (unknown seconds hold nothing)
        for model in ("small", "big"):
            router.learn(ASK, model, energy_joules=1.0, latency_s=0.8)
    decision = router.route(ASK, max_new_tokens=8, max_latency_s=limit)
    verdict = router.escalate(decision.decision_id, 0.1)
    assert verdict.escalate is escalates  # was escalated under 1 s
    if not escalates:
        assert verdict.reason.startswith("kept: escalating is predicted to take 1.5")  # (a ridge fit of 0.8 s)
        assert verdict.reason.endswith("s in all, above the latency limit of 1.000 s")


def test_a_cascade_checks_the_seconds_its_first_step_took_against_max_latency_s() -> None:
    for seconds_per_token, kept in ((0.15, True), (0.001, False)):  # a first step of 1.35 s or 0.009 s
        router = _router(small=_slow_small(seconds_per_token))
        for model in ("small", "big"):
            router.learn(ASK, model, energy_joules=1.0, latency_s=0.8)  # 1.6 s in all: under the limit of 2 s
        answer = router.generate(ASK, max_new_tokens=8, max_latency_s=2.0)
        assert [s.action for s in answer.chain] == (["kept"] if kept else ["escalated", "answered"])  # was escalated
        if kept:
            reason = answer.chain[0].reason
            assert reason.startswith("kept: the first step took 1.350 s, and escalating is predicted to take 2.1")
            assert reason.endswith("s in all, above the latency limit of 2.000 s")


def test_a_cascade_run_by_hand_tells_escalate_what_its_first_step_spent() -> None:
    """``router.escalate`` took no ``spent_joules`` or ``spent_seconds`` (a TypeError), so a
    cascade run by hand escalated past ``max_joules`` where :meth:`generate` kept the answer."""
    verdicts = {}
    for spent in (None, 9.0):
        router = _router(0.1)
        for model in ("small", "big"):  # each model alone 4 J, within the cap; together 8 J
            router.learn(ASK, model, energy_joules=4.0, latency_s=0.1)
        decision = router.route(ASK, max_new_tokens=8, max_joules=12.0)
        verdicts[spent] = router.escalate(decision.decision_id, 0.1, spent_joules=spent)
    assert verdicts[None].escalate  # only the predictions: 8 J in all, under 12 J
    kept = verdicts[9.0]
    assert not kept.escalate and kept.reason.startswith("kept: the first step spent 9.0 J")
    router = _router(0.1)
    for model in ("small", "big"):
        router.learn(ASK, model, energy_joules=1.0, latency_s=0.8)
    decision = router.route(ASK, max_new_tokens=8, max_latency_s=2.0)
    took = router.escalate(decision.decision_id, 0.1, spent_seconds=1.5)
    assert not took.escalate and took.reason.startswith("kept: the first step took 1.500 s")


def test_a_cascade_under_max_joules_reads_its_second_models_per_token_prior() -> None:
    import dataclasses

    big = FakeBackend("big")
    big._info = dataclasses.replace(big.info, prior_joules_per_token=0.1)  # about 10.6 J for 6 + 100 tokens
    router = GreenServRouter(
        [FakeBackend("small"), big],
        features=make_hashing_extractor(),
        tradeoff=0.4,
        seed=0,
        cascades=[("small", "big")],
    )
    for _ in range(5):
        router.learn(ASK, "small", energy_joules=10.0, latency_s=0.1)
    decision = router.route(ASK, models=["small->big"], max_new_tokens=100, max_joules=15.0)
    with router.learner_.lock:
        plan = router.learner_.pending_.get(decision.decision_id).cascade
    assert plan is not None and plan["held"].startswith("kept: escalating is predicted to spend 20.")  # was not held


# ---- one correction per first model and confidence signal (2026-12-06) --------------------------------------
def _taught(router: GreenServRouter, confidence: float | None, signal: str | None, score: float) -> float:
    """One routed answer whose ``confidence`` was read by ``signal``, scored ``score``; its P(right)."""
    decision = router.route(ASK, max_new_tokens=8)
    verdict = router.learner_.escalate(decision.decision_id, confidence, signal=signal)
    router.record_outcome(decision.decision_id, energy_joules=1.0, latency_s=0.1)
    router.feedback(decision.decision_id, score)
    return verdict.probability


def test_each_confidence_signal_has_a_correction_of_its_own() -> None:
    router = _router(then_accuracy=0.0)  # nothing is worth escalating to: every answer is kept, labelled by its score
    for _ in range(20):
        _taught(router, 0.95, "answer-probability", 0.0)  # sure by its answer's probability, and wrong
        _taught(router, None, None, 1.0)  # no signal: the first model's estimate (0) stands in, and it is right
    # a low quantile of token probabilities, never taught, reads as it is (was 0: moved by the other two)
    assert _taught(router, 0.05, "token-quantile-0.1", 0.0) == pytest.approx(0.05)
    assert _taught(router, 0.95, "answer-probability", 0.0) < 0.2
    assert _taught(router, None, None, 1.0) > 0.8
    decision = router.route(ASK, max_new_tokens=8)
    router.learner_.escalate(decision.decision_id, None)
    assert router.pending_.get(decision.decision_id).cascade["signal"] == "estimated-accuracy"  # type: ignore[index]
    keys = {key for key in router.statistics().sums if key.startswith("escalation/first")}
    signals = ("answer-probability", "estimated-accuracy", "token-quantile-0.1")
    named = {f'escalation/first-signal/["small", "{signal}"]' for signal in signals}
    assert keys == {"escalation/first/small/zz", "escalation/first/small/zy"} | {
        f"{key}/{sums}" for key in named for sums in ("zz", "zy")
    }


def test_what_was_learned_before_signals_were_named_seeds_every_signal() -> None:
    model, x = _model(), np.array([1.0, 0.0])
    for _ in range(10):
        model.learn_first("small", x, 0.9, 0.0)  # unnamed: as a version before learned, or a caller naming none
    unnamed = model.probability("small", x, 0.9)
    state = model.state_dict()
    del state["signals"]  # a state saved before
    old_sums = {key: value for key, value in model.statistics().sums.items() if key.startswith("first/")}
    for saved in ("state", "statistics"):
        loaded = _model()
        if saved == "state":
            loaded.load_state_dict(state)
        else:
            loaded.load_statistics(Statistics(sums=old_sums))
        assert loaded.probability("small", x, 0.9, signal="a") == unnamed == loaded.probability("small", x, 0.9)
        for _ in range(10):
            loaded.learn_first("small", x, 0.9, 1.0, signal="a")
        assert loaded.probability("small", x, 0.9, signal="a") > unnamed + 0.2  # its own answers on top
        assert loaded.probability("small", x, 0.9, signal="b") == unnamed  # another signal: untouched
        again = _model()
        again.load_state_dict(loaded.state_dict())
        assert again.probability("small", x, 0.9, signal="a") == loaded.probability("small", x, 0.9, signal="a")


def test_named_corrections_are_shared_under_keys_of_their_own_and_merge_by_adding() -> None:
    def model() -> EscalationModel:
        made = EscalationModel(1, keep_rate=0.0, seed=0)
        for first in ("a", "a/b"):  # names that hold "/": ("a/b", "c") and ("a", "b/c") must not meet
            made.add(first, f"{first}->z")
        return made

    x, base = np.array([1.0]), model()
    base.learn_first("a/b", x, 0.5, 1.0, signal="c")
    base.learn_first("a", x, 0.5, 0.0, signal="b/c")
    shared = base.statistics()
    assert len([key for key in shared.sums if key.startswith("first")]) == 8  # two unnamed, two named: zz and zy each
    replicas = [model(), model()]
    for replica, label in zip(replicas, (0.0, 1.0), strict=True):
        replica.load_statistics(shared)
        assert replica.signals_.keys() == {("a/b", "c"), ("a", "b/c")}
        replica.learn_first("a/b", x, 0.3, label, signal="c")
    merged = shared
    for replica in replicas:  # each replica sends what it learned since: the store adds it
        merged = merged.plus(replica.statistics().minus(shared))
    alone = model()
    alone.load_statistics(shared)
    for label in (0.0, 1.0):
        alone.learn_first("a/b", x, 0.3, label, signal="c")
    together = model()
    together.load_statistics(merged)
    for pair in (("a/b", "c"), ("a", "b/c")):
        for got, expected in zip(together.signals_[pair], alone.signals_[pair], strict=True):
            assert np.allclose(got, expected)


def test_a_routed_cascade_learns_each_answer_under_the_signal_that_read_it() -> None:
    router = _router(0.9, then_accuracy=0.0)  # kept, every answer: its score labels its confidence
    for tokens, score in ((8, 0.0), (64, 1.0)) * 20:  # an answer's probability for 8 tokens, a quantile for 64
        answer = router.generate(ASK, max_new_tokens=tokens)
        x = router.pending_.get(answer.decision_id).context
        router.feedback(answer.decision_id, score)
    model = router.learner_.escalation_
    assert set(model.signals_) == {("small", "answer-probability"), ("small", "token-quantile-0.1")}
    assert not model.firsts_["small"][1].any()  # nothing taught to the shared correction (was all forty answers)
    # both signals read 0.9; one was always wrong, the other always right (one correction: both about 0.5)
    assert model.probability("small", x, 0.9, signal="answer-probability") < 0.2
    assert model.probability("small", x, 0.9, signal="token-quantile-0.1") > 0.95


def test_a_labelled_answer_teaches_the_correction_of_the_signal_it_names() -> None:
    router = _router(then_accuracy=0.0)
    for signal in ("answer-probability", None):
        router.learn_answers(
            ASK,
            {
                "small": LabelledAnswer(score=0.0, energy_joules=1.0, confidence=0.9, confidence_signal=signal),
                "big": LabelledAnswer(score=1.0, energy_joules=5.0),
            },
        )
    model = router.learner_.escalation_
    assert set(model.signals_) == {("small", "answer-probability")} and model.firsts_["small"][1].any()
    with pytest.raises(InvalidInputError, match="confidence_signal"):
        LabelledAnswer(confidence=0.5, confidence_signal=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("signal", [["x"], 123, b"answer-probability"])
def test_a_signal_that_is_not_a_name_is_refused(signal: object) -> None:
    router = _router()
    decision = router.route(ASK)
    with pytest.raises(InvalidInputError, match="signal must be"):  # was a TypeError, or learned under 123
        router.escalate(decision.decision_id, 0.5, signal=signal)  # type: ignore[arg-type]
    assert router.escalate(decision.decision_id, 0.5, signal="answer-probability").escalate  # nothing lost


def test_a_cascade_scored_while_its_first_model_answers_still_answers_and_counts_its_joules() -> None:
    import threading

    from greenserv_core.budget import BudgetPacer, EnergyBudget
    from greenserv_core.errors import DecisionStillAnsweringError

    started, scored = threading.Event(), threading.Event()

    def slow_reply(messages: Sequence[Message]) -> str:
        started.set()
        scored.wait(5)  # the caller's other thread scores the decision meanwhile
        return "4"

    small = FakeBackend("small", joules_per_token=1.0, reply=slow_reply, logprobs=lambda m, t: [-0.1])
    router = GreenServRouter(
        [small, FakeBackend("big", joules_per_token=9.0)],
        features=make_hashing_extractor(),
        seed=0,
        energy_budget=BudgetPacer(EnergyBudget.per_query(1e6)),
        cascades=[("small", "big")],
    )

    refused: list[BaseException] = []

    def score() -> None:
        started.wait(5)
        try:
            router.feedback("q1", 1.0)
        except DecisionStillAnsweringError as error:  # (since 2026-12-07: scored once its answer has come)
            refused.append(error)
        finally:
            scored.set()

    thread = threading.Thread(target=score)
    thread.start()
    answer = router.generate(ASK, models=["small->big"], decision_id="q1")  # raised DecisionAlreadyScoredError
    thread.join()
    assert len(refused) == 1  # nothing learned from a score given mid-answer
    assert answer.model == "small->big" and answer.energy_joules > 0
    assert router.learner_.pacer_ is not None and router.learner_.pacer_.spent_ == answer.energy_joules  # was 0


def test_a_kept_first_answer_is_answered_and_charged_when_the_store_fails_to_hear_it_was_kept() -> None:
    from greenserv_core.errors import PendingStoreUnreachableError

    router = _router_whose_second_model_is_down()
    store = router.learner_.pending_
    update = store.update

    def update_unless_kept(decision: PendingDecision) -> None:
        if decision.cascade is not None and decision.cascade.get("escalated") is False:
            raise PendingStoreUnreachableError("the store went away")
        update(decision)

    store.update = update_unless_kept  # type: ignore[method-assign]
    answer = router.generate(ASK, max_new_tokens=8)  # raised PendingStoreUnreachableError
    assert answer.text == CHEAP and answer.chain[0].action == "kept"
    assert router.stats_["small->big"]["energy_joules"] == pytest.approx(answer.energy_joules)
    assert router.feedback(answer.decision_id, 1.0).applied


def test_a_kept_first_answer_is_not_taken_as_cut_by_the_time_its_failed_second_model_spent() -> None:
    """A first answer that stopped at max_new_tokens (1 s of a 2 s limit), kept when the second
    model failed after 0.95 s: the cascade's 1.95 s made it look cut by its time limit, and its
    exact seconds did not teach the first model's latency model."""
    import math

    from greenserv_core.errors import ModelUnavailableError

    class Down(FakeBackend):
        def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
            raise ModelUnavailableError("big timed out", spent_joules=3.0, spent_s=0.95)

    small = FakeBackend(
        "small", seconds_per_token=0.1, reply=lambda m: "a b c d e f g h", logprobs=lambda m, t: [math.log(0.2)]
    )
    router = _router(small=small, big=Down("big", joules_per_token=5.0))
    router.learn(ASK, "small", energy_joules=1.0, latency_s=3.0)  # an old, high estimate
    for _ in range(5):
        answer = router.generate(ASK, max_new_tokens=4, max_time_s=2.0)
    assert [step.action for step in answer.chain] == ["kept"] and answer.finish_reason == "length"
    learner, decision = router.learner_, router.route(ASK)
    x = learner.policy_.check_context(decision.features.vector)
    predicted = learner.latency_.predict("small", x, decision.features.prompt_tokens)
    assert predicted is not None and predicted < 2.0  # its 1 s answers taught it (it stayed at 3 s)


def test_a_cascade_whose_time_limit_leaves_nothing_keeps_its_first_answer() -> None:
    """A subnormal ``max_time_s``: a tenth of it rounds to 0, so 0 s left passed the check, and
    the second model's settings were refused after the first model had run and been charged."""
    answer = _router(0.2).generate(ASK, max_new_tokens=8, max_time_s=5e-324)
    assert [step.action for step in answer.chain] == ["kept"] and "too little is left" in answer.chain[0].reason


def test_a_confidence_too_large_for_a_float_is_refused_by_name() -> None:
    router = _router(0.2)
    decision = router.route(ASK, max_new_tokens=8)
    with pytest.raises(InvalidInputError, match="confidence must be a number in"):  # was an OverflowError
        router.escalate(decision.decision_id, 10**400)
