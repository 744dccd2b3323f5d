"""How well answers' confidence tells right from wrong: AUROC per model and task.

The AUROC is the chance that a right answer has a higher confidence than a wrong one (0.5: the
signal says nothing; 1: it separates them perfectly). It decides whether a cascade can pay:
a cheap answer is kept only when its confidence says it is right (issue 18). An answer
counts as right when its score is at least 0.5. Computed with scikit-learn's
``roc_auc_score``.

    greenserv bench confidence --table real.parquet

>>> auroc([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0]), auroc([0.9, 0.1], [1, 1])
(1.0, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.table import OutcomeTable

__all__ = ["auroc", "confidence_report"]


def auroc(confidence: Sequence[float] | np.ndarray, correct: Sequence[float] | np.ndarray) -> float | None:
    """The AUROC of ``confidence`` for ``correct >= 0.5``; ``None`` when the answers are all
    right or all wrong (there is nothing to separate)."""
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(confidence, dtype=float)
    labels = np.asarray(correct, dtype=float) >= 0.5
    if scores.shape != labels.shape:
        raise InvalidInputError(f"confidence and correct differ in length: {scores.shape} and {labels.shape}")
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, scores))


def confidence_report(table: OutcomeTable) -> list[dict[str, Any]]:
    """One row per (task, model), then one per model over all its tasks: answers with a
    signal, accuracy, mean confidence of right and of wrong answers, and the AUROC (``None``
    where it is undefined). A table without a ``confidence`` column raises
    :class:`InvalidInputError`."""
    data = table.matrices()
    if data.confidence is None:
        raise InvalidInputError("this table has no confidence column; collect it again with `greenserv bench collect`")
    signals = table.metadata.get("confidence_signals", {})
    rows: list[dict[str, Any]] = []
    tasks = np.asarray(data.tasks)
    groups = [(task, tasks == task) for task in dict.fromkeys(data.tasks)]
    groups.append(("all", np.ones(len(tasks), dtype=bool)))
    for task, mine in groups:
        for j, model in enumerate(data.models):
            confidence, accuracy = data.confidence[mine, j], data.accuracy[mine, j]
            seen = ~np.isnan(confidence)
            right = accuracy[seen] >= 0.5
            rows.append(
                {
                    "task": task,
                    "model": model,
                    "signal": signals.get(task, "mixed" if task == "all" else "?"),
                    "answers": int(seen.sum()),
                    "accuracy": float(accuracy.mean()),
                    "confidence_right": float(confidence[seen][right].mean()) if right.any() else None,
                    "confidence_wrong": float(confidence[seen][~right].mean()) if (~right).any() else None,
                    "auroc": auroc(confidence[seen], accuracy[seen]) if seen.any() else None,
                }
            )
    return rows
