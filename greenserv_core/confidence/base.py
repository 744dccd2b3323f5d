"""The two interfaces of confidence signals: one reads the answer, the other asks a model about it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from greenserv_core.backends.base import GenerationResult, ModelBackend
from greenserv_core.energy.base import combined_energy
from greenserv_core.messages import Message

__all__ = [
    "ConfidenceSignal",
    "Verification",
    "VerifyingSignal",
]


@runtime_checkable
class ConfidenceSignal(Protocol):
    """Turns an answer into the chance, in ``[0, 1]``, that it is right (``None``: no signal)."""

    @property
    def name(self) -> str:
        """A short label for tables and records, such as ``"answer-probability"``."""
        ...

    def __call__(self, result: GenerationResult) -> float | None: ...


@dataclass(frozen=True)
class Verification:
    """What a :class:`VerifyingSignal` found: the ``confidence`` (``None``: no verdict) and the
    ``calls`` it made to reach it, whose joules and seconds belong to the answer's cost."""

    confidence: float | None
    calls: tuple[GenerationResult, ...] = ()

    def charged(self, answer: GenerationResult) -> GenerationResult:
        """``answer`` with the verification's joules and seconds added (its tokens stay the
        answer's own, which is what a user is shown and billed for).

        >>> from greenserv_core.energy.base import EnergyReading
        >>> answer = GenerationResult("B", 10, 1, 0.5, EnergyReading(2.0, "fake", False))
        >>> check = GenerationResult("Yes", 30, 1, 0.25, EnergyReading(1.0, "fake", False))
        >>> charged = Verification(0.9, (check,)).charged(answer)
        >>> charged.energy.joules, charged.latency_s, charged.output_tokens
        (3.0, 0.75, 1)
        """
        if not self.calls:
            return answer
        return dataclasses.replace(
            answer,
            latency_s=answer.latency_s + sum(call.latency_s for call in self.calls),
            energy=combined_energy([answer.energy, *(call.energy for call in self.calls)]),
        )


@runtime_checkable
class VerifyingSignal(Protocol):
    """A signal that asks a model a second question about the answer (self-verification, as
    in AutoMix), so it needs the conversation and the model, and it costs joules: the
    :class:`Verification` it returns lists the calls it made. A cascade adds their joules
    and seconds to its first answer's."""

    @property
    def name(self) -> str:
        """A short label for tables and records, such as ``"self-verification"``."""
        ...

    def verify(
        self,
        messages: Sequence[Message],
        answer: GenerationResult,
        model: ModelBackend,
        *,
        max_time_s: float | None = None,
    ) -> Verification:
        """Ask ``model`` about ``answer``, its questions taking ``max_time_s`` in all at most (a
        cascade under a time limit passes what the answer left of it; ``None``: no limit, and
        a cascade without a limit does not pass it)."""
        ...
