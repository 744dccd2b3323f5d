"""The greenserv command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from greenserv_core import cli
from greenserv_core.evaluation.table import read_table


def write_calibration(path: Path) -> Path:
    fields = [
        "model",
        "params_billion",
        "task",
        "observed_queries",
        "accuracy",
        "joules_per_token_p25",
        "joules_per_token_median",
        "joules_per_token_p75",
        "max_new_tokens",
        "mean_prompt_words",
    ]
    rows = [
        ["small", 1, "winogrande", 100, 0.5, 0.05, 0.06, 0.07, 1, 35],
        ["large", 9, "winogrande", 100, 0.9, 0.4, 0.45, 0.5, 1, 35],
    ]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        writer.writerows(rows)
    return path


def test_bench_simulate_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calibration = write_calibration(tmp_path / "cal.csv")
    table_path = tmp_path / "table.csv"
    assert (
        cli.main(
            [
                "bench",
                "simulate",
                "--calibration",
                str(calibration),
                "--out",
                str(table_path),
                "--queries-per-task",
                "40",
            ]
        )
        == 0
    )
    assert "SIMULATED" in capsys.readouterr().out
    assert read_table(table_path).simulated

    from greenserv_core.evaluation import replay as replay_module
    from greenserv_core.evaluation import sweep as sweep_module
    from tests.conftest import make_hashing_extractor

    original = replay_module.replay
    original_sweep = sweep_module.sweep
    monkeypatch.setattr(
        replay_module, "replay", lambda *a, **k: original(*a, **{**k, "make_features": make_hashing_extractor})
    )
    report_path = tmp_path / "report.json"
    assert (
        cli.main(
            [
                "bench",
                "replay",
                "--table",
                str(table_path),
                "--strategies",
                "random,linucb,oracle",
                "--runs",
                "2",
                "--json",
                str(report_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "| linucb |" in out
    report = json.loads(report_path.read_text())
    assert set(report["strategies"]) == {"random", "linucb", "oracle"} and report["simulated"] is True

    common = ["--table", str(table_path), "--param", "linucb.alpha=0.3", "--runs", "1"]
    args = ["bench", "replay", *common, "--remove-model", "large@10", "--json", str(report_path)]
    assert cli.main([*args, "--plot", str(tmp_path / "replay.png")]) == 0
    report = json.loads(report_path.read_text())
    assert report["settings"]["policy_params"] == {"linucb": {"alpha": 0.3}}
    assert report["settings"]["pool_changes"] == ["remove large@10"]
    assert (tmp_path / "replay.png").exists()

    monkeypatch.setattr(
        sweep_module, "sweep", lambda *a, **k: original_sweep(*a, **{**k, "make_features": make_hashing_extractor})
    )
    sweep_args = ["bench", "sweep", *common, "--strategies", "random,linucb", "--tradeoffs", "0,1"]
    assert cli.main([*sweep_args, "--json", str(tmp_path / "sweep.json"), "--plot", str(tmp_path / "sweep.png")]) == 0
    out = capsys.readouterr().out
    assert "| single models |" in out and "| linucb |" in out
    swept = json.loads((tmp_path / "sweep.json").read_text())
    assert len(swept["strategies"]["linucb"]["points"]) == 2 and (tmp_path / "sweep.png").exists()
    assert cli.main(["bench", "replay", "--table", str(table_path), "--param", "alpha=1"]) == 2
    assert "STRATEGY.NAME=VALUE" in capsys.readouterr().err


def test_errors_are_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "replay", "--table", str(tmp_path / "missing.parquet")]) == 2
    assert "no outcome table" in capsys.readouterr().err


def test_an_interrupted_collect_says_how_to_go_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.evaluation import collect as collect_module
    from greenserv_core.models import bundled as bundled_module

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(bundled_module, "bundled_pool", lambda **kwargs: [])
    monkeypatch.setattr(collect_module, "collect", interrupted)
    out = tmp_path / "real.parquet"
    assert cli.main(["bench", "collect", "--out", str(out)]) == 130
    assert f"{out}.rows.jsonl" in capsys.readouterr().out
