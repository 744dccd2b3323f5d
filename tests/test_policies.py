from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenserv_core.bandits import POLICIES, Policy, make_policy
from greenserv_core.errors import InvalidInputError, NoEligibleModelError, StateFileError, UnknownModelError
from greenserv_core.persistence import read_state, write_state

DIM = 5
LEARNING = ["linucb", "thompson", "epsilon", "epsilon-nc"]
ALL = [*LEARNING, "random", "static:a"]


def ctx(*hot: int) -> np.ndarray:
    x = np.zeros(DIM)
    x[0] = 1.0
    for i in hot:
        x[i] = 1.0
    return x


def policy_with_arms(strategy: str, arms=("a", "b", "c"), seed: int = 0, **params) -> Policy:  # type: ignore[no-untyped-def]
    policy = make_policy(strategy, DIM, seed=seed, **params)
    for arm in arms:
        policy.add_arm(arm)
    return policy


@pytest.mark.parametrize("strategy", ALL)
def test_select_only_from_eligible_arms(strategy: str) -> None:
    policy = policy_with_arms(strategy)
    eligible = ["a", "c"]
    for _ in range(50):
        assert policy.select(ctx(1), eligible) in eligible


@pytest.mark.parametrize("strategy", ALL)
def test_bad_arguments_are_named(strategy: str) -> None:
    policy = policy_with_arms(strategy)
    with pytest.raises(UnknownModelError, match="zzz"):
        policy.select(ctx(1), ["a", "zzz"])
    with pytest.raises(InvalidInputError, match="no eligible"):
        policy.select(ctx(1), [])
    with pytest.raises(InvalidInputError, match="shape"):
        policy.select(np.ones(DIM + 1))
    with pytest.raises(InvalidInputError, match="NaN"):
        policy.update("a", np.full(DIM, np.nan), 1.0)
    with pytest.raises(InvalidInputError, match="finite"):
        policy.update("a", ctx(1), float("nan"))
    with pytest.raises(UnknownModelError):
        policy.update("zzz", ctx(1), 1.0)
    with pytest.raises(InvalidInputError, match="already exists"):
        policy.add_arm("a")
    with pytest.raises(InvalidInputError, match="distinct; repeated: \\['a'\\]"):
        policy.select(ctx(1), ["a", "a", "b"])
    with pytest.raises(InvalidInputError, match="cost of 'a' must be a finite number"):
        policy.select(ctx(1), costs={"a": float("nan"), "b": 0.1})
    for scale in (float("nan"), float("inf"), -1.0):
        with pytest.raises(InvalidInputError, match="value_scale must be a finite number >= 0"):
            policy.select(ctx(1), value_scale=scale)


@pytest.mark.parametrize(
    ("strategy", "params", "named"),
    [
        ("linucb", {"prior_reward": float("nan")}, "prior_reward"),
        ("epsilon", {"prior_reward": float("inf")}, "prior_reward"),
        ("epsilon-nc", {"prior_reward": float("nan")}, "prior_reward"),
        ("thompson", {"l2": float("inf")}, "l2"),
        ("linucb", {"alpha": float("inf")}, "alpha"),
        ("thompson", {"v": float("inf")}, "v"),
        ("thompson", {"v": "wide"}, "v"),
    ],
)
def test_parameters_that_are_not_finite_are_refused_when_given(strategy: str, params, named: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        InvalidInputError, match=f"^bad parameters for '{strategy}' .*: {named} must be a finite number"
    ):
        make_policy(strategy, DIM, **params)


@pytest.mark.parametrize("strategy", ["linucb", "thompson", "epsilon", "epsilon-nc", "random"])
def test_ties_are_broken_at_random(strategy: str) -> None:
    policy = policy_with_arms(strategy, seed=1)
    chosen = {policy.select(ctx(1)) for _ in range(200)}
    assert chosen == {"a", "b", "c"}


def test_linucb_tie_breaking_is_not_first_arm() -> None:
    # every arm identical: a first-arm rule would always answer "a"
    picks = [policy_with_arms("linucb", seed=s).select(ctx(2)) for s in range(60)]
    assert 10 < picks.count("a") < 40


@pytest.mark.parametrize("strategy", ALL)
def test_same_seed_same_choices(strategy: str) -> None:
    def run(seed: int) -> list[str]:
        policy = policy_with_arms(strategy, seed=seed)
        rng = np.random.default_rng(0)
        picks = []
        for t in range(100):
            x = ctx(1 + t % 4)
            arm = policy.select(x)
            policy.update(arm, x, float(rng.random()))
            picks.append(arm)
        return picks

    assert run(7) == run(7)


@pytest.mark.parametrize("strategy", LEARNING)
def test_learns_the_better_arm(strategy: str) -> None:
    policy = policy_with_arms(strategy, seed=3)
    rng = np.random.default_rng(3)
    means = {"a": 0.2, "b": 0.8, "c": 0.5}
    picks = []
    for _ in range(600):
        x = ctx(1)
        arm = policy.select(x)
        policy.update(arm, x, float(rng.random() < means[arm]))
        picks.append(arm)
    assert picks[-200:].count("b") > 150


@pytest.mark.parametrize("strategy", LEARNING)
def test_arm_added_at_runtime_is_explored(strategy: str) -> None:
    policy = policy_with_arms(strategy, arms=("a", "b"), seed=0)
    for _ in range(300):
        x = ctx(1)
        arm = policy.select(x)
        policy.update(arm, x, 0.5)
    policy.add_arm("new")
    picks = [policy.select(ctx(1)) for _ in range(30)]
    assert "new" in picks


@pytest.mark.parametrize("strategy", [*LEARNING, "random"])
def test_removed_arm_is_never_chosen(strategy: str) -> None:
    policy = policy_with_arms(strategy)
    for _ in range(30):
        policy.update("b", ctx(1), 1.0)
    policy.remove_arm("b")
    assert all(policy.select(ctx(1)) != "b" for _ in range(300))
    assert "b" not in policy.arms
    with pytest.raises(UnknownModelError):
        policy.select(ctx(1), ["b"])


def test_costs_and_value_scale_shift_the_choice() -> None:
    policy = policy_with_arms("linucb", arms=("cheap", "dear"), alpha=0.0)
    for _ in range(50):
        policy.update("cheap", ctx(1), 0.7)
        policy.update("dear", ctx(1), 0.9)
    assert policy.select(ctx(1)) == "dear"
    choice = policy.decide(ctx(1), value_scale=0.6, costs={"cheap": 0.0, "dear": 0.4})
    assert choice.arm == "cheap"
    dear = choice.scores["dear"]
    assert dear.score == pytest.approx(0.6 * (dear.estimate + dear.bonus) - 0.4)


def test_epsilon_decays_to_its_floor() -> None:
    policy = policy_with_arms("epsilon", epsilon=1.0, decay=0.99, min_epsilon=0.0, seed=0)
    for _ in range(20):
        policy.update("b", ctx(1), 1.0)
        policy.update("a", ctx(1), 0.0)
        policy.update("c", ctx(1), 0.0)
    early = [policy.decide(ctx(1)).explored for _ in range(50)]
    for _ in range(1000):
        policy.select(ctx(1))
    late = [policy.decide(ctx(1)).explored for _ in range(200)]
    assert sum(early) > 30 and sum(late) == 0


def test_undominated_exploration_never_tries_a_model_whose_cost_alone_rules_it_out() -> None:
    costs = {"a": 0.0, "b": 0.1, "c": 0.45}  # at value scale 0.6, c scores at most 0.6 - 0.45 = 0.15
    picked = {}
    for explore in ("all", "undominated"):
        policy = policy_with_arms("epsilon", epsilon=1.0, decay=1.0, min_epsilon=1.0, seed=0, explore=explore)
        for _ in range(10):
            policy.update("a", ctx(1), 0.5)  # a's estimate ~0.5: score ~0.3 > c's best possible 0.15
            policy.update("b", ctx(1), 0.4)
            policy.update("c", ctx(1), 0.9)
        choices = [policy.decide(ctx(1), value_scale=0.6, costs=costs) for _ in range(300)]
        assert all(choice.explored for choice in choices)
        picked[explore] = {choice.arm for choice in choices}
    assert picked["all"] == {"a", "b", "c"} and picked["undominated"] == {"a", "b"}
    # with energy weighed less, c could win again, and is explored again
    policy = policy_with_arms("epsilon", epsilon=1.0, decay=1.0, min_epsilon=1.0, seed=0, explore="undominated")
    policy.update("a", ctx(1), 0.5)
    assert "c" in {policy.decide(ctx(1), value_scale=0.9, costs={**costs, "c": 0.1}).arm for _ in range(100)}
    assert make_policy("epsilon", DIM, **policy.params()).explore == "undominated"
    with pytest.raises(InvalidInputError, match="explore"):
        make_policy("epsilon", DIM, explore="some")


def test_undominated_exploration_leaves_out_a_dominated_newcomer_too() -> None:
    from greenserv_core.bandits import EpsilonGreedy

    policy = EpsilonGreedy(DIM, explore="undominated", epsilon=0.1, min_epsilon=0.1, seed=0)
    policy.add_arm("cheap")
    for _ in range(50):
        policy.update("cheap", ctx(1), 0.9)
    policy.decide(ctx(1))
    policy.add_arm("dear")  # joins late: explored as a newcomer, but at its cost it can reach 0.5 at best
    picks = [policy.decide(ctx(1), costs={"cheap": 0.0, "dear": 0.5}).arm for _ in range(1000)]
    assert "dear" not in picks  # was 30 newcomer answers


def test_static_policy() -> None:
    policy = policy_with_arms("static:b")
    assert {policy.select(ctx(1)) for _ in range(20)} == {"b"}
    with pytest.raises(NoEligibleModelError, match="'b'"):
        policy.select(ctx(1), ["a", "c"])


def test_registry_errors() -> None:
    with pytest.raises(InvalidInputError, match="unknown strategy"):
        make_policy("greedy-ish", DIM)
    with pytest.raises(InvalidInputError, match="bad parameters"):
        make_policy("linucb", DIM, gamma=3)
    with pytest.raises(InvalidInputError, match="alpha"):
        make_policy("linucb", DIM, alpha=-1)
    assert set(POLICIES) == {"linucb", "thompson", "epsilon", "epsilon-nc", "random", "static"}


@settings(max_examples=25, deadline=None)
@given(
    strategy=st.sampled_from(ALL),
    history=st.lists(st.tuples(st.integers(0, 2), st.integers(1, DIM - 1), st.floats(0, 1)), max_size=40),
    seed=st.integers(0, 2**16),
)
def test_state_round_trip_continues_identically(strategy: str, history, seed: int, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    arms = ("a", "b", "c")
    original = policy_with_arms(strategy, seed=seed)
    for arm_index, hot, reward in history:
        original.select(ctx(hot))
        original.update(arms[arm_index], ctx(hot), reward)
    path = Path(tmp_path_factory.mktemp("state")) / "policy.json"
    write_state(path, original.state_dict(), fmt="policy", version=1)
    restored = make_policy(strategy, DIM, seed=None, **original.params())
    restored.load_state_dict(read_state(path, fmt="policy", version=1))
    for hot in range(1, DIM):
        a, b = original.decide(ctx(hot)), restored.decide(ctx(hot))
        assert a.arm == b.arm
        assert a.scores == b.scores


def test_load_refuses_another_policy() -> None:
    state = policy_with_arms("linucb").state_dict()
    with pytest.raises(StateFileError, match="linucb"):
        policy_with_arms("thompson").load_state_dict(state)


def test_an_update_that_would_overflow_is_refused_and_the_arm_stays_usable() -> None:
    for name in ("linucb", "thompson", "epsilon"):
        policy = make_policy(name, 2, seed=0)
        for arm in ("a", "b"):
            policy.add_arm(arm)
        x = np.array([1.0, 0.0])
        policy.update("a", x, 1.0)
        for context, target in ((x, 1e308), (np.array([1.0, 1e200]), 0.5)):
            with pytest.raises(InvalidInputError, match="overflows"):
                for _ in range(2):  # 1e308 once fits, twice it would not
                    policy.update("a", context, target)
        assert np.all(np.isfinite(policy.estimates(x, ["a", "b"])))  # nothing of the refused updates stayed
        assert policy.select(x) in ("a", "b")
    plain = make_policy("epsilon-nc", 2, seed=0)  # the non-contextual one too: its mean went to -inf for good
    plain.add_arm("a")
    plain.update("a", np.ones(2), 1e308)
    with pytest.raises(InvalidInputError, match="overflows"):
        plain.update("a", np.ones(2), -1e308)
    plain.update("a", np.ones(2), 1e307)  # the sum n·mean would pass the largest float
    with pytest.raises(InvalidInputError, match="overflows"):
        plain.update("a", np.ones(2), 1e308)
    assert np.isfinite(plain.statistics().sums["a/sum"]).all()


def test_thompson_estimates_draw_nothing_so_seeded_decisions_stay_the_same() -> None:
    def decisions(read_estimates: bool) -> list[str]:
        policy = make_policy("thompson", 2, seed=3)
        for arm in ("a", "b"):
            policy.add_arm(arm)
        chosen = []
        for step in range(20):
            x = np.array([1.0, step % 2])
            if read_estimates:
                policy.estimates(x, ["a", "b"])
            arm = policy.select(x)
            policy.update(arm, x, float(arm == "a"))
            chosen.append(arm)
        return chosen

    assert decisions(True) == decisions(False)


def test_policies_that_keep_nothing_per_arm_say_they_take_no_prior() -> None:
    assert not make_policy("random", 2, seed=0).takes_priors
    assert make_policy("linucb", 2, seed=0).takes_priors


def test_policy_parameters_of_the_wrong_type_are_refused_by_name() -> None:
    import numpy as np

    from greenserv_core.bandits.epsilon_greedy import EpsilonGreedy
    from greenserv_core.bandits.linucb import LinUCB

    for bad in ("0.1", True):
        with pytest.raises(InvalidInputError, match="epsilon"):
            EpsilonGreedy(4, epsilon=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="try_unplayed must be True or False"):
        LinUCB(4, try_unplayed="false")  # type: ignore[arg-type]  # bool("false") was True
    assert LinUCB(4, share=np.float32(0.5), forget=np.float32(0.9)).share == 0.5  # type: ignore[arg-type]
    from greenserv_core import FakeBackend, GreenServRouter
    from tests.conftest import make_hashing_extractor

    for taken in ("seed", "dimension"):  # was a TypeError: "got multiple values for keyword argument"
        with pytest.raises(InvalidInputError, match=f"policy_params cannot set {taken}"):
            GreenServRouter(
                [FakeBackend("a")], features=make_hashing_extractor(), policy="linucb", policy_params={taken: 2}
            )


def test_a_decision_refused_for_a_bad_cost_draws_no_noise() -> None:
    for strategy in ("thompson", "epsilon"):
        clean, refused = policy_with_arms(strategy), policy_with_arms(strategy)
        with pytest.raises(InvalidInputError, match="cost of 'b'"):
            refused.select(ctx(1), costs={"a": 0.1, "b": float("nan")})
        assert refused.rng_.bit_generator.state == clean.rng_.bit_generator.state  # Thompson's moved
        assert [refused.select(ctx(1)) for _ in range(20)] == [clean.select(ctx(1)) for _ in range(20)]


def test_inputs_that_are_not_numbers_are_refused_by_name_and_numpy_integers_are_taken() -> None:
    from greenserv_core.bandits import RidgeArm
    from greenserv_core.bandits.epsilon_greedy import EpsilonGreedy
    from greenserv_core.bandits.linucb import LinUCB

    policy = policy_with_arms("linucb")
    with pytest.raises(InvalidInputError, match="reward must be finite"):
        policy.update("a", ctx(1), 10**400)  # too large for a float
    for bad in ("x", None, 10**400):
        with pytest.raises(InvalidInputError, match="cost of 'b' must be a finite number"):
            policy.select(ctx(1), costs={"a": 0.1, "b": bad})  # type: ignore[dict-item]
    for target in (None, "0.5", 10**400):
        with pytest.raises(InvalidInputError, match="target must be finite"):
            RidgeArm(2).update(np.array([1.0, 0.0]), target)  # type: ignore[arg-type]
    assert LinUCB(np.int64(3)).dimension == 3 and type(LinUCB(np.int64(3)).dimension) is int  # type: ignore[arg-type]
    assert EpsilonGreedy(2, newcomer_answers=np.int64(5)).newcomer_answers == 5  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="dimension"):
        LinUCB(True)
    with pytest.raises(InvalidInputError, match="l2 must be at least"):
        LinUCB(2, l2=1e-310)  # accepted, its first decision scored NaN
    for tiny in (1e-200, 1e-12):  # accepted: θ infinite after one answer; an estimate of 0.8 read 3.8
        with pytest.raises(InvalidInputError, match="l2 must be at least"):
            LinUCB(2, l2=tiny)
    assert LinUCB(2, l2=1e-8).l2 == 1e-8  # exact there: a router saved with it still loads
    policy = LinUCB(3, seed=0)
    policy.add_arm("a")
    for context in (["x", "y", "z"], [1, 10**400, 0]):  # were numpy's ValueError and OverflowError
        with pytest.raises(InvalidInputError, match="context must be an array of numbers"):
            policy.update("a", context, 0.5)  # type: ignore[arg-type]
    assert policy.ridge_.n[0] == 0
    with pytest.raises(InvalidInputError, match="reward_range"):
        LinUCB(2, reward_range="01")  # type: ignore[arg-type]  # read as (0, 1)


def test_a_strategy_argument_and_the_keyword_it_names_cannot_both_be_given() -> None:
    with pytest.raises(InvalidInputError, match="give one"):  # was a policy for "small", "big" dropped
        make_policy("static:big", 4, arm="small")
    assert make_policy("static", 4, arm="small").arm == make_policy("static:small", 4, arm="small").arm == "small"  # type: ignore[attr-defined]


def test_settings_that_would_make_every_decision_nan_are_refused_at_construction() -> None:
    from greenserv_core.bandits.linucb import LinUCB

    for params in ({"share": 1e-320}, {"prior_reward": 1e308, "l2": 2.0}):  # was accepted, then "scored NaN"
        with pytest.raises(InvalidInputError, match="overflow"):
            LinUCB(4, **params)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="reward_range must be two numbers"):  # was read as its keys
        LinUCB(4, reward_range={0: "x", 1: "y"})  # type: ignore[arg-type]
    LinUCB(4, share=1e-3, prior_reward=0.5, l2=2.0)


def test_numpy_numbers_are_taken_as_value_bound_and_drift_alarm() -> None:
    from greenserv_core.bandits.epsilon_greedy import EpsilonGreedy

    policy = EpsilonGreedy(4, value_bound=np.float32(1), drift_alarm=np.int64(20))  # was refused
    assert (policy.value_bound, policy.drift_alarm) == (1.0, 20.0)
    for bad in (True, "1", float("nan")):
        with pytest.raises(InvalidInputError, match="value_bound"):
            EpsilonGreedy(4, value_bound=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="drift_alarm"):
            EpsilonGreedy(4, drift_alarm=bad)  # type: ignore[arg-type]


def test_a_state_loaded_into_a_policy_of_another_prior_reward_still_tries_its_unplayed_arms() -> None:
    from greenserv_core.bandits import LinUCB

    x = np.array([1.0] + [0.0] * (DIM - 1))
    saved = LinUCB(DIM, reward_range=(0, 1), alpha=0.3, seed=0)
    for arm in ("played", "fresh"):
        saved.add_arm(arm)
    for _ in range(20):
        saved.update("played", x, 0.9)
    loaded = LinUCB(DIM, reward_range=(0, 1), alpha=0.3, prior_reward=0.5, seed=0)
    loaded.load_state_dict(saved.state_dict())
    assert loaded._untried_mask(["played", "fresh"]).tolist() == [False, True]  # was [False, False]
    assert dict(loaded.decide(x).scores)["fresh"].score == 1.0  # tried first, as before the save (was 0.3)
    assert loaded.ridge_.prior_mean[loaded.ridge_.row("fresh")][0] == 0.5  # this policy's setting
