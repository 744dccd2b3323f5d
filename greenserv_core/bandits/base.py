"""The policy interface every bandit implements.

A policy chooses one arm from the eligible ones given a context vector, and learns from
``update(arm, context, reward)``. Selection takes two optional inputs that let the router
split the reward into a part the policy learns (accuracy, from feedback) and a part the
router already knows (the energy cost, measured on every call):

    score(arm) = value_scale · (estimate + exploration bonus) − cost[arm]

With the defaults (``value_scale=1``, no costs) this is an ordinary contextual bandit.
Ties are broken uniformly at random with the policy's own seeded generator.

A decision is a few array operations over the eligible arms: a policy gives every arm's
estimate and bonus at once (:meth:`Policy._estimate_arrays`; the linear policies compute them
from stacked statistics), the scores are kept as arrays (:class:`ArmScores`), and costs given
as :class:`ArmValues` over the eligible arms are used as they are. A simple policy may
implement the per-arm :meth:`Policy._estimates` alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import operator
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import numpy as np

from greenserv_core.bandits.columns import ArmScore, ArmScores, ArmValues
from greenserv_core.bandits.prior import ArmPrior
from greenserv_core.errors import InvalidInputError, SharingNotSupportedError, StateFileError, UnknownModelError
from greenserv_core.quality import as_float
from greenserv_core.statistics import Statistics

__all__ = [
    "ArmPrior",
    "ArmScore",
    "ArmScores",
    "ArmValues",
    "Choice",
    "Policy",
    "StatelessArmsPolicy",
    "check_number",
    "check_seed",
    "check_shared_arm_statistics",
    "check_whole",
    "whole_number",
]

_TIE_TOLERANCE = 1e-12
_KEPT = "kept_per_arm"
"""Where a policy's statistics hold a fingerprint of the sums it keeps per arm (an equal minimum and maximum)."""


def _kept_mark(kept: Sequence[str]) -> np.ndarray:
    """The names of the sums a policy keeps per arm, digested into one exactly representable number."""
    digest = hashlib.sha256(json.dumps(sorted(kept)).encode()).digest()
    return np.array([float(int.from_bytes(digest[:6], "big"))])


def _per_arm(stats: Statistics) -> set[str]:
    """The names of the per-arm sums in a policy's statistics (``n`` of ``<arm>/n``)."""
    return {key.partition("/")[2] for key in stats.sums if "/" in key}


def _kept_in(stats: Statistics) -> str:
    """The names of the per-arm sums in a policy's statistics, listed."""
    return ", ".join(sorted(_per_arm(stats))) or "nothing"


def check_shared_arm_statistics(shared: Statistics, joining: Statistics, who: str = "this replica's policy") -> None:
    """Refuse to add up or load policy statistics (as :meth:`Policy.statistics` gives them: ``shared``,
    a total, and ``joining``, the policy's that adds to or loads it) of policies that keep other sums
    per arm: ``epsilon-nc``'s ``n`` and ``sum`` and the linear policies' ``n``, ``xx`` and ``yx`` share
    a name, not a meaning. Statistics without the fingerprint (written before it was shared) are
    told apart by the names of their per-arm sums.

    >>> from greenserv_core.bandits import EpsilonGreedyNonContextual, LinUCB, LinearThompson
    >>> linucb, thompson = LinUCB(2), LinearThompson(2)
    >>> for policy in (linucb, thompson): policy.add_arm("a")
    >>> check_shared_arm_statistics(linucb.statistics(), thompson.statistics())  # the same ridge sums
    >>> other = EpsilonGreedyNonContextual(2); other.add_arm("a")
    >>> check_shared_arm_statistics(linucb.statistics(), other.statistics())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    greenserv_core.errors.StateFileError: ... hold n, xx, yx per arm, this replica's policy keeps n, sum: ...
    """
    extremes = (shared.minima, shared.maxima, joining.minima, joining.maxima)
    marks = {float(arrays[_KEPT][0]) for arrays in extremes if _KEPT in arrays}
    names = [_per_arm(stats) for stats in (shared, joining)]  # (what a store written before the mark holds)
    if len(marks) > 1 or (all(names) and names[0] != names[1]):
        raise StateFileError(
            f"replicas share the statistics of policies that keep other sums per arm: the shared ones hold "
            f"{_kept_in(shared)} per arm, {who} keeps {_kept_in(joining)}: give every replica the same policy "
            "(linucb, thompson and epsilon keep the same ridge sums and may share)"
        )


@dataclass(frozen=True)
class Choice:
    """The chosen arm, every eligible arm's score (an :class:`ArmScores` from the policies
    here), and whether the choice was exploratory."""

    arm: str
    scores: Mapping[str, ArmScore]
    explored: bool = False


def check_seed(seed: object) -> int | None:
    """A seed for numpy's generators: ``None`` or an integer of 0 or more, else
    :class:`InvalidInputError`.

    >>> check_seed(7), check_seed(None)
    (7, None)
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: seed must be None or an integer of 0 or more, got -1
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be None or an integer of 0 or more, got {seed!r}")
    return int(seed)


def whole_number(value: object) -> int | None:
    """``value`` as an ``int`` where it is a whole number of an integer type (numpy's too), else
    ``None`` (a bool, a float, text).

    >>> whole_number(np.int64(3)), whole_number(3.0), whole_number(True)
    (3, None, None)
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def check_whole(name: str, value: object, *, low: int | None = None) -> int:
    """:func:`whole_number` of ``value`` (at least ``low``), else :class:`InvalidInputError`
    naming the parameter.

    >>> check_whole("cache_size", np.int64(8), low=0)
    8
    >>> check_whole("max_tokens", 2.5, low=1)
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: max_tokens must be an integer >= 1, got 2.5
    """
    whole = whole_number(value)
    if whole is None or (low is not None and whole < low):
        bound = "" if low is None else f" >= {low}"
        raise InvalidInputError(f"{name} must be an integer{bound}, got {value!r}")
    return whole


def check_number(name: str, value: object, *, low: float | None = None, strict: bool = False) -> float:
    """A finite real number (at least ``low``, or above it if ``strict``), as a float, else
    :class:`InvalidInputError` naming the parameter.

    >>> check_number("alpha", 0.5, low=0.0)
    0.5
    >>> check_number("l2", float("inf"), low=0.0, strict=True)
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: l2 must be a finite number > 0, got inf
    """
    bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's numbers are Real too
        raise InvalidInputError(f"{name} must be a finite number{bound}, got {value!r}")
    number = as_float(value)
    if not np.isfinite(number) or (low is not None and (number <= low if strict else number < low)):
        raise InvalidInputError(f"{name} must be a finite number{bound}, got {value!r}")
    return number


def _same_arms(arms: Sequence[str], other: list[str]) -> bool:
    return arms is other or (arms if isinstance(arms, list) else list(arms)) == other


def _refuse_nan(arms: Sequence[str], scores: np.ndarray) -> None:
    """Raise :class:`InvalidInputError` naming the first arm a policy scored NaN."""
    if np.isnan(scores).any():
        raise InvalidInputError(f"the policy scored {arms[int(np.flatnonzero(np.isnan(scores))[0])]!r} NaN")


def _cost_column(arms: list[str], costs: Mapping[str, float] | None) -> np.ndarray:
    """Each arm's cost (0 where ``costs`` has none), without per-arm work when ``costs`` is
    an :class:`ArmValues` over exactly ``arms``."""
    if not costs:
        return np.zeros(len(arms))
    if isinstance(costs, ArmValues) and _same_arms(costs.arms, arms):
        return costs.array
    try:
        return np.fromiter((float(costs.get(arm, 0.0)) for arm in arms), dtype=np.float64, count=len(arms))
    except (TypeError, ValueError, OverflowError):  # a cost that is not a number: name its arm
        for arm in arms:
            try:
                float(costs.get(arm, 0.0))
            except (TypeError, ValueError, OverflowError):
                raise InvalidInputError(
                    f"the cost of {arm!r} must be a finite number, got {costs.get(arm)!r}"
                ) from None
        raise


class Policy(ABC):
    """Base class: arm bookkeeping, validation, argmax with random ties, seeded state.

    Subclasses implement :meth:`_estimates` (estimate and bonus per arm; a policy that can
    compute them for all arms at once overrides :meth:`_estimate_arrays` too), :meth:`update`,
    :meth:`_new_arm_state` and the ``_arm_state`` / ``_load_arm_state`` pair (saving). A policy
    that replicas may share also implements ``_arm_statistics`` / ``_load_arm_statistics``: an
    arm's state as sums that add up across replicas, and back.

    A policy is not thread-safe: the router calls it under its learner's lock. Code that
    calls one policy from several threads holds a lock of its own around each call.
    """

    name: ClassVar[str]
    contextual: ClassVar[bool] = True
    reward_range: tuple[float, float] | None = None
    """The rewards the policy can be taught; an arm's index (estimate + bonus) is clipped to it,
    since an optimistic value above the best possible reward carries no information."""
    strategy_argument: ClassVar[str | None] = None
    """The keyword that takes the text after ``:`` in a strategy name (``static:MODEL`` → ``arm``)."""

    def __init__(self, dimension: int, *, seed: int | None = None) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)) or dimension < 1:
            raise InvalidInputError(f"dimension must be a positive integer, got {dimension!r}")
        self.dimension = int(dimension)
        self.seed = check_seed(seed)
        self.rng_ = np.random.default_rng(seed)
        self.arms_: dict[str, Any] = {}
        self.t_ = 0
        self._kept: list[str] | None = None  # the names of the sums it keeps per arm, once asked

    # ---- arms -------------------------------------------------------------------------
    @property
    def arms(self) -> list[str]:
        return list(self.arms_)

    def add_arm(self, name: str, prior: ArmPrior | None = None) -> None:
        """Add an arm with the policy's prior, plus ``prior`` where given; it is explored like
        any unplayed arm."""
        self._check_new_arm(name, prior)
        state = self._new_arm_state()
        if prior is not None:
            state = self._with_prior(state, prior)
        self.arms_[name] = state

    def _check_new_arm(self, name: str, prior: ArmPrior | None) -> None:
        """Refuse a bad or taken arm name, and a prior of another dimension."""
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"arm name must be a non-empty string, got {name!r}")
        if name in self.arms_:
            raise InvalidInputError(f"arm {name!r} already exists")
        if prior is not None and prior.contexts.shape[1] != self.dimension:
            raise InvalidInputError(
                f"the prior's contexts have dimension {prior.contexts.shape[1]}, not {self.dimension}"
            )

    @property
    def takes_priors(self) -> bool:
        """Whether :meth:`add_arm` accepts an :class:`ArmPrior` (the policy overrides ``_with_prior``)."""
        return type(self)._with_prior is not Policy._with_prior

    def _untried(self, arm: str) -> bool:
        """Whether ``arm`` has neither data nor a prior of its own: a bounded policy then gives it
        the best possible index, so that every model is tried at least once (no policy here does
        by default)."""
        return False

    def _untried_mask(self, arms: Sequence[str]) -> np.ndarray:
        """:meth:`_untried` of each of ``arms``, as a boolean array (override to do it at once)."""
        return np.fromiter((self._untried(arm) for arm in arms), dtype=bool, count=len(arms))

    def _with_prior(self, state: Any, prior: ArmPrior) -> Any:
        """The arm state with ``prior`` folded in (a policy that takes priors overrides this)."""
        raise InvalidInputError(
            f"the {self.name!r} policy takes no prior beliefs about its arms; use a linear policy "
            "(linucb, thompson, epsilon) to give models a quality prior"
        )

    def remove_arm(self, name: str) -> None:
        """Forget an arm; it is never chosen again."""
        self._require_arm(name)
        del self.arms_[name]

    def _require_arm(self, name: str) -> None:
        if name not in self.arms_:
            raise UnknownModelError(f"unknown arm {name!r}; arms are {self.arms}")

    def check_context(self, context: np.ndarray) -> np.ndarray:
        """``context`` as a float array of this policy's dimension, or :class:`InvalidInputError`
        (a wrong shape, NaN or infinity)."""
        return self._check_context(context)

    def _check_context(self, context: np.ndarray) -> np.ndarray:
        try:
            x = np.asarray(context, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as error:  # text, ragged lists, ints past a float
            raise InvalidInputError(f"context must be an array of numbers ({type(error).__name__}: {error})") from None
        if x.shape != (self.dimension,):
            raise InvalidInputError(f"context must have shape ({self.dimension},), got {x.shape}")
        if not math.isfinite(x.sum()) and not np.isfinite(x).all():  # a sum is finite when every entry is
            raise InvalidInputError("context contains NaN or infinity")
        return x

    @staticmethod
    def _check_reward(reward: float) -> float:
        if isinstance(reward, bool) or not isinstance(reward, (int, float, np.floating, np.integer)):
            raise InvalidInputError(f"reward must be a number, got {type(reward).__name__}")
        value = as_float(reward)
        if not math.isfinite(value):
            raise InvalidInputError(f"reward must be finite, got {reward!r}")
        return value

    # ---- choosing ---------------------------------------------------------------------
    def decide(
        self,
        context: np.ndarray,
        eligible_arms: Sequence[str] | None = None,
        *,
        value_scale: float = 1.0,
        costs: Mapping[str, float] | None = None,
    ) -> Choice:
        """Choose an arm and report every eligible arm's score (as :class:`ArmScores`).

        ``costs`` may be any mapping; an :class:`ArmValues` over exactly the eligible arms is
        used as it is.
        """
        x, arms = self._check_decision(context, eligible_arms)
        if not (type(value_scale) is float and 0.0 <= value_scale < math.inf):  # the router's: a float
            check_number("value_scale", value_scale, low=0.0)
        cost = _cost_column(arms, costs)  # checked before any noise is drawn: a refused decision moves nothing
        if costs and not math.isfinite(cost.sum()) and not np.isfinite(cost).all():  # (a sum of huge costs)
            bad = arms[int(np.flatnonzero(~np.isfinite(cost))[0])]
            raise InvalidInputError(f"the cost of {bad!r} must be a finite number, got {cost[arms.index(bad)]!r}")
        estimate, bonus = self._estimate_arrays(x, arms)
        if self.reward_range is not None:
            low, high = self.reward_range
            index = np.minimum(high, np.maximum(low, estimate + bonus))
            index[self._untried_mask(arms)] = high
            bonus = index - estimate
        scores = ArmScores(arms, estimate, bonus, cost, value_scale * (estimate + bonus) - cost, value_scale)
        _refuse_nan(arms, scores.score)  # before any draw, exploring or not
        chosen, explored = self._choose(scores)
        self.t_ += 1
        return Choice(chosen, scores, explored)

    def estimates(self, context: np.ndarray, arms: Sequence[str]) -> np.ndarray:
        """Each arm's estimate at ``context``, without exploration (e.g. the accuracy of a
        cascade's model that the query did not offer to the policy)."""
        x, checked = self._check_decision(context, arms)
        return self._estimate_arrays(x, checked)[0]

    def _check_decision(self, context: np.ndarray, eligible_arms: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
        """The checked context and the eligible arms (all arms for ``None``), or :class:`InvalidInputError`."""
        x = self._check_context(context)
        arms = self.arms if eligible_arms is None else list(eligible_arms)
        if not arms:
            raise InvalidInputError("no eligible arms to choose from")
        if eligible_arms is not None and arms != list(self.arms_):
            if not all(map(self.arms_.__contains__, arms)):
                for arm in arms:
                    self._require_arm(arm)
            if len(set(arms)) != len(arms):
                repeated = sorted({arm for arm in arms if arms.count(arm) > 1})
                raise InvalidInputError(f"eligible arms must be distinct; repeated: {repeated}")
        return x, arms

    def select(
        self,
        context: np.ndarray,
        eligible_arms: Sequence[str] | None = None,
        *,
        value_scale: float = 1.0,
        costs: Mapping[str, float] | None = None,
    ) -> str:
        """The chosen arm's name (see :meth:`decide` for the scores)."""
        return self.decide(context, eligible_arms, value_scale=value_scale, costs=costs).arm

    def _choose(self, scores: Mapping[str, ArmScore]) -> tuple[str, bool]:
        return self._argmax(scores), False

    def _argmax(self, scores: Mapping[str, ArmScore]) -> str:
        """The best-scoring arm, ties (within 1e-12) broken uniformly at random."""
        if isinstance(scores, ArmScores):
            arms, values = scores.arms, scores.score
        else:
            arms, values = list(scores), np.array([s.score for s in scores.values()], dtype=np.float64)
        _refuse_nan(arms, values)
        tied = np.flatnonzero(values >= values.max() - _TIE_TOLERANCE)
        return arms[int(tied[int(self.rng_.integers(len(tied)))])] if len(tied) > 1 else arms[int(tied[0])]

    @abstractmethod
    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        """(estimate, exploration bonus) of each arm at ``context``."""

    def _estimate_arrays(self, context: np.ndarray, arms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The estimates and the exploration bonuses of ``arms`` at ``context``, as two arrays
        aligned with ``arms`` (by default from :meth:`_estimates`; a policy that can compute
        them for all arms at once overrides this)."""
        estimates = self._estimates(context, arms)
        pairs = np.array([estimates[arm] for arm in arms], dtype=np.float64).reshape(len(arms), 2)
        return pairs[:, 0].copy(), pairs[:, 1].copy()

    @abstractmethod
    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        """Learn that ``arm`` earned ``reward`` at ``context``."""

    @abstractmethod
    def _new_arm_state(self) -> Any: ...

    @abstractmethod
    def _arm_state(self, state: Any) -> dict[str, Any]: ...

    @abstractmethod
    def _load_arm_state(self, data: dict[str, Any]) -> Any: ...

    def params(self) -> dict[str, Any]:
        """Constructor parameters (saved so that :func:`make_policy` can rebuild the policy)."""
        return {}

    # ---- sharing between replicas -----------------------------------------------------
    @property
    def shareable(self) -> bool:
        """Whether this policy's state can be shared (it implements the arm-statistics pair)."""
        cls = type(self)
        return (
            cls._arm_statistics is not Policy._arm_statistics
            and cls._load_arm_statistics is not Policy._load_arm_statistics
        )

    def _not_shareable(self) -> SharingNotSupportedError:
        return SharingNotSupportedError(
            f"the {self.name!r} policy ({type(self).__name__}) cannot share its learned state between "
            "replicas: it does not implement both _arm_statistics and _load_arm_statistics"
        )

    def _arm_statistics(self, state: Any) -> dict[str, np.ndarray]:
        """An arm's learned state as sums that add up across replicas."""
        raise self._not_shareable()

    def _load_arm_statistics(self, state: Any, sums: dict[str, np.ndarray]) -> Any:
        """The arm's state rebuilt from merged :meth:`_arm_statistics` sums."""
        raise self._not_shareable()

    def _kept_per_arm(self) -> list[str]:
        """The names of the sums :meth:`_arm_statistics` gives of an arm (of a fresh one)."""
        if self._kept is None:
            self._kept = sorted(self._arm_statistics(self._new_arm_state()))
        return self._kept

    def statistics(self) -> Statistics:
        """The step count and every arm's sums (keys ``t`` and ``<quoted arm>/<name>``), with a
        fingerprint of the names of an arm's sums as an equal minimum and maximum (where it keeps
        any): replicas whose policies keep other sums differ there (:func:`check_shared_arm_statistics`).

        >>> from greenserv_core.bandits import LinUCB
        >>> policy = LinUCB(2); policy.add_arm("a"); policy.update("a", np.array([1.0, 0.0]), 1.0)
        >>> sorted(policy.statistics().sums)
        ['a/n', 'a/xx', 'a/yx', 't']
        """
        if not self.shareable:
            raise self._not_shareable()
        sums = {"t": np.array([float(self.t_)])}
        for arm, state in self.arms_.items():
            prefix = quote(arm, safe="")
            sums.update({f"{prefix}/{key}": value for key, value in self._arm_statistics(state).items()})
        kept = self._kept_per_arm()
        if not kept:  # (a policy that keeps nothing per arm adds nothing to another's sums)
            return Statistics(sums=sums)
        return Statistics(sums=sums, minima={_KEPT: _kept_mark(kept)}, maxima={_KEPT: _kept_mark(kept)})

    def load_statistics(self, stats: Statistics) -> None:
        """Set the step count and the state of every arm this policy has from ``stats``;
        :class:`StateFileError` if they hold the sums of a policy that keeps other ones per arm."""
        if not self.shareable:
            raise self._not_shareable()
        check_shared_arm_statistics(stats, self.statistics(), f"this {self.name!r} policy")
        if "t" in stats.sums:
            self.t_ = round(float(stats.sums["t"][0]))
        for arm, state in self.arms_.items():
            own = stats.under(quote(arm, safe="")).sums
            if own:
                self.arms_[arm] = self._load_arm_statistics(state, own)

    # ---- persistence ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "dimension": self.dimension,
            "params": self.params(),
            "seed": self.seed,
            "t": self.t_,
            "rng": self.rng_.bit_generator.state,
            "arms": {arm: self._arm_state(state) for arm, state in self.arms_.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("policy") != self.name:
            raise StateFileError(f"saved policy is {state.get('policy')!r}, this is {self.name!r}")
        if int(state["dimension"]) != self.dimension:
            raise StateFileError(f"saved policy has context dimension {state['dimension']}, expected {self.dimension}")
        self._load_arms(state["arms"])
        self.t_ = int(state["t"])
        self.rng_.bit_generator.state = state["rng"]

    def _load_arms(self, arms: Mapping[str, dict[str, Any]]) -> None:
        """Replace every arm's state by the saved ones (``_load_arm_state`` of each)."""
        self.arms_ = {arm: self._load_arm_state(data) for arm, data in arms.items()}


class StatelessArmsPolicy(Policy):
    """A :class:`Policy` that keeps nothing per arm (baselines, diagnostics): the arm-state
    hooks are no-ops (a prior is ignored), so its saved state is just its arms and step count."""

    def _new_arm_state(self) -> None:
        return None

    def _with_prior(self, state: Any, prior: ArmPrior) -> None:
        return None

    @property
    def takes_priors(self) -> bool:
        """No: a prior given to it is ignored (the router says so)."""
        return False

    def _arm_state(self, state: Any) -> dict[str, Any]:
        return {}

    def _load_arm_state(self, data: dict[str, Any]) -> None:
        return None

    def _arm_statistics(self, state: Any) -> dict[str, np.ndarray]:
        return {}

    def _load_arm_statistics(self, state: Any, sums: dict[str, np.ndarray]) -> None:
        return None
