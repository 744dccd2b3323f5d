"""The replica benchmark's machinery on a small simulated table: real processes, a real
Redis server, the dependency-free hashing features (the MiniLM run is the benchmark)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation import replay
from greenserv_core.evaluation.replicas import (
    WorkerResult,
    _unseen_updates,
    _worker,
    compare,
    run_replicas,
    run_setup,
)
from greenserv_core.evaluation.simulate import simulate_table
from greenserv_core.evaluation.table import write_table
from greenserv_core.features import FeatureExtractor
from greenserv_core.sharing import FileStore
from greenserv_core.sharing.replica import _SYNCS
from tests.conftest import make_hashing_extractor
from tests.services import redis_server
from tests.test_evaluation import CALIBRATION


def hashing_features(distinct_prompts: int) -> Callable[[], FeatureExtractor]:
    return make_hashing_extractor


@pytest.fixture(scope="module")
def table_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("table") / "sim.parquet"
    write_table(simulate_table(CALIBRATION, queries_per_task=100, seed=0), path)
    return str(path)


def test_shared_replicas_route_every_query_once_and_report_staleness(table_path: str, tmp_path: Path) -> None:
    options = {"seed": 0, "features": hashing_features, "interval_s": 0.05}
    with redis_server(tmp_path) as url:
        shared = run_setup(table_path, setup="shared", replicas=2, store=f"redis:{url}", **options)  # type: ignore[arg-type]
    single = run_setup(table_path, setup="single", replicas=2, **options)  # type: ignore[arg-type]
    independent = run_setup(table_path, setup="independent", replicas=2, **options)  # type: ignore[arg-type]
    assert shared["queries"] == single["queries"] == independent["queries"] == 200
    assert shared["replicas"] == 2 and single["replicas"] == 1
    assert shared["syncs"] >= 4 and shared["staleness_s_mean"] >= 0
    assert "staleness_s_mean" not in independent
    rows = compare([single, shared, independent])
    assert [(r["setup"], r["replicas"]) for r in rows] == [("single", 1), ("independent", 2), ("shared", 2)]
    assert rows[0]["regret_ratio"] == pytest.approx(1.0)


def test_a_shared_run_needs_a_store(table_path: str) -> None:
    with pytest.raises(InvalidInputError, match="store"):
        run_setup(table_path, setup="shared", replicas=2, seed=0)
    with pytest.raises(InvalidInputError, match="positive"):
        run_replicas(table_path, store="file:/nowhere", replicas=[2, 0])


def test_unseen_updates_follow_push_then_pull() -> None:
    def worker(replica: int, decided: list[float], feedback: list[float], syncs: list[float]) -> WorkerResult:
        return WorkerResult(replica, [], [], decided, feedback, syncs, [], 0.0, 10.0)

    # the other replica scores at t=1 and pushes at its sync at t=2; we pull at t=3
    other = worker(1, [1.0], [1.0], [0.0, 2.0, 5.0])
    mine = worker(0, [0.5, 1.5, 2.5, 3.5], [np.inf] * 4, [0.0, 3.0, 6.0])
    assert _unseen_updates(mine, [other]) == [0, 1, 1, 0]


def test_feedback_given_while_a_sync_is_under_way_goes_with_the_next() -> None:
    # the other replica's sync reads its learning at 0.9, merges at 1.1 and ends at 1.2: feedback
    # at 1.0 goes with its next sync (read 2.0, merged 2.1), which we pull in ours merging at 2.5
    other = WorkerResult(1, [], [], [1.0], [1.0], [1.2, 2.2], [], 0.0, 10.0, [0.9, 2.0], [1.1, 2.1])
    mine = WorkerResult(
        0, [], [], [2.3, 2.7], [np.inf] * 2, [0.0, 1.5, 2.6], [], 0.0, 10.0, [0.0, 1.3, 2.4], [0.0, 1.4, 2.5]
    )
    assert _unseen_updates(mine, [other]) == [1, 0]  # was [0, 0]: counted as pushed by the sync under way


def test_every_sync_is_counted_even_several_between_two_decisions(
    table_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica syncs every 5 ms and decides every 30 ms: the worker keeps each sync's report
    (it polled ``last_sync_`` after each decision, and missed those in between)."""
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)  # (the worker sets 1, for its process)
    route = replay.replay_query

    def slow(*args: Any) -> tuple[int, bool, float]:
        time.sleep(0.03)
        return route(*args)

    monkeypatch.setattr(replay, "replay_query", slow)
    store = tmp_path / "store.gss"
    job = {
        "table": table_path,
        "queries": list(range(6)),
        "replica": 0,
        "strategy": "linucb",
        "tradeoff": 0.4,
        "feedback_rate": 1.0,
        "seed": 0,
        "store": f"file:{store}",
        "key": "unused",
        "interval_s": 0.005,
        "ready": threading.Barrier(1),
        "embedding_store": None,
        "features": hashing_features,
        "cluster_sample": list(range(20)),
    }
    result = _worker(job)
    pushes = int(FileStore(store).read().sums[_SYNCS][0])
    assert pushes > 6 + 2  # more syncs than decisions (and the first and last syncs)
    assert len(result.syncs_at) == len(result.snapshots_at) == len(result.merges_at) == pushes  # was at most 7
    assert len(result.sync_seconds) == pushes - 1  # all but the last, after the replica's last decision
    assert result.syncs_at == sorted(result.syncs_at)
