"""``GreenServEmbeddings``: the bundled MiniLM sentence embedder as LangChain ``Embeddings``, so
a RAG pipeline needs nothing from a hub."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field

from greenserv_core.features.embedders import Embedder, SentenceTransformerEmbedder

__all__ = ["GreenServEmbeddings"]


class GreenServEmbeddings(BaseModel, Embeddings):
    """Embeds documents and queries with a GreenServ embedder (default: bundled MiniLM, full
    256-token inputs). The router's own embedder is for routing, not retrieval: its static
    vectors by default, and with ``embedder="minilm"`` a MiniLM that reads only a text's first
    128 tokens, so sharing it (``chat.greenserv_router.features.embedder``) saves a model load
    but drops the rest of a longer document, and changes what is retrieved.

    >>> from greenserv_core.features import HashingEmbedder
    >>> len(GreenServEmbeddings(embedder=HashingEmbedder(32)).embed_query("hello"))
    32
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    embedder: Any = Field(default_factory=lambda: SentenceTransformerEmbedder(max_seq_length=256))

    def _embedder(self) -> Embedder:
        return self.embedder  # type: ignore[no-any-return]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._embedder().embed(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
