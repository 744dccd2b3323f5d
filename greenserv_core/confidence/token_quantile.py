"""A low quantile of the answer's per-token probabilities."""

from __future__ import annotations

import math
import numbers

import numpy as np

from greenserv_core.backends.base import GenerationResult
from greenserv_core.errors import InvalidInputError

__all__ = ["TokenQuantile"]


class TokenQuantile:
    """The ``q``-quantile of ``p(token)`` over the answer's tokens (default 0.1: how sure the
    model was on its least sure tokens; the lower empirical quantile, so it is one token's
    probability, not a blend). Unlike the mean, it does not drift with the answer's
    length (Gupta et al. 2024, "Language model cascades: token-level uncertainty and beyond").
    ``None`` without log-probabilities; 0 for an answer with no text.

    >>> from greenserv_core.backends.base import EnergyReading
    >>> reading = EnergyReading(1.0, "fake", False)
    >>> answer = GenerationResult("x y z", 10, 3, 0.1, reading, token_logprobs=(0.0, -2.3, 0.0))
    >>> round(TokenQuantile(0.0)(answer), 2), TokenQuantile(0.5)(answer)
    (0.1, 1.0)
    """

    def __init__(self, q: float = 0.1) -> None:
        if isinstance(q, bool) or not isinstance(q, (int, float, numbers.Real)) or not 0 <= q <= 1:  # numpy's too
            raise InvalidInputError(f"q must be a number in [0, 1], got {q!r}")
        self.q = float(q)

    @property
    def name(self) -> str:
        return f"token-quantile-{self.q!r}"

    def __call__(self, result: GenerationResult) -> float | None:
        if not result.text.strip():  # no answer: nothing to be sure of
            return 0.0
        if not result.token_logprobs:
            return None
        probabilities = np.exp(np.minimum(0.0, np.asarray(result.token_logprobs, dtype=np.float64)))
        value = float(np.quantile(probabilities, self.q, method="lower"))  # a token's own probability
        return value if math.isfinite(value) else None
