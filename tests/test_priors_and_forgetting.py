"""Quality priors, bounded indices, forgetting and warm starts (issue 15)."""

import json
from pathlib import Path

import numpy as np
import pytest

from greenserv_core import FakeBackend, FeatureExtractor, GreenServRouter, QualityPrior
from greenserv_core.bandits import ArmPrior, EpsilonGreedyNonContextual, LinUCB, RandomPolicy, RidgeArm
from greenserv_core.errors import InvalidInputError, UnknownModelError
from greenserv_core.features import HashingEmbedder, TaskClassifier
from greenserv_core.pending import PendingDecision
from greenserv_core.routing.priors import arm_prior


def _features(n_clusters: int = 3) -> FeatureExtractor:
    embedder = HashingEmbedder(64)
    texts = ["What is 2 + 2?", "Compute 17 * 3.", "Hello, how are you?", "Nice weather today."]
    clf = TaskClassifier().fit(embedder.embed(texts), ["math", "math", "chat", "chat"], embedder.name)
    return FeatureExtractor(embedder, clf, n_clusters=n_clusters)


def test_prior_pseudo_observations_set_the_estimate_but_are_not_data() -> None:
    arm = RidgeArm(2, l2=1e-3)
    arm.add_prior(ArmPrior(np.array([[1.0, 0.0]]), np.array([0.8]), np.array([20.0])))
    assert arm.predict(np.array([1.0, 0.0])) == pytest.approx(0.8, abs=1e-3)
    xx, yx, n = arm.data_sums()
    assert n == 0 and np.allclose(xx, 0) and np.allclose(yx, 0)
    for _ in range(20):
        arm.update(np.array([1.0, 0.0]), 0.2)
    assert arm.predict(np.array([1.0, 0.0])) == pytest.approx(0.5, abs=1e-3)  # 20 pseudo + 20 real
    copy = RidgeArm(2, l2=1e-3)
    copy.load_state_dict(arm.state_dict())
    assert np.allclose(copy.data_sums()[0], arm.data_sums()[0])
    merged = RidgeArm(2, l2=1e-3)
    merged.add_prior(ArmPrior(np.array([[1.0, 0.0]]), np.array([0.8]), np.array([20.0])))
    merged.load_statistics(arm.statistics())
    assert merged.predict(np.array([1.0, 0.0])) == pytest.approx(arm.predict(np.array([1.0, 0.0])))


def test_bad_priors_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        ArmPrior(np.array([[1.0]]), np.array([0.5, 0.6]), np.array([1.0]))
    with pytest.raises(InvalidInputError):
        ArmPrior(np.array([[1.0]]), np.array([0.5]), np.array([-1.0]))
    with pytest.raises(InvalidInputError, match="takes no prior"):
        EpsilonGreedyNonContextual(1).add_arm("a", ArmPrior(np.ones((1, 1)), np.ones(1), np.ones(1)))
    with pytest.raises(InvalidInputError, match="dimension"):
        LinUCB(2).add_arm("a", ArmPrior(np.ones((1, 3)), np.ones(1), np.ones(1)))
    RandomPolicy(1).add_arm("a", ArmPrior(np.ones((1, 1)), np.ones(1), np.ones(1)))  # learns nothing: ignored
    with pytest.raises(InvalidInputError):
        QualityPrior({"math": 1.5})
    with pytest.raises(InvalidInputError):
        QualityPrior({"math": 0.5}, strength=0)
    with pytest.raises(InvalidInputError, match="unknown task types"):
        arm_prior(QualityPrior({"poetry": 0.5}), _features())


def test_forgetting_follows_a_change_and_keeps_the_prior() -> None:
    x = np.array([1.0])
    steady, forgetful = RidgeArm(1, l2=1.0), RidgeArm(1, l2=1.0, forget=0.9)
    for arm in (steady, forgetful):
        for _ in range(300):
            arm.update(x, 0.9)
        for _ in range(50):
            arm.update(x, 0.3)
    assert 0.25 < forgetful.predict(x) < 0.31  # about 10 effective observations of 0.3, against the prior of 0
    assert steady.predict(x) > 0.75
    np.testing.assert_allclose(forgetful.A_inv, np.linalg.inv(forgetful.A))
    with pytest.raises(InvalidInputError):
        RidgeArm(1, forget=0.0)


def test_bounded_index_never_exceeds_a_perfect_answer() -> None:
    bounded, unbounded = LinUCB(3, alpha=2.0, reward_range=(0.0, 1.0), seed=0), LinUCB(3, alpha=2.0, seed=0)
    x = np.array([1.0, 1.0, 1.0])
    for policy in (bounded, unbounded):
        policy.add_arm("a")
        policy.add_arm("b")
    high = {arm: s.estimate + s.bonus for arm, s in bounded.decide(x).scores.items()}
    assert max(high.values()) == pytest.approx(1.0)
    assert max(s.estimate + s.bonus for s in unbounded.decide(x).scores.values()) > 1.0
    # a dear model whose best possible score is below a cheap one's known score is not explored
    for _ in range(30):
        bounded.update("a", x, 0.9)
    costs = {"a": 0.0, "b": 0.6}
    assert all(bounded.select(x, value_scale=0.6, costs=costs) == "a" for _ in range(20))


def test_a_quality_prior_is_used_from_the_first_query_and_a_wrong_one_is_outvoted(tmp_path: Path) -> None:
    believed = QualityPrior({"math": 0.95}, default=0.9, strength=10)
    router = GreenServRouter(  # LinUCB: an unplayed model starts at 0, not optimistically at 1 as with ε-greedy
        [FakeBackend("plain"), FakeBackend("praised", quality=believed)],
        policy="linucb",
        features=_features(),
        seed=0,
        tradeoff=0.0,
    )
    first = router.route("What is 2 + 2?").scores  # the prior is the estimate from the first query on
    assert first["praised"].estimate > 0.9 and first["plain"].estimate == 0.0
    assert first["praised"].bonus < first["plain"].bonus  # and worth its 10 answers of evidence
    chosen = []
    for _ in range(150):
        decision = router.route("What is 2 + 2?")
        router.record_outcome(decision.decision_id, energy_joules=1.0, latency_s=0.1)
        router.feedback(decision.decision_id, 1.0 if decision.model == "plain" else 0.0)
        chosen.append(decision.model)
    assert chosen[-50:].count("plain") > 40  # the prior of 10 answers was outvoted
    router.save(tmp_path / "router.json")
    again = GreenServRouter.load(
        tmp_path / "router.json",
        [FakeBackend("plain"), FakeBackend("praised", quality=believed)],
        features=_features(),
    )
    assert np.allclose(
        again.learner_.policy_.arms_["praised"].prior_xx, router.learner_.policy_.arms_["praised"].prior_xx
    )


def test_learn_teaches_an_outcome_that_was_not_routed() -> None:
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=_features(), seed=0, tradeoff=0.0)
    for _ in range(10):
        router.learn("What is 2 + 2?", "b", score=1.0, energy_joules=2.0, latency_s=0.1)
        router.learn("What is 2 + 2?", "a", score=0.0, energy_joules=1.0, latency_s=0.1)
    assert router.stats_["b"]["decisions"] == 0
    assert router.energy_.predict("b", router.features.extract("What is 2 + 2?", learn=False).vector, 5) is not None
    assert router.learner_.policy_.arms_["b"].n == 10
    assert router.route("Compute 6 * 7.", tradeoff=0.0).model == "b"
    with pytest.raises(UnknownModelError):
        router.learn("hi", "c", score=1.0)
    with pytest.raises(InvalidInputError):
        router.learn("hi", "a", score=2.0)
    with pytest.raises(InvalidInputError):
        router.learn("hi", "a", energy_joules=-1.0)


@pytest.mark.parametrize("teach", ["learn", "learn_answers"])
def test_labelled_rows_taught_before_any_query_are_taught_in_the_clusters_they_route_to(teach: str) -> None:
    """Every row taught before the clusters formed was taught in cluster 0."""
    from greenserv_core import LabelledAnswer

    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=_features(), seed=0)
    taught: list[int] = []
    shipped = getattr(router.learner_, teach)

    def noted(features, *args, **kwargs):  # type: ignore[no-untyped-def]
        taught.append(features.cluster)
        return shipped(features, *args, **kwargs)

    setattr(router.learner_, teach, noted)
    prompts = ["What is 2 + 2?", "Write a poem about the rain in spring.", "Who wrote Hamlet, and when?"] * 2
    for prompt in prompts:
        if teach == "learn":
            router.learn(prompt, "b", score=1.0, energy_joules=2.0, latency_s=0.1)
        else:
            router.learn_answers(prompt, {"b": LabelledAnswer(score=1.0, energy_joules=2.0, latency_s=0.1)})
    assert len(set(taught)) == 3  # were all 0
    centroids = router.features.clusterer.centroids_.copy()
    router.learn("Compute 6 * 7.", "a", score=0.0)  # once formed, a labelled row moves no centroid
    assert (router.features.clusterer.centroids_ == centroids).all()
    routed = [router.route(prompt).features.cluster for prompt in prompts]
    assert taught[: len(prompts)] == routed


def test_a_newcomer_starts_from_the_pool_mean_with_pool_prior() -> None:
    x = np.array([1.0, 0.0])
    pooled, plain = LinUCB(2, pool_prior=True, seed=0), LinUCB(2, seed=0)
    for policy in (pooled, plain):
        policy.add_arm("a")
        policy.add_arm("b")
        for _ in range(50):
            policy.update("a", x, 0.8)
            policy.update("b", x, 0.6)
        policy.add_arm("new")
    assert pooled.arms_["new"].predict(x) == pytest.approx(np.mean([pooled.theta("a"), pooled.theta("b")], axis=0)[0])
    assert plain.arms_["new"].predict(x) == 0.0
    restored = LinUCB(2, pool_prior=True)
    restored.load_state_dict(pooled.state_dict())
    assert np.allclose(restored.arms_["new"].data_sums()[1], 0.0)  # the pooled mean stays a prior, not data


def _pool_scaled_router() -> GreenServRouter:
    """small 1 J, mid 5 J, large 9 J on maths, λ 0.5, the pool energy scale."""
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("large"), FakeBackend("mid")],
        features=_features(),
        seed=0,
        tradeoff=0.5,
        energy_scale="pool",
    )
    for model, joules in (("small", 1.0), ("large", 9.0), ("mid", 5.0)):
        for _ in range(5):
            router.learn("What is 2 + 2?", model, energy_joules=joules)
    return router


def test_the_pool_energy_scale_prices_the_spread_of_the_pool() -> None:
    router = _pool_scaled_router()
    costs = {model: score.cost for model, score in router.route("What is 2 + 2?").scores.items()}
    assert costs == pytest.approx({"small": 0.0, "mid": 0.25, "large": 0.5}, abs=0.02)
    with pytest.raises(InvalidInputError, match="energy_scale"):
        GreenServRouter([FakeBackend("a")], features=_features(), energy_scale="widest")  # type: ignore[arg-type]


def test_the_pool_scales_feedback_reward_uses_the_decisions_own_bounds() -> None:
    # the task's range grows to 0.5..30 J; this query's pool spans 1..9 J, as its decision weighed
    router = _pool_scaled_router()
    router.learn("What is 2 + 2?", "small", energy_joules=0.5)
    router.learn("What is 2 + 2?", "large", energy_joules=30.0)
    decision = router.route("What is 2 + 2?")
    low, high = min(decision.predicted_joules.values()), max(decision.predicted_joules.values())  # type: ignore[type-var]
    assert low is not None and high is not None
    router.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.1)
    pending = router.pending_.get(decision.decision_id)
    assert PendingDecision.from_dict(json.loads(json.dumps(pending.to_dict()))).energy_bounds == (low, high)
    record = router.feedback(decision.decision_id, 1.0)
    assert record.reward == pytest.approx(0.5 - 0.5 * (5.0 - low) / (high - low))
    task_range = router.learner_.normalizer_.range_for(decision.features.task)
    assert task_range is not None and task_range[1] - task_range[0] > 2 * (high - low)  # the other scale differs


def test_the_pool_scale_without_a_spread_reads_the_tasks_range_at_feedback() -> None:
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("large")], features=_features(), seed=0, tradeoff=0.5, energy_scale="pool"
    )
    router.learn("What is 2 + 2?", "small", energy_joules=1.0)  # one model measured: no pool spread
    router.learn("What is 2 + 2?", "small", energy_joules=3.0)
    decision = router.route("What is 2 + 2?")
    assert router.pending_.get(decision.decision_id).energy_bounds is None
    router.learn("What is 2 + 2?", "small", energy_joules=20.0)  # the task's range widens meanwhile
    router.record_outcome(decision.decision_id, energy_joules=2.0, latency_s=0.1)
    energy = router.learner_.normalizer_.normalize(decision.features.task, 2.0)
    assert router.feedback(decision.decision_id, 1.0).reward == pytest.approx(0.5 - 0.5 * energy)


@pytest.mark.parametrize("scale", ["known", "seen"])
def test_the_known_energy_scale_spans_the_pools_predictions_from_the_first_query(scale: str) -> None:
    # "large" has only answered a chat query; on maths only the cheap models have run
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("mid"), FakeBackend("large")],
        features=_features(),
        seed=0,
        tradeoff=0.5,
        **({} if scale == "known" else {"energy_scale": scale}),  # type: ignore[arg-type]
    )
    router.learn("Hello, how are you?", "large", energy_joules=9.0)
    for model, joules in (("small", 1.0), ("mid", 2.0)):
        router.learn("What is 2 + 2?", model, energy_joules=joules)
    costs = {model: score.cost for model, score in router.route("What is 2 + 2?").scores.items()}
    low, high = router.learner_.normalizer_.range_for("math") or (0.0, 0.0)
    assert costs["small"] == pytest.approx(0.0, abs=0.02) and costs["large"] == pytest.approx(0.5, abs=0.01)
    if scale == "known":  # the range takes in large's prediction: mid is cheap beside it
        assert router.learner_._scale == "known" and high > 4.0 and costs["mid"] < 0.2
    else:  # only what ran on maths: mid is the dearest seen there, and priced like large
        assert (low, high) == (1.0, 2.0) and costs["mid"] == pytest.approx(0.5, abs=0.01)


def test_the_energy_scale_is_saved_and_a_state_from_before_it_keeps_seen(tmp_path: Path) -> None:
    from greenserv_core.errors import StateFileError

    def pool() -> list[FakeBackend]:
        return [FakeBackend("a"), FakeBackend("b")]

    for scale in ("known", "seen"):
        router = GreenServRouter(pool(), features=_features(), seed=0, energy_scale=scale)  # type: ignore[arg-type]
        router.save(tmp_path / f"{scale}.json")
        again = GreenServRouter.load(tmp_path / f"{scale}.json", pool(), features=_features())
        assert again.learner_._scale == scale
    state = GreenServRouter(pool(), features=_features(), seed=0).learner_.state_dict()
    del state["energy_scale"]  # saved before the scale was recorded, when only "seen" existed
    old = GreenServRouter(pool(), features=_features(), seed=0)
    old.learner_.load_state_dict(state)
    assert old.learner_._scale == "seen"
    state["energy_scale"] = "widest"
    other = GreenServRouter(pool(), features=_features(), seed=0)
    other.route("What is 2 + 2?")
    before = other.learner_.state_dict()
    with pytest.raises(StateFileError, match="energy scale"):
        other.learner_.load_state_dict(state)
    assert other.learner_._scale == "known" and repr(other.learner_.state_dict()) == repr(before)  # untouched


def test_forgetting_policies_refuse_to_share_and_bad_options_are_refused() -> None:
    from greenserv_core.errors import SharingNotSupportedError

    policy = LinUCB(2, forget=0.9)
    policy.add_arm("a")
    assert not policy.shareable
    with pytest.raises(SharingNotSupportedError, match="forget"):
        policy.statistics()
    for bad in ("0,1", (0, 1, 2), 1, (1.0, 0.0), (0.0, float("inf"))):
        with pytest.raises(InvalidInputError, match="reward_range"):
            LinUCB(2, reward_range=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="forget"):
        LinUCB(2, forget="0.9")  # type: ignore[arg-type]


def test_the_pool_scale_is_saved_and_its_costs_stay_in_range(tmp_path: Path) -> None:
    from greenserv_core.routing.energy_costs import energy_costs

    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=_features(), energy_scale="pool", seed=0)
    router.save(tmp_path / "router.json")
    again = GreenServRouter.load(tmp_path / "router.json", [FakeBackend("a"), FakeBackend("b")], features=_features())
    assert again.learner_._scale == "pool"
    learner = router.learner_
    costs = energy_costs(
        learner._scale, learner.normalizer_, "chat", {"a": 0.5, "b": 30.0, "c": None}, {"a": 1.0, "b": 9.0}, 0.5
    )
    assert costs == {"a": 0.0, "b": 0.5, "c": 0.0}


def test_a_policy_without_priors_ignores_a_models_quality_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    router = GreenServRouter(
        [FakeBackend("a", quality=QualityPrior(default=0.9)), FakeBackend("b")],
        policy="epsilon-nc",
        features=_features(),
    )
    assert router.models == ["a", "b"]
    assert "takes no quality prior" in caplog.text
    assert hash(QualityPrior({"math": 0.5})) == hash(QualityPrior({"math": 0.6}))  # hashable, as a frozen spec needs


def test_a_late_model_is_explored_at_the_starting_epsilon_until_it_has_answers() -> None:
    from greenserv_core.bandits import EpsilonGreedy

    x = np.array([1.0, 0.0])
    counts = {}
    for answers in (0, 30):
        policy = EpsilonGreedy(2, newcomer_answers=answers, seed=3)
        policy.add_arm("old")
        for _ in range(3000):  # ε decays to its floor (0.01)
            policy.update(policy.select(x), x, 0.6)
        policy.add_arm("new")
        assert policy.late_ == {"new"}
        rng = np.random.default_rng(0)
        for _ in range(600):
            arm = policy.select(x)
            policy.update(arm, x, float(rng.random() < (0.3 if arm == "new" else 0.6)))  # the newcomer looks bad
        counts[answers] = int(policy.ridge_.n[policy.ridge_.row("new")])
    assert counts[30] >= 30 > counts[0]  # without the rule, the decayed ε barely tries it
    state = policy.state_dict()
    loaded = EpsilonGreedy(2, **state["params"])
    loaded.load_state_dict(state)
    assert loaded.late_ == {"new"} and loaded.newcomer_answers == 30
    loaded.remove_arm("new")
    assert loaded.late_ == set()
    with pytest.raises(InvalidInputError, match="newcomer_answers"):
        EpsilonGreedy(2, newcomer_answers=-1)


def test_a_model_whose_answers_fall_below_its_estimate_is_forgotten_and_tried_again() -> None:
    from greenserv_core.bandits import EpsilonGreedy

    x = np.array([1.0, 0.0])
    rng = np.random.default_rng(1)
    policy = EpsilonGreedy(2, seed=0)
    for arm in ("steady", "drifting"):
        policy.add_arm(arm)
    policy.select(x)  # the check starts with the first decision
    for step in range(6000):
        for arm in ("steady", "drifting"):
            rate = 0.8 if arm == "steady" or step < 3000 else 0.3
            policy.update(arm, x, float(rng.random() < rate))
        if step == 2999:
            assert policy.drift_alarms_ == {}  # 3,000 steady answers each: no false alarm
    assert policy.drift_alarms_ == {"drifting": 1} and "steady" not in policy.drift_alarms_
    assert policy.theta("drifting") @ x == pytest.approx(0.3, abs=0.1)  # only the new evidence
    assert "drifting" in policy.late_
    state = policy.state_dict()
    loaded = EpsilonGreedy(2, **state["params"])
    loaded.load_state_dict(state)
    assert loaded.drift_alarms_ == {"drifting": 1} and loaded.cusum_ == policy.cusum_
    off = EpsilonGreedy(2, drift_alarm=None, seed=0)
    off.add_arm("a")
    for _ in range(200):
        off.update("a", x, 1.0)
    for _ in range(500):
        off.update("a", x, 0.0)
    assert off.drift_alarms_ == {} and off.ridge_.n[0] == 700
    with pytest.raises(InvalidInputError, match="drift_alarm"):
        EpsilonGreedy(2, drift_alarm=0)


def test_no_drift_alarm_before_the_first_decision_nor_once_learning_is_shared() -> None:
    from greenserv_core.bandits import EpsilonGreedy

    x = np.array([1.0, 0.0])
    warm = EpsilonGreedy(2, seed=0)
    warm.add_arm("m")
    for reward in [0.9] * 2000 + [0.1] * 2000:  # a warm start whose order follows difficulty
        warm.update("m", x, reward)
    assert warm.drift_alarms_ == {} and warm.ridge_.n[0] == 4000
    one, two = EpsilonGreedy(2, seed=0), EpsilonGreedy(2, seed=1)
    for policy in (one, two):
        policy.add_arm("m")
        policy.select(x)
        for _ in range(100):
            policy.update("m", x, 1.0)
    shared = one.statistics().plus(two.statistics())
    base = shared
    for policy in (one, two):
        policy.load_statistics(shared)
        for _ in range(400):
            policy.update("m", x, 0.0)
        assert policy.drift_alarms_ == {}  # a reset would be subtracted from the store once per replica
    shared = shared.plus(one.statistics().minus(base)).plus(two.statistics().minus(base))
    one.load_statistics(shared)
    assert one.ridge_.n[0] == 1000


def test_a_strong_prior_does_not_raise_alarm_after_alarm() -> None:
    from greenserv_core.bandits import ArmPrior, EpsilonGreedy

    x = np.array([1.0, 0.0])
    policy = EpsilonGreedy(2, seed=0)
    policy.add_arm("m", ArmPrior(x[None, :], np.array([0.9]), np.array([100.0])))  # overstated by 0.4
    policy.select(x)
    rng = np.random.default_rng(0)
    for _ in range(20000):
        policy.update("m", x, float(rng.random() < 0.5))
    assert policy.drift_alarms_.get("m", 0) <= 1


def test_a_model_with_a_quality_prior_is_watched_for_drift_from_its_own_answers() -> None:
    """Its own answers set what a fall is measured from: 600 right nine times in ten, then none."""
    from greenserv_core.bandits import EpsilonGreedy

    features = _features()
    policy = EpsilonGreedy(features.dimension, seed=0)
    policy.add_arm("m", arm_prior(QualityPrior({}, default=0.5, strength=10), features))
    policy.select(features.encode("chat", 0, 0))  # the check starts with the first decision
    rng = np.random.default_rng(0)
    for answer in range(800):
        x = features.encode(str(rng.choice(["math", "chat"])), int(rng.integers(3)), int(rng.integers(4)))
        policy.update("m", x, float(rng.random() < (0.9 if answer < 600 else 0.0)))  # it breaks after 600 answers
        if policy.drift_alarms_:
            break
    assert policy.drift_alarms_ == {"m": 1} and 600 < answer < 640


def test_a_model_steadily_worse_than_its_quality_prior_raises_no_alarm_and_is_learned() -> None:
    """Measured against an estimate that leaned on the prior, a model that scores 0.1 on maths
    where its card says 0.9 raised 52 alarms in 3,000 answers, each forgetting its evidence."""
    from greenserv_core.bandits import EpsilonGreedy

    features = _features()
    policy = EpsilonGreedy(features.dimension, seed=0)
    policy.add_arm("m", arm_prior(QualityPrior({"math": 0.9}, strength=10), features))
    policy.add_arm("other")
    start = features.encode("math", 0, 0)
    policy.select(start)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        x = features.encode("math", int(rng.integers(3)), int(rng.integers(4)))
        policy.update("m", x, float(rng.random() < 0.1))
    assert policy.drift_alarms_ == {}
    assert policy.estimates(start, ["m"])[0] == pytest.approx(0.1, abs=0.05)  # was about 0.75


def test_a_quality_prior_checks_every_score_and_its_strength() -> None:
    for bad in ({"scores": {"default": 5.0}}, {"scores": {}, "strength": True}, {"scores": {"qa": True}}):
        with pytest.raises(InvalidInputError, match="quality prior"):
            QualityPrior(**bad)  # type: ignore[arg-type]
    prior = QualityPrior({"qa": np.float32(0.5)}, default=np.float64(0.25), strength=np.int64(4))  # type: ignore[dict-item, arg-type]
    assert (prior.score_for("qa"), prior.score_for("chat"), prior.strength) == (0.5, 0.25, 4.0)


def test_a_quality_priors_strength_is_worth_that_many_answers_wherever_a_query_falls() -> None:
    believed = QualityPrior({"math": 0.9}, default=0.5, strength=100)
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b", quality=believed)], features=_features(), seed=0)
    router.learn("Compute 17 times 3.", "b", score=0.1, energy_joules=1.0, latency_s=0.1)
    estimate = router.route("Compute 17 times 3.").scores["b"].estimate
    assert estimate == pytest.approx((100 * 0.9 + 0.1) / 101, abs=0.005)  # was 0.35: one answer overturned it
    many = GreenServRouter(
        [FakeBackend("a"), FakeBackend("b", quality=QualityPrior({"math": 0.9}, strength=100))],
        features=_features(n_clusters=12),
        seed=0,
    )
    many.learn("Compute 17 times 3.", "b", score=0.1, energy_joules=1.0, latency_s=0.1)
    estimate = many.route("Compute 17 times 3.").scores["b"].estimate  # as much with more clusters
    assert estimate == pytest.approx((100 * 0.9 + 0.1) / 101, abs=0.005)
    policy = LinUCB(3, l2=1.0)
    policy.add_arm("m", ArmPrior(np.array([[1.0, 0.0, 0.0]]), np.array([0.9]), np.array([50.0])))
    with pytest.raises(InvalidInputError, match="dimension"):
        policy.replace_prior("m", ArmPrior(np.array([[1.0, 0.0]]), np.array([0.1]), np.array([5.0])))
    assert policy.ridge_.data_sums("m")[0][0, 0] == 0.0  # was 50: the old prior left behind as data


@pytest.mark.parametrize(
    "believed",
    [
        QualityPrior({"math": 0.9}, strength=20),
        QualityPrior({"math": 0.9, "chat": 0.9}, strength=20),  # counted as 31 answers
        QualityPrior({}, default=0.9, strength=20),  # as 31
    ],
)
def test_a_quality_prior_is_worth_its_strength_however_many_task_types_it_names(believed: QualityPrior) -> None:
    features = _features()
    policy = LinUCB(features.dimension, seed=0)
    policy.add_arm("m", arm_prior(believed, features))
    x = features.encode("math", 1, 2)
    for _ in range(20):  # as many answers of 0.1 as the prior's strength: halfway
        policy.update("m", x, 0.1)
    assert policy.estimates(x, ["m"])[0] == pytest.approx(0.5, abs=0.01)


def test_a_router_loaded_with_changed_quality_priors_uses_them(tmp_path: Path) -> None:
    def pool(score: float | None) -> list[FakeBackend]:
        quality = None if score is None else QualityPrior({"math": score}, default=score, strength=50)
        return [FakeBackend("a"), FakeBackend("b", quality=quality)]

    router = GreenServRouter(pool(0.95), features=_features(), seed=0, policy="linucb")
    router.save(tmp_path / "router.json")
    for score, expected in ((0.1, 0.1), (None, 0.0)):
        loaded = GreenServRouter.load(tmp_path / "router.json", pool(score), features=_features())
        estimate = loaded.route("What is 2 + 2?").scores["b"].estimate
        assert estimate == pytest.approx(expected, abs=0.02)  # was 0.95: the saved prior, silently
    with pytest.raises(InvalidInputError, match="unknown task types"):  # the caller's prior: not the file's fault
        GreenServRouter.load(
            tmp_path / "router.json",
            [FakeBackend("a"), FakeBackend("b", quality=QualityPrior({"algebra": 0.5}))],
            features=_features(),
        )
    with pytest.raises(InvalidInputError, match="strength"):
        QualityPrior({"math": 0.9}, strength=1e17)  # the ridge went singular


@pytest.mark.parametrize(("policy", "params"), [("linucb", {"forget": 0.9}), ("epsilon", {"forget": 0.99})])
def test_a_router_that_forgets_loads_what_it_saved(tmp_path: Path, policy: str, params: dict[str, float]) -> None:
    def pool() -> list[FakeBackend]:
        return [FakeBackend("small", joules_per_token=1.0), FakeBackend("large", joules_per_token=9.0)]

    router = GreenServRouter(pool(), features=_features(), policy=policy, policy_params=params, seed=0)
    decision = router.route("What is 2 + 2?")
    router.feedback(decision.decision_id, 1.0)
    router.save(tmp_path / "router.json")  # a policy that forgets cannot share its state, but it saves
    again = GreenServRouter.load(tmp_path / "router.json", pool(), features=_features())  # was StateFileError
    assert again.loaded_statistics_ is None

    def saved(r: GreenServRouter) -> str:
        return json.dumps(r.learner_.policy_.state_dict(), default=lambda value: np.asarray(value).tolist())

    assert saved(again) == saved(router)


def test_a_prior_whose_weighted_sums_overflow_is_refused_and_changes_nothing() -> None:
    x = np.array([1.0, 0.0])
    overflowing = (
        ArmPrior(np.array([[1.0, 1.0], [1.0, 0.0]]), np.array([0.5, 0.5]), np.array([1e308, 1e308])),  # their sum
        ArmPrior(np.array([[1e200, 1.0]]), np.array([0.5]), np.array([1e200])),  # weight × context²
    )
    policy = LinUCB(2, seed=0)
    for bad in overflowing:
        with pytest.raises(InvalidInputError, match="prior of 'a' overflows"):
            policy.add_arm("a", bad)
        assert policy.arms == [] and len(policy.ridge_) == 0  # the arm was not added
    policy.add_arm("a", ArmPrior(np.array([[1.0, 0.0]]), np.array([0.5]), np.array([10.0])))
    policy.update("a", x, 0.4)
    before = repr(policy.state_dict())
    for bad in overflowing:
        with pytest.raises(InvalidInputError, match="prior of 'a' overflows"):
            policy.replace_prior("a", bad)
        assert repr(policy.state_dict()) == before
    policy.update("a", x, 0.4)  # later updates are taken
    assert policy.decide(x).arm == "a" and 0.4 < policy.estimates(x, ["a"])[0] < 0.5
    finite = ArmPrior(np.array([[1.0, 0.0]]), np.array([0.5]), np.array([1e308]))  # its sums fit, not with the data's
    policy.add_arm("b")
    policy.update("b", np.array([1e154, 0.0]), 0.0)
    before = repr(policy.state_dict())
    with pytest.raises(InvalidInputError, match="prior of 'b' overflows"):
        policy.replace_prior("b", finite)
    assert repr(policy.state_dict()) == before
    arm = RidgeArm(2)
    arm.update(np.array([1e154, 0.0]), 0.0)
    with pytest.raises(InvalidInputError, match="overflows"):
        arm.add_prior(finite)
    assert np.isfinite(arm.A).all() and not arm.prior_xx.any()
