"""A multi-turn conversation with message history, each turn routed on its own.

python examples/langchain_conversation.py
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from langchain_greenserv import ChatGreenServ

TURNS = ("Hi! My name is Ada.", "What is the capital of France?", "What is my name?")


def main(max_tokens: int = 24) -> list[BaseMessage]:
    llm = ChatGreenServ(tradeoff=0.4, max_tokens=max_tokens)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a friendly assistant. Answer briefly."), MessagesPlaceholder("history")]
    )
    chain = prompt | llm
    history: list[BaseMessage] = []
    for text in TURNS:
        history.append(HumanMessage(text))
        reply = chain.invoke({"history": history})
        history.append(AIMessage(reply.content))
        meta = reply.response_metadata["greenserv"]
        energy = f"{meta['energy_joules']:.1f} J {'measured' if meta['energy_measured'] else 'estimated'}"
        print(f"> {text}\n  [{meta['model']}, {energy} ({meta['energy_source']})] {reply.content}")
    return history


if __name__ == "__main__":
    main()
