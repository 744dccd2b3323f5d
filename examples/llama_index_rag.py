"""A LlamaIndex RAG query engine over a few documents, answered through the router, with
every answer scored by an evaluator through LlamaIndex's instrumentation.

Runs offline: the bundled MiniLM embeds the documents, the bundled models answer.

    python examples/llama_index_rag.py
"""

from __future__ import annotations

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher

from llama_index_greenserv import GreenServEmbedding, GreenServEventHandler, GreenServLLM

DOCUMENTS = (
    "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The Danube flows through Vienna, Budapest and Belgrade to the Black Sea.",
)
QUESTIONS = {"When was the Eiffel Tower completed?": "1889", "Which cities does the Danube flow through?": "vienna"}


def contains_answer(prompt: str, output: str) -> float:
    """1.0 if the output names the expected answer of the question in the prompt."""
    for question, answer in QUESTIONS.items():
        if question in prompt:
            return float(answer in output.lower())
    return 0.0


def main(max_tokens: int = 32) -> GreenServEventHandler:
    llm = GreenServLLM(tradeoff=0.4, max_tokens=max_tokens)
    Settings.llm = llm
    Settings.embed_model = GreenServEmbedding()  # the bundled MiniLM for retrieval; the router routes on static vectors
    handler = GreenServEventHandler(llm=llm, evaluator=contains_answer)
    get_dispatcher().add_event_handler(handler)
    try:
        index = VectorStoreIndex.from_documents([Document(text=text) for text in DOCUMENTS])
        engine = index.as_query_engine(similarity_top_k=1)
        for question in QUESTIONS:
            response = engine.query(question)
            source = response.source_nodes[0].node.get_content()
            seen = list(handler.seen.values())[-1]
            print(f"> {question}\n  [{seen.model}, score {seen.score}] {str(response).strip()}\n  source: {source}")
    finally:
        get_dispatcher().event_handlers.remove(handler)
    return handler


if __name__ == "__main__":
    main()
