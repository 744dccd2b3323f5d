"""A warm start from labelled answers (``GreenServRouter.learn_answers``): every model learns
its answer, and every cascade learns what its rule would have done with them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from greenserv_core import GreenServRouter, InvalidInputError, LabelledAnswer, UnknownModelError
from tests.test_cascade_routing import ASK, _firsts, _router
from tests.test_cascades import _sharp_table

RIGHT_BIG = LabelledAnswer(score=1.0, energy_joules=9.0, latency_s=0.5)


def _small_answer(score: float, confidence: float | None, asking: float = 0.0) -> LabelledAnswer:
    return LabelledAnswer(
        score=score, energy_joules=1.0, latency_s=0.1, confidence=confidence, confidence_joules=asking
    )


def test_a_labelled_answer_refuses_bad_parts() -> None:
    for bad in (
        {"score": 1.5},
        {"score": math.nan},
        {"energy_joules": -1.0},
        {"latency_s": math.inf},
        {"confidence": 1.2},
        {"confidence": math.nan},
        {"confidence": True},
        {"confidence_joules": -0.1},
        {"energy_joules": "3"},
        {"energy_joules": 10**400},  # an int past a float's range: was an OverflowError
        {"score": 10**400},
    ):
        with pytest.raises(InvalidInputError):
            LabelledAnswer(**bad)  # type: ignore[arg-type]
    assert LabelledAnswer(score=True).score == 1.0  # a bool score is a 0/1 label, as in feedback


def test_an_unsure_wrong_first_answer_is_taught_as_escalated_with_both_models_joules() -> None:
    router = _router(0.2)  # the pinned policy trusts big at 0.9: a confidence below that escalates
    zz, zy = _firsts(router)
    verdicts = router.learn_answers(ASK, {"small": _small_answer(0.0, 0.2, asking=0.5), "big": RIGHT_BIG})
    assert verdicts == {"small->big": True}
    learner = router.learner_
    cascade = _predicted(router, "small->big")
    assert cascade == pytest.approx(1.0 + 0.5 + 9.0, rel=0.01)  # both answers' joules and the question's
    assert learner.escalation_.thens_["small->big"].tolist() == [pytest.approx(1.0 - 0.9), 1.0]
    new_zz, new_zy = _firsts(router)
    assert not np.array_equal(new_zz, zz)
    assert new_zy[-1] == pytest.approx(zy[-1] + 0.0 - 0.2)  # labelled with its own score, not censored
    assert router.stats_["small"]["decisions"] == 0 and len(router.pending_) == 0  # nothing was routed


def test_a_sure_first_answer_is_taught_as_kept() -> None:
    router = _router(0.95)
    verdicts = router.learn_answers(ASK, {"small": _small_answer(1.0, 0.95), "big": RIGHT_BIG})
    assert verdicts == {"small->big": False}
    assert router.learner_.escalation_.thens_["small->big"].tolist() == [0.0, 0.0]  # no escalation to learn from
    cascade = _predicted(router, "small->big")
    assert cascade == pytest.approx(1.0, rel=0.01)  # the kept answer's joules only


def test_without_a_confidence_the_first_models_estimate_stands_in() -> None:
    router = _router(None, then_accuracy=0.9)  # the pinned policy estimates small at 0.0: escalate
    assert router.learn_answers(ASK, {"small": _small_answer(1.0, None), "big": RIGHT_BIG}) == {"small->big": True}
    assert _firsts(router)[1][-1] == pytest.approx(1.0 - 0.0)  # label − the estimate it stood in for


def test_a_cascade_with_a_model_missing_or_unscored_is_not_taught() -> None:
    router = _router(0.2)
    assert router.learn_answers(ASK, {"small": _small_answer(0.0, 0.2)}) == {}
    assert router.learn_answers(ASK, {"small": _small_answer(0.0, 0.2), "big": LabelledAnswer(energy_joules=9.0)}) == {}
    assert router.learner_.escalation_.thens_["small->big"].tolist() == [0.0, 0.0]
    # the first model's confidence was still labelled, twice
    assert _firsts(router)[0][-1, -1] == pytest.approx(2.0)


def test_bad_answers_are_refused_before_anything_is_learned() -> None:
    router = _router(0.2)
    before = _firsts(router)
    with pytest.raises(UnknownModelError, match="huge"):
        router.learn_answers(ASK, {"small": _small_answer(1.0, 0.9), "huge": RIGHT_BIG})
    with pytest.raises(InvalidInputError, match="cascades"):
        router.learn_answers(ASK, {"small->big": RIGHT_BIG})
    with pytest.raises(InvalidInputError, match="LabelledAnswer"):
        router.learn_answers(ASK, {"small": {"score": 1.0}})  # type: ignore[dict-item]
    assert all(np.array_equal(a, b) for a, b in zip(_firsts(router), before, strict=True))
    assert _predicted(router, "small") is None


def _predicted(router: GreenServRouter, model: str) -> float | None:
    """The router's predicted joules of ``model`` for :data:`ASK`."""
    features = router.features.extract(ASK, learn=False)
    return router.learner_.energy_.predict(model, features.vector, features.prompt_tokens)


def test_the_cascade_replay_warm_starts_every_strategy_and_states_the_joules() -> None:
    from greenserv_core.evaluation.cascade_replay import replay_cascades
    from tests.conftest import make_hashing_extractor

    table = _sharp_table(120)
    pair = [("small", "big")]
    report = replay_cascades(table, runs=3, pairs=pair, make_features=make_hashing_extractor, warm_start=20)
    assert report["settings"]["warm_start"] == 20 and report["settings"]["queries"] == 100
    # 20 queries × (small 1 J + big 10 J)
    assert report["warm_start"] == {"queries": 20, "rows": 40, "joules": 220.0, "wh": pytest.approx(220 / 3600)}
    cold = replay_cascades(table, runs=3, pairs=pair, make_features=make_hashing_extractor)
    assert cold["warm_start"]["rows"] == 0 and cold["settings"]["queries"] == 120
    warm_entry = report["by_tradeoff"]["0.4"]["routing+cascades"]
    assert warm_entry["accuracy"]["mean"] >= cold["by_tradeoff"]["0.4"]["routing+cascades"]["accuracy"]["mean"]
    with pytest.raises(InvalidInputError, match="too few"):
        replay_cascades(table, runs=1, pairs=pair, make_features=make_hashing_extractor, warm_start=200)


def _learning_router(**kwargs: object) -> GreenServRouter:
    """small (1 J) and big (9 J) with the cascade small->big, and the default policy."""
    from greenserv_core import FakeBackend
    from tests.conftest import make_hashing_extractor

    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("big", joules_per_token=9.0)]
    return GreenServRouter(
        pool,
        cascades=[("small", "big")],
        features=make_hashing_extractor(),
        seed=0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_labelled_answers_count_as_scored_so_the_second_models_estimate_is_trusted() -> None:
    router = _learning_router()
    for _ in range(30):
        router.learn(ASK, "big", score=0.0)  # the second model is always wrong here
    assert router.stats_["big"]["labelled"] == 30 and router.stats_["big"]["feedback"] == 0
    verdicts = router.learn_answers(ASK, {"small": _small_answer(0.0, 0.2), "big": LabelledAnswer(score=0.0)})
    assert verdicts == {"small->big": False}  # paying for a model known to be wrong does not pay
    assert router.stats_["small"]["labelled"] == 1


def test_the_warm_start_does_not_explore_or_draw_from_the_rules_generator() -> None:
    from greenserv_core.cascades import EscalationModel

    router = _router(0.2, keep_rate=1.0)  # online, every answer that would escalate is kept to explore
    rule = router.learner_.escalation_
    assert isinstance(rule, EscalationModel)
    state = rule.rng_.bit_generator.state
    assert router.learn_answers(ASK, {"small": _small_answer(0.0, 0.2), "big": RIGHT_BIG}) == {"small->big": True}
    assert rule.rng_.bit_generator.state == state


def test_a_warm_start_leaves_a_budgets_clock_alone() -> None:
    router = _learning_router(energy_budget="2Wh/h")
    pacer = router.learner_.pacer_
    assert pacer is not None
    router.learn_answers(ASK, {"small": _small_answer(0.0, 0.2), "big": RIGHT_BIG})
    assert pacer.start_ is None  # the first window opens at the first decision, not at the warm start
    router.route(ASK)
    assert pacer.start_ is not None


def test_measurements_may_be_numpy_numbers() -> None:
    router = _learning_router()
    router.learn(ASK, "small", score=np.float64(1.0), energy_joules=np.float32(2.5), latency_s=np.int64(1))
    decision = router.route(ASK)
    router.record_outcome(decision.decision_id, energy_joules=np.int64(3), latency_s=np.float32(0.5))


def test_a_state_saved_before_labelled_answers_were_counted_loads() -> None:
    router = _learning_router()
    router.learner_.tallies_.load_state_dict({"small": {"decisions": 2, "feedback": 1, "energy_joules": 4.0}})
    assert router.stats_["small"] == {"decisions": 2, "feedback": 1, "energy_joules": 4.0, "labelled": 0}


def test_a_warm_escalation_counts_the_second_models_answer_once() -> None:
    router = _learning_router()
    for taught in range(1, 6):  # unsure first answers: the rule escalates each (the second model not yet trusted)
        assert router.learn_answers(ASK, {"small": _small_answer(0.0, 0.1), "big": RIGHT_BIG}) == {"small->big": True}
        assert router.learner_._then_scored("small->big", "big") == taught  # not twice: once as the escalation
    assert router.stats_["big"]["labelled"] == 5 and router.stats_["small"]["labelled"] == 5  # each taught five


def test_a_second_model_taught_through_one_cascade_counts_as_scored_for_every_cascade() -> None:
    from greenserv_core import FakeBackend
    from tests.conftest import make_hashing_extractor

    pool = [FakeBackend(name, joules_per_token=j) for name, j in (("a", 1.0), ("b", 2.0), ("c", 9.0))]
    router = GreenServRouter(pool, features=make_hashing_extractor(), seed=0, cascades=[("a", "c"), ("b", "c")])
    for _ in range(12):
        unsure = LabelledAnswer(score=0.0, energy_joules=1.0, confidence=0.05)
        router.learn_answers(ASK, {"a": unsure, "c": LabelledAnswer(score=1.0, energy_joules=9.0)})
    assert router.stats_["c"]["labelled"] == 12
    assert router.learner_._then_scored("a->c", "c") == router.learner_._then_scored("b->c", "c") == 12


def test_a_replica_that_adopts_the_statistics_counts_a_warm_escalation_once() -> None:
    teacher, replica = _learning_router(), _learning_router()
    for _ in range(5):
        teacher.learn_answers(ASK, {"small": _small_answer(0.0, 0.1), "big": RIGHT_BIG})
    statistics = teacher.statistics()
    replica.update_statistics(lambda _: statistics)
    assert teacher.learner_._then_scored("small->big", "big") == 5
    assert replica.learner_._then_scored("small->big", "big") == 5  # not 10: the labelled escalations travel too


def test_a_cascade_added_again_counts_its_new_escalations() -> None:
    router = _learning_router()
    for _ in range(5):
        router.learn_answers(ASK, {"small": _small_answer(0.0, 0.1), "big": RIGHT_BIG})
    router.remove_model("big")
    from greenserv_core import FakeBackend

    router.add_model(FakeBackend("big", joules_per_token=9.0))
    router.add_cascade("small", "big")
    assert router.learner_._then_scored("small->big", "big") == 0  # a new model under the name
    router.learner_.escalation_.learn_then("small->big", 0.5, 1.0)  # a routed escalation, scored
    assert router.learner_._then_scored("small->big", "big") == 1


def test_labelled_answers_may_hold_numpy_numbers() -> None:
    answer = LabelledAnswer(score=np.float32(1.0), energy_joules=np.float32(2.5), confidence=np.float64(0.5))
    assert (answer.score, answer.energy_joules, answer.confidence) == (1.0, 2.5, 0.5)
    assert type(answer.energy_joules) is float


def test_the_labelled_tally_is_shared_beside_the_vector_older_replicas_read() -> None:
    from greenserv_core.routing.tallies import Tallies

    tallies = Tallies()
    tallies.add_model("m")
    tallies.labelled("m")
    stats = tallies.statistics()
    assert stats.sums["m"].tolist() == [0.0, 0.0, 0.0] and stats.sums["labelled/m"].tolist() == [1.0]
    other = Tallies()
    other.add_model("m")
    other.load_statistics(stats)
    assert other.as_dict()["m"]["labelled"] == 1


def test_a_labelled_cascade_keeps_its_first_answer_where_both_models_break_the_latency_limit() -> None:
    from greenserv_core import FakeBackend
    from tests.conftest import make_hashing_extractor

    def router() -> GreenServRouter:
        pool = [FakeBackend("small"), FakeBackend("large")]
        return GreenServRouter(
            pool,
            features=make_hashing_extractor(3),
            cascades=[("small", "large")],
            tradeoff=0.1,
            seed=0,
            max_latency_s=1.0,
        )

    answers = {
        "small": LabelledAnswer(score=0.0, energy_joules=1.0, latency_s=0.8, confidence=0.05),
        "large": LabelledAnswer(score=1.0, energy_joules=9.0, latency_s=0.8),
    }
    verdicts = []
    for limit in (1.0, 2.0):
        taught = router()
        taught.max_latency_s = limit
        for _ in range(5):  # each model known to take 0.8 s (each under the limit)
            for model in ("small", "large"):
                taught.learn(ASK, model, score=0.5, energy_joules=5.0, latency_s=0.8)
        verdicts.append(taught.learn_answers(ASK, answers)["small->large"])
    assert verdicts == [False, True]  # was [True, True]: 1.6 s together, as a routed query is held


def test_a_warm_escalation_is_priced_as_the_same_query_routed_on_the_known_scale(tmp_path: Path) -> None:
    """On the ``known`` scale a routed query's predicted joules widen its task's range before
    the escalation is priced; a warm start prices it on the same range, so the verdicts agree
    (they parted at a task's first labelled query)."""
    from greenserv_core import FakeBackend
    from greenserv_core.cascades import EscalationModel
    from tests.conftest import TINY_TRAINING, make_hashing_extractor

    def pool() -> list[FakeBackend]:
        return [FakeBackend(name, joules_per_token=1.0 + 3 * k) for k, name in enumerate(("s", "m", "l"))]

    features = make_hashing_extractor(1)
    router = GreenServRouter(
        pool(),
        policy="linucb",
        seed=0,
        features=features,
        cascades=[("s", "l"), ("m", "l")],
        tradeoff=0.4,
        escalation=EscalationModel(features.dimension, keep_rate=0.0, informed_after=0),
    )
    assert router.learner_._scale == "known"
    rng = np.random.default_rng(0)
    prompts = [texts[0] for texts in TINY_TRAINING.values()] * 2
    disagreed = []
    taught: dict[str, list[float]] = {}
    for query, prompt in enumerate(prompts):
        answers = {
            name: LabelledAnswer(
                score=float(rng.random() < 0.4 + 0.25 * k),
                energy_joules=float(rng.uniform(5, 40) * (1 + 3 * k)),
                latency_s=0.5,
                confidence=float(rng.random()),
            )
            for k, name in enumerate(("s", "m", "l"))
        }
        path = tmp_path / f"before-{query}.json"
        router.save(path)
        verdicts = router.learn_answers(prompt, answers)
        for cascade, first in (("s->l", "s"), ("m->l", "m")):
            routed = GreenServRouter.load(path, pool(), features=make_hashing_extractor(1))
            decision = routed.route(prompt, models=[cascade])
            escalate = routed.escalate(decision.decision_id, answers[first].confidence).escalate
            if escalate != verdicts[cascade]:
                disagreed.append((query, cascade, escalate, verdicts[cascade]))
        task = decision.features.task  # the range learned is the answers' joules, as learn() teaches it
        spent = [a.energy_joules for a in answers.values() if a.energy_joules is not None]
        for cascade, first in (("s->l", "s"), ("m->l", "m")):  # a cascade is taught what it would have spent
            spent.append(answers[first].energy_joules + (answers["l"].energy_joules if verdicts[cascade] else 0.0))
        taught.setdefault(task, []).extend(spent)
        assert router.normalizer_.ranges_[task] == [min(taught[task]), max(taught[task])]
    assert not disagreed


@pytest.mark.filterwarnings("ignore:(overflow|invalid value) encountered:RuntimeWarning")  # the predictions of 1e308 J
def test_a_row_whose_costs_would_overflow_is_refused_before_anything_is_learned() -> None:
    router = _learning_router()
    decision = router.route(ASK, models=["small"])
    for model in ("small", "big"):  # a float, but its estimate (θ = A⁻¹b, and x·θ) would overflow: was taken
        with pytest.raises(InvalidInputError, match="overflows"):
            router.learn(ASK, model, energy_joules=1.0, latency_s=1e308)
    before = router.statistics()
    overflowing = LabelledAnswer(score=1.0, energy_joules=1.0, latency_s=1e308)  # the seconds' sums overflow
    with pytest.raises(InvalidInputError, match="overflows"):  # the score was learned, then the seconds refused
        router.learn(ASK, "small", score=1.0, energy_joules=1.0, latency_s=1e308)
    with pytest.raises(InvalidInputError, match="overflows"):  # the first answer was learned, then the second refused
        router.learn_answers(ASK, {"small": LabelledAnswer(score=1.0, energy_joules=1.0), "big": overflowing})
    with pytest.raises(InvalidInputError, match="overflows"):  # the joules were learned, then the seconds refused
        router.record_outcome(decision.decision_id, energy_joules=1.0, latency_s=1e308)
    escalating = _router(0.2)  # an unsure first answer escalates: the cascade spends both answers' joules, inf
    huge = {
        "small": LabelledAnswer(score=0.0, energy_joules=9e307, confidence=0.2),
        "big": LabelledAnswer(score=1.0, energy_joules=9e307),
    }
    with pytest.raises(InvalidInputError, match="overflows"):  # each answer's estimate, before the cascade's sum
        escalating.learn_answers(ASK, huge)
    assert escalating.stats_["small"]["labelled"] == escalating.stats_["big"]["labelled"] == 0
    kept = _router(0.95)  # a sure first answer is kept: the cascade spends its joules alone, which fit a float
    big = LabelledAnswer(score=1.0, energy_joules=1e304)
    assert kept.learn_answers(
        ASK, {"small": LabelledAnswer(score=1.0, energy_joules=1e304, confidence=0.95), "big": big}
    ) == {"small->big": False}
    with pytest.raises(InvalidInputError, match="name a model twice"):  # the second overflowed, the first was learned
        router.record_outcome(decision.decision_id, energy_joules=1.0, latency_s=1.0, members=[("small", 1.0, 1.0)] * 2)
    after = router.statistics()
    for kind in ("sums", "minima", "maxima"):
        for name, values in getattr(before, kind).items():
            assert np.array_equal(values, getattr(after, kind)[name]), name
    router.record_outcome(decision.decision_id, energy_joules=1.0, latency_s=1.0)  # still awaits its outcome


def test_a_warm_escalation_under_a_cap_counts_what_an_unpredicted_model_spent() -> None:
    """The second model had no learned prediction yet (NaN: not held), so learn_answers taught an
    escalation that the cap never allows a routed query (which counts the model's prior)."""
    import dataclasses

    from greenserv_core import FakeBackend
    from tests.conftest import make_hashing_extractor

    big = FakeBackend("big")
    big._info = dataclasses.replace(big.info, prior_joules_per_token=0.1)  # about 10.6 J for 6 + 100 tokens
    router = GreenServRouter(
        [FakeBackend("small", logprobs=lambda m, t: [-3.0]), big],
        features=make_hashing_extractor(),
        tradeoff=0.4,
        seed=0,
        cascades=[("small", "big")],
        max_joules=15.0,
    )
    for _ in range(5):
        router.learn(ASK, "small", energy_joules=10.0, latency_s=0.1)
    answers = {
        "small": LabelledAnswer(score=0.0, energy_joules=10.0, latency_s=0.1, confidence=0.05),
        "big": LabelledAnswer(score=1.0, energy_joules=10.6, latency_s=0.1),
    }
    assert router.learn_answers(ASK, answers) == {"small->big": False}  # kept, as routed (was True)
