"""The replay's two diagnostic policies: what the real router does when told the answers, or
when its learner is idealised.

* :class:`KnownAccuracy` (``known-accuracy``): each model's mean accuracy on each task of the
  table, told beforehand; it learns nothing. What it leaves of the gap to the best fixed model
  per task is what the online energy estimates alone cost.
* :class:`TaskThompson` (``task-thompson``): Beta–Bernoulli Thompson sampling per (true task,
  model), told each query's true task and blind to everything else; what it leaves of the gap
  is what learning the accuracies costs a learner that needs no classifier.

The replay tells both each query's true task (their ``task`` attribute) before it routes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from greenserv_core.bandits import Policy, StatelessArmsPolicy
from greenserv_core.evaluation.table import Matrices

__all__ = ["DIAGNOSTICS", "Diagnostic", "KnownAccuracy", "TaskThompson", "mean_accuracy_per_task"]


class KnownAccuracy(StatelessArmsPolicy):
    """Scores each arm with its mean accuracy on the current query's task, from the table."""

    name = "known-accuracy"

    def __init__(self, dimension: int, accuracy: dict[str, dict[str, float]], *, seed: int | None = None) -> None:
        super().__init__(dimension, seed=seed)
        self.accuracy = accuracy
        self.task = ""  # the replay tells it each query's true task

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        return {arm: (self.accuracy[self.task][arm], 0.0) for arm in arms}

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        """Learns nothing: it already knows."""


class TaskThompson(Policy):
    """Beta(1, 1)–Bernoulli Thompson sampling per (task, arm), on the current query's true task.

    Learned state, per arm in ``arms_``: {task: [successes + 1, failures + 1]}."""

    name = "task-thompson"

    def __init__(self, dimension: int, *, seed: int | None = None) -> None:
        super().__init__(dimension, seed=seed)
        self.task = ""

    def _new_arm_state(self) -> dict[str, list[float]]:
        return {}

    def _arm_state(self, state: dict[str, list[float]]) -> dict[str, Any]:
        return {task: list(counts) for task, counts in state.items()}

    def _load_arm_state(self, data: dict[str, Any]) -> dict[str, list[float]]:
        return {task: [float(a), float(b)] for task, (a, b) in data.items()}

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        draws = {}
        for arm in arms:
            a, b = self.arms_[arm].get(self.task, (1.0, 1.0))
            draws[arm] = (float(self.rng_.beta(a, b)), 0.0)
        return draws

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        counts = self.arms_[arm].setdefault(self.task, [1.0, 1.0])
        counts[0] += reward
        counts[1] += 1.0 - reward


DIAGNOSTICS = ("known-accuracy", "task-thompson")
"""The diagnostics' names, as a replay's strategies."""


Diagnostic = KnownAccuracy | TaskThompson
"""A diagnostic policy, told each query's true task."""


def mean_accuracy_per_task(data: Matrices) -> dict[str, dict[str, float]]:
    """Each task's mean accuracy of each model in ``data``: what :class:`KnownAccuracy` is told."""
    tasks = np.asarray(data.tasks)
    return {
        task: dict(zip(data.models, data.accuracy[tasks == task].mean(axis=0).tolist(), strict=True))
        for task in set(data.tasks)
    }
