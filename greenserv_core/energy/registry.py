"""Energy meters by name, and the automatic choice among them.

A meter registers a factory with ``@register_meter(name, priority=..., placement=...)``. The
factory takes the CUDA devices the model sits on (empty: the CPU) and returns an
:class:`EnergyMeter`, or raises :class:`MissingResourceError` saying why it cannot measure
here; that is the availability probe. :func:`auto_meter` tries the meters for the model's
placement from the highest priority down and takes the first that builds: NVML counter →
NVML power sampling on GPUs, RAPL on the CPU, the CPU-time estimate last. A measured meter
is wrapped in a :class:`FallbackMeter`, so a failure mid-run degrades to the labelled
estimate, never an error. The choice is logged once: info for a measurement, a warning for
an estimate (from the meter's ``measured`` flag).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from greenserv_core.energy.base import EnergyMeter
from greenserv_core.energy.fallback import FallbackMeter
from greenserv_core.errors import InvalidInputError, MissingResourceError
from greenserv_core.registration import claim_name

__all__ = [
    "METERS",
    "MeterKind",
    "auto_meter",
    "make_meter",
    "meter_names",
    "register_meter",
    "unregister_meter",
    "with_fallback",
]

logger = logging.getLogger("greenserv.energy")

Placement = Literal["gpu", "cpu", "any"]
MeterFactory = Callable[[Sequence[int]], EnergyMeter]
_F = TypeVar("_F", bound=MeterFactory)


@dataclass(frozen=True)
class MeterKind:
    """A registered meter: its ``build`` factory, its ``priority`` for :func:`auto_meter`
    (higher is tried first) and its ``placement``: ``"gpu"`` for models on CUDA devices,
    ``"cpu"`` for models on the CPU, ``"any"`` for both."""

    name: str
    build: MeterFactory
    priority: int
    placement: Placement


METERS: dict[str, MeterKind] = {}
"""Every registered meter by name (filled by :func:`register_meter`)."""
FALLBACK_METER = "cpu-estimate"
"""The registered meter a measured one falls back to when it breaks (an estimate, labelled so)."""

_announced: set[str] = set()


def register_meter(name: str, *, priority: int, placement: Placement = "any") -> Callable[[_F], _F]:
    """Decorator for a meter factory ``(cuda_devices) -> EnergyMeter``.

    >>> from greenserv_core.energy.base import TimedMeter
    >>> class Flat(TimedMeter):  # ten watts, estimated
    ...     source, measured = "flat-10w", False
    ...     def _start(self):
    ...         return None
    ...     def _stop(self, token, duration_s):
    ...         return 10.0 * duration_s
    >>> @register_meter("flat-10w", priority=-1)
    ... def flat(cuda_devices):
    ...     return Flat()
    >>> make_meter("flat-10w").source
    'flat-10w'
    >>> unregister_meter("flat-10w")
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise InvalidInputError(f"a meter needs a name other than 'auto', got {name!r}")
    if placement not in ("gpu", "cpu", "any"):
        raise InvalidInputError(f"placement must be 'gpu', 'cpu' or 'any', got {placement!r}")

    def register(factory: _F) -> _F:
        known = METERS.get(name)
        claim_name("energy meter", name, None if known is None else known.build, factory)
        METERS[name] = MeterKind(name, factory, int(priority), placement)
        return factory

    return register


def unregister_meter(name: str) -> None:
    """Forget the meter registered as ``name`` (no error if there is none)."""
    METERS.pop(name, None)


def meter_names() -> list[str]:
    """``auto`` and the registered meters, highest priority first.

    >>> meter_names()[0], "cpu-estimate" in meter_names()
    ('auto', True)
    """
    return ["auto", *(kind.name for kind in _by_priority())]


def _by_priority() -> list[MeterKind]:
    return sorted(METERS.values(), key=lambda kind: -kind.priority)


def _announce(message: str, *, measured: bool) -> None:
    if message not in _announced:
        _announced.add(message)
        logger.log(logging.INFO if measured else logging.WARNING, message)


def with_fallback(meter: EnergyMeter) -> EnergyMeter:
    """A meter falls back to the CPU-time estimate if it breaks (labelled as the estimate), so
    that a failed read never throws a finished answer away: a measured meter, and an estimate
    of one's own too. The estimate itself, or a meter that already falls back, is as is.

    >>> from greenserv_core.energy.cpu_estimate import CpuTimeEstimateMeter
    >>> type(with_fallback(CpuTimeEstimateMeter())).__name__
    'CpuTimeEstimateMeter'
    """
    kind = METERS.get(FALLBACK_METER)
    if kind is None or isinstance(meter, FallbackMeter):
        return meter
    try:
        fallback = kind.build(())
    except InvalidInputError:  # (a bad GREENSERV_CPU_WATTS_PER_CORE) a measured meter says so now
        if meter.measured:
            raise
        return meter  # an estimate goes on without one, as it did
    if type(meter) is type(fallback):  # the estimate it would fall back to: nothing else to read
        return meter
    return FallbackMeter(meter, fallback)


def auto_meter(cuda_devices: Sequence[int] = ()) -> EnergyMeter:
    """The best meter for a model on ``cuda_devices`` (empty: on the CPU).

    >>> auto_meter([]).source in {"rapl", "cpu-time-estimate"}
    True
    """
    devices = tuple(cuda_devices)
    placement = "gpu" if devices else "cpu"
    where = f"GPUs {list(devices)}" if devices else "the CPU"
    reasons = []
    for kind in _by_priority():
        if kind.placement not in (placement, "any"):
            continue
        try:
            meter = kind.build(devices)
        except MissingResourceError as error:
            reasons.append(f"{kind.name}: {error}")
            continue
        if meter.measured:
            _announce(f"energy: measuring {where} with {meter.source}", measured=True)
        else:
            tried = f" ({'; '.join(reasons)})" if reasons else ""
            _announce(
                f"energy: no energy counter is available for {where}{tried}; joules are ESTIMATED and labelled "
                f"{meter.source}",
                measured=False,
            )
        return with_fallback(meter)
    raise MissingResourceError(f"no energy meter works for {where}: {'; '.join(reasons) or 'none registered'}")


def make_meter(name: str, cuda_devices: Sequence[int] = ()) -> EnergyMeter:
    """A meter by name (see :func:`meter_names`); a named meter that cannot work here raises
    :class:`MissingResourceError`, one for the other placement (a GPU meter for a model on the
    CPU, a CPU meter for one on CUDA devices) :class:`InvalidInputError`.

    >>> make_meter("cpu-estimate").source
    'cpu-time-estimate'
    """
    if name == "auto":
        return auto_meter(cuda_devices)
    kind = METERS.get(name)
    if kind is None:
        raise InvalidInputError(f"unknown energy meter {name!r}; choose one of {meter_names()}")
    if kind.placement == "gpu" and not cuda_devices:
        raise InvalidInputError(f"meter {name!r} needs a model on a CUDA device")
    if kind.placement == "cpu" and cuda_devices:  # it would label the CPU's joules as the GPUs' work
        raise InvalidInputError(f"meter {name!r} measures the CPU, not a model on CUDA devices {list(cuda_devices)}")
    return with_fallback(kind.build(tuple(cuda_devices)))
