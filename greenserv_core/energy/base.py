"""The one energy-meter interface, :class:`EnergyMeter`: ``with meter.measure() as window: ...``
then ``window.joules``; and :class:`EnergyReading`, the joules a generation reports."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from greenserv_core.errors import InvalidInputError, WindowNotMeasuredError

__all__ = ["CounterDidNotMoveError", "EnergyMeter", "EnergyReading", "EnergyWindow", "TimedMeter", "combined_energy"]

logger = logging.getLogger("greenserv.energy")


class CounterDidNotMoveError(WindowNotMeasuredError):
    """A counter that stood still through the window (not refreshed within it): no reading,
    but no sign of joules lost either, unlike a counter that went back (a reset), whose
    window's joules are unknown."""


@dataclass(frozen=True)
class EnergyReading:
    """Joules spent by one generation and where the number comes from.

    ``measured`` is False for estimates (CPU time × wattage, priors): an estimate is never
    reported as a measurement.

    >>> EnergyReading(12.5, source="nvml-counter", measured=True).joules
    12.5
    """

    joules: float
    source: str
    measured: bool

    def __post_init__(self) -> None:
        if not math.isfinite(self.joules) or self.joules < 0:
            raise InvalidInputError(f"energy must be a finite, non-negative number of joules, got {self.joules!r}")


def combined_energy(readings: Sequence[EnergyReading]) -> EnergyReading:
    """The joules of several calls as one reading: summed, their sources joined with ``+``
    where they differ (a source that is already a join is not named twice), and measured only
    if every one was (an estimate stays labelled).

    >>> combined_energy([EnergyReading(2.0, "nvml", True), EnergyReading(1.0, "cpu-time-estimate", False)])
    EnergyReading(joules=3.0, source='nvml+cpu-time-estimate', measured=False)
    >>> combined_energy([EnergyReading(1.0, "nvml", True), EnergyReading(3.0, "nvml+cpu-time-estimate", False)]).source
    'nvml+cpu-time-estimate'
    """
    if not readings:
        raise InvalidInputError("combined_energy needs at least one reading")
    sources = dict.fromkeys(part for reading in readings for part in reading.source.split("+"))
    return EnergyReading(
        math.fsum(reading.joules for reading in readings),
        "+".join(sources),
        all(reading.measured for reading in readings),
    )


@dataclass
class EnergyWindow:
    """Filled in when the ``measure()`` block exits.

    ``measured`` is True only for hardware counters or sampled power readings; estimates
    carry ``measured=False`` and a source name that says so.
    """

    joules: float = 0.0
    duration_s: float = 0.0
    source: str = ""
    measured: bool = False

    def reading(self) -> EnergyReading:
        return EnergyReading(self.joules, source=self.source, measured=self.measured)


@runtime_checkable
class EnergyMeter(Protocol):
    """Measures the energy of the code inside ``measure()``; a window that cannot be read
    raises when it closes. Register a meter with
    :func:`~greenserv_core.energy.registry.register_meter` to make it a choice by name and
    for :func:`~greenserv_core.energy.registry.auto_meter`."""

    @property
    def source(self) -> str:
        """Name of the method, e.g. ``nvml-counter``, ``rapl``, ``cpu-time-estimate``."""
        ...

    @property
    def measured(self) -> bool:
        """True for hardware counters and sampled power; False for estimates."""
        ...

    def measure(self) -> AbstractContextManager[EnergyWindow]:
        """A context manager whose window is filled in when the block exits."""
        ...


class TimedMeter:
    """Base for meters that read a start value and an end value around the block.

    Subclasses implement ``_start() -> object`` and ``_stop(token) -> float`` (joules) and set
    ``source`` and ``measured``; one that must wait for work still queued when the block exits
    (a GPU's kernels) does so in ``_before_stop()``, which the window's duration includes.

    If the block raises, its error is what the caller sees: a window that then has no reading
    logs why, and is labelled not measured.
    """

    source = ""
    measured = True

    def _start(self) -> object:
        raise NotImplementedError

    def _before_stop(self) -> None:
        """Wait for work the block queued and has not finished (nothing, unless overridden)."""

    def _stop(self, token: object, duration_s: float) -> float:
        raise NotImplementedError

    @contextmanager
    def measure(self) -> Iterator[EnergyWindow]:
        window = EnergyWindow(source=self.source, measured=self.measured)
        token = self._start()
        started = time.perf_counter()
        try:
            yield window
        except BaseException:
            try:
                self._close(window, token, started)
            except Exception as error:  # the block's own error is the one to raise
                window.measured = False
                logger.warning("energy: %s had no reading for a window whose code raised (%s)", self.source, error)
            raise
        self._close(window, token, started)

    def _close(self, window: EnergyWindow, token: object, started: float) -> None:
        try:
            self._before_stop()
        finally:  # (a meter's _stop always runs: it may have a sampler to stop)
            window.duration_s = time.perf_counter() - started
            self._fill(window, token)

    def _fill(self, window: EnergyWindow, token: object) -> None:
        """Put the window's joules in, from :meth:`_stop` (a meter that labels some windows
        otherwise, as a partial reading, overrides this)."""
        joules = float(self._stop(token, window.duration_s))
        if not math.isfinite(joules) or joules < -1e-9:  # (a rounding error below 0 is 0)
            raise WindowNotMeasuredError(f"{self.source} read {joules!r} J for the window: not a reading")
        window.joules = max(0.0, joules)
