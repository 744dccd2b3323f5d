"""Per-model tallies: decisions, scored answers, joules spent and labelled answers taught
(a warm start), kept in one place.

>>> tallies = Tallies()
>>> tallies.add_model("m"); tallies.decided("m"); tallies.spent("m", 2.5); tallies.scored("m")
>>> tallies.as_dict()["m"]
{'decisions': 1, 'feedback': 1, 'energy_joules': 2.5, 'labelled': 0}
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import numpy as np

from greenserv_core.statistics import Statistics

__all__ = ["Tallies"]

_FIELDS = ("decisions", "feedback", "energy_joules")
"""The fields shared as one vector per model; ``labelled`` is shared under a key of its own,
``labelled/<model>``, so that a replica of a version before it reads the vector it knows."""


class Tallies:
    """Counts per model. Learned state: ``counts_`` {model: {decisions, feedback, energy_joules,
    labelled}} (``labelled``: scored answers taught without routing, e.g. a warm start).
    A removed model keeps its tallies (they are history, not state of the pool)."""

    def __init__(self) -> None:
        self.counts_: dict[str, dict[str, float]] = {}

    def add_model(self, name: str) -> None:
        self.counts_.setdefault(name, {"decisions": 0, "feedback": 0, "energy_joules": 0.0, "labelled": 0})

    def decided(self, name: str, by: int = 1) -> None:
        """``name`` was chosen (``by=-1``: a decision taken back when its model failed)."""
        self.counts_[name]["decisions"] += by

    def scored(self, name: str) -> None:
        self.counts_[name]["feedback"] += 1

    def labelled(self, name: str) -> None:
        """``name`` was taught a scored answer it did not give as a routed decision."""
        self.counts_[name]["labelled"] += 1

    def spent(self, name: str, joules: float) -> None:
        self.counts_[name]["energy_joules"] += joules

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {name: dict(counts) for name, counts in self.counts_.items()}

    # ---- sharing and saving --------------------------------------------------------------
    def statistics(self) -> Statistics:
        sums = {}
        for name, counts in self.counts_.items():
            key = quote(name, safe="")
            sums[key] = np.array([float(counts[k]) for k in _FIELDS])
            sums[f"labelled/{key}"] = np.array([float(counts["labelled"])])
        return Statistics(sums=sums)

    def load_statistics(self, stats: Statistics) -> None:
        for name in self.counts_:
            key = quote(name, safe="")
            values = stats.sums.get(key)
            if values is not None:
                counts: dict[str, float] = {
                    k: (float(v) if k == "energy_joules" else round(float(v)))
                    for k, v in zip(_FIELDS, values[: len(_FIELDS)], strict=True)
                }
                labelled = stats.sums.get(f"labelled/{key}")
                if labelled is None and len(values) > len(_FIELDS):  # a replica that shared it in the vector
                    labelled = values[len(_FIELDS) :]
                counts["labelled"] = 0 if labelled is None else round(float(labelled[0]))
                self.counts_[name] = counts

    def state_dict(self) -> dict[str, Any]:
        return self.as_dict()

    def load_state_dict(self, state: dict[str, Any], models: set[str] | None = None) -> None:
        """Take the saved tallies (only of ``models``, when given)."""
        self.counts_.update(
            {name: {"labelled": 0, **s} for name, s in state.items() if models is None or name in models}
        )  # a state saved before labelled answers were counted has none
