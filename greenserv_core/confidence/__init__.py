"""Confidence signals: how likely one answer is right, read from the answer itself.

A cascade keeps a cheap model's answer when it is confident and escalates when it is not
(issue 18); an outcome table records each answer's confidence so that a replay can learn
from it. A signal is one small callable (:class:`ConfidenceSignal`): it takes a
:class:`~greenserv_core.backends.base.GenerationResult` and returns a number in ``[0, 1]``
(higher is more likely right), or ``None`` when the answer carries nothing to read (a
backend that gives no log-probabilities). To add a signal, write one file here with a class
that has a ``name`` and that call.

- :class:`AnswerProbability`: the probability of the whole answer as generated. For a choice
  answered in a token or two, that is the probability of the option committed to.
- :class:`TokenQuantile`: a low quantile of the per-token probabilities, for free text. The
  mean is biased by length (Gupta et al. 2024); a quantile reads the least sure tokens.

A signal that must ask a model a second question (:class:`VerifyingSignal`) takes the
conversation, the answer and the model, and returns a :class:`Verification`: the confidence
and the calls it made, whose joules a cascade adds to its first answer's.

- :class:`SelfVerification`: the answering model's own verdict on its answer (AutoMix).

Ask the backend for log-probabilities with ``GenerationSettings(logprobs=True)``: local
models compute them from the logits, OpenAI-compatible servers return them where they can
(the ``logprobs`` field).
"""

from greenserv_core.confidence.answer_probability import AnswerProbability
from greenserv_core.confidence.base import ConfidenceSignal, Verification, VerifyingSignal
from greenserv_core.confidence.selection import signal_for_task, signal_from_name
from greenserv_core.confidence.self_verification import SelfVerification
from greenserv_core.confidence.token_quantile import TokenQuantile

__all__ = [
    "AnswerProbability",
    "ConfidenceSignal",
    "SelfVerification",
    "TokenQuantile",
    "Verification",
    "VerifyingSignal",
    "signal_for_task",
    "signal_from_name",
]
