"""Figures of replay and sweep reports (matplotlib, headless).

* :func:`plot_replay`: cumulative regret over queries; accuracy versus joules per query of each
  strategy, with the single models and their Pareto front; model selection shares.
* :func:`plot_sweep`: each strategy's accuracy–energy curve over λ with its Pareto front and AIQ.

matplotlib comes with the ``bench`` extra (``pip install 'greenserv[bench]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from greenserv_core.evaluation.extras import bench_import

__all__ = ["plot_replay", "plot_sweep"]

_TOP_MODELS = 8


def _pyplot() -> Any:
    bench_import("matplotlib").use("Agg")
    return bench_import("matplotlib.pyplot")


def _save(plt: Any, figure: Any, path: str | Path) -> Path:
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _title(report: dict[str, Any], what: str) -> str:
    return f"{what}{' (SIMULATED table)' if report.get('simulated') else ''}"


def plot_replay(report: dict[str, Any], path: str | Path) -> Path:
    """Three panels from a :func:`~greenserv_core.evaluation.replay.replay` report; returns the path."""
    plt = _pyplot()
    figure, (regret, scatter, shares) = plt.subplots(1, 3, figsize=(18, 5.5))
    strategies: dict[str, Any] = report["strategies"]
    queries = report["settings"]["queries"]
    for name, summary in strategies.items():
        curve = summary["regret_curve"]
        regret.plot(curve["step"], curve["mean"], label=name)
    regret.set(xlabel="queries", ylabel="cumulative regret vs per-query oracle", title="Regret")
    regret.legend()

    singles = report.get("single_models", [])
    if singles:
        scatter.scatter(
            [s["joules_per_query"] for s in singles],
            [s["accuracy"] for s in singles],
            c="lightgrey",
            marker="s",
            label="single models",
        )
        front = report.get("single_models_pareto", [])
        scatter.plot([p[0] for p in front], [p[1] for p in front], c="grey", ls="--", label="Pareto front of models")
    for name, summary in strategies.items():
        joules = summary["energy_joules"]["mean"] / queries
        scatter.errorbar(
            joules,
            summary["accuracy"]["mean"],
            xerr=summary["energy_joules"]["ci95"] / queries,
            yerr=summary["accuracy"]["ci95"],
            fmt="o",
            capsize=3,
            label=name,
        )
    scatter.set(
        xlabel="joules per query", ylabel="accuracy", title=f"Accuracy vs energy, λ = {report['settings']['tradeoff']}"
    )
    scatter.legend(fontsize="small")

    totals: dict[str, float] = {}
    for summary in strategies.values():
        for model, share in summary["shares"].items():
            totals[model] = totals.get(model, 0.0) + share["mean"]
    top = sorted(totals, key=lambda m: -totals[m])[:_TOP_MODELS]
    names = list(strategies)
    left = [0.0] * len(names)
    for model in [*top, "other"]:
        widths = [
            (
                strategies[n]["shares"].get(model, {"mean": 0.0})["mean"]
                if model != "other"
                else sum(v["mean"] for m, v in strategies[n]["shares"].items() if m not in top)
            )
            for n in names
        ]
        if not any(widths):
            continue
        shares.barh(names, widths, left=left, label=model)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    shares.set(xlabel="share of queries", title="Model selection shares", xlim=(0, 1))
    shares.legend(fontsize="x-small", loc="lower right")
    figure.suptitle(_title(report, f"Replay of {queries} queries × {report['settings']['models']} models"))
    return _save(plt, figure, path)


def plot_sweep(report: dict[str, Any], path: str | Path) -> Path:
    """Accuracy–energy curves over λ from a :func:`~greenserv_core.evaluation.sweep.sweep` report."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 6))
    singles = report["single_models"]
    axes.scatter(
        [p["joules_per_query"] for p in singles["points"]],
        [p["accuracy"] for p in singles["points"]],
        c="lightgrey",
        marker="s",
        label=f"single models (AIQ {singles['aiq']:.3f})",
    )
    for name, curve in report["strategies"].items():
        points = curve["points"]
        line = axes.plot(
            [p["joules_per_query"] for p in points],
            [p["accuracy"] for p in points],
            "o",
            alpha=0.5,
        )[0]
        front = curve["pareto"]
        axes.plot(
            [p[0] for p in front],
            [p[1] for p in front],
            "-",
            color=line.get_color(),
            label=f"{name} (AIQ {curve['aiq']:.3f})",
        )
    axes.set(xlabel="joules per query", ylabel="accuracy", title=_title(report, "Accuracy vs energy over λ"))
    axes.legend(fontsize="small")
    return _save(plt, figure, path)
