"""What a :class:`~greenserv_core.router.GreenServRouter` learned, as mergeable :class:`Statistics`.

Keys name the component, the (percent-encoded) model and the quantity, e.g.
``policy/qwen%2F7b/xx``. Shared: the policy's per-arm sums and decision count, the energy
and latency cost models, the energy normaliser's range per task, the k-means cluster sums
and counts, and the per-model tallies. Not shared: pending decisions (feedback for a
decision goes to the replica that made it) and each replica's random generator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

import numpy as np

from greenserv_core.bandits.ridge import RidgeArm
from greenserv_core.errors import StateFileError
from greenserv_core.features.clustering import OnlineKMeans
from greenserv_core.outcomes import CostModel
from greenserv_core.reward import EnergyNormalizer
from greenserv_core.sharing.statistics import Statistics

if TYPE_CHECKING:
    from greenserv_core.bandits.base import Policy
    from greenserv_core.router import GreenServRouter

__all__ = ["load_router_statistics", "router_statistics"]

_TALLIES = ("decisions", "feedback", "energy_joules")


def _ridge_sums(prefix: str, arm: RidgeArm, out: dict[str, np.ndarray]) -> None:
    xx, yx, n = arm.data_sums()
    out[f"{prefix}/xx"], out[f"{prefix}/yx"], out[f"{prefix}/n"] = xx, yx, np.array([float(n)])


def _load_ridge(prefix: str, arm: RidgeArm, sums: dict[str, np.ndarray]) -> None:
    if f"{prefix}/xx" in sums:
        arm.load_data_sums(sums[f"{prefix}/xx"], sums[f"{prefix}/yx"], round(float(sums[f"{prefix}/n"][0])))


def _policy_sums(policy: Policy, out: dict[str, np.ndarray]) -> None:
    out["policy/t"] = np.array([float(policy.t_)])
    for name, state in policy.arms_.items():
        prefix = f"policy/{quote(name, safe='')}"
        if isinstance(state, RidgeArm):
            _ridge_sums(prefix, state, out)
        elif isinstance(state, dict):  # running mean per arm (epsilon-nc)
            out[f"{prefix}/n"] = np.array([float(state["n"])])
            out[f"{prefix}/sum"] = np.array([float(state["n"] * state["mean"])])


def _load_policy(policy: Policy, sums: dict[str, np.ndarray]) -> None:
    if "policy/t" in sums:
        policy.t_ = round(float(sums["policy/t"][0]))
    for name, state in policy.arms_.items():
        prefix = f"policy/{quote(name, safe='')}"
        if isinstance(state, RidgeArm):
            _load_ridge(prefix, state, sums)
        elif isinstance(state, dict) and f"{prefix}/sum" in sums:
            n = round(float(sums[f"{prefix}/n"][0]))
            state["n"], state["mean"] = n, float(sums[f"{prefix}/sum"][0]) / n if n else 0.0


def _cost_sums(component: str, costs: CostModel, out: dict[str, np.ndarray]) -> None:
    for name, arm in costs.models_.items():
        _ridge_sums(f"{component}/{quote(name, safe='')}", arm, out)


def _load_costs(component: str, costs: CostModel, sums: dict[str, np.ndarray]) -> None:
    for name, arm in costs.models_.items():
        _load_ridge(f"{component}/{quote(name, safe='')}", arm, sums)


def _cluster_sums(clusters: OnlineKMeans, out: dict[str, np.ndarray]) -> None:
    if clusters.centroids_ is not None:
        counts = clusters.counts_.astype(np.float64)
        out["clusters/sums"] = clusters.centroids_ * counts[:, None]  # running means × counts
        out["clusters/counts"] = counts


def _load_clusters(clusters: OnlineKMeans, sums: dict[str, np.ndarray]) -> None:
    if "clusters/counts" not in sums:
        return
    counts = np.rint(sums["clusters/counts"]).astype(np.int64)
    seeded = int(np.count_nonzero(counts))
    if seeded == 0:
        return
    if np.any(counts[:seeded] == 0) or len(counts) > clusters.n_clusters:
        raise StateFileError(f"shared clusters are inconsistent (counts {counts.tolist()})")
    clusters.counts_ = counts[:seeded].copy()
    clusters.centroids_ = sums["clusters/sums"][:seeded] / counts[:seeded, None]


def _normalizer_ranges(
    normalizer: EnergyNormalizer, minima: dict[str, np.ndarray], maxima: dict[str, np.ndarray]
) -> None:
    for task, (low, high) in normalizer.ranges_.items():
        key = f"normalizer/{quote(task, safe='')}"
        minima[key], maxima[key] = np.array([low]), np.array([high])


def router_statistics(router: GreenServRouter) -> Statistics:
    """Everything ``router`` learned that replicas share. Call it under the router's lock."""
    sums: dict[str, np.ndarray] = {}
    minima: dict[str, np.ndarray] = {}
    maxima: dict[str, np.ndarray] = {}
    _policy_sums(router.policy_, sums)
    _cost_sums("energy", router.energy_, sums)
    _cost_sums("latency", router.latency_, sums)
    _cluster_sums(router.features.clusterer, sums)
    _normalizer_ranges(router.normalizer_, minima, maxima)
    for name, tallies in router.stats_.items():
        sums[f"tallies/{quote(name, safe='')}"] = np.array([float(tallies[k]) for k in _TALLIES])
    return Statistics(sums=sums, minima=minima, maxima=maxima)


def load_router_statistics(router: GreenServRouter, stats: Statistics) -> None:
    """Set ``router``'s learned state to ``stats`` (models it does not have are skipped).
    Call it under the router's lock."""
    _load_policy(router.policy_, stats.sums)
    _load_costs("energy", router.energy_, stats.sums)
    _load_costs("latency", router.latency_, stats.sums)
    _load_clusters(router.features.clusterer, stats.sums)
    for key, low in stats.minima.items():
        if key.startswith("normalizer/") and key in stats.maxima:
            task = unquote(key.removeprefix("normalizer/"))
            router.normalizer_.ranges_[task] = [float(low[0]), float(stats.maxima[key][0])]
    for name in router.stats_:
        values = stats.sums.get(f"tallies/{quote(name, safe='')}")
        if values is not None:
            router.stats_[name] = {
                k: (float(v) if k == "energy_joules" else round(float(v)))
                for k, v in zip(_TALLIES, values, strict=True)
            }
