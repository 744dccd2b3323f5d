"""Pending decisions in a real Redis (RedisPendingDecisions): replicas racing, URLs, prefixes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from greenserv_core import (
    DecisionAlreadyScoredError,
    DecisionIdInUseError,
    FakeBackend,
    GreenServRouter,
    InvalidInputError,
)
from greenserv_core.pending import PendingDecision
from greenserv_core.sharing import RedisPendingDecisions
from tests.conftest import make_hashing_extractor
from tests.services import redis_server


def make_replica(url: str) -> GreenServRouter:
    return GreenServRouter(
        [FakeBackend("small"), FakeBackend("large", joules_per_token=9.0)],
        features=make_hashing_extractor(n_clusters=1),
        seed=0,
        pending=RedisPendingDecisions(url=url, prefix="race"),
    )


def test_an_outcome_recorded_while_another_replica_scores_the_decision_is_learned_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica B scores a decision between replica A's read of it and A's write of its outcome:
    the outcome reaches the copy that awaits it, so a retried outcome is refused, not learned twice."""
    with redis_server(tmp_path) as url:
        a, b = make_replica(url), make_replica(url)
        decision = a.route("What is 2 + 2?", models=["small"])
        store = a.learner_.pending_
        update = store.update

        def update_after_b_scores(pending: PendingDecision) -> None:
            b.feedback(decision.decision_id, 1.0)
            update(pending)

        monkeypatch.setattr(store, "update", update_after_b_scores)
        a.record_outcome(decision.decision_id, energy_joules=70.0, latency_s=0.1)
        monkeypatch.undo()
        with pytest.raises(InvalidInputError, match="already recorded"):
            a.record_outcome(decision.decision_id, energy_joules=70.0, latency_s=0.1)
        assert a.stats_["small"]["energy_joules"] == 70.0
        ridge = a.learner_.energy_.ridge_
        assert int(ridge.n[ridge.row("small")]) == 1
        # a decision gone altogether stays gone
        gone = PendingDecision("gone", "small", np.zeros(3), "qa", 5, 0.4, 0.0)
        store.update(gone)
        assert not store.known("gone") and store.take_awaiting("gone") is None


@pytest.mark.parametrize("url", ["redis://redis-host:6379/pool-a", "redis-host:6379"])
def test_a_pending_store_url_is_read_as_a_redis_store_reads_it(url: str) -> None:
    """A named database (which redis-py would take for database 0, shared) and a URL without a
    scheme are refused at once, as RedisStore refuses them."""
    with pytest.raises(InvalidInputError, match=r"RedisPendingDecisions url .*e\.g\. redis://redis-host:6379/0"):
        RedisPendingDecisions(url=url)


def test_a_prefix_with_glob_characters_counts_its_own_decisions_alone(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        star = RedisPendingDecisions(url=url, prefix="pool[a]*")
        other = RedisPendingDecisions(url=url, prefix="poola-b")
        other.add(PendingDecision("req-1", "small", np.zeros(3), "qa", 5, 0.4, 0.0))
        assert len(star) == 0 and len(other) == 1
        star.add(PendingDecision("req-1", "small", np.zeros(3), "qa", 5, 0.4, 0.0))
        assert len(star) == 1 and len(other) == 1


def test_a_refused_outcome_keeps_the_decision_and_its_scored_mark_for_another_ttl_s(tmp_path: Path) -> None:
    """A decision scored before its outcome, whose first outcome is refused, awaits a good one
    for ``ttl_s`` more, with its "scored" mark (the mark kept its first expiry: a retry after
    it was refused as unknown, and the id could be routed again beside a stale waiting copy)."""
    with redis_server(tmp_path) as url:
        router = make_replica(url)
        store = router.learner_.pending_
        assert isinstance(store, RedisPendingDecisions)
        decision = router.route("What is 2 + 2?", models=["small"])
        router.feedback(decision.decision_id, 1.0)  # before its outcome: it awaits it
        marks = (store._gone(decision.decision_id), store._awaiting(decision.decision_id))
        for key in marks:
            store.client.expire(key, 5)  # as if ttl_s had nearly passed since the score
        with pytest.raises(InvalidInputError):  # refused (no cascade ran): kept another ttl_s
            router.record_outcome(decision.decision_id, energy_joules=30.0, latency_s=0.1, members=[("large", 1, 0.1)])
        assert all(store.client.ttl(key) > 5 for key in marks)  # the mark's was 5: it went first
        router.record_outcome(decision.decision_id, energy_joules=30.0, latency_s=0.1)
        assert router.stats_["small"]["energy_joules"] == 30.0
        with pytest.raises(DecisionIdInUseError):  # the id stays taken while its mark lasts
            router.route("What is 2 + 2?", decision_id=decision.decision_id, models=["small"])


def test_a_decision_put_back_keeps_what_another_replica_recorded_meanwhile(tmp_path: Path) -> None:
    """A score the policy refused puts its decision back (pending again); in Redis another
    replica may have recorded the outcome meanwhile: on the waiting copy, which is what goes
    back, or by taking that copy, when the decision stays scored (put back from the stale copy,
    the outcome was lost, and a repeated one was learned twice)."""
    with redis_server(tmp_path) as url:
        store = RedisPendingDecisions(url=url, prefix="back")
        store.add(PendingDecision("a", "small", np.zeros(3), "qa", 5, 0.4, 0.0))
        taken = store.pop_for_feedback("a")  # its outcome not yet recorded: a copy awaits it
        store.update(PendingDecision("a", "small", np.zeros(3), "qa", 5, 0.4, 0.0, energy_joules=5.0))  # another
        assert store.put_back(taken) and store.get("a").energy_joules == 5.0
        store.add(PendingDecision("b", "small", np.zeros(3), "qa", 5, 0.4, 0.0))
        taken = store.pop_for_feedback("b")
        assert store.take_awaiting("b") is not None  # another replica took it for its outcome
        assert not store.put_back(taken)
        with pytest.raises(DecisionAlreadyScoredError):
            store.get("b")
