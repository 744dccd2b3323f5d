"""What a stream closed before its answer spent.

A reader may stop a stream at any piece (a chat window closed, a ``break`` in a loop). The
model ran until then, and its joules count against the energy budget like any answer's. A
closed generator cannot yield its reading, so a backend hands it to :func:`report_abandoned`
as it closes, and whoever closed the stream inside :func:`collecting_abandoned` receives it.
A backend that reports nothing charges nothing: the router cannot invent the joules.

>>> from greenserv_core.energy.base import EnergyReading
>>> def pieces():
...     try:
...         yield "a"
...         yield "b"
...     except GeneratorExit:
...         report_abandoned(EnergyReading(3.0, "fake", False), 0.1)
...         raise
>>> stream = pieces()
>>> next(stream)
'a'
>>> with collecting_abandoned() as spent:
...     stream.close()
>>> spent
[SpentReading(energy=EnergyReading(joules=3.0, source='fake', measured=False), seconds=0.1)]
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

from greenserv_core.energy.base import EnergyReading

__all__ = ["SpentReading", "collecting_abandoned", "report_abandoned"]


@dataclass(frozen=True)
class SpentReading:
    """The joules and seconds a model spent on an answer nobody read to its end."""

    energy: EnergyReading
    seconds: float


_COLLECTOR: contextvars.ContextVar[list[SpentReading] | None] = contextvars.ContextVar(
    "greenserv_abandoned_streams", default=None
)


def report_abandoned(energy: EnergyReading, seconds: float) -> None:
    """Report what a stream spent before it was closed (call it while closing: in the
    generator's ``except GeneratorExit`` or ``finally``). Outside :func:`collecting_abandoned`
    the reading is not wanted and is dropped."""
    collector = _COLLECTOR.get()
    if collector is not None:
        collector.append(SpentReading(energy, max(0.0, float(seconds))))


@contextlib.contextmanager
def collecting_abandoned() -> Iterator[list[SpentReading]]:
    """Collect the readings that streams closed inside this block report (nested streams,
    such as a cascade's members, each report their own)."""
    collected: list[SpentReading] = []
    token = _COLLECTOR.set(collected)
    try:
        yield collected
    finally:
        _COLLECTOR.reset(token)
