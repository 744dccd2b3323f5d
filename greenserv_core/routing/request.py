"""One routed query as a :class:`RouteRequest`: its messages, generation settings and routing
options, checked once.

``generate``, ``stream`` and ``generate_batch`` take the same keyword options
(:class:`GenerateOptions`); ``route`` takes the routing subset (:class:`RouteOptions`).

>>> request = RouteRequest.build("What is 2+2?", {"max_new_tokens": 8, "tools": None})
>>> request.settings.max_new_tokens, request.requires
(8, frozenset())
>>> RouteRequest.build("hi", {"max_new_token": 8})
Traceback (most recent call last):
...
TypeError: generate() got an unexpected keyword argument 'max_new_token'; its options are decision_id, \
max_joules, max_latency_s, max_new_tokens, max_time_s, models, requires, response_format, score_tool_calls, seed, \
stop, temperature, tools, top_p, tradeoff
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from greenserv_core.backends.base import GenerationSettings, JsonFormat
from greenserv_core.budget import check_max_joules
from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import Message, validate_messages
from greenserv_core.quality import as_float
from greenserv_core.reward import check_tradeoff
from greenserv_core.routing.learner import check_decision_id
from greenserv_core.tools import ToolSpec, as_tool_specs

__all__ = [
    "OPTION_NAMES",
    "BatchOptions",
    "GenerateOptions",
    "ResponseFormat",
    "RouteOptions",
    "RouteRequest",
    "check_positive",
    "json_format",
]

ResponseFormat = Literal["json"] | Mapping[str, Any] | JsonFormat | None


class RouteOptions(TypedDict, total=False):
    """How to route a query (all optional): ``tradeoff`` λ for this call (else the router's),
    ``max_latency_s``, ``max_joules`` (a cap on the predicted joules of the model that answers;
    a cascade keeps its first answer where escalating is predicted to break it),
    ``max_new_tokens`` (counts towards the context window),
    ``decision_id`` (your own key, e.g. a framework's run id), ``models`` (restrict the
    choice; one name pins the query), ``requires`` (capabilities the query needs)."""

    tradeoff: float | None
    max_latency_s: float | None
    max_joules: float | None
    max_new_tokens: int
    decision_id: str | None
    models: Sequence[str] | None
    requires: Collection[str]


class BatchOptions(TypedDict, total=False):
    """The options of ``generate_batch``: those of :class:`GenerateOptions` but ``decision_id``."""

    tradeoff: float | None
    max_latency_s: float | None
    max_joules: float | None
    max_new_tokens: int
    models: Sequence[str] | None
    requires: Collection[str]
    temperature: float
    top_p: float
    stop: str | Sequence[str]
    seed: int | None
    max_time_s: float | None
    tools: Sequence[ToolSpec | Mapping[str, Any]] | None
    score_tool_calls: bool
    response_format: ResponseFormat


class GenerateOptions(BatchOptions, total=False):
    """The options of ``generate`` and ``stream``: routing (:class:`RouteOptions`) plus
    generation settings (``temperature``, ``top_p``, ``stop``, ``seed``, ``max_time_s``),
    ``tools`` offered to the model, ``score_tool_calls`` and ``response_format``."""

    decision_id: str | None


def _names(options: type) -> frozenset[str]:
    return frozenset(options.__required_keys__ | options.__optional_keys__)  # type: ignore[attr-defined]


OPTION_NAMES: dict[str, frozenset[str]] = {
    "route": _names(RouteOptions),
    "generate_batch": _names(BatchOptions),
    "generate": _names(GenerateOptions),
    "stream": _names(GenerateOptions),
}
"""The keyword options each router method takes."""


def check_positive(name: str, value: float | None) -> float | None:
    """``None`` (no limit), or ``value`` as a positive finite float (seconds), or
    :class:`InvalidInputError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < as_float(value) < math.inf:
        raise InvalidInputError(f"{name} must be a positive finite number of seconds (None: no limit), got {value!r}")
    return float(value)


def _listed(values: Iterable[Any], what: str) -> list[Any]:
    """``values`` as a list, else :class:`InvalidInputError` saying ``what`` they must be (a 0-d
    numpy array is iterable by its type, and raises TypeError when iterated)."""
    try:
        return list(values)
    except TypeError:
        raise InvalidInputError(f"{what}, got {values!r}") from None


def _capabilities(requires: Collection[str] | None) -> frozenset[str]:
    """The capability names a query needs (``None``: none). Read once, so an iterator's names
    are all kept."""
    if requires is None:
        return frozenset()
    if isinstance(requires, str) or not isinstance(requires, Iterable):
        raise InvalidInputError(f"requires must be a collection of capability names, got {requires!r}")
    listed = _listed(requires, "requires must be a collection of capability names")
    if not all(isinstance(c, str) and c for c in listed):
        raise InvalidInputError(f"requires must be a collection of capability names, got {listed!r}")
    return frozenset(listed)


_OPENAI_FORMATS = ("text", "json_object", "json_schema")
"""The ``type`` of OpenAI's ``response_format`` objects (none of them a JSON schema's type)."""


def json_format(response_format: ResponseFormat) -> JsonFormat | None:
    """A call's ``response_format``: ``None``, ``"json"`` (any JSON object), a JSON schema, or
    OpenAI's objects (``{"type": "text"}``, ``{"type": "json_object"}``, ``{"type":
    "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": ...}}``, its name and strict
    kept).

    >>> json_format({"type": "json_schema", "json_schema": {"name": "A", "schema": {"type": "object"}, "strict": True}})
    JsonFormat(schema_json='{"type": "object"}', name='A', strict=True)
    >>> json_format({"type": "json_object"}).schema is None, json_format({"type": "text"})
    (True, None)
    """
    if response_format is None or isinstance(response_format, JsonFormat):
        return response_format
    if response_format == "json":
        return JsonFormat()
    if isinstance(response_format, Mapping) and response_format.get("type") in _OPENAI_FORMATS:
        kind = response_format["type"]
        if kind == "text":
            return None
        if kind == "json_object":
            return JsonFormat()
        described = response_format.get("json_schema")
        if not isinstance(described, Mapping) or not isinstance(described.get("schema", {}), Mapping):
            raise InvalidInputError(
                f"a json_schema response_format holds its schema as {{'json_schema': {{'schema': {{...}}}}}}, "
                f"got {response_format!r}"
            )
        strict = described.get("strict")  # OpenAI's client sends None for "not given"
        return JsonFormat.from_schema(
            described.get("schema"), name=described.get("name"), strict=False if strict is None else strict
        )
    if isinstance(response_format, Mapping):
        return JsonFormat.from_schema(response_format)
    raise InvalidInputError(f"response_format must be None, 'json' or a JSON schema, got {response_format!r}")


def stop_sequences(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """The stop sequences of a call: one string is one sequence (as OpenAI takes it), ``None`` none.

    >>> stop_sequences("world"), stop_sequences(["a", "b"]), stop_sequences(None)
    (('world',), ('a', 'b'), ())
    """
    if stop is None:
        return ()
    sequences = (stop,) if isinstance(stop, str) else tuple(stop) if isinstance(stop, (list, tuple)) else None
    if sequences is None or not all(isinstance(s, str) and s for s in sequences):
        raise InvalidInputError(f"stop must be a non-empty string or a list of them, got {stop!r}")
    return sequences


def _model_names(models: Sequence[str] | None) -> frozenset[str] | None:
    if models is None:
        return None
    if not isinstance(models, (str, Iterable)):
        raise InvalidInputError(f"models must be a model name or a collection of them, got {models!r}")
    listed = [models] if isinstance(models, str) else _listed(models, "models must be a collection of model names")
    if not all(isinstance(name, str) for name in listed):
        raise InvalidInputError(f"models must be model names, got {listed!r}")
    return frozenset(listed)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class RouteRequest:
    """A checked query: ``messages``, ``settings``, and the routing options. ``tradeoff``,
    ``max_latency_s`` and ``max_joules`` are ``None`` where the router's own apply; ``requires`` includes
    ``tools`` when tools are offered and ``json_mode`` when a JSON answer is asked for."""

    messages: list[Message]
    settings: GenerationSettings
    tradeoff: float | None = None
    max_latency_s: float | None = None
    max_joules: float | None = None
    requires: frozenset[str] = frozenset()
    models: frozenset[str] | None = None
    decision_id: str | None = None
    score_tool_calls: bool = False

    def with_messages(self, messages: Sequence[Message] | str) -> RouteRequest:
        """The same options for other messages (a batch checks its options once)."""
        return dataclasses.replace(self, messages=validate_messages(messages))

    @classmethod
    def build(
        cls, messages: Sequence[Message] | str, options: Mapping[str, Any], method: str = "generate"
    ) -> RouteRequest:
        """Check ``messages`` and the keyword ``options`` of the router's ``method`` (a name it
        does not take is a ``TypeError``, as for any Python call; a bad value an
        :class:`InvalidInputError`)."""
        allowed = OPTION_NAMES[method]
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise TypeError(
                f"{method}() got an unexpected keyword argument {unknown[0]!r}; "
                f"its options are {', '.join(sorted(allowed))}"
            )
        max_new_tokens = options.get("max_new_tokens", 256)  # checked by GenerationSettings
        tradeoff = options.get("tradeoff")
        decision_id = options.get("decision_id")
        if decision_id is not None and (not isinstance(decision_id, str) or not decision_id):
            raise InvalidInputError(f"decision_id must be a non-empty string, got {decision_id!r}")
        if decision_id is not None:
            check_decision_id(decision_id)  # (text a shared store can keep)
        settings = GenerationSettings(
            max_new_tokens,
            options.get("temperature", 0.0),
            options.get("top_p", 1.0),
            stop_sequences(options.get("stop")),
            options.get("seed"),
            options.get("max_time_s"),
            as_tool_specs(options.get("tools")),
            json_format(options.get("response_format")),
        )
        needed = set(_capabilities(options.get("requires", ())))
        if settings.tools:
            needed.add("tools")
        if settings.json is not None:
            needed.add("json_mode")
        return cls(
            messages=validate_messages(messages),
            settings=settings,
            tradeoff=None if tradeoff is None else check_tradeoff(tradeoff),
            max_latency_s=check_positive("max_latency_s", options.get("max_latency_s")),
            max_joules=check_max_joules(options.get("max_joules")),
            requires=frozenset(needed),
            models=_model_names(options.get("models")),
            decision_id=decision_id,
            score_tool_calls=_flag("score_tool_calls", options.get("score_tool_calls", False)),
        )
