"""Micro-benchmark: routing overhead per query (``greenserv bench overhead``; not a test).

Overhead = context features (sentence embedding included, cache disabled, so every query is
embedded) + policy decision + bookkeeping (pending store, cost-model and feedback updates).
Models are zero-cost fakes, so nothing but the router is timed. The embedding alone on the
same prompts is timed in the same run as the baseline. ``--pool bundled`` routes over the
bundled local models instead: their weights never load (``route()`` does not answer), but the
router reads each prompt with each model's chat template and tokenizer (a bound on its count,
and the count where the bound might not fit the window), as it does in live traffic.

    greenserv bench overhead --queries 1000
    greenserv bench overhead --pool bundled --strategies epsilon --embedders static
    greenserv bench overhead --prompts prompts.jsonl --device cuda   # on a GPU machine
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from greenserv_core.backends.base import ModelBackend
from greenserv_core.backends.fake import FakeBackend
from greenserv_core.datasets import load_task
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.prompt_files import read_prompts
from greenserv_core.features import FeatureExtractor, instruction_text
from greenserv_core.features.bundled import bundled_features
from greenserv_core.features.complexity import forget_reading_ease
from greenserv_core.hardware import device_name
from greenserv_core.router import GreenServRouter

__all__ = [
    "DEFAULT_STRATEGIES",
    "POOLS",
    "OverheadReport",
    "OverheadRow",
    "measure",
    "overhead_prompts",
    "pool_of",
    "run_overhead",
]

DEFAULT_STRATEGIES = ("linucb", "thompson", "epsilon", "random")
POOLS = ("fake", "bundled")
TASK_MIX = ("mmlu", "hellaswag", "winogrande", "gsm8k", "boolq", "triviaqa")


def overhead_prompts(n: int = 1000, seed: int = 0) -> list[str]:
    """The ``n`` distinct real prompts that :func:`run_overhead` times by default (all of the
    tasks' distinct prompts where they hold fewer): as many of each task of :data:`TASK_MIX`,
    topped up from the others where one runs short."""
    per_task = n // len(TASK_MIX) + 1
    prompts = list(dict.fromkeys(ex.prompt for task in TASK_MIX for ex in load_task(task, limit=per_task, seed=seed)))
    if len(prompts) < n:  # a task holds fewer than its share, or repeats a prompt
        taken = set(prompts)
        rest = [p for p in dict.fromkeys(ex.prompt for task in TASK_MIX for ex in load_task(task)) if p not in taken]
        prompts += random.Random(seed).sample(rest, min(n - len(prompts), len(rest)))
    random.Random(seed).shuffle(prompts)
    return prompts[:n]


def _percentiles(samples_s: Sequence[float]) -> tuple[float, float, float]:
    ms = np.asarray(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(np.mean(ms))


def bundled_uncached(embedder: str, device: str = "cpu") -> Callable[[], FeatureExtractor]:
    """A factory of the bundled features of ``embedder`` with no embedding cache (MiniLM runs
    on ``device``; the static embedder is a table lookup on the CPU)."""

    def make() -> FeatureExtractor:
        return FeatureExtractor(*bundled_features(embedder, device=device, cache_size=0))

    return make


def pool_of(pool: str, n_models: int) -> list[ModelBackend]:
    """The models routed over: ``n_models`` zero-cost fakes (``"fake"``), or the bundled local
    models (``"bundled"``; set up by ``greenserv setup``, their weights never loaded here)."""
    if pool == "fake":
        return [FakeBackend(f"model-{i}", joules_per_token=float(i + 1)) for i in range(n_models)]
    if pool == "bundled":
        from greenserv_core.models import bundled_pool

        return list(bundled_pool())
    raise InvalidInputError(f"the pool is one of {list(POOLS)}, got {pool!r}")


def measure(
    strategy: str,
    prompts: Sequence[str],
    n_models: int,
    seed: int,
    *,
    make_features: Callable[[], FeatureExtractor] | None = None,
    energy_budget: float | None = None,
    pool: str = "fake",
) -> dict[str, tuple[float, float, float]]:
    """p50, p99 and mean milliseconds of the embedding alone, ``route()``, and a whole round
    (with ``energy_budget`` joules per query paced, when given), over the models of
    :func:`pool_of`."""
    features = (make_features or bundled_uncached("minilm"))()
    embedder = features.embedder
    models = pool_of(pool, n_models)
    router = GreenServRouter(
        models, strategy=strategy, tradeoff=0.4, features=features, seed=seed, energy_budget=energy_budget
    )
    for text in prompts[:20]:  # warm-up: load the model, fill caches of the tokenizer
        embedder.embed([instruction_text(text)])
    for model in models:  # warm-up: load each model's tokenizer and chat template
        model.count_tokens([{"role": "user", "content": prompts[0]}])
    router.features.extract(prompts[-1])  # warm-up: load the syllable table
    forget_reading_ease()  # every prompt's reading ease is computed in the timed loop, as in live traffic
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


@dataclass(frozen=True)
class OverheadRow:
    """One embedder, strategy and measured path, in milliseconds; ``p50_vs_minilm`` is its p50
    over the same path's with MiniLM features in the same run (None without a MiniLM row), and
    ``p50_vs_unpaced`` a paced strategy's over the same strategy's without a budget."""

    embedder: str
    strategy: str
    measured: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    p50_vs_embedding: float
    p50_vs_minilm: float | None = None
    p50_vs_unpaced: float | None = None


@dataclass(frozen=True)
class OverheadReport:
    machine: str
    rows: list[OverheadRow]

    def table(self) -> list[dict[str, str]]:
        """Rows for :func:`~greenserv_core.evaluation.markdown.markdown_table`."""
        return [
            {
                "embedder": r.embedder,
                "strategy": r.strategy,
                "measured": r.measured,
                "p50 ms": f"{r.p50_ms:.3f}",
                "p99 ms": f"{r.p99_ms:.3f}",
                "mean ms": f"{r.mean_ms:.3f}",
                "p50 / embedding p50": f"{r.p50_vs_embedding:.2f}",
                "p50 / MiniLM p50": "–" if r.p50_vs_minilm is None else f"{r.p50_vs_minilm:.3f}",
                "p50 / unpaced p50": "–" if r.p50_vs_unpaced is None else f"{r.p50_vs_unpaced:.3f}",
            }
            for r in self.rows
        ]


def _machine(device: str, embedders: Sequence[str]) -> str:
    """The machine, and the GPU MiniLM ran on when it was timed there."""
    import torch

    where = f"machine: {device_name()}, torch threads {torch.get_num_threads()}"
    if device.startswith("cuda") and "minilm" in embedders:
        where += f", MiniLM on {device_name(device)}"
    return where


def run_overhead(
    *,
    queries: int = 1000,
    models: int = 16,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    embedders: Sequence[str] = ("minilm", "static"),
    seed: int = 0,
    make_features: Callable[[], FeatureExtractor] | None = None,
    energy_budget: float | None = None,
    prompts_file: str | None = None,
    device: str = "cpu",
    progress: bool = False,
    pool: str = "fake",
) -> OverheadReport:
    """Time every embedder × strategy over ``queries`` distinct real prompts and ``models`` fake
    models (or the bundled local models, with ``pool="bundled"``: ``models`` is then unused).
    Each embedder's bundled features are built fresh per strategy, cache disabled;
    ``make_features`` replaces them all (for tests). With ``energy_budget`` (joules per query;
    the fake answers cost 1–5 J) each strategy is also timed paced to that budget, as
    ``<strategy>+budget``, with its p50 over the unpaced strategy's in ``p50_vs_unpaced``.
    ``prompts_file`` (see :mod:`~greenserv_core.evaluation.prompt_files`) replaces the bundled
    prompts; ``device`` is where MiniLM embeds (``"cuda"`` on a GPU machine). ``progress``
    shows a bar over the timings (updated between them, never during one).
    """
    if pool not in POOLS:
        raise InvalidInputError(f"the pool is one of {list(POOLS)}, got {pool!r}")
    for kind, names in (("embedders", embedders), ("strategies", strategies)):
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:  # the rows of each would be divided by the other's times
            raise InvalidInputError(f"{kind} named twice: {repeated}; each is timed once")
    prompts = read_prompts(prompts_file, limit=queries) if prompts_file else overhead_prompts(queries, seed)
    measured_rows: list[tuple[str, str, str, tuple[float, float, float], float]] = []
    budgets = (None, energy_budget) if energy_budget is not None else (None,)
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(embedders) * len(strategies) * len(budgets), desc="overhead", unit="timing")
    for embedder in embedders:
        factory = make_features or bundled_uncached(embedder, device)
        for strategy in strategies:
            for budget in budgets:
                if bar is not None:
                    bar.set_postfix_str(f"{embedder} · {strategy}{'' if budget is None else '+budget'}")
                measured = measure(
                    strategy, prompts, models, seed, make_features=factory, energy_budget=budget, pool=pool
                )
                if bar is not None:
                    bar.update()
                base = measured["embedding only"][0]
                name = strategy if budget is None else f"{strategy}+budget"
                measured_rows += [(embedder, name, label, times, times[0] / base) for label, times in measured.items()]
    if bar is not None:
        bar.close()
    minilm = {
        (strategy, label): times[0] for embedder, strategy, label, times, _ in measured_rows if embedder == "minilm"
    }
    unpaced = {(e, strategy, label): times[0] for e, strategy, label, times, _ in measured_rows}
    rows = [
        OverheadRow(
            embedder,
            strategy,
            label,
            *times,
            ratio,
            times[0] / minilm[strategy, label] if minilm else None,
            times[0] / unpaced[embedder, strategy.removesuffix("+budget"), label]
            if strategy.endswith("+budget")
            else None,
        )
        for embedder, strategy, label, times, ratio in measured_rows
    ]
    routed_over = f"{models} models" if pool == "fake" else "the bundled models (their templates and tokenizers)"
    machine = f"{_machine(device, embedders)}, {len(prompts)} distinct real prompts, {routed_over}"
    return OverheadReport(machine, rows)
