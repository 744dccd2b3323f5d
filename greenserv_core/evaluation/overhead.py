"""Micro-benchmark: routing overhead per query (not a test; prints a Markdown table).

Overhead = context features (sentence embedding included, cache disabled, so every query is
embedded) + policy decision + bookkeeping (pending store, cost-model and feedback updates).
Models are zero-cost fakes, so nothing but the router is timed. The embedding alone on the
same prompts is timed in the same run as the baseline.

    python -m greenserv_core.evaluation.overhead --queries 1000
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections.abc import Sequence

import numpy as np

from greenserv_core.backends.fake import FakeBackend
from greenserv_core.datasets import load_task
from greenserv_core.features import FeatureExtractor, SentenceTransformerEmbedder, TaskClassifier, instruction_text
from greenserv_core.router import GreenServRouter

__all__ = ["main"]

TASK_MIX = ("mmlu", "hellaswag", "winogrande", "gsm8k", "boolq", "triviaqa")


def _prompts(n: int, seed: int) -> list[str]:
    per_task = n // len(TASK_MIX) + 1
    prompts = [ex.prompt for task in TASK_MIX for ex in load_task(task, limit=per_task, seed=seed)]
    random.Random(seed).shuffle(prompts)
    return prompts[:n]


def _percentiles(samples_s: Sequence[float]) -> tuple[float, float, float]:
    ms = np.asarray(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(np.mean(ms))


def measure(strategy: str, prompts: Sequence[str], n_models: int, seed: int) -> dict[str, tuple[float, float, float]]:
    embedder = SentenceTransformerEmbedder(cache_size=0)
    features = FeatureExtractor(embedder, TaskClassifier.bundled())
    models = [FakeBackend(f"model-{i}", joules_per_token=float(i + 1)) for i in range(n_models)]
    router = GreenServRouter(models, strategy=strategy, tradeoff=0.4, features=features, seed=seed)
    for text in prompts[:20]:  # warm-up: load the model, fill caches of the tokenizer
        embedder.embed([instruction_text(text)])
    embed_times, route_times, total_times = [], [], []
    for text in prompts:
        start = time.perf_counter()
        embedder.embed([instruction_text(text)])
        embed_times.append(time.perf_counter() - start)
    for i, text in enumerate(prompts):
        start = time.perf_counter()
        decision = router.route(text, max_new_tokens=16)
        routed = time.perf_counter()
        router.record_outcome(decision.decision_id, energy_joules=1.0 + i % 5, latency_s=0.01)
        router.feedback(decision.decision_id, float(i % 2))
        done = time.perf_counter()
        route_times.append(routed - start)
        total_times.append(done - start)
    return {
        "embedding only": _percentiles(embed_times),
        "route()": _percentiles(route_times),
        "route + record_outcome + feedback": _percentiles(total_times),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--strategies", default="linucb,thompson,epsilon,random")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    prompts = _prompts(args.queries, args.seed)
    import torch

    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"{args.queries} distinct real prompts, {args.models} models\n"
    )
    print("| strategy | measured | p50 ms | p99 ms | mean ms | p50 / embedding p50 |")
    print("|---|---|---|---|---|---|")
    for strategy in args.strategies.split(","):
        rows = measure(strategy, prompts, args.models, args.seed)
        base = rows["embedding only"][0]
        for label, (p50, p99, mean) in rows.items():
            print(f"| {strategy} | {label} | {p50:.2f} | {p99:.2f} | {mean:.2f} | {p50 / base:.2f} |")


if __name__ == "__main__":
    main()
