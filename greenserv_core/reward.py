"""The reward ``r = (1-λ)·accuracy − λ·energy_norm`` and the online energy normaliser.

Energy normalisation is online and per task type, with no offline calibration: each task's
running minimum and maximum of observed joules map a reading to
``clip((J − min) / (max − min), 0, 1)``. A task seen fewer than twice (or with one distinct
reading) borrows the range over all tasks; with no range at all the normalised energy is 0.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from greenserv_core.errors import InvalidInputError
from greenserv_core.quality import as_float
from greenserv_core.statistics import Statistics

__all__ = ["DEFAULT_TRADEOFF", "EnergyNormalizer", "check_score", "check_tradeoff", "reward"]

DEFAULT_TRADEOFF = 0.4
"""The default λ of the router and both adapters: the paper's evaluation setting."""


def check_tradeoff(tradeoff: object) -> float:
    """λ as a float in [0, 1], or :class:`InvalidInputError`."""
    if isinstance(tradeoff, bool) or not isinstance(tradeoff, numbers.Real) or not 0.0 <= as_float(tradeoff) <= 1.0:
        raise InvalidInputError(f"tradeoff λ must be a number in [0, 1], got {tradeoff!r}")
    return float(tradeoff)


def check_score(score: object) -> float:
    """A feedback score as a float in [0, 1], or :class:`InvalidInputError` (NaN included)."""
    if isinstance(score, (bool, np.bool_)):  # np.bool_ is what ``pred == gold`` gives on numpy values
        return float(score)
    if not isinstance(score, numbers.Real) or not 0.0 <= as_float(score) <= 1.0:  # NaN fails both comparisons
        raise InvalidInputError(f"feedback score must be a number in [0, 1], got {score!r}")
    return float(score)


def reward(accuracy: float, energy_norm: float, tradeoff: float) -> float:
    """``(1-λ)·accuracy − λ·energy_norm``.

    >>> round(reward(1.0, 0.5, 0.4), 6)
    0.4
    """
    return (1.0 - tradeoff) * accuracy - tradeoff * energy_norm


class EnergyNormalizer:
    """Running per-task min/max of joules. Learned state: ``ranges_`` {task: [min, max]};
    ``changes_`` counts the readings and loads it took (not saved: a router taking back a
    withdrawn batch's widening checks that nothing else moved the ranges meanwhile).

    ``ranges`` starts the scale from known ranges per task (e.g. an outcome table's) instead
    of from nothing; readings outside them still widen it.

    >>> norm = EnergyNormalizer()
    >>> norm.observe("qa", 10.0); norm.observe("qa", 30.0)
    >>> norm.normalize("qa", 20.0)
    0.5
    >>> EnergyNormalizer({"qa": (0.0, 40.0)}).normalize("qa", 20.0)
    0.5
    """

    def __init__(self, ranges: Mapping[str, Sequence[float]] | None = None) -> None:
        self.ranges = ranges
        self.ranges_: dict[str, list[float]] = {}
        self.changes_ = 0
        for task, bounds in (ranges or {}).items():
            bad = InvalidInputError(f"energy range of {task!r} must be 0 <= min <= max joules, got {bounds!r}")
            if isinstance(bounds, (str, bytes)):  # iterable, but not two numbers
                raise bad
            try:
                low, high = (float(b) for b in bounds)
            except (TypeError, ValueError, OverflowError):  # not two numbers
                raise bad from None
            if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
                raise bad
            self.ranges_[task] = [low, high]

    def observe(self, task: str, joules: float) -> None:
        if not math.isfinite(joules) or joules < 0:
            raise InvalidInputError(f"joules must be finite and >= 0, got {joules!r}")
        joules = float(joules)  # a range of floats, as saved states hold (a Fraction cannot be saved)
        self.changes_ += 1
        low_high = self.ranges_.setdefault(task, [joules, joules])
        low_high[0] = min(low_high[0], joules)
        low_high[1] = max(low_high[1], joules)

    def range_for(self, task: str) -> tuple[float, float] | None:
        own = self.ranges_.get(task)
        if own is not None and own[1] > own[0]:
            return own[0], own[1]
        if not self.ranges_:
            return None
        low = min(r[0] for r in self.ranges_.values())
        high = max(r[1] for r in self.ranges_.values())
        return (low, high) if high > low else None

    def normalize(self, task: str, joules: float) -> float:
        bounds = self.range_for(task)
        if bounds is None:
            return 0.0
        low, high = bounds
        return min(1.0, max(0.0, (joules - low) / (high - low)))

    def statistics(self) -> Statistics:
        """Each task's range as a minimum and a maximum (keyed by the percent-encoded task)."""
        keys = {task: quote(task, safe="") for task in self.ranges_}
        return Statistics(
            minima={keys[task]: np.array([low]) for task, (low, _) in self.ranges_.items()},
            maxima={keys[task]: np.array([high]) for task, (_, high) in self.ranges_.items()},
        )

    def load_statistics(self, stats: Statistics) -> None:
        """Take the merged range of every task in ``stats``; other tasks keep theirs."""
        self.changes_ += 1
        for key, low in stats.minima.items():
            if key in stats.maxima:
                self.ranges_[unquote(key)] = [float(low[0]), float(stats.maxima[key][0])]

    def state_dict(self) -> dict[str, Any]:
        return {"ranges": {task: list(r) for task, r in self.ranges_.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.changes_ += 1
        self.ranges_ = {task: [float(r[0]), float(r[1])] for task, r in state["ranges"].items()}
