"""Hashed word n-grams of a text: the lexical half of the task classifier's input.

An embedding averages a text into a point; a few words decide a task type on their own
(``def``, ``summarise``, ``A)``, ``$x^2$``). :class:`LexicalHasher` gives the classifier
those words: lower-cased word and punctuation tokens, their unigrams and bigrams, hashed
with CRC-32 (stable across processes and platforms) into ``n_features`` buckets, counted and
L2-normalised, like scikit-learn's ``HashingVectorizer(alternate_sign=False)``.

Hashing rather than a vocabulary keeps the stored classifier a fixed size, and a text costs
one pass over its tokens (tens of microseconds for an instruction text).

>>> hasher = LexicalHasher(n_features=16)
>>> indices, values = hasher.features("Write a function")
>>> len(indices) == len(values) and abs(float((values ** 2).sum()) - 1.0) < 1e-9
True
>>> hasher.transform(["Write a function", "What is 2+2?"]).shape
(2, 16)
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from greenserv_core.errors import InvalidInputError
from greenserv_core.features.text_units import COMBINING_MARKS, WORD, composed

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = ["LexicalHasher"]

_TOKEN = re.compile(rf"{WORD}|[^\w\s{COMBINING_MARKS}]")


class LexicalHasher:
    """Word and punctuation unigrams and bigrams, hashed into ``n_features`` buckets.

    It learns nothing: two hashers with the same ``n_features`` give the same features.
    """

    KIND = "word-1-2-crc32"
    """What a stored classifier names these features by."""

    def __init__(self, n_features: int = 2**13) -> None:
        if not isinstance(n_features, int) or isinstance(n_features, bool) or n_features < 2:
            raise InvalidInputError(f"n_features must be an integer >= 2, got {n_features!r}")
        self.n_features = n_features

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The non-zero buckets of one text and their L2-normalised counts.

        A text without a token gives two empty arrays.
        """
        tokens = _TOKEN.findall(composed(text).lower())
        grams = tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
        counts = Counter(zlib.crc32(gram.encode()) % self.n_features for gram in grams)
        indices = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        values = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        norm = float(np.sqrt(values @ values))
        return indices, values / norm if norm > 0 else values

    def transform(self, texts: Sequence[str]) -> csr_matrix:
        """A sparse ``len(texts) × n_features`` matrix, one row per text (for training)."""
        from scipy.sparse import csr_matrix

        if isinstance(texts, str):
            raise InvalidInputError("transform() takes a sequence of strings, not one string")
        rows = [self.features(text) for text in texts]
        indptr = np.cumsum([0, *(len(indices) for indices, _ in rows)])
        indices = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, dtype=np.intp)
        values = np.concatenate([v for _, v in rows]) if rows else np.zeros(0)
        return csr_matrix((values, indices, indptr), shape=(len(texts), self.n_features))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "n_features": self.n_features}
