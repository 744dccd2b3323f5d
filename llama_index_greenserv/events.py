"""``GreenServEventHandler``: LlamaIndex instrumentation events → routing feedback.

Register it with ``get_dispatcher().add_event_handler(handler)``. For each finished LLM call
whose response carries a GreenServ routing record (``LLMChatEndEvent``,
``LLMCompletionEndEvent``), it records the decision and, with an ``evaluator(prompt, output)``,
scores it at once. One decision is handled once, however many events report it (a chat
that calls complete, a stream's final event). LlamaIndex swallows handler exceptions, so
a failing evaluator is logged and kept in ``errors``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from pydantic import ConfigDict, PrivateAttr

from greenserv_core.router import FeedbackRecord

__all__ = ["GreenServEventHandler", "SeenDecision"]

logger = logging.getLogger("greenserv.llama_index")


@dataclass
class SeenDecision:
    decision_id: str
    model: str
    prompt: str
    output: str
    score: float | None = None


class GreenServEventHandler(BaseEventHandler):
    """Connects LlamaIndex LLM end events to routing decisions of a ``GreenServLLM``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    llm: Any
    evaluator: Callable[[str, str], float] | None = None
    max_decisions: int = 10_000

    _seen: OrderedDict[str, SeenDecision] = PrivateAttr(default_factory=OrderedDict)
    _errors: list[tuple[str, BaseException]] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "GreenServEventHandler"

    @property
    def seen(self) -> OrderedDict[str, SeenDecision]:
        return self._seen

    @property
    def errors(self) -> list[tuple[str, BaseException]]:
        return self._errors

    def handle(self, event: Any, **kwargs: Any) -> None:
        response: Any
        if isinstance(event, LLMChatEndEvent):
            response = event.response
            prompt = "\n".join(str(m.content) for m in event.messages)
            output = "" if response is None else str(response.message.content or "")
        elif isinstance(event, LLMCompletionEndEvent):
            response = event.response
            prompt, output = event.prompt, str(event.response.text)
        else:
            return
        record = getattr(response, "additional_kwargs", None) or {}
        decision_id = record.get("decision_id")
        if not decision_id:
            return  # not a routed answer, or a stream's intermediate response
        with self._lock:
            if decision_id in self._seen:
                return  # nested or repeated events: one decision counts once
            seen = SeenDecision(str(decision_id), str(record.get("model")), prompt, output)
            self._seen[seen.decision_id] = seen
            while len(self._seen) > self.max_decisions:
                self._seen.popitem(last=False)
        if self.evaluator is not None:
            self._evaluate(seen)

    def _evaluate(self, seen: SeenDecision) -> None:
        assert self.evaluator is not None
        try:
            score = float(self.evaluator(seen.prompt, seen.output))
            self.llm.feedback(seen.decision_id, score)
            seen.score = score
        except Exception as error:
            logger.warning("GreenServ evaluator failed for decision %s: %r", seen.decision_id, error)
            with self._lock:
                self._errors.append((seen.decision_id, error))

    def feedback(self, decision_id: str, score: float) -> FeedbackRecord:
        """Score a decision this handler saw, later."""
        with self._lock:
            seen = self._seen.get(decision_id)
        if seen is None:
            raise KeyError(f"decision {decision_id!r} was not seen by this handler")
        record: FeedbackRecord = self.llm.feedback(decision_id, score)
        seen.score = record.score
        return record
