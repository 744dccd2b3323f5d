"""The rooms of the router, each without the others: request, eligibility rules, the learner,
sharing by statistics (and its refusal), the Redis-backed save/load round trip, and the
import graph."""

from __future__ import annotations

import ast
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenserv_core import FakeBackend, GreenServRouter, InvalidInputError, NoEligibleModelError
from greenserv_core.backends.base import ModelInfo
from greenserv_core.bandits import LinUCB, Policy
from greenserv_core.errors import SharingNotSupportedError
from greenserv_core.features.extractor import QueryFeatures
from greenserv_core.reward import DEFAULT_TRADEOFF, EnergyNormalizer
from greenserv_core.routing import (
    RULES,
    Candidate,
    Limits,
    RouteRequest,
    RoutingLearner,
    check_eligibility,
)
from greenserv_core.routing.eligibility import (
    exceeds_context_window,
    exceeds_latency_limit,
    failed_before,
    lacks_capability,
    not_requested,
    unavailable,
)
from greenserv_core.sharing import InMemoryStore, SharedLearning
from greenserv_core.statistics import Statistics
from tests.conftest import make_hashing_extractor
from tests.services import redis_server

ROOT = Path(__file__).resolve().parents[1]


# ---- the request -------------------------------------------------------------------------------
def test_a_request_checks_its_options_once() -> None:
    request = RouteRequest.build("hi", {"tools": [{"type": "function", "function": {"name": "f"}}], "tradeoff": 0})
    assert request.requires == {"tools"} and request.tradeoff == 0.0
    assert RouteRequest.build("hi", {"response_format": "json"}).requires == {"json_mode"}
    with pytest.raises(TypeError, match="max_tokens"):
        RouteRequest.build("hi", {"max_tokens": 3})
    for bad in ({"max_new_tokens": 0}, {"tradeoff": 2}, {"max_latency_s": -1}, {"requires": "tools"}):
        with pytest.raises(InvalidInputError):
            RouteRequest.build("hi", bad)


def test_router_methods_refuse_unknown_options_like_any_python_call(router: GreenServRouter) -> None:
    with pytest.raises(TypeError, match="temprature"):
        router.generate("hi", temprature=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"route\(\) got an unexpected keyword argument 'temperature'"):
        router.route("hi", temperature=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="decision_id"):
        router.generate_batch(["a", "b"], decision_id="x")  # type: ignore[call-arg]
    assert len(router.pending_) == 0


# ---- eligibility: each rule is a plain function ---------------------------------------------------
def candidate(name: str = "m", **kwargs: Any) -> Candidate:
    info = ModelInfo(
        name,
        context_window=kwargs.pop("window", 100),
        capabilities=frozenset(kwargs.pop("capabilities", ())),
        prior_joules_per_token=kwargs.pop("prior_j", None),
        prior_seconds_per_token=kwargs.pop("prior_s", None),
    )
    return Candidate(info, **kwargs)


def test_each_rule_alone() -> None:
    assert not_requested(candidate(), Limits(models={"other"})) == "not among the models requested for this query"
    assert not_requested(candidate(), Limits()) is None
    assert failed_before(candidate(), Limits(failed={"m": "timeout"})) == "failed for this query: timeout"
    assert unavailable(candidate(available=False), Limits()) is not None
    assert lacks_capability(candidate(capabilities={"tools"}), Limits(requires=frozenset({"tools"}))) is None
    assert lacks_capability(candidate(), Limits(requires=frozenset({"a", "b"}))) == "lacks the capabilities a, b"
    assert exceeds_context_window(candidate(prompt_tokens=90), Limits(max_new_tokens=10)) is None
    assert exceeds_context_window(candidate(prompt_tokens=91), Limits(max_new_tokens=10)) is not None
    # latency: the learned prediction first, else the per-token prior
    assert exceeds_latency_limit(candidate(predicted_seconds=2.0), Limits(max_latency_s=1.0)) is not None
    slow_prior = candidate(prompt_tokens=10, prior_s=0.1)
    assert exceeds_latency_limit(slow_prior, Limits(max_new_tokens=10, max_latency_s=1.0)) is not None
    assert exceeds_latency_limit(slow_prior, Limits(max_new_tokens=10, max_latency_s=3.0)) is None


def test_the_first_rule_that_excludes_gives_the_reason_and_costs_fall_back_to_priors() -> None:
    pool = [
        candidate("a", prompt_tokens=5, predicted_joules=7.0),
        candidate("b", prompt_tokens=5, prior_j=2.0),
        candidate("c", prompt_tokens=5),
        candidate("d", available=False, prompt_tokens=500),
    ]
    verdict = check_eligibility(pool, Limits(max_new_tokens=5))
    assert verdict.predicted_joules == {"a": 7.0, "b": 20.0, "c": None}
    assert list(verdict.excluded) == ["d"] and "unavailable" in verdict.excluded["d"]  # not the context window
    assert len(RULES) == 7
    capped = check_eligibility(pool, Limits(max_new_tokens=5, max_joules=15.0))
    assert capped.excluded["b"] == "predicted energy 20.0 J exceeds the cap 15.0 J"  # from its prior
    assert "c" not in capped.excluded  # no prediction yet: not excluded


def test_a_new_rule_is_one_function() -> None:
    def no_big_models(c: Candidate, limits: Limits) -> str | None:
        return "too big" if c.name.startswith("big") else None

    verdict = check_eligibility(
        [candidate("big-1"), candidate("small")], Limits(max_new_tokens=8), (*RULES, no_big_models)
    )
    assert verdict.excluded == {"big-1": "too big"} and list(verdict.predicted_joules) == ["small"]


# ---- the learner, without a router ----------------------------------------------------------------
def features(task: str = "qa") -> QueryFeatures:
    return QueryFeatures(task, 1.0, 0, 60.0, 0, 10, np.array([1.0, 0.0, 1.0]))


def test_the_learner_decides_records_and_learns_without_a_router() -> None:
    learner = RoutingLearner(LinUCB(3, seed=0), dimension=3)
    for name in ("small", "large"):
        learner.add_arm(name)
    pool = [Candidate(ModelInfo("small")), Candidate(ModelInfo("large"))]
    decision = learner.decide(features(), pool, Limits(models={"large"}), 0.4)
    assert decision.model == "large" and decision.excluded == {"small": "not among the models requested for this query"}
    learner.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.5)
    record = learner.feedback(decision.decision_id, 1.0)
    assert record.applied and learner.tallies_.as_dict()["large"] == {
        "decisions": 1,
        "feedback": 1,
        "energy_joules": 5.0,
        "labelled": 0,
    }
    assert learner.policy_.arms_["large"].n == 1
    assert learner.energy_.predict("large", features().vector, 10) == pytest.approx(5.0, rel=0.1)
    with pytest.raises(NoEligibleModelError, match="no model in the pool has the capability tools"):
        learner.decide(features(), pool, Limits(requires=frozenset({"tools"})), 0.4)
    assert len(learner.pending_) == 0


def test_the_learner_names_a_context_of_the_wrong_shape_before_any_cost_model_reads_it() -> None:
    learner = RoutingLearner(LinUCB(3, seed=0), dimension=3)
    for name in ("small", "large"):
        learner.add_arm(name)
    pool = [Candidate(ModelInfo("small")), Candidate(ModelInfo("large"))]
    wrong = QueryFeatures("qa", 0.9, 0, 60.0, 0, 10, np.ones(4))
    with pytest.raises(InvalidInputError, match=r"context must have shape \(3,\), got \(4,\)"):
        learner.decide(wrong, pool, Limits(), 0.4)
    with pytest.raises(InvalidInputError, match="context must have shape"):
        learner.learn(wrong, "small", energy_joules=2.0)
    with pytest.raises(InvalidInputError, match="context must have shape"):
        learner.learn_answers(wrong, {}, 0.4)
    assert len(learner.pending_) == 0 and learner.energy_.predict("small", np.ones(3), 10) is None


def test_one_default_tradeoff() -> None:
    router = GreenServRouter([FakeBackend("m")], features=make_hashing_extractor())
    assert router.tradeoff == DEFAULT_TRADEOFF == 0.4


# ---- the executor's error paths ------------------------------------------------------------------------
class EndlessStream(FakeBackend):
    """A broken model whose stream ends without its result."""

    def stream(self, messages, settings):  # type: ignore[no-untyped-def]
        yield from list(super().stream(messages, settings))[:-1]


def test_a_stream_that_ends_without_its_result_fails_over_or_fails_never_hangs() -> None:
    from greenserv_core import ModelUnavailableError

    extractor = make_hashing_extractor()
    router = GreenServRouter([EndlessStream("broken"), FakeBackend("good")], features=extractor, seed=0)
    pieces = list(router.stream("hi", models=["broken", "good"], max_new_tokens=4))
    final = pieces[-1].generation
    assert final is not None and final.model in {"broken", "good"}
    alone = GreenServRouter([EndlessStream("broken")], features=make_hashing_extractor(), seed=0)
    with pytest.raises(ModelUnavailableError, match="ended without its result"):
        list(alone.stream("hi", max_new_tokens=4))
    assert len(alone.pending_) == 0


def test_a_failing_batch_leaves_no_decision_pending() -> None:
    class Broken(FakeBackend):
        def generate(self, messages, settings):  # type: ignore[no-untyped-def]
            raise RuntimeError("a bug")

    router = GreenServRouter([FakeBackend("good"), Broken("bad")], features=make_hashing_extractor(), seed=0)
    with pytest.raises(RuntimeError, match="a bug"):
        for _ in range(20):  # until a batch has a query routed to each model
            for answer in router.generate_batch(["one?", "two?", "three?"], max_new_tokens=2):
                router.feedback(answer.decision_id, 1.0)
    assert len(router.pending_) == 0


def test_a_task_without_a_range_of_its_own_borrows_the_range_of_all_tasks() -> None:
    scale = EnergyNormalizer()
    scale.observe("qa", 10.0)
    scale.observe("qa", 30.0)
    scale.observe("code", 25.0)  # seen once: no range of its own
    assert scale.normalize("math", 20.0) == 0.5 and scale.normalize("code", 20.0) == 0.5  # was 0.0
    assert EnergyNormalizer().normalize("qa", 20.0) == 0.0  # no range at all


# ---- a policy instance and a given energy scale ------------------------------------------------------
def test_the_router_takes_a_policy_instance_and_an_energy_scale() -> None:
    extractor = make_hashing_extractor()
    policy = LinUCB(extractor.dimension, alpha=0.0, seed=3)
    scale = EnergyNormalizer({"qa": (0.0, 100.0)})
    router = GreenServRouter(
        [FakeBackend("a"), FakeBackend("b")], policy=policy, features=extractor, energy_scale=scale
    )
    assert router.policy_ is policy and router.strategy == "linucb" and policy.arms == ["a", "b"]
    assert router.normalizer_ is not scale and router.normalizer_.ranges_ == {"qa": [0.0, 100.0]}  # a copy
    router.record_outcome(router.route("hi").decision_id, energy_joules=500.0, latency_s=0.1)
    assert scale.ranges_ == {"qa": [0.0, 100.0]}  # the router learns on its copy
    with pytest.raises(InvalidInputError, match="fresh one"):  # one instance, one router
        GreenServRouter([FakeBackend("a")], policy=policy, features=extractor)
    with pytest.raises(InvalidInputError, match="not both"):
        GreenServRouter([FakeBackend("a")], policy="linucb", strategy="linucb", features=extractor)
    with pytest.raises(InvalidInputError, match="dimension"):
        GreenServRouter([FakeBackend("a")], policy=LinUCB(2), features=extractor)


@pytest.mark.parametrize("scale", ["known", "pool"])
def test_per_token_energy_priors_price_models_before_they_are_measured(scale: str) -> None:
    def priced(name: str, joules_per_token: float) -> FakeBackend:
        backend = FakeBackend(name, joules_per_token=joules_per_token)
        backend._info = dataclasses.replace(backend.info, prior_joules_per_token=joules_per_token)
        return backend

    router = GreenServRouter(
        [priced("small", 1.0), priced("large", 9.0)],
        features=make_hashing_extractor(),
        tradeoff=0.9,
        energy_scale=scale,  # type: ignore[arg-type]
        seed=0,
    )
    decision = router.route("What is 2+2?", max_new_tokens=64)
    assert decision.predicted_joules["large"] == 9 * decision.predicted_joules["small"]  # from the priors
    assert decision.scores["small"].cost == 0.0 and decision.scores["large"].cost == pytest.approx(0.9)  # were both 0
    assert decision.model == "small"  # was "large": energy cost nothing while no model was measured


# ---- sharing: each component owns its statistics -------------------------------------------------------
def test_statistics_join_and_split_by_component() -> None:
    parts = {"p": Statistics(sums={"n": np.ones(1)}), "q": Statistics(maxima={"m": np.ones(2)})}
    joined = Statistics.join(parts)
    assert sorted(joined.sums) == ["p/n"] and sorted(joined.maxima) == ["q/m"]
    assert joined.under("p") == parts["p"] and joined.under("q") == parts["q"]


class Sticky(Policy):
    """A policy written here, that keeps state the sharing format does not know."""

    name = "sticky"

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        return {arm: (float(self.arms_[arm]), 0.0) for arm in arms}

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        self.arms_[arm] = reward

    def _new_arm_state(self) -> float:
        return 0.5

    def _arm_state(self, state: float) -> dict[str, Any]:
        return {"value": state}

    def _load_arm_state(self, data: dict[str, Any]) -> float:
        return float(data["value"])


def test_a_policy_that_cannot_share_is_refused_when_sharing_starts() -> None:
    extractor = make_hashing_extractor()
    router = GreenServRouter([FakeBackend("a")], policy=Sticky(extractor.dimension), features=extractor)
    assert router.generate("hi").model == "a"  # it routes and learns
    with pytest.raises(SharingNotSupportedError, match="'sticky' policy"):
        SharedLearning(router, InMemoryStore())


def test_a_policy_that_can_share_implements_two_hooks() -> None:
    class SharedSticky(Sticky):
        name = "shared-sticky"

        def _arm_statistics(self, state: float) -> dict[str, np.ndarray]:
            return {"value": np.array([state])}

        def _load_arm_statistics(self, state: float, sums: dict[str, np.ndarray]) -> float:
            return float(sums["value"][0])

    extractor = make_hashing_extractor()
    router = GreenServRouter([FakeBackend("a/b")], policy=SharedSticky(extractor.dimension), features=extractor)
    answer = router.generate("hi")
    router.feedback(answer.decision_id, 0.9)
    stats = router.statistics()
    assert stats.sums["policy/a%2Fb/value"].tolist() == [0.9]
    SharedLearning(router, InMemoryStore()).sync()
    assert router.policy_.arms_["a/b"] == 0.9


# ---- save and load with the same stores as __init__ --------------------------------------------------
def test_a_redis_backed_router_keeps_every_pending_decision_through_save_and_load(tmp_path: Path) -> None:
    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:
        pool = [FakeBackend("small"), FakeBackend("large")]
        router = GreenServRouter(
            pool, features=make_hashing_extractor(), pending=RedisPendingDecisions(url=url, prefix="rt"), seed=0
        )
        answers = [router.generate(f"question {i}?", max_new_tokens=4) for i in range(3)]
        router.save(tmp_path / "router.json")
        loaded = GreenServRouter.load(
            tmp_path / "router.json",
            pool,
            features=make_hashing_extractor(),
            pending=RedisPendingDecisions(url=url, prefix="rt"),
        )
        assert isinstance(loaded.pending_, RedisPendingDecisions)
        for answer in answers:  # all three, not one
            assert loaded.feedback(answer.decision_id, 1.0).reward is not None
        # without the store, the loaded router has an ordinary, unbounded-enough store of its own
        plain = GreenServRouter.load(tmp_path / "router.json", pool, features=make_hashing_extractor())
        assert plain.pending_.state_dict()["max_size"] == 100_000


def test_a_router_with_a_policy_instance_saves_and_loads(tmp_path: Path) -> None:
    extractor = make_hashing_extractor()
    pool = [FakeBackend("a"), FakeBackend("b")]
    router = GreenServRouter(pool, policy=LinUCB(extractor.dimension, alpha=0.3), features=extractor)
    router.save(tmp_path / "r.json")
    loaded = GreenServRouter.load(tmp_path / "r.json", pool, features=make_hashing_extractor())
    assert isinstance(loaded.policy_, LinUCB) and loaded.policy_.alpha == 0.3


# ---- the import graph ------------------------------------------------------------------------------------
def module_imports(path: Path) -> set[str]:
    """The greenserv_core modules a file imports at import time (not under TYPE_CHECKING, not in functions)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
            if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.startswith("greenserv_core"):
                found.add(inner.module)
            elif isinstance(inner, ast.Import):
                found.update(a.name for a in inner.names if a.name.startswith("greenserv_core"))
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_router_imports_nothing_from_sharing_and_its_graph_has_no_cycle() -> None:
    graph = {module_name(p): module_imports(p) for p in (ROOT / "greenserv_core").rglob("*.py")}

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        stack = [start]
        while stack:
            for nxt in graph.get(stack.pop(), set()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    for room in ["greenserv_core.router", *[m for m in graph if m.startswith("greenserv_core.routing")]]:
        below = reachable(room)
        assert not any(m.startswith("greenserv_core.sharing") for m in below), room
        assert room not in below, f"{room} imports itself through {sorted(below)}"
    assert "greenserv_core.router" not in reachable("greenserv_core.models")


def test_importing_the_router_does_not_import_sharing() -> None:
    import subprocess

    code = "import sys, greenserv_core.router; print(any(m.startswith('greenserv_core.sharing') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_capabilities_and_models_given_as_iterators_are_kept_and_bad_ones_refused_clearly() -> None:
    from greenserv_core.routing.request import RouteRequest

    request = RouteRequest.build("hi", {"requires": (c for c in ["tools"]), "models": iter(["a", "b"])})
    assert "tools" in request.requires and request.models == frozenset({"a", "b"})  # requires was empty
    assert RouteRequest.build("hi", {"requires": None}).requires == frozenset()
    for options in ({"models": 5}, {"requires": 5}, {"requires": [["tools"]]}):
        with pytest.raises(InvalidInputError):  # bare TypeErrors
            RouteRequest.build("hi", options)


def test_a_model_says_its_context_window() -> None:
    from greenserv_core.backends.base import ModelInfo

    with pytest.raises(InvalidInputError, match="context_window"):
        ModelInfo("m", context_window=None)  # type: ignore[arg-type]  # accepted, then never excluded


def test_a_malformed_energy_range_is_named_with_its_task() -> None:
    for bounds in ((-1.0, 2.0), (1.0, 2.0, 3.0), (1.0,), 5.0, ("low", "high"), "12", (10**400, 2.0)):
        with pytest.raises(InvalidInputError, match=r"energy range of 'qa' must be 0 <= min <= max joules"):
            EnergyNormalizer({"qa": bounds})  # type: ignore[dict-item]  # raw TypeError / ValueError, or "12" taken
