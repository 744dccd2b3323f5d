"""Warm starts of a replay: labelled queries taught to every router before its stream.

:func:`split_warm_start` sets them apart from the stream; :func:`teach_outcomes` teaches each
model its outcome on them (:meth:`~greenserv_core.router.GreenServRouter.learn`, the plain
replay's warm start, with an optional wrong prior, :func:`parse_overstatement`);
:func:`teach_answers` teaches every model's answer to each at once
(:meth:`~greenserv_core.router.GreenServRouter.learn_answers`), so that cascades learn from
them too (the cascade replay's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.diagnostics import Diagnostic
from greenserv_core.evaluation.table import Matrices
from greenserv_core.router import GreenServRouter
from greenserv_core.routing.labelled import LabelledAnswer

__all__ = ["answers_report", "parse_overstatement", "split_warm_start", "teach_answers", "teach_outcomes"]


def split_warm_start(data: Matrices, per_task: int | None, warm_start: int) -> tuple[Matrices, Matrices | None]:
    """The queries to stream and the warm-start queries (both in table order): with a cut, the
    first ``per_task`` of each task and the ``warm_start`` that follow; without one, all but the
    last ``warm_start`` of each task, and those."""
    if per_task is not None and per_task < 1:
        raise InvalidInputError(f"per_task must be at least 1, got {per_task}")
    if warm_start < 0:
        raise InvalidInputError(f"warm_start must be at least 0, got {warm_start}")
    if per_task is None and not warm_start:
        return data, None
    tasks = np.asarray(data.tasks)
    stream: list[np.ndarray] = []
    warm: list[np.ndarray] = []
    for task in dict.fromkeys(data.tasks):
        rows = np.flatnonzero(tasks == task)
        keep = per_task if per_task is not None else len(rows) - warm_start
        if keep < 1 or (warm_start and len(rows) < keep + warm_start):
            raise InvalidInputError(
                f"task {task!r} has {len(rows)} queries: too few for "
                f"{f'{per_task} per task and ' if per_task is not None else ''}{warm_start} to warm start on"
            )
        stream.append(rows[:keep])
        warm.append(rows[keep : keep + warm_start])
    streamed = data.take(np.sort(np.concatenate(stream)))
    return streamed, data.take(np.sort(np.concatenate(warm))) if warm_start else None


def parse_overstatement(text: str) -> tuple[str, float]:
    """``MODEL:+D`` → the model whose warm-start scores are taught raised by ``D`` (capped at 1).

    >>> parse_overstatement("qwen2.5-14b:+0.4")
    ('qwen2.5-14b', 0.4)
    """
    model, colon, amount = text.rpartition(":")
    try:
        value = float(amount)
    except ValueError:
        value = math.nan
    if not colon or not model or not -1 <= value <= 1:
        raise InvalidInputError(f"an overstatement is MODEL:+D with -1 <= D <= 1 (e.g. qwen2.5-14b:+0.4), got {text!r}")
    return model, value


def teach_outcomes(
    router: GreenServRouter,
    warm: Matrices,
    models: Sequence[str],
    overstate: Mapping[str, float],
    diagnostic: Diagnostic | None = None,
) -> None:
    """Teach ``router`` the warm-start rows of ``models``, query by query (table order), each
    score raised by ``overstate``'s margin for its model (a wrong prior); a ``diagnostic``
    policy is told each query's true task."""
    index = {m: j for j, m in enumerate(warm.models)}
    for i, prompt in enumerate(warm.prompts):
        if diagnostic is not None:
            diagnostic.task = warm.tasks[i]
        for model in models:
            j = index[model]
            router.learn(
                prompt,
                model,
                score=min(1.0, max(0.0, float(warm.accuracy[i, j]) + overstate.get(model, 0.0))),
                energy_joules=float(warm.energy[i, j]),
                latency_s=float(warm.latency[i, j]),
            )


def teach_answers(router: GreenServRouter, warm: Matrices, signals: Mapping[str, str] | None = None) -> None:
    """Teach ``router`` every model's labelled answer to each warm-start query (table order),
    each confidence under the name ``signals`` gives its task's signal (the table's
    ``confidence_signals``; a task it leaves out, or ``None``: unnamed)."""
    for i, prompt in enumerate(warm.prompts):
        signal = None if signals is None else signals.get(warm.tasks[i])
        answers = {}
        for j, model in enumerate(warm.models):
            confidence = None if warm.confidence is None else float(warm.confidence[i, j])
            asking = 0.0 if warm.confidence_joules is None else float(warm.confidence_joules[i, j])
            answers[model] = LabelledAnswer(
                score=float(warm.accuracy[i, j]),
                energy_joules=float(warm.energy[i, j]),
                latency_s=float(warm.latency[i, j]),
                confidence=None if confidence is None or np.isnan(confidence) else confidence,
                confidence_joules=0.0 if np.isnan(asking) else asking,
                confidence_signal=signal,
            )
        router.learn_answers(prompt, answers)


def answers_report(warm: Matrices | None) -> dict[str, Any]:
    """What the warm start taught: its queries, rows (query × model) and what they cost in the
    table (the answers' joules and their confidences')."""
    if warm is None:
        return {"queries": 0, "rows": 0, "joules": 0.0, "wh": 0.0}
    joules = float(warm.energy.sum())
    if warm.confidence_joules is not None:
        joules += float(np.nansum(warm.confidence_joules))
    return {"queries": len(warm.queries), "rows": int(warm.energy.size), "joules": joules, "wh": joules / 3600}
