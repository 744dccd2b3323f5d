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

It is a ``FunctionCallingLLM``: ``chat_with_tools`` / ``predict_and_call`` and LlamaIndex
agents (``FunctionAgent``) route tool-bearing calls to the models of the pool that take tools
(``metadata.is_function_calling_model`` says whether there is one). The calls an answer makes
are in ``message.additional_kwargs["tool_calls"]`` (and refused ones, with the reason, in
``"invalid_tool_calls"``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

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
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import BaseTool, ToolSelection
from pydantic import ConfigDict, Field, PrivateAttr

from greenserv_core.adapter_support import LazyRouter, RouterFromArguments, apply_tool_choice, generation_options
from greenserv_core.async_bridge import iterate_in_thread
from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import Message
from greenserv_core.router import FeedbackRecord, GreenServRouter, RoutedChunk, RoutedGeneration
from greenserv_core.tools import tool_result_turn, with_tool_calls

__all__ = ["GreenServLLM", "decision_id_of"]

_ROLES = {
    MessageRole.SYSTEM: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.TOOL: "tool",
}


def decision_id_of(target: Any) -> str:
    """The decision id of a ``ChatResponse`` / ``CompletionResponse``, or the id itself."""
    if isinstance(target, str) and target:
        return target
    extra = getattr(target, "additional_kwargs", None)
    if isinstance(extra, dict) and extra.get("decision_id"):
        return str(extra["decision_id"])
    raise InvalidInputError(f"expected a GreenServ response or a decision id, got {type(target).__name__}")


def to_greenserv_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    """System, user, assistant and tool messages. An assistant turn's tool calls follow its text
    as Hermes ``<tool_call>`` blocks; a tool result is wrapped in ``<tool_response>``.

    >>> to_greenserv_messages([ChatMessage(role="tool", content="42")])[0]["content"]
    '<tool_response>\\n42\\n</tool_response>'
    """
    out: list[Message] = []
    for index, message in enumerate(messages):
        role = _ROLES.get(message.role)
        if role is None:
            raise InvalidInputError(
                f"messages[{index}] has role {message.role.value!r}; GreenServ takes system, user, assistant "
                "and tool messages"
            )
        content = message.content or ""
        if role == "tool":
            content = tool_result_turn(content)
        calls = message.additional_kwargs.get("tool_calls") or []
        out.append({"role": role, "content": with_tool_calls(content, [(c["name"], c["arguments"]) for c in calls])})
    return out


class GreenServLLM(RouterFromArguments, FunctionCallingLLM):
    """Energy-aware routing over a pool of local models, as a LlamaIndex LLM.

    Build from a ready ``router`` or from ``models`` (bundled names, model directories,
    ``ModelSpec``/``ModelBackend``; default: the bundled pool), ``strategy`` and ``tradeoff``.
    ``metadata.context_window`` is the smallest window in the pool. Per-call keyword
    options: ``temperature``, ``max_tokens``, ``top_p``, ``seed``, ``timeout``, ``tradeoff``,
    ``max_latency_s``, ``model`` (pin one model); anything else is refused.
    ``score_tool_calls=True`` scores an answer that calls tools at once (1 if every call is
    valid, else 0).
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
    score_tool_calls: bool = False

    _router: LazyRouter = PrivateAttr(default_factory=LazyRouter)

    def model_post_init(self, context: Any) -> None:
        self._router = LazyRouter(self.router)

    @classmethod
    def class_name(cls) -> str:
        return "GreenServLLM"

    @property
    def metadata(self) -> LLMMetadata:
        router = self.greenserv_router
        windows = [router.backend(name).info.context_window for name in router.models]
        return LLMMetadata(
            context_window=min(windows),
            num_output=self.max_tokens,
            is_chat_model=True,
            is_function_calling_model=any("tools" in router.backend(n).info.capabilities for n in router.models),
            model_name="greenserv[" + ",".join(router.models) + "]",
        )

    # ---- calling the router ---------------------------------------------------------------
    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return generation_options(
            kwargs,
            owner="GreenServLLM",
            temperature=self.temperature,
            top_p=1.0,
            max_tokens=self.max_tokens,
            seed=self.seed,
            max_latency_s=self.max_latency_s,
            timeout=None,
        )

    def _call(self, conversation: list[Message], kwargs: dict[str, Any]) -> tuple[list[Message], dict[str, Any]]:
        kwargs = dict(kwargs)
        choice = kwargs.pop("tool_choice", None)
        if kwargs.pop("tool_required", False) and choice in (None, "auto"):
            choice = "any"
        tools, conversation = apply_tool_choice(kwargs.pop("tools", None) or [], choice, conversation)
        options = self._options(kwargs)
        if tools:
            options.update(tools=tools, score_tool_calls=self.score_tool_calls)
        return conversation, options

    def _run(self, conversation: list[Message], kwargs: dict[str, Any]) -> RoutedGeneration:
        conversation, options = self._call(conversation, kwargs)
        return self.greenserv_router.generate(conversation, **options)

    def _pieces(self, conversation: list[Message], kwargs: dict[str, Any]) -> Iterator[RoutedChunk]:
        conversation, options = self._call(conversation, kwargs)
        pieces = self.greenserv_router.stream(conversation, **options)
        if "tools" not in options:
            return pieces
        return (piece for piece in pieces if piece.generation is not None)  # markup is parsed at the end

    # ---- tools --------------------------------------------------------------------------
    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(
                ChatMessage(role=MessageRole.USER, content=user_msg) if isinstance(user_msg, str) else user_msg
            )
        return {
            "messages": messages,
            "tools": [tool.metadata.to_openai_tool() for tool in tools],
            "tool_required": tool_required,
            **kwargs,
        }

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        calls = response.message.additional_kwargs.get("tool_calls") or []
        if not calls and error_on_no_tool_call:
            refused = response.message.additional_kwargs.get("invalid_tool_calls") or []
            why = "; ".join(c["error"] for c in refused) or "the answer made no tool call"
            raise ValueError(f"expected a tool call: {why}")
        return [ToolSelection(tool_id=c["id"], tool_name=c["name"], tool_kwargs=c["arguments"]) for c in calls]

    # ---- sync ---------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        result = self._run(to_greenserv_messages(messages), kwargs)
        return _chat_response(result.text, None, result)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        result = self._run([{"role": "user", "content": prompt}], kwargs)
        return _completion_response(result.text, None, result)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return _responses(self._pieces(to_greenserv_messages(messages), kwargs), _chat_response)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return _responses(self._pieces([{"role": "user", "content": prompt}], kwargs), _completion_response)

    # ---- async: the model runs in a worker thread, the event loop stays free ----------------
    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        result = await asyncio.to_thread(self._run, to_greenserv_messages(messages), kwargs)
        return _chat_response(result.text, None, result)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        result = await asyncio.to_thread(self._run, [{"role": "user", "content": prompt}], kwargs)
        return _completion_response(result.text, None, result)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        conversation = to_greenserv_messages(messages)
        return _aresponses(iterate_in_thread(lambda: self._pieces(conversation, kwargs)), _chat_response)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        conversation: list[Message] = [{"role": "user", "content": prompt}]
        return _aresponses(iterate_in_thread(lambda: self._pieces(conversation, kwargs)), _completion_response)

    # ---- feedback -----------------------------------------------------------------------
    def feedback(self, target: Any, score: float) -> FeedbackRecord:
        """Score a response (``ChatResponse``/``CompletionResponse``) or a decision id in [0, 1]."""
        return self.greenserv_router.feedback(decision_id_of(target), score)


R = TypeVar("R", ChatResponse, CompletionResponse)


def _chat_response(text: str, delta: str | None, result: RoutedGeneration | None) -> ChatResponse:
    record = result.record() if result is not None else None
    if result is not None and not text:
        text = result.text  # a stream that offered tools held its text back until the calls were parsed
    extra: dict[str, Any] = {}
    if result is not None and (result.tool_calls or result.invalid_tool_calls):
        extra["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in result.tool_calls]
        extra["invalid_tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments, "error": c.error} for c in result.invalid_tool_calls
        ]
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content=text, additional_kwargs=extra),
        delta=delta,
        raw=record,
        additional_kwargs=dict(record or {}),
    )


def _completion_response(text: str, delta: str | None, result: RoutedGeneration | None) -> CompletionResponse:
    record = result.record() if result is not None else None
    return CompletionResponse(text=text, delta=delta, raw=record, additional_kwargs=dict(record or {}))


def _responses(
    pieces: Iterator[RoutedChunk], make: Callable[[str, str | None, RoutedGeneration | None], R]
) -> Generator[R, None, None]:
    """LlamaIndex's streaming convention: cumulative ``text`` plus the new ``delta``; the last
    response (empty delta) carries the routing record."""
    text = ""
    for piece in pieces:
        if piece.generation is not None:
            yield make(text, "", piece.generation)
            return
        text += piece.delta
        yield make(text, piece.delta, None)


async def _aresponses(
    pieces: AsyncIterator[RoutedChunk], make: Callable[[str, str | None, RoutedGeneration | None], R]
) -> AsyncGenerator[R, None]:
    text = ""
    async for piece in pieces:
        if piece.generation is not None:
            yield make(text, "", piece.generation)
            return
        text += piece.delta
        yield make(text, piece.delta, None)
