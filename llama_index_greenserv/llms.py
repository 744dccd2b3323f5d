"""``GreenServLLM``: GreenServ's router as a LlamaIndex ``LLM``.

Set ``Settings.llm = GreenServLLM()`` and query engines, chat engines and agents route every
call. Each response's ``raw`` and ``additional_kwargs`` carry the routing record (decision id,
model, tokens, latency, joules and their source, features, λ, and what an energy budget did),
with the tokens also as ``"usage"`` (``prompt_tokens``, ``completion_tokens``, ``total_tokens``)
for LlamaIndex's ``TokenCountingHandler``, and why the answer ended as ``"finish_reason"``
(``"stop"``, or ``"length"`` where ``max_tokens`` or a time limit cut it).

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
import contextlib
import functools
import json
import logging
import pickle
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Mapping, Sequence
from typing import Annotated, Any, TypeVar

from llama_index.core.base.llms.types import (
    CachePoint,
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import BaseTool, ToolSelection
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from typing_extensions import Self

from greenserv_core.adapters import (
    AdapterCore,
    LazyRouter,
    Piece,
    check_cascade_signal,
    check_energy_budget,
    check_max_joules,
    check_max_latency,
    check_max_tokens,
    check_optional_positive,
    check_optional_tradeoff,
    check_setting,
    check_stop,
    decision_id_in,
    schema_refused,
    tool_calls_of,
    why_no_tool_call,
)
from greenserv_core.adapters import decision_id_of as answer_key
from greenserv_core.async_bridge import ThreadBridge, iterate_in_thread, run_in_thread
from greenserv_core.backends.base import ModelBackend
from greenserv_core.bandits import DEFAULT_POLICY
from greenserv_core.errors import InvalidInputError
from greenserv_core.log_once import warn_once
from greenserv_core.messages import Message
from greenserv_core.router import FeedbackRecord, GreenServRouter, RoutedGeneration
from greenserv_core.tools import in_call_order, message_with_tool_calls, tool_result_turn

__all__ = ["GreenServLLM", "decision_id_of"]

logger = logging.getLogger("greenserv.llama_index")

_ROLES = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",  # OpenAI's system role for reasoning models
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.TOOL: "tool",
}


def decision_id_of(target: Any) -> str:
    """The decision id of a ``ChatResponse`` / ``CompletionResponse``, of an agent's output
    (its ``raw`` is the routing record), of the routing record itself, or the id itself.

    >>> decision_id_of(CompletionResponse(text="4", additional_kwargs={"decision_id": "d-1"}))
    'd-1'
    >>> decision_id_of({"decision_id": "d-2", "model": "small"})
    'd-2'
    """
    for record in (getattr(target, "additional_kwargs", None), getattr(target, "raw", None), target):
        if isinstance(record, Mapping) and decision_id_in(record) is not None:
            return answer_key(target, record=record)
    return answer_key(target)


_TEXT_BLOCKS = (TextBlock, ToolCallBlock, ThinkingBlock, CachePoint)
"""The blocks a message may hold: its text, its tool calls (rendered from the blocks), a
model's reasoning (left out, as a chat template does) and prompt-caching markers (no content)."""


def to_greenserv_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    """System, user, assistant and tool messages. An assistant turn's tool calls follow its text
    as Hermes ``<tool_call>`` blocks; a tool result is wrapped in ``<tool_response>``. An image,
    audio, video or document block raises :class:`InvalidInputError` (it would be lost).

    >>> to_greenserv_messages([ChatMessage(role="tool", content="42")])[0]["content"]
    '<tool_response>\\n42\\n</tool_response>'
    """
    out: list[Message] = []
    ids: list[list[str] | str | None] = []
    for index, message in enumerate(messages):
        if not isinstance(message, ChatMessage):
            raise InvalidInputError(
                f"messages[{index}] is a {type(message).__name__}: give LlamaIndex ChatMessage objects "
                '(ChatMessage(role="user", content=...))'
            )
        role = _ROLES.get(message.role)
        if role is None:
            raise InvalidInputError(
                f"messages[{index}] has role {message.role.value!r}; GreenServ takes system, user, assistant "
                "and tool messages"
            )
        other = [type(b).__name__ for b in message.blocks if not isinstance(b, _TEXT_BLOCKS)]
        if other:  # LlamaIndex's .content keeps only the text: an image or a document would be lost unsaid
            raise InvalidInputError(
                f"messages[{index}] has a {other[0]}; GreenServ's local models take text only (text, "
                "tool-call and thinking blocks)"
            )
        content = message.content or ""
        if role == "tool":
            content = tool_result_turn(content)
        content = message_with_tool_calls(index, content, _history_calls(message, index))
        out.append({"role": role, "content": content})
        ids.append(_call_ids(message) if role == "assistant" else _answered_id(message) if role == "tool" else None)
    return in_call_order(out, ids)  # results in the order of the calls they answer


def _call_ids(message: ChatMessage) -> list[str]:
    """The ids of an assistant turn's tool calls, in order, those it made refused last (empty
    where they have none)."""
    calls = message.additional_kwargs.get("tool_calls") or []
    if calls:
        found = [c.get("id") if isinstance(c, dict) else getattr(c, "id", None) for c in calls]
    else:
        found = [b.tool_call_id for b in message.blocks if isinstance(b, ToolCallBlock)]
    found += [c.get("id") for c in _refused(message)]
    return [str(i) for i in found if i is not None]


def _refused(message: ChatMessage) -> list[dict[str, Any]]:
    """The calls GreenServ refused in an answer of its own (``additional_kwargs
    ["invalid_tool_calls"]``: ``{"id", "name", "arguments", "error"}``)."""
    calls = message.additional_kwargs.get("tool_calls") or []
    taken = {c.get("id") if isinstance(c, dict) else getattr(c, "id", None) for c in calls}
    refused = message.additional_kwargs.get("invalid_tool_calls") or []
    return [c for c in refused if isinstance(c, dict) and c.get("id") not in taken]  # (one read anyway is a call)


def _answered_id(message: ChatMessage) -> str | None:
    """The id of the call a tool turn answers (LlamaIndex keeps it in ``additional_kwargs``)."""
    given = message.additional_kwargs.get("tool_call_id")
    return None if given is None else str(given)


def _history_calls(message: ChatMessage, index: int) -> list[tuple[str | None, Any]]:
    """The tool calls an assistant turn made: GreenServ's own ``{"name", "arguments"}``,
    Anthropic's ``{"name", "input"}``, OpenAI's ``{"function": {"name", "arguments": JSON}}`` in
    ``additional_kwargs["tool_calls"]``, or
    ``ToolCallBlock`` s among its blocks; anything else raises :class:`InvalidInputError`. The
    calls GreenServ refused in its own answer follow, as the model wrote them."""
    calls = message.additional_kwargs.get("tool_calls") or []
    found: list[tuple[str, Any]] = []
    for given in calls:
        dump = getattr(given, "model_dump", None)  # e.g. an OpenAI SDK object
        call = dump() if callable(dump) and not isinstance(given, dict) else given
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(call, dict) and "name" in call:
            found.append((call["name"], call.get("arguments", call.get("input", {}))))  # Anthropic's: "input"
        elif isinstance(function, dict) and "name" in function:
            found.append((function["name"], function.get("arguments", {})))
        else:
            raise InvalidInputError(f"messages[{index}] has a tool call GreenServ cannot read: {call!r}")
    if not calls:
        found = [(b.tool_name, b.tool_kwargs) for b in message.blocks if isinstance(b, ToolCallBlock)]
    read: list[tuple[str, dict[str, Any]]] = []
    for name, arguments in found:
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except (ValueError, RecursionError) as error:  # (a decode error; a 5,000-digit number; deep nesting)
                raise InvalidInputError(
                    f"messages[{index}]: the arguments of {name!r} are not JSON that can be read: {error!r}"
                ) from error
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise InvalidInputError(f"messages[{index}] has a tool call GreenServ cannot read: {(name, arguments)!r}")
        read.append((name, arguments))
    return read + [(c.get("name"), c.get("arguments")) for c in _refused(message)]  # refused: as the model wrote them


_SHAPING = "greenserv_tool_shaping"
"""The keyword under which :meth:`GreenServLLM._prepare_chat_with_tools` passes how to shape
the tool calls of the answer (taken out before the router sees the options)."""


class _ToolShaping(BaseModel):
    """How the tool calls of an answer to ``chat_with_tools`` and its stream forms are shaped
    (LlamaIndex validates only the answers of ``chat_with_tools``): with ``single``, the first
    call only; with no valid call, the calls refused only by a tool's JSON schema that its
    pydantic ``fn_schema`` accepts (``"yes"`` for a boolean), as that model reads them.
    LlamaIndex's instrumentation copies a call's options into its events: ``single`` is
    serialised there, the schemas (classes) are not."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    single: bool = False
    schemas: dict[str, Any] = Field(default_factory=dict, exclude=True)

    def shaped(self, calls: list[Any], refused: list[Any]) -> list[Any]:
        if not calls:
            for near in schema_refused(refused):
                schema = self.schemas.get(near["name"])
                if schema is None:
                    continue
                try:
                    arguments = schema.model_validate(near["arguments"]).model_dump(mode="json")
                except Exception:  # not even pydantic reads it: it stays refused
                    continue
                calls = [*calls, {**near, "arguments": arguments}]
        return calls[:1] if self.single else calls


def _call_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A call's options, with LlamaIndex's ``tool_required`` as a ``tool_choice`` (and the
    tool calls' shaping taken out)."""
    options = dict(kwargs)
    options.pop(_SHAPING, None)
    if options.pop("tool_required", False) and options.get("tool_choice") in (None, "auto"):
        options["tool_choice"] = "any"
    return options


_POOL_LEFT_OUT = "pool_left_out"
"""The key under which :meth:`GreenServLLM.to_dict` says which pool it could not write."""


def _without_tools(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A completion's options: it has no tools (a completion's answer has no tool calls, so
    the calls a model made would be lost), :class:`InvalidInputError` otherwise."""
    offered = {  # ("none", "auto", [] and False offer nothing)
        "tools": bool(kwargs.get("tools")),
        "tool_choice": kwargs.get("tool_choice") not in (None, False, "none", "auto"),
        "tool_required": bool(kwargs.get("tool_required")),
    }
    given = [key for key, said in offered.items() if said]
    if given:
        raise InvalidInputError(
            f"a completion takes no tools (got {', '.join(given)}): its answer cannot carry tool calls; "
            "offer tools with chat_with_tools or predict_and_call"
        )
    return kwargs


def _shaping(kwargs: dict[str, Any]) -> _ToolShaping | None:
    shaping = kwargs.get(_SHAPING)
    return shaping if isinstance(shaping, _ToolShaping) else None


class GreenServLLM(AdapterCore, FunctionCallingLLM):
    """Energy-aware routing over a pool of local models, as a LlamaIndex LLM.

    Build from a ready ``router`` or from ``models`` (bundled names, model directories,
    ``ModelSpec``/``ModelBackend``; default: the bundled pool), ``strategy``, ``embedder``
    (``"minilm"`` or ``"static"``, the features' bundled embedder; default: the router's) and
    ``tradeoff`` (λ; default: the router's own, :data:`~greenserv_core.reward.DEFAULT_TRADEOFF`
    for the router it builds; given beside a ready ``router`` it is every call's λ). ``temperature``,
    ``max_tokens``, ``top_p``, ``stop``, ``timeout`` (seconds per generation), ``seed``,
    ``max_latency_s`` and ``max_joules`` are the defaults of every call; ``meter`` (``"auto"``,
    or a meter's name) measures the joules of the models it builds. ``metadata.context_window``
    is the smallest window in the pool.
    Per-call keyword options (of ``chat``, ``complete``, their streaming and async forms):
    ``temperature``, ``max_tokens``, ``top_p``, ``stop``, ``seed``, ``timeout``, ``tradeoff``,
    ``max_latency_s``, ``max_joules``, ``model`` (pin one model); anything else is refused.
    ``score_tool_calls=True`` scores an answer that calls tools at once (1 if every call is
    valid, else 0). A model that is unavailable is routed around by the router.

    Energy: ``energy_budget`` gives the router it builds a budget, as joules per query
    (``50.0``) or text (``"50J/query"``, ``"2Wh/h"``, ``"500J/30s"``; an ``EnergyBudget`` is
    taken too): the router then sets λ for each query to spend up to the budget and no more
    (``tradeoff`` only starts it; a call's own ``tradeoff`` overrides it for that call).
    ``max_joules`` caps each call's predicted joules (a model with no prediction yet,
    neither measured nor given a per-token prior, is not excluded). Both are checked when
    the LLM is made; a budget beside a ready ``router=`` is refused (give it to the router).
    ``cascades=[("small", "big")]``: the router it builds may also answer with ``small`` and
    escalate to ``big`` when it learns that pays; the record's ``"chain"`` lists each model
    tried, and a stream shows only the kept answer. ``cascade_signal="self-verification"`` has
    the cheap model judge its own answer first.
    The record's ``"budget"`` says what the budget did (the λ in force, the joules spent,
    what is left of the window), ``None`` without one.

    >>> from greenserv_core import FakeBackend, GreenServRouter
    >>> from greenserv_core.features import FeatureExtractor, HashingEmbedder, TaskClassifier
    >>> embedder = HashingEmbedder(16)
    >>> clf = TaskClassifier().fit(embedder.embed(["2+2?", "hi"]), ["math", "chat"], embedder.name)
    >>> router = GreenServRouter([FakeBackend("tiny")], features=FeatureExtractor(embedder, clf), seed=0)
    >>> llm = GreenServLLM(router=router, stop=["!"])
    >>> llm.complete("one two! three").text, llm.complete("one two! three", stop=["two"]).text
    ('tiny: one two', 'tiny: one ')

    With an energy budget (the router is built from ``models``):

    >>> pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("large", joules_per_token=9.0)]
    >>> llm = GreenServLLM(models=pool, embedder="static", energy_budget=50.0, max_joules=500.0)
    >>> budget = llm.complete("What is 2 + 2?").raw["budget"]
    >>> budget["budget"], budget["tradeoff"], budget["per_query_joules"]
    ('50 J per query', 0.4, 50.0)
    >>> llm.complete("2 + 2?", max_joules=100.0).additional_kwargs["model"] in ("small", "large")
    True
    >>> GreenServLLM(max_joules=-1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for GreenServLLM
    max_joules
      Value error, max_joules must be a positive finite number, got -1 ...
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    router: GreenServRouter | None = Field(default=None, exclude=True)
    models: list[Any] | None = Field(default=None, exclude=True, repr=False)
    strategy: str = DEFAULT_POLICY
    embedder: str | None = None
    tradeoff: Annotated[float | None, BeforeValidator(check_optional_tradeoff)] = None
    meter: str = "auto"
    temperature: Annotated[float, BeforeValidator(check_setting("temperature"))] = 0.0
    top_p: Annotated[float, BeforeValidator(check_setting("top_p"))] = 1.0
    max_tokens: Annotated[int | None, BeforeValidator(check_max_tokens)] = 256  # None: the default, 256
    stop: Annotated[list[str] | None, BeforeValidator(check_stop)] = None
    timeout: Annotated[float | None, BeforeValidator(check_optional_positive("timeout"))] = None
    seed: Annotated[int | None, BeforeValidator(check_setting("seed"))] = None
    max_latency_s: Annotated[float | None, BeforeValidator(check_max_latency)] = None
    energy_budget: Annotated[float | str | None, BeforeValidator(check_energy_budget)] = None
    max_joules: Annotated[float | None, BeforeValidator(check_max_joules)] = None
    cascades: list[tuple[str, str]] | None = None
    cascade_signal: Annotated[str | None, BeforeValidator(check_cascade_signal)] = None
    score_tool_calls: bool = False

    built_routers: LazyRouter = Field(
        default_factory=LazyRouter,
        exclude=True,
        repr=False,
        description="The routers built from models=, shared with this model's copies; not a setting.",
    )

    @model_validator(mode="after")
    def _router_arguments_checked(self) -> Self:
        self.check_router_arguments()
        return self

    @classmethod
    def class_name(cls) -> str:
        return "GreenServLLM"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings, ``models`` as given, without the routers built (a copy builds
        its own), and leave this LLM as it is (LlamaIndex's own pruning deletes what cannot be
        pickled from the live object). A ready ``router`` or backend objects in ``models``
        raise ``TypeError``: an unpickled copy would route over another pool."""
        if self.router is not None or any(isinstance(m, ModelBackend) for m in self.models or ()):
            raise TypeError(
                "a GreenServLLM holding a router or model backends cannot be pickled; "
                "give models= as names, addresses or ModelSpecs to pickle it"
            )
        state = BaseModel.__getstate__(self)
        fields = {key: value for key, value in state["__dict__"].items() if key != "built_routers"}
        for key in [key for key, value in fields.items() if not _picklable(value)]:
            logger.warning("Removing unpickleable attribute %s", key)  # as LlamaIndex does, from the copy only
            del fields[key]
        return {**state, "__dict__": fields}

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A deep copy sharing the router and the model objects, as a shallow copy does
        (:meth:`AdapterCore.shared_on_copy`)."""
        return super().__deepcopy__(self.shared_on_copy(memo))

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        """LlamaIndex's serialisation, with ``models`` when they are names or addresses, so that
        ``from_dict`` builds the same pool. A ready ``router``, backend objects and
        ``ModelSpec`` s cannot be written: the data then say so (under ``"pool_left_out"``), and
        ``from_dict`` refuses them unless given ``router=`` or ``models=`` again (it built the
        bundled pool instead, without a word)."""
        data = super().to_dict(**kwargs)
        if self.router is not None:
            data[_POOL_LEFT_OUT] = f"a ready router over {self.pool_name}"
        elif self.models is not None and all(isinstance(m, str) for m in self.models):
            data["models"] = list(self.models)
        elif self.models is not None:
            data[_POOL_LEFT_OUT] = f"models given as objects ({self.pool_name})"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> Self:
        """LlamaIndex's, refusing data whose pool :meth:`to_dict` could not write unless
        ``router=`` or ``models=`` is given again (:class:`InvalidInputError`)."""
        data = dict(data)
        left_out = data.pop(_POOL_LEFT_OUT, None)
        if left_out is not None and kwargs.get("router") is None and kwargs.get("models") is None:
            raise InvalidInputError(
                f"this GreenServLLM was written without its pool ({left_out}), which JSON cannot hold: "
                "give it again, from_dict(data, router=...) or from_dict(data, models=[...])"
            )
        return super().from_dict(data, **kwargs)

    def to_payload(self) -> dict[str, Any]:
        """What callbacks and instrumentation see of this model, read before every call, on
        the event loop for async calls: the full metadata once the router is built, else the
        configuration alone (building the router there would block the loop)."""
        if self._built_router is not None:
            return super().to_payload()
        return {
            "class_name": self.class_name(),
            "model_name": self.pool_name,
            "num_output": self.max_tokens_in_force,
            "is_chat_model": True,
        }

    async def _router_built(self) -> None:
        """Build the router in a worker thread, not on the event loop (its first use loads models)."""
        if self._built_router is None:
            await asyncio.to_thread(lambda: self.greenserv_router)

    async def awarm(self) -> Self:
        """Build the router now, in a worker thread (its first use loads the models), and
        return this LLM. Await it before an agent runs: LlamaIndex's agents read ``metadata``
        on the event loop, which would build the router there and block the loop meanwhile.

        >>> import asyncio
        >>> from greenserv_core import FakeBackend
        >>> llm = asyncio.run(GreenServLLM(models=[FakeBackend("small")], embedder="static").awarm())
        >>> llm.metadata.model_name
        'greenserv[small]'
        """
        await self._router_built()
        return self

    @property
    def metadata(self) -> LLMMetadata:
        if self._built_router is None and _on_event_loop():
            warn_once(
                logger,
                "GreenServLLM builds its router (loading its models) on the event loop, which waits meanwhile: "
                "await llm.awarm() before handing it to an agent",
            )
        router = self.greenserv_router
        windows = [router.backend(name).info.context_window for name in router.models]
        return LLMMetadata(
            context_window=min(windows),
            num_output=self.max_tokens_in_force,
            is_chat_model=True,
            is_function_calling_model=any("tools" in router.backend(n).info.capabilities for n in router.models),
            model_name=self.pool_name,
        )

    # ---- calling the router ---------------------------------------------------------------
    def _run(self, conversation: list[Message], kwargs: dict[str, Any]) -> RoutedGeneration:
        return self.routed_generation(conversation, _call_options(kwargs))

    def _pieces(self, conversation: list[Message], kwargs: dict[str, Any]) -> Iterator[Piece]:
        return self.routed_stream(conversation, _call_options(kwargs))

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
        schemas = {tool.metadata.get_name(): tool.metadata.fn_schema for tool in tools if tool.metadata.fn_schema}
        return {
            "messages": messages,
            # OpenAI's limit of 1024 characters on a description means nothing to local models
            "tools": [tool.metadata.to_openai_tool(skip_length_check=True) for tool in tools],
            "tool_required": tool_required,
            _SHAPING: _ToolShaping(single=not allow_parallel_tool_calls, schemas=schemas),
            **kwargs,
        }

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep the first tool call only, unless parallel calls are allowed (as LlamaIndex's
        OpenAI integration does: ``predict_and_call`` expects one)."""
        calls = response.message.additional_kwargs.get("tool_calls") or []
        if not allow_parallel_tool_calls and len(calls) > 1:
            response.message.additional_kwargs["tool_calls"] = calls[:1]
        return response

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        calls = response.message.additional_kwargs.get("tool_calls") or []
        refused = response.message.additional_kwargs.get("invalid_tool_calls") or []
        if not calls and error_on_no_tool_call:
            raise ValueError(f"expected a tool call: {why_no_tool_call(refused)}")
        return [ToolSelection(tool_id=c["id"], tool_name=c["name"], tool_kwargs=c["arguments"]) for c in calls]

    # ---- sync ---------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        result = self._run(to_greenserv_messages(messages), kwargs)
        return _chat_response(result.text, None, result, shaping=_shaping(kwargs))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        result = self._run([{"role": "user", "content": prompt}], _without_tools(kwargs))
        return _completion_response(result.text, None, result)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        make = functools.partial(_chat_response, shaping=_shaping(kwargs))
        return _responses(self._pieces(to_greenserv_messages(messages), kwargs), make)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        pieces = self._pieces([{"role": "user", "content": prompt}], _without_tools(kwargs))
        return _responses(pieces, _completion_response)

    # ---- async: the model runs in a worker thread, the event loop stays free ----------------
    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        result = await run_in_thread(lambda: self._run(to_greenserv_messages(messages), kwargs))
        return _chat_response(result.text, None, result, shaping=_shaping(kwargs))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        options = _without_tools(kwargs)  # (refused here, not in the worker thread)
        result = await run_in_thread(lambda: self._run([{"role": "user", "content": prompt}], options))
        return _completion_response(result.text, None, result)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        conversation, arguments = self.router_arguments(to_greenserv_messages(messages), _call_options(kwargs))
        await self._router_built()  # after the options are checked, as the sync forms do
        make = functools.partial(_chat_response, shaping=_shaping(kwargs))
        return _aresponses(iterate_in_thread(lambda: self.stream_prepared(conversation, arguments)), make)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        options = _call_options(_without_tools(kwargs))
        conversation, arguments = self.router_arguments([{"role": "user", "content": prompt}], options)
        await self._router_built()
        pieces = iterate_in_thread(lambda: self.stream_prepared(conversation, arguments))
        return _aresponses(pieces, _completion_response)

    # LlamaIndex's own async entry points read ``metadata`` on the event loop before they call
    # the methods above, and the metadata needs the router: build it in a worker thread first
    async def apredict(self, *args: Any, **kwargs: Any) -> Any:
        await self._router_built()
        return await super().apredict(*args, **kwargs)

    async def astream(self, *args: Any, **kwargs: Any) -> Any:
        await self._router_built()
        return await super().astream(*args, **kwargs)

    async def astructured_predict(self, *args: Any, **kwargs: Any) -> Any:
        await self._router_built()
        return await super().astructured_predict(*args, **kwargs)

    async def astream_structured_predict(self, *args: Any, **kwargs: Any) -> Any:
        await self._router_built()
        return await super().astream_structured_predict(*args, **kwargs)

    async def apredict_and_call(self, *args: Any, **kwargs: Any) -> Any:
        await self._router_built()
        return await super().apredict_and_call(*args, **kwargs)

    async def achat_with_tools(self, *args: Any, **kwargs: Any) -> Any:
        await self._router_built()
        return await super().achat_with_tools(*args, **kwargs)

    async def astream_chat_with_tools(self, *args: Any, **kwargs: Any) -> Any:
        await self._router_built()
        return await super().astream_chat_with_tools(*args, **kwargs)

    # ---- feedback -----------------------------------------------------------------------
    def feedback(self, target: Any, score: float) -> FeedbackRecord:
        """Score a response (``ChatResponse``/``CompletionResponse``), an agent's output (a
        ``FunctionAgent``'s ``AgentOutput``), a routing record (a response's ``raw``) or a
        decision id in [0, 1]."""
        return self.routed_feedback(decision_id_of(target), score)


def _on_event_loop() -> bool:
    """Whether this thread runs an event loop now."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


R = TypeVar("R", ChatResponse, CompletionResponse)


def _chat_response(
    text: str, delta: str | None, result: RoutedGeneration | None, *, shaping: _ToolShaping | None = None
) -> ChatResponse:
    record = _record(result)
    extra: dict[str, Any] = {}
    if result is not None and (result.tool_calls or result.invalid_tool_calls):
        extra["tool_calls"], extra["invalid_tool_calls"] = tool_calls_of(result)
        if shaping is not None:
            extra["tool_calls"] = shaping.shaped(list(extra["tool_calls"]), list(extra["invalid_tool_calls"]))
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content=text, additional_kwargs=extra),
        delta=delta,
        raw=record,
        additional_kwargs=dict(record or {}),
    )


def _record(result: RoutedGeneration | None) -> dict[str, Any] | None:
    """The routing record, with the token counts also under ``"usage"`` in OpenAI's names,
    where LlamaIndex's ``TokenCountingHandler`` reads them, and the answer's ``"finish_reason"``
    (as LangChain's ``response_metadata`` has it)."""
    if result is None:
        return None
    usage = {
        "prompt_tokens": result.input_tokens,
        "completion_tokens": result.output_tokens,
        "total_tokens": result.input_tokens + result.output_tokens,
    }
    return {**result.record(), "finish_reason": result.finish_reason, "usage": usage}


def _completion_response(text: str, delta: str | None, result: RoutedGeneration | None) -> CompletionResponse:
    record = _record(result)
    return CompletionResponse(text=text, delta=delta, raw=record, additional_kwargs=dict(record or {}))


def _responses(
    pieces: Iterator[Piece], make: Callable[[str, str | None, RoutedGeneration | None], R]
) -> Generator[R, None, None]:
    """LlamaIndex's streaming convention: cumulative ``text`` plus the new ``delta``; the last
    response carries the routing record (and, if tools were offered, the whole text)."""
    text = ""
    for piece in pieces:
        text += piece.delta
        yield make(text, piece.delta, piece.generation)


async def _aresponses(
    pieces: ThreadBridge[Piece], make: Callable[[str, str | None, RoutedGeneration | None], R]
) -> AsyncGenerator[R, None]:
    """:func:`_responses` over the async bridge; closing this generator closes the bridge (and
    so the model's stream) before it returns. LlamaIndex's callback wrapper does not close it
    when closed itself: the event loop's finaliser does, soon after."""
    text = ""
    async with contextlib.aclosing(pieces) as bridge:
        async for piece in bridge:
            text += piece.delta
            yield make(text, piece.delta, piece.generation)
