"""Outcome tables: one row per (query, model), as CSV or Parquet.

Columns: ``query_id, task, prompt, reference, model, output, accuracy (0..1), energy_joules,
energy_source, latency_s, input_tokens, output_tokens``. Table-level facts (above all
whether the table is **simulated**) travel in the Parquet schema metadata, or for CSV in a
sidecar ``<file>.meta.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from greenserv_core.errors import InvalidInputError, StateFileError

__all__ = ["COLUMNS", "OutcomeTable", "read_table", "write_table"]

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
_NUMERIC = {"accuracy": float, "energy_joules": float, "latency_s": float, "input_tokens": int, "output_tokens": int}


@dataclass
class OutcomeTable:
    """Rows as columns (lists), plus ``metadata`` (``simulated`` is always present)."""

    columns: dict[str, list[Any]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.columns]
        if missing:
            raise InvalidInputError(f"an outcome table needs the columns {missing}")
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise InvalidInputError("outcome table columns have different lengths")
        accuracy = np.asarray(self.columns["accuracy"], dtype=float)
        if accuracy.size and (np.isnan(accuracy).any() or accuracy.min() < 0 or accuracy.max() > 1):
            raise InvalidInputError("accuracy must lie in [0, 1]")
        self.metadata.setdefault("simulated", False)

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
        prompts, tasks = [""] * len(queries), [""] * len(queries)
        for row in range(len(self)):
            i, j = q_index[self.columns["query_id"][row]], m_index[self.columns["model"][row]]
            accuracy[i, j] = self.columns["accuracy"][row]
            energy[i, j] = self.columns["energy_joules"][row]
            latency[i, j] = self.columns["latency_s"][row]
            prompts[i], tasks[i] = self.columns["prompt"][row], self.columns["task"][row]
        if np.isnan(accuracy).any():
            raise InvalidInputError("the table is not complete: some (query, model) rows are missing")
        return Matrices(queries, models, prompts, tasks, accuracy, energy, latency)


@dataclass
class Matrices:
    queries: list[str]
    models: list[str]
    prompts: list[str]
    tasks: list[str]
    accuracy: np.ndarray
    energy: np.ndarray
    latency: np.ndarray

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
    """Write ``.parquet`` or ``.csv`` (with a ``.meta.json`` sidecar)."""
    import pyarrow as pa

    path = Path(path)
    arrow = pa.table({name: table.columns[name] for name in COLUMNS})
    meta = json.dumps(table.metadata, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(arrow.replace_schema_metadata({"greenserv": meta}), path)
    elif path.suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(arrow, path)
        Path(f"{path}.meta.json").write_text(meta, encoding="utf-8")
    else:
        raise InvalidInputError(f"outcome tables are .csv or .parquet, not {path.suffix!r}")
    return path


def read_table(path: str | Path) -> OutcomeTable:
    import pyarrow as pa

    path = Path(path)
    if not path.exists():
        raise StateFileError(f"no outcome table at {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        arrow = pq.read_table(path)
        raw = (arrow.schema.metadata or {}).get(b"greenserv", b"{}")
        metadata = json.loads(raw)
    elif path.suffix == ".csv":
        import pyarrow.csv as pcsv

        types = {"query_id": pa.string(), "reference": pa.string(), "output": pa.string(), "prompt": pa.string()}
        arrow = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=False))
        sidecar = Path(f"{path}.meta.json")
        metadata = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.exists() else {}
    else:
        raise InvalidInputError(f"outcome tables are .csv or .parquet, not {path.suffix!r}")
    columns = {name: arrow.column(name).to_pylist() for name in COLUMNS}
    for name, kind in _NUMERIC.items():
        columns[name] = [kind(v) for v in columns[name]]
    return OutcomeTable(columns, metadata)
