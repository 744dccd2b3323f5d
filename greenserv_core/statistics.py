"""Learned state as mergeable statistics: what router replicas exchange.

Every learned component (a policy, a cost model, the energy normaliser, the clustering)
implements :class:`Shareable`: it turns itself into :class:`Statistics` and back. A router
joins its components' statistics under one prefix each (:meth:`Statistics.join`), so a
component knows only its own keys. Everything is kept as quantities that combine across
replicas without losing anything:

* **sums** add up: the data part of each ridge regression (``Σ x xᵀ``, ``Σ y x``, ``n``),
  decision counts, the k-means cluster sums and counts;
* **minima** and **maxima** combine by ``min`` and ``max``: the energy normaliser's range.

A replica sends the *change* of its sums since it last synchronised (:meth:`Statistics.minus`)
and its minima and maxima as they are (both are idempotent), so merging is commutative and
associative: the merged state does not depend on which replica wrote first.

>>> a = Statistics(sums={"n": np.array([2.0])}, minima={"lo": np.array([3.0])})
>>> b = Statistics(sums={"n": np.array([5.0])}, minima={"lo": np.array([1.0])})
>>> merged = a.plus(b)
>>> float(merged.sums["n"][0]), float(merged.minima["lo"][0])
(7.0, 1.0)
>>> Statistics.from_bytes(merged.to_bytes()) == merged
True
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from greenserv_core.errors import InvalidInputError, StateFileError

__all__ = ["Shareable", "Statistics"]

_KINDS = ("sums", "minima", "maxima")
_MAGIC = b"GSS1"


def _align(left: np.ndarray, right: np.ndarray, *, zeros: bool) -> tuple[np.ndarray, np.ndarray]:
    """Bring two arrays whose leading dimension differs (clusters seeded on one replica only)
    to one shape: the shorter is padded with zeros (sums) or with the longer one's rows
    (minima and maxima), so padding never changes a result."""
    if left.shape == right.shape:
        return left, right
    if left.ndim != right.ndim or left.ndim == 0 or left.shape[1:] != right.shape[1:]:
        raise InvalidInputError(f"cannot merge statistics of shapes {left.shape} and {right.shape}")
    longer = left if len(left) >= len(right) else right
    padded = []
    for array in (left, right):
        grown = np.zeros_like(longer) if zeros else longer.copy()
        grown[: len(array)] = array
        padded.append(grown)
    return padded[0], padded[1]


def _combine(
    left: Mapping[str, np.ndarray],
    right: Mapping[str, np.ndarray],
    op: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    zeros: bool,
) -> dict[str, np.ndarray]:
    out = {key: value.copy() for key, value in left.items()}
    for key, value in right.items():
        if key not in out:
            out[key] = value.copy()
            continue
        try:
            a, b = _align(out[key], value, zeros=zeros)
        except InvalidInputError as error:
            raise InvalidInputError(
                f"{error} (statistics {key!r}): replicas whose context vectors differ in length (another "
                "n_clusters, other task types or another embedder) cannot share learning; give every replica "
                "the same features"
            ) from None
        out[key] = op(a, b)
    return out


@dataclass
class Statistics:
    """Named arrays in three kinds: ``sums`` (add), ``minima`` (min) and ``maxima`` (max)."""

    sums: dict[str, np.ndarray] = field(default_factory=dict)
    minima: dict[str, np.ndarray] = field(default_factory=dict)
    maxima: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in _KINDS:
            arrays = getattr(self, kind)
            for key, value in arrays.items():
                array = np.asarray(value, dtype=np.float64)
                if not np.all(np.isfinite(array)):
                    raise InvalidInputError(f"statistic {key!r} holds NaN or infinity")
                arrays[key] = array

    def plus(self, other: Statistics) -> Statistics:
        """Merge: sums added, minima and maxima combined. Neither operand changes."""
        return Statistics(
            sums=_combine(self.sums, other.sums, np.add, zeros=True),
            minima=_combine(self.minima, other.minima, np.minimum, zeros=False),
            maxima=_combine(self.maxima, other.maxima, np.maximum, zeros=False),
        )

    def minus(self, base: Statistics) -> Statistics:
        """The change since ``base``: sums minus ``base``'s sums; minima and maxima as they are.

        Keys ``base`` has and this does not (a model this replica removed) are left out: a
        replica never erases what others learned."""
        return Statistics(
            sums=_combine(self.sums, {k: v for k, v in base.sums.items() if k in self.sums}, np.subtract, zeros=True),
            minima={k: v.copy() for k, v in self.minima.items()},
            maxima={k: v.copy() for k, v in self.maxima.items()},
        )

    @classmethod
    def join(cls, parts: Mapping[str, Statistics]) -> Statistics:
        """One set of statistics from several components', each under ``<name>/``.

        >>> one = Statistics.join({"a": Statistics(sums={"n": np.ones(1)})})
        >>> list(one.sums), list(one.under("a").sums)
        (['a/n'], ['n'])
        """
        out = cls()
        for name, part in parts.items():
            for kind in _KINDS:
                getattr(out, kind).update({f"{name}/{key}": value for key, value in getattr(part, kind).items()})
        return out

    def under(self, name: str) -> Statistics:
        """The part of these statistics that :meth:`join` put under ``<name>/``, without the prefix."""
        prefix, start = f"{name}/", len(name) + 1
        parts = {
            kind: {k[start:]: v for k, v in getattr(self, kind).items() if k.startswith(prefix)} for kind in _KINDS
        }
        return Statistics(**parts)

    def is_empty(self) -> bool:
        return not (self.sums or self.minima or self.maxima)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Statistics):
            return NotImplemented
        return all(
            getattr(self, kind).keys() == getattr(other, kind).keys()
            and all(np.array_equal(getattr(self, kind)[k], getattr(other, kind)[k]) for k in getattr(self, kind))
            for kind in _KINDS
        )

    def allclose(self, other: Statistics, *, rtol: float = 1e-9, atol: float = 1e-9) -> bool:
        """Equal up to floating-point round-off (merging in another order rounds differently)."""
        return all(
            getattr(self, kind).keys() == getattr(other, kind).keys()
            and all(
                getattr(self, kind)[k].shape == getattr(other, kind)[k].shape
                and np.allclose(getattr(self, kind)[k], getattr(other, kind)[k], rtol=rtol, atol=atol)
                for k in getattr(self, kind)
            )
            for kind in _KINDS
        )

    def fingerprint(self) -> str:
        """A digest of every array, by kind and key in sorted order (equal statistics, however
        built, have the same one).

        >>> a = Statistics(sums={"x": np.array([1.0]), "y": np.array([2.0])})
        >>> b = Statistics(sums={"y": np.array([2.0]), "x": np.array([1.0])})
        >>> a.fingerprint() == b.fingerprint() != Statistics().fingerprint()
        True
        """
        digest = hashlib.sha256()
        for kind in _KINDS:
            arrays = getattr(self, kind)
            for key in sorted(arrays):
                value = np.ascontiguousarray(arrays[key], dtype="<f8")
                digest.update(json.dumps([kind, key, list(value.shape)]).encode())
                digest.update(value.tobytes())
        return digest.hexdigest()[:32]

    # ---- wire format -------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """``GSS1``, a 4-byte header length, a JSON header of ``[kind, key, shape]`` entries,
        then every array's little-endian float64 data in that order (no pickles; about ten
        times faster to read and write than an ``.npz`` archive)."""
        entries = [(kind, key, list(value.shape)) for kind in _KINDS for key, value in getattr(self, kind).items()]
        header = json.dumps(entries, separators=(",", ":")).encode()
        data = b"".join(
            np.ascontiguousarray(getattr(self, kind)[key], dtype="<f8").tobytes() for kind, key, _ in entries
        )
        return _MAGIC + struct.pack("<I", len(header)) + header + data

    @classmethod
    def from_bytes(cls, data: bytes) -> Statistics:
        """Read :meth:`to_bytes` output; :class:`StateFileError` if it is anything else."""
        try:
            if data[:4] != _MAGIC:
                raise ValueError("not GreenServ statistics")
            (length,) = struct.unpack("<I", data[4:8])
            entries = json.loads(data[8 : 8 + length])
            if not isinstance(entries, list):
                raise ValueError("the header is not a list of entries")
            arrays: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in _KINDS}
            offset = 8 + length
            for entry in entries:
                if not (isinstance(entry, list) and len(entry) == 3):
                    raise ValueError(f"unexpected entry {entry!r}")
                kind, key, shape = entry
                if kind not in _KINDS or not isinstance(key, str) or key in arrays[kind]:
                    raise ValueError(f"unexpected or repeated entry {kind!r}/{key!r}")
                if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
                    raise ValueError(f"entry {key!r} has the shape {shape!r}")
                size = 8 * math.prod(shape)
                if offset + size > len(data):
                    raise ValueError("truncated")
                arrays[kind][key] = (
                    np.frombuffer(data, dtype="<f8", count=size // 8, offset=offset).reshape(shape).astype(np.float64)
                )
                offset += size
            if offset != len(data):
                raise ValueError("trailing bytes")
            return cls(**arrays)  # checked as any statistics are: no NaN, no infinity
        except (ValueError, TypeError, RecursionError, struct.error, json.JSONDecodeError) as error:
            raise StateFileError(f"shared statistics are corrupt: {error}") from error


@runtime_checkable
class Shareable(Protocol):
    """A learned component that replicas can share: it gives its state as :class:`Statistics`
    and takes merged statistics back (keys it does not know, such as models it does not
    have, are skipped)."""

    def statistics(self) -> Statistics:
        """The learned state as sums, minima and maxima."""
        ...

    def load_statistics(self, stats: Statistics) -> None:
        """Set the learned state to ``stats`` (as :meth:`statistics` gave them, possibly merged)."""
        ...
