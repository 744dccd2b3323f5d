"""Which models may answer a query: one small function per rule, and :func:`check_eligibility`
that runs them in order.

A rule looks at one :class:`Candidate` (a model with its prompt length and predicted costs)
and the :class:`Limits` of the query, and returns the reason it is excluded, or ``None``.
To add a rule, write the function here and put it in :data:`RULES`; it needs no router and
no lock, so its test is a plain function call.

The router hands the candidates over as columns (:class:`Candidates`: one array per field,
over the whole pool), so that a query over a thousand models is not a thousand Python calls
per rule. A rule with a column form in :data:`COLUMN_RULES` finds the models it excludes with
a few array operations, and its function is called only for those, to give the reason; a rule
without one is called for each model still eligible.

>>> from greenserv_core.backends.base import ModelInfo
>>> small = Candidate(ModelInfo("small", context_window=64), prompt_tokens=60)
>>> exceeds_context_window(small, Limits(max_new_tokens=8))
'prompt 60 + max_new_tokens 8 tokens exceed the context window 64'
>>> check_eligibility([small], Limits(max_new_tokens=4)).predicted_joules
{'small': None}
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from greenserv_core.backends.base import ModelInfo
from greenserv_core.bandits.columns import KnownValues
from greenserv_core.errors import NoEligibleModelError

__all__ = [
    "COLUMN_RULES",
    "RULES",
    "Candidate",
    "Candidates",
    "ColumnRule",
    "Eligibility",
    "Limits",
    "PoolColumns",
    "check_eligibility",
    "exceeds_context_window",
    "exceeds_energy_cap",
    "exceeds_latency_limit",
    "failed_before",
    "lacks_capability",
    "no_eligible_model",
    "not_requested",
    "unavailable",
]


@dataclass(slots=True)
class Candidate:
    """One model of the pool as the rules see it: its ``info``, whether it takes requests
    now, the query's length in its tokens (``None`` when not counted: a model not requested),
    and the learned cost models' predictions (``None`` until the model has been observed;
    the learner fills them in). Made afresh for every query."""

    info: ModelInfo
    available: bool = True
    prompt_tokens: int | None = None
    predicted_joules: float | None = None
    predicted_seconds: float | None = None

    @property
    def name(self) -> str:
        return self.info.name

    def expected(self, learned: float | None, prior_per_token: float | None, max_new_tokens: int) -> float | None:
        """The learned prediction, else the per-token prior × (prompt + new tokens), else ``None``."""
        if learned is not None or prior_per_token is None or self.prompt_tokens is None:
            return learned
        return prior_per_token * (self.prompt_tokens + max_new_tokens)


@dataclass(frozen=True)
class Limits:
    """What the query allows: the ``models`` requested (``None``: any), the models that
    already ``failed`` it (and why), the capabilities it ``requires``, its ``max_new_tokens``,
    its latency limit in seconds and its energy cap in joules."""

    max_new_tokens: int = 256
    models: Collection[str] | None = None
    failed: Mapping[str, str] = field(default_factory=dict)
    requires: frozenset[str] = frozenset()
    max_latency_s: float | None = None
    max_joules: float | None = None


Rule = Callable[[Candidate, Limits], "str | None"]


def _known(value: float | None) -> float:
    return np.nan if value is None else float(value)


def _optional(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


@dataclass(frozen=True, eq=False)
class PoolColumns:
    """What the rules read of a pool's models that does not change from query to query, as
    columns in pool order (made when the pool changes): ``names``, ``context_window`` and the
    per-token priors (NaN: none), and which models have a set of capabilities (cached).

    >>> pool = PoolColumns.of([ModelInfo("a", capabilities=frozenset({"tools"})), ModelInfo("b")])
    >>> pool.capable(frozenset({"tools"})).tolist()
    [True, False]
    """

    infos: tuple[ModelInfo, ...]
    names: list[str]
    index: dict[str, int]
    context_window: np.ndarray
    prior_joules_per_token: np.ndarray
    prior_seconds_per_token: np.ndarray
    _capable: dict[frozenset[str], np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, infos: Sequence[ModelInfo]) -> PoolColumns:
        names = [info.name for info in infos]
        return cls(
            tuple(infos),
            names,
            {name: i for i, name in enumerate(names)},
            np.array([info.context_window for info in infos], dtype=np.float64),
            np.array([_known(info.prior_joules_per_token) for info in infos], dtype=np.float64),
            np.array([_known(info.prior_seconds_per_token) for info in infos], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.names)

    def capable(self, requires: frozenset[str]) -> np.ndarray:
        """Whether each model has every capability in ``requires``."""
        mask = self._capable.get(requires)
        if mask is None:
            mask = np.array([requires <= info.capabilities for info in self.infos], dtype=bool)
            self._capable[requires] = mask
        return mask

    def positions(self, names: Collection[str]) -> list[int]:
        """The positions of those of ``names`` that are in the pool."""
        return [self.index[name] for name in names if name in self.index]


@dataclass(eq=False)
class Candidates:
    """A query's candidates as columns over a pool: whether each model takes requests now,
    the prompt in its tokens (NaN: not counted) and the learned cost predictions (NaN: none
    yet; the learner fills them in). Made afresh for every query; :meth:`candidate` is one
    model as a :class:`Candidate`.

    >>> table = Candidates.of([Candidate(ModelInfo("a"), prompt_tokens=3), Candidate(ModelInfo("b"))])
    >>> table.names, table.candidate(0).prompt_tokens, table.candidate(1).prompt_tokens
    (['a', 'b'], 3, None)
    """

    pool: PoolColumns
    available: np.ndarray
    prompt_tokens: np.ndarray
    predicted_joules: np.ndarray
    predicted_seconds: np.ndarray

    @classmethod
    def of(cls, candidates: Sequence[Candidate]) -> Candidates:
        """The columns of a list of :class:`Candidate`."""
        return cls(
            PoolColumns.of([c.info for c in candidates]),
            np.array([c.available for c in candidates], dtype=bool),
            np.array([_known(c.prompt_tokens) for c in candidates], dtype=np.float64),
            np.array([_known(c.predicted_joules) for c in candidates], dtype=np.float64),
            np.array([_known(c.predicted_seconds) for c in candidates], dtype=np.float64),
        )

    @classmethod
    def fresh(cls, pool: PoolColumns, available: np.ndarray, prompt_tokens: np.ndarray) -> Candidates:
        """Candidates over ``pool`` with no cost predictions yet."""
        unknown = np.full(len(pool), np.nan)
        return cls(pool, available, prompt_tokens, unknown, unknown.copy())

    @property
    def names(self) -> list[str]:
        return self.pool.names

    def __len__(self) -> int:
        return len(self.pool)

    def candidate(self, position: int) -> Candidate:
        """The model at ``position`` as a :class:`Candidate` (what a rule's function takes)."""
        tokens = self.prompt_tokens[position]
        return Candidate(
            self.pool.infos[position],
            bool(self.available[position]),
            None if np.isnan(tokens) else int(tokens),
            _optional(self.predicted_joules[position]),
            _optional(self.predicted_seconds[position]),
        )

    def take(self, positions: Sequence[int]) -> Candidates:
        """The candidates at ``positions`` alone."""
        rows = np.asarray(positions, dtype=np.intp)
        return Candidates(
            PoolColumns.of([self.pool.infos[i] for i in rows]),
            self.available[rows],
            self.prompt_tokens[rows],
            self.predicted_joules[rows],
            self.predicted_seconds[rows],
        )

    def expected(self, learned: np.ndarray, prior_per_token: np.ndarray, max_new_tokens: int) -> np.ndarray:
        """:meth:`Candidate.expected` of every candidate (NaN: unknown)."""
        from_prior = np.isnan(learned) & ~np.isnan(prior_per_token) & ~np.isnan(self.prompt_tokens)
        if not from_prior.any():
            return learned
        return np.where(from_prior, prior_per_token * (self.prompt_tokens + max_new_tokens), learned)


ColumnRule = Callable[[Candidates, Limits], "np.ndarray | None"]
"""A rule's column form: which of the candidates it excludes, as a boolean array (``None``:
none of them)."""


def not_requested(candidate: Candidate, limits: Limits) -> str | None:
    if limits.models is not None and candidate.name not in limits.models:
        return "not among the models requested for this query"
    return None


def failed_before(candidate: Candidate, limits: Limits) -> str | None:
    if candidate.name in limits.failed:
        return f"failed for this query: {limits.failed[candidate.name]}"
    return None


def unavailable(candidate: Candidate, limits: Limits) -> str | None:
    return None if candidate.available else "unavailable (cooling down after repeated failures)"


def lacks_capability(candidate: Candidate, limits: Limits) -> str | None:
    missing = sorted(limits.requires - candidate.info.capabilities)
    if missing:
        return f"lacks the capabilit{'ies' if len(missing) > 1 else 'y'} {', '.join(missing)}"
    return None


def exceeds_context_window(candidate: Candidate, limits: Limits) -> str | None:
    window, tokens = candidate.info.context_window, candidate.prompt_tokens or 0
    if tokens + limits.max_new_tokens > window:
        return f"prompt {tokens} + max_new_tokens {limits.max_new_tokens} tokens exceed the context window {window}"
    return None


def _above(expected: float | None, limit: float | None) -> float | None:
    """``expected`` when it is known and above ``limit`` (a limit of ``None`` is none)."""
    return expected if limit is not None and expected is not None and expected > limit else None


def exceeds_latency_limit(candidate: Candidate, limits: Limits) -> str | None:
    info = candidate.info
    seconds = _above(
        candidate.expected(candidate.predicted_seconds, info.prior_seconds_per_token, limits.max_new_tokens),
        limits.max_latency_s,
    )
    if seconds is not None:
        return f"predicted latency {seconds:.3f} s exceeds the limit {limits.max_latency_s:.3f} s"
    return None


def exceeds_energy_cap(candidate: Candidate, limits: Limits) -> str | None:
    """A model whose predicted joules (learned, else from its per-token prior) break the
    query's cap; a model with no prediction yet is not excluded.

    >>> exceeds_energy_cap(Candidate(ModelInfo("big"), predicted_joules=90.0), Limits(max_joules=50.0))
    'predicted energy 90.0 J exceeds the cap 50.0 J'
    """
    info = candidate.info
    joules = _above(
        candidate.expected(candidate.predicted_joules, info.prior_joules_per_token, limits.max_new_tokens),
        limits.max_joules,
    )
    if joules is not None:
        return f"predicted energy {joules:.1f} J exceeds the cap {limits.max_joules:.1f} J"
    return None


RULES: tuple[Rule, ...] = (
    not_requested,
    failed_before,
    unavailable,
    lacks_capability,
    exceeds_context_window,
    exceeds_latency_limit,
    exceeds_energy_cap,
)
"""The rules, in the order they are checked; the first that excludes a model gives the reason."""


def _not_requested_columns(candidates: Candidates, limits: Limits) -> np.ndarray | None:
    if limits.models is None:
        return None
    excluded = np.ones(len(candidates), dtype=bool)
    excluded[candidates.pool.positions(limits.models)] = False
    return excluded


def _failed_before_columns(candidates: Candidates, limits: Limits) -> np.ndarray | None:
    if not limits.failed:
        return None
    excluded = np.zeros(len(candidates), dtype=bool)
    excluded[candidates.pool.positions(limits.failed)] = True
    return excluded


def _unavailable_columns(candidates: Candidates, limits: Limits) -> np.ndarray:
    excluded: np.ndarray = ~candidates.available
    return excluded


def _lacks_capability_columns(candidates: Candidates, limits: Limits) -> np.ndarray | None:
    if not limits.requires:
        return None
    excluded: np.ndarray = ~candidates.pool.capable(limits.requires)
    return excluded


def _exceeds_context_window_columns(candidates: Candidates, limits: Limits) -> np.ndarray:
    tokens = np.fmax(candidates.prompt_tokens, 0.0)  # not counted (NaN): 0
    excluded: np.ndarray = tokens + limits.max_new_tokens > candidates.pool.context_window
    return excluded


def _above_columns(
    learned: np.ndarray, prior: np.ndarray, limit: float | None, candidates: Candidates, limits: Limits
) -> np.ndarray | None:
    """Which candidates' expected cost (learned, else from the prior) is above ``limit``."""
    if limit is None:
        return None
    excluded: np.ndarray = candidates.expected(learned, prior, limits.max_new_tokens) > limit  # NaN is never above
    return excluded


def _exceeds_latency_limit_columns(candidates: Candidates, limits: Limits) -> np.ndarray | None:
    pool = candidates.pool
    return _above_columns(
        candidates.predicted_seconds, pool.prior_seconds_per_token, limits.max_latency_s, candidates, limits
    )


def _exceeds_energy_cap_columns(candidates: Candidates, limits: Limits) -> np.ndarray | None:
    pool = candidates.pool
    return _above_columns(
        candidates.predicted_joules, pool.prior_joules_per_token, limits.max_joules, candidates, limits
    )


COLUMN_RULES: dict[Rule, ColumnRule] = {
    not_requested: _not_requested_columns,
    failed_before: _failed_before_columns,
    unavailable: _unavailable_columns,
    lacks_capability: _lacks_capability_columns,
    exceeds_context_window: _exceeds_context_window_columns,
    exceeds_latency_limit: _exceeds_latency_limit_columns,
    exceeds_energy_cap: _exceeds_energy_cap_columns,
}
"""The column form of each rule that has one (the rule's function still gives the reason)."""


@dataclass(frozen=True, eq=False)
class Eligibility:
    """The eligible models (in pool order) with their expected joules (``None``: unknown;
    ``predicted_joules.array`` holds them, NaN for unknown), each excluded model
    with the reason, and the eligible models' positions among the candidates."""

    predicted_joules: KnownValues
    excluded: dict[str, str]
    positions: np.ndarray


def check_eligibility(
    candidates: Sequence[Candidate] | Candidates, limits: Limits, rules: Sequence[Rule] = RULES
) -> Eligibility:
    """Run ``rules`` over ``candidates``: a pure function of its arguments."""
    table = candidates if isinstance(candidates, Candidates) else Candidates.of(candidates)
    eligible = np.ones(len(table), dtype=bool)
    reasons: dict[int, str] = {}
    for rule in rules:
        columns = COLUMN_RULES.get(rule)
        if columns is None:  # a rule without a column form: asked about every model still eligible
            suspects = np.flatnonzero(eligible)
        else:
            hit = columns(table, limits)
            if hit is None or not hit.any():
                continue
            suspects = np.flatnonzero(hit & eligible)
        for position in suspects.tolist():
            reason = rule(table.candidate(position), limits)
            if reason is not None:
                reasons[position] = reason
                eligible[position] = False
    names = table.names
    positions = np.flatnonzero(eligible)
    joules = table.expected(table.predicted_joules, table.pool.prior_joules_per_token, limits.max_new_tokens)
    chosen = names if len(positions) == len(names) else [names[i] for i in positions.tolist()]
    excluded = {names[i]: reasons[i] for i in sorted(reasons)}
    return Eligibility(KnownValues(chosen, joules[positions]), excluded, positions)


def no_eligible_model(
    candidates: Sequence[Candidate] | Candidates, limits: Limits, excluded: Mapping[str, str]
) -> NoEligibleModelError:
    """The error for a query no model may answer: every model's reason, and first the
    capabilities that no model of the pool has."""
    reasons = "; ".join(f"{name}: {why}" for name, why in excluded.items())
    infos = candidates.pool.infos if isinstance(candidates, Candidates) else [c.info for c in candidates]
    nowhere = sorted(c for c in limits.requires if all(c not in info.capabilities for info in infos))
    if nowhere:
        reasons = f"no model in the pool has the capability {', '.join(nowhere)}; {reasons}"
    return NoEligibleModelError(f"no model is eligible for this query ({reasons})")
