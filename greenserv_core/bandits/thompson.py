"""Linear Thompson sampling (Agrawal & Goyal, 2013)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from typing_extensions import Unpack

from greenserv_core.bandits.base import check_number
from greenserv_core.bandits.linear import LinearOptions, LinearPolicy
from greenserv_core.bandits.registry import register_policy

__all__ = ["LinearThompson"]


@register_policy
class LinearThompson(LinearPolicy):
    """Samples ``θ̃ ~ N(θ̂, v²A⁻¹)`` per arm and plays the best ``θ̃ᵀx``.

    Only ``θ̃ᵀx`` matters for one decision, and it is exactly ``N(θ̂ᵀx, v²·xᵀA⁻¹x)``, so the
    policy draws that scalar instead of a d-dimensional vector (same distribution, O(d²)).

    >>> policy = LinearThompson(dimension=2, seed=0)
    >>> policy.add_arm("a"); policy.add_arm("b")
    >>> policy.select(np.array([1.0, 0.0])) in {"a", "b"}
    True
    """

    name = "thompson"

    def __init__(self, dimension: int, *, v: float = 0.5, **options: Unpack[LinearOptions]) -> None:
        super().__init__(dimension, **options)
        self.v = check_number("v", v, low=0.0)

    def estimates(self, context: np.ndarray, arms: Sequence[str]) -> np.ndarray:
        """Each arm's posterior mean: a read, which draws nothing (a cascade's plan reads it,
        and seeded decisions stay the same whether it does or not)."""
        x, checked = self._check_decision(context, arms)
        return self._ridge_estimates(x, checked)[0]

    def _estimate_arrays(self, context: np.ndarray, arms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        noise = self.rng_.standard_normal(len(arms))
        estimate, rows = self._ridge_estimates(context, arms)
        return estimate, self.v * np.sqrt(self._widths(context, rows)) * noise

    def params(self) -> dict[str, Any]:
        return {**super().params(), "v": self.v}
