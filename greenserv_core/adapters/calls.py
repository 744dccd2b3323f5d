"""Calling the router for an adapter: the router built lazily from simple arguments, a call's
options mapped onto :meth:`GreenServRouter.generate` arguments, and ``tool_choice``."""

from __future__ import annotations

import decimal
import logging
import math
import numbers
import operator
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from greenserv_core.adapters.answers import Piece, answer_pieces
from greenserv_core.backends.base import MAX_NEW_TOKENS
from greenserv_core.bandits.base import check_whole
from greenserv_core.budget import BudgetPacer, EnergyBudget
from greenserv_core.budget import check_max_joules as _check_cap
from greenserv_core.errors import InvalidInputError, UnknownDecisionError
from greenserv_core.messages import Message
from greenserv_core.redaction import redacted
from greenserv_core.reward import DEFAULT_TRADEOFF, check_tradeoff
from greenserv_core.router import FeedbackRecord, GreenServRouter, RoutedGeneration
from greenserv_core.routing.request import stop_sequences
from greenserv_core.tools import as_tool_specs

__all__ = [
    "CALL_OPTIONS",
    "DEFAULT_MAX_TOKENS",
    "AdapterCore",
    "LazyRouter",
    "apply_tool_choice",
    "check_cascade_signal",
    "check_energy_budget",
    "check_max_joules",
    "check_max_latency",
    "check_max_tokens",
    "check_optional_positive",
    "check_optional_tradeoff",
    "check_setting",
    "check_stop",
    "generation_options",
]

CALL_OPTIONS = frozenset(
    {
        "temperature",
        "max_tokens",
        "top_p",
        "stop",
        "seed",
        "timeout",
        "tradeoff",
        "max_latency_s",
        "max_joules",
        "model",
    }
)
"""The keyword options both adapters take per call (besides ``tools``, ``tool_choice`` and
``response_format``); ``timeout`` is the router's ``max_time_s``, ``max_joules`` caps the
predicted joules of the model that answers, and ``model`` pins one model."""
DEFAULT_MAX_TOKENS = 256
"""The tokens an answer may have when an adapter's ``max_tokens`` is ``None``."""

logger = logging.getLogger("greenserv")


def check_cascade_signal(signal: object) -> str | None:
    """An adapter's ``cascade_signal`` as the signal's name, checked now: ``None``; a bundled
    signal's name (:func:`~greenserv_core.confidence.signal_from_name`); or a signal whose
    name rebuilds it. Anything else raises :class:`InvalidInputError` saying why.

    >>> from greenserv_core.confidence import SelfVerification
    >>> check_cascade_signal("self-verification"), check_cascade_signal(SelfVerification(samples=4))
    ('self-verification', 'self-verification-4')
    """
    from greenserv_core.confidence import signal_from_name

    if signal is None:
        return None
    name = signal if isinstance(signal, str) else getattr(signal, "name", None)
    if not isinstance(name, str):
        raise InvalidInputError(f"cascade_signal must be a confidence signal or its name, got {signal!r}")
    try:
        signal_from_name(name)
    except InvalidInputError:
        if isinstance(signal, str):
            raise
        raise InvalidInputError(
            f"the signal {name!r} is not bundled, so an adapter cannot rebuild it: build the router with "
            "add_cascade(first, then, signal=...) and pass router="
        ) from None
    return name


def check_optional_tradeoff(tradeoff: object) -> float | None:
    """An adapter's ``tradeoff``: ``None`` (the router's own λ) or a λ in [0, 1], taken as a
    call's option is (numpy, ``Decimal``)."""
    return None if tradeoff is None else check_tradeoff(_as_number(tradeoff))


def check_max_joules(value: object) -> float | None:
    """An adapter's ``max_joules``: ``None`` or a positive finite cap in joules, taken as a
    call's option is (numpy, ``Decimal``).

    >>> import decimal
    >>> check_max_joules(decimal.Decimal("50"))
    50.0
    """
    return _check_cap(_as_number(value))


def check_max_tokens(value: object) -> int | None:
    """An adapter's ``max_tokens``: ``None`` (the default) or an integer >= 1, as a call's
    ``max_tokens`` is checked (``True``, ``8.0`` and ``"8"`` are refused).

    >>> check_max_tokens(8), check_max_tokens(None)
    (8, None)
    >>> check_max_tokens(True)
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: max_tokens must be an integer >= 1, got True
    """
    tokens = None if value is None else check_whole("max_tokens", value, low=1)
    if tokens is not None and tokens > MAX_NEW_TOKENS:
        raise InvalidInputError(f"max_tokens must be at most 2**63 - 1, got {tokens!r}")
    return tokens


def _as_number(value: object) -> object:
    """A non-integer real number (numpy, ``Decimal``) as a float, and an integer of another
    type (numpy's) as an ``int``; anything else as given, for the checks after to name it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, (numbers.Real, decimal.Decimal)):
        return float(value)
    return value


def check_setting(name: str) -> Callable[[object], object]:
    """A check of an adapter's default generation setting (``temperature``, ``top_p``,
    ``seed``), as every call would check it, so that a bad default is refused when the model
    is made, not at each call; ``None`` is the setting's default.

    >>> check_setting("temperature")(0.7), check_setting("temperature")(None), check_setting("top_p")(None)
    (0.7, 0.0, 1.0)
    >>> check_setting("top_p")(5)
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: top_p must be a number in (0, 1], got 5
    """
    from greenserv_core.backends.base import GenerationSettings

    def check(value: object) -> object:
        if value is None:  # the default, as other chat models read None (a seed's default is None)
            return getattr(GenerationSettings(), name)
        value = _as_number(value)  # as a call's option is taken
        GenerationSettings(**{name: value})  # type: ignore[arg-type]
        return value

    return check


def check_optional_positive(name: str, *, finite: bool = False) -> Callable[[object], float | None]:
    """A check of an adapter's default ``timeout`` or ``max_latency_s`` (seconds): ``None`` or
    a positive number, as a call's option takes it: infinity is no limit, unless ``finite``
    (``max_latency_s``, which every call refuses infinite).

    >>> check_optional_positive("timeout")(None), check_optional_positive("timeout")(2)
    (None, 2.0)
    >>> check_optional_positive("timeout")(10**400)  # past a float's range: no limit
    inf
    >>> check_optional_positive("max_latency_s", finite=True)(float("inf"))
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: max_latency_s must be a positive finite number of seconds, got inf
    """
    from greenserv_core.quality import as_float, is_real

    def check(value: object) -> float | None:
        if value is None:
            return None
        value = _as_number(value)
        seconds = as_float(value) if is_real(value) else math.nan  # (a whole number past a float's: infinite)
        if not seconds > 0 or (finite and seconds == math.inf):
            kind = "positive finite" if finite else "positive"
            raise InvalidInputError(f"{name} must be a {kind} number of seconds, got {value!r}")
        return seconds

    return check


check_max_latency = check_optional_positive("max_latency_s", finite=True)
"""The check of an adapter's default ``max_latency_s``: ``None`` or a positive finite number
of seconds (every call refuses infinity, so it is refused when the model is made)."""


def check_stop(stop: object) -> list[str] | None:
    """An adapter's default ``stop``: ``None``, one string (one sequence) or a list of them."""
    return None if stop is None else list(stop_sequences(stop))  # type: ignore[arg-type]


def _budget_meant(budget: object) -> Hashable:
    """The budget an adapter's ``energy_budget`` means: text and joules per query (as
    :func:`check_energy_budget` keeps them) as the :class:`EnergyBudget` they read as; anything
    else (an ``EnergyBudget`` given to a copy, which pydantic's ``model_copy`` does not check)
    as it is.

    >>> _budget_meant("2Wh/h") == _budget_meant("7200J/3600s"), _budget_meant(50.0) == _budget_meant("50J/query")
    (True, True)
    >>> _budget_meant(EnergyBudget.per_window(wh=2, window_s=3600)) == _budget_meant("2Wh/h")
    True
    """
    if isinstance(budget, str):
        return EnergyBudget.parse(budget)
    if isinstance(budget, numbers.Real) and not isinstance(budget, bool):
        return EnergyBudget.per_query(budget)  # type: ignore[arg-type]
    return budget if isinstance(budget, Hashable) else id(budget)


def check_energy_budget(budget: object) -> float | str | None:
    """An adapter's ``energy_budget`` in a plain, serialisable form, checked now rather than
    when the router is first built: ``None``; joules per query as a float; or budget text
    such as ``"50J/query"`` or ``"2Wh/h"``, kept as given. An
    :class:`~greenserv_core.budget.EnergyBudget` becomes its joules per query, or text that
    parses back to the same budget. Anything else raises :class:`InvalidInputError` saying why.

    >>> check_energy_budget(50), check_energy_budget("2Wh/h")
    (50.0, '2Wh/h')
    >>> check_energy_budget(EnergyBudget.per_window(wh=2, window_s=3600))
    '7200.0J/3600.0s'
    >>> check_energy_budget("fifty joules")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: cannot read the energy budget 'fifty joules': write an amount, ...
    """
    if budget is None:
        return None
    if isinstance(budget, EnergyBudget):
        return budget.joules if budget.window_s is None else f"{budget.joules!r}J/{budget.window_s!r}s"
    if isinstance(budget, BudgetPacer):
        raise InvalidInputError(
            "a BudgetPacer holds settings and learned state: build the router with it "
            "(GreenServRouter(..., energy_budget=pacer)) and pass router="
        )
    if isinstance(budget, str):
        EnergyBudget.parse(budget)
        return budget
    if isinstance(budget, numbers.Real) and not isinstance(budget, bool):  # numpy's and Fraction too, as the router
        return EnergyBudget.per_query(budget).joules  # type: ignore[arg-type]
    raise InvalidInputError(
        f"energy_budget must be joules per query, text such as '50J/query' or '2Wh/h', or an EnergyBudget; "
        f"got {budget!r}"
    )


class LazyRouter:
    """Holds the routers an adapter builds, one for each set of building arguments, each built
    on first use (thread-safe). An adapter's copies (LangChain's ``configurable_fields``,
    ``model_copy``) hold the same ``LazyRouter``, so a copy that would build the same router
    uses the one already built, and what it learns, instead of loading the models again.

    >>> lazy = LazyRouter()
    >>> lazy.get(lambda: "built", key="a"), lazy.get(lambda: "not again", key="a"), lazy.get(lambda: "other", key="b")
    ('built', 'built', 'other')
    >>> lazy.built("a"), lazy.built("c")
    ('built', None)
    >>> lazy.first_time("note"), lazy.first_time("note")
    (True, False)
    """

    def __init__(self) -> None:
        self._routers: dict[Hashable, tuple[Any, GreenServRouter]] = {}
        self._building: dict[Hashable, threading.Lock] = {}  # one lock per key while it builds
        self._said: set[Hashable] = set()  # the warnings given to the copies, each once
        self._lock = threading.Lock()  # guards the dicts and the set, never held during a build

    def get(self, build: Callable[[], GreenServRouter], key: Hashable = None, keep: Any = None) -> GreenServRouter:
        """The router built for ``key``, built now if there is none (once: a second caller of
        the same key waits for it, the routers of other keys do not); ``keep`` is held beside it
        (the objects whose identities the key names, so that no other object takes them)."""
        held = self._routers.get(key)
        if held is None:
            with self._lock:
                building = self._building.setdefault(key, threading.Lock())
            with building:
                held = self._routers.get(key)
                if held is None:
                    router = build()
                    with self._lock:
                        held = self._routers[key] = (keep, router)
                        del self._building[key]
        return held[1]

    def built(self, key: Hashable = None) -> GreenServRouter | None:
        """The router built for ``key``, or ``None`` when there is none yet."""
        held = self._routers.get(key)
        return None if held is None else held[1]

    def first_time(self, warning: Hashable) -> bool:
        """Whether ``warning`` is given here for the first time (so that the copies, which hold
        this object, say it once between them, not at every call)."""
        with self._lock:
            first = warning not in self._said
            self._said.add(warning)
        return first

    def deciding(self, decision_id: str) -> GreenServRouter | None:
        """The router built here that made ``decision_id`` (pending, or recently scored): a copy
        that builds another router (another policy, budget or λ under a budget) made it there."""
        with self._lock:
            routers = [router for _, router in self._routers.values()]
        return next((router for router in routers if router.pending_.known(decision_id)), None)


def generation_options(
    kwargs: Mapping[str, Any],
    *,
    owner: str,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int | None,
    max_latency_s: float | None,
    timeout: float | None,
    stop: Sequence[str] | None = None,
    max_joules: float | None = None,
    tradeoff: float | None = None,
) -> dict[str, Any]:
    """Router arguments from an adapter's defaults and a call's options (:data:`CALL_OPTIONS`);
    unknown options raise :class:`InvalidInputError` naming them (nothing is silently dropped).
    An option given as ``None`` takes the adapter's default, as in other chat models.

    >>> options = generation_options({"model": "small", "timeout": 5.0, "stop": ["\\n"], "max_joules": 20.0},
    ...     owner="X", temperature=0.0, top_p=1.0, max_tokens=8, seed=None, max_latency_s=None, timeout=None)
    >>> options["models"], options["max_time_s"], options["stop"], options["max_joules"]
    (['small'], 5.0, ['\\n'], 20.0)
    """
    unknown = set(kwargs) - CALL_OPTIONS
    if unknown:
        raise InvalidInputError(f"{owner} does not take {sorted(unknown)}; per-call options are {sorted(CALL_OPTIONS)}")
    call_stop = kwargs.get("stop")

    def given(name: str, default: Any) -> Any:  # None means "the default", as in other chat models
        value = kwargs.get(name)
        return default if value is None else value

    def number(name: str, default: Any) -> Any:  # as the model's fields take them (numpy, Decimal)
        return _as_number(given(name, default))

    def whole(name: str, default: Any) -> Any:
        value = given(name, default)
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return operator.index(value)
        return value

    tokens = check_max_tokens(check_whole("max_tokens", given("max_tokens", max_tokens), low=1))  # named as given
    return {
        "temperature": number("temperature", temperature),
        "top_p": number("top_p", top_p),
        "max_new_tokens": tokens,
        "stop": list(stop_sequences(call_stop if call_stop is not None else stop)),
        "seed": whole("seed", seed),
        "tradeoff": number("tradeoff", tradeoff),
        "max_latency_s": number("max_latency_s", max_latency_s),
        "max_joules": number("max_joules", max_joules),
        "max_time_s": check_optional_positive("timeout (the router's max_time_s)")(given("timeout", timeout)),
        "models": [kwargs["model"]] if kwargs.get("model") is not None else None,  # '', 0: refused as names
    }


def apply_tool_choice(
    tools: list[dict[str, Any]], choice: Any, conversation: list[Message]
) -> tuple[list[dict[str, Any]], list[Message]]:
    """Apply a ``tool_choice`` (LangChain's vocabulary): ``None``/``"auto"``/``False`` offer
    every tool, ``"none"`` none; ``"any"``/``"required"``/``True`` ask for a call to one of them, a tool name (or
    ``{"function": {"name": ...}}``) offers only that tool and asks for a call to it. Local
    models cannot be forced, so the request is an instruction in the system message.

    >>> tool = {"type": "function", "function": {"name": "now", "parameters": {}}}
    >>> apply_tool_choice([tool], "any", [{"role": "user", "content": "Time?"}])[1][0]["content"]
    'Answer with a call to one of the functions.'
    """
    if choice in (None, "auto", False) or not tools:  # False: as ChatOpenAI reads it, no choice made
        return tools, conversation
    if choice == "none":
        return [], conversation
    if choice in ("any", "required", True):
        instruction = "Answer with a call to one of the functions."
    else:
        function = choice.get("function") if isinstance(choice, dict) else None
        name = function.get("name") if isinstance(function, dict) else None if isinstance(choice, dict) else choice
        tools = [t for t, spec in zip(tools, as_tool_specs(tools), strict=True) if spec.name == name]  # any form
        if not isinstance(name, str) or not tools:
            raise InvalidInputError(f"tool_choice {choice!r} names no bound tool")
        instruction = f"Answer with a call to the function {name}."
    if conversation and conversation[0]["role"] == "system":
        head = {"role": "system", "content": f"{conversation[0]['content']}\n\n{instruction}"}
        return tools, [head, *conversation[1:]]  # type: ignore[list-item]
    return tools, [{"role": "system", "content": instruction}, *conversation]


_ROUTER_BUILDERS = ("models", "strategy", "embedder", "meter")
"""An adapter's arguments that only a router it builds itself uses."""


class AdapterCore:
    """What an adapter model does with the router, whatever the framework: a mixin for models
    that hold a ready ``router`` or the simple arguments to build one (``models``, ``meter``,
    ``strategy``, ``embedder``, ``tradeoff``, ``seed``, ``max_latency_s``, ``energy_budget``,
    ``max_joules``, ``cascades``, ``cascade_signal``), the generation defaults (``temperature``,
    ``top_p``, ``max_tokens``, ``stop``, ``timeout``, ``max_latency_s``, ``max_joules``),
    ``score_tool_calls`` and a :class:`LazyRouter` in ``built_routers`` (a field, so that copies
    share it). The adapter only translates framework objects.

    ``energy_budget`` (checked by :func:`check_energy_budget`) is the budget of the router the
    adapter builds; a ready ``router`` has its own, so giving both is refused
    (:meth:`check_router_arguments`), as are ``models``, ``meter``, ``strategy`` and
    ``embedder`` set beside it. ``tradeoff`` (default ``None``: the router's own λ, and
    :data:`~greenserv_core.reward.DEFAULT_TRADEOFF` for a router the adapter builds) is every
    call's λ when given (:attr:`call_tradeoff`), unless the router the adapter builds has an
    energy budget. The adapter's copies (such as LangChain's ``configurable_fields``) share
    the router it builds while they would build the same one, so configuring λ per call keeps
    one router and what it learns. ``max_joules`` is every
    call's default cap, and so applies to a ready router too. ``cascades`` (pairs of model
    names) are offered by the router the adapter builds, with ``cascade_signal`` (a signal's
    name, such as ``"self-verification"``; default: by answer length); a ready router is given
    its cascades with ``add_cascade``. A cascade runs transparently: the answer is the kept
    one, its record lists the chain, feedback scores the cascade's decision, and a stream
    shows only the kept answer.
    """

    if TYPE_CHECKING:
        router: GreenServRouter | None
        models: Any
        meter: str
        strategy: str
        embedder: str | None
        tradeoff: float | None
        seed: int | None
        max_latency_s: float | None
        energy_budget: float | str | None
        max_joules: float | None
        cascades: list[tuple[str, str]] | None
        cascade_signal: str | None
        temperature: float
        top_p: float
        max_tokens: int | None
        stop: list[str] | None
        timeout: float | None
        score_tool_calls: bool
        built_routers: LazyRouter

    @property
    def greenserv_router(self) -> GreenServRouter:
        """The router: the one given, or one built from ``models``/``strategy``/``tradeoff`` on first use."""

        def build() -> GreenServRouter:
            from greenserv_core.models.pool import build_backends  # loads the local-model stack

            budget = getattr(self, "energy_budget", None)
            # neutral defaults: the copies sharing the router each send their own λ (without a
            # budget; with one, its starting λ is part of the key), max_latency_s and max_joules,
            # and one that sets none must not get the builder's
            return GreenServRouter(
                build_backends(self.models, meter=self.meter),
                strategy=self.strategy,
                embedder=getattr(self, "embedder", None),
                tradeoff=DEFAULT_TRADEOFF if budget is None else self.tradeoff_in_force,
                seed=self.seed,  # the policy's draws; a call's own seed is sent with it
                max_latency_s=None,
                energy_budget=budget,
                max_joules=None,
                cascades=getattr(self, "cascades", None) or (),
                cascade_signal=getattr(self, "cascade_signal", None),
            )

        if self.router is not None:
            return self.router
        key = self._building_key
        router = self.built_routers.get(build, key=key, keep=self.models)
        if self.seed is not None and router.seed != self.seed and self.built_routers.first_time((key, self.seed)):
            logger.warning(
                "%s(seed=%r) shares the router another copy built with seed=%r: its policy draws keep that seed "
                "(seed=%r is still sent with every call, to the models); a model made anew, not copied, builds its own",
                type(self).__name__,
                self.seed,
                router.seed,
                self.seed,
            )
        return router

    def shared_on_copy(self, memo: dict[int, Any] | None, *also: object) -> dict[int, Any]:
        """``memo`` for a deep copy (``copy.deepcopy``, ``model_copy(deep=True)``) that shares
        the router given, the routers built (:class:`LazyRouter`), the model objects in
        ``models`` and ``also``: as a copied client talks to the same server, the copy routes
        through the same router, which holds the learned state, its locks and the loaded models
        (a router of its own would start unlearned and load the models again)."""
        memo = {} if memo is None else memo
        for shared in (self.router, self.built_routers, *(self.models or ()), *also):
            if shared is not None:
                memo[id(shared)] = shared
        return memo

    @property
    def _building_key(self) -> Hashable:
        """What the router this adapter builds depends on: copies with the same key share one.
        The options every call sends are not part of it (``max_joules``, ``max_latency_s``,
        ``seed``, λ: :attr:`call_tradeoff`), so configuring them per call keeps one router (built
        with neutral defaults, so that a copy that sets none gets its own, not the first copy's);
        λ is, beside an energy budget, whose starting λ it is. The router's policy draws keep the
        seed of the copy that built it: a copy that sets another is warned, once. A budget is
        keyed by what it means, so one written another way (``"2Wh/h"``, ``"7200J/3600s"``) is
        the same budget, spent by one router."""
        budget = getattr(self, "energy_budget", None)
        return (
            None if self.models is None else tuple(m if isinstance(m, str) else id(m) for m in self.models),
            self.meter,
            self.strategy,
            getattr(self, "embedder", None),
            None if budget is None else _budget_meant(budget),
            tuple(tuple(pair) for pair in getattr(self, "cascades", None) or ()),
            getattr(self, "cascade_signal", None),
            None if budget is None else self.tradeoff_in_force,
        )

    @property
    def _built_router(self) -> GreenServRouter | None:
        """The ready router, or the one this adapter has built; ``None`` before the first call."""
        return self.router if self.router is not None else self.built_routers.built(self._building_key)

    @property
    def call_tradeoff(self) -> float | None:
        """The λ every call sends: ``tradeoff`` when it is given (it then overrides a ready
        router's λ, or its budget's, as a call's ``tradeoff=`` does; e.g. a LangChain
        ``configurable_fields`` copy, which shares the router), else ``None`` (the router's own).
        A router the adapter builds with an energy budget sets λ itself, so then ``None``."""
        if self.router is None and getattr(self, "energy_budget", None) is not None:
            return None
        return self.tradeoff

    @property
    def tradeoff_in_force(self) -> float:
        """The λ the calls get unless they give their own: :attr:`call_tradeoff`, else the
        ready router's, else the one the adapter builds its router with."""
        if self.tradeoff is not None:
            return self.tradeoff
        return self.router.tradeoff if self.router is not None else DEFAULT_TRADEOFF

    def check_router_arguments(self) -> None:
        """Refuse the arguments that build a router beside a ready ``router`` (they would be
        silently ignored: the router given keeps its own pool, policy, λ, budget and cascades)."""
        if self.router is None:
            return
        name = type(self).__name__
        if getattr(self, "cascades", None) or getattr(self, "cascade_signal", None):
            raise InvalidInputError(
                f"{name} was given router= and cascades= or cascade_signal=: the cascades belong to "
                "the router, so add them with router.add_cascade(first, then, signal=...), or give models= instead"
            )
        if getattr(self, "energy_budget", None) is not None:
            raise InvalidInputError(
                f"{name} was given router= and energy_budget=: the budget belongs to the router, "
                "so build it with GreenServRouter(..., energy_budget=...), or give models= instead of router="
            )
        fields = getattr(type(self), "model_fields", {})  # set away from the default (a framework's copy passes all)
        building = [field for field in _ROUTER_BUILDERS if getattr(self, field) != fields[field].default]
        if building:
            raise InvalidInputError(
                f"{name} was given router= and {', '.join(f + '=' for f in building)}: those build a router, and the "
                "router given has its own; set them on GreenServRouter(...), or give models= instead of router="
            )

    @property
    def max_tokens_in_force(self) -> int:
        """Every call's default ``max_tokens``: the adapter's, or :data:`DEFAULT_MAX_TOKENS`
        where it is ``None``."""
        return self.max_tokens or DEFAULT_MAX_TOKENS

    @property
    def pool_name(self) -> str:
        """``greenserv[<model>,...]``, without building the router: a router given names its
        models, else the ``models`` as configured (``bundled`` by default). The name does not
        change when the adapter builds its router on the first call, so a framework's cache
        key and traces name the same pool before and after.

        >>> from greenserv_core.adapters.calls import AdapterCore
        >>> class Adapter(AdapterCore):
        ...     models = ["http://127.0.0.1:8000/v1#qwen"]
        ...     router = None
        >>> Adapter().pool_name
        'greenserv[http://127.0.0.1:8000/v1#qwen]'
        """
        router = self.router
        if router is not None:
            names = router.models
        elif self.models is not None:
            names = [m if isinstance(m, str) else getattr(getattr(m, "info", m), "name", str(m)) for m in self.models]
        else:
            names = ["bundled"]
        return "greenserv[" + ",".join(map(redacted, names)) + "]"  # an address's key goes into no trace

    def router_arguments(
        self, conversation: list[Message], kwargs: Mapping[str, Any], stop: Sequence[str] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        """The conversation (with a ``tool_choice`` instruction) and the router's keyword
        arguments for one call: the model's defaults, the call's options, ``tools``,
        ``tool_choice`` and ``response_format``; ``stop`` (a framework's own argument)
        stands in for the model's ``stop`` when the call gives none."""
        options = dict(kwargs)
        tools, conversation = apply_tool_choice(
            options.pop("tools", None) or [], options.pop("tool_choice", None), conversation
        )
        response_format = options.pop("response_format", None)
        arguments = generation_options(
            options,
            owner=type(self).__name__,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens_in_force,
            seed=self.seed,
            max_latency_s=self.max_latency_s,
            max_joules=getattr(self, "max_joules", None),
            timeout=self.timeout,
            stop=stop if stop is not None else self.stop,
            tradeoff=self.call_tradeoff,
        )
        if tools:
            arguments.update(tools=tools, score_tool_calls=self.score_tool_calls)
        if response_format is not None:
            arguments["response_format"] = response_format
        return conversation, arguments

    def routed_generation(
        self,
        conversation: list[Message],
        kwargs: Mapping[str, Any],
        *,
        stop: Sequence[str] | None = None,
        decision_id: str | None = None,
    ) -> RoutedGeneration:
        """One routed answer. Failover is the router's: a model that is unavailable is left
        out and the query routed again; any other error propagates, never retried."""
        conversation, arguments = self.router_arguments(conversation, kwargs, stop)
        return self.greenserv_router.generate(conversation, decision_id=decision_id, **arguments)

    def routed_stream(
        self,
        conversation: list[Message],
        kwargs: Mapping[str, Any],
        *,
        stop: Sequence[str] | None = None,
        decision_id: str | None = None,
    ) -> Iterator[Piece]:
        """A routed answer piece by piece (:func:`answer_pieces`); the options are checked now,
        before the first piece is asked for."""
        conversation, arguments = self.router_arguments(conversation, kwargs, stop)
        return self.stream_prepared(conversation, arguments, decision_id=decision_id)

    def stream_prepared(
        self, conversation: list[Message], arguments: Mapping[str, Any], *, decision_id: str | None = None
    ) -> Iterator[Piece]:
        """Like :meth:`routed_stream`, from what :meth:`router_arguments` made of a call (an
        async stream checks the options on the event loop, then streams in a worker thread,
        where the router may first have to be built)."""
        chunks = self.greenserv_router.stream(conversation, decision_id=decision_id, **arguments)
        return answer_pieces(chunks, tools_offered="tools" in arguments)

    def routed_feedback(self, decision_id: str, score: float) -> FeedbackRecord:
        """Send a score in [0, 1] for a decision; an unknown or expired one raises
        :class:`UnknownDecisionError` (a ``KeyError``) naming it."""
        router = self._deciding(decision_id) or self._built_router  # building one (loading models) knows no id
        if router is None:
            raise UnknownDecisionError(f"no routed answer for {decision_id!r}: unknown decision id {decision_id!r}")
        try:
            return router.feedback(decision_id, score)
        except UnknownDecisionError as error:
            raise UnknownDecisionError(f"no routed answer for {decision_id!r}: {error}") from error

    def decided(self, decision_id: str) -> bool:
        """Whether this model's router made the decision (pending, or recently scored), so that
        a feedback handler leaves alone the answers of other routers in the same chain."""
        return self._deciding(decision_id) is not None

    def _deciding(self, decision_id: str) -> GreenServRouter | None:
        """The router that made ``decision_id``: the ready one, or one built for this model or
        for one of its copies (``None``: none did)."""
        if self.router is not None:
            return self.router if self.router.pending_.known(decision_id) else None
        return self.built_routers.deciding(decision_id)
