"""LangChain adapter for GreenServ: ``ChatGreenServ`` and ``GreenServFeedbackHandler``."""

from langchain_greenserv.callbacks import GreenServFeedbackHandler, RecordedRun
from langchain_greenserv.chat_models import ChatGreenServ, decision_id_of
from langchain_greenserv.embeddings import GreenServEmbeddings

__all__ = ["ChatGreenServ", "GreenServEmbeddings", "GreenServFeedbackHandler", "RecordedRun", "decision_id_of"]
