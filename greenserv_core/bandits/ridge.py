"""One online ridge regression: a row of a :class:`~greenserv_core.bandits.ridges.RidgeStack`.

A :class:`RidgeArm` made on its own owns a stack of one row; the policies and the cost models
keep all their arms in one stack and hand out :meth:`RidgeArm.of` views of its rows, which
read and change the stack in place. The mathematics (Sherman–Morrison updates, the periodic
refresh of ``A⁻¹``, priors and forgetting) is told in :mod:`greenserv_core.bandits.ridges`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from greenserv_core.bandits.prior import ArmPrior
from greenserv_core.bandits.ridges import RidgeStack
from greenserv_core.statistics import Statistics

__all__ = ["RidgeArm"]


class RidgeArm:
    """Ridge estimate ``θ = A⁻¹ b`` with prior mean ``prior_mean`` (defaults to zero).

    >>> arm = RidgeArm(2, l2=1.0)
    >>> arm.update(np.array([1.0, 0.0]), 1.0)
    >>> arm.predict(np.array([1.0, 0.0]))
    0.5
    """

    __slots__ = ("name", "stack")

    def __init__(
        self,
        dimension: int,
        *,
        l2: float = 1.0,
        prior_mean: np.ndarray | None = None,
        refresh_every: int = 2048,
        forget: float = 1.0,
    ) -> None:
        self.stack = RidgeStack(dimension, l2=l2, prior_mean=prior_mean, refresh_every=refresh_every, forget=forget)
        self.name = ""
        self.stack.add(self.name)

    @classmethod
    def of(cls, stack: RidgeStack, name: str) -> RidgeArm:
        """The view of arm ``name`` of ``stack`` (it reads and changes the stack's row).

        >>> stack = RidgeStack(1); stack.add("a")
        >>> RidgeArm.of(stack, "a").update(np.ones(1), 2.0); stack.predict(np.ones(1)).tolist()
        [1.0]
        """
        arm = cls.__new__(cls)
        arm.stack, arm.name = stack, name
        return arm

    # ---- the row's state ----------------------------------------------------------------
    @property
    def _row(self) -> int:
        return self.stack.row(self.name)

    @property
    def dimension(self) -> int:
        return self.stack.dimension

    @property
    def forget(self) -> float:
        return self.stack.forget

    @property
    def refresh_every(self) -> int:
        return self.stack.refresh_every

    @property
    def l2(self) -> float:
        return float(self.stack.l2s[self._row])

    @property
    def n(self) -> int:
        return int(self.stack.n[self._row])

    @property
    def A(self) -> np.ndarray:
        row: np.ndarray = self.stack.A[self._row]
        return row

    @property
    def A_inv(self) -> np.ndarray:
        row: np.ndarray = self.stack.A_inv[self._row]
        return row

    @property
    def b(self) -> np.ndarray:
        row: np.ndarray = self.stack.b[self._row]
        return row

    @property
    def prior_xx(self) -> np.ndarray:
        row: np.ndarray = self.stack.prior_xx[self._row]
        return row

    @property
    def prior_yx(self) -> np.ndarray:
        row: np.ndarray = self.stack.prior_yx[self._row]
        return row

    @property
    def prior_mean(self) -> np.ndarray:
        row: np.ndarray = self.stack.prior_mean[self._row]
        return row

    @property
    def theta(self) -> np.ndarray:
        row: np.ndarray = self.stack.theta[self._row]
        return row

    # ---- learning and predicting --------------------------------------------------------
    def set_prior_mean(self, prior_mean: np.ndarray) -> None:
        """Move the prior mean ``θ₀`` (what the data say stays as it is).

        >>> arm = RidgeArm(1, l2=1.0); arm.set_prior_mean(np.array([0.6])); arm.predict(np.array([1.0]))
        0.6
        """
        self.stack.set_prior_mean(self.name, prior_mean)

    def add_prior(self, prior: ArmPrior) -> None:
        """Add ``prior``'s weighted pseudo-observations to the prior: ``weights[i]`` observations
        of ``rewards[i]`` at ``contexts[i]``. They never fade and are not shared as data.

        >>> arm = RidgeArm(1, l2=1e-6)
        >>> arm.add_prior(ArmPrior(np.array([[1.0]]), np.array([0.7]), np.array([10.0])))
        >>> round(arm.predict(np.array([1.0])), 3), arm.n
        (0.7, 0)
        """
        self.stack.add_prior(self.name, prior)

    def check(self, x: np.ndarray) -> np.ndarray:
        return self.stack.check(x)

    def update(self, x: np.ndarray, y: float) -> None:
        self.stack.update(self.name, x, y)

    def predict(self, x: np.ndarray) -> float:
        return float(x @ self.theta)

    def variance(self, x: np.ndarray) -> float:
        """``xᵀ A⁻¹ x``: the width of the estimate at ``x`` (before noise scaling)."""
        return max(float(x @ self.A_inv @ x), 0.0)

    # ---- sharing and saving -------------------------------------------------------------
    def data_sums(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(Σ x xᵀ, Σ y x, n)``: what the observations added to the prior. These add up
        across router replicas (see :mod:`greenserv_core.sharing`)."""
        return self.stack.data_sums(self.name)

    def load_data_sums(self, xx: np.ndarray, yx: np.ndarray, n: int) -> None:
        """Set the state to the prior plus these sums (``A⁻¹`` is re-derived).

        >>> one, two = RidgeArm(2), RidgeArm(2)
        >>> one.update(np.array([1.0, 0.0]), 1.0); two.update(np.array([0.0, 1.0]), 2.0)
        >>> merged = RidgeArm(2)
        >>> merged.load_data_sums(*(a + b for a, b in zip(one.data_sums(), two.data_sums())))
        >>> merged.predict(np.array([0.0, 1.0])), merged.n
        (1.0, 2)
        """
        self.stack.load_data_sums(self.name, xx, yx, n)

    def statistics(self) -> Statistics:
        """:meth:`data_sums` as :class:`~greenserv_core.statistics.Statistics` (``xx``, ``yx``, ``n``)."""
        xx, yx, n = self.data_sums()
        return Statistics(sums={"xx": xx, "yx": yx, "n": np.array([float(n)])})

    def load_statistics(self, stats: Statistics) -> None:
        """:meth:`load_data_sums` from :meth:`statistics` (left as it is when they hold none)."""
        if "xx" in stats.sums:
            self.load_data_sums(stats.sums["xx"], stats.sums["yx"], round(float(stats.sums["n"][0])))

    def state_dict(self) -> dict[str, Any]:
        return self.stack.state_dict(self.name)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stack.load_state_dict(self.name, state)
