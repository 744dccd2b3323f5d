"""The one narrow interface between the router and a model: :class:`ModelBackend`.

Anything that can answer chat messages can be an arm: a local transformers model, a remote
server, or :class:`~greenserv_core.backends.fake.FakeBackend` in tests.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from greenserv_core.energy.base import EnergyReading, combined_energy
from greenserv_core.errors import InvalidInputError, ModelUnavailableError, readable_spend
from greenserv_core.messages import Message
from greenserv_core.quality import QualityPrior, as_float, is_real
from greenserv_core.tools.spec import ToolSpec

__all__ = [
    "MAX_NEW_TOKENS",
    "ChainStep",
    "EnergyReading",
    "GenerationResult",
    "GenerationSettings",
    "JsonFormat",
    "ModelBackend",
    "ModelInfo",
    "StreamChunk",
    "SupportsAvailability",
    "SupportsBatching",
    "SupportsConcurrency",
    "batch_generator",
    "check_backend",
    "check_declared",
    "concurrency_of",
    "generate_all",
    "is_available",
    "next_piece",
]

MAX_NEW_TOKENS = 2**63 - 1
"""The most ``max_new_tokens`` a query may ask for (a 64-bit integer, as torch and numpy take)."""


@dataclass(frozen=True)
class JsonFormat:
    """Ask for an answer that is one JSON object (a server's JSON mode), fitting ``schema``
    if one is given. Only models with the ``json_mode`` capability serve it: their server
    constrains decoding (vLLM, TGI, llama.cpp's server and Ollama take OpenAI's
    ``response_format``). The schema keeps its keys' order (servers generate the properties in
    it); ``name`` and ``strict`` are OpenAI's ``json_schema`` options, sent with the schema.
    The router returns the answer as the server gave it, unchecked (the adapters' structured
    output checks it).

    >>> JsonFormat.from_schema({"type": "object", "required": ["city"]}).schema
    {'type': 'object', 'required': ['city']}
    >>> JsonFormat().schema is None
    True
    """

    schema_json: str | None = None
    name: str | None = None
    strict: bool = False

    @classmethod
    def from_schema(
        cls, schema: Mapping[str, Any] | None, *, name: str | None = None, strict: bool = False
    ) -> JsonFormat:
        """From a JSON schema (any mapping, checked to be a valid schema) or ``None`` for any JSON
        object; ``name`` (else ``"answer"``) and ``strict`` go with a schema (see the class)."""
        if schema is None:
            return cls()
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidInputError(f"a JSON schema's name must be a non-empty string, got {name!r}")
        if not isinstance(strict, bool):
            raise InvalidInputError(f"strict must be True or False, got {strict!r}")
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            plain = _plain_json(schema)
            Draft202012Validator.check_schema(plain)
            text = json.dumps(plain)  # in the caller's order: not sorted
        except SchemaError as error:
            raise InvalidInputError(f"not a valid JSON schema: {error.message}") from error
        except (TypeError, ValueError, RecursionError) as error:  # a value JSON has no form for, or a cycle
            raise InvalidInputError(f"not a valid JSON schema: {error}") from error
        return cls(text, name, strict)

    @property
    def schema(self) -> dict[str, Any] | None:
        loaded: dict[str, Any] | None = None if self.schema_json is None else json.loads(self.schema_json)
        return loaded


def _plain_json(value: Any) -> Any:
    """``value`` with every mapping in it a ``dict`` and every list or tuple a ``list`` (JSON's
    and ``jsonschema``'s own types), in the same order.

    >>> from types import MappingProxyType
    >>> _plain_json(MappingProxyType({"b": [MappingProxyType({"c": 1})], "a": ()}))
    {'b': [{'c': 1}], 'a': []}
    """
    if isinstance(value, Mapping):
        return {key: _plain_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(item) for item in value]
    return value


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate. ``temperature == 0`` means greedy decoding; ``max_time_s`` stops a
    generation after that many seconds (finish reason ``length``; ``None`` or infinite: no
    limit, kept as ``None``); ``tools`` are offered to the model (through its chat template,
    or a system prompt where the template takes none); ``json`` asks for a JSON answer
    (:class:`JsonFormat`); ``logprobs`` asks for the log-probability of each generated token
    (:attr:`GenerationResult.token_logprobs`), which confidence signals read
    (:mod:`greenserv_core.confidence`). Any real ``temperature``, ``top_p`` or ``max_time_s``
    is kept as a Python float (as models and JSON take them).

    >>> GenerationSettings(max_new_tokens=32, stop=("\\n\\n",)).max_new_tokens
    32
    >>> GenerationSettings(stop="User:").stop  # one stop sequence
    ('User:',)
    >>> settings = GenerationSettings(temperature=1, max_time_s=float("inf"))
    >>> settings.temperature, settings.max_time_s
    (1.0, None)
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    max_time_s: float | None = None
    tools: tuple[ToolSpec, ...] = ()
    json: JsonFormat | None = None
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.stop is None:
            object.__setattr__(self, "stop", ())
        elif isinstance(self.stop, str):  # one stop sequence, as transformers and OpenAI take it; never its letters
            object.__setattr__(self, "stop", (self.stop,))
        elif not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", _tuple_of("stop", self.stop))
        if self.tools is None:
            object.__setattr__(self, "tools", ())
        elif not isinstance(self.tools, tuple):
            object.__setattr__(self, "tools", _tuple_of("tools", self.tools))
        tokens = self.max_new_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, numbers.Integral) or not 1 <= tokens <= MAX_NEW_TOKENS:
            raise InvalidInputError(f"max_new_tokens must be a positive integer (at most 2**63 - 1), got {tokens!r}")
        object.__setattr__(self, "max_new_tokens", int(tokens))
        temperature, top_p = _as_float(self.temperature), _as_float(self.top_p)  # a model takes Python floats
        if temperature is None or not 0 <= temperature < math.inf:
            raise InvalidInputError(f"temperature must be a number >= 0, got {self.temperature!r}")
        if top_p is None or not 0 < top_p <= 1:
            raise InvalidInputError(f"top_p must be a number in (0, 1], got {self.top_p!r}")
        object.__setattr__(self, "temperature", temperature)
        object.__setattr__(self, "top_p", top_p)
        if self.max_time_s is not None:
            seconds = _as_float(self.max_time_s)
            if seconds is None or not seconds > 0:
                raise InvalidInputError(f"max_time_s must be a positive number, got {self.max_time_s!r}")
            object.__setattr__(self, "max_time_s", seconds if seconds < math.inf else None)  # infinite: no limit
        if self.seed is not None:
            if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed < 2**63:
                raise InvalidInputError(f"seed must be None or an integer in [0, 2**63), got {self.seed!r}")
            object.__setattr__(self, "seed", int(self.seed))
        if not isinstance(self.logprobs, bool):
            raise InvalidInputError(f"logprobs must be True or False, got {self.logprobs!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidInputError(f"stop strings must be non-empty strings, got {self.stop!r}")
        if any(not isinstance(t, ToolSpec) for t in self.tools):
            raise InvalidInputError("tools must be ToolSpec objects (see ToolSpec.from_openai)")
        if self.json is not None and not isinstance(self.json, JsonFormat):
            raise InvalidInputError("json must be a JsonFormat (see JsonFormat.from_schema)")
        if len({t.name for t in self.tools}) != len(self.tools):
            raise InvalidInputError(f"tool names must be distinct, got {[t.name for t in self.tools]}")


def _as_float(value: object) -> float | None:
    """:func:`~greenserv_core.quality.as_float` of a real number, else ``None``."""
    return as_float(value) if is_real(value) else None


def _tuple_of(name: str, values: object) -> tuple[Any, ...]:
    """``values`` as a tuple (settings are frozen and hashable), else a clear error."""
    try:
        return tuple(values)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidInputError(f"{name} must be a sequence, got {values!r}") from None


@dataclass(frozen=True)
class GenerationResult:
    """What one generation returned."""

    text: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    energy: EnergyReading
    finish_reason: str = "stop"
    token_logprobs: tuple[float, ...] | None = None
    """The natural-log probability of each generated token under the distribution it was
    drawn from, when ``logprobs`` was asked for and the backend gives them (``None``
    otherwise)."""
    chain: tuple[ChainStep, ...] = ()
    """For a cascade (:mod:`greenserv_core.cascades`), each model it ran, in order; the
    result's text is the kept answer and its tokens, seconds and joules are the sums over
    the chain. Empty for a single model."""

    def __post_init__(self) -> None:
        if self.token_logprobs is not None:  # a backend's numpy array or list too (about 8 us for 500 floats)
            try:
                logprobs = tuple(map(float, self.token_logprobs))
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"token_logprobs must be a sequence of numbers, got {self.token_logprobs!r}"
                ) from None
            object.__setattr__(self, "token_logprobs", logprobs)


@dataclass(frozen=True)
class ChainStep:
    """One model run by a cascade: its answer's ``confidence`` (``None``: no signal), what it
    cost, and what the cascade did next (``action``: ``"escalated"``, ``"kept"`` or
    ``"answered"`` for the last model) and why (``reason``). ``agreed`` is, for the last
    model of an escalated chain, whether its answer agrees with the one before it (the proxy
    label of the answer that was not kept). ``confidence_joules`` and ``confidence_s`` are the
    part of the step's cost spent on its confidence signal (a self-verification question):
    the cascade pays them, but the model answering alone would not."""

    model: str
    text: str
    confidence: float | None
    energy_joules: float
    latency_s: float
    output_tokens: int
    action: str
    reason: str
    agreed: bool | None = None
    confidence_joules: float = 0.0
    confidence_s: float = 0.0

    @classmethod
    def of_result(
        cls,
        model: str,
        result: GenerationResult,
        confidence: float | None,
        action: str,
        reason: str,
        agreed: bool | None = None,
    ) -> ChainStep:
        """The step of ``model``'s answer ``result``: its text and what it cost."""
        return cls(
            model,
            result.text,
            confidence,
            result.energy.joules,
            result.latency_s,
            result.output_tokens,
            action,
            reason,
            agreed,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields for routing records (all but the answer's text)."""
        fields = asdict(self)
        del fields["text"]
        return fields


@dataclass(frozen=True)
class StreamChunk:
    """One piece of a streamed answer; the last chunk carries ``result`` (and an empty delta)."""

    delta: str
    result: GenerationResult | None = None


def check_declared(model: Any) -> None:
    """What a model declares (:class:`ModelInfo`, :class:`~greenserv_core.models.spec.ModelSpec`),
    checked in place: a context window of 1 token or more (``None`` where it is read later),
    capability names (kept as a frozenset), and priors that are finite and 0 or more.

    >>> ModelInfo("m", prior_joules_per_token=-5)
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: model 'm': prior_joules_per_token must be a finite number >= 0, got -5
    """
    owner, window, capabilities = model.name, model.context_window, model.capabilities
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
            raise InvalidInputError(f"model {owner!r}: context_window must be a positive integer, got {window!r}")
        object.__setattr__(model, "context_window", int(window))
    if isinstance(capabilities, (str, bytes)) or not isinstance(capabilities, Collection):
        raise InvalidInputError(
            f"model {owner!r}: capabilities is a collection of names such as {{'tools'}}, got {capabilities!r}"
        )
    if not all(isinstance(c, str) and c for c in capabilities):
        raise InvalidInputError(f"model {owner!r}: capabilities must be non-empty names, got {capabilities!r}")
    object.__setattr__(model, "capabilities", frozenset(capabilities))
    for name in ("prior_joules_per_token", "prior_seconds_per_token"):
        prior = getattr(model, name)
        if prior is None:
            continue
        if isinstance(prior, bool) or not isinstance(prior, numbers.Real) or not 0 <= float(prior) < math.inf:
            raise InvalidInputError(f"model {owner!r}: {name} must be a finite number >= 0, got {prior!r}")
        object.__setattr__(model, name, float(prior))


@dataclass(frozen=True)
class ModelInfo:
    """What the router knows about an arm before it runs it.

    ``context_window`` bounds prompt + new tokens; ``capabilities`` names what the model can
    serve (e.g. ``"chat_template"``, ``"tools"``). The priors (per input+output token) stand
    in for the router's energy and latency estimates until the model has been observed;
    ``quality`` (a :class:`~greenserv_core.quality.QualityPrior`) for its accuracy estimates
    until it has been scored.
    """

    name: str
    context_window: int = 2048
    capabilities: frozenset[str] = field(default_factory=frozenset)
    prior_joules_per_token: float | None = None
    prior_seconds_per_token: float | None = None
    quality: QualityPrior | None = None

    def __post_init__(self) -> None:
        if self.quality is not None and not isinstance(self.quality, QualityPrior):
            raise InvalidInputError(f"quality must be a QualityPrior, got {type(self.quality).__name__}")
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError(f"model name must be a non-empty string, got {self.name!r}")
        if self.context_window is None:  # a spec reads its window later; a model says what it is
            raise InvalidInputError(f"model {self.name!r}: context_window must be a positive integer, got None")
        check_declared(self)


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
        """Answer ``messages`` piece by piece; the last chunk carries the :class:`GenerationResult`.
        Closed before that chunk, a stream should pass what it spent until then to
        :func:`~greenserv_core.backends.abandoned.report_abandoned`, so that budgets count it."""
        ...


def check_backend(value: object) -> ModelBackend:
    """``value``, a :class:`ModelBackend`, else :class:`InvalidInputError` naming it.

    >>> check_backend("gpt-4")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: 'gpt-4' does not implement ModelBackend (info, ...)
    """
    if not isinstance(value, ModelBackend):
        raise InvalidInputError(f"{value!r} does not implement ModelBackend (info, count_tokens, generate, stream)")
    return value


# ---- optional members: a backend may declare any of these; the router asks through the helpers
@runtime_checkable
class SupportsAvailability(Protocol):
    """A backend that can be temporarily unavailable (a remote server cooling down after
    repeated failures). Backends without ``available`` are always available."""

    @property
    def available(self) -> bool: ...


@runtime_checkable
class SupportsConcurrency(Protocol):
    """A backend that serves up to ``max_concurrency`` requests at once (a remote server that
    batches them itself). Backends without it get one request at a time."""

    @property
    def max_concurrency(self) -> int: ...


@runtime_checkable
class SupportsBatching(Protocol):
    """A backend that answers several queries in one padded batch (a local model)."""

    def generate_batch(
        self, batch: Sequence[Sequence[Message]], settings: GenerationSettings
    ) -> list[GenerationResult]: ...


@functools.lru_cache(maxsize=1024)
def _class_declares(cls: type, member: str) -> bool:
    return any(member in vars(klass) for klass in cls.__mro__)


def _declares(backend: ModelBackend, member: str) -> bool:
    """Whether ``backend`` has the optional ``member`` (by its class, cached, or on the
    instance): the fast form of ``isinstance`` against a runtime-checkable protocol, which
    is asked once per model and query and costs tens of microseconds each time."""
    return _class_declares(type(backend), member) or member in getattr(backend, "__dict__", ())


def is_available(backend: ModelBackend) -> bool:
    """Whether ``backend`` takes requests now (see :class:`SupportsAvailability`).

    >>> from greenserv_core.backends.fake import FakeBackend
    >>> is_available(FakeBackend("m"))
    True
    """
    return bool(backend.available) if _declares(backend, "available") else True  # type: ignore[attr-defined]


def concurrency_of(backend: ModelBackend) -> int:
    """How many requests ``backend`` serves at once (see :class:`SupportsConcurrency`), at least 1."""
    return max(1, int(backend.max_concurrency)) if _declares(backend, "max_concurrency") else 1  # type: ignore[attr-defined]


def batch_generator(backend: ModelBackend) -> SupportsBatching | None:
    """``backend`` as a :class:`SupportsBatching`, or ``None`` when it answers one query at a time."""
    return backend if _declares(backend, "generate_batch") else None  # type: ignore[return-value]


def generate_all(
    backend: ModelBackend, batch: Sequence[Sequence[Message]], settings: GenerationSettings
) -> list[GenerationResult]:
    """``backend``'s answers to every conversation of ``batch``: in one batched call where the
    backend batches (:class:`SupportsBatching`), else one call each."""
    many = batch_generator(backend)
    if many is not None and len(batch) > 1:
        return many.generate_batch(batch, settings)
    return [backend.generate(messages, settings) for messages in batch]


def next_piece(pieces: Iterator[StreamChunk], model: str) -> StreamChunk:
    """The next piece of ``model``'s stream: a stream ends with its result, so one that ends
    before it failed (:class:`ModelUnavailableError`)."""
    piece = next(pieces, None)
    if piece is None:
        raise ModelUnavailableError(f"the stream of {model!r} ended without its result")
    return piece


def spent_after(answers: Sequence[GenerationResult], error: ModelUnavailableError) -> dict[str, Any]:
    """What was spent when a call failed with ``error`` after ``answers`` were made (a
    cascade's first answer, a self-verification's earlier questions): theirs and the failed
    call's (:func:`~greenserv_core.errors.readable_spend`), as keyword arguments of a
    :class:`ModelUnavailableError` that carries it on. The sources are joined and the joules
    are measured only where every part was (:func:`~greenserv_core.energy.base.combined_energy`).

    >>> answer = GenerationResult("4", 3, 1, 0.5, EnergyReading(2.0, "nvml", True))
    >>> failed = ModelUnavailableError("down", spent_joules=1.0, spent_s=0.25, spent_source="cpu-time-estimate")
    >>> spent_after([answer], failed)
    {'spent_joules': 3.0, 'spent_s': 0.75, 'spent_source': 'nvml+cpu-time-estimate', 'spent_measured': False}
    """
    if not answers:
        raise InvalidInputError("spent_after needs at least one answer")
    joules, seconds, measured = readable_spend(error)
    readings = [answer.energy for answer in answers]
    if error.spent_joules != 0:  # a failed call that spent nothing says nothing of how its joules were read
        readings.append(EnergyReading(joules, error.spent_source or answers[0].energy.source, measured))
    total = combined_energy(readings)
    return {
        "spent_joules": total.joules,
        "spent_s": math.fsum(answer.latency_s for answer in answers) + seconds,
        "spent_source": total.source,
        "spent_measured": total.measured,
    }
