"""Energy meters: NVML counters and power sampling, RAPL, and a labelled CPU-time estimate."""

from greenserv_core.energy.auto import METER_NAMES, auto_meter, make_meter
from greenserv_core.energy.base import EnergyMeter, EnergyWindow
from greenserv_core.energy.cpu_estimate import CpuTimeEstimateMeter
from greenserv_core.energy.fallback import FallbackMeter
from greenserv_core.energy.nvml import NvmlCounterMeter, NvmlPowerMeter
from greenserv_core.energy.rapl import RaplMeter

__all__ = [
    "METER_NAMES",
    "CpuTimeEstimateMeter",
    "EnergyMeter",
    "EnergyWindow",
    "FallbackMeter",
    "NvmlCounterMeter",
    "NvmlPowerMeter",
    "RaplMeter",
    "auto_meter",
    "make_meter",
]
