"""A small circuit breaker: after repeated failures a model is skipped for a cooldown.

Closed (normal) → ``failure_threshold`` consecutive failures → open (unavailable) for
``cooldown_s`` → half-open: one trial request is let through (:meth:`CircuitBreaker.claim`),
and the model is unavailable to the others until it ends; success closes the circuit,
failure opens it again for another cooldown. A trial that ends neither way (the request
was at fault) frees the model after a cooldown.

>>> now = [0.0]
>>> breaker = CircuitBreaker(failure_threshold=2, cooldown_s=10.0, clock=lambda: now[0])
>>> breaker.failure(); breaker.available
True
>>> breaker.failure(); breaker.available
False
>>> now[0] = 10.5; breaker.available
True
>>> breaker.claim(), breaker.available, breaker.claim()  # the trial, then nobody else
(True, False, False)
>>> breaker.success(); breaker.available
True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from greenserv_core.errors import InvalidInputError

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Counts consecutive failures; thread-safe. ``opened_until_`` is the monotonic time the
    current cooldown ends (0 when closed); ``failures_`` the consecutive failures so far;
    ``trial_until_`` when a half-open circuit's trial request stops holding it (0: none)."""

    def __init__(
        self, *, failure_threshold: int = 3, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise InvalidInputError(f"failure_threshold must be a positive integer, got {failure_threshold!r}")
        if not cooldown_s >= 0:
            raise InvalidInputError(f"cooldown_s must be >= 0, got {cooldown_s!r}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = float(cooldown_s)
        self.clock = clock
        self.failures_ = 0
        self.opened_until_ = 0.0
        self.trial_until_ = 0.0
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """False while cooling down, and while a half-open circuit's trial request runs."""
        with self._lock:
            now = self.clock()
            return now >= self.opened_until_ and now >= self.trial_until_

    def claim(self) -> bool:
        """Whether a request may go now: closed, yes; half-open, only the first to ask, whose
        request is the trial (until :meth:`success` or :meth:`failure`, or a cooldown)."""
        with self._lock:
            now = self.clock()
            if now < self.opened_until_ or now < self.trial_until_:
                return False
            if self.opened_until_ > 0:  # half-open
                self.trial_until_ = now + max(self.cooldown_s, 1e-9)
            return True

    def seconds_left(self) -> float:
        with self._lock:
            return max(0.0, max(self.opened_until_, self.trial_until_) - self.clock())

    def success(self) -> None:
        with self._lock:
            self.failures_ = 0
            self.opened_until_ = 0.0
            self.trial_until_ = 0.0

    def failure(self) -> None:
        with self._lock:
            self.failures_ += 1
            self.trial_until_ = 0.0
            if self.failures_ >= self.failure_threshold:
                self.opened_until_ = self.clock() + self.cooldown_s
                self.failures_ = self.failure_threshold - 1  # half-open: one more failure re-opens
