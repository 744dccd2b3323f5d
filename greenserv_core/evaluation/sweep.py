"""Accuracy–energy curves over the trade-off λ, their Pareto fronts, and AIQ.

Each strategy is replayed at every λ; each λ gives one point (mean joules per query, mean
accuracy). A strategy's **Pareto front** keeps the points that no other point of it beats on
both. **AIQ** (average improvement in quality; RouterBench, Hu et al. 2024), here with joules
as the cost: the area under the non-decreasing upper convex hull of the front (mixing two
settings at random reaches any point between them), over a cost range shared by all
strategies — from the cheapest to the dearest single model of the table — divided by that
range (see :mod:`greenserv_core.evaluation.frontier`). Higher is better; a strategy that
reaches the best accuracy at the lowest cost scores that accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.frontier import aiq, pareto_front
from greenserv_core.evaluation.replay import ReplayEnergyScale, default_features, replay
from greenserv_core.evaluation.table import OutcomeTable
from greenserv_core.features.extractor import FeatureExtractor

__all__ = ["sweep"]


def sweep(
    table: OutcomeTable,
    strategies: Sequence[str],
    tradeoffs: Sequence[float],
    *,
    runs: int = 3,
    seed: int = 0,
    feedback_rate: float = 1.0,
    make_features: Callable[[], FeatureExtractor] | None = None,
    policy_params: dict[str, dict[str, Any]] | None = None,
    embedding_store: str | Path | None = None,
    energy_scale: ReplayEnergyScale = "online",
    progress: bool = False,
) -> dict[str, Any]:
    """Replay ``strategies`` at every λ in ``tradeoffs``; points, Pareto fronts and AIQ per strategy.

    Every single model of the table is a reference point (``single_models``), with its own
    front and AIQ: what fixed choices reach without routing. ``energy_scale`` is the router's,
    as in :func:`~greenserv_core.evaluation.replay.replay`.
    """
    if not tradeoffs:
        raise InvalidInputError("sweep needs at least one tradeoff")
    data = table.matrices()
    if make_features is None:
        make_features = default_features(len(set(data.prompts)))
    per_model = data.energy.mean(axis=0)
    low, high = float(per_model.min()), float(per_model.max())
    if not high > low:  # refused before any replay: the fronts' AIQ spans the models' joules
        raise InvalidInputError(
            f"a λ sweep needs models whose mean joules differ; this table's {len(data.models)} model(s) "
            f"all spend {low:.4g} J per query"
        )
    iterator: Any = tradeoffs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(tradeoffs, desc="sweep", unit="λ")
    points: dict[str, list[dict[str, float]]] = {s: [] for s in strategies}
    for tradeoff in iterator:
        report = replay(
            table,
            strategies,
            tradeoff=tradeoff,
            runs=runs,
            seed=seed,
            feedback_rate=feedback_rate,
            make_features=make_features,
            policy_params=policy_params,
            embedding_store=embedding_store,
            energy_scale=energy_scale,
        )
        for name, summary in report["strategies"].items():
            points[name].append(
                {
                    "tradeoff": float(tradeoff),
                    "accuracy": summary["accuracy"]["mean"],
                    "joules_per_query": summary["energy_joules"]["mean"] / len(data.queries),
                    "reward": summary["reward"]["mean"],
                }
            )
    singles = [(float(per_model[j]), float(data.accuracy[:, j].mean())) for j in range(len(data.models))]
    out: dict[str, Any] = {
        "settings": {
            "tradeoffs": [float(t) for t in tradeoffs],
            "runs": runs,
            "seed": seed,
            "feedback_rate": feedback_rate,
            "policy_params": policy_params or {},
            "energy_scale": energy_scale,
        },
        "simulated": table.simulated,
        "cost_range_joules_per_query": [low, high],
        "strategies": {},
        "single_models": {
            "points": [
                {"model": m, "joules_per_query": c, "accuracy": q}
                for m, (c, q) in zip(data.models, singles, strict=True)
            ],
            "pareto": [list(p) for p in pareto_front(singles)],
            "aiq": aiq(singles, low=low, high=high),
        },
    }
    for name, rows in points.items():
        pairs = [(r["joules_per_query"], r["accuracy"]) for r in rows]
        out["strategies"][name] = {
            "points": rows,
            "pareto": [list(p) for p in pareto_front(pairs)],
            "aiq": aiq(pairs, low=low, high=high),
        }
    return out
