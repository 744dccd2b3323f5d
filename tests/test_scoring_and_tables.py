"""Outcome tables: one question per query_id, and accuracy as pandas writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from greenserv_core.datasets.olmo_eval import TaskExample
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.scoring import score_answer
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


# ---- found by review (2026-12-07) ------------------------------------------------------------
def test_option_a_is_read_as_the_other_letters_are_and_never_as_an_article() -> None:
    from greenserv_core.evaluation.scoring import extract_choice

    for text in ("A because it floats", "A since", "A was right", "Answer: A because"):  # were None
        assert extract_choice(text, 4) == "A", text
    for text in ("The answer is A kangaroo.", "Answer: A dog", "A man"):  # were A: the article
        assert extract_choice(text, 4) is None, text
    for text in ("B (blue)", "B;", "B!", "B?"):  # were None
        assert extract_choice(text, 4) == "B", text


def test_an_answer_naming_several_letters_commits_to_none() -> None:
    from greenserv_core.evaluation.scoring import extract_choice

    for text in ("B or C", " B or", "B, C or D", "B and C", "The answer is B or C", "(B) or (C)", "B/C"):
        assert extract_choice(text, 4) is None, text  # were B: credit for a hedge
    assert extract_choice("B, blue", 4) == extract_choice("B) or so", 4) == "B"


def test_yes_or_no_is_the_one_the_answer_names_and_isnt_negates() -> None:
    from greenserv_core.evaluation.scoring import extract_yes_no

    assert extract_yes_no("There is no evidence against it, so the answer is yes.") == "yes"  # was no
    assert extract_yes_no("That isn't true.") == "no"  # was yes
    assert extract_yes_no("No, it is not.") == "no"


def test_a_computed_answer_is_its_final_number_not_any_number_it_holds() -> None:
    arithmetic = TaskExample("basic_arithmetic", "q", "What is 16 / 4?", "4")
    assert score_answer(arithmetic, "16 / 4 = 5") == 0.0  # was 1.0: it holds the 4 of the question
    assert score_answer(arithmetic, "16 / 4 = 4") == 1.0
    gsm8k = TaskExample("gsm8k", "g", "...", "18")
    assert score_answer(gsm8k, "The answer is 18 (that is 3 * 6).") == 1.0  # was 0.0: the last number, 6
    assert score_answer(TaskExample("gsm8k", "n", "...", "eighteen"), "no number here") == 0.0  # was 1.0: None == None
