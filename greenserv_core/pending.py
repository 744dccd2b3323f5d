"""Decisions waiting for feedback, bounded in number and age.

A decision that never gets feedback is dropped when it is older than ``ttl_s`` or when more
than ``max_size`` are pending (oldest first). Its energy and latency were already learned at
generation time; only its accuracy is never learned, and no score is imputed for it. A
decision scored before its outcome came awaits the outcome for ``ttl_s`` more, as in Redis.
"""

from __future__ import annotations

import copy
import itertools
import math
import numbers
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from greenserv_core.bandits.base import check_whole
from greenserv_core.errors import DecisionAlreadyScoredError, InvalidInputError, UnknownDecisionError

__all__ = ["PendingDecision", "PendingDecisions", "PendingStore"]

_ANSWERED_LOOKAHEAD = 256
"""How many of the oldest decisions a full store looks through for one whose answer came, to
drop before one still being answered."""


@dataclass
class PendingDecision:
    """What feedback needs to update the policy, plus the outcome once observed."""

    decision_id: str
    model: str
    context: np.ndarray
    task: str
    prompt_tokens: int
    tradeoff: float
    created_at: float
    energy_joules: float | None = None
    energy_source: str | None = None
    predicted_joules: float | None = None
    """The energy model's prediction for the chosen model (``None``: none yet)."""
    budget_joules: float | None = None
    """The per-query energy budget in force (``None``: no budget); it normalises the reward's joules."""
    energy_bounds: tuple[float, float] | None = None
    """The joules that mapped to energy_norm 0 and 1 for this decision, where they belong to the
    query (the ``"pool"`` scale: the pool's predictions for it); ``None``: the task's range."""
    cascade: dict[str, Any] | None = None
    """For a cascade, its plan and what happened (plain JSON): ``first``, ``then``,
    ``then_accuracy``, ``then_cost``, ``first_accuracy``; then ``confidence``, ``escalated``,
    ``explored`` and ``agreed`` once known (see :meth:`RoutingLearner.escalate`)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain fields (the context as a list), for saving and for shared stores."""
        return {
            "decision_id": self.decision_id,
            "model": self.model,
            "context": self.context.tolist(),
            "task": self.task,
            "prompt_tokens": self.prompt_tokens,
            "tradeoff": self.tradeoff,
            "created_at": self.created_at,
            "energy_joules": self.energy_joules,
            "energy_source": self.energy_source,
            "predicted_joules": self.predicted_joules,
            "budget_joules": self.budget_joules,
            "energy_bounds": None if self.energy_bounds is None else list(self.energy_bounds),
            "cascade": copy.deepcopy(self.cascade),  # a snapshot: escalating later does not change it
        }

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> PendingDecision:
        return cls(
            decision_id=item["decision_id"],
            model=item["model"],
            context=np.asarray(item["context"], dtype=np.float64),
            task=item["task"],
            prompt_tokens=int(item["prompt_tokens"]),
            tradeoff=float(item["tradeoff"]),
            created_at=float(item["created_at"]),
            energy_joules=item["energy_joules"],
            energy_source=item["energy_source"],
            predicted_joules=item.get("predicted_joules"),
            budget_joules=item.get("budget_joules"),
            energy_bounds=None if item.get("energy_bounds") is None else _pair(item["energy_bounds"]),
            cascade=copy.deepcopy(item.get("cascade")),  # its own plan: two learners loaded from one state
        )


def _pair(bounds: Any) -> tuple[float, float]:
    low, high = bounds
    return float(low), float(high)


@runtime_checkable
class PendingStore(Protocol):
    """Where the router keeps decisions until their feedback arrives: :class:`PendingDecisions`
    in the process, or :class:`~greenserv_core.sharing.RedisPendingDecisions` shared by
    replicas (so feedback may reach any of them)."""

    def __len__(self) -> int: ...

    def add(self, decision: PendingDecision) -> None: ...

    def known(self, decision_id: str) -> bool: ...

    def get(self, decision_id: str) -> PendingDecision: ...

    def update(self, decision: PendingDecision) -> None:
        """Store a changed decision (its outcome was recorded)."""
        ...

    def pop_for_feedback(self, decision_id: str) -> PendingDecision:
        """Take a decision out to score it, atomically (it is scored once): one whose outcome is
        not recorded yet is kept aside for :meth:`take_awaiting`. A store may also have
        ``put_back(decision) -> bool``, which makes one taken out pending again, as before, where
        its score could not be learned (optional: without it, such a score cannot be given again)."""
        ...

    def take_awaiting(self, decision_id: str) -> PendingDecision | None:
        """A decision scored before its outcome was recorded, taken (once) for that outcome;
        ``None`` when there is none, :class:`UnknownDecisionError` when it waited too long
        (expired). A store may also have ``keep_awaiting(decision)``, which
        puts back one whose outcome was refused (optional: without it, a refused outcome of a
        scored decision cannot be given again)."""
        ...

    def discard(self, decision_id: str, *, reusable: bool = False) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class PendingDecisions:
    """An insertion-ordered store with size and age limits; remembers recently dropped ids
    so that late feedback gets a precise error ("expired" vs "already scored" vs "unknown")."""

    def __init__(
        self, max_size: int = 100_000, ttl_s: float = 7 * 24 * 3600.0, clock: Callable[[], float] = time.time
    ) -> None:
        # kept as an int and a float: what a saved state holds and the clock's arithmetic takes
        size = check_whole("max_size", max_size, low=1)  # not a bool
        try:
            seconds = float(ttl_s) if isinstance(ttl_s, numbers.Number) else math.nan
        except (TypeError, ValueError, OverflowError):
            seconds = math.nan
        if not 0 < seconds < math.inf:
            raise InvalidInputError(f"ttl_s must be a positive finite number of seconds, got {ttl_s!r}")
        self.max_size = size
        self.ttl_s = seconds
        self.clock = clock
        self._items: OrderedDict[str, PendingDecision] = OrderedDict()
        self._gone: OrderedDict[str, str] = OrderedDict()  # id -> "expired" | "scored" | "abandoned"
        self._awaiting: dict[str, PendingDecision] = {}  # scored before their outcome (ids among _gone)
        self._awaiting_since: dict[str, float] = {}  # when each began to await it: it does so ttl_s at most

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[PendingDecision]:
        return iter(list(self._items.values()))

    def _forget(self, decision_id: str, why: str) -> None:
        self._gone[decision_id] = why
        while len(self._gone) > self.max_size:
            oldest, _ = self._gone.popitem(last=False)
            self._awaiting.pop(oldest, None)
            self._awaiting_since.pop(oldest, None)

    def evict(self) -> int:
        """Drop decisions past their age, then over the size limit, oldest first among those
        whose answer came (those still being answered go last); returns how many."""
        dropped = 0
        horizon = self.clock() - self.ttl_s
        while self._items:
            oldest_id, oldest = next(iter(self._items.items()))
            if oldest.created_at >= horizon:
                break
            del self._items[oldest_id]
            self._forget(oldest_id, "expired")
            dropped += 1
        while len(self._items) > self.max_size:
            first = itertools.islice(self._items.items(), _ANSWERED_LOOKAHEAD)  # (a bounded look: never slow)
            answered = next((key for key, item in first if item.energy_joules is not None), None)
            victim = answered if answered is not None else next(iter(self._items))
            del self._items[victim]
            self._forget(victim, "expired")
            dropped += 1
        return dropped

    def add(self, decision: PendingDecision) -> None:
        self._items[decision.decision_id] = decision
        self.evict()

    def known(self, decision_id: str) -> bool:
        """Whether the id is pending or was recently dropped (so it cannot be reused)."""
        return decision_id in self._items or decision_id in self._gone

    def get(self, decision_id: str) -> PendingDecision:
        self.evict()
        decision = self._items.get(decision_id)
        if decision is None:
            why = self._gone.get(decision_id)
            if why == "scored":
                raise DecisionAlreadyScoredError(
                    f"decision {decision_id!r} already received feedback; a second score is refused"
                )
            if why == "expired":
                raise UnknownDecisionError(
                    f"decision {decision_id!r} expired (older than {self.ttl_s:g} s or beyond the "
                    f"{self.max_size} most recent pending decisions)"
                )
            if why == "abandoned":
                raise UnknownDecisionError(
                    f"decision {decision_id!r} has no answer to score: "
                    "its generation failed or its stream was not finished"
                )
            raise UnknownDecisionError(f"unknown decision id {decision_id!r}")
        return decision

    def update(self, decision: PendingDecision) -> None:
        """Nothing to do: the store holds the very objects the router changes."""

    def pop_for_feedback(self, decision_id: str) -> PendingDecision:
        decision = self.get(decision_id)
        del self._items[decision_id]
        self._forget(decision_id, "scored")
        if decision.energy_joules is None:
            self.keep_awaiting(decision)
        return decision

    def put_back(self, decision: PendingDecision) -> bool:
        """Make a decision taken by :meth:`pop_for_feedback` pending again, as before (its score
        could not be learned: the policy refused it); it is the newest pending decision. Returns
        whether it did (as the Redis store's, which may find its outcome learned meanwhile)."""
        self._gone.pop(decision.decision_id, None)
        self._awaiting.pop(decision.decision_id, None)
        self._awaiting_since.pop(decision.decision_id, None)
        self._items[decision.decision_id] = decision
        return True

    def take_awaiting(self, decision_id: str) -> PendingDecision | None:
        """The scored decision awaiting its outcome, for ``ttl_s`` after it was scored (or kept
        again), as the Redis store's key expires (its "scored" mark expiring with it); ``None``
        when none awaits it. One that waited longer raises :class:`UnknownDecisionError`: it
        expired, as an unscored decision does (the router then learns its cost from the
        decision itself)."""
        decision = self._awaiting.get(decision_id)
        since = self._awaiting_since.get(decision_id)
        if decision is None:
            return None
        if since is not None and since < self.clock() - self.ttl_s:  # left in place, so that an outcome
            raise UnknownDecisionError(  # given again is told the same (forgotten with its "scored" mark)
                f"decision {decision_id!r} expired: scored before its outcome, it awaited the outcome "
                f"{self.ttl_s:g} s (ttl_s)"
            )
        del self._awaiting[decision_id]
        self._awaiting_since.pop(decision_id, None)
        return decision

    def keep_awaiting(self, decision: PendingDecision) -> None:
        self._awaiting[decision.decision_id] = decision
        self._awaiting_since[decision.decision_id] = self.clock()

    def discard(self, decision_id: str, *, reusable: bool = False) -> None:
        """Forget a decision whose generation never completed (no error if it is gone).
        ``reusable`` frees the id for a new decision (the router's failover re-routes under it)."""
        if self._items.pop(decision_id, None) is not None and not reusable:
            self._forget(decision_id, "abandoned")

    def state_dict(self) -> dict[str, Any]:
        return {
            "max_size": self.max_size,
            "ttl_s": self.ttl_s,
            "items": [d.to_dict() for d in self._items.values()],
            "gone": dict(self._gone),
            "awaiting": [d.to_dict() for d in self._awaiting.values()],
            "awaiting_since": dict(self._awaiting_since),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        items = [item for item in state["items"] if item.get("score") is None]
        scored = [item for item in state["items"] if item.get("score") is not None]  # saved before 2026-12-05
        self._items = OrderedDict((item["decision_id"], PendingDecision.from_dict(item)) for item in items)
        self._gone = OrderedDict(state["gone"])
        self._awaiting = {item["decision_id"]: PendingDecision.from_dict(item) for item in state.get("awaiting", [])}
        for item in scored:  # a decision scored before its outcome: scored, and awaiting its outcome
            self._gone[item["decision_id"]] = "scored"
            if item.get("energy_joules") is None:
                self._awaiting[item["decision_id"]] = PendingDecision.from_dict(item)
        since = state.get("awaiting_since") or {}  # (a state saved before 2026-12-07: from now)
        now = self.clock()
        self._awaiting_since = {key: float(since.get(key, now)) for key in self._awaiting}
        self.evict()
