"""Many online ridge regressions stacked into arrays, so that one decision over every arm is a
few array operations instead of a Python loop over arms.

Each arm (a row) keeps the sufficient statistics ``A = A₀ + Σ x xᵀ`` and ``b = b₀ + Σ r x``,
where the prior ``A₀ = l2·I + Σ w x xᵀ`` and ``b₀ = l2·θ₀ + Σ w r x`` holds the prior mean
``θ₀`` and any weighted pseudo-observations (:meth:`RidgeStack.add_prior`). The data part
adds up across replicas. ``A⁻¹`` is updated by Sherman–Morrison in O(d²) per observation and
re-derived from ``A`` every ``refresh_every`` updates of the arm, so round-off cannot pile up.
``θ = A⁻¹ b`` is recomputed lazily, only for the arms that changed since it was last read.

With ``forget`` below 1, an arm's data part is discounted by that factor at each of its
updates, so old evidence fades (an observation ``k`` updates ago weighs ``forgetᵏ``); the
prior never fades.

The arrays (``A``, ``A_inv``, ``b``, ``theta``, ``n``, ``prior_xx``, ``prior_yx``,
``prior_mean``, one row per arm in the order the arms were added) are read-only views; every
change goes through a method. :class:`~greenserv_core.bandits.ridge.RidgeArm` is the view
of one row.

>>> stack = RidgeStack(2, l2=1.0)
>>> stack.add("a"); stack.add("b")
>>> stack.update("a", np.array([1.0, 0.0]), 1.0)
>>> stack.predict(np.array([1.0, 0.0])).tolist()
[0.5, 0.0]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from greenserv_core.bandits.base import check_number, check_whole
from greenserv_core.bandits.prior import ArmPrior
from greenserv_core.errors import InvalidInputError, UnknownModelError

__all__ = ["RidgeStack"]

MIN_L2 = 1e-8
"""The smallest ridge penalty taken: A⁻¹ starts as I/l2, and Sherman–Morrison updates of a
near-singular inverse drift (measured after 1,000 answers at one context: exact to 1e-4 at
l2 = 1e-8, 0.5% off at 1e-10, 3.8 for 0.8 at 1e-12). The drift grows with the answers, and the
inverse made afresh every ``refresh_every`` updates is itself no more exact than A's condition
allows: over 30,000 0/1 answers at one context, the worst error of an estimate was 0.12 at
l2 = 1e-8, 9e-4 at 1e-6 and 4e-7 at 1e-4 (refreshed every 2,048). Keep l2 at 1e-4 or more where
a long run's estimates must be exact (the policies' default is 1)."""

_ARRAYS = ("_A", "_A_inv", "_b", "_theta", "_n", "_l2", "_prior_xx", "_prior_yx", "_prior_mean")


def _inverse(matrix: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.inv(matrix), dtype=np.float64)


class RidgeStack:
    """Ridge estimates ``θ = A⁻¹ b`` of many arms, one row each (see the module).

    ``prior_mean`` is the prior mean of a new arm (default zero); ``l2`` its prior strength.
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
        dimension = check_whole("dimension", dimension, low=1)
        if check_number("l2", l2, low=0.0, strict=True) < MIN_L2:
            raise InvalidInputError(
                f"l2 must be at least {MIN_L2:g}, got {l2!r}: below that the running inverse A⁻¹ loses "
                "precision with every update (at 1e-12 an estimate of 0.8 read 3.8 after 1,000 answers)"
            )
        if not 0 < check_number("forget", forget) <= 1:
            raise InvalidInputError(f"forget must be in (0, 1], got {forget!r}")
        mean = None if prior_mean is None else np.asarray(prior_mean, dtype=np.float64)
        if mean is not None and (mean.shape != (dimension,) or not np.all(np.isfinite(mean))):
            raise InvalidInputError(f"prior_mean must be {dimension} finite numbers, got shape {mean.shape}")
        self.dimension = dimension
        self.l2 = float(l2)
        self.refresh_every = refresh_every
        self.forget = float(forget)
        self.prior_mean_default = np.zeros(dimension) if mean is None else mean.copy()
        self.names: list[str] = []
        """The arms, in row order."""
        self._rows: dict[str, int] = {}
        self._stale: set[int] = set()
        """The rows whose ``theta`` is out of date."""
        self.version = 0
        """Counts the changes to any arm's statistics (so that what is derived from them can be cached)."""
        self._allocate(0)

    # ---- rows -------------------------------------------------------------------------
    def _allocate(self, capacity: int) -> None:
        d = self.dimension
        self._A = np.zeros((capacity, d, d))
        self._A_inv = np.zeros((capacity, d, d))
        self._b = np.zeros((capacity, d))
        self._theta = np.zeros((capacity, d))
        self._n = np.zeros(capacity, dtype=np.int64)
        self._l2 = np.zeros(capacity)
        self._prior_xx = np.zeros((capacity, d, d))
        self._prior_yx = np.zeros((capacity, d))
        self._prior_mean = np.zeros((capacity, d))

    def _grow(self) -> None:
        size = len(self.names)
        old = {name: getattr(self, name) for name in _ARRAYS}
        self._allocate(max(4, 2 * size))
        for name, array in old.items():
            getattr(self, name)[:size] = array[:size]

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def row(self, name: str) -> int:
        """The row of arm ``name`` (:class:`UnknownModelError` if there is none)."""
        try:
            return self._rows[name]
        except KeyError:
            raise UnknownModelError(f"unknown arm {name!r}") from None

    def rows(self, names: Sequence[str]) -> slice | np.ndarray:
        """The rows of ``names``: a slice when they are all arms in row order (no copy), else
        an index array (:class:`UnknownModelError` for a name that is not an arm)."""
        listed = names if isinstance(names, list) else list(names)
        if listed == self.names:
            return slice(0, len(self.names))
        try:
            return np.fromiter((self._rows[name] for name in names), dtype=np.intp, count=len(names))
        except KeyError as error:
            raise UnknownModelError(f"unknown arm {error.args[0]!r}") from None

    def add(self, name: str) -> None:
        """A new arm at the prior: ``A = l2·I``, ``b = l2·prior_mean``."""
        self.version += 1
        if name in self._rows:
            raise InvalidInputError(f"arm {name!r} already exists")
        r = len(self.names)
        if r == len(self._n):
            self._grow()
        d = self.dimension
        self._A[r] = self.l2 * np.eye(d)
        self._A_inv[r] = np.eye(d) / self.l2
        self._b[r] = self.l2 * self.prior_mean_default
        self._n[r], self._l2[r] = 0, self.l2
        self._stale.add(r)
        self._prior_xx[r], self._prior_yx[r] = 0.0, 0.0
        self._prior_mean[r] = self.prior_mean_default
        self.names.append(name)
        self._rows[name] = r

    def remove(self, name: str) -> None:
        """Forget an arm; the rows after it move up one, so the order of the others stays."""
        self.version += 1
        r, size = self.row(name), len(self.names)
        for array_name in _ARRAYS:
            array = getattr(self, array_name)
            array[r : size - 1] = array[r + 1 : size]
        del self.names[r]
        del self._rows[name]
        self._stale = {row - (row > r) for row in self._stale if row != r}
        for later in self.names[r:]:
            self._rows[later] -= 1

    # ---- the stacked arrays (read-only views, in row order) ---------------------------
    def _view(self, array: np.ndarray) -> np.ndarray:
        view = array[: len(self.names)]
        view.flags.writeable = False
        return view

    @property
    def A(self) -> np.ndarray:
        return self._view(self._A)

    @property
    def A_inv(self) -> np.ndarray:
        return self._view(self._A_inv)

    @property
    def b(self) -> np.ndarray:
        return self._view(self._b)

    @property
    def n(self) -> np.ndarray:
        """Observations per arm (priors not counted)."""
        return self._view(self._n)

    @property
    def l2s(self) -> np.ndarray:
        """Each arm's prior strength (``l2`` unless a saved state said otherwise)."""
        return self._view(self._l2)

    @property
    def prior_xx(self) -> np.ndarray:
        return self._view(self._prior_xx)

    @property
    def prior_yx(self) -> np.ndarray:
        return self._view(self._prior_yx)

    @property
    def prior_mean(self) -> np.ndarray:
        return self._view(self._prior_mean)

    @property
    def theta(self) -> np.ndarray:
        """Every arm's coefficients ``A⁻¹ b`` (those of the arms changed since the last read
        are recomputed now)."""
        if self._stale:
            for r in self._stale:
                self._theta[r] = self._A_inv[r] @ self._b[r]
            self._stale.clear()
        return self._view(self._theta)

    # ---- all arms at once -------------------------------------------------------------
    def predict(self, x: np.ndarray) -> np.ndarray:
        """``θᵀx`` of every arm."""
        estimates: np.ndarray = self.theta @ x
        return estimates

    def variance(self, x: np.ndarray) -> np.ndarray:
        """``xᵀ A⁻¹ x`` of every arm (never negative): the width of its estimate at ``x``."""
        size, d = len(self.names), self.dimension
        a_inv_x = (self._A_inv[:size].reshape(size * d, d) @ x).reshape(size, d)
        variance: np.ndarray = np.maximum(a_inv_x @ x, 0.0)
        return variance

    def has_own_prior(self, rows: slice | np.ndarray) -> np.ndarray:
        """Whether each arm of ``rows`` has pseudo-observations or a prior mean of its own."""
        xx = self._prior_xx[: len(self.names)][rows]
        mean = self._prior_mean[: len(self.names)][rows]
        own: np.ndarray = xx.any(axis=(1, 2)) | (mean != self.prior_mean_default).any(axis=1)
        return own

    # ---- one arm ----------------------------------------------------------------------
    def _prior_sums(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """``(A₀, b₀)`` of row ``r``: the prior's part of ``A`` and ``b``."""
        l2 = self._l2[r]
        return l2 * np.eye(self.dimension) + self._prior_xx[r], l2 * self._prior_mean[r] + self._prior_yx[r]

    def check(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a finite float vector of the stack's dimension, or :class:`InvalidInputError`."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dimension,):
            raise InvalidInputError(f"context must have shape ({self.dimension},), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise InvalidInputError("context contains NaN or infinity")
        return x

    def update(self, name: str, x: np.ndarray, y: float) -> None:
        """Learn that arm ``name`` saw target ``y`` at ``x`` (a rank-one update of its row)."""
        self.apply_update(self.checked_update(name, x, y))

    def apply_update(self, checked: tuple[int, np.ndarray, float]) -> None:
        """:meth:`update` with what :meth:`checked_update` returned (nothing changed since:
        a caller checks several updates, then makes them, without checking each twice)."""
        r, x, y = checked
        self.version += 1
        self._n[r] += 1
        self._stale.add(r)
        if self.forget < 1.0:
            base_a, base_b = self._prior_sums(r)
            self._A[r] = base_a + self.forget * (self._A[r] - base_a) + np.outer(x, x)
            self._b[r] = base_b + self.forget * (self._b[r] - base_b) + y * x
            self._A_inv[r] = _inverse(self._A[r])
            return
        A, A_inv = self._A[r], self._A_inv[r]
        a_inv_x = A_inv @ x
        A += np.multiply.outer(x, x)
        A_inv -= np.multiply.outer(a_inv_x, a_inv_x) / (1.0 + x @ a_inv_x)
        self._b[r] += y * x
        if self.refresh_every and self._n[r] % self.refresh_every == 0:
            A_inv[...] = _inverse(A)

    def checked_update(self, name: str, x: np.ndarray, y: float) -> tuple[int, np.ndarray, float]:
        """What :meth:`update` would take (arm ``name``'s row, ``x`` and ``y`` as floats),
        changing nothing; :class:`InvalidInputError` where it would refuse them, such as an
        update whose sums would overflow (a caller learning several things checks each first)."""
        r = self.row(name)
        x = self.check(x)
        try:
            target = float(y) if isinstance(y, numbers.Real) else math.nan
        except OverflowError:  # an integer too large for a float
            target = math.inf
        if not math.isfinite(target):
            raise InvalidInputError(f"target must be finite, got {y!r}")
        size = float(np.abs(x).max(initial=0.0))  # A is positive definite: its largest entry is on its diagonal
        room = (
            float(np.diagonal(self._A[r]).max()) + size * size,
            float(np.abs(self._b[r]).max()) + abs(target) * size,
        )
        if self.forget == 1.0 and math.isfinite(room[0]):  # and the running inverse's rank-one step
            with np.errstate(over="ignore", invalid="ignore"):
                a_inv_x = self._A_inv[r] @ x
                peak, width = float(np.abs(a_inv_x).max(initial=0.0)), float(x @ a_inv_x)
            if not (math.isfinite(peak * peak) and math.isfinite(1.0 + abs(width))):
                room = (math.inf, room[1])
        # sums that stay finite can still overflow the estimate θ = A⁻¹b or a prediction x·θ: with
        # A ≥ l2·I, |θ|₂ ≤ |b|₂/l2 ≤ √d·max|b|/l2, and |x·θ| ≤ √d·max(size, 1)·|θ|₂ (cheap: no d² step)
        predicted = self.dimension * room[1] / float(self._l2[r]) * max(size, 1.0)
        if not (math.isfinite(room[0]) and math.isfinite(room[1]) and math.isfinite(predicted)):
            raise InvalidInputError(  # one such update would turn the arm's estimates into NaN for good
                f"an update of {name!r} with context up to {size:.3g} and target {target!r} overflows"
            )
        return r, x, target

    def set_prior_mean(self, name: str, prior_mean: np.ndarray) -> None:
        """Move arm ``name``'s prior mean ``θ₀`` (what the data say stays as it is)."""
        self.version += 1
        r = self.row(name)
        mean = np.asarray(prior_mean, dtype=np.float64)
        if mean.shape != (self.dimension,) or not np.all(np.isfinite(mean)):
            raise InvalidInputError(f"prior mean must be {self.dimension} finite numbers")
        self._b[r] = self._b[r] + self._l2[r] * (mean - self._prior_mean[r])
        self._prior_mean[r] = mean
        self._stale.add(r)

    def add_prior(self, name: str, prior: ArmPrior) -> None:
        """Add ``prior``'s weighted pseudo-observations to arm ``name``'s prior: ``weights[i]``
        observations of ``rewards[i]`` at ``contexts[i]``. They never fade and are not data. A
        prior whose sums would overflow is refused (:class:`InvalidInputError`), the arm unchanged."""
        r = self.row(name)
        xx, yx = self._pseudo_sums(name, prior)
        with np.errstate(over="ignore", invalid="ignore"):
            sums = self._prior_xx[r] + xx, self._prior_yx[r] + yx, self._A[r] + xx, self._b[r] + yx
        if not all(np.isfinite(s).all() for s in sums):  # the arm's estimates would be NaN or 0 for good
            raise InvalidInputError(f"the prior of {name!r} overflows: its weighted sums pass the largest float")
        self.version += 1
        self._prior_xx[r], self._prior_yx[r], self._A[r], self._b[r] = sums
        self._A_inv[r] = _inverse(self._A[r])
        self._stale.add(r)

    def _pseudo_sums(self, name: str, prior: ArmPrior) -> tuple[np.ndarray, np.ndarray]:
        """``(Σ w x xᵀ, Σ w y x)`` of a prior's weighted pseudo-observations, or
        :class:`InvalidInputError` for a prior of another dimension or whose sums overflow."""
        xs, ws = prior.contexts, prior.weights
        if xs.shape[1] != self.dimension:
            raise InvalidInputError(f"the prior's contexts have dimension {xs.shape[1]}, not {self.dimension}")
        with np.errstate(over="ignore", invalid="ignore"):
            xx, yx = (xs * ws[:, None]).T @ xs, (ws * prior.rewards) @ xs
        if not (np.isfinite(xx).all() and np.isfinite(yx).all()):
            raise InvalidInputError(f"the prior of {name!r} overflows: its weighted sums pass the largest float")
        return xx, yx

    def replace_prior(self, name: str, prior: ArmPrior | None) -> None:
        """Arm ``name``'s pseudo-observations become ``prior``'s (none for ``None``); what its
        observations added stays as it is (the same prior leaves the arm untouched, to the bit)."""
        r = self.row(name)
        if prior is None:
            same = not self._prior_xx[r].any() and not self._prior_yx[r].any()
        else:
            xx, yx = self._pseudo_sums(name, prior)  # checked before anything changes
            same = bool(np.array_equal(self._prior_xx[r], xx) and np.array_equal(self._prior_yx[r], yx))
        if same:
            return
        data_xx, data_yx, n = self.data_sums(name)
        if prior is None:
            xx, yx = np.zeros_like(data_xx), np.zeros_like(data_yx)
        with np.errstate(over="ignore", invalid="ignore"):  # the new A and b: refused before anything changes
            A = self._l2[r] * np.eye(self.dimension) + xx + data_xx
            b = self._l2[r] * self._prior_mean[r] + yx + data_yx
        if not (np.isfinite(A).all() and np.isfinite(b).all()):
            raise InvalidInputError(f"the prior of {name!r} overflows: its weighted sums pass the largest float")
        self._prior_xx[r], self._prior_yx[r] = xx, yx
        self.load_data_sums(name, data_xx, data_yx, n)

    def data_sums(self, name: str) -> tuple[np.ndarray, np.ndarray, int]:
        """``(Σ x xᵀ, Σ y x, n)`` of arm ``name``: what its observations added to its prior.
        These add up across router replicas (see :mod:`greenserv_core.sharing`)."""
        r = self.row(name)
        base_a, base_b = self._prior_sums(r)
        return self._A[r] - base_a, self._b[r] - base_b, int(self._n[r])

    def load_data_sums(self, name: str, xx: np.ndarray, yx: np.ndarray, n: int) -> None:
        """Set arm ``name`` to its prior plus these sums (``A⁻¹`` is re-derived)."""
        self.version += 1
        r = self.row(name)
        xx = np.asarray(xx, dtype=np.float64)
        yx = np.asarray(yx, dtype=np.float64)
        if xx.shape != (self.dimension, self.dimension) or yx.shape != (self.dimension,):
            raise InvalidInputError(f"ridge sums do not have dimension {self.dimension}")
        base_a, base_b = self._prior_sums(r)
        self._A[r] = base_a + xx
        self._b[r] = base_b + yx
        self._A_inv[r] = _inverse(self._A[r])
        self._n[r] = int(n)
        self._stale.add(r)

    def state_dict(self, name: str) -> dict[str, Any]:
        """Arm ``name``'s state (the format of :meth:`RidgeArm.state_dict`)."""
        r = self.row(name)
        return {
            "A": self._A[r].copy(),
            "A_inv": self._A_inv[r].copy(),
            "b": self._b[r].copy(),
            "n": int(self._n[r]),
            "l2": float(self._l2[r]),
            "prior_xx": self._prior_xx[r].copy(),
            "prior_yx": self._prior_yx[r].copy(),
            "prior_mean": self._prior_mean[r].copy(),
        }

    def load_state_dict(self, name: str, state: dict[str, Any]) -> None:
        """Set arm ``name`` to a saved :meth:`state_dict` (older ones, without priors, too)."""
        self.version += 1
        r, d = self.row(name), self.dimension
        A = np.asarray(state["A"], dtype=np.float64)
        b = np.asarray(state["b"], dtype=np.float64)
        A_inv = np.asarray(state["A_inv"], dtype=np.float64)
        if A.shape != (d, d) or b.shape != (d,) or A_inv.shape != A.shape:
            raise InvalidInputError(f"ridge state does not have dimension {d}")
        prior_xx, prior_yx = self._prior_xx[r], self._prior_yx[r]
        if "prior_xx" in state:  # saved before priors existed: none
            prior_xx = np.asarray(state["prior_xx"], dtype=np.float64).reshape(A.shape)
            prior_yx = np.asarray(state["prior_yx"], dtype=np.float64).reshape(b.shape)
        prior_mean = self._prior_mean[r]
        if "prior_mean" in state:
            prior_mean = np.asarray(state["prior_mean"], dtype=np.float64).reshape(b.shape)
        self._A[r], self._A_inv[r], self._b[r] = A, A_inv, b
        self._n[r], self._l2[r] = int(state["n"]), float(state["l2"])
        self._prior_xx[r], self._prior_yx[r], self._prior_mean[r] = prior_xx, prior_yx, prior_mean
        self._stale.add(r)
