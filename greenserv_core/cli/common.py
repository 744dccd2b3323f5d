"""What several ``greenserv`` commands share: strategy names from the registries, tables, JSON reports."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenserv_core.errors import InvalidInputError
from greenserv_core.features.bundled import DEFAULT_EMBEDDER, EMBEDDERS

if TYPE_CHECKING:
    from collections.abc import Callable

    from greenserv_core.evaluation.table import OutcomeTable
    from greenserv_core.features.extractor import FeatureExtractor, TaskEncoding

__all__ = [
    "PLOT_SUFFIXES",
    "add_feature_options",
    "add_meter_option",
    "at_least",
    "budget_option",
    "cascade_pair",
    "check_arrival_rate",
    "check_fraction",
    "check_meter",
    "check_output_file",
    "embedding_store",
    "meter_help",
    "model_help",
    "number",
    "parse_strategies",
    "percent",
    "policy_params",
    "print_table",
    "quiet_first_screen",
    "refuse_repeats",
    "seed_number",
    "strategy_help",
    "table_features",
    "tradeoff_list",
    "write_json",
]


def at_least(flag: str, value: float | None, low: float) -> None:
    """:class:`InvalidInputError` unless ``value`` (when given) is at least ``low``.

    >>> at_least("--runs", 0, 1)
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: --runs must be at least 1, got 0
    """
    if value is not None and not value >= low:  # NaN fails too
        raise InvalidInputError(f"{flag} must be at least {low:g}, got {value:g}")


def check_fraction(flag: str, value: float | None) -> None:
    """:class:`InvalidInputError` unless ``value`` (when given) lies in [0, 1] (NaN does not).

    >>> check_fraction("--feedback-rate", 1.5)
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: --feedback-rate must lie in [0, 1], got 1.5
    """
    if value is not None and not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"{flag} must lie in [0, 1], got {value:g}")


def check_output_file(
    flag: str,
    path: str | None,
    suffixes: Sequence[str] = (),
    *,
    not_to: Mapping[str, str | None] | None = None,
    writable: bool = True,
) -> None:
    """Before a command's work: ``path`` (when given) must not be a folder, nor lie under a
    file, must end in one of ``suffixes`` when they are given (or have no suffix at all when
    ``""`` is one of them), and must not be any file of ``not_to`` (flag to path: the command's
    inputs and its other outputs), nor the ``.meta.json`` sidecar of a ``.csv`` table among them,
    which writing it would destroy. With ``writable`` (the default: an output refused at the
    end of a long run loses the run), a file must be writable in the nearest folder above it
    that exists (where it would be made).

    >>> check_output_file("--json", "t.csv", not_to={"--table": "./t.csv"})
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: --json t.csv is the --table too: writing would destroy it
    >>> check_output_file("-o", "t.csv.meta.json", not_to={"--table": "t.csv"})
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: -o t.csv.meta.json is the --table's metadata too: writing would destroy it
    """
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise InvalidInputError(f"{flag} {path} is a folder; give a file name")
    for folder in target.absolute().parents:
        if folder.exists():
            if not folder.is_dir():
                raise InvalidInputError(f"{flag} {path}: {folder} is a file, not a folder")
            if writable and target.exists():  # (a file there, /dev/fd/1, a pipe: written as it is)
                if not os.access(target, os.W_OK):
                    raise InvalidInputError(f"{flag} {path}: cannot write it")
            elif writable:
                _check_writable(flag, path, folder)
            break
    if suffixes and target.suffix.lower() not in suffixes:
        wanted = ", ".join(s or "none" for s in suffixes)
        raise InvalidInputError(f"{flag} {path}: the file must end in {wanted}, not {target.suffix or 'nothing'!r}")
    written = target.with_suffix(".png") if "" in suffixes and not target.suffix else target  # as matplotlib saves it
    for other, given in (not_to or {}).items():
        if given and Path(given).resolve() == written.resolve():
            raise InvalidInputError(f"{flag} {path} is the {other} too: writing would destroy it")
        if given and Path(given).suffix == ".csv" and Path(f"{given}.meta.json").resolve() == written.resolve():
            raise InvalidInputError(f"{flag} {path} is the {other}'s metadata too: writing would destroy it")


PLOT_SUFFIXES = ("", ".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")
"""What a ``--plot`` path may end in: image formats matplotlib writes (none: it adds ``.png``)."""


def check_arrival_rate(rate: float | None, *, window: bool) -> None:
    """``--arrival-rate``: a positive number of queries per second, given beside a window
    budget (``window``), the one thing it paces, and only there."""
    if rate is None:
        if window:
            raise InvalidInputError(
                "a window budget (e.g. --budget 2Wh/h or --window 1h) needs --arrival-rate (queries per second) "
                "to draw arrival times"
            )
        return
    if not (math.isfinite(rate) and rate > 0):
        raise InvalidInputError(f"--arrival-rate must be a positive number of queries per second, got {rate:g}")
    if not window:
        raise InvalidInputError(
            "--arrival-rate only paces a window budget (joules per window of time, e.g. --budget 2Wh/h "
            "or --window 1h); without one it would be ignored"
        )


def _replay_only_names() -> list[str]:
    from greenserv_core.evaluation.diagnostics import DIAGNOSTICS

    return ["oracle", *DIAGNOSTICS]


def strategy_help(*, replay: bool = False, oracle: bool = True) -> str:
    """The strategy names a command takes, from the policy registry (and replay's own: the
    oracle, unless ``oracle`` is false, and the diagnostics)."""
    from greenserv_core.bandits.registry import strategy_forms

    names = f"policies ({', '.join(strategy_forms())})"
    if replay:
        hindsight, *diagnostics = _replay_only_names()
        names += f", {hindsight}, and" if oracle else " and"
        names += f" the diagnostics {', '.join(diagnostics)}"
    return names


def parse_strategies(text: str, *, replay: bool = False, oracle: bool = True) -> list[str]:
    """``"linucb,static:big"`` → a checked list; unknown names raise :class:`InvalidInputError`
    (with ``replay``, the diagnostics and, unless ``oracle`` is false, the oracle are known)."""
    from greenserv_core.bandits.registry import POLICIES

    extra = set(_replay_only_names()) - (set() if oracle else {"oracle"}) if replay else set()
    known = set(POLICIES) | extra
    strategies = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in strategies if name.partition(":")[0] not in known]
    if not strategies or unknown:
        choices = strategy_help(replay=replay, oracle=oracle)
        raise InvalidInputError(f"unknown strategies {unknown or [text]}; choose from {choices}")
    repeated = sorted({name for name in strategies if strategies.count(name) > 1})
    if repeated:
        raise InvalidInputError(f"strategies named twice: {repeated}; each is one row of the report")
    return strategies


def policy_params(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["linucb.alpha=0.3", ...]`` → ``{"linucb": {"alpha": 0.3}}`` (values parsed as JSON when they can be).

    >>> policy_params(["linucb.alpha=0.3", "epsilon.schedule=decay"])
    {'linucb': {'alpha': 0.3}, 'epsilon': {'schedule': 'decay'}}
    """
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, equals, raw = item.partition("=")
        strategy, dot, name = key.partition(".")
        if not equals or not dot or not strategy or not name:
            raise InvalidInputError(f"--param is STRATEGY.NAME=VALUE (e.g. linucb.alpha=0.3), got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if name in params.get(strategy, {}):
            raise InvalidInputError(f"--param sets {key} twice; give each parameter once")
        params.setdefault(strategy, {})[name] = value
    return params


def mean_and_interval(value: Mapping[str, float], digits: int = 3, scale: float = 1.0, unit: str = "") -> str:
    """A mean over runs with its 95% half-width, or the mean alone for a single run (which has
    no interval; a report without the count of runs keeps the interval).

    >>> mean_and_interval({"mean": 0.5123, "ci95": 0.0139, "runs": 5})
    '0.512 ± 0.014'
    >>> mean_and_interval({"mean": 0.9, "ci95": 0.0, "runs": 1}, digits=1, scale=100, unit="%")
    '90.0%'
    """
    text = f"{scale * value['mean']:.{digits}f}{unit}"
    return text if value.get("runs") == 1 else f"{text} ± {scale * value['ci95']:.{digits}f}"


def percent(value: float | None) -> str:
    """A relative change as a signed percentage.

    >>> percent(0.1234), percent(None)
    ('+12.3%', '–')
    """
    return "–" if value is None else f"{100 * value:+.1f}%"


def seed_number(text: str) -> int:
    """``--seed``: an integer of 0 or more (what numpy's generators take), else a clear
    argparse error naming the flag.

    >>> seed_number("3")
    3
    >>> seed_number("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: a seed is an integer of 0 or more, got '-1'
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is an integer of 0 or more, got {text!r}")
    return value


def tradeoff_list(text: str) -> list[float]:
    """``--tradeoffs``: comma-separated λs, each in [0, 1], checked before any work.

    >>> tradeoff_list("0.2, 0.4")
    [0.2, 0.4]
    >>> tradeoff_list("0.4,1.5")
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: --tradeoffs is comma-separated λs in [0, 1], got '0.4,1.5'
    """
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or any(not 0 <= value <= 1 for value in values):  # NaN too
        raise InvalidInputError(f"--tradeoffs is comma-separated λs in [0, 1], got {text!r}")
    refuse_repeats("--tradeoffs", values, text, "λ")
    return values


def refuse_repeats(flag: str, values: Sequence[object], text: str, what: str) -> None:
    """Refuse a list option that names a value twice (one row of the report, two runs' time).

    >>> refuse_repeats("--seeds", [0, 0], "0,0", "seed")
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: --seeds names a seed twice: '0,0'
    """
    if len(set(values)) < len(values):
        raise InvalidInputError(f"{flag} names a {what} twice: {text!r}")


def number(value: float | None, form: str = "{:.3f}") -> str:
    """``value`` in ``form``, or ``–`` for none.

    >>> number(0.12345), number(None), number(2.5, "{:.1f} J")
    ('0.123', '–', '2.5 J')
    """
    return "–" if value is None else form.format(value)


def print_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> None:
    from greenserv_core.evaluation.markdown import markdown_table

    print(markdown_table(rows, columns))


def budget_option(per_query: float | None, text: str | None) -> Any:
    """The :class:`~greenserv_core.budget.EnergyBudget` of ``--budget-joules-per-query`` or
    ``--budget`` (``None`` for neither; both is an error).

    >>> budget_option(None, "2Wh/h").describe(), budget_option(None, None)
    ('2 Wh per 1 h', None)
    >>> budget_option(None, "0J/query")
    Traceback (most recent call last):
    greenserv_core.errors.InvalidInputError: --budget: the energy budget must be a positive finite number, got 0.0
    """
    from greenserv_core.budget import EnergyBudget

    if per_query is not None and text is not None:
        raise InvalidInputError("give --budget-joules-per-query or --budget, not both")
    option = "--budget-joules-per-query" if per_query is not None else "--budget"
    try:
        if per_query is not None:
            return EnergyBudget.per_query(per_query)
        return None if text is None else EnergyBudget.parse(text)
    except InvalidInputError as error:  # (named by its option, as the other options' errors are)
        raise InvalidInputError(f"{option}: {error}") from error


def quiet_first_screen() -> None:
    """For the commands a newcomer runs first (``demo``, ``chat``): no progress bars or
    warnings of the libraries underneath, and the energy meter's notice left to the command,
    which says once, on one short line, that the joules are estimates."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    for name in ("transformers", "accelerate", "torch", "sentence_transformers", "huggingface_hub", "greenserv.energy"):
        logging.getLogger(name).setLevel(logging.ERROR)


def cascade_pair(text: str) -> tuple[str, str]:
    """``"FIRST->THEN"`` as a pair of model names.

    >>> cascade_pair("qwen2.5-7b->qwen2.5-14b")
    ('qwen2.5-7b', 'qwen2.5-14b')
    """
    first, arrow, then = text.partition("->")
    if not arrow or not first.strip() or not then.strip():
        raise InvalidInputError(f"a cascade is FIRST->THEN (e.g. qwen2.5-7b->qwen2.5-14b), got {text!r}")
    if first.strip() == then.strip():  # before any model loads
        raise InvalidInputError(f"a cascade needs two different models, got {text!r}")
    return first.strip(), then.strip()


def add_feature_options(parser: Any) -> None:
    """``--no-embedding-cache`` and ``--embedder``: how a command over a table builds its
    features (read back by :func:`embedding_store` and :func:`table_features`)."""
    parser.add_argument("--no-embedding-cache", action="store_true", help="embed every prompt again")
    parser.add_argument("--embedder", choices=EMBEDDERS, default=DEFAULT_EMBEDDER, help="the features' embedder")


def table_features(
    args: argparse.Namespace, table: OutcomeTable, task_encoding: TaskEncoding = "onehot"
) -> Callable[[], FeatureExtractor]:
    """The bundled features of ``--embedder``, one embedder shared by every run over ``table``."""
    from greenserv_core.evaluation.replay import default_features

    return default_features(len(set(table.columns["prompt"])), args.embedder, task_encoding)


def embedding_store(args: argparse.Namespace) -> Path | None:
    from greenserv_core.paths import cache_dir

    return None if args.no_embedding_cache else cache_dir() / "embeddings"


def progress_shown() -> bool:
    """Whether a command draws progress bars: on a terminal only (redrawn frames garble a log
    or a pipe; the library's own calls draw them wherever asked, notebooks included)."""
    return sys.stderr.isatty()


def write_json(path: str | None, report: Any) -> None:
    """Write ``report`` as JSON to ``path`` (if one is given) and say so."""
    if path:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(report, indent=2), encoding="utf-8")
        except OSError as error:  # a clear line, not a traceback after the work
            raise InvalidInputError(f"cannot write {path}: {error.strerror or error}") from error
        print(f"wrote {path}")


def add_meter_option(parser: Any) -> None:
    """``--meter``: one of the registered energy meters (or ``auto``), checked as the command line is read."""
    from greenserv_core.energy import meter_names

    parser.add_argument("--meter", default="auto", choices=meter_names(), help=meter_help())


def check_meter(name: str, pool: Sequence[Any]) -> None:
    """Build the ``--meter`` ``name`` of each local model of ``pool`` now, before any weights load
    (:func:`greenserv_core.models.pool.check_meter`): a meter that cannot measure here is refused
    at the start (:class:`InvalidInputError`), not at the first answer."""
    from greenserv_core.models.pool import check_meter as check_pool_meter

    check_pool_meter(pool, name, option="--meter")


def meter_help() -> str:
    """The energy meter names, from the meter registry."""
    from greenserv_core.energy import meter_names

    return _either(meter_names())


def model_help() -> str:
    """The kinds of model address, from the address-scheme registry."""
    import greenserv_core.models.pool  # noqa: F401  (registers the schemes)
    from greenserv_core.backends.registry import address_schemes

    return _either([scheme.describes for scheme in address_schemes()])


def _either(names: Sequence[str]) -> str:
    """Names joined as a choice.

    >>> _either(["a", "b", "c"])
    'a, b or c'
    """
    *first, last = names
    return f"{', '.join(first)} or {last}" if first else last


def _check_writable(flag: str, path: str, folder: Path) -> None:
    """A file can be made in ``folder`` (else :class:`InvalidInputError` naming ``flag``)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InvalidInputError(f"{flag} {path}: cannot write in {folder} ({error.strerror or error})") from None
