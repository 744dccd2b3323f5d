"""``GreenServEmbeddings``: the bundled MiniLM sentence embedder as LangChain ``Embeddings``, so
a RAG pipeline needs nothing from a hub."""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from greenserv_core.adapters.embeddings import retrieval_embedder
from greenserv_core.features.embedders import Embedder

__all__ = ["GreenServEmbeddings"]


class GreenServEmbeddings(BaseModel, Embeddings):
    """Embeds documents and queries with a GreenServ embedder (default: bundled MiniLM, full
    256-token inputs). The router's own embedder is for routing, not retrieval: its static
    vectors by default, and with ``embedder="minilm"`` a MiniLM that reads only a text's first
    128 tokens, so sharing it (``chat.greenserv_router.features.embedder``) saves a model load
    but drops the rest of a longer document, and changes what is retrieved. ``embedder`` is
    ``"minilm"`` (the default), ``"static"`` or any object with an ``embed`` method.

    >>> from greenserv_core.features import HashingEmbedder
    >>> len(GreenServEmbeddings(embedder=HashingEmbedder(32)).embed_query("hello"))
    32
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    embedder: Annotated[Any, BeforeValidator(retrieval_embedder)] = Field(default_factory=retrieval_embedder)

    def _embedder(self) -> Embedder:
        return self.embedder  # type: ignore[no-any-return]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._embedder().embed(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
