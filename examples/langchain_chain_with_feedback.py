"""An LCEL chain (prompt | model | parser) over the bundled local models, scored by an evaluator.

Every answer is checked against a known answer and the score goes back to the router
through ``GreenServFeedbackHandler`` — no extra code in the chain.

    python examples/langchain_chain_with_feedback.py
"""

from __future__ import annotations

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_greenserv import ChatGreenServ, GreenServFeedbackHandler

QUESTIONS = {
    "What is the capital of France?": "paris",
    "What is the capital of Italy?": "rome",
    "How many days are in a week?": "seven|7",
}


def contains_answer(prompt: str, output: str) -> float:
    """1.0 if the output names the expected answer of the question in the prompt."""
    for question, answers in QUESTIONS.items():
        if question in prompt:
            return float(any(a in output.lower() for a in answers.split("|")))
    return 0.0


def main(max_tokens: int = 24) -> GreenServFeedbackHandler:
    llm = ChatGreenServ(tradeoff=0.4, max_tokens=max_tokens)
    handler = GreenServFeedbackHandler(llm, evaluator=contains_answer)
    prompt = ChatPromptTemplate.from_messages([("system", "Answer in one short sentence."), ("human", "{question}")])
    chain = prompt | llm | StrOutputParser()
    for question in QUESTIONS:
        answer = chain.invoke({"question": question}, config={"callbacks": [handler]})
        run = list(handler.runs.values())[-1]
        print(f"[{run.model}] score {run.score}: {answer.strip()}")
    return handler


if __name__ == "__main__":
    main()
