"""Intel/AMD RAPL package energy counters from ``/sys/class/powercap`` (Linux).

Reads ``energy_uj`` of every top-level ``intel-rapl:N`` zone named ``package-N`` (one per CPU
package) before and after the block and handles counter wrap-around with
``max_energy_range_uj``; a counter that went back further than a wrap can explain (a reset)
gives the window no reading. A ``psys`` zone (the whole platform, on many laptops) already
holds the packages, so it is left out rather than counted twice. RAPL measures the whole
package, all processes included. Often readable only by root.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from greenserv_core.energy.base import TimedMeter
from greenserv_core.energy.registry import register_meter
from greenserv_core.errors import MissingResourceError, WindowNotMeasuredError

__all__ = ["RaplMeter", "rapl_meter", "rapl_zones"]

DEFAULT_ROOT = Path("/sys/class/powercap")

MAX_PACKAGE_WATTS = 2000.0
"""The most a wrapped counter may imply a package spent per second of the window (over a 10 ms
floor, as the counter moves in steps about every millisecond). Server packages draw up to about
500 W, so 2 kW is generous; a counter that went back by more than that allows was reset (a driver
reload), not wrapped (the range is about 262 kJ, over two minutes even at 2 kW)."""


def rapl_zones(root: Path = DEFAULT_ROOT) -> list[Path]:
    """Top-level package zones whose counter can be read (empty if none)."""
    zones = []
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:  # sub-zones (core, uncore, dram) are inside the package
            continue
        try:
            name = (zone / "name").read_text().strip()
        except OSError:
            name = "package"  # a zone without a name file: a package, as on older kernels
        if not name.startswith("package"):  # psys: the platform, packages included
            continue
        try:
            int((zone / "energy_uj").read_text())
        except (OSError, ValueError):
            continue
        zones.append(zone)
    return zones


class RaplMeter(TimedMeter):
    """Joules from RAPL package counters.

    >>> RaplMeter(root=Path("/nonexistent"))
    Traceback (most recent call last):
    ...
    greenserv_core.errors.MissingResourceError: no readable RAPL counter under /nonexistent
    """

    source = "rapl"
    measured = True

    def __init__(self, root: Path | str = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self.zones = rapl_zones(self.root)
        if not self.zones:
            raise MissingResourceError(f"no readable RAPL counter under {self.root}")
        try:
            self._ranges = [int((zone / "max_energy_range_uj").read_text()) for zone in self.zones]
        except (OSError, ValueError) as error:  # no range to wrap the counter at: no reading to trust
            raise MissingResourceError(f"a RAPL counter under {self.root} has no readable range: {error}") from error

    def _read(self) -> list[int]:
        return [int((zone / "energy_uj").read_text()) for zone in self.zones]

    def _start(self) -> object:
        return self._read()

    def _stop(self, token: object, duration_s: float) -> float:
        assert isinstance(token, list)
        total_uj = 0
        for before, after, wrap in zip(token, self._read(), self._ranges, strict=True):
            if after >= before:
                total_uj += after - before
                continue
            wrapped_uj = after + wrap - before
            if wrapped_uj > MAX_PACKAGE_WATTS * max(duration_s, 0.01) * 1e6:  # no wrap: a reset, joules unknown
                raise WindowNotMeasuredError(f"the RAPL counter went back from {before} to {after} µJ (a reset)")
            total_uj += wrapped_uj
        return total_uj / 1e6


@register_meter("rapl", priority=10, placement="cpu")
def rapl_meter(cuda_devices: Sequence[int]) -> RaplMeter:
    """The CPU packages' RAPL counters, for models on the CPU."""
    return RaplMeter()
