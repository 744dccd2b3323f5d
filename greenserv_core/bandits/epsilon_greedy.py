"""Contextual ε-greedy with decaying ε over per-arm ridge models."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from typing_extensions import Unpack

from greenserv_core.bandits.base import ArmPrior, ArmScore, Policy, check_number
from greenserv_core.bandits.columns import ArmScores
from greenserv_core.bandits.linear import LinearOptions, LinearPolicy
from greenserv_core.bandits.registry import register_policy
from greenserv_core.errors import InvalidInputError
from greenserv_core.statistics import Statistics

__all__ = ["EXPLORE", "EpsilonExploration", "EpsilonGreedy", "epsilon_at"]

logger = logging.getLogger("greenserv")

_DRIFT_ALLOWANCE = 0.1
"""How far below its estimate an arm's reward may fall per answer before it counts as drift."""


def epsilon_at(t: int, epsilon: float, decay: float, min_epsilon: float) -> float:
    """``max(min_epsilon, epsilon · decayᵗ)``.

    >>> epsilon_at(0, 0.2, 0.5, 0.01), epsilon_at(3, 0.2, 0.5, 0.01)
    (0.2, 0.025)
    """
    return max(min_epsilon, epsilon * decay**t)


EXPLORE = ("all", "undominated")
"""Which arms an exploring step draws from (see :class:`EpsilonExploration`)."""


class EpsilonExploration(Policy):
    """Mixin: explore uniformly with probability ε_t, else take the argmax of the scores.

    ``explore="undominated"`` draws an exploring step only from the arms that could still win:
    those whose score with the best possible value (``value_bound``, 1 for a feedback score)
    reaches the best score of the estimates (each capped at that bound). A model whose cost
    alone puts it below another model's expected score is then never explored, since no answer
    it gives can make it the right choice at that cost. ``"all"`` draws from every eligible arm.
    """

    epsilon: float
    decay: float
    min_epsilon: float
    explore: str = "all"
    value_bound: float = 1.0

    def _set_schedule(self, epsilon: float, decay: float, min_epsilon: float) -> None:
        for name, value in (("epsilon", epsilon), ("decay", decay), ("min_epsilon", min_epsilon)):
            check_number(name, value)  # a number: a string or a bool is refused by name
        if not 0 <= epsilon <= 1:
            raise InvalidInputError(f"epsilon must be in [0, 1], got {epsilon!r}")
        if not 0 < decay <= 1:
            raise InvalidInputError(f"decay must be in (0, 1], got {decay!r}")
        if not 0 <= min_epsilon <= epsilon:
            raise InvalidInputError(f"min_epsilon must be in [0, epsilon], got {min_epsilon!r}")
        self.epsilon, self.decay, self.min_epsilon = float(epsilon), float(decay), float(min_epsilon)

    def _set_exploration(self, explore: str, value_bound: float) -> None:
        if explore not in EXPLORE:
            raise InvalidInputError(f"explore must be one of {EXPLORE}, got {explore!r}")
        self.explore, self.value_bound = explore, check_number("value_bound", value_bound)

    def _schedule_params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "decay": self.decay, "min_epsilon": self.min_epsilon}

    def _exploration_arms(self, scores: Mapping[str, ArmScore]) -> list[str]:
        """The arms an exploring step draws from (see the class)."""
        arms = list(scores)
        if self.explore == "all" or not isinstance(scores, ArmScores):
            return arms
        bound = self.value_bound
        best = float(np.max(scores.value_scale * np.minimum(bound, scores.estimate + scores.bonus) - scores.cost))
        reach = scores.value_scale * bound - scores.cost
        return [arm for arm, ok in zip(arms, reach >= best - 1e-12, strict=True) if ok]

    def _choose(self, scores: Mapping[str, ArmScore]) -> tuple[str, bool]:
        if self.rng_.random() < epsilon_at(self.t_, self.epsilon, self.decay, self.min_epsilon):
            arms = self._exploration_arms(scores)
            return arms[int(self.rng_.integers(len(arms)))], True
        return self._argmax(scores), False


@register_policy
class EpsilonGreedy(EpsilonExploration, LinearPolicy):
    """With probability ε_t a uniformly random eligible arm, else the best ridge estimate.

    ``prior_reward`` defaults to 1 (optimistic), so an unplayed arm is tried greedily. A model
    that joins after the first decision (``late_``) is explored at the starting ``epsilon``
    until it has ``newcomer_answers`` answers, however far ε has decayed: a few unlucky first
    answers would otherwise bury it for thousands of queries (BENCHMARKS.md, issue 15, "A
    newcomer"). The models present from the start are not affected (0 turns it off).

    Each arm also keeps a one-sided CUSUM of how far its rewards fall below the estimate of its
    own answers, less an allowance of 0.1 per answer. When it passes ``drift_alarm`` (default
    20), the model has changed under its name: its evidence is forgotten (its prior stays), and
    it is explored again like a newcomer (``drift_alarms_`` counts the alarms; the log says so).
    The check waits for the first decision (a warm start through ``learn()`` raises no alarm).
    A prior of the model's own (a :class:`~greenserv_core.quality.QualityPrior`) is left out of
    the estimate it checks against: a model worse than its model card has not changed, and
    measured against the prior it would raise alarm after alarm. A policy that shares its learning
    with replicas (it has loaded shared statistics) raises none: its sums only add up, and two
    replicas forgetting the same model would subtract it twice. On the static tables of
    BENCHMARKS.md no alarm fires; ``None`` turns it off.

    >>> policy = EpsilonGreedy(dimension=2, epsilon=0.0, min_epsilon=0.0, seed=0)
    >>> policy.add_arm("a"); policy.add_arm("b")
    >>> policy.update("a", np.array([1.0, 0.0]), 0.0)
    >>> policy.select(np.array([1.0, 0.0]))
    'b'
    """

    name = "epsilon"

    def __init__(
        self,
        dimension: int,
        *,
        epsilon: float = 0.1,
        decay: float = 0.999,
        min_epsilon: float = 0.01,
        newcomer_answers: int = 30,
        drift_alarm: float | None = 20.0,
        explore: str = "all",
        value_bound: float = 1.0,
        **options: Unpack[LinearOptions],
    ) -> None:
        options.setdefault("prior_reward", 1.0)  # optimistic: an unplayed arm is tried greedily
        super().__init__(dimension, **options)
        self._set_schedule(epsilon, decay, min_epsilon)
        self._set_exploration(explore, value_bound)
        answers = newcomer_answers
        if isinstance(answers, bool) or not isinstance(answers, (int, np.integer)) or answers < 0:  # numpy's too
            raise InvalidInputError(f"newcomer_answers must be an integer >= 0, got {newcomer_answers!r}")
        self.newcomer_answers = int(newcomer_answers)
        if drift_alarm is not None and not 0 < check_number("drift_alarm", drift_alarm) < 1e9:
            raise InvalidInputError(f"drift_alarm must be a positive number or None, got {drift_alarm!r}")
        self.drift_alarm = None if drift_alarm is None else float(drift_alarm)
        self.late_: set[str] = set()
        """The arms added after the first decision (or forgotten after a drift alarm)."""
        self.cusum_: dict[str, float] = {}
        """Each arm's one-sided CUSUM of its shortfall below its own estimate."""
        self.drift_alarms_: dict[str, int] = {}
        """How many times each arm's evidence was forgotten."""
        self.shares_ = False
        """Whether the policy has loaded shared statistics (then it raises no drift alarm)."""

    def add_arm(self, name: str, prior: ArmPrior | None = None) -> None:
        super().add_arm(name, prior)
        if self.t_ > 0:
            self.late_.add(name)

    def remove_arm(self, name: str) -> None:
        super().remove_arm(name)
        self.late_.discard(name)
        self.cusum_.pop(name, None)
        self.drift_alarms_.pop(name, None)

    def load_statistics(self, stats: Statistics) -> None:
        super().load_statistics(stats)
        self.shares_ = True
        self.cusum_.clear()

    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        if self.drift_alarm is None or self.t_ == 0 or self.shares_:
            super().update(arm, context, reward)
            return
        self._require_arm(arm)
        x = self._check_context(context)
        row = self.ridge_.row(arm)
        played = bool(self.ridge_.n[row] > 0)
        shortfall = self._evidence_estimate(row, x) - self._check_reward(reward)
        super().update(arm, x, reward)
        if not played:
            return  # the optimistic prior's first error is not drift
        total = max(0.0, self.cusum_.get(arm, 0.0) + shortfall - _DRIFT_ALLOWANCE)
        if total <= self.drift_alarm:
            self.cusum_[arm] = total
            return
        d = self.dimension
        self.ridge_.load_data_sums(arm, np.zeros((d, d)), np.zeros(d), 0)
        self.cusum_[arm] = 0.0
        self.late_.add(arm)
        self.drift_alarms_[arm] = self.drift_alarms_.get(arm, 0) + 1
        logger.info(
            "policy: %s answers below its estimate (CUSUM > %g); its evidence is forgotten", arm, self.drift_alarm
        )

    def _evidence_estimate(self, row: int, x: np.ndarray) -> float:
        """The arm of ``row``'s estimate at ``x`` from its own answers: without the
        pseudo-answers of a prior of its own (a prior is not evidence that the model changed)."""
        stack = self.ridge_
        prior_xx = stack.prior_xx[row]
        if not prior_xx.any():
            return float(self._coefficients()[row] @ x)
        own = np.linalg.solve(stack.A[row] - prior_xx, stack.b[row] - stack.prior_yx[row])
        return float(own @ x)

    def _choose(self, scores: Mapping[str, ArmScore]) -> tuple[str, bool]:
        if self.late_ and self.newcomer_answers:
            counts = self.ridge_.n
            late = [  # (with explore="undominated", only those that could still win)
                a
                for a in self._exploration_arms(scores)
                if a in self.late_ and counts[self.ridge_.row(a)] < self.newcomer_answers
            ]
            if late and self.rng_.random() < self.epsilon:
                return late[int(self.rng_.integers(len(late)))], True
        return super()._choose(scores)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "late_arms": sorted(self.late_),
            "cusum": dict(self.cusum_),
            "drift_alarms": dict(self.drift_alarms_),
            "shares": self.shares_,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.late_ = set(state.get("late_arms", ())) & set(self.arms_)
        self.cusum_ = {arm: float(v) for arm, v in state.get("cusum", {}).items() if arm in self.arms_}
        self.drift_alarms_ = {arm: int(v) for arm, v in state.get("drift_alarms", {}).items()}
        self.shares_ = bool(state.get("shares", False))  # a sharing policy raises no alarm, loaded or not

    def _estimate_arrays(self, context: np.ndarray, arms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        estimate, _ = self._ridge_estimates(context, arms)
        return estimate, np.zeros(len(arms))

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            **self._schedule_params(),
            "newcomer_answers": self.newcomer_answers,
            "drift_alarm": self.drift_alarm,
            "explore": self.explore,
            "value_bound": self.value_bound,
        }
