"""What both framework adapters need from the core: a router built lazily from simple
arguments, and per-call options mapped onto :meth:`GreenServRouter.generate` arguments."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from greenserv_core.errors import InvalidInputError
from greenserv_core.router import GreenServRouter

__all__ = ["CALL_OPTIONS", "LazyRouter", "RouterFromArguments", "generation_options"]

CALL_OPTIONS = frozenset(
    {"temperature", "max_tokens", "top_p", "seed", "timeout", "tradeoff", "max_latency_s", "model"}
)


class LazyRouter:
    """Holds a ready router or builds one on first use (thread-safe)."""

    def __init__(self, router: GreenServRouter | None = None) -> None:
        self.router = router
        self._lock = threading.Lock()

    def get(self, build: Callable[[], GreenServRouter]) -> GreenServRouter:
        if self.router is None:
            with self._lock:
                if self.router is None:
                    self.router = build()
        return self.router


class RouterFromArguments:
    """Mixin for adapter models that hold a ready ``router`` or the simple arguments to build
    one (``models``, ``meter``, ``strategy``, ``tradeoff``, ``seed``, ``max_latency_s``) and a
    :class:`LazyRouter` in ``_router``."""

    if TYPE_CHECKING:
        models: Any
        meter: str
        strategy: str
        tradeoff: float
        seed: int | None
        max_latency_s: float | None
        _router: LazyRouter

    @property
    def greenserv_router(self) -> GreenServRouter:
        """The router (built from ``models``/``strategy``/``tradeoff`` on first use)."""
        from greenserv_core.models.pool import build_router

        return self._router.get(
            lambda: build_router(
                self.models,
                meter=self.meter,
                strategy=self.strategy,
                tradeoff=self.tradeoff,
                seed=self.seed,
                max_latency_s=self.max_latency_s,
            )
        )


def generation_options(
    kwargs: dict[str, Any],
    *,
    owner: str,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int | None,
    max_latency_s: float | None,
    timeout: float | None,
    stop: Sequence[str] = (),
) -> dict[str, Any]:
    """Router arguments from an adapter's defaults and a call's keyword options; unknown
    options raise :class:`InvalidInputError` naming them (nothing is silently dropped).

    >>> generation_options({"model": "small"}, owner="X", temperature=0.0, top_p=1.0, max_tokens=8, seed=None,
    ...                    max_latency_s=None, timeout=None)["models"]
    ['small']
    """
    unknown = set(kwargs) - CALL_OPTIONS
    if unknown:
        raise InvalidInputError(f"{owner} does not take {sorted(unknown)}; per-call options are {sorted(CALL_OPTIONS)}")
    return {
        "temperature": kwargs.get("temperature", temperature),
        "top_p": kwargs.get("top_p", top_p),
        "max_new_tokens": kwargs.get("max_tokens", max_tokens),
        "stop": list(stop),
        "seed": kwargs.get("seed", seed),
        "tradeoff": kwargs.get("tradeoff"),
        "max_latency_s": kwargs.get("max_latency_s", max_latency_s),
        "max_time_s": kwargs.get("timeout", timeout),
        "models": [kwargs["model"]] if kwargs.get("model") else None,
    }
