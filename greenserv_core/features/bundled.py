"""The bundled embedders and the task classifier trained on each, by name.

``"minilm"``: all-MiniLM-L6-v2, a transformer pass per query (about 12 ms on two CPU cores).
``"static"``: static token vectors distilled from it at ``greenserv setup`` (tens of
microseconds; :mod:`~greenserv_core.features.static_embedder`). Each has its own bundled task
classifier, which records the embedding space it was trained on; :func:`bundled_features`
refuses a pair whose spaces differ (see :func:`~greenserv_core.features.task_classifier.check_pair`).

>>> sorted(EMBEDDERS)
['minilm', 'static']
>>> embedder, classifier = bundled_features("static")    # doctest: +SKIP
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Literal, get_args

from greenserv_core.errors import InvalidInputError, MissingResourceError
from greenserv_core.features.embedders import Embedder, SentenceTransformerEmbedder
from greenserv_core.features.static_embedder import StaticEmbedder
from greenserv_core.features.task_classifier import TaskClassifier, check_pair

__all__ = [
    "DEFAULT_EMBEDDER",
    "EMBEDDERS",
    "EmbedderName",
    "bundled_classifier",
    "bundled_embedder",
    "bundled_features",
]

EmbedderName = Literal["minilm", "static"]
EMBEDDERS: tuple[EmbedderName, ...] = get_args(EmbedderName)
DEFAULT_EMBEDDER: EmbedderName = "static"
"""The embedder of the router's default features: ``"static"`` since 2026-12-03 (BENCHMARKS.md,
issue 16, "Which features are the default", has the evidence). ``embedder="minilm"`` chooses
the transformer pass instead."""

_CLASSIFIER_FILES: dict[EmbedderName, str] = {
    "minilm": "task_classifier.json",
    "static": "task_classifier_static.json",
}


def _check_name(name: str) -> EmbedderName:
    if name not in EMBEDDERS:
        raise InvalidInputError(f"embedder must be one of {list(EMBEDDERS)}, got {name!r}")
    return name  # type: ignore[return-value]


def bundled_name(space: str) -> EmbedderName | None:
    """Which bundled embedder produces the embedding space ``space`` (an :attr:`Embedder.name`),
    judged by its kind; ``None`` for an embedder that is not bundled.

    >>> bundled_name("static:all-MiniLM-L6-v2:384:a08b6559bff0"), bundled_name("hashing:64")
    ('static', None)
    """
    if space.startswith("static:"):
        return "static"
    if space.startswith("sentence-transformers:all-MiniLM-L6-v2:"):
        return "minilm"
    return None


def bundled_embedder(name: str = DEFAULT_EMBEDDER, *, device: str = "cpu", cache_size: int = 4096) -> Embedder:
    """A fresh bundled embedder with an LRU cache of ``cache_size`` texts (0: none). ``device``
    applies to MiniLM only."""
    if _check_name(name) == "static":
        return StaticEmbedder(cache_size=cache_size)
    return SentenceTransformerEmbedder(device=device, cache_size=cache_size)


def bundled_classifier(name: str = DEFAULT_EMBEDDER) -> TaskClassifier:
    """The task classifier bundled for the embedder ``name``."""
    file = _CLASSIFIER_FILES[_check_name(name)]
    data = resources.files("greenserv_core.data").joinpath(file)
    if not data.is_file():
        raise MissingResourceError(f"the bundled task classifier {file} is missing from this install")
    return TaskClassifier.from_dict(json.loads(data.read_text(encoding="utf-8")))


def bundled_features(
    name: str = DEFAULT_EMBEDDER, *, device: str = "cpu", cache_size: int = 4096
) -> tuple[Embedder, TaskClassifier]:
    """The bundled embedder ``name`` and its classifier, checked to match."""
    embedder = bundled_embedder(name, device=device, cache_size=cache_size)
    classifier = bundled_classifier(name)
    check_pair(embedder, classifier)
    return embedder, classifier
