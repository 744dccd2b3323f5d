"""Static sentence embeddings: one distilled vector per token, a text is their mean.

A transformer embeds a query in 10–15 ms on a CPU; a static embedder looks its tokens up in a
table and averages them, in tens of microseconds. The table is distilled once, offline, from
the bundled all-MiniLM-L6-v2 with model2vec's recipe (:func:`distill_static`):

1. run every vocabulary token through the transformer (``[CLS] token [SEP]``, mean-pooled);
2. rotate the vectors onto their principal axes with PCA (centred and decorrelated; keeping
   fewer axes reduces the dimension);
3. optionally weight each token by its Zipf frequency rank (SIF weighting);
4. embed a text as the normalised mean of its tokens' vectors.

Defaults, chosen by the task classifier's held-out macro-F1 (BENCHMARKS.md, issue 16): all
384 axes and a mild SIF coefficient of 1e-2 (0.968, against 0.958 for MiniLM itself on the
same split). model2vec's 256 axes and 1e-4 scored 0.908 here: SIF assumes token ids follow
frequency, which BERT's vocabulary only roughly does (single characters come first).

Distillation runs at ``greenserv setup`` (about 30 s on two CPU cores) and the table lands in
the cache (:func:`static_model_dir`). The default :class:`StaticEmbedder` distils it on first
use if setup has not (the router's default features use it), with a progress bar, once. We
write it here rather than use model2vec's ``distill`` extra, which pins ``transformers<5.4``
and so conflicts with ours; it is short, and serving needs only ``tokenizers`` and numpy.

>>> embedder = StaticEmbedder()                      # doctest: +SKIP
>>> embedder.embed(["What is 12 times 3?"]).shape    # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from greenserv_core.bandits.base import check_whole
from greenserv_core.errors import InvalidInputError, MissingResourceError
from greenserv_core.features.vector_cache import LRUCache
from greenserv_core.paths import cache_dir

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["STATIC_MODEL", "StaticEmbedder", "distill_static", "static_model_dir"]

logger = logging.getLogger("greenserv")

STATIC_MODEL = "minilm-static-v2"
"""Name of the static model that ``greenserv setup`` distils from the bundled MiniLM."""

_FORMAT = "greenserv-static-embedder"
_RECIPE_VERSION = 2  # 2: each token alone between [CLS] and [SEP] (1 padded it to 128 tokens)
_SKIPPED_TOKEN_PREFIX = "[unused"  # BERT's reserved placeholders: never produced by the tokenizer
_DEFAULT_MAX_TOKENS = 512
"""The tokens per text the bundled task classifiers were trained on."""
_SETUP_HINT = "run `greenserv setup` to distil it from the bundled all-MiniLM-L6-v2"
_MODEL_FILES = frozenset({"config.json", "tokenizer.json", "vectors.npy"})
"""The files :func:`distill_static` writes into a model's folder."""
_DISTIL_LOCK = threading.RLock()
"""Held while a distilled model replaces its folder, and while the default model is distilled on
first use (the instances' own locks do not keep two embedders from distilling at once)."""


def static_model_dir(name: str = STATIC_MODEL) -> Path:
    """Where the distilled static model ``name`` lives in the cache (it may not exist yet)."""
    return cache_dir() / "static" / name


def _sif_weights(n_tokens: int, coefficient: float) -> np.ndarray:
    """``a / (a + p(rank))`` with Zipf probabilities ``p ∝ 1 / (rank + 2)`` (model2vec's rule).

    >>> w = _sif_weights(4, 1e-4); bool(w[0] < w[-1] < 1)
    True
    """
    inverse_rank = 1.0 / np.arange(2, n_tokens + 2, dtype=np.float64)
    probability = inverse_rank / inverse_rank.sum()
    weights: np.ndarray = coefficient / (coefficient + probability)
    return weights


def _pca(vectors: np.ndarray, dimension: int) -> np.ndarray:
    """Project centred ``vectors`` on their top ``dimension`` principal axes.

    Each axis's sign is fixed (its largest loading is positive), so the same vectors always
    give the same projection, and a classifier trained on one distillation fits another.
    """
    centred = vectors - vectors.mean(axis=0)
    covariance = centred.T @ centred / len(centred)
    eigenvalues, axes = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:dimension]
    axes = axes[:, order]
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])])
    projected: np.ndarray = centred @ (axes * signs)
    return projected


def _read_config(folder: Path) -> dict[str, Any] | None:
    """The JSON object in ``folder``'s ``config.json``, or ``None`` when there is none (missing or unreadable)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return config if isinstance(config, dict) else None


def _check_replaceable(target: Path) -> None:
    """:class:`InvalidInputError` unless distilling into ``target`` loses nothing but a static model: it
    is missing or empty, holds a static model, or only a damaged one's files (none of another format)."""
    if not target.exists():
        return
    if target.is_dir():
        entries = list(target.iterdir())
        config = _read_config(target)
        if not entries or (config is not None and config.get("format") == _FORMAT):
            return
        if config is None and all(entry.is_file() and entry.name in _MODEL_FILES for entry in entries):
            return  # a damaged static model (a file gone, config.json corrupt): distilled again
    raise InvalidInputError(
        f"{target} exists and is not a static embedder's folder: distilling would replace it; "
        "give a new or empty folder as out"
    )


def _fingerprint(source: Path, recipe: dict[str, Any]) -> str:
    """A digest of the source's weights and tokenizer files and of the recipe: the same on every
    machine (it hashes bytes, not floats), so a classifier trained on one distillation can
    check that it is given the same embedding space on another."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode("utf-8"))
    for name in ("tokenizer.json", "config.json", "model.safetensors", "pytorch_model.bin"):
        path = source / name
        if path.exists():
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:12]


def _special_wrap(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a text (``[CLS]`` and ``[SEP]`` for BERT), with
    its padding and truncation switched off (MiniLM's tokenizer pads every text to 128).

    >>> from tokenizers import Tokenizer                                       # doctest: +SKIP
    >>> _special_wrap(Tokenizer.from_file(".../tokenizer.json"))               # doctest: +SKIP
    ([101], [102])
    """
    tokenizer.no_padding()
    tokenizer.no_truncation()
    special = tokenizer.encode("", add_special_tokens=True).ids
    return (special[:1], special[1:]) if special else ([], [])


def _token_vectors(
    source: Path,
    token_ids: Sequence[int],
    wrap: tuple[list[int], list[int]],
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """Mean-pooled hidden states of ``prefix + [token] + suffix`` (``[CLS] token [SEP]`` for BERT)
    for every id, in float32."""
    import torch
    from transformers import AutoModel

    from greenserv_core.quiet_loading import quiet_loading

    with quiet_loading():
        model = AutoModel.from_pretrained(str(source)).eval()
    prefix, suffix = (torch.tensor(ids, dtype=torch.long) for ids in wrap)
    out = []
    with torch.inference_mode():
        for start in range(0, len(token_ids), batch_size):
            ids = torch.tensor(token_ids[start : start + batch_size], dtype=torch.long)[:, None]
            batch = torch.cat([prefix.expand(len(ids), -1), ids, suffix.expand(len(ids), -1)], dim=1)
            hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
            out.append(hidden.float().mean(dim=1).numpy())
            if progress is not None:
                progress(len(ids))
    return np.concatenate(out).astype(np.float32)


def distill_static(
    source: str | Path | None = None,
    out: str | Path | None = None,
    *,
    dimension: int = 384,
    sif_coefficient: float | None = 1e-2,
    batch_size: int = 1024,
    show_progress: bool = True,
) -> Path:
    """Distil a static embedder from the sentence transformer at ``source`` into ``out``.

    ``source`` defaults to the bundled all-MiniLM-L6-v2 and ``out`` to
    :func:`static_model_dir`. Writes ``vectors.npy`` (vocabulary × ``dimension``, float32),
    the source's ``tokenizer.json`` and a ``config.json``; returns ``out``. An ``out`` that holds
    anything but a static model (an earlier or damaged one is replaced) is refused before the work.

    >>> distill_static()            # doctest: +SKIP
    PosixPath('.../static/minilm-static-v2')
    """
    from tokenizers import Tokenizer
    from tqdm import tqdm

    from greenserv_core.features.embedders import bundled_minilm_path

    if dimension < 8:
        raise InvalidInputError(f"dimension must be >= 8, got {dimension}")
    if sif_coefficient is not None and not 0 < sif_coefficient < 1:
        raise InvalidInputError(f"sif_coefficient must be in (0, 1), got {sif_coefficient}")
    source_path = Path(source) if source is not None else bundled_minilm_path()
    target = Path(out) if out is not None else static_model_dir()
    _check_replaceable(target)  # before the long work
    tokenizer_file = source_path / "tokenizer.json"
    if not tokenizer_file.exists():
        raise MissingResourceError(f"{tokenizer_file} is missing: a fast tokenizer is needed to distil")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    vocabulary = tokenizer.get_vocab()
    wrap = _special_wrap(tokenizer)
    ordered = sorted(vocabulary.items(), key=lambda item: item[1])  # id order ≈ frequency rank
    kept = [token_id for token, token_id in ordered if not token.startswith(_SKIPPED_TOKEN_PREFIX)]
    with tqdm(total=len(kept), desc="distilling static embeddings", unit="token", disable=not show_progress) as bar:
        pooled = _token_vectors(source_path, kept, wrap, batch_size, bar.update)
    reduced = _pca(pooled.astype(np.float64), min(dimension, pooled.shape[1]))
    if sif_coefficient is not None:
        reduced = reduced * _sif_weights(len(kept), sif_coefficient)[:, None]
    vectors = np.zeros((max(vocabulary.values()) + 1, reduced.shape[1]), dtype=np.float32)
    vectors[kept] = reduced  # placeholders keep a zero vector
    recipe = {
        "recipe": _RECIPE_VERSION,
        "dimension": int(vectors.shape[1]),
        "sif_coefficient": sif_coefficient,
        "skipped": _SKIPPED_TOKEN_PREFIX,
    }
    config = {
        "format": _FORMAT,
        "version": 1,
        "source": source_path.name if source is not None else "all-MiniLM-L6-v2",
        **recipe,
        "vocabulary": int(vectors.shape[0]),
        "fingerprint": _fingerprint(source_path, recipe),
    }
    # a folder of this call's own (a uuid, not the process id: threads share that; mkdir, not
    # mkdtemp, so that the model's folder gets the umask's permissions, not 0700)
    partial = target.with_name(f"{target.name}.partial-{uuid.uuid4().hex}")
    partial.mkdir(parents=True)
    try:
        np.save(partial / "vectors.npy", vectors)
        shutil.copyfile(tokenizer_file, partial / "tokenizer.json")
        (partial / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        with _DISTIL_LOCK:  # another thread's swap must not run between this one's rmtree and replace
            _check_replaceable(target)  # nothing else was put there meanwhile
            shutil.rmtree(target, ignore_errors=True)
            os.replace(partial, target)  # a crash never leaves a half-written model behind
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _distil_default(path: Path) -> None:
    """Distil the default static model into ``path`` on first use, if the bundled MiniLM is
    installed (else leave it to the caller's :class:`MissingResourceError`)."""
    from greenserv_core.features.embedders import bundled_minilm_path

    try:
        bundled_minilm_path()
    except MissingResourceError:
        return
    with _DISTIL_LOCK:  # two embedders used for the first time at once distil once
        if (path / "config.json").exists():
            return
        logger.info("distilling the static embedder %s once, from the bundled all-MiniLM-L6-v2", path.name)
        distill_static(out=path)


def _damaged(file: Path, error: BaseException) -> MissingResourceError:
    """The error for a static model's file that is missing or cannot be read."""
    what = "missing" if not file.exists() else f"damaged ({error})"
    return MissingResourceError(f"{file} is {what}: the static embedder is incomplete; {_SETUP_HINT}")


class StaticEmbedder:
    """Embeds texts by averaging distilled static token vectors. No torch at query time.

    ``model_path`` ``None`` is the cache's default model (:func:`static_model_dir`); when it is
    missing, it is distilled there from the bundled all-MiniLM-L6-v2 on first use (about 30 s,
    once; ``greenserv setup`` does it ahead of time). A given ``model_path`` must exist.
    ``max_tokens`` caps the tokens looked at per text (the features need the instruction,
    not the whole document). ``cache_size`` recent texts keep their vectors (0: none): a hit
    costs microseconds, a miss about 0.3 ms for a 370-character instruction here, most of it
    the tokenizer. A text's vector is the same alone or in a batch, cached or not.

    >>> embedder = StaticEmbedder()                                   # doctest: +SKIP
    >>> float(embedder.embed(["hello"])[0] @ embedder.embed(["hi"])[0])  # doctest: +SKIP
    0.7...
    """

    def __init__(
        self, model_path: str | Path | None = None, *, max_tokens: int = _DEFAULT_MAX_TOKENS, cache_size: int = 4096
    ) -> None:
        max_tokens, cache_size = (
            check_whole("max_tokens", max_tokens, low=1),
            check_whole("cache_size", cache_size, low=0),
        )
        self.model_path = model_path
        self.max_tokens = max_tokens
        self.cache_size = cache_size
        self._cache = LRUCache(cache_size)
        self._loaded: tuple[Tokenizer, np.ndarray, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Its parameters only (no lock, cache or table): a pickled or deep copy loads the model on first use."""
        state = self.__dict__.copy()
        del state["_lock"], state["_cache"]
        state["_loaded"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._cache = LRUCache(self.cache_size)

    def _load(self) -> tuple[Tokenizer, np.ndarray, dict[str, Any]]:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    from tokenizers import Tokenizer

                    path = Path(self.model_path) if self.model_path is not None else static_model_dir()
                    config_file = path / "config.json"
                    if not config_file.exists() and self.model_path is None:
                        _distil_default(path)
                    if not config_file.exists():
                        raise MissingResourceError(f"no static embedder at {path}; {_SETUP_HINT}")
                    config = _read_config(path)
                    if config is not None and config.get("format") != _FORMAT:
                        raise MissingResourceError(f"{path} is not a GreenServ static embedder; {_SETUP_HINT}")
                    if config is None or not {"source", "dimension", "fingerprint"} <= config.keys():
                        raise MissingResourceError(f"{config_file} is damaged; {_SETUP_HINT}")
                    try:
                        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
                    except Exception as error:  # tokenizers raises a bare Exception (a missing file too)
                        raise _damaged(path / "tokenizer.json", error) from error
                    tokenizer.no_padding()
                    tokenizer.enable_truncation(self.max_tokens)
                    try:
                        vectors = np.load(path / "vectors.npy")
                    except (OSError, ValueError, EOFError) as error:
                        raise _damaged(path / "vectors.npy", error) from error
                    self._loaded = (tokenizer, np.ascontiguousarray(vectors, dtype=np.float32), config)
        return self._loaded

    @property
    def name(self) -> str:
        config = self._load()[2]
        name = f"static:{config['source']}:{config['dimension']}:{config['fingerprint']}"
        # fewer tokens looked at is another embedding space (the default's name stays as bundled classifiers know it)
        return name if self.max_tokens == _DEFAULT_MAX_TOKENS else f"{name}:max_tokens={self.max_tokens}"

    @property
    def dimension(self) -> int:
        return int(self._load()[1].shape[1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a sequence of strings, not one string")
        if self.cache_size <= 0:
            return self._embed(texts)
        found = [self._cache.get(text) for text in texts]
        missing = sorted({text for text, vector in zip(texts, found, strict=True) if vector is None})
        if not missing:
            return np.stack(found) if found else self._embed(texts)  # type: ignore[arg-type]
        computed = dict(zip(missing, self._embed(missing), strict=True))
        for text, vector in computed.items():
            self._cache.put(text, vector.copy())  # a row of its own: a view would keep the whole batch
        pairs = zip(texts, found, strict=True)
        return np.stack([computed[text] if vector is None else vector for text, vector in pairs])

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """The vectors of ``texts``, computed (no cache)."""
        tokenizer, vectors, _ = self._load()
        if len(texts) == 1:  # the routing path: one query, no batch bookkeeping
            ids = tokenizer.encode(texts[0], add_special_tokens=False).ids
            out = vectors[ids].sum(axis=0, keepdims=True) if ids else np.zeros((1, vectors.shape[1]), np.float32)
        else:
            encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            for row, encoding in enumerate(encodings):
                if encoding.ids:
                    out[row] = vectors[encoding.ids].sum(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        out[empty, 0], norms[empty] = 1.0, 1.0  # an empty text gets a fixed unit vector
        normalised: np.ndarray = out / norms
        return normalised
