"""The energy-meter interface: ``with meter.measure() as window: ...`` then ``window.joules``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from greenserv_core.backends.base import EnergyReading

__all__ = ["EnergyMeter", "EnergyWindow", "TimedMeter"]


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
    """Measures the energy of the code inside ``measure()``."""

    @property
    def source(self) -> str:
        """Name of the method, e.g. ``nvml-counter``, ``rapl``, ``cpu-time-estimate``."""
        ...

    def measure(self) -> AbstractContextManager[EnergyWindow]:
        """A context manager whose window is filled in when the block exits."""
        ...


class TimedMeter:
    """Base for meters that read a start value and an end value around the block.

    Subclasses implement ``_start() -> object`` and ``_stop(token) -> float`` (joules) and set
    ``source`` and ``measured``.
    """

    source = ""
    measured = True

    def _start(self) -> object:
        raise NotImplementedError

    def _stop(self, token: object, duration_s: float) -> float:
        raise NotImplementedError

    @contextmanager
    def measure(self) -> Iterator[EnergyWindow]:
        window = EnergyWindow(source=self.source, measured=self.measured)
        token = self._start()
        started = time.perf_counter()
        try:
            yield window
        finally:
            window.duration_s = time.perf_counter() - started
            window.joules = max(0.0, float(self._stop(token, window.duration_s)))
