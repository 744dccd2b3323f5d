"""Answer extraction and scoring for the labelled tasks (:mod:`greenserv_core.datasets`).

* multiple choice: the option letter the answer commits to, exact match with the gold letter;
* GSM8K and arithmetic (``COMPUTED_TASKS``): the number after ``####`` (else the last one
  "the answer is" names, else the last number in the answer), numeric exact match;
* BoolQ and every task whose reference is ``yes`` or ``no``: the first ``yes``/``no`` in the answer
  (``true``/``false`` too, ``not true`` read as ``no``);
* open QA (TriviaQA, NQ, arithmetic, SQuAD, DROP, CoQA): any gold alias (every annotated
  answer) contained in the answer, both read as lowercase words and numbers (a number keeps
  its sign and its decimals: ``-42`` is not ``42``; number words to twenty are digits); an
  alias of no letters or digits (``A+``, ``---``) must be the whole answer, case aside;
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
from typing import Any

from greenserv_core.cascades.agreement import (
    MARKED_NUMBER,
    NAMED_NUMBER,
    NAMED_YES_NO,
    NUMBER_PATTERN,
    NUMBER_WORD_VALUES,
    canonical_number,
    extract_choice,
    minus_signs,
)
from greenserv_core.datasets.olmo_eval import TaskExample
from greenserv_core.evaluation.extras import bench_import

__all__ = [
    "COMPUTED_TASKS",
    "SUMMARY_TASKS",
    "extract_choice",
    "extract_number",
    "extract_yes_no",
    "rouge_l",
    "score_answer",
]

SUMMARY_TASKS = frozenset({"cnn_dailymail", "xsum", "samsum"})
COMPUTED_TASKS = frozenset({"gsm8k", "basic_arithmetic", "basic_skills_arithmetic"})
"""Tasks whose answer is a computed number: the answer's final number is its answer (an answer
that repeats the question's numbers and then gets the result wrong is wrong)."""


def extract_number(text: str) -> str | None:
    """The final numeric answer: the number right after the last ``####`` that has one, else
    the last number (a ``####`` with no number after it, as in ``#### Step 1`` or an echoed
    instruction, marks nothing).

    >>> extract_number("3 * 4 = 12 pencils. #### 12"), extract_number("So she pays $1,250.00 in total.")
    ('12', '1250')
    >>> extract_number("I answer after '####'. 16 - 7 = 9, so 18."), extract_number("#### 7 then #### 8")
    ('18', '8')
    >>> extract_number("#### **18** (2 days at 9)"), extract_number("#### The answer is 18 (9 for each of 2 days)")
    ('18', '18')
    >>> extract_number("The answer is 18 (that is 3 * 6).")
    '18'

    Without ``####``, the last number that "the answer is" names wins over the last number.
    """
    text = minus_signs(text)  # "\u22125" and "-$5" are -5
    marked = MARKED_NUMBER.findall(text)
    if marked:
        return canonical_number(marked[-1])
    named = NAMED_NUMBER.findall(text)
    if named:  # "The answer is 18 (that is 3 * 6).": not the 6 of the working after it
        return canonical_number(named[-1])
    numbers = NUMBER_PATTERN.findall(text)
    return canonical_number(numbers[-1]) if numbers else None


def extract_yes_no(text: str) -> str | None:
    """The yes or no that "the answer is" names (the last one), else the first ``yes`` or ``no``
    word (``true`` and ``false`` read as them, ``not true``, ``isn't true`` and ``not false`` as
    their opposites).

    >>> extract_yes_no(" No, the passage says otherwise."), extract_yes_no("maybe"), extract_yes_no(" True.")
    ('no', None, 'yes')
    >>> extract_yes_no("That is not true."), extract_yes_no("That isn't true."), extract_yes_no("Not false")
    ('no', 'no', 'yes')
    >>> extract_yes_no("There is no evidence against it, so the answer is yes.")
    'yes'
    """
    named: list[str] = NAMED_YES_NO.findall(text)
    if named:  # "There is no evidence against it, so the answer is yes."
        return _AS_YES_NO.get(named[-1].lower(), named[-1].lower())
    match = re.search(r"(\bnot\s+|n't\s+)?\b(yes|no|true|false)\b", text, flags=re.IGNORECASE)
    if match is None:
        return None
    word = match.group(2).lower()
    if word in ("true", "false") and match.group(1):
        word = "false" if word == "true" else "true"
    return _AS_YES_NO.get(word, word)


_AS_YES_NO = {"true": "yes", "false": "no"}


_TOKEN = re.compile(r"(?<![\w.])-?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)|[^\W_]+")  # "1975," is the number 1975
_ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_WORDS = {word: str(value) for word, value in NUMBER_WORD_VALUES.items() if value <= 20}
"""Number words read as their digits, in answers and references alike (``four`` is ``4``)."""


def _normalise(text: str) -> str:
    """Lowercase words and numbers, one space apart, without articles or punctuation; a
    number keeps its sign (``-`` or ``−``) and decimals and loses its thousands separators
    (``-1,200.50`` is ``-1200.5``); number words to twenty are digits.

    >>> _normalise("The answer: -1,200.50, not 1200!"), _normalise("Four legs, −42")
    ('answer -1200.5 not 1200', '4 legs -42')
    """
    words = []
    tokens = _TOKEN.findall(minus_signs(text).lower())
    for at, token in enumerate(tokens):
        if token == "one" and _pronoun(tokens, at):
            words.append(token)
            continue
        token = _NUMBER_WORDS.get(token, token)
        if token[-1].isdigit() and (token[0].isdigit() or token[0] in "-."):
            token = canonical_number(token) or token
        if token not in _ARTICLES:
            words.append(token)
    return " ".join(words)


_BEFORE_PRONOUN = frozenset({"no", "any", "some", "every", "each", "which", "this", "that", "the", "another"})
_AFTER_PRONOUN = frozenset({"of", "another", "who", "whose", "that", "which", "else", "s"})


def _pronoun(tokens: list[str], at: int) -> bool:
    """Whether the ``one`` at ``at`` is the pronoun ("no one", "one of them", "the one who"),
    not the number: it is then not read as ``1``.

    >>> _normalise("No one survived."), _normalise("One of them won."), _normalise("There was one.")
    ('no one survived', 'one of them won', 'there was 1')
    """
    before = tokens[at - 1] if at > 0 else ""
    after = tokens[at + 1] if at + 1 < len(tokens) else ""
    return before in _BEFORE_PRONOUN or after in _AFTER_PRONOUN


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
        return float(extract_choice(output, len(example.choices), example.choices) == example.reference)
    if example.task in COMPUTED_TASKS:  # the final number, not any number the answer holds
        reference = canonical_number(example.reference)
        return float(reference is not None and extract_number(output) == reference)
    yes_no = _normalise(example.reference)  # CoQA writes "Yes", "No." and ".yes"
    answer = f" {_normalise(output)} "
    if example.task == "boolq" or yes_no in ("yes", "no"):  # the first yes or no the answer says
        given = {yes_no} | {_normalise(a) for a in example.aliases}
        if extract_yes_no(output) in given:
            return 1.0
        others = [a for a in given if a not in ("yes", "no")]  # an annotator's other words (CoQA)
        return float(example.task != "boolq" and any(a and f" {a} " in answer for a in others))
    if example.spans and all(f" {_normalise(span)} " in answer for span in example.spans):
        return 1.0  # an answer of several parts (DROP): every part is there
    aliases = example.aliases or (() if example.spans else (example.reference,))
    return float(any(_says(output, answer, alias) for alias in aliases))


def _says(output: str, answer: str, alias: str) -> bool:
    """Whether ``answer`` (``output`` normalised, a space either side) holds ``alias``; an alias
    of no letters or digits (``"A+"``, ``"---"``) must be the whole output, case aside."""
    words = _normalise(alias)
    if words:
        return f" {words} " in answer
    return bool(alias.strip()) and alias.strip().casefold() == output.strip().casefold()
