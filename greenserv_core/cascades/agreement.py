"""Whether two answers agree: the stated proxy label of a cascade's answer that was not kept.

When a cascade escalates, nobody scores the first model's answer. If the stronger model's
answer agrees with it, the first answer is taken to be as right as the second; if they
disagree and the second is right, the first is taken to be wrong. That is a proxy, not a
label, and :func:`answers_agree` is deliberately simple: answers are compared as lowercase
words without punctuation; short answers (a choice, a number, yes or no: up to three words
on either side) agree when their first words are equal, longer ones when their word-level
F1 is at least ``threshold``.

>>> answers_agree("B) Paris", "b")
True
>>> answers_agree("The capital of France is Paris.", "Paris is the capital of France")
True
>>> answers_agree("42", "41")
False
"""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["answers_agree"]

_WORD = re.compile(r"[\w.%-]+")


def _words(text: str) -> list[str]:
    return [w.strip(".").lower() for w in _WORD.findall(text) if w.strip(".")]


def answers_agree(first: str, second: str, *, threshold: float = 0.5) -> bool:
    """Whether ``first`` and ``second`` give the same answer (see the module's docstring)."""
    a, b = _words(first), _words(second)
    if not a or not b:
        return not a and not b
    if min(len(a), len(b)) <= 3:
        return a[0] == b[0]
    common = sum((Counter(a) & Counter(b)).values())
    if common == 0:
        return False
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall) >= threshold
