"""Shared base of the linear contextual policies: one :class:`RidgeArm` per arm."""

from __future__ import annotations

from typing import Any

import numpy as np

from greenserv_core.bandits.base import Policy
from greenserv_core.bandits.ridge import RidgeArm
from greenserv_core.errors import InvalidInputError
from greenserv_core.statistics import Statistics

__all__ = ["LinearPolicy"]


class LinearPolicy(Policy):
    """Per-arm ridge regression of reward on the context.

    ``prior_reward`` is the estimate of an unplayed arm (the context's first entry is the
    intercept, so the prior mean is ``prior_reward`` on it and zero elsewhere); ``l2`` is the
    prior's strength in pseudo-observations.
    """

    def __init__(self, dimension: int, *, l2: float = 1.0, prior_reward: float = 0.0, seed: int | None = None) -> None:
        super().__init__(dimension, seed=seed)
        if not l2 > 0:
            raise InvalidInputError(f"l2 must be positive, got {l2!r}")
        self.l2 = float(l2)
        self.prior_reward = float(prior_reward)

    def _prior_mean(self) -> np.ndarray:
        prior = np.zeros(self.dimension)
        prior[0] = self.prior_reward
        return prior

    def _new_arm_state(self) -> RidgeArm:
        return RidgeArm(self.dimension, l2=self.l2, prior_mean=self._prior_mean())

    def _arm_state(self, state: RidgeArm) -> dict[str, Any]:
        return state.state_dict()

    def _load_arm_state(self, data: dict[str, Any]) -> RidgeArm:
        arm = self._new_arm_state()
        arm.load_state_dict(data)
        return arm

    def _arm_statistics(self, state: RidgeArm) -> dict[str, np.ndarray]:
        return state.statistics().sums

    def _load_arm_statistics(self, state: RidgeArm, sums: dict[str, np.ndarray]) -> RidgeArm:
        state.load_statistics(Statistics(sums=sums))
        return state

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        self._require_arm(arm)
        x = self._check_context(context)
        self.arms_[arm].update(x, self._check_reward(reward))

    def theta(self, arm: str) -> np.ndarray:
        """The arm's current coefficient vector."""
        self._require_arm(arm)
        theta: np.ndarray = self.arms_[arm].theta.copy()
        return theta

    def params(self) -> dict[str, Any]:
        return {"l2": self.l2, "prior_reward": self.prior_reward}
