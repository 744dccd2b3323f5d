"""An arm's prior beliefs as weighted pseudo-observations (taken by :class:`RidgeArm` and the policies)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from greenserv_core.errors import InvalidInputError

__all__ = ["ArmPrior"]


@dataclass(frozen=True, eq=False)
class ArmPrior:
    """What an arm is believed to earn before it is played: ``weights[i]`` pseudo-observations
    of reward ``rewards[i]`` at context ``contexts[i]`` (a ``k × d`` array).

    >>> prior = ArmPrior(np.array([[1.0, 0.0]]), np.array([0.8]), np.array([10.0]))
    >>> prior.strength
    10.0
    """

    contexts: np.ndarray
    rewards: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        contexts = np.atleast_2d(np.asarray(self.contexts, dtype=np.float64))
        rewards = np.asarray(self.rewards, dtype=np.float64).reshape(-1)
        weights = np.asarray(self.weights, dtype=np.float64).reshape(-1)
        if not len(contexts) == len(rewards) == len(weights):
            raise InvalidInputError("a prior needs as many rewards and weights as contexts")
        if not (np.all(np.isfinite(contexts)) and np.all(np.isfinite(rewards)) and np.all(np.isfinite(weights))):
            raise InvalidInputError("prior contexts, rewards and weights must be finite")
        if np.any(weights < 0):
            raise InvalidInputError("prior weights must be >= 0")
        object.__setattr__(self, "contexts", contexts)
        object.__setattr__(self, "rewards", rewards)
        object.__setattr__(self, "weights", weights)

    @property
    def strength(self) -> float:
        """Pseudo-observations in all."""
        return float(self.weights.sum())
