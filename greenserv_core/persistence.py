"""Atomic, versioned, checksummed JSON files for learned state.

Layout: ``{"format": ..., "version": N, "sha256": <hex of the canonical state JSON>, "state": {...}}``.
numpy arrays are stored as ``{"__ndarray__": [...], "dtype": ..., "shape": [...]}``; Python
floats round-trip exactly through JSON. Writing goes to a temporary file in the same
folder, is flushed and fsynced, then renamed over the target, so a crash leaves either the
old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from greenserv_core.errors import StateFileError

__all__ = ["read_state", "write_state"]


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _canonical(state: Any) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=False)


def write_state(path: str | Path, state: dict[str, Any], *, fmt: str, version: int) -> None:
    """Write ``state`` to ``path`` atomically (write-then-rename)."""
    path = Path(path)
    encoded = _encode(state)
    body = _canonical(encoded)
    document = {
        "format": fmt,
        "version": version,
        "sha256": hashlib.sha256(body.encode()).hexdigest(),
        "state": encoded,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_state(path: str | Path, *, fmt: str, version: int) -> dict[str, Any]:
    """Read and verify a file written by :func:`write_state`; :class:`StateFileError` if it is
    missing, truncated, tampered with, of another format or of another version."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise StateFileError(f"no saved state at {path}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StateFileError(f"{path} is corrupt (not valid JSON: {error})") from error
    if not isinstance(document, dict) or document.get("format") != fmt:
        raise StateFileError(f"{path} is not a {fmt} file")
    if document.get("version") != version:
        raise StateFileError(
            f"{path} has format version {document.get('version')!r}; this GreenServ reads version {version}"
        )
    state = document.get("state")
    if not isinstance(state, dict) or hashlib.sha256(_canonical(state).encode()).hexdigest() != document.get("sha256"):
        raise StateFileError(f"{path} is corrupt (checksum mismatch)")
    decoded: dict[str, Any] = _decode(state)
    return decoded
