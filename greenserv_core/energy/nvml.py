"""NVIDIA GPU energy through NVML (``pynvml``, from the ``nvidia-ml-py`` distribution).

* :class:`NvmlCounterMeter`: deltas of the total-energy counter
  (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since driver load; Volta and newer).
* :class:`NvmlPowerMeter`: for GPUs without that counter, power readings
  (``nvmlDeviceGetPowerUsage``, milliwatts) sampled on a thread and integrated (trapezoids).

Both synchronise CUDA at the window's edges (so queued kernels land inside the window) and
sum over the GPUs the model sits on. A device counter sees everything running on that GPU:
the local backend serialises generations per device so that a window holds one generation.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from greenserv_core.bandits.base import check_number
from greenserv_core.energy.base import CounterDidNotMoveError, EnergyWindow, TimedMeter
from greenserv_core.energy.registry import register_meter
from greenserv_core.errors import InvalidInputError, MissingResourceError, WindowNotMeasuredError
from greenserv_core.log_once import warn_once

__all__ = [
    "NvmlCounterMeter",
    "NvmlPowerMeter",
    "cuda_synchronizer",
    "load_pynvml",
    "most_joules",
    "nvml_counter_meter",
    "nvml_handles",
    "nvml_power_meter",
]

_INIT_LOCK = threading.Lock()
_initialised = False
logger = logging.getLogger("greenserv.energy")


MAX_GPU_WATTS = 5000.0
"""The most a GPU's counter may say it spent per second of a window (over a 0.2 s floor: NVML
refreshes the counter about every 0.1 s, so a short window may see a step of it). The largest
GPUs draw about 1.2 kW; a counter that jumped by more has no reading, not a measurement."""


def most_joules(duration_s: float, watts: float = MAX_GPU_WATTS) -> float:
    """The most joules a counter drawing ``watts`` may say a window of ``duration_s`` spent
    (over the 0.2 s floor of :data:`MAX_GPU_WATTS`); more is a step or a garbage read.

    >>> most_joules(0.01), most_joules(2.0, watts=400.0)
    (1000.0, 800.0)
    """
    return watts * max(duration_s, 0.2)


def load_pynvml() -> ModuleType:
    """Import and initialise NVML once, or :class:`MissingResourceError` saying why not."""
    global _initialised
    try:
        import pynvml
    except ImportError as error:
        raise MissingResourceError("pynvml is not installed; run `pip install nvidia-ml-py`") from error
    with _INIT_LOCK:
        if not _initialised:
            try:
                pynvml.nvmlInit()
            except Exception as error:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
                raise MissingResourceError(f"NVML is not usable here: {error}") from error
            _initialised = True
    module: ModuleType = pynvml
    return module


def nvml_handles(pynvml: ModuleType, cuda_devices: Sequence[int]) -> list[Any]:
    """NVML handles of CUDA devices, matched by UUID (so ``CUDA_VISIBLE_DEVICES`` is honoured).

    If the UUID match fails, the failure is logged (once) and, without
    ``CUDA_VISIBLE_DEVICES``, the CUDA index is taken as the NVML index; with it, the
    indices may differ, so :class:`MissingResourceError` names the failure instead.
    """
    handles = []
    for index in cuda_devices:
        try:
            import torch

            uuid = str(torch.cuda.get_device_properties(index).uuid)
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except Exception as error:  # no torch, no CUDA, an NVML error ...
            failure = f"cannot match CUDA device {index} to an NVML device by UUID ({type(error).__name__}: {error})"
            if os.environ.get("CUDA_VISIBLE_DEVICES"):
                raise MissingResourceError(
                    f"{failure}; with CUDA_VISIBLE_DEVICES set the indices may differ"
                ) from error
            warn_once(logger, f"energy: {failure}; using NVML device {index}")
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            except Exception as missing:  # an index NVML does not have, or may not read
                raise MissingResourceError(f"{failure}; NVML device {index}: {missing}") from missing
        handles.append(handle)
    return handles


def cuda_synchronizer(cuda_devices: Sequence[int]) -> Callable[[], None]:
    """A function that waits for all queued CUDA work on ``cuda_devices``."""

    def synchronize() -> None:
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            for index in cuda_devices:
                torch.cuda.synchronize(index)

    return synchronize


class _NvmlMeter(TimedMeter):
    """Shared set-up: NVML, the devices' handles, CUDA synchronisation, a first probe. A device
    listed twice is measured once; no device is :class:`InvalidInputError`."""

    probe_error = "NVML cannot read this GPU"

    def __init__(
        self,
        cuda_devices: Sequence[int] = (0,),
        *,
        synchronize: Callable[[], None] | None = None,
        pynvml: ModuleType | None = None,
    ) -> None:
        self.cuda_devices = tuple(dict.fromkeys(cuda_devices))
        if not self.cuda_devices:
            raise InvalidInputError("an NVML meter needs at least one CUDA device")
        self.pynvml = pynvml or load_pynvml()
        self.handles = nvml_handles(self.pynvml, self.cuda_devices)
        self.synchronize = synchronize or cuda_synchronizer(self.cuda_devices)
        try:
            self._probe()
        except Exception as error:
            raise MissingResourceError(f"{self.probe_error}: {error}") from error

    def _before_stop(self) -> None:
        self.synchronize()  # the kernels still queued land inside the window and its duration

    def _probe(self) -> None:
        raise NotImplementedError


class NvmlCounterMeter(_NvmlMeter):
    """Joules from the GPUs' total-energy counters.

    Raises :class:`MissingResourceError` at construction if NVML or the counter is missing. A
    window in which no GPU's counter moved has no reading (:class:`CounterDidNotMoveError`),
    however short: a GPU never spends 0 J, so the counter was not refreshed within it (the
    driver refreshes it every few tens of milliseconds), and 0 J would be no measurement. One in
    which only some moved reads the joules of those: the stalled GPUs' share is unknown and left
    out, so the window is labelled ``nvml-counter-partial`` with ``measured=False`` (a warning
    is logged once).
    """

    source = "nvml-counter"
    partial_source = "nvml-counter-partial"
    measured = True
    probe_error = "this GPU has no readable total-energy counter"

    def _probe(self) -> None:
        self._read()

    def _read(self) -> list[int]:
        return [int(self.pynvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self.handles]

    def _start(self) -> object:
        self.synchronize()
        return self._read()

    def _fill(self, window: EnergyWindow, token: object) -> None:
        window.joules, stalled = self._moved(token, window.duration_s)
        if stalled:
            window.source, window.measured = self.partial_source, False
            warn_once(
                logger,
                f"energy: the energy counter of GPU {stalled} did not move in a window; such windows "
                f"count only the GPUs whose counters moved, labelled {self.partial_source} (not measured)",
            )

    def _moved(self, token: object, duration_s: float) -> tuple[float, str]:
        """The joules of the GPUs whose counters moved, and the stalled GPUs ("" if none)."""
        assert isinstance(token, list)
        changes = [after - before for before, after in zip(token, self._read(), strict=True)]
        if any(change < 0 for change in changes):  # a driver reload or GPU reset: no reading, not 0 J
            raise WindowNotMeasuredError(f"the GPU energy counter went back by {-min(changes)} mJ during the window")
        if max(changes) > most_joules(duration_s) * 1000:  # (millijoules) a garbage read, not joules spent
            raise WindowNotMeasuredError(
                f"the GPU energy counter jumped by {max(changes)} mJ in {duration_s:.3f} s: more than "
                f"{MAX_GPU_WATTS:g} W, not a reading"
            )
        stalled = ""
        if 0 in changes:  # not refreshed (a GPU never spends 0 J): no reading of that GPU, not 0 J
            stalled = ", ".join(
                str(device) for device, change in zip(self.cuda_devices, changes, strict=True) if not change
            )
            if not any(changes):
                raise CounterDidNotMoveError(f"the energy counter of GPU {stalled} did not move in {duration_s:.3f} s")
        return float(sum(changes)) / 1000.0, stalled


class NvmlPowerMeter(_NvmlMeter):
    """Joules by integrating sampled GPU power over the window (every ``interval_s``)."""

    source = "nvml-power"
    measured = True
    probe_error = "this GPU reports no power reading"

    def __init__(
        self,
        cuda_devices: Sequence[int] = (0,),
        *,
        interval_s: float = 0.02,
        synchronize: Callable[[], None] | None = None,
        pynvml: ModuleType | None = None,
    ) -> None:
        self.interval_s = check_number("interval_s", interval_s, low=0.0, strict=True)
        super().__init__(cuda_devices, synchronize=synchronize, pynvml=pynvml)

    def _probe(self) -> None:
        self._watts()

    def _watts(self) -> float:
        return sum(int(self.pynvml.nvmlDeviceGetPowerUsage(h)) for h in self.handles) / 1000.0

    def _start(self) -> object:
        self.synchronize()
        samples: list[tuple[float, float]] = [(time.perf_counter(), self._watts())]
        stop = threading.Event()
        errors: list[BaseException] = []
        window = _PowerWindow(samples, stop, errors)

        def sample() -> None:
            while not stop.wait(self.interval_s):
                try:
                    samples.append((time.perf_counter(), self._watts()))
                except BaseException as error:  # reported when the window closes
                    errors.append(error)
                    return

        window.thread = threading.Thread(target=sample, name="greenserv-nvml-power", daemon=True)
        window.thread.start()
        return window

    def _stop(self, token: object, duration_s: float) -> float:
        assert isinstance(token, _PowerWindow) and token.thread is not None
        token.stop.set()  # (after _before_stop's synchronisation, or its failure)
        token.thread.join()
        if token.errors:
            raise token.errors[0]
        samples = [*token.samples, (time.perf_counter(), self._watts())]
        return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in itertools.pairwise(samples))


@dataclass
class _PowerWindow:
    samples: list[tuple[float, float]]
    stop: threading.Event
    errors: list[BaseException]
    thread: threading.Thread | None = None


@register_meter("nvml", priority=30, placement="gpu")
def nvml_counter_meter(cuda_devices: Sequence[int]) -> NvmlCounterMeter:
    """The GPUs' total-energy counters (Volta and newer): the first choice on GPUs."""
    return NvmlCounterMeter(cuda_devices)


@register_meter("nvml-power", priority=20, placement="gpu")
def nvml_power_meter(cuda_devices: Sequence[int]) -> NvmlPowerMeter:
    """Sampled GPU power, for GPUs without the counter."""
    return NvmlPowerMeter(cuda_devices)
