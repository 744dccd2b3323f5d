"""The embedder behind the adapters' retrieval embeddings (LangChain's ``GreenServEmbeddings``,
LlamaIndex's ``GreenServEmbedding``): a bundled one by name, or any object that embeds."""

from __future__ import annotations

from greenserv_core.errors import InvalidInputError
from greenserv_core.features.bundled import EMBEDDERS, bundled_embedder, bundled_name
from greenserv_core.features.embedders import Embedder, SentenceTransformerEmbedder

__all__ = ["RETRIEVAL_TOKENS", "retrieval_embedder"]

RETRIEVAL_TOKENS = 256
"""The tokens of a text MiniLM reads for retrieval (the router's reads 128: it needs the
instruction, not the whole document)."""


def retrieval_embedder(value: object = None) -> Embedder:
    """The embedder ``value`` names: ``None`` or ``"minilm"`` the bundled MiniLM reading
    :data:`RETRIEVAL_TOKENS` tokens, ``"static"`` the bundled static embedder, a bundled
    embedder's own :attr:`~greenserv_core.features.embedders.Embedder.name` (as JSON holds
    it) that embedder, or an object with an ``embed`` method as it is; anything else is
    refused (:class:`InvalidInputError`).

    >>> from greenserv_core.features import HashingEmbedder
    >>> retrieval_embedder("minilm").max_seq_length, retrieval_embedder(HashingEmbedder(8)).dimension
    (256, 8)
    >>> retrieval_embedder("sentence-transformers:all-MiniLM-L6-v2:128").max_seq_length
    128
    >>> retrieval_embedder("mini-lm")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: embedder must be one of ['minilm', 'static'] or ..., got 'mini-lm'
    """
    if value is None or value == "minilm":
        return SentenceTransformerEmbedder(max_seq_length=RETRIEVAL_TOKENS)
    if isinstance(value, str) and value in EMBEDDERS:
        return bundled_embedder(value)
    if isinstance(value, str) and bundled_name(value) is not None:
        return _named(value)
    if not isinstance(value, str) and callable(getattr(value, "embed", None)):
        return value  # type: ignore[return-value]
    raise InvalidInputError(
        f"embedder must be one of {sorted(EMBEDDERS)} or an object with an embed() method, got {value!r}"
    )


def _named(space: str) -> Embedder:
    """The bundled embedder whose name is ``space``, or :class:`InvalidInputError` where the
    bundled one has another (say, a static embedder distilled again since)."""
    tokens = space.rpartition(":")[2]
    if bundled_name(space) == "minilm" and tokens.isdigit():
        return SentenceTransformerEmbedder(max_seq_length=int(tokens))
    built = bundled_embedder("static")
    if built.name != space:
        raise InvalidInputError(f"embedder {space!r} is not the bundled one ({built.name!r}): give the embedder itself")
    return built
