"""Drift in a replay: a model's outcomes change from some step of each run's stream on.

A :class:`Shift` multiplies a model's joules or seconds, or moves its accuracy. On 0/1
accuracies the move is made by flipping outcomes, so that they stay 0/1: a drop of ``d``
flips each correct answer to wrong with probability ``d / a`` (``a``: the model's mean
accuracy on that query's task in the table; capped at 1), a rise flips each wrong answer to
right with probability ``d / (1 − a)``. A model with any fractional score has its scores
moved by ``d`` and clipped to [0, 1] instead. The flips are drawn from a generator seeded by
the run's seed only, so that every strategy of a run sees the same shifted outcomes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from greenserv_core.errors import InvalidInputError

__all__ = ["Shift", "ShiftKind", "shift_outcomes"]

_SPEC = re.compile(
    r"^(?P<model>.+)@(?P<step>\d+):(?P<kind>accuracy|energy|latency)(?P<op>[-+*])(?P<amount>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)$"
)
ShiftKind = Literal["accuracy", "energy", "latency"]
_FLIPS = 0x5EED  # the flips' generator: seeded by (run seed, this), apart from the run's own draws


@dataclass(frozen=True)
class Shift:
    """From query number ``step`` of a run on, ``model``'s ``accuracy`` moves by ``amount``
    (signed), or its ``energy`` or ``latency`` is multiplied by ``amount``.

    >>> Shift.parse("qwen2.5-14b@1000:accuracy-0.3")
    Shift(model='qwen2.5-14b', step=1000, kind='accuracy', amount=-0.3)
    >>> str(Shift.parse("phi-4@0:energy*1.5")), Shift.parse("phi-4@0:energy*1.5").worsens
    ('phi-4@0:energy*1.5', True)
    """

    model: str
    step: int
    kind: ShiftKind
    amount: float

    @classmethod
    def parse(cls, text: str) -> Shift:
        match = _SPEC.match(text.strip())
        usage = (
            "a shift is MODEL@STEP:accuracy-D, accuracy+D, energy*F or latency*F (e.g. qwen2.5-14b@1000:accuracy-0.3)"
        )
        if match is None:
            raise InvalidInputError(f"{usage}, got {text!r}")
        kind, op, amount = match["kind"], match["op"], float(match["amount"])
        if (kind == "accuracy") == (op == "*"):
            raise InvalidInputError(f"{usage}, got {text!r}")
        shift = cls(match["model"], int(match["step"]), cast(ShiftKind, kind), -amount if op == "-" else amount)
        shift.check()
        return shift

    def check(self) -> None:
        """Raise :class:`InvalidInputError` for an amount that means nothing."""
        if self.kind == "accuracy" and not (0 < abs(self.amount) <= 1):
            raise InvalidInputError(f"an accuracy shift moves it by 0 < |d| <= 1, got {self.amount}")
        if self.kind != "accuracy" and not self.amount > 0:
            raise InvalidInputError(f"a shift of {self.kind} multiplies it by a factor > 0, got {self.amount}")

    @property
    def worsens(self) -> bool:
        """Whether the model gets worse (less accurate, dearer or slower)."""
        return self.amount < 0 if self.kind == "accuracy" else self.amount > 1

    def __str__(self) -> str:
        """The shift as :meth:`parse` reads it back, to the same amount."""
        if self.kind == "accuracy":
            return f"{self.model}@{self.step}:accuracy{'-' if self.amount < 0 else '+'}{_shortest(abs(self.amount))}"
        return f"{self.model}@{self.step}:{self.kind}*{_shortest(self.amount)}"


def _shortest(amount: float) -> str:
    """The shortest text that reads back as ``amount`` (``2``, not ``2.0``; ``1e-05``).

    >>> _shortest(2.0), _shortest(0.1234567), _shortest(1e-05)
    ('2', '0.1234567', '1e-05')
    """
    text = repr(float(amount))
    return text[:-2] if text.endswith(".0") else text


def shift_outcomes(
    accuracy: np.ndarray,
    energy: np.ndarray,
    latency: np.ndarray,
    task_accuracy: np.ndarray,
    binary: np.ndarray,
    shifts: Sequence[Shift],
    columns: dict[str, int],
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (step × model) outcomes of one run's stream with ``shifts`` applied, in order (copies).

    ``task_accuracy`` holds, per step, each model's mean accuracy on that step's task in the
    table; ``binary`` says per model whether all its accuracies are 0 or 1. Two shifts of
    one model's accuracy add up: the second moves the mean the first left.
    """
    accuracy, energy, latency = accuracy.copy(), energy.copy(), latency.copy()
    task_accuracy = np.array(task_accuracy, dtype=np.float64)  # a later shift starts from the shifted mean
    rng = np.random.default_rng([seed, _FLIPS])
    for shift in shifts:
        j, after = columns[shift.model], slice(shift.step, None)
        if shift.kind == "energy":
            energy[after, j] *= shift.amount
        elif shift.kind == "latency":
            latency[after, j] *= shift.amount
        elif not binary[j]:
            accuracy[after, j] = np.clip(accuracy[after, j] + shift.amount, 0.0, 1.0)
        else:
            draws = rng.random(len(accuracy) - shift.step)  # one per step, flipped or not: aligned across shifts
            mean, got = task_accuracy[after, j], accuracy[after, j]
            d = abs(shift.amount)
            with np.errstate(divide="ignore", invalid="ignore"):
                if shift.amount < 0:
                    chance = np.where(mean > 0, np.minimum(1.0, d / mean), 1.0)
                    flip = (got == 1) & (draws < chance)
                else:
                    chance = np.where(mean < 1, np.minimum(1.0, d / (1 - mean)), 1.0)
                    flip = (got == 0) & (draws < chance)
            accuracy[after, j] = np.where(flip, 1.0 - got, got)
            task_accuracy[after, j] = np.clip(mean + shift.amount, 0.0, 1.0)
    return accuracy, energy, latency
