"""Exceptions raised by GreenServ.

Every error names the problem; the router's state is unchanged when one is raised.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

__all__ = [
    "BatchItemsUnavailableError",
    "CascadeMemberUnavailableError",
    "DecisionAlreadyScoredError",
    "DecisionIdInUseError",
    "DecisionStillAnsweringError",
    "GreenServError",
    "InvalidInputError",
    "MissingResourceError",
    "ModelUnavailableError",
    "NoEligibleModelError",
    "PendingStoreUnreachableError",
    "SharingNotSupportedError",
    "StateFileError",
    "UnknownDecisionError",
    "UnknownModelError",
    "WindowNotMeasuredError",
    "spent_by",
]


class GreenServError(Exception):
    """Base class of every GreenServ error."""


class InvalidInputError(GreenServError, ValueError):
    """An argument is malformed: empty messages, non-string content, NaN feedback, λ outside [0, 1]."""


class DecisionIdInUseError(InvalidInputError):
    """A caller's decision id is pending, was recently used, or is held by a query being routed
    again after a failure; ``decision_id`` is that id.

    >>> error = DecisionIdInUseError("run-1")
    >>> error.decision_id, str(error)
    ('run-1', "decision id 'run-1' is already in use")
    """

    def __init__(self, decision_id: str) -> None:
        super().__init__(f"decision id {decision_id!r} is already in use")
        self.decision_id = decision_id

    def __reduce__(self) -> tuple[type[DecisionIdInUseError], tuple[str]]:
        return type(self), (self.decision_id,)


class UnknownModelError(GreenServError, KeyError):
    """A model name is not in the pool."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class NoEligibleModelError(GreenServError, RuntimeError):
    """No model in the pool satisfies the query's latency and capability limits."""


class UnknownDecisionError(GreenServError, KeyError):
    """A decision id is unknown, or was evicted from the pending store (too old or too many)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DecisionAlreadyScoredError(GreenServError, ValueError):
    """Feedback was already given for this decision; a second score is refused."""


class DecisionStillAnsweringError(GreenServError, ValueError):
    """Feedback came for a decision whose answer the router is still making, before any of it
    came: its model may yet fail and the query go to another, so the score is refused (not
    learned); give it once the answer has come."""


class StateFileError(GreenServError, ValueError):
    """A saved router state is corrupt, of another format version, or does not match the pool."""


class MissingResourceError(GreenServError, FileNotFoundError):
    """A bundled model or data package is not installed; the message says how to install it."""


class PendingStoreUnreachableError(MissingResourceError):
    """The router's pending store (e.g. :class:`~greenserv_core.sharing.RedisPendingDecisions`)
    cannot be reached or refused a command. Before a model runs, the query fails with it: no
    model runs for a decision that could not be recorded. Once an answer has come, the answer
    is returned and its joules are counted by this router; only its score is lost (the
    decision expires in the store)."""


class WindowNotMeasuredError(MissingResourceError):
    """An energy meter that works has no reading for one window: its counter went back (a
    driver reload, a GPU reset, an exporter restart) or was not refreshed within the window.
    A :class:`~greenserv_core.energy.FallbackMeter` takes its fallback's reading for that
    window only and keeps the meter for the next one."""


class ModelUnavailableError(GreenServError, RuntimeError):
    """A model could not answer: its server failed, timed out or is cooling down after
    repeated failures. The router routes the query to another eligible model.

    What the failed attempt spent before it failed, where the backend knows it:
    ``spent_joules`` and ``spent_s``, with the joules' ``spent_source`` and whether they were
    ``spent_measured`` (a remote server's time priced at its assumed watts is an estimate).
    The router charges them to the query (:attr:`RoutedGeneration.failed_attempts`).
    """

    def __init__(
        self,
        message: str = "",
        *,
        spent_joules: float = 0.0,
        spent_s: float = 0.0,
        spent_source: str | None = None,
        spent_measured: bool = False,
    ) -> None:
        super().__init__(message)
        self.spent_joules = spent_joules
        self.spent_s = spent_s
        self.spent_source = spent_source
        self.spent_measured = spent_measured


def spent_by(error: ModelUnavailableError) -> dict[str, Any]:
    """What ``error`` says its failed attempt spent, as keyword arguments for another
    :class:`ModelUnavailableError` that carries it on."""
    return {
        "spent_joules": error.spent_joules,
        "spent_s": error.spent_s,
        "spent_source": error.spent_source,
        "spent_measured": error.spent_measured,
    }


def readable_spend(error: ModelUnavailableError) -> tuple[float, float, bool]:
    """``(joules, seconds, measured)`` that ``error`` says its failed attempt spent, where a
    reading that is not a number of joules or seconds (NaN, infinite, negative) counts as
    nothing spent, and a reading set aside is not a measurement.

    >>> readable_spend(ModelUnavailableError("down", spent_joules=float("nan"), spent_s=2.0, spent_measured=True))
    (0.0, 2.0, False)
    """

    from greenserv_core.quality import is_real  # (it imports this module)

    def spent(value: object) -> float:
        return float(value) if is_real(value) and 0 <= value < math.inf else 0.0  # type: ignore[operator, arg-type]

    joules, seconds = spent(error.spent_joules), spent(error.spent_s)
    return joules, seconds, error.spent_measured and joules == error.spent_joules


class CascadeMemberUnavailableError(ModelUnavailableError):
    """A model of a cascade could not answer (``member``); ``spent_joules`` were already spent
    on the cascade's earlier answer. The router routes the query around that model."""

    def __init__(
        self,
        message: str,
        *,
        member: str,
        spent_joules: float = 0.0,
        spent_s: float = 0.0,
        spent_source: str | None = None,
        spent_measured: bool = False,
    ) -> None:
        super().__init__(
            message,
            spent_joules=spent_joules,
            spent_s=spent_s,
            spent_source=spent_source,
            spent_measured=spent_measured,
        )
        self.member = member

    def __reduce__(self) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        # ``member`` is keyword-only: the default ``type(self)(*args)`` cannot pass it
        return partial(type(self), member=self.member), self.args, self.__dict__


class BatchItemsUnavailableError(ModelUnavailableError):
    """Some conversations of a batch cannot be answered by this model, the others can: raised
    before anything ran. ``items`` maps each one's position in the batch to why (a prompt past
    the context window). The router sends those elsewhere and runs the rest on the model.

    >>> error = BatchItemsUnavailableError({1: "m: the prompt is 9000 tokens ..."})
    >>> error.items
    {1: 'm: the prompt is 9000 tokens ...'}
    """

    def __init__(self, items: dict[int, str]) -> None:
        super().__init__("; ".join(f"batch item {i}: {why}" for i, why in sorted(items.items())))
        self.items = dict(items)

    def __reduce__(self) -> tuple[type[BatchItemsUnavailableError], tuple[dict[int, str]], dict[str, Any]]:
        return type(self), (self.items,), self.__dict__  # the message is rebuilt; the state keeps what was spent


class SharingNotSupportedError(GreenServError, TypeError):
    """A learned component (e.g. a custom policy) cannot turn its state into mergeable
    statistics, so replicas cannot share it; raised when sharing starts."""
