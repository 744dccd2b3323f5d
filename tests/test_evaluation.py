"""Outcome tables, the calibrated simulator and the replay through the real router."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.replay import replay
from greenserv_core.evaluation.simulate import Calibration, simulate_table
from greenserv_core.evaluation.table import OutcomeTable, read_table, write_table
from tests.conftest import make_hashing_extractor

CALIBRATION = [
    Calibration("small", "winogrande", 0.50, 0.05, 0.06, 0.07, 1),
    Calibration("large", "winogrande", 0.90, 0.40, 0.45, 0.50, 1),
    Calibration("small", "gsm8k", 0.20, 0.8, 1.0, 1.2, 256),
    Calibration("large", "gsm8k", 0.85, 4.0, 5.0, 6.0, 256),
]


@pytest.fixture(scope="module")
def table() -> OutcomeTable:
    return simulate_table(CALIBRATION, queries_per_task=300, seed=0)


def test_simulated_table_matches_its_calibration(table: OutcomeTable) -> None:
    assert table.simulated and len(table) == 2 * 2 * 300
    data = table.matrices()
    tasks = np.asarray(data.tasks)
    for cal in CALIBRATION:
        rows, col = tasks == cal.task, data.models.index(cal.model)
        assert data.accuracy[rows, col].mean() == pytest.approx(cal.accuracy, abs=0.07)
    # shared per-query difficulty: models agree more often than independent draws would
    small, large = data.accuracy[:, data.models.index("small")], data.accuracy[:, data.models.index("large")]
    assert np.corrcoef(small, large)[0, 1] > 0.1
    assert set(table.columns["energy_source"]) == {"simulated"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tables_round_trip_with_their_metadata(table: OutcomeTable, tmp_path: Path, suffix: str) -> None:
    path = write_table(table, tmp_path / f"t{suffix}")
    again = read_table(path)
    assert again.simulated and again.metadata == table.metadata
    assert again.columns["accuracy"] == table.columns["accuracy"]
    assert again.columns["query_id"] == table.columns["query_id"]


def test_table_validation() -> None:
    with pytest.raises(InvalidInputError, match="columns"):
        OutcomeTable({"query_id": []})
    with pytest.raises(InvalidInputError, match=r"\.csv or \.parquet"):
        read_table(Path(__file__))


def test_replay_compares_strategies_with_partial_feedback(table: OutcomeTable) -> None:
    report = replay(
        table,
        ["random", "linucb", "oracle", "static:large"],
        tradeoff=0.4,
        runs=2,
        seed=0,
        feedback_rate=0.5,
        make_features=make_hashing_extractor,
    )
    assert report["simulated"] is True and report["settings"]["feedback_rate"] == 0.5
    strategies = report["strategies"]
    assert strategies["oracle"]["cumulative_regret"]["mean"] == 0.0
    assert strategies["static:large"]["shares"]["large"]["mean"] == 1.0
    assert strategies["linucb"]["reward"]["mean"] > strategies["random"]["reward"]["mean"]
    fixed = report["baselines"]
    assert (
        fixed["oracle"]["reward"]
        >= fixed["best_fixed_model_per_task"]["reward"]
        >= fixed["best_single_model"]["reward"]
    )
    assert fixed["best_fixed_model_per_task"]["reward"] > fixed["random"]["reward"]
    assert strategies["oracle"]["reward"]["mean"] == pytest.approx(fixed["oracle"]["reward"])
    for summary in strategies.values():
        assert summary["energy_wh"]["mean"] == pytest.approx(summary["energy_joules"]["mean"] / 3600)
        assert sum(s["mean"] for s in summary["shares"].values()) == pytest.approx(1.0)
