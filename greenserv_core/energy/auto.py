"""Choose the best available energy meter, or the one the user names.

Order for a model on CUDA GPUs: NVML energy counter → NVML power sampling → CPU-time
estimate. On the CPU: RAPL → CPU-time estimate. Every measured choice is wrapped in a
:class:`FallbackMeter` so a failure mid-run degrades to the labelled estimate, never an error.
Names for ``make_meter``: ``auto``, ``nvml``, ``nvml-power``, ``rapl``, ``cpu-estimate``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from greenserv_core.energy.base import EnergyMeter
from greenserv_core.energy.cpu_estimate import CpuTimeEstimateMeter
from greenserv_core.energy.fallback import FallbackMeter
from greenserv_core.energy.nvml import NvmlCounterMeter, NvmlPowerMeter
from greenserv_core.energy.rapl import RaplMeter
from greenserv_core.errors import InvalidInputError, MissingResourceError

__all__ = ["METER_NAMES", "auto_meter", "make_meter"]

logger = logging.getLogger("greenserv.energy")
METER_NAMES = ("auto", "nvml", "nvml-power", "rapl", "cpu-estimate")
_announced: set[str] = set()


def _announce(message: str) -> None:
    if message not in _announced:
        _announced.add(message)
        logger.warning(message) if "estimate" in message else logger.info(message)


def auto_meter(cuda_devices: Sequence[int] = ()) -> EnergyMeter:
    """The best meter for a model on ``cuda_devices`` (empty: on the CPU).

    >>> auto_meter([]).source in {"rapl", "cpu-time-estimate"}
    True
    """
    reasons = []
    candidates = (NvmlCounterMeter, NvmlPowerMeter) if cuda_devices else ()
    for kind in candidates:
        try:
            meter: EnergyMeter = kind(cuda_devices)
            _announce(f"energy: measuring GPUs {list(cuda_devices)} with {meter.source}")
            return FallbackMeter(meter, CpuTimeEstimateMeter())
        except MissingResourceError as error:
            reasons.append(f"{kind.source}: {error}")
    if not cuda_devices:
        try:
            meter = RaplMeter()
            _announce("energy: measuring the CPU package with RAPL")
            return FallbackMeter(meter, CpuTimeEstimateMeter())
        except MissingResourceError as error:
            reasons.append(f"rapl: {error}")
    _announce(
        "energy: no energy counter is available (" + "; ".join(reasons) + "); joules are ESTIMATED from CPU "
        "time × watts per core and labelled cpu-time-estimate"
    )
    return CpuTimeEstimateMeter()


def make_meter(name: str, cuda_devices: Sequence[int] = ()) -> EnergyMeter:
    """A meter by name; a named measured meter that cannot work raises :class:`MissingResourceError`."""
    if name == "auto":
        return auto_meter(cuda_devices)
    if name == "cpu-estimate":
        return CpuTimeEstimateMeter()
    if name == "rapl":
        return FallbackMeter(RaplMeter(), CpuTimeEstimateMeter())
    if name in ("nvml", "nvml-power"):
        if not cuda_devices:
            raise InvalidInputError(f"meter {name!r} needs a model on a CUDA device")
        kind = NvmlCounterMeter if name == "nvml" else NvmlPowerMeter
        return FallbackMeter(kind(cuda_devices), CpuTimeEstimateMeter())
    raise InvalidInputError(f"unknown energy meter {name!r}; choose one of {METER_NAMES}")
