"""How fast a replay runs: 10,000 queries × 16 models by default (prints Markdown for BENCHMARKS.md).

The paper pool's calibration covers four tasks, 7,586 distinct real prompts in all. To reach
10,000 distinct prompts this speed-only table lets further real tasks (ARC, OpenBookQA, SciQ,
PIQA, BoolQ) borrow the MMLU calibration rows; its outcomes mean nothing, only its size does.
Timed, in one process: the batched MiniLM pass over every prompt (cold, in the embedder's
default precision), loading those vectors back from the on-disk store a later replay uses,
one replay run per strategy (features from the cache, policy, cost models, feedback), with
``random`` as the baseline of the ratios, and, where the default is bfloat16 autocast, the
same cold pass in float32 for comparison.

    python -m greenserv_core.evaluation.replay_speed --calibration ../shared/data/paper_pool_calibration.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from collections.abc import Sequence

import torch

from greenserv_core.evaluation.replay import default_features, replay
from greenserv_core.evaluation.simulate import read_calibration, simulate_table
from greenserv_core.features import SentenceTransformerEmbedder
from greenserv_core.features.task_classifier import instruction_text

__all__ = ["main"]

_BORROWING = ("arc_easy", "arc_challenge", "openbookqa", "sciq", "piqa", "boolq")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration", required=True)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--strategies", default="random,linucb,thompson,epsilon")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    calibration = read_calibration(args.calibration)
    borrowed = [dataclasses.replace(c, task=task) for task in _BORROWING for c in calibration if c.task == "mmlu"]
    tasks = sorted({c.task for c in calibration}) + list(_BORROWING)
    table = simulate_table(calibration + borrowed, queries_per_task=2500, tasks=tasks, seed=0)
    keep = sorted(set(table.columns["query_id"]))[: args.queries]
    kept = set(keep)
    rows = [i for i, q in enumerate(table.columns["query_id"]) if q in kept]
    table.columns = {name: [values[i] for i in rows] for name, values in table.columns.items()}
    data = table.matrices()
    with tempfile.TemporaryDirectory() as store:
        report = replay(table, args.strategies.split(","), runs=1, tradeoff=0.4, embedding_store=store)
        started = time.perf_counter()
        default_features(len(data.queries))().warm(data.prompts, store=store)
        loaded = time.perf_counter() - started
    default = SentenceTransformerEmbedder(cache_size=0)
    float32 = None
    if default.uses_bfloat16(len(data.queries)):
        full = SentenceTransformerEmbedder(precision="float32", cache_size=0)
        texts = sorted({instruction_text(prompt) for prompt in data.prompts})
        started = time.perf_counter()
        full.embed(texts)  # loading the model included, as in the replay's warm-up
        float32 = time.perf_counter() - started
    print(
        f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
        f"{len(data.queries)} distinct real prompts × {len(data.models)} models (speed-only table); "
        f"embedder precision: {'bfloat16 autocast' if default.uses_bfloat16(len(data.queries)) else 'float32'}"
    )
    print()
    print("| step | seconds | ratio to the random-routing run |")
    print("|---|---|---|")
    baseline = report["strategies"]["random"]["seconds_per_run"]["mean"] if "random" in report["strategies"] else None
    warmup = report["timing"]["feature_warmup_s"]
    print(f"| features: batched MiniLM over every prompt (cold) | {warmup:.1f} | {_ratio(warmup, baseline)} |")
    if float32 is not None:
        print(f"| features: the same cold pass in float32 | {float32:.1f} | {_ratio(float32, baseline)} |")
    print(f"| features: the same vectors from the on-disk store | {loaded:.2f} | {_ratio(loaded, baseline)} |")
    for name, summary in report["strategies"].items():
        seconds = summary["seconds_per_run"]["mean"]
        print(f"| replay run: {name} | {seconds:.1f} | {_ratio(seconds, baseline)} |")


def _ratio(seconds: float, baseline: float | None) -> str:
    return f"{seconds / baseline:.2f}" if baseline else "–"


if __name__ == "__main__":
    main()
