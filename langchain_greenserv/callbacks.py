"""``GreenServFeedbackHandler``: feedback to the router through LangChain callbacks.

Add it to ``config={"callbacks": [handler]}`` (or to a chain's config). For every answer of a
:class:`~langchain_greenserv.ChatGreenServ` in the run, it either scores the answer with your
``evaluator(prompt, output) -> score in [0, 1]`` right away, or records the run so that you
can score it later with :meth:`GreenServFeedbackHandler.feedback`.

>>> from langchain_greenserv import ChatGreenServ, GreenServFeedbackHandler   # doctest: +SKIP
>>> llm = ChatGreenServ()                                                      # doctest: +SKIP
>>> def evaluator(prompt, output): return float("paris" in output.lower())
>>> handler = GreenServFeedbackHandler(llm, evaluator=evaluator)               # doctest: +SKIP
>>> llm.invoke("Capital of France?", config={"callbacks": [handler]})         # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from greenserv_core.adapters import AnswerLog, Evaluator
from greenserv_core.router import FeedbackRecord
from greenserv_core.tools import with_tool_calls
from langchain_greenserv.chat_models import ChatGreenServ, routed_answers

__all__ = ["GreenServFeedbackHandler", "RecordedRun"]

logger = logging.getLogger("greenserv.langchain")


@dataclass
class RecordedRun:
    """One routed answer seen by the handler."""

    run_id: str
    decision_id: str
    model: str
    prompt: str
    output: str
    score: float | None = None


class GreenServFeedbackHandler(BaseCallbackHandler):
    """Connects LangChain runs to routing decisions. ``runs`` maps run ids to the last
    ``max_runs`` :class:`RecordedRun` objects.

    A failing evaluator is logged (``greenserv.langchain`` logger) and kept in ``errors``;
    it never breaks the chain.
    """

    raise_error = False

    def __init__(
        self, chat_model: ChatGreenServ, evaluator: Evaluator | None = None, *, max_runs: int = 10_000
    ) -> None:
        self.chat_model = chat_model
        self.evaluator = evaluator
        self.max_runs = max_runs
        self.runs = AnswerLog[RecordedRun](chat_model.feedback, max_entries=max_runs, logger=logger, what="run")
        self._prompts: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def errors(self) -> list[tuple[str, BaseException]]:
        """``(run id, error)`` of each evaluator call that failed."""
        return self.runs.errors

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        text = "\n".join(m.text for m in messages[0]) if messages else ""
        with self._lock:
            self._prompts[str(run_id)] = text

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        key = str(run_id)
        with self._lock:
            prompt = self._prompts.pop(key, "")
        for generation, record in routed_answers(response):
            if not self.chat_model.decided(str(record["decision_id"])):
                continue  # another GreenServ model of the chain answered: its router, not ours
            decision = str(record["decision_id"])
            kept = self.runs.get(key)
            where = decision if kept is not None and kept.decision_id != decision else key  # a run id used again
            run = RecordedRun(key, decision, str(record["model"]), prompt, _answer_text(generation))
            self.runs.record(where, run, self.evaluator)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._prompts.pop(str(run_id), None)

    def feedback(self, run_id: UUID | str, score: float) -> FeedbackRecord:
        """Score a recorded run later. Unknown run ids raise ``KeyError``."""
        return self.runs.feedback(str(run_id), score)


def _answer_text(generation: Any) -> str:
    """What the evaluator reads of an answer: its text, and the tool calls it made as the
    markup the router reads (an answer that only calls a tool has no text of its own).

    >>> from langchain_core.messages import AIMessage
    >>> from langchain_core.outputs import ChatGeneration
    >>> call = {"name": "now", "args": {}, "id": "c1"}
    >>> print(_answer_text(ChatGeneration(message=AIMessage(content="", tool_calls=[call]))))
    <tool_call>
    {"name": "now", "arguments": {}}
    </tool_call>
    """
    text = str(generation.text)
    calls = getattr(getattr(generation, "message", None), "tool_calls", None) or []
    return with_tool_calls(text, [(call["name"], call["args"]) for call in calls])  # (none: the text as it is)
