"""What an operator states: an :class:`EnergyBudget`, in joules per query or per time window.

>>> EnergyBudget.parse("50 J/query")
EnergyBudget(joules=50.0, window_s=None)
>>> EnergyBudget.parse("2Wh/h").describe()
'2 Wh per 1 h'
>>> EnergyBudget.parse("500J/30s").joules_per_second
16.666666666666668
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from greenserv_core.errors import InvalidInputError

__all__ = ["EnergyBudget", "check_max_joules"]

_UNITS_J = {"j": 1.0, "kj": 1e3, "wh": 3600.0, "kwh": 3.6e6}  # any case
_CASED_UNITS_J = {"mJ": 1e-3, "MJ": 1e6, "mWh": 3.6, "MWh": 3.6e9}  # milli or mega: the case says which
_PERIODS_S = {
    1.0: "s sec secs second seconds",
    60.0: "min mins minute minutes m",
    3600.0: "h hr hrs hour hours",
    86400.0: "d day days",
}
_UNITS_S = {unit: seconds for seconds, units in _PERIODS_S.items() for unit in units.split()}  # any case
_PER_QUERY = ("q", "query", "queries", "request", "requests", "answer", "answers")
_NUMBER = r"[+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?"  # (an exponent's "e" only before its digits: no letter read two ways)
_TEXT = re.compile(rf"^\s*({_NUMBER})\s*([a-zA-Z]+)\s*(?:/|per)\s*((?:{_NUMBER})?)\s*([a-zA-Z]+)\s*$")


def _positive(name: str, value: object) -> float:
    """``value`` as a positive finite float: any real number (numpy's, a ``Fraction``), not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # a Fraction beyond any float
        number = math.inf
    if not math.isfinite(number) or number <= 0:
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}")
    return number


def _rounded(number: float) -> float:
    """``number`` to 12 significant digits, so that one budget written two ways is one budget
    (``0.07kWh/h`` is 252000.00000000003 J unrounded, ``70Wh/h`` 252000 J).

    >>> EnergyBudget.parse("0.07kWh/h") == EnergyBudget.parse("70Wh/h")
    True
    """
    return float(f"{number:.12g}")


def _exact(value: float, unit: float) -> str:
    """``value`` in ``unit`` in as few significant digits as give ``value`` back (6 at least),
    as :meth:`EnergyBudget.parse` reads it: ``1.38889`` Wh is not 5000 J, ``1.38888888889`` is.

    >>> _exact(5000.0, 3600.0), _exact(7200.0, 3600.0), _exact(1234567.0, 1.0)
    ('1.38888888889', '2', '1234567')
    """
    for digits in range(6, 16):
        text = f"{value / unit:.{digits}g}"
        if _rounded(float(text) * unit) == value:
            break
    return text


def check_max_joules(value: object) -> float | None:
    """``None``, or a per-query cap in joules as a positive finite float, or :class:`InvalidInputError`."""
    return None if value is None else _positive("max_joules", value)


@dataclass(frozen=True)
class EnergyBudget:
    """An energy budget: ``joules`` per query (``window_s=None``), or ``joules`` per window of
    ``window_s`` seconds. Build it with :meth:`per_query`, :meth:`per_window` or :meth:`parse`.

    The router spends up to the budget on average and no more: per query, the mean over the
    answers it has measured; per window, the joules of every window of ``window_s`` seconds.
    """

    joules: float
    window_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "joules", _rounded(_positive("the energy budget", self.joules)))
        if self.window_s is not None:
            window_s = _positive("the budget's window length (seconds)", self.window_s)
            object.__setattr__(self, "window_s", _rounded(window_s))
            if not 0 < self.joules / self.window_s < math.inf:  # the pacer's allowance accrues at this rate
                raise InvalidInputError(
                    f"the budget's joules over its window length must be a positive finite rate (J/s), "
                    f"got {self.joules:g} J per {self.window_s:g} s"
                )

    @classmethod
    def per_query(cls, joules: float) -> EnergyBudget:
        """A mean of ``joules`` per query."""
        return cls(joules)

    @classmethod
    def per_window(cls, *, window_s: float, joules: float | None = None, wh: float | None = None) -> EnergyBudget:
        """``joules`` (or ``wh`` watt-hours) per window of ``window_s`` seconds.

        >>> EnergyBudget.per_window(wh=2, window_s=3600).joules
        7200.0
        """
        if (joules is None) == (wh is None):
            raise InvalidInputError("a window budget takes joules= or wh=, exactly one")
        if window_s is None:  # (None is a budget per query, which this is not)
            raise InvalidInputError("a window budget needs window_s=, the window's length in seconds")
        amount = joules if joules is not None else _positive("wh", wh) * 3600.0
        return cls(amount, window_s)

    @classmethod
    def parse(cls, text: str) -> EnergyBudget:
        """``"50J/query"``, ``"2Wh/h"``, ``"500 J per 30s"``, ``"1.5kWh/day"``: an amount with
        a unit (J, kJ, mJ, MJ, Wh, kWh, mWh, MWh: milli and mega by their case), then ``/`` or
        ``per``, then ``query`` (``request``, ``answer``) or a duration with an optional count:
        s (sec, second), min (minute), h (hr, hour) or d (day), any case, in the plural too."""
        if isinstance(text, EnergyBudget):
            return text
        if not isinstance(text, str):
            raise InvalidInputError(f"an energy budget is text such as '50J/query' or '2Wh/h', got {text!r}")
        match = _TEXT.match(text)
        if match is None:
            raise InvalidInputError(
                f"cannot read the energy budget {text!r}: write an amount, a unit and a period, "
                "e.g. '50J/query', '2Wh/h' or '500J/30s'"
            )
        amount_text, unit, count_text, period = match.groups()
        try:
            amount = float(amount_text)
        except ValueError:
            raise InvalidInputError(f"cannot read the amount {amount_text!r} of the budget {text!r}") from None
        factor = _CASED_UNITS_J.get(unit, _UNITS_J.get(unit.lower()))
        if factor is None and unit.lower() in ("mj", "mwh"):
            base = "J" if unit.lower() == "mj" else "Wh"
            raise InvalidInputError(
                f"the energy unit {unit!r} in {text!r} is ambiguous: write m{base} (milli) or M{base} (mega)"
            )
        if factor is None:
            raise InvalidInputError(
                f"unknown energy unit {unit!r} in {text!r}; use one of J, kJ, mJ, MJ, Wh, kWh, mWh, MWh"
            )
        joules = _positive("the energy budget", amount) * factor
        if period.lower() in _PER_QUERY:
            if count_text:
                raise InvalidInputError(f"a per-query budget takes no count before 'query': {text!r}")
            return cls(joules)
        seconds = _UNITS_S.get(period.lower())
        if seconds is None:
            accepted = "; ".join(", ".join(units.split()) for units in _PERIODS_S.values())
            raise InvalidInputError(f"unknown period {period!r} in {text!r}; use 'query' or a duration in {accepted}")
        try:
            count = float(count_text) if count_text else 1.0
        except ValueError:
            raise InvalidInputError(f"cannot read the window length {count_text!r} of {text!r}") from None
        return cls(joules, _positive("the budget's window length", count) * seconds)

    @property
    def per_query_joules(self) -> float | None:
        """The joules per query, or ``None`` for a window budget."""
        return self.joules if self.window_s is None else None

    @property
    def joules_per_second(self) -> float | None:
        """A window budget's rate (joules per second), or ``None`` for a per-query budget."""
        return None if self.window_s is None else self.joules / self.window_s

    def describe(self) -> str:
        """The budget in words, e.g. ``'50 J per query'`` or ``'2 Wh per 1 h'``, which
        :meth:`parse` reads back as this budget.

        >>> EnergyBudget.parse("5kJ/h").describe(), EnergyBudget.parse("1 J/1000 s").describe()
        ('1.38888888889 Wh per 1 h', '1 J per 16.6666666667 min')
        """
        if self.window_s is None:
            return f"{_exact(self.joules, 1.0)} J per query"
        amount = f"{_exact(self.joules, 3600.0)} Wh" if self.joules >= 3600 else f"{_exact(self.joules, 1.0)} J"
        window = self.window_s
        unit = 3600.0 if window >= 3600 else 60.0 if window >= 60 else 1.0
        return f"{amount} per {_exact(window, unit)} {'h' if unit == 3600 else 'min' if unit == 60 else 's'}"

    def to_dict(self) -> dict[str, float | None]:
        return {"joules": self.joules, "window_s": self.window_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnergyBudget:
        joules = data.get("joules") if isinstance(data, Mapping) else None
        if joules is None:
            raise InvalidInputError(f"a saved energy budget holds its joules, got {data!r}")
        window = data.get("window_s")
        return cls(joules, window)  # (checked there: a number of joules, a number of seconds or None)
