"""Task-type classifier: logistic regression on sentence embeddings of the instruction text.

Training uses scikit-learn's ``LogisticRegression``; the fitted weights are stored as JSON
in the package (``greenserv_core/data/task_classifier.json``), not as a pickle, so they load
under any scikit-learn version. Prediction is the same softmax, in numpy.

Retrain and rewrite the bundled weights of an embedder (prints the in-distribution macro-F1
and the accuracy on held-out sources, :mod:`greenserv_core.evaluation.task_generalisation`)::

    python -m greenserv_core.features.task_classifier --embedder minilm \
        --out greenserv_core/data/task_classifier.json
    python -m greenserv_core.features.task_classifier --embedder static \
        --out greenserv_core/data/task_classifier_static.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.features.embedders import Embedder

__all__ = [
    "BUNDLED_CLASSIFIER",
    "ELISION",
    "TaskClassifier",
    "TaskPrediction",
    "instruction_text",
    "train_task_classifier",
]

BUNDLED_CLASSIFIER = "task_classifier.json"


ELISION = "\n[... the middle of a long text is left out ...]\n"
"""What stands for the middle of a long prompt: words, not a bare ``…``, so that the embedding
carries "a long text was here" (a passage to read or summarise) as well as the edges' content."""


def instruction_text(text: str, head_chars: int = 160, tail_chars: int = 160) -> str:
    """What the features look at: the head of the prompt (the instruction) and its tail
    (the question and options), joined by :data:`ELISION`. Short prompts are returned whole.

    >>> instruction_text("x" * 10)
    'xxxxxxxxxx'
    >>> instruction_text("Summarise this: " + "text " * 400 + "Thanks!", 15, 12).splitlines()
    ['Summarise this:', '[... the middle of a long text is left out ...]', 'text Thanks!']
    """
    text = text.strip()
    if len(text) <= head_chars + tail_chars:
        return text
    return f"{text[:head_chars]}{ELISION}{text[-tail_chars:]}" if tail_chars else text[:head_chars]


@dataclass(frozen=True)
class TaskPrediction:
    """The most probable task type, its probability, and every class's probability."""

    label: str
    probability: float
    probabilities: dict[str, float] = field(repr=False)


class TaskClassifier:
    """Multinomial logistic regression over embeddings.

    ``C`` is the inverse regularisation strength, as in scikit-learn. Learned state:
    ``classes_``, ``coef_`` (n_classes × dim), ``intercept_``, ``embedder_name_``.

    >>> from greenserv_core.features.embedders import HashingEmbedder
    >>> embedder = HashingEmbedder(64)
    >>> texts = ["add 2 and 3", "sum of 4 and 5", "write a poem", "a poem about rain"]
    >>> clf = TaskClassifier().fit(embedder.embed(texts), ["math", "math", "chat", "chat"], embedder.name)
    >>> clf.predict(embedder.embed(["add 7 and 8"])[0]).label
    'math'
    """

    def __init__(self, C: float = 10.0, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter
        self.classes_: tuple[str, ...] = ()
        self.coef_: np.ndarray = np.zeros((0, 0))
        self.intercept_: np.ndarray = np.zeros(0)
        self.embedder_name_: str = ""
        self.metrics_: dict[str, Any] = {}

    def fit(self, embeddings: np.ndarray, labels: Sequence[str], embedder_name: str) -> TaskClassifier:
        from sklearn.linear_model import LogisticRegression

        if len(set(labels)) < 2:
            raise InvalidInputError("a task classifier needs at least two task types")
        model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        model.fit(np.asarray(embeddings, dtype=np.float64), list(labels))
        self.classes_ = tuple(str(c) for c in model.classes_)
        coef, intercept = model.coef_, model.intercept_
        if len(self.classes_) == 2:  # binary LR stores one row; expand to a two-class softmax
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self.coef_, self.intercept_ = np.asarray(coef), np.asarray(intercept)
        self.embedder_name_ = embedder_name
        return self

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classes_

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        if not self.classes_:
            raise InvalidInputError("the task classifier is not fitted")
        logits = np.atleast_2d(embeddings) @ self.coef_.T + self.intercept_
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        probabilities: np.ndarray = weights / weights.sum(axis=1, keepdims=True)
        return probabilities

    def predict(self, embedding: np.ndarray) -> TaskPrediction:
        """Always a label: the most probable class, however unsure (see ``probability``)."""
        probabilities = self.predict_proba(embedding)[0]
        best = int(np.argmax(probabilities))
        return TaskPrediction(
            self.classes_[best],
            float(probabilities[best]),
            {label: float(p) for label, p in zip(self.classes_, probabilities, strict=True)},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "greenserv-task-classifier",
            "version": 1,
            "classes": list(self.classes_),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "embedder": self.embedder_name_,
            "C": self.C,
            "metrics": self.metrics_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskClassifier:
        if data.get("format") != "greenserv-task-classifier" or data.get("version") != 1:
            raise StateFileError("not a GreenServ task classifier (format/version mismatch)")
        clf = cls(C=float(data.get("C", 10.0)))
        clf.classes_ = tuple(data["classes"])
        clf.coef_ = np.asarray(data["coef"], dtype=np.float64)
        clf.intercept_ = np.asarray(data["intercept"], dtype=np.float64)
        clf.embedder_name_ = str(data["embedder"])
        clf.metrics_ = dict(data.get("metrics", {}))
        if clf.coef_.shape != (len(clf.classes_), clf.coef_.shape[1]) or clf.intercept_.shape != (len(clf.classes_),):
            raise StateFileError("task classifier weights have inconsistent shapes")
        return clf

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> TaskClassifier:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def bundled(cls) -> TaskClassifier:
        """The classifier shipped with GreenServ (trained on all-MiniLM-L6-v2 embeddings)."""
        text = resources.files("greenserv_core.data").joinpath(BUNDLED_CLASSIFIER).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))


BUNDLED_PER_LABEL = 1200
"""Training prompts per task type of the bundled classifiers."""
BUNDLED_C: dict[str, float] = {"minilm": 3.0, "static": 10.0}
"""Inverse regularisation strength of each bundled classifier (chosen on the held-out sources)."""


def train_task_classifier(
    embedder: Embedder,
    *,
    per_label: int = BUNDLED_PER_LABEL,
    test_per_label: int = 200,
    seed: int = 0,
    C: float = 3.0,
) -> TaskClassifier:
    """Fit on the train split of :func:`~greenserv_core.features.task_dataset.build_task_dataset`
    and record macro-F1 on its test split (sources seen in training, items not). The classifier
    is not refitted on the test split, so the figure stays true of the returned weights.

    >>> from greenserv_core.features.embedders import HashingEmbedder
    >>> clf = train_task_classifier(HashingEmbedder(256), per_label=40, test_per_label=10)  # doctest: +SKIP
    >>> len(clf.labels)                                                                     # doctest: +SKIP
    9
    """
    from sklearn.metrics import classification_report, f1_score

    from greenserv_core.features.task_dataset import build_task_dataset

    train = build_task_dataset(per_label=per_label, seed=seed, split="train")
    test = build_task_dataset(per_label=test_per_label, seed=seed, split="test")
    train_y, test_y = [item.label for item in train], [item.label for item in test]
    classifier = TaskClassifier(C=C).fit(
        embedder.embed([instruction_text(item.text) for item in train]), train_y, embedder.name
    )
    probabilities = classifier.predict_proba(embedder.embed([instruction_text(item.text) for item in test]))
    predicted = [classifier.classes_[i] for i in np.argmax(probabilities, axis=1)]
    macro_f1 = float(f1_score(test_y, predicted, average="macro"))
    if not math.isfinite(macro_f1):
        raise RuntimeError("macro-F1 is not finite")
    report = classification_report(test_y, predicted, output_dict=True, zero_division=0)
    classifier.metrics_ = {
        "held_out_macro_f1": round(macro_f1, 4),
        "per_class_f1": {k: round(v["f1-score"], 4) for k, v in report.items() if k in set(test_y)},
        "n_train": len(train_y),
        "n_test": len(test_y),
        "per_label": per_label,
        "seed": seed,
    }
    return classifier


def main(argv: Sequence[str] | None = None) -> None:
    """Train a task classifier for a bundled embedder, score it (in distribution, and on the
    held-out sources of :mod:`~greenserv_core.evaluation.task_generalisation`) and write it."""
    from greenserv_core.features.bundled import EMBEDDERS, bundled_embedder

    parser = argparse.ArgumentParser(description="Train the task-type classifier of a bundled embedder.")
    parser.add_argument("--embedder", choices=EMBEDDERS, default="minilm")
    parser.add_argument("--per-label", type=int, default=BUNDLED_PER_LABEL, help="training prompts per task type")
    parser.add_argument("--C", type=float, default=None, help=f"inverse regularisation strength {BUNDLED_C}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-source", type=int, default=200, help="prompts per held-out source (0: skip)")
    parser.add_argument("--out", type=Path, required=True, help="e.g. greenserv_core/data/task_classifier.json")
    args = parser.parse_args(argv)
    embedder = bundled_embedder(args.embedder)
    C = BUNDLED_C[args.embedder] if args.C is None else args.C
    classifier = train_task_classifier(embedder, per_label=args.per_label, seed=args.seed, C=C)
    if args.per_source > 0:
        from greenserv_core.evaluation.task_generalisation import evaluate_generalisation

        report = evaluate_generalisation(embedder, classifier, per_source=args.per_source, seed=args.seed)
        classifier.metrics_["held_out_sources"] = {
            "mean_accuracy": round(report.mean_accuracy, 4),
            "per_source": {row.source: round(row.accuracy, 4) for row in report.rows},
            "prompts_per_source": args.per_source,
        }
    classifier.save(args.out)
    print(json.dumps(classifier.metrics_, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
