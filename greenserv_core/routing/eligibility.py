"""Which models may answer a query: one small function per rule, and :func:`check_eligibility`
that runs them in order.

A rule looks at one :class:`Candidate` (a model with its prompt length and predicted costs)
and the :class:`Limits` of the query, and returns the reason it is excluded, or ``None``.
To add a rule, write the function here and put it in :data:`RULES`; it needs no router and
no lock, so its test is a plain function call.

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

from greenserv_core.backends.base import ModelInfo
from greenserv_core.errors import NoEligibleModelError

__all__ = [
    "RULES",
    "Candidate",
    "Eligibility",
    "Limits",
    "check_eligibility",
    "exceeds_context_window",
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
    already ``failed`` it (and why), the capabilities it ``requires``, its ``max_new_tokens``
    and its latency limit in seconds."""

    max_new_tokens: int = 256
    models: Collection[str] | None = None
    failed: Mapping[str, str] = field(default_factory=dict)
    requires: frozenset[str] = frozenset()
    max_latency_s: float | None = None


Rule = Callable[[Candidate, Limits], "str | None"]


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


def exceeds_latency_limit(candidate: Candidate, limits: Limits) -> str | None:
    if limits.max_latency_s is None:
        return None
    seconds = candidate.expected(
        candidate.predicted_seconds, candidate.info.prior_seconds_per_token, limits.max_new_tokens
    )
    if seconds is not None and seconds > limits.max_latency_s:
        return f"predicted latency {seconds:.3f} s exceeds the limit {limits.max_latency_s:.3f} s"
    return None


RULES: tuple[Rule, ...] = (
    not_requested,
    failed_before,
    unavailable,
    lacks_capability,
    exceeds_context_window,
    exceeds_latency_limit,
)
"""The rules, in the order they are checked; the first that excludes a model gives the reason."""


@dataclass(frozen=True)
class Eligibility:
    """The eligible models (in pool order) with their expected joules (``None``: unknown), and
    each excluded model with the reason."""

    predicted_joules: dict[str, float | None]
    excluded: dict[str, str]


def check_eligibility(candidates: Sequence[Candidate], limits: Limits, rules: Sequence[Rule] = RULES) -> Eligibility:
    """Run ``rules`` over ``candidates``: a pure function of its arguments."""
    eligible: dict[str, float | None] = {}
    excluded: dict[str, str] = {}
    for candidate in candidates:
        for rule in rules:
            reason = rule(candidate, limits)
            if reason is not None:
                excluded[candidate.info.name] = reason
                break
        else:
            eligible[candidate.info.name] = candidate.expected(
                candidate.predicted_joules, candidate.info.prior_joules_per_token, limits.max_new_tokens
            )
    return Eligibility(eligible, excluded)


def no_eligible_model(
    candidates: Sequence[Candidate], limits: Limits, excluded: Mapping[str, str]
) -> NoEligibleModelError:
    """The error for a query no model may answer: every model's reason, and first the
    capabilities that no model of the pool has."""
    reasons = "; ".join(f"{name}: {why}" for name, why in excluded.items())
    nowhere = sorted(c for c in limits.requires if all(c not in m.info.capabilities for m in candidates))
    if nowhere:
        reasons = f"no model in the pool has the capability {', '.join(nowhere)}; {reasons}"
    return NoEligibleModelError(f"no model is eligible for this query ({reasons})")
