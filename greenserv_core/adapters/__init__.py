"""The one core of the framework adapters (``langchain_greenserv``, ``llama_index_greenserv``).

Everything the adapters do that is not about their framework's objects lives here, one
module per job, and imports nothing from LangChain or LlamaIndex:

* :mod:`~greenserv_core.adapters.calls`: calling the router (the :class:`AdapterCore` mixin:
  the router built lazily from simple arguments, per-call options, ``tool_choice``, feedback);
* :mod:`~greenserv_core.adapters.answers`: what comes back (tool calls as plain data, a
  stream's text held back while tools are offered, the decision id of an answer);
* :mod:`~greenserv_core.adapters.feedback`: the callback handlers' bounded record of seen
  answers and their evaluator call;
* :mod:`~greenserv_core.adapters.embeddings`: the embedder behind the retrieval embeddings.

The default λ is :data:`greenserv_core.reward.DEFAULT_TRADEOFF`, checked by
:func:`greenserv_core.reward.check_tradeoff`, as in the router.
"""

from greenserv_core.adapters.answers import (
    InvalidToolCallData,
    Piece,
    ToolCallData,
    answer_pieces,
    decision_id_in,
    decision_id_of,
    schema_refused,
    tool_calls_of,
    why_no_tool_call,
)
from greenserv_core.adapters.calls import (
    CALL_OPTIONS,
    DEFAULT_MAX_TOKENS,
    AdapterCore,
    LazyRouter,
    apply_tool_choice,
    check_cascade_signal,
    check_energy_budget,
    check_max_joules,
    check_max_latency,
    check_max_tokens,
    check_optional_positive,
    check_optional_tradeoff,
    check_setting,
    check_stop,
    generation_options,
)
from greenserv_core.adapters.embeddings import RETRIEVAL_TOKENS, retrieval_embedder
from greenserv_core.adapters.feedback import AnswerLog, BoundedRecorder, Evaluator, SeenAnswer

__all__ = [
    "CALL_OPTIONS",
    "DEFAULT_MAX_TOKENS",
    "RETRIEVAL_TOKENS",
    "AdapterCore",
    "AnswerLog",
    "BoundedRecorder",
    "Evaluator",
    "InvalidToolCallData",
    "LazyRouter",
    "Piece",
    "SeenAnswer",
    "ToolCallData",
    "answer_pieces",
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
    "decision_id_in",
    "decision_id_of",
    "generation_options",
    "retrieval_embedder",
    "schema_refused",
    "tool_calls_of",
    "why_no_tool_call",
]
