"""Answer extraction and scoring for the labelled tasks (:mod:`greenserv_core.datasets`).

* multiple choice: the option letter the answer commits to, exact match with the gold letter;
* GSM8K: the number after ``####`` (else the last number in the answer), numeric exact match;
* BoolQ: the first ``yes``/``no`` in the answer;
* open QA (TriviaQA, NQ): any gold alias contained in the normalised answer;
* summaries (``SUMMARY_TASKS``, e.g. CNN/DailyMail): ROUGE-L F1 against the reference, a
  score in [0, 1] rather than 0 or 1 (Google's ``rouge-score``, with stemming; the ``bench`` extra).

>>> from greenserv_core.datasets import TaskExample
>>> example = TaskExample("arc_easy", "q1", "...", "B", choices=("red", "blue"))
>>> score_answer(example, " B. blue"), score_answer(example, "The answer is (A)")
(1.0, 0.0)
"""

from __future__ import annotations

import functools
import re
import string
from typing import Any

from greenserv_core.datasets.olmo_eval import LETTERS, TaskExample
from greenserv_core.evaluation.extras import bench_import

__all__ = ["SUMMARY_TASKS", "extract_choice", "extract_number", "extract_yes_no", "rouge_l", "score_answer"]

SUMMARY_TASKS = frozenset({"cnn_dailymail", "xsum", "samsum"})

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_choice(text: str, n_choices: int) -> str | None:
    """The option letter an answer commits to, or ``None``.

    A leading letter (``"B"``, ``"(B)"``, ``"B. blue"``, not ``"A man"``) wins; otherwise an explicit
    ``answer is B``; otherwise the first letter that stands alone as ``B.`` or ``B)``.
    Letters beyond the number of options do not count.

    >>> extract_choice("C) because", 4), extract_choice("I think the answer is d.", 4), extract_choice("I'm", 4)
    ('C', 'D', None)
    """
    valid = LETTERS[:n_choices]
    letters = f"[{valid}{valid.lower()}]"
    patterns = (
        rf"^\s*\(?({letters})(?:[.):\n]|\s*$)",
        rf"answer\s*(?:is|:)?\s*\(?({letters})\b",
        rf"(?:^|\s)\(?([{valid}])[.)](?:\s|$)",
    )
    for pattern in patterns:
        match = re.search(pattern, text, flags=re.IGNORECASE if pattern is patterns[1] else 0)
        if match:
            return match.group(1).upper()
    return None


def _canonical_number(text: str) -> str | None:
    cleaned = text.replace(",", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return str(int(value)) if value.is_integer() else str(value)


def extract_number(text: str) -> str | None:
    """The final numeric answer: after ``####`` if present, else the last number.

    >>> extract_number("3 * 4 = 12 pencils. #### 12"), extract_number("So she pays $1,250.00 in total.")
    ('12', '1250')
    """
    tail = text.split("####", 1)[1] if "####" in text else text
    numbers = _NUMBER.findall(tail)
    if not numbers:
        return None
    return _canonical_number(numbers[0] if "####" in text else numbers[-1])


def extract_yes_no(text: str) -> str | None:
    """The first ``yes`` or ``no`` word.

    >>> extract_yes_no(" No, the passage says otherwise."), extract_yes_no("maybe")
    ('no', None)
    """
    match = re.search(r"\b(yes|no)\b", text, flags=re.IGNORECASE)
    return match.group(1).lower() if match else None


def _normalise(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


@functools.cache
def _rouge_scorer() -> Any:
    rouge_scorer = bench_import("rouge_score.rouge_scorer")
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F1 of ``output`` against ``reference`` (longest common subsequence of words).

    >>> round(rouge_l("The cat sat on the mat.", "A cat was sitting on the mat."), 3)
    0.615
    >>> rouge_l("", "A reference."), rouge_l("Same words.", "same words")
    (0.0, 1.0)
    """
    return float(_rouge_scorer().score(reference, output)["rougeL"].fmeasure)


def score_answer(example: TaskExample, output: str) -> float:
    """How well ``output`` answers ``example``: 1.0 or 0.0, or ROUGE-L F1 for a summary."""
    if example.task in SUMMARY_TASKS:
        return rouge_l(output, example.reference)
    if example.choices:
        return float(extract_choice(output, len(example.choices)) == example.reference)
    if example.task == "gsm8k":
        return float(extract_number(output) == _canonical_number(example.reference))
    if example.task == "boolq":
        return float(extract_yes_no(output) == example.reference)
    answer = _normalise(output)
    aliases = [_normalise(a) for a in (example.aliases or (example.reference,))]
    return float(any(alias and re.search(rf"\b{re.escape(alias)}\b", answer) for alias in aliases))
