"""Time split among windows that are open at once, so that their charges add up to the time
that passed and no second is charged twice (a standby window aside: see :class:`OverlapShares`)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

__all__ = ["OverlapShares"]


class OverlapShares:
    """Splits wall time among requests in flight at once: while ``n`` run, each is charged
    ``1/n`` of every second, so the charges add up to the time the server was busy.

    >>> now = [0.0]
    >>> shares = OverlapShares(clock=lambda: now[0])
    >>> a = shares.enter(); now[0] = 1.0; b = shares.enter(); now[0] = 2.0
    >>> shares.leave(a)  # alone for 1 s, then half of 1 s
    1.5
    >>> now[0] = 4.0; shares.leave(b)
    2.5

    A ``standby`` request takes no share from the others (they are split as if it were not
    there), and is charged its own share as if it were: ``1/(n + m)`` of every second while
    ``n`` others and ``m`` standby requests run. Its charge is used only where it stands in for
    a reading that failed (a GPU counter reset), so such a window is never free, and the charges
    then exceed the time by at most the standby's share.

    >>> s = shares.enter(standby=True); a = shares.enter(); now[0] = 5.0; shares.leave(a)
    1.0
    >>> now[0] = 7.0; shares.leave(s)  # half of 1 s beside a, then 2 s alone
    2.5
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._charged: dict[int, float] = {}
        self._standby: dict[int, float] = {}
        self._last = clock()
        self._tickets = itertools.count()

    def _advance(self) -> None:
        now = self.clock()
        elapsed = now - self._last
        if self._charged:
            share = elapsed / len(self._charged)
            for ticket in self._charged:
                self._charged[ticket] += share
        if self._standby:
            share = elapsed / (len(self._charged) + len(self._standby))
            for ticket in self._standby:
                self._standby[ticket] += share
        self._last = now

    def enter(self, *, standby: bool = False) -> int:
        """A request starts; returns its ticket."""
        with self._lock:
            self._advance()
            ticket = next(self._tickets)
            (self._standby if standby else self._charged)[ticket] = 0.0
            return ticket

    def leave(self, ticket: int) -> float:
        """The request ends (or fails); returns the seconds charged to it."""
        with self._lock:
            self._advance()
            if ticket in self._charged:
                return self._charged.pop(ticket)
            return self._standby.pop(ticket, 0.0)
