"""Fixed cascades on outcome tables (issue 18): the settings, the ceilings and the fronts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from greenserv_core import cli
from greenserv_core.cli.common import cascade_pair
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.cascades import cascade_report, task_settings
from greenserv_core.evaluation.replay import baselines
from greenserv_core.evaluation.simulate import simulate_table
from greenserv_core.evaluation.table import OutcomeTable, write_table
from tests.test_evaluation import CALIBRATION


def _two_models(confidence: list[float | None]) -> OutcomeTable:
    """Four queries; the small model (1 J) is right on the first two, the big one (10 J) on all."""
    models, n = ["small", "big"], len(confidence) // 2
    return OutcomeTable(
        {
            "query_id": [f"q{i // 2}" for i in range(2 * n)],
            "task": ["t"] * (2 * n),
            "prompt": [f"p{i // 2}" for i in range(2 * n)],
            "reference": [""] * (2 * n),
            "model": models * n,
            "output": [""] * (2 * n),
            "accuracy": [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0][: 2 * n],
            "energy_joules": [1.0, 10.0] * n,
            "energy_source": ["x"] * (2 * n),
            "latency_s": [0.1] * (2 * n),
            "input_tokens": [1] * (2 * n),
            "output_tokens": [1] * (2 * n),
            "confidence": confidence,
        }
    )


def test_a_cascade_pays_both_calls_when_it_escalates() -> None:
    table = _two_models([0.9, 0.5, 0.8, 0.5, 0.2, 0.5, 0.1, 0.5])  # the small model is sure when right
    data = table.matrices()
    settings = task_settings(data, np.ones(4, dtype=bool))
    singles = {s.label: s for s in settings if not s.cascade}
    assert singles["small"].accuracy == 0.5 and singles["big"].joules == 10.0
    cascades = [s for s in settings if s.cascade]
    assert cascades and all(s.label.startswith("small → big @") for s in cascades)  # cheaper model first only
    halfway = next(s for s in cascades if s.escalated == 0.5)
    assert halfway.accuracy == 1.0 and halfway.joules == pytest.approx(1.0 + 0.5 * 10.0)


def test_with_a_signal_that_separates_the_cascade_beats_both_models() -> None:
    report = cascade_report(_two_models([0.9, 0.5, 0.8, 0.5, 0.2, 0.5, 0.1, 0.5]), tradeoff=0.4)
    best = report["per_task"]["t"]["with_cascades"]
    assert best["setting"].startswith("small → big") and best["accuracy"] == 1.0 and best["joules_per_query"] == 6.0
    ceiling = report["best_fixed_per_task_reward"]
    assert ceiling["with"] > ceiling["without"]


def test_without_confidence_there_is_no_cascade() -> None:
    table = _two_models([0.5] * 8)
    del table.columns["confidence"]
    with pytest.raises(InvalidInputError, match="confidence column"):
        cascade_report(OutcomeTable(table.columns))


def test_the_ceiling_without_cascades_is_the_replays_and_cascades_only_add() -> None:
    for auroc in (0.6, 0.9):
        table = simulate_table(CALIBRATION, queries_per_task=200, seed=1, confidence_auroc=auroc)
        report = cascade_report(table, tradeoff=0.4)
        ceiling = report["best_fixed_per_task_reward"]
        assert ceiling["without"] == pytest.approx(baselines(table, 0.4)["best_fixed_model_per_task"]["reward"])
        assert ceiling["with"] >= ceiling["without"]
        fronts = report["fronts"]
        assert fronts["with_cascades"]["aiq"] >= fronts["without_cascades"]["aiq"] - 1e-12
    sharp = cascade_report(simulate_table(CALIBRATION, queries_per_task=200, seed=1, confidence_auroc=0.95))
    blunt = cascade_report(simulate_table(CALIBRATION, queries_per_task=200, seed=1, confidence_auroc=0.55))

    def gain(report: dict[str, object]) -> float:
        ceiling = report["best_fixed_per_task_reward"]
        assert isinstance(ceiling, dict)
        return float(ceiling["with"] - ceiling["without"])

    assert gain(sharp) > gain(blunt)


def test_the_cascades_command_prints_and_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_table(_two_models([0.9, 0.5, 0.8, 0.5, 0.2, 0.5, 0.1, 0.5]), tmp_path / "t.csv")
    assert cli.main(["bench", "cascades", "--table", str(path), "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "small → big" in printed and "with cascades" in printed
    assert json.loads((tmp_path / "r.json").read_text())["tradeoff"] == 0.4


# ---- learned cascades replayed through the router (greenserv bench cascade-replay) -------------
def _sharp_table(queries: int = 120) -> OutcomeTable:
    """The small model (1 J) is right on even queries and says so (confidence 0.95, else 0.05);
    the big one (10 J) is always right."""
    rows: dict[str, list[object]] = {k: [] for k in ("query_id", "task", "prompt", "reference", "model", "output")}
    rows.update({k: [] for k in ("accuracy", "energy_joules", "energy_source", "latency_s", "input_tokens")})
    rows.update({"output_tokens": [], "confidence": []})
    for q in range(queries):
        for model, joules in (("small", 1.0), ("big", 10.0)):
            right = model == "big" or q % 2 == 0
            for key, value in (
                ("query_id", f"q{q}"),
                ("task", "t"),
                ("prompt", f"What is {q} + {q}?"),
                ("reference", ""),
                ("model", model),
                ("output", ""),
                ("accuracy", float(right)),
                ("energy_joules", joules),
                ("energy_source", "x"),
                ("latency_s", 0.1),
                ("input_tokens", 5),
                ("output_tokens", 1),
                ("confidence", (0.95 if right else 0.05) if model == "small" else 0.9),
            ):
                rows[key].append(value)
    return OutcomeTable(rows)  # type: ignore[arg-type]


def test_the_learned_cascade_replay_escalates_where_it_pays() -> None:
    from greenserv_core.evaluation.cascade_replay import STRATEGIES, cascade_pairs, replay_cascades
    from tests.conftest import make_hashing_extractor

    table = _sharp_table()
    assert cascade_pairs(table, 0.4) == [("small", "big")]
    report = replay_cascades(table, runs=2, tradeoffs=(0.4,), make_features=make_hashing_extractor)
    entry = report["by_tradeoff"]["0.4"]
    assert set(STRATEGIES) <= set(entry)
    cascaded, control = entry["routing+cascades"], entry["cascade arms, never escalating"]
    assert cascaded["escalated_share"]["mean"] > 0 and control["escalated_share"]["mean"] == 0
    assert control["cascade_share"]["mean"] > 0
    assert cascaded["accuracy"]["mean"] > control["accuracy"]["mean"]  # escalating the unsure answers pays
    assert report["settings"]["cascades"] == ["small->big"]


def test_the_cascade_replay_takes_the_routers_energy_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.evaluation import cascade_replay
    from tests.conftest import make_hashing_extractor, spy_energy_scales

    built = spy_energy_scales(monkeypatch, cascade_replay)
    table = _sharp_table(40)
    for scale, given in (("seen", "seen"), ("online", None)):
        built.clear()
        report = cascade_replay.replay_cascades(
            table, runs=1, tradeoffs=(0.4,), make_features=make_hashing_extractor, energy_scale=scale
        )
        assert report["settings"]["energy_scale"] == scale and set(built) == {given}
    with pytest.raises(InvalidInputError, match="energy_scale"):
        cascade_replay.replay_cascades(table, runs=1, energy_scale="widest")  # type: ignore[arg-type]


def test_the_cascade_replay_command_prints_the_three_strategies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import replay
    from tests.conftest import make_hashing_extractor

    monkeypatch.setattr(replay, "default_features", lambda *args, **kwargs: make_hashing_extractor)
    from greenserv_core.evaluation import cascade_replay

    monkeypatch.setattr(cascade_replay, "default_features", lambda *args, **kwargs: make_hashing_extractor)
    path = write_table(_sharp_table(40), tmp_path / "t.csv")
    argv = ["bench", "cascade-replay", "--table", str(path), "--runs", "1", "--quiet", "--no-embedding-cache"]
    assert cli.main([*argv, "--tradeoffs", "0.4,0.8", "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "routing+cascades" in printed and "never escalating" in printed and "AIQ" in printed
    assert set(json.loads((tmp_path / "r.json").read_text())["fronts"]) >= {"routing", "routing+cascades"}
    with pytest.raises(InvalidInputError, match="FIRST->THEN"):
        cascade_pair("small")


def test_the_cascade_replay_can_pace_one_budget_for_every_strategy() -> None:
    from greenserv_core.evaluation.cascade_replay import STRATEGIES, replay_cascades
    from tests.conftest import make_hashing_extractor

    table, pair = _sharp_table(200), [("small", "big")]
    free = replay_cascades(table, runs=2, tradeoffs=(0.0,), pairs=pair, make_features=make_hashing_extractor)
    paced = replay_cascades(
        table, runs=2, tradeoffs=(0.0,), pairs=pair, make_features=make_hashing_extractor, budget_joules_per_query=3.0
    )
    assert free["by_tradeoff"]["0.0"]["routing"]["joules_per_query"]["mean"] > 9.0  # λ = 0 buys the big model
    entry = paced["by_tradeoff"]["0.0"]
    for strategy in STRATEGIES:
        assert 2.5 < entry[strategy]["joules_per_query"]["mean"] < 3.6  # held near the budget (small: 1 J, big: 10 J)
    # at one spend, escalating the answers the small model doubts buys accuracy
    assert entry["routing+cascades"]["accuracy"]["mean"] > entry["routing"]["accuracy"]["mean"]
    assert paced["settings"]["budget_joules_per_query"] == 3.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InvalidInputError):
            replay_cascades(
                table, runs=1, pairs=pair, make_features=make_hashing_extractor, budget_joules_per_query=bad
            )
