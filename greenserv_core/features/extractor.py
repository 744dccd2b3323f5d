"""The query context generator: messages → :class:`QueryFeatures` → context vector.

Context vector layout (dimension ``1 + n_tasks + n_clusters + n_complexity_bins``)::

    [ intercept | one-hot task type | one-hot semantic cluster | one-hot complexity bin ]

With ``task_encoding="probabilities"`` the task block holds the classifier's probabilities
instead of a one-hot, so an unsure prediction counts less for its top task type.

The prompt length (``prompt_tokens``) is kept beside the vector for the energy model.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.features.clustering import OnlineKMeans
from greenserv_core.features.complexity import ComplexityBinner, approximate_tokens
from greenserv_core.features.embedders import Embedder
from greenserv_core.features.task_classifier import TaskClassifier, TaskPrediction, check_pair, instruction_text
from greenserv_core.messages import Message, check_unicode, last_user_text, validate_messages
from greenserv_core.persistence import write_atomically
from greenserv_core.statistics import Statistics

__all__ = ["TASK_ENCODINGS", "FeatureExtractor", "QueryFeatures", "TaskEncoding", "check_pair"]

TaskEncoding = Literal["onehot", "probabilities"]
TASK_ENCODINGS: tuple[TaskEncoding, ...] = get_args(TaskEncoding)


@dataclass(frozen=True)
class QueryFeatures:
    """Everything the router knows about one query before choosing a model. Print or log it.

    ``vector`` is the one-hot context vector the policies see; ``to_dict()`` gives a
    JSON-ready view.
    """

    task: str
    task_probability: float
    cluster: int
    flesch_reading_ease: float
    complexity_bin: int
    prompt_tokens: int
    vector: np.ndarray = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vector"] = self.vector.tolist()
        return data


_LAYOUT = "layout"


def check_shared_layout(stats: Statistics, own: float | None = None) -> None:
    """Refuse shared statistics from replicas whose context layouts differ (or differ from
    ``own``): the same entry of their vectors means different things, so their policies'
    statistics cannot be added. Statistics without a layout (written before it was shared) pass."""
    low, high = stats.minima.get(_LAYOUT), stats.maxima.get(_LAYOUT)
    if low is None or high is None:
        return
    if low[0] != high[0] or (own is not None and low[0] != own):
        raise StateFileError(
            "replicas share statistics of different context layouts (another embedder, other task "
            "types, another task encoding or other reading-ease bins): give every replica the same features"
        )


class FeatureExtractor:
    """Embeds the query once and derives task type, cluster and complexity from it.

    ``extract`` learns (moves a cluster centroid); ``extract(..., learn=False)`` does not.
    Learned state: the clustering (``clusterer.centroids_``); see :meth:`state_dict`. With
    ``centre_clusters`` (the default), the clustering measures each embedding from the mean
    embedding the task classifier was fitted on (``embedding_mean_``, where it has one), so
    that the clusters split by topic instead of one taking most queries
    (:class:`~greenserv_core.features.clustering.OnlineKMeans`).

    >>> from greenserv_core.features.embedders import HashingEmbedder
    >>> embedder = HashingEmbedder(64)
    >>> clf = TaskClassifier().fit(embedder.embed(["2+2", "hello there"]), ["math", "chat"], embedder.name)
    >>> extractor = FeatureExtractor(embedder, clf)
    >>> features = extractor.extract([{"role": "user", "content": "What is 3 + 5?"}])
    >>> features.vector.shape, extractor.dimension
    ((10,), 10)
    """

    def __init__(
        self,
        embedder: Embedder,
        task_classifier: TaskClassifier,
        *,
        n_clusters: int = 3,
        complexity_edges: Sequence[float] = (30.0, 50.0, 70.0),
        task_encoding: TaskEncoding = "onehot",
        centre_clusters: bool = True,
    ) -> None:
        if task_encoding not in TASK_ENCODINGS:
            raise InvalidInputError(f"task_encoding must be one of {list(TASK_ENCODINGS)}, got {task_encoding!r}")
        check_pair(embedder, task_classifier)
        width = task_classifier.coef_.shape[1] - task_classifier.lexical_features
        if task_classifier.coef_.size and width != embedder.dimension:
            raise InvalidInputError(
                f"the task classifier reads {width}-dimensional embeddings, but the embedder "
                f"{embedder.name!r} gives {embedder.dimension}"
            )
        self.embedder = embedder
        self.task_classifier = task_classifier
        self.task_encoding = task_encoding
        self.centre_clusters = centre_clusters
        centre = task_classifier.embedding_mean_ if centre_clusters else None
        self.clusterer = OnlineKMeans(n_clusters, centre=centre)
        self.complexity = ComplexityBinner(complexity_edges)
        self._lock = threading.RLock()

    @classmethod
    def default(
        cls,
        *,
        embedder: str | None = None,
        n_clusters: int = 3,
        device: str = "cpu",
        task_encoding: TaskEncoding = "onehot",
        centre_clusters: bool = True,
    ) -> FeatureExtractor:
        """A bundled embedder (``"minilm"`` or ``"static"``; default
        :data:`~greenserv_core.features.bundled.DEFAULT_EMBEDDER`) and its bundled task classifier.

        >>> FeatureExtractor.default(embedder="static").embedder.name   # doctest: +SKIP
        'static:all-MiniLM-L6-v2:384:…'
        """
        from greenserv_core.features.bundled import DEFAULT_EMBEDDER, bundled_features

        embedder_model, classifier = bundled_features(embedder or DEFAULT_EMBEDDER, device=device)
        return cls(
            embedder_model,
            classifier,
            n_clusters=n_clusters,
            task_encoding=task_encoding,
            centre_clusters=centre_clusters,
        )

    @property
    def task_types(self) -> tuple[str, ...]:
        return self.task_classifier.labels

    @property
    def dimension(self) -> int:
        return 1 + len(self.task_types) + self.clusterer.n_clusters + self.complexity.n_bins

    def feature_names(self) -> list[str]:
        """Name of every entry of the context vector, in order."""
        return (
            ["intercept"]
            + [f"task={t}" for t in self.task_types]
            + [f"cluster={c}" for c in range(self.clusterer.n_clusters)]
            + [f"flesch_bin={label}" for label in self.complexity.labels()]
        )

    def encode_task(self, task: str) -> np.ndarray:
        """The context vector of a task type alone: the intercept and the task's one-hot entry
        (cluster and complexity left at zero)."""
        if task not in self.task_types:
            raise InvalidInputError(f"unknown task type {task!r}; known: {list(self.task_types)}")
        vector = np.zeros(self.dimension)
        vector[0] = 1.0
        vector[1 + self.task_types.index(task)] = 1.0
        return vector

    def encode(self, task: str, cluster: int, complexity_bin: int) -> np.ndarray:
        """The one-hot context vector of given feature values."""
        for name, value, count in (
            ("cluster", cluster, self.clusterer.n_clusters),
            ("complexity_bin", complexity_bin, self.complexity.n_bins),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < count:
                raise InvalidInputError(f"{name} must be an integer in [0, {count}), got {value!r}")
        vector = self.encode_task(task)
        offset = 1 + len(self.task_types)
        vector[offset + cluster] = 1.0
        offset += self.clusterer.n_clusters
        vector[offset + complexity_bin] = 1.0
        return vector

    def warm(self, prompts: Sequence[str], *, store: str | Path | None = None, progress: bool = False) -> None:
        """Embed many prompts now, in batches, so that later :meth:`extract` calls on them hit the
        embedder's cache (only if it has one big enough). Learns nothing. ``progress`` shows a
        bar while an embedder that can show one (``embed_with_progress``, e.g. MiniLM) works.

        With ``store`` (a folder), the vectors are saved there under a digest of the embedder
        and the texts, and a later call with the same prompts loads them instead of embedding
        again (embedders with a ``preload`` method, such as the MiniLM one).

        >>> FeatureExtractor.default().warm(["What is 2 + 2?", "Name a prime."])  # doctest: +SKIP
        """
        texts = sorted({instruction_text(prompt) for prompt in _prompt_list(prompts, "warm")})
        preload = getattr(self.embedder, "preload", None)
        path = None
        if store is not None and preload is not None:
            named = json.dumps([self.embedder.name, texts])  # unambiguous, whatever the texts hold
            digest = hashlib.sha256(named.encode("utf-8")).hexdigest()[:32]
            path = Path(store) / f"{digest}.npy"
            if path.exists():
                stored = np.load(path)
                if stored.shape == (len(texts), self.embedder.dimension):
                    preload(texts, stored)
                    return
        with_bar = getattr(self.embedder, "embed_with_progress", None) if progress else None
        vectors = with_bar(texts) if with_bar is not None else self.embedder.embed(texts)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            np.save(buffer, vectors)
            # a temporary file of its own: a crash, or another thread warming the same store, never leaves half of one
            write_atomically(path, buffer.getvalue())

    def seed_clusters(self, prompts: Sequence[str]) -> None:
        """Learn the clustering from ``prompts``, in order (nothing else is learned).

        Router replicas that share learning must start from the same clustering, or their
        cluster numbers would mean different things: seed each replica's extractor with the
        same sample (or load one saved state) before they start. The seed is kept apart as a
        prior (:meth:`~greenserv_core.features.clustering.OnlineKMeans.seed`), so shared
        statistics count it once, and a replica that did not seed adopts it from the store.
        A clustering seeds once: a second call changes nothing.

        >>> from greenserv_core.features import HashingEmbedder, TaskClassifier
        >>> embedder = HashingEmbedder(16)
        >>> clf = TaskClassifier().fit(embedder.embed(["2+2?", "hi"]), ["math", "chat"], embedder.name)
        >>> one, two = FeatureExtractor(embedder, clf), FeatureExtractor(embedder, clf)
        >>> for extractor in (one, two):
        ...     extractor.seed_clusters(["What is 2+2?", "Hello there", "Write a poem"])
        >>> bool((one.clusterer.centroids_ == two.clusterer.centroids_).all())
        True
        """
        vectors = self.embedder.embed([instruction_text(prompt) for prompt in _prompt_list(prompts, "seed_clusters")])
        with self._lock:
            self.clusterer.seed(vectors)

    def extract(self, messages: Sequence[Message] | str, *, learn: bool = True) -> QueryFeatures:
        clean = validate_messages(messages)
        text = last_user_text(clean)
        instruction = instruction_text(text)
        embedding = self.embedder.embed([instruction])[0]
        prediction = self.task_classifier.predict(embedding, instruction)
        complexity = self.complexity.extract(text)
        with self._lock:
            cluster = self.clusterer.partial_fit_predict(embedding) if learn else self.clusterer.predict(embedding)
        return QueryFeatures(
            task=prediction.label,
            task_probability=prediction.probability,
            cluster=cluster,
            flesch_reading_ease=complexity.flesch_reading_ease,
            complexity_bin=complexity.bin,
            prompt_tokens=sum(approximate_tokens(m["content"]) for m in clean),
            vector=self._vector(prediction, cluster, complexity.bin),
        )

    def forget(self, messages: Sequence[Message] | str, features: QueryFeatures) -> None:
        """Take back what :meth:`extract` learned of ``messages`` (whose ``features`` it gave):
        a query the router refused moves no centroid (see
        :meth:`~greenserv_core.features.clustering.OnlineKMeans.forget`)."""
        embedding = self.embedder.embed([instruction_text(last_user_text(validate_messages(messages)))])[0]
        with self._lock:
            self.clusterer.forget(embedding, features.cluster)

    def _vector(self, prediction: TaskPrediction, cluster: int, complexity_bin: int) -> np.ndarray:
        vector = self.encode(prediction.label, cluster, complexity_bin)
        if self.task_encoding == "probabilities":  # an unsure prediction spreads over its candidates
            vector[1 : 1 + len(self.task_types)] = [prediction.probabilities[t] for t in self.task_types]
        return vector

    @property
    def lock(self) -> threading.RLock:
        """Held while the clustering learns or is read; hold it to read and replace the
        statistics as one step (as :meth:`RoutingLearner.update_statistics` does)."""
        return self._lock

    def statistics(self) -> Statistics:
        """The clustering's mergeable statistics (see :class:`~greenserv_core.statistics.Shareable`),
        and a fingerprint of the context's layout (:meth:`layout_fingerprint`) as an equal
        minimum and maximum: replicas whose context vectors mean different things differ there."""
        with self._lock:
            stats = self.clusterer.statistics()
            mark = np.array([self.layout_fingerprint()])
            return Statistics(
                sums=stats.sums, minima={**stats.minima, _LAYOUT: mark}, maxima={**stats.maxima, _LAYOUT: mark}
            )

    def load_statistics(self, stats: Statistics) -> None:
        """Take merged clustering statistics; :class:`StateFileError` if they come from
        replicas whose context layout differs from this one's."""
        check_shared_layout(stats, self.layout_fingerprint())
        clusters = Statistics(
            sums=stats.sums,
            minima={k: v for k, v in stats.minima.items() if k != _LAYOUT},
            maxima={k: v for k, v in stats.maxima.items() if k != _LAYOUT},
        )
        with self._lock:
            self.clusterer.load_statistics(clusters)
            self.centre_clusters = self.clusterer.centre is not None

    def layout_fingerprint(self) -> float:
        """What the context vector's entries mean (the embedder, the task types, their encoding
        and the reading-ease bins), digested into one exactly representable number."""
        layout = json.dumps(
            [self.embedder.name, list(self.task_types), self.task_encoding, list(self.complexity.edges)]
        )
        return float(int.from_bytes(hashlib.sha256(layout.encode()).digest()[:6], "big"))

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "embedder": self.embedder.name,
                "task_types": list(self.task_types),
                "complexity_edges": list(self.complexity.edges),
                "task_encoding": self.task_encoding,
                "clusterer": self.clusterer.state_dict(),
            }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the clustering; refuse state built with another embedder or feature layout."""
        mismatches = []
        if state["embedder"] != self.embedder.name:
            mismatches.append(f"embedder {state['embedder']!r} != {self.embedder.name!r}")
        if list(state["task_types"]) != list(self.task_types):
            mismatches.append(f"task types {state['task_types']} != {list(self.task_types)}")
        if [float(e) for e in state["complexity_edges"]] != list(self.complexity.edges):
            mismatches.append(f"complexity edges {state['complexity_edges']} != {list(self.complexity.edges)}")
        saved_encoding = state.get("task_encoding", "onehot")  # saved before the option: one-hot
        if saved_encoding != self.task_encoding:
            mismatches.append(f"task encoding {saved_encoding!r} != {self.task_encoding!r}")
        width = _saved_width(state["clusterer"])
        if width is not None and width != self.embedder.dimension:  # another embedder under the same name
            mismatches.append(f"embedding dimension {width} != {self.embedder.dimension}")
        if mismatches:
            raise StateFileError("saved features do not match this extractor: " + "; ".join(mismatches))
        with self._lock:
            self.clusterer.load_state_dict(state["clusterer"])
            self.centre_clusters = self.clusterer.centre is not None  # as the saved clusters were learned


def _saved_width(clusterer: Mapping[str, Any]) -> int | None:
    """The embedding dimension a saved clustering was learned in (``None`` before it learned)."""
    for key in ("centroids", "centre", "prior_sums"):
        value = clusterer.get(key)
        if value is not None:
            return int(np.shape(value)[-1])
    return None


def _prompt_list(prompts: Sequence[str], method: str) -> list[str]:
    """``prompts`` as a list of strings; one string (whose characters would each be a prompt)
    or anything that is not a string is refused."""
    if isinstance(prompts, str):
        raise InvalidInputError(f"{method}() takes a sequence of prompts, not one string")
    listed = list(prompts)
    wrong = next((p for p in listed if not isinstance(p, str)), None)
    if wrong is not None:
        raise InvalidInputError(f"{method}() takes prompts as strings, got {type(wrong).__name__}")
    for index, prompt in enumerate(listed):
        check_unicode(prompt, f"{method}(): prompt {index}")  # as extract() refuses it
    return listed
