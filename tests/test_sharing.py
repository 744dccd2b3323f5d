"""Replicas sharing one learned policy: statistics, stores (memory, file, a real Redis), sync."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenserv_core import FakeBackend, GreenServRouter, InvalidInputError, StateFileError
from greenserv_core.sharing import FileStore, InMemoryStore, RedisStore, SharedLearning, StateStore, Statistics
from greenserv_core.sharing.replica import default_store_path
from tests.conftest import make_hashing_extractor
from tests.services import redis_server

PROMPTS = [
    "What is 2 + 2?",
    "Who wrote Hamlet?",
    "Tell me a joke about cats.",
    "Solve 3x = 12 for x.",
    "What is the capital of Peru?",
    "Write a haiku about snow.",
]


def make_router(
    strategy: str = "linucb", seed: int = 0, energy_scale: str = "seen", n_clusters: int = 1
) -> GreenServRouter:
    # one cluster: every prompt lands in it whatever the order, so sums are order-free; the
    # "seen" energy scale: its range is what was measured, where the default "known" one also
    # takes in each replica's own predictions, which depend on when it last synced
    return GreenServRouter(
        [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)],
        features=make_hashing_extractor(n_clusters=n_clusters),
        strategy=strategy,
        tradeoff=0.4,
        seed=seed,
        energy_scale=energy_scale,  # type: ignore[arg-type]
    )


def serve(router: GreenServRouter, traffic: list[tuple[str, str, float]]) -> None:
    """Each query pinned to a model (so every router sees the same outcomes), then scored."""
    for prompt, model, score in traffic:
        answer = router.generate(prompt, models=[model], max_new_tokens=8)
        router.feedback(answer.decision_id, score)


def traffic(n: int, seed: int) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(seed)
    return [
        (PROMPTS[int(rng.integers(len(PROMPTS)))], ["small", "org/large"][int(rng.integers(2))], float(rng.random()))
        for _ in range(n)
    ]


# ---- statistics ------------------------------------------------------------------------
arrays = st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=2).map(np.array)
stats = st.builds(
    Statistics,
    sums=st.dictionaries(st.sampled_from(["a", "b", "c"]), arrays),
    minima=st.dictionaries(st.sampled_from(["lo"]), arrays),
    maxima=st.dictionaries(st.sampled_from(["hi"]), arrays),
)


@settings(max_examples=60, deadline=None)
@given(stats, stats, stats)
def test_merging_is_commutative_and_associative(a: Statistics, b: Statistics, c: Statistics) -> None:
    assert a.plus(b).allclose(b.plus(a))
    assert a.plus(b).plus(c).allclose(a.plus(b.plus(c)), rtol=1e-9, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(stats, stats)
def test_a_change_merged_into_its_base_gives_the_state_back(base: Statistics, change: Statistics) -> None:
    state = base.plus(change)
    assert base.plus(state.minus(base)).allclose(state, atol=1e-6)
    assert Statistics.from_bytes(state.to_bytes()) == state


def test_arrays_of_different_lengths_merge_by_padding() -> None:
    two = Statistics(sums={"s": np.ones((2, 3))}, maxima={"m": np.array([5.0])})
    three = Statistics(sums={"s": np.ones((3, 3))}, maxima={"m": np.array([2.0])})
    merged = two.plus(three)
    assert merged.sums["s"].tolist() == [[2.0] * 3, [2.0] * 3, [1.0] * 3]
    assert merged.maxima["m"].tolist() == [5.0]
    assert three.minus(two).sums["s"].tolist() == [[0.0] * 3, [0.0] * 3, [1.0] * 3]


def test_a_removed_model_does_not_erase_what_others_learned() -> None:
    base = Statistics(sums={"policy/a/n": np.array([3.0]), "policy/b/n": np.array([4.0])})
    local = Statistics(sums={"policy/a/n": np.array([5.0])})  # this replica removed b
    assert set(local.minus(base).sums) == {"policy/a/n"}


def test_corrupt_or_unsafe_bytes_are_refused() -> None:
    with pytest.raises(StateFileError):
        Statistics.from_bytes(b"not an archive")
    good = Statistics(sums={"a": np.ones((2, 2))}).to_bytes()
    for broken in (good[:-3], good + b"\0" * 8, good[:8] + b"[[1" + good[11:]):
        with pytest.raises(StateFileError):
            Statistics.from_bytes(broken)
    with pytest.raises(ValueError, match="NaN"):
        Statistics(sums={"x": np.array([np.nan])})


# ---- a router's statistics ----------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["linucb", "thompson", "epsilon", "epsilon-nc", "random"])
def test_statistics_carry_everything_a_router_learned(strategy: str) -> None:
    learner, copy = make_router(strategy), make_router(strategy)
    serve(learner, traffic(40, seed=1))
    copy.update_statistics(lambda _: learner.statistics())
    assert copy.statistics().allclose(learner.statistics())
    x = copy.features.extract("What is 2 + 2?", learn=False)
    mine = learner.policy_._estimates(x.vector, learner.models)
    theirs = copy.policy_._estimates(x.vector, copy.models)
    for model in learner.models:
        assert theirs[model][0] == pytest.approx(mine[model][0])  # the bonus may be a random draw
        arm, copied = learner.policy_.arms_[model], copy.policy_.arms_[model]
        if hasattr(arm, "A_inv"):
            assert np.allclose(copied.A_inv, arm.A_inv) and np.allclose(copied.theta, arm.theta)
    assert copy.energy_.predict("small", x.vector, 10) == pytest.approx(learner.energy_.predict("small", x.vector, 10))
    assert copy.normalizer_.ranges_ == learner.normalizer_.ranges_
    assert copy.stats_ == learner.stats_


def test_clusters_merge_as_running_means() -> None:
    one, two = make_router(n_clusters=2), make_router(n_clusters=2)
    for prompt in PROMPTS[:3]:
        one.features.extract(prompt)
    merged = one.statistics().plus(two.statistics())
    two.update_statistics(lambda _: merged)
    assert np.allclose(two.features.clusterer.centroids_, one.features.clusterer.centroids_)  # type: ignore[arg-type]
    assert two.features.clusterer.counts_.tolist() == one.features.clusterer.counts_.tolist()


def test_replicas_on_the_known_scale_share_one_range_per_task() -> None:
    store = InMemoryStore()
    replicas = [SharedLearning(make_router(seed=i, energy_scale="known"), store) for i in range(2)]
    for replica, seed in zip(replicas, (10, 11), strict=True):
        serve(replica.router, traffic(30, seed=seed))
        replica.router.route("What is 2 + 2?")  # a decision: the known scale takes in its predictions
        replica.sync()
    own = [dict(r.router.learner_.normalizer_.ranges_) for r in replicas]
    for replica in replicas:
        replica.sync()
    merged = replicas[0].router.learner_.normalizer_.ranges_
    assert merged == replicas[1].router.learner_.normalizer_.ranges_
    for task, (low, high) in merged.items():
        assert low == min(o[task][0] for o in own if task in o) and high == max(o[task][1] for o in own if task in o)
    # the same traffic on the "seen" scale: the known ranges hold it, and predictions beyond it
    seen = make_router(energy_scale="seen")
    for seed in (10, 11):
        serve(seen, traffic(30, seed=seed))
    measured = seen.learner_.normalizer_.ranges_
    assert all(merged[t][0] <= low and high <= merged[t][1] for t, (low, high) in measured.items())
    assert any(merged[t] != measured.get(t) for t in merged)


# ---- replicas through each store --------------------------------------------------------
@pytest.fixture(params=["memory", "file", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "memory":
        yield InMemoryStore()
    elif request.param == "file":
        yield FileStore(tmp_path / "shared.stats")
    else:
        with redis_server(tmp_path) as url:
            yield RedisStore(url=url)


def test_two_replicas_learning_at_once_equal_one_router_that_saw_everything(store: StateStore) -> None:
    """Two replicas serve their halves of the traffic in parallel threads, syncing as they go;
    at the end each holds exactly what one router fed all the traffic learned."""
    halves = [traffic(60, seed=10), traffic(60, seed=11)]
    replicas = [SharedLearning(make_router(seed=i), store) for i in range(2)]

    def work(replica: SharedLearning, load: list[tuple[str, str, float]]) -> None:
        for start in range(0, len(load), 7):
            serve(replica.router, load[start : start + 7])
            replica.sync()

    threads = [threading.Thread(target=work, args=pair) for pair in zip(replicas, halves, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for replica in replicas:
        replica.sync()
    single = make_router()
    serve(single, halves[0] + halves[1])
    expected = single.statistics()
    for replica in replicas:
        assert replica.router.statistics().allclose(expected, atol=1e-7)
        assert replica.router.policy_.t_ == 120
    assert sum(r.last_sync_.remote_pushes for r in replicas if r.last_sync_) >= 1


def test_feedback_arriving_during_a_sync_is_kept() -> None:
    router = make_router()
    replica = SharedLearning(router, InMemoryStore())
    answer = router.generate("What is 2 + 2?", models=["small"], max_new_tokens=8)

    class SlowStore(InMemoryStore):
        def merge(self, delta: Statistics) -> Statistics:
            if router.stats_["small"]["feedback"] == 0:
                router.feedback(answer.decision_id, 1.0)  # lands while the store is contacted
            return super().merge(delta)

    replica.store = SlowStore()
    replica.sync()
    assert router.stats_["small"]["feedback"] == 1 and router.policy_.arms_["small"].n == 1
    replica.sync()  # and the next sync pushes it
    assert replica.store.read().sums["tallies/small"][1] == 1.0


def test_a_restarted_replica_resumes_from_the_store(store: StateStore) -> None:
    first = SharedLearning(make_router(), store)
    serve(first.router, traffic(30, seed=3))
    first.sync()
    restarted = SharedLearning(make_router(), store)  # a fresh process: nothing learned locally
    restarted.sync()
    assert restarted.router.statistics().allclose(first.router.statistics())
    restarted.sync()  # nothing new: nothing is counted twice
    assert restarted.router.statistics().allclose(first.router.statistics())


def test_a_replica_restarted_from_its_saved_state_counts_nothing_twice(store: StateStore, tmp_path: Path) -> None:
    one, two = SharedLearning(make_router(seed=0), store), SharedLearning(make_router(seed=1), store)
    serve(one.router, traffic(20, seed=3))
    serve(two.router, traffic(20, seed=4))
    one.sync()
    two.sync()
    one.sync()
    expected = one.router.statistics()  # every answer, once
    one.router.save(tmp_path / "one.json")
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
    loaded = GreenServRouter.load(tmp_path / "one.json", pool, features=make_hashing_extractor(n_clusters=1))
    restarted = SharedLearning(loaded, store)
    restarted.sync()
    two.sync()
    for replica in (restarted, two):
        assert replica.router.statistics().allclose(expected) and replica.router.policy_.t_ == 40
    again = SharedLearning(restarted.router, store)  # the same router wrapped once more
    again.sync()
    assert again.router.statistics().allclose(expected)


def test_replicas_loaded_from_one_saved_state_count_it_once(store: StateStore, tmp_path: Path) -> None:
    """A warm-started router saved on its own (never synced), then deployed as three replicas
    that each serve some traffic: the store holds the saved state once, and every answer."""
    warm, loads = traffic(30, seed=5), [traffic(10, seed=20 + i) for i in range(3)]
    saved = make_router()
    serve(saved, warm)
    saved.save(tmp_path / "warm.json")
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
    replicas = []
    for load in loads:
        router = GreenServRouter.load(tmp_path / "warm.json", pool, features=make_hashing_extractor(n_clusters=1))
        serve(router, load)
        replicas.append(SharedLearning(router, store))
    for replica in replicas + replicas:
        replica.sync()
    single = make_router()
    serve(single, warm + loads[0] + loads[1] + loads[2])
    for replica in replicas:
        assert replica.router.policy_.t_ == 60  # was 120: the saved 30 once per replica
        assert replica.router.statistics().allclose(single.statistics(), atol=1e-7)


def test_replicas_loaded_from_one_saved_state_with_other_new_models_count_it_once(tmp_path: Path) -> None:
    """A canary loaded from the warm start with a model the file lacks pushes the same saved
    state as the others: its fresh arm is no part of the loaded state."""
    saved = make_router()
    serve(saved, traffic(10, seed=5))
    saved.save(tmp_path / "warm.json")
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
    features = make_hashing_extractor(n_clusters=1)
    plain = GreenServRouter.load(tmp_path / "warm.json", pool, features=features)
    canary = GreenServRouter.load(
        tmp_path / "warm.json", [*pool, FakeBackend("extra", joules_per_token=3.0)], features=features
    )
    assert plain.loaded_statistics_ is not None and canary.loaded_statistics_ is not None
    assert plain.loaded_statistics_.fingerprint() == canary.loaded_statistics_.fingerprint()
    store = InMemoryStore()
    replicas = [SharedLearning(plain, store), SharedLearning(canary, store)]
    for replica in replicas + replicas:
        replica.sync()
    assert store.read().sums["policy/t"][0] == 10.0  # was 20: the warm start once per replica
    assert plain.policy_.t_ == canary.policy_.t_ == 10


def test_a_store_emptied_since_the_last_sync_is_said_and_counted_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    replicas = [SharedLearning(make_router(seed=i), FileStore(tmp_path / "shared.stats")) for i in range(2)]
    for i, replica in enumerate(replicas):
        serve(replica.router, traffic(20, seed=3 + i))
        replica.sync()
    replicas[0].sync()
    (tmp_path / "shared.stats").unlink()  # e.g. a Redis server restarted without persistence
    with caplog.at_level("WARNING", logger="greenserv"):
        for replica in replicas:
            replica.sync()
    assert caplog.text.count("emptied or replaced") == 2
    # each adopts the store as it is: what was learned before is lost, and nothing is counted twice
    store = FileStore(tmp_path / "shared.stats").read()
    assert store.sums["sync/pushes"][0] == 2.0
    assert all(replica.router.policy_.t_ == 0 for replica in replicas)
    assert replicas[0].router.statistics().allclose(replicas[1].router.statistics())


def test_wrappers_of_one_router_and_a_save_between_syncs_count_nothing_twice(tmp_path: Path) -> None:
    store = InMemoryStore()
    router = make_router()
    first, second = SharedLearning(router, store), SharedLearning(router, store)
    serve(router, traffic(10, seed=3))
    first.sync()
    serve(router, traffic(10, seed=4))
    first.sync()  # the second wrapper's base is now stale, unless it reads the router's
    second.sync()
    assert store.read().sums["tallies/small"][0] + store.read().sums["tallies/org%2Flarge"][0] == 20
    serve(router, traffic(10, seed=5))
    first.save(tmp_path / "router.json")  # syncs, then saves
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
    loaded = GreenServRouter.load(tmp_path / "router.json", pool, features=make_hashing_extractor(n_clusters=1))
    SharedLearning(loaded, store).sync()
    assert loaded.policy_.t_ == 30 and router.policy_.t_ == 30


def test_a_save_under_traffic_holds_what_its_sync_base_holds(tmp_path: Path) -> None:
    """Queries served while the save syncs (and a model added meanwhile) wait for the save:
    the file holds what the store holds, so the running replica and one restarted from the
    file never both push an answer."""
    router = make_router()
    serve(router, traffic(3, seed=1))
    threads: list[threading.Thread] = []

    class SlowStore(InMemoryStore):
        def merge(self, delta: Statistics) -> Statistics:
            if not threads:  # other threads of the replica serve and change its pool meanwhile
                threads.extend(
                    [
                        threading.Thread(target=serve, args=(router, traffic(2, seed=2))),
                        threading.Thread(target=router.add_model, args=(FakeBackend("new"),)),
                    ]
                )
                for thread in threads:
                    thread.start()
                    thread.join(0.2)
            return super().merge(delta)

    store = SlowStore()
    replica = SharedLearning(router, store)
    replica.save(tmp_path / "replica.json")
    for thread in threads:
        thread.join(5.0)
        assert not thread.is_alive()
    replica.sync()  # the running replica pushes the answers served during the save
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
    pool.append(FakeBackend("new"))
    loaded = GreenServRouter.load(tmp_path / "replica.json", pool, features=make_hashing_extractor(n_clusters=1))
    assert loaded.policy_.t_ == 3  # the file holds what the sync pushed, not the answers that waited
    SharedLearning(loaded, store).sync()  # ... and a restart from it pushes none of them again
    assert loaded.policy_.t_ == router.policy_.t_ == 5


def _clustered_router(*, centre_clusters: bool = True) -> GreenServRouter:
    return GreenServRouter(
        [FakeBackend("small"), FakeBackend("large")],
        features=make_hashing_extractor(n_clusters=3, centre_clusters=centre_clusters),
        seed=0,
    )


def test_replicas_seeded_alike_count_the_seed_once_and_a_newcomer_adopts_it() -> None:
    store = InMemoryStore()
    replicas = [_clustered_router() for _ in range(3)]
    for router in replicas:
        router.features.seed_clusters(PROMPTS)
    for router in replicas:
        SharedLearning(router, store).sync()
    for router in replicas:
        SharedLearning(router, store).sync()
    for router in replicas:
        assert int(router.features.clusterer.counts_.sum()) == len(PROMPTS)  # not three times
    newcomer = _clustered_router()  # never seeded: takes the store's clustering, seed included
    SharedLearning(newcomer, store).sync()
    seeded = replicas[0].features.clusterer
    assert np.allclose(newcomer.features.clusterer.centroids_, seeded.centroids_)  # type: ignore[arg-type]
    assert newcomer.features.clusterer.counts_.tolist() == seeded.counts_.tolist()
    # seeding again (a restarted replica running its start-up again) changes nothing
    replicas[0].features.seed_clusters(PROMPTS)
    newcomer.features.seed_clusters(PROMPTS)
    for router in (*replicas, newcomer):
        SharedLearning(router, store).sync()
    assert int(replicas[0].features.clusterer.counts_.sum()) == len(PROMPTS)
    # a replica seeded otherwise is refused before it writes anything, and keeps its own state
    before = store.read()
    odd = _clustered_router()
    odd.features.seed_clusters([*reversed(PROMPTS), "Name a prime number."])
    serve(odd, [("What is 2 + 2?", "small", 1.0)])
    policy = odd.policy_.state_dict()
    with pytest.raises(StateFileError, match="seeded their clusters with different prompts"):
        SharedLearning(odd, store).sync()
    after = store.read()
    assert after.sums.keys() == before.sums.keys()
    assert all(np.array_equal(after.sums[key], before.sums[key]) for key in before.sums)
    assert snapshot_equal(odd.policy_.state_dict(), policy)
    SharedLearning(replicas[1], store).sync()  # the others sync on


def test_a_replica_with_centred_clusters_is_refused_by_a_store_of_clusters_from_the_origin() -> None:
    """A store written before 2026-12-05 holds cluster sums with no centre (measured from the
    origin); a seeded replica measuring from a centre would add its sums to them."""
    store = InMemoryStore()
    old = _clustered_router(centre_clusters=False)
    old.features.seed_clusters(PROMPTS)
    serve(old, [("What is 2 + 2?", "small", 1.0)])
    written = old.statistics()
    keep = {key for key in written.minima if not key.startswith("clusters/")}  # as written before: no extremes
    store.merge(
        Statistics(
            sums=written.sums,
            minima={k: v for k, v in written.minima.items() if k in keep},
            maxima={k: v for k, v in written.maxima.items() if k in keep},
        )
    )
    before = store.read()
    centred = _clustered_router()  # measures from its classifier's mean embedding
    assert centred.features.clusterer.centre is not None
    centred.features.seed_clusters(PROMPTS)
    with pytest.raises(StateFileError, match="measured from the origin"):
        SharedLearning(centred, store).sync()
    assert store.read() == before  # refused before it wrote anything
    from_origin = _clustered_router(centre_clusters=False)  # the same replica measuring from the origin joins
    from_origin.features.seed_clusters(PROMPTS)
    SharedLearning(from_origin, store).sync()
    fresh = _clustered_router()  # a centred replica with no clusters yet adopts the store's, from the origin
    SharedLearning(fresh, store).sync()
    assert fresh.features.clusterer.centre is None


def snapshot_equal(a: object, b: object) -> bool:
    from greenserv_core.persistence import _canonical, _encode

    return bool(_canonical(_encode(a)) == _canonical(_encode(b)))


def test_a_merge_refused_by_one_component_leaves_every_component_as_it_was() -> None:
    router = _clustered_router()
    router.features.seed_clusters(PROMPTS)
    serve(router, [(prompt, "large", 0.5) for prompt in PROMPTS])
    state = router.statistics()

    def foreign(now: Statistics) -> Statistics:  # more answers, and clusters from another centre
        doubled = now.plus(now)
        doubled.minima["clusters/centre"] = doubled.minima["clusters/centre"] + 1.0
        return doubled

    with pytest.raises(StateFileError, match="different centres"):
        router.update_statistics(foreign)
    again = router.statistics()
    assert all(np.allclose(again.sums[key], state.sums[key]) for key in state.sums)


def test_a_sync_loses_no_clustering_learned_while_it_runs() -> None:
    router = GreenServRouter(
        [FakeBackend("small"), FakeBackend("large")], features=make_hashing_extractor(n_clusters=3), seed=0
    )
    router.features.seed_clusters(PROMPTS)
    before = int(router.features.clusterer.counts_.sum())
    done = threading.Event()

    def route() -> None:
        for i in range(1500):
            router.route(PROMPTS[i % len(PROMPTS)])
        done.set()

    def sync() -> None:
        while not done.is_set():
            router.update_statistics(lambda now: now)  # what a sync does, changing nothing

    threads = [threading.Thread(target=route), threading.Thread(target=sync)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(router.features.clusterer.counts_.sum()) - before == 1500


def test_background_sync_thread_and_context_manager() -> None:
    store = InMemoryStore()
    with SharedLearning(make_router(), store, interval_s=0.01) as replica:
        serve(replica.router, traffic(5, seed=4))
    assert replica.syncs_ >= 2 and replica.errors_ == 0
    assert store.read().sums["tallies/small"][1] + store.read().sums["tallies/org%2Flarge"][1] == 5


def test_a_stop_during_the_first_sync_of_start_leaves_no_thread() -> None:
    import time

    entered, release = threading.Event(), threading.Event()

    class SlowFirstMerge(InMemoryStore):
        def merge(self, delta: Statistics) -> Statistics:
            if not entered.is_set():
                entered.set()
                release.wait(5)
            return super().merge(delta)

    replica = SharedLearning(make_router(), SlowFirstMerge(), interval_s=0.01)
    starting = threading.Thread(target=replica.start)
    starting.start()
    assert entered.wait(5)
    stopping = threading.Thread(target=replica.stop)  # a shutdown during start-up: waits for the sync
    stopping.start()
    stopping.join(0.05)
    release.set()
    stopping.join()
    starting.join()
    syncs = replica.syncs_
    time.sleep(0.1)  # (a sync thread would sync meanwhile)
    assert replica._thread is None or not replica._thread.is_alive()  # was running after stop() returned
    assert replica.syncs_ == syncs


@pytest.mark.parametrize("interval", [float("inf"), 1e13, "1", 0.0, float("nan"), True])
def test_an_interval_the_sync_thread_cannot_wait_is_refused(interval: object) -> None:
    with pytest.raises(InvalidInputError, match="interval_s"):  # inf and 1e13 killed the thread unseen
        SharedLearning(make_router(), InMemoryStore(), interval_s=interval)  # type: ignore[arg-type]


def test_redis_settings_that_cannot_work_are_refused() -> None:
    from greenserv_core.sharing import RedisPendingDecisions

    with pytest.raises(InvalidInputError, match="ttl_s"):  # was an OverflowError
        RedisPendingDecisions(url="redis://localhost:1/0", ttl_s=float("inf"))
    for attempts in (0, 2.5):  # 0: every merge failed, said as "0 attempts met concurrent writes"
        with pytest.raises(InvalidInputError, match="max_attempts"):
            RedisStore(url="redis://localhost:1/0", max_attempts=attempts)  # type: ignore[arg-type]
    assert RedisStore(url="redis://localhost:1/0", max_attempts=np.int64(5)).max_attempts == 5  # numpy's too


def test_answers_while_the_redis_pending_store_is_down_say_so_and_run_no_model() -> None:
    """Every answer failed with redis-py's bare ConnectionError: the error names the server
    (not its password) and why answers need it, and no model runs for a decision not recorded."""
    from greenserv_core import GreenServError, MissingResourceError
    from greenserv_core.sharing import RedisPendingDecisions
    from tests.services import free_port

    runs: list[str] = []

    def reply(messages: object) -> str:
        runs.append("a model ran")
        return "ok"

    port = free_port()  # nobody listens there
    router = GreenServRouter(
        [FakeBackend(name, reply=reply) for name in ("small", "large")],
        features=make_hashing_extractor(),
        pending=RedisPendingDecisions(url=f"redis://greenserv:s3cret@127.0.0.1:{port}/0", prefix="down"),
        seed=0,
    )
    drawn = router.learner_.policy_.rng_.bit_generator.state
    for call in (
        lambda: router.generate("What is 2 + 2?", tradeoff=0.4),
        lambda: router.generate("Who wrote Hamlet?", tradeoff=0.4, decision_id="mine"),
        lambda: router.feedback("mine", 1.0),
    ):
        with pytest.raises(MissingResourceError, match=f"Redis at 127.0.0.1:{port}/0 cannot be reached") as caught:
            call()
        assert isinstance(caught.value, GreenServError) and "RedisPendingDecisions" in str(caught.value)
        assert "s3cret" not in str(caught.value)
    assert runs == [] and all(c["decisions"] == 0 for c in router.learner_.tallies_.counts_.values())
    assert router.learner_.policy_.t_ == 0  # the policy's step count (its ε schedule; shared) took no step
    assert router.learner_.policy_.rng_.bit_generator.state == drawn  # nor did its random stream move


@pytest.mark.parametrize("call", ["generate", "stream", "cascade"])
def test_an_answer_made_while_the_redis_pending_store_went_away_is_returned_and_its_joules_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, call: str
) -> None:
    """Redis died while the model answered: the answer was lost (the error was the store's,
    raised while forgetting the decision) and its joules were counted nowhere."""
    import math

    import redis

    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:
        client = redis.Redis.from_url(url)

        def reply(messages: object) -> str:
            client.shutdown(nosave=True)  # Redis goes away while the model answers
            return "four"

        small = FakeBackend("small", reply=reply, joules_per_token=1.0, logprobs=lambda m, t: [math.log(0.01)] * len(t))
        router = GreenServRouter(
            [small, FakeBackend("large", reply=lambda m: "4", joules_per_token=3.0)],
            cascades=[("small", "large")] if call == "cascade" else (),
            features=make_hashing_extractor(),
            policy="static:small->large" if call == "cascade" else "static:small",
            pending=RedisPendingDecisions(url=url, prefix="gone"),
            seed=0,
        )
        with caplog.at_level("WARNING", logger="greenserv"):
            if call == "stream":
                chunks = list(router.stream("What is 2 + 2?"))
                answer = chunks[-1].generation
                assert "".join(c.delta for c in chunks) == "four"
            else:
                answer = router.generate("What is 2 + 2?")
        assert answer is not None and answer.energy_joules > 0
        assert answer.text == ("4" if call == "cascade" else "four")  # the cascade escalated by its fixed threshold
        spent = sum(c["energy_joules"] for c in router.learner_.tallies_.counts_.values())
        assert spent == pytest.approx(answer.energy_joules)
        assert "could not record the outcome" in caplog.text and "answer is returned" in caplog.text


def test_a_model_failing_while_the_redis_pending_store_is_away_raises_its_own_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Forgetting the failed decision raised the store's error in place of the model's."""
    import redis

    from greenserv_core.sharing import RedisPendingDecisions

    class Broken(RuntimeError):
        pass

    with redis_server(tmp_path) as url:
        client = redis.Redis.from_url(url)

        def reply(messages: object) -> str:
            client.shutdown(nosave=True)
            raise Broken("the model crashed")

        router = GreenServRouter(
            [FakeBackend("small", reply=reply)],
            features=make_hashing_extractor(),
            pending=RedisPendingDecisions(url=url, prefix="gone"),
            seed=0,
        )
        with caplog.at_level("WARNING", logger="greenserv"), pytest.raises(Broken, match="crashed"):
            router.generate("What is 2 + 2?")
        assert "could not forget it" in caplog.text


def test_a_replica_that_joins_its_store_late_still_says_when_no_one_seeded_clusters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The warning came only after start()'s own sync: a replica whose store was away then never gave it."""
    away = tmp_path / "mount"
    away.write_text("")  # a file where the store's folder should be: the store cannot be reached
    with caplog.at_level("WARNING", logger="greenserv"):
        late = SharedLearning(make_router(), FileStore(away / "shared.stats"), interval_s=0.02).start()
        assert "no clustering yet" not in caplog.text  # (nothing is known of the store yet)
        away.unlink()  # the store is back
        deadline = time.monotonic() + 5
        while late.syncs_ == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        late.stop(final_sync=False)
    assert late.syncs_ >= 1 and caplog.text.count("no clustering yet") == 1

    caplog.clear()  # stopped before the thread synced, started again once the store is back: said once
    away = tmp_path / "mount-2"
    away.write_text("")
    again = SharedLearning(make_router(), FileStore(away / "shared.stats"), interval_s=0.02)
    with caplog.at_level("WARNING", logger="greenserv"):
        again.start()
        again.stop(final_sync=False)
        away.unlink()
        again.start()
        deadline = time.monotonic() + 5
        while again.syncs_ < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        again.stop(final_sync=False)
    assert again.syncs_ >= 3 and caplog.text.count("no clustering yet") == 1


def test_a_failing_store_loses_nothing() -> None:
    class FlakyStore(InMemoryStore):
        fail = True

        def merge(self, delta: Statistics) -> Statistics:
            if self.fail:
                raise ConnectionError("store down")
            return super().merge(delta)

    store = FlakyStore()
    replica = SharedLearning(make_router(), store)
    serve(replica.router, traffic(5, seed=5))
    with pytest.raises(ConnectionError):
        replica.sync()
    store.fail = False
    replica.sync()
    assert store.read().sums["tallies/small"][1] + store.read().sums["tallies/org%2Flarge"][1] == 5


def test_a_replica_starts_on_its_own_state_while_its_store_is_down_and_joins_it_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fleet started while its store restarts: start() warned and routed on local state (it
    raised, and a FileStore whose folder was away could not even be made); once the store is
    back the sync thread joins it, counting nothing twice."""
    import time

    from tests.services import free_port

    with caplog.at_level("WARNING", logger="greenserv"):  # a Redis server that is not up (yet)
        down = SharedLearning(make_router(), RedisStore(url=f"redis://127.0.0.1:{free_port()}/0"), interval_s=60)
        down.start()
        serve(down.router, traffic(3, seed=30))
        down.stop(final_sync=False)
    assert down.errors_ == 1 and down.router.policy_.t_ == 3
    assert "cannot be reached" in caplog.text and "starts on its own state" in caplog.text
    with pytest.raises(InvalidInputError, match="redis://redis-host:6379/0"):  # malformed addresses stay errors
        RedisStore(url="redis//redis-host:6379")
    for scheme in ("redis", "REDIS", "Rediss"):  # redis-py reads any case, and took "pool-a" for database 0
        with pytest.raises(InvalidInputError, match="database after the address must be a number"):
            RedisStore(url=f"{scheme}://redis-host:6379/pool-a")
    with pytest.raises(InvalidInputError, match="folder"):
        FileStore(tmp_path)

    away = tmp_path / "mount"  # a file where the store's folder should be: unreachable until removed
    away.write_text("")
    path = away / "shared.stats"
    halves = [traffic(20, seed=31), traffic(20, seed=32)]
    early = SharedLearning(make_router(), FileStore(path), interval_s=0.02).start()
    assert early.errors_ == 1 and early.syncs_ == 0
    serve(early.router, halves[0])
    with caplog.at_level("CRITICAL", logger="greenserv"):  # (the sync thread's failures, logged meanwhile)
        away.unlink()  # the store is back
        deadline = time.monotonic() + 5
        while early.syncs_ == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert early.syncs_ >= 1
    late = SharedLearning(make_router(), FileStore(path))
    serve(late.router, halves[1])
    late.sync()
    early.stop()
    late.sync()
    single = make_router()
    serve(single, halves[0] + halves[1])
    for replica in (early, late):
        assert replica.router.statistics().allclose(single.statistics(), atol=1e-7)
        assert replica.router.policy_.t_ == 40


def test_a_store_away_for_many_syncs_is_logged_once_and_its_return_said(caplog: pytest.LogCaptureFixture) -> None:
    """The sync thread logged every failed sync with its traceback (3,600 records an hour at
    interval_s=1): an outage is said once, the failures after its first at debug level (a new
    kind of error once), and the sync that ends it in one line; every failure is counted."""
    import logging
    import time

    class Away(InMemoryStore):
        error: Exception | None = None

        def merge(self, delta: Statistics) -> Statistics:
            if self.error is not None:
                raise self.error
            return super().merge(delta)

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert condition()

    store = Away()
    with caplog.at_level(logging.DEBUG, logger="greenserv"):
        sharing = SharedLearning(make_router(), store, interval_s=0.005).start()
        store.error = ConnectionError("store down")
        wait_for(lambda: sharing.errors_ >= 5)
        store.error = StateFileError("the store holds no statistics")  # another kind of error: said once too
        wait_for(lambda: sharing.errors_ >= 10)
        store.error = None
        wait_for(lambda: any("answers again" in r.getMessage() for r in caplog.records))
        sharing.stop()
    records = [r for r in caplog.records if r.name == "greenserv" and "sync" in r.getMessage()]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    errors = [r for r in records if r.levelno == logging.ERROR]
    failed = [r for r in records if r.levelno == logging.DEBUG and "failed again" in r.getMessage()]
    back = [r for r in records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "cannot be reached" in warnings[0].getMessage()
    assert len(errors) == 1 and errors[0].exc_info is not None  # not a store away: with its traceback
    assert len(back) == 1 and f"after {sharing.errors_} failed syncs" in back[0].getMessage()
    assert len(failed) == sharing.errors_ - 2 and all(r.exc_info is None for r in failed)


def _merge_many(path: str, count: int) -> None:
    store = FileStore(path)
    for _ in range(count):
        store.merge(Statistics(sums={"n": np.array([1.0])}))


def test_file_store_loses_no_update_when_processes_write_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.stats")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_merge_many, args=(path, 25)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert FileStore(path).read().sums["n"].tolist() == [100.0]


def test_redis_store_loses_no_update_when_replicas_write_at_once(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        stores = [RedisStore(url=url) for _ in range(6)]

        def hammer(store: RedisStore) -> None:
            for _ in range(40):
                store.merge(Statistics(sums={"n": np.array([1.0])}, maxima={"m": np.array([1.0])}))

        threads = [threading.Thread(target=hammer, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert stores[0].read().sums["n"].tolist() == [240.0]


def test_a_merge_whose_reply_and_check_were_both_lost_is_not_sent_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis
    from redis.client import Pipeline

    with redis_server(tmp_path) as url:
        store = RedisStore(url=url, key="k")
        router = make_router()
        replica = SharedLearning(router, store)
        replica.sync()
        serve(router, traffic(5, seed=1))
        execute = Pipeline.execute

        def applied_then_lost(self: Pipeline, *args: object, **kwargs: object) -> object:
            execute(self, *args, **kwargs)  # the server applies the transaction; its reply is lost
            raise redis.ConnectionError("connection reset")

        def unreachable(*args: object) -> object:
            raise redis.ConnectionError("server unreachable for a moment")

        with monkeypatch.context() as lost:
            lost.setattr(Pipeline, "execute", applied_then_lost)
            for check in ("get", "exists"):  # and the check that it went through fails too
                lost.setattr(store.client, check, unreachable)
            with pytest.raises(redis.ConnectionError):
                replica.sync()
        replica.sync()
        total = store.read().sums
        assert total["tallies/small"][0] + total["tallies/org%2Flarge"][0] == 5  # was 10
        assert router.policy_.t_ == 5 and total["sync/pushes"][0] == 3


def test_a_redis_merge_that_the_server_ran_late_is_not_added_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction timed out on the client, and the server ran it just after the client
    looked for its marker: the retry finds the marker, and adds nothing."""
    import redis
    from redis.client import Pipeline

    with redis_server(tmp_path) as url:
        store, other = RedisStore(url=url, key="k"), redis.Redis.from_url(url)
        store.merge(Statistics(sums={"n": np.array([10.0])}))
        execute, get = Pipeline.execute, store.client.get
        late: list[tuple[object, ...]] = []

        def times_out(self: Pipeline, *args: object, **kwargs: object) -> object:
            if late or not self.command_stack:
                return execute(self, *args, **kwargs)
            late.extend(command for command, _ in self.command_stack if command[0] == "SET")
            self.reset()
            raise redis.TimeoutError("Timeout reading from socket")

        def marker_check(name: str) -> object:
            value = get(name)
            while late and late[0] is not None:  # the server runs the transaction now
                other.execute_command(*late.pop(0))
            late[:] = [None]
            return value

        with monkeypatch.context() as slow:
            slow.setattr(Pipeline, "execute", times_out)
            slow.setattr(store.client, "get", marker_check)
            total = store.merge(Statistics(sums={"n": np.array([1.0])}))
        assert total.sums["n"].tolist() == store.read().sums["n"].tolist() == [11.0]  # was 12


def test_a_replica_whose_taking_back_of_a_loaded_state_failed_owes_it(tmp_path: Path) -> None:
    saved = make_router()
    serve(saved, traffic(10, seed=5))
    saved.save(tmp_path / "warm.json")

    class FailsOnce(InMemoryStore):
        failed = False

        def merge(self, delta: Statistics) -> Statistics:
            if not self.failed and "sync/pushes" not in delta.sums:  # the taking back
                self.failed = True
                raise OSError("store unreachable")
            return super().merge(delta)

    store = FailsOnce()
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
    replicas = [
        SharedLearning(
            GreenServRouter.load(tmp_path / "warm.json", pool, features=make_hashing_extractor(n_clusters=1)), store
        )
        for _ in range(2)
    ]
    replicas[0].sync()
    with pytest.raises(OSError):
        replicas[1].sync()  # pushed the saved state again; could not take it back out
    for replica in replicas + replicas:
        replica.sync()
    for replica in replicas:
        assert replica.router.policy_.t_ == 10


def test_a_loaded_replica_whose_first_push_was_taken_unconfirmed_takes_the_saved_state_back(tmp_path: Path) -> None:
    """The store took a replica's first push of a saved state another replica had pushed
    already, but its reply and the check were lost: the next sync takes the state back out."""
    saved = make_router()
    serve(saved, traffic(10, seed=5))
    saved.save(tmp_path / "warm.json")

    class LosesOneReply(InMemoryStore):  # keeps receipts; the reply and its check are lost once
        def __init__(self) -> None:
            super().__init__()
            self.receipts: dict[str, str] = {}
            self.lose_next = False

        def merge(self, delta: Statistics, *, receipt: tuple[str, str] | None = None) -> Statistics:
            total = super().merge(delta)
            if receipt is not None:
                self.receipts[receipt[0]] = receipt[1]
            if self.lose_next:
                self.lose_next = False
                raise ConnectionError("reply lost")
            return total

        def took(self, receipt: tuple[str, str]) -> bool:
            return self.receipts.get(receipt[0]) == receipt[1]

    store = LosesOneReply()
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
    features = make_hashing_extractor(n_clusters=1)
    one, two = (
        SharedLearning(GreenServRouter.load(tmp_path / "warm.json", pool, features=features), store) for _ in range(2)
    )
    one.sync()
    store.lose_next = True
    with pytest.raises(ConnectionError):
        two.sync()
    for replica in (one, two, one, two):
        replica.sync()
    assert store.read().sums["policy/t"][0] == 10.0  # was 20: the warm start twice
    assert one.router.policy_.t_ == two.router.policy_.t_ == 10


def test_a_first_push_taken_unconfirmed_after_another_replica_pushed_between_its_read_and_merge(
    tmp_path: Path,
) -> None:
    """Its count read before the merge said it was the first; another replica pushed the saved
    state in between, and the reply was lost: the count the merge made is kept with the
    receipt, and the next sync takes the state back out (it was counted twice)."""
    saved = make_router()
    serve(saved, traffic(10, seed=5))
    saved.save(tmp_path / "warm.json")
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
    features = make_hashing_extractor(n_clusters=1)
    with redis_server(tmp_path) as url:
        other = SharedLearning(
            GreenServRouter.load(tmp_path / "warm.json", pool, features=features), RedisStore(url=url)
        )

        class Racing(RedisStore):  # the other replica pushes first; this merge's reply is lost
            raced = False

            def merge(self, delta: Statistics, **options: Any) -> Statistics:
                if Racing.raced:
                    return super().merge(delta, **options)
                Racing.raced = True
                other.sync()
                super().merge(delta, **options)
                raise ConnectionError("reply lost")

        racing = SharedLearning(GreenServRouter.load(tmp_path / "warm.json", pool, features=features), Racing(url=url))
        with pytest.raises(ConnectionError, match="reply lost"):
            racing.sync()
        for replica in (racing, other, racing, other):
            replica.sync()
        assert RedisStore(url=url).read().sums["policy/t"][0] == 10.0  # was 20: the warm start twice
        assert racing.router.policy_.t_ == other.router.policy_.t_ == 10


def test_a_batch_refused_after_a_sync_takes_back_only_its_own_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync between a refused batch's decisions and its refusal sets the step count to the
    replicas' total: the batch takes back its own steps from it (it set the count back to
    before the sync, and the next sync took every other replica's steps out of the store)."""
    from greenserv_core.errors import NoEligibleModelError

    store = InMemoryStore()
    one, two = make_router(strategy="epsilon", seed=0), make_router(strategy="epsilon", seed=1)
    shared_one, shared_two = SharedLearning(one, store), SharedLearning(two, store)
    for i in range(50):
        two.route(f"question {i}?", max_new_tokens=8)
    shared_two.sync()
    executor, routed = one._executor, one._executor.route

    def route(*args: Any, **kwargs: Any) -> Any:
        if len(one.pending_) == 2:  # the background sync runs before the third query is routed
            shared_one.sync()
        return routed(*args, **kwargs)

    monkeypatch.setattr(executor, "route", route)
    with pytest.raises(NoEligibleModelError):
        one.generate_batch(["What is 2 + 2?", "Tell me a joke.", "Summarise this: " + "word " * 3000], max_new_tokens=8)
    assert one.policy_.t_ == 50  # the total without the batch's two
    shared_one.sync()
    shared_two.sync()
    assert store.read().sums["policy/t"][0] == 50.0 and one.policy_.t_ == two.policy_.t_ == 50  # was 0


def test_redis_store_refuses_foreign_values(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        store = RedisStore(url=url, key="k")
        store.client.set("k", b"garbage")
        with pytest.raises(StateFileError):
            store.read()


def test_a_replica_restarted_under_another_address_of_the_same_redis_counts_nothing_twice(tmp_path: Path) -> None:
    import redis

    with redis_server(tmp_path) as url:
        port = redis.Redis.from_url(url).connection_pool.connection_kwargs["port"]
        router = make_router()
        sharing = SharedLearning(router, RedisStore(url=f"redis://localhost:{port}/0", key="k"))
        serve(router, traffic(4, seed=0))
        sharing.save(tmp_path / "replica.json")
        counted = RedisStore(url=url, key="k").read().sums["tallies/small"].tolist()
        pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
        restarted = GreenServRouter.load(tmp_path / "replica.json", pool, features=make_hashing_extractor(n_clusters=1))
        SharedLearning(restarted, RedisStore(url=f"redis://127.0.0.1:{port}/0", key="k")).sync()
        assert RedisStore(url=url, key="k").read().sums["tallies/small"].tolist() == counted
        named = RedisStore(url=url, key="k", identity="pool-a")
        assert named.identity == "redis:pool-a#k" and RedisStore(url=url, key="k").identity.startswith(
            "redis:loopback:"
        )
        with pytest.raises(InvalidInputError, match="decode_responses=False"):
            RedisStore(redis.Redis.from_url(url, decode_responses=True))


def test_a_replica_restarted_with_the_store_named_counts_nothing_twice(tmp_path: Path) -> None:
    """Synced under the store's address, restarted under ``identity=`` (as the README advises
    where replicas reach the server under several names): the base saved is still found."""
    import redis

    with redis_server(tmp_path) as url:
        router = make_router()
        sharing = SharedLearning(router, RedisStore(url=url, key="k"))  # named 'redis:loopback:…'
        serve(router, traffic(4, seed=0))
        sharing.save(tmp_path / "replica.json")
        counted = RedisStore(url=url, key="k").read().sums["tallies/small"].tolist()
        pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
        restarted = GreenServRouter.load(tmp_path / "replica.json", pool, features=make_hashing_extractor(n_clusters=1))
        SharedLearning(restarted, RedisStore(url=url, key="k", identity="pool-a")).sync()
        assert RedisStore(url=url, key="k").read().sums["tallies/small"].tolist() == counted
    client = redis.Redis(host="Cache.Example")  # (a URL's host is lowercased already)
    named = RedisStore(client, key="k", identity="pool-a")
    assert named.former_identities == ("redis:cache.example:6379/0#k", "redis:Cache.Example:6379/0#k")
    assert RedisStore(client, key="k").former_identities == ("redis:Cache.Example:6379/0#k",)


# ---- pending decisions shared through Redis ---------------------------------------------------
def test_feedback_may_reach_another_replica_through_redis(tmp_path: Path) -> None:
    from greenserv_core import DecisionAlreadyScoredError, DecisionIdInUseError, UnknownDecisionError
    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:

        def replica(seed: int) -> SharedLearning:
            router = GreenServRouter(
                [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)],
                features=make_hashing_extractor(n_clusters=1),
                seed=seed,
                pending=RedisPendingDecisions(url=url, prefix="test"),
            )
            return SharedLearning(router, RedisStore(url=url))

        one, two = replica(0), replica(1)
        answer = one.router.generate("What is 2 + 2?", models=["small"], max_new_tokens=8)
        assert two.router.pending_.get(answer.decision_id).energy_joules == answer.energy_joules
        record = two.router.feedback(answer.decision_id, 1.0)  # scored where it was not routed
        assert record.applied and record.reward is not None
        assert two.router.policy_.arms_["small"].n == 1
        with pytest.raises(DecisionAlreadyScoredError):
            one.router.feedback(answer.decision_id, 0.0)
        two.sync()
        one.sync()
        assert one.router.policy_.arms_["small"].n == 1  # learned through the shared statistics

        # replicas racing to score one decision: exactly one wins
        racing = one.router.generate("Who wrote Hamlet?", max_new_tokens=8)
        outcomes: list[str] = []

        def score(router: GreenServRouter) -> None:
            try:
                router.feedback(racing.decision_id, 1.0)
                outcomes.append("applied")
            except DecisionAlreadyScoredError:
                outcomes.append("refused")

        threads = [threading.Thread(target=score, args=(r.router,)) for r in (one, two, one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["applied", "refused", "refused", "refused"]

        with pytest.raises(UnknownDecisionError, match="unknown or expired"):
            two.router.feedback("never-made", 1.0)
        with pytest.raises(DecisionIdInUseError) as taken:
            two.router.route("Hi", decision_id=racing.decision_id)
        assert taken.value.decision_id == racing.decision_id
        fresh = one.router.generate("Who painted the Mona Lisa?", max_new_tokens=8)
        with pytest.raises(DecisionIdInUseError) as stored:  # the store itself refuses a second add
            two.router.pending_.add(one.router.pending_.get(fresh.decision_id))
        assert stored.value.decision_id == fresh.decision_id
        one.router.feedback(fresh.decision_id, 1.0)
        assert len(one.router.pending_) == 0


def test_a_store_is_never_named_like_one_freed_before_it(caplog: pytest.LogCaptureFixture) -> None:
    """A store named by its address would be taken for a freed store allocated there before,
    and a router would adopt that store's base for it (and throw away what it learned)."""
    from greenserv_core.sharing.stores import store_identity

    class OwnStore:  # a store of the user's own, without an identity
        def merge(self, delta: Statistics) -> Statistics:
            return delta

        def read(self) -> Statistics:
            return Statistics()

    for make in (InMemoryStore, OwnStore):
        names: dict[int, str] = {}
        for _ in range(1000):
            store = make()
            address, name = id(store), store_identity(store)  # type: ignore[arg-type]
            assert store_identity(store) == name  # type: ignore[arg-type]
            if address in names:  # a new store where a freed one was
                assert names[address] != name
                break
            names[address] = name
            del store
        else:
            pytest.skip("no address was reused")
    assert caplog.text.count("has no `identity`") == 1  # said once, for the store class without one


def test_the_default_store_is_a_file_per_pool_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENSERV_CACHE", str(tmp_path))
    one, two = SharedLearning(make_router()), SharedLearning(make_router())
    assert isinstance(one.store, FileStore) and one.store.path.parent == tmp_path / "shared"
    serve(one.router, traffic(5, seed=6))
    one.sync()
    two.sync()
    assert two.router.statistics().allclose(one.router.statistics())


def test_the_default_store_stays_the_file_a_replica_synced_with_when_its_pool_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas restarted from their saved routers with a model added to the pool keep their
    default file (before, the pool's new file: empty, each pushed all it held, counted twice)."""
    monkeypatch.setenv("GREENSERV_CACHE", str(tmp_path))
    replicas = [SharedLearning(make_router(seed=i)) for i in range(2)]
    for replica, seed in zip(replicas, (3, 4), strict=True):
        serve(replica.router, traffic(10, seed=seed))
    for replica in replicas:
        replica.save(tmp_path / f"{replica.router.seed}.json")
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
    restarted = [
        SharedLearning(
            GreenServRouter.load(
                tmp_path / f"{seed}.json", [*pool, FakeBackend("extra")], features=make_hashing_extractor(n_clusters=1)
            )
        )
        for seed in (0, 1)
    ]
    assert isinstance(replicas[0].store, FileStore)
    for replica in restarted:
        assert isinstance(replica.store, FileStore) and replica.store.identity == replicas[0].store.identity
    for replica in restarted + restarted:
        replica.sync()
    assert [replica.router.policy_.t_ for replica in restarted] == [20, 20]  # was [30, 30]
    fresh = SharedLearning(  # a router of the new pool that never synced: the new pool's own file
        GreenServRouter([*pool, FakeBackend("extra")], features=make_hashing_extractor(n_clusters=1))
    )
    assert isinstance(fresh.store, FileStore) and fresh.store.path == default_store_path(fresh.router.models)


def test_a_saved_state_counts_once_though_its_first_pusher_removed_a_model(tmp_path: Path) -> None:
    """The first replica to push a warm start had removed a model: it pushes the warm start's
    sums of that model all the same, as the later ones take back all they hold of it (before,
    what the warm start learned of the model was lost from the store and every replica)."""
    saved = make_router()
    serve(saved, [(prompt, model, 1.0) for prompt in PROMPTS[:5] for model in ("small", "org/large")])
    saved.save(tmp_path / "warm.json")
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("org/large", joules_per_token=9.0)]
    features = make_hashing_extractor(n_clusters=1)
    without, kept = (GreenServRouter.load(tmp_path / "warm.json", pool, features=features) for _ in range(2))
    without.remove_model("org/large")  # a node that cannot serve it
    store = InMemoryStore()
    first, second = SharedLearning(without, store), SharedLearning(kept, store)
    for replica in (first, second, first, second):
        replica.sync()
    assert store.read().sums["policy/org%2Flarge/n"][0] == 5.0  # was 0
    assert store.read().sums["policy/small/n"][0] == 5.0
    assert kept.policy_.arms_["org/large"].n == 5  # was 0
    without.add_model(FakeBackend("org/large", joules_per_token=9.0))  # served again: the warm start's, once
    for replica in (first, second, first):
        replica.sync()
    assert without.policy_.arms_["org/large"].n == kept.policy_.arms_["org/large"].n == 5


def test_a_model_added_on_one_replica_later_keeps_what_others_learned() -> None:
    """Replica A learns about a model that replica B adds only later: B's first sync must add
    its (zero) change, not subtract A's learning from the store."""
    store = InMemoryStore()
    a, b = make_router(seed=0), make_router(seed=1)
    a.add_model(FakeBackend("extra", joules_per_token=2.0))
    first, second = SharedLearning(a, store), SharedLearning(b, store)
    serve(a, [(prompt, "extra", 1.0) for prompt in PROMPTS])
    first.sync()
    second.sync()  # B has no "extra" yet: it adopts nothing of it
    b.add_model(FakeBackend("extra", joules_per_token=2.0))
    second.sync()
    first.sync()
    learned = a.policy_.arms_["extra"].n
    assert learned == len(PROMPTS)
    assert b.policy_.arms_["extra"].n == learned  # B adopted A's learning about the model


def test_a_sync_whose_total_cannot_be_adopted_never_sends_its_change_twice() -> None:
    """Two replicas seeded otherwise start together: both pass the first-sync check, both
    write, and the total holds two seeds no replica can load. The change each sent stays sent."""

    class ReadBeforeTheOtherWrites(InMemoryStore):
        def read(self) -> Statistics:
            return Statistics()  # what both replicas saw when they started at once

    store = ReadBeforeTheOtherWrites()
    first, second = _clustered_router(), _clustered_router()
    first.features.seed_clusters(PROMPTS)
    second.features.seed_clusters([*reversed(PROMPTS), "Name a prime number."])
    SharedLearning(first, store).sync()
    sharing = SharedLearning(second, store)
    with pytest.raises(StateFileError, match="different prompts"):
        sharing.sync()
    serve(second, [("What is 2 + 2?", "small", 1.0)])
    with pytest.raises(StateFileError, match="different prompts"):
        sharing.sync()  # sends the answer
    sent = store.merge(Statistics()).sums["tallies/small"].copy()
    for _ in range(2):
        with pytest.raises(StateFileError, match="different prompts"):
            sharing.sync()
    assert store.merge(Statistics()).sums["tallies/small"].tolist() == sent.tolist()  # the answer once, not thrice


@pytest.mark.parametrize("other", [{"complexity_edges": (10.0, 20.0, 90.0)}, {"task_encoding": "probabilities"}])
def test_a_replica_whose_context_means_other_things_is_refused_before_it_writes(other: dict[str, object]) -> None:
    from greenserv_core.features import FeatureExtractor

    def replica(**options: object) -> GreenServRouter:
        features = make_hashing_extractor(n_clusters=3)
        extractor = FeatureExtractor(features.embedder, features.task_classifier, n_clusters=3, **options)  # type: ignore[arg-type]
        extractor.seed_clusters(PROMPTS)
        return GreenServRouter([FakeBackend("small"), FakeBackend("large")], features=extractor, seed=0)

    store = InMemoryStore()
    first = replica()
    serve(first, [("What is 2 + 2?", "small", 1.0)])
    SharedLearning(first, store).sync()
    before = store.read()
    odd = replica(**other)
    serve(odd, [("What is 2 + 2?", "small", 1.0)])
    with pytest.raises(StateFileError, match="different context layouts"):
        SharedLearning(odd, store).sync()
    assert store.read().sums.keys() == before.sums.keys()
    assert all(np.array_equal(store.read().sums[key], before.sums[key]) for key in before.sums)
    with pytest.raises(StateFileError, match="different context layouts"):  # a total that holds both is refused too
        odd.features.load_statistics(first.features.statistics().plus(odd.features.statistics()))


def test_replicas_whose_policies_keep_other_sums_are_refused_and_the_linear_ones_share() -> None:
    """epsilon-nc's ``n`` and ``sum`` and the ridge sums of linucb, thompson and epsilon share a
    name (``n``), not a meaning: adding them up gave epsilon-nc a mean of 0.5 from scores of 1.0."""
    store = InMemoryStore()
    routers = {strategy: make_router(strategy) for strategy in ("linucb", "epsilon-nc", "thompson", "epsilon")}
    for router in routers.values():
        serve(router, [("What is 2 + 2?", "small", 1.0)] * 3)
    SharedLearning(routers["linucb"], store).sync()
    before = store.read()
    with pytest.raises(StateFileError, match="hold n, xx, yx per arm, this replica's policy keeps n, sum"):
        SharedLearning(routers["epsilon-nc"], store).sync()
    assert store.read() == before  # refused before it wrote
    both = routers["linucb"].policy_.statistics().plus(routers["epsilon-nc"].policy_.statistics())
    with pytest.raises(StateFileError, match="this 'epsilon-nc' policy keeps n, sum"):  # a total holding both
        routers["epsilon-nc"].policy_.load_statistics(both)
    assert routers["epsilon-nc"].policy_.arms_["small"] == {"n": 3, "mean": 1.0}
    for strategy in ("thompson", "epsilon"):  # the same ridge sums: they share
        SharedLearning(routers[strategy], store).sync()
    SharedLearning(routers["linucb"], store).sync()
    assert routers["linucb"].policy_.arms_["small"].n == 9
    unmarked = InMemoryStore()  # a store written before the mark: told apart by the names of the sums
    stats = routers["linucb"].statistics()
    unmarked.merge(Statistics(sums=stats.sums, minima={}, maxima={}))
    with pytest.raises(StateFileError, match="this replica's policy keeps n, sum"):  # was merged: a mean of 0.5
        SharedLearning(make_router("epsilon-nc"), unmarked).sync()


def test_a_score_before_the_outcome_through_redis_is_taken_once_and_the_outcome_still_teaches(tmp_path: Path) -> None:
    from greenserv_core import DecisionAlreadyScoredError
    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:

        def replica(seed: int) -> GreenServRouter:
            return GreenServRouter(
                [FakeBackend("small", joules_per_token=1.0), FakeBackend("large", joules_per_token=9.0)],
                features=make_hashing_extractor(n_clusters=1),
                seed=seed,
                pending=RedisPendingDecisions(url=url, prefix="early"),
            )

        one, two = replica(0), replica(1)
        decision = one.route("What is 2 + 2?", models=["small"])
        assert two.feedback(decision.decision_id, 1.0).applied  # the score first, on another replica
        with pytest.raises(DecisionAlreadyScoredError):
            one.feedback(decision.decision_id, 0.0)
        one.record_outcome(decision.decision_id, energy_joules=3.0, latency_s=0.1)  # then the outcome
        x, tokens = decision.features.vector, decision.features.prompt_tokens
        assert one.energy_.predict("small", x, tokens) == pytest.approx(3.0, rel=0.2)
        with pytest.raises(InvalidInputError, match="already recorded"):
            two.record_outcome(decision.decision_id, energy_joules=3.0, latency_s=0.1)  # taken once
        assert two.energy_.predict("small", x, tokens) is None


def test_statistics_bytes_that_could_not_have_been_written_are_refused() -> None:
    import json as json_module
    import struct

    def packed(entries: object, data: bytes) -> bytes:
        header = json_module.dumps(entries).encode()
        return b"GSS1" + struct.pack("<I", len(header)) + header + data

    nan = np.array([np.nan]).astype("<f8").tobytes()
    for bad in (
        packed([["sums", "n", [1]]], nan),  # NaN, which no merge can take
        packed([["sums", "a", [-1]], ["sums", "b", [3]]], np.ones(2).tobytes()),  # a negative shape
        packed([["sums", "a", [1]], ["sums", "a", [1]]], np.ones(2).tobytes()),  # a key twice
        packed("entries", b""),
    ):
        with pytest.raises(StateFileError, match="shared statistics are corrupt"):
            Statistics.from_bytes(bad)


def test_leaving_a_failed_block_reports_the_blocks_error_not_the_last_syncs() -> None:
    class Unreachable(InMemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.down = False

        def merge(self, delta: Statistics) -> Statistics:
            if self.down:
                raise ConnectionError("store unreachable")
            return super().merge(delta)

    store = Unreachable()
    sharing = SharedLearning(make_router(), store, interval_s=60.0)
    with pytest.raises(ValueError, match="the block's own error"), sharing:
        store.down = True
        raise ValueError("the block's own error")
    assert sharing.errors_ == 1


def test_a_sync_thread_stopped_by_a_base_exception_is_counted_and_can_start_again() -> None:
    class Exiting(InMemoryStore):
        exits = 0

        def merge(self, delta: Statistics) -> Statistics:
            if self.exits:
                self.exits -= 1
                raise SystemExit("a store client gave up")
            return super().merge(delta)

    store = Exiting()
    sharing = SharedLearning(make_router(), store, interval_s=0.02).start()
    store.exits = 1
    deadline = time.monotonic() + 5
    while sharing.errors_ == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sharing.errors_ == 1
    assert sharing._thread is not None
    sharing._thread.join(5)  # (it counts the error, logs it, then ends)
    sharing.start()  # the dead thread is not "already running"
    sharing.stop()


def test_a_model_removed_and_added_again_between_syncs_takes_nothing_from_the_pool() -> None:
    store = InMemoryStore()
    one, two = SharedLearning(make_router(), store), SharedLearning(make_router(), store)
    serve(two.router, [("What is 2 + 2?", "org/large", 1.0)] * 3)
    two.sync()
    one.sync()
    learned = {k: v.copy() for k, v in store.read().sums.items() if k.startswith("policy/")}
    one.router.remove_model("org/large")  # a redeploy: gone and back before the next sync
    one.router.add_model(FakeBackend("org/large", joules_per_token=9.0))
    one.sync()
    two.sync()
    after = store.read().sums
    for key, value in learned.items():
        assert np.allclose(after[key], value), key  # nothing subtracted from what the pool learned


def test_a_model_removed_and_added_again_during_a_sync_takes_nothing_from_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = InMemoryStore()
    one, two = SharedLearning(make_router(seed=0), store), SharedLearning(make_router(seed=1), store)
    serve(two.router, [(p, "org/large", 1.0) for p in PROMPTS[:3]])
    serve(one.router, [(p, "org/large", 1.0) for p in PROMPTS[3:5]])
    for replica in (two, one, two):
        replica.sync()
    merge = store.merge

    def redeployed_meanwhile(delta: Statistics) -> Statistics:
        total = merge(delta)
        one.router.remove_model("org/large")  # a redeploy lands while the store is contacted
        one.router.add_model(FakeBackend("org/large", joules_per_token=9.0))
        monkeypatch.undo()
        return total

    monkeypatch.setattr(store, "merge", redeployed_meanwhile)
    one.sync()
    assert one.router.policy_.arms_["org/large"].n == 5  # was 0: 5 - 5 learned here before
    one.sync()
    two.sync()
    assert store.read().sums["policy/org%2Flarge/n"][0] == 5.0  # was 0: the pool's learning of it wiped
    assert two.router.policy_.arms_["org/large"].n == 5


def test_tallies_shared_as_one_vector_with_labelled_are_read() -> None:
    from greenserv_core.routing.tallies import Tallies
    from greenserv_core.statistics import Statistics

    tallies = Tallies()
    tallies.add_model("m")
    tallies.load_statistics(Statistics(sums={"m": np.array([3.0, 2.0, 1.5, 1.0])}))  # as one earlier version wrote
    assert tallies.as_dict()["m"] == {"decisions": 3, "feedback": 2, "energy_joules": 1.5, "labelled": 1}


# ---- review fixes (2026-12-06) ----------------------------------------------------------------------
def test_a_state_whose_keys_include_the_array_marker_loads(tmp_path: Path) -> None:
    import hashlib
    import json

    from greenserv_core.persistence import _canonical, read_state, write_state

    def pool() -> list[FakeBackend]:
        return [FakeBackend("__ndarray__"), FakeBackend("other", joules_per_token=3.0)]

    router = GreenServRouter(pool(), features=make_hashing_extractor(), seed=0, tradeoff=0.3)
    router.feedback(router.generate("What is 2+2?").decision_id, 1.0)
    router.save(tmp_path / "state.json")
    loaded = GreenServRouter.load(tmp_path / "state.json", pool(), features=make_hashing_extractor())  # KeyError
    assert loaded.stats_["__ndarray__"] == router.stats_["__ndarray__"]
    write_state(tmp_path / "bad.json", {"a": np.zeros(2)}, fmt="t", version=1)
    text = (tmp_path / "bad.json").read_text()
    state = json.loads(text)
    state["state"]["a"]["dtype"] = "no-such-type"  # an array that cannot be read, checksum made to match
    state["sha256"] = hashlib.sha256(_canonical(state["state"]).encode()).hexdigest()
    (tmp_path / "bad.json").write_text(json.dumps(state))
    with pytest.raises(StateFileError, match="cannot be read"):
        read_state(tmp_path / "bad.json", fmt="t", version=1)


def test_a_file_store_keeps_the_shared_files_permissions(tmp_path: Path) -> None:
    import os
    import stat

    store = FileStore(tmp_path / "shared.bin")
    store.merge(Statistics(sums={"n": np.ones(1)}))
    os.chmod(tmp_path / "shared.bin", 0o664)  # shared with the replicas' group
    store.merge(Statistics(sums={"n": np.ones(1)}))
    assert stat.S_IMODE((tmp_path / "shared.bin").stat().st_mode) == 0o664  # was 0o600 after any merge


def test_a_file_store_reached_through_a_link_is_the_store_it_names(tmp_path: Path) -> None:
    (tmp_path / "volume").mkdir()
    (tmp_path / "link.bin").symlink_to(tmp_path / "volume" / "real.bin")
    real, link = FileStore(tmp_path / "volume" / "real.bin"), FileStore(tmp_path / "link.bin")
    real.merge(Statistics(sums={"n": np.array([2.0])}))
    link.merge(Statistics(sums={"n": np.array([3.0])}))
    real.merge(Statistics(sums={"n": np.array([2.0])}))
    assert real.read().sums["n"][0] == link.read().sums["n"][0] == 7.0  # were 5 and 3: the link became a file
    assert (tmp_path / "link.bin").is_symlink() and real.identity == link.identity


def test_a_new_files_mode_is_read_without_setting_the_umask(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    from greenserv_core.persistence import mode_for_saving

    if not Path("/proc/self/status").exists():
        pytest.skip("the umask is read from /proc on Linux")
    umask = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("set the whole process's umask"))
        assert mode_for_saving(tmp_path / "new.json") == 0o640
    finally:
        monkeypatch.undo()
        os.umask(umask)


def test_replicas_with_another_number_of_clusters_are_told_why_they_cannot_share() -> None:
    store = InMemoryStore()
    replicas = [SharedLearning(make_router(n_clusters=k), store) for k in (3, 4)]
    for replica in replicas:
        answer = replica.router.generate("What is 2 + 2?", max_new_tokens=4)
        replica.router.feedback(answer.decision_id, 1.0)
    replicas[0].sync()
    with pytest.raises(InvalidInputError, match="another n_clusters"):  # was only "cannot merge ... of shapes"
        replicas[1].sync()


def test_an_outcome_the_redis_pending_store_cannot_write_is_learned_once(tmp_path: Path) -> None:
    """Redis failed between record_outcome's read and its write: the joules were learned, then
    learned again as an expired decision's (140 J counted for a 70 J answer)."""
    import redis

    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:
        store = RedisPendingDecisions(url=url, prefix="once")
        written = store.client.set

        def set_unless_outcome(*args: object, **kwargs: object) -> object:
            if kwargs.get("xx"):  # the outcome's write: Redis is away at that moment
                raise redis.ConnectionError("Connection refused")
            return written(*args, **kwargs)

        store.client.set = set_unless_outcome  # type: ignore[method-assign]
        router = GreenServRouter(
            [FakeBackend("small", joules_per_token=1.0), FakeBackend("large", joules_per_token=5.0)],
            features=make_hashing_extractor(),
            pending=store,
            seed=0,
            energy_budget=1e6,
        )
        answer = router.generate("What is 2 + 2?", tradeoff=0.4)
    assert router.learner_.tallies_.counts_[answer.model]["energy_joules"] == answer.energy_joules
    assert router.learner_.pacer_ is not None and router.learner_.pacer_.spent_ == answer.energy_joules


def test_a_cascade_whose_escalation_the_redis_pending_store_missed_still_answers(tmp_path: Path) -> None:
    """Redis away only while the first model answered: the fixed threshold escalated, Redis was
    back for the agreement, which was refused ("did not escalate a cascade"): the answer was lost."""
    import math

    import redis

    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:
        store = RedisPendingDecisions(url=url, prefix="blip")
        away = [False]
        read = store.client.get

        def get(*args: object, **kwargs: object) -> object:
            if away[0]:
                raise redis.ConnectionError("Connection refused")
            return read(*args, **kwargs)

        store.client.get = get  # type: ignore[method-assign]

        def blip(value: bool, text: str) -> Callable[[object], str]:
            def reply(messages: object) -> str:
                away[0] = value
                return text

            return reply

        small = FakeBackend(
            "small", reply=blip(True, "four"), joules_per_token=1.0, logprobs=lambda m, t: [math.log(0.01)] * len(t)
        )
        router = GreenServRouter(
            [small, FakeBackend("large", reply=blip(False, "4"), joules_per_token=3.0)],
            cascades=[("small", "large")],
            features=make_hashing_extractor(),
            policy="static:small->large",
            pending=store,
            seed=0,
        )
        answer = router.generate("What is 2 + 2?")
        assert answer.text == "4" and [step.action for step in answer.chain][-1] != "kept"
        assert router.learner_.tallies_.counts_["small->large"]["energy_joules"] == answer.energy_joules
        router.feedback(answer.decision_id, 1.0)  # scored, as any answer


def test_a_model_failing_while_the_redis_pending_store_is_away_is_charged_and_taken_back(tmp_path: Path) -> None:
    """The store's error on taking the decision back came before the failed attempt's joules were charged."""
    import redis

    from greenserv_core import MissingResourceError, ModelUnavailableError
    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:
        client = redis.Redis.from_url(url)

        def crash(messages: object) -> str:
            client.shutdown(nosave=True)
            raise ModelUnavailableError("GPU fell over", spent_joules=40.0)

        router = GreenServRouter(
            [FakeBackend("small", reply=crash), FakeBackend("large", reply=crash)],  # the first tried fails
            features=make_hashing_extractor(),
            pending=RedisPendingDecisions(url=url, prefix="away"),
            seed=0,
            energy_budget=1e6,
        )
        with pytest.raises(MissingResourceError, match="cannot be reached"):  # the other model is not run
            router.generate("What is 2 + 2?", tradeoff=0.4)
    tallies = router.learner_.tallies_.counts_.values()
    assert sum(t["decisions"] for t in tallies) == 0 and sum(t["energy_joules"] for t in tallies) == 40.0
    assert router.learner_.pacer_ is not None and router.learner_.pacer_.spent_ == 40.0


def test_a_failed_model_the_redis_pending_store_could_not_forget_does_not_block_the_next(tmp_path: Path) -> None:
    """Redis away only while the failed attempt was taken back: the next route met its id still
    in Redis (DecisionIdInUseError) and no other model answered."""
    import redis

    from greenserv_core import ModelUnavailableError
    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:
        store = RedisPendingDecisions(url=url, prefix="blip")
        discard, blips = store._discard, [1]

        def discard_once_away(*args: object, **kwargs: object) -> object:
            if blips[0]:
                blips[0] -= 1
                raise redis.ConnectionError("Connection refused")
            return discard(*args, **kwargs)

        store._discard = discard_once_away  # type: ignore[method-assign]
        calls = [0]

        def first_fails(messages: object) -> str:
            calls[0] += 1
            if calls[0] == 1:
                raise ModelUnavailableError("GPU fell over", spent_joules=40.0)
            return "4"

        router = GreenServRouter(
            [FakeBackend("small", reply=first_fails), FakeBackend("large", reply=first_fails)],
            features=make_hashing_extractor(),
            pending=store,
            seed=0,
        )
        answer = router.generate("What is 2 + 2?")
        assert answer.text == "4" and len(answer.failed_attempts) == 1
        assert [store.get(key.decode().split(":d:")[1]).model for key in store.client.keys("blip:d:*")] == [
            answer.model
        ]


def test_a_cascade_verdict_written_though_its_reply_was_lost_still_answers(tmp_path: Path) -> None:
    """The store held the learned verdict (kept: a cap held it back) while the fixed threshold
    escalated: the agreement was refused ("did not escalate a cascade") and the answer lost."""
    import json
    import math

    import redis

    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:
        store = RedisPendingDecisions(url=url, prefix="lost")
        written, seen = store.client.set, []

        def set_then_time_out(name: str, value: str, *args: object, **kwargs: object) -> object:
            result = written(name, value, *args, **kwargs)
            plan = json.loads(value).get("cascade") or {}
            if kwargs.get("xx") and "escalated" in plan and not seen:  # the verdict's write: applied, reply lost
                seen.append(plan["escalated"])
                raise redis.TimeoutError("Timeout reading from socket")
            return result

        store.client.set = set_then_time_out  # type: ignore[method-assign]
        small = FakeBackend(
            "small", reply=lambda m: "four", joules_per_token=10.0, logprobs=lambda m, t: [math.log(0.01)] * len(t)
        )
        router = GreenServRouter(
            [small, FakeBackend("large", reply=lambda m: "4", joules_per_token=30.0)],
            cascades=[("small", "large")],
            features=make_hashing_extractor(),
            pending=store,
            seed=0,
        )
        router.generate("warm up", models=["small"])
        router.generate("warm up", models=["large"])
        answer = router.generate("What is 2 + 2?", models=["small->large"], max_joules=80.0)
        assert seen == [False] and answer.text == "4"
        thens = router.learner_.escalation_.state_dict()
        router.feedback(answer.decision_id, 1.0)  # no verdict to learn from: the escalation rule is as it was
        assert router.learner_.escalation_.state_dict().keys() == thens.keys()


def _losing_one_reply(call: Callable[..., Any]) -> Callable[..., Any]:
    """``call``, run, with its first reply lost (a connection broken after Redis ran it)."""
    import redis

    lost: list[bool] = []

    def once_lost(*args: Any, **kwargs: Any) -> Any:
        result = call(*args, **kwargs)
        if not lost:
            lost.append(True)
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        return result

    return once_lost


def test_a_redis_reply_lost_after_the_command_ran_loses_no_score_outcome_or_decision(tmp_path: Path) -> None:
    """The take-and-mark scripts and the decision's SET NX were sent again (by redis-py's retry,
    or by the caller told to try again) and found their own work done: a first score refused as
    'already scored' and never learned, an outcome refused as 'already recorded' and its joules
    never learned, a router-made id refused as in use."""
    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:
        store = RedisPendingDecisions(url=url, prefix="lost")
        router = GreenServRouter(
            [FakeBackend("small"), FakeBackend("large")], features=make_hashing_extractor(), seed=0, pending=store
        )
        set_before = store.client.set
        store.client.set = _losing_one_reply(set_before)  # type: ignore[method-assign]
        answer = router.generate("What is 2 + 2?", decision_id="req-1")  # was DecisionIdInUseError
        store.client.set = set_before  # type: ignore[method-assign]
        store._pop = _losing_one_reply(store._pop)  # type: ignore[method-assign]
        record = router.feedback(answer.decision_id, 1.0)  # was DecisionAlreadyScoredError, nothing learned
        assert record.applied and router.stats_[answer.model]["feedback"] == 1
        decision = router.route("What is 3 + 3?", models=["small"])
        router.feedback(decision.decision_id, 1.0)  # before its outcome: a copy awaits it
        store._take = _losing_one_reply(store._take)  # type: ignore[method-assign]
        before = router.stats_["small"]["energy_joules"]
        router.record_outcome(decision.decision_id, energy_joules=70.0, latency_s=0.1)  # was "already recorded"
        assert router.stats_["small"]["energy_joules"] == pytest.approx(before + 70.0)
        with pytest.raises(InvalidInputError, match="already recorded"):  # a second outcome still is refused
            router.record_outcome(decision.decision_id, energy_joules=70.0, latency_s=0.1)


@pytest.mark.parametrize("outcome_first", [False, True])
def test_a_decision_a_previous_release_scored_before_its_outcome_is_not_scored_again(
    tmp_path: Path, outcome_first: bool
) -> None:
    """That release kept it pending, with its "score": a replica of this one scored it again
    (and, its outcome first, the outcome's rewrite dropped the score)."""
    import json

    from greenserv_core.errors import DecisionAlreadyScoredError
    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:
        store = RedisPendingDecisions(url=url, prefix="old")
        router = GreenServRouter(
            [FakeBackend("small"), FakeBackend("large")], features=make_hashing_extractor(), seed=0, pending=store
        )
        decision = router.route("What is 2 + 2?", models=["small"])
        key = f"old:d:{decision.decision_id}"
        written = json.loads(store.client.get(key))  # type: ignore[arg-type]
        store.client.set(key, json.dumps({**written, "score": 1.0}), keepttl=True)  # as that release left it
        if outcome_first:
            router.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.1)
        with pytest.raises(DecisionAlreadyScoredError):
            router.feedback(decision.decision_id, 0.0)
        if not outcome_first:
            router.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.1)  # its outcome still comes
        assert router.stats_["small"]["feedback"] == 0 and router.stats_["small"]["energy_joules"] == 5.0


@pytest.mark.parametrize("scored_first", [False, True])
def test_an_outcome_sent_to_a_replica_without_the_model_is_kept_for_one_with_it(
    tmp_path: Path, scored_first: bool
) -> None:
    """The replica without the canary took its outcome and learned nothing of it, and the one
    with it was then refused its own report as already recorded (as feedback is kept, it is)."""
    from greenserv_core import UnknownModelError
    from greenserv_core.sharing import RedisPendingDecisions

    with redis_server(tmp_path) as url:

        def replica(names: list[str]) -> GreenServRouter:
            pending = RedisPendingDecisions(url=url, prefix="canary")
            return GreenServRouter(
                [FakeBackend(n) for n in names], features=make_hashing_extractor(), seed=0, pending=pending
            )

        with_canary, without = replica(["small", "large", "canary"]), replica(["small", "large"])
        decision = with_canary.route("What is 2 + 2?", models=["canary"])
        if scored_first:
            with_canary.feedback(decision.decision_id, 1.0)
        with pytest.raises(UnknownModelError, match="send the outcome to a replica whose pool has it"):
            without.record_outcome(decision.decision_id, energy_joules=70.0, latency_s=0.5)
        with_canary.record_outcome(decision.decision_id, energy_joules=70.0, latency_s=0.5)  # was "already recorded"
        assert with_canary.stats_["canary"]["energy_joules"] == 70.0 and "canary" not in without.stats_
