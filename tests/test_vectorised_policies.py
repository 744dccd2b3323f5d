"""Stacked (vectorised) decisions equal the per-arm closed form (issue 16).

The linear policies and the cost models keep every arm's ridge statistics in one
:class:`RidgeStack`; a decision is a few array operations over it. These tests rebuild each
arm's estimate from its own history with a direct numpy solve and compare.
"""

from collections.abc import Hashable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenserv_core import FakeBackend
from greenserv_core.backends.base import ModelInfo
from greenserv_core.bandits import (
    ArmPrior,
    ArmScore,
    ArmScores,
    ArmValues,
    LinearPolicy,
    LinearThompson,
    LinUCB,
    RidgeStack,
    make_policy,
)
from greenserv_core.bandits.columns import KnownValues
from greenserv_core.errors import InvalidInputError, UnknownModelError
from greenserv_core.outcomes import CostModel
from greenserv_core.routing.eligibility import RULES, Candidate, Candidates, Limits, check_eligibility
from greenserv_core.routing.pool import ModelPool

D = 5
History = dict[str, list[tuple[np.ndarray, float]]]


def contexts(rng: np.random.Generator, n: int) -> np.ndarray:
    X = (rng.random((n, D)) < 0.4).astype(float)
    X[:, 0] = 1.0
    return X


def closed_form(
    history: Sequence[tuple[np.ndarray, float]],
    *,
    l2: float = 1.0,
    prior_mean: np.ndarray | None = None,
    prior: ArmPrior | None = None,
    forget: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(θ, A⁻¹)`` of one arm from its own history, by a direct solve."""
    mean = np.zeros(D) if prior_mean is None else prior_mean
    base_a, base_b = l2 * np.eye(D), l2 * mean
    if prior is not None:
        base_a = base_a + (prior.contexts * prior.weights[:, None]).T @ prior.contexts
        base_b = base_b + (prior.weights * prior.rewards) @ prior.contexts
    data_a, data_b = np.zeros((D, D)), np.zeros(D)
    for x, y in history:  # each update discounts the data before it by ``forget``
        data_a, data_b = forget * data_a + np.outer(x, x), forget * data_b + y * x
    A = base_a + data_a
    return np.linalg.solve(A, base_b + data_b), np.linalg.inv(A)


def train(policy: LinearPolicy, rng: np.random.Generator, steps: int, history: History) -> None:
    for x in contexts(rng, steps):
        arm = policy.arms[int(rng.integers(len(policy.arms)))]
        y = float(rng.random())
        policy.update(arm, x, y)
        history.setdefault(arm, []).append((x, y))


def check_stack(policy: LinearPolicy, history: History, **closed: object) -> None:
    """Every arm's row (and its view) equals the closed form of its own history."""
    assert policy.ridge_.names == policy.arms
    prior_mean = np.zeros(D)
    prior_mean[0] = policy.prior_reward
    for arm in policy.arms:
        theta, a_inv = closed_form(history.get(arm, []), l2=policy.l2, prior_mean=prior_mean, **closed)  # type: ignore[arg-type]
        row = policy.ridge_.row(arm)
        np.testing.assert_allclose(policy.ridge_.theta[row], theta, atol=1e-8, rtol=0)
        np.testing.assert_allclose(policy.ridge_.A_inv[row], a_inv, atol=1e-8, rtol=0)
        np.testing.assert_allclose(policy.arms_[arm].theta, theta, atol=1e-8, rtol=0)
        assert policy.arms_[arm].n == len(history.get(arm, []))


# ---- decisions ---------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n_arms=st.integers(1, 12), steps=st.integers(0, 80))
def test_linucb_indices_equal_the_closed_form_for_any_eligible_subset(seed: int, n_arms: int, steps: int) -> None:
    rng = np.random.default_rng(seed)
    policy = LinUCB(D, alpha=0.7, seed=seed)
    for i in range(n_arms):
        policy.add_arm(f"arm-{i}")
    history: History = {}
    train(policy, rng, steps, history)
    eligible = [str(a) for a in rng.permutation(policy.arms)[: int(rng.integers(1, n_arms + 1))]]
    costs = {arm: float(rng.random()) for arm in eligible}
    x = contexts(rng, 1)[0]
    choice = policy.decide(x, eligible, value_scale=0.6, costs=costs)
    assert list(choice.scores) == eligible
    for arm in eligible:
        theta, a_inv = closed_form(history.get(arm, []))
        estimate, bonus = float(x @ theta), 0.7 * float(np.sqrt(x @ a_inv @ x))
        score = choice.scores[arm]
        assert score.estimate == pytest.approx(estimate, abs=1e-9)
        assert score.bonus == pytest.approx(bonus, abs=1e-9)
        assert score.cost == costs[arm]
        assert score.score == pytest.approx(0.6 * (estimate + bonus) - costs[arm], abs=1e-9)
    best = max(s.score for s in choice.scores.values())
    assert choice.scores[choice.arm].score >= best - 1e-12


def test_thompson_draws_one_normal_per_eligible_arm_around_the_closed_form() -> None:
    rng = np.random.default_rng(4)
    policy = LinearThompson(D, v=0.5, seed=9)
    for i in range(6):
        policy.add_arm(f"arm-{i}")
    history: History = {}
    train(policy, rng, 60, history)
    eligible = ["arm-4", "arm-0", "arm-2"]
    x = contexts(rng, 1)[0]
    draws = np.random.default_rng()
    draws.bit_generator.state = policy.rng_.bit_generator.state  # the policy's next draws
    noise = draws.standard_normal(len(eligible))
    choice = policy.decide(x, eligible)
    for arm, z in zip(eligible, noise, strict=True):
        theta, a_inv = closed_form(history[arm])
        assert choice.scores[arm].estimate == pytest.approx(float(x @ theta), abs=1e-9)
        assert choice.scores[arm].bonus == pytest.approx(0.5 * float(np.sqrt(x @ a_inv @ x)) * z, abs=1e-9)


def test_epsilon_greedy_estimates_equal_the_closed_form_with_its_optimistic_prior() -> None:
    rng = np.random.default_rng(5)
    policy = make_policy("epsilon", D, seed=0, epsilon=0.0, min_epsilon=0.0)
    assert isinstance(policy, LinearPolicy)
    for i in range(4):
        policy.add_arm(f"arm-{i}")
    history: History = {}
    train(policy, rng, 40, history)
    x = contexts(rng, 1)[0]
    prior_mean = np.eye(D)[0]  # prior_reward 1 on the intercept
    scores = policy.decide(x).scores
    for arm in policy.arms:
        theta, _ = closed_form(history.get(arm, []), prior_mean=prior_mean)
        assert scores[arm].estimate == pytest.approx(float(x @ theta), abs=1e-9) and scores[arm].bonus == 0.0
    assert policy.decide(x).arm == max(scores, key=lambda arm: scores[arm].estimate)


def test_a_thousand_arms_decide_in_one_pass_and_agree_with_the_per_arm_views() -> None:
    rng = np.random.default_rng(6)
    policy = LinUCB(D, alpha=0.3, reward_range=(0.0, 1.0), seed=0)
    for i in range(1000):
        policy.add_arm(f"m{i}")
    history: History = {}
    train(policy, rng, 3000, history)
    x = contexts(rng, 1)[0]
    scores = policy.decide(x).scores
    assert isinstance(scores, ArmScores) and len(scores) == 1000
    for arm in ("m0", "m517", "m999"):
        view = policy.arms_[arm]
        index = min(1.0, max(0.0, view.predict(x) + 0.3 * np.sqrt(view.variance(x))))
        if view.n == 0:
            index = 1.0  # never tried: the best possible index
        assert scores[arm].estimate + scores[arm].bonus == pytest.approx(index, abs=1e-12)


# ---- arms joining and leaving --------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["linucb", "thompson", "epsilon"])
def test_arms_added_and_removed_in_the_middle_keep_every_row_right(strategy: str) -> None:
    rng = np.random.default_rng(7)
    policy = make_policy(strategy, D, seed=0)
    assert isinstance(policy, LinearPolicy)
    history: History = {}
    for i in range(6):
        policy.add_arm(f"arm-{i}")
    train(policy, rng, 80, history)
    policy.remove_arm("arm-1")
    policy.remove_arm("arm-4")
    policy.add_arm("new-a")
    train(policy, rng, 40, history)
    policy.remove_arm("arm-0")  # the first row
    policy.add_arm("new-b")
    policy.remove_arm("new-b")  # the last row
    for i in range(10):  # growing past the stack's capacity
        policy.add_arm(f"more-{i}")
    train(policy, rng, 60, history)
    for gone in ("arm-0", "arm-1", "arm-4", "new-b"):
        history.pop(gone, None)
        with pytest.raises(UnknownModelError):
            policy.ridge_.row(gone)
    assert policy.arms == ["arm-2", "arm-3", "arm-5", "new-a", *(f"more-{i}" for i in range(10))]
    check_stack(policy, history)
    x = contexts(rng, 1)[0]
    assert set(policy.decide(x).scores) == set(policy.arms)


def test_a_removed_and_re_added_arm_starts_afresh() -> None:
    policy = LinUCB(D, seed=0)
    for name in ("a", "b", "c"):
        policy.add_arm(name)
    x = np.eye(D)[0]
    for _ in range(5):
        policy.update("b", x, 1.0)
    policy.remove_arm("b")
    policy.add_arm("b")
    assert policy.arms_["b"].n == 0 and policy.ridge_.names == ["a", "c", "b"]
    np.testing.assert_array_equal(policy.theta("b"), np.zeros(D))


# ---- forgetting, priors, the pool prior, refresh -----------------------------------------------
def test_forgetting_discounts_each_arms_own_updates() -> None:
    rng = np.random.default_rng(8)
    policy = LinUCB(D, forget=0.9, seed=0)
    for i in range(4):
        policy.add_arm(f"arm-{i}")
    history: History = {}
    train(policy, rng, 120, history)
    check_stack(policy, history, forget=0.9)


def test_priors_stay_in_their_own_rows_and_mark_arms_as_tried() -> None:
    rng = np.random.default_rng(9)
    policy = LinUCB(D, reward_range=(0.0, 1.0), seed=0)
    prior = ArmPrior(np.eye(D)[[0, 2]], np.array([0.7, 0.9]), np.array([5.0, 3.0]))
    policy.add_arm("plain")
    policy.add_arm("believed", prior)
    policy.add_arm("fresh")
    assert policy._untried_mask(["plain", "believed", "fresh"]).tolist() == [True, False, True]
    history: History = {}
    train(policy, rng, 30, history)
    theta, _ = closed_form(history.get("believed", []), prior=prior)
    np.testing.assert_allclose(policy.theta("believed"), theta, atol=1e-8, rtol=0)
    policy.remove_arm("plain")  # rows move up: the prior moves with its arm
    np.testing.assert_allclose(
        policy.arms_["believed"].prior_xx, (prior.contexts * prior.weights[:, None]).T @ prior.contexts
    )
    assert not policy.arms_["fresh"].prior_xx.any()
    xx, _, n = policy.arms_["believed"].data_sums()  # the prior is not data
    own = history.get("believed", [])
    np.testing.assert_allclose(xx, sum((np.outer(x, x) for x, _ in own), np.zeros((D, D))), atol=1e-9)
    assert n == len(own)


def test_the_pool_prior_is_the_mean_of_the_learned_rows() -> None:
    rng = np.random.default_rng(10)
    policy = LinUCB(D, pool_prior=True, seed=0)
    for name in ("a", "b", "c"):
        policy.add_arm(name)
    for x in contexts(rng, 30):
        for arm in ("a", "c"):  # "b" never learns: not in the mean
            policy.update(arm, x, float(rng.random()))
    expected = np.mean([policy.theta("a"), policy.theta("c")], axis=0)
    policy.add_arm("newcomer")
    np.testing.assert_allclose(policy.theta("newcomer"), expected, atol=1e-12)
    np.testing.assert_allclose(policy.arms_["newcomer"].prior_mean, expected)
    assert not policy._untried_mask(["newcomer"])[0]  # a prior of its own


def test_the_periodic_refresh_keeps_every_row_exact() -> None:
    rng = np.random.default_rng(11)
    stack = RidgeStack(D, l2=1.0, refresh_every=7)
    history: History = {}
    for name in ("a", "b", "c"):
        stack.add(name)
    for x in contexts(rng, 600):
        name = ("a", "b", "c")[int(rng.integers(3))]
        y = float(rng.random())
        stack.update(name, x, y)
        history.setdefault(name, []).append((x, y))
    for name in ("a", "b", "c"):
        theta, a_inv = closed_form(history[name])
        np.testing.assert_allclose(stack.theta[stack.row(name)], theta, atol=1e-8, rtol=0)
        np.testing.assert_allclose(stack.A_inv[stack.row(name)], a_inv, atol=1e-8, rtol=0)
    with pytest.raises(ValueError, match="read-only"):
        stack.A[0, 0, 0] = 1.0  # the stacked arrays change only through the stack's methods


# ---- saving and sharing ----------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["linucb", "thompson", "epsilon"])
def test_state_round_trips_rebuild_the_stack(strategy: str) -> None:
    rng = np.random.default_rng(12)
    policy = make_policy(strategy, D, seed=3)
    assert isinstance(policy, LinearPolicy)
    for i in range(5):
        policy.add_arm(f"arm-{i}", ArmPrior(np.eye(D)[[0]], np.array([0.5]), np.array([2.0])) if i == 3 else None)
    train(policy, rng, 50, {})
    policy.remove_arm("arm-1")
    restored = make_policy(strategy, D, **policy.params())
    assert isinstance(restored, LinearPolicy)
    restored.load_state_dict(policy.state_dict())
    assert restored.ridge_.names == policy.ridge_.names == restored.arms
    for name in ("A", "A_inv", "b", "n", "prior_xx", "prior_yx", "prior_mean", "theta"):
        np.testing.assert_array_equal(getattr(restored.ridge_, name), getattr(policy.ridge_, name))
    for x in contexts(rng, 5):
        one, two = policy.decide(x), restored.decide(x)
        assert one.arm == two.arm and one.scores == two.scores


def test_a_state_saved_per_arm_before_priors_existed_still_loads() -> None:
    policy = LinUCB(2, seed=0)
    old = {  # the per-arm format, without the prior keys
        "policy": "linucb",
        "dimension": 2,
        "params": {},
        "seed": 0,
        "t": 4,
        "rng": policy.rng_.bit_generator.state,
        "arms": {
            "a": {"A": [[2.0, 0.0], [0.0, 1.0]], "A_inv": [[0.5, 0.0], [0.0, 1.0]], "b": [1.0, 0.0], "n": 1, "l2": 1.0}
        },
    }
    policy.load_state_dict(old)
    assert policy.arms == ["a"] and policy.arms_["a"].n == 1
    assert policy.decide(np.array([1.0, 0.0])).scores["a"].estimate == pytest.approx(0.5)
    with pytest.raises(InvalidInputError, match="dimension"):
        policy.load_state_dict({**old, "arms": {"a": {**old["arms"]["a"], "b": [1.0, 0.0, 0.0]}}})
    assert policy.arms == ["a"]  # a failed load leaves the policy as it was


def test_statistics_shared_between_replicas_load_into_the_right_rows() -> None:
    rng = np.random.default_rng(13)
    one, two = LinUCB(D, seed=0), LinUCB(D, seed=0)
    for name in ("a", "b", "c"):
        one.add_arm(name)
    for name in ("c", "a", "b"):  # another row order
        two.add_arm(name)
    train(one, rng, 40, {})
    two.load_statistics(one.statistics())
    for arm in ("a", "b", "c"):
        np.testing.assert_allclose(two.theta(arm), one.theta(arm), atol=1e-12)
        assert two.arms_[arm].n == one.arms_[arm].n


# ---- the cost models ----------------------------------------------------------------------------
def test_cost_predictions_for_the_pool_are_one_product_and_equal_the_closed_form() -> None:
    rng = np.random.default_rng(14)
    costs = CostModel(D - 1, l2=0.01)
    names = [f"m{i}" for i in range(8)]
    for name in names:
        costs.add_model(name)
    history: History = {}
    for x in contexts(rng, 100):
        name = names[int(rng.integers(6))]  # m6 and m7 never observed
        tokens = int(rng.integers(1, 500))
        value = float(rng.random() * 10)
        costs.observe(name, x[:-1], tokens, value)
        history.setdefault(name, []).append((np.append(x[:-1], tokens / 1000), value))
    costs.remove_model("m2")
    x, tokens = contexts(rng, 1)[0][:-1], 120
    asked = ["m7", "m0", "m5", "m6", "gone", "m3"]
    predicted = costs.predict_array(asked, x, tokens)
    for name, value in zip(asked, predicted, strict=True):
        if name in history and name != "m2":
            theta, _ = closed_form(history[name], l2=0.01)
            assert value == pytest.approx(max(0.0, float(np.append(x, tokens / 1000) @ theta)), abs=1e-9)
        else:
            assert np.isnan(value)
    assert costs.predict_all(asked, x, tokens)["m6"] is None
    assert sum(arm.n for arm in costs.models_.values()) == sum(len(h) for n, h in history.items() if n != "m2")


# ---- the columns -------------------------------------------------------------------------------
def test_scores_read_as_a_mapping() -> None:
    scores = ArmScores(["a", "b"], np.array([0.5, 0.2]), np.zeros(2), np.array([0.0, 0.1]), np.array([0.5, 0.1]))
    plain = {"a": ArmScore(0.5, 0.0, 0.0, 0.5), "b": ArmScore(0.2, 0.0, 0.1, 0.1)}
    assert scores == plain and plain == scores and dict(scores) == plain
    assert "b" in scores and "z" not in scores and scores.get("z") is None and len(scores) == 2
    assert list(scores.values()) == list(plain.values())
    assert KnownValues(["a", "b"], np.array([1.0, np.nan])) == {"a": 1.0, "b": None}
    with pytest.raises(InvalidInputError):
        ArmValues(["a"], np.zeros(2))


def test_costs_given_as_a_plain_mapping_or_as_columns_score_alike() -> None:
    policy = LinUCB(D, seed=0)
    for name in ("a", "b", "c"):
        policy.add_arm(name)
    x = np.eye(D)[0]
    plain = policy.decide(x, ["c", "a"], value_scale=0.5, costs={"a": 0.25, "b": 9.0})
    policy.rng_ = np.random.default_rng(0)
    columns = policy.decide(x, ["c", "a"], value_scale=0.5, costs=ArmValues(["c", "a"], np.array([0.0, 0.25])))
    assert plain.scores == columns.scores


# ---- eligibility over columns ------------------------------------------------------------------
candidate_strategy = st.builds(
    lambda i, window, caps, prior_s, prior_j, available, tokens, joules, seconds: Candidate(
        ModelInfo(
            f"m{i}",
            context_window=window,
            capabilities=frozenset(caps),
            prior_seconds_per_token=prior_s,
            prior_joules_per_token=prior_j,
        ),
        available,
        tokens,
        joules,
        seconds,
    ),
    st.integers(0, 10**6),
    st.integers(1, 200),
    st.sets(st.sampled_from(["tools", "json_mode", "chat_template"])),
    st.none() | st.floats(0.0, 0.1),
    st.none() | st.floats(0.0, 2.0),
    st.booleans(),
    st.none() | st.integers(0, 200),
    st.none() | st.floats(0.0, 300.0),
    st.none() | st.floats(0.0, 5.0),
)


@settings(max_examples=80, deadline=None)
@given(
    pool=st.lists(candidate_strategy, max_size=12, unique_by=lambda c: c.name),
    max_new_tokens=st.integers(1, 64),
    requires=st.sets(st.sampled_from(["tools", "json_mode"])),
    max_latency_s=st.none() | st.floats(0.1, 3.0),
    max_joules=st.none() | st.floats(1.0, 200.0),
    pick=st.data(),
)
def test_the_column_rules_exclude_exactly_what_the_rule_functions_do(
    pool: list[Candidate],
    max_new_tokens: int,
    requires: set[str],
    max_latency_s: float | None,
    max_joules: float | None,
    pick: st.DataObject,
) -> None:
    names = [c.name for c in pool]
    requested = pick.draw(st.none() | st.sets(st.sampled_from(names))) if names else None
    failed = {name: "boom" for name in pick.draw(st.sets(st.sampled_from(names)))} if names else {}
    limits = Limits(max_new_tokens, requested, failed, frozenset(requires), max_latency_s, max_joules)
    verdict = check_eligibility(Candidates.of(pool), limits)
    expected_excluded: dict[str, str] = {}
    expected_joules: dict[str, float | None] = {}
    for c in pool:  # the per-candidate definition
        reason = next((why for rule in RULES if (why := rule(c, limits)) is not None), None)
        if reason is None:
            expected_joules[c.name] = c.expected(c.predicted_joules, c.info.prior_joules_per_token, max_new_tokens)
        else:
            expected_excluded[c.name] = reason
    assert list(verdict.excluded.items()) == list(expected_excluded.items())  # in pool order
    assert list(verdict.predicted_joules.items()) == list(expected_joules.items())
    assert [names[i] for i in verdict.positions] == list(expected_joules)


# ---- the pool ------------------------------------------------------------------------------------
class Counting(FakeBackend):
    """A fake that counts its ``count_tokens`` calls and may share its token counts."""

    token_count_key: Hashable | None = None  # a plain attribute here, set per fake

    def __init__(self, name: str, key: Hashable | None = None, **kwargs: object) -> None:
        super().__init__(name, **kwargs)  # type: ignore[arg-type]
        self.token_count_key = key
        self.counted = 0

    def count_tokens(self, messages):  # type: ignore[no-untyped-def]
        self.counted += 1
        return super().count_tokens(messages)


class Flaky(FakeBackend):
    available = True


def test_the_pool_counts_once_per_shared_tokenizer_and_asks_availability_each_query() -> None:
    backends = [Counting("a", "same"), Counting("b", "same"), Counting("c"), Flaky("d")]
    pool = ModelPool({b.info.name: b for b in backends})
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    table = pool.candidates(messages, None)
    assert table.prompt_tokens.tolist() == [6.0] * 4
    assert [b.counted for b in backends[:3]] == [1, 0, 1]  # "a" counted for "b" too
    assert pool.candidates(messages, {"b"}).prompt_tokens[1] == 6.0
    assert backends[1].counted == 1 and np.isnan(pool.candidates(messages, {"b"}).prompt_tokens[2])
    backends[3].available = False  # type: ignore[misc]
    assert pool.candidates(messages, None).available.tolist() == [True, True, True, False]


def test_a_group_that_shares_counts_is_counted_once_where_a_members_bound_does_not_fit() -> None:
    """Two fakes share one count; only the second has a bound: asked for it alone, it is not
    counted where its bound fits; with the first (no bound), or where the bound does not fit,
    the group is counted once for both."""
    first, second = FakeBackend("a", context_window=64), FakeBackend("b", context_window=64)
    second.token_bound = lambda messages: 5  # type: ignore[attr-defined]
    pool = ModelPool({"a": first, "b": second})
    ask = [{"role": "user", "content": "What is 2 + 2?"}]
    assert np.isnan(pool.candidates(ask, {"b"}, 8).prompt_tokens).all()  # 5 + 8 fits 64: not counted
    assert pool.candidates(ask, None, 8).prompt_tokens.tolist() == [6.0, 6.0]  # "a" has no bound: both counted
    assert pool.candidates(ask, {"b"}, 60).prompt_tokens.tolist()[1] == 6.0  # 5 + 60 > 64: counted
