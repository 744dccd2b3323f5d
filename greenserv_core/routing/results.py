"""What routing returns: a :class:`RoutingDecision` (which model, and why), a
:class:`RoutedGeneration` (the answer with its cost), a :class:`RoutedChunk` (a streamed
piece) and a :class:`FeedbackRecord` (what a score did)."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from greenserv_core.backends.base import ChainStep
from greenserv_core.bandits import ArmScore
from greenserv_core.budget import BudgetStatus
from greenserv_core.errors import ModelUnavailableError, readable_spend
from greenserv_core.features.extractor import QueryFeatures
from greenserv_core.tools import InvalidToolCall, ToolCall

__all__ = ["BackendRef", "FailedAttempt", "FeedbackRecord", "RoutedChunk", "RoutedGeneration", "RoutingDecision"]


class BackendRef:
    """A weak reference to the backend a decision was made for: it keeps no model alive, and
    a decision copied or pickled carries none (it then checks nothing).

    >>> from greenserv_core.backends.fake import FakeBackend
    >>> backend = FakeBackend("m")
    >>> ref = BackendRef(backend)
    >>> ref.refers_to(backend), ref.refers_to(FakeBackend("m")), ref.target() is backend
    (True, False, True)
    >>> import pickle; pickle.loads(pickle.dumps(ref)).refers_to(backend)
    True
    """

    __slots__ = ("_ref",)

    def __init__(self, backend: object | None) -> None:
        try:
            self._ref: weakref.ref[object] | None = None if backend is None else weakref.ref(backend)
        except TypeError:  # a backend that takes no weak reference: nothing to check
            self._ref = None

    def refers_to(self, backend: object) -> bool:
        """Whether ``backend`` is the one referred to (``True`` where there is nothing to check)."""
        return self._ref is None or self._ref() is backend

    def target(self) -> object | None:
        """The backend referred to, or ``None`` (gone, or nothing to check)."""
        return None if self._ref is None else self._ref()

    def __reduce__(self) -> tuple[type[BackendRef], tuple[None]]:
        return (BackendRef, (None,))

    def __deepcopy__(self, memo: dict[int, Any]) -> BackendRef:
        return self

    def __repr__(self) -> str:
        return "BackendRef()"


@dataclass(frozen=True)
class RoutingDecision:
    """Which model answers a query, and why.

    ``scores`` holds every eligible model's :class:`ArmScore`; ``excluded`` maps each
    ineligible model to the reason; ``predicted_joules`` is the energy model's estimate
    (``None`` for a model not yet observed). ``scores`` and ``predicted_joules`` are read-only
    mappings over arrays (:class:`~greenserv_core.bandits.ArmScores`,
    :class:`~greenserv_core.bandits.columns.KnownValues`): a model's entry is made when read.
    ``tradeoff`` is the λ in force; ``budget`` what the energy budget did (``None``: no
    budget, or a λ given for this query). ``chosen`` is the backend the router chose under
    ``model``'s name (a model replaced in the pool since does not answer the query: it fails
    over).
    """

    decision_id: str
    model: str
    features: QueryFeatures
    scores: Mapping[str, ArmScore]
    excluded: dict[str, str]
    predicted_joules: Mapping[str, float | None]
    tradeoff: float
    explored: bool
    budget: BudgetStatus | None = None
    chosen: BackendRef | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class FailedAttempt:
    """A model that failed a query before another answered it, and what it spent first
    (a remote server's busy time priced at its assumed watts is an estimate: ``energy_measured``
    False; ``energy_source`` ``None`` where the backend could not tell)."""

    model: str
    error: str
    energy_joules: float
    latency_s: float
    energy_source: str | None
    energy_measured: bool

    @classmethod
    def of(cls, model: str, error: ModelUnavailableError) -> FailedAttempt:
        """What ``error`` says ``model``'s failed attempt spent (see :func:`readable_spend`: a
        reading that is not a number of joules or seconds, NaN or negative, counts as nothing).

        >>> FailedAttempt.of("m", ModelUnavailableError("down", spent_joules=float("nan"))).energy_joules
        0.0
        """
        joules, seconds, measured = readable_spend(error)
        return cls(model, str(error), joules, seconds, error.spent_source, measured)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    chain: tuple[ChainStep, ...] = ()
    """For a cascade: each model it ran, its confidence and cost, and why it escalated or
    stopped (empty for a single model; joules and seconds above are the chain's sums)."""
    failed_attempts: tuple[FailedAttempt, ...] = ()
    """The models that failed this query before ``model`` answered it, with what each spent;
    the joules and seconds above are the answer's own, these come on top."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def total_energy_joules(self) -> float:
        """The answer's joules and its failed attempts' (what the query cost in all)."""
        return self.energy_joules + sum(attempt.energy_joules for attempt in self.failed_attempts)

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
            "budget": None if self.decision.budget is None else self.decision.budget.to_dict(),
            "chain": [step.to_dict() for step in self.chain],
            "failed_attempts": [attempt.to_dict() for attempt in self.failed_attempts],
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
    recorded; ``applied`` is False when the model was removed from the pool meanwhile.
    ``reward`` is reported as weighed when the score came: on the ``"known"`` and ``"seen"``
    scales (and under a budget priced on the energy scale) the answer's joules are normalised
    by the task's energy range at that moment, so the same score given later may show another
    reward (the ``"pool"`` scale keeps the range the decision was weighed on)."""

    decision_id: str
    model: str
    score: float
    reward: float | None
    applied: bool
