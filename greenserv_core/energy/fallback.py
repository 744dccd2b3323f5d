"""A meter that never fails a generation: if the primary meter breaks, the fallback's reading
is used, a warning is logged once, and the primary is not tried again. A window the primary
could not read although it works (:class:`~greenserv_core.errors.WindowNotMeasuredError`: a
counter that went back or was not refreshed) takes the fallback's reading for that window only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace

from greenserv_core.energy.base import EnergyMeter, EnergyWindow
from greenserv_core.errors import WindowNotMeasuredError

__all__ = ["FallbackMeter"]

logger = logging.getLogger("greenserv.energy")


class FallbackMeter:
    """Runs ``fallback`` beside ``primary`` in every window (it must be cheap, e.g. the CPU-time
    estimate) so that a primary failure mid-window still yields a reading.

    >>> from greenserv_core.energy.cpu_estimate import CpuTimeEstimateMeter
    >>> class Broken:
    ...     source = "broken"
    ...     def measure(self):
    ...         raise RuntimeError("counter unavailable")
    >>> meter = FallbackMeter(Broken(), CpuTimeEstimateMeter())
    >>> with meter.measure() as window:
    ...     pass
    >>> window.source, meter.failed
    ('cpu-time-estimate', True)

    ``missed_windows`` counts the windows the primary had no reading for while it kept working
    (each one the fallback's labelled estimate); ``failed`` says it broke for good.
    """

    def __init__(self, primary: EnergyMeter, fallback: EnergyMeter) -> None:
        self.primary = primary
        self.fallback = fallback
        self.failed = False
        self.failure: str | None = None
        self.missed_windows = 0
        standby = getattr(fallback, "standby", None)
        self._standby: EnergyMeter = standby() if callable(standby) else fallback
        """The fallback as it runs beside a working primary (the CPU-time estimate then takes no
        share of the process's CPU time from the estimates that count)."""

    @property
    def source(self) -> str:
        return self.fallback.source if self.failed else self.primary.source

    @property
    def measured(self) -> bool:
        return self.fallback.measured if self.failed else self.primary.measured

    def _fail(self, error: BaseException) -> None:
        if not self.failed:
            self.failed = True
            self.failure = f"{type(error).__name__}: {error}"
            logger.warning(
                "energy meter %s failed (%s); using %s from now on",
                self.primary.source,
                self.failure,
                self.fallback.source,
            )

    def _miss(self, error: WindowNotMeasuredError) -> None:
        self.missed_windows += 1
        if self.missed_windows == 1:
            logger.warning(
                "energy meter %s had no reading for a window (%s); that window, and any other such, gets %s (labelled)",
                self.primary.source,
                error,
                self.fallback.source,
            )

    @contextmanager
    def measure(self) -> Iterator[EnergyWindow]:
        window = EnergyWindow()
        fallback_cm = (self.fallback if self.failed else self._standby).measure()
        fallback_window = fallback_cm.__enter__()
        primary_cm: AbstractContextManager[EnergyWindow] | None = None
        primary_window: EnergyWindow | None = None
        if not self.failed:
            try:
                primary_cm = self.primary.measure()
                primary_window = primary_cm.__enter__()
            except Exception as error:
                self._fail(error)
                primary_cm = None
        try:
            yield window
        finally:
            fallback_cm.__exit__(None, None, None)
            chosen = fallback_window
            if primary_cm is not None:
                try:
                    primary_cm.__exit__(None, None, None)
                    assert primary_window is not None
                    chosen = primary_window
                except WindowNotMeasuredError as error:  # this window only: the meter works
                    self._miss(error)
                except Exception as error:
                    self._fail(error)
            filled = replace(chosen)
            window.joules, window.duration_s = filled.joules, filled.duration_s
            window.source, window.measured = filled.source, filled.measured
