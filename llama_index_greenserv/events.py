"""``GreenServEventHandler``: LlamaIndex instrumentation events → routing feedback.

Register it with ``get_dispatcher().add_event_handler(handler)``. For each finished LLM call
whose response carries a GreenServ routing record (``LLMChatEndEvent``,
``LLMCompletionEndEvent``), it records the decision and, with an ``evaluator(prompt, output)``,
scores it at once. One decision is handled once, however many events report it (a chat
that calls complete, a stream's final event). LlamaIndex swallows handler exceptions, so
a failing evaluator is logged and kept in ``errors``.

LlamaIndex calls handlers synchronously, on the event loop for ``achat`` and the other async
calls: there the handler does its work (the evaluator, the router's bookkeeping) in a worker
thread of its own, in the order the events came, and ``await handler.flush()`` waits for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from pydantic import ConfigDict, PrivateAttr

from greenserv_core.adapters import AnswerLog, Evaluator, decision_id_in
from greenserv_core.router import FeedbackRecord
from greenserv_core.tools import with_tool_calls

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
    """Connects LlamaIndex LLM end events to routing decisions of a ``GreenServLLM``; ``seen``
    maps decision ids to the last ``max_decisions`` :class:`SeenDecision` objects."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    llm: Any
    evaluator: Evaluator | None = None
    max_decisions: int = 10_000

    _seen: AnswerLog[SeenDecision] = PrivateAttr()
    _running: set[asyncio.Future[None]] = PrivateAttr(default_factory=set)
    _thread: ThreadPoolExecutor | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def model_post_init(self, context: Any) -> None:
        self._seen = AnswerLog(
            lambda decision_id, score: self.llm.feedback(decision_id, score),
            max_entries=self.max_decisions,
            logger=logger,
            what="decision",
        )

    @classmethod
    def class_name(cls) -> str:
        return "GreenServEventHandler"

    @property
    def seen(self) -> AnswerLog[SeenDecision]:
        return self._seen

    @property
    def errors(self) -> list[tuple[str, BaseException]]:
        """``(decision id, error)`` of each evaluator call that failed."""
        return self._seen.errors

    def handle(self, event: Any, **kwargs: Any) -> None:
        if not isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
            return
        response = event.response
        record = getattr(response, "additional_kwargs", None) or {}
        decision_id = decision_id_in(record)
        if decision_id is None:
            return  # not a routed answer, or a stream's intermediate response
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._take(event, record, decision_id)
            return
        # on the event loop (achat, astream_chat, ...): the evaluator and the router's lock or store must not stall it
        future = loop.run_in_executor(
            self._worker(), contextvars.copy_context().run, self._take, event, record, decision_id
        )
        with self._lock:  # (handlers on other loops add and discard theirs meanwhile)
            self._running.add(future)
        future.add_done_callback(self._finished)

    def _worker(self) -> ThreadPoolExecutor:
        """One thread, so that events are handled in the order they came (the first of a
        decision's events is the one kept, as when handled inline)."""
        with self._lock:
            if self._thread is None:
                self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="greenserv-events")
            return self._thread

    async def flush(self) -> None:
        """Wait until the events handed to worker threads on the running loop are handled."""
        loop = asyncio.get_running_loop()
        with self._lock:
            running = [f for f in self._running if f.get_loop() is loop]
        await asyncio.gather(*running, return_exceptions=True)

    def _finished(self, future: asyncio.Future[None]) -> None:
        with self._lock:
            self._running.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.warning("GreenServ event handler failed: %r", future.exception())

    def _take(self, event: LLMChatEndEvent | LLMCompletionEndEvent, record: Any, decision_id: str) -> None:
        """Record (and score) the answer of one of this LLM's decisions."""
        if not self.llm.decided(decision_id):
            return  # another LLM's answer (the dispatcher is global): read nothing of it
        if isinstance(event, LLMChatEndEvent):
            prompt = "\n".join(str(m.content or "") for m in event.messages)  # a tool call alone: no text
            output = "" if event.response is None else _answer_text(event.response.message)
        else:
            prompt, output = event.prompt, str(event.response.text)
        seen = SeenDecision(decision_id, str(record.get("model")), prompt, output)
        self._seen.record(decision_id, seen, self.evaluator)  # nested or repeated events: one decision counts once

    def feedback(self, decision_id: str, score: float) -> FeedbackRecord:
        """Score a decision this handler saw, later. Unknown decision ids raise ``KeyError``."""
        return self._seen.feedback(decision_id, score)


def _answer_text(message: Any) -> str:
    """What the evaluator reads of a chat answer: its text, and the tool calls it made as the
    markup the router reads (an answer that only calls a tool has no text of its own).

    >>> from llama_index.core.base.llms.types import ChatMessage
    >>> call = {"id": "c1", "name": "now", "arguments": {}}
    >>> print(_answer_text(ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]})))
    <tool_call>
    {"name": "now", "arguments": {}}
    </tool_call>
    """
    text = str(message.content or "")
    calls = message.additional_kwargs.get("tool_calls") or []
    return with_tool_calls(text, [(call["name"], call["arguments"]) for call in calls])  # (none: the text as it is)
