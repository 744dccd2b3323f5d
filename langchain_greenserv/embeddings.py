"""``GreenServEmbeddings``: the bundled MiniLM sentence embedder as LangChain ``Embeddings``, so
a RAG pipeline needs nothing from a hub (and can share the router's MiniLM when the router's
features use it, ``embedder="minilm"``)."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field

from greenserv_core.features.embedders import Embedder, SentenceTransformerEmbedder

__all__ = ["GreenServEmbeddings"]


class GreenServEmbeddings(BaseModel, Embeddings):
    """Embeds documents and queries with a GreenServ embedder (default: bundled MiniLM, full
    256-token inputs). With ``ChatGreenServ(embedder="minilm")``, pass
    ``chat.greenserv_router.features.embedder`` to share its loaded model (the router's default
    static vectors are for routing, not retrieval).

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
