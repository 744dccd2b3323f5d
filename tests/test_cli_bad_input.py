"""The command line refuses bad input up front, with a clear message, and loses no data."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pytest

from greenserv_core import cli
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation import table as table_module
from greenserv_core.evaluation.simulate import read_calibration, simulate_table
from greenserv_core.evaluation.table import OutcomeTable, read_table, write_table
from tests.test_cli import CALIBRATION_FIELDS, write_calibration


@pytest.fixture
def calibration(tmp_path: Path) -> Path:
    return write_calibration(tmp_path / "cal.csv")


@pytest.fixture
def tiny(calibration: Path) -> OutcomeTable:
    """A simulated table: 4 queries × 2 models, with confidence."""
    return simulate_table(read_calibration(calibration), queries_per_task=4, confidence_auroc=0.8)


@pytest.fixture
def tiny_path(tmp_path: Path, tiny: OutcomeTable) -> Path:
    return write_table(tiny, tmp_path / "tiny.csv")


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """Run the command line; it must fail with exit code 2 and an error naming each of ``needles``."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("greenserv: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def refused_as_read(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """Run the command line; argparse must refuse it as it reads it (exit code 2), with an error
    naming each of ``needles``."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    return err


def never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the work ran before the input was checked")


# --- A1: write_table is atomic ---------------------------------------------------------------


def _interrupt_while_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [0]
    original = table_module._csv_values

    def values(column: list[Any]) -> list[Any]:
        calls[0] += 1
        if calls[0] > 3:  # part of the table is already written
            raise KeyboardInterrupt
        return original(column)

    monkeypatch.setattr(table_module, "_csv_values", values)


def test_an_interrupted_write_leaves_the_old_table(
    tmp_path: Path, tiny: OutcomeTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_table(tiny, tmp_path / "t.csv")
    before = path.read_bytes()
    _interrupt_while_writing(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_table(tiny, path)
    assert path.read_bytes() == before
    assert read_table(path).simulated
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temporary files left


def test_an_interrupted_first_write_leaves_no_table(
    tmp_path: Path, tiny: OutcomeTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_while_writing(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_table(tiny, tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()  # never half a table that reads as a real one
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_the_sidecar_is_in_place_before_the_table(
    tmp_path: Path, tiny: OutcomeTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[str] = []
    original = os.replace

    def replace(source: Any, target: Any) -> None:
        renamed.append(Path(target).name)
        original(source, target)

    monkeypatch.setattr(table_module.os, "replace", replace)
    write_table(tiny, tmp_path / "t.csv")
    assert renamed == ["t.csv.meta.json", "t.csv"]


# --- A2, A3, A4: collect and verify check their options before any model loads ------------------


@pytest.mark.parametrize("command", ["collect", "verify"])
def test_collect_and_verify_check_the_out_suffix_first(
    command: str, tmp_path: Path, tiny_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.models import bundled

    monkeypatch.setattr(bundled, "bundled_pool", never)
    out = str(tmp_path / "x.txt")
    argv = ["bench", command, "--out", out] + (["--table", str(tiny_path)] if command == "verify" else [])
    refused(argv, capsys, "--out", ".csv or .parquet", "'.txt'")


def test_verify_refuses_to_overwrite_its_table(
    tiny_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import verify
    from greenserv_core.models import bundled

    monkeypatch.setattr(bundled, "bundled_pool", never)
    monkeypatch.setattr(verify, "verify_table", never)
    before = tiny_path.read_bytes()
    same = str(tiny_path.parent / "." / tiny_path.name)  # the same file, spelt otherwise
    refused(["bench", "verify", "--table", str(tiny_path), "--out", same], capsys, "--out", "--table")
    assert tiny_path.read_bytes() == before


@pytest.mark.parametrize("models", ["", " , "])
def test_collect_refuses_an_empty_list_of_models(
    models: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import collect
    from greenserv_core.models import bundled

    monkeypatch.setattr(bundled, "bundled_pool", never)
    monkeypatch.setattr(collect, "collect", never)
    refused(["bench", "collect", "--out", str(tmp_path / "t.csv"), "--models", models], capsys, "--models")


# --- A5: read_table refuses impossible energy and latency, and repeated rows ----------------------


def _rewrite(path: Path, row: int, column: str, value: str) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows[row][rows[0].index(column)] = value
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


@pytest.mark.parametrize(
    ("column", "value"),
    [("energy_joules", "nan"), ("energy_joules", "-3"), ("latency_s", "nan"), ("latency_s", "-0.5")],
)
def test_read_table_refuses_impossible_energy_and_latency(tiny_path: Path, column: str, value: str) -> None:
    _rewrite(tiny_path, 3, column, value)
    with pytest.raises(InvalidInputError, match=rf"{column} must lie in \[0, ∞\); row 3 has"):
        read_table(tiny_path)


def test_read_table_keeps_zero_energy(tiny_path: Path) -> None:
    _rewrite(tiny_path, 3, "energy_joules", "0")
    assert read_table(tiny_path).columns["energy_joules"][2] == 0.0


def test_read_table_refuses_a_repeated_query_and_model(tiny_path: Path) -> None:
    with open(tiny_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows.append(rows[2])
    with open(tiny_path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(InvalidInputError, match=r"row 9 repeats query_id .* \(first in row 2\)"):
        read_table(tiny_path)


def test_read_table_refuses_a_header_only_table(tiny_path: Path) -> None:
    tiny_path.write_text(tiny_path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no rows"):
        read_table(tiny_path)


# --- A6: replicas' store and limit ----------------------------------------------------------------


def test_replicas_refuse_an_existing_store_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import replicas

    monkeypatch.setattr(replicas, "run_setup", never)
    store = tmp_path / "store"
    store.write_bytes(b"earlier statistics")
    argv = ["bench", "replicas", "--table", "t.csv", "--store", f"file:{store}"]
    refused(argv, capsys, "--store", "already exists")
    assert store.read_bytes() == b"earlier statistics"


@pytest.mark.parametrize(("option", "value"), [("--store", "bogus"), ("--store", "file:"), ("--limit", "0")])
def test_replicas_refuse_bad_options_up_front(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import replicas

    monkeypatch.setattr(replicas, "run_setup", never)
    argv = ["bench", "replicas", "--table", "t.csv", "--store", f"file:{tmp_path / 's'}", option, value]
    refused(argv, capsys, option)


def test_every_shared_replicas_run_starts_from_an_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.evaluation import replicas

    store = tmp_path / "store"
    found: list[bool] = []

    def fake_setup(table: str, *, setup: str, replicas: int, seed: int, **options: Any) -> dict[str, Any]:
        if setup == "shared":
            found.append(store.exists())
            store.write_bytes(b"learned")  # what the replicas share
        return {"setup": setup, "replicas": replicas, "regret": 1.0, "decisions_per_s": 1.0}

    monkeypatch.setattr(replicas, "run_setup", fake_setup)
    replicas.run_replicas("t.csv", store=f"file:{store}", replicas=[2, 3], runs=2)
    assert found == [False] * 4


# --- A7: calibration files ------------------------------------------------------------------------


def _calibration(tmp_path: Path, **changes: str) -> Path:
    row = {
        "model": "small",
        "params_billion": "1",
        "task": "winogrande",
        "observed_queries": "100",
        "accuracy": "0.5",
        "joules_per_token_p25": "0.05",
        "joules_per_token_median": "0.06",
        "joules_per_token_p75": "0.07",
        "max_new_tokens": "1",
        "mean_prompt_words": "35",
    }
    row.update(changes)
    path = tmp_path / "bad_cal.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CALIBRATION_FIELDS)
        writer.writeheader()
        writer.writerow(row)
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"accuracy": "1.7"}, r"row 1, column 'accuracy' must lie in \[0, 1\]"),
        ({"accuracy": "-0.1"}, r"row 1, column 'accuracy' must lie in \[0, 1\]"),
        ({"accuracy": "nan"}, r"row 1, column 'accuracy' must lie in \[0, 1\]"),
        ({"accuracy": "abc"}, r"row 1, column 'accuracy': 'abc' is not a number"),
        ({"joules_per_token_p25": "-1"}, r"row 1, column 'joules_per_token_p25' must be a positive number"),
        ({"joules_per_token_median": "0"}, r"row 1, column 'joules_per_token_median' must be a positive number"),
        ({"joules_per_token_p75": "nan"}, r"row 1, column 'joules_per_token_p75' must be a positive number"),
        ({"joules_per_token_p25": "0.09"}, r"row 1: joules per token must be ordered"),
        ({"max_new_tokens": "0"}, r"row 1, column 'max_new_tokens' must be a whole number of at least 1"),
        ({"model": " "}, r"row 1, column 'model' is blank"),  # simulated a model named ''
        ({"task": ""}, r"row 1, column 'task' is blank"),
    ],
)
def test_read_calibration_refuses_impossible_figures(tmp_path: Path, changes: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        read_calibration(_calibration(tmp_path, **changes))


def test_read_calibration_refuses_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no calibration file at"):
        read_calibration(tmp_path / "missing.csv")
    with pytest.raises(InvalidInputError, match="is a folder"):
        read_calibration(tmp_path)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(InvalidInputError, match="not a CSV file"):
        read_calibration(binary)
    short = tmp_path / "short.csv"
    short.write_text("model,task,accuracy\nsmall,winogrande,0.5\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"lacks the calibration columns \['joules_per_token_p25'"):
        read_calibration(short)


def test_read_calibration_refuses_a_repeated_model_and_task(calibration: Path) -> None:
    with open(calibration, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    calibration.write_text("\n".join([*lines, lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="row 3 repeats model 'small' on task 'winogrande'"):
        read_calibration(calibration)


def test_bench_simulate_reports_a_bad_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _calibration(tmp_path, joules_per_token_median="x")
    refused(["bench", "simulate", "--calibration", str(path), "--out", str(tmp_path / "t.csv")], capsys, str(path))


# --- B, C, D, E: nonsense numbers, ignored options and tracebacks, refused before the work --------

MISSING = "no-such-table.csv"  # a check that came after reading the table would report this instead
SIMULATE = ["bench", "simulate", "--calibration", MISSING, "--out", "t.csv"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        # 8: no runs
        (["bench", "replay", "--table", MISSING, "--runs", "0"], "--runs"),
        (["bench", "sweep", "--table", MISSING, "--runs", "0"], "--runs"),
        (["bench", "budget", "--table", MISSING, "--runs", "0"], "--runs"),
        (["bench", "replay", "--table", MISSING, "--feedback-rate", "nan"], "--feedback-rate"),
        (["bench", "replay", "--table", MISSING, "--per-task", "0"], "--per-task"),
        # 9, 19: cascade-replay
        (["bench", "cascade-replay", "--table", MISSING, "--feedback-rate", "1.5"], "--feedback-rate"),
        (["bench", "cascade-replay", "--table", MISSING, "--feedback-rate", "nan"], "--feedback-rate"),
        (["bench", "cascade-replay", "--table", MISSING, "--tradeoffs", "0.4,abc"], "--tradeoffs"),
        (["bench", "cascade-replay", "--table", MISSING, "--tradeoffs", ""], "--tradeoffs"),
        (["bench", "cascade-replay", "--table", MISSING, "--runs", "0"], "--runs"),
        # 10, 11: the fake-model benchmarks
        (["bench", "replay-speed", "--calibration", MISSING, "--queries", "0"], "--queries"),
        (["bench", "synthetic-world", "--steps", "0"], "--steps"),
        (["bench", "synthetic-world", "--seeds", "0,0"], "names a seed twice"),  # was two runs counted
        (["bench", "budget", "--table", MISSING, "--fractions", "0.5,0.5"], "names a number twice"),
        (["bench", "replicas", "--table", MISSING, "--store", "file:s", "--replicas", "2,2"], "names a count twice"),
        (["bench", "synthetic-world", "--last", "0"], "--last"),
        (["bench", "synthetic-world", "--steps", "100", "--last", "500"], "--last"),
        (["bench", "synthetic-world", "--sparse-feedback", "1.5"], "--sparse-feedback"),
        (["bench", "synthetic-world", "--sparse-feedback", "nan"], "--sparse-feedback"),
        # 13: a --param for a strategy that does not run
        (["bench", "replay", "--table", MISSING, "--strategies", "linucb", "--param", "thompson.v=2"], "--param"),
        (["bench", "sweep", "--table", MISSING, "--strategies", "linucb", "--param", "epsilon.e=0.1"], "--param"),
        # 15, 16, 18, 28: budget options
        (["bench", "budget", "--table", MISSING, "--fractions", "0.5", "--joules-per-query", "10"], "not both"),
        (["bench", "budget", "--table", MISSING, "--joules-per-query", "-10"], "--joules-per-query"),
        (["bench", "budget", "--table", MISSING, "--strategy", "linucb,thompson"], "--strategy"),
        (["bench", "budget", "--table", MISSING, "--arrival-rate", "2"], "--arrival-rate"),
        (["bench", "budget", "--table", MISSING, "--window", "1h", "--arrival-rate", "0"], "--arrival-rate"),
        (["bench", "budget", "--table", MISSING, "--window", "1h", "--arrival-rate", "nan"], "--arrival-rate"),
        (["bench", "budget", "--table", MISSING, "--window", "1h"], "--arrival-rate"),
        (
            ["bench", "budget", "--table", MISSING, "--window", "1h", "--arrival-rate", "1", "--window-queries", "9"],
            "--window-queries",
        ),
        (["bench", "budget", "--table", MISSING, "--window-queries", "0"], "--window-queries must be at least 2"),
        (
            ["bench", "cascade-replay", "--table", MISSING, "--budget-joules-per-query", "0"],
            "--budget-joules-per-query: ",
        ),
        (["bench", "cascade-replay", "--table", MISSING, "--price-on", "joules"], "give --budget-joules-per-query"),
        (
            ["bench", "cascade-replay", "--table", MISSING, "--tradeoffs", "0.2,0.6", "--budget-joules-per-query", "9"],
            "give one λ",
        ),
        (["bench", "replicas", "--table", MISSING, "--store", "file:s", "--interval", "0"], "--interval"),
        (["bench", "replay", "--table", MISSING, "--arrival-rate", "2"], "--arrival-rate"),
        (["bench", "replay", "--table", MISSING, "--budget", "50J/query", "--arrival-rate", "2"], "--arrival-rate"),
        (["bench", "replay", "--table", MISSING, "--budget", "2Wh/h", "--arrival-rate", "-1"], "--arrival-rate"),
        (["bench", "replay", "--table", MISSING, "--budget", "2Wh/h"], "needs --arrival-rate"),
        (["bench", "replay", "--table", MISSING, "--budget", "0J/query"], "--budget: the energy budget"),
        (["bench", "replay", "--table", MISSING, "--budget-joules-per-query", "0"], "--budget-joules-per-query: "),
        # 22, 23: overhead, local-models and the classifier benchmark
        (["bench", "overhead", "--queries", "0"], "--queries"),
        (["bench", "overhead", "--queries", "-3", "--save-prompts", "p.jsonl"], "--queries"),
        (["bench", "overhead", "--device", "gpu"], "--device"),
        (["bench", "local-models", "--queries", "0"], "--queries"),
        (["bench", "local-models", "--models", " , "], "--models names no model"),
        (["bench", "classifier", "--per-source", "0"], "--per-source"),
        (["bench", "classifier", "--per-label", "0"], "--per-label"),
        (["bench", "classifier", "--classifier", "no-such-classifier.json"], "no-such-classifier.json"),
        # 12: simulate
        (
            ["bench", "simulate", "--calibration", MISSING, "--out", "t.csv", "--queries-per-task", "0"],
            "--queries-per-task",
        ),
        (
            ["bench", "simulate", "--calibration", MISSING, "--out", "t.csv", "--queries-per-task", "-2"],
            "--queries-per-task",
        ),
        (
            ["bench", "simulate", "--calibration", MISSING, "--out", "t.csv", "--confidence-auroc", "2"],
            "--confidence-auroc",
        ),
    ],
)
def test_nonsense_options_are_refused_up_front(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import overhead, replay_speed, synthetic_world, task_generalisation

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(synthetic_world, "run_synthetic_world", never)
    monkeypatch.setattr(replay_speed, "run_replay_speed", never)
    monkeypatch.setattr(overhead, "run_overhead", never)
    monkeypatch.setattr(overhead, "overhead_prompts", never)
    monkeypatch.setattr(task_generalisation, "evaluate_generalisation", never)
    refused(argv, capsys, needle)


def test_overhead_says_when_cuda_is_not_there(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from greenserv_core.evaluation import overhead

    monkeypatch.setattr(overhead, "run_overhead", never)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    refused(["bench", "overhead", "--device", "cuda"], capsys, "--device cuda is not available", "--device cpu")


def test_overhead_refuses_a_folder_to_save_prompts_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import overhead

    monkeypatch.setattr(overhead, "overhead_prompts", never)
    refused(
        ["bench", "overhead", "--queries", "3", "--save-prompts", str(tmp_path)], capsys, "--save-prompts", "folder"
    )


def test_a_missing_prompts_file_is_named(tmp_path: Path) -> None:
    from greenserv_core.evaluation.prompt_files import read_prompts

    with pytest.raises(InvalidInputError, match="no prompts file at"):
        read_prompts(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidInputError, match="is a folder"):
        read_prompts(tmp_path)


def test_a_bad_classifier_file_is_named(tmp_path: Path) -> None:
    from greenserv_core.errors import StateFileError
    from greenserv_core.features.task_classifier import TaskClassifier

    with pytest.raises(StateFileError, match="no task classifier file at"):
        TaskClassifier.load(tmp_path / "missing.json")
    with pytest.raises(StateFileError, match="folder"):
        TaskClassifier.load(tmp_path)
    for text, message in [("not json", "not JSON"), ("[1, 2]", "not a JSON object"), ("{}", "format/version")]:
        path = tmp_path / "bad.json"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(StateFileError, match=message):
            TaskClassifier.load(path)


def test_replay_refuses_no_runs(tiny: OutcomeTable) -> None:
    from greenserv_core.evaluation.replay import replay

    with pytest.raises(InvalidInputError, match="runs must be at least 1"):
        replay(tiny, ["random"], runs=0)


def test_cascade_replay_refuses_a_feedback_rate_outside_zero_to_one(tiny: OutcomeTable) -> None:
    from greenserv_core.evaluation.cascade_replay import replay_cascades

    for rate in (1.5, -0.1, float("nan")):
        with pytest.raises(InvalidInputError, match="feedback_rate must be in"):
            replay_cascades(tiny, feedback_rate=rate)


def test_simulate_refuses_no_queries(calibration: Path) -> None:
    with pytest.raises(InvalidInputError, match="queries_per_task must be at least 1"):
        simulate_table(read_calibration(calibration), queries_per_task=0)


# --- 21, 25: output paths are checked before the work -----------------------------------------------


def test_simulate_refuses_a_folder_or_an_unwritable_out(
    tmp_path: Path, calibration: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    argv = ["bench", "simulate", "--calibration", str(calibration), "--queries-per-task", "2", "--out"]
    refused([*argv, str(folder)], capsys, "--out", "folder")
    blocked = tmp_path / "a-file"
    blocked.write_text("", encoding="utf-8")
    refused([*argv, str(blocked / "t.csv")], capsys, "--out", "is a file, not a folder")  # before the draws


@pytest.mark.parametrize("command", ["replay", "sweep", "budget"])
def test_json_and_plot_paths_are_checked_before_the_replay(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", command, "--table", MISSING]
    refused([*argv, "--json", str(tmp_path)], capsys, "--json", "folder")
    refused([*argv, "--plot", str(tmp_path)], capsys, "--plot", "folder")
    refused([*argv, "--plot", str(tmp_path / "plot.txt")], capsys, "--plot", ".txt")


def test_cascades_check_the_json_path_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(["bench", "cascades", "--table", MISSING, "--json", str(tmp_path)], capsys, "--json", "folder")
    refused(["bench", "cascade-replay", "--table", MISSING, "--json", str(tmp_path)], capsys, "--json", "folder")


def test_a_plot_without_a_suffix_reports_the_file_it_wrote(tmp_path: Path) -> None:
    from greenserv_core.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    figure, axes = plt.subplots()
    axes.plot([0, 1], [0, 1])
    path = _save(plt, figure, tmp_path / "out" / "noext")
    assert path == tmp_path / "out" / "noext.png"
    assert path.exists()


# --- 14, 26, 27: chat and demo -------------------------------------------------------------------


def test_chat_and_demo_check_their_options_before_loading_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.models import pool

    monkeypatch.setattr(pool, "build_backends", never)
    refused(["chat", "--state", str(tmp_path)], capsys, "--state", "folder")
    refused(["chat", "--max-new-tokens", "0"], capsys, "--max-new-tokens")
    refused(["demo", "--plot", str(tmp_path)], capsys, "--plot", "folder")
    refused(["demo", "--queries", "0"], capsys, "--queries")


@pytest.mark.parametrize(
    "command",
    [
        ["chat"],
        ["demo"],
        ["bench", "collect", "--out", "t.csv"],
        ["bench", "verify", "--table", "t.csv", "--out", "o.csv"],
    ],
)
def test_meter_names_are_checked_as_the_command_line_is_read(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    refused_as_read([*command, "--meter", "bogus"], capsys, "--meter", "cpu-estimate")


@pytest.mark.parametrize("meter", ["nvml", "rapl"])
@pytest.mark.parametrize(
    "command", [["chat", "--interactive"], ["demo", "--plot", ""], ["bench", "collect", "--out", "t.csv"]]
)
def test_a_named_meter_that_cannot_measure_here_is_refused_before_any_model_loads(
    meter: str, command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import greenserv_core
    from greenserv_core.backends.transformers import TransformersBackend
    from greenserv_core.energy import make_meter
    from greenserv_core.evaluation import collect
    from greenserv_core.models import bundled, pool
    from greenserv_core.models.spec import ModelSpec

    try:
        make_meter(meter, [])  # nvml always refuses a model on the CPU; rapl where no counter can be read
    except (InvalidInputError, OSError):
        pass
    else:
        pytest.skip(f"the {meter} meter works on this machine")
    local = TransformersBackend(ModelSpec("tiny", path="no-weights-needed"), device="cpu", meter=meter)
    monkeypatch.setattr(pool, "bundled_pool", lambda names=None, **options: [local])  # the real build_backends
    monkeypatch.setattr(bundled, "bundled_pool", lambda names=None, **options: [local])
    monkeypatch.setattr(greenserv_core, "GreenServRouter", never)  # the router and the collection come after
    monkeypatch.setattr(collect, "collect", never)
    refused([*command, "--meter", meter], capsys, f"--meter {meter} cannot measure tiny")


def test_a_loaded_chat_state_keeps_its_strategy(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from greenserv_core.cli.chat import _keep_saved_settings, build_chat_parser

    router: Any = SimpleNamespace(strategy="linucb", tradeoff=0.4, energy_budget=None)
    state = tmp_path / "state.json"

    def args(*argv: str) -> Any:
        return build_chat_parser().parse_args(list(argv))

    _keep_saved_settings(router, args(), state)  # nothing asked: the saved settings stay
    assert (router.strategy, router.tradeoff) == ("linucb", 0.4)
    _keep_saved_settings(router, args("--strategy", "linucb", "--tradeoff", "0.7"), state)
    assert router.tradeoff == 0.7  # an explicit λ applies to the answers to come
    with pytest.raises(InvalidInputError, match=r"saved with the strategy linucb.*--strategy"):
        _keep_saved_settings(router, args("--strategy", "thompson"), state)
    router.energy_budget = object()
    with pytest.raises(InvalidInputError, match="--tradeoff"):
        _keep_saved_settings(router, args("--tradeoff", "0.1"), state)


def test_a_loaded_chat_state_refuses_another_seed(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from greenserv_core.cli.chat import _keep_saved_settings, build_chat_parser

    router: Any = SimpleNamespace(strategy="linucb", tradeoff=0.4, energy_budget=None, seed=1)
    state = tmp_path / "state.json"
    parse = build_chat_parser().parse_args
    assert parse([]).seed is None  # left out: a new router's seed is 0, a loaded one keeps its own
    _keep_saved_settings(router, parse([]), state)
    _keep_saved_settings(router, parse(["--seed", "1"]), state)  # the saved seed, named
    with pytest.raises(InvalidInputError, match=r"saved with the seed 1.*not --seed 7"):
        _keep_saved_settings(router, parse(["--seed", "7"]), state)  # was silently ignored
    assert router.seed == 1


def test_a_loaded_chat_state_refuses_another_embedder(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from greenserv_core.cli.chat import _keep_saved_settings, build_chat_parser

    features = SimpleNamespace(embedder=SimpleNamespace(name="static:all-MiniLM-L6-v2:384:a08b6559bff0"))
    router: Any = SimpleNamespace(strategy="linucb", tradeoff=0.4, energy_budget=None, seed=0, features=features)
    parse = build_chat_parser().parse_args
    _keep_saved_settings(router, parse(["--embedder", "static"]), tmp_path / "state.json")  # the saved one, named
    with pytest.raises(InvalidInputError, match=r"saved with static features.*not --embedder minilm"):
        _keep_saved_settings(router, parse(["--embedder", "minilm"]), tmp_path / "state.json")  # was ignored


# --- a review of 2026-12-05: outputs that would destroy inputs, seeds, stores, declared models ---


@pytest.mark.parametrize("command", ["replay", "sweep", "budget", "cascade-replay", "cascades"])
def test_an_output_that_is_the_table_is_refused_and_the_table_kept(
    command: str, tiny_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tiny_path.read_bytes()
    refused(["bench", command, "--table", str(tiny_path), "--json", str(tiny_path)], capsys, "--json", "--table too")
    assert tiny_path.read_bytes() == before


@pytest.mark.parametrize("command", ["replay", "sweep", "budget", "cascade-replay", "cascades"])
def test_an_output_that_is_the_tables_metadata_is_refused_and_the_metadata_kept(
    command: str, tiny_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sidecar = Path(f"{tiny_path}.meta.json")
    before = sidecar.read_bytes()
    refused(["bench", command, "--table", str(tiny_path), "--json", str(sidecar)], capsys, "--table's metadata")
    assert sidecar.read_bytes() == before  # the report was written over it: the table read as real


@pytest.mark.parametrize("command", ["replay", "sweep", "budget"])
def test_a_plot_over_the_json_or_under_a_file_is_refused_first(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same = str(tmp_path / "same.png")
    refused(["bench", command, "--table", MISSING, "--json", same, "--plot", same], capsys, "--plot", "--json too")
    bare = str(tmp_path / "same")  # matplotlib writes it as same.png
    refused(["bench", command, "--table", MISSING, "--json", same, "--plot", bare], capsys, "--plot", "--json too")
    afile = tmp_path / "afile"
    afile.write_text("", encoding="utf-8")
    refused(["bench", command, "--table", MISSING, "--json", str(afile / "r.json")], capsys, "--json", "not a folder")


def test_simulate_does_not_write_over_its_calibration(calibration: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = calibration.with_name("calibration-copy.csv")
    copy.write_bytes(calibration.read_bytes())
    argv = ["bench", "simulate", "--calibration", str(copy), "--out", str(copy)]
    refused(argv, capsys, "--out", "--calibration too")
    assert copy.read_bytes() == calibration.read_bytes()


def test_simulate_says_when_a_task_has_fewer_queries_than_asked(
    calibration: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.csv"
    argv = ["bench", "simulate", "--calibration", str(calibration), "--queries-per-task", "10000000"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "NOTE: fewer than --queries-per-task 10000000" in said
    assert sum(read_table(out).metadata["queries_by_task"].values()) == len(read_table(out)) // 2  # two models


@pytest.mark.parametrize(
    "command",
    [
        ["bench", "replay", "--table", MISSING],
        ["bench", "sweep", "--table", MISSING],
        ["bench", "budget", "--table", MISSING],
        ["bench", "cascade-replay", "--table", MISSING],
        ["chat"],
        ["demo"],
    ],
)
def test_a_negative_seed_is_refused_as_the_command_line_is_read(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    refused_as_read([*command, "--seed", "-1"], capsys, "--seed")


def test_a_negative_seed_is_refused_by_the_router_and_the_replay(tiny: OutcomeTable) -> None:
    from greenserv_core import FakeBackend, GreenServRouter
    from greenserv_core.evaluation.replay import replay
    from tests.conftest import make_hashing_extractor

    for seed in (-1, 1.5, True):
        with pytest.raises(InvalidInputError, match="seed must be None or an integer of 0 or more"):
            GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), seed=seed)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="seed"):
        replay(tiny, ["random"], seed=-1, make_features=make_hashing_extractor)


def test_a_negative_seed_is_refused_by_the_cascade_replay_before_its_work(
    tiny: OutcomeTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import cascade_replay
    from tests.conftest import make_hashing_extractor

    monkeypatch.setattr(cascade_replay, "cascade_report", never)  # numpy's ValueError came after it
    seeds: list[Any] = [-1, 1.5, None]
    for seed in seeds:
        with pytest.raises(InvalidInputError, match="seed"):
            cascade_replay.replay_cascades(tiny, seed=seed, runs=1, make_features=make_hashing_extractor)


def test_out_of_range_tradeoffs_and_infinite_budgets_are_refused_before_any_replay(
    tiny_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import budgets, sweep

    monkeypatch.setattr(sweep, "sweep", never)
    monkeypatch.setattr(budgets, "budget_sweep", never)
    refused(["bench", "sweep", "--table", str(tiny_path), "--tradeoffs", "0.4,1.5"], capsys, "--tradeoffs")
    refused(["bench", "budget", "--table", str(tiny_path), "--tradeoffs", "0.2,5"], capsys, "--tradeoffs")
    refused(["bench", "budget", "--table", str(tiny_path), "--fractions", "inf"], capsys, "--fractions")


def test_horizons_past_the_stream_are_said(tiny_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "replay", "--table", str(tiny_path), "--runs", "1", "--strategies", "random"]
    assert cli.main([*argv, "--horizons", "2,100000", "--embedder", "static"]) == 0
    assert "--horizons 100000 reach past the stream" in capsys.readouterr().out


def test_cascade_replay_refuses_a_confidence_column_without_values(
    tiny: OutcomeTable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    columns = dict(tiny.columns)
    columns["confidence"] = [float("nan")] * len(tiny)
    empty = write_table(OutcomeTable(columns, metadata=tiny.metadata), tmp_path / "empty.csv")
    refused(["bench", "cascade-replay", "--table", str(empty), "--runs", "1", "--quiet"], capsys, "confidence column")


@pytest.mark.parametrize("store", ["redis://localhost:1", "redis:localhost:6379", "redis:redis://127.0.0.1:1/0"])
def test_replicas_refuse_a_redis_store_they_cannot_use(
    store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import replicas

    monkeypatch.setattr(replicas, "run_setup", never)
    refused(["bench", "replicas", "--table", "t.csv", "--store", store], capsys, "--store")


def test_chat_refuses_a_static_strategy_outside_the_pool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core import FakeBackend
    from greenserv_core.models import pool

    monkeypatch.setattr(
        pool, "build_backends", lambda models, meter="auto", option=None: [FakeBackend("a"), FakeBackend("b")]
    )
    state = tmp_path / "state.json"
    argv = ["chat", "--strategy", "static:nope", "--embedder", "static", "--state", str(state)]
    refused(argv, capsys, "static:nope", "not in the pool")
    assert not state.exists()  # no state saved that could not continue


def test_a_folder_transformers_cannot_read_is_a_clear_error(tmp_path: Path) -> None:
    from greenserv_core.backends.transformers import TransformersBackend
    from greenserv_core.errors import MissingResourceError
    from greenserv_core.models.spec import ModelSpec

    backend = TransformersBackend(ModelSpec("empty", path=str(tmp_path)))
    with pytest.raises(MissingResourceError, match=r"cannot load model 'empty' from"):
        _ = backend.info


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prior_joules_per_token", -5.0),
        ("prior_joules_per_token", float("nan")),
        ("prior_seconds_per_token", float("-inf")),
        ("context_window", 2.5),
        ("capabilities", "tools"),
    ],
)
def test_declared_models_refuse_impossible_values(field: str, value: object) -> None:
    from greenserv_core.backends.base import ModelInfo
    from greenserv_core.models.spec import ModelSpec

    with pytest.raises(InvalidInputError, match=field):
        ModelInfo("m", **{field: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=field):
        ModelSpec("m", path="/models/m", **{field: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="path"):
        ModelSpec("m", path="")
    assert ModelInfo("m", capabilities={"tools"}).capabilities == frozenset({"tools"})  # type: ignore[arg-type]
    import numpy as np

    numpy_info = ModelInfo("m", context_window=np.int64(4096), prior_joules_per_token=np.float32(0.5))  # type: ignore[arg-type]
    assert (numpy_info.context_window, numpy_info.prior_joules_per_token) == (4096, 0.5)
    assert ModelInfo("m", capabilities={"tools": 1}.keys()).capabilities == frozenset({"tools"})  # type: ignore[arg-type]


def test_the_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    from greenserv_core import __version__

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"greenserv {__version__}"


def test_a_bad_policy_parameter_is_named() -> None:
    from greenserv_core.bandits import make_policy

    with pytest.raises(InvalidInputError, match=r"bad parameters for 'linucb' \(alpha='abc'\)"):
        make_policy("linucb", 4, alpha="abc")


def test_a_strategy_named_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    refused(["bench", "replay", "--table", MISSING, "--strategies", "linucb,linucb"], capsys, "named twice", "linucb")


def test_chat_fails_when_no_query_is_answered(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core import FakeBackend
    from greenserv_core.models import pool

    monkeypatch.setattr(
        pool, "build_backends", lambda models, meter="auto", option=None: [FakeBackend("a", context_window=4)]
    )
    assert cli.main(["chat", "--embedder", "static", "--max-new-tokens", "8"]) == 1  # no prompt fits the window
    captured = capsys.readouterr()
    assert "[no answer]" in captured.out and "no query was answered" in captured.err


@pytest.mark.parametrize("dtypes", [",", "nope", "float32,nope"])
def test_local_models_check_their_dtypes_before_loading(
    dtypes: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import local_models

    monkeypatch.setattr(local_models, "run_local_models", never)
    refused(["bench", "local-models", "--dtypes", dtypes], capsys, "--dtypes")


def test_overhead_will_not_save_the_bundled_prompts_over_the_prompts_it_was_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "my_prompts.jsonl"
    mine.write_text('{"prompt": "mine"}\n', encoding="utf-8")
    argv = ["bench", "overhead", "--prompts", str(mine), "--save-prompts", str(mine)]
    refused(argv, capsys, "--save-prompts", "--prompts")
    assert mine.read_text(encoding="utf-8") == '{"prompt": "mine"}\n'


def test_cascade_replay_names_a_bad_policy_before_it_reads_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    refused(["bench", "cascade-replay", "--table", MISSING, "--policy", "no-such-policy"], capsys, "no-such-policy")


def test_ctrl_c_in_any_command_is_a_word_and_130_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core import cli
    from greenserv_core.cli import benchmarks

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmarks, "_tool_calling", interrupted)  # the parser is built per call: it takes this
    assert cli.main(["bench", "tool-calling"]) == 130
    assert "greenserv: interrupted" in capsys.readouterr().err


def test_a_replicas_file_store_under_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from greenserv_core import cli

    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = ["bench", "replicas", "--table", str(tmp_path / "t.parquet"), "--store", f"file:{afile}/store"]
    assert cli.main(argv) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


# ---- review fixes (2026-12-05) ----------------------------------------------------------------------
def test_an_output_that_cannot_be_written_is_one_clear_line_before_the_run(
    tiny_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "replay", "--table", str(tiny_path), "--runs", "1", "--strategies", "random,epsilon"]
    assert cli.main([*argv, "--json", "/proc/no/such.json"]) == 2  # a traceback, exit code 1
    captured = capsys.readouterr()
    assert "greenserv: error: --json /proc/no/such.json: cannot write" in captured.err
    assert "Traceback" not in captured.err and "epsilon" not in captured.out  # (it came after the run's tables)


def test_parameters_for_what_is_no_router_policy_are_refused(
    tiny_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "replay", "--table", str(tiny_path), "--runs", "1", "--strategies", "known-accuracy,random"]
    refused([*argv, "--param", "known-accuracy.nonsense=3"], capsys, "take no parameters")  # was silently ignored


def test_a_pool_change_that_would_leave_no_model_is_refused(
    tiny_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "replay", "--table", str(tiny_path), "--runs", "1", "--strategies", "oracle"]
    changes = ["--remove-model", "large@2", "--remove-model", "small@3"]
    refused([*argv, *changes], capsys, "would leave the pool empty")  # ran, with a regret of -inf


def test_random_routing_that_scores_nothing_gives_no_ratio_rather_than_a_crash() -> None:
    from greenserv_core.evaluation.replay import relative

    summary = {"reward": {"mean": 0.0}, "accuracy": {"mean": 0.0}, "energy_joules": {"mean": 0.0}}
    fixed = {"random": {"reward": 0.0}, "best_fixed_model_per_task": {"reward": 0.0}, "oracle": {"reward": 0.0}}
    out = relative({"baselines": fixed, "strategies": {"random": summary, "epsilon": summary}})
    assert out["epsilon"]["accuracy_vs_random"] is None and out["epsilon"]["energy_vs_random"] is None


def test_collect_refuses_an_empty_list_of_tasks(tmp_path: Path) -> None:
    from greenserv_core import FakeBackend
    from greenserv_core.evaluation.collect import collect

    with pytest.raises(InvalidInputError, match="tasks is empty"):
        collect([FakeBackend("m")], tmp_path / "t.csv", tasks=[])
    assert not (tmp_path / "t.csv").exists()


def test_a_sweep_over_models_that_spend_alike_is_refused_before_it_runs(
    tmp_path: Path, tiny: OutcomeTable, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keep = [i for i, model in enumerate(tiny.columns["model"]) if model == "large"]
    alone = OutcomeTable({name: [values[i] for i in keep] for name, values in tiny.columns.items()}, tiny.metadata)
    path = write_table(alone, tmp_path / "alone.csv")
    from greenserv_core.evaluation import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "replay", never)
    for command in ("sweep", "budget"):
        refused(["bench", command, "--table", str(path), "--runs", "1"], capsys, "mean joules differ")


# --- review fixes (2026-12-06) -----------------------------------------------------------------------
def test_repeated_and_conflicting_options_are_refused_before_the_work(
    tiny_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import replay as replay_module
    from greenserv_core.models import pool

    monkeypatch.setattr(replay_module, "replay", never)
    table = str(tiny_path)
    refused(
        ["bench", "replay", "--table", table, "--strategies", "static:a,random", "--param", "static.arm=b"],
        capsys,
        "static.arm",
    )  # the row said static:a and routed to b
    refused(
        [
            "bench",
            "replay",
            "--table",
            table,
            "--param",
            "linucb.alpha=0.3",
            "--param",
            "linucb.alpha=5",
            "--strategies",
            "linucb",
        ],
        capsys,
        "linucb.alpha twice",
    )
    refused(
        ["bench", "replay", "--table", table, "--warm-start", "2", "--overstate", "a:+0.3", "--overstate", "a:-0.1"],
        capsys,
        "--overstate",
    )
    refused(["bench", "replay", "--table", table, "--strategies", "vw-squarecb,vw-squarecb"], capsys, "twice")
    refused(["bench", "cascade-replay", "--table", table, "--tradeoffs", "0.4,0.4"], capsys, "twice")
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    refused(["bench", "replay", "--table", str(folder)], capsys, "is a folder")  # IsADirectoryError
    monkeypatch.setattr(pool, "build_backends", never)
    refused(["chat", "--state", "/proc/state.json"], capsys, "cannot write")  # a traceback after the session


def test_a_replay_with_a_budget_and_only_the_oracle_reports_that_nothing_is_paced(
    tiny_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    argv = ["bench", "replay", "--table", str(tiny_path), "--strategies", "oracle", "--runs", "1"]
    assert cli.main([*argv, "--budget-joules-per-query", "150", "--json", str(out)]) == 0  # failed after the work
    assert out.exists() and "no strategy here is paced" in capsys.readouterr().out


def test_the_shift_table_names_the_windows_it_measured() -> None:
    from greenserv_core.cli.replay import shift_rows

    found = {"readapt_steps": {"mean": 3, "runs": [3], "reached": 1}, "share_before": None, "share_after": None}
    report = {"settings": {"queries": 160}, "strategies": {}, "peers": []}
    rows = shift_rows(report, {"model": "m", "step": 50, "strategies": {"epsilon": found}})
    assert {"m share, 50 before", "m share, 110 after"} <= set(rows[0])  # said 1000 before / 1000 after


def test_the_shift_table_counts_the_steps_after_up_to_the_next_shift_or_pool_change() -> None:
    from greenserv_core.cli.replay import shift_rows

    found = {"readapt_steps": {"mean": 3, "runs": [3], "reached": 1}, "share_before": None, "share_after": None}
    shift = {"model": "m", "step": 50, "strategies": {"epsilon": found}}
    later = {"step": 70, "strategies": {}}
    report = {"settings": {"queries": 160, "pool_changes": []}, "shifts": [shift, later], "strategies": {}}
    assert "m share, 20 after" in shift_rows(report, shift)[0]  # said 110: the share stops at the next shift
    report = {"settings": {"queries": 160, "pool_changes": ["add n@40", "remove n@65"]}, "shifts": [shift]}
    assert "m share, 15 after" in shift_rows(report, shift)[0]  # and at the next pool change


def test_valid_static_params_pass_and_chat_checks_the_folder_a_save_would_make(
    tiny_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.models import pool

    argv = ["bench", "replay", "--table", str(tiny_path), "--runs", "1", "--strategies", "static"]
    assert cli.main([*argv, "--param", "static.arm=large"]) == 0  # refused: no static:ARM names another arm
    capsys.readouterr()
    monkeypatch.setattr(pool, "build_backends", never)
    refused(["chat", "--state", "/proc/newdir/state.json"], capsys, "cannot write")  # the models loaded first


_FEW_PROMPTS = {  # per task of the overhead mix: one task short, one prompt in two tasks
    "mmlu": ["a", "b"],
    "hellaswag": ["b", "c"],
    "winogrande": ["d"],
    "gsm8k": ["e", "f"],
    "boolq": ["g", "h"],
    "triviaqa": ["i", "j", "k", "l", "m", "n"],
}


def _few_examples(task: str, *, limit: int | None = None, seed: int = 0) -> list[Any]:
    """A stand-in for ``load_task`` over :data:`_FEW_PROMPTS` (14 distinct prompts in all)."""
    import random

    from greenserv_core.datasets import TaskExample

    examples = [TaskExample(task, f"{task}-{i}", prompt, "A") for i, prompt in enumerate(_FEW_PROMPTS[task])]
    return examples if limit is None or limit >= len(examples) else random.Random(seed).sample(examples, limit)


@pytest.mark.parametrize(("queries", "written"), [(12, 12), (20, 14)])
def test_overhead_saves_as_many_distinct_prompts_as_it_says(
    queries: int, written: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import overhead

    monkeypatch.setattr(overhead, "load_task", _few_examples)
    saved = tmp_path / "prompts.jsonl"
    assert cli.main(["bench", "overhead", "--queries", str(queries), "--save-prompts", str(saved)]) == 0
    lines = saved.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(set(lines)) == written
    assert f"wrote {written} prompts to {saved}" in capsys.readouterr().out


def test_overhead_saves_prompts_in_a_folder_it_makes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import overhead

    monkeypatch.setattr(overhead, "load_task", _few_examples)
    saved = tmp_path / "new" / "sub" / "prompts.jsonl"
    assert cli.main(["bench", "overhead", "--queries", "3", "--save-prompts", str(saved)]) == 0  # FileNotFoundError
    assert len(saved.read_text(encoding="utf-8").splitlines()) == 3
    assert f"wrote 3 prompts to {saved}" in capsys.readouterr().out


# --- review fixes (replay) ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "replay", "--table", MISSING, "--tradeoff", "7"], "--tradeoff"),  # a nonsense report
        (["bench", "replay", "--table", MISSING, "--tradeoff", "nan"], "--tradeoff"),
        (["bench", "replicas", "--table", MISSING, "--store", "file:s", "--tradeoff", "1.5"], "--tradeoff"),
        (["bench", "replicas", "--table", MISSING, "--store", "file:s", "--strategy", "linucb,epsilon"], "--strategy"),
        (["bench", "overhead", "--queries", "5", "--embedders", "static", "--budget-joules-per-query", "-5"], "budget"),
    ],
)
def test_a_tradeoff_strategy_or_budget_is_checked_before_the_work(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import overhead, replicas

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(replicas, "run_setup", never)
    monkeypatch.setattr(overhead, "measure", never)  # the unpaced timings came first
    refused(argv, capsys, needle)


# --- review fixes (command line, 2026-12-06) -----------------------------------------------------------
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder nobody can write in (/proc)")
def test_collect_and_verify_refuse_an_out_they_cannot_write_before_any_model_loads(
    tiny_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import collect, verify
    from greenserv_core.models import bundled

    monkeypatch.setattr(bundled, "bundled_pool", never)
    monkeypatch.setattr(collect, "collect", never)  # it opened its journal there: a traceback
    monkeypatch.setattr(verify, "verify_table", never)  # it asked every question, then a traceback
    refused(["bench", "collect", "--out", "/proc/t.csv", "--tasks", "arc_easy"], capsys, "--out", "cannot write in")
    refused(["bench", "verify", "--table", str(tiny_path), "--out", "/proc/v.csv"], capsys, "--out", "cannot write in")


def test_verify_table_says_it_cannot_write_its_out(tmp_path: Path, tiny: OutcomeTable) -> None:
    from greenserv_core import FakeBackend
    from greenserv_core.evaluation.verify import verify_table

    blocked = tmp_path / "a-file"
    blocked.write_text("", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="cannot write the table"):  # not a raw OSError after the work
        verify_table(tiny, [FakeBackend("small"), FakeBackend("large")], blocked / "v.csv")


def test_overhead_refuses_an_embedder_named_twice(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import overhead

    monkeypatch.setattr(overhead, "overhead_prompts", never)
    monkeypatch.setattr(overhead, "measure", never)
    with pytest.raises(InvalidInputError, match=r"embedders named twice: \['static'\]"):  # ratios over the other's
        overhead.run_overhead(queries=2, strategies=["random"], embedders=["static", "static"])
    monkeypatch.setattr(overhead, "run_overhead", never)
    refused(["bench", "overhead", "--queries", "2", "--embedders", "static,static"], capsys, "--embedders", "twice")


def test_overhead_names_minilm_s_gpu_only_when_it_timed_minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.evaluation import overhead

    times = {label: (1.0, 1.0, 1.0) for label in ("embedding only", "route()", "route + record_outcome + feedback")}
    monkeypatch.setattr(overhead, "measure", lambda *args, **kwargs: times)
    monkeypatch.setattr(overhead, "overhead_prompts", lambda n, seed: ["p"] * n)
    monkeypatch.setattr(overhead, "device_name", lambda device="cpu": "a GPU" if device.startswith("cuda") else "a CPU")
    for embedders, named in ((["static"], False), (["minilm", "static"], True)):
        report = overhead.run_overhead(queries=2, strategies=["random"], embedders=embedders, device="cuda")
        assert ("MiniLM on a GPU" in report.machine) is named, report.machine


def test_demo_refuses_a_static_strategy_outside_the_pool_before_any_prompt(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core import FakeBackend
    from greenserv_core.datasets.olmo_eval import TaskExample
    from greenserv_core.evaluation import learning_demo
    from tests.conftest import use_fake_pool

    use_fake_pool(monkeypatch, [FakeBackend("a"), FakeBackend("b")])
    stream = [TaskExample("arc_easy", "1", "Q? A) x B) y", "A", ("x", "y"))]
    monkeypatch.setattr(learning_demo, "demo_stream", lambda tasks, queries, seed: stream)
    monkeypatch.setattr(learning_demo, "run_learning_demo", never)  # its first prompt failed: exit 1
    refused(
        ["demo", "--queries", "1", "--plot", "", "--strategy", "static:nope"], capsys, "static:nope", "not in the pool"
    )


def test_demo_and_collect_refuse_a_task_named_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import collect, learning_demo
    from greenserv_core.models import bundled, pool

    monkeypatch.setattr(learning_demo, "load_task", never)
    with pytest.raises(InvalidInputError, match=r"tasks named twice: \['boolq'\]"):  # its prompts came twice
        learning_demo.demo_stream(["boolq", "arc_easy", "boolq"], 4)
    monkeypatch.setattr(pool, "build_backends", never)
    refused(["demo", "--tasks", "boolq,boolq", "--queries", "4", "--plot", ""], capsys, "twice", "boolq")
    monkeypatch.setattr(bundled, "bundled_pool", never)
    monkeypatch.setattr(collect, "collect", never)  # the table listed the task twice
    out = str(tmp_path / "t.csv")
    refused(["bench", "collect", "--out", out, "--tasks", "arc_easy, arc_easy"], capsys, "--tasks", "twice")


def test_calibration_names_are_read_without_their_spaces(tmp_path: Path) -> None:
    path = tmp_path / "spaces.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CALIBRATION_FIELDS)
        writer.writerow(["small ", 1, " winogrande", 100, 0.5, 0.05, 0.06, 0.07, 1, 35])
        writer.writerow(["small", 1, "boolq", 100, 0.5, 0.05, 0.06, 0.07, 1, 35])
    rows = read_calibration(path)
    assert [(row.model, row.task) for row in rows] == [("small", "winogrande"), ("small", "boolq")]
    table = simulate_table(rows, queries_per_task=2)  # 'small ' was a model of its own, without a boolq row
    assert set(table.columns["model"]) == {"small"}


def test_replay_speed_names_the_mmlu_rows_its_calibration_lacks(
    calibration: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import replay_speed

    monkeypatch.setattr(replay_speed, "simulate_table", never)  # it said the calibration lacks an 'arc_easy' row
    with pytest.raises(InvalidInputError, match=r"an 'mmlu' row for every model.*\['large', 'small'\]"):
        replay_speed.run_replay_speed(calibration, queries=10)
    refused(["bench", "replay-speed", "--calibration", str(calibration), "--queries", "10"], capsys, "'mmlu'")


@pytest.mark.parametrize("command", ["replay", "sweep"])
@pytest.mark.parametrize("param", ["linucb.seed=3", "linucb.dimension=3", 'linucb.strategy="x"'])
def test_a_param_the_router_sets_is_refused(
    command: str, param: str, tiny_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # each raised TypeError (make_policy got multiple values) with a traceback
    argv = ["bench", command, "--table", str(tiny_path), "--strategies", "linucb", "--param", param]
    refused(argv, capsys, "cannot set", "give --seed for the seed")  # the command's option, not GreenServRouter's


@pytest.mark.parametrize("argv", [["--add-model", "small@²"], ["--remove-model", "large@²"]])
def test_a_step_in_other_digits_is_refused(
    argv: list[str], tiny_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(["bench", "replay", "--table", str(tiny_path), *argv], capsys, "NAME@STEP")  # int("²") raised ValueError


def test_a_hangup_ends_an_interactive_chat_as_sys_exit_does_so_its_state_is_saved() -> None:
    import signal
    import time

    from greenserv_core.cli.chat import _exiting_on_hangup

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_, _exiting_on_hangup():
        os.kill(os.getpid(), signal.SIGTERM)  # killed the process before: no finally ran, nothing was saved
        time.sleep(5)
    assert exit_.value.code == 128 + signal.SIGTERM and signal.getsignal(signal.SIGTERM) is before
    ignored = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as nohup leaves a signal: it stays ignored
    try:
        with _exiting_on_hangup():
            os.kill(os.getpid(), signal.SIGTERM)  # was SystemExit(143)
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGTERM, ignored)


def test_simulate_and_verify_keep_an_existing_table_unless_forced(
    calibration: Path,
    tiny_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real table collected over hours was replaced by a simulated one without a word."""
    from greenserv_core.evaluation import verify
    from greenserv_core.models import bundled

    monkeypatch.setattr(bundled, "bundled_pool", never)
    monkeypatch.setattr(verify, "verify_table", never)
    kept = tmp_path / "real.csv"
    kept.write_bytes(tiny_path.read_bytes())
    simulate = ["bench", "simulate", "--calibration", str(calibration), "--queries-per-task", "2", "--out", str(kept)]
    refused(simulate, capsys, f"--out {kept} exists", "--force")
    refused(["bench", "verify", "--table", str(tiny_path), "--out", str(kept)], capsys, f"--out {kept} exists")
    assert kept.read_bytes() == tiny_path.read_bytes()
    assert cli.main([*simulate, "--force"]) == 0
    assert kept.read_bytes() != tiny_path.read_bytes()


def test_demo_checks_its_tradeoff_and_strategy_before_the_models_load(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.models import pool

    monkeypatch.setattr(pool, "build_backends", never)
    refused(["demo", "--tradeoff", "2", "--plot", ""], capsys, "tradeoff")  # was refused after "Loading the models"
    refused(["demo", "--strategy", "nonesuch", "--plot", ""], capsys, "unknown strategy 'nonesuch'")
    assert "Loading the models" not in capsys.readouterr().out
