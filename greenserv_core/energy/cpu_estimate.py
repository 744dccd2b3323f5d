"""The fallback when nothing can be measured: process CPU time × a per-core wattage.

Every reading is labelled ``cpu-time-estimate`` with ``measured=False``. The CPU time is the
whole process's (all threads), so work running beside a generation is counted too: routing
and embedding, and a model on another device answering at the same time (the router
serialises generations per device, not across devices), whose CPU time a window it measures
does not take from this one. Windows
open at once (models on two devices, both estimated) split the process's CPU time evenly
between them, so that no CPU second is charged twice. A standby window (kept beside a meter
that measures, in case its reading fails) takes no share from them and is charged its own
share of the CPU time, as if it were one of them: a window whose measurement failed is never
free, and only then are some CPU seconds charged twice, at most that window's share.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

from greenserv_core.energy.base import TimedMeter
from greenserv_core.energy.overlap import OverlapShares
from greenserv_core.energy.registry import register_meter
from greenserv_core.errors import InvalidInputError

__all__ = ["DEFAULT_WATTS_PER_CORE", "CpuTimeEstimateMeter", "cpu_estimate_meter"]

DEFAULT_WATTS_PER_CORE = 15.0

_PROCESS_TIME = OverlapShares(clock=time.process_time)
"""The process's CPU time, split among the estimate's open windows (every meter's: it is one process)."""


class CpuTimeEstimateMeter(TimedMeter):
    """Estimated joules = CPU seconds of this process × ``watts_per_core``.

    The default wattage (15 W per busy core, a mid-range server or laptop core under load)
    can be set with ``GREENSERV_CPU_WATTS_PER_CORE``.

    >>> meter = CpuTimeEstimateMeter(watts_per_core=10.0)
    >>> with meter.measure() as window:
    ...     _ = sum(i * i for i in range(200_000))
    >>> window.source, window.measured, window.joules > 0
    ('cpu-time-estimate', False, True)
    """

    source = "cpu-time-estimate"
    measured = False

    def __init__(self, watts_per_core: float | None = None, *, shared: bool = True) -> None:
        name, given = "watts_per_core", repr(watts_per_core)  # as the error names and shows it
        if watts_per_core is None:
            name = "GREENSERV_CPU_WATTS_PER_CORE"
            setting = os.environ.get(name, str(DEFAULT_WATTS_PER_CORE))
            given = repr(setting)
            try:
                watts_per_core = float(setting)
            except ValueError:
                raise InvalidInputError(f"{name} must be a number of watts, such as 15, got {given}") from None
        if not 0 < watts_per_core < math.inf:
            raise InvalidInputError(f"{name} must be a positive finite number, got {given}")
        self.watts_per_core = float(watts_per_core)
        self.shared = shared
        """Whether its windows split the process's CPU time with the other estimates open at once;
        if not (a standby), they take no share from those and are charged their own share."""

    def standby(self) -> CpuTimeEstimateMeter:
        """The same estimate for a window kept beside a meter that measures, in case that one
        fails (:class:`~greenserv_core.energy.FallbackMeter`): it takes no share of the
        process's CPU time from the estimates that count, and is charged its share of it as if
        it were one of them (so a window whose measurement failed is never read as free)."""
        return CpuTimeEstimateMeter(self.watts_per_core, shared=False)

    def _start(self) -> object:
        return _PROCESS_TIME.enter(standby=not self.shared)

    def _stop(self, token: object, duration_s: float) -> float:
        assert isinstance(token, int)
        return _PROCESS_TIME.leave(token) * self.watts_per_core


@register_meter("cpu-estimate", priority=0)
def cpu_estimate_meter(cuda_devices: Sequence[int]) -> CpuTimeEstimateMeter:
    """The labelled estimate: always available, tried last."""
    return CpuTimeEstimateMeter()
