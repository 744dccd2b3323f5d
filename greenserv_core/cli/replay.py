"""``greenserv bench replay`` and ``greenserv bench sweep``: an outcome table through the router."""

from __future__ import annotations

import argparse
from typing import Any

from greenserv_core.cli.common import (
    PLOT_SUFFIXES,
    add_feature_options,
    at_least,
    budget_option,
    check_arrival_rate,
    check_fraction,
    check_output_file,
    embedding_store,
    mean_and_interval,
    parse_strategies,
    percent,
    policy_params,
    print_table,
    progress_shown,
    seed_number,
    strategy_help,
    table_features,
    tradeoff_list,
    write_json,
)
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.learning_curves import AROUND
from greenserv_core.features.extractor import TASK_ENCODINGS

ENERGY_SCALE_CHOICES = ("online", "known", "seen", "pool", "table")
"""``--energy-scale``: :data:`~greenserv_core.evaluation.replay.REPLAY_ENERGY_SCALES`, spelt out
so that parsing the command line does not import the router (a test checks they agree)."""

__all__ = ["add_commands"]


def _strategies(text: str) -> list[str]:
    """The strategies of ``--strategies``: the registry's, replay's own, and the peers'."""
    from greenserv_core.evaluation.replay import peer_strategies

    names = [name.strip() for name in text.split(",") if name.strip()]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InvalidInputError(f"strategies named twice: {twice}")
    peers = set(peer_strategies(names))
    others = [name for name in names if name not in peers]
    if others or not names:
        parse_strategies(",".join(others) or text, replay=True)  # raises for an unknown name
    return names


def _check_runs(args: argparse.Namespace) -> None:
    """``--runs`` and ``--feedback-rate``, checked before the table is read."""
    at_least("--runs", args.runs, 1)
    check_fraction("--feedback-rate", args.feedback_rate)


def _params_of(items: list[str], strategies: list[str]) -> dict[str, dict[str, Any]]:
    """``--param``s, each for a strategy of ``--strategies`` (another would be silently ignored)."""
    params = policy_params(items)
    running = {name.split(":")[0] for name in strategies}
    unused = sorted(set(params) - running)
    if unused:
        raise InvalidInputError(
            f"--param names the strategies {unused}, which are not among --strategies {sorted(running)}"
        )
    from greenserv_core.bandits.registry import POLICIES, check_policy_params

    fixed = sorted(name for name in params if name not in POLICIES)  # peers, diagnostics, the oracle
    if fixed:
        raise InvalidInputError(f"--param sets the router's policies only; {fixed} take no parameters here")
    for given in params.values():  # before any work starts (a sweep's progress bar)
        check_policy_params(given, "--param", seed="--seed")
    named = [name for name in strategies if name.startswith("static:") and name.partition(":")[2]]
    if "arm" in params.get("static", {}) and named:
        raise InvalidInputError(f"--param static.arm would override the arm {named[0]} names; name it there")
    return params


def _horizons(text: str) -> list[int]:
    """``"500,2000"`` → ``[500, 2000]``.

    >>> _horizons("500, 2000"), _horizons("")
    ([500, 2000], [])
    """
    try:
        return [int(h) for h in text.split(",") if h.strip()]
    except ValueError as error:
        raise InvalidInputError(f"--horizons is comma-separated numbers of queries, got {text!r}") from error


def _replay(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.replay import PoolChange, Shift, replay
    from greenserv_core.evaluation.table import read_table
    from greenserv_core.evaluation.warm_start import parse_overstatement
    from greenserv_core.reward import check_tradeoff

    changes = [PoolChange.parse("add", c) for c in args.add_model] + [
        PoolChange.parse("remove", c) for c in args.remove_model
    ]
    shifts = [Shift.parse(s) for s in args.shift]
    each_overstated = [parse_overstatement(o) for o in args.overstate]
    overstate = dict(each_overstated)
    if len(overstate) < len(each_overstated):
        raise InvalidInputError("--overstate names a model twice; give each model once")
    strategies = _strategies(args.strategies)
    params = _params_of(args.param, strategies)
    horizons = _horizons(args.horizons)
    budget = budget_option(args.budget_joules_per_query, args.budget)
    try:
        check_tradeoff(args.tradeoff)
    except InvalidInputError as error:
        raise InvalidInputError(f"--tradeoff: {error}") from None
    _check_runs(args)
    at_least("--per-task", args.per_task, 1)
    at_least("--warm-start", args.warm_start, 0)
    check_arrival_rate(args.arrival_rate, window=budget is not None and budget.window_s is not None)
    check_output_file("--json", args.json, not_to={"--table": args.table})
    check_output_file("--plot", args.plot, PLOT_SUFFIXES, not_to={"--table": args.table, "--json": args.json})
    table = read_table(args.table)
    report = replay(
        table,
        strategies,
        make_features=table_features(args, table, args.task_encoding),
        tradeoff=args.tradeoff,
        runs=args.runs,
        seed=args.seed,
        feedback_rate=args.feedback_rate,
        policy_params=params,
        changes=changes,
        embedding_store=embedding_store(args),
        energy_scale=args.energy_scale,
        progress=progress_shown(),
        per_task=args.per_task,
        horizons=horizons,
        shifts=shifts,
        warm_start=args.warm_start,
        overstate=overstate,
        energy_budget=budget,
        arrival_rate=args.arrival_rate,
    )
    if table.simulated:
        print("NOTE: this table is SIMULATED")
    settings = report["settings"]
    print(f"features for {settings['queries']} prompts: {report['timing']['feature_warmup_s']:.1f} s")
    if settings["per_task"] is not None:
        print(f"streamed: up to {settings['per_task']} queries of each task ({settings['queries']} queries in all)")
    past = [h for h in horizons if h > settings["queries"]]
    if past:
        print(
            f"NOTE: --horizons {','.join(map(str, past))} reach past the stream's {settings['queries']} queries; "
            "the learning curve ends at the stream's end"
        )
    warm = report["warm_start"]
    if warm["rows"]:
        overstated = ", ".join(f"{m} {d:+g}" for m, d in warm["overstated"].items())
        print(
            f"warm start: {warm['queries_per_task']} queries per task ({warm['source']}), {warm['rows']} rows "
            f"taught, which cost {warm['joules']:.1f} J ({warm['wh']:.3f} Wh) in the table"
            + (f"; scores overstated: {overstated}" if overstated else "")
        )
    print_table(replay_rows(report))
    if "budget" in report and report["budget"]["strategies"]:
        from greenserv_core.cli.budget import spend_rows

        print(f"energy budget {report['budget']['budget']}: realised spend (share of the budget)")
        print_table(spend_rows(report["budget"]))
    elif "budget" in report:  # the oracle alone: nothing is paced
        print(f"NOTE: energy budget {report['budget']['budget']}: no strategy here is paced by it")
    print("learning curve (gap closed to the best fixed model per task; accuracy vs random; energy vs random):")
    print_table(learning_curve_rows(report))
    for shift in report["shifts"]:
        print(
            f"shift {shift['shift']}: the new optimum gives {shift['model']} "
            f"{percent_share(shift['new_optimum_share'])} of the queries after it"
        )
        print_table(shift_rows(report, shift))
    for newcomer in report["newcomers"]:
        print(
            f"newcomer {newcomer['model']}@{newcomer['step']} (final share over the last "
            f"{newcomer['final_window']} queries before the next shift or pool change, or the end; "
            "the new optimum gives it "
            f"{percent_share(newcomer['new_optimum_share'])} of the queries after it joins):"
        )
        print_table(newcomer_rows(report, newcomer))
    print("fixed choices from the table (accuracy / J per query / reward):")
    baselines = dict(report["baselines"])
    per_task = baselines.pop("per_task")
    for name, fixed in baselines.items():
        label = f"{name} ({fixed['model']})" if "model" in fixed else name
        print(f"  {label}: {fixed['accuracy']:.3f} / {fixed['joules_per_query']:.2f} / {fixed['reward']:.3f}")
    for task, facts in per_task.items():
        if facts["runner_up_gap"] is None:  # a one-model pool
            continue
        print(
            f"  {task}: best {facts['best_model']} (reward {facts['best_reward']:.3f}), runner-up "
            f"{facts['runner_up_gap']:.3f} behind, {facts['models_within_0.05']} models within 0.05"
        )
    write_json(args.json, report)
    if args.plot:
        from greenserv_core.evaluation.plots import plot_replay

        print(f"wrote {plot_replay(report, args.plot)}")
    return 0


def _label(report: dict[str, Any], name: str) -> str:
    return f"{name} (peer)" if name in report["settings"].get("peers", ()) else name


def percent_share(value: dict[str, float] | None) -> str:
    """A mean share over runs as a percentage.

    >>> percent_share({"mean": 0.25, "ci95": 0.0}), percent_share(None)
    ('25.0%', '–')
    """
    return "–" if value is None else f"{100 * value['mean']:.1f}%"


def _mean(value: dict[str, float] | None) -> float | None:
    return None if value is None else value["mean"]


def _steps(found: dict[str, Any]) -> str:
    """The mean steps over the runs that got there, each run's, and how many did where some never did.

    >>> _steps({"mean": 7.0, "runs": [None, 7], "reached": 1})
    '7 (never, 7; 1 of 2 runs)'
    """
    runs = ", ".join("never" if v is None else str(v) for v in found["runs"])
    missed = "" if found["reached"] == len(found["runs"]) else f"; {found['reached']} of {len(found['runs'])} runs"
    return "never" if found["mean"] is None else f"{found['mean']:.0f} ({runs}{missed})"


def learning_curve_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per strategy; per horizon, gap closed to the best fixed model per task; accuracy
    and energy against the expected random choice, over the first queries of each run."""
    curve = report["learning_curve"]
    queries = report["settings"]["queries"]
    rows = []
    for name, points in curve["strategies"].items():
        row = {"strategy": _label(report, name)}
        for point in points:
            h = point["queries"]
            row[f"first {h}" if h < queries else f"all {h}"] = "; ".join(
                percent(_mean(point[key]))
                for key in ("gap_closed_to_best_fixed_per_task", "accuracy_vs_random", "energy_vs_random")
            )
        rows.append(row)
    return rows


def shift_rows(report: dict[str, Any], shift: dict[str, Any]) -> list[dict[str, str]]:
    """One row per strategy: time to re-adapt to ``shift`` and the model's share around it (after it,
    up to the next shift or pool change: the steps each header counts are those measured)."""
    around = f"{shift['model']} share"
    step, queries = int(shift["step"]), int(report["settings"]["queries"])
    later = [int(other["step"]) for other in report.get("shifts", [])]
    later += [int(change.rpartition("@")[2]) for change in report["settings"].get("pool_changes", [])]  # "add m@3"
    stop = min([queries, *(at for at in later if at > step)])  # the share after ends at the next shift or change
    before, after = min(AROUND, step), min(AROUND, max(0, stop - step))  # as many as the stream holds
    return [
        {
            "strategy": _label(report, name),
            "re-adapt (steps; per run)": _steps(found["readapt_steps"]),
            f"{around}, {before} before": percent_share(found["share_before"]),
            f"{around}, {after} after": percent_share(found["share_after"]),
        }
        for name, found in shift["strategies"].items()
    ]


def newcomer_rows(report: dict[str, Any], newcomer: dict[str, Any]) -> list[dict[str, str]]:
    """One row per strategy: steps until the newcomer reaches half of its final share."""
    return [
        {
            "strategy": _label(report, name),
            "steps to half the final share (per run)": _steps(found["steps_to_half"]),
            "final share": percent_share(found["final_share"]),
            "steps to half the new optimum's share (per run)": _steps(found["steps_to_half_optimum"]),
        }
        for name, found in newcomer["strategies"].items()
    ]


def replay_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per strategy of a :func:`~greenserv_core.evaluation.replay.replay` report."""
    rows = []
    for name, summary in report["strategies"].items():
        rel = report["relative"][name]
        rows.append(
            {
                "strategy": _label(report, name),
                **{
                    label: mean_and_interval(summary[key])
                    for label, key in (("accuracy", "accuracy"), ("energy (Wh)", "energy_wh"), ("reward", "reward"))
                },
                "cumulative regret": f"{summary['cumulative_regret']['mean']:.1f}",
                "accuracy vs random": percent(rel["accuracy_vs_random"]),
                "energy vs random": percent(rel["energy_vs_random"]),
                "gap closed: best fixed per task": percent(rel["gap_closed_to_best_fixed_per_task"]),
                "gap closed: oracle": percent(rel["gap_closed_to_oracle"]),
                "s per run": f"{summary['seconds_per_run']['mean']:.1f}",
            }
        )
    return rows


def _sweep(args: argparse.Namespace) -> int:
    from greenserv_core.evaluation.sweep import sweep
    from greenserv_core.evaluation.table import read_table

    strategies = parse_strategies(args.strategies, replay=True)
    tradeoffs = tradeoff_list(args.tradeoffs)
    params = _params_of(args.param, strategies)
    _check_runs(args)
    check_output_file("--json", args.json, not_to={"--table": args.table})
    check_output_file("--plot", args.plot, PLOT_SUFFIXES, not_to={"--table": args.table, "--json": args.json})
    table = read_table(args.table)
    report = sweep(
        table,
        strategies,
        tradeoffs,
        runs=args.runs,
        seed=args.seed,
        feedback_rate=args.feedback_rate,
        policy_params=params,
        embedding_store=embedding_store(args),
        energy_scale=args.energy_scale,
        make_features=table_features(args, table),
        progress=progress_shown(),
    )
    if table.simulated:
        print("NOTE: this table is SIMULATED")
    low, high = report["cost_range_joules_per_query"]
    print(f"AIQ over {low:.2f}–{high:.2f} J per query (cheapest to dearest single model)")
    print_table(sweep_rows(report))
    write_json(args.json, report)
    if args.plot:
        from greenserv_core.evaluation.plots import plot_sweep

        print(f"wrote {plot_sweep(report, args.plot)}")
    return 0


def sweep_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """The single models, then one row per strategy of a :func:`~greenserv_core.evaluation.sweep.sweep` report."""
    points = "points (λ: accuracy @ J per query)"
    rows = [{"strategy": "single models", "AIQ": f"{report['single_models']['aiq']:.3f}", points: "fixed choices"}]
    for name, curve in report["strategies"].items():
        listed = ", ".join(
            f"{p['tradeoff']:g}: {p['accuracy']:.3f} @ {p['joules_per_query']:.1f}" for p in curve["points"]
        )
        rows.append({"strategy": name, "AIQ": f"{curve['aiq']:.3f}", points: listed})
    return rows


def add_commands(bench: Any) -> None:
    """Add ``replay`` and ``sweep`` to the ``bench`` subparsers."""
    replay = bench.add_parser("replay", help="replay a table through the router with partial feedback")
    replay.add_argument("--table", required=True)
    replay.add_argument(
        "--strategies",
        default="linucb,thompson,epsilon,epsilon-nc,random,oracle",
        help=f"comma-separated: {strategy_help(replay=True)}; and the peers of greenserv_core.evaluation.peers "
        "(vw-squarecb, vw-epsilon: the bench extra; mabwiser-linucb: the peers extra)",
    )
    replay.add_argument("--tradeoff", type=float, default=0.4)
    replay.add_argument("--runs", type=int, default=5)
    replay.add_argument("--seed", type=seed_number, default=0)
    replay.add_argument("--feedback-rate", type=float, default=1.0)
    replay.add_argument("--json", help="write the full report (CIs, shares, regret curves, settings) here")
    replay.add_argument("--plot", help="write regret, accuracy-vs-energy and selection-share plots (PNG) here")
    replay.add_argument("--add-model", action="append", default=[], metavar="NAME@STEP", help="model joins at STEP")
    replay.add_argument("--remove-model", action="append", default=[], metavar="NAME@STEP", help="model leaves at STEP")
    replay.add_argument("--param", action="append", default=[], metavar="STRATEGY.NAME=VALUE", help="policy parameter")
    add_feature_options(replay)
    replay.add_argument(
        "--task-encoding",
        choices=TASK_ENCODINGS,
        default="onehot",
        help="the task type in the context vector: one-hot, or the classifier's probabilities",
    )
    replay.add_argument(
        "--energy-scale",
        choices=ENERGY_SCALE_CHOICES,
        default="online",
        help="online: the router's own default scale (as deployed); known / seen / pool: one of the router's scales; "
        "table: a diagnostic that gives it the table's per-task scale, the one it is scored on",
    )
    replay.add_argument("--per-task", type=int, metavar="N", help="stream only the first N queries of each task")
    replay.add_argument(
        "--horizons",
        default="500,2000",
        metavar="H,H",
        help="learning curve: metrics over the first H queries of each run (and all of them)",
    )
    replay.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="MODEL@STEP:CHANGE",
        help="drift from STEP on; CHANGE is accuracy-D, accuracy+D, energy*F or latency*F (repeatable)",
    )
    replay.add_argument(
        "--warm-start",
        type=int,
        default=0,
        metavar="N",
        help="teach every router all models' outcomes on N labelled queries per task first: those after "
        "--per-task's cut, else the last N of each task, which then leave the stream",
    )
    replay.add_argument(
        "--overstate",
        action="append",
        default=[],
        metavar="MODEL:+D",
        help="teach MODEL's warm-start scores raised by D, capped at 1 (a wrong prior; repeatable)",
    )
    replay.add_argument(
        "--budget-joules-per-query",
        type=float,
        metavar="J",
        help="pace every router to a mean of J joules per query (λ then only starts it); "
        "for a sweep over budgets see `greenserv bench budget`",
    )
    replay.add_argument(
        "--budget",
        metavar="TEXT",
        help="an energy budget as text, e.g. '50J/query', or joules per window of time such as '2Wh/h' "
        "(a window budget needs --arrival-rate)",
    )
    replay.add_argument(
        "--arrival-rate",
        type=float,
        metavar="Q_PER_S",
        help="queries per second of the Poisson arrivals a window budget is paced over (only with a window --budget)",
    )
    replay.set_defaults(run=_replay)
    sweep = bench.add_parser("sweep", help="accuracy-energy curves over λ, Pareto fronts and AIQ")
    sweep.add_argument("--table", required=True)
    sweep.add_argument(
        "--strategies", default="linucb,thompson,epsilon,random", help=f"comma-separated: {strategy_help(replay=True)}"
    )
    sweep.add_argument("--tradeoffs", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1")
    sweep.add_argument("--runs", type=int, default=3)
    sweep.add_argument("--seed", type=seed_number, default=0)
    sweep.add_argument("--feedback-rate", type=float, default=1.0)
    sweep.add_argument("--param", action="append", default=[], metavar="STRATEGY.NAME=VALUE", help="policy parameter")
    sweep.add_argument("--json", help="write the full report here")
    sweep.add_argument("--plot", help="write the accuracy-vs-energy plot (PNG) here")
    add_feature_options(sweep)
    sweep.add_argument(
        "--energy-scale",
        choices=ENERGY_SCALE_CHOICES,
        default="online",
        help="the router's energy scale, as for replay",
    )
    sweep.set_defaults(run=_sweep)
