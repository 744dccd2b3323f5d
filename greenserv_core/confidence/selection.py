"""Which confidence signal: the one that suits an answer's length, or the one a name describes
(what a saved router records of its cascades). Kept apart from :mod:`.base`, which only
defines the two interfaces the signals implement."""

from __future__ import annotations

from greenserv_core.confidence.answer_probability import AnswerProbability
from greenserv_core.confidence.base import ConfidenceSignal, VerifyingSignal
from greenserv_core.confidence.self_verification import SelfVerification
from greenserv_core.confidence.token_quantile import TokenQuantile
from greenserv_core.errors import InvalidInputError

__all__ = ["signal_for_task", "signal_from_name"]


def signal_for_task(max_new_tokens: int) -> ConfidenceSignal:
    """The signal that suits an answer of up to ``max_new_tokens`` tokens: the answer's own
    probability for short answers (a choice, yes or no: up to 8 tokens), the 10% quantile of
    the tokens' probabilities for longer, free text.

    >>> signal_for_task(3).name, signal_for_task(160).name
    ('answer-probability', 'token-quantile-0.1')
    """
    return AnswerProbability() if max_new_tokens <= 8 else TokenQuantile(0.1)


def signal_from_name(name: str) -> ConfidenceSignal | VerifyingSignal:
    """The bundled signal a ``name`` describes (what a saved router records of its cascades).

    >>> signal_from_name("first-1-token-probability").name, signal_from_name("token-quantile-0.2").name
    ('first-1-token-probability', 'token-quantile-0.2')
    >>> signal_from_name("self-verification-8").name
    'self-verification-8'
    """
    if name == "answer-probability":
        return AnswerProbability()
    verification = SelfVerification.from_name(name)
    if verification is not None:
        return verification
    first = name.removeprefix("first-").removesuffix("-token-probability")
    if name.startswith("first-") and name.endswith("-token-probability") and first.isascii() and first.isdigit():
        return AnswerProbability(first_tokens=int(first))
    quantile = name.removeprefix("token-quantile-")
    if name.startswith("token-quantile-"):
        try:
            return TokenQuantile(float(quantile))
        except ValueError:
            pass
    raise InvalidInputError(f"no bundled confidence signal is named {name!r}")
