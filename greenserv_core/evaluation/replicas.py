"""Router replicas under concurrent load: shared learning through a store versus one router.

The table's queries are shuffled once per run and dealt round-robin to N replica
*processes*, which route them at the same time, each revealing only its chosen model's row
(as :mod:`~greenserv_core.evaluation.replay` does). Three set-ups see the same query order:

* ``single``: one router, one process, no store: the reference;
* ``shared``: N replicas syncing through one store (:class:`~greenserv_core.sharing.RedisStore`
  or :class:`~greenserv_core.sharing.FileStore`) every ``interval_s`` seconds;
* ``independent``: N replicas that never share, each learning from its 1/N of the traffic.

Every router seeds its clusters from the same 300 prompts first (replicas must agree on
what each cluster number means; see :class:`~greenserv_core.sharing.SharedLearning`).

Reported: decisions per second over all replicas, the regret against the per-query oracle
and its ratio to the single router's, and staleness: the seconds since a replica's last
sync when it decides, and how many feedback updates other replicas had made by then that
it had not yet seen (reconstructed from each replica's sync times).

    greenserv bench replicas --table paper_sim.parquet --replicas 2,4 --store redis:redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from greenserv_core.errors import InvalidInputError

__all__ = ["ReplicasReport", "WorkerResult", "check_store", "compare", "run_replicas", "run_setup"]

_CLUSTER_SAMPLE = 300  # prompts every router (replica or single) seeds its clusters with


@dataclass
class WorkerResult:
    """What one replica did: per query routed, its table row, chosen model, decision and
    feedback times; per sync (every one), when it ended, how long it took (all but the last,
    after the replica's last decision), when it read the replica's learning and when the store
    held it; and its own routing seconds."""

    replica: int
    queries: list[int]
    chosen: list[int]
    decided_at: list[float]
    feedback_at: list[float]
    syncs_at: list[float]
    sync_seconds: list[float]
    started: float
    finished: float
    snapshots_at: list[float] = field(default_factory=list)
    merges_at: list[float] = field(default_factory=list)


def _worker(job: dict[str, Any]) -> WorkerResult:
    """One replica process (module level, so that ``spawn`` can import it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    from greenserv_core.evaluation.replay import ReplayModel, default_features, replay_query
    from greenserv_core.evaluation.table import read_table
    from greenserv_core.router import GreenServRouter
    from greenserv_core.sharing import FileStore, RedisStore, SharedLearning, SyncReport

    reports: list[SyncReport] = []

    class RecordedSharing(SharedLearning):
        """Keeps every sync's report (``last_sync_``, read between decisions, misses all but the last)."""

        def sync(self) -> SyncReport:
            report = super().sync()
            reports.append(report)  # (syncs take turns: the first, the thread's, then the last once it stopped)
            return report

    data = read_table(job["table"]).matrices()
    features = (job["features"] or default_features)(len(set(data.prompts)))()
    features.warm(data.prompts, store=job.get("embedding_store"))  # the whole table: one stored file
    features.seed_clusters([data.prompts[q] for q in job["cluster_sample"]])  # the same in every replica
    router = GreenServRouter(
        [ReplayModel(m) for m in data.models],
        strategy=job["strategy"],
        tradeoff=job["tradeoff"],
        seed=job["seed"] * 1000 + job["replica"],
        features=features,
    )
    sharing = None
    if job["store"] is not None:
        kind, _, where = job["store"].partition(":")
        store = RedisStore(url=where, key=job["key"]) if kind == "redis" else FileStore(where)
        sharing = RecordedSharing(router, store, interval_s=job["interval_s"])
    index = {m: j for j, m in enumerate(data.models)}
    rng = np.random.default_rng(job["seed"] * 1000 + job["replica"])
    chosen: list[int] = []
    decided: list[float] = []
    scored: list[float] = []
    job["ready"].wait()  # every replica starts together, once all have loaded their features
    started = time.time()
    if sharing is not None:
        sharing.start()
    for q in job["queries"]:
        j, given, _ = replay_query(router, data, q, index, rng, job["feedback_rate"])
        now = time.time()  # decision and feedback are moments apart: one time stamp for both
        decided.append(now)
        chosen.append(j)
        scored.append(now if given else math.inf)
    finished = time.time()
    if sharing is not None:
        sharing.stop()
    return WorkerResult(
        job["replica"],
        list(job["queries"]),
        chosen,
        decided,
        scored,
        [r.at for r in reports],
        [r.seconds for r in reports[:-1]],
        started,
        finished,
        [r.snapshot_at for r in reports],
        [r.merged_at for r in reports],
    )


def check_store(store: str, *, option: str = "store", fresh: bool = True, connect: bool = False) -> tuple[str, str]:
    """``store`` split into its kind (``redis`` or ``file``) and where, or
    :class:`InvalidInputError` naming ``option``. With ``fresh``, a ``file:`` store must not
    exist yet: it would hold the statistics of earlier runs, and every replica would start
    from them. A ``redis:`` store's URL must be one Redis takes (``redis://``, ``rediss://``
    or ``unix://``); with ``connect`` its server must answer a ping."""
    kind, colon, where = store.partition(":")
    if kind not in {"redis", "file"} or not colon or not where:
        raise InvalidInputError(f"{option} is redis:<url> or file:<path>, got {store!r}")
    if kind == "redis":
        if not where.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidInputError(
                f"{option} {store}: the URL after redis: must start with redis://, rediss:// or unix://, "
                "e.g. redis:redis://127.0.0.1:6379/0"
            )
        if connect:
            try:
                import redis
            except ImportError as error:
                raise InvalidInputError(
                    f"{option} {store} needs the redis package: pip install 'greenserv[remote]'"
                ) from error
            try:
                redis.Redis.from_url(where, socket_connect_timeout=5).ping()
            except (redis.RedisError, OSError, ValueError) as error:
                raise InvalidInputError(f"{option} {store}: cannot reach the Redis server: {error}") from error
    if kind == "file" and fresh and (os.path.lexists(where) or os.path.lexists(f"{where}.lock")):
        raise InvalidInputError(
            f"{option} {store}: {where} already exists, and the shared replicas would start from what it "
            "holds (statistics of earlier runs); remove it (and its .lock) or name a new file"
        )
    return kind, where


def _forget_file_store(store: str) -> None:
    """Remove a ``file:`` store (and its lock) a shared set-up wrote, so that the next one starts empty."""
    kind, _, where = store.partition(":")
    if kind == "file":
        for name in (where, f"{where}.lock"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)


def run_setup(
    table: str,
    *,
    setup: str,
    replicas: int,
    seed: int,
    store: str | None = None,
    interval_s: float = 0.2,
    strategy: str = "linucb",
    tradeoff: float = 0.4,
    feedback_rate: float = 1.0,
    limit: int | None = None,
    embedding_store: str | None = None,
    features: Any = None,
) -> dict[str, Any]:
    """Run one set-up (``single``, ``shared`` or ``independent``) once; returns its figures.

    ``store`` is ``redis:<url>`` or ``file:<path>`` (``shared`` only); ``features`` is a
    picklable factory ``f(distinct_prompts) -> (() -> FeatureExtractor)`` (default: the router's default features).
    """
    from greenserv_core.evaluation.table import read_table

    if setup not in {"single", "shared", "independent"}:
        raise InvalidInputError(f"setup must be single, shared or independent, got {setup!r}")
    if setup == "shared" and store is None:
        raise InvalidInputError("the shared set-up needs a store (redis:<url> or file:<path>)")
    if setup == "shared" and store is not None:
        check_store(store, fresh=False)
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be at least 1 query, got {limit}")
    count = 1 if setup == "single" else replicas
    data = read_table(table).matrices()
    order = np.random.default_rng(seed).permutation(len(data.queries))
    if limit is not None:
        order = order[:limit]
    cluster_sample = np.random.default_rng(12345).permutation(len(data.queries))[:_CLUSTER_SAMPLE].tolist()
    key = f"greenserv:bench:{os.getpid()}:{time.time_ns()}"
    context = multiprocessing.get_context("spawn")
    with _ctrl_c_to_the_parent_alone():  # (the spawned processes inherit the signal ignored)
        manager = context.Manager()
    with manager:  # (shut down whatever fails after it started)
        ready = manager.Barrier(count)
        jobs = [
            {
                "table": table,
                "queries": order[r::count].tolist(),
                "replica": r,
                "strategy": strategy,
                "tradeoff": tradeoff,
                "feedback_rate": feedback_rate,
                "seed": seed,
                "store": store if setup == "shared" else None,
                "key": key,
                "interval_s": interval_s,
                "ready": ready,
                "embedding_store": embedding_store,
                "features": features,
                "cluster_sample": cluster_sample,
            }
            for r in range(count)
        ]
        with _ctrl_c_to_the_parent_alone():
            pool = context.Pool(count)
        with pool:
            results = pool.map(_worker, jobs)
    return _figures(data, results, tradeoff, setup, count)


@contextlib.contextmanager
def _ctrl_c_to_the_parent_alone() -> Iterator[None]:
    """Ignore Ctrl-C while the block starts processes, which inherit it ignored: a Ctrl-C then
    stops the parent (which ends the pool), not each worker with a traceback of its own."""
    if threading.current_thread() is not threading.main_thread():  # (signals are the main thread's)
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _figures(data: Any, results: list[WorkerResult], tradeoff: float, setup: str, count: int) -> dict[str, Any]:
    reward = (1 - tradeoff) * data.accuracy - tradeoff * data.energy_norm()
    queries = np.concatenate([r.queries for r in results])
    chosen = np.concatenate([r.chosen for r in results])
    got = reward[queries, chosen]
    regret = float((reward[queries].max(axis=1) - got).sum())
    seconds = max(r.finished for r in results) - min(r.started for r in results)
    ages: list[float] = []
    unseen: list[int] = []
    for r in results:
        syncs = np.asarray(r.syncs_at)
        for t in r.decided_at:
            earlier = syncs[syncs <= t]
            ages.append(t - earlier[-1] if len(earlier) else math.nan)
        if count > 1 and setup == "shared":
            unseen.extend(_unseen_updates(r, [o for o in results if o.replica != r.replica]))
    figures: dict[str, Any] = {
        "setup": setup,
        "replicas": count,
        "queries": len(queries),
        "decisions_per_s": len(queries) / seconds if seconds > 0 else math.nan,
        "regret": regret,
        "mean_reward": float(got.mean()),
        "accuracy": float(data.accuracy[queries, chosen].mean()),
        "energy_joules": float(data.energy[queries, chosen].sum()),
    }
    if setup == "shared":
        finite = [a for a in ages if math.isfinite(a)]
        figures["staleness_s_mean"] = float(np.mean(finite)) if finite else math.nan
        figures["unseen_remote_updates_mean"] = float(np.mean(unseen)) if unseen else 0.0
        figures["syncs"] = sum(len(r.syncs_at) for r in results)
        durations = [d for r in results for d in r.sync_seconds]
        figures["sync_s_mean"] = float(np.mean(durations)) if durations else math.nan
    return figures


def _unseen_updates(replica: WorkerResult, others: Sequence[WorkerResult]) -> list[int]:
    """For each of ``replica``'s decisions: feedback other replicas had given by then that it
    had not yet received. Feedback goes with the other's first sync that reads its learning
    after it (``snapshots_at``) and is in the store once that sync merged (``merges_at``); this
    replica has it at the end of its first sync that merged after that."""
    visible_at: list[float] = []
    for other in others:
        theirs = np.asarray(other.snapshots_at or other.syncs_at)  # (syncs of no duration where not recorded)
        pushed = np.asarray(other.merges_at or other.syncs_at)
        for t in other.feedback_at:
            if not math.isfinite(t):
                continue
            at = int(np.searchsorted(theirs, t))  # the first sync that read it
            visible_at.append(_pulled(replica, float(pushed[at])) if at < len(theirs) else math.inf)
    given = sorted(t for other in others for t in other.feedback_at if math.isfinite(t))
    visible = np.sort(np.asarray(visible_at))
    out = []
    for t in replica.decided_at:
        made = int(np.searchsorted(given, t, side="right"))
        seen = int(np.searchsorted(visible, t, side="right"))
        out.append(max(0, made - seen))
    return out


def _pulled(replica: WorkerResult, pushed: float) -> float:
    """When ``replica`` had what the store held at ``pushed``: the end of its first sync that
    merged at or after it (infinity if none)."""
    at = int(np.searchsorted(np.asarray(replica.merges_at or replica.syncs_at), pushed))
    return float(replica.syncs_at[at]) if at < len(replica.syncs_at) else math.inf


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean figures per (set-up, replicas) over runs, with regret and throughput as ratios to
    the single router of the same runs."""
    base = [r for r in rows if r["setup"] == "single"]
    if not base:
        raise InvalidInputError("compare needs the single-router runs as the baseline")
    base_regret = float(np.mean([r["regret"] for r in base]))
    base_speed = float(np.mean([r["decisions_per_s"] for r in base]))
    out = []
    for key in sorted({(r["setup"], r["replicas"]) for r in rows}, key=lambda k: (k[1], k[0])):
        group = [r for r in rows if (r["setup"], r["replicas"]) == key]
        mean = {
            name: float(np.mean([r[name] for r in group])) for name in group[0] if isinstance(group[0][name], float)
        }
        mean.update(setup=key[0], replicas=key[1], runs=len(group))
        mean["regret_ratio"] = mean["regret"] / base_regret if base_regret else math.nan
        mean["throughput_ratio"] = mean["decisions_per_s"] / base_speed if base_speed else math.nan
        out.append(mean)
    return out


@dataclass(frozen=True)
class ReplicasReport:
    """:func:`compare`'s rows over every run, and the settings they ran with."""

    machine: str
    rows: list[dict[str, Any]]

    def table(self) -> list[dict[str, str]]:
        """Rows for :func:`~greenserv_core.evaluation.markdown.markdown_table`."""
        return [
            {
                "set-up": row["setup"],
                "replicas": str(row["replicas"]),
                "decisions/s": f"{row['decisions_per_s']:.0f}",
                "throughput ÷ single": f"{row['throughput_ratio']:.2f}",
                "regret": f"{row['regret']:.1f}",
                "regret ÷ single": f"{row['regret_ratio']:.2f}",
                "mean reward": f"{row['mean_reward']:.4f}",
                "staleness s": f"{row.get('staleness_s_mean', math.nan):.3f}",
                "unseen remote updates": f"{row.get('unseen_remote_updates_mean', math.nan):.1f}",
                "seconds a sync": f"{row.get('sync_s_mean', math.nan):.3f}",
            }
            for row in self.rows
        ]


def run_replicas(
    table: str,
    *,
    store: str,
    replicas: Sequence[int] = (2, 4),
    runs: int = 3,
    limit: int | None = None,
    interval_s: float = 0.2,
    strategy: str = "linucb",
    tradeoff: float = 0.4,
    embedding_store: str | None = None,
    features: Any = None,
) -> ReplicasReport:
    """Per run (seeded 0, 1, …): the single router, then for each replica count the shared and
    the independent set-ups (:func:`run_setup`); their means by :func:`compare`.

    A ``file:`` store must not exist yet (:func:`check_store`); it is removed after each shared
    set-up, so that every one starts empty, as each gets a Redis key of its own."""
    if runs < 1 or not replicas or min(replicas) < 1:
        raise InvalidInputError(f"runs and replica counts must be positive, got {runs} and {list(replicas)}")
    check_store(store)
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be at least 1 query, got {limit}")
    rows = []
    for run in range(runs):
        options: dict[str, Any] = {
            "seed": run,
            "strategy": strategy,
            "tradeoff": tradeoff,
            "limit": limit,
            "embedding_store": embedding_store,
            "features": features,
        }
        rows.append(run_setup(table, setup="single", replicas=1, **options))
        for n in replicas:
            try:
                rows.append(run_setup(table, setup="shared", replicas=n, store=store, interval_s=interval_s, **options))
            finally:  # every shared set-up starts from an empty store (a Redis one gets a key of its own)
                _forget_file_store(store)
            rows.append(run_setup(table, setup="independent", replicas=n, **options))
    machine = (
        f"machine: {os.cpu_count()} CPUs; strategy {strategy}, λ={tradeoff}, {runs} runs, "
        f"sync every {interval_s} s through {store.split(':')[0]}"
    )
    return ReplicasReport(machine, compare(rows))
