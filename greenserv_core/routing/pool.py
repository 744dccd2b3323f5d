"""The router's models at one moment, and a query's candidates among them as columns.

A :class:`ModelPool` is made when the pool changes (never changed afterwards): it reads each
backend's ``info`` once into :class:`~greenserv_core.routing.eligibility.PoolColumns`, notes
which backends report their availability, and groups backends that count tokens alike. Per
query, :meth:`ModelPool.candidates` then asks only those backends whether they are available,
and counts the prompt once per group of backends that share a ``token_count_key``.

>>> from greenserv_core.backends.fake import FakeBackend
>>> pool = ModelPool({name: FakeBackend(name) for name in ("a", "b")})
>>> table = pool.candidates([{"role": "user", "content": "What is 2 + 2?"}], None)
>>> table.names, table.prompt_tokens.tolist(), table.available.tolist()
(['a', 'b'], [6.0, 6.0], [True, True])
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from greenserv_core.backends.base import ModelBackend, _declares
from greenserv_core.messages import Message
from greenserv_core.routing.eligibility import Candidates, PoolColumns

__all__ = ["ModelPool", "SharesTokenCounts"]


@runtime_checkable
class SharesTokenCounts(Protocol):
    """Optional for a backend: a ``token_count_key`` that is equal for backends whose
    ``count_tokens`` gives the same count for any messages (same tokenizer, same prompt
    format). The router then counts a query's prompt once per key instead of once per model;
    ``None`` (or no such attribute) counts the backend on its own."""

    @property
    def token_count_key(self) -> Hashable | None: ...


class ModelPool:
    """The backends of a pool (``backends``, kept as given: the router replaces its mapping
    when the pool changes and never changes it) and their :class:`PoolColumns` (``columns``).
    Whether a backend reports availability (an ``available`` attribute, see
    :class:`~greenserv_core.backends.base.SupportsAvailability`) and its
    ``token_count_key`` are read here, when the pool is made."""

    def __init__(self, backends: Mapping[str, ModelBackend]) -> None:
        self.backends = backends
        listed = list(backends.values())
        self.columns = PoolColumns.of([backend.info for backend in listed])
        self._reporting = [(i, b) for i, b in enumerate(listed) if _declares(b, "available")]
        groups: dict[Hashable, list[int]] = {}
        alone: list[int] = []
        for i, backend in enumerate(listed):
            key = backend.token_count_key if _declares(backend, "token_count_key") else None  # type: ignore[attr-defined]
            if key is None:
                alone.append(i)
            else:
                groups.setdefault(key, []).append(i)
        self._alone = [(i, listed[i]) for i in alone]
        self._groups = list(groups.values())

    def candidates(self, messages: Sequence[Message], wanted: Collection[str] | None) -> Candidates:
        """Every model as a candidate for ``messages``: whether it is available now, and the
        prompt in its tokens for the models in ``wanted`` (``None``: all; the others are not
        counted)."""
        names = self.columns.names
        available = np.ones(len(names), dtype=bool)
        for position, backend in self._reporting:
            available[position] = bool(backend.available)  # type: ignore[attr-defined]
        tokens = np.full(len(names), np.nan)
        alone = self._alone if wanted is None else [(i, b) for i, b in self._alone if names[i] in wanted]
        if alone:
            tokens[[i for i, _ in alone]] = [backend.count_tokens(messages) for _, backend in alone]
        for group in self._groups:
            counted = group if wanted is None else [i for i in group if names[i] in wanted]
            if counted:
                tokens[counted] = self.backends[names[counted[0]]].count_tokens(messages)
        return Candidates.fresh(self.columns, available, tokens)
