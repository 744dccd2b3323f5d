"""Peer contextual-bandit engines, as benchmark baselines for the replay (never for routing).

Each peer is a :class:`~greenserv_core.bandits.Policy`, so it plugs into the real router as
``GreenServRouter(models, policy=make_peer("vw-squarecb", dimension, seed=0), ...)``:

* ``vw-squarecb`` (:class:`VWSquareCB`): Vowpal Wabbit ``--cb_explore_adf --squarecb``, a
  regression oracle whose action distribution follows SquareCB (Foster & Rakhlin, 2020);
* ``vw-epsilon`` (:class:`VWEpsilonGreedy`): Vowpal Wabbit ``--cb_explore_adf --epsilon 0.1``;
* ``mabwiser-linucb`` (:class:`MabwiserLinUCB`): MABWiser's disjoint ``LinUCB(alpha=1.0)``.

Peers are *general* contextual bandits: unlike GreenServ's own policies they do not split the
reward into a learned accuracy part and a known energy part. They learn the full reward
``r = value_scale · accuracy − cost`` of the decision (``value_scale = 1 − λ`` and
``cost = λ · predicted energy_norm``, both as the router gave them at ``decide``). What they
see is what our policies see: the context vector (shared features ``x0, x1, …``, zeros left
out) and, per arm, its identity and its known cost (a numeric action feature). The VW peers
learn shared × action interactions (``-q SA``), i.e. per-arm context effects.

The router's ``update(arm, context, accuracy)`` carries no decision id, so a peer remembers
its recent decisions by (arm, context) and matches feedback to the newest one. Feedback that
matches no decision (rows taught from a table, routed by nobody) is learned as if the arm had
been chosen uniformly at random (probability ``1 / number of arms``) at no cost
(``value_scale = 1``, ``cost = 0``, so ``r = accuracy``): on another scale than a routed
answer's reward, so the replay refuses peers together with a warm start.

Peers cannot be saved or shared between replicas. Vowpal Wabbit comes with the ``bench`` extra
and MABWiser with the ``peers`` extra; each is imported only when its peer is made.
"""

from __future__ import annotations

import importlib
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from greenserv_core.bandits.base import ArmPrior, ArmScore, Choice, Policy
from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.evaluation.extras import MissingExtraError, bench_import

__all__ = [
    "PEERS",
    "MabwiserLinUCB",
    "PeerPolicy",
    "VWEpsilonGreedy",
    "VWPolicy",
    "VWSquareCB",
    "make_peer",
    "peer_names",
]

_PER_KEY = 16
"""At most this many decisions are remembered per (arm, context)."""


@dataclass(frozen=True)
class _Decision:
    """What a peer needs to learn a decision's full reward later."""

    probability: float
    value_scale: float
    cost: float
    lines: tuple[str, ...] = ()
    """VW only: the multi-line example (shared line, then one line per eligible arm)."""
    chosen: int = 0
    """VW only: the chosen arm's index among the action lines."""


class PeerPolicy(Policy):
    """Base of the peers: validation, decision memory and the full-reward update.

    Subclasses implement :meth:`_arm_scores` (a score per eligible arm, at the router's
    ``value_scale`` and ``costs``), :meth:`_pick` and :meth:`_learn`. ``max_pending`` bounds
    the remembered decisions: that many (arm, context) pairs, the newest ``16`` of each.
    """

    def __init__(self, dimension: int, *, seed: int | None = None, max_pending: int = 10_000) -> None:
        super().__init__(dimension, seed=seed)
        if not isinstance(max_pending, int) or max_pending < 1:
            raise InvalidInputError(f"max_pending must be a positive integer, got {max_pending!r}")
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple[str, bytes], list[_Decision]] = OrderedDict()

    # ---- choosing -----------------------------------------------------------------------
    def decide(
        self,
        context: np.ndarray,
        eligible_arms: Sequence[str] | None = None,
        *,
        value_scale: float = 1.0,
        costs: Mapping[str, float] | None = None,
    ) -> Choice:
        """Choose an arm; each :class:`ArmScore` has the peer's score as ``estimate`` and ``score``."""
        x, arms = self._check_decision(context, eligible_arms)
        known = {arm: float((costs or {}).get(arm, 0.0)) for arm in arms}
        scores, lines = self._arm_scores(x, arms, float(value_scale), known)
        arm, explored, probability = self._pick(scores)
        self._remember(arm, x, _Decision(probability, float(value_scale), known[arm], lines, arms.index(arm)))
        self.t_ += 1
        return Choice(arm, {a: ArmScore(s, 0.0, known[a], s) for a, s in scores.items()}, explored)

    def _estimates(self, context: np.ndarray, arms: Sequence[str]) -> dict[str, tuple[float, float]]:
        scores, _ = self._arm_scores(context, arms, 1.0, dict.fromkeys(arms, 0.0))
        return {arm: (score, 0.0) for arm, score in scores.items()}

    @abstractmethod
    def _arm_scores(
        self, x: np.ndarray, arms: Sequence[str], value_scale: float, costs: Mapping[str, float]
    ) -> tuple[dict[str, float], tuple[str, ...]]:
        """A score per arm, and the VW example lines (empty for other engines)."""

    @abstractmethod
    def _pick(self, scores: Mapping[str, float]) -> tuple[str, bool, float]:
        """The chosen arm, whether it was exploratory, and its probability."""

    # ---- learning -----------------------------------------------------------------------
    def update(self, arm: str, context: np.ndarray, reward: float) -> None:
        """Learn ``reward`` (the accuracy) of ``arm`` at ``context``: the full reward
        ``value_scale · reward − cost`` of the newest matching decision (see the module)."""
        self._require_arm(arm)
        x = self._check_context(context)
        accuracy = self._check_reward(reward)
        decision = self._recall(arm, x)
        if decision is None:
            decision = _Decision(1.0 / len(self.arms_), 1.0, 0.0)
        self._learn(arm, x, decision, decision.value_scale * accuracy - decision.cost)

    @abstractmethod
    def _learn(self, arm: str, x: np.ndarray, decision: _Decision, full_reward: float) -> None: ...

    def _remember(self, arm: str, x: np.ndarray, decision: _Decision) -> None:
        key = (arm, x.tobytes())
        stack = self._pending.pop(key, [])
        stack.append(decision)
        del stack[:-_PER_KEY]
        self._pending[key] = stack
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)

    def _recall(self, arm: str, x: np.ndarray) -> _Decision | None:
        key = (arm, x.tobytes())
        stack = self._pending.get(key)
        if not stack:
            return None
        decision = stack.pop()
        if not stack:
            del self._pending[key]
        return decision

    def remove_arm(self, name: str) -> None:
        super().remove_arm(name)
        for key in [key for key in self._pending if key[0] == name]:
            del self._pending[key]

    # ---- not saveable -------------------------------------------------------------------
    def _new_arm_state(self) -> None:
        return None

    def _not_saveable(self) -> StateFileError:
        return StateFileError(
            f"the {self.name!r} peer ({type(self).__name__}) is a benchmark baseline: it cannot be saved"
        )

    def _arm_state(self, state: Any) -> dict[str, Any]:
        raise self._not_saveable()

    def _load_arm_state(self, data: dict[str, Any]) -> Any:
        raise self._not_saveable()

    def state_dict(self) -> dict[str, Any]:
        raise self._not_saveable()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise self._not_saveable()


def _vw_seed(seed: int) -> int:
    """A seed VW takes (an unsigned 64-bit integer): ``seed`` itself when it fits, else one derived from it.

    >>> _vw_seed(7), _vw_seed(2**64) < 2**64
    (7, True)
    """
    if seed < 2**64:
        return seed
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])


def _number(value: float) -> str:
    return format(value, ".9g")


class VWPolicy(PeerPolicy):
    """A Vowpal Wabbit ``--cb_explore_adf`` learner; the action is drawn from VW's pmf with the
    policy's own seeded generator. ``arguments`` are extra VW command-line options.

    Shared line ``shared |S x0 x3:0.5 …``; one action line per eligible arm, ``|A a<id> cost:<c>``
    (``<id>`` numbers the arms in the order they were added; a re-added arm starts afresh);
    a learned example labels the chosen line ``0:<−full reward>:<probability>``.
    """

    def __init__(
        self, dimension: int, *, seed: int | None = None, arguments: str = "", max_pending: int = 10_000
    ) -> None:
        super().__init__(dimension, seed=seed, max_pending=max_pending)
        self.arguments = arguments
        vw = bench_import("vowpalwabbit")
        options = f"--cb_explore_adf {self._exploration()} -q SA --quiet {arguments}"
        if seed is not None:
            options += f" --random_seed {_vw_seed(seed)}"
        self.workspace_: Any = vw.Workspace(options.strip())
        self._tokens: dict[str, str] = {}
        self._added = 0

    @abstractmethod
    def _exploration(self) -> str:
        """VW's exploration options."""

    def add_arm(self, name: str, prior: ArmPrior | None = None) -> None:
        super().add_arm(name, prior)  # a prior is refused: peers take no prior beliefs
        self._tokens[name] = f"a{self._added}"
        self._added += 1

    def remove_arm(self, name: str) -> None:
        super().remove_arm(name)
        del self._tokens[name]

    def params(self) -> dict[str, Any]:
        return {"arguments": self.arguments, "max_pending": self.max_pending}

    def _lines(self, x: np.ndarray, arms: Sequence[str], costs: Mapping[str, float]) -> tuple[str, ...]:
        shared = " ".join(f"x{i}" if v == 1.0 else f"x{i}:{_number(v)}" for i, v in enumerate(x) if v != 0.0)
        actions = tuple(f"|A {self._tokens[arm]} cost:{_number(costs.get(arm, 0.0))}" for arm in arms)
        return (f"shared |S {shared}", *actions)

    def _arm_scores(
        self, x: np.ndarray, arms: Sequence[str], value_scale: float, costs: Mapping[str, float]
    ) -> tuple[dict[str, float], tuple[str, ...]]:
        lines = self._lines(x, arms, costs)
        pmf = self.workspace_.predict(list(lines))
        return {arm: float(p) for arm, p in zip(arms, pmf, strict=True)}, lines

    def _pick(self, scores: Mapping[str, float]) -> tuple[str, bool, float]:
        arms = list(scores)
        pmf = np.array([scores[arm] for arm in arms], dtype=np.float64)
        pmf = pmf / pmf.sum()
        index = int(self.rng_.choice(len(arms), p=pmf))
        return arms[index], index != int(np.argmax(pmf)), float(pmf[index])

    def _learn(self, arm: str, x: np.ndarray, decision: _Decision, full_reward: float) -> None:
        if decision.lines:
            lines, chosen = list(decision.lines), decision.chosen
        else:  # not routed by this policy: every arm was an action, the chosen one uniformly
            arms = self.arms
            lines, chosen = list(self._lines(x, arms, {})), arms.index(arm)
        label = f"0:{_number(-full_reward)}:{_number(decision.probability)} "
        lines[chosen + 1] = label + lines[chosen + 1]
        self.workspace_.learn(lines)


class VWSquareCB(VWPolicy):
    """Vowpal Wabbit ``--cb_explore_adf --squarecb`` (VW's default γ schedule).

    >>> import numpy as np
    >>> policy = VWSquareCB(2, seed=0); policy.add_arm("a"); policy.add_arm("b")
    >>> choice = policy.decide(np.array([1.0, 0.0]), costs={"a": 0.1, "b": 0.3})
    >>> round(sum(s.score for s in choice.scores.values()), 6)  # the scores are VW's pmf
    1.0
    >>> policy.update(choice.arm, np.array([1.0, 0.0]), 1.0)
    """

    name = "vw-squarecb"

    def _exploration(self) -> str:
        return "--squarecb"


class VWEpsilonGreedy(VWPolicy):
    """Vowpal Wabbit ``--cb_explore_adf --epsilon <epsilon>``: the greedy arm with probability
    ``1 − ε + ε/K``, any other with ``ε/K``."""

    name = "vw-epsilon"

    def __init__(
        self,
        dimension: int,
        *,
        seed: int | None = None,
        epsilon: float = 0.1,
        arguments: str = "",
        max_pending: int = 10_000,
    ) -> None:
        if not 0 <= epsilon <= 1:
            raise InvalidInputError(f"epsilon must be in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)
        super().__init__(dimension, seed=seed, arguments=arguments, max_pending=max_pending)

    def _exploration(self) -> str:
        return f"--epsilon {_number(self.epsilon)}"

    def params(self) -> dict[str, Any]:
        return {**super().params(), "epsilon": self.epsilon}


class MabwiserLinUCB(PeerPolicy):
    """MABWiser's disjoint ``LinUCB(alpha)``: one ridge model per arm over ``[x, cost]`` (the
    context and the arm's known cost); the arm with the highest upper confidence bound wins,
    ties broken with the policy's own generator. Learns with ``partial_fit``, one row a time.

    Needs MABWiser (the ``peers`` extra: ``pip install 'greenserv[peers]'``).

    >>> import numpy as np
    >>> policy = MabwiserLinUCB(2, seed=0); policy.add_arm("a"); policy.add_arm("b")  # doctest: +SKIP
    >>> policy.update("a", np.array([1.0, 0.0]), 1.0)  # routed by nobody: r = accuracy  # doctest: +SKIP
    >>> policy.select(np.array([1.0, 0.0]))  # doctest: +SKIP
    'a'
    """

    name = "mabwiser-linucb"

    def __init__(
        self, dimension: int, *, seed: int | None = None, alpha: float = 1.0, max_pending: int = 10_000
    ) -> None:
        super().__init__(dimension, seed=seed, max_pending=max_pending)
        if not alpha >= 0:
            raise InvalidInputError(f"alpha must be >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        try:
            self._mab = importlib.import_module("mabwiser.mab")
        except ModuleNotFoundError as error:
            if (error.name or "").partition(".")[0] != "mabwiser":
                raise
            raise MissingExtraError(
                "the mabwiser-linucb peer needs the 'peers' extra (mabwiser is missing): pip install 'greenserv[peers]'"
            ) from error
        self._engine_seed = seed if seed is not None else int(self.rng_.integers(2**31))
        self.mab_: Any = None
        """The MABWiser engine, made with the first arm (it cannot be fitted without arms)."""

    def add_arm(self, name: str, prior: ArmPrior | None = None) -> None:
        super().add_arm(name, prior)  # a prior is refused: peers take no prior beliefs
        if self.mab_ is None:
            policy = self._mab.LearningPolicy.LinUCB(alpha=self.alpha)
            self.mab_ = self._mab.MAB([name], policy, seed=self._engine_seed)
            self.mab_.fit([], [], np.zeros((0, self.dimension + 1)))  # no data: fixes the number of features
        else:
            self.mab_.add_arm(name)

    def remove_arm(self, name: str) -> None:
        super().remove_arm(name)
        self.mab_.remove_arm(name)

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "max_pending": self.max_pending}

    def _arm_scores(
        self, x: np.ndarray, arms: Sequence[str], value_scale: float, costs: Mapping[str, float]
    ) -> tuple[dict[str, float], tuple[str, ...]]:
        rows = np.array([[*x, costs.get(arm, 0.0)] for arm in arms], dtype=np.float64)
        expected = self.mab_.predict_expectations(rows)
        if isinstance(expected, dict):
            expected = [expected]
        return {arm: float(expected[i][arm]) for i, arm in enumerate(arms)}, ()

    def _pick(self, scores: Mapping[str, float]) -> tuple[str, bool, float]:
        return self._argmax({arm: ArmScore(s, 0.0, 0.0, s) for arm, s in scores.items()}), False, 1.0

    def _learn(self, arm: str, x: np.ndarray, decision: _Decision, full_reward: float) -> None:
        self.mab_.partial_fit([arm], [full_reward], np.array([[*x, decision.cost]], dtype=np.float64))


def _vw_squarecb(dimension: int, *, seed: int | None = None) -> Policy:
    return VWSquareCB(dimension, seed=seed)


def _vw_epsilon(dimension: int, *, seed: int | None = None) -> Policy:
    return VWEpsilonGreedy(dimension, seed=seed)


def _mabwiser_linucb(dimension: int, *, seed: int | None = None) -> Policy:
    return MabwiserLinUCB(dimension, seed=seed)


PEERS: dict[str, Callable[..., Policy]] = {
    "vw-squarecb": _vw_squarecb,
    "vw-epsilon": _vw_epsilon,
    "mabwiser-linucb": _mabwiser_linucb,
}
"""Peer name → factory ``(dimension, *, seed)``."""


def peer_names() -> tuple[str, ...]:
    """The peers' names.

    >>> peer_names()
    ('vw-squarecb', 'vw-epsilon', 'mabwiser-linucb')
    """
    return tuple(PEERS)


def make_peer(name: str, dimension: int, seed: int | None = None) -> Policy:
    """A fresh peer policy by name (:class:`InvalidInputError` for an unknown one).

    >>> make_peer("vw-epsilon", 4, seed=0).name
    'vw-epsilon'
    """
    if name not in PEERS:
        raise InvalidInputError(f"unknown peer {name!r}; the peers are {', '.join(PEERS)}")
    return PEERS[name](dimension, seed=seed)
