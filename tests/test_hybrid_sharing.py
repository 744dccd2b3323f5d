"""Shared structure across arms: the hybrid ridge behind ``share=`` (issue 15)."""

import numpy as np
import pytest

from greenserv_core.bandits import ArmPrior, LinUCB, make_policy
from greenserv_core.bandits.hybrid import fit_hybrid
from greenserv_core.bandits.ridges import RidgeStack
from greenserv_core.errors import InvalidInputError


def _brute_force(data: dict[str, list[tuple[np.ndarray, float]]], d: int, l2: float, share: float, mean: np.ndarray):
    """The hybrid's objective solved as one explicit ridge over ``[β, γ_1, …, γ_M]``."""
    arms = list(data)
    size = d * (1 + len(arms))
    rows, targets = [], []
    for m, arm in enumerate(arms):
        for x, r in data[arm]:
            row = np.zeros(size)
            row[:d] = x
            row[d * (1 + m) : d * (2 + m)] = x
            rows.append(row)
            targets.append(r)
    penalty = np.zeros(size)
    penalty[:d] = l2
    centre = np.zeros(size)
    for m in range(len(arms)):
        block = slice(d * (1 + m), d * (2 + m))
        penalty[block] = share
        penalty[d * (1 + m)] = l2
        centre[block] = mean
    X, y = np.array(rows), np.array(targets)
    solution = np.linalg.solve(X.T @ X + np.diag(penalty), X.T @ y + penalty * centre)
    beta = solution[:d]
    return np.array([beta + solution[d * (1 + m) : d * (2 + m)] for m in range(len(arms))])


def _random_data(seed: int, arms: int = 3, d: int = 4, per_arm: int = 12) -> dict[str, list[tuple[np.ndarray, float]]]:
    rng = np.random.default_rng(seed)
    data: dict[str, list[tuple[np.ndarray, float]]] = {}
    for m in range(arms):
        rows = []
        for _ in range(per_arm + m * 3):
            x = np.concatenate([[1.0], rng.integers(0, 2, d - 1).astype(float)])
            rows.append((x, float(rng.random())))
        data[f"arm{m}"] = rows
    return data


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("share", [0.5, 4.0, 30.0])
def test_the_fit_is_the_joint_ridge_solved_outright(seed: int, share: float) -> None:
    d, l2 = 4, 1.0
    mean = np.array([0.7, 0.0, 0.0, 0.0])
    data = _random_data(seed, d=d)
    stack = RidgeStack(d, l2=l2, prior_mean=mean)
    for arm, rows in data.items():
        stack.add(arm)
        for x, r in rows:
            stack.update(arm, x, r)
    fit = fit_hybrid(stack, share)
    assert np.allclose(fit.theta, _brute_force(data, d, l2, share, mean), atol=1e-9)


def test_pseudo_observations_inform_their_arms_own_part_only() -> None:
    d = 3
    data = _random_data(5, d=d)
    x = np.array([1.0, 1.0, 0.0])
    stacks = RidgeStack(d, l2=1.0), RidgeStack(d, l2=1.0)
    for stack in stacks:
        for arm, rows in data.items():
            stack.add(arm)
            for context, r in rows:
                stack.update(arm, context, r)
    stacks[1].add_prior("arm0", ArmPrior(np.array([x] * 4), np.full(4, 0.9), np.ones(4)))
    plain, prior = fit_hybrid(stacks[0], 5.0), fit_hybrid(stacks[1], 5.0)
    assert np.allclose(plain.theta, _brute_force(data, d, 1.0, 5.0, np.zeros(d)))
    assert np.allclose(prior.shared, plain.shared)  # β from the data alone: one model's card says nothing of others
    assert np.allclose(prior.theta[1:], plain.theta[1:])
    assert abs(prior.theta[0] @ x - 0.9) < abs(plain.theta[0] @ x - 0.9)  # its own part moved towards its prior
    empty = RidgeStack(d, l2=1.0)
    for arm in ("a", "b"):
        empty.add(arm)
    empty.add_prior("b", ArmPrior(np.array([x] * 50), np.full(50, 0.95), np.ones(50)))
    assert fit_hybrid(empty, 10.0).theta[0] @ x == pytest.approx(0.0)  # was 0.6: a's estimate rose with b's card


def test_an_arm_inherits_what_the_others_found_about_a_context_it_never_saw() -> None:
    x_hard, x_easy = np.array([1.0, 1.0, 0.0]), np.array([1.0, 0.0, 1.0])
    alone, shared = LinUCB(3, seed=0), LinUCB(3, share=10.0, seed=0)
    for policy in (alone, shared):
        for arm in ("a", "b", "c"):
            policy.add_arm(arm)
        for _ in range(30):
            policy.update("a", x_hard, 0.1)
            policy.update("b", x_hard, 0.2)
            policy.update("a", x_easy, 0.8)
            policy.update("b", x_easy, 0.9)
            policy.update("c", x_easy, 0.85)
    # on its own, c's ridge splits its level between the two contexts (0.42 on the hard one);
    # shared, it expects the hard context to be hard for it too (0.17; a and b got 0.1 and 0.2)
    assert alone.theta("c") @ x_hard > 0.4
    assert shared.theta("c") @ x_hard < 0.25
    assert shared.theta("c") @ x_easy == pytest.approx(0.85, abs=0.05)


def test_the_fit_follows_every_change_of_the_stack() -> None:
    policy = make_policy("epsilon", 2, share=3.0, seed=0)
    policy.add_arm("a")
    policy.add_arm("b")
    x = np.array([1.0, 1.0])
    before = policy.theta("a").copy()  # type: ignore[attr-defined]
    policy.update("a", x, 0.0)
    after = policy.theta("a")  # type: ignore[attr-defined]
    assert not np.allclose(before, after)
    policy.add_arm("c")
    assert np.isfinite(policy.theta("c")).all()  # type: ignore[attr-defined]
    policy.remove_arm("a")
    assert policy.arms == ["b", "c"]


def test_share_zero_is_every_arm_on_its_own() -> None:
    plain, zero = make_policy("linucb", 3, seed=4), make_policy("linucb", 3, share=0.0, seed=4)
    rng = np.random.default_rng(0)
    for policy in (plain, zero):
        for arm in ("a", "b"):
            policy.add_arm(arm)
    for _ in range(40):
        x = np.concatenate([[1.0], rng.integers(0, 2, 2).astype(float)])
        arm = plain.select(x)
        assert zero.select(x) == arm
        reward = float(rng.random())
        plain.update(arm, x, reward)
        zero.update(arm, x, reward)


@pytest.mark.parametrize("strategy", ["linucb", "thompson", "epsilon"])
def test_a_saved_sharing_policy_loads_with_its_setting_and_estimates(strategy: str) -> None:
    policy = make_policy(strategy, 3, share=10.0, seed=1)
    for arm in ("a", "b"):
        policy.add_arm(arm)
    x = np.array([1.0, 0.0, 1.0])
    for reward in (0.2, 0.9, 0.4):
        policy.update("a", x, reward)
    state = policy.state_dict()
    loaded = make_policy(strategy, 3, **state["params"])
    loaded.load_state_dict(state)
    assert loaded.params()["share"] == 10.0
    assert np.allclose(loaded.theta("a"), policy.theta("a"))  # type: ignore[attr-defined]


@pytest.mark.parametrize("strategy", ["linucb", "thompson", "epsilon"])
def test_a_sharing_policy_loaded_into_one_with_another_l2_fits_as_the_saved_one(strategy: str) -> None:
    saved = make_policy(strategy, 3, l2=5.0, share=10.0, seed=1)
    for arm in ("a", "b"):
        saved.add_arm(arm)
    for _ in range(3):
        saved.update("a", np.array([1.0, 1.0, 0.0]), 0.9)
        saved.update("b", np.array([1.0, 0.0, 1.0]), 0.1)
    loaded = make_policy(strategy, 3, l2=1.0, share=10.0, seed=1)
    loaded.load_state_dict(saved.state_dict())
    assert loaded.ridge_.l2s.tolist() == [5.0, 5.0]  # type: ignore[attr-defined]
    for arm in ("a", "b"):  # β was held by the loading policy's l2 = 1 (a's intercept 0.35 for 0.34)
        assert np.allclose(loaded.theta(arm), saved.theta(arm))  # type: ignore[attr-defined]


def test_sharing_policies_share_plain_sums_across_replicas() -> None:
    one, two = make_policy("linucb", 2, share=5.0, seed=0), make_policy("linucb", 2, share=5.0, seed=0)
    for policy in (one, two):
        policy.add_arm("a")
        policy.add_arm("b")
    x = np.array([1.0, 1.0])
    one.update("a", x, 1.0)
    two.update("b", x, 0.0)
    assert one.shareable
    merged = one.statistics().plus(two.statistics())
    one.load_statistics(merged)
    two.load_statistics(merged)
    assert one.ridge_.n.tolist() == [1, 1]  # type: ignore[attr-defined]
    assert np.allclose(one.theta("a"), two.theta("a"))  # type: ignore[attr-defined]
    assert np.allclose(one.theta("b"), two.theta("b"))  # type: ignore[attr-defined]


def test_the_bonus_is_the_width_of_the_arms_own_part() -> None:
    policy = LinUCB(2, share=4.0, seed=0)
    policy.add_arm("a")
    policy.add_arm("b")
    x = np.array([1.0, 1.0])
    for _ in range(5):
        policy.update("a", x, 1.0)
    scores = policy.decide(x).scores
    own = fit_hybrid(policy.ridge_, 4.0).own_inverse
    assert scores["a"].bonus == pytest.approx(float(np.sqrt(x @ own[0] @ x)))
    assert scores["a"].bonus < scores["b"].bonus


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "10"])
def test_a_bad_share_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="share"):
        make_policy("linucb", 2, share=bad)


def test_a_pooled_newcomer_starts_at_the_others_level_when_sharing() -> None:
    x, y = np.array([1.0, 1.0]), np.array([1.0, 0.0])
    for share in (0.0, 5.0):
        policy = make_policy("linucb", 2, share=share, pool_prior=True, seed=0)
        policy.add_arm("a")
        policy.add_arm("b")
        for _ in range(200):
            for arm in ("a", "b"):
                policy.update(arm, x, 0.2)
                policy.update(arm, y, 0.8)
        policy.add_arm("c")
        c = policy.theta("c")  # type: ignore[attr-defined]
        assert c @ y == pytest.approx(0.8, abs=0.05) and c @ x == pytest.approx(0.2, abs=0.05)
