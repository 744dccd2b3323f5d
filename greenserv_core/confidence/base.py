"""The one interface every confidence signal implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from greenserv_core.backends.base import GenerationResult

__all__ = ["ConfidenceSignal", "signal_for_task", "signal_from_name"]


@runtime_checkable
class ConfidenceSignal(Protocol):
    """Turns an answer into the chance, in ``[0, 1]``, that it is right (``None``: no signal)."""

    @property
    def name(self) -> str:
        """A short label for tables and records, such as ``"answer-probability"``."""
        ...

    def __call__(self, result: GenerationResult) -> float | None: ...


def signal_for_task(max_new_tokens: int) -> ConfidenceSignal:
    """The signal that suits an answer of up to ``max_new_tokens`` tokens: the answer's own
    probability for short answers (a choice, yes or no: up to 8 tokens), the 10% quantile of
    the tokens' probabilities for longer, free text.

    >>> signal_for_task(3).name, signal_for_task(160).name
    ('answer-probability', 'token-quantile-0.1')
    """
    from greenserv_core.confidence.answer_probability import AnswerProbability
    from greenserv_core.confidence.token_quantile import TokenQuantile

    return AnswerProbability() if max_new_tokens <= 8 else TokenQuantile(0.1)


def signal_from_name(name: str) -> ConfidenceSignal:
    """The bundled signal a ``name`` describes (what a saved router records of its cascades).

    >>> signal_from_name("first-1-token-probability").name, signal_from_name("token-quantile-0.2").name
    ('first-1-token-probability', 'token-quantile-0.2')
    """
    from greenserv_core.confidence.answer_probability import AnswerProbability
    from greenserv_core.confidence.token_quantile import TokenQuantile
    from greenserv_core.errors import InvalidInputError

    if name == "answer-probability":
        return AnswerProbability()
    first = name.removeprefix("first-").removesuffix("-token-probability")
    if name.startswith("first-") and name.endswith("-token-probability") and first.isdigit():
        return AnswerProbability(first_tokens=int(first))
    quantile = name.removeprefix("token-quantile-")
    if name.startswith("token-quantile-"):
        try:
            return TokenQuantile(float(quantile))
        except ValueError:
            pass
    raise InvalidInputError(f"no bundled confidence signal is named {name!r}")
