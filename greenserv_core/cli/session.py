"""A chat session with a router, as ``greenserv chat --interactive`` runs it: a conversation
with history, and the commands that rate an answer and show what the router learned.

:class:`ChatSession` holds the conversation and turns each line into a query or a command; the
terminal loop (:func:`run_repl`) only reads lines. Commands:

``/good``, ``/bad``, ``/score X``
    rate the last answer (1, 0 or X in [0, 1]); the score is the router's feedback for the
    decision that chose its model.
``/why``
    why the last answer's model was chosen: the query's features, each eligible model's
    estimated accuracy, exploration bonus, predicted joules and score, whether the router
    explored, and why other models were left out.
``/stats``
    per model: answers, joules, mean score and share, and the joules saved against always
    using the dearest model (from the router's per-query energy predictions).
``/models``, ``/new`` (start the conversation over), ``/help``, ``/quit``.

>>> from greenserv_core import FakeBackend, FeatureExtractor, GreenServRouter
>>> from greenserv_core.features import HashingEmbedder, TaskClassifier
>>> embedder = HashingEmbedder(64)
>>> clf = TaskClassifier().fit(embedder.embed(["2+2?", "hi there"]), ["math", "chat"], embedder.name)
>>> router = GreenServRouter([FakeBackend("small", reply=lambda m: "4")],
...                          features=FeatureExtractor(embedder, clf), seed=0)
>>> session = ChatSession(router, max_new_tokens=8)
>>> session.handle("What is 2 + 2?")           # doctest: +ELLIPSIS
small › 4
  1 tokens · 0.00 s · 7.0 J est. · task math · rate it: /good /bad · /why
  (no energy counter here: joules are estimates, source fake)
True
>>> session.handle("/good")                     # doctest: +ELLIPSIS
  thanks: small scored 1 (reward +0.600 at λ 0.40); the router learned from it
True
>>> router.stats_["small"]["feedback"]
1
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenserv_core.errors import GreenServError, NoEligibleModelError
from greenserv_core.messages import Message

if TYPE_CHECKING:
    from greenserv_core.backends.base import ChainStep
    from greenserv_core.budget import BudgetStatus
    from greenserv_core.router import GreenServRouter, RoutedGeneration, RoutingDecision

__all__ = ["HELP", "ChatSession", "budget_note", "describe_chain", "run_repl"]

HELP = """commands:
  /good  /bad  /score X   rate the last answer (X in [0, 1]); the router learns from it
  /why                    why that model answered: features, estimates, predicted joules
  /stats                  answers, joules, scores and shares per model; joules saved
  /models                 the pool
  /new                    start the conversation over
  /help  /quit            this help; leave (Ctrl-D too). Ctrl-C stops an answer."""


def describe_chain(chain: Iterable[ChainStep]) -> str:
    """A cascade's chain on one line.

    >>> from greenserv_core.backends.base import ChainStep
    >>> describe_chain([ChainStep("small", "4", 0.31, 2.0, 0.1, 1, "escalated", "…"),
    ...                 ChainStep("big", "5", None, 9.5, 0.4, 1, "answered", "…", agreed=False)])
    'small (confidence 0.31, 2.0 J) escalated → big (9.5 J) answered, disagreed'
    """
    parts = []
    for step in chain:
        sure = "" if step.confidence is None else f"confidence {step.confidence:.2f}, "
        agreed = "" if step.agreed is None else (", agreed" if step.agreed else ", disagreed")
        parts.append(f"{step.model} ({sure}{step.energy_joules:.1f} J) {step.action}{agreed}")
    return " → ".join(parts)


@dataclass
class _Tally:
    answers: int = 0
    joules: float = 0.0
    scores: list[float] = field(default_factory=list)


class ChatSession:
    """One conversation with ``router``. ``say`` prints a line (default: ``print``).

    State: ``messages_`` (the conversation so far), ``last_`` (the last answer), ``rated_``
    (decisions already scored), ``tallies_`` (per model, what this session saw) and
    ``saved_joules_`` (against the dearest model, where the router predicted its joules)."""

    def __init__(
        self,
        router: GreenServRouter,
        *,
        max_new_tokens: int = 48,
        max_joules: float | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.router, self.max_new_tokens, self.max_joules, self.say = router, max_new_tokens, max_joules, say
        self.messages_: list[Message] = []
        self.last_: RoutedGeneration | None = None
        self.rated_: set[str] = set()
        self.tallies_: dict[str, _Tally] = {}
        self.saved_joules_ = 0.0
        self.compared_ = 0
        self.noted_estimate_ = False

    # ---- one line ------------------------------------------------------------------------
    def handle(self, line: str) -> bool:
        """Act on one line; ``False`` when the session should end (a byte-order mark, as a file
        saved by some editors begins, is no part of it)."""
        text = line.strip().lstrip("\ufeff").strip()
        if not text:
            return True
        if not text.startswith("/"):
            self.ask(text)
            return True
        command, _, argument = text.partition(" ")
        command = command.lower()
        if command in ("/quit", "/exit", "/q"):
            return False
        actions: dict[str, Callable[[], None]] = {
            "/good": lambda: self.rate(1.0),
            "/bad": lambda: self.rate(0.0),
            "/score": lambda: self._score(argument),
            "/why": self.why,
            "/stats": self.stats,
            "/models": self.models,
            "/new": self.new,
            "/help": lambda: self.say(HELP),
        }
        action = actions.get(command)
        if action is None:
            self.say(f"unknown command {command}; /help lists them (a message cannot start with '/')")
        else:
            action()
        return True

    # ---- asking --------------------------------------------------------------------------
    def ask(self, text: str) -> RoutedGeneration | None:
        """Send ``text`` with the conversation so far; print and remember the answer."""
        messages: list[Message] = [*self.messages_, {"role": "user", "content": text}]
        self.last_ = None  # a stopped or failed answer leaves nothing to rate
        try:
            result = self.router.generate(messages, max_new_tokens=self.max_new_tokens, max_joules=self.max_joules)
        except NoEligibleModelError as error:
            too_long = bool(self.messages_) and "context window" in str(error).lower()
            hint = " (the conversation may be too long: /new starts over)" if too_long else ""
            self.say(f"[no answer] {error}{hint}")
            return None
        except Exception as error:  # a model that broke: say so, keep the session and what it learned
            self.say(f"[error] {type(error).__name__}: {error}")
            return None
        self.messages_ = [*messages, {"role": "assistant", "content": result.text.strip()}]
        self.last_ = result
        self._count(result)
        self.say(f"{result.model} › {result.text.strip()}")
        if result.chain:
            self.say(f"  chain: {describe_chain(result.chain)}")
        estimated = "" if result.energy_measured else " est."
        budget = budget_note(result.decision.budget, self.router.budget_).replace(" | ", " · ", 1)
        self.say(
            f"  {result.output_tokens} tokens · {result.latency_s:.2f} s · {result.energy_joules:.1f} J{estimated}"
            f" · task {result.decision.features.task}{budget} · rate it: /good /bad · /why"
        )
        if not result.energy_measured and not self.noted_estimate_:
            self.noted_estimate_ = True
            self.say(f"  (no energy counter here: joules are estimates, source {result.energy_source})")
        return result

    def _count(self, result: RoutedGeneration) -> None:
        tally = self.tallies_.setdefault(result.model, _Tally())
        tally.answers += 1
        tally.joules += result.energy_joules
        for attempt in result.failed_attempts:  # what a model spent before it failed counts too
            self.tallies_.setdefault(attempt.model, _Tally()).joules += attempt.energy_joules
        predicted = result.decision.predicted_joules
        known = {m: predicted.get(m) for m in self.router.models}
        ran = [step.model for step in result.chain] or [result.model]
        if known and all(j is not None for j in known.values()) and all(m in known for m in ran):
            dearest = max(j for j in known.values() if j is not None)
            self.saved_joules_ += dearest - sum(known[m] or 0.0 for m in ran)  # prediction against prediction
            self.compared_ += 1

    # ---- rating --------------------------------------------------------------------------
    def _score(self, argument: str) -> None:
        try:
            value = float(argument)
        except ValueError:
            self.say(f"/score takes a number in [0, 1], got {argument!r}")
            return
        self.rate(value)

    def rate(self, score: float) -> None:
        """Send ``score`` as feedback for the last answer's decision (once per answer)."""
        last = self.last_
        if last is None:
            self.say("nothing to rate yet: ask something first")
            return
        if last.decision_id in self.rated_:
            self.say("that answer is already rated (one score per answer)")
            return
        if (
            isinstance(score, bool)
            or not isinstance(score, (int, float))
            or not (math.isfinite(score) and 0.0 <= score <= 1.0)
        ):
            self.say(f"a score is a number in [0, 1], got {score!r}")
            return
        try:
            record = self.router.feedback(last.decision_id, score)
        except (GreenServError, KeyError) as error:
            self.say(f"could not rate it: {error}")
            return
        self.rated_.add(last.decision_id)
        self.tallies_.setdefault(last.model, _Tally()).scores.append(float(score))
        reward = "" if record.reward is None else f" (reward {record.reward:+.3f} at λ {last.decision.tradeoff:.2f})"
        self.say(f"  thanks: {last.model} scored {score:g}{reward}; the router learned from it")

    # ---- explaining ----------------------------------------------------------------------
    def why(self) -> None:
        """Print why the last answer's model was chosen."""
        last = self.last_
        if last is None:
            self.say("nothing to explain yet: ask something first")
            return
        decision = last.decision
        f = decision.features
        self.say(
            f"why {decision.model}: task {f.task} (p {f.task_probability:.2f}), cluster {f.cluster}, "
            f"reading ease {f.flesch_reading_ease:.0f} (bin {f.complexity_bin}), {f.prompt_tokens} prompt tokens; "
            f"λ {decision.tradeoff:.2f}"
        )
        self.say(
            f"  {'model':28s} {'accuracy est.':>13s} {'bonus':>6s} {'pred. J':>8s} {'energy cost':>11s} {'score':>7s}"
        )
        for model, score in sorted(decision.scores.items(), key=lambda kv: -kv[1].score):
            joules = decision.predicted_joules.get(model)
            mark = " ←" if model == decision.model else ""
            shown = "unknown" if joules is None else f"{joules:.1f}"
            self.say(
                f"  {model:28s} {score.estimate:13.3f} {score.bonus:6.3f} {shown:>8s} {score.cost:11.3f} "
                f"{score.score:7.3f}{mark}"
            )
        self.say(f"  explored: {_explored(decision)}")
        for model, reason in decision.excluded.items():
            self.say(f"  left out {model}: {reason}")
        if last.chain:
            for step in last.chain:
                self.say(f"  cascade {step.model}: {step.reason}")

    def stats(self) -> None:
        """Print what this session saw per model, and the joules saved."""
        if not self.tallies_:
            self.say("no answers yet")
            return
        total = sum(t.answers for t in self.tallies_.values())
        self.say(f"  {'model':28s} {'answers':>7s} {'joules':>9s} {'mean score':>14s} {'share':>6s}")
        for model, tally in sorted(self.tallies_.items(), key=lambda kv: -kv[1].answers):
            mean = f"{sum(tally.scores) / len(tally.scores):.2f} ({len(tally.scores)})" if tally.scores else "unrated"
            self.say(f"  {model:28s} {tally.answers:7d} {tally.joules:9.1f} {mean:>14s} {tally.answers / total:6.0%}")
        if self.compared_:
            change = (
                f"saved against always using the dearest model: {self.saved_joules_:.1f} J"
                if self.saved_joules_ >= 0
                else f"spent {-self.saved_joules_:.1f} J more than always using the dearest model (cascades ran two)"
            )
            self.say(f"  {change} over {self.compared_} answer(s) (both as the router predicted them before answering)")
        else:
            self.say("  joules saved: not yet known (the router has not measured every model)")
        if (budget := self.router.budget_) is not None:
            self.say(f"  {budget.describe()}")

    def models(self) -> None:
        for name in self.router.arms:
            self.say(f"  {name}")

    def new(self) -> None:
        self.messages_ = []
        self.say("  (a new conversation; what was learned stays)")


def _explored(decision: RoutingDecision) -> str:
    """Whether the router explored, and whether the model it chose had the best score.

    >>> from types import SimpleNamespace as N
    >>> scores = {"a": N(score=0.6), "b": N(score=0.4)}
    >>> _explored(N(model="a", explored=True, scores=scores)), _explored(N(model="b", explored=True, scores=scores))
    ('yes (tried for learning; it had the best score too)', 'yes (tried for learning, not the best score)')
    """
    if not decision.explored:
        return "no (the best score: (1-λ)·(estimate + bonus) − energy cost)"
    chosen = decision.scores.get(decision.model)
    if chosen is None:
        return "yes (tried for learning)"
    best = max(score.score for score in decision.scores.values())
    return (
        "yes (tried for learning; it had the best score too)"
        if chosen.score >= best
        else "yes (tried for learning, not the best score)"
    )


def budget_note(status: BudgetStatus | None, after: BudgetStatus | None = None) -> str:
    """What the budget did for an answer, for the end of its line (empty without a budget):
    the λ, cap and verdict it was routed under (``status``, the decision's), and the mean and
    joules left once it was answered (``after``, the router's ``budget_`` then; else as routed).

    >>> from greenserv_core.budget import BudgetStatus
    >>> status = BudgetStatus(budget="2 Wh per 1 h", tradeoff=0.62, per_query_joules=72.0, spent_joules=1200.0,
    ...     answers=20, allowance_joules=1440.0, window_remaining_joules=6000.0, met=True)
    >>> budget_note(status)
    ' | budget 2 Wh per 1 h: λ 0.62, mean 60.0 J over 20, 6000 J left in this window'
    >>> spent = dataclasses.replace(status, tradeoff=0.7, spent_joules=1290.0, answers=21,
    ...     window_remaining_joules=5910.0)
    >>> budget_note(status, after=spent)
    ' | budget 2 Wh per 1 h: λ 0.62, mean 61.4 J over 21, 5910 J left in this window'
    """
    if status is None:
        return ""
    if after is not None:
        status = dataclasses.replace(
            after, tradeoff=status.tradeoff, met=status.met, answer_cap_joules=status.answer_cap_joules
        )
    return f" | {status.describe()}"


def run_repl(
    session: ChatSession,
    read: Callable[[str], str] | None = None,
    prompt: str = "you> ",
    history: Path | None = None,
) -> None:
    """Read lines until ``/quit`` or end of input. Ctrl-C during an answer stops that answer
    (nothing is learned from it); at the prompt it clears the line. Line editing and history
    come from the standard ``readline`` module where the platform has it; with ``history`` (a
    file), the lines typed are kept there between sessions. ``read`` (default: ``input`` from
    standard input, with no prompt when that is a file or a pipe) reads one line."""
    readline = _line_editing(history)
    if read is None:
        if hasattr(sys.stdin, "reconfigure"):  # piped bytes that are not UTF-8 stay readable
            sys.stdin.reconfigure(errors="surrogateescape")
        if not sys.stdin.isatty():  # lines from a file or a pipe: no prompts between the answers
            prompt = ""
        read = input
    session.say(HELP.splitlines()[0].replace("commands:", "type a message, or /help for the commands"))
    try:
        _loop(session, read, prompt)
    finally:
        if readline is not None and history is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(str(history))


def _line_editing(history: Path | None) -> Any:
    """The ``readline`` module (``None`` where the platform has none), with ``history`` loaded."""
    try:
        import readline
    except ImportError:  # pragma: no cover - not on every platform
        return None
    if history is not None:
        readline.set_history_length(1000)
        with contextlib.suppress(OSError):
            readline.read_history_file(str(history))
    return readline


def _loop(session: ChatSession, read: Callable[[str], str], prompt: str) -> None:
    while True:
        try:
            line = read(prompt)
        except EOFError:
            session.say("")
            return
        except KeyboardInterrupt:
            session.say("")
            continue
        except UnicodeDecodeError as error:  # bytes that are not the terminal's encoding: skip the line
            session.say(f"[skipped] a line that is not valid text ({error.reason})")
            continue
        if any("\udc80" <= character <= "\udcff" for character in line):  # read with surrogateescape
            session.say("[skipped] a line that is not valid text (bytes that are not UTF-8)")
            continue
        try:
            if not session.handle(line):
                return
        except KeyboardInterrupt:
            session.say("  [stopped]")
