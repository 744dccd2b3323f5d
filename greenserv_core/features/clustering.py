"""Online k-means over unit-length embeddings, with cosine assignment."""

from __future__ import annotations

from typing import Any

import numpy as np

from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.statistics import Statistics

__all__ = ["OnlineKMeans"]


class OnlineKMeans:
    """MacQueen's online k-means with cosine similarity.

    The first ``n_clusters`` distinct embeddings seed the centroids; afterwards each embedding
    is assigned to the most similar centroid, which moves towards it by ``1 / count``
    (the running mean of its members). Learned state: ``centroids_`` and ``counts_``.

    >>> km = OnlineKMeans(n_clusters=2)
    >>> km.partial_fit_predict(np.array([1.0, 0.0])), km.partial_fit_predict(np.array([0.0, 1.0]))
    (0, 1)
    >>> km.partial_fit_predict(np.array([0.9, 0.1]))
    0
    """

    def __init__(self, n_clusters: int = 3, *, distinct_tol: float = 1e-6) -> None:
        if not isinstance(n_clusters, int) or n_clusters < 1:
            raise InvalidInputError(f"n_clusters must be a positive integer, got {n_clusters!r}")
        self.n_clusters = n_clusters
        self.distinct_tol = distinct_tol
        self.centroids_: np.ndarray | None = None  # (n_seeded, dim), float64
        self.counts_: np.ndarray = np.zeros(0, dtype=np.int64)

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).ravel()
        norm = np.linalg.norm(x)
        if not np.isfinite(norm) or norm == 0:
            raise InvalidInputError("cannot cluster a zero or non-finite embedding")
        return x / norm

    def _similarities(self, x: np.ndarray) -> np.ndarray:
        assert self.centroids_ is not None
        norms = np.linalg.norm(self.centroids_, axis=1)
        similarities: np.ndarray = (self.centroids_ @ x) / np.maximum(norms, 1e-12)
        return similarities

    def predict(self, embedding: np.ndarray) -> int:
        """Nearest centroid by cosine, without learning. Before any seed: cluster 0."""
        x = self._unit(embedding)
        if self.centroids_ is None or len(self.centroids_) == 0:
            return 0
        return int(np.argmax(self._similarities(x)))

    def partial_fit_predict(self, embedding: np.ndarray) -> int:
        """Assign ``embedding`` to a cluster and move that cluster's centroid towards it."""
        x = self._unit(embedding)
        if self.centroids_ is None:
            self.centroids_ = x[None, :].copy()
            self.counts_ = np.ones(1, dtype=np.int64)
            return 0
        if x.shape[0] != self.centroids_.shape[1]:
            raise InvalidInputError(
                f"embedding has dimension {x.shape[0]}, clusters were built with {self.centroids_.shape[1]}"
            )
        similarities = self._similarities(x)
        best = int(np.argmax(similarities))
        if len(self.centroids_) < self.n_clusters and similarities[best] < 1.0 - self.distinct_tol:
            self.centroids_ = np.vstack([self.centroids_, x])
            self.counts_ = np.append(self.counts_, 1)
            return len(self.centroids_) - 1
        self.counts_[best] += 1
        self.centroids_[best] += (x - self.centroids_[best]) / self.counts_[best]
        return best

    def statistics(self) -> Statistics:
        """Cluster ``sums`` (running means × counts) and ``counts``, which add up across
        replicas; empty until the first cluster is seeded."""
        if self.centroids_ is None:
            return Statistics()
        counts = self.counts_.astype(np.float64)
        return Statistics(sums={"sums": self.centroids_ * counts[:, None], "counts": counts})

    def load_statistics(self, stats: Statistics) -> None:
        """Centroids from merged :meth:`statistics` (left as they are when ``stats`` has none)."""
        if "counts" not in stats.sums:
            return
        counts = np.rint(stats.sums["counts"]).astype(np.int64)
        seeded = int(np.count_nonzero(counts))
        if seeded == 0:
            return
        if np.any(counts[:seeded] == 0) or len(counts) > self.n_clusters:
            raise StateFileError(f"shared clusters are inconsistent (counts {counts.tolist()})")
        self.counts_ = counts[:seeded].copy()
        self.centroids_ = stats.sums["sums"][:seeded] / counts[:seeded, None]

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters,
            "centroids": None if self.centroids_ is None else self.centroids_.copy(),
            "counts": self.counts_.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["n_clusters"]) != self.n_clusters:
            raise StateFileError(
                f"saved clustering has {state['n_clusters']} clusters, this extractor has {self.n_clusters}"
            )
        centroids = state["centroids"]
        self.centroids_ = None if centroids is None else np.asarray(centroids, dtype=np.float64).copy()
        self.counts_ = np.asarray(state["counts"], dtype=np.int64).copy()
