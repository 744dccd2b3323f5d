"""Train a task classifier for a bundled embedder, score it, and write its weights.

Retrain and rewrite the bundled weights of an embedder (prints the in-distribution macro-F1
and the accuracy on held-out sources, :mod:`greenserv_core.evaluation.task_generalisation`)::

    python -m greenserv_core.evaluation.classifier_training --embedder minilm \
        --out greenserv_core/data/task_classifier.json
    python -m greenserv_core.evaluation.classifier_training --embedder static \
        --out greenserv_core/data/task_classifier_static.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from greenserv_core.features.embedders import Embedder
from greenserv_core.features.task_classifier import TaskClassifier, instruction_text

__all__ = ["BUNDLED_C", "BUNDLED_LEXICAL_FEATURES", "BUNDLED_PER_LABEL", "main", "train_task_classifier"]


BUNDLED_PER_LABEL = 1200
"""Training prompts per task type of the bundled classifiers."""
BUNDLED_C: dict[str, float] = {"minilm": 3.0, "static": 10.0}
"""Inverse regularisation strength of each bundled classifier (chosen on the held-out sources)."""
BUNDLED_LEXICAL_FEATURES = 4096
"""Hash buckets of word n-grams beside the embedding in the bundled classifiers."""


def train_task_classifier(
    embedder: Embedder,
    *,
    per_label: int = BUNDLED_PER_LABEL,
    test_per_label: int = 200,
    seed: int = 0,
    C: float = 3.0,
    lexical_features: int = BUNDLED_LEXICAL_FEATURES,
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
    train_x = [instruction_text(item.text) for item in train]
    test_x = [instruction_text(item.text) for item in test]
    classifier = TaskClassifier(C=C, lexical_features=lexical_features).fit(
        embedder.embed(train_x), train_y, embedder.name, texts=train_x
    )
    probabilities = classifier.predict_proba(embedder.embed(test_x), test_x)
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
        "lexical_features": lexical_features,
        "seed": seed,
    }
    return classifier


def main(argv: Sequence[str] | None = None) -> None:
    """Train a task classifier for a bundled embedder, score it (in distribution, and on the
    held-out sources of :mod:`~greenserv_core.evaluation.task_generalisation`) and write it."""
    from greenserv_core.cli.common import check_output_file
    from greenserv_core.features.bundled import EMBEDDERS, bundled_embedder

    parser = argparse.ArgumentParser(description="Train the task-type classifier of a bundled embedder.")
    parser.add_argument("--embedder", choices=EMBEDDERS, default="minilm")
    parser.add_argument("--per-label", type=int, default=BUNDLED_PER_LABEL, help="training prompts per task type")
    parser.add_argument("--C", type=float, default=None, help=f"inverse regularisation strength {BUNDLED_C}")
    parser.add_argument(
        "--lexical-features", type=int, default=BUNDLED_LEXICAL_FEATURES, help="hashed word n-gram buckets (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-source", type=int, default=200, help="prompts per held-out source (0: skip)")
    parser.add_argument("--out", type=Path, required=True, help="e.g. greenserv_core/data/task_classifier.json")
    args = parser.parse_args(argv)
    check_output_file("--out", str(args.out), writable=True)  # before the training: a missing folder is made
    embedder = bundled_embedder(args.embedder)
    C = BUNDLED_C[args.embedder] if args.C is None else args.C
    classifier = train_task_classifier(
        embedder, per_label=args.per_label, seed=args.seed, C=C, lexical_features=args.lexical_features
    )
    if args.per_source > 0:
        from greenserv_core.evaluation.task_generalisation import evaluate_generalisation

        report = evaluate_generalisation(embedder, classifier, per_source=args.per_source, seed=args.seed)
        classifier.metrics_["held_out_sources"] = {
            "mean_accuracy": round(report.mean_accuracy, 4),
            "per_source": {row.source: round(row.accuracy, 4) for row in report.rows},
            "prompts_per_source": args.per_source,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    classifier.save(args.out)
    print(json.dumps(classifier.metrics_, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
