"""Outcome tables: one question per query_id, and accuracy as pandas writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.table import COLUMNS, OutcomeTable, read_table, write_table


def _rows(**columns: list[Any]) -> dict[str, list[Any]]:
    """Two models' answers to one ARC question, with ``columns`` replaced."""
    rows: dict[str, list[Any]] = {
        "query_id": ["arc_easy-00000", "arc_easy-00000"],
        "task": ["arc_easy", "arc_easy"],
        "prompt": ["Which is blue?", "Which is blue?"],
        "reference": ["B", "B"],
        "model": ["small", "large"],
        "output": ["B", "A"],
        "accuracy": [1.0, 0.0],
        "energy_joules": [1.0, 30.0],
        "energy_source": ["nvml", "nvml"],
        "latency_s": [0.1, 2.0],
        "input_tokens": [5, 5],
        "output_tokens": [1, 1],
    }
    return {**rows, **columns}


@pytest.mark.parametrize(
    ("column", "values"),
    [("task", ["arc_easy", "gsm8k"]), ("prompt", ["Which is blue?", "What is 6*7?"]), ("reference", ["B", "42"])],
)
def test_rows_of_one_query_id_must_be_one_question(tmp_path: Path, column: str, values: list[str]) -> None:
    message = rf"row 2 gives query_id 'arc_easy-00000' another {column} than row 1"
    with pytest.raises(InvalidInputError, match=message):
        OutcomeTable(_rows(**{column: values}))
    assert len(OutcomeTable(_rows()).matrices().queries) == 1  # the same question, asked of two models


def test_two_collections_concatenated_are_refused_when_read(tmp_path: Path) -> None:
    path = write_table(OutcomeTable(_rows(model=["small", "small"], query_id=["q1", "q2"])), tmp_path / "t.csv")
    text = path.read_text(encoding="utf-8").replace("q2,arc_easy", "q1,gsm8k").replace(",small,A,", ",large,A,")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"t\.csv: row 2 gives query_id 'q1' another task than row 1"):
        read_table(path)


def test_a_pandas_csv_with_true_and_false_accuracy_reads(tmp_path: Path) -> None:
    rows = _rows(accuracy=[True, False])
    lines = [",".join(COLUMNS)] + [",".join(str(rows[c][i]) for c in COLUMNS) for i in range(2)]  # as to_csv writes
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_table(tmp_path / "t.csv").columns["accuracy"] == [1.0, 0.0]
    (tmp_path / "t.csv").write_text("\n".join(lines).replace(",True,", ",yes,") + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"column 'accuracy': 'yes' is not a number"):
        read_table(tmp_path / "t.csv")


@pytest.mark.parametrize(("column", "value"), [("task", None), ("prompt", None), ("query_id", None), ("model", "")])
def test_a_row_without_its_id_task_prompt_or_model_is_refused(tmp_path: Path, column: str, value: Any) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    rows = _rows(**{column: [_rows()[column][0], value]})
    parquet.write_table(pyarrow.table(rows), tmp_path / "t.parquet")  # a pandas null; replay then failed on it
    with pytest.raises(InvalidInputError, match=rf"t\.parquet: {column} must be non-empty text; row 2 has {value!r}"):
        read_table(tmp_path / "t.parquet")


def test_whole_number_query_ids_read_as_their_text(tmp_path: Path) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    parquet.write_table(pyarrow.table(_rows(query_id=[7, 7])), tmp_path / "t.parquet")  # as pandas writes an int id
    assert read_table(tmp_path / "t.parquet").columns["query_id"] == ["7", "7"]
