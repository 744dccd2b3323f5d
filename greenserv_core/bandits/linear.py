"""Shared base of the linear contextual policies: one ridge regression per arm, all arms
stacked in one :class:`~greenserv_core.bandits.ridges.RidgeStack` (``ridge_``), so that a
decision computes every arm's estimate with a few array operations. ``arms_`` maps each arm
to a :class:`RidgeArm` view of its row."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from typing import Any, TypedDict

import numpy as np

from greenserv_core.bandits.base import ArmPrior, Policy, check_number
from greenserv_core.bandits.hybrid import HybridFit, fit_hybrid
from greenserv_core.bandits.ridge import RidgeArm
from greenserv_core.bandits.ridges import RidgeStack
from greenserv_core.errors import InvalidInputError, SharingNotSupportedError
from greenserv_core.statistics import Statistics

__all__ = ["LinearOptions", "LinearPolicy"]


class LinearOptions(TypedDict, total=False):
    """The keywords every linear policy takes beside its own (see :class:`LinearPolicy`)."""

    l2: float
    prior_reward: float
    reward_range: Sequence[float] | None
    forget: float
    pool_prior: bool
    try_unplayed: bool
    share: float
    seed: int | None


def _check_range(bounds: object) -> tuple[float, float]:
    """``bounds`` as two finite numbers ``low < high``, or :class:`InvalidInputError`."""
    if isinstance(bounds, (str, bytes, Mapping, Set)):  # "01" would read as (0, 1), {0: .., 1: ..} as its keys
        raise InvalidInputError(f"reward_range must be two numbers (low, high), got {bounds!r}")
    try:
        low, high = (float(v) for v in bounds)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise InvalidInputError(f"reward_range must be two numbers (low, high), got {bounds!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise InvalidInputError(f"reward_range must be finite numbers with low < high, got {bounds!r}")
    return low, high


class LinearPolicy(Policy):
    """Per-arm ridge regression of reward on the context.

    ``prior_reward`` is the estimate of an unplayed arm (the context's first entry is the
    intercept, so the prior mean is ``prior_reward`` on it and zero elsewhere); ``l2`` is the
    prior's strength in pseudo-observations. ``reward_range`` bounds what the policy can be
    taught (the router teaches accuracy, so ``(0, 1)``; rewards are not checked against it); an
    arm's index is then clipped to it,
    so an arm cannot look better than a perfect answer (default ``None``: unbounded, which
    measured better with the ``"seen"`` energy scale, see BENCHMARKS.md). ``forget`` below 1
    discounts old evidence by that factor per update of the arm (see :class:`RidgeArm`), for
    models that change under the same name. A per-arm :class:`ArmPrior` adds weighted
    pseudo-observations to an arm's prior. With ``try_unplayed`` (and a ``reward_range``), an
    arm with neither data nor a prior of its own gets the best possible index, so every model,
    a newcomer included, is tried at least once.

    ``share`` above 0 makes the arms learn from each other: each arm's coefficients are a part
    shared by all arms plus the arm's own, whose coefficients other than the intercept are held
    towards the shared ones by ``share`` pseudo-observations (a hybrid ridge,
    :mod:`~greenserv_core.bandits.hybrid`). It pays on a large pool, where what one model
    finds hard the others mostly find hard too, and can cost on a pool of two: BENCHMARKS.md
    (issue 15, "Shared structure") measures both. Default 0: every arm on its own.
    """

    def __init__(
        self,
        dimension: int,
        *,
        l2: float = 1.0,
        prior_reward: float = 0.0,
        reward_range: Sequence[float] | None = None,
        forget: float = 1.0,
        pool_prior: bool = False,
        try_unplayed: bool = True,
        share: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(dimension, seed=seed)
        self.share = check_number("share", share, low=0.0)
        for name, flag in (("pool_prior", pool_prior), ("try_unplayed", try_unplayed)):
            if not isinstance(flag, (bool, np.bool_)):  # bool("false") is True
                raise InvalidInputError(f"{name} must be True or False, got {flag!r}")
        self.pool_prior = bool(pool_prior)
        self.try_unplayed = bool(try_unplayed)
        check_number("l2", l2, low=0.0, strict=True)
        check_number("prior_reward", prior_reward)
        if check_number("forget", forget, low=0.0, strict=True) > 1:
            raise InvalidInputError(f"forget must be a number in (0, 1], got {forget!r}")
        self.reward_range = None if reward_range is None else _check_range(reward_range)
        # what every decision multiplies or divides by (Python's floats overflow to inf, quietly)
        derived = (float(l2) * float(prior_reward), 1.0 / self.share if self.share else 0.0)
        if not all(math.isfinite(value) for value in derived):
            raise InvalidInputError(
                f"l2={l2!r}, prior_reward={prior_reward!r} and share={share!r} overflow the ridge's sums "
                "(l2 × prior_reward and 1 / share must be finite)"
            )
        self.l2 = float(l2)
        self.prior_reward = float(prior_reward)
        self.forget = float(forget)
        self.ridge_ = self._new_stack()
        """Every arm's ridge statistics, one row per arm in the order of ``arms_``."""
        self._fit: tuple[RidgeStack, int, HybridFit] | None = None

    def _prior_mean(self) -> np.ndarray:
        prior = np.zeros(self.dimension)
        prior[0] = self.prior_reward
        return prior

    def _new_stack(self) -> RidgeStack:
        return RidgeStack(self.dimension, l2=self.l2, prior_mean=self._prior_mean(), forget=self.forget)

    def _new_arm_state(self) -> RidgeArm:
        """A fresh arm on its own (the policy's own arms are rows of ``ridge_``: see :meth:`add_arm`)."""
        return RidgeArm(self.dimension, l2=self.l2, prior_mean=self._prior_mean(), forget=self.forget)

    def add_arm(self, name: str, prior: ArmPrior | None = None) -> None:
        """Add an arm. With ``pool_prior``, an arm that joins after others have learned starts
        from the mean of their coefficients (an empirical-Bayes prior of strength ``l2``)
        instead of ``prior_reward``, so a newcomer is neither ignored nor over-trusted. That
        mean is this policy's own (saved with it, not shared): replicas sharing their learning
        whose pools took the model in at other times start it from other means, and their
        estimates of it differ by ``l2 / (n + l2)`` of that difference until it has answers."""
        self._check_new_arm(name, prior)
        learned = self._own_coefficients()[self.ridge_.n > 0] if self.pool_prior else None
        self.ridge_.add(name)
        arm = RidgeArm.of(self.ridge_, name)
        if prior is not None:
            try:
                arm.add_prior(prior)
            except InvalidInputError:  # (a prior whose sums overflow): the arm is not added
                self.ridge_.remove(name)
                raise
        self.arms_[name] = arm
        if learned is not None and len(learned):
            arm.set_prior_mean(np.mean(learned, axis=0))

    def replace_prior(self, name: str, prior: ArmPrior | None) -> None:
        """Arm ``name``'s prior becomes ``prior`` (none for ``None``), its data kept: a router
        loaded with models whose quality priors changed since it was saved uses today's."""
        self._require_arm(name)
        self.ridge_.replace_prior(name, prior)  # (it checks the prior's dimension)

    def _own_coefficients(self) -> np.ndarray:
        """Every arm's own coefficients, the centre its prior stands for: its ridge's, or with
        ``share`` its own part of the hybrid (without the shared part)."""
        if not self.share:
            return self.ridge_.theta
        fit = self._hybrid()
        own: np.ndarray = fit.theta - fit.shared
        return own

    def remove_arm(self, name: str) -> None:
        super().remove_arm(name)
        self.ridge_.remove(name)

    def _untried(self, arm: str) -> bool:
        self._require_arm(arm)
        return bool(self._untried_mask([arm])[0])

    def _untried_mask(self, arms: Sequence[str]) -> np.ndarray:
        untried = np.zeros(len(arms), dtype=bool)
        if not self.try_unplayed:
            return untried
        rows = np.arange(len(self.ridge_))[self.ridge_.rows(arms)]
        unplayed = np.flatnonzero(self.ridge_.n[rows] == 0)
        if len(unplayed):  # only an arm without data can be untried: look at those arms' priors alone
            untried[unplayed] = ~self.ridge_.has_own_prior(rows[unplayed])
        return untried

    def _hybrid(self) -> HybridFit:
        """The hybrid fit of the stack as it is now (refitted only after it changed)."""
        stack = self.ridge_
        if self._fit is None or self._fit[0] is not stack or self._fit[1] != stack.version:
            self._fit = (stack, stack.version, fit_hybrid(stack, self.share))
        return self._fit[2]

    def _coefficients(self) -> np.ndarray:
        """Every arm's coefficients, in row order: its own ridge's, or with ``share`` the hybrid's."""
        return self._hybrid().theta if self.share else self.ridge_.theta

    def _ridge_estimates(self, context: np.ndarray, arms: Sequence[str]) -> tuple[np.ndarray, slice | np.ndarray]:
        """``θᵀx`` of each of ``arms`` (one matrix-vector product over the stack), and their rows."""
        rows = self.ridge_.rows(arms)
        estimates: np.ndarray = self._coefficients() @ context
        return estimates[rows], rows

    def _widths(self, context: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
        """``xᵀA⁻¹x`` of the arms of ``rows`` (with ``share``, of each arm's own part)."""
        variance = self._hybrid().variance(context) if self.share else self.ridge_.variance(context)
        return variance[rows]

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        """From :meth:`_estimate_arrays`, which a linear policy implements."""
        if type(self)._estimate_arrays is Policy._estimate_arrays:
            raise NotImplementedError(f"{type(self).__name__} implements neither _estimate_arrays nor _estimates")
        estimate, bonus = self._estimate_arrays(context, arms)
        return {arm: (float(e), float(b)) for arm, e, b in zip(arms, estimate, bonus, strict=True)}

    def _with_prior(self, state: RidgeArm, prior: ArmPrior) -> RidgeArm:
        state.add_prior(prior)
        return state

    def _arm_state(self, state: RidgeArm) -> dict[str, Any]:
        return state.state_dict()

    def _load_arm_state(self, data: dict[str, Any]) -> RidgeArm:
        arm = self._new_arm_state()
        arm.load_state_dict(data)
        return arm

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state.get("params", {}).get("prior_reward")
        if saved is None or float(saved) == self.prior_reward:
            return
        # this policy's settings are used: an arm whose prior mean was the saved policy's default
        # (none of its own) takes this one's, so it is still told apart from an arm with its own
        was, now = np.zeros(self.dimension), self._prior_mean()
        was[0] = float(saved)
        stack = self.ridge_
        for name in stack.names:
            if np.array_equal(stack.prior_mean[stack.row(name)], was):
                stack.set_prior_mean(name, now)

    def _load_arms(self, arms: Mapping[str, dict[str, Any]]) -> None:
        stack = self._new_stack()
        for name, data in arms.items():
            stack.add(name)
            stack.load_state_dict(name, data)
        self.ridge_ = stack
        self.arms_ = {name: RidgeArm.of(stack, name) for name in stack.names}

    @property
    def shareable(self) -> bool:
        """Not with ``forget`` below 1: discounted sums do not add up across replicas."""
        return self.forget == 1.0 and super().shareable

    def _not_shareable(self) -> SharingNotSupportedError:
        if self.forget < 1.0:
            return SharingNotSupportedError(
                f"the {self.name!r} policy forgets (forget={self.forget}): its discounted sums cannot be shared"
            )
        return super()._not_shareable()

    def _arm_statistics(self, state: RidgeArm) -> dict[str, np.ndarray]:
        return state.statistics().sums

    def _load_arm_statistics(self, state: RidgeArm, sums: dict[str, np.ndarray]) -> RidgeArm:
        state.load_statistics(Statistics(sums=sums))
        return state

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        self._require_arm(arm)
        x = self._check_context(context)
        self.ridge_.update(arm, x, self._check_reward(reward))

    def theta(self, arm: str) -> np.ndarray:
        """The arm's current coefficient vector."""
        self._require_arm(arm)
        theta: np.ndarray = self._coefficients()[self.ridge_.row(arm)].copy()
        return theta

    def params(self) -> dict[str, Any]:
        return {
            "l2": self.l2,
            "prior_reward": self.prior_reward,
            "reward_range": None if self.reward_range is None else list(self.reward_range),
            "forget": self.forget,
            "pool_prior": self.pool_prior,
            "try_unplayed": self.try_unplayed,
            "share": self.share,
        }
