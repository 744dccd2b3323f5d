"""Self-verification: ask the model that answered whether its answer is right (AutoMix)."""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Sequence

from greenserv_core.backends.abandoned import report_abandoned
from greenserv_core.backends.base import GenerationResult, GenerationSettings, ModelBackend, spent_after
from greenserv_core.bandits.base import check_whole
from greenserv_core.confidence.base import Verification
from greenserv_core.energy.base import combined_energy
from greenserv_core.errors import InvalidInputError, ModelUnavailableError
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


_DEFAULTS = {"temperature": 1.0, "seed": 0, "max_new_tokens": 3}


class SelfVerification:
    """The chance that an answer is right, from the answering model's own verdict on it.

    AutoMix (Madaan et al. 2023) has the small model of a cascade check its own answer and
    escalates when it doubts it. With ``samples=1`` (the default) the model is asked once,
    greedily, and the confidence is ``0.5 + p/2`` for a "Yes" and ``0.5 − p/2`` for a "No",
    where ``p`` is the verdict token's probability (the reply's first token, or the second
    after a line break). So a "Yes" always reads above a "No", and a sure verdict further from
    0.5 than an unsure one. A verdict whose probability cannot be read (no log-probabilities,
    or formatting before the word) counts as 1 or 0. With ``samples=k > 1`` the model is
    asked ``k`` times at ``temperature`` (seeds ``seed, seed + 1, …``), as AutoMix does, and
    the confidence is the share of "Yes" among the verdicts given. A reply that is neither
    gives no verdict; with none at all the confidence is ``None``.

    The question (:data:`VERIFY_TEMPLATE`) quotes the query's last user turn and the answer;
    a system prompt or earlier turns are not repeated, and the question is longer than the
    query, so it must fit the model's context window too. Each question is a call to the
    model: its joules and seconds are returned with the verdict
    (:class:`~greenserv_core.confidence.base.Verification`) and a cascade adds them to its
    first answer's cost. Every setting is in :attr:`name`, so a saved router rebuilds the
    same signal (:func:`~greenserv_core.confidence.signal_from_name`). How well a model
    judges its own answers is measured with ``greenserv bench verify``.

    >>> from greenserv_core.backends.fake import FakeBackend
    >>> judge = FakeBackend("small", reply=lambda m: "Yes", logprobs=lambda m, text: [-0.223])
    >>> answer = judge.generate([{"role": "user", "content": "2 + 2?"}], GenerationSettings(max_new_tokens=4))
    >>> check = SelfVerification().verify([{"role": "user", "content": "2 + 2?"}], answer, judge)
    >>> round(check.confidence, 2), len(check.calls)
    (0.9, 1)
    >>> SelfVerification(samples=4, temperature=0.7).name
    'self-verification-4;temperature=0.7'
    """

    def __init__(
        self,
        samples: int = 1,
        *,
        temperature: float = _DEFAULTS["temperature"],
        seed: int = int(_DEFAULTS["seed"]),
        max_new_tokens: int = int(_DEFAULTS["max_new_tokens"]),
    ) -> None:
        count = check_whole("samples", samples, low=1)  # numpy's integers too
        most = check_whole("max_new_tokens", max_new_tokens, low=1)
        start = check_whole("seed", seed, low=0)
        if start + count - 1 >= 2**63:  # the draws' seeds, seed + i, are generation seeds
            raise InvalidInputError(
                f"seed + samples - 1 must be below 2**63, got seed {seed!r} with {samples!r} samples"
            )
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float, numbers.Real))  # numpy's too (int, float named for mypy)
            or not 0 < temperature < math.inf
        ):
            raise InvalidInputError(f"temperature must be a positive number, got {temperature!r}")
        self.samples, self.temperature = count, float(temperature)
        self.seed, self.max_new_tokens = start, most

    @property
    def name(self) -> str:
        """``self-verification[-K]``, then ``;setting=value`` for each setting not at its default."""
        base = "self-verification" if self.samples == 1 else f"self-verification-{self.samples}"
        values = {key: getattr(self, key) for key in _DEFAULTS}
        return base + "".join(f";{key}={value!r}" for key, value in values.items() if value != _DEFAULTS[key])

    @classmethod
    def from_name(cls, name: str) -> SelfVerification | None:
        """The signal a :attr:`name` describes, or ``None`` when ``name`` is not one.

        >>> SelfVerification.from_name("self-verification-8;seed=3").seed, SelfVerification.from_name("x")
        (3, None)
        """
        base, *settings = name.split(";")
        samples = base.removeprefix("self-verification-")
        if base != "self-verification" and not (
            base.startswith("self-verification-") and samples.isascii() and samples.isdigit()
        ):
            return None
        options: dict[str, float] = {}
        for setting in settings:
            key, _, value = setting.partition("=")
            if key not in _DEFAULTS:
                return None
            try:  # whole numbers read as such: a seed above 2**53 is not a float's
                options[key] = float(value) if key == "temperature" else int(value)
            except ValueError:
                return None
        count = 1 if base == "self-verification" else int(samples)
        try:
            signal = cls(
                count,
                temperature=options.get("temperature", _DEFAULTS["temperature"]),
                seed=int(options.get("seed", _DEFAULTS["seed"])),
                max_new_tokens=int(options.get("max_new_tokens", _DEFAULTS["max_new_tokens"])),
            )
        except InvalidInputError:
            return None
        # only the canonical spelling: no repeated or reordered setting, no "-1", no default spelled out
        return signal if signal.name == name else None

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
        sure = _verdict_probability(reply)
        if sure is None:
            return None  # a broken log-probability says nothing
        return 0.5 + sure / 2 if verdict else 0.5 - sure / 2

    def verify(
        self,
        messages: Sequence[Message],
        answer: GenerationResult,
        model: ModelBackend,
        *,
        max_time_s: float | None = None,
    ) -> Verification:
        """Ask ``model`` about ``answer`` and read its verdict. Under ``max_time_s`` each
        question has what the ones before it left, and none is asked once it is spent (the
        verdict reads the replies that came; none: no confidence). Where a question fails, what
        the ones before it spent is reported with the error (or, for an error that carries no
        spend, through :func:`~greenserv_core.backends.abandoned.report_abandoned`)."""
        question = self.prompt(messages, answer.text)
        replies: list[GenerationResult] = []
        took = 0.0
        for settings in self.settings():
            if max_time_s is not None:
                left = max_time_s - took
                if not left > 0:  # (NaN too)
                    break
                settings = dataclasses.replace(settings, max_time_s=left)
            try:
                reply = model.generate(question, settings)
            except ModelUnavailableError as error:  # the questions answered before it were spent too
                _add_spent(error, replies)
                raise
            except BaseException:
                if replies:
                    report_abandoned(combined_energy([r.energy for r in replies]), sum(r.latency_s for r in replies))
                raise
            replies.append(reply)
            took += reply.latency_s
        return Verification(self.read(replies), tuple(replies))


def _add_spent(error: ModelUnavailableError, replies: Sequence[GenerationResult]) -> None:
    """Count the joules and seconds of ``replies`` (answered before ``error``) in its spend."""
    if replies:
        for name, value in spent_after(replies, error).items():
            setattr(error, name, value)


def _verdict_probability(reply: GenerationResult) -> float | None:
    """The probability of the verdict word's token: the first token, or the second after a
    line break (its own token, whose probability is not the verdict's); 1 where it cannot be
    read (no log-probabilities, or formatting before the word); ``None`` for a NaN
    log-probability."""
    logprobs = reply.token_logprobs
    found = _VERDICT.match(reply.text)
    before = "" if found is None else reply.text[: found.start(1)]
    if not logprobs or before not in ("", " ", "\n", "\r\n"):
        return 1.0
    verdict = logprobs[1] if before.strip(" ") and len(logprobs) > 1 else logprobs[0]
    if math.isnan(verdict):
        return None
    return math.exp(min(0.0, verdict))
