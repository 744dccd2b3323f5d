"""Outcome tables, the calibrated simulator and the replay through the real router."""

from __future__ import annotations

import csv
import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenserv_core.backends.base import GenerationResult, GenerationSettings
from greenserv_core.backends.fake import FakeBackend
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.frontier import aiq, pareto_front, upper_hull
from greenserv_core.evaluation.plots import plot_replay, plot_sweep
from greenserv_core.evaluation.prompt_files import read_prompts, write_prompts
from greenserv_core.evaluation.replay import PoolChange, replay, table_energy_ranges
from greenserv_core.evaluation.simulate import Calibration, simulate_table
from greenserv_core.evaluation.sweep import sweep
from greenserv_core.evaluation.table import COLUMNS, OutcomeTable, read_table, write_table
from greenserv_core.evaluation.verify import verify_table
from greenserv_core.messages import Message
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
    # the router's energy scale tops out at what it has seen, never above the table's largest reading
    table_max = max(t["max_joules"] for t in fixed["per_task"].values())
    seen = report["strategies"]["linucb"]["energy_scale_seen"]
    assert seen and all(0 < v["mean"] <= table_max for v in seen.values())
    relative = report["relative"]
    assert relative["oracle"]["gap_closed_to_oracle"] == pytest.approx(1.0)
    assert relative["random"]["accuracy_vs_random"] == 0.0 and relative["random"]["energy_vs_random"] == 0.0
    assert relative["random"]["gap_closed_to_best_fixed_per_task"] == pytest.approx(0.0, abs=0.1)
    assert relative["linucb"]["gap_closed_to_best_fixed_per_task"] > 0.3
    for summary in strategies.values():
        assert summary["energy_wh"]["mean"] == pytest.approx(summary["energy_joules"]["mean"] / 3600)
        assert sum(s["mean"] for s in summary["shares"].values()) == pytest.approx(1.0)


def test_replay_with_a_model_leaving_and_one_joining(table: OutcomeTable) -> None:
    queries = len(table.matrices().queries)
    report = replay(
        table,
        ["linucb", "oracle"],
        tradeoff=0.0,  # accuracy only: "large" is the better model on both tasks
        runs=2,
        changes=[PoolChange("remove", "large", 150)],
        make_features=make_hashing_extractor,
    )
    assert report["settings"]["pool_changes"] == ["remove large@150"]
    for summary in report["strategies"].values():
        assert summary["shares"]["large"]["mean"] <= 150 / queries
    assert report["strategies"]["oracle"]["cumulative_regret"]["mean"] == 0.0
    joined = replay(
        table,
        ["linucb", "oracle"],
        tradeoff=0.0,
        runs=2,
        changes=[PoolChange("add", "large", 300)],
        make_features=make_hashing_extractor,
    )
    linucb = joined["strategies"]["linucb"]["shares"]["large"]["mean"]
    assert 0.25 * (queries - 300) / queries < linucb <= (queries - 300) / queries  # found and used once it joins
    with pytest.raises(InvalidInputError, match="does not have"):
        replay(table, ["random"], changes=[PoolChange("add", "huge", 3)], make_features=make_hashing_extractor)
    with pytest.raises(InvalidInputError, match="NAME@STEP"):
        PoolChange.parse("add", "large")


def test_sweep_traces_the_accuracy_energy_curve(table: OutcomeTable) -> None:
    report = sweep(table, ["random", "linucb"], [0.0, 0.5, 1.0], runs=1, make_features=make_hashing_extractor)
    linucb, random_ = report["strategies"]["linucb"], report["strategies"]["random"]
    assert [p["tradeoff"] for p in linucb["points"]] == [0.0, 0.5, 1.0]
    at = {p["tradeoff"]: p for p in linucb["points"]}
    # accuracy only: beats random on accuracy; energy only: spends less than random
    assert at[0.0]["accuracy"] > random_["points"][0]["accuracy"] + 0.1
    assert at[1.0]["joules_per_query"] < 0.6 * random_["points"][2]["joules_per_query"]
    assert at[0.0]["joules_per_query"] > at[1.0]["joules_per_query"]
    low, high = report["cost_range_joules_per_query"]
    assert low < high and 0 <= linucb["aiq"] <= 1 and 0 <= report["single_models"]["aiq"] <= 1
    for curve in report["strategies"].values():
        front = curve["pareto"]
        assert all(a[0] < b[0] and a[1] < b[1] for a, b in itertools.pairwise(front))


def test_frontier_math() -> None:
    points = [(1.0, 0.2), (2.0, 0.6), (2.5, 0.5), (4.0, 0.7)]
    assert pareto_front(points) == [(1.0, 0.2), (2.0, 0.6), (4.0, 0.7)]
    assert upper_hull(pareto_front(points)) == [(1.0, 0.2), (2.0, 0.6), (4.0, 0.7)]
    assert aiq([(0.0, 0.9)], low=0.0, high=10.0) == pytest.approx(0.9)  # best quality at no cost
    assert aiq([(5.0, 0.8)], low=0.0, high=10.0) == pytest.approx(0.4, abs=0.01)  # nothing below cost 5
    assert aiq([(0.0, 0.1), (10.0, 0.9)], low=0.0, high=10.0) == pytest.approx(0.5)  # linear mix
    with pytest.raises(InvalidInputError):
        aiq(points, low=1.0, high=1.0)


def test_plots_are_written(table: OutcomeTable, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = replay(table, ["random", "linucb", "oracle"], runs=2, make_features=make_hashing_extractor)
    swept = sweep(table, ["random", "linucb"], [0.0, 1.0], runs=1, make_features=make_hashing_extractor)
    for path in (plot_replay(report, tmp_path / "replay.png"), plot_sweep(swept, tmp_path / "sweep.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_known_accuracy_diagnostic_reaches_the_best_fixed_model_when_energy_does_not_count(
    table: OutcomeTable,
) -> None:
    report = replay(table, ["known-accuracy"], tradeoff=0.0, runs=1, make_features=make_hashing_extractor)
    got = report["strategies"]["known-accuracy"]["reward"]["mean"]
    assert got == pytest.approx(report["baselines"]["best_fixed_model_per_task"]["reward"], abs=0.01)


def test_replay_can_hand_the_router_the_tables_energy_scale(table: OutcomeTable) -> None:
    from greenserv_core.features import FeatureExtractor, HashingEmbedder, TaskClassifier
    from greenserv_core.features.task_classifier import instruction_text

    data = table.matrices()
    embedder = HashingEmbedder(256)  # a classifier that knows the table's tasks: labels = tasks
    texts = [instruction_text(p) for p in data.prompts]
    classifier = TaskClassifier().fit(embedder.embed(texts), data.tasks, embedder.name)

    def make() -> FeatureExtractor:
        return FeatureExtractor(embedder, classifier)

    tasks = np.asarray(data.tasks)
    expected = {
        t: [float(data.energy[tasks == t].min()), float(data.energy[tasks == t].max())] for t in set(data.tasks)
    }
    assert table_energy_ranges(data, make()) == expected
    online = replay(table, ["linucb"], runs=1, make_features=make)
    given = replay(table, ["linucb"], runs=1, make_features=make, energy_scale="table")
    assert online["settings"]["energy_scale"] == "online" and given["settings"]["energy_scale"] == "table"
    seen = {t: s["mean"] for t, s in given["strategies"]["linucb"]["energy_scale_seen"].items()}
    assert seen == pytest.approx({t: high for t, (_, high) in expected.items()})
    with pytest.raises(InvalidInputError, match="energy_scale"):
        replay(table, ["linucb"], runs=1, make_features=make, energy_scale="oracle")  # type: ignore[arg-type]


def test_task_thompson_diagnostic_learns_the_best_model_per_task(table: OutcomeTable) -> None:
    report = replay(table, ["task-thompson", "random"], runs=2, make_features=make_hashing_extractor)
    got = report["strategies"]["task-thompson"]["reward"]["mean"]
    low = report["strategies"]["random"]["reward"]["mean"]
    best = report["baselines"]["best_fixed_model_per_task"]["reward"]
    assert (got - low) / (best - low) > 0.7


def _write_csv(path: Path, header: list[str], rows: list[list[object]], **options: Any) -> Path:
    with open(path, "w", newline="", encoding=options.pop("encoding", "utf-8")) as handle:
        writer = csv.writer(handle, **options)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _outcome_rows(prompt: str = 'Line one,\nline two with "quotes"\r\nand a third') -> list[list[object]]:
    return [
        [f"q{q}", "winogrande", prompt, "A", model, f"{model} says\nA", accuracy, joules, "simulated", 0.1, 12, 1]
        for q in range(3)
        for model, accuracy, joules in (("small", 0.0, 1.5), ("large", 1.0, 9.0))
    ]


@pytest.mark.parametrize("dialect", [{}, {"lineterminator": "\n", "quoting": csv.QUOTE_NONNUMERIC}])
def test_csv_tables_with_line_breaks_in_quoted_fields_load(tmp_path: Path, dialect: dict[str, Any]) -> None:
    path = _write_csv(tmp_path / "t.csv", ["extra", *COLUMNS], [["x", *row] for row in _outcome_rows()], **dialect)
    table = read_table(path)
    assert len(table) == 6 and table.simulated  # no sidecar says so, but every row's energy_source does
    assert table.columns["prompt"][0] == 'Line one,\nline two with "quotes"\r\nand a third'
    assert table.columns["output"][1] == "large says\nA"
    assert table.columns["accuracy"][:2] == [0.0, 1.0] and table.columns["input_tokens"][0] == 12
    assert table.matrices().models == ["small", "large"]
    again = read_table(write_table(table, tmp_path / "again.csv"))
    assert again.columns == table.columns


def test_a_spreadsheet_csv_with_a_byte_order_mark_and_float_counts_loads(tmp_path: Path) -> None:
    rows = [[*row[:10], "12.0", "1.0"] for row in _outcome_rows()]
    path = _write_csv(tmp_path / "t.csv", list(COLUMNS), rows, encoding="utf-8-sig")
    assert read_table(path).columns["output_tokens"] == [1] * 6


def test_malformed_csv_tables_name_the_file_and_the_place(tmp_path: Path) -> None:
    good = _write_csv(tmp_path / "good.csv", list(COLUMNS), _outcome_rows()).read_text()
    cases = {
        "unterminated.csv": (good + 'q9,winogrande,"never closed\n', r"unterminated\.csv.*line 2[0-9]"),
        "short.csv": (good + "q9,winogrande,prompt\n", r"short\.csv: row 7 \(ending on line 2[0-9]\) has 3 fields"),
        "stray.csv": (good + 'q9,winogrande,"closed"then,A\n', r"stray\.csv: malformed CSV near line"),
        "letters.csv": (
            good.replace(",1.5,", ",lots,", 1),
            r"letters\.csv: row 1 \(ending on line 5\), column 'energy_joules'",
        ),
        "fraction.csv": (
            good.replace(",12,", ",12.5,", 1),
            r"fraction\.csv: row 1 .*'input_tokens': '12.5' is not an integer",
        ),
        "range.csv": (good.replace(",1.0,9.0,", ",2.0,9.0,", 1), r"range\.csv: accuracy must lie in \[0, 1\]; row 2"),
        "columns.csv": (
            good.replace("energy_joules", "joules", 1),
            r"columns\.csv lacks the columns \['energy_joules'\]",
        ),
        "empty.csv": ("", r"empty\.csv is empty"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(InvalidInputError, match=message):
            read_table(tmp_path / name)
    (tmp_path / "good.csv.meta.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"good\.csv\.meta\.json is not valid JSON"):
        read_table(tmp_path / "good.csv")


def test_a_broken_parquet_file_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(InvalidInputError, match=r"broken\.parquet is not a readable Parquet table"):
        read_table(path)


def _two_rows(**columns: list[Any]) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {
        "query_id": ["q1", "q2"],
        "task": ["t", "t"],
        "prompt": ["2+2?", "3+3?"],
        "reference": ["4", "6"],
        "model": ["m", "m"],
        "output": ["4", "5"],
        "accuracy": [1.0, 0.0],
        "energy_joules": [1.0, 2.0],
        "energy_source": ["fake", "fake"],
        "latency_s": [0.1, 0.1],
        "input_tokens": [3, 4],
        "output_tokens": [1, 1],
    }
    return {**rows, **columns}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_that_can_be_built_can_be_read_back(tmp_path: Path, suffix: str) -> None:
    outputs, references = np.array(["4", "5"]), np.array(["4", "6"])
    table = OutcomeTable(_two_rows(accuracy=list(outputs == references), output_tokens=[2.0, np.int64(1)]))
    assert table.columns["accuracy"] == [1.0, 0.0] and table.columns["output_tokens"] == [2, 1]
    again = read_table(write_table(table, tmp_path / f"t{suffix}"))
    assert again.columns["accuracy"] == [1.0, 0.0] and again.columns["output_tokens"] == [2, 1]


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("output_tokens", [2.5, 1], r"output_tokens must hold integers of 0 or more; row 1 has 2\.5"),
        ("input_tokens", [3, -4], r"input_tokens must hold integers of 0 or more; row 2 has -4"),
        ("input_tokens", [3, None], r"input_tokens must hold integers of 0 or more; row 2 has None"),
        ("output_tokens", ["one", 1], r"output_tokens must hold integers of 0 or more; row 1 has 'one'"),
    ],
    ids=["fraction", "negative", "missing", "text"],
)
def test_token_counts_are_integers_of_0_or_more(column: str, values: list[Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        OutcomeTable(_two_rows(**{column: values}))


def test_a_negative_token_count_in_a_file_is_refused(tmp_path: Path) -> None:
    good = _write_csv(tmp_path / "t.csv", list(COLUMNS), _outcome_rows()).read_text(encoding="utf-8")
    (tmp_path / "t.csv").write_text(good.replace(",12,", ",-12,", 1), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"t\.csv: input_tokens must hold integers of 0 or more; row 1"):
        read_table(tmp_path / "t.csv")


def test_a_simulated_csv_table_that_lost_its_sidecar_still_reads_as_simulated(
    table: OutcomeTable, tmp_path: Path
) -> None:
    path = write_table(table, tmp_path / "t.csv")
    Path(f"{path}.meta.json").unlink()
    assert read_table(path).simulated
    assert not OutcomeTable(_two_rows(energy_source=["simulated", "nvml"])).simulated


def test_an_interrupted_csv_write_leaves_the_old_table_with_its_own_sidecar(
    table: OutcomeTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new sidecar was renamed into place before the table was written: the old, real
    table then read as the new, simulated one's."""
    import csv

    from greenserv_core.evaluation import table as table_module

    path = tmp_path / "t.csv"
    write_table(OutcomeTable(table.columns, {"simulated": False, "generator": "greenserv collect"}), path)
    real_writer = csv.writer

    class Interrupted:
        def __init__(self, handle: object) -> None:
            self.writer = real_writer(handle)  # type: ignore[arg-type]

        def writerow(self, row: object) -> None:
            self.writer.writerow(row)  # type: ignore[arg-type]

        def writerows(self, rows: object) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(table_module.csv, "writer", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_table(OutcomeTable(table.columns, {"simulated": True}), path)
    monkeypatch.setattr(table_module.csv, "writer", real_writer)
    assert read_table(path).metadata.get("generator") == "greenserv collect"  # the old sidecar, not the new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.csv.meta.json"]  # no temporary left


class _OneAtATime(FakeBackend):
    """Answers one query at a time, each answer taking ``seconds``."""

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(name, reply=lambda m: "Yes")
        self.seconds = seconds

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        return dataclasses.replace(super().generate(messages, settings), latency_s=self.seconds)


class _Batching(_OneAtATime):
    """Answers a batch in one call, as a local model does: every answer of a padded batch
    carries the batch's wall time (``seconds``); with ``padded=False`` each is drawn alone and
    carries its own (as seeded samples are)."""

    def __init__(self, name: str, seconds: float, *, padded: bool = True) -> None:
        super().__init__(name, seconds)
        self.padded = padded

    def generate_batch(
        self, batch: Sequence[Sequence[Message]], settings: GenerationSettings
    ) -> list[GenerationResult]:
        answers = [self.generate(messages, settings) for messages in batch]
        if self.padded:
            return answers
        return [dataclasses.replace(answer, latency_s=self.seconds + i) for i, answer in enumerate(answers)]


def test_verification_seconds_count_a_batchs_wall_time_once(tmp_path: Path) -> None:
    rows = {name: values * 4 for name, values in _two_rows().items()}
    rows["query_id"] = [f"q{i}" for i in range(8)]

    def seconds(judge: FakeBackend) -> float:
        verified = verify_table(OutcomeTable(dict(rows)), [judge], tmp_path / "v.csv", batch_size=4)
        return float(verified.metadata["verification"]["m"]["seconds"])

    assert seconds(_Batching("m", 1.5)) == pytest.approx(2 * 1.5)  # two batches, not eight answers
    assert seconds(_Batching("m", 1.0, padded=False)) == pytest.approx(2 * (1 + 2 + 3 + 4))
    assert seconds(_OneAtATime("m", 0.25)) == pytest.approx(8 * 0.25)


@pytest.mark.parametrize("limit", [0, -5])
def test_read_prompts_refuses_a_limit_below_1(tmp_path: Path, limit: int) -> None:
    path = tmp_path / "p.jsonl"
    write_prompts(path, ["a", "b", "c"])
    assert read_prompts(path, limit=2) == ["a", "b"]
    with pytest.raises(InvalidInputError, match=f"limit must be None or a positive integer, got {limit}"):
        read_prompts(path, limit=limit)
