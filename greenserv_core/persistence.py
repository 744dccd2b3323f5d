"""Atomic, versioned, checksummed JSON files for learned state.

Layout: ``{"format": ..., "version": N, "sha256": <hex of the canonical state JSON>, "state": {...}}``.
numpy arrays are stored as ``{"__ndarray__": [...], "dtype": ..., "shape": [...]}``; Python
floats round-trip exactly through JSON. Writing goes to a temporary file in the same
folder, is flushed and fsynced, then renamed over the target, so a crash leaves either the
old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from greenserv_core.errors import StateFileError

__all__ = ["mode_for_saving", "read_state", "write_atomically", "write_state"]


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


_ARRAY_KEYS = frozenset({"__ndarray__", "dtype", "shape"})
"""An array as :func:`_encode` writes it: exactly these keys (a dict of the state whose own
key is ``"__ndarray__"``, say a model's name, stays a dict)."""


_PLAIN_KINDS = frozenset("biuf")
"""The kinds of dtype an array of a state file may have: bool, integers and floats, one number
an element (a sub-array, structured, object or text dtype could make a few bytes any size)."""


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if value.keys() == _ARRAY_KEYS:
            dtype = np.dtype(value["dtype"])
            if dtype.kind not in _PLAIN_KINDS or dtype.shape or dtype.fields is not None:
                raise StateFileError(f"the dtype {value['dtype']!r} is not a plain number or bool")
            return np.asarray(value["__ndarray__"], dtype=dtype).reshape(value["shape"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _canonical(state: Any) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=False)


def write_state(path: str | Path, state: dict[str, Any], *, fmt: str, version: int) -> None:
    """Write ``state`` to ``path`` atomically (write-then-rename), through a symbolic link to
    its target, keeping an existing file's permissions (a new file's follow the umask); ``~``
    is the user's home. A path that cannot hold the file (a folder, a place under a file) is
    :class:`StateFileError`, naming it."""
    given = path
    path = Path(os.path.realpath(Path(path).expanduser()))
    if str(given) == "" or path.is_dir():
        raise StateFileError(f"cannot save to {str(given)!r}: it is a folder, not a file")
    encoded = _encode(state)
    try:
        body = _canonical(encoded)
    except ValueError as error:  # NaN or infinity somewhere in the state
        raise StateFileError(f"cannot save to {path}: {error} (a setting or statistic is NaN or infinite)") from error
    except TypeError as error:  # a setting of a type JSON does not hold (a Decimal, a Fraction ...)
        raise StateFileError(f"cannot save to {path}: {error} (a setting a state file cannot hold)") from error
    document = {
        "format": fmt,
        "version": version,
        "sha256": hashlib.sha256(body.encode()).hexdigest(),
        "state": encoded,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        write_atomically(path, json.dumps(document, allow_nan=False).encode("utf-8"))
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:  # a file where a folder must be
        raise StateFileError(f"cannot save to {path}: a part of the path is a file, not a folder ({error})") from error


def write_atomically(path: str | Path, data: bytes) -> None:
    """Replace the file at ``path`` (through a symbolic link, its target) with ``data`` in one
    step: a crash leaves the old file or the new one, never a part. An existing file's
    permissions are kept; a new file's follow the umask.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "weights.json"
    >>> write_atomically(path, b"{}"); path.read_bytes()
    b'{}'
    """
    path = Path(os.path.realpath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode_for_saving(path))  # mkstemp's 0600 would lock other users out
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


_STALE_S = 3600.0
"""A temporary file of a save older than this was left by a crash (a save takes seconds)."""


def mode_for_saving(path: Path) -> int:
    """The permissions a saved file gets: the existing file's, else what the umask allows."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without setting it where Linux tells it (``os.umask`` sets
    it, for a moment, for every thread of the process)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)  # elsewhere: briefly the strictest, never wider
    os.umask(umask)
    return umask


def _remove_stale_temporaries(path: Path) -> None:
    """Delete what saves of ``path`` that crashed between writing and renaming left behind."""
    now = time.time()
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > _STALE_S:
                leftover.unlink()


def read_state(path: str | Path, *, fmt: str, version: int, oldest: int | None = None) -> dict[str, Any]:
    """Read and verify a file written by :func:`write_state` (``~`` is the user's home);
    :class:`StateFileError` if it is missing, truncated, tampered with, of another format, or
    of a version outside ``oldest`` (default ``version``) to ``version``."""
    path = Path(path).expanduser()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise StateFileError(f"no saved state at {path}") from error
    except OSError as error:  # a folder, a file it may not read
        raise StateFileError(f"cannot read the saved state at {path}: {error}") from error
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, a number of thousands of digits,
        # a nesting past reason
        raise StateFileError(f"{path} is corrupt (not readable as JSON: {error})") from error
    if not isinstance(document, dict) or document.get("format") != fmt:
        raise StateFileError(f"{path} is not a {fmt} file")
    readable = range(version if oldest is None else oldest, version + 1)
    found = document.get("version")
    if type(found) is not int or found not in readable:
        said = f"version {version}" if len(readable) == 1 else f"versions {readable[0]} to {version}"
        raise StateFileError(f"{path} has format version {found!r}; this GreenServ reads {said}")
    state = document.get("state")
    try:
        digest = hashlib.sha256(_canonical(state).encode()).hexdigest() if isinstance(state, dict) else None
    except (ValueError, RecursionError) as error:  # a NaN or a nesting past reason, put in by hand
        raise StateFileError(f"{path} is corrupt ({error})") from error
    if digest is None or digest != document.get("sha256"):
        raise StateFileError(f"{path} is corrupt (checksum mismatch)")
    try:
        decoded: dict[str, Any] = _decode(state)
    except (TypeError, ValueError, OverflowError) as error:  # an array whose dtype or shape does not fit its values
        raise StateFileError(f"{path} holds an array it cannot be read as ({error})") from error
    except RecursionError as error:  # a nesting past reason, with its checksum made to match
        raise StateFileError(f"{path} is corrupt ({error})") from error
    return decoded
