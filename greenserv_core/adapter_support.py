"""What both framework adapters need from the core: a router built lazily from simple
arguments, per-call options mapped onto :meth:`GreenServRouter.generate` arguments, and tool choice."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import Message
from greenserv_core.router import GreenServRouter

__all__ = ["CALL_OPTIONS", "LazyRouter", "RouterFromArguments", "apply_tool_choice", "generation_options"]

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


def apply_tool_choice(
    tools: list[dict[str, Any]], choice: Any, conversation: list[Message]
) -> tuple[list[dict[str, Any]], list[Message]]:
    """Apply a ``tool_choice`` (LangChain's vocabulary): ``None``/``"auto"`` offer every tool, ``"none"`` none;
    ``"any"``/``"required"``/``True`` ask for a call to one of them, a tool name (or
    ``{"function": {"name": ...}}``) offers only that tool and asks for a call to it. Local
    models cannot be forced, so the request is an instruction in the system message.

    >>> tool = {"type": "function", "function": {"name": "now", "parameters": {}}}
    >>> apply_tool_choice([tool], "any", [{"role": "user", "content": "Time?"}])[1][0]["content"]
    'Answer with a call to one of the functions.'
    """
    if choice in (None, "auto") or not tools:
        return tools, conversation
    if choice == "none":
        return [], conversation
    if choice in ("any", "required", True):
        instruction = "Answer with a call to one of the functions."
    else:
        name = choice.get("function", {}).get("name") if isinstance(choice, dict) else choice
        tools = [t for t in tools if t["function"]["name"] == name]
        if not isinstance(name, str) or not tools:
            raise InvalidInputError(f"tool_choice {choice!r} names no bound tool")
        instruction = f"Answer with a call to the function {name}."
    if conversation and conversation[0]["role"] == "system":
        head = {"role": "system", "content": f"{conversation[0]['content']}\n\n{instruction}"}
        return tools, [head, *conversation[1:]]  # type: ignore[list-item]
    return tools, [{"role": "system", "content": instruction}, *conversation]
