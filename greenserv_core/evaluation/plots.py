"""Figures of replay and sweep reports (matplotlib, headless).

* :func:`plot_replay`: cumulative regret over queries; accuracy versus joules per query of each
  strategy, with the single models and their Pareto front; model selection shares.
* :func:`plot_sweep`: each strategy's accuracy–energy curve over λ with its Pareto front and AIQ.
* :func:`plot_budget`: realised spend against each energy budget over the stream, the λ the
  budget set, and accuracy against the single-model and fixed-λ fronts.

matplotlib comes with the ``bench`` extra (``pip install 'greenserv[bench]'``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.extras import bench_import
from greenserv_core.persistence import write_atomically

__all__ = ["plot_budget", "plot_replay", "plot_sweep"]

_TOP_MODELS = 8


def _pyplot() -> Any:
    bench_import("matplotlib").use("Agg")
    return bench_import("matplotlib.pyplot")


def _save(plt: Any, figure: Any, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` in one step (rendered first, then put in place: a Ctrl-C or a
    failure leaves any earlier file whole) and close it; returns the file's name."""
    figure.tight_layout()
    path = Path(path)
    if not path.suffix:  # matplotlib would add .png itself: return the file's real name
        path = path.with_name(f"{path.name}.png")
    try:
        rendered = io.BytesIO()
        figure.savefig(rendered, dpi=110, format=path.suffix[1:].lower())
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, rendered.getvalue())
    except OSError as error:  # a clear line, not a traceback after the work
        raise InvalidInputError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
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


def plot_budget(report: dict[str, Any], path: str | Path) -> Path:
    """Three panels from a :func:`~greenserv_core.evaluation.budgets.budget_sweep` report: the
    spend over the stream as a share of each budget (running mean, solid; last 500 queries,
    dotted), the λ in force, and accuracy against joules per query with both fronts."""
    from greenserv_core.evaluation.frontier import pareto_front, upper_hull

    plt = _pyplot()
    figure, (spend, lambdas, scatter) = plt.subplots(1, 3, figsize=(18, 5.5))
    strategy = report["settings"]["strategy"]
    for row in report["budgets"]:
        curve = row["spend"]["curve"]
        (line,) = spend.plot(curve["step"], curve["running_mean"], label=row["budget"])
        spend.plot(curve["step"], curve["recent_mean"], linestyle=":", color=line.get_color())
        lambdas.plot(curve["step"], curve["tradeoff"], color=line.get_color(), label=row["budget"])
        scatter.scatter(
            [row["realised_joules_per_query"]], [row["accuracy"]["mean"]], color=line.get_color(), marker="*", s=160
        )
    for level, style in ((1.0, "-"), (1.1, "--")):
        spend.axhline(level, color="black", linewidth=0.8, linestyle=style)
    spend.set(xlabel="queries (first run)", ylabel="spend / budget", title="Spend against the budget")
    spend.set_ylim(0, 2)
    spend.legend()
    lambdas.set(xlabel="queries (first run)", ylabel="λ in force", title="The trade-off the budget set")
    lambdas.legend()
    singles = [(s["joules_per_query"], s["accuracy"]) for s in report["single_models"]]
    scatter.scatter(*zip(*singles, strict=True), c="lightgrey", marker="s", label="single models")
    hull = upper_hull(pareto_front(singles))
    scatter.plot(*zip(*hull, strict=True), color="grey", label="single-model front")
    fixed = [(p["joules_per_query"], p["accuracy"]) for p in report["fixed_tradeoff"]]
    scatter.plot(*zip(*upper_hull(pareto_front(fixed)), strict=True), color="tab:blue", label=f"{strategy}, fixed λ")
    scatter.scatter(*zip(*fixed, strict=True), color="tab:blue", s=12)
    priced = [(p["joules_per_query"], p["accuracy"]) for p in report["fixed_price"]["points"]]
    scatter.plot(
        *zip(*upper_hull(pareto_front(priced)), strict=True), color="tab:purple", label=f"{strategy}, fixed price"
    )
    scatter.scatter(*zip(*priced, strict=True), color="tab:purple", s=12)
    scatter.set(xlabel="joules per query", ylabel="accuracy", title=_title(report, "Accuracy at each budget (stars)"))
    scatter.set_xscale("log")
    scatter.legend()
    return _save(plt, figure, path)
