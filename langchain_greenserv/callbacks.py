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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from greenserv_core.router import FeedbackRecord
from langchain_greenserv.chat_models import ChatGreenServ

__all__ = ["GreenServFeedbackHandler", "RecordedRun"]

logger = logging.getLogger("greenserv.langchain")

Evaluator = Callable[[str, str], float]


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
    """Connects LangChain runs to routing decisions. Keeps the last ``max_runs`` runs.

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
        self.runs: OrderedDict[str, RecordedRun] = OrderedDict()
        self.errors: list[tuple[str, BaseException]] = []
        self._prompts: dict[str, str] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        text = "\n".join(str(m.content) for m in messages[0]) if messages else ""
        with self._lock:
            self._prompts[str(run_id)] = text

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        key = str(run_id)
        with self._lock:
            prompt = self._prompts.pop(key, "")
        for batch in response.generations:
            for generation in batch:
                if not isinstance(generation, ChatGeneration):
                    continue
                record = generation.message.response_metadata.get("greenserv")
                if not isinstance(record, dict):
                    continue  # not a routed answer (another model in the chain)
                run = RecordedRun(key, str(record["decision_id"]), str(record["model"]), prompt, generation.text)
                with self._lock:
                    self.runs[key] = run
                    while len(self.runs) > self.max_runs:
                        self.runs.popitem(last=False)
                if self.evaluator is not None:
                    self._evaluate(run)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._prompts.pop(str(run_id), None)

    def _evaluate(self, run: RecordedRun) -> None:
        assert self.evaluator is not None
        try:
            score = float(self.evaluator(run.prompt, run.output))
            self.chat_model.feedback(run.decision_id, score)
            run.score = score
        except Exception as error:
            logger.warning("GreenServ evaluator failed for run %s: %r", run.run_id, error)
            with self._lock:
                self.errors.append((run.run_id, error))

    def feedback(self, run_id: UUID | str, score: float) -> FeedbackRecord:
        """Score a recorded run later. Unknown run ids raise ``KeyError``."""
        key = str(run_id)
        with self._lock:
            run = self.runs.get(key)
        if run is None:
            raise KeyError(f"run {key!r} was not seen by this handler (or is older than the last {self.max_runs})")
        record = self.chat_model.feedback(run.decision_id, score)
        run.score = record.score
        return record
