"""Self-verification: ask the model that answered whether its answer is right (AutoMix)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from greenserv_core.backends.base import GenerationResult, GenerationSettings, ModelBackend
from greenserv_core.confidence.base import Verification
from greenserv_core.errors import InvalidInputError
from greenserv_core.messages import Message, last_user_text

__all__ = ["VERIFY_TEMPLATE", "SelfVerification", "verdict_of"]

VERIFY_TEMPLATE = (
    "Here is a question and a proposed answer.\n\n"
    "Question:\n{question}\n\n"
    "Proposed answer:\n{answer}\n\n"
    "Is the proposed answer correct? Reply with Yes or No."
)
"""The question a :class:`SelfVerification` asks; ``{question}`` is the query's last user
turn, ``{answer}`` the answer to check."""

_VERDICT = re.compile(r"\W*(yes|no|correct|incorrect|true|false|right|wrong)\b", re.IGNORECASE)
_YES = {"yes", "correct", "true", "right"}


def verdict_of(text: str) -> bool | None:
    """``True`` for a reply that opens with yes (or correct, true, right), ``False`` for no
    (incorrect, false, wrong), ``None`` for anything else.

    >>> verdict_of(" Yes, it is."), verdict_of("Incorrect."), verdict_of("Maybe")
    (True, False, None)
    """
    found = _VERDICT.match(text)
    return None if found is None else found.group(1).lower() in _YES


class SelfVerification:
    """The chance that an answer is right, from the answering model's own verdict on it.

    AutoMix (Madaan et al. 2023) has the small model of a cascade check its own answer and
    escalates when it doubts it. With ``samples=1`` (the default) the model is asked once,
    greedily, and the verdict's probability is read from its first token's log-probability
    (the first two after a line break): ``p`` for a "Yes" of probability ``p``, ``1 − p`` for
    a "No" (a verdict without log-probabilities counts as 1 or 0). With ``samples=k > 1`` it is asked ``k`` times at
    ``temperature`` (seeds ``seed, seed + 1, …``), as AutoMix does, and the confidence is the
    share of "Yes" among the verdicts given. A reply that is neither gives no verdict; with
    none at all the confidence is ``None``.

    Each question is a call to the model: its joules and seconds are returned with the
    verdict (:class:`~greenserv_core.confidence.base.Verification`) and a cascade adds them to
    its first answer's cost. For a model that cannot judge its own answers, the measured
    AUROC says so (``greenserv bench verify``).

    >>> from greenserv_core.backends.fake import FakeBackend
    >>> judge = FakeBackend("small", reply=lambda m: "Yes", logprobs=lambda m, text: [-0.223])
    >>> answer = judge.generate([{"role": "user", "content": "2 + 2?"}], GenerationSettings(max_new_tokens=4))
    >>> check = SelfVerification().verify([{"role": "user", "content": "2 + 2?"}], answer, judge)
    >>> round(check.confidence, 2), len(check.calls)
    (0.8, 1)
    """

    def __init__(self, samples: int = 1, *, temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 3) -> None:
        for label, value, low in (("samples", samples, 1), ("max_new_tokens", max_new_tokens, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{label} must be an integer >= {low}, got {value!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise InvalidInputError(f"temperature must be a positive number, got {temperature!r}")
        self.samples, self.temperature = samples, float(temperature)
        self.seed, self.max_new_tokens = seed, max_new_tokens

    @property
    def name(self) -> str:
        return "self-verification" if self.samples == 1 else f"self-verification-{self.samples}"

    def prompt(self, messages: Sequence[Message], answer: str) -> list[Message]:
        """The verification question about ``answer`` to the query in ``messages``."""
        return [{"role": "user", "content": VERIFY_TEMPLATE.format(question=last_user_text(messages), answer=answer)}]

    def settings(self) -> list[GenerationSettings]:
        """One generation setting per question asked: greedy once, or ``samples`` seeded draws."""
        if self.samples == 1:
            return [GenerationSettings(max_new_tokens=self.max_new_tokens, logprobs=True)]
        return [
            GenerationSettings(max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed + i)
            for i in range(self.samples)
        ]

    def read(self, replies: Sequence[GenerationResult]) -> float | None:
        """The confidence the ``replies`` to :meth:`prompt` (asked with :meth:`settings`) give."""
        verdicts = [(verdict_of(reply.text), reply) for reply in replies]
        given = [(verdict, reply) for verdict, reply in verdicts if verdict is not None]
        if not given:
            return None
        if self.samples > 1:
            return sum(verdict for verdict, _ in given) / len(given)
        verdict, reply = given[0]
        logprobs = reply.token_logprobs
        deciding = 2 if reply.text[:1] in ("\n", "\r") else 1  # a line break first is a token of its own
        total = 0.0 if not logprobs else math.fsum(logprobs[:deciding])
        if math.isnan(total):
            return None  # a broken log-probability says nothing
        sure = math.exp(min(0.0, total))
        return sure if verdict else 1.0 - sure

    def verify(self, messages: Sequence[Message], answer: GenerationResult, model: ModelBackend) -> Verification:
        """Ask ``model`` about ``answer`` and read its verdict."""
        question = self.prompt(messages, answer.text)
        replies = tuple(model.generate(question, settings) for settings in self.settings())
        return Verification(self.read(replies), replies)
