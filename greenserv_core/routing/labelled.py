"""A model's labelled answer to one query, taught without routing it (a warm start).

:meth:`GreenServRouter.learn_answers <greenserv_core.router.GreenServRouter.learn_answers>`
takes one :class:`LabelledAnswer` per model for a query, e.g. one row per model of an outcome
table collected with ``greenserv bench collect``. Every part is optional; what is given is
checked here, once.

>>> answer = LabelledAnswer(score=1.0, energy_joules=12.5, latency_s=0.4, confidence=0.83)
>>> answer.confidence, answer.confidence_joules, answer.confidence_signal
(0.83, 0.0, None)
>>> LabelledAnswer(score=1.5)
Traceback (most recent call last):
...
greenserv_core.errors.InvalidInputError: feedback score must be a number in [0, 1], got 1.5
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from greenserv_core.errors import InvalidInputError
from greenserv_core.quality import as_float
from greenserv_core.reward import check_score

__all__ = ["LabelledAnswer", "check_measured"]


def check_measured(name: str, value: object) -> None:
    """A measured amount (joules, seconds) must be a finite number >= 0, or
    :class:`InvalidInputError` (the learner checks its outcomes with it too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= as_float(value) < math.inf:
        raise InvalidInputError(f"{name} must be finite and >= 0, got {value!r}")


@dataclass(frozen=True)
class LabelledAnswer:
    """What one model's answer to a query scored (``score`` in [0, 1]), spent
    (``energy_joules``, ``latency_s``), and how sure the model was (``confidence`` in [0, 1],
    e.g. :class:`~greenserv_core.confidence.AnswerProbability`'s reading, with
    ``confidence_joules`` what reading it cost, such as a self-verification question; a
    cascade's first answer is charged for it; ``confidence_signal`` the name of the signal that
    read it, such as ``"answer-probability"``, under which a cascade's escalation rule learns it:
    signals of other scales each have a correction of their own, and ``None`` teaches the
    correction that every signal's shares)."""

    score: float | None = None
    energy_joules: float | None = None
    latency_s: float | None = None
    confidence: float | None = None
    confidence_joules: float = 0.0
    confidence_signal: str | None = None

    def __post_init__(self) -> None:
        if self.score is not None:
            object.__setattr__(self, "score", check_score(self.score))
        for name in ("energy_joules", "latency_s"):
            value = getattr(self, name)
            if value is not None:
                check_measured(name, value)
                object.__setattr__(self, name, float(value))
        check_measured("confidence_joules", self.confidence_joules)
        object.__setattr__(self, "confidence_joules", float(self.confidence_joules))
        confidence = self.confidence
        if confidence is not None and (
            isinstance(confidence, bool)
            or not isinstance(confidence, numbers.Real)
            or not 0.0 <= confidence <= 1.0  # NaN fails both comparisons
        ):
            raise InvalidInputError(f"confidence must be a number in [0, 1] or None, got {confidence!r}")
        if confidence is not None:
            object.__setattr__(self, "confidence", float(confidence))
        if self.confidence_signal is not None and not isinstance(self.confidence_signal, str):
            raise InvalidInputError(f"confidence_signal must be a name or None, got {self.confidence_signal!r}")
