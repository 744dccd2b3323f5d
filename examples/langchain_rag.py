"""A small RAG chain: bundled MiniLM embeddings, an in-memory vector store, routed answers.

python examples/langchain_rag.py
"""

from __future__ import annotations

from typing import Any

from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_greenserv import ChatGreenServ, GreenServEmbeddings

DOCUMENTS = (
    "GreenServ routes each query to one model of a pool of local language models.",
    "The Eiffel Tower is in Paris and was completed in 1889.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The Danube flows through Vienna, Budapest and Belgrade before reaching the Black Sea.",
)


def main(question: str = "When was the Eiffel Tower completed?", max_tokens: int = 32) -> tuple[str, list[str]]:
    llm = ChatGreenServ(tradeoff=0.4, max_tokens=max_tokens)
    store = InMemoryVectorStore(GreenServEmbeddings())
    store.add_documents([Document(text) for text in DOCUMENTS])
    retriever = store.as_retriever(search_kwargs={"k": 2})
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context only, in one sentence.\n\nContext:\n{context}"), ("human", "{question}")]
    )

    def join(inputs: dict[str, Any]) -> str:
        return "\n".join(doc.page_content for doc in inputs["context"])

    # retrieve once; the answer is generated from the documents returned with it
    answer = RunnablePassthrough.assign(context=join) | prompt | llm | StrOutputParser()
    chain = RunnableParallel(context=retriever, question=RunnablePassthrough()).assign(answer=answer)
    result = chain.invoke(question)
    found = [doc.page_content for doc in result["context"]]
    print(f"context: {found}\nanswer: {result['answer']}")
    return result["answer"], found


if __name__ == "__main__":
    main()
