"""Plain (non-contextual) ε-greedy: one running mean per arm, context ignored."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from greenserv_core.bandits.base import check_number
from greenserv_core.bandits.epsilon_greedy import EpsilonExploration
from greenserv_core.bandits.registry import register_policy
from greenserv_core.errors import InvalidInputError

__all__ = ["EpsilonGreedyNonContextual"]


@register_policy
class EpsilonGreedyNonContextual(EpsilonExploration):
    """Running mean reward per arm; unplayed arms score ``prior_reward`` (optimistic by default).

    >>> policy = EpsilonGreedyNonContextual(dimension=1, epsilon=0.0, min_epsilon=0.0, seed=0)
    >>> policy.add_arm("a"); policy.add_arm("b")
    >>> policy.update("a", np.ones(1), 0.2); policy.update("b", np.ones(1), 0.9)
    >>> policy.select(np.ones(1))
    'b'
    """

    name = "epsilon-nc"
    contextual = False

    def __init__(
        self,
        dimension: int,
        *,
        epsilon: float = 0.1,
        decay: float = 0.999,
        min_epsilon: float = 0.01,
        prior_reward: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(dimension, seed=seed)
        self._set_schedule(epsilon, decay, min_epsilon)
        self.prior_reward = check_number("prior_reward", prior_reward)

    def _new_arm_state(self) -> dict[str, float]:
        return {"n": 0, "mean": 0.0}

    def _arm_state(self, state: dict[str, float]) -> dict[str, Any]:
        return dict(state)

    def _load_arm_state(self, data: dict[str, Any]) -> dict[str, float]:
        return {"n": int(data["n"]), "mean": float(data["mean"])}

    def _arm_statistics(self, state: dict[str, float]) -> dict[str, np.ndarray]:
        return {"n": np.array([float(state["n"])]), "sum": np.array([float(state["n"] * state["mean"])])}

    def _load_arm_statistics(self, state: dict[str, float], sums: dict[str, np.ndarray]) -> dict[str, float]:
        if "sum" in sums:
            n = round(float(sums["n"][0]))
            state["n"], state["mean"] = n, float(sums["sum"][0]) / n if n else 0.0
        return state

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        return {arm: (self.arms_[arm]["mean"] if self.arms_[arm]["n"] else self.prior_reward, 0.0) for arm in arms}

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        self._require_arm(arm)
        self._check_context(context)
        reward = self._check_reward(reward)
        state = self.arms_[arm]
        n = state["n"] + 1
        mean = state["mean"] + (reward - state["mean"]) / n
        if not (math.isfinite(mean) and math.isfinite(n * mean)):  # the state (and its shared sum) would overflow
            raise InvalidInputError(f"an update of {arm!r} with reward {reward!r} overflows its mean")
        state["n"], state["mean"] = n, mean

    def params(self) -> dict[str, Any]:
        return {**self._schedule_params(), "prior_reward": self.prior_reward}
