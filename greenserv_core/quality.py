"""What a model is believed to score before the router has seen it answer.

A :class:`QualityPrior` states a model's expected score per task type, e.g. from its model
card or a leaderboard, with a strength in pseudo-observations: a prior of strength 10 counts
as much as 10 scored answers, so a wrong one is outvoted after a few dozen real ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from greenserv_core.errors import InvalidInputError

__all__ = ["QualityPrior"]


@dataclass(frozen=True)
class QualityPrior:
    """Expected score in [0, 1] per task type (``scores``), ``default`` for the task types not
    named (none: no belief about them), each worth ``strength`` scored answers.

    Task types are the router's (its task classifier's labels, e.g. ``"math_word_problem"``).

    >>> prior = QualityPrior({"math_word_problem": 0.7}, default=0.5, strength=10)
    >>> prior.score_for("math_word_problem"), prior.score_for("chat")
    (0.7, 0.5)
    """

    scores: Mapping[str, float] = field(default_factory=dict, hash=False)
    default: float | None = None
    strength: float = 10.0

    def __post_init__(self) -> None:
        for task, score in {**self.scores, "default": self.default if self.default is not None else 0.0}.items():
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= float(score) <= 1.0:
                raise InvalidInputError(f"quality prior of {task!r} must be a number in [0, 1], got {score!r}")
        if not isinstance(self.strength, (int, float)) or not math.isfinite(self.strength) or self.strength <= 0:
            raise InvalidInputError(f"quality prior strength must be a positive number, got {self.strength!r}")
        object.__setattr__(self, "scores", {str(t): float(s) for t, s in self.scores.items()})

    def score_for(self, task: str) -> float | None:
        """The believed score on ``task``, or ``None`` where there is no belief."""
        return self.scores.get(task, self.default)
