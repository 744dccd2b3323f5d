"""``ChatGreenServ``: GreenServ's router as a LangChain chat model.

Swap it in for any chat model; each call is routed to one model of the pool, and the answer
says which model it was and what it cost. No routing logic lives here.

>>> from langchain_greenserv import ChatGreenServ          # doctest: +SKIP
>>> llm = ChatGreenServ(tradeoff=0.4)                      # the bundled offline pool
>>> message = llm.invoke("What is the capital of France?")  # doctest: +SKIP
>>> message.response_metadata["model_name"], message.response_metadata["greenserv"]["energy_joules"]  # doctest: +SKIP
('smollm2-135m-instruct', 9.8)
>>> llm.feedback(message, 1.0)                             # doctest: +SKIP

Tools and structured output go to the models of the pool that take tools (the ``tools``
capability: a chat template that renders tools, or ``ModelSpec(capabilities={"tools"})``);
the calls an answer makes are parsed into ``AIMessage.tool_calls``, and calls that do not
parse or fail their tool's schema into ``invalid_tool_calls``, never an exception. (When
streaming, LangChain rebuilds calls from chunks; the refused ones are then listed in
``response_metadata["invalid_tool_calls"]``.)
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    BaseCallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator
from referencing.exceptions import Unresolvable
from typing_extensions import Self

from greenserv_core.adapters import (
    AdapterCore,
    BoundedRecorder,
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
from greenserv_core.async_bridge import iterate_in_thread, run_in_thread
from greenserv_core.bandits import DEFAULT_POLICY
from greenserv_core.errors import DecisionIdInUseError, InvalidInputError
from greenserv_core.router import FeedbackRecord, GreenServRouter, RoutedGeneration
from greenserv_core.tools import as_tool_specs, with_tools_prompt
from langchain_greenserv.messages import to_greenserv_messages

__all__ = ["ChatGreenServ", "decision_id_of", "routed_answers"]


def decision_id_of(target: Any) -> str:
    """The key of an answer: the routing record's decision id of an ``AIMessage``, else the
    run id in a message id (``lc_run--<run id>`` or ``lc_run--<run id>-<index>``), a UUID, or
    a string as given.

    >>> decision_id_of("lc_run--5b4e0f1c-0000-4000-8000-000000000000-0")
    '5b4e0f1c-0000-4000-8000-000000000000'
    >>> decision_id_of(AIMessage("4", response_metadata={"greenserv": {"decision_id": "d-1"}}))
    'd-1'
    """
    if not isinstance(target, BaseMessage):
        return answer_key(target)
    record = target.response_metadata.get("greenserv")
    if decision_id_in(record) is None and not target.id:
        raise InvalidInputError("this message carries no GreenServ routing record and no run id")
    return answer_key(target.id, record=record)


def routed_answers(response: LLMResult) -> Iterator[tuple[ChatGeneration, dict[str, Any]]]:
    """The generations of a LangChain result that carry a GreenServ routing record, each with
    its record (other models in a chain carry none)."""
    for batch in response.generations:
        for generation in batch:
            if isinstance(generation, ChatGeneration):
                record = generation.message.response_metadata.get("greenserv")
                if isinstance(record, dict) and decision_id_in(record) is not None:
                    yield generation, record


class _RunRecorder(BaseCallbackHandler):
    """Remembers which decision answered which run, so that feedback by run id works for
    every call path (``BaseChatModel.stream`` calls ``_stream`` without the run's manager,
    so a stream's decision id is not its run id)."""

    def __init__(self, max_runs: int = 100_000) -> None:
        self.decisions = BoundedRecorder[str](max_runs)

    def on_llm_end(self, response: LLMResult, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        for _, record in routed_answers(response):
            self.decisions.add(str(run_id), str(record["decision_id"]))  # a run id used again names its first

    def resolve(self, key: str) -> str:
        return self.decisions.get(key, key)


def _metadata(result: RoutedGeneration) -> dict[str, Any]:
    return {
        "model_name": result.model,
        "model_provider": "greenserv",
        "finish_reason": result.finish_reason,
        "greenserv": result.record(),
    }


def _tool_calls(result: RoutedGeneration, *, parallel: bool = True) -> dict[str, Any]:
    """``tool_calls`` and ``invalid_tool_calls`` of an ``AIMessage`` from a routed answer; with
    ``parallel=False`` (``parallel_tool_calls=False``) one call at most: the first valid one,
    else the first invalid one."""
    valid, invalid = tool_calls_of(result)
    if not parallel:
        valid, invalid = valid[:1], ([] if valid else invalid[:1])
    return {
        "tool_calls": [tool_call(name=c["name"], args=c["arguments"], id=c["id"]) for c in valid],
        "invalid_tool_calls": [
            invalid_tool_call(name=c["name"], args=c["arguments"], id=c["id"], error=c["error"]) for c in invalid
        ],
    }


def _usage(result: RoutedGeneration) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=result.input_tokens, output_tokens=result.output_tokens, total_tokens=result.total_tokens
    )


def _run_key(run_manager: CallbackManagerForLLMRun | None) -> str | None:
    """The decision id of a call: LangChain's run id, if there is one."""
    return str(run_manager.run_id) if run_manager is not None else None


def _taken(error: DecisionIdInUseError, key: str | None) -> bool:
    """Whether the router refused ``key`` itself as a decision id already in use."""
    return key is not None and error.decision_id == key


_LANGCHAIN_OPTIONS = frozenset({"ls_structured_output_format", "stream", "parallel_tool_calls"})


def _call_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A call's options without LangChain's own: the tracing metadata set by
    ``with_structured_output``, ``stream=`` (the per-call switch between streaming and not,
    which LangChain reads before it calls the model) and ``parallel_tool_calls`` (read here, by
    :func:`_parallel`)."""
    return {key: value for key, value in kwargs.items() if key not in _LANGCHAIN_OPTIONS}


def _parallel(kwargs: dict[str, Any]) -> bool:
    """Whether an answer may make several tool calls (``parallel_tool_calls``, default yes)."""
    parallel = kwargs.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidInputError(f"parallel_tool_calls must be True, False or None, got {parallel!r}")
    return parallel is not False


class ChatGreenServ(AdapterCore, BaseChatModel):
    """Energy-aware routing over a pool of local models, as a LangChain chat model.

    Build it from a ready ``router`` or from simple arguments: ``models`` (bundled model
    names, local model directories, ``ModelSpec`` or ``ModelBackend`` objects; default: the
    bundled offline pool), ``strategy``, ``embedder`` (``"minilm"`` or ``"static"``, the
    features' bundled embedder; default: the router's) and ``tradeoff`` (λ; default: the
    router's own, :data:`~greenserv_core.reward.DEFAULT_TRADEOFF` for the router it builds;
    given beside a ready ``router`` it is every call's λ). ``temperature``, ``top_p``,
    ``max_tokens``, ``stop``, ``timeout`` (seconds per generation) and ``streaming`` behave as
    in other chat models (``max_tokens=None``: 256); ``meter`` (``"auto"``, or a meter's name)
    measures the joules of the models it builds. Per-call options: ``temperature``, ``max_tokens``, ``top_p``,
    ``stop``, ``seed``, ``timeout``, ``tradeoff``, ``max_latency_s``, ``max_joules``, and
    ``model`` (pin this call to one model of the pool, bypassing the choice; its outcome is
    still learned), plus ``tools``, ``tool_choice`` and ``parallel_tool_calls`` (set by
    :meth:`bind_tools`); an option given as ``None`` takes the default; anything else is refused.

    Energy: ``energy_budget`` gives the router it builds a budget, as joules per query
    (``50.0``) or text (``"50J/query"``, ``"2Wh/h"``, ``"500J/30s"``; an ``EnergyBudget`` is
    taken too): the router then sets λ for each query so that it spends up to the budget and
    no more, ``tradeoff`` only starts it, and a call's own ``tradeoff`` overrides it for that
    call. ``max_joules`` caps each call's predicted joules: a model predicted to spend more
    does not answer (one with no prediction yet, neither measured nor given a per-token
    prior, is not excluded). Both are checked when the model is made; a budget beside a
    ready ``router=`` is refused (give it to the router).

    ``response_metadata["greenserv"]["budget"]`` says what the budget did (the λ in force, the
    joules spent, what is left of the window), ``None`` without one.

    Cascades: ``cascades=[("small", "big")]`` lets the router it builds answer with ``small``
    and escalate to ``big`` when it learns that pays. It is transparent: the message is the
    kept answer, ``response_metadata["greenserv"]["chain"]`` lists each model tried, and a
    stream shows only the kept answer (the cheap one is held back until it is accepted).
    ``cascade_signal="self-verification"`` has the cheap model judge its own answer first.

    ``score_tool_calls=True`` scores an answer that calls tools at once (1 if every call is
    valid, else 0), so the user's own feedback is then refused as a second score.

    With a LangChain cache set (``set_llm_cache``), a repeated prompt returns the cached
    message and its routing record: nothing is routed or spent, and the record's decision is
    the first call's, so it takes one score only. ``cache=False`` routes every call.

    ``max_retries`` is accepted (a standard chat-model parameter) but retries nothing here:
    failover is the router's, which routes a query whose model is unavailable
    (``ModelUnavailableError``) to another eligible model; any other error is a bug and
    propagates at once, never tried again on the same model.

    The router's decision is keyed by the LangChain run id, so ``AIMessage.id``
    (``lc_run--<run id>-<index>``) or a run id from ``collect_runs()`` finds it again for
    :meth:`feedback`. Feedback is accepted once per answer; a second score is refused.

    ``get_num_tokens`` and ``get_num_tokens_from_messages`` count as the router does, the largest
    count among the pool's models: a history cut by ``trim_messages(token_counter=llm,
    max_tokens=n)`` is at most ``n`` tokens for each model.

    With an energy budget (the router is built from ``models``):

    >>> from greenserv_core import FakeBackend
    >>> pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("large", joules_per_token=9.0)]
    >>> llm = ChatGreenServ(models=pool, embedder="static", energy_budget="2Wh/h", max_joules=500.0)
    >>> budget = llm.invoke("What is 2 + 2?").response_metadata["greenserv"]["budget"]
    >>> budget["budget"], budget["tradeoff"], budget["window_remaining_joules"]
    ('2 Wh per 1 h', 0.4, 7200.0)
    >>> llm.invoke("What is 2 + 2?", max_joules=100.0).response_metadata["model_name"] in ("small", "large")
    True
    >>> ChatGreenServ(energy_budget="fifty joules")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ChatGreenServ
    energy_budget
      Value error, cannot read the energy budget 'fifty joules': ...
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, extra="forbid")

    router: GreenServRouter | None = Field(default=None, exclude=True)
    models: list[Any] | None = Field(default=None, exclude=True, repr=False)
    strategy: str = DEFAULT_POLICY
    embedder: str | None = None
    tradeoff: Annotated[float | None, BeforeValidator(check_optional_tradeoff)] = None
    meter: str = "auto"
    temperature: Annotated[float, BeforeValidator(check_setting("temperature"))] = 0.0
    top_p: Annotated[float, BeforeValidator(check_setting("top_p"))] = 1.0
    max_tokens: Annotated[int | None, BeforeValidator(check_max_tokens)] = 256
    stop: Annotated[list[str] | None, BeforeValidator(check_stop)] = Field(default=None, alias="stop_sequences")
    timeout: Annotated[float | None, BeforeValidator(check_optional_positive("timeout"))] = None
    max_retries: int | None = Field(default=None, ge=0)
    streaming: bool = False
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
    _recorder: _RunRecorder = PrivateAttr(default_factory=_RunRecorder)

    @model_validator(mode="after")
    def _router_arguments_checked(self) -> Self:
        self.check_router_arguments()
        return self

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        if isinstance(self.callbacks, BaseCallbackManager):  # a copy: the caller's manager is not grown per model
            self.callbacks = self.callbacks.copy()
            self.callbacks.add_handler(self._recorder, inherit=False)
        else:
            self.callbacks = [*(self.callbacks or []), self._recorder]

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A deep copy sharing the router, the model objects and the run ids' record, as a
        shallow copy does (:meth:`AdapterCore.shared_on_copy`)."""
        return super().__deepcopy__(self.shared_on_copy(memo, self._recorder))

    # ---- identity -----------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "greenserv"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        router = self.router  # a ready router's own settings, not this model's unused defaults
        return {
            "pool": self.pool_name,
            "strategy": self.strategy if router is None else getattr(router.policy, "name", str(router.policy)),
            "embedder": self.embedder if router is None else router.features.embedder.name,
            "tradeoff": self.tradeoff_in_force,
            "energy_budget": self.energy_budget,
            "max_joules": self.max_joules,
            "max_latency_s": self.max_latency_s,
            "cascades": self.cascades,
            "cascade_signal": self.cascade_signal,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": self.stop,
            "seed": self.seed,
            "timeout": self.timeout,
            "score_tool_calls": self.score_tool_calls,
        }

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """LangChain's, with this model's own ``stop`` where the call gives none (LangChain put the
        call's, often ``None``, over it: models differing only in their ``stop`` shared a cache key)."""
        return super()._get_invocation_params(stop=self.stop if stop is None else stop, **kwargs)

    def _combine_llm_outputs(self, llm_outputs: list[dict[str, Any] | None]) -> dict[str, Any]:
        """The models that answered a ``generate`` call's conversations, in order (LangChain's
        default combined them into ``{}``)."""
        return {"model_names": [output["model_name"] for output in llm_outputs if output and "model_name" in output]}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="greenserv",
            ls_model_name=kwargs.get("model") or self.pool_name,
            ls_model_type="chat",
            ls_temperature=self.temperature if kwargs.get("temperature") is None else kwargs["temperature"],
        )  # (a call's None is the model's own, as the call takes it)
        params["ls_max_tokens"] = kwargs.get("max_tokens") or self.max_tokens_in_force
        if sequences := check_stop(stop if stop is not None else self.stop):  # a bad stop: as the call refuses it
            params["ls_stop"] = sequences
        return params

    # ---- counting tokens --------------------------------------------------------------------
    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """The messages' length (with ``tools``, their prompt's too) as the router counts it for
        context windows: the largest count among the pool's models, so that a limit kept (as by
        ``trim_messages(token_counter=llm)``) holds for each. Builds the router; with
        ``custom_get_token_ids``, LangChain counts with it instead."""
        if self.custom_get_token_ids is not None:
            return super().get_num_tokens_from_messages(messages, tools)
        specs = as_tool_specs([convert_to_openai_tool(tool) for tool in tools or ()])
        counted = with_tools_prompt(to_greenserv_messages(messages), specs)
        router = self.greenserv_router
        return max((router.backend(name).count_tokens(counted) for name in router.models), default=0)

    def get_num_tokens(self, text: str) -> int:
        """``text`` as one user message, counted as :meth:`get_num_tokens_from_messages` counts it."""
        if self.custom_get_token_ids is not None:
            return super().get_num_tokens(text)
        return self.get_num_tokens_from_messages([HumanMessage(text)])

    # ---- calling the router ---------------------------------------------------------------
    def _decision_key(self, run_manager: CallbackManagerForLLMRun | None) -> str | None:
        """The run id as the decision id, unless the router already holds a decision under it
        (a caller's ``config={"run_id": ...}`` used again): then a fresh one. The run id keeps
        naming its first answer; a later one is scored by its message or its decision id."""
        key = _run_key(run_manager)
        return None if key is not None and self.decided(key) else key

    def _routed(
        self, messages: list[BaseMessage], stop: list[str] | None, key: str | None, kwargs: dict[str, Any]
    ) -> RoutedGeneration:
        """One routed answer under the decision id ``key``, or under a fresh one where a call
        beside it took the same run id first (between :meth:`_decision_key` and the router)."""
        conversation, options = to_greenserv_messages(messages), _call_options(kwargs)
        try:
            return self.routed_generation(conversation, options, stop=stop, decision_id=key)
        except DecisionIdInUseError as error:
            if not _taken(error, key):
                raise
        return self.routed_generation(conversation, options, stop=stop, decision_id=None)

    def _pieces(
        self, messages: list[BaseMessage], stop: list[str] | None, key: str | None, kwargs: dict[str, Any]
    ) -> Iterator[Piece]:
        """A routed stream, routed again under a fresh decision id as :meth:`_routed` is (the
        router routes when the first piece is asked for)."""
        conversation, options = to_greenserv_messages(messages), _call_options(kwargs)
        pieces = self.routed_stream(conversation, options, stop=stop, decision_id=key)
        try:
            first = next(pieces, None)
        except DecisionIdInUseError as error:
            if not _taken(error, key):
                raise
            pieces = self.routed_stream(conversation, options, stop=stop, decision_id=None)
            first = next(pieces, None)
        if first is not None:
            yield first
            yield from pieces

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        parallel = _parallel(kwargs)  # checked before the model runs
        result = self._routed(messages, stop, self._decision_key(run_manager), kwargs)
        message = AIMessage(
            content=result.text,
            usage_metadata=_usage(result),
            response_metadata=_metadata(result),
            **_tool_calls(result, parallel=parallel),
        )
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": result.model})

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        parallel = _parallel(kwargs)
        pieces = self._pieces(messages, stop, self._decision_key(run_manager), kwargs)
        for piece in pieces:  # while tools are offered, the text comes whole in the last piece
            if piece.generation is None:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece.delta))
            else:
                result = piece.generation
                metadata = _metadata(result)
                calls = _tool_calls(result, parallel=parallel)
                if calls["invalid_tool_calls"]:
                    # LangChain rebuilds a stream's calls from its chunks and keeps every call whose
                    # arguments parse, so calls refused here (unknown tool, schema) travel in the metadata
                    metadata["invalid_tool_calls"] = calls["invalid_tool_calls"]
                message = AIMessageChunk(
                    content=piece.delta,
                    usage_metadata=_usage(result),
                    response_metadata=metadata,
                    tool_call_chunks=[
                        tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
                        for i, c in enumerate(calls["tool_calls"])
                    ],
                    chunk_position="last",
                )
                chunk = ChatGenerationChunk(message=message)
            if run_manager:  # every chunk, as stream() sends them: the last carries usage and tool calls
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        sync_manager = _RunIdOnly(run_manager.run_id) if run_manager else None
        # the model runs in a worker thread: the event loop stays free
        return await run_in_thread(lambda: self._generate(messages, stop, sync_manager, **kwargs))  # type: ignore[arg-type]

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """:meth:`_stream` over the async bridge; closing this generator closes the bridge (and so
        the model's stream) before it returns. ``astream`` does not close it when closed itself:
        the event loop's finaliser does, soon after."""
        sync_manager = _RunIdOnly(run_manager.run_id) if run_manager else None
        chunks = iterate_in_thread(lambda: self._stream(messages, stop, sync_manager, **kwargs))  # type: ignore[arg-type]
        async with contextlib.aclosing(chunks) as bridge:
            async for chunk in bridge:
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    # ---- tools ----------------------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer ``tools`` (Pydantic models, functions, LangChain tools or OpenAI tool dicts)
        on every call; only models of the pool that take tools answer. ``tool_choice``:
        ``"auto"`` (default) or ``False``, ``"none"``, ``"any"``/``"required"``/``True``, or a
        tool's name. ``strict`` is taken as ChatOpenAI takes it, and changes nothing: every
        call is checked against its tool's schema anyway, and one that fails it is reported in
        ``invalid_tool_calls``. ``parallel_tool_calls=False`` keeps one call per answer."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        as_tool_specs(formatted)  # refuse a bad schema now, not at the first call
        if strict is not None and not isinstance(strict, bool):
            raise InvalidInputError(f"strict must be True, False or None, got {strict!r}")
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
            _parallel(kwargs)  # refuse a bad value now
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "function_calling",
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Answers as ``schema`` (a Pydantic model, TypedDict or JSON schema).

        ``method="function_calling"`` (default) asks for one forced tool call, which models
        with the ``tools`` capability serve. ``"json_mode"`` and ``"json_schema"`` ask for a
        JSON answer constrained to the schema, which models with the ``json_mode``
        capability serve (remote servers with guided decoding). An answer the schema
        rejects raises ``OutputParserException`` saying why (with ``include_raw=True`` it is
        returned as ``parsing_error`` instead). With ``method="json_mode"`` the ``schema`` may
        be left out: the answer is any JSON object, returned as a dict. With
        ``method="json_schema"`` the schema goes as OpenAI's ``json_schema`` object, named by its
        title, with ``strict`` (``True`` asks a server that enforces schemas to do so)."""
        strict = kwargs.pop("strict", None)
        if strict is not None and not isinstance(strict, bool):
            raise InvalidInputError(f"strict must be True, False or None, got {strict!r}")
        if kwargs:
            raise InvalidInputError(f"with_structured_output does not take {sorted(kwargs)}")
        if method not in ("function_calling", "json_mode", "json_schema"):
            raise InvalidInputError(f"method must be function_calling, json_mode or json_schema, got {method!r}")
        if schema is None and method != "json_mode":
            raise InvalidInputError(
                f"with_structured_output needs a schema for method={method!r}; only json_mode takes none"
            )
        traced = {"kwargs": {"method": method}, "schema": schema}
        pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        llm: Runnable[LanguageModelInput, AIMessage]
        if schema is None:
            llm = self.bind(response_format="json", ls_structured_output_format=traced)
            parse = _json_parser(None, {"title": "a JSON object"}, False)
        elif method == "function_calling":
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name, ls_structured_output_format=traced)
            parse = _tool_call_parser(schema, name, pydantic)
        else:
            json_schema = _as_json_schema(schema)
            response_format: dict[str, Any] = json_schema
            if method == "json_schema":  # OpenAI's object: the schema's name and strict go with it
                title = str(json_schema.get("title", ""))
                name = title if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", title) else "answer"
                response_format = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": json_schema, "strict": strict},
                }
            llm = self.bind(response_format=response_format, ls_structured_output_format=traced)
            parse = _json_parser(schema, json_schema, pydantic)
        if not include_raw:
            return llm | RunnableLambda(parse)

        def with_raw(raw: AIMessage) -> dict[str, Any]:  # one step, so a stream ends with it too
            try:
                return {"raw": raw, "parsed": parse(raw), "parsing_error": None}
            except OutputParserException as error:
                return {"raw": raw, "parsed": None, "parsing_error": error}

        async def awith_raw(raw: AIMessage) -> dict[str, Any]:
            return with_raw(raw)

        return llm | RunnableLambda(with_raw, afunc=awith_raw)

    # ---- feedback -----------------------------------------------------------------------
    def feedback(self, target: Any, score: float) -> FeedbackRecord:
        """Send a score in [0, 1] for an answer: its ``AIMessage``, message id, or run id.

        Raises ``UnknownDecisionError`` (a ``KeyError``) for an unknown or expired run and
        ``DecisionAlreadyScoredError`` for a second score.
        """
        if isinstance(target, BaseMessage) and decision_id_in(target.response_metadata.get("greenserv")) is not None:
            return self.routed_feedback(decision_id_of(target), score)  # its own record names its decision
        return self.routed_feedback(self._recorder.resolve(decision_id_of(target)), score)


def _as_json_schema(schema: Any) -> dict[str, Any]:
    """A JSON schema given as such (titled or not) is used as it is; Pydantic models,
    TypedDicts and OpenAI function dicts are converted by langchain-core."""
    if isinstance(schema, dict) and "type" in schema and "parameters" not in schema and "function" not in schema:
        return schema
    converted: dict[str, Any] = convert_to_json_schema(schema)
    return converted


def _validated(schema: Any, arguments: dict[str, Any], name: str) -> BaseModel:
    validate = getattr(schema, "model_validate", None) or schema.parse_obj
    try:
        validated: BaseModel = validate(arguments)
    except ValueError as error:
        raise OutputParserException(f"the answer does not fit {name}: {error}") from error
    return validated


def _tool_call_parser(schema: Any, name: str, pydantic: bool) -> Callable[[AIMessage], dict[str, Any] | BaseModel]:
    """Structured output from the forced tool call ``name``."""

    def parse(message: AIMessage) -> dict[str, Any] | BaseModel:
        for call in message.tool_calls:
            if call["name"] == name:
                return _validated(schema, call["args"], name) if pydantic else call["args"]
        # a streamed answer carries its refused calls in the metadata (see the module)
        refused = message.invalid_tool_calls or message.response_metadata.get("invalid_tool_calls", [])
        refused = [{**call, "arguments": call.get("arguments", call.get("args"))} for call in refused]
        if pydantic:  # arguments the schema refused ("yes" for a boolean) may fit the model, as in json_schema mode
            for near in schema_refused(refused, name):
                try:
                    return _validated(schema, near["arguments"], name)
                except OutputParserException:
                    continue
        why = why_no_tool_call(refused)
        text = message.text
        raise OutputParserException(f"the model gave no valid {name} answer ({why})", llm_output=text)

    return parse


def _json_parser(
    schema: Any, json_schema: dict[str, Any], pydantic: bool
) -> Callable[[AIMessage], dict[str, Any] | BaseModel]:
    """Structured output from an answer that is one JSON object (JSON mode)."""
    name = str(json_schema.get("title", "the schema"))

    def parse(message: AIMessage) -> dict[str, Any] | BaseModel:
        text = message.text  # the text blocks of a list content (output_version="v1"), or the string
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as error:  # (a decode error; a 5,000-digit number; deep nesting)
            why = "it nests too deeply" if isinstance(error, RecursionError) else str(error)
            raise OutputParserException(f"the answer is not JSON that can be read: {why}", llm_output=text) from error
        if not isinstance(value, dict):
            raise OutputParserException(f"the answer is JSON but not an object: {text[:200]}", llm_output=text)
        if pydantic:
            return _validated(schema, value, name)
        try:
            errors = sorted(Draft202012Validator(json_schema).iter_errors(value), key=lambda e: list(e.path))
        except (RecursionError, ValueError, OverflowError, Unresolvable) as error:
            raise OutputParserException(
                f"the answer cannot be checked against {name}: {error}", llm_output=text
            ) from error
        if errors:
            raise OutputParserException(f"the answer does not fit {name}: {errors[0].message}", llm_output=text)
        return value

    return parse


class _RunIdOnly:
    """Carries the run id into the worker thread; token callbacks are sent by the async side."""

    def __init__(self, run_id: uuid.UUID) -> None:
        self.run_id = run_id

    def on_llm_new_token(self, *args: Any, **kwargs: Any) -> None:
        return None
