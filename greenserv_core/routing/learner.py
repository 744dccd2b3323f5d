"""The learner: everything a router learns, behind one lock.

:class:`RoutingLearner` owns the policy (accuracy, from feedback), the energy and latency
cost models (from every generation), the energy normaliser, the per-model tallies and the
decisions waiting for feedback, behind one lock. The router calls it to decide, to record an
outcome and to apply feedback; the router's only other lock guards changes to its pool.

How the reward is learned from partial, late feedback: the reward of a routed query is
``r = (1-λ)·accuracy − λ·energy_norm``. Energy (and latency) is measured right after every
generation and learned at once by per-model ridge regressions (:class:`CostModel`); the
:class:`EnergyNormalizer` maps joules to [0, 1] per task type. Accuracy arrives through
feedback, late or never, and only the policy learns it. Each eligible model then scores
``(1-λ)·(accuracy estimate + exploration bonus) − λ·predicted energy_norm``.

>>> import numpy as np
>>> from greenserv_core.bandits import LinUCB
>>> from greenserv_core.backends.base import ModelInfo
>>> from greenserv_core.features.extractor import QueryFeatures
>>> from greenserv_core.routing.eligibility import Candidate, Limits
>>> learner = RoutingLearner(LinUCB(2, seed=0), dimension=2)
>>> learner.add_arm("small"); learner.add_arm("large")
>>> query = QueryFeatures("qa", 0.9, 0, 60.0, 0, 10, np.array([1.0, 0.0]))
>>> decision = learner.decide(query, [Candidate(ModelInfo("small")), Candidate(ModelInfo("large"))], Limits(), 0.4)
>>> learner.record_outcome(decision.decision_id, energy_joules=3.0, latency_s=0.2)
>>> learner.feedback(decision.decision_id, 1.0).applied
True
"""

from __future__ import annotations

import base64
import contextlib
import copy
import logging
import math
import numbers
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np

from greenserv_core.backends.base import ModelInfo
from greenserv_core.bandits import ArmPrior, Choice, Policy
from greenserv_core.bandits.columns import ArmScores, ArmValues, KnownValues
from greenserv_core.budget import BudgetPacer, BudgetStatus, EnergyBudget
from greenserv_core.budget.pacer import _RecentDecisions
from greenserv_core.cascades.escalation import ESTIMATED, EscalationModel, Verdict, check_confidence
from greenserv_core.errors import (
    DecisionAlreadyScoredError,
    DecisionIdInUseError,
    DecisionStillAnsweringError,
    InvalidInputError,
    PendingStoreUnreachableError,
    SharingNotSupportedError,
    StateFileError,
    UnknownDecisionError,
    UnknownModelError,
)
from greenserv_core.features.extractor import QueryFeatures
from greenserv_core.outcomes import CostModel
from greenserv_core.pending import PendingDecision, PendingDecisions, PendingStore
from greenserv_core.reward import EnergyNormalizer, check_score, reward
from greenserv_core.routing.eligibility import (
    RULES,
    Candidate,
    Candidates,
    Eligibility,
    Limits,
    check_eligibility,
    no_eligible_model,
    not_requested,
)
from greenserv_core.routing.energy_costs import (
    DEFAULT_ENERGY_SCALE,
    ENERGY_SCALES,
    EnergyScaleName,
    energy_costs,
    escalation_cost,
    pool_spread,
)
from greenserv_core.routing.labelled import LabelledAnswer, check_measured
from greenserv_core.routing.results import FeedbackRecord, RoutingDecision
from greenserv_core.routing.tallies import Tallies
from greenserv_core.statistics import Shareable, Statistics

__all__ = ["RoutingLearner", "check_decision_id", "check_spent"]


logger = logging.getLogger("greenserv")


_NOT_REQUESTED = not_requested(Candidate(ModelInfo("-")), Limits(models=()))
"""The reason a model the query did not request is not eligible."""
_MEMBER_RULES = tuple(rule for rule in RULES if rule is not not_requested)
"""The rules a model the query did not request must still pass to serve a cascade it requested."""


def _total(amounts: Sequence[float | None]) -> float | None:
    """The sum, or ``None`` when any amount is unknown."""
    known = [a for a in amounts if a is not None]
    return sum(known) if len(known) == len(amounts) else None


def check_spent(energy_joules: float, latency_s: float, members: Sequence[tuple[str, float, float]]) -> None:
    """What an answer spent, and each cascade member's ``(model, joules, seconds)``, checked."""
    check_measured("energy_joules", energy_joules)
    check_measured("latency_s", latency_s)
    if isinstance(members, (str, bytes, Mapping)) or not isinstance(members, Sequence):
        raise InvalidInputError(f"members must be a list of (model, joules, seconds), got {members!r}")
    for member in members:
        if not isinstance(member, (tuple, list)) or len(member) != 3 or not isinstance(member[0], str):
            raise InvalidInputError(f"each of members must be (model name, joules, seconds), got {member!r}")
    for _, joules, seconds in members:
        check_measured("a member's energy_joules", joules)
        check_measured("a member's latency_s", seconds)
    names = [member[0] for member in members]
    if len(set(names)) < len(names):
        raise InvalidInputError(f"members {names} name a model twice: a cascade runs two different models, once each")


def check_decision_id(decision_id: object) -> str:
    r"""A decision id as given to routes, feedback, outcomes and escalations: a string that is
    text (UTF-8 can write it: a shared store keeps it so).

    >>> check_decision_id(["d-1"])
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: decision_id must be a string, got list
    >>> check_decision_id("req-\udc80")
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: decision_id must be text UTF-8 can write, got 'req-\udc80'
    """
    if not isinstance(decision_id, str):
        raise InvalidInputError(f"decision_id must be a string, got {type(decision_id).__name__}")
    try:
        decision_id.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (bytes read with surrogateescape)
        raise InvalidInputError(f"decision_id must be text UTF-8 can write, got {decision_id!r}") from None
    return decision_id


def _or_spent(predicted: float, spent: float | None) -> float:
    """A model's ``predicted`` joules or seconds, or, where it has none yet (NaN), what its
    labelled answer ``spent`` (NaN where that is not given either).

    >>> _or_spent(float("nan"), 12.0), _or_spent(3.0, 12.0), _or_spent(float("nan"), None)
    (12.0, 3.0, nan)
    """
    return float(spent) if math.isnan(predicted) and spent is not None else predicted


def _cap(max_joules: float | None, guard: float | None) -> float | None:
    """The most joules a query may be predicted to spend: its ``max_joules``, or the pacer
    guard's cap on the answer, whichever is lower (``None``: no cap)."""
    caps = [c for c in (max_joules, guard) if c is not None]
    return min(caps) if caps else None


@dataclass(frozen=True)
class _Planning:
    """What a batch's decisions move in the plans of later ones before any of them runs: a
    copy of the energy scale's ranges, with the readings the normaliser (``normalizer``) had
    taken then (``changes``) and how many of them were decisions' own (``widened``); and the
    pacer's memory of decisions (``memory``) with a copy of it (``remembered``)."""

    ranges: dict[str, list[float]]
    normalizer: EnergyNormalizer
    changes: int
    widened: int
    memory: _RecentDecisions | None
    remembered: _RecentDecisions | None


@dataclass(frozen=True)
class _Draws:
    """What a decision moves in the policy besides its learning: its step count (ε's decay)
    and its random state; and how many decisions the learner had made then. For a batch
    (:meth:`RoutingLearner.draws_now` with ``planning=True``), also its :class:`_Planning`."""

    decisions: int
    steps: int | None
    random_state: Mapping[str, Any] | None
    planning: _Planning | None = None


@dataclass(frozen=True)
class _CheckedCosts:
    """An outcome's joules, and its joules' and seconds' updates of the cost models as checked
    (``None``: nothing to learn)."""

    joules: float | None
    energy: tuple[int, np.ndarray, float] | None
    latency: tuple[int, np.ndarray, float] | None


@dataclass(frozen=True)
class _Hold:
    """A limit a cascade's escalation must keep to (joules or seconds): where both models are
    predicted past it, the plan keeps the first answer; else it keeps the limit (under
    ``limit_key``) and the second model's prediction (under ``then_key``), and :meth:`escalate`
    checks them again with what the first step took."""

    limit_key: str
    then_key: str
    took: str  # "spent", "took"
    take: str  # "spend", "take"
    unit: str
    digits: int
    limit_name: str

    def _amount(self, value: float) -> str:
        return f"{value:.{self.digits}f} {self.unit}"

    def plan(self, plan: dict[str, Any], first: float, then: float, limit: float) -> None:
        """Hold ``plan`` where ``first + then`` breaks ``limit`` (NaN: not held), else keep what
        :meth:`after` checks (a plan held already stays as it is)."""
        if "held" in plan:
            return
        if first + then > limit:
            plan["held"] = (
                f"kept: escalating is predicted to {self.take} {self._amount(first + then)} in all, "
                f"above {self.limit_name} of {self._amount(limit)}"
            )
        elif not math.isnan(then):
            plan[self.limit_key], plan[self.then_key] = float(limit), then

    def after(self, plan: Mapping[str, Any], spent: float | None) -> str | None:
        """Why the first answer is kept, where what the first step ``spent`` and the second
        model's prediction break the plan's limit; else ``None``."""
        if spent is None or self.limit_key not in plan:
            return None
        both, limit = spent + plan[self.then_key], plan[self.limit_key]
        if not both > limit:
            return None
        return (
            f"kept: the first step {self.took} {self._amount(spent)}, and escalating is predicted to "
            f"{self.take} {self._amount(both)} in all, above {self.limit_name} of {self._amount(limit)}"
        )


_JOULES_HOLD = _Hold("cap", "then_joules", "spent", "spend", "J", 1, "the cap")
_SECONDS_HOLD = _Hold("latency_limit", "then_seconds", "took", "take", "s", 3, "the latency limit")


class _Restorable(Protocol):
    """A shared component whose state can be saved and put back (every one the learner holds)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RoutingLearner:
    """Decides, records outcomes and learns from feedback; thread-safe.

    Parameters: ``policy`` (a :class:`Policy`, which learns in place), the context
    ``dimension``, the ``pending`` store (default: an in-process one of ``max_pending``
    decisions kept ``pending_ttl_s`` seconds), the ``energy_scale`` (see
    :data:`ENERGY_SCALES`; an :class:`EnergyNormalizer` starts the ``"seen"`` range), and
    ``shared``: other learned components to share with replicas under a name (the router
    passes its feature extractor's clustering as ``clusters``), and the ``energy_budget``
    (an :class:`EnergyBudget`, or a :class:`BudgetPacer` whose settings, clock included, a
    fresh pacer takes; ``None``: λ as given to :meth:`decide`).

    Learned state: ``policy_``, ``energy_``, ``latency_``, ``normalizer_``, ``tallies_``,
    ``pending_``, ``priors_`` (each model's :class:`ArmPrior`, kept to re-add it) and
    ``pacer_`` (the :class:`BudgetPacer`, or ``None`` without a budget).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        dimension: int,
        pending: PendingStore | None = None,
        max_pending: int = 100_000,
        pending_ttl_s: float = 7 * 24 * 3600.0,
        energy_scale: EnergyNormalizer | EnergyScaleName | None = None,
        shared: Mapping[str, Shareable] | None = None,
        energy_budget: EnergyBudget | BudgetPacer | None = None,
        escalation: EscalationModel | None = None,
    ) -> None:
        if energy_budget is not None and not isinstance(energy_budget, (EnergyBudget, BudgetPacer)):
            raise InvalidInputError(f"energy_budget must be an EnergyBudget or a BudgetPacer, got {energy_budget!r}")
        if not (energy_scale is None or isinstance(energy_scale, EnergyNormalizer) or energy_scale in ENERGY_SCALES):
            raise InvalidInputError(
                f"energy_scale must be one of {ENERGY_SCALES} or an EnergyNormalizer, got {energy_scale!r}"
            )
        if not isinstance(policy, Policy):
            raise InvalidInputError(f"{policy!r} is not a Policy")
        if policy.dimension != dimension:
            raise InvalidInputError(f"the policy has dimension {policy.dimension}, the features {dimension}")
        if pending is not None and not isinstance(pending, PendingStore):
            raise InvalidInputError(f"{pending!r} is not a PendingStore")
        if escalation is not None and (not isinstance(escalation, EscalationModel) or escalation.cascades_):
            raise InvalidInputError(f"escalation must be a fresh EscalationModel, got {escalation!r}")
        if escalation is not None and escalation.dimension != dimension:
            raise InvalidInputError(
                f"the escalation model has dimension {escalation.dimension}, the features {dimension}"
            )
        self.policy = policy
        self.dimension = dimension
        self.pending = pending
        self.energy_scale = energy_scale
        self._scale: EnergyScaleName = (
            "seen" if isinstance(energy_scale, EnergyNormalizer) else (energy_scale or DEFAULT_ENERGY_SCALE)
        )
        self.shared = dict(shared or {})
        self.energy_budget = energy_budget
        self.pacer_: BudgetPacer | None = (
            type(energy_budget)(**energy_budget.params())
            if isinstance(energy_budget, BudgetPacer)
            else None
            if energy_budget is None
            else BudgetPacer(energy_budget)
        )
        self.policy_ = policy
        self.energy_ = CostModel(dimension)
        self.latency_ = CostModel(dimension)
        self.normalizer_ = (
            copy.deepcopy(energy_scale) if isinstance(energy_scale, EnergyNormalizer) else EnergyNormalizer()
        )
        self.tallies_ = Tallies()
        self.escalation_ = escalation if escalation is not None else EscalationModel(dimension)
        self.cascades_: dict[str, tuple[str, str]] = {}
        """Each cascade arm's first and second model."""
        self.priors_: dict[str, ArmPrior] = {}
        self.rerouting_: set[str] = set()
        """Ids of queries whose model failed, until they are routed again (no one else may take them)."""
        self.answering_: set[str] = set()
        """Ids of decisions whose answer the router is making, before any of it came (their
        model may still fail and the query go to another): :meth:`feedback` refuses them."""
        self.running_: set[str] = set()
        """Ids of decisions whose answer the router is making, until its outcome is recorded or
        it is dropped (its pending entry may be gone meanwhile): no other query may take them."""
        self.decisions_made_ = 0
        """Decisions recorded by this learner since it was made (not saved): :meth:`draws_now`."""
        self.widened_ = 0
        """Readings the decisions gave the ``"known"`` scale (not saved): :meth:`take_back_draws`."""
        self.removed_at_: dict[str, float] = {}
        """When each name last left the pool (by the pending store's clock): a decision made
        before that, for the model then under the name, teaches a newcomer of that name nothing."""
        self.scored_before_: dict[str, float] = {}
        """For a name that joined the pool again: the scores its tallies held as it joined, so
        that a cascade counts only what the model now under the name was scored
        (:meth:`_then_scored`; the tallies themselves are the name's history)."""
        self.sync_bases_: dict[str, Statistics] = {}
        """For each store this learner shares through, the total it adopted at its last sync
        (:class:`~greenserv_core.sharing.SharedLearning`); saved, so a replica restarted from
        a saved state pushes only what it learned since, never the total again."""
        self.loaded_statistics_: Statistics | None = None
        """What a saved state held when it was loaded (``None``: not loaded): replicas loaded
        from one file push it to a shared store once (see :class:`~greenserv_core.sharing.SharedLearning`)."""
        self.pending_: PendingStore = pending if pending is not None else PendingDecisions(max_pending, pending_ttl_s)
        self.lock = threading.RLock()
        """Held by every method; hold it yourself to read several parts as one snapshot."""

    # ---- arms ---------------------------------------------------------------------------
    def add_arm(self, name: str, prior: ArmPrior | None = None) -> None:
        """A new model: it starts from the policy's prior (plus ``prior``), with no cost estimates."""
        with self.lock:
            self.policy_.add_arm(name, prior)
            if prior is not None:
                self.priors_[name] = prior
            self.energy_.add_model(name)
            self.latency_.add_model(name)
            if name in self.removed_at_:  # a newcomer under a former name: the name's scores are not its own
                self._joined_again(name)
            self.tallies_.add_model(name)

    def _joined_again(self, name: str) -> None:
        counts = self.tallies_.counts_.get(name)
        self.scored_before_[name] = 0.0 if counts is None else float(counts["feedback"] + counts["labelled"])

    def add_cascade(self, name: str, first: str, then: str) -> None:
        """A new cascade arm ``name``: ``first`` answers, ``then`` when it escalates. Both must
        be arms already."""
        with self.lock:
            missing = [m for m in (first, then) if m not in self.policy_.arms_ or m in self.cascades_]
            if missing:
                raise UnknownModelError(f"a cascade's models must be single models of the pool; unknown: {missing}")
            self.add_arm(name)
            self.cascades_[name] = (first, then)
            self.escalation_.add(first, name)

    def remove_arm(self, name: str) -> None:
        """Forget a model's learned estimates (its tallies stay); a cascade arm's escalation
        state goes with it. What the sync bases hold of it goes too: a model that joins again
        under the name before the next sync pushes what it learns, never its predecessor's
        totals taken away from every replica's."""
        with self.lock:
            before = set(self.statistics().sums) if self.sync_bases_ else set()
            if self.cascades_.pop(name, None) is not None:
                self.escalation_.remove(name)
            self.policy_.remove_arm(name)
            self.removed_at_[name] = self._stamp(name)  # after every decision of the model leaving
            self.priors_.pop(name, None)
            self.energy_.remove_model(name)
            self.latency_.remove_model(name)
            if before:
                gone = before - set(self.statistics().sums)
                self.sync_bases_ = {
                    store: Statistics(
                        sums={key: value for key, value in base.sums.items() if key not in gone},
                        minima=base.minima,
                        maxima=base.maxima,
                    )
                    for store, base in self.sync_bases_.items()
                }

    # ---- deciding -----------------------------------------------------------------------
    def check_new_id(self, decision_id: str | None, *, rerouting: bool = False) -> None:
        """Refuse a caller's decision id that is pending or was recently used, that a query
        being routed again after a failure holds (unless ``rerouting``: that query itself), or
        whose answer is still under way (:attr:`running_`), though the store dropped it."""
        if decision_id is not None:
            with self.lock:
                if rerouting and decision_id in self.rerouting_:  # its own id, though the store dropped it meanwhile
                    return
                held = decision_id in self.rerouting_ or decision_id in self.running_
                if held or self.pending_.known(decision_id):
                    raise DecisionIdInUseError(decision_id)

    def release(self, decision_id: str) -> None:
        """Free the id of a query that failed over and found no other model."""
        with self.lock:
            self.rerouting_.discard(decision_id)
            self._finished(decision_id)

    def decide(
        self,
        features: QueryFeatures,
        candidates: Sequence[Candidate] | Candidates,
        limits: Limits,
        tradeoff: float | None,
        decision_id: str | None = None,
        *,
        rerouting: bool = False,
        under_way: bool = False,
    ) -> RoutingDecision:
        """Choose among the eligible ``candidates`` and keep the decision pending (the cost
        predictions are filled into ``candidates``). ``tradeoff`` ``None``: the energy budget
        sets λ (see :class:`BudgetPacer`); a number overrides the budget for this query, which
        still counts towards it. ``under_way``: the router runs the answer now, so the budget's
        guard counts its predicted joules until its outcome, failure or drop (the caps of
        answers routed meanwhile leave room for it)."""
        x = self.policy_.check_context(features.vector)
        table = candidates if isinstance(candidates, Candidates) else Candidates.of(candidates)
        with self.lock:
            arms = self.policy_.arms_
            gone: dict[str, str] = {}
            if table.names != list(arms) and not all(map(arms.__contains__, table.names)):
                gone = {name: "removed from the pool" for name in table.names if name not in arms}
                table = table.take([i for i, name in enumerate(table.names) if name in arms])
            table.predicted_seconds = self.latency_.predict_array(table.names, x, features.prompt_tokens)
            table.predicted_joules = self.energy_.predict_array(table.names, x, features.prompt_tokens)
            if not isinstance(candidates, Candidates):  # a list of Candidate: fill the predictions in
                for c in candidates:
                    position = table.pool.index.get(c.name)
                    if position is not None:
                        known = table.candidate(position)
                        c.predicted_joules, c.predicted_seconds = known.predicted_joules, known.predicted_seconds
            verdict = check_eligibility(table, limits)
            excluded = {**verdict.excluded, **gone}
            if self.cascades_:
                verdict = self._cascades_eligible(verdict, excluded, limits, table)
            self.check_new_id(decision_id, rerouting=rerouting)
            if not verdict.predicted_joules:
                raise no_eligible_model(candidates, limits, excluded)
            range_before = self._range_now(features.task)
            # the pool's joules as the decision predicts them: learned, else from a model's per-token prior
            pool_joules = table.expected(
                table.predicted_joules, table.pool.prior_joules_per_token, limits.max_new_tokens
            )
            if self._scale == "known":
                self._widen_scale(features.task, table.names, pool_joules)
            budget: BudgetStatus | None = None
            forget: Callable[[], None] | None = None  # the pacer's memory of this decision
            per_query: float | None = None
            if tradeoff is None:
                if self.pacer_ is None:
                    raise InvalidInputError("a tradeoff λ is needed when the router has no energy budget")
                budget = self.pacer_.status()
                tradeoff = budget.tradeoff
                joules = verdict.predicted_joules.array
                if self.pacer_.price_on == "joules":
                    per_query = budget.per_query_joules
                    units = np.where(np.isnan(joules), 0.0, joules / per_query)
                else:
                    units = energy_costs(
                        self._scale,
                        self.normalizer_,
                        features.task,
                        verdict.predicted_joules,
                        pool_joules,
                        1.0,
                    ).array
                costs = ArmValues(verdict.predicted_joules.arms, tradeoff * units)
            else:
                costs = energy_costs(
                    self._scale,
                    self.normalizer_,
                    features.task,
                    verdict.predicted_joules,
                    pool_joules,
                    tradeoff,
                )
            draws = self.draws_now()  # taken back if the decision cannot be recorded
            try:
                choice = self.policy_.decide(x, costs.arms, value_scale=1.0 - tradeoff, costs=costs)
                if choice.arm not in costs.arms:  # (a policy of one's own)
                    raise InvalidInputError(
                        f"the policy chose {choice.arm!r}, which is not among the eligible models {list(costs.arms)}"
                    )
                if budget is not None:
                    choice, forget = self._paced(choice, verdict.predicted_joules, units, budget)
                chosen_joules = verdict.predicted_joules.get(choice.arm)
                decision = RoutingDecision(
                    decision_id=decision_id or uuid.uuid4().hex,
                    model=choice.arm,
                    features=features,
                    scores=choice.scores,
                    excluded=excluded,
                    predicted_joules=verdict.predicted_joules,
                    tradeoff=tradeoff,
                    explored=choice.explored,
                    budget=budget,
                )
                pending = PendingDecision(
                    decision.decision_id,
                    choice.arm,
                    x.copy(),
                    features.task,
                    features.prompt_tokens,
                    tradeoff,
                    self._stamp(choice.arm),
                    predicted_joules=chosen_joules,
                    budget_joules=per_query,
                    energy_bounds=(
                        pool_spread(verdict.predicted_joules.array, pool_joules)
                        if self._scale == "pool" and per_query is None
                        else None
                    ),
                    cascade=(
                        self._decision_plan(
                            choice,
                            x,
                            features.task,
                            table,
                            pool_joules,
                            tradeoff,
                            per_query,
                            _cap(limits.max_joules, None if budget is None else budget.answer_cap_joules),
                            limits,
                        )
                        if choice.arm in self.cascades_
                        else None
                    ),
                )
                if decision.decision_id in self.rerouting_:  # its failed attempt's, if the store could not forget it
                    self.pending_.discard(decision.decision_id, reusable=True)
                self.pending_.add(pending)
            except BaseException:  # (a refused choice, a pending store in Redis away): no step, nothing drawn,
                self._restore_draws(draws)  # nothing remembered, no range widened (the lock is held throughout)
                if forget is not None:
                    forget()
                self._put_range_back(features.task, range_before)
                raise
            self.rerouting_.discard(decision.decision_id)
            if under_way:  # marked with its pending entry, under the lock: no score slips in before it
                self.answering_.add(decision.decision_id)
                self.running_.add(decision.decision_id)
            self.tallies_.decided(choice.arm)
            self.decisions_made_ += 1
            if under_way and self.pacer_ is not None and chosen_joules is not None:
                self.pacer_.reserve(decision.decision_id, chosen_joules)
        logger.debug("routed %s to %s (task=%s)", decision.decision_id, decision.model, features.task)
        return decision

    def _cascades_eligible(
        self, verdict: Eligibility, excluded: dict[str, str], limits: Limits, table: Candidates
    ) -> Eligibility:
        """Leave out the cascades one of whose models is not eligible (noted in ``excluded``).
        A model the query did not request still serves a cascade that the query requested,
        if the other rules allow it."""
        arms = verdict.predicted_joules.arms
        eligible = set(arms)
        barred: dict[str, str] = {}  # why a model the query did not request cannot serve its cascade
        if limits.models is not None:
            serving_models = {m for arm in arms for m in self.cascades_.get(arm, ())}
            unrequested = [
                i
                for i, name in enumerate(table.names)
                if name in serving_models and excluded.get(name) == _NOT_REQUESTED
            ]
            if unrequested:
                serving = check_eligibility(table.take(unrequested), limits, _MEMBER_RULES)
                eligible |= set(serving.predicted_joules.arms)
                barred = serving.excluded
        keep: list[int] = []
        for position, arm in enumerate(arms):
            members = self.cascades_.get(arm)
            out = [] if members is None else [m for m in members if m not in eligible]
            if out:
                why = barred.get(out[0]) or excluded.get(out[0], "not in the pool")
                excluded[arm] = f"its model {out[0]!r} is not eligible ({why})"
            else:
                keep.append(position)
        if len(keep) == len(arms):
            return verdict
        joules = verdict.predicted_joules
        return Eligibility(
            KnownValues([arms[i] for i in keep], joules.array[keep]), verdict.excluded, verdict.positions[keep]
        )

    def _decision_plan(
        self,
        choice: Choice,
        x: np.ndarray,
        task: str,
        table: Candidates,
        pool_joules: np.ndarray,
        tradeoff: float,
        per_query: float | None,
        cap: float | None,
        limits: Limits,
    ) -> dict[str, Any]:
        """The :meth:`_cascade_plan` of a decision that chose a cascade: the decision's own
        estimates of its models where it has them, and the query's predicted joules
        (``pool_joules``: learned, else from a model's per-token prior, in pool order). Under a
        ``cap`` on the query's joules (``max_joules``, or the pacer guard's cap on the answer),
        or the latency limit of ``limits``, that both models together are predicted to break,
        the plan keeps the first answer."""
        first, then = self.cascades_[choice.arm]
        scores = choice.scores
        known = {m: scores[m].estimate for m in (first, then) if m in scores}
        index = table.pool.index
        plan = self._cascade_plan(
            choice.arm, x, task, known, float(pool_joules[index[then]]), pool_joules, tradeoff, per_query
        )
        if cap is not None:  # both read as eligibility reads them: learned, else from the per-token prior
            _JOULES_HOLD.plan(plan, float(pool_joules[index[first]]), float(pool_joules[index[then]]), cap)
        if limits.max_latency_s is not None:
            seconds = table.expected(table.predicted_seconds, table.pool.prior_seconds_per_token, limits.max_new_tokens)
            _SECONDS_HOLD.plan(plan, float(seconds[index[first]]), float(seconds[index[then]]), limits.max_latency_s)
        return plan

    def _cascade_plan(
        self,
        cascade: str,
        x: np.ndarray,
        task: str,
        known: Mapping[str, float],
        then_joules: float,
        pool: np.ndarray,
        tradeoff: float,
        per_query: float | None,
    ) -> dict[str, Any]:
        """What the escalation rule of ``cascade`` needs after the first answer: the router's
        estimates of both models here (``known``, else from the policy), and what escalating
        costs at λ: the second model's predicted joules on the reward's energy scale (``pool``:
        the pool's predictions, for the ``"pool"`` scale), i.e. the reward lost by adding them
        to the first model's."""
        first, then = self.cascades_[cascade]
        missing = [m for m in (first, then) if m not in known]
        estimated = dict(zip(missing, self.policy_.estimates(x, missing), strict=True)) if missing else {}
        return {
            "first": first,
            "then": then,
            "first_accuracy": _accuracy(known[first] if first in known else estimated[first]),
            "then_accuracy": known[then] if then in known else estimated[then],
            "then_scored": self._then_scored(cascade, then),
            "then_cost": escalation_cost(self._scale, self.normalizer_, task, then_joules, pool, tradeoff, per_query),
        }

    def _verdict(
        self,
        plan: Mapping[str, Any],
        cascade: str,
        x: np.ndarray,
        confidence: float | None,
        tradeoff: float,
        *,
        explore: bool = True,
        signal: str | None = None,
    ) -> Verdict:
        """The escalation rule's verdict on a cascade's first answer (``confidence`` read by
        ``signal``), from its :meth:`_cascade_plan`."""
        return self.escalation_.decide(
            plan["first"],
            cascade,
            x,
            confidence,
            then_accuracy=plan["then_accuracy"],
            then_cost=plan["then_cost"],
            value_scale=1.0 - tradeoff,
            first_accuracy=plan["first_accuracy"],
            then_scored=plan.get("then_scored"),
            explore=explore,
            signal=signal,
        )

    def _then_scored(self, cascade: str, then: str) -> float | None:
        """How often a cascade's second model was scored (its feedback, its labelled answers,
        and what it scored after this cascade's escalations); ``None`` when a prior vouches
        for its estimate."""
        escalated = self.escalation_.routed_escalations(cascade)
        if then in self.priors_:
            return None
        counts = self.tallies_.counts_[then]
        own = counts["feedback"] + counts["labelled"] - self.scored_before_.get(then, 0.0)
        return float(max(0.0, own) + max(0.0, escalated))

    def _paced(
        self, choice: Choice, predicted: KnownValues, units: np.ndarray, budget: BudgetStatus
    ) -> tuple[Choice, Callable[[], None] | None]:
        """Let the pacer remember the decision; when the budget cannot be met, take the
        cheapest eligible model with a known prediction instead of the policy's choice. With
        the pacer's guard, a choice predicted above the answer's cap (or not predicted at all)
        gives way to the best model under the cap, or else the cheapest with a prediction.
        Returns the choice and what makes the pacer forget the decision (``None``: not kept)."""
        assert self.pacer_ is not None
        scores = choice.scores
        if isinstance(scores, ArmScores):
            values = scores.estimate + scores.bonus
        else:
            values = np.array([scores[arm].estimate + scores[arm].bonus for arm in predicted.arms])
        joules = predicted.array
        # a query pinned to one model tells nothing about the price
        forget = self.pacer_.remember(values, units, joules) if len(joules) > 1 else None
        if np.all(np.isnan(joules)):
            return choice, forget
        cheapest = Choice(predicted.arms[int(np.nanargmin(joules))], scores, False)
        if not budget.met:
            return cheapest, forget
        cap = budget.answer_cap_joules
        chosen = predicted.position(choice.arm) if choice.arm in predicted else None
        if cap is None or chosen is None or joules[chosen] <= cap:
            return choice, forget
        # the guard: this answer would take its run of answers over the budget, or nothing
        # bounds its joules yet (a model or cascade not measured): a model under the cap answers
        under = np.where(np.isnan(joules), False, joules <= cap)
        if not under.any():
            return cheapest, forget
        lam = budget.tradeoff
        total = np.where(under, (1.0 - lam) * values - lam * units, -np.inf)
        return Choice(predicted.arms[int(np.argmax(total))], scores, False), forget

    def escalate(
        self,
        decision_id: str,
        confidence: float | None,
        *,
        spent_joules: float | None = None,
        spent_seconds: float | None = None,
        signal: str | None = None,
    ) -> Verdict:
        """After a cascade's first answer: escalate to its second model, or keep the answer?
        ``confidence`` is the answer's confidence in [0, 1] (``None``: no signal), read by the
        confidence signal named ``signal`` (``None``: unnamed); each named signal, and the
        estimate that stands in for a missing confidence, has a correction of its own (the plan
        keeps the name as ``signal``, for the score to teach it);
        ``spent_joules`` and ``spent_seconds``, what the first step spent and took (its answer,
        and a question asked about it), are checked with the second model's predictions against
        the query's cap on joules and its latency limit. The verdict is kept with the decision,
        for feedback."""
        check_decision_id(decision_id)
        if confidence is not None:
            confidence = check_confidence(confidence)
        if signal is not None and not isinstance(signal, str):
            raise InvalidInputError(f"signal must be a confidence signal's name or None, got {signal!r}")
        if spent_joules is not None:
            check_measured("spent_joules", spent_joules)
            spent_joules = float(spent_joules)
        if spent_seconds is not None:
            check_measured("spent_seconds", spent_seconds)
            spent_seconds = float(spent_seconds)
        with self.lock:
            pending = self.pending_.get(decision_id)
            plan = pending.cascade
            if plan is None:
                raise InvalidInputError(f"decision {decision_id!r} chose {pending.model!r}, which is not a cascade")
            if "escalated" in plan:
                raise InvalidInputError(f"the cascade of decision {decision_id!r} was already decided")
            if pending.model not in self.cascades_:  # removed meanwhile (its second model may be gone): keep
                verdict = Verdict.kept(confidence, "kept: the cascade was removed")
            elif plan.get("held"):  # escalating would break the query's cap on joules or its latency limit
                verdict = Verdict.kept(confidence, str(plan["held"]))
            elif held := (  # (a confidence question the predictions leave out)
                _JOULES_HOLD.after(plan, spent_joules) or _SECONDS_HOLD.after(plan, spent_seconds)
            ):
                verdict = Verdict.kept(confidence, held)
            else:
                verdict = self._verdict(
                    plan, pending.model, pending.context, confidence, pending.tradeoff, signal=signal
                )
            stand_in = plan["first_accuracy"] if confidence is None else confidence
            named = ESTIMATED if confidence is None else signal
            plan.update(
                confidence=None if stand_in is None else float(stand_in),
                escalated=verdict.escalate,
                explored=verdict.explored,
                **({} if named is None else {"signal": named}),
            )
            self.pending_.update(pending)
        return verdict

    def kept_after_failure(self, decision_id: str) -> None:
        """A cascade's escalation failed and its first answer is kept: its score labels that
        answer (a decision gone from the store, or already scored, is left as it is)."""
        with self.lock:
            try:
                pending = self.pending_.get(decision_id)
            except (UnknownDecisionError, DecisionAlreadyScoredError, PendingStoreUnreachableError):
                return
            if pending.cascade is not None and pending.cascade.get("escalated"):
                pending.cascade["escalated"] = False
                try:
                    self.pending_.update(pending)
                except PendingStoreUnreachableError as error:  # the kept answer stands, and is charged
                    logger.warning(
                        "the pending store could not hear that decision %s kept its first answer (%s): its score "
                        "may label the escalation instead",
                        decision_id,
                        error,
                    )

    def record_agreement(self, decision_id: str, agreed: bool, *, routed: bool = False) -> None:
        """After an escalated cascade: whether the second answer agrees with the first (the
        proxy label of the first answer, see :mod:`greenserv_core.cascades.escalation`). A
        decision already scored (while its answer streamed) has no use for it: nothing is done.
        ``routed``: called by the router after its own cascade ran, whose escalation the pending
        store may not have recorded (the cascade's fixed threshold then decided): nothing is done."""
        check_decision_id(decision_id)
        if not isinstance(agreed, bool):
            raise InvalidInputError(f"agreed must be True or False, got {agreed!r}")
        with self.lock:
            try:
                pending = self.pending_.get(decision_id)
            except DecisionAlreadyScoredError:  # scored while it streamed: the rule learned from the score
                return
            if routed and pending.cascade is not None and not pending.cascade.get("escalated"):
                # the cascade's fixed threshold escalated while the store was away (its verdict unrecorded, or
                # recorded though the reply was lost): nothing to label, and no verdict to learn from
                if "escalated" in pending.cascade:
                    pending.cascade.pop("escalated")
                    self.pending_.update(pending)
                return
            if pending.cascade is None or not pending.cascade.get("escalated"):
                raise InvalidInputError(f"decision {decision_id!r} did not escalate a cascade")
            pending.cascade["agreed"] = agreed
            self.pending_.update(pending)

    def _widen_scale(self, task: str, names: Sequence[str], predicted: np.ndarray) -> None:
        """The ``"known"`` scale: the task's range takes in this query's predicted joules of
        the single models (a cascade's own prediction mixes kept and escalated answers, and its
        members' predictions already bound it)."""
        known = predicted[[name not in self.cascades_ for name in names]] if self.cascades_ else predicted
        known = known[np.isfinite(known)]
        if len(known):
            self.normalizer_.observe(task, float(known.min()))
            self.normalizer_.observe(task, float(known.max()))
            self.widened_ += 2

    @contextlib.contextmanager
    def _priced_as_routed(self, task: str, names: Sequence[str], predicted: np.ndarray) -> Iterator[None]:
        """On the ``"known"`` scale, the task's range widened by a query's ``predicted`` joules
        while a warm start prices its cascades, as a routed query's is before it is priced, then
        put back: a labelled row teaches the range its answers' joules only, as :meth:`learn` does."""
        before = self._range_now(task)
        if self._scale == "known":
            self._widen_scale(task, names, predicted)
        try:
            yield
        finally:
            self._put_range_back(task, before)

    def _range_now(self, task: str) -> list[float] | None:
        """A copy of ``task``'s energy range (``None``: it has none), for :meth:`_put_range_back`."""
        own = self.normalizer_.ranges_.get(task)
        return None if own is None else list(own)

    def _put_range_back(self, task: str, saved: list[float] | None) -> None:
        """Return ``task``'s energy range to what :meth:`_range_now` saved."""
        ranges = self.normalizer_.ranges_
        if saved is None:
            ranges.pop(task, None)
        else:
            ranges[task] = saved

    def _finished(self, decision_id: str) -> None:
        """The router is no longer making ``decision_id``'s answer (see :attr:`running_`)."""
        self.answering_.discard(decision_id)
        self.running_.discard(decision_id)

    def answered(self, decision_id: str) -> None:
        """The answer to ``decision_id`` came (its first piece, or all of it): it may be scored
        (see :attr:`answering_`; a decision routed ``under_way`` is marked until then, through
        any failover, and unmarked also when it is dropped or its id released)."""
        with self.lock:
            self.answering_.discard(decision_id)

    def fail_over(self, decision: RoutingDecision) -> None:
        """Take back a decision whose model failed; its id is kept for the query's next route
        (:meth:`release` frees it if there is none)."""
        with self.lock:
            self._settle(decision.decision_id)
            try:
                self.pending_.discard(decision.decision_id, reusable=True)
            except PendingStoreUnreachableError as error:  # the next route says so, before any model runs
                self._unforgotten(decision.decision_id, error)
            self.rerouting_.add(decision.decision_id)
            self.tallies_.decided(decision.model, by=-1)

    def charge_failed(self, spent: Sequence[tuple[str, float]]) -> None:
        """What failed attempts spent, ``(model, joules)`` each: the models' energy tallies
        and the energy budget count it (the query cost that much more); no cost model learns
        from it, as no answer came."""
        with self.lock:
            for model, joules in spent:
                check_measured("a failed attempt's energy_joules", joules)
                if model in self.tallies_.counts_:
                    self.tallies_.spent(model, joules)
                if self.pacer_ is not None and joules > 0:
                    self.pacer_.charge(joules)

    def drop(self, decision_id: str) -> None:
        """Forget a decision whose generation did not complete (it cannot be scored); one scored
        while it streamed no longer awaits its outcome. A pending store that cannot be reached
        keeps it until it expires there (logged): the error that ended the generation is the
        one raised, not the store's."""
        with self.lock:
            self._settle(decision_id)
            self._finished(decision_id)
            try:
                self.pending_.discard(decision_id)
                take = getattr(self.pending_, "take_awaiting", None)
                if take is not None:
                    take(decision_id)
            except PendingStoreUnreachableError as error:
                self._unforgotten(decision_id, error)
            except UnknownDecisionError:  # its waiting copy expired: nothing to take (as Redis says None)
                pass

    @staticmethod
    def _unforgotten(decision_id: str, error: PendingStoreUnreachableError) -> None:
        logger.warning(
            "decision %s did not complete, and the pending store could not forget it (%s): "
            "it stays there until it expires",
            decision_id,
            error,
        )

    def draws_now(self, *, planning: bool = False) -> _Draws:
        """The policy's step count and random state now, and the decisions made so far: what
        :meth:`take_back_draws` returns to. With ``planning`` (a batch, once), also copies of
        the energy scale's ranges and of the decisions the pacer remembers, which a batch's
        decisions widen and add to before any of them runs."""
        with self.lock:  # (not halfway through another thread's decision)
            rng = getattr(self.policy_, "rng_", None)
            memory = None if self.pacer_ is None else self.pacer_.recent_
            return _Draws(
                self.decisions_made_,
                getattr(self.policy_, "t_", None),
                rng.bit_generator.state if isinstance(rng, np.random.Generator) else None,
                _Planning(
                    {task: list(bounds) for task, bounds in self.normalizer_.ranges_.items()},
                    self.normalizer_,
                    self.normalizer_.changes_,
                    self.widened_,
                    memory,
                    None if memory is None else memory.copy(),
                )
                if planning
                else None,
            )

    def take_back_draws(self, draws: _Draws, decisions: int) -> bool:
        """After ``decisions`` made since ``draws`` were withdrawn unrun (a batch refused before
        any of its queries ran), take back their steps (ε's decay) and put the policy's random
        state back, as if they had never been made; only where no other decision was made
        meanwhile (another thread's draws are its own). The steps are taken back, not set: a
        sync meanwhile may have set the step count to the replicas' total. Draws taken with
        ``planning`` also put back the energy scale's ranges (where nothing but decisions moved
        them) and the pacer's remembered decisions (where it keeps the same memory: the price is
        re-solved on them). Returns whether it did."""
        with self.lock:
            if self.decisions_made_ - draws.decisions != decisions:
                return False
            steps = getattr(self.policy_, "t_", None)
            self._restore_draws(draws)
            if isinstance(steps, numbers.Integral):
                self.policy_.t_ = max(0, int(steps) - decisions)  # type: ignore[attr-defined]
            self.decisions_made_ = draws.decisions
            plan, norm = draws.planning, self.normalizer_
            if plan is None:
                return True
            # only the withdrawn decisions' own widening: an outcome, a lesson or a sync meanwhile
            # moved the ranges too, and is kept (with the batch's widening) rather than lost
            if norm is plan.normalizer and norm.changes_ - plan.changes == self.widened_ - plan.widened:
                norm.ranges_ = {task: list(bounds) for task, bounds in plan.ranges.items()}
            # only decisions add to the pacer's memory; another pacer, or a load, has another memory
            if self.pacer_ is not None and plan.remembered is not None and self.pacer_.recent_ is plan.memory:
                self.pacer_.recent_ = plan.remembered
            return True

    def _restore_draws(self, draws: _Draws) -> None:
        if draws.steps is not None:
            self.policy_.t_ = draws.steps  # type: ignore[attr-defined]
        rng = getattr(self.policy_, "rng_", None)
        if draws.random_state is not None and isinstance(rng, np.random.Generator):
            rng.bit_generator.state = draws.random_state

    def withdraw(self, decision: RoutingDecision) -> None:
        """Forget a decision whose model never ran (a batch that failed before its turn): it is
        not counted as a decision of that model either."""
        with self.lock:
            self.drop(decision.decision_id)
            if decision.model in self.tallies_.counts_:
                self.tallies_.decided(decision.model, by=-1)

    def _settle(self, decision_id: str) -> None:
        """The decision's answer is no longer under way (for the budget's guard)."""
        if self.pacer_ is not None:
            self.pacer_.settle(decision_id)

    # ---- learning -----------------------------------------------------------------------
    def record_outcome(
        self,
        decision_id: str,
        *,
        energy_joules: float,
        latency_s: float,
        energy_source: str = "external",
        members: Sequence[tuple[str, float, float]] = (),
        cut_by_time: bool = False,
    ) -> None:
        """Teach the cost models what a decision's generation spent (once per decision).
        For a cascade, ``members`` are ``(model, joules, seconds)`` of each model it ran,
        which also teach those models' own cost models; an escalated cascade with one member
        kept its first answer (its second model failed), and its score then labels that answer.
        ``cut_by_time``: the answer was cut by its time limit, so its seconds (and its last
        member's) are a lower bound: they teach a latency model only where it has no
        prediction yet or they exceed it (see :meth:`_learn_cost`)."""
        check_decision_id(decision_id)
        check_spent(energy_joules, latency_s, members)
        with self.lock:
            self._finished(decision_id)  # its answer came: it may be scored
            try:
                pending, scored = self.pending_.get(decision_id), False
            except DecisionAlreadyScoredError:  # scored first: its outcome is still awaited, once
                take = getattr(self.pending_, "take_awaiting", None)
                try:
                    waiting = take(decision_id) if take is not None else None
                except BaseException:  # expired (or the store is gone): its answer is no longer under way
                    self._settle(decision_id)
                    raise
                if waiting is None:
                    self._settle(decision_id)
                    raise InvalidInputError(
                        f"the outcome of decision {decision_id!r} was already recorded (it is scored)"
                    ) from None
                pending, scored = waiting, True
            except BaseException:  # gone or unknown: its answer is no longer under way
                self._settle(decision_id)
                raise
            if pending.energy_joules is not None:
                self._settle(decision_id)
                raise InvalidInputError(f"the outcome of decision {decision_id!r} was already recorded")
            try:
                self._check_pool_had(pending, "outcome")
            except UnknownModelError:  # kept for a replica that has the model
                if scored:
                    self._keep_awaiting(pending)
                raise
            plan = pending.cascade
            if members and (plan is None or any(m not in (plan["first"], plan["then"]) for m, _, _ in members)):
                if scored:  # refused: it still awaits its outcome
                    self._keep_awaiting(pending)
                chain = "no cascade" if plan is None else f"the cascade {plan['first']}->{plan['then']}"
                raise InvalidInputError(
                    f"members {[m for m, _, _ in members]} are not models of decision {decision_id!r} ({chain})"
                )
            self._settle(decision_id)
            escalated = None if plan is None else plan.get("escalated")
            if plan is not None and escalated and len(members) == 1:
                plan["escalated"] = False  # its second model failed before it answered: the first answer was kept
            pending.energy_joules = float(energy_joules)
            pending.energy_source = energy_source
            if not scored:  # first: a store that fails here leaves nothing learned (the caller may learn it once)
                self.pending_.update(pending)
            try:
                self._learn_cost(
                    pending.model,
                    pending.context,
                    pending.prompt_tokens,
                    pending.task,
                    (energy_joules, latency_s),
                    members,
                    predicted=pending.predicted_joules,
                    current=self._current(pending),
                    member_current=lambda member: self._current_name(member, pending.created_at),
                    cut_by_time=cut_by_time,
                )
            except BaseException:  # refused (e.g. joules a cost model cannot take): the outcome is not recorded
                pending.energy_joules = pending.energy_source = None
                if plan is not None:
                    plan["escalated"] = escalated
                if scored:
                    self._keep_awaiting(pending)
                else:
                    self.pending_.update(pending)
                raise

    def record_expired_outcome(
        self,
        decision: RoutingDecision,
        *,
        energy_joules: float,
        latency_s: float,
        members: Sequence[tuple[str, float, float]] = (),
        cut_by_time: bool = False,
        current: bool = True,
        member_current: Callable[[str], bool] | None = None,
    ) -> None:
        """:meth:`record_outcome` for a decision that left the pending store before its answer
        came (it cannot be scored): the cost models, the tallies, the task's energy scale and
        the budget learn what it spent from the decision itself (``current``: the model that
        answered is still the one in the pool under its name; ``member_current``: the same for
        a cascade's member, by default as ``current``)."""
        check_spent(energy_joules, latency_s, members)
        with self.lock:
            self._settle(decision.decision_id)
            self._finished(decision.decision_id)
            features = decision.features
            self._learn_cost(
                decision.model,
                self.policy_.check_context(features.vector),
                features.prompt_tokens,
                features.task,
                (energy_joules, latency_s),
                members,
                predicted=decision.predicted_joules.get(decision.model),
                current=current and decision.model in self.policy_.arms_,
                member_current=member_current,
                cut_by_time=cut_by_time,
            )

    def _learn_cost(
        self,
        model: str,
        context: np.ndarray,
        prompt_tokens: int,
        task: str,
        spent: tuple[float, float],
        members: Sequence[tuple[str, float, float]],
        *,
        predicted: float | None,
        current: bool,
        member_current: Callable[[str], bool] | None = None,
        cut_by_time: bool = False,
    ) -> None:
        """Teach the cost models, the tallies, the energy scale and the budget what an answer
        of ``model`` spent (``(joules, seconds)``; ``current``: the model answering is still
        the one in the pool under its name; ``member_current``: the same for a cascade's
        member, which may still be where its cascade is gone; by default as ``current``).
        ``cut_by_time``: the answer's seconds, and its last member's, are a lower bound (its
        time limit cut it): they teach the latency model only where it has no prediction yet or
        they exceed it (a model that would have taken longer must not learn to look quick
        enough for a ``max_latency_s``); its joules are what it spent and teach as ever."""
        energy_joules, latency_s = spent
        if any(member == model for member, _, _ in members):  # (its row would be checked once, updated twice)
            raise InvalidInputError(f"{model!r} is among its own members: a cascade's members are the models it ran")
        taught: list[tuple[str, float | None, float | None]] = [(model, energy_joules, latency_s)] if current else []
        still = member_current or (lambda member: current)
        taught += [m for m in members if m[0] in self.policy_.arms_ and still(m[0])]
        if cut_by_time:
            cut = {model, *(m[0] for m in members[-1:])}  # (the members before the last had finished)
            taught = [
                (
                    name,
                    joules,
                    self._beyond_prediction(name, context, prompt_tokens, seconds) if name in cut else seconds,
                )
                for name, joules, seconds in taught
            ]
        checked = self._check_costs(context, prompt_tokens, taught)  # all refused, or none: nothing half-learned
        if current or (model in self.tallies_.counts_ and model not in self.policy_.arms_):
            self.tallies_.spent(model, energy_joules)  # a model removed meanwhile keeps its history (not a newcomer's)
        for costs in checked:
            self._observe_costs(costs)
        self.normalizer_.observe(task, energy_joules)
        if self.pacer_ is not None:
            self.pacer_.observe(energy_joules, predicted=predicted)

    def _beyond_prediction(
        self, name: str, context: np.ndarray, prompt_tokens: int, seconds: float | None
    ) -> float | None:
        """``seconds``, a lower bound on an answer's time, where the latency model has no
        prediction for ``name`` yet (better than none) or where they exceed it (the prediction
        is then too low); else ``None``."""
        predicted = self.latency_.predict(name, context, prompt_tokens)
        return seconds if seconds is not None and (predicted is None or seconds > predicted) else None

    def _now(self) -> float:
        """The pending store's clock (its ``clock``, else the wall clock): decisions are aged by it."""
        clock = getattr(self.pending_, "clock", None)
        return float(clock()) if callable(clock) else time.time()

    def _stamp(self, name: str) -> float:
        """The time of a decision for ``name`` (:meth:`_now`), but after the name last left the
        pool: a clock of coarse ticks may read the same, and the decision must not be taken for
        its predecessor's."""
        now = self._now()
        removed = self.removed_at_.get(name)
        return now if removed is None else max(now, math.nextafter(removed, math.inf))

    def _current(self, pending: PendingDecision) -> bool:
        """Whether the model a decision chose is still the one in the pool under that name
        (not one removed after the decision, whatever joined under its name since)."""
        return self._current_name(pending.model, pending.created_at)

    def _current_name(self, name: str, since: float) -> bool:
        """Whether the model under ``name`` is the one there at ``since`` (a decision's time)."""
        removed = self.removed_at_.get(name)
        return name in self.policy_.arms_ and (removed is None or since > removed)

    def _keep_awaiting(self, pending: PendingDecision) -> None:
        """Keep a scored decision, whose outcome was refused, awaiting it (where the store can:
        ``keep_awaiting`` is optional in :class:`~greenserv_core.pending.PendingStore`)."""
        keep = getattr(self.pending_, "keep_awaiting", None)
        if keep is not None:
            keep(pending)

    def _check_pool_had(self, pending: PendingDecision, what: str) -> None:
        """:class:`UnknownModelError` where ``pending`` (in a shared pending store) chose a model
        this router's pool did not have when it was made: another replica's, which must learn
        its ``what`` (score or outcome); the decision stays in the store for it."""
        chosen, removed = pending.model, self.removed_at_.get(pending.model)
        if chosen not in self.policy_.arms_ and (removed is None or pending.created_at > removed):
            raise UnknownModelError(  # another replica's model (one this pool never had, or not since then)
                f"decision {pending.decision_id!r} chose {chosen!r}, which this router's pool did not have when it "
                f"was made: send the {what} to a replica whose pool has it (the decision is kept for it)"
            )

    def feedback(self, decision_id: str, score: float) -> FeedbackRecord:
        """Teach the policy a decision's score in [0, 1] (once per decision).

        A score may come before the decision's outcome (:meth:`record_outcome`): the policy
        learns it at once, and the pending store keeps the decision aside for its joules and
        seconds, which the cost models and the budget still learn; the record's ``reward`` is
        then ``None``. A decision (in a shared pending store) for a model this router's pool did
        not have when it was made raises :class:`UnknownModelError` and stays pending, for a
        replica that has it."""
        value = check_score(score)
        check_decision_id(decision_id)
        with self.lock:
            if decision_id in self.answering_:  # its model may yet fail: the score would go to the wrong one
                raise DecisionStillAnsweringError(
                    f"decision {decision_id!r} is still being answered, and its model may yet fail and the query "
                    "go to another: score it once its answer has come (nothing was learned)"
                )
            self._check_pool_had(self.pending_.get(decision_id), "score")
            pending = self.pending_.pop_for_feedback(decision_id)
            applied = self._current(pending)
            if applied:
                try:
                    self.policy_.update(pending.model, pending.context, value)
                except BaseException:  # (a policy of one's own refused it) nothing learned: pending again
                    self._put_back(pending)
                    raise
                self.tallies_.scored(pending.model)
            plan = pending.cascade
            if applied and plan is not None and "escalated" in plan and plan["confidence"] is not None:
                self.escalation_.learn(
                    plan["first"],
                    pending.model,
                    pending.context,
                    plan["confidence"],
                    escalated=plan["escalated"],
                    score=value,
                    then_accuracy=plan["then_accuracy"],
                    agreed=plan.get("agreed"),
                    signal=plan.get("signal"),  # (a plan of a version before names none: the unnamed correction)
                )
            realised = None
            if pending.energy_joules is not None:
                if pending.budget_joules:  # paced in joules: the reward's energy in per-query budgets
                    energy_norm = pending.energy_joules / pending.budget_joules
                elif pending.energy_bounds is not None:  # the scale the decision weighed this query on
                    low, high = pending.energy_bounds
                    energy_norm = min(1.0, max(0.0, (pending.energy_joules - low) / (high - low)))
                else:
                    energy_norm = self.normalizer_.normalize(pending.task, pending.energy_joules)
                realised = reward(value, energy_norm, pending.tradeoff)
        return FeedbackRecord(decision_id, pending.model, value, realised, applied)

    def _put_back(self, pending: PendingDecision) -> None:
        """A decision taken for a score that was not learned made pending again, where its store
        can (``put_back``); what that store raises is logged: the refusal is what is raised."""
        put_back = getattr(self.pending_, "put_back", None)
        if put_back is None:
            why = f"{type(self.pending_).__name__} cannot put a decision back"
        else:
            try:
                if put_back(pending) is not False:
                    return
                why = "another replica recorded its outcome meanwhile"
            except Exception as error:
                why = repr(error)
        logger.warning("decision %s cannot be scored again: %s", pending.decision_id, why)

    def learn(
        self,
        features: QueryFeatures,
        model: str,
        *,
        score: float | None = None,
        energy_joules: float | None = None,
        latency_s: float | None = None,
    ) -> None:
        """Teach a labelled outcome that was not routed (e.g. a warm start from an outcome
        table): its score to the policy (counted as ``labelled``), its joules and seconds to
        the cost models and the energy scale. Each part is optional; nothing is pending afterwards."""
        value = None if score is None else check_score(score)
        for name, quantity in (("energy_joules", energy_joules), ("latency_s", latency_s)):
            if quantity is not None:
                check_measured(name, quantity)
        x = self.policy_.check_context(features.vector)
        with self.lock:
            if model not in self.policy_.arms_:
                raise UnknownModelError(f"unknown model {model!r}; the models are {self.policy_.arms}")
            (costs,) = self._check_costs(x, features.prompt_tokens, [(model, energy_joules, latency_s)])
            self._learn_checked(features.task, x, model, value, costs)

    def _check_costs(
        self, context: np.ndarray, prompt_tokens: int, spent: Sequence[tuple[str, float | None, float | None]]
    ) -> list[_CheckedCosts]:
        """Each ``(model, joules, seconds)`` as the cost models check it, before anything is
        learned: refused as they would refuse it (sums that would overflow), else what
        :meth:`_observe_costs` makes (``None``: nothing to learn)."""
        return [
            _CheckedCosts(
                None if joules is None else float(joules),  # (a Fraction kept as one could not be saved)
                None if joules is None else self.energy_.check_observation(model, context, prompt_tokens, joules),
                None if seconds is None else self.latency_.check_observation(model, context, prompt_tokens, seconds),
            )
            for model, joules, seconds in spent
        ]

    def _observe_costs(self, costs: _CheckedCosts) -> None:
        """Teach the cost models what :meth:`_check_costs` checked."""
        if costs.energy is not None:
            self.energy_.observe_checked(costs.energy)
        if costs.latency is not None:
            self.latency_.observe_checked(costs.latency)

    def _learn_checked(self, task: str, x: np.ndarray, model: str, value: float | None, costs: _CheckedCosts) -> None:
        """:meth:`learn`'s lessons, once checked (under the lock)."""
        if value is not None:
            self.policy_.update(model, x, value)
            self.tallies_.labelled(model)
        self._observe_costs(costs)
        if costs.joules is not None:
            self.normalizer_.observe(task, costs.joules)

    def learn_answers(
        self,
        features: QueryFeatures,
        answers: Mapping[str, LabelledAnswer],
        tradeoff: float | None,
        max_joules: float | None = None,
        max_latency_s: float | None = None,
    ) -> dict[str, bool]:
        """Teach every model its labelled answer to one query (as :meth:`learn`), and every
        cascade both of whose models answered with a score what its escalation rule, as
        learned before this query and without exploring, would have done at ``tradeoff``
        (``None``: the energy budget's λ, read without starting its clock): kept the first
        answer (its score, its joules and its confidence's) or escalated (the second's score,
        both models' joules); under ``max_joules`` (or the budget guard's cap on an answer)
        that both models together are predicted to break, it keeps the first answer, as a
        routed query does; so too under ``max_latency_s`` (by the learned seconds). A first
        answer's confidence is labelled with its score, uncensored, and an escalation teaches
        the second model's offset. Returns each taught cascade's verdict (``True``: escalated);
        a cascade is not a model here, since its outcome follows from its models' answers."""
        x = self.policy_.check_context(features.vector)
        with self.lock:
            unknown = sorted(m for m in answers if m not in self.policy_.arms_)
            if unknown:
                raise UnknownModelError(f"unknown model(s) {unknown}; the models are {self.policy_.arms}")
            cascades = sorted(m for m in answers if m in self.cascades_)
            if cascades:
                raise InvalidInputError(
                    f"{cascades} are cascades: teach their models' answers; each cascade learns what it would have done"
                )
            per_query: float | None = None
            if tradeoff is None:
                if self.pacer_ is None:
                    raise InvalidInputError("a tradeoff λ is needed when the router has no energy budget")
                tradeoff, budget = self.pacer_.peek()
                per_query = budget if self.pacer_.price_on == "joules" else None
            cap = _cap(max_joules, None if self.pacer_ is None else self.pacer_.answer_cap())
            arms = self.policy_.arms
            pool = self.energy_.predict_array(arms, x, features.prompt_tokens)
            predicted = dict(zip(arms, pool, strict=True))
            seconds = dict(zip(arms, self.latency_.predict_array(arms, x, features.prompt_tokens), strict=True))
            firsts = {first for first, _ in self.cascades_.values()}
            signals: dict[str, float] = {}  # each first model's confidence (its estimate without one)
            for first in firsts:
                answer = answers.get(first)
                if answer is not None and answer.score is not None:
                    signal = answer.confidence
                    signals[first] = _accuracy(self.policy_.estimates(x, [first])[0]) if signal is None else signal
            priced = [
                (cascade, first, then)
                for cascade, (first, then) in self.cascades_.items()
                if first in signals and getattr(answers.get(then), "score", None) is not None
            ]
            answered = self._check_costs(
                x, features.prompt_tokens, [(name, a.energy_joules, a.latency_s) for name, a in answers.items()]
            )
            verdicts: dict[str, tuple[bool, float]] = {}
            with self._priced_as_routed(features.task, arms, pool):  # the scale as the query routed would have it
                for cascade, first, then in priced:
                    plan = self._cascade_plan(cascade, x, features.task, {}, predicted[then], pool, tradeoff, per_query)
                    # the labels are all here: no answer need be kept to learn
                    first_answer = answers[first]
                    verdict = self._verdict(
                        plan,
                        cascade,
                        x,
                        first_answer.confidence,
                        tradeoff,
                        explore=False,
                        signal=first_answer.confidence_signal,
                    )
                    question = answers[first].confidence_joules or 0.0  # paid by the cascade on every query
                    # a model not yet predicted counts what its labelled answer spent (the route would
                    # count its prior); NaN, neither known: not held
                    pair_joules = [_or_spent(predicted[m], answers[m].energy_joules) for m in (first, then)]
                    pair_seconds = [_or_spent(seconds[m], answers[m].latency_s) for m in (first, then)]
                    held = cap is not None and pair_joules[0] + question + pair_joules[1] > cap
                    held = held or (max_latency_s is not None and sum(pair_seconds) > max_latency_s)
                    verdicts[cascade] = (verdict.escalate and not held, float(plan["then_accuracy"]))
            taught = []  # what each cascade spent by its verdict: its first answer, or both (and the question's)
            for cascade, (escalated, _) in verdicts.items():
                first, then = self.cascades_[cascade]
                ran = (answers[first], answers[then]) if escalated else (answers[first],)
                joules = _total([a.energy_joules for a in ran])
                spent = None if joules is None else joules + answers[first].confidence_joules
                taught.append((cascade, spent, _total([a.latency_s for a in ran])))
            for name, joules, took in taught:  # refused before anything is learned (a sum past a float's range)
                for what, quantity in (("energy_joules", joules), ("latency_s", took)):
                    if quantity is not None:
                        check_measured(f"{name}'s {what}", quantity)
            cascades_checked = dict(zip(verdicts, self._check_costs(x, features.prompt_tokens, taught), strict=True))
            for (name, answer), costs in zip(answers.items(), answered, strict=True):
                self._learn_checked(features.task, x, name, answer.score, costs)
            for first, signal in signals.items():
                score = answers[first].score
                assert score is not None
                # under the signal the answer names (None: the unnamed correction); the estimate has its own
                named = ESTIMATED if answers[first].confidence is None else answers[first].confidence_signal
                self.escalation_.learn_first(first, x, signal, score, signal=named)
            for cascade, (escalated, then_accuracy) in verdicts.items():
                first, then = self.cascades_[cascade]
                kept, second = answers[first], answers[then]
                score = second.score if escalated else kept.score
                self._learn_checked(features.task, x, cascade, score, cascades_checked[cascade])
                if escalated:
                    assert second.score is not None
                    # the second model's labelled answer counts this score already
                    self.escalation_.learn_then(cascade, then_accuracy, second.score, labelled=True)
            return {cascade: escalated for cascade, (escalated, _) in verdicts.items()}

    # ---- sharing ------------------------------------------------------------------------
    def _components(self) -> dict[str, Shareable]:
        budget: dict[str, Shareable] = {} if self.pacer_ is None else {"budget": self.pacer_}
        return {
            "policy": self.policy_,
            "energy": self.energy_,
            "latency": self.latency_,
            "normalizer": self.normalizer_,
            "tallies": self.tallies_,
            "escalation": self.escalation_,
            **budget,
            **self.shared,
        }

    def statistics(self) -> Statistics:
        """Everything learned that replicas share, one prefix per component. Pending
        decisions and random generators are not shared."""
        with self.lock:
            return Statistics.join({name: part.statistics() for name, part in self._components().items()})

    def update_statistics(
        self,
        transform: Callable[[Statistics], Statistics],
        *,
        sync_base: tuple[str, Callable[[Statistics], Statistics]] | None = None,
    ) -> None:
        """Set the learned state to ``transform(current statistics)``, atomically: every
        component's lock (a shared one's too, such as the clustering's) is held from the read
        to the write. ``sync_base`` is ``(store, base_of)``: the store's sync base becomes
        ``base_of(the statistics after the update)`` in the same step, so that a state saved
        meanwhile holds both or neither."""
        with self.lock, ExitStack() as held:
            for part in self.shared.values():
                lock = getattr(part, "lock", None)
                if lock is not None:
                    held.enter_context(lock)
            merged = transform(self.statistics())
            components = self._components()
            # all or nothing: a component that refuses the merge (say, clusters from another
            # centre) must not leave the others holding a total that no sync base records
            restorable = {name: cast(_Restorable, part) for name, part in components.items()}
            saved = {name: copy.deepcopy(held_part.state_dict()) for name, held_part in restorable.items()}
            try:
                for name, part in components.items():
                    part.load_statistics(merged.under(name))
            except BaseException:
                for name, restoring in restorable.items():
                    restoring.load_state_dict(saved[name])
                raise
            if sync_base is not None:
                store, base_of = sync_base
                self.sync_bases_[store] = base_of(self.statistics())

    def sync_base(self, store: str) -> Statistics | None:
        """The total adopted from ``store`` at the last sync (``None``: never synced with it)."""
        with self.lock:
            return self.sync_bases_.get(store)

    # ---- saving -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "policy": self.policy_.state_dict(),
                "energy": self.energy_.state_dict(),
                "latency": self.latency_.state_dict(),
                "normalizer": self.normalizer_.state_dict(),
                "energy_scale": self._scale,
                "pending": self.pending_.state_dict(),
                "stats": self.tallies_.state_dict(),
                "budget": None if self.pacer_ is None else self.pacer_.state_dict(),
                "escalation": self.escalation_.state_dict(),
                "removed_at": dict(self.removed_at_),
                "scored_before": dict(self.scored_before_),
                "sync_bases": {
                    store: base64.b64encode(base.to_bytes()).decode() for store, base in self.sync_bases_.items()
                },
            }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; models of this learner missing from it join as new arms."""
        with self.lock:
            arms = self.policy_.arms
            unknown = sorted(set(state["policy"]["arms"]) - set(arms))
            if unknown:
                raise UnknownModelError(f"saved state has models {unknown} that this learner does not have")
            scale = state.get("energy_scale", "seen")  # saved before the scale was recorded: "seen"
            if scale not in ENERGY_SCALES:
                raise StateFileError(f"saved state has energy scale {scale!r}; this version knows {ENERGY_SCALES}")
            saved_removals = (
                state["removed_at"] if "removed_at" in state else _removals_of_generations(state, self._now())
            )
            self.policy_.load_state_dict(state["policy"])
            replace_prior = getattr(self.policy_, "replace_prior", None)
            if callable(replace_prior):  # the models' priors now, not those saved (a model card may have changed)
                for name in state["policy"]["arms"]:
                    replace_prior(name, self.priors_.get(name))
            self.energy_.load_state_dict(state["energy"])
            self.latency_.load_state_dict(state["latency"])
            joined = [name for name in arms if name not in self.policy_.arms_]
            armed: dict[str, Shareable] = {"policy": self.policy_, "energy": self.energy_, "latency": self.latency_}

            def arm_keys() -> set[str]:
                try:
                    return set(Statistics.join({n: part.statistics() for n, part in armed.items()}).sums)
                except SharingNotSupportedError:  # (then nothing is shared, and no key matters)
                    return set()

            saved_keys = arm_keys()
            for name in joined:
                self.policy_.add_arm(name, self.priors_.get(name))
                self.energy_.add_model(name)
                self.latency_.add_model(name)
            # what the joined models bring (fresh arms; tallies the saved state lacks) is not the
            # saved state's: left out of loaded_statistics_, so that replicas loaded from one file
            # with other models new to it still push it once between them
            fresh_keys = arm_keys() - saved_keys
            fresh_tallies = Tallies()
            for name in joined:
                if name not in state["stats"]:
                    fresh_tallies.add_model(name)
            fresh_keys |= set(Statistics.join({"tallies": fresh_tallies.statistics()}).sums)
            self.normalizer_.load_state_dict(state["normalizer"])
            self._scale = scale
            self.pending_.load_state_dict(state["pending"])
            self.tallies_.load_state_dict(state["stats"])  # a removed model's tallies too: they are history
            if self.pacer_ is not None and state.get("budget") is not None:
                self.pacer_.load_state_dict(state["budget"])
            if state.get("escalation") is not None:
                escalation = state["escalation"]
                # states saved before 2026-12-05 (10b83eb) keep the labelled escalations at the top level
                if "labelled_thens" not in escalation and "labelled_thens" in state:
                    escalation = {**escalation, "labelled_thens": state["labelled_thens"]}
                self.escalation_.load_state_dict(escalation)
            self.removed_at_ = {**self.removed_at_, **{str(k): float(v) for k, v in (saved_removals or {}).items()}}
            self.scored_before_ = {str(k): float(v) for k, v in (state.get("scored_before") or {}).items()}
            for name in joined:  # a model the saved state does not know: the name's tallies are not its own
                if name in self.tallies_.counts_:
                    self._joined_again(name)
            self.sync_bases_ = {
                str(store): Statistics.from_bytes(base64.b64decode(base))
                for store, base in (state.get("sync_bases") or {}).items()
            }
            try:  # kept for a first push to a shared store; a policy that cannot share loads all the same
                held = self.statistics()
            except SharingNotSupportedError:
                self.loaded_statistics_ = None
            else:
                self.loaded_statistics_ = Statistics(
                    sums={key: value for key, value in held.sums.items() if key not in fresh_keys},
                    minima={key: value for key, value in held.minima.items() if key not in fresh_keys},
                    maxima={key: value for key, value in held.maxima.items() if key not in fresh_keys},
                )


def _removals_of_generations(state: Mapping[str, Any], now: float) -> dict[str, float]:
    """When each name left the pool, for a state saved before 2026-12-05 (13acf61), which told the
    models under one name apart by ``generations`` (how many times the name joined) and each
    pending decision's ``generation``: the latest decision of a model removed since, so that its
    decisions come before the removal and those of the model now under the name after. A state
    whose decisions of the two are not in that order cannot be translated (:class:`StateFileError`)."""
    generations = state.get("generations") or {}
    if not generations:
        return {}
    arms = set(state["policy"]["arms"])
    pending = state["pending"]
    if pending.get("store") == "redis":  # its decisions are in Redis, not in the file: none pending counts for
        changed = sorted(str(name) for name, joined in generations.items() if int(joined) > 1 or name not in arms)
        if changed:  # a name that changed hands (a late score is dropped rather than given to the wrong model)
            logger.warning(
                "the saved state tells the models under %s apart by generations (as saved before 2026-12-05) and "
                "keeps its pending decisions in Redis, which cannot be told apart by time: their late scores for "
                "these names are not learned",
                changed,
            )
        return dict.fromkeys(changed, now)
    stale: dict[str, list[float]] = {}  # the decisions of a model removed since, by name
    current: dict[str, list[float]] = {}
    for item in [*pending.get("items", []), *pending.get("awaiting", [])]:
        name, made, generation = str(item["model"]), float(item["created_at"]), item.get("generation")
        removed = name not in arms or (generation is not None and int(generation) != int(generations.get(name, 1)))
        (stale if removed else current).setdefault(name, []).append(made)
    removals: dict[str, float] = {}
    for name, times in stale.items():
        removals[name] = max(times)
        if any(later <= removals[name] for later in current.get(name, [])):
            raise StateFileError(
                f"the saved state tells the models under the name {name!r} apart by generations (as saved "
                "before 2026-12-05), and a decision pending for the model removed is not older than one for "
                "the model now under it: this version cannot tell them apart; give feedback for the pending "
                "decisions (or let them expire) with the version that saved the state, then save it again"
            )
    return removals


def _accuracy(estimate: float) -> float:
    """A policy's accuracy estimate within [0, 1], as the first answer's confidence where it
    gives none (a linear estimate may pass 1 by a rounding error, or by far early on)."""
    return min(1.0, max(0.0, float(estimate)))
