"""What a model is believed to score before the router has seen it answer.

A :class:`QualityPrior` states a model's expected score per task type, e.g. from its model
card or a leaderboard, with a strength in pseudo-observations: a prior of strength 10 counts
as much as 10 scored answers, so a wrong one is outvoted after a few dozen real ones.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from greenserv_core.errors import InvalidInputError

__all__ = ["MAX_STRENGTH", "QualityPrior", "as_float", "is_real"]


MAX_STRENGTH = 1e6
"""The most answers a prior may be worth: beyond it the ridge's sums lose the data's digits
(a prior of 1e15 answers read 1.0 for 0.9, and of 1e17 made the ridge singular)."""


@dataclass(frozen=True)
class QualityPrior:
    """Expected score in [0, 1] per task type (``scores``), ``default`` for the task types not
    named (none: no pseudo-answers at them), each worth ``strength`` scored answers.

    A prior acts like that many answers, exactly as real ones would: at the task types it names,
    and, through the coefficients every task type shares (the intercept, the cluster and the
    complexity-bin ones), at the others too. Without a ``default``, ``{"math": 0.1}``
    also lowers the model's estimate on chat (see :mod:`greenserv_core.routing.priors`).

    Task types are the router's (its task classifier's labels, e.g. ``"math_word_problem"``).

    >>> prior = QualityPrior({"math_word_problem": 0.7}, default=0.5, strength=10)
    >>> prior.score_for("math_word_problem"), prior.score_for("chat")
    (0.7, 0.5)
    """

    scores: Mapping[str, float] = field(default_factory=dict, hash=False)
    default: float | None = None
    strength: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.scores, Mapping):
            raise InvalidInputError(f"quality prior scores must map task types to scores, got {self.scores!r}")
        named = [(f"task type {task!r}", score) for task, score in self.scores.items()]
        for what, score in [*named, ("the default", 0.0 if self.default is None else self.default)]:
            if not is_real(score) or not 0.0 <= float(score) <= 1.0:
                raise InvalidInputError(f"quality prior of {what} must be a number in [0, 1], got {score!r}")
        if not is_real(self.strength) or not 0 < self.strength <= MAX_STRENGTH:  # NaN and inf too
            raise InvalidInputError(
                f"quality prior strength must be a number of answers in (0, {MAX_STRENGTH:g}], got {self.strength!r}"
            )
        object.__setattr__(self, "scores", {str(t): float(s) for t, s in self.scores.items()})
        object.__setattr__(self, "strength", float(self.strength))
        if self.default is not None:
            object.__setattr__(self, "default", float(self.default))

    def score_for(self, task: str) -> float | None:
        """The believed score on ``task``, or ``None`` where there is no belief."""
        return self.scores.get(task, self.default)


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number (a bool is not one).

    >>> is_real(0.5), is_real(True), is_real("1")
    (True, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def as_float(value: Any) -> float:
    """``float(value)`` of a real number, infinite for one too large for a float
    (``float(10**400)`` raises).

    >>> as_float(2), as_float(-(10**400))
    (2.0, -inf)
    """
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
