"""A deterministic in-memory backend for tests and examples (like ``httpx.MockTransport``)."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from greenserv_core.backends.abandoned import report_abandoned
from greenserv_core.backends.base import (
    EnergyReading,
    GenerationResult,
    GenerationSettings,
    ModelInfo,
    StreamChunk,
)
from greenserv_core.messages import Message, last_user_text
from greenserv_core.quality import QualityPrior
from greenserv_core.tools.spec import ToolSpec

__all__ = ["FakeBackend"]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def _count(text: str) -> int:
    return len(_TOKEN.findall(text))


class FakeBackend:
    """Answers with ``reply(messages)`` (or ``tool_reply(messages, tools)`` when tools are
    offered, ``json_reply(messages, schema)`` when JSON is asked for, and one is given);
    tokens, latency and joules follow fixed rates
    (joules = ``joules_per_call + joules_per_token × (input + output tokens)``). A
    ``max_time_s`` cuts the answer at the tokens ``seconds_per_token`` leaves room for (finish
    reason ``length``, its latency the limit), as a real model's time limit would.

    Energy is labelled ``source="fake"`` and ``measured=False``: nothing was metered. With
    ``logprobs(messages, text)`` given, a generation that asks for log-probabilities gets them
    (one per token of the answer, as the callable says).

    >>> backend = FakeBackend("tiny", joules_per_token=0.5)
    >>> result = backend.generate([{"role": "user", "content": "Say hi"}], GenerationSettings())
    >>> result.text, result.input_tokens, result.energy.joules
    ('tiny: Say hi', 2, 3.0)
    """

    def __init__(
        self,
        name: str,
        *,
        joules_per_token: float = 1.0,
        joules_per_call: float = 0.0,
        seconds_per_token: float = 0.0,
        context_window: int = 2048,
        capabilities: frozenset[str] = frozenset({"chat_template"}),
        reply: Callable[[Sequence[Message]], str] | None = None,
        tool_reply: Callable[[Sequence[Message], tuple[ToolSpec, ...]], str] | None = None,
        json_reply: Callable[[Sequence[Message], dict[str, Any] | None], str] | None = None,
        quality: QualityPrior | None = None,
        logprobs: Callable[[Sequence[Message], str], Sequence[float]] | None = None,
    ) -> None:
        self._info = ModelInfo(name=name, context_window=context_window, capabilities=capabilities, quality=quality)
        self.joules_per_token = joules_per_token
        self.joules_per_call = joules_per_call
        self.seconds_per_token = seconds_per_token
        self._reply = reply or (lambda messages: f"{name}: {last_user_text(messages)}")
        self._tool_reply = tool_reply
        self._json_reply = json_reply
        self._logprobs = logprobs
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def token_count_key(self) -> str | None:
        """Fakes that count tokens the same way share a key, so the router counts a prompt once
        per pool (see :class:`~greenserv_core.routing.pool.SharesTokenCounts`); a subclass that
        counts otherwise gets none."""
        return "fake:words" if type(self).count_tokens is FakeBackend.count_tokens else None

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(_count(m["content"]) for m in messages)

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        with self._lock:
            self.calls += 1
        if settings.tools and self._tool_reply is not None:
            text = self._tool_reply(messages, settings.tools)
        elif settings.json is not None and self._json_reply is not None:
            text = self._json_reply(messages, settings.json.schema)
        else:
            text = self._reply(messages)
        tokens = list(_TOKEN.finditer(text))
        finish = "stop"
        if len(tokens) > settings.max_new_tokens:
            # cut after its last token, the text kept as written (as the time limit's cut keeps it)
            kept = settings.max_new_tokens
            text, finish = (text[: tokens[kept - 1].end()] if kept else ""), "length"
            tokens = tokens[:kept]
        input_tokens = self.count_tokens(messages)
        limit, timed_out = settings.max_time_s, False
        if limit is not None and self.seconds_per_token * (input_tokens + len(tokens)) > limit:
            # cut where its time limit leaves no room for the next token (the text kept as written)
            room = max(0, math.floor(limit / self.seconds_per_token) - input_tokens)
            text, finish, timed_out = (text[: tokens[room - 1].end()] if room else ""), "length", True
        for stop in settings.stop:
            cut = text.find(stop)
            if cut >= 0:
                text, finish, timed_out = text[:cut], "stop", False
        output_tokens = _count(text)
        total = input_tokens + output_tokens
        return GenerationResult(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_s=float(limit) if timed_out and limit is not None else self.seconds_per_token * total,
            energy=EnergyReading(self.joules_per_call + self.joules_per_token * total, source="fake", measured=False),
            finish_reason=finish,
            token_logprobs=(
                tuple(float(v) for v in self._logprobs(messages, text))
                if settings.logprobs and self._logprobs is not None
                else None
            ),
        )

    def stream(self, messages: Sequence[Message], settings: GenerationSettings) -> Iterator[StreamChunk]:
        result = self.generate(messages, settings)
        try:
            for piece in re.findall(r"\S+\s*|\s+", result.text):
                yield StreamChunk(delta=piece)
        except GeneratorExit:  # the whole answer was computed up front: all of it was spent
            report_abandoned(result.energy, result.latency_s)
            raise
        yield StreamChunk(delta="", result=result)
