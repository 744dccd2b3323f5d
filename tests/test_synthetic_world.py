"""Acceptance: on a synthetic world with real prompts and features (each bundled embedder's),
the contextual policies learn the best model per task from partial feedback; random routing
does not."""

from __future__ import annotations

import numpy as np
import pytest

from greenserv_core.evaluation import synthetic_world as world

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def pool() -> list[world.Query]:
    return world.queries()


@pytest.fixture(scope="module", params=["static", "minilm"])
def make_extractor(request, minilm_extractor_factory):  # type: ignore[no-untyped-def]
    """Each bundled embedder's features: the default (static) and MiniLM."""
    if request.param == "minilm":
        return minilm_extractor_factory
    from greenserv_core.features import FeatureExtractor
    from greenserv_core.features.bundled import bundled_features

    embedder, classifier = bundled_features("static")
    return lambda: FeatureExtractor(embedder, classifier)


def test_the_world_has_a_different_best_model_per_task() -> None:
    best = {dataset: world.best_model(dataset) for dataset in world.TASKS}
    assert set(best.values()) == {"small", "medium", "large"}


def test_real_features_recognise_the_worlds_tasks(pool, make_extractor) -> None:  # type: ignore[no-untyped-def]
    extractor = make_extractor()
    agreement = np.mean([extractor.extract(q.prompt, learn=False).task == world.TASKS[q.dataset] for q in pool])
    assert agreement >= 0.95


@pytest.mark.parametrize("strategy", ["linucb", "thompson"])
@pytest.mark.parametrize("seed", SEEDS)
def test_contextual_policies_find_the_best_model(strategy: str, seed: int, pool, make_extractor) -> None:  # type: ignore[no-untyped-def]
    chosen, best = world.run(strategy, make_extractor, steps=2000, seed=seed, pool=pool)
    assert world.best_rate(chosen, best, last=500) >= 0.90


@pytest.mark.parametrize("seed", SEEDS)
def test_random_routing_does_not(seed: int, pool, make_extractor) -> None:  # type: ignore[no-untyped-def]
    chosen, best = world.run("random", make_extractor, steps=2000, seed=seed, pool=pool)
    assert world.best_rate(chosen, best, last=500) < 0.45


@pytest.mark.parametrize("strategy", ["linucb", "thompson"])
def test_with_20_percent_feedback_they_still_beat_random_clearly(strategy: str, pool, make_extractor) -> None:  # type: ignore[no-untyped-def]
    def mean_rate(name: str) -> float:
        rates = [
            world.best_rate(*world.run(name, make_extractor, steps=2000, seed=s, feedback_rate=0.2, pool=pool))
            for s in SEEDS
        ]
        return float(np.mean(rates))

    learned, random = mean_rate(strategy), mean_rate("random")
    assert learned >= 0.65
    assert learned >= random + 0.25
