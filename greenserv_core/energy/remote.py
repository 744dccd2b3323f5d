"""Joules of a request served by a remote model server.

In order of preference, :class:`~greenserv_core.backends.openai_compatible.OpenAICompatibleBackend` uses:

1. energy the server reports for the request: a ``usage.energy_joules`` field or an
   ``x-energy-joules`` response header (``source="server-reported"``, measured), for the
   attempt that answered: a retried request adds what its earlier attempts spent (2 or 3);
2. its ``energy`` meter, any :class:`~greenserv_core.energy.base.EnergyMeter` with a window
   around the request, such as an :class:`ExporterEnergyCounter`: a GPU energy counter
   scraped from a Prometheus exporter (NVIDIA's DCGM exporter exposes
   ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` in mJ) before and after the request. It is
   measured, but covers the whole GPU: requests the server runs at the same time share the
   window, so with concurrent traffic it is an upper bound for the one request;
3. otherwise an estimate, ``assumed_watts × latency``, labelled ``estimate-latency-x-<W>W``
   and never reported as measured.

Requests that overlap share the server (it batches them): while ``n`` of this backend's
requests are in flight, each is charged ``1/n`` of every second (:class:`OverlapShares`).
The estimate uses that share of the latency, and an exporter's window energy is scaled by
the share over the latency, so concurrent requests are not each charged the whole GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from greenserv_core.bandits.base import check_number
from greenserv_core.energy.base import CounterDidNotMoveError, EnergyReading, TimedMeter
from greenserv_core.energy.nvml import MAX_GPU_WATTS, most_joules
from greenserv_core.energy.overlap import OverlapShares
from greenserv_core.errors import InvalidInputError, MissingResourceError, WindowNotMeasuredError
from greenserv_core.redaction import redacted

__all__ = ["ExporterEnergyCounter", "OverlapShares", "estimated_energy", "reported_energy"]


def reported_energy(usage: object, headers: Mapping[str, str]) -> EnergyReading | None:
    """Energy the server itself reported for the request, if any (a ``usage`` that is no object
    reports none).

    >>> reported_energy({"energy_joules": 12.5}, {})
    EnergyReading(joules=12.5, source='server-reported', measured=True)
    >>> reported_energy(None, {"x-energy-joules": "3"}).joules
    3.0
    """
    given: Any = usage.get("energy_joules") if isinstance(usage, Mapping) else None
    for value in (given, headers.get("x-energy-joules")):  # (a usage's value unread: the header's)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue  # true is no number of joules
        try:
            return EnergyReading(float(value), source="server-reported", measured=True)
        except (TypeError, ValueError, OverflowError, InvalidInputError):
            continue
    return None


def estimated_energy(latency_s: float, assumed_watts: float) -> EnergyReading:
    """``assumed_watts × latency``, labelled as the estimate it is.

    >>> estimated_energy(2.0, 300.0)
    EnergyReading(joules=600.0, source='estimate-latency-x-300W', measured=False)
    """
    return EnergyReading(assumed_watts * latency_s, source=f"estimate-latency-x-{assumed_watts:g}W", measured=False)


class ExporterEnergyCounter(TimedMeter):
    """A meter reading a cumulative energy counter from a Prometheus exporter's ``/metrics``
    page before and after the block (a window it cannot read raises when it closes).

    ``metric`` is the counter's name, ``labels`` pick one series (e.g. ``{"gpu": "0"}``) and
    ``joules_per_unit`` converts its unit (DCGM reports millijoules: 0.001). A counter that did
    not move during a request gives no reading (the labelled estimate stands in): the exporter
    refreshes it only every collection interval, so set that well below a request's length
    (dcgm-exporter's ``-c``, in milliseconds) for the counter to measure short requests. A
    change of more than ``max_watts`` over the window (default 5 kW, one GPU; ``None``: no
    check) is a refresh step that the request only caught, not its joules: no reading. Labels
    that match more than one series are refused (a node's page lists every GPU).

    >>> page = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0"} 5000\\n'
    >>> ExporterEnergyCounter.parse(page, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", {"gpu": "0"})
    5000.0
    """

    source = "exporter-counter"
    measured = True

    def __init__(
        self,
        metrics_url: str,
        *,
        metric: str = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        labels: Mapping[str, str] | None = None,
        joules_per_unit: float = 1e-3,
        timeout_s: float = 2.0,
        client: httpx.Client | None = None,
        max_watts: float | None = MAX_GPU_WATTS,
    ) -> None:
        self.metrics_url = metrics_url
        self.max_watts = None if max_watts is None else check_number("max_watts", max_watts, low=0.0, strict=True)
        self.metric = metric
        self.labels = dict(labels or {})
        odd = {k: v for k, v in self.labels.items() if not (isinstance(k, str) and isinstance(v, str))}
        if odd:  # a label's value is text in the exposition format: {"gpu": 0} never matched a series
            raise InvalidInputError(f"labels must map names to text, such as {{'gpu': '0'}}; got {odd}")
        self.joules_per_unit = check_number("joules_per_unit", joules_per_unit, low=0.0, strict=True)
        self.client = client or httpx.Client(timeout=timeout_s)

    @staticmethod
    def parse(page: str, metric: str, labels: Mapping[str, str]) -> float | None:
        """The value of the ``metric`` series whose labels include ``labels`` (the parser names a
        counter's samples ``<metric>_total``; either name matches); ``None`` where none does, and
        :class:`ValueError` where several do (which one the request ran on is not known).

        >>> page = 'E{gpu="0"} 5\\nE{gpu="1"} 9\\n'
        >>> ExporterEnergyCounter.parse(page, "E", {"gpu": "1"})
        9.0
        >>> ExporterEnergyCounter.parse(page, "E", {})
        Traceback (most recent call last):
        ...
        ValueError: 2 E series match the labels {}: give labels that pick one, such as {'gpu': '0'}
        """
        from prometheus_client.parser import text_string_to_metric_families

        names = {metric, f"{metric}_total"}
        found = [
            float(sample.value)
            for family in text_string_to_metric_families(page)
            for sample in family.samples
            if sample.name in names and all(sample.labels.get(k) == v for k, v in labels.items())
        ]
        if len(set(found)) > 1:  # (one GPU's series repeated, as per pod, reads the same: one value)
            raise ValueError(
                f"{len(found)} {metric} series match the labels {dict(labels)}: give labels that pick one, "
                "such as {'gpu': '0'}"
            )
        return found[0] if found else None

    @property
    def _where(self) -> str:
        """The exporter's address as messages show it (credentials hidden)."""
        return redacted(self.metrics_url)

    def _read(self) -> float:
        try:
            response = self.client.get(self.metrics_url)
            response.raise_for_status()
            value = self.parse(response.text, self.metric, self.labels)
        except (httpx.HTTPError, ValueError) as error:
            raise MissingResourceError(f"cannot read {self._where}: {redacted(str(error))}") from error
        if value is None:
            raise MissingResourceError(f"{self._where} has no {self.metric} series with labels {self.labels}")
        return value

    def _start(self) -> object:
        return self._read()

    def _stop(self, token: object, duration_s: float) -> float:
        assert isinstance(token, float)
        end = self._read()
        if end < token:  # the counter was reset: no measurement rather than a wrong one
            raise WindowNotMeasuredError(f"the counter at {self._where} went back from {token} to {end}")
        if end == token and duration_s > 0:  # not refreshed within the window (DCGM collects every few seconds)
            raise CounterDidNotMoveError(
                f"the counter at {self._where} did not move in {duration_s:.3f} s: the exporter has not "
                "refreshed it, so there is no reading"
            )
        joules = (end - token) * self.joules_per_unit
        if self.max_watts is not None and joules > most_joules(duration_s, self.max_watts):
            raise WindowNotMeasuredError(  # a collection step the request caught, not what it spent
                f"the counter at {self._where} rose by {joules:.1f} J in {duration_s:.3f} s: more than "
                f"{self.max_watts:g} W (max_watts), a refresh step longer than the request, not a reading"
            )
        return joules
