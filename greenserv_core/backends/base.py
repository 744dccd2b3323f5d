"""The one narrow interface between the router and a model: :class:`ModelBackend`.

Anything that can answer chat messages can be an arm: a local transformers model, a remote
server, or :class:`~greenserv_core.backends.fake.FakeBackend` in tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import Message
from greenserv_core.tools.spec import ToolSpec

__all__ = [
    "EnergyReading",
    "GenerationResult",
    "GenerationSettings",
    "ModelBackend",
    "ModelInfo",
    "StreamChunk",
]


@dataclass(frozen=True)
class EnergyReading:
    """Joules spent by one generation and where the number comes from.

    ``measured`` is False for estimates (CPU time × wattage, priors): an estimate is never
    reported as a measurement.

    >>> EnergyReading(12.5, source="nvml-counter", measured=True).joules
    12.5
    """

    joules: float
    source: str
    measured: bool

    def __post_init__(self) -> None:
        if not math.isfinite(self.joules) or self.joules < 0:
            raise InvalidInputError(f"energy must be a finite, non-negative number of joules, got {self.joules!r}")


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate. ``temperature == 0`` means greedy decoding; ``max_time_s`` stops a
    generation after that many seconds (finish reason ``length``); ``tools`` are offered to
    the model (through its chat template, or a system prompt where the template takes none).

    >>> GenerationSettings(max_new_tokens=32, stop=("\\n\\n",)).max_new_tokens
    32
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    max_time_s: float | None = None
    tools: tuple[ToolSpec, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InvalidInputError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise InvalidInputError(f"temperature must be >= 0, got {self.temperature!r}")
        if not (0 < self.top_p <= 1):
            raise InvalidInputError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise InvalidInputError(f"max_time_s must be positive, got {self.max_time_s!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidInputError(f"stop strings must be non-empty strings, got {self.stop!r}")
        if any(not isinstance(t, ToolSpec) for t in self.tools):
            raise InvalidInputError("tools must be ToolSpec objects (see ToolSpec.from_openai)")
        if len({t.name for t in self.tools}) != len(self.tools):
            raise InvalidInputError(f"tool names must be distinct, got {[t.name for t in self.tools]}")


@dataclass(frozen=True)
class GenerationResult:
    """What one generation returned."""

    text: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    energy: EnergyReading
    finish_reason: str = "stop"


@dataclass(frozen=True)
class StreamChunk:
    """One piece of a streamed answer; the last chunk carries ``result`` (and an empty delta)."""

    delta: str
    result: GenerationResult | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the router knows about an arm before it runs it.

    ``context_window`` bounds prompt + new tokens; ``capabilities`` names what the model can
    serve (e.g. ``"chat_template"``, ``"tools"``). The priors (per input+output token) stand
    in for the router's energy and latency estimates until the model has been observed.
    """

    name: str
    context_window: int = 2048
    capabilities: frozenset[str] = field(default_factory=frozenset)
    prior_joules_per_token: float | None = None
    prior_seconds_per_token: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError(f"model name must be a non-empty string, got {self.name!r}")
        if self.context_window < 1:
            raise InvalidInputError(f"context_window must be positive, got {self.context_window!r}")


@runtime_checkable
class ModelBackend(Protocol):
    """A model the router can call. Implement ``info``, ``generate``, ``stream`` and ``count_tokens``."""

    @property
    def info(self) -> ModelInfo:
        """Name, context window and capabilities."""
        ...

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt length in this model's tokens (used for context-window eligibility)."""
        ...

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        """Answer ``messages`` in one call."""
        ...

    def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
        """Answer ``messages`` piece by piece; the last chunk carries the :class:`GenerationResult`."""
        ...
