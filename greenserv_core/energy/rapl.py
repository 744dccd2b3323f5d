"""Intel/AMD RAPL package energy counters from ``/sys/class/powercap`` (Linux).

Reads ``energy_uj`` of every top-level ``intel-rapl:N`` zone named ``package-N`` (one per CPU
package) before and after the block and handles counter wrap-around with
``max_energy_range_uj``; a counter that went back further than a wrap can explain (a reset)
gives the window no reading. Two reads tell one wrap at most, so while a window is open a
thread reads the counters every :data:`POLL_S` seconds too: a window of any length is summed
from reads far less than one wrap apart. A ``psys`` zone (the whole platform, on many laptops) already
holds the packages, so it is left out rather than counted twice. RAPL measures the whole
package, all processes included. Often readable only by root.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from greenserv_core.energy.base import CounterDidNotMoveError, TimedMeter
from greenserv_core.energy.registry import register_meter
from greenserv_core.errors import MissingResourceError, WindowNotMeasuredError

__all__ = ["POLL_S", "STALLED_AFTER_S", "RaplMeter", "rapl_meter", "rapl_zones"]

DEFAULT_ROOT = Path("/sys/class/powercap")

MAX_PACKAGE_WATTS = 2000.0
"""The most a wrapped counter may imply a package spent per second of the window (over a 10 ms
floor, as the counter moves in steps about every millisecond). Server packages draw up to about
500 W, so 2 kW is generous; a counter that went back by more than that allows was reset (a driver
reload), not wrapped (the range is about 262 kJ, over two minutes even at 2 kW)."""


STALLED_AFTER_S = 1.0
"""A window at least this long in which no package's counter moved has no reading
(:class:`~greenserv_core.energy.base.CounterDidNotMoveError`), not 0 J: a powered package's
counter moves about every millisecond, and some virtual machines expose counters that never do."""


POLL_S = 20.0
"""How often the counters are read while a window is open: at :data:`MAX_PACKAGE_WATTS`, 40 kJ
between reads, far below one wrap (about 262 kJ)."""


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

        self._lock = threading.Lock()  # guards what follows
        self._last: list[int] | None = None  # the counters at the last read
        self._last_at = 0.0  # when (time.monotonic)
        self._totals = [0] * len(self.zones)  # µJ each moved since the first read, wraps unwrapped
        self._resets = 0  # counters seen reset (a window over one has no reading)
        self._open = 0  # windows open
        self._polling = False  # a thread reads the counters while windows are open

    def _read(self) -> list[int]:
        return [int((zone / "energy_uj").read_text()) for zone in self.zones]

    def _advance(self) -> tuple[list[int], int]:
        """Read the counters and add what each moved since the last read; the totals and the
        number of resets so far."""
        with self._lock:
            now, counters = time.monotonic(), self._read()
            if self._last is not None:
                elapsed = max(now - self._last_at, 0.01)
                for zone, (before, after, wrap) in enumerate(zip(self._last, counters, self._ranges, strict=True)):
                    moved = after - before if after >= before else after + wrap - before
                    if after < before and moved > MAX_PACKAGE_WATTS * elapsed * 1e6:  # not a wrap: a reset
                        self._resets += 1
                        moved = 0
                    self._totals[zone] += moved
            self._last, self._last_at = counters, now
            return list(self._totals), self._resets

    def _poll(self) -> None:
        """Read the counters every :data:`POLL_S` seconds while a window is open."""
        while True:
            time.sleep(POLL_S)
            with self._lock:
                if not self._open:
                    self._polling = False
                    return
            with contextlib.suppress(OSError, ValueError):  # (the window's last read says so)
                self._advance()

    def _start(self) -> object:
        token = self._advance()
        with self._lock:
            self._open += 1
            if not self._polling:
                self._polling = True
                threading.Thread(target=self._poll, name="greenserv-rapl-poll", daemon=True).start()
        return token

    def _stop(self, token: object, duration_s: float) -> float:
        assert isinstance(token, tuple)
        before: list[int] = token[0]
        resets: int = token[1]
        try:
            after, resets_now = self._advance()
        finally:
            with self._lock:
                self._open -= 1
        if resets_now != resets:
            raise WindowNotMeasuredError("a RAPL counter went back further than a wrap explains (a reset)")
        moved = sum(end - start for start, end in zip(before, after, strict=True))
        if not moved and duration_s >= STALLED_AFTER_S:
            raise CounterDidNotMoveError(f"no RAPL counter moved in {duration_s:.3f} s")
        return moved / 1e6


@register_meter("rapl", priority=10, placement="cpu")
def rapl_meter(cuda_devices: Sequence[int]) -> RaplMeter:
    """The CPU packages' RAPL counters, for models on the CPU."""
    return RaplMeter()
