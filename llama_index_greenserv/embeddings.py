"""``GreenServEmbedding``: the bundled MiniLM sentence embedder as a LlamaIndex ``BaseEmbedding``,
so an index needs nothing from a hub."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import BeforeValidator, ConfigDict, Field

from greenserv_core.adapters.embeddings import retrieval_embedder

__all__ = ["GreenServEmbedding"]


class GreenServEmbedding(BaseEmbedding):
    """Embeds with a GreenServ embedder (default: bundled MiniLM, 256-token inputs). The
    router's own (``embedder="minilm"``) reads only a text's first 128 tokens: sharing it saves
    a model load but drops the rest of a longer document, and changes what is retrieved.
    ``embedder`` is ``"minilm"`` (the default), ``"static"`` or any object with an ``embed``
    method. JSON holds the embedder's name: ``from_json`` rebuilds a bundled one from it, and
    refuses another's (give it: ``from_dict({**json.loads(text), "embedder": my_embedder})``).

    >>> from greenserv_core.features import HashingEmbedder
    >>> len(GreenServEmbedding(embedder=HashingEmbedder(32)).get_text_embedding("hello"))
    32
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    embedder: Annotated[Any, BeforeValidator(retrieval_embedder)] = Field(default_factory=retrieval_embedder)
    model_name: str = "greenserv-embedder"

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        """As LlamaIndex's, with an unset ``model_name`` read as the embedder's ``name``: the
        ingestion cache keys a transformation by ``to_dict()`` without object reprs, so two
        embedders must differ there (the name is read then, not when the model is made: a
        static embedder's name loads it)."""
        data = super().to_dict(**kwargs)
        if "model_name" not in self.model_fields_set:
            data["model_name"] = str(getattr(self.embedder, "name", self.model_name))
        return data

    def to_json(self, **kwargs: Any) -> str:
        """As LlamaIndex's, with the embedder as its ``name`` (JSON cannot hold the object)."""
        data = self.to_dict(**kwargs)
        data["embedder"] = str(getattr(self.embedder, "name", type(self.embedder).__name__))
        return json.dumps(data)

    @classmethod
    def class_name(cls) -> str:
        return "GreenServEmbedding"

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.embedder.embed(texts)]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    # async: embedded in a worker thread, a batch at a time; the event loop stays free
    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await asyncio.to_thread(self._embed, [query]))[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await asyncio.to_thread(self._embed, [text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._embed, texts)
