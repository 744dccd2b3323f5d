"""The probability of the whole answer as the model generated it."""

from __future__ import annotations

import math
import numbers

from greenserv_core.backends.base import GenerationResult
from greenserv_core.errors import InvalidInputError

__all__ = ["AnswerProbability"]


class AnswerProbability:
    """``exp(Σ log p(token))`` over the answer's first ``first_tokens`` tokens (all of them for
    ``None``). For a choice answered with its letter first, ``first_tokens=1`` is the
    probability of the option the model committed to, without the words it added after it.
    ``None`` without log-probabilities; 0 for an answer with no text (a model that ends at
    once is sure of its end token, not of an answer).

    >>> from greenserv_core.backends.base import EnergyReading
    >>> answer = GenerationResult("B", 10, 1, 0.1, EnergyReading(1.0, "fake", False), token_logprobs=(-0.105,))
    >>> round(AnswerProbability()(answer), 2), AnswerProbability(first_tokens=1).name
    (0.9, 'first-1-token-probability')
    """

    def __init__(self, first_tokens: int | None = None) -> None:
        if first_tokens is not None and (
            isinstance(first_tokens, bool) or not isinstance(first_tokens, (int, numbers.Integral)) or first_tokens < 1
        ):  # numpy's integers too
            raise InvalidInputError(f"first_tokens must be a positive integer or None, got {first_tokens!r}")
        self.first_tokens = None if first_tokens is None else int(first_tokens)

    @property
    def name(self) -> str:
        return "answer-probability" if self.first_tokens is None else f"first-{self.first_tokens}-token-probability"

    def __call__(self, result: GenerationResult) -> float | None:
        if not result.text.strip():  # no answer: nothing to be sure of
            return 0.0
        if not result.token_logprobs:
            return None
        tokens = result.token_logprobs if self.first_tokens is None else result.token_logprobs[: self.first_tokens]
        if any(math.isnan(t) for t in tokens):
            return None  # a broken log-probability says nothing
        total = math.fsum(min(0.0, t) for t in tokens)  # a log-probability above 0 (+inf too) is 0
        return math.exp(total)
