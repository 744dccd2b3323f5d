"""The :class:`BudgetPacer`: it turns an :class:`EnergyBudget` into the λ in force for each query.

The router scores each eligible model ``(1-λ)·value − λ·cost``: ``value`` is the policy's
accuracy estimate (with its exploration bonus) and ``cost`` the model's predicted energy in
the router's own units (``price_on="energy_scale"``, the default: the normalised energy of the
reward, exactly as without a budget) or in per-query budgets (``price_on="joules"``: predicted
joules over the per-query budget, one price for every task type). With a budget the pacer
sets λ; the λ in force is reported with every answer. BENCHMARKS.md (issue 17) measures both:
with the router's ``known`` energy scale, the default buys as much accuracy or more at each
of the six budgets tried (per query +0.004 to +0.023, level with the fixed-λ router at the
same spend; per hour +0.001 to +0.009), measured cold. A router warm-started with labelled
answers of every model prices best in joules: its tasks' ranges span the whole pool, and a
joule on a task with a narrow range then weighs more (at a quarter of the best model's joules,
0.699 accuracy in joules against 0.630 on the energy scale, "A warm start under a budget").

How λ is found, every ``resolve_every`` answers:

1. **Re-solve on recent decisions.** The pacer remembers, for its last ``memory`` decisions,
   every eligible model's value, cost and predicted joules. For any λ it knows which model
   each of them would have chosen, and so the mean predicted spend at that λ; a bisection
   finds the λ whose spend meets the target. λ thus tracks the query mix, the energy scale
   and what the policy has learned, with no step size to tune.
2. **Feedback on the running deficit.** The target is the per-query budget, less the deficit
   (joules spent beyond the allowance so far) repaid over ``horizon`` answers, times the
   ratio of predicted to measured joules (exploration and prediction errors), kept within
   15% of the budget; that ratio over the last ``memory`` answers, once it lasts (after
   ``2 × memory`` answers), widens the bound to itself, so a budget holds where every answer
   costs twice its prediction (BENCHMARKS.md, issue 17). The deficit also raises the price ``λ/(1-λ)`` itself, by
   ``exp(deficit / (horizon budgets))`` up to ``exp(0.25)``: where many decisions switch
   model at one λ, moving the target alone does not move the spend. Both bounds keep λ
   steady: a fixed price at the right level buys the most accuracy, and wider swings cost
   up to 0.04 of it for a few points less overshoot (BENCHMARKS.md, issue 17). Unspent
   allowance is banked up to ``bank`` per-query budgets and no more, so a quiet start does
   not license a burst.

3. **An optional guard on runs of answers** (``window_queries=N``, budgets per query only): the
   mean over the whole run is held, but the query mix can still make a run of N answers
   overspend (a GSM8K answer costs several budgets even on the cheapest model). With the
   guard, the target also aims to keep the joules of the last ``N − guard_horizon`` answers
   plus the next ``guard_horizon`` within N budgets, and each answer is capped
   (:meth:`BudgetPacer.answer_cap`): the router answers with the best model whose predicted
   joules keep the run of N answers that this one closes within N budgets, or the cheapest.
   It is off by default: on the simulated paper-scale table it held every run of 500 answers
   within 106.2%, 102.8% and 102.6% of the 25%, 50% and 75% budgets, for 0.041, 0.010 and
   0.005 of accuracy (BENCHMARKS.md, issue 17, "The guard caps each answer").

A window budget (joules per ``window_s`` seconds) accrues its allowance with time within each
window; an overspend is carried into the next window, an underspend is not. Its per-query
budget is the window's joules over the answers of the last window's length, so a quiet spell
is not a credit.

When even the highest λ spends more than the budget for ten re-solves in a row (after the
first ``horizon`` answers), the budget cannot be met: the router then answers with the
cheapest eligible model, and says so once in the log (of each process) and in every record
while it lasts. It lasts while the spend is beyond the allowance: a window budget's current
window, with the debt carried into it, against the window's allowance accrued so far.

>>> from greenserv_core.budget.spec import EnergyBudget
>>> pacer = BudgetPacer(EnergyBudget.per_query(10.0))
>>> round(pacer.status().tradeoff, 3)
0.4
>>> forget = pacer.remember(np.array([0.9, 0.5]), np.array([1.0, 0.0]), np.array([30.0, 5.0]))
>>> pacer.observe(6.0, predicted=5.0)
>>> pacer.status().spent_joules
6.0
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from greenserv_core.bandits.base import check_number, check_whole
from greenserv_core.budget.spec import EnergyBudget
from greenserv_core.errors import InvalidInputError
from greenserv_core.reward import DEFAULT_TRADEOFF, check_tradeoff
from greenserv_core.statistics import Statistics

__all__ = ["DEFAULT_PRICE_ON", "BudgetPacer", "BudgetStatus", "as_energy_budget", "check_shared_budget"]

logger = logging.getLogger("greenserv")

_MIN_MU, _MAX_MU = 1e-4, 1e3
"""Bounds of the price ``μ = λ/(1-λ)`` (λ from 0.0001 to 0.999)."""
PRICE_UNITS = ("energy_scale", "joules")
DEFAULT_PRICE_ON = "energy_scale"
"""The cost λ weighs unless told otherwise (see the module)."""


def check_price_on(price_on: object) -> str:
    """One of :data:`PRICE_UNITS`, else :class:`InvalidInputError`.

    >>> check_price_on("J")
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: price_on must be one of ('energy_scale', 'joules'), got 'J'
    """
    if price_on not in PRICE_UNITS:
        raise InvalidInputError(f"price_on must be one of {PRICE_UNITS}, got {price_on!r}")
    return str(price_on)


_HISTORY = 512
_SWING = 0.15
"""The target spend stays within this share of the per-query budget: a deficit is repaid by
routing cheaper, not by routing every query to the cheapest model."""
_NUDGE = 0.25
"""The most a deficit moves the log-price by itself."""
_SATURATED_RESOLVES = 10
"""Re-solves in a row at which even the highest price overspends before the budget is said
to be out of reach."""
_ASSUMED_PER_WINDOW = 100
"""Answers per window a window budget assumes before its first answer."""
_SHORTEST_SPAN = 0.01
"""The share of a window that the first window's answers so far are taken to span at least
when its rate is extrapolated: a burst in its first seconds does not look like a flood. At
0.1 of the window, the rate was taken as up to ten times too low for the first tenth of it,
and the first hour of a tight budget overspent by a fifth (BENCHMARKS.md, issue 17)."""


_WINDOW = "window_s"
"""Where a pacer's statistics hold its budget's window length (0: per query), as an equal
minimum and maximum: replicas whose budgets differ in it are refused (:func:`check_shared_budget`)."""


def check_shared_budget(shared: Statistics, joining: Statistics) -> None:
    """Refuse to add up the budget statistics (as :meth:`BudgetPacer.statistics` gives them:
    ``shared``, a total, and ``joining``, a replica's) of budgets per windows of other lengths,
    or per query and per window: ``window/<index>`` would mean another span on each replica.
    Statistics without the length (written before it was shared) pass. A store keeps every
    length it was given, so it stays bound to its budget's window length: a deployment that
    changes it shares through a new store (or a new key prefix).

    >>> from greenserv_core.budget.spec import EnergyBudget
    >>> hourly = BudgetPacer(EnergyBudget.per_window(window_s=3600.0, joules=100.0)).statistics()
    >>> check_shared_budget(hourly, BudgetPacer(EnergyBudget.per_window(window_s=3600.0, joules=50.0)).statistics())
    >>> check_shared_budget(hourly, BudgetPacer(EnergyBudget.per_window(window_s=60.0, joules=2.0)).statistics())
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: replicas share the spend of energy budgets per window of 60 s and ...
    """
    extremes = (shared.minima, shared.maxima, joining.minima, joining.maxima)
    marks = sorted({float(arrays[_WINDOW][0]) for arrays in extremes if _WINDOW in arrays})
    if len(marks) > 1:
        spans = " and ".join("per query" if mark == 0.0 else f"per window of {mark:g} s" for mark in marks)
        raise InvalidInputError(
            f"replicas share the spend of energy budgets {spans}: a window's spend would be counted in "
            "another span on each; give every replica sharing this store a budget of the same window length "
            "(or a budget per query each); a store keeps the lengths it was given: to change the length, share "
            "through a new store (or a new key prefix)"
        )


@dataclass(frozen=True)
class BudgetStatus:
    """What the budget did for one query: the ``budget`` in words, the ``tradeoff`` λ in force,
    the ``per_query_joules`` budget in force, the joules
    ``spent`` over ``answers`` measured answers, the ``allowance`` so far, the current
    window's remaining joules (window budgets), whether the budget can be ``met``, the
    recent ``history`` of λ as ``(answers, λ)`` points, and with the guard the ``answer_cap``:
    the most joules this answer may be predicted to cost (``None`` without one)."""

    budget: str
    tradeoff: float
    per_query_joules: float
    spent_joules: float
    answers: int
    allowance_joules: float
    window_remaining_joules: float | None
    met: bool
    history: tuple[tuple[int, float], ...] = ()
    answer_cap_joules: float | None = None

    @property
    def mean_joules(self) -> float | None:
        """Mean measured joules per answer (``None`` before the first)."""
        return self.spent_joules / self.answers if self.answers else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "tradeoff": self.tradeoff,
            "per_query_joules": self.per_query_joules,
            "spent_joules": self.spent_joules,
            "answers": self.answers,
            "mean_joules": self.mean_joules,
            "allowance_joules": self.allowance_joules,
            "window_remaining_joules": self.window_remaining_joules,
            "met": self.met,
            "history": [list(point) for point in self.history],
            "answer_cap_joules": self.answer_cap_joules,
        }

    def describe(self) -> str:
        """One short line, e.g. ``'budget 50 J per query: λ 0.62, mean 48.1 J over 120'``."""
        line = f"budget {self.budget}: λ {self.tradeoff:.2f}"
        if self.mean_joules is not None:
            line += f", mean {self.mean_joules:.1f} J over {self.answers}"
        if self.window_remaining_joules is not None:
            line += f", {self.window_remaining_joules:.0f} J left in this window"
        if self.answer_cap_joules is not None:
            line += f", at most {self.answer_cap_joules:.0f} J for this answer"
        return line + ("" if self.met else " (cannot be met: cheapest model)")


@dataclass(frozen=True)
class _Overwritten:
    """A row of :class:`_RecentDecisions` before a decision was kept in it, and the count then."""

    count: int
    values: np.ndarray
    costs: np.ndarray
    joules: np.ndarray


class _RecentDecisions:
    """The last ``size`` decisions as three arrays, one row each: the eligible models' values
    (−inf past a row's models), costs (0 past them) and predicted joules (NaN: unknown)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values = np.full((size, 1), -np.inf)
        self.costs = np.zeros((size, 1))
        self.joules = np.full((size, 1), np.nan)
        self.count = 0

    def __len__(self) -> int:
        return min(self.count, self.size)

    def add(self, values: np.ndarray, costs: np.ndarray, joules: np.ndarray) -> _Overwritten:
        """Keep a decision in the next row; returns what :meth:`take_back` puts back."""
        width = self.values.shape[1]
        if len(values) > width:  # a larger decision: widen every row
            grow = ((0, 0), (0, len(values) - width))
            self.values = np.pad(self.values, grow, constant_values=-np.inf)
            self.costs = np.pad(self.costs, grow, constant_values=0.0)
            self.joules = np.pad(self.joules, grow, constant_values=np.nan)
        row = self.count % self.size
        overwritten = _Overwritten(self.count, self.values[row].copy(), self.costs[row].copy(), self.joules[row].copy())
        self.values[row], self.costs[row], self.joules[row] = -np.inf, 0.0, np.nan
        self.values[row, : len(values)] = values
        self.costs[row, : len(costs)] = costs
        self.joules[row, : len(joules)] = joules
        self.count += 1
        return overwritten

    def take_back(self, overwritten: _Overwritten) -> bool:
        """Put back the row the last decision kept overwrote (the decision was withdrawn);
        only if it is still the last. Rows widened since keep their padding. Returns whether it did."""
        if self.count != overwritten.count + 1:
            return False
        row, width = overwritten.count % self.size, len(overwritten.values)
        self.values[row, :width], self.costs[row, :width], self.joules[row, :width] = (
            overwritten.values,
            overwritten.costs,
            overwritten.joules,
        )
        self.count = overwritten.count
        return True

    def copy(self) -> _RecentDecisions:
        """An independent copy (what a withdrawn batch of decisions returns the memory to)."""
        twin = _RecentDecisions(self.size)
        twin.values, twin.costs, twin.joules = self.values.copy(), self.costs.copy(), self.joules.copy()
        twin.count = self.count
        return twin

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = len(self)
        return self.values[:rows], self.costs[:rows], self.joules[:rows]

    def state_dict(self) -> dict[str, Any]:
        """The rows as JSON lists (``None`` where a value is −inf or a prediction unknown)."""

        def listed(array: np.ndarray) -> list[list[float | None]]:
            return [[float(v) if math.isfinite(v) else None for v in row] for row in array]

        return {
            "count": self.count,
            "values": listed(self.values),
            "costs": listed(self.costs),
            "joules": listed(self.joules),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a state of another ``size`` keeps its latest rows)."""

        def array(rows: list[list[float | None]], missing: float) -> np.ndarray:
            out = np.array([[missing if v is None else float(v) for v in row] for row in rows], dtype=float)
            return out.reshape(len(rows), -1) if len(rows) else np.full((0, 1), missing)

        values, costs, joules = (
            array(state["values"], -np.inf),
            array(state["costs"], 0.0),
            array(state["joules"], np.nan),
        )
        count = int(state["count"])
        if len(values) == self.size:
            self.values, self.costs, self.joules, self.count = values, costs, joules, count
            return
        rows = min(count, len(values))  # another memory: add the saved rows again, oldest first
        for index in range(count - rows, count):
            row = index % len(values)
            self.add(values[row], costs[row], joules[row])


def _positive_int(name: str, value: object, most: int = 2**31 - 1) -> int:
    """A count of answers or decisions: a positive integer (numpy's too) up to ``most``."""
    count = check_whole(name, value, low=1)
    if count > most:
        raise InvalidInputError(f"{name} must be at most {most:,}, got {value!r}")
    return count


class BudgetPacer:
    """Paces an :class:`EnergyBudget` by setting the price of a joule (see the module).

    Parameters, stored as given: ``budget``; ``price_on`` (the cost λ weighs: see the module);
    ``horizon`` (answers over which a deficit is
    repaid); ``memory`` (decisions the price is re-solved on); ``resolve_every`` (answers
    between re-solves); ``bank`` (the most unspent allowance kept, in per-query budgets);
    ``initial_tradeoff`` (λ before anything is known); ``clock`` (seconds, for window budgets);
    ``window_queries`` (aim to hold every run of this many answers to the budget too; ``None``:
    off; a budget per query only)
    and ``guard_horizon`` (the answers over which the guard makes room; default a fifth of
    ``window_queries``).

    Learned state: ``price_`` (``λ/(1-λ)``), ``spent_``, ``answers_``, ``forfeited_`` (allowance beyond
    the bank), ``predicted_``/``measured_`` (the joules predicted for and measured on the
    answers whose prediction was known), ``start_`` (the clock at the first decision),
    ``windows_`` (joules per window index), ``debt_`` (overspend carried from past windows),
    ``last_window_``, ``carried_`` (the debt carried into each window kept), ``history_``,
    ``trailing_`` (the joules of the guard's last answers; each replica keeps its own),
    ``errors_`` (the last ``memory`` answers' predicted and measured joules) and
    ``own_predicted_`` (how many such answers; each replica's own),
    ``in_flight_`` (the guard's answers routed and not yet measured) and ``recent_`` (the
    remembered decisions the price is re-solved on; saved, and each replica keeps its own).
    """

    def __init__(
        self,
        budget: EnergyBudget,
        *,
        price_on: str = DEFAULT_PRICE_ON,
        horizon: int = 50,
        memory: int = 300,
        resolve_every: int = 10,
        bank: float = 25.0,
        initial_tradeoff: float = DEFAULT_TRADEOFF,
        clock: Callable[[], float] = time.time,
        window_queries: int | None = None,
        guard_horizon: int | None = None,
    ) -> None:
        if not isinstance(budget, EnergyBudget):
            raise InvalidInputError(f"budget must be an EnergyBudget, got {budget!r}")
        check_price_on(price_on)
        self.budget = budget
        self.price_on = price_on
        self.horizon = _positive_int("horizon", horizon)
        self.memory = _positive_int("memory", memory, most=10**6)  # (three arrays of this many rows)
        self.resolve_every = _positive_int("resolve_every", resolve_every)
        self.bank = check_number("bank", bank, low=0.0)
        self.initial_tradeoff = check_tradeoff(initial_tradeoff)
        self.clock = clock
        self.window_queries = None if window_queries is None else _positive_int("window_queries", window_queries)
        self.guard_horizon = guard_horizon
        if guard_horizon is not None:
            _positive_int("guard_horizon", guard_horizon)
            if window_queries is None:
                raise InvalidInputError("guard_horizon sets the guard of window_queries; give window_queries too")
        if self.window_queries is not None:
            if budget.window_s is not None:
                raise InvalidInputError(
                    "window_queries guards a budget per query; a budget per window of time is held per window already"
                )
            if self.window_queries < 2 or self.window_queries <= self._horizon_of_guard():
                raise InvalidInputError(
                    f"window_queries ({self.window_queries}) must be at least 2 and more than the guard's "
                    f"horizon ({self._horizon_of_guard()} answers)"
                )
        lam = min(max(self.initial_tradeoff, _MIN_MU / (1 + _MIN_MU)), _MAX_MU / (1 + _MAX_MU))
        self._initial_mu = lam / (1.0 - lam)
        self.price_: float | None = None  # λ/(1-λ); None until the first re-solve
        self.spent_ = 0.0
        self.answers_ = 0
        self.forfeited_ = 0.0
        self.predicted_ = 0.0
        self.measured_ = 0.0
        self.start_: float | None = None
        self.windows_: dict[int, float] = {}
        self.window_answers_: dict[int, int] = {}
        self.debt_ = 0.0
        self.last_window_: int | None = None
        self.carried_: dict[int, float] = {}
        """The debt carried into each window kept (each replica's own), carried again after a merge."""
        self.history_: list[tuple[int, float]] = []
        self.recent_ = _RecentDecisions(self.memory)
        self.trailing_: deque[float] = deque(maxlen=self._trailing_length())
        self.errors_: deque[tuple[float, float]] = deque(maxlen=self.memory)
        """The last ``memory`` answers' predicted and measured joules (each replica's own)."""
        self.own_predicted_ = 0
        """How many answers with a known prediction this pacer (not its replicas) has counted."""
        self.in_flight_: dict[str, float] = {}
        """The guard's answers under way: decision id → predicted joules (not saved)."""
        self.charged_ = 0.0
        """With the guard, joules charged without an answer since the last answer (it counts them)."""
        self.saturated_ = False
        self.latest_: float | None = None
        """The latest clock reading: the pacer's time never goes back (a wall clock may)."""
        self._warned = False
        self._since_resolve = 0
        self._saturated_for = 0

    SETTINGS = ("horizon", "memory", "resolve_every", "bank", "initial_tradeoff", "window_queries", "guard_horizon")
    """The parameters a router saves with its budget (all but the budget, its units and the clock)."""

    def params(self) -> dict[str, Any]:
        """The parameters, as given to ``__init__`` (``BudgetPacer(**pacer.params())`` is a fresh copy)."""
        return {
            "budget": self.budget,
            "price_on": self.price_on,
            "horizon": self.horizon,
            "memory": self.memory,
            "resolve_every": self.resolve_every,
            "bank": self.bank,
            "initial_tradeoff": self.initial_tradeoff,
            "clock": self.clock,
            "window_queries": self.window_queries,
            "guard_horizon": self.guard_horizon,
        }

    # ---- what the budget allows -----------------------------------------------------------
    def _now(self) -> float:
        now = self._read_clock()
        self.latest_ = now
        if self.start_ is None:
            self.start_ = now
        return now

    def _read_clock(self) -> float:
        """The clock, never earlier than a reading before it (a wall clock stepped back by
        NTP must not reopen a closed window) nor than the first decision.

        So a wall clock stepped back holds the pacer's time still until it catches up: a step
        of an hour holds a window's allowance still for an hour. Adding the step to later
        readings instead was tried and not kept: replicas that share windows then disagree
        for good on the current one (each sees the step it saw, which is less for a replica
        that was idle across it, and a replica started after it sees none), where the wall
        clock, however stepped, is one time for all of them."""
        now = float(self.clock())
        for floor in (self.latest_, self.start_):
            if floor is not None and now < floor:
                now = floor
        return now

    def _elapsed(self, now: float) -> float:
        """Seconds from the first decision to ``now`` (0 before any)."""
        return now - (self.start_ if self.start_ is not None else now)

    def per_query_joules(self, now: float | None = None) -> float:
        """The per-query budget in force: the budget itself, or a window budget divided by the
        answers of the last window's length (the current window's so far, and the share of the
        previous window's that falls in that span; the current window's rate extrapolated
        when there is no previous one, and 100 answers per window before any)."""
        window = self.budget.window_s
        if window is None:
            return self.budget.joules
        now = self._now() if now is None else now
        index = self._window(now)
        elapsed = max(0.0, min(1.0, (self._elapsed(now) - index * window) / window))
        current = self.window_answers_.get(index, 0)
        previous = self.window_answers_.get(index - 1)
        if previous is not None:
            recent = current + previous * (1.0 - elapsed)
        elif current:
            recent = current / max(elapsed, _SHORTEST_SPAN)
        else:
            recent = float(_ASSUMED_PER_WINDOW)
        return self.budget.joules / max(1.0, recent)

    def allowance(self, now: float | None = None) -> float:
        """Joules allowed so far, less what was forfeited beyond the bank."""
        rate = self.budget.joules_per_second
        if rate is None:
            earned = self.budget.joules * self.answers_
        else:
            earned = rate * max(0.0, self._elapsed(self._now() if now is None else now))
        return earned - self.forfeited_

    def _overspent(self, now: float) -> bool:
        """Whether the spend is beyond the allowance: the whole run's for a budget per query; the
        current window's and the debt carried into it for a window budget, against the window's
        allowance so far (the time before it is no credit)."""
        window, rate = self.budget.window_s, self.budget.joules_per_second
        if window is None or rate is None:
            return self.spent_ > self.allowance(now)
        index = self._window(now)
        into = self._elapsed(now) - index * window
        return self.windows_.get(index, 0.0) + self._debt_at(index) > rate * into

    def _window(self, now: float) -> int:
        assert self.budget.window_s is not None
        return int(self._elapsed(now) // self.budget.window_s)

    def _mu(self) -> float:
        return self._initial_mu if self.price_ is None else self.price_

    def peek(self) -> tuple[float, float]:
        """The λ in force and the per-query budget, without starting the clock (a warm start
        before the first decision must not open the first window)."""
        mu = self._mu()
        if self.budget.window_s is None:
            per_query = self.budget.joules
        elif self.start_ is None:
            per_query = self.budget.joules / _ASSUMED_PER_WINDOW
        else:
            per_query = self.per_query_joules(self._read_clock())
        return mu / (1.0 + mu), per_query

    def status(self, *, starting: bool = True) -> BudgetStatus:
        """The budget's state now (what the routing record shows). ``starting=False`` looks
        without starting the clock: a window budget's first window opens at the first
        decision, not when its status was first read."""
        now = self._now() if starting else self._read_clock()
        per_query = self.per_query_joules(now)
        mu = self._mu()
        allowance = self.allowance(now)
        remaining = None
        if self.budget.window_s is not None:
            index = self._window(now)
            remaining = self.budget.joules - self.windows_.get(index, 0.0) - self._debt_at(index)
        return BudgetStatus(
            budget=self.budget.describe(),
            tradeoff=mu / (1.0 + mu),
            per_query_joules=per_query,
            spent_joules=self.spent_,
            answers=self.answers_,
            allowance_joules=allowance,
            window_remaining_joules=remaining,
            met=not (self.saturated_ and self._overspent(now)),
            history=tuple(self.history_[-5:]),
            answer_cap_joules=self.answer_cap(),
        )

    # ---- learning ------------------------------------------------------------------------
    def remember(self, values: np.ndarray, costs: np.ndarray, predicted: np.ndarray) -> Callable[[], None] | None:
        """Keep a decision: each eligible model's value (accuracy estimate with its bonus), cost
        (what λ weighs) and predicted joules (NaN: unknown). Returns what forgets it again
        while it is the last one kept (a decision withdrawn before it was recorded), or
        ``None`` when nothing was kept."""
        if not values.size or np.all(np.isnan(predicted)):
            return None
        memory = self.recent_
        overwritten = memory.add(
            np.asarray(values, dtype=np.float64),
            np.asarray(costs, dtype=np.float64),
            np.asarray(predicted, dtype=np.float64),
        )

        kept = True

        def forget() -> None:
            nonlocal kept
            if kept and self.recent_ is memory:  # once, and not in a memory loaded since
                kept = not memory.take_back(overwritten)

        return forget

    def observe(self, joules: float, *, predicted: float | None = None) -> None:
        """Count an answer's measured joules (and the joules predicted for it, when known)."""
        joules = check_number("joules", joules, low=0.0)
        now = self._now()
        index = self._spend(now, joules)
        self.answers_ += 1
        if index is not None:
            self.window_answers_[index] = self.window_answers_.get(index, 0) + 1
        if self.window_queries is not None:  # with what failed or was left unread since the last answer
            self.trailing_.append(float(joules) + self.charged_)
            self.charged_ = 0.0
        if predicted is not None and math.isfinite(predicted) and predicted > 0:
            self.predicted_ += predicted
            self.measured_ += joules
            self.errors_.append((float(predicted), float(joules)))
            self.own_predicted_ += 1
        per_query = self.per_query_joules(now)
        unspent = self.allowance(now) - self.spent_
        if self.budget.window_s is None and unspent > self.bank * per_query:
            self.forfeited_ += unspent - self.bank * per_query
        self._since_resolve += 1
        if self.price_ is None or self._since_resolve >= self.resolve_every:  # (set after a merge)
            self._resolve(now, per_query)
        if self.answers_ % 25 == 0:
            mu = self._mu()
            self.history_.append((self.answers_, round(mu / (1.0 + mu), 4)))
            if len(self.history_) > _HISTORY:
                self.history_ = self.history_[::2]

    def charge(self, joules: float) -> None:
        """Count joules spent without an answer (a failed attempt before another model
        answered, a stream closed early): the spend and the window grow, the count of answers
        does not; with the guard, the next answer's run counts them too."""
        joules = check_number("joules", joules, low=0.0)
        self._spend(self._now(), joules)
        if self.window_queries is not None:
            self.charged_ += joules

    def _spend(self, now: float, joules: float) -> int | None:
        """Add ``joules`` to the spend, and to the current window's for a budget per window of
        time (whose index is returned; ``None`` for a budget per query)."""
        self.spent_ += joules
        if self.budget.window_s is None:
            return None
        index = self._window(now)
        self._close_windows(index)
        self.windows_[index] = self.windows_.get(index, 0.0) + joules
        self._prune_windows(index)
        return index

    def _bias(self) -> float:
        """Predicted over measured joules (exploration and prediction errors), 1 until known."""
        if self.predicted_ > 0 and self.measured_ > 0:
            return self.predicted_ / self.measured_
        return 1.0

    def _lasting_bias(self) -> float:
        """Predicted over measured joules of the last ``memory`` answers, once this pacer has
        counted ``2 × memory`` answers with a prediction (1 before): a prediction error that
        lasts, not the cost models' young errors, which the bias of the whole run still
        carries for hundreds of answers."""
        if self.own_predicted_ < 2 * self.memory:  # this replica's own: the shared count may be far ahead
            return 1.0
        predicted = sum(p for p, _ in self.errors_)
        measured = sum(m for _, m in self.errors_)
        return predicted / measured if predicted > 0 and measured > 0 else 1.0

    def _prune_windows(self, index: int) -> None:
        """Keep the windows from ``index - 2`` on (the current one, and two before it)."""
        for old in [k for k in self.windows_ if k < index - 2]:
            del self.windows_[old]
        for old in [k for k in self.window_answers_ if k < index - 2]:
            del self.window_answers_[old]
        for old in [k for k in self.carried_ if k < index - 2]:
            del self.carried_[old]

    def _close_windows(self, index: int) -> None:
        """Carry the overspend of the windows before ``index`` into it (never an underspend),
        noting the debt carried into each window kept."""
        if self.last_window_ is not None:  # (a replica that joins, or a state saved before they were noted)
            self.carried_.setdefault(self.last_window_, self.debt_)
        if self.last_window_ is None or index > self.last_window_:
            first = index if self.last_window_ is None else max(self.last_window_ + 1, index - 2)
            self.carried_.update({k: self._debt_at(k) for k in range(first, index + 1)})
        self.debt_ = self._debt_at(index)
        self.last_window_ = index if self.last_window_ is None else max(self.last_window_, index)

    def _debt_at(self, index: int) -> float:
        """The overspend carried into window ``index`` once the windows before it are closed."""
        last, debt = self.last_window_, self.debt_
        if last is not None and index > last:
            for closed in range(last, min(index, last + 3)):
                debt = max(0.0, debt + self.windows_.get(closed, 0.0) - self.budget.joules)
            if index > last + 3:  # the windows between held nothing: each repays one budget of the debt
                debt = max(0.0, debt - self.budget.joules * (index - last - 3))
        return debt

    def _deficit(self, now: float, per_query: float) -> tuple[float, float]:
        """The joules spent beyond the allowance, and the answers to repay them over.

        A per-query budget counts from the start (unspent allowance banked up to ``bank``
        budgets); a window budget counts within the current window, whose allowance accrues
        with time and is not carried over (an overspend is, as ``debt_``), and repays within the
        answers left in it."""
        window = self.budget.window_s
        if window is None:
            return self.spent_ - self.allowance(now), float(self.horizon)
        index = self._window(now)
        into = self._elapsed(now) - index * window  # seconds into the current window
        assert self.budget.joules_per_second is not None
        accrued = self.budget.joules_per_second * into
        left = (window - into) * self.budget.joules_per_second / per_query
        deficit = self.windows_.get(index, 0.0) + self.debt_ - accrued
        return deficit, max(1.0, min(float(self.horizon), left))

    def _horizon_of_guard(self) -> int:
        """The answers over which the guard makes room: ``guard_horizon``, by default a fifth of
        ``window_queries`` (100 of 500, the setting measured in BENCHMARKS.md)."""
        if self.guard_horizon is not None:
            return self.guard_horizon
        return max(1, (self.window_queries or 0) // 5)

    def _trailing_length(self) -> int:
        """How many of the last answers' joules the guard keeps (0: no guard): a run of
        ``window_queries`` answers but one, so that the next answer closes a whole run."""
        return 0 if self.window_queries is None else self.window_queries - 1

    def answer_cap(self) -> float | None:
        """With the guard, the most joules the next answer may be predicted to cost so that the
        run of ``window_queries`` answers it closes stays within its budgets (in predicted
        joules, so scaled by their bias like the target); ``None`` without the guard or before
        that many answers. The router then answers with the best model under the cap, or the
        cheapest. Only the last answer's own prediction error can take a run over.

        >>> from greenserv_core.budget.spec import EnergyBudget
        >>> pacer = BudgetPacer(EnergyBudget.per_query(10.0), window_queries=4, guard_horizon=1)
        >>> for joules in (12.0, 9.0, 15.0):
        ...     pacer.observe(joules)
        >>> pacer.answer_cap()  # 4 answers × 10 J, less the 36 J of the last three
        4.0
        >>> pacer.reserve("under-way", 3.0)  # an answer routed, not yet measured, predicted at 3 J
        >>> pacer.answer_cap()  # 4 × 10 J, less the last two answers' 24 J and the 3 J under way
        13.0

        Answers under way (see :meth:`reserve`) belong to the run too: they take the place of
        the oldest of the last answers, at their predicted joules. So do the joules charged
        since the last answer (:meth:`charge`), which the next answer's run counts.
        """
        if self.window_queries is None:
            return None
        under_way = list(self.in_flight_.values())[-(self.window_queries - 1) :]
        behind = self.window_queries - 1 - len(under_way)
        if len(self.trailing_) < behind:
            return None
        measured = sum(itertools.islice(reversed(self.trailing_), behind)) + self.charged_
        return max(0.0, (self.window_queries * self.budget.joules - measured) * self._bias() - sum(under_way))

    def reserve(self, decision_id: str, joules: float) -> None:
        """With the guard, count an answer routed and not yet measured, at its predicted
        ``joules``, in the cap of the answers routed meanwhile (:meth:`settle` ends it; a
        decision routed again replaces its own)."""
        if self.window_queries is None:
            return
        self.in_flight_.pop(decision_id, None)
        self.in_flight_[decision_id] = check_number("joules", joules, low=0.0)

    def settle(self, decision_id: str) -> None:
        """An answer under way (:meth:`reserve`) was measured, failed or dropped."""
        self.in_flight_.pop(decision_id, None)

    def _target(self, now: float, per_query: float) -> float:
        """The mean predicted joules per query to aim at now."""
        deficit, horizon = self._deficit(now, per_query)
        # the swing bounds the bias-corrected target too (applying the whole bias after the
        # bound cost 0.020 of accuracy at a quarter of the best model's joules on the simulated
        # table, where the young cost models' errors last hundreds of answers); a prediction
        # error that lasts moves the bound itself, so a budget holds under predictions off by
        # 2x (BENCHMARKS.md, issue 17)
        target = (per_query - deficit / horizon) * self._bias()
        lasting = self._lasting_bias()
        low, high = min(1 - _SWING, lasting) * per_query, max(1 + _SWING, lasting) * per_query
        target = min(high, max(low, target))
        if self.window_queries is not None:
            # the run of answers that ends guard_horizon answers from now stays within its budgets
            behind = self.window_queries - self._horizon_of_guard()
            if len(self.trailing_) >= behind:
                recent = sum(itertools.islice(reversed(self.trailing_), behind)) + self.charged_
                room = (self.window_queries * per_query - recent) / self._horizon_of_guard()
                target = min(target, max(0.0, room * self._bias()))
        return target

    def _resolve(self, now: float, per_query: float) -> None:
        self._since_resolve = 0
        if not len(self.recent_):
            return
        values, costs, predicted = self.recent_.arrays()
        unknown = np.isnan(predicted)
        known = (~unknown).sum(axis=1)
        row_mean = np.where(unknown, 0.0, predicted).sum(axis=1) / np.maximum(known, 1)
        spend = np.where(unknown, row_mean[:, None], predicted)  # an unmeasured model: its row's mean
        complete = ~(unknown & (values > -np.inf)).any(axis=1)
        rows = np.arange(len(values))

        def spent_at(log_price: float, among: np.ndarray = rows) -> float:
            choice = np.argmax(values[among] - math.exp(log_price) * costs[among], axis=1)
            return float(spend[among, choice].mean())

        target = self._target(now, per_query)
        low, high = math.log(_MIN_MU), math.log(_MAX_MU)
        measured = rows[complete]  # decisions whose every model had been measured
        # the budget itself cannot be met (not merely the repayment of a deficit); a bias below
        # 1 (answers dearer than predicted, such as one runaway answer) does not count here
        self.saturated_ = bool(len(measured)) and spent_at(high, measured) > per_query * max(1.0, self._bias())
        if spent_at(low) <= target:
            price = low
        elif spent_at(high) > target:
            price = high
        else:
            for _ in range(30):
                middle = 0.5 * (low + high)
                if spent_at(middle) > target:
                    low = middle
                else:
                    high = middle
            price = high
        deficit, horizon = self._deficit(now, per_query)
        price += min(_NUDGE, max(-_NUDGE, deficit / (per_query * horizon)))
        self.price_ = math.exp(min(math.log(_MAX_MU), max(math.log(_MIN_MU), price)))
        if self.answers_ < self.horizon:  # too early to tell: the cost models are still young
            self.saturated_ = False
        self._saturated_for = self._saturated_for + 1 if self.saturated_ else 0
        if self._saturated_for < _SATURATED_RESOLVES:  # a passing spell of dear queries is not a verdict
            self.saturated_ = False
        if self.saturated_ and self._overspent(now) and not self._warned:
            self._warned = True
            logger.warning(
                "the energy budget %s cannot be met: even the cheapest eligible models spend more; "
                "routing to the cheapest eligible model",
                self.budget.describe(),
            )

    # ---- sharing and saving --------------------------------------------------------------
    def statistics(self) -> Statistics:
        """What replicas share: spend and answers as sums (also per window), and the start as
        a minimum. The price, the forfeits beyond the bank and the carried debt stay each
        replica's own: each re-solves its price from the shared spend, and each bounds its own
        view of the credit (shared as sums they would be counted once per replica). Windows
        count from the shared start: a replica that answers before it has read the shared start
        books those answers in windows counted from its own start, so sync first
        (``SharedLearning.start`` does). Replicas started together on an empty store each read
        no start at that first sync: until their next sync their answers count from their own
        first answer, and those near a window's end may be booked in an earlier window (at most
        the spend of the first sync interval; a review found it with 60 s windows and 90 s
        between syncs). Replicas keep the current window and the two before it, but a store of
        summed statistics keeps every window's key: one key more per window (about 70 bytes; a
        sync read 500 windows in 9 ms and 2,000 in 27 ms in a review), so prefer windows of
        minutes or hours to windows of seconds when sharing for long."""
        sums = {
            "spent": np.array([self.spent_]),
            "answers": np.array([float(self.answers_)]),
            "predicted": np.array([self.predicted_]),
            "measured": np.array([self.measured_]),
        }
        sums.update(
            {f"window/{k}": np.array([v, float(self.window_answers_.get(k, 0))]) for k, v in self.windows_.items()}
        )
        window = np.array([self.budget.window_s or 0.0])  # (0: per query) refused if replicas differ
        minima = {_WINDOW: window} if self.start_ is None else {"start": np.array([self.start_]), _WINDOW: window}
        return Statistics(sums=sums, minima=minima, maxima={_WINDOW: window.copy()})

    def load_statistics(self, stats: Statistics) -> None:
        """Take the merged spend; the price is solved again at the next answer."""
        sums = stats.sums
        if "spent" not in sums:
            return
        self.spent_ = float(sums["spent"][0])
        self.answers_ = round(float(sums["answers"][0]))
        self.predicted_ = float(sums["predicted"][0])
        self.measured_ = float(sums["measured"][0])
        if "start" in stats.minima:
            self.start_ = float(stats.minima["start"][0])
        windows = {int(k.partition("/")[2]): v for k, v in sums.items() if k.startswith("window/")}
        self.windows_ = {k: float(v[0]) for k, v in windows.items()}
        # a window with spend but no answer (only failed attempts, streams closed early) counts
        # as one without answers, as on a pacer of its own (where it has no count at all)
        self.window_answers_ = {k: n for k, v in windows.items() if len(v) > 1 and (n := round(float(v[1])))}
        if self.budget.window_s is not None and self.windows_:
            index = self._window(self._now())
            if self.last_window_ is None:  # a replica that joins: the recent windows' overspend is its debt too
                self.last_window_ = max(min(self.windows_), index - 3)  # (the store keeps every window)
            self._close_windows(index)  # before the windows it carries from are pruned
            # another replica's spend may reach a window this one closed on its own share: carry
            # again from the debt carried into the oldest window kept (its spend is not in it)
            oldest = min(k for k in self.carried_ if k >= index - 2)
            if oldest < index == self.last_window_:
                self.last_window_, self.debt_ = oldest, self.carried_[oldest]
                self._close_windows(index)
            self._prune_windows(index)  # old windows other replicas still send
        self._since_resolve = self.resolve_every

    def state_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget.to_dict(),
            "price_on": self.price_on,
            "price": self.price_,
            "spent": self.spent_,
            "answers": self.answers_,
            "forfeited": self.forfeited_,
            "predicted": self.predicted_,
            "measured": self.measured_,
            "start": self.start_,
            "windows": {str(k): v for k, v in self.windows_.items()},
            "window_answers": {str(k): v for k, v in self.window_answers_.items()},
            "debt": self.debt_,
            "last_window": self.last_window_,
            "carried": {str(k): v for k, v in self.carried_.items()},
            "history": [list(p) for p in self.history_],
            "saturated": self.saturated_,
            "latest": self.latest_,
            "trailing": list(self.trailing_),
            "errors": [list(pair) for pair in self.errors_],
            "own_predicted": self.own_predicted_,
            "charged": self.charged_,
            "recent": self.recent_.state_dict(),
            "since_resolve": self._since_resolve,
            "saturated_for": self._saturated_for,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a state saved under another budget is refused."""
        saved = EnergyBudget.from_dict(state["budget"])
        if saved != self.budget:
            raise InvalidInputError(
                f"the state was saved under the budget {saved.describe()}, not {self.budget.describe()}"
            )
        same_units = state.get("price_on", "energy_scale") == self.price_on
        self.price_ = None if state["price"] is None or not same_units else float(state["price"])
        self.spent_, self.answers_ = float(state["spent"]), int(state["answers"])
        self.forfeited_ = float(state["forfeited"])
        self.predicted_, self.measured_ = float(state["predicted"]), float(state["measured"])
        self.start_ = None if state["start"] is None else float(state["start"])
        self.windows_ = {int(k): float(v) for k, v in state["windows"].items()}
        self.window_answers_ = {int(k): int(v) for k, v in state.get("window_answers", {}).items()}
        self.debt_ = float(state.get("debt", 0.0))
        self.last_window_ = None if state.get("last_window") is None else int(state["last_window"])
        self.carried_ = {int(k): float(v) for k, v in state.get("carried", {}).items()}
        self.history_ = [(int(a), float(b)) for a, b in state["history"]]
        self.saturated_ = bool(state.get("saturated", False))
        self.latest_ = None if state.get("latest") is None else float(state["latest"])
        self.trailing_ = deque((float(j) for j in state.get("trailing", [])), maxlen=self._trailing_length())
        self.charged_ = float(state.get("charged", 0.0))  # absent from states saved before 2026-12-05
        self.errors_ = deque(((float(p), float(m)) for p, m in state.get("errors", [])), maxlen=self.memory)
        self.own_predicted_ = int(state.get("own_predicted", 0))
        self.recent_ = _RecentDecisions(self.memory)
        # saved before the decisions were, or their costs in the other units: re-solved on the new ones
        if state.get("recent") is not None and same_units:
            self.recent_.load_state_dict(state["recent"])
        self._since_resolve = int(state.get("since_resolve", 0))
        self._saturated_for = int(state.get("saturated_for", 0))
        # (``_warned`` is this object's: said once in each process's log, and kept by a rollback)


def as_energy_budget(budget: object) -> EnergyBudget | BudgetPacer | None:
    """``energy_budget=`` as the router and the replay take it: ``None``, an
    :class:`EnergyBudget` or :class:`BudgetPacer`, a real number (joules per query; numpy's
    and Fractions too) or text such as ``"50J/query"`` or ``"2Wh/h"``.

    >>> as_energy_budget("2Wh/h"), as_energy_budget(30)
    (EnergyBudget(joules=7200.0, window_s=3600.0), EnergyBudget(joules=30.0, window_s=None))
    """
    import numbers

    if budget is None or isinstance(budget, (EnergyBudget, BudgetPacer)):
        return budget
    if isinstance(budget, str):
        return EnergyBudget.parse(budget)
    if isinstance(budget, numbers.Real) and not isinstance(budget, bool):
        joules: Any = budget  # checked and made a float by the budget
        return EnergyBudget.per_query(joules)
    raise InvalidInputError(
        "energy_budget must be joules per query, text such as '50J/query' or '2Wh/h', "
        f"or an EnergyBudget; got {budget!r}"
    )
