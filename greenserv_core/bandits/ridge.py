"""Online ridge regression with Sherman–Morrison rank-one updates (one per arm).

Sufficient statistics ``A = A₀ + Σ x xᵀ`` and ``b = b₀ + Σ r x`` are kept, where the prior
``A₀ = l2·I + Σ w x xᵀ`` and ``b₀ = l2·θ₀ + Σ w r x`` holds the prior mean and any weighted
pseudo-observations (:meth:`RidgeArm.add_prior`). The data part adds up across replicas;
``A⁻¹`` is updated in O(d²) per observation instead of inverted, and re-derived from ``A``
every ``refresh_every`` updates to stop round-off from accumulating.

With ``forget`` below 1, the data part is discounted by that factor at each update, so old
evidence fades (an observation ``k`` updates ago weighs ``forgetᵏ``) and the estimate follows
a model that changes; the prior never fades.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from greenserv_core.bandits.prior import ArmPrior
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
        self,
        dimension: int,
        *,
        l2: float = 1.0,
        prior_mean: np.ndarray | None = None,
        refresh_every: int = 2048,
        forget: float = 1.0,
    ) -> None:
        if dimension < 1:
            raise InvalidInputError(f"dimension must be positive, got {dimension}")
        if not l2 > 0:
            raise InvalidInputError(f"l2 must be positive, got {l2}")
        if not 0 < forget <= 1:
            raise InvalidInputError(f"forget must be in (0, 1], got {forget!r}")
        self.dimension = dimension
        self.l2 = float(l2)
        self.refresh_every = refresh_every
        self.forget = float(forget)
        prior = np.zeros(dimension) if prior_mean is None else np.asarray(prior_mean, dtype=np.float64)
        self.prior_mean = prior.copy()
        self.prior_xx = np.zeros((dimension, dimension))
        self.prior_yx = np.zeros(dimension)
        self.A = self.l2 * np.eye(dimension)
        self.A_inv = np.eye(dimension) / self.l2
        self.b = self.l2 * prior
        self.n = 0
        self._theta: np.ndarray | None = None

    def _prior_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A₀, b₀)``: the prior's part of ``A`` and ``b``."""
        return self.l2 * np.eye(self.dimension) + self.prior_xx, self.l2 * self.prior_mean + self.prior_yx

    def set_prior_mean(self, prior_mean: np.ndarray) -> None:
        """Move the prior mean ``θ₀`` (what the data say stays as it is).

        >>> arm = RidgeArm(1, l2=1.0); arm.set_prior_mean(np.array([0.6])); arm.predict(np.array([1.0]))
        0.6
        """
        mean = np.asarray(prior_mean, dtype=np.float64)
        if mean.shape != (self.dimension,) or not np.all(np.isfinite(mean)):
            raise InvalidInputError(f"prior mean must be {self.dimension} finite numbers")
        self.b = self.b + self.l2 * (mean - self.prior_mean)
        self.prior_mean = mean.copy()
        self._theta = None

    def add_prior(self, prior: ArmPrior) -> None:
        """Add ``prior``'s weighted pseudo-observations to the prior: ``weights[i]`` observations
        of ``rewards[i]`` at ``contexts[i]``. They never fade and are not shared as data.

        >>> arm = RidgeArm(1, l2=1e-6)
        >>> arm.add_prior(ArmPrior(np.array([[1.0]]), np.array([0.7]), np.array([10.0])))
        >>> round(arm.predict(np.array([1.0])), 3), arm.n
        (0.7, 0)
        """
        xs, ys, ws = prior.contexts, prior.rewards, prior.weights
        if xs.shape[1] != self.dimension:
            raise InvalidInputError(f"the prior's contexts have dimension {xs.shape[1]}, not {self.dimension}")
        xx = (xs * ws[:, None]).T @ xs
        yx = (ws * ys) @ xs
        self.prior_xx = self.prior_xx + xx
        self.prior_yx = self.prior_yx + yx
        self.A = self.A + xx
        self.b = self.b + yx
        self.A_inv = np.asarray(np.linalg.inv(self.A), dtype=np.float64)
        self._theta = None

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
        self.n += 1
        self._theta = None
        if self.forget < 1.0:
            base_a, base_b = self._prior_sums()
            self.A = base_a + self.forget * (self.A - base_a) + np.outer(x, x)
            self.b = base_b + self.forget * (self.b - base_b) + y * x
            self.A_inv = np.asarray(np.linalg.inv(self.A), dtype=np.float64)
            return
        a_inv_x = self.A_inv @ x
        self.A += np.outer(x, x)
        self.A_inv -= np.outer(a_inv_x, a_inv_x) / (1.0 + x @ a_inv_x)
        self.b += y * x
        if self.refresh_every and self.n % self.refresh_every == 0:
            self.A_inv = np.asarray(np.linalg.inv(self.A), dtype=np.float64)

    def predict(self, x: np.ndarray) -> float:
        return float(x @ self.theta)

    def variance(self, x: np.ndarray) -> float:
        """``xᵀ A⁻¹ x``: the width of the estimate at ``x`` (before noise scaling)."""
        return max(float(x @ self.A_inv @ x), 0.0)

    def data_sums(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(Σ x xᵀ, Σ y x, n)``: what the observations added to the prior. These add up
        across router replicas (see :mod:`greenserv_core.sharing`)."""
        base_a, base_b = self._prior_sums()
        return self.A - base_a, self.b - base_b, self.n

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
        base_a, base_b = self._prior_sums()
        self.A = base_a + xx
        self.b = base_b + yx
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
        return {
            "A": self.A.copy(),
            "A_inv": self.A_inv.copy(),
            "b": self.b.copy(),
            "n": self.n,
            "l2": self.l2,
            "prior_xx": self.prior_xx.copy(),
            "prior_yx": self.prior_yx.copy(),
            "prior_mean": self.prior_mean.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        A = np.asarray(state["A"], dtype=np.float64)
        b = np.asarray(state["b"], dtype=np.float64)
        A_inv = np.asarray(state["A_inv"], dtype=np.float64)
        if A.shape != (self.dimension, self.dimension) or b.shape != (self.dimension,) or A_inv.shape != A.shape:
            raise InvalidInputError(f"ridge state does not have dimension {self.dimension}")
        self.A, self.A_inv, self.b = A.copy(), A_inv.copy(), b.copy()
        self.n = int(state["n"])
        self.l2 = float(state["l2"])
        if "prior_xx" in state:  # saved before priors existed: none
            self.prior_xx = np.asarray(state["prior_xx"], dtype=np.float64).reshape(A.shape).copy()
            self.prior_yx = np.asarray(state["prior_yx"], dtype=np.float64).reshape(b.shape).copy()
        if "prior_mean" in state:
            self.prior_mean = np.asarray(state["prior_mean"], dtype=np.float64).reshape(b.shape).copy()
        self._theta = None
