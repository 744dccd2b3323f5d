"""Feedback through a framework's callbacks: the bounded, thread-safe record of the answers a
handler saw, and the evaluator call that scores them (a failing evaluator is logged and kept,
never raised into the framework's run).

>>> import logging
>>> from dataclasses import dataclass
>>> @dataclass
... class Seen:
...     decision_id: str
...     prompt: str
...     output: str
...     score: float | None = None
>>> sent = []
>>> def send(decision_id, score):
...     sent.append((decision_id, score))
>>> log = AnswerLog(send, max_entries=2, logger=logging.getLogger("demo"), what="run")
>>> log.record("run-1", Seen("d-1", "2+2?", "4"), evaluator=lambda prompt, output: float(output == "4"))
True
>>> log.record("run-1", Seen("d-1", "2+2?", "4"))  # one answer counts once
False
>>> sent, log["run-1"].score
([('d-1', 1.0)], 1.0)
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, Protocol, TypeVar

from greenserv_core.errors import DecisionAlreadyScoredError
from greenserv_core.router import FeedbackRecord

__all__ = ["AnswerLog", "BoundedRecorder", "Evaluator", "SeenAnswer"]

Evaluator = Callable[[str, str], float]
"""``evaluator(prompt, output) -> score in [0, 1]``."""

V = TypeVar("V")


class SeenAnswer(Protocol):
    """What a handler keeps of an answer it saw."""

    decision_id: str
    prompt: str
    output: str
    score: float | None


A = TypeVar("A", bound=SeenAnswer)


class BoundedRecorder(Mapping[str, V], Generic[V]):
    """The last ``max_entries`` values by key, the oldest dropped first; thread-safe, and a
    read-only mapping (iteration goes over a snapshot).

    >>> seen = BoundedRecorder[str](max_entries=2)
    >>> [seen.add(key, key.upper()) for key in ("a", "b", "b", "c")]
    [True, True, False, True]
    >>> dict(seen)
    {'b': 'B', 'c': 'C'}
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be positive, got {max_entries!r}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str, value: V) -> bool:
        """Keep ``value`` under ``key``, unless the key is there already (then False: one key counts once)."""
        with self._lock:
            if key in self._entries:
                return False
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return True

    def __getitem__(self, key: str) -> V:
        with self._lock:
            return self._entries[key]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class AnswerLog(BoundedRecorder[A]):
    """The answers a feedback handler saw, by key (a run id or a decision id), with the
    evaluator call and later feedback. ``send(decision_id, score)`` is the adapter model's
    ``feedback``. Evaluator failures go to ``logger`` and to ``errors`` as ``(key, error)``.
    ``what`` names a key in messages (``"run"``, ``"decision"``)."""

    def __init__(
        self, send: Callable[[str, float], FeedbackRecord], *, max_entries: int, logger: logging.Logger, what: str
    ) -> None:
        super().__init__(max_entries)
        self.errors: list[tuple[str, BaseException]] = []
        self._send = send
        self._logger = logger
        self._what = what

    def record(self, key: str, answer: A, evaluator: Evaluator | None = None) -> bool:
        """Keep an answer and score it with ``evaluator``, if one is given; False, and nothing
        done, if ``key`` was seen already."""
        if not self.add(key, answer):
            return False
        if evaluator is not None:
            self.evaluate(key, answer, evaluator)
        return True

    def evaluate(self, key: str, answer: A, evaluator: Evaluator) -> float | None:
        """Score an answer with ``evaluator`` and send the score; ``None`` if that failed."""
        try:
            score = float(evaluator(answer.prompt, answer.output))
            self._send(answer.decision_id, score)
        except DecisionAlreadyScoredError:  # the router scored it itself (score_tool_calls=True)
            self._logger.debug("GreenServ %s %s was already scored; the evaluator's score is not sent", self._what, key)
            return None
        except Exception as error:
            self._logger.warning("GreenServ evaluator failed for %s %s: %r", self._what, key, error)
            with self._lock:
                self.errors.append((key, error))
            return None
        answer.score = score
        return score

    def feedback(self, key: str, score: float) -> FeedbackRecord:
        """Score a kept answer later and return the model's feedback record; ``KeyError`` for
        a key never seen (or dropped as one of the oldest)."""
        answer = self.get(key)
        if answer is None:
            raise KeyError(
                f"{self._what} {key!r} was not seen by this handler (or is older than the last {self.max_entries})"
            )
        record = self._send(answer.decision_id, score)
        answer.score = record.score
        return record
