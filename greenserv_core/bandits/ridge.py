"""Online ridge regression with Sherman–Morrison rank-one updates (one per arm).

Sufficient statistics ``A = l2·I + Σ x xᵀ`` and ``b = l2·θ₀ + Σ r x`` are kept (they add up
across replicas); ``A⁻¹`` is updated in O(d²) per observation instead of inverted, and
re-derived from ``A`` every ``refresh_every`` updates to stop round-off from accumulating.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from greenserv_core.errors import InvalidInputError
from greenserv_core.statistics import Statistics

__all__ = ["RidgeArm"]


class RidgeArm:
    """Ridge estimate ``θ = A⁻¹ b`` with prior mean ``prior_mean`` (defaults to zero).

    >>> arm = RidgeArm(2, l2=1.0)
    >>> arm.update(np.array([1.0, 0.0]), 1.0)
    >>> arm.predict(np.array([1.0, 0.0]))
    0.5
    """

    def __init__(
        self, dimension: int, *, l2: float = 1.0, prior_mean: np.ndarray | None = None, refresh_every: int = 2048
    ) -> None:
        if dimension < 1:
            raise InvalidInputError(f"dimension must be positive, got {dimension}")
        if not l2 > 0:
            raise InvalidInputError(f"l2 must be positive, got {l2}")
        self.dimension = dimension
        self.l2 = float(l2)
        self.refresh_every = refresh_every
        prior = np.zeros(dimension) if prior_mean is None else np.asarray(prior_mean, dtype=np.float64)
        self.prior_mean = prior.copy()
        self.A = self.l2 * np.eye(dimension)
        self.A_inv = np.eye(dimension) / self.l2
        self.b = self.l2 * prior
        self.n = 0
        self._theta: np.ndarray | None = None

    @property
    def theta(self) -> np.ndarray:
        if self._theta is None:
            self._theta = self.A_inv @ self.b
        return self._theta

    def check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dimension,):
            raise InvalidInputError(f"context must have shape ({self.dimension},), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise InvalidInputError("context contains NaN or infinity")
        return x

    def update(self, x: np.ndarray, y: float) -> None:
        x = self.check(x)
        if not np.isfinite(y):
            raise InvalidInputError(f"target must be finite, got {y!r}")
        a_inv_x = self.A_inv @ x
        self.A += np.outer(x, x)
        self.A_inv -= np.outer(a_inv_x, a_inv_x) / (1.0 + x @ a_inv_x)
        self.b += y * x
        self.n += 1
        if self.refresh_every and self.n % self.refresh_every == 0:
            self.A_inv = np.asarray(np.linalg.inv(self.A), dtype=np.float64)
        self._theta = None

    def predict(self, x: np.ndarray) -> float:
        return float(x @ self.theta)

    def variance(self, x: np.ndarray) -> float:
        """``xᵀ A⁻¹ x``: the width of the estimate at ``x`` (before noise scaling)."""
        return max(float(x @ self.A_inv @ x), 0.0)

    def data_sums(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(Σ x xᵀ, Σ y x, n)``: what the observations added to the prior. These add up
        across router replicas (see :mod:`greenserv_core.sharing`)."""
        return self.A - self.l2 * np.eye(self.dimension), self.b - self.l2 * self.prior_mean, self.n

    def load_data_sums(self, xx: np.ndarray, yx: np.ndarray, n: int) -> None:
        """Set the state to the prior plus these sums (``A⁻¹`` is re-derived).

        >>> one, two = RidgeArm(2), RidgeArm(2)
        >>> one.update(np.array([1.0, 0.0]), 1.0); two.update(np.array([0.0, 1.0]), 2.0)
        >>> merged = RidgeArm(2)
        >>> merged.load_data_sums(*(a + b for a, b in zip(one.data_sums(), two.data_sums())))
        >>> merged.predict(np.array([0.0, 1.0])), merged.n
        (1.0, 2)
        """
        xx = np.asarray(xx, dtype=np.float64)
        yx = np.asarray(yx, dtype=np.float64)
        if xx.shape != (self.dimension, self.dimension) or yx.shape != (self.dimension,):
            raise InvalidInputError(f"ridge sums do not have dimension {self.dimension}")
        self.A = self.l2 * np.eye(self.dimension) + xx
        self.b = self.l2 * self.prior_mean + yx
        self.A_inv = np.asarray(np.linalg.inv(self.A), dtype=np.float64)
        self.n = int(n)
        self._theta = None

    def statistics(self) -> Statistics:
        """:meth:`data_sums` as :class:`~greenserv_core.statistics.Statistics` (``xx``, ``yx``, ``n``)."""
        xx, yx, n = self.data_sums()
        return Statistics(sums={"xx": xx, "yx": yx, "n": np.array([float(n)])})

    def load_statistics(self, stats: Statistics) -> None:
        """:meth:`load_data_sums` from :meth:`statistics` (left as it is when they hold none)."""
        if "xx" in stats.sums:
            self.load_data_sums(stats.sums["xx"], stats.sums["yx"], round(float(stats.sums["n"][0])))

    def state_dict(self) -> dict[str, Any]:
        return {"A": self.A.copy(), "A_inv": self.A_inv.copy(), "b": self.b.copy(), "n": self.n, "l2": self.l2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        A = np.asarray(state["A"], dtype=np.float64)
        b = np.asarray(state["b"], dtype=np.float64)
        A_inv = np.asarray(state["A_inv"], dtype=np.float64)
        if A.shape != (self.dimension, self.dimension) or b.shape != (self.dimension,) or A_inv.shape != A.shape:
            raise InvalidInputError(f"ridge state does not have dimension {self.dimension}")
        self.A, self.A_inv, self.b = A.copy(), A_inv.copy(), b.copy()
        self.n = int(state["n"])
        self.l2 = float(state["l2"])
        self._theta = None
