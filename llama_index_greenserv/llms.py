"""``GreenServLLM``: GreenServ's router as a LlamaIndex ``LLM``.

Set ``Settings.llm = GreenServLLM()`` and query engines, chat engines and agents route every
call. Each response's ``raw`` and ``additional_kwargs`` carry the routing record (decision id,
model, tokens, latency, joules and their source, features, λ).

>>> from llama_index_greenserv import GreenServLLM            # doctest: +SKIP
>>> llm = GreenServLLM(tradeoff=0.4)                           # doctest: +SKIP
>>> response = llm.complete("What is the capital of France?")  # doctest: +SKIP
>>> response.additional_kwargs["model"], response.additional_kwargs["energy_joules"]  # doctest: +SKIP
('smollm2-135m-instruct', 9.8)
>>> llm.feedback(response, 1.0)                                # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from pydantic import ConfigDict, Field, PrivateAttr

from greenserv_core.async_bridge import iterate_in_thread
from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import Message
from greenserv_core.models.pool import build_backends
from greenserv_core.router import FeedbackRecord, GreenServRouter, RoutedChunk, RoutedGeneration

__all__ = ["GreenServLLM", "decision_id_of"]

_ROLES = {MessageRole.SYSTEM: "system", MessageRole.USER: "user", MessageRole.ASSISTANT: "assistant"}
_CALL_OPTIONS = frozenset(
    {"temperature", "max_tokens", "top_p", "seed", "tradeoff", "max_latency_s", "timeout", "model"}
)


def decision_id_of(target: Any) -> str:
    """The decision id of a ``ChatResponse`` / ``CompletionResponse``, or the id itself."""
    if isinstance(target, str) and target:
        return target
    extra = getattr(target, "additional_kwargs", None)
    if isinstance(extra, dict) and extra.get("decision_id"):
        return str(extra["decision_id"])
    raise InvalidInputError(f"expected a GreenServ response or a decision id, got {type(target).__name__}")


def to_greenserv_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    out: list[Message] = []
    for index, message in enumerate(messages):
        role = _ROLES.get(message.role)
        if role is None:
            raise InvalidInputError(
                f"messages[{index}] has role {message.role.value!r}; GreenServ's local models take system, user "
                "and assistant messages"
            )
        out.append({"role": role, "content": message.content or ""})
    return out


class GreenServLLM(LLM):
    """Energy-aware routing over a pool of local models, as a LlamaIndex LLM.

    Build from a ready ``router`` or from ``models`` (bundled names, model directories,
    ``ModelSpec``/``ModelBackend``; default: the bundled pool), ``strategy`` and ``tradeoff``.
    ``metadata.context_window`` is the smallest window in the pool. Per-call keyword
    options: ``temperature``, ``max_tokens``, ``top_p``, ``seed``, ``timeout``, ``tradeoff``,
    ``max_latency_s``, ``model`` (pin one model); anything else is refused.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: GreenServRouter | None = Field(default=None, exclude=True)
    models: list[Any] | None = Field(default=None, exclude=True)
    strategy: str = "linucb"
    tradeoff: float = Field(default=0.4, ge=0.0, le=1.0)
    meter: str = "auto"
    temperature: float = 0.0
    max_tokens: int = Field(default=256, gt=0)
    seed: int | None = None
    max_latency_s: float | None = None

    _router: GreenServRouter | None = PrivateAttr(default=None)
    _router_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def model_post_init(self, context: Any) -> None:
        self._router = self.router

    @classmethod
    def class_name(cls) -> str:
        return "GreenServLLM"

    @property
    def greenserv_router(self) -> GreenServRouter:
        if self._router is None:
            with self._router_lock:
                if self._router is None:
                    self._router = GreenServRouter(
                        build_backends(self.models, meter=self.meter),
                        strategy=self.strategy,
                        tradeoff=self.tradeoff,
                        seed=self.seed,
                        max_latency_s=self.max_latency_s,
                    )
        return self._router

    @property
    def metadata(self) -> LLMMetadata:
        router = self.greenserv_router
        windows = [router.backend(name).info.context_window for name in router.models]
        return LLMMetadata(
            context_window=min(windows),
            num_output=self.max_tokens,
            is_chat_model=True,
            model_name="greenserv[" + ",".join(router.models) + "]",
        )

    # ---- calling the router ---------------------------------------------------------------
    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(kwargs) - _CALL_OPTIONS
        if unknown:
            raise InvalidInputError(
                f"GreenServLLM does not take {sorted(unknown)}; options are {sorted(_CALL_OPTIONS)}"
            )
        return {
            "temperature": kwargs.get("temperature", self.temperature),
            "top_p": kwargs.get("top_p", 1.0),
            "max_new_tokens": kwargs.get("max_tokens", self.max_tokens),
            "seed": kwargs.get("seed", self.seed),
            "tradeoff": kwargs.get("tradeoff"),
            "max_latency_s": kwargs.get("max_latency_s", self.max_latency_s),
            "max_time_s": kwargs.get("timeout"),
            "models": [kwargs["model"]] if kwargs.get("model") else None,
        }

    def _run(self, conversation: list[Message], kwargs: dict[str, Any]) -> RoutedGeneration:
        return self.greenserv_router.generate(conversation, **self._options(kwargs))

    def _pieces(self, conversation: list[Message], kwargs: dict[str, Any]) -> Iterator[RoutedChunk]:
        return self.greenserv_router.stream(conversation, **self._options(kwargs))

    @staticmethod
    def _chat_response(result: RoutedGeneration) -> ChatResponse:
        record = result.record()
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=result.text),
            raw=record,
            additional_kwargs=dict(record),
        )

    @staticmethod
    def _completion_response(result: RoutedGeneration) -> CompletionResponse:
        record = result.record()
        return CompletionResponse(text=result.text, raw=record, additional_kwargs=dict(record))

    # ---- sync ---------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat_response(self._run(to_greenserv_messages(messages), kwargs))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._completion_response(self._run([{"role": "user", "content": prompt}], kwargs))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        conversation = to_greenserv_messages(messages)

        def gen() -> ChatResponseGen:
            text = ""
            for piece in self._pieces(conversation, kwargs):
                if piece.generation is not None:
                    record = piece.generation.record()
                    yield ChatResponse(
                        message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                        delta="",
                        raw=record,
                        additional_kwargs=dict(record),
                    )
                    return
                text += piece.delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece.delta)

        return gen()

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        conversation: list[Message] = [{"role": "user", "content": prompt}]

        def gen() -> CompletionResponseGen:
            text = ""
            for piece in self._pieces(conversation, kwargs):
                if piece.generation is not None:
                    record = piece.generation.record()
                    yield CompletionResponse(text=text, delta="", raw=record, additional_kwargs=dict(record))
                    return
                text += piece.delta
                yield CompletionResponse(text=text, delta=piece.delta)

        return gen()

    # ---- async: the model runs in a worker thread, the event loop stays free ----------------
    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        conversation = to_greenserv_messages(messages)
        return self._chat_response(await asyncio.to_thread(self._run, conversation, kwargs))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        result = await asyncio.to_thread(self._run, [{"role": "user", "content": prompt}], kwargs)
        return self._completion_response(result)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        conversation = to_greenserv_messages(messages)

        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for piece in iterate_in_thread(lambda: self._pieces(conversation, kwargs)):
                if piece.generation is not None:
                    record = piece.generation.record()
                    yield ChatResponse(
                        message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                        delta="",
                        raw=record,
                        additional_kwargs=dict(record),
                    )
                    return
                text += piece.delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece.delta)

        return gen()

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        conversation: list[Message] = [{"role": "user", "content": prompt}]

        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            async for piece in iterate_in_thread(lambda: self._pieces(conversation, kwargs)):
                if piece.generation is not None:
                    record = piece.generation.record()
                    yield CompletionResponse(text=text, delta="", raw=record, additional_kwargs=dict(record))
                    return
                text += piece.delta
                yield CompletionResponse(text=text, delta=piece.delta)

        return gen()

    # ---- feedback -----------------------------------------------------------------------
    def feedback(self, target: Any, score: float) -> FeedbackRecord:
        """Score a response (``ChatResponse``/``CompletionResponse``) or a decision id in [0, 1]."""
        return self.greenserv_router.feedback(decision_id_of(target), score)
