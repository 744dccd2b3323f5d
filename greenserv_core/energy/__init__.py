"""Energy meters: NVML counters and power sampling, RAPL, remote exporters and a labelled
CPU-time estimate, all behind one protocol, :class:`EnergyMeter`.

To add a meter, drop one file here with an :class:`EnergyMeter` (a :class:`TimedMeter`
subclass is easiest) and a factory decorated ``@register_meter(name, priority=...,
placement=...)``: every module of this package is imported with it, so the meter is then a
choice of :func:`make_meter` and of :func:`auto_meter`.
"""

import importlib
import pkgutil

from greenserv_core.energy.base import CounterDidNotMoveError, EnergyMeter, EnergyReading, EnergyWindow, TimedMeter
from greenserv_core.energy.cpu_estimate import CpuTimeEstimateMeter
from greenserv_core.energy.fallback import FallbackMeter
from greenserv_core.energy.nvml import NvmlCounterMeter, NvmlPowerMeter
from greenserv_core.energy.rapl import RaplMeter
from greenserv_core.energy.registry import (
    METERS,
    auto_meter,
    make_meter,
    meter_names,
    register_meter,
    unregister_meter,
)
from greenserv_core.energy.remote import ExporterEnergyCounter

for _module in pkgutil.iter_modules(__path__):  # meters in files beyond those above register too
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "METERS",
    "CounterDidNotMoveError",
    "CpuTimeEstimateMeter",
    "EnergyMeter",
    "EnergyReading",
    "EnergyWindow",
    "ExporterEnergyCounter",
    "FallbackMeter",
    "NvmlCounterMeter",
    "NvmlPowerMeter",
    "RaplMeter",
    "TimedMeter",
    "auto_meter",
    "make_meter",
    "meter_names",
    "register_meter",
    "unregister_meter",
]
