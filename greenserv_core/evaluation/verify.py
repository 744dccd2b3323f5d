"""Self-verification on a collected table: ask each model about its own answers, record the verdicts.

``greenserv bench collect`` stores every answer with the confidence its tokens give. A
:class:`~greenserv_core.confidence.SelfVerification` signal needs one more call per answer, so
it is measured apart: :func:`verify_table` sends each stored answer back to the model that gave
it, with the verification question, and writes a copy of the table whose ``confidence`` column
holds the verdicts and whose ``confidence_joules`` what each question cost. ``greenserv bench
confidence`` then reports its AUROC beside the token signal's, and the cascade benchmarks
charge each question to the cascade's first answer. The answers, scores and joules are the
original table's, untouched; the metadata's ``verification`` sums the questions' joules and
seconds per model, beside the answers' own joules. Questions go to a local model in batches
(``batch_size``); with sampled verdicts the batch shares one seed per sample, so the draws
differ from a cascade's one-at-a-time questions though they estimate the same share. Not
resumable: 640 greedy questions to the bundled models take about four minutes on two CPU
cores.

    greenserv bench verify --table conf40.parquet --out conf40_verified.parquet
    greenserv bench confidence --table conf40_verified.parquet

>>> from greenserv_core.backends.fake import FakeBackend
>>> from greenserv_core.evaluation.table import OutcomeTable
>>> rows = {"query_id": ["q1", "q2"], "task": ["arc_easy"] * 2, "prompt": ["2+2?", "3+3?"], "reference": ["4", "6"],
...         "model": ["m", "m"], "output": ["4", "5"], "accuracy": [1.0, 0.0], "energy_joules": [1.0, 1.0],
...         "energy_source": ["fake"] * 2, "latency_s": [0.1, 0.1], "input_tokens": [3, 3], "output_tokens": [1, 1]}
>>> judge = FakeBackend("m", reply=lambda m: "Yes" if "Proposed answer:\\n4" in m[-1]["content"] else "No")
>>> verified = verify_table(OutcomeTable(rows, {}), [judge], "/tmp/gs-doc/verified.csv")
>>> verified.columns["confidence"], verified.metadata["confidence_signals"]
([1.0, 0.0], {'arc_easy': 'self-verification'})
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from greenserv_core.backends.base import GenerationResult, ModelBackend, batch_generator, generate_all
from greenserv_core.confidence import SelfVerification
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.table import OutcomeTable, write_table

__all__ = ["verify_table"]


def verify_table(
    table: OutcomeTable,
    backends: Sequence[ModelBackend],
    out: str | Path,
    *,
    signal: SelfVerification | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> OutcomeTable:
    """A copy of ``table`` whose ``confidence`` is ``signal``'s verdict (default: one greedy
    :class:`SelfVerification`) on each answer, asked of the model that gave it; written to
    ``out`` and returned. Every model of the table must be among ``backends`` (by name)."""
    signal = signal or SelfVerification()
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be positive, got {batch_size}")
    columns = table.columns
    by_name = {backend.info.name: backend for backend in backends}
    missing = sorted(set(columns["model"]) - set(by_name))
    if missing:
        raise InvalidInputError(f"the table's models {missing} are not among the models given {sorted(by_name)}")
    rows_of: dict[str, list[int]] = {}
    for row, model in enumerate(columns["model"]):
        rows_of.setdefault(str(model), []).append(row)
    confidence: list[float | None] = [None] * len(columns["model"])
    asking: list[float] = [0.0] * len(columns["model"])
    seconds: dict[str, float] = dict.fromkeys(rows_of, 0.0)
    sources: dict[str, set[str]] = {model: set() for model in rows_of}
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(confidence), desc="verify", unit="answer")
    for model, rows in rows_of.items():
        backend = by_name[model]
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            questions = [
                signal.prompt([{"role": "user", "content": str(columns["prompt"][row])}], str(columns["output"][row]))
                for row in batch
            ]
            replies = [generate_all(backend, questions, settings) for settings in signal.settings()]
            seconds[model] += sum(_seconds(backend, answers) for answers in replies)
            for position, row in enumerate(batch):
                mine = [answers[position] for answers in replies]
                confidence[row] = signal.read(mine)
                asking[row] = sum(reply.energy.joules for reply in mine)
                sources[model].update(reply.energy.source for reply in mine)
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    verification = {
        model: {
            "answers": len(rows),
            "joules": sum(asking[row] for row in rows),
            "answer_joules": sum(float(columns["energy_joules"][row]) for row in rows),
            "energy_sources": sorted(sources[model]),
            "seconds": seconds[model],
        }
        for model, rows in rows_of.items()
    }
    metadata = {
        **table.metadata,
        "confidence_signals": {str(task): signal.name for task in dict.fromkeys(columns["task"])},
        "verification": verification,
    }
    verified = OutcomeTable({**columns, "confidence": confidence, "confidence_joules": asking}, metadata)
    try:
        write_table(verified, out)
    except OSError as error:  # a clear line, not a traceback after the work
        raise InvalidInputError(f"cannot write the table {out}: {error.strerror or error}") from error
    return verified


def _seconds(backend: ModelBackend, answers: list[GenerationResult]) -> float:
    """The seconds :func:`generate_all` took for ``answers``: each answer's own, summed, except
    that the answers of one padded batch all carry its wall time, which counts once (a batching
    backend's answers drawn one at a time, seeded samples, carry times of their own)."""
    if batch_generator(backend) is not None and len(answers) > 1:
        return sum({answer.latency_s for answer in answers})
    return sum(answer.latency_s for answer in answers)
