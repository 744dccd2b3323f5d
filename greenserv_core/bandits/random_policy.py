"""Random routing: a uniformly random eligible arm (the paper's main baseline)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from greenserv_core.bandits.base import ArmScore, StatelessArmsPolicy
from greenserv_core.bandits.registry import register_policy

__all__ = ["RandomPolicy"]


@register_policy
class RandomPolicy(StatelessArmsPolicy):
    """Ignores context and rewards.

    >>> policy = RandomPolicy(dimension=1, seed=0)
    >>> policy.add_arm("a"); policy.add_arm("b")
    >>> policy.select(np.ones(1)) in {"a", "b"}
    True
    """

    name = "random"
    contextual = False

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        return {arm: (0.0, 0.0) for arm in arms}

    def _choose(self, scores: Mapping[str, ArmScore]) -> tuple[str, bool]:
        arms = list(scores)
        return arms[int(self.rng_.integers(len(arms)))], True

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        self._require_arm(arm)
        self._check_context(context)
        self._check_reward(reward)
