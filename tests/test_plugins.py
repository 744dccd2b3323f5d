"""Adding one: a policy, an energy meter, a backend with its address scheme and a confidence
signal, each written in one place (here, a fixture or the test) and registered there. The
fixtures undo their registration, so no other test sees the additions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenserv_core import DecisionAlreadyScoredError, GreenServRouter, InvalidInputError, StateFileError
from greenserv_core.backends import (
    FakeBackend,
    GenerationResult,
    GenerationSettings,
    ModelBackend,
    ModelInfo,
    StreamChunk,
    address_schemes,
    register_address_scheme,
    unregister_address_scheme,
)
from greenserv_core.bandits import (
    ArmScore,
    EpsilonGreedy,
    StatelessArmsPolicy,
    policy_names,
    register_policy,
    unregister_policy,
)
from greenserv_core.energy import (
    FallbackMeter,
    TimedMeter,
    auto_meter,
    make_meter,
    meter_names,
    register_meter,
    unregister_meter,
)
from greenserv_core.energy.base import EnergyReading
from greenserv_core.messages import Message
from greenserv_core.models.pool import build_backends
from tests.conftest import make_hashing_extractor


@pytest.fixture
def first_name_policy() -> Iterator[str]:
    @register_policy
    class FirstName(StatelessArmsPolicy):
        """Always the eligible model whose name sorts first."""

        name = "first-name"
        contextual = False

        def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
            return {arm: (0.0, 0.0) for arm in arms}

        def _choose(self, scores: Mapping[str, ArmScore]) -> tuple[str, bool]:
            return min(scores), False

        def update(self, arm: str, context: np.ndarray, reward: float) -> None:
            self._require_arm(arm)

    yield FirstName.name
    unregister_policy(FirstName.name)


def test_a_policy_added_in_one_place_is_a_router_strategy(first_name_policy: str) -> None:
    assert first_name_policy in policy_names()
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("large"), FakeBackend("medium")],
        strategy=first_name_policy,
        features=make_hashing_extractor(),
        seed=0,
    )
    answers = [router.generate(text, max_new_tokens=4) for text in ("Hi there", "What is 2 + 2?", "Who wrote Hamlet?")]
    assert [a.model for a in answers] == ["large"] * 3
    assert router.feedback(answers[0].decision_id, 1.0).applied


def test_a_removed_policy_is_unknown_again(first_name_policy: str) -> None:
    unregister_policy(first_name_policy)
    with pytest.raises(InvalidInputError, match="unknown strategy"):
        GreenServRouter([FakeBackend("small")], strategy=first_name_policy, features=make_hashing_extractor())


def test_a_state_saved_by_a_policy_not_registered_here_says_how_to_load_it(
    first_name_policy: str, tmp_path: Path
) -> None:
    pool = [FakeBackend("small"), FakeBackend("large")]
    router = GreenServRouter(pool, strategy=first_name_policy, features=make_hashing_extractor(), seed=0)
    router.generate("Hi there", max_new_tokens=4)
    fresh = type(router.policy_)(router.features.dimension)
    router.save(tmp_path / "state.json")
    unregister_policy(first_name_policy)
    with pytest.raises(
        StateFileError, match=r"'first-name', which is not registered here: .*load\(\.\.\., policy=\.\.\.\)"
    ):
        GreenServRouter.load(tmp_path / "state.json", pool, features=make_hashing_extractor())
    loaded = GreenServRouter.load(tmp_path / "state.json", pool, features=make_hashing_extractor(), policy=fresh)
    assert loaded.generate("What is 2 + 2?", max_new_tokens=4).model == "large"


@pytest.fixture
def wall_plug_meter() -> Iterator[str]:
    class WallPlug(TimedMeter):
        """A smart plug's energy counter (here: 2 J per second of wall time)."""

        source = "wall-plug"
        measured = True

        def _start(self) -> object:
            return time.perf_counter()

        def _stop(self, token: object, duration_s: float) -> float:
            return 2.0 * duration_s

    @register_meter("wall-plug", priority=100, placement="any")
    def wall_plug(cuda_devices: Sequence[int]) -> WallPlug:
        return WallPlug()

    yield "wall-plug"
    unregister_meter("wall-plug")


def test_a_meter_added_in_one_place_is_chosen_automatically(wall_plug_meter: str) -> None:
    assert wall_plug_meter in meter_names()
    for meter in (auto_meter([]), auto_meter([0]), make_meter(wall_plug_meter)):
        assert isinstance(meter, FallbackMeter) and meter.source == "wall-plug" and meter.measured
        with meter.measure() as window:
            time.sleep(0.01)
        assert window.source == "wall-plug" and window.measured and window.joules > 0


def test_a_removed_meter_is_no_longer_chosen(wall_plug_meter: str) -> None:
    unregister_meter(wall_plug_meter)
    assert auto_meter([]).source != "wall-plug"
    with pytest.raises(InvalidInputError, match="unknown energy meter"):
        make_meter(wall_plug_meter)


class EchoBackend:
    """Answers with the user's last message, backwards: just the four members of ModelBackend."""

    def __init__(self, name: str) -> None:
        self._info = ModelInfo(name=name, context_window=512)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        text = messages[-1]["content"][::-1]
        return GenerationResult(
            text=text,
            input_tokens=self.count_tokens(messages),
            output_tokens=len(text.split()),
            latency_s=0.0,
            energy=EnergyReading(0.5, source="echo", measured=False),
        )

    def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
        result = self.generate(messages, settings)
        yield StreamChunk(delta=result.text)
        yield StreamChunk(delta="", result=result)


@pytest.fixture
def echo_scheme() -> Iterator[str]:
    @register_address_scheme("echo", "echo://", describes="an echo://<name> model")
    def echo(address: str, meter: str) -> EchoBackend:
        return EchoBackend(address.removeprefix("echo://"))

    yield "echo"
    unregister_address_scheme("echo")


def test_a_backend_and_its_address_scheme_added_in_one_place_resolve_in_the_pool(echo_scheme: str) -> None:
    assert echo_scheme in [scheme.name for scheme in address_schemes()]
    backends = build_backends(["echo://parrot", FakeBackend("fake")])
    assert isinstance(backends[0], EchoBackend) and isinstance(backends[0], ModelBackend)
    assert [b.info.name for b in backends] == ["parrot", "fake"]
    router = GreenServRouter(backends, features=make_hashing_extractor(), seed=0)
    answer = router.generate("olleh", models=["parrot"], max_new_tokens=4)
    assert (answer.model, answer.text, answer.energy_source) == ("parrot", "hello", "echo")


def test_a_removed_scheme_no_longer_resolves(echo_scheme: str) -> None:
    unregister_address_scheme(echo_scheme)
    with pytest.raises(InvalidInputError, match="cannot use 'echo://parrot' as a model"):
        build_backends(["echo://parrot"])


def test_a_confidence_signal_written_in_one_place_is_recorded_by_collect(tmp_path: Path) -> None:
    from greenserv_core.confidence import ConfidenceSignal
    from greenserv_core.evaluation.collect import collect

    class ShortIsSure:
        """Sure of a short answer, unsure of a long one."""

        name = "short-is-sure"

        def __call__(self, result: GenerationResult) -> float | None:
            return 1.0 / (1 + len(result.text))

    assert isinstance(ShortIsSure(), ConfidenceSignal)
    table = collect(
        [FakeBackend("f", reply=lambda m: "AB")], tmp_path / "t.csv", tasks=["arc_easy"], limit=2, signal=ShortIsSure()
    )
    assert table.columns["confidence"] == [pytest.approx(1 / 3)] * 2
    assert table.metadata["confidence_signals"] == {"arc_easy": "short-is-sure"}


def test_a_key_in_a_models_address_is_never_shown() -> None:
    from pathlib import Path

    from langchain_greenserv import ChatGreenServ

    address = "https://user:sk-SECRET@api.example.com/v1?api-key=sk-SECRET2#gpt-4o"
    llm = ChatGreenServ(models=[address])
    assert "SECRET" not in llm.pool_name and "SECRET" not in repr(llm)  # traced as ls_model_name, repr
    versioned = "http://127.0.0.1:9/v1?api-version=2024-06-01"
    one, two = (ChatGreenServ(models=[versioned, FakeBackend(name)]) for name in ("small", "huge"))
    assert one.pool_name.endswith(",small]") and one._get_llm_string() != two._get_llm_string()  # one cache key
    with pytest.raises(InvalidInputError) as refused:
        build_backends([Path("http://u:sk-SECRET@h/v1#m")])  # a Path loses the URL's "//": no redaction finds it
    assert "SECRET" not in str(refused.value)


def test_a_model_spec_refuses_what_it_would_fail_on_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.backends.transformers import directory_backend
    from greenserv_core.models import ModelSpec

    for bad in ({"name": "m", "quality": {"math": 0.9}}, {"name": "   "}, {"name": "m", "chat_template": "no"}):
        with pytest.raises(InvalidInputError):
            ModelSpec(**{"path": "/models/m", **bad})  # type: ignore[arg-type]  # accepted, failed later or misread
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path / "my-model")
    assert directory_backend(".").name == "my-model"  # a spec with no name
    (tmp_path / "linked").symlink_to(tmp_path / "my-model")
    assert directory_backend(str(tmp_path / "linked")).name == "linked"  # named after the link, as before


class _NaNScores(EpsilonGreedy):
    """ε-greedy that scores its first arm NaN while ``nan`` is set (a policy of one's own, faulty)."""

    nan = False

    def _estimate_arrays(self, context: np.ndarray, arms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        estimates, bonuses = super()._estimate_arrays(context, arms)
        if self.nan:
            estimates = estimates.copy()
            estimates[0] = np.nan
        return estimates, bonuses


class _ChoosesElsewhere(EpsilonGreedy):
    """ε-greedy that chooses a model the query cannot go to (a policy of one's own, faulty)."""

    def _choose(self, scores: Mapping[str, ArmScore]) -> tuple[str, bool]:
        return "not-a-model", False


def _draws(router: GreenServRouter) -> tuple[object, object]:
    return router.policy_.t_, router.policy_.rng_.bit_generator.state  # type: ignore[attr-defined]


def test_a_decision_a_faulty_policy_makes_is_refused_and_moves_nothing() -> None:
    """A NaN score, or a choice outside the eligible models, is refused; the policy's steps and
    random draws are taken back, and nothing is left pending (the NaN's draws were kept, so a
    router with the same seed chose differently afterwards; a choice outside the pool left a
    pending decision no one could score, and a bare KeyError)."""
    features = make_hashing_extractor()
    pool = [FakeBackend("small"), FakeBackend("large", joules_per_token=8.0)]
    nan = _NaNScores(features.dimension)
    router = GreenServRouter(pool, features=features, policy=nan, seed=0)
    for model in ("small", "large"):
        router.generate("Hi there", models=[model], max_new_tokens=4)
    before = _draws(router)
    nan.nan = True
    with pytest.raises(InvalidInputError, match="NaN"):
        router.route("Hi there")
    assert _draws(router) == before and len(router.pending_) == 2  # type: ignore[arg-type]
    exploring = _NaNScores(features.dimension, epsilon=1.0, min_epsilon=1.0)  # (an exploring step was let through)
    exploring.nan = True
    explorer = GreenServRouter(pool, features=make_hashing_extractor(), policy=exploring, seed=0)
    with pytest.raises(InvalidInputError, match="NaN"):
        explorer.route("Hi there")
    features = make_hashing_extractor()
    elsewhere = GreenServRouter(pool, features=features, policy=_ChoosesElsewhere(features.dimension), seed=0)
    before = _draws(elsewhere)
    with pytest.raises(InvalidInputError, match="chose 'not-a-model', which is not among the eligible models"):
        elsewhere.route("What is 2 + 2?")
    assert _draws(elsewhere) == before and len(elsewhere.pending_) == 0  # type: ignore[arg-type]


class _FailsOnce(EpsilonGreedy):
    """ε-greedy whose store is away for one update (a policy of one's own)."""

    fail = True

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        if self.fail:
            self.fail = False
            raise ConnectionError("the policy's store is away")
        super().update(arm, context, reward)


@pytest.mark.parametrize("store", ["in-process", "redis"])
@pytest.mark.parametrize("outcome_first", [True, False])
def test_a_score_the_policy_refuses_leaves_its_decision_pending_to_score_again(
    store: str, outcome_first: bool, tmp_path: Path
) -> None:
    """Was taken out for good: the retry got DecisionAlreadyScoredError, the score was lost."""
    from tests.services import redis_server

    with contextlib.ExitStack() as stack:
        pending: dict[str, Any] = {}
        if store == "redis":
            from greenserv_core.sharing import RedisPendingDecisions

            pending["pending"] = RedisPendingDecisions(url=stack.enter_context(redis_server(tmp_path)), prefix="back")
        features = make_hashing_extractor()
        policy = _FailsOnce(features.dimension)
        router = GreenServRouter([FakeBackend("small")], features=features, policy=policy, seed=0, **pending)
        decision = router.route("What is 2 + 2?")
        if outcome_first:
            router.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.1)
        with pytest.raises(ConnectionError):
            router.feedback(decision.decision_id, 1.0)
        assert router.stats_["small"]["feedback"] == 0 and policy.statistics().sums["small/n"][0] == 0
        assert router.feedback(decision.decision_id, 1.0).applied
        if not outcome_first:
            router.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.1)
        assert router.stats_["small"]["feedback"] == 1 and policy.statistics().sums["small/n"][0] == 1
        assert router.stats_["small"]["energy_joules"] == 5.0
        with pytest.raises(DecisionAlreadyScoredError):
            router.feedback(decision.decision_id, 1.0)
