"""Static routing: always the same model (the "always use the big one" baseline)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from greenserv_core.bandits.base import ArmScore, StatelessArmsPolicy
from greenserv_core.bandits.registry import register_policy
from greenserv_core.errors import InvalidInputError, NoEligibleModelError

__all__ = ["StaticPolicy"]


@register_policy
class StaticPolicy(StatelessArmsPolicy):
    """Always ``arm``; if that arm is not eligible for a query, :class:`NoEligibleModelError`.

    >>> policy = StaticPolicy(dimension=1, arm="big")
    >>> policy.add_arm("small"); policy.add_arm("big")
    >>> policy.select(np.ones(1))
    'big'
    """

    name = "static"
    contextual = False
    strategy_argument = "arm"  # "static:MODEL"

    def __init__(self, dimension: int, *, arm: str, seed: int | None = None) -> None:
        if not isinstance(arm, str) or not arm:
            raise InvalidInputError(f"static policy needs a model name, got {arm!r}")
        super().__init__(dimension, seed=seed)
        self.arm = arm

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        return {arm: (1.0 if arm == self.arm else 0.0, 0.0) for arm in arms}

    def _choose(self, scores: Mapping[str, ArmScore]) -> tuple[str, bool]:
        if self.arm not in scores:
            raise NoEligibleModelError(f"static policy always routes to {self.arm!r}, which is not eligible here")
        return self.arm, False

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        self._require_arm(arm)
        self._check_context(context)
        self._check_reward(reward)

    def params(self) -> dict[str, Any]:
        return {"arm": self.arm}
