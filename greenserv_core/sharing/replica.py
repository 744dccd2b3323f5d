""":class:`SharedLearning`: one learned policy shared by many router replicas.

Each replica routes with its own copy of the learned state and, every ``interval_s``
seconds (or when :meth:`SharedLearning.sync` is called), pushes what it learned since its
last sync to a :class:`~greenserv_core.sharing.stores.StateStore` and takes back the merged
total. Feedback that arrives while the store is being contacted is kept and applied on top.
A replica that restarts resumes from the store on its first sync. A router remembers what
it adopted from each store (:meth:`~greenserv_core.GreenServRouter.sync_base`, saved with
it), so a replica restarted from a saved router, or wrapped again, pushes only what it
learned since its last sync: nothing is counted twice. Replicas loaded from one saved state
that never synced with the store (a warm start saved on its own) push it once between them:
the store counts its pushes by the state's fingerprint, and each later one takes it out again.

The semantic clusters are shared as running sums, so every replica must start from the same
clustering (:meth:`~greenserv_core.features.FeatureExtractor.seed_clusters` on the same
sample, or the store's once it has one); otherwise cluster 0 of one replica is not cluster
0 of another. The clusters carry the centre they are measured from and the seed as a prior
(counted once, however many replicas seeded): a replica adopts the store's, and replicas
measuring from different centres or seeded with different prompts are refused
(``StateFileError``).

>>> from greenserv_core import FakeBackend, FeatureExtractor, GreenServRouter
>>> from greenserv_core.features import HashingEmbedder, TaskClassifier
>>> from greenserv_core.sharing import InMemoryStore, SharedLearning
>>> embedder = HashingEmbedder(32)
>>> clf = TaskClassifier().fit(embedder.embed(["2+2?", "hi"]), ["math", "chat"], embedder.name)
>>> def replica():
...     return GreenServRouter([FakeBackend("small"), FakeBackend("large")],
...                            features=FeatureExtractor(embedder, clf), seed=0)
>>> store = InMemoryStore()
>>> one, two = SharedLearning(replica(), store), SharedLearning(replica(), store)
>>> answer = one.router.generate("What is 2+2?")
>>> _ = one.router.feedback(answer.decision_id, 1.0)
>>> _ = one.sync(); _ = two.sync()
>>> two.router.stats_[answer.model]["feedback"]
1
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from greenserv_core.bandits.base import check_number, check_shared_arm_statistics
from greenserv_core.budget.pacer import check_shared_budget
from greenserv_core.errors import InvalidInputError
from greenserv_core.features.clustering import check_joining_clusters
from greenserv_core.features.extractor import check_shared_layout
from greenserv_core.paths import cache_dir
from greenserv_core.sharing.stores import FileStore, KeepsReceipts, StateStore, store_identity, unreachable
from greenserv_core.statistics import Statistics

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["RemembersSyncBase", "SharedLearner", "SharedLearning", "SyncReport", "default_store_path"]

_CLUSTERS = "clusters/"  # where a router keeps its clustering's statistics (GreenServRouter.statistics)
_POLICY = "policy"  # and its policy's
_BUDGET = "budget"  # and its budget pacer's


@runtime_checkable
class SharedLearner(Protocol):
    """What :class:`SharedLearning` needs of a router: its model names (to name the default
    store), its learned state as :class:`Statistics`, and an atomic way to replace it."""

    @property
    def models(self) -> list[str]: ...

    def statistics(self) -> Statistics: ...

    def update_statistics(self, transform: Callable[[Statistics], Statistics]) -> None: ...


@runtime_checkable
class RemembersSyncBase(SharedLearner, Protocol):
    """A :class:`SharedLearner` that keeps what it adopted from each store with its own state
    (as :class:`~greenserv_core.GreenServRouter` does), so that the base survives a restart."""

    def sync_base(self, store: str) -> Statistics | None: ...

    def update_statistics(
        self,
        transform: Callable[[Statistics], Statistics],
        *,
        sync_base: tuple[str, Callable[[Statistics], Statistics]] | None = None,
    ) -> None: ...


logger = logging.getLogger("greenserv")

_SYNCS = "sync/pushes"
_LOADED = "sync/loaded/"
"""Where a store counts the replicas that pushed one saved state (by its fingerprint)."""


def default_store_path(models: Sequence[str]) -> Path:
    """The default shared file of a pool: under the cache, named by the pool's model names.

    >>> default_store_path(["small", "large"]) == default_store_path(["large", "small"])
    True
    """
    digest = hashlib.sha256("\x00".join(sorted(models)).encode()).hexdigest()[:16]
    return cache_dir() / "shared" / f"pool-{digest}.gss"


def _default_store(router: SharedLearner) -> FileStore:
    """The store of a replica given none: its pool's file (:func:`default_store_path`), unless
    the router synced with another pool's default file and not with its own (a model was added
    or removed since it was saved): then that file, the latest written if several, whose sync
    base the router holds, so that what it pushed there is not pushed again to an empty file."""
    path = default_store_path(router.models)
    if isinstance(router, RemembersSyncBase) and router.sync_base(FileStore(path).identity) is None:
        synced = [
            other
            for other in sorted(path.parent.glob("pool-*.gss"))
            if router.sync_base(FileStore(other).identity) is not None
        ]
        if synced:
            chosen = max(synced, key=_written_at)
            logger.info(
                "no store given: this replica shares through %s, the default file it synced with before its "
                "pool changed (the pool's own, %s, would count what it pushed there twice)",
                chosen,
                path,
            )
            return FileStore(chosen)
    logger.debug("no store given: this replica shares through its pool's default file %s", path)
    return FileStore(path)


def _written_at(path: Path) -> float:
    """When ``path`` was last written (``-inf``: it is gone)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return -math.inf


@dataclass(frozen=True)
class SyncReport:
    """One synchronisation: when it ended (``at``, wall-clock), how long it took, and how many
    pushes by *other* replicas it brought in (the store's push count moved by that much more
    than our own push); ``snapshot_at``, when it read what this replica had learned (what
    comes later goes with the next sync), and ``merged_at``, when the store held it (and this
    replica had what the store held then)."""

    at: float
    seconds: float
    remote_pushes: int
    snapshot_at: float = math.nan
    merged_at: float = math.nan


class SharedLearning:
    """Keeps ``router``'s learned state merged with the other replicas' through ``store``
    (by default a :class:`FileStore` in the cache, one per pool: replicas of one pool on one
    machine share it without a server; a router that synced with one keeps it when a model is
    added or removed, see :func:`_default_store`).

    Use :meth:`start` for a background thread syncing every ``interval_s`` seconds (or use it
    as a context manager), or call :meth:`sync` yourself. Every learned component must be
    shareable: a policy that cannot turn its state into statistics is refused here, with
    :class:`~greenserv_core.errors.SharingNotSupportedError`. Learned state: ``base_`` (the merged
    total at the last sync), ``syncs_``, ``last_sync_`` (a :class:`SyncReport`) and ``errors_``
    (failed syncs; a failed sync loses nothing, the change is sent with the next one).

    The thread logs an outage (syncs failing in a row) once: its first failure as a warning
    (one that is not a store away, as an error with its traceback), the later ones at debug
    level (another kind of error is said once too), and the sync that ends it at info level,
    with how long it lasted and how many syncs failed.
    """

    def __init__(self, router: SharedLearner, store: StateStore | None = None, *, interval_s: float = 1.0) -> None:
        if not isinstance(router, SharedLearner):
            raise InvalidInputError(f"{router!r} cannot share what it learns (models, statistics, update_statistics)")
        router.statistics()  # a component that cannot be shared says so now (SharingNotSupportedError)
        if store is None:
            store = _default_store(router)
        if not isinstance(store, StateStore):
            raise InvalidInputError(f"{store!r} is not a StateStore (merge, read)")
        interval = check_number("interval_s", interval_s, low=0.0, strict=True)
        if interval > threading.TIMEOUT_MAX:  # (a wait that long overflows the platform's clock)
            raise InvalidInputError(f"interval_s must be at most {threading.TIMEOUT_MAX:g} s, got {interval_s!r}")
        self.router = router
        self.store = store
        self.interval_s = interval
        self.identity = store_identity(store)
        self.base_ = self._remembered_base() or Statistics()
        self.syncs_ = 0
        self.errors_ = 0
        self.last_sync_: SyncReport | None = None
        self._sync_lock = _sync_lock(router, self.identity)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clusters_unchecked = False  # start()'s first sync failed: the thread's first says it
        self._outage: _Outage | None = None  # the failed syncs in a row of start() and the thread
        self._receipts = _receipts_of(router, self.identity)  # shared by every wrapper of this router and store

    def _remembered_base(self) -> Statistics | None:
        """What the router adopted from this store at its last sync, by any wrapper (``None``
        for a router that does not keep it, or never synced with this store), under the
        store's name or a name it had before."""
        if not isinstance(self.router, RemembersSyncBase):
            return None
        for identity in (self.identity, *getattr(self.store, "former_identities", ())):
            base = self.router.sync_base(identity)
            if base is not None:
                return base
        return None

    def sync(self) -> SyncReport:
        """Push what this replica learned since the last sync; adopt the merged total."""
        with self._sync_lock:
            return self._sync()

    def save(self, path: str | Path) -> SyncReport:
        """Sync, then save the router (``router.save(path)``) before any other sync can start,
        with its learning paused from the sync's start to the save's end (a router's
        ``learning_paused()``: routing and feedback wait one store round-trip per save): the
        file holds what the store holds, and a replica restarted from it pushes only what it
        learns afterwards. A router saved on its own between syncs holds answers that its next
        sync pushes, and a restart from that file pushes them again; one loaded from a saved
        state (a shared warm start) and saved on its own before its first sync holds that state
        as its own, and a restart from that file pushes the state again too (a review measured
        the warm start's 15 answers counted twice). Save with this method once the store answers."""
        save = getattr(self.router, "save", None)
        if not callable(save):
            raise InvalidInputError(f"{self.router!r} cannot be saved (it has no save method)")
        pause = getattr(self.router, "learning_paused", None)
        with self._sync_lock, pause() if callable(pause) else contextlib.nullcontext():
            report = self._sync()
            save(path)
            return report

    def _sync(self) -> SyncReport:
        """:meth:`sync`, with the lock held."""
        started = time.perf_counter()
        remembered = self._remembered_base()  # another wrapper of this router may have synced since
        if remembered is not None:
            self.base_ = remembered
        if self._receipts.unconfirmed is not None:  # the last merge failed: did the store take it anyway?
            receipt, sent, first_push = self._receipts.unconfirmed
            assert isinstance(self.store, KeepsReceipts)
            if self.store.took(receipt):  # (if the store cannot say, nothing is sent, and it asks again)
                owed = Statistics()
                if first_push is not None and _pushes_counted(self.store, receipt, first_push) > 1.0:
                    # a first push of a saved state that another replica had pushed already: as a
                    # first sync would, take it back out, with this sync's change
                    owed = first_push.state
                self._pushed(self.base_.plus(sent).plus(owed))
            self._receipts.unconfirmed = None
        snapshot_at = time.time()
        local = self.router.statistics()
        delta = local.minus(self.base_)
        delta.sums[_SYNCS] = np.array([1.0])
        loaded = self._loaded_state(delta)
        if loaded is not None:  # counts the replicas that push this saved state
            delta.sums[loaded[0]] = np.array([1.0])
        loaded_before: _FirstPush | None = None  # the saved state, and the store's count of it
        if self.syncs_ == 0:  # a replica set up unlike the others is refused before it writes to the store
            total = self.store.read()
            if loaded is not None:
                pushes = float(total.sums.get(loaded[0], np.zeros(1))[0])
                if pushes == 0.0 and loaded[2].sums:
                    # the first to push the saved state pushes what it no longer holds of it (a model
                    # removed since the load) too: the later ones take back all they hold of it
                    delta.sums.update(loaded[2].sums)
                    loaded = loaded[0], loaded[1].plus(loaded[2]), loaded[2]
                loaded_before = _FirstPush(loaded[1], pushes, loaded[0])
            extremes = Statistics(minima=delta.minima, maxima=delta.maxima)
            clusters = _CLUSTERS.rstrip("/")
            stored, joining = total.under(clusters), extremes.under(clusters)
            check_shared_layout(stored.plus(joining))
            check_joining_clusters(stored, joining)
            check_shared_arm_statistics(total.under(_POLICY), delta.under(_POLICY))
            check_shared_budget(total.under(_BUDGET), delta.under(_BUDGET))
        merged = self._merge(delta, loaded_before=loaded_before)
        if loaded is not None and float(merged.sums[loaded[0]][0]) > 1.0:
            # another replica loaded from the same file pushed it first: take it back out, so
            # that the store counts it once and this replica only what it learned since
            taken_back = Statistics(sums={key: -value for key, value in loaded[1].sums.items()})
            try:
                merged = self._merge(taken_back)
            except BaseException:  # the store holds the change; the taking back is still owed
                self._pushed(self.base_.plus(delta).minus(taken_back), gone=self._removed_since())
                raise
        merged_at = time.time()
        seen_before = float(self.base_.sums.get(_SYNCS, np.zeros(1))[0])
        if float(merged.sums[_SYNCS][0]) < seen_before + 1.0:  # emptied or replaced since our last sync
            logger.warning(
                "the shared store %s holds fewer syncs (%d) than this replica saw (%d): it was emptied or "
                "replaced, and what the replicas learned before is lost to all of them: this replica adopts "
                "the store as it is (pushing it again from every replica would count it once per replica); "
                "keep the store durable (Redis with persistence, a file that is not deleted)",
                self.identity,
                round(float(merged.sums[_SYNCS][0])),
                round(seen_before),
            )
            seen_before = float(merged.sums[_SYNCS][0]) - 1.0

        # a model removed while the store was contacted (perhaps added again: a redeploy) left
        # the router's base: what this replica held of it is not the newcomer's to subtract
        gone = self._removed_since()
        held = Statistics(sums={k: v for k, v in local.sums.items() if k not in gone})

        def adopt(now: Statistics) -> Statistics:  # what was learned while the store was contacted stays
            return merged.plus(now.minus(held))

        try:
            if isinstance(self.router, RemembersSyncBase):  # the base is kept with the router, in the same step
                self.router.update_statistics(adopt, sync_base=(self.identity, lambda now: _adopted(merged, now)))
                self.base_ = self.router.sync_base(self.identity) or Statistics()
            else:
                self.router.update_statistics(adopt)
                self.base_ = _adopted(merged, self.router.statistics())
        except BaseException:  # the store holds this change now: the next sync must not send it again
            self._pushed(self.base_.plus(delta), gone=self._removed_since())
            raise
        remote = round(float(merged.sums[_SYNCS][0]) - seen_before - 1.0)
        self.syncs_ += 1
        self.last_sync_ = SyncReport(time.time(), time.perf_counter() - started, remote, snapshot_at, merged_at)
        return self.last_sync_

    def _merge(self, delta: Statistics, *, loaded_before: _FirstPush | None = None) -> Statistics:
        """``store.merge(delta)``; with a store that keeps receipts, one that failed is
        remembered, for the next sync to ask whether the store took it before sending it again
        (with ``loaded_before``, for a first push of a saved state: that state, and how many
        pushes of it the store counted just before)."""
        if not isinstance(self.store, KeepsReceipts):
            return self.store.merge(delta)
        receipt = (self._receipts.slot, uuid.uuid4().hex)
        notes = loaded_before is not None and _notes_counts(self.store)
        try:
            if notes:  # the count the merge made is kept with the receipt (the one read before may be stale)
                assert loaded_before is not None
                return self.store.merge(delta, receipt=receipt, note=[loaded_before.key])  # type: ignore[call-arg]
            return self.store.merge(delta, receipt=receipt)
        except BaseException:
            self._receipts.unconfirmed = (receipt, delta, loaded_before)
            raise

    def _loaded_state(self, delta: Statistics) -> tuple[str, Statistics, Statistics] | None:
        """For a first push of a router loaded from a saved state (``loaded_statistics_``) with
        no base from this store: the store's key counting the pushes of that state, the part of
        its sums that ``delta`` holds and the part it does not; else ``None``."""
        loaded = getattr(self.router, "loaded_statistics_", None)  # (a router loaded from a file has it)
        if not isinstance(loaded, Statistics) or not self.base_.is_empty():
            return None
        held = {key: value for key, value in loaded.sums.items() if key in delta.sums}
        if not held:
            return None
        rest = {key: value for key, value in loaded.sums.items() if key not in delta.sums}
        return f"{_LOADED}{loaded.fingerprint()}", Statistics(sums=held), Statistics(sums=rest)

    def _removed_since(self) -> set[str]:
        """The keys of models removed from the router since this sync read its base: a removal
        takes them out of the router's sync bases (``base_`` still holds them)."""
        if not isinstance(self.router, RemembersSyncBase):
            return set()
        now = self.router.sync_base(self.identity)
        return set() if now is None else set(self.base_.sums) - set(now.sums)

    def _pushed(self, base: Statistics, *, gone: set[str] | None = None) -> None:
        """Take ``base`` (the last base plus the change the store took) as the sync base, here
        and in the router, after a sync whose total could not be adopted; without the keys of
        models removed meanwhile (``gone``), nor, as :func:`_adopted` leaves them out, keys the
        router does not hold (what a first push of a saved state sent of a model removed since)."""
        held = set(self.router.statistics().sums) | {_SYNCS}
        drop = (gone or set()) | (set(base.sums) - held)
        if drop:
            base = Statistics(
                sums={k: v for k, v in base.sums.items() if k not in drop}, minima=base.minima, maxima=base.maxima
            )
        self.base_ = base
        if isinstance(self.router, RemembersSyncBase):
            try:
                self.router.update_statistics(lambda now: now, sync_base=(self.identity, lambda now: base))
            except Exception:  # the sync's own error is the one to report
                logger.exception("could not record the sync base of %s in the router", self.identity)

    # ---- background syncing ------------------------------------------------------------
    def start(self) -> SharedLearning:
        """Sync now, then every ``interval_s`` seconds in a daemon thread until :meth:`stop`.
        A store that cannot be reached now (a server restarting: see
        :func:`~greenserv_core.sharing.stores.unreachable`) is warned of and counted in
        ``errors_``: the router goes on with its own state, and the thread syncs once it answers
        (its failures meanwhile are logged at debug level)."""
        if self._thread is not None and self._thread.is_alive():
            raise InvalidInputError("this SharedLearning is already running")
        self._stop.clear()  # a stop() from here on, during the first sync too, holds
        try:
            self.sync()
        except Exception as error:
            if not unreachable(error):
                raise
            self._outage_goes_on(error)
            self._clusters_unchecked = True  # said after the thread's first sync
            logger.warning(
                "the shared store %s cannot be reached (%s: %s): this replica starts on its own state and "
                "syncs every %g s until the store answers",
                self.identity,
                type(error).__name__,
                error,
                self.interval_s,
            )
        else:
            self._outage_ended()
            self._clusters_unchecked = False  # (said here, not again by the thread)
            self._warn_if_unclustered()
        if self._stop.is_set():  # stopped while it synced: no thread
            return self
        self._thread = threading.Thread(target=self._run, name="greenserv-sync", daemon=True)
        self._thread.start()
        return self

    def _warn_if_unclustered(self) -> None:
        """Say so when neither the store nor this replica has a clustering yet (after a sync)."""
        if not any(key.startswith(_CLUSTERS) for key in self.base_.sums):
            logger.warning(
                "the shared state has no clustering yet and this replica has none: replicas that seed "
                "their clusters independently give cluster numbers different meanings; seed every "
                "replica with FeatureExtractor.seed_clusters(same prompts) first"
            )

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except Exception as error:  # the next sync carries the change; never kill the thread
                self._sync_failed(error)
            except BaseException:  # (SystemExit from a store client): counted and said; start() may run again
                self.errors_ += 1
                logger.exception("syncing learned state stopped the sync thread")
                return
            else:
                self._outage_ended()
                if self._clusters_unchecked:
                    self._clusters_unchecked = False
                    self._warn_if_unclustered()

    def _outage_goes_on(self, error: Exception) -> bool:
        """Count a failed sync of :meth:`start` or the thread, in ``errors_`` and in the outage
        it begins or continues; whether it is the outage's first of its kind (to be said)."""
        self.errors_ += 1
        if self._outage is None:
            self._outage = _Outage(time.monotonic())
        self._outage.failed += 1
        kind = type(error).__qualname__
        if kind in self._outage.said:
            return False
        self._outage.said.add(kind)
        return True

    def _sync_failed(self, error: Exception) -> None:
        """Count and log a failed sync of the thread: the first of an outage (or of another kind
        of error in it) as a warning, or, not a store away, as an error with its traceback; the
        others at debug level."""
        if not self._outage_goes_on(error):
            logger.debug(
                "syncing learned state with %s failed again (%s: %s)", self.identity, type(error).__name__, error
            )
        elif unreachable(error):
            logger.warning(
                "the shared store %s cannot be reached (%s: %s): this replica goes on with its own state and syncs "
                "every %g s until the store answers (failures meanwhile are logged at debug level)",
                self.identity,
                type(error).__name__,
                error,
                self.interval_s,
            )
        else:
            logger.exception(
                "syncing learned state with %s failed (will retry every %g s; this error again is logged at debug "
                "level until a sync succeeds)",
                self.identity,
                self.interval_s,
            )

    def _outage_ended(self) -> None:
        """After a sync that succeeded: say the end of an outage, if syncs failed before it."""
        outage, self._outage = self._outage, None
        if outage is not None:
            logger.info(
                "the shared store %s answers again: this replica synced after %d failed syncs over %.1f s",
                self.identity,
                outage.failed,
                time.monotonic() - outage.since,
            )

    def stop(self, *, final_sync: bool = True) -> None:
        """Stop the thread (or a :meth:`start` still in its first sync: it starts none); by
        default push what is left with one last sync."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join()
            if self._thread is thread:
                self._thread = None
        if final_sync:
            self.sync()

    def __enter__(self) -> SharedLearning:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is None:
            self.stop()
            return
        try:  # the block's own error is the one to report; a failed last sync is counted and logged
            self.stop()
        except Exception:
            self.errors_ += 1
            logger.exception("the last sync, on leaving a block that failed, failed too")


_LOCKS: weakref.WeakKeyDictionary[object, dict[str, threading.Lock]] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def _sync_lock(router: object, store: str) -> threading.Lock:
    """One lock per router and store, shared by every :class:`SharedLearning` that wraps them,
    so that two wrappers never push the same answers at once."""
    with _LOCKS_LOCK:
        try:
            return _LOCKS.setdefault(router, {}).setdefault(store, threading.Lock())
        except TypeError:  # a router that takes no weak reference: a lock of this wrapper's own
            return threading.Lock()


@dataclass
class _Outage:
    """Syncs failing in a row: since when (``time.monotonic``), how many, and the kinds of
    error already logged."""

    since: float
    failed: int = 0
    said: set[str] = field(default_factory=set)


@dataclass
class _Receipts:
    """Where a store that keeps receipts records the last merge of one router (``slot``), and
    that merge while it is unconfirmed (it failed, and the store may have taken it), with, for
    a first push of a saved state, that state and the store's count of its pushes just before."""

    slot: str = field(default_factory=lambda: uuid.uuid4().hex)
    unconfirmed: tuple[tuple[str, str], Statistics, _FirstPush | None] | None = None


@dataclass(frozen=True)
class _FirstPush:
    """A first push of a saved state: that state, the store's count of its pushes read just
    before, and the key that counts them."""

    state: Statistics
    pushes: float
    key: str


def _notes_counts(store: StateStore) -> bool:
    """Whether ``store`` keeps counts with a merge's receipt: it has ``noted`` and its
    ``merge`` takes ``note`` (a subclass may override ``merge`` without it)."""
    if not callable(getattr(store, "noted", None)):
        return False
    try:
        parameters = inspect.signature(store.merge).parameters
    except (TypeError, ValueError):  # no signature to read
        return False
    return "note" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _pushes_counted(store: StateStore, receipt: tuple[str, str], first_push: _FirstPush) -> float:
    """How many pushes of the saved state the store counted once a first push's merge went
    through: as the store noted it with the receipt, where it notes (:class:`RedisStore`), else
    the count read before the merge plus this one (another replica may have pushed between)."""
    noted = getattr(store, "noted", None)
    counts = noted(receipt) if callable(noted) else None
    if isinstance(counts, dict) and first_push.key in counts:
        return float(counts[first_push.key])
    return first_push.pushes + 1.0


_RECEIPTS: weakref.WeakKeyDictionary[object, dict[str, _Receipts]] = weakref.WeakKeyDictionary()


def _receipts_of(router: object, store: str) -> _Receipts:
    """One :class:`_Receipts` per router and store, shared by every :class:`SharedLearning`
    that wraps them (used under their shared lock): a change one wrapper sent unconfirmed is
    asked about before another sends it again."""
    with _LOCKS_LOCK:
        try:
            return _RECEIPTS.setdefault(router, {}).setdefault(store, _Receipts())
        except TypeError:  # a router that takes no weak reference: this wrapper's own
            return _Receipts()


def _adopted(merged: Statistics, local: Statistics) -> Statistics:
    """What a replica took of the merged total: the keys it holds after adopting it. A model
    this replica adds later (a new arm, a cascade) then starts its first change from zero, so
    its first sync adds to what other replicas learned about that model instead of
    subtracting it."""
    return Statistics(
        sums={k: v for k, v in merged.sums.items() if k in local.sums or k == _SYNCS},
        minima={k: v for k, v in merged.minima.items() if k in local.minima},
        maxima={k: v for k, v in merged.maxima.items() if k in local.maxima},
    )
