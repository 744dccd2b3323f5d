import hashlib
import json
import math
import pickle
import threading
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from greenserv_core import (
    DecisionAlreadyScoredError,
    DecisionIdInUseError,
    FakeBackend,
    GreenServRouter,
    InvalidInputError,
    NoEligibleModelError,
    RoutingDecision,
    StateFileError,
    UnknownDecisionError,
    UnknownModelError,
)
from greenserv_core.features import FeatureExtractor
from tests.conftest import make_hashing_extractor

ASK = [{"role": "user", "content": "What is the capital of France?"}]


def snapshot(router: GreenServRouter) -> str:
    """A comparable dump of all learned state."""
    from greenserv_core.persistence import _canonical, _encode

    state = router.state_dict()
    return _canonical(_encode(state))


def test_generate_returns_the_answer_and_its_cost(router: GreenServRouter) -> None:
    answer = router.generate(ASK, max_new_tokens=64)
    assert answer.model in router.models
    assert answer.text.startswith(answer.model)
    assert answer.input_tokens == 7 and answer.output_tokens > 0
    assert answer.energy_source == "fake" and answer.energy_measured is False
    backend = router.backend(answer.model)
    assert answer.energy_joules == pytest.approx(backend.joules_per_token * answer.total_tokens)  # type: ignore[attr-defined]
    decision = answer.decision
    assert decision.decision_id == answer.decision_id
    assert set(decision.scores) == set(router.models)
    assert decision.features.task in router.features.task_types


def test_route_only_then_record_outcome(router: GreenServRouter) -> None:
    decision = router.route(ASK)
    router.record_outcome(decision.decision_id, energy_joules=12.0, latency_s=0.5)
    assert router.energy_.predict(decision.model, decision.features.vector, decision.features.prompt_tokens) > 0
    with pytest.raises(InvalidInputError, match="already recorded"):
        router.record_outcome(decision.decision_id, energy_joules=12.0, latency_s=0.5)
    record = router.feedback(decision.decision_id, 1.0)
    assert record.applied and record.reward is not None


def test_stream_yields_pieces_then_the_generation(router: GreenServRouter) -> None:
    chunks = list(router.stream(ASK))
    final = chunks[-1].generation
    assert final is not None and chunks[-1].delta == ""
    assert "".join(c.delta for c in chunks[:-1]) == final.text
    assert all(c.decision.decision_id == final.decision_id for c in chunks)
    assert router.feedback(final.decision_id, 0.5).applied


def test_abandoned_stream_drops_its_decision(router: GreenServRouter) -> None:
    stream = router.stream(ASK)
    first = next(stream)
    stream.close()
    with pytest.raises(UnknownDecisionError, match="stream was not finished"):
        router.feedback(first.decision.decision_id, 1.0)


def test_feedback_updates_only_the_chosen_model(router: GreenServRouter) -> None:
    answer = router.generate(ASK)
    before = {m: router.policy_.arms_[m].n for m in router.models}  # type: ignore[attr-defined]
    router.feedback(answer.decision_id, 1.0)
    after = {m: router.policy_.arms_[m].n for m in router.models}  # type: ignore[attr-defined]
    assert after[answer.model] == before[answer.model] + 1
    assert all(after[m] == before[m] for m in router.models if m != answer.model)


def test_feedback_errors(router: GreenServRouter) -> None:
    answer = router.generate(ASK)
    with pytest.raises(UnknownDecisionError, match="unknown decision"):
        router.feedback("nope", 1.0)
    with pytest.raises(KeyError):  # UnknownDecisionError is a KeyError
        router.feedback("nope", 1.0)
    for bad in (float("nan"), -0.1, 1.5, "good", None):
        state = snapshot(router)
        with pytest.raises(InvalidInputError, match="feedback score"):
            router.feedback(answer.decision_id, bad)  # type: ignore[arg-type]
        assert snapshot(router) == state
    router.feedback(answer.decision_id, 1.0)
    with pytest.raises(DecisionAlreadyScoredError, match="already received feedback"):
        router.feedback(answer.decision_id, 1.0)


def test_a_numpy_bool_score_is_taken_as_a_bool(router: GreenServRouter) -> None:
    for score, expected in ((np.isclose(6.0, 6.0), 1.0), (np.float64(6.0) == 7.0, 0.0)):  # what pred == gold gives
        answer = router.generate(ASK)
        assert router.feedback(answer.decision_id, score).score == expected  # type: ignore[arg-type]  # was refused


def test_pending_decisions_are_bounded_by_size_and_age(fakes, extractor) -> None:  # type: ignore[no-untyped-def]
    router = GreenServRouter(fakes, features=extractor, max_pending=3, seed=0)
    ids = [router.route(ASK).decision_id for _ in range(5)]
    assert len(router.pending_) == 3
    with pytest.raises(UnknownDecisionError, match="expired"):
        router.feedback(ids[0], 1.0)
    router.feedback(ids[-1], 1.0)

    now = [1000.0]
    router.pending_.clock = lambda: now[0]
    router.pending_.ttl_s = 60
    for item in router.pending_:
        item.created_at = now[0]
    now[0] += 61
    with pytest.raises(UnknownDecisionError, match="expired"):
        router.feedback(ids[2], 1.0)
    assert len(router.pending_) == 0


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"tradeoff": 1.5}, "tradeoff"),
        ({"tradeoff": -0.1}, "tradeoff"),
        ({"tradeoff": float("nan")}, "tradeoff"),
        ({"max_latency_s": 0}, "max_latency_s"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_route_arguments_leave_state_unchanged(router: GreenServRouter, kwargs, needle: str) -> None:  # type: ignore[no-untyped-def]
    router.generate(ASK)
    state = snapshot(router)
    with pytest.raises(InvalidInputError, match=needle):
        router.route(ASK, **kwargs)
    assert snapshot(router) == state


@pytest.mark.parametrize("messages", [[], [{"role": "user", "content": 5}], "", None])
def test_bad_messages_leave_state_unchanged(router: GreenServRouter, messages) -> None:  # type: ignore[no-untyped-def]
    state = snapshot(router)
    with pytest.raises(InvalidInputError):
        router.generate(messages)
    assert snapshot(router) == state


def test_constructor_validation(fakes, extractor) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match="tradeoff"):
        GreenServRouter(fakes, features=extractor, tradeoff=2)
    with pytest.raises(InvalidInputError, match="at least one model"):
        GreenServRouter([], features=extractor)
    with pytest.raises(InvalidInputError, match="already in the pool"):
        GreenServRouter([fakes[0], fakes[0]], features=extractor)
    with pytest.raises(InvalidInputError, match="unknown strategy"):
        GreenServRouter(fakes, features=extractor, strategy="best")
    with pytest.raises(InvalidInputError, match="ModelBackend"):
        GreenServRouter([object()], features=extractor)  # type: ignore[list-item]


def test_context_window_makes_a_model_ineligible(extractor) -> None:  # type: ignore[no-untyped-def]
    tiny = FakeBackend("tiny", context_window=16)
    big = FakeBackend("big", context_window=4096)
    router = GreenServRouter([tiny, big], features=extractor, seed=0)
    long_prompt = "word " * 40
    decision = router.route(long_prompt, max_new_tokens=8)
    assert decision.model == "big"
    assert "context window" in decision.excluded["tiny"]
    with pytest.raises(NoEligibleModelError, match="context window"):
        router.route("word " * 5000, max_new_tokens=8)


def test_a_refused_query_a_refused_labelled_row_and_a_withdrawn_batch_query_move_no_centroid() -> None:
    extractor = make_hashing_extractor()
    router = GreenServRouter([FakeBackend("tiny", context_window=64)], features=extractor, seed=0)
    for prompt in ("What is 2 + 2?", "Tell me a joke.", "Who wrote Hamlet?", "Solve 5x = 20."):
        router.route(prompt, max_new_tokens=8)
    clusters = extractor.clusterer

    def unchanged(refused: Callable[[], object], error: type[Exception], *, exactly: bool = True) -> None:
        centroids, counts = clusters.centroids_.copy(), clusters.counts_.copy()  # type: ignore[union-attr]
        with pytest.raises(error):
            refused()
        assert clusters.counts_.tolist() == counts.tolist()  # was one more
        assert (np.array_equal if exactly else np.allclose)(clusters.centroids_, centroids)  # type: ignore[operator]

    long = "Summarise this text: " + "word " * 500
    for _ in range(50):  # bit for bit (taken back by arithmetic, the last bits drifted)
        unchanged(lambda: router.route(long, max_new_tokens=8), NoEligibleModelError)
    batch = ["Who painted the Mona Lisa?", "What is 7 times 6?", "Name a prime number.", "Who wrote Emma?", long]
    for _ in range(10):  # bit for bit too, each query taken back latest first (by arithmetic, after the first)
        unchanged(lambda: router.generate_batch(batch, max_new_tokens=8), NoEligibleModelError)
    learner = GreenServRouter([FakeBackend("tiny")], features=make_hashing_extractor(), seed=0)
    with pytest.raises(InvalidInputError):
        learner.learn("What is 2 + 2?", "tiny", score=1.5, energy_joules=1.0, latency_s=0.1)
    assert learner.features.clusterer.counts_.tolist() == [1]  # the cluster it formed stays (replicas may have it)
    counts = learner.features.clusterer.counts_.tolist()
    with pytest.raises(InvalidInputError):
        learner.learn("What is 2 + 2?", "tiny", score=1.5, energy_joules=1.0, latency_s=0.1)
    assert learner.features.clusterer.counts_.tolist() == counts  # was [2]


def test_a_batch_refused_before_any_query_ran_takes_back_the_policys_steps_and_draws() -> None:
    def router() -> GreenServRouter:
        pool = [FakeBackend("a", context_window=64), FakeBackend("b", context_window=64)]
        return GreenServRouter(pool, features=make_hashing_extractor(), seed=0, strategy="epsilon")

    prompts = ["What is 2 + 2?", "Tell me a joke.", "Who wrote Hamlet?", "Solve 5x = 20."] * 5
    refused, never = router(), router()
    policy = refused.policy_
    state, steps = policy.rng_.bit_generator.state, policy.t_  # type: ignore[attr-defined]
    with pytest.raises(NoEligibleModelError):
        refused.generate_batch([*prompts[:3], "Summarise this text: " + "word " * 500], max_new_tokens=8)
    assert policy.t_ == steps and policy.rng_.bit_generator.state == state  # type: ignore[attr-defined]
    assert [refused.route(p, max_new_tokens=8).model for p in prompts] == [
        never.route(p, max_new_tokens=8).model for p in prompts
    ]
    numpy_steps = router()  # a policy may keep its step count as a numpy integer
    numpy_steps.policy_.t_ = np.int64(3)  # type: ignore[attr-defined]
    with pytest.raises(NoEligibleModelError):
        numpy_steps.generate_batch([*prompts[:3], "Summarise this text: " + "word " * 500], max_new_tokens=8)
    assert numpy_steps.policy_.t_ == 3  # type: ignore[attr-defined]


def test_a_batch_refused_before_any_query_ran_leaves_the_budget_and_the_energy_scale_as_they_were() -> None:
    """The batch's decisions had added rows to the pacer's memory (λ is re-solved on them) and
    widened the energy scale's ranges; only the policy's steps and draws were taken back."""
    from greenserv_core.budget import EnergyBudget

    def router() -> GreenServRouter:
        pool = [FakeBackend("a", context_window=64), FakeBackend("b", context_window=64, joules_per_token=3.0)]
        built = GreenServRouter(
            pool, features=make_hashing_extractor(), seed=0, energy_budget=EnergyBudget.per_query(20.0)
        )
        for prompt in ("What is 2 + 2?", "Tell me a joke.", "Who wrote Hamlet?"):
            built.generate(prompt, max_new_tokens=8)
        return built

    refused = router()
    pacer, learner = refused.learner_.pacer_, refused.learner_
    assert pacer is not None
    rows, ranges = len(pacer.recent_), {task: list(b) for task, b in learner.normalizer_.ranges_.items()}
    prompts = ["Name three colours in one word each.", "Translate 'cat' into French.", "Add 17 and 25."]
    with pytest.raises(NoEligibleModelError):
        refused.generate_batch([*prompts, "Summarise this text: " + "word " * 500], max_new_tokens=8)
    assert len(pacer.recent_) == rows  # was 3 rows more
    assert learner.normalizer_.ranges_ == ranges
    never = router()
    assert [refused.route(p, max_new_tokens=8).model for p in prompts * 3] == [
        never.route(p, max_new_tokens=8).model for p in prompts * 3
    ]


def test_a_decision_its_pending_store_refuses_leaves_the_budget_and_the_energy_scale_as_they_were() -> None:
    """The decision had added a row to the pacer's memory (λ is re-solved on it) and widened
    its task's energy range before the store refused it; only its draws were taken back."""
    from greenserv_core.budget import EnergyBudget
    from greenserv_core.pending import PendingDecision, PendingDecisions

    class Away(PendingDecisions):
        refuse = False

        def add(self, decision: PendingDecision) -> None:
            if self.refuse:
                raise ConnectionError("the store is away")
            super().add(decision)

    def router(pending: PendingDecisions) -> GreenServRouter:
        pool = [FakeBackend("a", context_window=64), FakeBackend("b", context_window=64, joules_per_token=3.0)]
        built = GreenServRouter(
            pool,
            features=make_hashing_extractor(),
            seed=0,
            energy_budget=EnergyBudget.per_query(20.0),
            pending=pending,
        )
        for prompt in ("What is 2 + 2?", "Tell me a joke.", "Who wrote Hamlet?"):
            built.generate(prompt, max_new_tokens=8)
        return built

    away = Away()
    refused = router(away)
    pacer, learner = refused.learner_.pacer_, refused.learner_
    assert pacer is not None
    rows, ranges = len(pacer.recent_), {task: list(b) for task, b in learner.normalizer_.ranges_.items()}
    away.refuse = True
    prompts = ["Name three colours in one word each.", "Translate 'cat' into French.", "Add 17 and 25."]
    for prompt in prompts:
        with pytest.raises(ConnectionError):
            refused.route(prompt, max_new_tokens=8)
    assert len(pacer.recent_) == rows  # was 3 rows more
    assert learner.normalizer_.ranges_ == ranges  # the new tasks' ranges stayed
    away.refuse = False
    never = router(PendingDecisions())
    assert [refused.route(p, max_new_tokens=8).model for p in prompts * 3] == [
        never.route(p, max_new_tokens=8).model for p in prompts * 3
    ]


def test_a_refused_batch_keeps_what_another_thread_taught_the_energy_scale_meanwhile() -> None:
    """Taking back a refused batch's widening of the energy ranges put back the ranges of its
    start, and erased an outcome recorded meanwhile by another thread (900 J on its task)."""
    router = GreenServRouter(
        [FakeBackend("a", context_window=64), FakeBackend("b", context_window=64, joules_per_token=3.0)],
        features=make_hashing_extractor(),
        seed=0,
        energy_scale="seen",
    )
    router.generate("What is 2 + 2?", max_new_tokens=8)
    by_hand = router.route("Who painted the Mona Lisa?", max_new_tokens=8)
    route, routed = router._executor.route, []

    def routing(*args: object) -> RoutingDecision:
        routed.append(args)
        if len(routed) == 2:  # between the batch's decisions, another thread records an outcome
            thread = threading.Thread(
                target=router.record_outcome,
                args=(by_hand.decision_id,),
                kwargs={"energy_joules": 900.0, "latency_s": 0.2},
            )
            thread.start()
            thread.join(5)
        return route(*args)  # type: ignore[arg-type]

    router._executor.route = routing  # type: ignore[method-assign]
    with pytest.raises(NoEligibleModelError):
        router.generate_batch(
            ["Add 17 and 25.", "Name a prime number.", "Summarise: " + "word " * 500], max_new_tokens=8
        )
    assert router.learner_.normalizer_.ranges_[by_hand.features.task][1] == 900.0  # was put back below it


def test_a_model_among_its_own_members_is_refused_before_anything_is_learned() -> None:
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=make_hashing_extractor(), seed=0)
    decision = router.route("What is 2 + 2?")
    before = router.statistics().sums
    with pytest.raises(InvalidInputError, match="among its own members"):  # its row was updated twice
        router.learner_.record_expired_outcome(
            decision, energy_joules=1.0, latency_s=0.1, members=[(decision.model, 1.0, 0.1)]
        )
    after = router.statistics().sums
    assert all(np.array_equal(before[key], after[key]) for key in before)


def test_a_refusal_is_what_is_raised_when_taking_back_its_clustering_step_fails() -> None:
    extractor = make_hashing_extractor()
    router = GreenServRouter([FakeBackend("tiny", context_window=64)], features=extractor, seed=0)
    router.route("What is 2 + 2?", max_new_tokens=8)

    def away(*args: object) -> None:
        raise ConnectionError("the embedder is away")

    extractor.forget = away  # type: ignore[method-assign]
    long = "Summarise this text: " + "word " * 500
    with pytest.raises(NoEligibleModelError):  # was ConnectionError
        router.route(long, max_new_tokens=8)
    decisions, pending = router.stats_["tiny"]["decisions"], len(router.learner_.pending_)
    with pytest.raises(NoEligibleModelError):  # was ConnectionError, and the second query's decision kept
        router.generate_batch(["Who wrote Hamlet?", "Name a river.", long], max_new_tokens=8)
    assert router.stats_["tiny"]["decisions"] == decisions and len(router.learner_.pending_) == pending


def test_latency_limit_excludes_slow_models(extractor) -> None:  # type: ignore[no-untyped-def]
    fast = FakeBackend("fast", seconds_per_token=0.001)
    slow = FakeBackend("slow", seconds_per_token=1.0)
    router = GreenServRouter([fast, slow], features=extractor, strategy="random", seed=0)
    for _ in range(20):
        router.generate(ASK)
    picks = Counter(router.route(ASK, max_latency_s=1.0).model for _ in range(30))
    assert picks == Counter({"fast": 30})
    with pytest.raises(NoEligibleModelError, match="latency"):
        router.route(ASK, max_latency_s=0.0001)


def test_answers_cut_by_their_time_limit_do_not_teach_a_slow_model_to_look_quick(extractor) -> None:  # type: ignore[no-untyped-def]
    """An answer cut at its ``max_time_s`` taught the latency model the cut seconds, so a model
    that takes 2 s came to be predicted at 0.5 s and passed a 1 s ``max_latency_s``. A cut
    answer's seconds are a lower bound: they teach only where they exceed the prediction."""
    slow = FakeBackend("slow", seconds_per_token=0.1, reply=lambda messages: "word " * 16)
    router = GreenServRouter([slow, FakeBackend("other")], features=extractor, seed=0)
    full = router.generate(ASK, models=["slow"])
    assert full.finish_reason == "stop" and full.latency_s > 1.0
    for _ in range(5):
        cut = router.generate(ASK, models=["slow"], max_time_s=0.5)
        assert cut.finish_reason == "length" and cut.latency_s == 0.5
    decision = router.route(ASK, max_latency_s=1.0)
    assert decision.model == "other" and "latency" in decision.excluded["slow"]
    learner, features = router.learner_, decision.features

    def predicted() -> float | None:
        return learner.latency_.predict("slow", learner.policy_.check_context(features.vector), features.prompt_tokens)

    assert predicted() == pytest.approx(full.latency_s, rel=0.01)  # not lowered (0.5 s: it was)
    always = GreenServRouter([FakeBackend("slow", seconds_per_token=0.1, reply=lambda messages: "word " * 16),
                              FakeBackend("other")], features=extractor, seed=0)  # fmt: skip
    for _ in range(3):  # only cut answers: their seconds are better than no prediction
        always.generate(ASK, models=["slow"], max_time_s=1.0)
    assert "latency" in always.route(ASK, max_latency_s=0.5).excluded["slow"]
    pinned = router.route(ASK, models=["slow"])  # a cut answer slower than predicted: the prediction was too low
    learner.record_outcome(pinned.decision_id, energy_joules=1.0, latency_s=3.0 * full.latency_s, cut_by_time=True)
    assert predicted() > 1.5 * full.latency_s  # type: ignore[operator]


def test_an_answer_cut_by_its_token_limit_near_its_time_limit_is_not_taken_as_cut_by_time() -> None:
    """Three tokens in 1.0 s under ``max_time_s=1.02`` were taken as cut by time (past 95% of
    the limit), so their seconds taught the latency model nothing, where the same answers
    without the time limit taught it 1.0 s."""

    def predicted_after(max_time_s: float | None) -> float | None:
        slow = FakeBackend("slow", seconds_per_token=0.1, reply=lambda messages: "word " * 16)
        router = GreenServRouter([slow, FakeBackend("other")], features=make_hashing_extractor(), seed=0)
        assert router.generate(ASK, models=["slow"]).latency_s > 2.0
        for _ in range(4):
            cut = router.generate(ASK, models=["slow"], max_new_tokens=3, max_time_s=max_time_s)
            assert (cut.finish_reason, cut.latency_s) == ("length", 1.0)
        learner, decision = router.learner_, router.route(ASK)
        context = learner.policy_.check_context(decision.features.vector)
        return learner.latency_.predict("slow", context, decision.features.prompt_tokens)

    unlimited = predicted_after(None)
    assert unlimited is not None and unlimited < 1.5
    assert predicted_after(1.02) == pytest.approx(unlimited)  # was 2.29 s


def test_a_cascades_second_answer_cut_by_time_is_taken_as_cut_whatever_the_first_answers_length() -> None:
    """The cascade's summed tokens (the first answer's and the second's) were compared with the
    per-call token limit: after a long first answer, a second answer cut by time was taken as
    a whole one, and the second model's latency model learned the cut as its answers' time."""

    def predicted_after(first_reply: str) -> float | None:
        small = FakeBackend(
            "small", reply=lambda m: first_reply, logprobs=lambda m, t: [-3.0] * len(t.split())
        )  # unsure: it escalates
        big = FakeBackend("big", seconds_per_token=0.1, reply=lambda m: " ".join(["w"] * 40))
        router = GreenServRouter(
            [small, big],
            cascades=[("small", "big")],
            features=make_hashing_extractor(),
            seed=0,
            strategy="static:small->big",
        )
        router.backend("small->big").threshold = 0.9  # type: ignore[attr-defined]
        for _ in range(5):
            router.learn(ASK, "big", energy_joules=200.0, latency_s=4.0)  # big's whole answers take 4 s
        answer = router.generate(ASK, max_new_tokens=12, max_time_s=1.0)
        assert answer.finish_reason == "length" and answer.chain[-1].output_tokens < 12
        decision = router.route(ASK)
        context = router.learner_.policy_.check_context(decision.features.vector)
        return router.learner_.latency_.predict("big", context, decision.features.prompt_tokens)

    short = predicted_after("7")
    assert short == pytest.approx(4.0, abs=0.01)  # the cut taught it nothing
    assert predicted_after("a b c d e f g h i j") == pytest.approx(short)  # was 3.5 s


def test_an_outcome_recorded_by_hand_can_say_it_was_cut_by_time(extractor) -> None:  # type: ignore[no-untyped-def]
    """A router serving through its own client (route, then record_outcome) can say that a
    server's time limit cut the answer: its seconds then do not teach the model to look quick."""
    slow = FakeBackend("slow", seconds_per_token=0.1, reply=lambda messages: "word " * 16)
    router = GreenServRouter([slow, FakeBackend("other")], features=extractor, seed=0)
    full = router.generate(ASK, models=["slow"])
    learner = router.learner_

    def predicted(decision: RoutingDecision) -> float | None:
        context = learner.policy_.check_context(decision.features.vector)
        return learner.latency_.predict("slow", context, decision.features.prompt_tokens)

    for _ in range(3):
        cut = router.route(ASK, models=["slow"])
        router.record_outcome(cut.decision_id, energy_joules=1.0, latency_s=0.5, cut_by_time=True)
    assert predicted(cut) == pytest.approx(full.latency_s, rel=0.01)  # a lower bound: not lowered
    refused = router.route(ASK, models=["slow"])
    with pytest.raises(InvalidInputError, match="cut_by_time"):
        router.record_outcome(refused.decision_id, energy_joules=1.0, latency_s=0.5, cut_by_time="yes")  # type: ignore[arg-type]
    router.record_outcome(refused.decision_id, energy_joules=1.0, latency_s=0.5)  # nothing was lost: taken as whole
    assert predicted(refused) < 0.9 * full.latency_s  # type: ignore[operator]


def test_the_fake_backend_honours_its_time_limit_as_a_model_would() -> None:
    from greenserv_core.backends.base import GenerationSettings
    from greenserv_core.messages import Message

    ask: list[Message] = [{"role": "user", "content": "2 + 2?"}]  # 4 tokens: 0.4 s of a 1 s limit
    fake = FakeBackend("f", seconds_per_token=0.1, reply=lambda messages: "4\n\nQ: and what is 3 + 3, or 4 + 4?")
    cut = fake.generate(ask, GenerationSettings(max_time_s=1.0))
    assert (cut.text, cut.finish_reason, cut.latency_s) == ("4\n\nQ: and what is", "length", 1.0)  # was all of it
    stopped = fake.generate(ask, GenerationSettings(max_time_s=1.0, stop=("Q:",)))  # a stop inside what it keeps
    assert (stopped.text, stopped.finish_reason) == ("4\n\n", "stop")
    assert fake.generate(ask, GenerationSettings(max_time_s=0.1)).text == ""  # the prompt took its time
    assert fake.generate(ask, GenerationSettings(max_time_s=1e300)).finish_reason == "stop"


def test_add_and_remove_models_at_runtime(router: GreenServRouter) -> None:
    for _ in range(30):
        router.feedback(router.generate(ASK).decision_id, 0.5)
    router.add_model(FakeBackend("newcomer", joules_per_token=0.5))
    assert "newcomer" in {router.generate(ASK).model for _ in range(20)}
    pending = router.route(ASK)
    router.remove_model(pending.model)
    assert all(router.generate(ASK).model != pending.model for _ in range(50))
    assert router.feedback(pending.decision_id, 1.0).applied is False
    with pytest.raises(UnknownModelError, match="ghost"):
        router.remove_model("ghost")
    with pytest.raises(InvalidInputError, match="already"):
        router.add_model(FakeBackend(router.models[0]))


def test_failing_model_drops_the_decision(extractor) -> None:  # type: ignore[no-untyped-def]
    def explode(messages):  # type: ignore[no-untyped-def]
        raise RuntimeError("model crashed")

    router = GreenServRouter([FakeBackend("bad", reply=explode)], features=extractor)
    with pytest.raises(RuntimeError, match="crashed"):
        router.generate(ASK)
    assert len(router.pending_) == 0


def test_per_call_tradeoff_changes_the_choice(extractor) -> None:  # type: ignore[no-untyped-def]
    router = GreenServRouter(
        [FakeBackend("cheap", joules_per_token=1), FakeBackend("dear", joules_per_token=20)],
        features=extractor,
        strategy="linucb",
        seed=0,
    )
    accuracy = {"cheap": 0.6, "dear": 0.9}
    for i in range(200):
        answer = router.generate(ASK, tradeoff=0.5, temperature=0.0, seed=i)
        router.feedback(answer.decision_id, accuracy[answer.model])
    assert router.route(ASK, tradeoff=0.0).model == "dear"
    assert router.route(ASK, tradeoff=0.9).model == "cheap"


def test_concurrent_generate_and_feedback_lose_no_update(fakes) -> None:  # type: ignore[no-untyped-def]
    router = GreenServRouter(fakes, features=make_hashing_extractor(), strategy="linucb", seed=0)
    per_thread, threads = 60, 8
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for i in range(per_thread):
                answer = router.generate(f"question {index} {i % 7}: what is {i} plus {index}?")
                router.feedback(answer.decision_id, float((i + index) % 2))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    total = per_thread * threads
    assert sum(arm.n for arm in router.policy_.arms_.values()) == total
    assert sum(arm.n for arm in router.energy_.models_.values()) == total
    assert sum(s["decisions"] for s in router.stats_.values()) == total
    assert sum(int(c) for c in router.features.clusterer.counts_) == total
    assert len(router.pending_) == 0


def test_save_and_load_round_trip(router: GreenServRouter, fakes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    for _ in range(40):
        answer = router.generate(ASK)
        router.feedback(answer.decision_id, float(rng.random()))
    waiting = router.generate(ASK)  # pending feedback survives a restart
    path = tmp_path / "router.json"
    router.save(path)
    restored = GreenServRouter.load(path, fakes, features=make_hashing_extractor())
    assert snapshot(restored) == snapshot(router)
    for _ in range(10):
        assert restored.route(ASK).model == router.route(ASK).model
    assert restored.feedback(waiting.decision_id, 1.0).applied


def test_load_adds_new_models_and_refuses_missing_ones(router: GreenServRouter, fakes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "router.json"
    router.save(path)
    grown = GreenServRouter.load(path, [*fakes, FakeBackend("extra")], features=make_hashing_extractor())
    assert "extra" in grown.policy_.arms
    with pytest.raises(StateFileError, match="medium"):
        GreenServRouter.load(path, [fakes[0], fakes[2]], features=make_hashing_extractor())


def test_load_refuses_a_pool_that_names_a_model_twice_and_keeps_removed_models_tallies(  # type: ignore[no-untyped-def]
    router: GreenServRouter, fakes, tmp_path: Path
) -> None:
    for _ in range(6):
        answer = router.generate(ASK, models=["medium"])
        router.feedback(answer.decision_id, 1.0)
    router.remove_model("medium")
    path = tmp_path / "router.json"
    router.save(path)
    with pytest.raises(InvalidInputError, match=r"names \['small'\] more than once"):
        GreenServRouter.load(
            path, [*fakes, FakeBackend("small", joules_per_token=50.0)], features=make_hashing_extractor()
        )
    loaded = GreenServRouter.load(path, [fakes[0], fakes[2]], features=make_hashing_extractor())
    assert loaded.stats_["medium"] == router.stats_["medium"] and loaded.stats_["medium"]["feedback"] == 6


def test_a_sharing_epsilon_greedy_policy_stays_one_after_load(fakes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.sharing import InMemoryStore, SharedLearning

    router = GreenServRouter(fakes, features=make_hashing_extractor(), seed=0, strategy="epsilon")
    SharedLearning(router, InMemoryStore()).sync()
    router.save(tmp_path / "router.json")
    loaded = GreenServRouter.load(tmp_path / "router.json", fakes, features=make_hashing_extractor())
    assert router.policy_.shares_ and loaded.policy_.shares_  # so it raises no drift alarm that unshares sums


def test_load_refuses_corrupt_or_incompatible_files(router: GreenServRouter, fakes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "router.json"
    router.save(path)
    text = path.read_text()

    def load() -> GreenServRouter:
        return GreenServRouter.load(path, fakes, features=make_hashing_extractor())

    path.write_text(text[: len(text) // 2])
    with pytest.raises(StateFileError, match="corrupt"):
        load()
    document = json.loads(text)
    document["state"]["tradeoff"] = 0.9
    path.write_text(json.dumps(document))
    with pytest.raises(StateFileError, match="checksum"):
        load()
    document = json.loads(text)
    document["version"] = 99
    path.write_text(json.dumps(document))
    with pytest.raises(StateFileError, match="version"):
        load()
    document = json.loads(text)
    document["state"]["tradeoff"] = float("nan")  # Python's json writes NaN; the checksum cannot take it
    path.write_text(json.dumps(document))
    with pytest.raises(StateFileError, match="corrupt"):
        load()
    from greenserv_core.persistence import _canonical

    document = json.loads(text)
    document["state"]["pending"] = []  # re-signed, as another build or a tool might write it
    document["sha256"] = hashlib.sha256(_canonical(document["state"]).encode()).hexdigest()
    path.write_text(json.dumps(document))
    with pytest.raises(StateFileError, match="compatible router state"):
        load()
    path.write_text(text)
    from greenserv_core.features import HashingEmbedder, TaskClassifier

    small = HashingEmbedder(32)  # features of another embedder, with a classifier of its own
    texts, labels = ["add 2 and 3", "sum 4 and 5", "write a poem", "a poem on rain"], ["a", "a", "b", "b"]
    classifier = TaskClassifier().fit(small.embed(texts), labels, small.name)
    with pytest.raises(StateFileError, match="embedder"):
        GreenServRouter.load(path, fakes, features=FeatureExtractor(small, classifier))
    with pytest.raises(StateFileError, match="no saved state"):
        GreenServRouter.load(tmp_path / "absent.json", fakes, features=make_hashing_extractor())


def test_save_is_atomic(router: GreenServRouter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "router.json"
    router.save(path)
    good = path.read_text()
    router.generate(ASK)

    def broken_dump(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr("greenserv_core.persistence.os.fsync", broken_dump)  # fails after the temporary is written
    with pytest.raises(OSError, match="disk full"):
        router.save(path)
    assert path.read_text() == good
    assert [p.name for p in tmp_path.iterdir()] == ["router.json"]


def test_caller_supplied_decision_ids(router: GreenServRouter) -> None:
    answer = router.generate(ASK, decision_id="run-123")
    assert answer.decision_id == "run-123"
    state = snapshot(router)
    with pytest.raises(DecisionIdInUseError, match="already in use") as taken:
        router.generate(ASK, decision_id="run-123")
    assert isinstance(taken.value, InvalidInputError) and taken.value.decision_id == "run-123"
    assert pickle.loads(pickle.dumps(taken.value)).decision_id == "run-123"
    assert snapshot(router) == state
    assert router.feedback("run-123", 1.0).applied


def test_models_argument_restricts_or_pins_the_choice(router: GreenServRouter) -> None:
    assert {router.generate(ASK, models=["large"]).model for _ in range(10)} == {"large"}
    picks = {router.route(ASK, models=["small", "medium"]).model for _ in range(30)}
    assert picks <= {"small", "medium"}
    decision = router.route(ASK, models=["small"])
    assert "not among the models requested" in decision.excluded["large"]
    with pytest.raises(UnknownModelError, match="ghost"):
        router.route(ASK, models=["ghost"])


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _tool_pool() -> list[FakeBackend]:
    caller = FakeBackend(
        "caller",
        capabilities=frozenset({"chat_template", "tools"}),
        reply=lambda m: 'Checking. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
    )
    return [caller, FakeBackend("plain", joules_per_token=0.01)]


def test_tool_requests_go_only_to_models_that_take_tools_and_their_calls_are_parsed() -> None:
    router = GreenServRouter(_tool_pool(), features=make_hashing_extractor(), strategy="random", seed=0)
    answers = [router.generate(ASK, tools=[WEATHER_TOOL], max_new_tokens=64) for _ in range(10)]
    assert {a.model for a in answers} == {"caller"}
    for answer in answers:
        assert answer.text == "Checking." and answer.invalid_tool_calls == ()
        assert [(c.name, c.arguments) for c in answer.tool_calls] == [("get_weather", {"city": "Paris"})]
        assert answer.decision.excluded == {"plain": "lacks the capability tools"}
    streamed = list(router.stream(ASK, tools=[WEATHER_TOOL], max_new_tokens=64))
    final = streamed[-1].generation
    assert final is not None and final.tool_calls[0].name == "get_weather"
    batch = router.generate_batch([ASK, ASK], tools=[WEATHER_TOOL], max_new_tokens=64)
    assert [b.tool_calls[0].arguments for b in batch] == [{"city": "Paris"}] * 2
    # without tools both models serve, and nothing is parsed
    plain = [router.generate(ASK, max_new_tokens=64) for _ in range(12)]
    assert {a.model for a in plain} == {"caller", "plain"} and all(a.tool_calls == () for a in plain)
    assert any("<tool_call>" in a.text for a in plain if a.model == "caller")


def test_a_capability_nobody_has_is_named_in_the_error() -> None:
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=make_hashing_extractor(), seed=0)
    with pytest.raises(NoEligibleModelError, match="no model in the pool has the capability tools"):
        router.generate(ASK, tools=[WEATHER_TOOL])
    with pytest.raises(NoEligibleModelError, match="json_schema"):
        router.route(ASK, requires={"json_schema"})
    with pytest.raises(InvalidInputError, match="collection of capability names"):
        router.route(ASK, requires="tools")
    with pytest.raises(InvalidInputError, match="list of tools"):
        router.generate(ASK, tools=WEATHER_TOOL)  # type: ignore[arg-type]
    assert not router.pending_.known("anything")  # nothing was left pending


def test_tool_calls_can_score_themselves() -> None:
    calls = {"valid": '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'}
    calls["invalid"] = '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'
    calls["prose"] = "It is sunny."
    for kind, text in calls.items():
        backend = FakeBackend("m", capabilities=frozenset({"tools"}), tool_reply=lambda m, t, text=text: text)
        router = GreenServRouter([backend], policy="linucb", features=make_hashing_extractor(), seed=0)  # prior 0
        answer = router.generate(ASK, tools=[WEATHER_TOOL], score_tool_calls=True)
        scored = router.stats_["m"]["feedback"]
        if kind == "prose":
            assert scored == 0 and router.feedback(answer.decision_id, 1.0).applied  # left to the caller
        else:
            assert scored == 1
            with pytest.raises(DecisionAlreadyScoredError):
                router.feedback(answer.decision_id, 1.0)
            learned = router.policy_.arms_["m"].predict(answer.decision.features.vector)
            if kind == "valid":  # one score of 1 from the prior 0
                assert learned > 0.3
            else:
                assert learned == pytest.approx(0.0)
        unscored = router.generate(ASK, tools=[WEATHER_TOOL])
        assert router.feedback(unscored.decision_id, 1.0).applied  # off by default


def test_a_stream_its_caller_scored_still_hands_out_its_tool_calls() -> None:
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    backend = FakeBackend("m", capabilities=frozenset({"tools"}), tool_reply=lambda m, t: f"Let me look it up. {call}")
    router = GreenServRouter([backend], features=make_hashing_extractor(), seed=0)
    stream = router.stream(ASK, tools=[WEATHER_TOOL], score_tool_calls=True)
    first = next(stream)
    router.feedback(first.decision.decision_id, 0.25)  # the caller's score, while it streams, comes first
    last = list(stream)[-1]  # was DecisionAlreadyScoredError from the router's own score: the answer was lost
    assert last.generation is not None and [c.name for c in last.generation.tool_calls] == ["get_weather"]
    assert router.stats_["m"]["feedback"] == 1 and router.stats_["m"]["energy_joules"] > 0


def test_the_tools_prompt_counts_against_the_context_window() -> None:
    small = FakeBackend(
        "small-window", context_window=80, capabilities=frozenset({"tools"}), tool_reply=lambda m, t: "ok"
    )
    large = FakeBackend(
        "large-window", context_window=4096, capabilities=frozenset({"tools"}), tool_reply=lambda m, t: "ok"
    )
    router = GreenServRouter([small, large], features=make_hashing_extractor(), strategy="random", seed=0)
    assert small.count_tokens(ASK) + 16 <= 80  # the question alone fits
    answers = [router.generate(ASK, tools=[WEATHER_TOOL], max_new_tokens=16) for _ in range(6)]
    assert {a.model for a in answers} == {"large-window"}
    assert "exceed the context window 80" in answers[0].decision.excluded["small-window"]


def test_a_stop_string_is_one_stop_sequence_and_a_bad_stop_is_refused() -> None:
    echo = FakeBackend("solo", reply=lambda messages: "say hello world friend")
    router = GreenServRouter([echo], features=make_hashing_extractor(), seed=0)
    assert router.generate("go", stop="world").text == "say hello "  # not the letters w, o, r, l, d
    assert router.generate("go", stop=None).text == "say hello world friend"
    for bad in ([""], 5, ["ok", 3]):
        with pytest.raises(InvalidInputError, match="stop"):
            router.generate("go", stop=bad)  # type: ignore[arg-type]


def test_learn_refuses_a_measurement_that_is_not_a_number() -> None:
    router = GreenServRouter([FakeBackend("solo")], features=make_hashing_extractor(), seed=0)
    for bad in ({"latency_s": "x"}, {"energy_joules": True}, {"energy_joules": float("nan")}):
        with pytest.raises(InvalidInputError):
            router.learn("hi", "solo", **bad)  # type: ignore[arg-type]


def test_an_outcome_a_cost_model_refuses_leaves_the_decision_awaiting_its_outcome() -> None:
    """The refused outcome stayed recorded: the corrected one was refused as already recorded."""
    pool = [FakeBackend(name, context_window=8192) for name in ("a", "b")]
    router = GreenServRouter(pool, features=make_hashing_extractor(), seed=0)
    decision = router.route("word " * 3000)  # a long prompt: the cost model's update of 1e308 J overflows
    with pytest.raises(InvalidInputError, match="overflows"):
        router.record_outcome(decision.decision_id, energy_joules=1e308, latency_s=1.0)
    router.record_outcome(decision.decision_id, energy_joules=70.0, latency_s=1.0)
    assert router.stats_[decision.model]["energy_joules"] == 70.0


def test_an_outcome_whose_estimate_would_overflow_is_refused_on_a_short_prompt() -> None:
    """Sums that stay finite passed, while θ = A⁻¹b overflowed: the model's prediction was NaN
    for good, read as "never measured", so it cost nothing and escaped max_joules."""
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=make_hashing_extractor(), seed=0)
    decision = router.route("hello there", models=["a"])
    with pytest.raises(InvalidInputError, match="overflows"):
        router.record_outcome(decision.decision_id, energy_joules=1e308, latency_s=0.1)
    router.record_outcome(decision.decision_id, energy_joules=50.0, latency_s=0.1)
    predicted = router.route("hello there", models=["a"]).predicted_joules["a"]
    assert predicted is not None and math.isfinite(predicted)


def test_joules_given_as_a_fraction_are_kept_as_floats_and_the_state_saves(tmp_path: Path) -> None:
    """The energy scale kept the Fraction itself, and every save() failed until it moved past it."""
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=make_hashing_extractor(), seed=0)
    decision = router.route("hello there")
    router.record_outcome(decision.decision_id, energy_joules=Fraction(1, 2), latency_s=0.1)
    router.learn("hello there", "b", score=1.0, energy_joules=Fraction(3, 4), latency_s=0.1)
    assert all(type(bound) is float for bounds in router.normalizer_.ranges_.values() for bound in bounds)
    router.save(tmp_path / "state.json")


def test_a_model_added_after_a_cascade_keeps_the_arms_order_that_load_rebuilds(fakes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    router = GreenServRouter(
        fakes, features=make_hashing_extractor(), seed=3, strategy="random", cascades=[("small", "large")]
    )
    router.add_model(FakeBackend("xl", joules_per_token=20.0))
    assert router.arms == ["small", "medium", "large", "xl", "small->large"]  # the models, then the cascades
    router.save(tmp_path / "router.json")
    pool = [*fakes, FakeBackend("xl", joules_per_token=20.0)]
    loaded = GreenServRouter.load(tmp_path / "router.json", pool, features=make_hashing_extractor())
    assert loaded.arms == router.arms
    assert [router.route(ASK).model for _ in range(30)] == [loaded.route(ASK).model for _ in range(30)]


def test_a_score_before_the_outcome_still_lets_the_outcome_teach_the_costs(fakes, extractor) -> None:  # type: ignore[no-untyped-def]
    router = GreenServRouter(fakes, features=extractor, seed=0, energy_budget="50J/query")
    decision = router.route(ASK)
    record = router.feedback(decision.decision_id, 1.0)  # the user's score comes first
    assert record.applied and record.reward is None
    with pytest.raises(DecisionAlreadyScoredError, match="already received feedback"):
        router.feedback(decision.decision_id, 0.0)
    router.record_outcome(decision.decision_id, energy_joules=42.0, latency_s=0.3)  # then the meter's reading
    x, tokens = decision.features.vector, decision.features.prompt_tokens
    assert router.energy_.predict(decision.model, x, tokens) > 0
    assert router.stats_[decision.model]["energy_joules"] == 42.0
    assert router.budget_.spent_joules == 42.0  # type: ignore[union-attr]
    assert len(router.pending_) == 0
    with pytest.raises(DecisionAlreadyScoredError):
        router.feedback(decision.decision_id, 1.0)


def test_a_decision_for_a_removed_model_teaches_nothing_to_a_newcomer_of_its_name(fakes, extractor, tmp_path) -> None:  # type: ignore[no-untyped-def]
    router = GreenServRouter(fakes, features=extractor, seed=0, policy="epsilon")
    name = fakes[-1].info.name
    early, late = router.route(ASK, models=[name]), router.route(ASK, models=[name])
    router.remove_model(name)
    router.save(tmp_path / "router.json")  # saved between the removal and the newcomer
    for learner_of in (
        lambda: router,
        lambda: GreenServRouter.load(tmp_path / "router.json", fakes[:-1], features=extractor),
    ):
        serving = learner_of()
        serving.add_model(FakeBackend(name))  # say, an upgraded model under the same name
        learned = serving.learner_
        if serving is router:
            serving.record_outcome(early.decision_id, energy_joules=999.0, latency_s=9.0)
            assert not serving.feedback(early.decision_id, 0.0).applied
        else:
            serving.record_outcome(late.decision_id, energy_joules=999.0, latency_s=9.0)
            assert not serving.feedback(late.decision_id, 0.0).applied
        assert learned.policy_.arms_[name].n == 0
        assert learned.energy_.predict(name, early.features.vector, early.features.prompt_tokens) is None
        fresh = serving.route(ASK, models=[name])  # the newcomer's own decisions do teach it
        serving.feedback(fresh.decision_id, 1.0)
        assert learned.policy_.arms_[name].n == 1


def test_the_pending_store_ages_decisions_by_its_own_clock(fakes, extractor) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.pending import PendingDecisions

    now = [1000.0]
    store = PendingDecisions(ttl_s=60, clock=lambda: now[0])
    router = GreenServRouter(fakes, features=extractor, seed=0, pending=store)
    decision = router.route(ASK)
    assert next(iter(store)).created_at == 1000.0
    now[0] += 61
    with pytest.raises(UnknownDecisionError, match="expired"):
        router.feedback(decision.decision_id, 1.0)


def test_a_scored_decision_awaits_its_outcome_ttl_s_as_in_redis(fakes, extractor, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.pending import PendingDecisions

    now = [1000.0]
    router = GreenServRouter(
        fakes, features=extractor, seed=0, pending=PendingDecisions(ttl_s=60, clock=lambda: now[0])
    )
    late, kept = router.route(ASK), router.route(ASK)
    router.feedback(late.decision_id, 1.0)  # scored before its outcome: it awaits it
    now[0] += 30
    router.feedback(kept.decision_id, 1.0)
    router.save(tmp_path / "state.json")  # the times it began to wait are kept
    loaded = GreenServRouter.load(
        tmp_path / "state.json", fakes, features=extractor, pending=PendingDecisions(ttl_s=60, clock=lambda: now[0])
    )
    now[0] += 40  # 70 s after the first score, 40 s after the second
    for which in (router, loaded):
        for _ in range(2):  # given again, the same: it said "already recorded", yet no joule was counted
            with pytest.raises(UnknownDecisionError, match="expired"):  # as Redis's key expires
                which.record_outcome(late.decision_id, energy_joules=1.0, latency_s=0.1)
        which.record_outcome(kept.decision_id, energy_joules=1.0, latency_s=0.1)
        with pytest.raises(InvalidInputError, match="already recorded"):
            which.record_outcome(kept.decision_id, energy_joules=1.0, latency_s=0.1)


def test_a_stream_scored_while_it_runs_and_finished_after_ttl_s_still_counts_its_joules(extractor) -> None:  # type: ignore[no-untyped-def]
    """Its outcome came too late to label the score, as for an unscored decision that expired:
    the answer stands, and the budget and the cost model learn what it spent."""
    from greenserv_core.pending import PendingDecisions

    now = [1000.0]
    spent = {}
    for score_first in (False, True):
        router = GreenServRouter(
            [FakeBackend("m0", joules_per_token=2.0), FakeBackend("m1")],
            features=extractor,
            seed=0,
            pending=PendingDecisions(ttl_s=60, clock=lambda: now[0]),
            energy_budget=20.0,
        )
        pieces = router.stream(ASK, models=["m0"], decision_id="d0", max_new_tokens=8)
        next(pieces)
        if score_first:
            router.feedback("d0", 1.0)
        now[0] += 120  # the reader dwells past ttl_s
        (*_, last) = pieces
        assert last.generation is not None and last.generation.energy_joules > 0
        pacer = router.learner_.pacer_
        assert pacer is not None and pacer.spent_ == pytest.approx(last.generation.energy_joules)
        context = router.features.extract(ASK).vector
        spent[score_first] = (router.stats_["m0"]["energy_joules"], router.energy_.predict("m0", context, 10))
    assert spent[True] == spent[False] and spent[True][0] > 0


def test_a_save_keeps_the_files_permissions_and_writes_through_a_link(fakes, extractor, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import stat

    router = GreenServRouter(fakes, features=extractor, seed=0)
    target = tmp_path / "shared" / "router.json"
    router.save(target)
    os.chmod(target, 0o640)
    link = tmp_path / "current.json"
    link.symlink_to(target)
    router.generate(ASK)
    router.save(link)
    assert link.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert GreenServRouter.load(link, fakes, features=extractor).stats_ == router.stats_


@pytest.mark.parametrize("setting", [{"max_latency_s": float("inf")}, {"pending_ttl_s": float("inf")}])
def test_a_setting_a_state_file_cannot_hold_is_refused_when_given(fakes, extractor, setting) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match="positive finite number"):
        GreenServRouter(fakes, features=extractor, seed=0, **setting)


def test_stats_are_a_copy_read_as_one() -> None:
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=make_hashing_extractor(), seed=0)
    router.generate("hello", models=["a"])
    stats = router.stats_
    stats["a"]["decisions"] = 999
    assert router.stats_["a"]["decisions"] == 1  # the router's tallies are its own


def test_a_feature_extractor_that_builds_other_contexts_is_refused() -> None:
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=make_hashing_extractor(), seed=0)
    same = make_hashing_extractor()
    router.features = same
    assert router.features is same
    with pytest.raises(InvalidInputError, match="make a new router"):
        router.features = make_hashing_extractor(n_clusters=router.features.clusterer.n_clusters + 3)
    assert router.features is same


def test_the_tradeoff_is_checked_when_set() -> None:
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=make_hashing_extractor(), seed=0)
    router.tradeoff = np.float32(0.25)  # type: ignore[assignment]
    assert router.tradeoff == 0.25
    with pytest.raises(InvalidInputError, match="tradeoff"):
        router.tradeoff = 5.0
    assert router.generate("hello", max_new_tokens=np.int64(4)).decision.tradeoff == 0.25  # type: ignore[arg-type]


def test_a_feature_extractor_as_long_but_meaning_other_things_is_refused() -> None:
    router = GreenServRouter(
        [FakeBackend("a"), FakeBackend("b")], features=make_hashing_extractor(n_clusters=3), seed=0
    )
    swapped = make_hashing_extractor(n_clusters=3)
    swapped.complexity.edges = swapped.complexity.edges[:-1]  # one bin fewer ...
    from greenserv_core.features import OnlineKMeans

    swapped.clusterer = OnlineKMeans(4)  # ... one cluster more: as long, other meanings
    assert swapped.dimension == router.features.dimension
    with pytest.raises(InvalidInputError, match="mean other things"):
        router.features = swapped


def test_an_answer_given_while_its_model_is_removed_counts_in_its_history() -> None:
    class RemovedWhileAnswering(FakeBackend):
        def generate(self, messages, settings):  # type: ignore[no-untyped-def]
            result = super().generate(messages, settings)
            router.remove_model(self.info.name)  # an operator removes it while it answers
            return result

    router = GreenServRouter(
        [FakeBackend("small"), RemovedWhileAnswering("large", joules_per_token=9.0)],
        features=make_hashing_extractor(),
        seed=0,
    )
    answer = router.generate("What is 2 + 2?", models=["large"])
    assert router.stats_["large"]["energy_joules"] == pytest.approx(answer.energy_joules)  # was 0.0


def test_an_outcomes_members_must_be_the_models_of_its_cascade() -> None:
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("medium"), FakeBackend("large")],
        features=make_hashing_extractor(),
        seed=0,
        cascades=[("small", "large")],
    )
    plain = router.route("What is 2 + 2?", models=["small"])
    with pytest.raises(InvalidInputError, match="no cascade"):  # was taken: large's cost model learned 1,000 J
        router.record_outcome(plain.decision_id, energy_joules=5.0, latency_s=0.1, members=[("large", 1000.0, 1.0)])
    chained = router.route("What is 2 + 2?", models=["small->large"])
    with pytest.raises(InvalidInputError, match="small->large"):
        router.record_outcome(chained.decision_id, energy_joules=5.0, latency_s=0.1, members=[("medium", 5.0, 0.1)])
    router.record_outcome(chained.decision_id, energy_joules=5.0, latency_s=0.1, members=[("small", 5.0, 0.1)])


def test_a_refused_outcome_leaves_a_scored_decision_awaiting_it() -> None:
    pool = [FakeBackend("small"), FakeBackend("big")]
    router = GreenServRouter(pool, features=make_hashing_extractor(), cascades=[("small", "big")], seed=0)
    decision = router.route("What is 2 + 2?", models=["small->big"])
    router.feedback(decision.decision_id, 1.0)  # scored before its outcome: kept aside for it
    with pytest.raises(InvalidInputError, match="not models of decision"):
        router.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.1, members=[("big-typo", 5.0, 0.1)])
    # the corrected call is taken (was refused: the refused call had used the decision up)
    router.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.1, members=[("small", 5.0, 0.1)])


def test_a_score_for_a_model_this_replicas_pool_never_had_is_refused_and_kept_for_one_that_has_it() -> None:
    from greenserv_core import UnknownModelError
    from greenserv_core.pending import PendingDecisions

    shared = PendingDecisions()  # one pending store, as replicas share one in Redis
    with_canary = GreenServRouter(
        [FakeBackend("small"), FakeBackend("canary")], features=make_hashing_extractor(), pending=shared, seed=0
    )
    without = GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), pending=shared, seed=0)
    answer = with_canary.generate("What is 2 + 2?", models=["canary"], max_new_tokens=4)
    with pytest.raises(UnknownModelError, match="'canary', which this router's pool did not have"):
        without.feedback(answer.decision_id, 1.0)  # was taken out of the store and dropped (applied=False)
    assert with_canary.feedback(answer.decision_id, 1.0).applied
    assert with_canary.learner_.policy_.arms_["canary"].n == 1
    rolled_back = GreenServRouter(
        [FakeBackend("small"), FakeBackend("canary")], features=make_hashing_extractor(), pending=shared, seed=0
    )
    rolled_back.remove_model("canary")  # rolled back here only
    later = with_canary.generate("What is 3 + 3?", models=["canary"], max_new_tokens=4)
    with pytest.raises(UnknownModelError):  # was applied=False: taken and dropped, as this pool had it once
        rolled_back.feedback(later.decision_id, 1.0)
    assert with_canary.feedback(later.decision_id, 1.0).applied


@pytest.mark.parametrize("option", ["tradeoff", "max_latency_s", "max_new_tokens"])
@pytest.mark.parametrize("huge", [10**400, Fraction(10**400, 3)])
def test_a_number_past_a_floats_range_is_refused_as_bad_input(fakes, extractor, option, huge) -> None:  # type: ignore[no-untyped-def]
    """Was an OverflowError (``float(10**400)`` raises; ``max_new_tokens`` went on to the
    context-window rule's arithmetic)."""
    router = GreenServRouter(fakes, features=extractor, seed=0)
    for method in (router.route, router.generate):
        with pytest.raises(InvalidInputError, match=option):
            method("What is 2 + 2?", **{option: huge})
    if option != "max_new_tokens":
        with pytest.raises(InvalidInputError, match=option.replace("tradeoff", "tradeoff λ")):
            GreenServRouter(fakes, features=extractor, seed=0, **{option: huge})


def test_misshapen_arguments_are_refused_by_the_librarys_error_and_change_nothing() -> None:
    """Each raised a bare TypeError, ValueError or KeyError from deep inside (a review fuzzing
    the public entry points); a refused call must leave what was learned as it was."""
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("large")],
        features=make_hashing_extractor(),
        seed=0,
        cascades=[("small", "large")],
    )
    decision = router.route(ASK, models=["small"])
    before = router.statistics()
    calls: list[Callable[[], object]] = [
        lambda: router.route([{"role": ["user"], "content": "hi"}]),  # an unhashable role
        lambda: router.remove_model(["small"]),  # type: ignore[arg-type]
        lambda: router.learn(ASK, ["small"], score=1.0, energy_joules=1.0, latency_s=0.1),  # type: ignore[arg-type]
        lambda: router.record_outcome(["x"], energy_joules=1.0, latency_s=0.1),  # type: ignore[arg-type]
        lambda: router.escalate(["x"], 0.5),  # type: ignore[arg-type]
        lambda: router.escalation_rule(["x"]),  # type: ignore[arg-type]
        lambda: router.record_agreement(["x"], True),  # type: ignore[arg-type]
        lambda: router.learn_answers(ASK, None),  # type: ignore[arg-type]
        lambda: router.learn_answers(ASK, [("small", 1)]),  # type: ignore[arg-type]
        lambda: router.generate_batch(iter([ASK, ASK])),  # type: ignore[arg-type]
        lambda: router.generate_batch(None),  # type: ignore[arg-type]  # was [] in silence
        lambda: GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), policy_params="ab"),  # type: ignore[arg-type]
        lambda: GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), policy_params={1: 2}),  # type: ignore[dict-item]
        lambda: GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), cascades=5),  # type: ignore[arg-type]
    ]
    for members in ([("small", 1.0)], None, "ab", 5, [1], {"small": (1, 2)}, [({"a": 1}, 1.0, 0.1)]):
        calls.append(
            lambda members=members: router.record_outcome(
                decision.decision_id,
                energy_joules=1.0,
                latency_s=0.1,
                members=members,  # type: ignore[arg-type]
            )
        )
    for call in calls:
        with pytest.raises((InvalidInputError, UnknownModelError)):
            call()
    assert router.statistics().sums.keys() == before.sums.keys()
    assert all(np.array_equal(router.statistics().sums[k], v) for k, v in before.sums.items())
    router.record_outcome(decision.decision_id, energy_joules=1.0, latency_s=0.1)  # still pending, as it was


def test_a_zero_dimensional_array_where_a_collection_goes_is_refused_by_name() -> None:
    router = GreenServRouter([FakeBackend("small")], features=make_hashing_extractor(), seed=0)
    for options in ({"models": np.array("small")}, {"requires": np.array("tools")}, {"tools": np.array(1)}):
        with pytest.raises(InvalidInputError, match=next(iter(options))):  # was a TypeError
            router.generate(ASK, **options)  # type: ignore[arg-type]
    assert router.route(ASK, models=np.array(["small"])).model == "small"  # type: ignore[arg-type]


def test_a_decision_id_utf8_cannot_write_is_refused_as_bad_input() -> None:
    """A shared Redis store raised a bare UnicodeEncodeError for it; the in-process store took it."""
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=make_hashing_extractor(), seed=0)
    with pytest.raises(InvalidInputError, match="UTF-8 can write"):
        router.generate("hi", decision_id="req-\udc80")
    with pytest.raises(InvalidInputError, match="UTF-8 can write"):
        router.feedback("req-\udc80", 1.0)
    assert router.generate("hi", decision_id="réq-ü-😀").decision_id == "réq-ü-😀"


def test_an_id_whose_answer_is_still_under_way_is_not_taken_though_the_store_dropped_it(extractor) -> None:  # type: ignore[no-untyped-def]
    """Its stream's outcome was refused at its end ("already recorded"), its joules lost."""
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("large", joules_per_token=9.0)],
        features=extractor,
        seed=0,
        energy_budget=50.0,
        max_pending=1,
    )
    stream = router.stream(ASK, decision_id="a")
    next(stream)  # under way
    router.route("Who wrote Hamlet?")  # the store keeps one: "a" is pushed out ...
    router.route("Tell me a joke.")  # ... and out of its memory of recent ids
    with pytest.raises(DecisionIdInUseError):
        router.generate("Hi, how are you?", decision_id="a")
    (*_, last) = stream
    assert last.generation is not None and router.budget_.spent_joules == pytest.approx(last.generation.energy_joules)
    assert router.generate("Hi, how are you?", decision_id="a").text  # free once its answer is in
