"""Online k-means over unit-length embeddings, with cosine assignment, measured from a centre."""

from __future__ import annotations

import logging
import numbers
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.statistics import Statistics

__all__ = ["OnlineKMeans", "check_joining_clusters", "check_shared_clusters"]

logger = logging.getLogger(__name__)

_MOVES_KEPT = 32
"""How many of the last moves :meth:`OnlineKMeans.forget` can take back bit for bit."""


class _Move(NamedTuple):
    """A centroid's move towards ``x``: its row ``before`` and ``after``, and its count after (``size``)."""

    cluster: int
    x: np.ndarray
    before: np.ndarray
    after: np.ndarray
    size: int


class OnlineKMeans:
    """MacQueen's online k-means with cosine similarity.

    The first ``n_clusters`` distinct embeddings seed the centroids; afterwards each embedding
    is assigned to the most similar centroid, which moves towards it by ``1 / count``
    (the running mean of its members). Learned state: ``centroids_`` and ``counts_``.

    ``centre`` (optional) is subtracted from every embedding first. Sentence embeddings lie in
    a narrow cone (the bundled static ones: mean cosine 0.77–0.91 to their mean direction),
    so cosines from the origin barely differ and one centroid takes most queries (85% of a
    nine-type sample); measured from the space's mean embedding, the clusters split by topic
    (BENCHMARKS.md, "Clusters measured from the mean embedding").

    >>> km = OnlineKMeans(n_clusters=2)
    >>> km.partial_fit_predict(np.array([1.0, 0.0])), km.partial_fit_predict(np.array([0.0, 1.0]))
    (0, 1)
    >>> km.partial_fit_predict(np.array([0.9, 0.1]))
    0
    """

    def __init__(self, n_clusters: int = 3, *, centre: np.ndarray | None = None, distinct_tol: float = 1e-6) -> None:
        # any integer (a numpy one from np.arange, say; int too, for mypy, which does not see it is Integral)
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, numbers.Integral)) or n_clusters < 1:
            raise InvalidInputError(f"n_clusters must be a positive integer, got {n_clusters!r}")
        self.n_clusters = int(n_clusters)  # stored as Python's
        self.centre = _check_centre(centre)
        self.distinct_tol = distinct_tol
        self.centroids_: np.ndarray | None = None  # (n_seeded, dim), float64
        self.counts_: np.ndarray = np.zeros(0, dtype=np.int64)
        self.prior_sums_: np.ndarray | None = None  # (n_clusters, dim): what seed() added
        self.prior_counts_: np.ndarray = np.zeros(0, dtype=np.int64)
        self._moves: deque[_Move] = deque(maxlen=_MOVES_KEPT)
        """The last moves, for :meth:`forget` to take back bit for bit."""

    def _unit(self, x: np.ndarray) -> np.ndarray:
        """``x`` minus the centre, at unit length; all zeros where ``x`` is the centre (no direction)."""
        x = np.asarray(x, dtype=np.float64).ravel()
        norm = np.linalg.norm(x)
        if not np.isfinite(norm) or norm == 0:
            raise InvalidInputError("cannot cluster a zero or non-finite embedding")
        if self.centre is not None:
            if x.shape != self.centre.shape:
                raise InvalidInputError(
                    f"embedding has dimension {x.shape[0]}, the clustering's centre {self.centre.shape[0]}"
                )
            x = x - self.centre
            norm = np.linalg.norm(x)
            if norm <= 1e-12:
                return np.zeros_like(x)
        return x / norm

    def _similarities(self, x: np.ndarray) -> np.ndarray:
        assert self.centroids_ is not None
        if x.shape[0] != self.centroids_.shape[1]:
            raise InvalidInputError(
                f"embedding has dimension {x.shape[0]}, clusters were built with {self.centroids_.shape[1]}"
            )
        norms = np.linalg.norm(self.centroids_, axis=1)
        similarities: np.ndarray = (self.centroids_ @ x) / np.maximum(norms, 1e-12)
        return similarities

    @property
    def formed(self) -> bool:
        """Whether all ``n_clusters`` centroids exist (until then, distinct embeddings learned form them)."""
        return self.centroids_ is not None and len(self.centroids_) >= self.n_clusters

    def predict(self, embedding: np.ndarray) -> int:
        """Nearest centroid by cosine, without learning. Before any seed: cluster 0."""
        x = self._unit(embedding)
        if self.centroids_ is None or len(self.centroids_) == 0:
            return 0
        return int(np.argmax(self._similarities(x)))

    def partial_fit_predict(self, embedding: np.ndarray) -> int:
        """Assign ``embedding`` to a cluster and move that cluster's centroid towards it."""
        x = self._unit(embedding)
        if not x.any():  # the centre itself: equally near every centroid, and it teaches nothing
            return 0
        if self.centroids_ is None:
            self.centroids_ = x[None, :].copy()
            self.counts_ = np.ones(1, dtype=np.int64)
            return 0
        similarities = self._similarities(x)
        best = int(np.argmax(similarities))
        if len(self.centroids_) < self.n_clusters and similarities[best] < 1.0 - self.distinct_tol:
            self.centroids_ = np.vstack([self.centroids_, x])
            self.counts_ = np.append(self.counts_, 1)
            return len(self.centroids_) - 1
        before = self.centroids_[best].copy()
        self.counts_[best] += 1
        self.centroids_[best] += (x - self.centroids_[best]) / self.counts_[best]
        self._moves.append(_Move(best, x, before, self.centroids_[best].copy(), int(self.counts_[best])))
        return best

    def forget(self, embedding: np.ndarray, cluster: int) -> None:
        """Take back the move :meth:`partial_fit_predict` made towards ``embedding``, which it
        put in ``cluster`` (a query refused after its features were read moves no centroid).
        Where that move is still the cluster's last change (one of the last 32 moves, taken
        back latest first), its centroid is restored bit for bit; after other moves of that
        cluster, the mean is taken back by arithmetic (equal up to rounding).
        A cluster the embedding formed alone stays: replicas may have taken it up already,
        and the clusters formed after it keep their numbers.

        >>> km = OnlineKMeans(n_clusters=2)
        >>> km.partial_fit_predict(np.array([1.0, 0.0])), km.partial_fit_predict(np.array([0.0, 1.0]))
        (0, 1)
        >>> km.partial_fit_predict(np.array([1.0, 0.2]))
        0
        >>> km.forget(np.array([1.0, 0.2]), 0)
        >>> km.counts_.tolist(), km.centroids_[0].tolist()
        ([1, 1], [1.0, 0.0])
        """
        x = self._unit(embedding)
        if not x.any() or self.centroids_ is None or not 0 <= cluster < len(self.centroids_):
            return  # (the centre taught nothing)
        count = int(self.counts_[cluster])
        if count > 1:
            index = self._last_move_of(cluster, x, count)
            if index is not None:
                self.centroids_[cluster] = self._moves[index].before
                del self._moves[index]
            else:
                self.centroids_[cluster] = (self.centroids_[cluster] * count - x) / (count - 1)
            self.counts_[cluster] = count - 1

    def _last_move_of(self, cluster: int, x: np.ndarray, count: int) -> int | None:
        """Where in the kept moves is the one towards ``x`` that is still ``cluster``'s last
        change, if any."""
        assert self.centroids_ is not None
        for index in range(len(self._moves) - 1, -1, -1):
            move = self._moves[index]
            if move.cluster == cluster:
                last = move.size == count and np.array_equal(move.after, self.centroids_[cluster])
                return index if last and np.array_equal(move.x, x) else None
        return None

    def _sums(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Each cluster's sum of members and count, padded to ``n_clusters``."""
        sums, counts = np.zeros((self.n_clusters, dim)), np.zeros(self.n_clusters, dtype=np.int64)
        if self.centroids_ is not None:
            k = len(self.centroids_)
            counts[:k] = self.counts_
            sums[:k] = self.centroids_ * self.counts_[:, None]
        return sums, counts

    def seed(self, embeddings: Sequence[np.ndarray] | np.ndarray) -> None:
        """Learn from ``embeddings`` (in order) as a prior: replicas that seed alike share it as
        such, so that shared statistics count the seed once, not once per replica.

        >>> km = OnlineKMeans(2)
        >>> km.seed([np.array([1.0, 0.0]), np.array([0.0, 1.0])])
        >>> km.statistics().sums["counts"].tolist(), km.prior_counts_.tolist()
        ([0.0, 0.0], [1, 1])

        A clustering seeds once: a later call (say, a restarted replica seeded again, or one
        that adopted the shared seed) changes nothing, so replicas keep one seed. A seed with a
        vector the clustering refuses changes nothing either.
        """
        if isinstance(embeddings, np.ndarray) and embeddings.ndim != 2:
            raise InvalidInputError(
                f"seed() takes several embeddings (a 2-D array or a sequence of vectors), got shape {embeddings.shape}"
            )
        vectors = [np.asarray(x, dtype=np.float64).ravel() for x in embeddings]
        if not vectors:
            return
        if len({len(vector) for vector in vectors}) > 1:
            raise InvalidInputError("seed() takes embeddings of one dimension")
        if self.prior_sums_ is not None:  # seeded before (or adopted a shared seed): seeding is once
            logger.info("the clustering already holds a seed; seeding again is skipped")
            return
        dim = len(vectors[0])
        before_sums, before_counts = self._sums(dim)
        saved, moves = self.state_dict(), list(self._moves)
        try:
            for vector in vectors:
                self.partial_fit_predict(vector)
        except BaseException:  # a vector refused part-way: the seed is learned whole or not at all
            self.load_state_dict(saved)
            self._moves.extend(moves)
            raise
        after_sums, after_counts = self._sums(dim)
        self.prior_sums_, self.prior_counts_ = after_sums - before_sums, after_counts - before_counts
        formed = 0 if self.centroids_ is None else len(self.centroids_)
        if formed < self.n_clusters:
            logger.warning(
                "the seed formed %d of %d clusters (too few distinct prompts): the others form from each "
                "replica's own traffic, so their numbers may mean different things on different replicas; "
                "seed with at least %d distinct prompts",
                formed,
                self.n_clusters,
                self.n_clusters,
            )

    def statistics(self) -> Statistics:
        """Cluster ``sums`` (running means × counts) and ``counts``, which add up across
        replicas, less what :meth:`seed` added; the seed (``prior_sums``, ``prior_counts``) and
        the ``centre`` the clusters are measured from (zeros: the origin) as minima and maxima,
        which replicas that agree hold alike. Empty until the first cluster is seeded."""
        if self.centroids_ is None:
            return Statistics()
        k, dim = self.centroids_.shape
        counts = self.counts_.astype(np.float64)
        sums = self.centroids_ * counts[:, None]
        extremes = {"centre": np.zeros(dim) if self.centre is None else self.centre}
        if self.prior_sums_ is not None:
            counts = counts - self.prior_counts_[:k]
            sums = sums - self.prior_sums_[:k]
            extremes.update(prior_sums=self.prior_sums_, prior_counts=self.prior_counts_.astype(np.float64))
        return Statistics(sums={"sums": sums, "counts": counts}, minima=extremes, maxima=dict(extremes))

    def load_statistics(self, stats: Statistics) -> None:
        """Centroids from merged :meth:`statistics` (left as they are when ``stats`` has none),
        with their seed and the centre they were measured from: the shared clustering wins.
        Shared sums without a seed or a centre hold every replica's seed and were measured from
        the origin (replicas of before 2026-12-05). Replicas that measure from different centres,
        or seeded with different prompts, cannot share clusters (``StateFileError``)."""
        if "counts" not in stats.sums:
            return
        prior_sums, prior_counts = check_shared_clusters(stats, self.n_clusters)
        total_counts = _padded(stats.sums["counts"], self.n_clusters)
        total_sums = stats.sums["sums"]
        if prior_sums is not None and prior_counts is not None:
            prior_sums, prior_counts = _padded(prior_sums, self.n_clusters), _padded(prior_counts, self.n_clusters)
            total_counts = total_counts + prior_counts
            total_sums = _padded(total_sums, self.n_clusters) + prior_sums
        counts = np.rint(total_counts).astype(np.int64)
        seeded = int(np.count_nonzero(counts))
        if seeded == 0:
            return
        if np.any(counts[:seeded] == 0) or len(stats.sums["counts"]) > self.n_clusters:
            raise StateFileError(f"shared clusters are inconsistent (counts {counts.tolist()})")
        low = stats.minima.get("centre")
        self.centre = None if low is None or not low.any() else low.copy()
        self.prior_sums_ = None if prior_sums is None else prior_sums.copy()
        self.prior_counts_ = (
            np.zeros(0, dtype=np.int64) if prior_counts is None else np.rint(prior_counts).astype(np.int64)
        )
        self.counts_ = counts[:seeded].copy()
        self.centroids_ = total_sums[:seeded] / counts[:seeded, None]

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters,
            "centre": None if self.centre is None else self.centre.copy(),
            "centroids": None if self.centroids_ is None else self.centroids_.copy(),
            "counts": self.counts_.copy(),
            "prior_sums": None if self.prior_sums_ is None else self.prior_sums_.copy(),
            "prior_counts": self.prior_counts_.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["n_clusters"]) != self.n_clusters:
            raise StateFileError(
                f"saved clustering has {state['n_clusters']} clusters, this extractor has {self.n_clusters}"
            )
        # the centroids were learned around the saved centre (none in states saved before 2026-12-05)
        try:
            centre = _check_centre(state.get("centre"))
        except InvalidInputError as error:
            raise StateFileError(f"saved clustering: {error}") from None
        centroids = state["centroids"]
        centroids = None if centroids is None else np.asarray(centroids, dtype=np.float64).copy()
        if centre is not None and centroids is not None and (centroids.ndim != 2 or centroids.shape[1] != len(centre)):
            raise StateFileError("saved clustering: its centre and its centroids differ in dimension")
        prior = state.get("prior_sums")  # absent from states saved before 2026-12-05: no seed kept apart
        prior_sums = None if prior is None else np.asarray(prior, dtype=np.float64).copy()
        prior_counts = np.asarray(state.get("prior_counts", []), dtype=np.int64).copy()
        if prior_sums is not None and (
            prior_sums.ndim != 2 or prior_sums.shape[0] != self.n_clusters or prior_counts.shape != (self.n_clusters,)
        ):
            raise StateFileError("saved clustering: its seed does not match its number of clusters")
        counts = np.asarray(state["counts"], dtype=np.int64).copy()
        _check_learned(centroids, counts, self.n_clusters)
        if prior_sums is not None and centroids is not None and prior_sums.shape[1] != centroids.shape[1]:
            raise StateFileError("saved clustering: its seed and its centroids differ in dimension")
        # checked whole, then taken whole: a refused state leaves the clustering as it was
        self.centre, self.centroids_, self.counts_ = centre, centroids, counts
        self.prior_sums_, self.prior_counts_ = prior_sums, prior_counts
        self._moves.clear()


def _check_learned(centroids: np.ndarray | None, counts: np.ndarray, n_clusters: int) -> None:
    """Refuse saved centroids and counts that no clustering could have learned."""
    if centroids is None:
        if counts.size:
            raise StateFileError("saved clustering: it has counts but no centroids")
        return
    if centroids.ndim != 2 or counts.shape != (len(centroids),) or not 1 <= len(centroids) <= n_clusters:
        raise StateFileError(
            f"saved clustering: {centroids.shape} centroids and {counts.shape} counts for {n_clusters} clusters"
        )
    if not np.all(np.isfinite(centroids)) or np.any(counts < 1):
        raise StateFileError("saved clustering: a centroid is not finite or a count is below 1")


def check_shared_clusters(
    stats: Statistics, n_clusters: int | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Refuse shared cluster statistics that replicas could not have learned alike: a centre or
    a seed that differs between them (``StateFileError``); what :meth:`OnlineKMeans.load_statistics`
    checks, for a store to be checked before anything is written to it. Returns the shared
    seed's sums and counts (``None``, ``None``: none, as in stores written before 2026-12-05)."""
    low, high = stats.minima.get("centre"), stats.maxima.get("centre")
    if low is not None and high is not None and not np.allclose(low, high, rtol=1e-6, atol=1e-9):
        raise StateFileError(
            "replicas share clusters measured from different centres (their task classifiers, or "
            "their saved states, differ): start them from one saved state or with the same features"
        )
    return _shared_seed(stats, n_clusters)


def check_joining_clusters(stored: Statistics, joining: Statistics) -> None:
    """Refuse a replica whose clusters (``joining``: its minima and maxima) cannot join the
    clusters of a store (``stored``) before it writes anything: what
    :func:`check_shared_clusters` refuses, and clusters measured from a centre joining clusters
    that replicas of before 2026-12-05 wrote (sums with no centre: measured from the origin),
    whose sums would otherwise be added to this replica's, measured elsewhere."""
    check_shared_clusters(stored.plus(joining))
    centre = joining.minima.get("centre")
    if "counts" in stored.sums and "centre" not in stored.minima and centre is not None and centre.any():
        raise StateFileError(
            "the shared store's clusters were written by replicas of before 2026-12-05 and are measured "
            "from the origin, but this replica measures its clusters from its task classifier's mean "
            "embedding: start it with FeatureExtractor(..., centre_clusters=False) to join that store, "
            "or start every replica afresh on an empty store"
        )


_SEED_ROUNDING = 0.1
"""How far (in length) two replicas' sums of one seed cluster may differ beyond ``0.01·√count``."""


def _shared_seed(stats: Statistics, n_clusters: int | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The seed that shared statistics hold (``None``, ``None``: none, as in stores written
    before 2026-12-05); refused when replicas seeded differently or with more clusters."""
    prior_sums, prior_counts = stats.maxima.get("prior_sums"), stats.maxima.get("prior_counts")
    fewest, least = stats.minima.get("prior_counts"), stats.minima.get("prior_sums")
    if prior_sums is None or prior_counts is None or fewest is None or least is None:
        return None, None
    if n_clusters is not None and len(prior_counts) > n_clusters:
        raise StateFileError(
            f"shared clusters were seeded with {len(prior_counts)} clusters, this one has {n_clusters}"
        )
    # the same prompts embedded alone or in a batch, or in float32 and bfloat16, move a cluster's
    # sum by about 0.005 per prompt (its length); one other prompt moves it by 0.5 or more
    counts = np.maximum(prior_counts, 1)
    apart = np.sqrt(((least - prior_sums) ** 2).reshape(len(prior_counts), -1).sum(axis=1))
    alike = np.all(apart <= _SEED_ROUNDING + 0.01 * np.sqrt(counts))
    if fewest.any() and not (np.array_equal(fewest, prior_counts) and alike):
        raise StateFileError(
            "replicas seeded their clusters with different prompts: seed every replica with the same "
            "sample (FeatureExtractor.seed_clusters), or start them from one saved state"
        )
    return prior_sums, prior_counts


def _padded(array: np.ndarray, length: int) -> np.ndarray:
    """``array`` with zero rows added up to ``length`` rows."""
    array = np.asarray(array, dtype=np.float64)
    if len(array) >= length:
        return array
    return np.concatenate([array, np.zeros((length - len(array), *array.shape[1:]))])


def _check_centre(centre: Any) -> np.ndarray | None:
    if centre is None:
        return None
    array = np.asarray(centre, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0 or not np.all(np.isfinite(array)):
        raise InvalidInputError("a clustering's centre must be a non-empty vector of finite numbers")
    return array.copy()
