"""The router's models at one moment, and a query's candidates among them as columns.

A :class:`ModelPool` is made when the pool changes (never changed afterwards): it reads each
backend's ``info`` once into :class:`~greenserv_core.routing.eligibility.PoolColumns`, notes
which backends report their availability, and groups backends that count tokens alike. Per
query, :meth:`ModelPool.candidates` then asks only those backends whether they are available,
and counts the prompt once per group of backends that share a ``token_count_key``. A backend
with a cheap upper bound on its count (:class:`BoundsTokenCounts`) is not counted where the
bound and the answer fit its context window and it has no per-token cost prior: exact counts
are only read there (a local model's tokenizer costs about as much as the rest of a route).

>>> from greenserv_core.backends.fake import FakeBackend
>>> pool = ModelPool({name: FakeBackend(name) for name in ("a", "b")})
>>> table = pool.candidates([{"role": "user", "content": "What is 2 + 2?"}], None)
>>> table.names, table.prompt_tokens.tolist(), table.available.tolist()
(['a', 'b'], [6.0, 6.0], [True, True])
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from greenserv_core.backends.base import ModelBackend, _declares
from greenserv_core.messages import Message
from greenserv_core.routing.eligibility import Candidates, PoolColumns

__all__ = ["BoundsTokenCounts", "ModelPool", "SharesTokenCounts"]


@runtime_checkable
class SharesTokenCounts(Protocol):
    """Optional for a backend: a ``token_count_key`` that is equal for backends whose
    ``count_tokens`` gives the same count for any messages (same tokenizer, same prompt
    format). The router then counts a query's prompt once per key instead of once per model;
    ``None`` (or no such attribute) counts the backend on its own."""

    @property
    def token_count_key(self) -> Hashable | None: ...


@runtime_checkable
class BoundsTokenCounts(Protocol):
    """Optional for a backend whose ``count_tokens`` is dear (a local tokenizer): a cheap
    ``token_bound(messages)``, never below ``count_tokens(messages)``. Where the bound and the
    query's ``max_new_tokens`` fit the context window, and the model has no per-token cost
    prior to weigh the count by, the router does not count the prompt for it (its
    ``prompt_tokens`` stays unknown, NaN)."""

    def token_bound(self, messages: Sequence[Message]) -> int: ...


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
        columns = self.columns
        unweighed = np.isnan(columns.prior_joules_per_token) & np.isnan(columns.prior_seconds_per_token)
        self._bounds: dict[int, Callable[[Sequence[Message]], int]] = {}  # may stand in for the count
        for i, backend in enumerate(listed):  # (read once: a cascade has a bound only where both its models have one)
            bound = getattr(backend, "token_bound", None)
            if unweighed[i] and callable(bound):  # (a prior weighs the count itself)
                self._bounds[i] = bound

    def candidates(
        self, messages: Sequence[Message], wanted: Collection[str] | None, max_new_tokens: int | None = None
    ) -> Candidates:
        """Every model as a candidate for ``messages``: whether it is available now, and the
        prompt in its tokens for the models in ``wanted`` (``None``: all; the others are not
        counted). With ``max_new_tokens``, a model whose :class:`BoundsTokenCounts` bound fits
        its window with that many new tokens (and that has no per-token prior) is not counted."""
        names = self.columns.names
        available = np.ones(len(names), dtype=bool)
        for position, backend in self._reporting:
            available[position] = bool(backend.available)  # type: ignore[attr-defined]
        tokens = np.full(len(names), np.nan)
        for i, backend in self._alone:
            if (wanted is None or names[i] in wanted) and not self._fits(i, messages, max_new_tokens):
                tokens[i] = backend.count_tokens(messages)
        for group in self._groups:
            counted = group if wanted is None else [i for i in group if names[i] in wanted]
            if counted and not all(self._fits(i, messages, max_new_tokens) for i in counted):
                tokens[counted] = self.backends[names[counted[0]]].count_tokens(messages)
        return Candidates.fresh(self.columns, available, tokens)

    def _fits(self, position: int, messages: Sequence[Message], max_new_tokens: int | None) -> bool:
        """Whether the model at ``position`` needs no count: its own bound and ``max_new_tokens``
        fit its window (in a group that shares counts, each member's bound is its own)."""
        bound = self._bounds.get(position)
        if max_new_tokens is None or bound is None:
            return False
        return bool(bound(messages) + max_new_tokens <= self.columns.context_window[position])
