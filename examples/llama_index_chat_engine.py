"""A LlamaIndex chat engine conversation over a small index, each turn routed.

python examples/llama_index_chat_engine.py
"""

from __future__ import annotations

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage

from llama_index_greenserv import GreenServEmbedding, GreenServLLM

DOCUMENTS = (
    "GreenServ routes each query to one model of a pool of local language models.",
    "It learns from feedback which model gives good answers for little energy.",
)
TURNS = ("What does GreenServ do?", "What does it learn from?")


def main(max_tokens: int = 32) -> list[ChatMessage]:
    llm = GreenServLLM(tradeoff=0.4, max_tokens=max_tokens)
    Settings.llm = llm
    Settings.embed_model = GreenServEmbedding()  # the bundled MiniLM
    index = VectorStoreIndex.from_documents([Document(text=text) for text in DOCUMENTS])
    engine = index.as_chat_engine(chat_mode="condense_plus_context", similarity_top_k=1)
    for turn in TURNS:
        reply = engine.chat(turn)
        print(f"> {turn}\n  {str(reply).strip()}")
    return engine.chat_history


if __name__ == "__main__":
    main()
