"""The two tools of the agent examples, as plain functions: a calculator and a document lookup."""

from __future__ import annotations

import ast
import operator
from typing import Any

DOCUMENTS = {
    "eiffel tower": "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
    "photosynthesis": "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
}
QUESTIONS = ("What is 17 * 23?", "What does the document about the Eiffel Tower say?")
_OPERATORS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return float(_OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):  # -3, +5
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError("only numbers and + - * / ** are allowed")


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as '17 * 23'."""
    return str(_evaluate(ast.parse(expression, mode="eval").body))


def lookup(topic: str) -> str:
    """Find the stored document about a topic."""
    return DOCUMENTS.get(topic.strip().lower(), f"no document about {topic!r}")
