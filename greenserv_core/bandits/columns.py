"""Per-arm values kept as arrays and read as mappings: what a decision reports about every
eligible arm is computed for all arms at once, and a per-arm object is made only when it is
looked up.

>>> values = ArmValues(["a", "b"], np.array([0.5, float("nan")]))
>>> values["a"], dict(values)
(0.5, {'a': 0.5, 'b': nan})
>>> KnownValues(["a", "b"], np.array([2.0, float("nan")]))
{'a': 2.0, 'b': None}
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from greenserv_core.errors import InvalidInputError

__all__ = ["ArmScore", "ArmScores", "ArmValues", "ByArm", "KnownValues"]

V = TypeVar("V")


@dataclass(frozen=True)
class ArmScore:
    """How one arm scored: learned ``estimate``, exploration ``bonus``, known ``cost``, and ``score``."""

    estimate: float
    bonus: float
    cost: float
    score: float


class ByArm(Mapping[str, V]):
    """A read-only mapping from the arms ``arms`` (in order, distinct) to values held in arrays
    aligned with them; the name → position index is built on the first lookup by name."""

    __slots__ = ("_index", "arms")

    def __init__(self, arms: Sequence[str]) -> None:
        self.arms = arms
        self._index: dict[str, int] | None = None

    def position(self, arm: str) -> int:
        """The position of ``arm`` in :attr:`arms` (``KeyError`` if it is not there)."""
        if self._index is None:
            self._index = {name: i for i, name in enumerate(self.arms)}
        return self._index[arm]

    @abstractmethod
    def at(self, position: int) -> V:
        """The value of the arm at ``position``."""

    def __getitem__(self, arm: str) -> V:
        return self.at(self.position(arm))

    def __contains__(self, arm: object) -> bool:
        if not isinstance(arm, str):
            return False
        try:
            self.position(arm)
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.arms)

    def __len__(self) -> int:
        return len(self.arms)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


def _column(arms: Sequence[str], values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (len(arms),):
        raise InvalidInputError(f"{what}: {array.shape} values for {len(arms)} arms")
    return array


class ArmValues(ByArm[float]):
    """A number per arm (``array[i]`` is ``arms[i]``'s)."""

    __slots__ = ("array",)

    def __init__(self, arms: Sequence[str], values: np.ndarray) -> None:
        super().__init__(arms)
        self.array = _column(arms, values, "ArmValues")

    def at(self, position: int) -> float:
        return float(self.array[position])


class KnownValues(ByArm[float | None]):
    """A number per arm, NaN read as ``None`` (not known, e.g. a model not yet measured)."""

    __slots__ = ("array",)

    def __init__(self, arms: Sequence[str], values: np.ndarray) -> None:
        super().__init__(arms)
        self.array = _column(arms, values, "KnownValues")

    def at(self, position: int) -> float | None:
        value = float(self.array[position])
        return None if value != value else value


class ArmScores(ByArm[ArmScore]):
    """Every eligible arm's :class:`ArmScore`, kept as four aligned arrays, and the
    ``value_scale`` that weighed the values in the scores (``score = value_scale · (estimate +
    bonus) − cost``).

    >>> scores = ArmScores(["a", "b"], np.array([0.5, 0.2]), np.zeros(2), np.array([0.0, 0.1]), np.array([0.5, 0.1]))
    >>> scores["b"]
    ArmScore(estimate=0.2, bonus=0.0, cost=0.1, score=0.1)
    """

    __slots__ = ("bonus", "cost", "estimate", "score", "value_scale")

    def __init__(
        self,
        arms: Sequence[str],
        estimate: np.ndarray,
        bonus: np.ndarray,
        cost: np.ndarray,
        score: np.ndarray,
        value_scale: float = 1.0,
    ) -> None:
        super().__init__(arms)
        self.value_scale = float(value_scale)
        self.estimate = _column(arms, estimate, "estimates")
        self.bonus = _column(arms, bonus, "bonuses")
        self.cost = _column(arms, cost, "costs")
        self.score = _column(arms, score, "scores")

    def at(self, position: int) -> ArmScore:
        return ArmScore(
            float(self.estimate[position]),
            float(self.bonus[position]),
            float(self.cost[position]),
            float(self.score[position]),
        )
