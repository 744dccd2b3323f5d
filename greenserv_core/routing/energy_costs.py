"""What predicted joules cost in the reward's units, on each of the router's energy scales.

The router scores each eligible model ``(1-λ)·value − λ·energy_norm``; :func:`energy_costs`
turns a query's predicted joules into the ``λ·energy_norm`` of each model, on the scale the
router was given (:data:`ENERGY_SCALES`), and :func:`escalation_cost` what a cascade's second
model adds. The ranges themselves are learned state, an
:class:`~greenserv_core.reward.EnergyNormalizer` the caller owns.

>>> from greenserv_core.reward import EnergyNormalizer
>>> scale = EnergyNormalizer({"math": [10.0, 110.0]})
>>> energy_costs("known", scale, "math", {"small": 10.0, "large": 60.0, "new": None}, np.array([]), 0.4)
{'small': 0.0, 'large': 0.2, 'new': 0.0}
>>> escalation_cost("known", scale, "math", 50.0, np.array([]), 0.4, None)
0.2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from greenserv_core.bandits.columns import ArmValues, KnownValues
from greenserv_core.reward import EnergyNormalizer

__all__ = [
    "DEFAULT_ENERGY_SCALE",
    "ENERGY_SCALES",
    "EnergyScaleName",
    "energy_bounds",
    "energy_costs",
    "escalation_cost",
    "pool_spread",
]

EnergyScaleName = Literal["known", "seen", "pool"]
ENERGY_SCALES: tuple[EnergyScaleName, ...] = ("known", "seen", "pool")
"""How predicted joules become ``energy_norm`` at decision time.

- ``"known"`` (the default): by the range of joules the router knows on the query's task type:
  every joule measured there, and every prediction it made there for a model of the pool
  (learned, or from the model's per-token prior before it has answered).
  Once each model has answered once (anywhere), the range spans the dearest model's
  predictions from a task's first query on, so the weight of energy does not start high and
  shrink as the router explores. The range is a high-water mark: an early prediction that
  overshoots (a model measured on one task type, predicted on another) stays in it, and so
  does one that undershoots at the low end. A cascade's own prediction does not count (its
  members' do). BENCHMARKS.md (issue 15, "The ``known`` energy scale") measures all three.
- ``"seen"``: by the range of joules measured on the task (:class:`EnergyNormalizer`; an
  :class:`EnergyNormalizer` given instead starts that range and implies ``"seen"``). Early on
  it spans only the models the router happened to run, so energy weighs more, and less as it
  explores (the default before ``"known"``).
- ``"pool"``: by the spread of the pool's predicted joules for this very query, cheapest model
  0 and dearest 1 (until two models are measured it falls back to ``"seen"``). It depends on
  the pool: one very dear model makes every other look cheap.
"""
DEFAULT_ENERGY_SCALE: EnergyScaleName = "known"


def _known(value: float | None) -> float:
    return np.nan if value is None else float(value)


def pool_spread(joules: np.ndarray, pool: np.ndarray) -> tuple[float, float] | None:
    """The cheapest and dearest predicted joules of the pool for this query (``None``
    before two differ).

    >>> pool_spread(np.array([5.0, np.nan]), np.array([20.0])), pool_spread(np.array([5.0]), np.array([]))
    ((5.0, 20.0), None)
    """
    known = np.concatenate([pool, joules])
    known = known[~np.isnan(known)]
    if len(known) >= 2 and known.max() > known.min():
        return float(known.min()), float(known.max())
    return None


def energy_bounds(
    scale: EnergyScaleName, normalizer: EnergyNormalizer, task: str, joules: np.ndarray, pool: np.ndarray
) -> tuple[float, float] | None:
    """The joules that map to energy_norm 0 and 1 for a query of ``task``: the range known
    (``"known"``) or measured (``"seen"``) on the task, or the spread of the pool's
    predictions for this query (``"pool"``, once two are known); ``None`` before any range
    is known."""
    spread = pool_spread(joules, pool) if scale == "pool" else None
    return spread if spread is not None else normalizer.range_for(task)


def energy_costs(
    scale: EnergyScaleName,
    normalizer: EnergyNormalizer,
    task: str,
    eligible: Mapping[str, float | None],
    pool: Mapping[str, float | None] | np.ndarray,
    tradeoff: float,
) -> ArmValues:
    """λ · normalised predicted joules of each eligible model (0 while a model is unmeasured);
    ``pool`` holds the predictions of the whole pool (learned, else from a per-token prior;
    ``None`` or NaN: none)."""
    if not isinstance(eligible, KnownValues):
        eligible = KnownValues(list(eligible), np.array([_known(j) for j in eligible.values()], dtype=np.float64))
    if not isinstance(pool, np.ndarray):
        pool = np.array([_known(j) for j in pool.values()], dtype=np.float64)
    joules = eligible.array
    bounds = energy_bounds(scale, normalizer, task, joules, pool)
    if bounds is None:
        return ArmValues(eligible.arms, np.zeros(len(joules)))
    low, high = bounds
    normalised = np.minimum(1.0, np.maximum(0.0, (joules - low) / (high - low)))
    return ArmValues(eligible.arms, np.where(np.isnan(joules), 0.0, tradeoff * normalised))


def escalation_cost(
    scale: EnergyScaleName,
    normalizer: EnergyNormalizer,
    task: str,
    joules: float,
    pool: np.ndarray,
    tradeoff: float,
    per_query: float | None,
) -> float:
    """What escalating adds: the second model's predicted ``joules`` on the reward's scale, or
    over the per-query budget ``per_query`` where the budget prices joules (0 while they are
    unknown)."""
    if np.isnan(joules):
        return 0.0
    if per_query is not None:
        return float(tradeoff * joules / per_query)
    bounds = energy_bounds(scale, normalizer, task, np.array([joules]), pool)
    return 0.0 if bounds is None else float(tradeoff * min(1.0, joules / (bounds[1] - bounds[0])))
