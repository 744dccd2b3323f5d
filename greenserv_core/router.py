"""``GreenServRouter``: features → eligibility → policy → model → outcome → feedback.

The router is a facade over the rooms of :mod:`greenserv_core.routing`: a
:class:`~greenserv_core.routing.RouteRequest` is checked once, the feature extractor turns
its messages into a context, the :class:`~greenserv_core.routing.RoutingLearner` decides
among the models the eligibility rules allow, and the
:class:`~greenserv_core.routing.Executor` runs the chosen model, failing over when it is
unavailable. How the reward is learned from partial, late feedback is told in
:mod:`greenserv_core.routing.learner`.

Example, with fake models and the dependency-free hashing embedder::

    >>> from greenserv_core import FakeBackend, FeatureExtractor, GreenServRouter
    >>> from greenserv_core.features import HashingEmbedder, TaskClassifier
    >>> embedder = HashingEmbedder(64)
    >>> clf = TaskClassifier().fit(embedder.embed(["2+2?", "hi there"]), ["math", "chat"], embedder.name)
    >>> router = GreenServRouter(
    ...     [FakeBackend("small", joules_per_token=1.0), FakeBackend("large", joules_per_token=9.0)],
    ...     features=FeatureExtractor(embedder, clf), tradeoff=0.4, seed=0)
    >>> answer = router.generate([{"role": "user", "content": "What is 2+2?"}])
    >>> answer.model in {"small", "large"}, answer.energy_source
    (True, 'fake')
    >>> router.feedback(answer.decision_id, 1.0).applied
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import operator
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from typing_extensions import Unpack

from greenserv_core.backends.base import ModelBackend, check_backend
from greenserv_core.bandits import DEFAULT_POLICY, Policy, make_policy
from greenserv_core.bandits.base import check_seed
from greenserv_core.bandits.registry import check_policy_params
from greenserv_core.budget import BudgetPacer, BudgetStatus, EnergyBudget, as_energy_budget, check_max_joules
from greenserv_core.cascades import CascadeBackend, EscalationModel, Verdict, cascade_name
from greenserv_core.cascades.backend import cascade_settings
from greenserv_core.confidence import ConfidenceSignal, VerifyingSignal, signal_from_name
from greenserv_core.errors import InvalidInputError, StateFileError, UnknownModelError
from greenserv_core.features.bundled import bundled_name
from greenserv_core.features.extractor import FeatureExtractor, QueryFeatures
from greenserv_core.messages import Message
from greenserv_core.outcomes import CostModel
from greenserv_core.pending import PendingStore
from greenserv_core.reward import DEFAULT_TRADEOFF, EnergyNormalizer, check_tradeoff
from greenserv_core.routing import (
    BatchOptions,
    Executor,
    FeedbackRecord,
    GenerateOptions,
    LabelledAnswer,
    Limits,
    RoutedChunk,
    RoutedGeneration,
    RouteOptions,
    RouteRequest,
    RoutingDecision,
    RoutingLearner,
    check_positive,
)
from greenserv_core.routing.energy_costs import EnergyScaleName
from greenserv_core.routing.executor import LearnedEscalation
from greenserv_core.routing.learner import check_decision_id
from greenserv_core.routing.pool import ModelPool
from greenserv_core.routing.priors import arm_prior
from greenserv_core.routing.results import BackendRef
from greenserv_core.routing.saved import read_router_state, state_errors, write_router_state
from greenserv_core.statistics import Statistics
from greenserv_core.tools import with_tools_prompt

__all__ = ["FeedbackRecord", "GreenServRouter", "RoutedChunk", "RoutedGeneration", "RoutingDecision"]

T = TypeVar("T")


def _policy(policy: Policy | str, dimension: int, seed: int | None, params: Mapping[str, Any]) -> Policy:
    if not isinstance(policy, Policy):
        check_policy_params(params, "policy_params")  # the router's own: its seed, its features' size, the name
        return make_policy(policy, dimension, seed=seed, **params)
    if params:
        raise InvalidInputError("policy_params apply to a policy given by name, not to a Policy instance")
    if policy.arms:
        raise InvalidInputError(f"the policy given already has arms {policy.arms}: give a fresh one (one per router)")
    return policy


class _FromLearner(Generic[T]):
    """A read-only attribute of the router that is the learner's (``policy_``, ``stats_`` …)."""

    def __init__(self, path: str) -> None:
        self.get = operator.attrgetter(f"learner_.{path}")

    @overload
    def __get__(self, router: None, owner: type) -> _FromLearner[T]: ...
    @overload
    def __get__(self, router: GreenServRouter, owner: type | None = None) -> T: ...
    def __get__(self, router: GreenServRouter | None, owner: type | None = None) -> T | _FromLearner[T]:
        if router is None:  # on the class: the descriptor itself (help(), documentation tools)
            return self
        value: T = self.get(router)
        return value


logger = logging.getLogger("greenserv")


_LEARNED_CLUSTERS = ("centre", "centroids", "counts", "prior_sums", "prior_counts")
"""What a clustering learned (:meth:`OnlineKMeans.state_dict`), compared by :func:`_check_same_contexts`."""


def _check_same_contexts(new: FeatureExtractor, old: FeatureExtractor) -> None:
    """A feature extractor may replace the router's only if it builds the same contexts
    (length and task types, and, where both learned clusters, the same clusters): the policy
    and its priors learned on those."""
    now, given = (old.dimension, tuple(old.task_types)), (new.dimension, tuple(new.task_types))
    if given != now:
        raise InvalidInputError(
            f"the feature extractor builds contexts of {given[0]} entries with task types {list(given[1])}; "
            f"the router's policy learned on {now[0]} entries with {list(now[1])}: make a new router to change them"
        )
    same_meaning = new.feature_names() == old.feature_names() and new.layout_fingerprint() == old.layout_fingerprint()
    if not same_meaning:  # as long, but its entries mean other things (clusters, bins, encoding, embedder)
        raise InvalidInputError(
            "the feature extractor's context entries mean other things than the router's (its embedder, "
            "clusters, reading-ease bins or task encoding differ): make a new router to change them"
        )
    learned, given_clusters = old.state_dict()["clusterer"], new.state_dict()["clusterer"]
    if new is not old and learned["centroids"] is not None and given_clusters["centroids"] is not None:
        as_lists = [
            {key: None if clusters[key] is None else clusters[key].tolist() for key in _LEARNED_CLUSTERS}
            for clusters in (learned, given_clusters)
        ]
        if as_lists[0] != as_lists[1]:
            raise InvalidInputError(
                "the feature extractor has learned other clusters than the router's, whose cluster numbers the "
                "policy learned on: give one that has learned none (it takes the router's clusters) or the same"
            )


def _saved_signal(
    name: str, given: Mapping[str, ConfidenceSignal | VerifyingSignal], cascade: str
) -> ConfidenceSignal | VerifyingSignal:
    """The confidence signal a saved cascade used: one of ``given`` by its name, or a bundled one."""
    if name in given:
        return given[name]
    try:
        return signal_from_name(name)
    except InvalidInputError:
        raise StateFileError(
            f"the cascade {cascade!r} was saved with the confidence signal {name!r}, which is not bundled: "
            "pass it to load(..., cascade_signals=[your_signal])"
        ) from None


class GreenServRouter:
    """Routes each query to one model of a pool and learns online which choice pays off.

    Parameters are stored as given: ``policy`` (a name such as ``"linucb"`` or
    ``"static:MODEL"``, or a fresh :class:`Policy` instance, which then learns in place and
    keeps its own ``seed``; ``strategy`` is the older name of the same parameter),
    ``tradeoff`` λ, ``energy_budget`` (joules per query as a number, text such as
    ``"50J/query"`` or ``"2Wh/h"``, an :class:`~greenserv_core.budget.EnergyBudget`, or a
    :class:`~greenserv_core.budget.BudgetPacer` with its settings: the router then sets λ for
    each query so that it spends up to the budget and no more; ``tradeoff`` only starts λ for
    a budget given as a number, text or an ``EnergyBudget``, and a pacer starts at its own
    ``initial_tradeoff``, with ``tradeoff`` unused), ``max_joules`` (a cap on each query's
    predicted joules), ``seed``, ``max_latency_s``, ``policy_params``, ``embedder`` (the bundled
    embedder of the default features: ``"static"``, the default, or ``"minilm"``; or give
    ``features``),
    ``energy_scale``
    (``"known"``, the default: joules normalised by the range known per task type, measured
    or predicted for a model of the pool; ``"seen"``: by the range measured, or an
    :class:`EnergyNormalizer` whose copy starts that range; ``"pool"``: by the spread of the
    pool's predicted joules for each query; see
    :data:`~greenserv_core.routing.energy_costs.ENERGY_SCALES`) and the ``pending`` store
    (default: ``max_pending`` decisions kept ``pending_ttl_s`` seconds in the process; a
    :class:`~greenserv_core.sharing.RedisPendingDecisions` lets feedback reach any replica).
    ``cascades`` (pairs of model names; see :meth:`add_cascade`) are offered with
    ``cascade_signal`` (a confidence signal, or its name such as ``"self-verification"``;
    default: chosen by answer length); ``escalation`` is the model that learns when a cascade
    escalates (default: a fresh :class:`~greenserv_core.cascades.EscalationModel`). Learned
    state lives in ``learner_``
    (:class:`RoutingLearner`) and the feature extractor's clustering. All public methods are
    thread-safe; model calls and embedding run outside the learner's lock.
    """

    def __init__(
        self,
        models: Sequence[ModelBackend],
        *,
        policy: Policy | str | None = None,
        strategy: str | None = None,
        tradeoff: float = DEFAULT_TRADEOFF,
        features: FeatureExtractor | None = None,
        seed: int | None = None,
        max_latency_s: float | None = None,
        policy_params: Mapping[str, Any] | None = None,
        max_pending: int = 100_000,
        pending_ttl_s: float = 7 * 24 * 3600.0,
        pending: PendingStore | None = None,
        energy_scale: EnergyNormalizer | EnergyScaleName | None = None,
        embedder: str | None = None,
        energy_budget: EnergyBudget | BudgetPacer | str | float | None = None,
        max_joules: float | None = None,
        cascades: Sequence[tuple[str, str]] = (),
        cascade_signal: ConfidenceSignal | VerifyingSignal | str | None = None,
        escalation: EscalationModel | None = None,
    ) -> None:
        if features is not None and embedder is not None:
            raise InvalidInputError("give features= or embedder= (a bundled embedder's name), not both")
        if policy is not None and strategy is not None:
            raise InvalidInputError("give policy= or its older name strategy=, not both")
        chosen = policy if policy is not None else (strategy or DEFAULT_POLICY)
        self.policy, self._tradeoff, self.seed = chosen, check_tradeoff(tradeoff), check_seed(seed)
        self.max_latency_s = check_positive("max_latency_s", max_latency_s)
        self.energy_budget = as_energy_budget(energy_budget)
        self.max_joules = check_max_joules(max_joules)
        if policy_params is not None and not isinstance(policy_params, Mapping):
            raise InvalidInputError(f"policy_params must be a mapping of parameter names, got {policy_params!r}")
        self.policy_params = dict(policy_params or {})
        self._features = features if features is not None else FeatureExtractor.default(embedder=embedder)
        built = _policy(chosen, self.features.dimension, seed, self.policy_params)
        self.strategy = chosen if isinstance(chosen, str) else built.name
        self.learner_ = RoutingLearner(
            built,
            dimension=self.features.dimension,
            pending=pending,
            max_pending=max_pending,
            pending_ttl_s=pending_ttl_s,
            energy_scale=energy_scale,
            shared={"clusters": self.features},
            energy_budget=self._paced_budget(),
            escalation=escalation if escalation is not None else EscalationModel(self.features.dimension, seed=seed),
        )
        self._executor = Executor(
            functools.partial(self._route, under_way=True),
            self.backend,
            self.learner_,
            lambda request, features: self.features.forget(request.messages, features),
        )
        self._backends: dict[str, ModelBackend] = {}
        """The pool's backends by name; replaced, never changed, when the pool changes."""
        self._pool: ModelPool | None = None
        """The pool as columns, made again on the first query after a change."""
        self._pool_lock = threading.RLock()  # (held by learning_paused() around a save, which takes it again)
        if not models:
            raise InvalidInputError("a router needs at least one model")
        for model in models:
            self.add_model(model)
        if isinstance(cascades, (str, Mapping)) or not isinstance(cascades, Sequence):
            raise InvalidInputError(f"cascades must be a list of (first model, second model) pairs, got {cascades!r}")
        for pair in cascades:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InvalidInputError(f"a cascade is a pair (first model, second model), got {pair!r}")
        self.cascades = [(pair[0], pair[1]) for pair in cascades]
        signal = signal_from_name(cascade_signal) if isinstance(cascade_signal, str) else cascade_signal
        for first, then in self.cascades:
            self.add_cascade(first, then, signal=signal)

    def _paced_budget(self) -> BudgetPacer | EnergyBudget | None:
        """The budget for the learner; a bare budget starts at the router's λ, a pacer at its
        own ``initial_tradeoff`` (a ``tradeoff`` given that differs is said to be unused)."""
        if isinstance(self.energy_budget, EnergyBudget):
            return BudgetPacer(self.energy_budget, initial_tradeoff=self.tradeoff)
        pacer = self.energy_budget
        if pacer is not None and self.tradeoff != DEFAULT_TRADEOFF and self.tradeoff != pacer.initial_tradeoff:
            logger.warning(
                "tradeoff=%g is not used: the BudgetPacer given as energy_budget starts at its own "
                "initial_tradeoff=%g (give BudgetPacer(..., initial_tradeoff=%g) to start it there)",
                self.tradeoff,
                pacer.initial_tradeoff,
                self.tradeoff,
            )
        return pacer

    @property
    def budget_(self) -> BudgetStatus | None:
        """What the energy budget stands at now (``None`` without one). Reading it starts
        nothing: a window budget's first window opens at the first decision."""
        pacer = self.learner_.pacer_
        if pacer is None:
            return None
        with self.learner_.lock:
            return pacer.status(starting=False)

    @property
    def tradeoff(self) -> float:
        """λ for queries that give none, when the router has no energy budget (checked when set)."""
        return self._tradeoff

    @tradeoff.setter
    def tradeoff(self, value: float) -> None:
        self._tradeoff = check_tradeoff(value)

    @property
    def features(self) -> FeatureExtractor:
        """The feature extractor; its clustering is learned state, shared with replicas."""
        return self._features

    @features.setter
    def features(self, extractor: FeatureExtractor) -> None:
        """Replace the feature extractor by one that builds the same contexts. An extractor
        that has learned no clusters takes the router's (the policy learned on their numbers);
        one that has learned other clusters than the router's is refused
        (:class:`InvalidInputError`). Both extractors' locks are taken in one order (by
        ``id``), so that two routers swapping extractors with each other cannot deadlock."""
        with self.learner_.lock, contextlib.ExitStack() as held:
            for part in sorted({id(e): e for e in (self._features, extractor)}.values(), key=id):
                held.enter_context(part.lock)
            _check_same_contexts(extractor, self._features)
            learned = self._features.state_dict()
            if learned["clusterer"]["centroids"] is not None and extractor.clusterer.centroids_ is None:
                extractor.load_state_dict(learned)
            self._features = extractor
            self.learner_.shared["clusters"] = extractor

    # ---- the pool ---------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        """The single models of the pool (not the cascades; see :attr:`arms`)."""
        return [name for name, backend in self._backends.items() if not isinstance(backend, CascadeBackend)]

    @property
    def cascade_pairs(self) -> list[tuple[str, str]]:
        """The cascades offered now, as ``(first, then)`` pairs: those given, as models were
        added or removed since, and those added with :meth:`add_cascade` (``cascades`` is the
        parameter as given)."""
        return [
            (backend.first.info.name, backend.then.info.name)
            for backend in self._backends.values()
            if isinstance(backend, CascadeBackend)
        ]

    @property
    def arms(self) -> list[str]:
        """Everything the policy chooses among: the models, then the cascades."""
        return list(self._backends)

    def add_cascade(
        self,
        first: str,
        then: str,
        *,
        signal: ConfidenceSignal | VerifyingSignal | None = None,
        threshold: float = 0.5,
        keep_first_on_failure: bool = True,
    ) -> str:
        """Let the router answer with ``first`` and escalate to ``then`` when it learns that
        pays; returns the cascade's name (``"first->then"``), an arm from now on.

        The cascade competes with both models as an arm of the same decision; whether it
        escalates after ``first``'s answer is learned from that answer's confidence
        (``signal``; default: by answer length, see
        :func:`~greenserv_core.confidence.signal_for_task`). Its record lists the chain.
        ``threshold`` is the fixed rule used where no learned one applies, and
        ``keep_first_on_failure`` keeps ``first``'s answer when ``then`` fails (see
        :class:`~greenserv_core.cascades.CascadeBackend`); both are saved with the router.

        >>> from greenserv_core import FakeBackend, FeatureExtractor
        >>> from greenserv_core.features import HashingEmbedder, TaskClassifier
        >>> embedder = HashingEmbedder(64)
        >>> clf = TaskClassifier().fit(embedder.embed(["2+2?", "hi there"]), ["math", "chat"], embedder.name)
        >>> router = GreenServRouter([FakeBackend("small"), FakeBackend("big")],
        ...                          features=FeatureExtractor(embedder, clf), seed=0)
        >>> router.add_cascade("small", "big"), router.arms
        ('small->big', ['small', 'big', 'small->big'])
        """
        cascade = CascadeBackend(
            self.backend(first),
            self.backend(then),
            signal=signal,
            threshold=threshold,
            keep_first_on_failure=keep_first_on_failure,
        )
        self.add_model(cascade)
        return cascade.info.name

    def backend(self, name: str) -> ModelBackend:
        backends = self._backends
        if not isinstance(name, str) or name not in backends:  # (a list is no name, and cannot be looked up)
            raise UnknownModelError(f"unknown model {name!r}; the pool is {list(backends)}")
        return backends[name]

    def add_model(self, backend: ModelBackend) -> None:
        """Add a model at runtime; it starts from the policy's prior (and its ``info.quality``
        prior, if any) and gets explored."""
        name = check_backend(backend).info.name
        with self._pool_lock:
            if name in self._backends:
                raise InvalidInputError(f"model {name!r} is already in the pool")
            if isinstance(backend, CascadeBackend):
                first, then = backend.first.info.name, backend.then.info.name
                for member in (backend.first, backend.then):
                    if self._backends.get(member.info.name) is not member:
                        raise InvalidInputError(
                            f"the cascade {name!r} runs {member.info.name!r}, which is not this model of the pool"
                        )
                self.learner_.add_cascade(name, first, then)
                self._backends = {**self._backends, name: backend}
                return
            quality = backend.info.quality
            if quality is not None and not self.learner_.policy_.takes_priors:
                logger.warning("model %r: the %r policy takes no quality prior; it is ignored", name, self.strategy)
                quality = None
            self.learner_.add_arm(name, None if quality is None else arm_prior(quality, self.features))
            cascades = {n: b for n, b in self._backends.items() if isinstance(b, CascadeBackend)}
            models = {n: b for n, b in self._backends.items() if n not in cascades}
            self._backends = {**models, name: backend, **cascades}  # the models, then the cascades (as load builds it)

    def remove_model(self, name: str) -> None:
        """Remove a model or a cascade; it is never chosen again, and neither is any cascade
        through the model. Pending feedback for it is accepted and ignored, even after another
        model joins under its name."""
        with self._pool_lock:
            self.backend(name)
            gone = {name} | {
                arm
                for arm, backend in self._backends.items()
                if isinstance(backend, CascadeBackend) and name in (backend.first.info.name, backend.then.info.name)
            }
            if not any(arm not in gone for arm in self._backends):
                raise InvalidInputError(f"cannot remove {name!r}: it is the last model in the pool")
            self._backends = {n: b for n, b in self._backends.items() if n not in gone}
            for arm in sorted(gone - {name}):
                self.learner_.remove_arm(arm)
            self.learner_.remove_arm(name)

    # ---- deciding and learning ----------------------------------------------------------
    def route(self, messages: Sequence[Message] | str, **options: Unpack[RouteOptions]) -> RoutingDecision:
        """Choose a model for ``messages`` without calling it (options: :class:`RouteOptions`).

        When you call the model yourself, report its cost with :meth:`record_outcome`. If no
        model has a capability in ``requires``, the error says which.
        """
        request = RouteRequest.build(messages, options, "route")
        return self._route(request, {}, request.decision_id)

    def _model_pool(self) -> ModelPool:
        """The :class:`ModelPool` of the current backends (made again after the pool changed)."""
        backends, pool = self._backends, self._pool
        if pool is None or pool.backends is not backends:
            pool = self._pool = ModelPool(backends)
        return pool

    def _route(
        self,
        request: RouteRequest,
        failed: Mapping[str, str],
        decision_id: str | None,
        features: QueryFeatures | None = None,
        *,
        under_way: bool = False,
    ) -> RoutingDecision:
        """Route ``request`` among the models that have not ``failed`` it (with ``features``
        already extracted for an earlier attempt, else extracted now); ``under_way``: the
        router runs the answer itself (:meth:`RoutingLearner.decide`)."""
        pool = self._model_pool()
        backends = pool.backends
        unknown = sorted(request.models - set(backends)) if request.models is not None else []
        if unknown or request.models == frozenset():
            raise UnknownModelError(f"unknown model(s) {unknown or '[]'}; the pool is {list(backends)}")
        rerouting = bool(failed)  # the query's own id, held while it is routed again
        self.learner_.check_new_id(decision_id, rerouting=rerouting)
        lam = request.tradeoff
        if lam is None and self.learner_.pacer_ is None:
            lam = self.tradeoff
        limit = self.max_latency_s if request.max_latency_s is None else request.max_latency_s
        cap = self.max_joules if request.max_joules is None else request.max_joules
        counted = with_tools_prompt(request.messages, request.settings.tools)
        wanted = request.models  # models not requested are not tokenised, but a requested cascade's are
        if wanted is not None:
            wanted = wanted | {m for name in wanted for m in self.learner_.cascades_.get(name, ())}
        candidates = pool.candidates(counted, wanted, request.settings.max_new_tokens)
        limits = Limits(request.settings.max_new_tokens, request.models, failed, request.requires, limit, cap)
        with contextlib.ExitStack() as extracted:
            if features is None:  # (refused: no eligible model, an id in use, ...: it moves no centroid)
                features = extracted.enter_context(self._features_of(request.messages))
            decision = self.learner_.decide(
                features, candidates, limits, lam, decision_id, rerouting=rerouting, under_way=under_way
            )
        return dataclasses.replace(decision, chosen=BackendRef(backends.get(decision.model)))  # checked for it

    def escalate(
        self,
        decision_id: str,
        confidence: float | None,
        *,
        signal: str | None = None,
        spent_joules: float | None = None,
        spent_seconds: float | None = None,
    ) -> Verdict:
        """For a decision routed to a cascade that you run yourself: after its first answer,
        whether to escalate, from the answer's ``confidence`` in [0, 1] (``None``: no
        signal), read by the signal named ``signal`` (e.g. ``"answer-probability"``; signals of
        other scales each have a correction of their own; ``None``: the one they share).
        ``spent_joules`` and ``spent_seconds``: what the first step spent and took (its answer,
        and a question asked about it, as ``"self-verification"`` asks), so that an escalation
        that would break the query's ``max_joules`` or ``max_latency_s`` keeps the first answer,
        as :meth:`generate` does (without them only the predictions are checked). Then
        report the summed cost with :meth:`record_outcome` (with each model's own cost as its
        ``members``), and, when it escalated, whether both answers agree with
        :meth:`record_agreement`. Where its second model fails and the first answer is kept,
        say so before the score comes: ``escalation_rule(decision_id).kept_after_failure()``,
        or hand the cascade :meth:`escalation_rule`, which calls both for you."""
        return self.learner_.escalate(
            decision_id, confidence, signal=signal, spent_joules=spent_joules, spent_seconds=spent_seconds
        )

    def escalation_rule(self, decision_id: str) -> LearnedEscalation:
        """For a decision routed to a cascade that you run yourself: its learned escalation
        rule, to hand to the cascade as :meth:`generate` does. It decides as :meth:`escalate`
        and hears when the second model fails and the first answer is kept, so that the score
        labels the answer that was given, whichever of score and outcome comes first.

        >>> from greenserv_core import FakeBackend
        >>> from greenserv_core.backends.base import GenerationSettings
        >>> router = GreenServRouter([FakeBackend("small"), FakeBackend("big")], cascades=[("small", "big")])
        >>> ask = [{"role": "user", "content": "What is 2 + 2?"}]
        >>> decision = router.route(ask, models=["small->big"])
        >>> rule = router.escalation_rule(decision.decision_id)
        >>> answer = router.backend("small->big").generate(ask, GenerationSettings(max_new_tokens=8), rule)
        >>> answer.chain[0].model
        'small'
        """
        check_decision_id(decision_id)
        with self.learner_.lock:  # the store evicts as it reads: never beside a route's add
            pending = self.learner_.pending_.get(decision_id)
        cascade = self._backends.get(pending.model)
        if isinstance(cascade, CascadeBackend):
            return LearnedEscalation(self.learner_, decision_id, cascade)
        if pending.cascade is None:
            raise InvalidInputError(f"decision {decision_id!r} was routed to {pending.model!r}, not to a cascade")
        # a cascade removed while its decision is pending: the learner keeps the first answer, as escalate() does
        return LearnedEscalation(self.learner_, decision_id, None)

    def record_agreement(self, decision_id: str, agreed: bool) -> None:
        """For an escalated cascade: whether the second answer agrees with the first (the
        stated proxy that labels the first answer, which nobody scores)."""
        self.learner_.record_agreement(decision_id, agreed)

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
        """Teach the cost models what a routed generation spent (once per decision). For a
        cascade run by hand (:meth:`escalate`), ``members`` are ``(model, joules, seconds)`` of
        each model it ran (its first model's answer, and the second's if it escalated), as
        :meth:`generate` teaches them; one member means the first answer was kept.
        ``cut_by_time``: the answer was cut by its own time limit (a server's ``max_time``),
        so its seconds are a lower bound and teach the latency model only where they exceed
        its prediction or it has none, as :meth:`generate` does with ``max_time_s``.

        A decision the router no longer holds (it left the pending store: ``pending_ttl_s``
        or ``max_pending``) raises :class:`UnknownDecisionError`, and nothing learns or counts
        its joules, the energy budget included: the router cannot tell it from an id it never
        made, or from one whose joules it already counted. Record outcomes as they come.
        """
        if not isinstance(cut_by_time, bool):
            raise InvalidInputError(f"cut_by_time must be True or False, got {cut_by_time!r}")
        self.learner_.record_outcome(
            decision_id,
            energy_joules=energy_joules,
            latency_s=latency_s,
            energy_source=energy_source,
            members=members,
            cut_by_time=cut_by_time,
        )

    def feedback(self, decision_id: str, score: float) -> FeedbackRecord:
        """Score a decision's answer in [0, 1] (1 = correct/helpful). Once per decision.

        Raises :class:`UnknownDecisionError` (a ``KeyError``) for an unknown or expired id,
        :class:`DecisionAlreadyScoredError` for a second score, and
        :class:`DecisionStillAnsweringError` for a decision this router is still answering
        before any of its answer came (its model may yet fail and the query go to another;
        nothing is learned: score it once the answer has come). A stream may be scored from
        its first piece on; a replica sharing the pending store does not know what another is
        answering, and takes such a score at once.
        """
        return self.learner_.feedback(decision_id, score)

    def learn(
        self,
        messages: Sequence[Message] | str,
        model: str,
        *,
        score: float | None = None,
        energy_joules: float | None = None,
        latency_s: float | None = None,
    ) -> None:
        """Teach the router an outcome it did not route: ``model`` answered ``messages``
        and scored ``score`` in [0, 1], spending ``energy_joules`` in ``latency_s``.

        Use it to warm-start from labelled outcomes, e.g. rows of an outcome table collected
        with ``greenserv bench collect`` on a few queries per task. Each part is optional.

        >>> from greenserv_core import FakeBackend, FeatureExtractor
        >>> from greenserv_core.features import HashingEmbedder, TaskClassifier
        >>> embedder = HashingEmbedder(64)
        >>> clf = TaskClassifier().fit(embedder.embed(["2+2?", "hi there"]), ["math", "chat"], embedder.name)
        >>> router = GreenServRouter([FakeBackend("small"), FakeBackend("large")],
        ...                          features=FeatureExtractor(embedder, clf), seed=0)
        >>> router.learn("What is 2+2?", "large", score=1.0, energy_joules=9.0, latency_s=0.5)
        >>> router.stats_["large"]["decisions"], router.learner_.policy_.arms_["large"].n
        (0, 1)
        """
        self.backend(model)
        with self._features_of(messages, learn=self._forms_clusters()) as features:
            self.learner_.learn(features, model, score=score, energy_joules=energy_joules, latency_s=latency_s)

    @contextlib.contextmanager
    def _features_of(self, messages: Sequence[Message] | str, *, learn: bool = True) -> Iterator[QueryFeatures]:
        """The features of ``messages`` (learned by the clustering where ``learn``), taken back
        from the clustering if the block raises: a query or labelled row the router refused
        moves no centroid (:meth:`FeatureExtractor.forget`)."""
        extractor = self.features
        features = extractor.extract(messages, learn=learn)
        try:
            yield features
        except Exception:
            if learn:
                try:
                    extractor.forget(messages, features)
                except Exception as error:  # (an embedder away): the refusal is what is raised
                    logger.warning("the clustering kept a refused query's step: %r", error)
            raise

    def _forms_clusters(self) -> bool:
        """Whether a labelled row's prompt is learned by the clustering: a labelled row is not
        live traffic, except that it forms the clusters not yet formed, as the first queries
        would (else every row taught before them is taught in cluster 0, a context the queries
        of other topics never get)."""
        return not self.features.clusterer.formed

    def learn_answers(
        self, messages: Sequence[Message] | str, answers: Mapping[str, LabelledAnswer]
    ) -> dict[str, bool]:
        """Teach the router every model's labelled answer to one query it did not route: a
        warm start from an outcome table, one :class:`LabelledAnswer` per model (a row each).

        Each model learns its answer as with :meth:`learn`. Each cascade whose two models both
        answered learns what it would have done at the router's λ (with a budget, the λ in
        force): its rule, as learned so far, keeps the first answer or escalates, and the
        cascade is taught that outcome's score and joules. The first answer's confidence is
        labelled with its score, uncensored. Under the router's ``max_joules`` (or
        ``max_latency_s``), a cascade whose models together are predicted to break it keeps the
        first answer, as when routed.
        Returns each taught cascade's verdict (``True``: escalated).

        >>> from greenserv_core import FakeBackend, FeatureExtractor, LabelledAnswer
        >>> from greenserv_core.features import HashingEmbedder, TaskClassifier
        >>> embedder = HashingEmbedder(64)
        >>> clf = TaskClassifier().fit(embedder.embed(["2+2?", "hi there"]), ["math", "chat"], embedder.name)
        >>> router = GreenServRouter([FakeBackend("small"), FakeBackend("large")],
        ...                          features=FeatureExtractor(embedder, clf), cascades=[("small", "large")], seed=0)
        >>> router.learn_answers("What is 2+2?", {
        ...     "small": LabelledAnswer(score=0.0, energy_joules=1.0, latency_s=0.1, confidence=0.3),
        ...     "large": LabelledAnswer(score=1.0, energy_joules=9.0, latency_s=0.5)})
        {'small->large': True}
        >>> router.learner_.policy_.arms_["small->large"].n
        1
        """
        if not isinstance(answers, Mapping) or not answers:
            raise InvalidInputError(
                f"answers must map each model's name to its LabelledAnswer (at least one), got {answers!r}"
            )
        for model in answers:
            if not isinstance(answers[model], LabelledAnswer):
                raise InvalidInputError(f"the answer of {model!r} must be a LabelledAnswer, got {answers[model]!r}")
        with self._features_of(messages, learn=self._forms_clusters()) as features:
            return self.learner_.learn_answers(
                features,
                answers,
                None if self.learner_.pacer_ else self.tradeoff,
                max_joules=self.max_joules,
                max_latency_s=self.max_latency_s,
            )

    # ---- generating -------------------------------------------------------------------
    def generate(self, messages: Sequence[Message] | str, **options: Unpack[GenerateOptions]) -> RoutedGeneration:
        """Route ``messages``, generate with the chosen model, record its cost.

        The options (:class:`~greenserv_core.routing.GenerateOptions`) route the query, set the
        generation, offer ``tools`` (parsed into ``tool_calls``) and ask for a ``response_format``
        (``"json"``, a JSON schema, or OpenAI's ``{"type": "json_schema", ...}`` objects; see
        :func:`~greenserv_core.routing.request.json_format`).
        An unavailable model is routed around under the same decision id.
        """
        return self._executor.generate(RouteRequest.build(messages, options))

    def stream(self, messages: Sequence[Message] | str, **options: Unpack[GenerateOptions]) -> Iterator[RoutedChunk]:
        """Like :meth:`generate`, piece by piece; the last chunk carries the :class:`RoutedGeneration`.
        A failing model is routed around only until its first piece. With ``tools``, a local
        model's pieces are its raw text, tool-call markup included (a call is known only once
        the answer is whole, and may be bare JSON), where a remote server sends its prose only:
        read the calls, and the prose without them, from the last chunk's generation, or hold the
        pieces back as both framework adapters do."""
        return self._executor.stream(RouteRequest.build(messages, options, "stream"))

    def generate_batch(
        self, batch: Sequence[Sequence[Message] | str], **options: Unpack[BatchOptions]
    ) -> list[RoutedGeneration]:
        """Route each query, then run the queries routed to the same model as one batch
        (or one request each, up to the backend's ``max_concurrency`` at once). Results keep
        the input order."""
        if isinstance(batch, (str, Mapping)) or not isinstance(batch, Sequence):
            raise InvalidInputError(
                "generate_batch takes a list of queries (each a string or a list of messages), "
                f"got {type(batch).__name__}"
            )
        if batch and isinstance(batch[0], Mapping):
            raise InvalidInputError(
                "generate_batch takes a list of queries (each a string or a list of messages); "
                "for one query use generate()"
            )
        if not batch:
            return []
        first = RouteRequest.build(batch[0], options, "generate_batch")  # the options are checked once
        return self._executor.generate_batch([first] + [first.with_messages(m) for m in batch[1:]])

    # ---- learned state: sharing and persistence -------------------------------------------
    # the learner's state, read where the router has always shown it
    policy_: _FromLearner[Policy] = _FromLearner("policy_")
    energy_: _FromLearner[CostModel] = _FromLearner("energy_")
    latency_: _FromLearner[CostModel] = _FromLearner("latency_")
    normalizer_: _FromLearner[EnergyNormalizer] = _FromLearner("normalizer_")
    pending_: _FromLearner[PendingStore] = _FromLearner("pending_")

    @property
    def stats_(self) -> dict[str, dict[str, float]]:
        """Per model (a removed one's too: they are history): decisions, scored answers
        (``feedback``), joules spent and ``labelled`` answers taught; a copy, read as one."""
        with self.learner_.lock:
            return self.learner_.tallies_.as_dict()

    def statistics(self) -> Statistics:
        """What this router learned, as statistics that merge across replicas
        (see :class:`greenserv_core.sharing.SharedLearning`)."""
        return self.learner_.statistics()

    def update_statistics(
        self,
        transform: Callable[[Statistics], Statistics],
        *,
        sync_base: tuple[str, Callable[[Statistics], Statistics]] | None = None,
    ) -> None:
        """Replace the learned state with ``transform(current statistics)``, atomically: no
        feedback arriving meanwhile is lost or counted twice. ``sync_base`` records, in the
        same step, what :class:`~greenserv_core.sharing.SharedLearning` adopted from a store
        (saved with the router; see :meth:`RoutingLearner.update_statistics`)."""
        self.learner_.update_statistics(transform, sync_base=sync_base)

    @contextlib.contextmanager
    def learning_paused(self) -> Iterator[None]:
        """Hold, for the block, every lock under which the router learns (its pool's, its
        learner's, then each shared component's, as :meth:`state_dict` and
        :meth:`update_statistics` take them): nothing is routed, learned or added meanwhile, in
        other threads. :meth:`~greenserv_core.sharing.SharedLearning.save` syncs and saves in one."""
        with self._pool_lock, self.learner_.lock, contextlib.ExitStack() as held:
            for part in self.learner_.shared.values():
                lock = getattr(part, "lock", None)
                if lock is not None:
                    held.enter_context(lock)
            yield

    @property
    def loaded_statistics_(self) -> Statistics | None:
        """What the saved state held when :meth:`load` read it (``None``: not loaded); replicas
        loaded from one file push it to a shared store once between them."""
        return self.learner_.loaded_statistics_

    def sync_base(self, store: str) -> Statistics | None:
        """What this router adopted from ``store`` at its last sync, kept across save and load."""
        return self.learner_.sync_base(store)

    def state_dict(self) -> dict[str, Any]:
        """Parameters and learned state, as one consistent snapshot."""
        with self._pool_lock, self.learner_.lock:
            return {
                "strategy": self.strategy,
                "policy_params": self._saved_policy_params(),
                "tradeoff": self.tradeoff,
                "seed": self.seed,
                "max_latency_s": self.max_latency_s,
                "energy_budget": None if self.learner_.pacer_ is None else self._saved_budget(),
                "max_joules": self.max_joules,
                "models": self.models,
                "cascades": self._saved_cascades(),
                "features": self.features.state_dict(),
                **self.learner_.state_dict(),
            }

    def _saved_policy_params(self) -> dict[str, Any]:
        """What rebuilds the policy: a policy instance's own :meth:`~Policy.params`; for one by
        name, the parameters given, each as the policy keeps it (a ``Fraction`` given is saved
        as the float the policy holds)."""
        kept = self.policy_.params()
        if not isinstance(self.policy, str):
            return kept
        return {key: kept.get(key, value) for key, value in self.policy_params.items()}

    def _saved_cascades(self) -> list[list[Any]]:
        """Each cascade as ``[first, then, signal name, settings]`` (signal ``None``: by answer
        length; settings: its ``threshold`` and ``keep_first_on_failure``)."""
        return [
            [
                backend.first.info.name,
                backend.then.info.name,
                backend.signal_name,
                {"threshold": backend.threshold, "keep_first_on_failure": backend.keep_first_on_failure},
            ]
            for backend in self._backends.values()
            if isinstance(backend, CascadeBackend)
        ]

    def _saved_budget(self) -> dict[str, Any]:
        pacer = self.learner_.pacer_
        assert pacer is not None
        settings = {k: v for k, v in pacer.params().items() if k in BudgetPacer.SETTINGS}
        return {**pacer.budget.to_dict(), "price_on": pacer.price_on, "settings": settings}

    def save(self, path: str | Path) -> None:
        """Persist a consistent snapshot of all learned state (written to a temporary file, then renamed)."""
        write_router_state(path, self.state_dict())

    @classmethod
    def load(
        cls,
        path: str | Path,
        models: Sequence[ModelBackend],
        *,
        features: FeatureExtractor | None = None,
        pending: PendingStore | None = None,
        policy: Policy | None = None,
        energy_budget: BudgetPacer | None = None,
        cascade_signals: Sequence[ConfidenceSignal | VerifyingSignal] = (),
    ) -> GreenServRouter:
        """Rebuild a router saved with :meth:`save` over ``models``.

        ``features``, ``pending``, ``policy`` and ``energy_budget`` (a :class:`BudgetPacer` with
        other settings for the saved budget; by default the saved pacer's own) are the same as
        for ``__init__`` (default
        features: the bundled embedder the state was saved with; a policy
        instance is needed only when the saved one is not registered by name). Every model in
        the saved state must be in ``models`` (else :class:`StateFileError`); models new to
        the state join as fresh arms. A corrupt file, another format version, or features of
        another shape raise :class:`StateFileError`, never a fresh start. A cascade saved with
        a confidence signal of your own finds it by its ``name`` among ``cascade_signals``
        (the bundled signals are rebuilt from their names).
        """
        if pending is not None and not isinstance(pending, PendingStore):  # the caller's, not the file's
            raise InvalidInputError(f"{pending!r} is not a PendingStore")
        state, arguments = read_router_state(path, models, policy, pending)
        if energy_budget is not None:
            saved = arguments["energy_budget"]
            if not isinstance(energy_budget, BudgetPacer) or saved is None or energy_budget.budget != saved.budget:
                raise InvalidInputError(
                    f"{path} was saved "
                    + (
                        f"under the budget {saved.budget.describe()}"
                        if saved is not None
                        else "without an energy budget"
                    )
                    + "; energy_budget= must be a BudgetPacer for that budget"
                )
            arguments["energy_budget"] = energy_budget
        if features is None:  # the bundled features the state was saved with
            with state_errors(path):
                space, encoding = str(state["features"]["embedder"]), state["features"].get("task_encoding", "onehot")
            name = bundled_name(space)
            if name is None:
                raise InvalidInputError(
                    f"the state was saved with the embedder {space!r}, which is not bundled: pass features="
                )
            with state_errors(path):
                clusters = int(state["features"]["clusterer"]["n_clusters"])
            features = FeatureExtractor.default(embedder=name, task_encoding=encoding, n_clusters=clusters)
        with state_errors(path):
            saved_signals = {
                cascade_name(first, then): str(signal[0])
                for first, then, *signal in state.get("cascades", [])
                if signal and signal[0] is not None  # a cascade given its own signal keeps it
            }
            saved_settings = {  # absent from states saved before 2026-12-06: the defaults
                cascade_name(first, then): dict(rest[1])
                for first, then, *rest in state.get("cascades", [])
                if len(rest) > 1 and rest[1] is not None
            }
        given = {signal.name: signal for signal in cascade_signals}
        with state_errors(path):  # (an unknown signal's error names the file)
            signals = {cascade: _saved_signal(name, given, cascade) for cascade, name in saved_signals.items()}
        for model in models:  # the given models' priors are the caller's, not the file's: checked apart
            quality = getattr(model.info, "quality", None)
            if quality is not None:
                arm_prior(quality, features)
        if isinstance(policy, Policy):  # the caller's policy is refused as __init__ refuses it, not blamed on the file
            _policy(policy, features.dimension, None, {})
            if policy.dimension != features.dimension:
                raise InvalidInputError(
                    f"the policy has dimension {policy.dimension}, the features {features.dimension}"
                )
        with state_errors(path):
            saved_escalation = state.get("escalation") or {}
            settings = {k: v for k, v in saved_escalation.items() if k in EscalationModel.SETTINGS}
            arguments["escalation"] = EscalationModel(features.dimension, seed=arguments["seed"], **settings)
            tradeoff, pacer = arguments["tradeoff"], arguments["energy_budget"]
            if isinstance(pacer, BudgetPacer):  # its own initial λ: the saved λ is set after (no "not used" warning)
                arguments["tradeoff"] = pacer.initial_tradeoff
            router = cls(**arguments, features=features, pending=pending)
            router.tradeoff = tradeoff
            for arm, signal in signals.items():
                cascade = router.backend(arm)
                if isinstance(cascade, CascadeBackend):
                    cascade.signal = signal
            for arm, settings in saved_settings.items():
                cascade = router.backend(arm)
                if isinstance(cascade, CascadeBackend):  # checked as a cascade checks them (a StateFileError here)
                    cascade.threshold, cascade.keep_first_on_failure = cascade_settings(
                        settings.get("threshold", 0.5), settings.get("keep_first_on_failure", True)
                    )
            router.features.load_state_dict(state["features"])
            router.learner_.load_state_dict(state)
        return router
