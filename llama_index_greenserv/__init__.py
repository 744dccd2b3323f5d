"""LlamaIndex adapter for GreenServ: ``GreenServLLM``, ``GreenServEventHandler``, ``GreenServEmbedding``."""

from llama_index_greenserv.embeddings import GreenServEmbedding
from llama_index_greenserv.events import GreenServEventHandler, SeenDecision
from llama_index_greenserv.llms import GreenServLLM, decision_id_of

__all__ = ["GreenServEmbedding", "GreenServEventHandler", "GreenServLLM", "SeenDecision", "decision_id_of"]
