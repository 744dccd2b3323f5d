"""A cascade as a member of the pool: answer with a cheap model, escalate to a stronger one.

:class:`CascadeBackend` implements :class:`~greenserv_core.backends.base.ModelBackend`, so the
router's policy weighs "answer with A", "answer with B" and "A, then B if A is unsure" as
arms of one decision and learns per context which pays. Inside a router, whether to escalate
is learned (:class:`~greenserv_core.cascades.escalation.EscalationModel`); used on its own,
the cascade escalates when the confidence is below ``threshold``.

The first model is asked for token log-probabilities (``logprobs=True``), which ``signal``
turns into a confidence (default: :func:`~greenserv_core.confidence.signal_for_task` for the
answer's length). A :class:`~greenserv_core.confidence.VerifyingSignal` (such as
:class:`~greenserv_core.confidence.SelfVerification`) asks the first model about its answer
instead, and the joules and seconds of that question count as the first answer's.
Joules, seconds and output tokens of the result are the sums over the models run; its
``chain`` lists each model with its confidence, cost and what happened next, and whether the
second answer agreed with the first (their tool calls compared where tools were offered, their
JSON values in JSON mode).
A time limit (``max_time_s``) holds for the whole cascade: the second model gets what the first
step (its answer, and a question about it) left of it, and where less than a tenth of it is left,
the first answer is kept (its step says why).
Streaming holds the first answer back until it is kept: only the kept answer is streamed,
and no escalated text ever reaches the stream. Where the second model fails before it
answers, the first answer is kept (``keep_first_on_failure``, the default): it is made and
paid for, and asking a third model would cost more again; its step says why, and the failed
call's joules and seconds count in the result's. Otherwise, and where the first model fails
or the second fails after its stream began, the cascade raises
:class:`~greenserv_core.errors.CascadeMemberUnavailableError` naming the member, so that the
router routes the query around that model, not only around this cascade (joules already
spent on the first answer are then charged with the failed attempt).

>>> from greenserv_core.backends.fake import FakeBackend
>>> from greenserv_core.backends.base import GenerationSettings
>>> small = FakeBackend("small", reply=lambda m: "7", logprobs=lambda m, text: [-2.3])
>>> big = FakeBackend("big", joules_per_token=5.0, reply=lambda m: "8")
>>> cascade = CascadeBackend(small, big, threshold=0.5)
>>> result = cascade.generate([{"role": "user", "content": "3 + 5?"}], GenerationSettings(max_new_tokens=4))
>>> result.text, [(s.model, s.action) for s in result.chain]
('8', [('small', 'escalated'), ('big', 'answered')])
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import numbers
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from greenserv_core.async_bridge import caller_left
from greenserv_core.backends.abandoned import report_abandoned
from greenserv_core.backends.base import (
    ChainStep,
    GenerationResult,
    GenerationSettings,
    ModelBackend,
    ModelInfo,
    StreamChunk,
    concurrency_of,
    next_piece,
    spent_after,
)
from greenserv_core.cascades.agreement import answers_agree
from greenserv_core.cascades.escalation import Verdict, distinct
from greenserv_core.confidence import ConfidenceSignal, VerifyingSignal, signal_for_task
from greenserv_core.energy.base import EnergyReading, combined_energy
from greenserv_core.errors import (
    CascadeMemberUnavailableError,
    InvalidInputError,
    ModelUnavailableError,
    readable_spend,
    spent_by,
)
from greenserv_core.messages import Message
from greenserv_core.tools import ParsedOutput, parse_tool_calls

__all__ = ["CASCADE_SEPARATOR", "CascadeBackend", "Escalate", "cascade_name"]

CASCADE_SEPARATOR = "->"
"""Between the two model names in a cascade's name: ``"small->big"``."""

logger = logging.getLogger(__name__)

Escalate = Callable[[float | None], Verdict]
"""Decides after the first answer, from its confidence (``None``: no signal). A rule with a
``first_spent(joules)`` method hears first what the first step spent (its answer, and a
question asked about it), as a router's rule checks it against the query's cap on joules; one
with a ``first_took(seconds)`` method, the seconds it took, against its latency limit; one
with a ``first_signal(name)`` method, the name of the confidence signal that read the answer
(the cascade's own, or the one chosen for the answer's length), since confidences of signals
of other scales are weighed apart. A rule with a ``kept_after_failure()`` method hears when an
escalation it decided was not made and the first answer was kept instead (the second model
failed before it answered, or too little of ``max_time_s`` was left for it), before any of it
is streamed (a router's rule then learns that answer's score as the first model's)."""


def cascade_name(first: str, then: str) -> str:
    """The name of the cascade from ``first`` to ``then``.

    >>> cascade_name("smollm2-135m", "gemma-3-270m")
    'smollm2-135m->gemma-3-270m'
    """
    return f"{first}{CASCADE_SEPARATOR}{then}"


def _prior(first: float | None, then: float | None) -> float | None:
    """A per-token prior for the cascade: both models' (an upper bound until it is measured)."""
    return None if first is None or then is None else first + then


_NOBODY_WAITS = "kept: the caller stopped waiting"
"""Why a cascade keeps its first answer when its caller has left
(:func:`~greenserv_core.async_bridge.caller_left`)."""

_LEAST_TIME_SHARE = 0.1
"""The share of ``max_time_s`` that must be left after the first step for the second model to run."""


class CascadeBackend:
    """``first`` answers; ``then`` answers instead when the cascade escalates.

    Parameters are stored as given: the two backends, the confidence ``signal`` (``None``:
    chosen per query by answer length) and the fixed ``threshold`` used when no learned rule
    is given to :meth:`generate`; ``keep_first_on_failure`` keeps the first answer where the
    second model fails before it answers (``False``: raise, and let the router ask another
    model). The name is ``"<first>-><then>"``; the context window is the smaller one, the
    capabilities those both models have.
    """

    def __init__(
        self,
        first: ModelBackend,
        then: ModelBackend,
        *,
        signal: ConfidenceSignal | VerifyingSignal | None = None,
        threshold: float = 0.5,
        keep_first_on_failure: bool = True,
    ) -> None:
        for role, backend in (("first", first), ("then", then)):
            if not isinstance(backend, ModelBackend) or isinstance(backend, CascadeBackend):
                raise InvalidInputError(f"the {role} model of a cascade must be a single ModelBackend, got {backend!r}")
        if first.info.name == then.info.name:
            raise InvalidInputError(f"a cascade needs two different models, got {first.info.name!r} twice")
        if signal is not None and (
            isinstance(signal, type) or not isinstance(signal, (ConfidenceSignal, VerifyingSignal))
        ):
            raise InvalidInputError(f"signal must be a ConfidenceSignal or a VerifyingSignal instance, got {signal!r}")
        self.first, self.then, self.signal = first, then, signal
        self.threshold, self.keep_first_on_failure = cascade_settings(threshold, keep_first_on_failure)
        a, b = first.info, then.info
        self._info = ModelInfo(
            name=cascade_name(a.name, b.name),
            context_window=min(a.context_window, b.context_window),
            capabilities=a.capabilities & b.capabilities,
            prior_joules_per_token=_prior(a.prior_joules_per_token, b.prior_joules_per_token),
            prior_seconds_per_token=_prior(a.prior_seconds_per_token, b.prior_seconds_per_token),
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def signal_name(self) -> str | None:
        """The name of the cascade's own signal (``None``: chosen per query by answer length)."""
        return None if self.signal is None else self.signal.name

    @property
    def max_concurrency(self) -> int:
        """Queries the cascade answers at once: as many as both its models serve at once (a
        batch routed to it then runs that many together, as on its members)."""
        return min(concurrency_of(self.first), concurrency_of(self.then))

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """The longer of the two models' counts: the prompt must fit both."""
        return max(self.first.count_tokens(messages), self.then.count_tokens(messages))

    @property
    def token_bound(self) -> Callable[[Sequence[Message]], int]:
        """The larger of the two models' bounds on their counts
        (:class:`~greenserv_core.routing.pool.BoundsTokenCounts`), where both have one; else
        ``AttributeError``, so that the cascade is counted exactly."""
        first, then = (getattr(model, "token_bound", None) for model in (self.first, self.then))
        if first is None or then is None:
            raise AttributeError("token_bound: a model of the cascade has no bound on its token counts")
        return lambda messages: max(first(messages), then(messages))

    def fixed_verdict(self, confidence: float | None) -> Verdict:
        """The fixed threshold's verdict on ``confidence`` (escalate below it, or without one)."""
        low = confidence is None or confidence < self.threshold
        if confidence is None:
            reason = "escalated: no confidence signal"
        else:
            shown = distinct(confidence, self.threshold)
            verb, sign = ("escalated", "<") if low else ("kept", "≥")
            reason = f"{verb}: confidence {shown[0]} {sign} threshold {shown[1]}"
        return Verdict(low, confidence, float("nan"), float("nan"), float("nan"), False, reason)

    def _first(
        self, messages: Sequence[Message], settings: GenerationSettings, escalate: Escalate | None
    ) -> tuple[GenerationResult, ChainStep, bool]:
        """The first model's answer, its step of the chain, and whether to escalate (by
        ``escalate``, default the fixed threshold). Where reading its confidence or deciding
        fails, what it spent is reported (:func:`~greenserv_core.backends.abandoned.report_abandoned`)
        for whoever runs the cascade to charge."""
        try:
            result = self.first.generate(messages, dataclasses.replace(settings, logprobs=True))
        except ModelUnavailableError as error:
            raise CascadeMemberUnavailableError(str(error), member=self.first.info.name, **spent_by(error)) from error
        try:
            if caller_left():  # nobody awaits the answer: no question about it, no second model
                return result, ChainStep.of_result(self.first.info.name, result, None, "kept", _NOBODY_WAITS), False
            signal = self.signal if self.signal is not None else signal_for_task(settings.max_new_tokens)
            if isinstance(signal, VerifyingSignal):  # a second question to the first model: its cost is the answer's
                try:
                    limit = settings.max_time_s  # the questions have what the answer left of it
                    verification = (
                        signal.verify(messages, result, self.first, max_time_s=limit - result.latency_s)
                        if limit is not None and _takes_time_limit(signal)
                        else signal.verify(messages, result, self.first)
                    )
                except ModelUnavailableError as error:  # the answer it was to check was spent too
                    raise CascadeMemberUnavailableError(
                        str(error), member=self.first.info.name, **spent_after([result], error)
                    ) from error
                own, result = result, verification.charged(result)
                confidence = _confidence(verification.confidence, signal.name)
            else:
                own, confidence = result, _confidence(signal(result), signal.name)
            heard = getattr(escalate, "first_spent", None)
            if callable(heard):  # a rule that checks a cap on joules hears what the first step spent
                heard(result.energy.joules)
            timed = getattr(escalate, "first_took", None)
            if callable(timed):  # and one that checks a latency limit, the seconds it took
                timed(result.latency_s)
            named = getattr(escalate, "first_signal", None)
            if callable(named):  # and a learned rule, which signal read the confidence (each has its own correction)
                named(signal.name)
            verdict = (
                Verdict.kept(confidence, _NOBODY_WAITS)
                if caller_left()  # (it left while the confidence was read, whichever rule decides)
                else (escalate or self.fixed_verdict)(confidence)
            )
            step = ChainStep.of_result(
                self.first.info.name, result, confidence, "escalated" if verdict.escalate else "kept", verdict.reason
            )
            step = dataclasses.replace(
                step,
                confidence_joules=result.energy.joules - own.energy.joules,
                confidence_s=result.latency_s - own.latency_s,
            )
            return result, step, verdict.escalate
        except ModelUnavailableError:  # (it says what was spent)
            raise
        except BaseException:  # (a confidence it refuses): the answer was spent all the same, and is charged
            report_abandoned(result.energy, result.latency_s)  # (with its question's cost, once asked)
            raise

    def _kept(self, result: GenerationResult, step: ChainStep, settings: GenerationSettings) -> GenerationResult:
        """The first answer kept: its chain, and log-probabilities only if they were asked for."""
        kept = dataclasses.replace(result, chain=(step,))
        return kept if settings.logprobs else dataclasses.replace(kept, token_logprobs=None)

    def _kept_instead(
        self,
        first: GenerationResult,
        step: ChainStep,
        settings: GenerationSettings,
        reason: str,
        escalate: Escalate | None,
    ) -> GenerationResult:
        """The first answer kept although the rule escalated (its step says ``reason``): the
        rule hears of it (``kept_after_failure``), so that the answer's score labels the first model."""
        heard = getattr(escalate, "kept_after_failure", None)
        if callable(heard):
            heard()
        return self._kept(first, dataclasses.replace(step, action="kept", reason=reason), settings)

    def _then_settings(self, first: GenerationResult, settings: GenerationSettings) -> GenerationSettings | str:
        """The second model's settings: what the first step left of ``max_time_s``; where too
        little is left (less than a tenth), why the first answer is kept instead.

        >>> from greenserv_core.backends.fake import FakeBackend
        >>> cascade = CascadeBackend(FakeBackend("a"), FakeBackend("b"))
        >>> ran = GenerationResult("7", 5, 1, latency_s=0.3, energy=EnergyReading(1.0, "fake", False))
        >>> cascade._then_settings(ran, GenerationSettings(max_time_s=1.0)).max_time_s
        0.7
        >>> cascade._then_settings(ran, GenerationSettings(max_time_s=0.32))
        'kept: the first step took 0.3 s of the time limit of 0.32 s (max_time_s): too little is left for b'
        """
        limit = settings.max_time_s
        if limit is None:
            return settings
        left = limit - first.latency_s
        # (an unknown time, NaN, leaves nothing either; nor does a limit so small that its share rounds to 0)
        if not (left > 0 and left >= _LEAST_TIME_SHARE * limit):
            took, of = distinct(first.latency_s, limit)
            return (
                f"kept: the first step took {took} s of the time limit of {of} s (max_time_s): "
                f"too little is left for {self.then.info.name}"
            )
        return dataclasses.replace(settings, max_time_s=left)

    def _kept_after_failure(
        self,
        first: GenerationResult,
        step: ChainStep,
        settings: GenerationSettings,
        error: ModelUnavailableError,
        escalate: Escalate | None,
    ) -> GenerationResult:
        """The first answer kept because the second model failed before it answered: the
        failed call's joules and seconds count in the result's (not in the first model's step,
        whose cost is the first model's own; one that spent no joules leaves the reading as it was,
        as :func:`~greenserv_core.backends.base.spent_after` does), and the rule that escalated hears of it."""
        logger.warning(
            "%s failed before it answered (%s); keeping the answer of %s",
            self.then.info.name,
            error,
            self.first.info.name,
        )
        kept = self._kept_instead(first, step, settings, f"escalation failed: {error}", escalate)
        joules, seconds, measured = readable_spend(error)
        readings = [first.energy]
        if error.spent_joules != 0:  # one that spent nothing says nothing of how joules were read (as in spent_after)
            readings.append(EnergyReading(joules, error.spent_source or first.energy.source, measured))
        if len(readings) == 1 and seconds == 0:
            return kept
        return dataclasses.replace(kept, energy=combined_energy(readings), latency_s=first.latency_s + seconds)

    def _joined(
        self, first: GenerationResult, step: ChainStep, second: GenerationResult, settings: GenerationSettings
    ) -> GenerationResult:
        last = ChainStep.of_result(
            self.then.info.name,
            second,
            None,
            "answered",
            "the last model of the cascade",
            agreed=_agreed(first.text, second.text, settings),
        )
        return dataclasses.replace(
            second,
            input_tokens=first.input_tokens + second.input_tokens,
            output_tokens=first.output_tokens + second.output_tokens,
            latency_s=first.latency_s + second.latency_s,
            energy=combined_energy([first.energy, second.energy]),
            chain=(step, last),
        )

    def generate(
        self, messages: Sequence[Message], settings: GenerationSettings, escalate: Escalate | None = None
    ) -> GenerationResult:
        """Answer with the first model, and with the second when ``escalate`` (default: the
        fixed threshold) says so. Log-probabilities of the kept answer are returned only
        when ``settings`` asked for them."""
        first, step, escalated = self._first(messages, settings, escalate)
        if not escalated:
            return self._kept(first, step, settings)
        then_settings = self._then_settings(first, settings)
        if isinstance(then_settings, str):  # no time left for the second model
            return self._kept_instead(first, step, settings, then_settings, escalate)
        try:
            second = self.then.generate(messages, then_settings)
        except ModelUnavailableError as error:
            if self.keep_first_on_failure:
                return self._kept_after_failure(first, step, settings, error, escalate)
            raise self._then_failed(error, first) from error
        except BaseException:  # the first answer was spent all the same
            report_abandoned(first.energy, first.latency_s)
            raise
        return self._joined(first, step, second, settings)

    def _then_failed(self, error: ModelUnavailableError, first: GenerationResult) -> CascadeMemberUnavailableError:
        return CascadeMemberUnavailableError(
            f"{self.then.info.name!r} failed after {self.first.info.name!r} answered "
            f"({first.energy.joules:.1f} J spent): {error}",
            member=self.then.info.name,
            **spent_after([first], error),
        )

    def stream(
        self, messages: Sequence[Message], settings: GenerationSettings, escalate: Escalate | None = None
    ) -> Iterator[StreamChunk]:
        """Stream only the answer that is kept: the first answer is generated whole and held
        back; kept, it is handed out as one piece; escalated, the second model's stream
        follows and the first answer is never shown."""
        first, step, escalated = self._first(messages, settings, escalate)
        if not escalated:
            yield from self._stream_kept(first, self._kept(first, step, settings))
            return
        then_settings = self._then_settings(first, settings)
        if isinstance(then_settings, str):  # no time left for the second model
            yield from self._stream_kept(first, self._kept_instead(first, step, settings, then_settings, escalate))
            return
        try:
            pieces = iter(self.then.stream(messages, then_settings))
            chunk = next_piece(pieces, self.then.info.name)  # (one that ends at once failed before it answered)
        except ModelUnavailableError as error:  # before any piece: keep the first answer, or route around it
            if self.keep_first_on_failure:
                yield from self._stream_kept(first, self._kept_after_failure(first, step, settings, error, escalate))
                return
            raise self._then_failed(error, first) from error
        except BaseException:  # the first answer was spent all the same
            report_abandoned(first.energy, first.latency_s)
            raise
        while True:
            if chunk.result is not None:
                yield StreamChunk("", self._joined(first, step, chunk.result, settings))
                return
            try:
                yield chunk
            except GeneratorExit:  # both models ran: the first answer, and the second until now
                report_abandoned(first.energy, first.latency_s)
                close = getattr(pieces, "close", None)
                if callable(close):
                    close()
                raise
            try:
                chunk = next_piece(pieces, self.then.info.name)
            except ModelUnavailableError as error:  # mid-stream, or ended: the first answer was spent too
                raise self._then_failed(error, first) from error
            except BaseException:  # another error mid-stream: the first answer was spent all the same
                report_abandoned(first.energy, first.latency_s)
                raise

    @staticmethod
    def _stream_kept(first: GenerationResult, kept: GenerationResult) -> Iterator[StreamChunk]:
        """The first answer, kept, as one piece and then its result."""
        try:
            yield StreamChunk(first.text)
        except GeneratorExit:  # closed before the result: what was kept was spent all the same
            report_abandoned(kept.energy, kept.latency_s)
            raise
        yield StreamChunk("", kept)


def _agreed(first: str, second: str, settings: GenerationSettings) -> bool:
    """Whether two answers to one request agree, read as the request asked for them: where tools
    were offered, by their tool calls, as ``(name, arguments)`` in any order (the prose only
    where neither answer calls one); in JSON mode, by their JSON values (the prose where either
    is not JSON); otherwise, and then, by :func:`~greenserv_core.cascades.agreement.answers_agree`.

    >>> from greenserv_core.backends.base import JsonFormat
    >>> _agreed('{"answer": "B", "why": "x"}', '{"answer": "C", "why": "x"}', GenerationSettings(json=JsonFormat()))
    False
    """
    if settings.tools:
        calls = [_calls(parse_tool_calls(text, settings.tools)) for text in (first, second)]
        if calls[0] or calls[1]:
            return calls[0] == calls[1]
    if settings.json is not None:
        try:
            values = json.loads(first), json.loads(second)
        except (ValueError, RecursionError):  # not JSON (or nested too deeply to read): read as prose
            pass
        else:
            return _values_agree(*values)
    return answers_agree(first, second)


_ANSWER_KEYS = ("answer", "final_answer", "choice", "label", "result")
"""Keys that name an object's answer: where both objects have one, only it is compared."""
_ASIDE_KEYS = frozenset({"confidence", "probability", "certainty", "score"})
"""Keys of how sure an answer is, not of what it says."""
_REASONING_KEYS = frozenset({"reasoning", "reason", "why", "explanation", "rationale", "justification", "thoughts"})
"""Keys of how an answer was reached: left out where they hold more than a few words."""


def _values_agree(first: object, second: object) -> bool:
    """Two JSON values agree: objects by their answer where both name one (``answer``,
    ``final_answer``, ``choice``, ``label``, ``result``), else by the same keys whose values
    agree, leaving out a reasoning (``reasoning``, ``why`` … of more than three words) and how
    sure the model was (``confidence`` …) while other fields remain; texts by
    :func:`~greenserv_core.cascades.agreement.answers_agree` (``"Paris"`` and ``"paris"``),
    numbers by value (``2`` and ``2.0``; ``42`` and ``"42"``), anything else equal.

    >>> _values_agree({"answer": 42, "reasoning": "6 times 7"}, {"answer": "42", "reasoning": "40 plus 2"})
    True
    >>> _values_agree({"city": "Paris", "why": "its capital since 987"}, {"city": "Lyon", "why": "its capital"})
    False
    """
    if isinstance(first, dict) and isinstance(second, dict):
        key = next((k for k in _ANSWER_KEYS if k in first and k in second), None)
        if key is not None:
            return _values_agree(first[key], second[key])
        if first.keys() != second.keys():
            return False
        kept = [k for k in first if not (_aside(k, first[k]) or _aside(k, second[k]))]
        return all(_values_agree(first[k], second[k]) for k in (kept or first))
    if isinstance(first, str) and isinstance(second, str):
        return answers_agree(first, second)
    if isinstance(first, (int, float)) and isinstance(second, str) and not isinstance(first, bool):
        return answers_agree(_written(first), second)
    if isinstance(second, (int, float)) and isinstance(first, str) and not isinstance(second, bool):
        return answers_agree(first, _written(second))
    return bool(first == second)


def _written(number: float) -> str:
    """A JSON number as an answer writes it, never in exponent form (``1e-05`` is ``0.00001``).

    >>> _written(1e-05), _written(42), _written(2.5)
    ('0.00001', '42', '2.5')
    """
    if isinstance(number, int) or not math.isfinite(number):
        return str(number)
    return np.format_float_positional(number, trim="-")


def _aside(key: str, value: object) -> bool:
    """Whether a field says how the answer was reached or how sure it is, not the answer."""
    name = key.lower()
    if name in _ASIDE_KEYS:
        return True
    return name in _REASONING_KEYS and isinstance(value, str) and len(value.split()) > 3


def _calls(parsed: ParsedOutput) -> Counter[str]:
    """An answer's tool calls, valid and refused, each as its name and arguments in one JSON text."""
    found: list[tuple[bool, str | None, object]] = [(True, c.name, _whole(c.arguments)) for c in parsed.tool_calls]
    found += [(False, c.name, _whole(c.arguments)) for c in parsed.invalid_tool_calls]
    return Counter(json.dumps(call, sort_keys=True, ensure_ascii=False, default=repr) for call in found)


def _whole(value: object) -> object:
    """``value`` with its whole floats as integers (``2.0`` is ``2``, as JSON values compare)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole(item) for item in value]
    return value


def _takes_time_limit(signal: VerifyingSignal) -> bool:
    """Whether ``signal.verify`` takes ``max_time_s`` (a signal written before it was part of
    :class:`VerifyingSignal` does not: its questions then have no limit of their own)."""
    try:
        parameters = inspect.signature(signal.verify).parameters.values()
    except (TypeError, ValueError):  # (no signature to read)
        return False
    return any(p.name == "max_time_s" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _confidence(value: object, signal: str) -> float | None:
    """A signal's confidence as both escalation rules take it: NaN is no signal (as the bundled
    signals read a NaN log-probability), a number outside [0, 1] is clipped to it, anything
    else is refused (:class:`InvalidInputError`).

    >>> _confidence(float("nan"), "s"), _confidence(1.0000000000000002, "s"), _confidence(None, "s")
    (None, 1.0, None)
    >>> _confidence(10**400, "s"), _confidence(-(10**400), "s")  # too large for a float: clipped too
    (1.0, 0.0)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"the confidence signal {signal!r} gave {value!r}, not a number in [0, 1] or None")
    try:
        number = float(value)
    except OverflowError:  # an integer (or fraction) past a float's range
        number = math.inf if value > 0 else -math.inf  # type: ignore[operator]  # (a Real compares with 0)
    return None if math.isnan(number) else min(1.0, max(0.0, number))


def cascade_settings(threshold: object, keep_first_on_failure: object) -> tuple[float, bool]:
    """A cascade's fixed ``threshold`` (in [0, 1]) and ``keep_first_on_failure`` (a bool),
    checked (:class:`InvalidInputError` otherwise), as a cascade or a saved router takes them."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= float(threshold) <= 1.0:
        raise InvalidInputError(f"threshold must be in [0, 1], got {threshold!r}")
    if not isinstance(keep_first_on_failure, bool):
        raise InvalidInputError(f"keep_first_on_failure must be True or False, got {keep_first_on_failure!r}")
    return float(threshold), keep_first_on_failure
