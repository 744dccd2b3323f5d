"""The task classifier's training set never reads a held-out source, and the generalisation
benchmark (``greenserv bench classifier``) scores a classifier on those sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenserv_core import cli
from greenserv_core.datasets import TASKS, load_task
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.task_generalisation import EVERYDAY, evaluate_generalisation, held_out_prompts
from greenserv_core.features import HashingEmbedder, TaskClassifier, bundled, task_dataset
from greenserv_core.features.task_classifier import instruction_text
from greenserv_core.features.task_dataset import (
    HELD_OUT_SOURCES,
    MBPP_FAMILY,
    NEVER_TRAINED,
    TASK_SOURCES,
    TASK_TYPES,
    build_task_dataset,
    mbpp_problem_held_out,
    training_benchmarks,
)


@pytest.fixture(scope="module")
def dataset() -> list[task_dataset.LabelledPrompt]:
    return build_task_dataset(per_label=40, seed=1)


@pytest.fixture(scope="module")
def hashing_classifier(dataset: list[task_dataset.LabelledPrompt]) -> TaskClassifier:
    embedder = HashingEmbedder(256)
    texts = [instruction_text(item.text) for item in dataset]
    return TaskClassifier(C=3.0).fit(embedder.embed(texts), [item.label for item in dataset], embedder.name)


def test_held_out_sources_are_never_read_for_training(dataset: list[task_dataset.LabelledPrompt]) -> None:
    assert set(HELD_OUT_SOURCES) <= NEVER_TRAINED and "nq_open" in NEVER_TRAINED
    assert training_benchmarks().isdisjoint(NEVER_TRAINED)
    listed = {source for sources in TASK_SOURCES.values() for source in sources}
    assert listed.isdisjoint(NEVER_TRAINED)
    assert {item.source for item in dataset} <= listed
    for source in ("medqa_en", "naturalqs_open", "nq_open", "codex_mbpp"):
        with pytest.raises(AssertionError, match="held out"):
            task_dataset._examples(source)
    held_out_texts = {text for _task, texts in held_out_prompts(per_source=30).values() for text in texts}
    assert held_out_texts.isdisjoint(item.text for item in dataset)


def test_mbpp_problems_split_by_task_id_across_languages() -> None:
    trained = {ex.question for task in training_benchmarks() & MBPP_FAMILY for ex in task_dataset._examples(task)}
    assert trained and all(not mbpp_problem_held_out(ex.example_id) for ex in task_dataset._examples("mt_mbpp_go"))
    held_out = [ex for ex in load_task("codex_mbpp") if mbpp_problem_held_out(ex.example_id)]
    assert len(held_out) == 250 and trained.isdisjoint(ex.question for ex in held_out)


def test_every_type_is_trained_and_the_splits_do_not_share_texts(dataset: list[task_dataset.LabelledPrompt]) -> None:
    assert {item.label for item in dataset} == set(TASK_TYPES) and len(TASK_TYPES) == 9
    test = build_task_dataset(per_label=20, seed=1, split="test")
    assert {item.text for item in test}.isdisjoint(item.text for item in dataset)
    assert {label for label, _text in EVERYDAY} == set(TASK_TYPES)


@pytest.mark.parametrize("source", sorted(HELD_OUT_SOURCES))
def test_held_out_loaders_return_prompts(source: str) -> None:
    assert source in TASKS
    examples = load_task(source, limit=3, seed=0)
    assert len(examples) == 3
    assert all(ex.task == source and ex.prompt.strip() and ex.question.strip() for ex in examples)


def test_evaluation_returns_a_row_per_held_out_source(hashing_classifier: TaskClassifier) -> None:
    with pytest.raises(InvalidInputError, match="trained on"):
        evaluate_generalisation(HashingEmbedder(64), hashing_classifier, per_source=1)
    report = evaluate_generalisation(
        HashingEmbedder(256), hashing_classifier, per_source=3, in_distribution_per_label=5
    )
    assert [row.source for row in report.rows] == [*HELD_OUT_SOURCES, "everyday"]
    assert all(0.0 <= row.accuracy <= 1.0 and row.n > 0 for row in report.rows)
    assert report.rows[-1].n == len(EVERYDAY)
    assert 0.0 <= report.in_distribution_macro_f1 <= 1.0 and report.in_distribution_n > 0
    table = report.table()
    assert len(table) == len(report.rows) + 2 and "mean" in table[-2]["source"]


def test_cli_prints_the_table(
    hashing_classifier: TaskClassifier,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "clf.json"
    hashing_classifier.save(path)
    monkeypatch.setattr(bundled, "bundled_embedder", lambda name: HashingEmbedder(256))
    args = ["bench", "classifier", "--classifier", str(path), "--per-source", "2", "--per-label", "3"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "| everyday |" in out and "in-distribution macro-F1" in out and "| codex_humaneval |" in out


@pytest.mark.slow
def test_cli_with_minilm_and_the_bundled_classifier(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "classifier", "--embedder", "minilm", "--per-source", "2", "--per-label", "2"]) == 0
    out = capsys.readouterr().out
    assert "9 task types" in out and "| mt_mbpp_python |" in out


def test_the_bundled_static_classifier_reads_a_geometry_problem_with_a_drawing_as_math() -> None:
    embedder, classifier = bundled.bundled_embedder("static"), bundled.bundled_classifier("static")
    drawing = "".join(f'pair P{i} = ({i},{i % 3});\nlabel("${chr(65 + i)}$", P{i}, NE);\n' for i in range(12))
    prompt = (
        "Problem:\nIn the figure below, $ABCD$ is a square and $E$ lies on $\\overline{BC}$ with $BE = 3$. "
        f"What is the area of triangle $AEC$?\n\n[asy]\nsize(5cm);\n{drawing}draw(A--B--C--D--cycle);\n[/asy]\n\n"
        "Solution:"
    )
    text = instruction_text(prompt)
    assert "[figure]" in text and "pair" not in text
    assert classifier.predict(embedder.embed([text])[0], text).label == "math_word_problem"


def test_a_triviaqa_question_is_in_one_split_asked_alone_or_after_a_passage() -> None:
    sources = task_dataset._sources()

    def questions(name: str, split: task_dataset.Split) -> set[str]:
        return {ex.question for ex in sources[name].pool(split) if isinstance(ex, task_dataset.TaskExample)}

    alone, after_a_passage = "triviaqa", "triviaqa_evidence"
    assert questions(after_a_passage, "train") and questions(after_a_passage, "test")
    assert questions(alone, "train").isdisjoint(questions(after_a_passage, "test"))
    assert questions(alone, "test").isdisjoint(questions(after_a_passage, "train"))


def test_the_dataset_takes_numpy_integers_and_refuses_other_sizes_and_seeds() -> None:
    import numpy as np

    same = build_task_dataset(per_label=3, seed=1, labels=["code"])
    assert build_task_dataset(per_label=np.int64(3), seed=np.int64(1), labels=["code"]) == same  # type: ignore[arg-type]
    assert build_task_dataset(per_label=0, labels=["code"]) == []
    for bad in (-5, 2.5, "3", True):
        with pytest.raises(InvalidInputError, match="per_label must be an integer of 0 or more"):
            build_task_dataset(per_label=bad)  # type: ignore[arg-type]
    for bad_seed in (1.5, "1", None):
        with pytest.raises(InvalidInputError, match="seed must be an integer"):
            build_task_dataset(per_label=3, seed=bad_seed)  # type: ignore[arg-type]
