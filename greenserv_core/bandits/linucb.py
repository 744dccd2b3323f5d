"""LinUCB (Li et al., 2010), disjoint linear models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from typing_extensions import Unpack

from greenserv_core.bandits.base import check_number
from greenserv_core.bandits.linear import LinearOptions, LinearPolicy
from greenserv_core.bandits.registry import register_policy

__all__ = ["LinUCB"]


@register_policy
class LinUCB(LinearPolicy):
    """Upper confidence bound: ``θᵀx + alpha·sqrt(xᵀA⁻¹x)`` (clipped to ``reward_range`` if set).

    With ``energy_scale="pool"`` on a large pool, ``alpha=0.3, reward_range=(0, 1)`` learns
    much faster; with the default scale the bound costs reward, and a small ``alpha`` can lock
    onto a worse model for good. Both are measured in BENCHMARKS.md (issue 15).

    >>> policy = LinUCB(dimension=2, seed=0)
    >>> for name in ("small", "large"): policy.add_arm(name)
    >>> policy.update("large", np.array([1.0, 1.0]), 0.0)
    >>> policy.select(np.array([1.0, 1.0]))   # the unplayed arm still has the wider bound
    'small'
    """

    name = "linucb"

    def __init__(self, dimension: int, *, alpha: float = 1.0, **options: Unpack[LinearOptions]) -> None:
        super().__init__(dimension, **options)
        self.alpha = check_number("alpha", alpha, low=0.0)

    def _estimate_arrays(self, context: np.ndarray, arms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        estimate, rows = self._ridge_estimates(context, arms)
        return estimate, self.alpha * np.sqrt(self._widths(context, rows))

    def params(self) -> dict[str, Any]:
        return {**super().params(), "alpha": self.alpha}
