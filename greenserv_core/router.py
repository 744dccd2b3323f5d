"""``GreenServRouter``: features → eligibility → policy → model → outcome → feedback.

How the reward is learned from partial, late feedback
-----------------------------------------------------
The reward of a routed query is ``r = (1-λ)·accuracy − λ·energy_norm``. Its two parts arrive
at different times, so they are learned separately and combined at decision time:

* **energy** (and latency) is measured right after every generation. A per-model ridge
  regression on the context vector and prompt length (:class:`CostModel`) learns it from
  every call, and :class:`EnergyNormalizer` maps joules to [0, 1] per task type, online.
* **accuracy** arrives through :meth:`GreenServRouter.feedback`, late or never. The bandit
  policy learns it only from decisions that got feedback.

The policy then scores each eligible model as ``(1-λ)·(accuracy estimate + exploration
bonus) − λ·predicted energy_norm``. Sparse feedback slows the accuracy side only; the energy
side is always current. A decision that never gets feedback is dropped from the pending
store after ``pending_ttl_s`` (or when ``max_pending`` is exceeded); no score is imputed.

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

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from greenserv_core.backends.base import GenerationResult, GenerationSettings, JsonFormat, ModelBackend
from greenserv_core.bandits import ArmScore, Policy, make_policy
from greenserv_core.errors import (
    InvalidInputError,
    ModelUnavailableError,
    NoEligibleModelError,
    StateFileError,
    UnknownModelError,
)
from greenserv_core.features.extractor import FeatureExtractor, QueryFeatures
from greenserv_core.messages import Message, validate_messages
from greenserv_core.outcomes import CostModel
from greenserv_core.pending import PendingDecision, PendingDecisions, PendingStore
from greenserv_core.persistence import read_state, write_state
from greenserv_core.reward import EnergyNormalizer, check_score, check_tradeoff, reward
from greenserv_core.sharing.router_state import load_router_statistics, router_statistics
from greenserv_core.sharing.statistics import Statistics
from greenserv_core.tools import (
    InvalidToolCall,
    ParsedOutput,
    ToolCall,
    ToolSpec,
    as_tool_specs,
    parse_tool_calls,
    with_tools_prompt,
)

__all__ = ["FeedbackRecord", "GreenServRouter", "RoutedChunk", "RoutedGeneration", "RoutingDecision"]

logger = logging.getLogger("greenserv")

STATE_FORMAT = "greenserv-router-state"
STATE_VERSION = 1


@dataclass(frozen=True)
class RoutingDecision:
    """Which model answers a query, and why.

    ``scores`` holds every eligible model's :class:`ArmScore`; ``excluded`` maps each
    ineligible model to the reason; ``predicted_joules`` is the energy model's estimate
    (``None`` for a model not yet observed).
    """

    decision_id: str
    model: str
    features: QueryFeatures
    scores: dict[str, ArmScore]
    excluded: dict[str, str]
    predicted_joules: dict[str, float | None]
    tradeoff: float
    explored: bool


@dataclass(frozen=True)
class RoutedGeneration:
    """A routed answer with its cost. ``energy_measured`` is False for estimates. When tools
    were offered, ``text`` is the answer's prose and the calls it made are parsed out."""

    text: str
    model: str
    decision_id: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    energy_joules: float
    energy_source: str
    energy_measured: bool
    finish_reason: str
    decision: RoutingDecision = field(repr=False)
    tool_calls: tuple[ToolCall, ...] = ()
    invalid_tool_calls: tuple[InvalidToolCall, ...] = ()

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def record(self) -> dict[str, Any]:
        """The routing record as plain JSON-ready data (what the adapters attach to answers)."""
        return {
            "decision_id": self.decision_id,
            "model": self.model,
            "energy_joules": self.energy_joules,
            "energy_source": self.energy_source,
            "energy_measured": self.energy_measured,
            "latency_s": self.latency_s,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "tradeoff": self.decision.tradeoff,
            "features": self.decision.features.to_dict(),
            "explored": self.decision.explored,
        }


@dataclass(frozen=True)
class RoutedChunk:
    """A streamed piece; the last chunk has ``generation`` set and an empty ``delta``."""

    delta: str
    decision: RoutingDecision = field(repr=False)
    generation: RoutedGeneration | None = None


@dataclass(frozen=True)
class FeedbackRecord:
    """What a feedback call did. ``reward`` is ``None`` when the decision's energy was never
    recorded; ``applied`` is False when the model was removed from the pool meanwhile."""

    decision_id: str
    model: str
    score: float
    reward: float | None
    applied: bool


def _check_capabilities(requires: Collection[str]) -> frozenset[str]:
    if isinstance(requires, str) or not all(isinstance(c, str) and c for c in requires):
        raise InvalidInputError(f"requires must be a collection of capability names, got {requires!r}")
    return frozenset(requires)


def _requirements(requires: Collection[str], settings: GenerationSettings) -> frozenset[str]:
    """What the query needs: the caller's ``requires``, plus ``tools`` when tools are offered
    and ``json_mode`` when a JSON answer is asked for."""
    needed = set(_check_capabilities(requires))
    if settings.tools:
        needed.add("tools")
    if settings.json is not None:
        needed.add("json_mode")
    return frozenset(needed)


ResponseFormat = Literal["json"] | Mapping[str, Any] | JsonFormat | None


def _settings(
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    stop: Sequence[str],
    seed: int | None,
    max_time_s: float | None,
    tools: Sequence[ToolSpec | Mapping[str, Any]] | None,
    response_format: ResponseFormat,
) -> GenerationSettings:
    """The generation settings of a ``generate``/``stream``/``generate_batch`` call."""
    return GenerationSettings(
        max_new_tokens,
        temperature,
        top_p,
        tuple(stop),
        seed,
        max_time_s,
        as_tool_specs(tools),
        _json_format(response_format),
    )


def _json_format(response_format: ResponseFormat) -> JsonFormat | None:
    if response_format is None or isinstance(response_format, JsonFormat):
        return response_format
    if response_format == "json":
        return JsonFormat()
    if isinstance(response_format, Mapping):
        return JsonFormat.from_schema(response_format)
    raise InvalidInputError(f"response_format must be None, 'json' or a JSON schema, got {response_format!r}")


def _check_positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidInputError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class _RouteArgs:
    """The routing arguments a query keeps when it is routed again after a failure."""

    tradeoff: float | None
    max_latency_s: float | None
    requires: Collection[str]
    models: Sequence[str] | None


class GreenServRouter:
    """Routes each query to one model of a pool and learns online which choice pays off.

    Parameters are stored as given (``strategy``, ``tradeoff`` λ, ``seed``, ``max_latency_s``,
    ``policy_params``); learned state lives in ``policy_``, ``energy_``, ``latency_``,
    ``normalizer_``, ``pending_`` and the feature extractor's clustering. All public methods
    are thread-safe; model calls and embedding run outside the router's lock.

    Decisions wait for feedback in a :class:`~greenserv_core.pending.PendingDecisions` of
    ``max_pending`` entries kept ``pending_ttl_s`` seconds, or in the ``pending`` store given
    (e.g. :class:`~greenserv_core.sharing.RedisPendingDecisions`, shared by replicas).
    """

    def __init__(
        self,
        models: Sequence[ModelBackend],
        *,
        strategy: str = "linucb",
        tradeoff: float = 0.5,
        features: FeatureExtractor | None = None,
        seed: int | None = None,
        max_latency_s: float | None = None,
        policy_params: Mapping[str, Any] | None = None,
        max_pending: int = 100_000,
        pending_ttl_s: float = 7 * 24 * 3600.0,
        pending: PendingStore | None = None,
    ) -> None:
        self.strategy = strategy
        self.tradeoff = check_tradeoff(tradeoff)
        self.seed = seed
        self.max_latency_s = _check_positive("max_latency_s", max_latency_s)
        self.policy_params = dict(policy_params or {})
        self.features = features if features is not None else FeatureExtractor.default()
        dimension = self.features.dimension
        self.policy_: Policy = make_policy(strategy, dimension, seed=seed, **self.policy_params)
        self.energy_ = CostModel(dimension)
        self.latency_ = CostModel(dimension)
        self.normalizer_ = EnergyNormalizer()
        if pending is not None and not isinstance(pending, PendingStore):
            raise InvalidInputError(f"{pending!r} is not a PendingStore")
        self.pending_: PendingStore = pending if pending is not None else PendingDecisions(max_pending, pending_ttl_s)
        self.stats_: dict[str, dict[str, float]] = {}
        self._models: dict[str, ModelBackend] = {}
        self._lock = threading.RLock()
        if not models:
            raise InvalidInputError("a router needs at least one model")
        for model in models:
            self.add_model(model)

    # ---- the pool ---------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def backend(self, name: str) -> ModelBackend:
        with self._lock:
            if name not in self._models:
                raise UnknownModelError(f"unknown model {name!r}; the pool is {list(self._models)}")
            return self._models[name]

    def add_model(self, backend: ModelBackend) -> None:
        """Add a model at runtime; it starts from the policy's prior and gets explored."""
        if not isinstance(backend, ModelBackend):
            raise InvalidInputError(
                f"{backend!r} does not implement ModelBackend (info, count_tokens, generate, stream)"
            )
        name = backend.info.name
        with self._lock:
            if name in self._models:
                raise InvalidInputError(f"model {name!r} is already in the pool")
            self.policy_.add_arm(name)
            self.energy_.add_model(name)
            self.latency_.add_model(name)
            self.stats_.setdefault(name, {"decisions": 0, "feedback": 0, "energy_joules": 0.0})
            self._models[name] = backend

    def remove_model(self, name: str) -> None:
        """Remove a model; it is never chosen again. Pending feedback for it is accepted and ignored."""
        with self._lock:
            if name not in self._models:
                raise UnknownModelError(f"unknown model {name!r}; the pool is {list(self._models)}")
            if len(self._models) == 1:
                raise InvalidInputError(f"cannot remove {name!r}: it is the last model in the pool")
            self.policy_.remove_arm(name)
            self.energy_.remove_model(name)
            self.latency_.remove_model(name)
            del self._models[name]

    # ---- deciding -----------------------------------------------------------------------
    def route(
        self,
        messages: Sequence[Message] | str,
        *,
        tradeoff: float | None = None,
        max_latency_s: float | None = None,
        max_new_tokens: int = 256,
        decision_id: str | None = None,
        models: Sequence[str] | None = None,
        requires: Collection[str] = (),
    ) -> RoutingDecision:
        """Choose a model for ``messages`` without calling it.

        When you call the model yourself, report its cost with :meth:`record_outcome`.
        ``decision_id`` lets a caller key the decision by its own id (a framework's run id);
        by default a random one is made. ``models`` restricts the choice to these models
        (one name pins the query to that model; the outcome is still learned). ``requires``
        names capabilities the query needs (e.g. ``{"tools"}``); models without them are not
        eligible, and if no model of the pool has one, the error says which.
        """
        return self._route(
            validate_messages(messages),
            tradeoff=tradeoff,
            max_latency_s=max_latency_s,
            max_new_tokens=max_new_tokens,
            decision_id=decision_id,
            models=models,
            requires=requires,
        )

    def _route(
        self,
        clean: list[Message],
        *,
        tradeoff: float | None,
        max_latency_s: float | None,
        max_new_tokens: int,
        decision_id: str | None = None,
        models: Sequence[str] | None = None,
        requires: Collection[str] = (),
        tools: Sequence[ToolSpec] = (),
        failed: Mapping[str, str] | None = None,
    ) -> RoutingDecision:
        """:meth:`route` for messages already checked by :func:`validate_messages`; ``tools``
        count towards the prompt's length as the tools prompt would; ``failed`` names models
        that already failed this query (and why), which are not eligible again."""
        allowed = None if models is None else self._check_model_names(models)
        needed = _check_capabilities(requires)
        if decision_id is not None:
            if not isinstance(decision_id, str) or not decision_id:
                raise InvalidInputError(f"decision_id must be a non-empty string, got {decision_id!r}")
            with self._lock:
                if self.pending_.known(decision_id):
                    raise InvalidInputError(f"decision id {decision_id!r} is already in use")
        lam = self.tradeoff if tradeoff is None else check_tradeoff(tradeoff)
        limit = self.max_latency_s if max_latency_s is None else _check_positive("max_latency_s", max_latency_s)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InvalidInputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        backends = dict(self._snapshot_models())
        counted = with_tools_prompt(clean, tools)
        prompt_tokens = {
            name: backend.count_tokens(counted)
            for name, backend in backends.items()
            if allowed is None or name in allowed  # models not requested are never tokenised
        }
        features = self.features.extract(clean)
        x = features.vector
        with self._lock:
            excluded: dict[str, str] = {}
            predicted: dict[str, float | None] = {}
            costs: dict[str, float] = {}
            names = list(self._models)
            latencies = self.latency_.predict_all(names, x, features.prompt_tokens)
            energies = self.energy_.predict_all(names, x, features.prompt_tokens)
            for name in names:
                if allowed is not None and name not in allowed:
                    excluded[name] = "not among the models requested for this query"
                    continue
                if failed and name in failed:
                    excluded[name] = f"failed for this query: {failed[name]}"
                    continue
                backend = backends.get(name) or self._models[name]
                if not getattr(backend, "available", True):
                    excluded[name] = "unavailable (cooling down after repeated failures)"
                    continue
                missing = sorted(needed - backend.info.capabilities)
                if missing:
                    excluded[name] = f"lacks the capabilit{'ies' if len(missing) > 1 else 'y'} {', '.join(missing)}"
                    continue
                tokens = prompt_tokens.get(name)
                if tokens is None:
                    tokens = backend.count_tokens(counted)
                window = backend.info.context_window
                if tokens + max_new_tokens > window:
                    excluded[name] = (
                        f"prompt {tokens} + max_new_tokens {max_new_tokens} tokens exceed the context window {window}"
                    )
                    continue
                info = backend.info
                latency = latencies[name]
                if latency is None and info.prior_seconds_per_token is not None:
                    latency = info.prior_seconds_per_token * (tokens + max_new_tokens)
                if limit is not None and latency is not None and latency > limit:
                    excluded[name] = f"predicted latency {latency:.3f} s exceeds the limit {limit:.3f} s"
                    continue
                joules = energies[name]
                if joules is None and info.prior_joules_per_token is not None:
                    joules = info.prior_joules_per_token * (tokens + max_new_tokens)
                predicted[name] = joules
                costs[name] = 0.0 if joules is None else lam * self.normalizer_.normalize(features.task, joules)
            if decision_id is not None and self.pending_.known(decision_id):
                raise InvalidInputError(f"decision id {decision_id!r} is already in use")
            if not costs:
                reasons = "; ".join(f"{name}: {why}" for name, why in excluded.items())
                nowhere = sorted(c for c in needed if all(c not in b.info.capabilities for b in backends.values()))
                if nowhere:
                    reasons = f"no model in the pool has the capability {', '.join(nowhere)}; {reasons}"
                raise NoEligibleModelError(f"no model is eligible for this query ({reasons})")
            choice = self.policy_.decide(x, list(costs), value_scale=1.0 - lam, costs=costs)
            decision = RoutingDecision(
                decision_id=decision_id or uuid.uuid4().hex,
                model=choice.arm,
                features=features,
                scores=choice.scores,
                excluded=excluded,
                predicted_joules=predicted,
                tradeoff=lam,
                explored=choice.explored,
            )
            self.pending_.add(
                PendingDecision(
                    decision.decision_id, choice.arm, x.copy(), features.task, features.prompt_tokens, lam, time.time()
                )
            )
            self.stats_[choice.arm]["decisions"] += 1
        logger.debug("routed %s to %s (task=%s)", decision.decision_id, decision.model, features.task)
        return decision

    def _check_model_names(self, models: Sequence[str]) -> set[str]:
        if isinstance(models, str):
            models = [models]
        names = set(models)
        with self._lock:
            unknown = sorted(names - set(self._models))
            if unknown or not names:
                raise UnknownModelError(f"unknown model(s) {unknown or '[]'}; the pool is {list(self._models)}")
        return names

    def _snapshot_models(self) -> list[tuple[str, ModelBackend]]:
        with self._lock:
            return list(self._models.items())

    def record_outcome(
        self, decision_id: str, *, energy_joules: float, latency_s: float, energy_source: str = "external"
    ) -> None:
        """Teach the cost models what a routed generation spent (once per decision)."""
        if not np.isfinite(energy_joules) or energy_joules < 0:
            raise InvalidInputError(f"energy_joules must be finite and >= 0, got {energy_joules!r}")
        if not np.isfinite(latency_s) or latency_s < 0:
            raise InvalidInputError(f"latency_s must be finite and >= 0, got {latency_s!r}")
        with self._lock:
            pending = self.pending_.get(decision_id)
            if pending.energy_joules is not None:
                raise InvalidInputError(f"the outcome of decision {decision_id!r} was already recorded")
            if pending.model in self._models:
                self.energy_.observe(pending.model, pending.context, pending.prompt_tokens, energy_joules)
                self.latency_.observe(pending.model, pending.context, pending.prompt_tokens, latency_s)
                self.stats_[pending.model]["energy_joules"] += energy_joules
            self.normalizer_.observe(pending.task, energy_joules)
            pending.energy_joules = float(energy_joules)
            pending.energy_source = energy_source
            self.pending_.update(pending)

    def feedback(self, decision_id: str, score: float) -> FeedbackRecord:
        """Score a decision's answer in [0, 1] (1 = correct/helpful). Once per decision.

        Raises :class:`UnknownDecisionError` (a ``KeyError``) for an unknown or expired id and
        :class:`DecisionAlreadyScoredError` for a second score.
        """
        value = check_score(score)
        if not isinstance(decision_id, str):
            raise InvalidInputError(f"decision_id must be a string, got {type(decision_id).__name__}")
        with self._lock:
            pending = self.pending_.pop_for_feedback(decision_id)
            applied = pending.model in self._models
            if applied:
                self.policy_.update(pending.model, pending.context, value)
                self.stats_[pending.model]["feedback"] += 1
            realised = None
            if pending.energy_joules is not None:
                energy_norm = self.normalizer_.normalize(pending.task, pending.energy_joules)
                realised = reward(value, energy_norm, pending.tradeoff)
        return FeedbackRecord(decision_id, pending.model, value, realised, applied)

    # ---- generating -------------------------------------------------------------------
    def generate(
        self,
        messages: Sequence[Message] | str,
        *,
        tradeoff: float | None = None,
        max_latency_s: float | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        max_time_s: float | None = None,
        decision_id: str | None = None,
        models: Sequence[str] | None = None,
        requires: Collection[str] = (),
        tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None,
        score_tool_calls: bool = False,
        response_format: ResponseFormat = None,
    ) -> RoutedGeneration:
        """Route ``messages``, generate with the chosen model, record its cost.

        A model that fails with :class:`ModelUnavailableError` (a remote server down, timed out
        or cooling down) is left out and the query is routed again among the other eligible
        models, under the same ``decision_id``; any other error drops the decision (no cost,
        no feedback) and propagates. ``tools`` (OpenAI-format mappings or :class:`ToolSpec`) are offered to the
        model; only models with the ``tools`` capability are eligible, and the calls the
        answer makes are parsed into ``tool_calls`` / ``invalid_tool_calls``. With
        ``score_tool_calls``, an answer that makes tool calls is scored at once: 1 if every
        call parses and fits its schema, 0 if any does not (an answer without calls is left
        for the caller to score). ``response_format`` (``"json"`` or a JSON schema) asks for
        one JSON object; only models with the ``json_mode`` capability are eligible.
        """
        settings = _settings(max_new_tokens, temperature, top_p, stop, seed, max_time_s, tools, response_format)
        route = _RouteArgs(tradeoff, max_latency_s, _requirements(requires, settings), models)
        return self._generate(validate_messages(messages), settings, route, decision_id, {}, score_tool_calls)

    def _route_for(
        self,
        clean: list[Message],
        settings: GenerationSettings,
        route: _RouteArgs,
        decision_id: str | None,
        failed: Mapping[str, str],
    ) -> RoutingDecision:
        return self._route(
            clean,
            tradeoff=route.tradeoff,
            max_latency_s=route.max_latency_s,
            max_new_tokens=settings.max_new_tokens,
            decision_id=decision_id,
            models=route.models,
            requires=route.requires,
            tools=settings.tools,
            failed=failed,
        )

    def _generate(
        self,
        clean: list[Message],
        settings: GenerationSettings,
        route: _RouteArgs,
        decision_id: str | None,
        failed: dict[str, str],
        score_tool_calls: bool,
    ) -> RoutedGeneration:
        """Route and generate; a model that fails is noted in ``failed`` and the query re-routed."""
        while True:
            decision = self._route_for(clean, settings, route, decision_id, failed)
            try:
                result = self.backend(decision.model).generate(clean, settings)
            except ModelUnavailableError as error:
                self._fail_over(decision, error, failed)
                continue
            except BaseException:
                self._drop(decision.decision_id)
                raise
            return self._finish(decision, result, settings.tools, score_tool_calls)

    def stream(
        self,
        messages: Sequence[Message] | str,
        *,
        tradeoff: float | None = None,
        max_latency_s: float | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        max_time_s: float | None = None,
        decision_id: str | None = None,
        models: Sequence[str] | None = None,
        requires: Collection[str] = (),
        tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None,
        score_tool_calls: bool = False,
        response_format: ResponseFormat = None,
    ) -> Iterator[RoutedChunk]:
        """Like :meth:`generate`, piece by piece; the last chunk carries the :class:`RoutedGeneration`.
        A failing model is routed around only until its first piece: text already yielded is
        never taken back, so a failure after it propagates."""
        settings = _settings(max_new_tokens, temperature, top_p, stop, seed, max_time_s, tools, response_format)
        route = _RouteArgs(tradeoff, max_latency_s, _requirements(requires, settings), models)
        clean = validate_messages(messages)
        failed: dict[str, str] = {}
        while True:
            decision = self._route_for(clean, settings, route, decision_id, failed)
            finished = started = False
            try:
                for chunk in self.backend(decision.model).stream(clean, settings):
                    if chunk.result is not None:
                        finished = True
                        yield RoutedChunk(
                            "", decision, self._finish(decision, chunk.result, settings.tools, score_tool_calls)
                        )
                        return
                    started = True
                    yield RoutedChunk(chunk.delta, decision)
            except ModelUnavailableError as error:
                if started:  # text already handed out cannot be taken back
                    raise
                self._fail_over(decision, error, failed)
                finished = True  # dropped by _fail_over
                continue
            finally:
                if not finished:
                    self._drop(decision.decision_id)

    def generate_batch(
        self,
        batch: Sequence[Sequence[Message] | str],
        *,
        tradeoff: float | None = None,
        max_latency_s: float | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        max_time_s: float | None = None,
        models: Sequence[str] | None = None,
        requires: Collection[str] = (),
        tools: Sequence[ToolSpec | Mapping[str, Any]] | None = None,
        score_tool_calls: bool = False,
        response_format: ResponseFormat = None,
    ) -> list[RoutedGeneration]:
        """Route each query, then run the queries routed to the same model as one batch
        (backends with ``generate_batch``; others one request per query, up to the backend's
        ``max_concurrency`` at once). Results keep the input order."""
        settings = _settings(max_new_tokens, temperature, top_p, stop, seed, max_time_s, tools, response_format)
        requires = _requirements(requires, settings)
        cleaned = [validate_messages(messages) for messages in batch]
        decisions: list[RoutingDecision] = []
        try:
            for messages in cleaned:
                decisions.append(
                    self._route(
                        messages,
                        tradeoff=tradeoff,
                        max_latency_s=max_latency_s,
                        max_new_tokens=max_new_tokens,
                        models=models,
                        requires=requires,
                        tools=settings.tools,
                    )
                )
        except BaseException:
            for decision in decisions:
                self._drop(decision.decision_id)
            raise
        groups: dict[str, list[int]] = {}
        for index, decision in enumerate(decisions):
            groups.setdefault(decision.model, []).append(index)
        results: dict[int, RoutedGeneration] = {}
        route = _RouteArgs(tradeoff, max_latency_s, requires, models)
        try:
            for model, indices in groups.items():
                backend = self.backend(model)
                batch_call = getattr(backend, "generate_batch", None)
                if not callable(batch_call):
                    results.update(
                        self._one_by_one(backend, indices, cleaned, decisions, settings, route, score_tool_calls)
                    )
                    continue
                try:
                    outputs = batch_call([cleaned[i] for i in indices], settings)
                except ModelUnavailableError as error:  # these queries go, one by one, elsewhere
                    for index in indices:
                        results[index] = self._elsewhere(
                            decisions[index], cleaned[index], error, settings, route, score_tool_calls
                        )
                    continue
                for index, output in zip(indices, outputs, strict=True):
                    results[index] = self._finish(decisions[index], output, settings.tools, score_tool_calls)
        except BaseException:
            for index, decision in enumerate(decisions):
                if index not in results:
                    self._drop(decision.decision_id)
            raise
        return [results[i] for i in range(len(decisions))]

    def _one_by_one(
        self,
        backend: ModelBackend,
        indices: list[int],
        cleaned: list[list[Message]],
        decisions: list[RoutingDecision],
        settings: GenerationSettings,
        route: _RouteArgs,
        score_tool_calls: bool,
    ) -> dict[int, RoutedGeneration]:
        """The queries of a batch routed to a backend without ``generate_batch``: one request
        each, up to its ``max_concurrency`` at once (a remote server batches them itself); a
        query whose request fails is routed elsewhere on its own."""

        def one(index: int) -> RoutedGeneration:
            try:
                output = backend.generate(cleaned[index], settings)
            except ModelUnavailableError as error:
                return self._elsewhere(decisions[index], cleaned[index], error, settings, route, score_tool_calls)
            return self._finish(decisions[index], output, settings.tools, score_tool_calls)

        workers = min(len(indices), max(1, int(getattr(backend, "max_concurrency", 1))))
        if workers == 1:
            return {index: one(index) for index in indices}
        with ThreadPoolExecutor(workers, thread_name_prefix="greenserv-batch") as pool:
            return dict(zip(indices, pool.map(one, indices), strict=True))

    def _elsewhere(
        self,
        decision: RoutingDecision,
        clean: list[Message],
        error: ModelUnavailableError,
        settings: GenerationSettings,
        route: _RouteArgs,
        score_tool_calls: bool,
    ) -> RoutedGeneration:
        """A batch query whose model failed, routed again among the other models."""
        failed: dict[str, str] = {}
        self._fail_over(decision, error, failed)
        return self._generate(clean, settings, route, None, failed, score_tool_calls)

    def _finish(
        self,
        decision: RoutingDecision,
        result: GenerationResult,
        tools: Sequence[ToolSpec] = (),
        score_tool_calls: bool = False,
    ) -> RoutedGeneration:
        self.record_outcome(
            decision.decision_id,
            energy_joules=result.energy.joules,
            latency_s=result.latency_s,
            energy_source=result.energy.source,
        )
        parsed = parse_tool_calls(result.text, tools) if tools else ParsedOutput(result.text)
        generation = RoutedGeneration(
            text=parsed.text,
            model=decision.model,
            decision_id=decision.decision_id,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            latency_s=result.latency_s,
            energy_joules=result.energy.joules,
            energy_source=result.energy.source,
            energy_measured=result.energy.measured,
            finish_reason=result.finish_reason,
            decision=decision,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
        )
        if score_tool_calls and (parsed.tool_calls or parsed.invalid_tool_calls):
            self.feedback(decision.decision_id, 0.0 if parsed.invalid_tool_calls else 1.0)
        return generation

    def _drop(self, decision_id: str) -> None:
        with self._lock:
            self.pending_.discard(decision_id)

    def _fail_over(self, decision: RoutingDecision, error: ModelUnavailableError, failed: dict[str, str]) -> None:
        """Forget a decision whose model failed (its id may be reused) and note the model as
        failed, so that the query is routed again among the others."""
        with self._lock:
            self.pending_.discard(decision.decision_id, reusable=True)
            self.stats_[decision.model]["decisions"] -= 1
        failed[decision.model] = str(error)
        logger.warning("%s failed (%s); routing the query to another model", decision.model, error)

    # ---- sharing learned state between replicas ---------------------------------------
    def statistics(self) -> Statistics:
        """What this router learned, as statistics that merge across replicas
        (see :class:`greenserv_core.sharing.SharedLearning`)."""
        with self._lock:
            return router_statistics(self)

    def update_statistics(self, transform: Callable[[Statistics], Statistics]) -> None:
        """Replace the learned state with ``transform(current statistics)``, atomically: no
        feedback arriving meanwhile is lost or counted twice."""
        with self._lock:
            load_router_statistics(self, transform(router_statistics(self)))

    # ---- persistence ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "strategy": self.strategy,
                "policy_params": dict(self.policy_params),
                "tradeoff": self.tradeoff,
                "seed": self.seed,
                "max_latency_s": self.max_latency_s,
                "models": list(self._models),
                "policy": self.policy_.state_dict(),
                "features": self.features.state_dict(),
                "energy": self.energy_.state_dict(),
                "latency": self.latency_.state_dict(),
                "normalizer": self.normalizer_.state_dict(),
                "pending": self.pending_.state_dict(),
                "stats": {name: dict(s) for name, s in self.stats_.items()},
            }

    def save(self, path: str | Path) -> None:
        """Persist all learned state atomically (write to a temporary file, then rename)."""
        write_state(path, self.state_dict(), fmt=STATE_FORMAT, version=STATE_VERSION)

    @classmethod
    def load(
        cls,
        path: str | Path,
        models: Sequence[ModelBackend],
        *,
        features: FeatureExtractor | None = None,
    ) -> GreenServRouter:
        """Rebuild a router saved with :meth:`save` over ``models``.

        Every model in the saved state must be in ``models`` (else :class:`StateFileError`);
        models new to the state join as fresh arms. A corrupt file, another format version,
        or features of another shape raise :class:`StateFileError`, never a fresh start.
        """
        state = read_state(path, fmt=STATE_FORMAT, version=STATE_VERSION)
        try:
            given = {m.info.name for m in models}
            missing = [name for name in state["models"] if name not in given]
            if missing:
                raise StateFileError(f"saved state has models {missing} that are not in the given pool {sorted(given)}")
            by_name = {m.info.name: m for m in models}
            ordered = [by_name[name] for name in state["models"]]
            ordered += [m for m in models if m.info.name not in state["models"]]
            router = cls(
                ordered,
                strategy=state["strategy"],
                tradeoff=state["tradeoff"],
                features=features,
                seed=state["seed"],
                max_latency_s=state["max_latency_s"],
                policy_params=state["policy_params"],
                max_pending=int(state["pending"]["max_size"]),
                pending_ttl_s=float(state["pending"]["ttl_s"]),
            )
            router.features.load_state_dict(state["features"])
            new_models = [name for name in given if name not in state["models"]]
            router.policy_.load_state_dict(state["policy"])
            router.energy_.load_state_dict(state["energy"])
            router.latency_.load_state_dict(state["latency"])
            for name in new_models:
                router.policy_.add_arm(name)
                router.energy_.add_model(name)
                router.latency_.add_model(name)
            router.normalizer_.load_state_dict(state["normalizer"])
            router.pending_.load_state_dict(state["pending"])
            router.stats_.update({name: dict(s) for name, s in state["stats"].items() if name in given})
        except StateFileError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise StateFileError(f"{path} does not hold a compatible router state: {error!r}") from error
        return router
