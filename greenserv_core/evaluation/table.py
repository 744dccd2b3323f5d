"""Outcome tables: one row per (query, model), as CSV or Parquet.

Columns: ``query_id, task, prompt, reference, model, output, accuracy (0..1), energy_joules,
energy_source, latency_s, input_tokens, output_tokens``, and optionally ``confidence`` (0..1,
empty where the model gave no signal; see :mod:`greenserv_core.confidence`; the signal used per
task is named in the metadata's ``confidence_signals``) and ``confidence_joules`` (what reading
that confidence cost beyond the answer, such as a self-verification question; empty or
absent: nothing, as for the tokens' own log-probabilities). Table-level facts (above all
whether the table is **simulated**) travel in the Parquet schema metadata, or for CSV in a
sidecar ``<file>.meta.json``. CSV is read and written with the standard library (quoted
fields may span lines, as pandas and spreadsheets write them); Parquet needs the ``bench``
extra (pyarrow).
"""

from __future__ import annotations

import csv
import json
import numbers
import os
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.evaluation.extras import bench_import

__all__ = ["COLUMNS", "OPTIONAL_COLUMNS", "OutcomeTable", "check_table_suffix", "read_table", "write_table"]

COLUMNS = (
    "query_id",
    "task",
    "prompt",
    "reference",
    "model",
    "output",
    "accuracy",
    "energy_joules",
    "energy_source",
    "latency_s",
    "input_tokens",
    "output_tokens",
)
OPTIONAL_COLUMNS = ("confidence", "confidence_joules")
"""Columns a table may have: written and read when present."""
_NUMERIC = {
    "accuracy": float,
    "energy_joules": float,
    "latency_s": float,
    "input_tokens": int,
    "output_tokens": int,
    "confidence": float,
    "confidence_joules": float,
}


@dataclass
class OutcomeTable:
    """Rows as columns (lists), plus ``metadata`` (``simulated`` is always present, and true
    whenever every row's ``energy_source`` is ``"simulated"``). Accuracy is stored as floats and
    token counts as integers of 0 or more, as :func:`read_table` reads them."""

    columns: dict[str, list[Any]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.columns]
        if missing:
            raise InvalidInputError(f"an outcome table needs the columns {missing}")
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise InvalidInputError("outcome table columns have different lengths")
        _check_text(self.columns)
        _check_within(self.columns["accuracy"], "accuracy", high=1.0, empty=False)
        self.columns["accuracy"] = [float(value) for value in self.columns["accuracy"]]  # a bool reads back too
        _check_within(self.columns["energy_joules"], "energy_joules", high=np.inf, empty=False)
        _check_within(self.columns["latency_s"], "latency_s", high=np.inf, empty=False)
        for name in ("input_tokens", "output_tokens"):
            self.columns[name] = _counts(self.columns[name], name)
        _check_unique(self.columns["query_id"], self.columns["model"])
        _check_one_question(self.columns)
        if "confidence" in self.columns:
            _check_within(self.columns["confidence"], "confidence", high=1.0, empty=True)
        if "confidence_joules" in self.columns:
            _check_within(self.columns["confidence_joules"], "confidence_joules", high=np.inf, empty=True)
        sources = self.columns["energy_source"]
        if sources and all(source == "simulated" for source in sources):  # a CSV without its sidecar, say
            self.metadata["simulated"] = True
        self.metadata.setdefault("simulated", False)

    def column_names(self) -> list[str]:
        """The required columns, then the optional ones this table has."""
        return _present(self.columns)

    def __len__(self) -> int:
        return len(self.columns["query_id"])

    @property
    def simulated(self) -> bool:
        return bool(self.metadata.get("simulated"))

    def matrices(self) -> Matrices:
        """Dense (query × model) arrays for fast replay; every query must have every model."""
        queries = list(dict.fromkeys(self.columns["query_id"]))
        models = list(dict.fromkeys(self.columns["model"]))
        q_index = {q: i for i, q in enumerate(queries)}
        m_index = {m: j for j, m in enumerate(models)}
        shape = (len(queries), len(models))
        accuracy, energy, latency = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        confidence = np.full(shape, np.nan) if "confidence" in self.columns else None
        confidence_joules = np.zeros(shape) if "confidence_joules" in self.columns else None
        prompts, tasks = [""] * len(queries), [""] * len(queries)
        for row in range(len(self)):
            i, j = q_index[self.columns["query_id"][row]], m_index[self.columns["model"][row]]
            accuracy[i, j] = self.columns["accuracy"][row]
            energy[i, j] = self.columns["energy_joules"][row]
            latency[i, j] = self.columns["latency_s"][row]
            if confidence is not None and self.columns["confidence"][row] is not None:
                confidence[i, j] = self.columns["confidence"][row]
            asking = None if confidence_joules is None else self.columns["confidence_joules"][row]
            if confidence_joules is not None and asking is not None and not np.isnan(asking):
                confidence_joules[i, j] = asking
            prompts[i], tasks[i] = self.columns["prompt"][row], self.columns["task"][row]
        if np.isnan(accuracy).any():
            raise InvalidInputError("the table is not complete: some (query, model) rows are missing")
        return Matrices(queries, models, prompts, tasks, accuracy, energy, latency, confidence, confidence_joules)


def _present(available: Collection[str]) -> list[str]:
    """The required columns, then those of :data:`OPTIONAL_COLUMNS` among ``available``."""
    return [*COLUMNS, *(name for name in OPTIONAL_COLUMNS if name in available)]


_TEXT = ("query_id", "task", "prompt", "model")
"""Columns of text that every row must fill."""


def _check_text(columns: dict[str, list[Any]]) -> None:
    """``query_id``, ``task``, ``prompt`` and ``model`` hold non-empty text, or :class:`InvalidInputError`
    naming the first row that does not (a Parquet or pandas null is no task). Whole-number query
    ids (a Parquet column of integers) are taken as their text, as a CSV file reads them."""
    ids = columns["query_id"]
    if any(isinstance(value, numbers.Integral) and not isinstance(value, bool) for value in ids):
        columns["query_id"] = [
            str(int(v)) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v for v in ids
        ]
    for row, values in enumerate(zip(*(columns[name] for name in _TEXT), strict=True)):
        for name, value in zip(_TEXT, values, strict=True):
            if not isinstance(value, str) or not value:
                raise InvalidInputError(f"{name} must be non-empty text; row {row + 1} has {value!r}")


def _check_within(values: list[Any], name: str, *, high: float, empty: bool) -> None:
    """Every value a finite number in ``[0, high]`` (``None`` and NaN too where ``empty``:
    pandas writes a missing number as NaN), or :class:`InvalidInputError` naming the first
    row that is not."""
    span = f"[0, {high:g}]" if np.isfinite(high) else "[0, ∞)"
    either = " or be empty" if empty else ""
    try:
        numbers = np.array([np.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must hold numbers in {span}{either}") from None
    inside = np.isfinite(numbers) & (numbers >= 0) & (numbers <= high)  # NaN is outside
    if empty:
        inside |= np.isnan(numbers)
    outside = np.flatnonzero(~inside)
    if outside.size:
        row = int(outside[0])
        raise InvalidInputError(f"{name} must lie in {span}{either}; row {row + 1} has {values[row]!r}")


def _counts(values: list[Any], name: str) -> list[int]:
    """``values`` as integers of 0 or more (an integral float such as ``12.0`` is fine), or
    :class:`InvalidInputError` naming the first row that is not one."""
    out = []
    for row, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if not (number.is_integer() and number >= 0):
            raise InvalidInputError(f"{name} must hold integers of 0 or more; row {row + 1} has {value!r}")
        out.append(int(number))
    return out


def _check_unique(queries: list[Any], models: list[Any]) -> None:
    """One row per (query, model), or :class:`InvalidInputError` naming the first repeated row
    and the row it repeats (a second row would silently replace the first)."""
    seen: dict[tuple[Any, Any], int] = {}
    for row, key in enumerate(zip(queries, models, strict=True)):
        first = seen.setdefault(key, row)
        if first != row:
            raise InvalidInputError(
                f"row {row + 1} repeats query_id {key[0]!r} with model {key[1]!r} (first in row {first + 1}); "
                "a table has one row per (query, model)"
            )


def _check_one_question(columns: dict[str, list[Any]]) -> None:
    """Every row of one query_id has the same task, prompt and reference, or
    :class:`InvalidInputError` naming the first row that does not (two collections
    concatenated, say, whose query_ids name other questions)."""
    first: dict[Any, int] = {}
    for row, query in enumerate(columns["query_id"]):
        before = first.setdefault(query, row)
        for name in ("task", "prompt", "reference"):
            here, there = columns[name][row], columns[name][before]
            if here != there and not (here != here and there != there):  # NaN (pandas' missing text) is itself
                raise InvalidInputError(
                    f"row {row + 1} gives query_id {query!r} another {name} than row {before + 1}; "
                    "the rows of one query_id are the answers to one question"
                )


@dataclass
class Matrices:
    queries: list[str]
    models: list[str]
    prompts: list[str]
    tasks: list[str]
    accuracy: np.ndarray
    energy: np.ndarray
    latency: np.ndarray
    confidence: np.ndarray | None = None
    """Each answer's confidence (NaN where none), when the table records it."""
    confidence_joules: np.ndarray | None = None
    """What reading each confidence cost beyond the answer (0 where nothing), when the table
    records it: a cascade charges it to its first model."""

    def take(self, rows: np.ndarray) -> Matrices:
        """The queries ``rows`` (in that order), with every per-answer array, the optional ones too."""
        return Matrices(
            [self.queries[i] for i in rows],
            self.models,
            [self.prompts[i] for i in rows],
            [self.tasks[i] for i in rows],
            self.accuracy[rows],
            self.energy[rows],
            self.latency[rows],
            None if self.confidence is None else self.confidence[rows],
            None if self.confidence_joules is None else self.confidence_joules[rows],
        )

    def energy_norm(self) -> np.ndarray:
        """Energy mapped to [0, 1] per task by the table's own min and max (the evaluation's scale)."""
        out = np.zeros_like(self.energy)
        tasks = np.asarray(self.tasks)
        for task in set(self.tasks):
            rows = tasks == task
            low, high = self.energy[rows].min(), self.energy[rows].max()
            out[rows] = (self.energy[rows] - low) / (high - low) if high > low else 0.0
        return out


def write_table(table: OutcomeTable, path: str | Path) -> Path:
    """Write ``.parquet`` (needs the ``bench`` extra) or ``.csv`` (RFC 4180, with a ``.meta.json`` sidecar).

    Each file is written to a temporary file in the same folder and renamed into place; a CSV
    is written whole before its sidecar is, and renamed after it: an interrupted write leaves
    the old files (or none), never half a table, and never a table that reads as real for want
    of its sidecar (only an interruption between the two renames pairs the old table with the
    new sidecar).
    """
    path = Path(path)
    check_table_suffix(path)
    meta = json.dumps(table.metadata, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pa = bench_import("pyarrow")
        pq = bench_import("pyarrow.parquet")
        arrow = pa.table({name: table.columns[name] for name in table.column_names()})
        _write_atomically(
            path, lambda temporary: pq.write_table(arrow.replace_schema_metadata({"greenserv": meta}), temporary)
        )
    else:

        def write_csv(temporary: Path) -> None:
            with open(temporary, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                names = table.column_names()
                writer.writerow(names)
                writer.writerows(
                    zip(*(_csv_values(table.columns[name]) for name in names), strict=True)  # None: an empty field
                )

        # the table written whole first, then the sidecar, then the table renamed into place (an
        # interrupted table leaves the old sidecar beside the old table)
        _write_atomically(
            path,
            write_csv,
            before_rename=lambda: _write_atomically(
                Path(f"{path}.meta.json"), lambda temporary: temporary.write_text(meta, encoding="utf-8")
            ),
        )
    return path


def check_table_suffix(path: str | Path, flag: str | None = None) -> Path:
    """``path`` when it names a ``.csv`` or ``.parquet`` file; otherwise :class:`InvalidInputError`
    (naming ``flag``, the command-line option, when given)."""
    path = Path(path)
    where = f"{flag} {path}: " if flag else ""
    if path.suffix not in {".csv", ".parquet"}:
        raise InvalidInputError(f"{where}outcome tables are .csv or .parquet, not {path.suffix!r}")
    if path.is_dir():
        raise InvalidInputError(f"{flag} {path} is a folder, not a table file" if flag else f"{path} is a folder")
    return path


def _write_atomically(
    path: Path, write: Callable[[Path], object], before_rename: Callable[[], object] | None = None
) -> None:
    """``write`` a temporary file beside ``path``, then (after ``before_rename``) rename it to
    ``path`` (the temporary file is removed if writing fails or is interrupted). The temporary
    file is created by ``write`` itself, so it gets the permissions a plain write would."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(temporary)
        if before_rename is not None:
            before_rename()
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _csv_values(values: list[Any]) -> list[Any]:
    return ["" if value is None or (isinstance(value, float) and value != value) else value for value in values]


def read_table(path: str | Path) -> OutcomeTable:
    """Read a table written by :func:`write_table`, or a CSV from pandas or a spreadsheet.

    CSV fields may hold quoted line breaks (RFC 4180); extra columns are ignored. A malformed
    table raises :class:`~greenserv_core.errors.InvalidInputError` naming the file, and the
    row and column where it can.
    """
    path = Path(path)
    if not path.exists():
        raise StateFileError(f"no outcome table at {path}")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder, not an outcome table")
    if path.suffix == ".parquet":
        columns, metadata = _read_parquet(path)
    elif path.suffix == ".csv":
        columns = _read_csv(path)
        sidecar = Path(f"{path}.meta.json")
        try:
            metadata = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.exists() else {}
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"{sidecar} is not valid JSON: {error}") from error
        except (UnicodeDecodeError, OSError) as error:  # not text, a folder, unreadable
            raise InvalidInputError(f"{sidecar} is not readable metadata: {error}") from error
    else:
        raise InvalidInputError(f"outcome tables are .csv or .parquet, not {path.suffix!r}")
    if not isinstance(metadata, dict):
        raise InvalidInputError(f"{path}: its metadata must be a JSON object, got {type(metadata).__name__}")
    try:
        table = OutcomeTable(columns, metadata)
    except InvalidInputError as error:
        raise InvalidInputError(f"{path}: {error}") from error
    if not len(table):
        raise InvalidInputError(f"{path} holds no rows, only a header")
    return table


def _read_parquet(path: Path) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    pa = bench_import("pyarrow")
    pq = bench_import("pyarrow.parquet")
    try:
        arrow = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise InvalidInputError(f"{path} is not a readable Parquet table: {error}") from error
    missing = [name for name in COLUMNS if name not in arrow.column_names]
    if missing:
        raise InvalidInputError(f"{path} lacks the columns {missing}")
    try:
        metadata = json.loads((arrow.schema.metadata or {}).get(b"greenserv", b"{}"))
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{path}: its greenserv metadata is not valid JSON: {error}") from error
    columns: dict[str, list[Any]] = {}
    for name in _present(arrow.column_names):
        values = arrow.column(name).to_pylist()
        columns[name] = _convert(path, name, values) if name in _NUMERIC else values
    return columns, metadata


def _read_csv(path: Path) -> dict[str, list[Any]]:
    """Every field as text (UTF-8, a byte-order mark allowed); rows are numbered from 1 after the header."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise InvalidInputError(f"{path} is empty")
            missing = [name for name in COLUMNS if name not in header]
            if missing:
                raise InvalidInputError(f"{path} lacks the columns {missing} (its header: {header})")
            names = _present(header)
            where = [header.index(name) for name in names]
            columns: dict[str, list[Any]] = {name: [] for name in names}
            lines: list[int] = []  # the line each row ends on (quoted fields may span lines)
            for number, row in enumerate((row for row in reader if row), start=1):  # blank lines skipped
                if len(row) != len(header):
                    raise InvalidInputError(
                        f"{path}: row {number} (ending on line {reader.line_num}) has {len(row)} fields, "
                        f"the header has {len(header)}"
                    )
                lines.append(reader.line_num)
                for name, at in zip(names, where, strict=True):
                    columns[name].append(row[at])
        except csv.Error as error:
            raise InvalidInputError(f"{path}: malformed CSV near line {reader.line_num}: {error}") from error
        except UnicodeDecodeError as error:
            raise InvalidInputError(f"{path} is not UTF-8 text: {error}") from error
    for name in _NUMERIC:
        if name in columns:
            columns[name] = _convert(path, name, columns[name], lines)
    return columns


_BOOLS = {"True": 1.0, "False": 0.0}
"""An accuracy as pandas writes a bool column to CSV."""


def _convert(path: Path, column: str, values: list[Any], lines: list[int] | None = None) -> list[Any]:
    """The numbers of a numeric column (an integral float such as ``12.0`` is fine for a count;
    ``True`` and ``False`` are 1 and 0 for accuracy)."""
    kind = _NUMERIC[column]
    out: list[Any] = []
    for number, value in enumerate(values, start=1):
        if column in OPTIONAL_COLUMNS and (value is None or value == ""):
            out.append(None)  # no signal for this answer
            continue
        try:
            number_value = _BOOLS[value] if column == "accuracy" and value in _BOOLS else float(value)
            if kind is int:
                if not number_value.is_integer():
                    raise ValueError(value)
                out.append(int(number_value))
            else:
                out.append(number_value)
        except (TypeError, ValueError):
            line = f" (ending on line {lines[number - 1]})" if lines else ""
            wanted = "an integer" if kind is int else "a number"
            message = f"{path}: row {number}{line}, column {column!r}: {value!r} is not {wanted}"
            raise InvalidInputError(message) from None
    return out
