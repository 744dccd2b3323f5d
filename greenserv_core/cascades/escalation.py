"""The learned escalation rule of a cascade: keep the cheap answer, or pay for a stronger one.

After the first model ``A`` of a cascade ``A → B`` has answered, :class:`EscalationModel`
estimates the chance ``p`` that ``A``'s answer is right from the query's context ``x`` and the
answer's confidence ``c``, and escalates to ``B`` when the expected gain in accuracy is worth
``B``'s predicted joules at the λ in force::

    escalate  ⇔  (1 − λ) · (q_B + δ − p)  >  λ · energy_norm(B)

* ``p = clip(c + w_A · [x, c, 1])``: the confidence, read as a probability, plus a correction
  per first model and confidence signal learned by ridge regression on the labelled answers of
  ``A`` (so an uncalibrated or useless signal is learned away, per context; signals of other
  scales, such as an answer's probability and a low quantile of its tokens', or the router's
  estimate of ``A`` standing in where there is no signal, :data:`ESTIMATED`, each have their own);
* ``q_B``: the router's estimate of ``B``'s accuracy in this context (optimistically 1 until
  ``B`` has been scored ``informed_after`` times, so that a cascade to an untried model
  escalates and learns), and ``δ`` a learned offset per cascade of what ``B`` scored on the
  queries that reached it (queries ``A`` is unsure of are harder for ``B`` too), shrunk
  towards 0 by ``then_prior`` pseudo-answers.

Feedback scores the final answer only, so ``A``'s correctness is censored when a query
escalates. Labels for ``A`` therefore come from (i) every kept answer's score; (ii) the
stated agreement proxy: when ``B``'s answer agrees with ``A``'s, ``A`` is taken to score what
``B`` scored, and when they disagree and ``B`` scored at least 0.5, ``A`` is taken to be wrong
(a disagreement with a wrong ``B`` says nothing); (iii) exploration: with probability
``keep_rate`` an answer that would have escalated is kept, so that the region below the
threshold keeps getting honest labels.

>>> import numpy as np
>>> model = EscalationModel(2, keep_rate=0.0, seed=0)
>>> model.add("small", "small->big")
>>> x = np.array([1.0, 0.0])
>>> model.decide("small", "small->big", x, 0.9, then_accuracy=0.8, then_cost=0.1, value_scale=0.6).escalate
False
>>> model.decide("small", "small->big", x, 0.2, then_accuracy=0.8, then_cost=0.1, value_scale=0.6).escalate
True
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from greenserv_core.errors import InvalidInputError
from greenserv_core.quality import as_float
from greenserv_core.statistics import Statistics

__all__ = ["ESTIMATED", "EscalationModel", "Verdict", "check_confidence"]

_OWN_STREAM = 0x657363  # mixed into the seed, so that a policy seeded alike draws other numbers

ESTIMATED = "estimated-accuracy"
"""The signal name of the router's estimate of the first model's accuracy, where it stands in for a confidence."""

_NAMED = "first-signal/"
"""The statistics key of a named signal's sums: ``first-signal/["first", "signal"]/zz`` (a JSON pair, so that
no two pairs of names, nor the unnamed ``first/<first>/zz``, share a key, whatever "/" the names hold)."""


def distinct(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` written with 3 significant digits, or with as many more as it takes to
    tell them apart, so that a reason never reads "1 < 1".

    >>> distinct(0.9996, 0.9999), distinct(0.25, 0.5), distinct(0.5, 0.5)
    (('0.9996', '0.9999'), ('0.25', '0.5'), ('0.5', '0.5'))
    """
    for digits in range(3, 18):
        first, second = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if a == b or first != second:
            break
    return first, second


@dataclass(frozen=True)
class Verdict:
    """What the cascade does after its first answer, and why.

    ``probability`` is the estimated chance that the first answer is right; ``gain`` the
    expected accuracy gained by escalating, weighted by ``1 − λ``; ``cost`` the second model's
    energy cost at λ; ``explored``: kept although the rule said escalate (to keep learning)."""

    escalate: bool
    confidence: float | None
    probability: float
    gain: float
    cost: float
    explored: bool
    reason: str

    @classmethod
    def kept(cls, confidence: float | None, reason: str) -> Verdict:
        """The first answer kept without the rule weighing it (a cap, a caller gone, a cascade removed).

        >>> Verdict.kept(0.3, "kept: the cascade was removed").escalate
        False
        """
        return cls(False, confidence, math.nan, 0.0, 0.0, False, reason)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < float("inf"):
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_confidence(value: object, name: str = "confidence") -> float:
    """A confidence (or label) as a float in [0, 1], else :class:`InvalidInputError`.

    >>> check_confidence(np.float32(0.5))
    0.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= as_float(value) <= 1.0:
        raise InvalidInputError(f"{name} must be a number in [0, 1], got {value!r}")  # (10**400 too: no OverflowError)
    return float(value)


class EscalationModel:
    """Learns when each cascade should escalate (see the module's docstring).

    Parameters are stored as given: the context ``dimension``, ``keep_rate`` (the chance of
    keeping an answer that would escalate, to keep learning), ``ridge`` (the regularisation
    of each first model's correction), ``then_prior`` (pseudo-answers at offset 0 for
    each cascade's second model) and ``informed_after`` (scored answers of the second model
    before its estimate is trusted; until then it counts as always right). Learned state:
    ``firsts_`` (per first model, the sums ``Σ z zᵀ`` and ``Σ z (label − c)`` of its unnamed
    correction), ``signals_`` (per first model and signal name, the same sums of that signal's
    answers), ``thens_`` (per cascade, the sum of ``score − q_B`` and the count),
    ``labelled_thens_`` (per cascade, how many of those counted answers were taught from
    labelled rows, which the second model's own tally counts already) and ``cascades_``
    (each cascade's first model). ``seed`` seeds a random stream of the model's
    own: a policy given the same seed draws independent numbers.

    A correction is kept per first model and confidence ``signal`` (its name, as the
    ``signal`` keyword of :meth:`decide` and :meth:`learn` gives it; :data:`ESTIMATED` where
    the router's estimate stands in), fitted on that signal's sums plus the first model's
    unnamed ones: what was learned before signals were named (a saved state or shared
    statistics of an older version, which so seed every signal's correction) and what
    callers teach without a name (``signal=None``, the unnamed correction alone, as before).
    Both are plain sums, so replicas merge them by adding, and nothing is copied.
    """

    SETTINGS = ("keep_rate", "ridge", "then_prior", "informed_after")
    """The parameters a saved state keeps (all but the dimension and the seed)."""

    def __init__(
        self,
        dimension: int,
        *,
        keep_rate: float = 0.1,
        ridge: float = 1.0,
        then_prior: float = 10.0,
        informed_after: int = 10,
        seed: int | None = None,
    ) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise InvalidInputError(f"dimension must be a positive integer, got {dimension!r}")
        self.dimension = dimension
        self.keep_rate = check_confidence(keep_rate, "keep_rate")
        self.ridge = _check_positive("ridge", ridge)
        self.then_prior = _check_positive("then_prior", then_prior)
        if isinstance(informed_after, bool) or not isinstance(informed_after, int) or informed_after < 0:
            raise InvalidInputError(f"informed_after must be a non-negative integer, got {informed_after!r}")
        self.informed_after = informed_after
        self.seed = seed
        self.firsts_: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.signals_: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.thens_: dict[str, np.ndarray] = {}
        self.labelled_thens_: dict[str, float] = {}
        self.cascades_: dict[str, str] = {}
        self.rng_ = np.random.default_rng(None if seed is None else [seed, _OWN_STREAM])

    # ---- the cascades ------------------------------------------------------------------
    def add(self, first: str, cascade: str) -> None:
        """Start learning for ``cascade`` whose first model is ``first`` (kept if known)."""
        width = self.dimension + 2
        self.firsts_.setdefault(first, (np.zeros((width, width)), np.zeros(width)))
        self.thens_.setdefault(cascade, np.zeros(2))
        self.labelled_thens_.setdefault(cascade, 0.0)
        self.cascades_[cascade] = first

    def remove(self, cascade: str) -> None:
        """Forget a cascade (its first model's correction stays while another cascade uses it)."""
        first = self.cascades_.pop(cascade, None)
        self.thens_.pop(cascade, None)
        self.labelled_thens_.pop(cascade, None)
        if first is not None and first not in self.cascades_.values():
            self.firsts_.pop(first, None)
            for pair in [pair for pair in self.signals_ if pair[0] == first]:
                del self.signals_[pair]

    # ---- deciding ----------------------------------------------------------------------
    def _z(self, x: np.ndarray, confidence: float) -> np.ndarray:
        check_confidence(confidence)
        return np.concatenate([np.asarray(x, dtype=np.float64), [confidence, 1.0]])

    def _sums(self, first: str, signal: str | None) -> tuple[np.ndarray, np.ndarray]:
        """The sums the correction of ``first`` under ``signal`` is fitted on: the unnamed ones,
        plus the signal's own (see the class's docstring)."""
        zz, zy = self.firsts_[first]
        own = None if signal is None else self.signals_.get((first, signal))
        return (zz, zy) if own is None else (zz + own[0], zy + own[1])

    def probability(self, first: str, x: np.ndarray, confidence: float, *, signal: str | None = None) -> float:
        """The estimated chance that ``first``'s answer with this ``confidence`` of ``signal`` is right."""
        zz, zy = self._sums(first, signal)
        z = self._z(x, confidence)
        if not zy.any():
            return float(np.clip(confidence, 0.0, 1.0))
        weights = np.linalg.solve(zz + self.ridge * np.eye(len(z)), zy)
        return float(np.clip(confidence + z @ weights, 0.0, 1.0))

    def then_offset(self, cascade: str) -> float:
        """The learned offset ``δ`` of the second model's accuracy on escalated queries."""
        residual, count = self.thens_[cascade]
        return float(residual / (count + self.then_prior))

    def decide(
        self,
        first: str,
        cascade: str,
        x: np.ndarray,
        confidence: float | None,
        *,
        then_accuracy: float,
        then_cost: float,
        value_scale: float,
        first_accuracy: float | None = None,
        then_scored: float | None = None,
        explore: bool = True,
        signal: str | None = None,
    ) -> Verdict:
        """Escalate or keep. ``signal`` names the confidence's signal (``None``: the unnamed
        correction). Without a confidence, ``first_accuracy`` (the router's estimate of the
        first model in this context; 0.5 when ``None``) stands in for it, under :data:`ESTIMATED`.
        ``then_scored`` is how often the second model was scored (``None``: trust
        ``then_accuracy``); below ``informed_after`` it counts as always right. ``explore=False``
        never keeps an answer to explore (and draws nothing from the generator)."""
        if cascade not in self.cascades_:
            raise InvalidInputError(f"unknown cascade {cascade!r}")
        value = confidence
        if value is None:
            value = 0.5 if first_accuracy is None else float(np.clip(first_accuracy, 0.0, 1.0))
            signal = ESTIMATED
        p = self.probability(first, x, value, signal=signal)
        informed = then_scored is None or then_scored >= self.informed_after
        q = float(np.clip((then_accuracy if informed else 1.0) + self.then_offset(cascade), 0.0, 1.0))
        gain = value_scale * (q - p)
        source = "confidence" if confidence is not None else "no confidence signal: estimated accuracy"
        if gain <= then_cost:
            shown = distinct(gain, then_cost)
            reason = f"kept: {source} {value:.3g} → P(right) {p:.3g}; gain {shown[0]} ≤ cost {shown[1]}"
            return Verdict(False, confidence, p, gain, then_cost, False, reason)
        shown = distinct(gain, then_cost)
        if explore and self.keep_rate and self.rng_.random() < self.keep_rate:
            reason = f"kept to explore: P(right) {p:.3g}; gain {shown[0]} > cost {shown[1]}"
            return Verdict(False, confidence, p, gain, then_cost, True, reason)
        reason = f"escalated: {source} {value:.3g} → P(right) {p:.3g}; gain {shown[0]} > cost {shown[1]}"
        return Verdict(True, confidence, p, gain, then_cost, False, reason)

    # ---- learning ----------------------------------------------------------------------
    def learn_first(
        self, first: str, x: np.ndarray, confidence: float, label: float, *, signal: str | None = None
    ) -> None:
        """Teach ``first``'s correction under ``signal`` (``None``: the unnamed one) one labelled
        answer (``label`` in [0, 1])."""
        if first not in self.firsts_:
            return  # its cascades were removed meanwhile
        label = check_confidence(label, "label")
        z = self._z(x, confidence)
        if signal is None:
            zz, zy = self.firsts_[first]
        else:
            zz, zy = self.signals_.setdefault((first, signal), (np.zeros((len(z), len(z))), np.zeros(len(z))))
        zz += np.outer(z, z)
        zy += z * (label - confidence)

    def learn_then(self, cascade: str, then_accuracy: float, score: float, *, labelled: bool = False) -> None:
        """Teach ``cascade``'s offset what its second model scored on an escalated query
        (``labelled``: a labelled row's answer, which the second model's tally counts too)."""
        if cascade in self.thens_:
            self.thens_[cascade] += (score - then_accuracy, 1.0)
            if labelled:
                self.labelled_thens_[cascade] = self.labelled_thens_.get(cascade, 0.0) + 1.0

    def routed_escalations(self, cascade: str) -> float:
        """How many of ``cascade``'s escalations were scored as routed answers (not taught
        from labelled rows)."""
        return float(self.thens_[cascade][1] - self.labelled_thens_.get(cascade, 0.0))

    def learn(
        self,
        first: str,
        cascade: str,
        x: np.ndarray,
        confidence: float,
        *,
        escalated: bool,
        score: float,
        then_accuracy: float | None,
        agreed: bool | None,
        signal: str | None = None,
    ) -> str | None:
        """Learn from the final answer's ``score`` (``confidence`` read by ``signal``, as
        :meth:`decide` takes it); returns how ``first`` was labelled (``"kept"``, ``"agreed"``,
        ``"disagreed"``) or ``None`` when it was not."""
        if not escalated:
            self.learn_first(first, x, confidence, score, signal=signal)
            return "kept"
        if then_accuracy is not None:
            self.learn_then(cascade, then_accuracy, score)
        if agreed:
            self.learn_first(first, x, confidence, score, signal=signal)
            return "agreed"
        if agreed is False and score >= 0.5:
            self.learn_first(first, x, confidence, 0.0, signal=signal)
            return "disagreed"
        return None

    # ---- sharing and saving ------------------------------------------------------------
    def statistics(self) -> Statistics:
        sums: dict[str, np.ndarray] = {}
        for first, (zz, zy) in self.firsts_.items():
            sums[f"first/{first}/zz"] = zz.copy()
            sums[f"first/{first}/zy"] = zy.copy()
        for pair, (zz, zy) in self.signals_.items():
            named = _NAMED + json.dumps(pair)
            sums[f"{named}/zz"], sums[f"{named}/zy"] = zz.copy(), zy.copy()
        for cascade, then in self.thens_.items():
            sums[f"then/{cascade}"] = then.copy()
            # beside the offset, under a key of its own: a replica of a version before reads what it knows
            sums[f"then-labelled/{cascade}"] = np.array([self.labelled_thens_.get(cascade, 0.0)])
        return Statistics(sums=sums)

    def load_statistics(self, statistics: Statistics) -> None:
        for first in self.firsts_:
            zz, zy = statistics.sums.get(f"first/{first}/zz"), statistics.sums.get(f"first/{first}/zy")
            if zz is not None and zy is not None:
                self.firsts_[first] = (zz.copy(), zy.copy())
        for key, zz in statistics.sums.items():
            pair = _named_pair(key)
            zy = statistics.sums.get(key[: -len("zz")] + "zy")
            if pair is not None and pair[0] in self.firsts_ and zy is not None:
                self.signals_[pair] = (zz.copy(), zy.copy())
        for cascade in self.thens_:
            then = statistics.sums.get(f"then/{cascade}")
            if then is not None:
                self.thens_[cascade] = then.copy()
            labelled = statistics.sums.get(f"then-labelled/{cascade}")
            if labelled is not None:
                self.labelled_thens_[cascade] = float(labelled[0])

    def state_dict(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in self.SETTINGS},
            "cascades": dict(self.cascades_),
            "firsts": {first: [zz.tolist(), zy.tolist()] for first, (zz, zy) in self.firsts_.items()},
            "signals": [
                [first, signal, zz.tolist(), zy.tolist()] for (first, signal), (zz, zy) in self.signals_.items()
            ],
            "thens": {cascade: then.tolist() for cascade, then in self.thens_.items()},
            "labelled_thens": dict(self.labelled_thens_),
            "rng": self.rng_.bit_generator.state,
        }

    def params(self) -> dict[str, Any]:
        """The parameters, as ``__init__`` takes them (without the dimension)."""
        return {**{name: getattr(self, name) for name in self.SETTINGS}, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; cascades of this model missing from it stay fresh (a state
        saved before signals were named holds only the unnamed corrections)."""
        width = self.dimension + 2
        for first, (zz, zy) in state["firsts"].items():
            if first in self.firsts_:
                loaded = np.asarray(zz, dtype=np.float64), np.asarray(zy, dtype=np.float64)
                if loaded[0].shape != (width, width) or loaded[1].shape != (width,):
                    raise InvalidInputError(f"the escalation state of {first!r} has another context dimension")
                self.firsts_[first] = loaded
        # the named sums of the first models the state holds are its own (none, in a state saved before)
        signals = {pair: sums for pair, sums in self.signals_.items() if pair[0] not in state["firsts"]}
        for first, signal, zz, zy in state.get("signals") or []:
            if first in self.firsts_:
                loaded = np.asarray(zz, dtype=np.float64), np.asarray(zy, dtype=np.float64)
                if loaded[0].shape != (width, width) or loaded[1].shape != (width,):
                    raise InvalidInputError(f"the escalation state of {first!r} has another context dimension")
                signals[(str(first), str(signal))] = loaded
        self.signals_ = signals
        for cascade, then in state["thens"].items():
            if cascade in self.thens_:
                loaded_then = np.asarray(then, dtype=np.float64)
                if loaded_then.shape != (2,) or not np.all(np.isfinite(loaded_then)):
                    raise InvalidInputError(f"the escalation state of {cascade!r} holds no offset and count: {then!r}")
                self.thens_[cascade] = loaded_then
        for cascade, count in (state.get("labelled_thens") or {}).items():
            if cascade in self.thens_:
                self.labelled_thens_[cascade] = float(count)
        self.rng_.bit_generator.state = state["rng"]


def _named_pair(key: str) -> tuple[str, str] | None:
    """The (first model, signal) of a named signal's ``zz`` statistics key, else ``None``.

    >>> _named_pair('first-signal/["a/b", "c"]/zz'), _named_pair("first/a/zz")
    (('a/b', 'c'), None)
    """
    if not key.startswith(_NAMED) or not key.endswith("/zz"):
        return None
    try:
        pair = json.loads(key[len(_NAMED) : -len("/zz")])
    except ValueError:
        return None
    if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(name, str) for name in pair):
        return None
    return pair[0], pair[1]
