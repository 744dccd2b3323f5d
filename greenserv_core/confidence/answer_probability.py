"""The probability of the whole answer as the model generated it."""

from __future__ import annotations

import math

from greenserv_core.backends.base import GenerationResult

__all__ = ["AnswerProbability"]


class AnswerProbability:
    """``exp(Σ log p(token))`` over the answer's tokens: for a choice answered in a token or
    two, the probability of the option the model committed to. ``None`` without
    log-probabilities.

    >>> from greenserv_core.backends.base import EnergyReading
    >>> answer = GenerationResult("B", 10, 1, 0.1, EnergyReading(1.0, "fake", False), token_logprobs=(-0.105,))
    >>> round(AnswerProbability()(answer), 2)
    0.9
    """

    name = "answer-probability"

    def __call__(self, result: GenerationResult) -> float | None:
        if not result.token_logprobs:
            return None
        return math.exp(min(0.0, math.fsum(result.token_logprobs)))
