"""``greenserv demo``: watch the router learn on a short labelled stream of real prompts.

Each line shows the task, the model that answered and whether it was right, the running share
of each model and the cumulative joules against always using the dearest model and against
random routing (both measured on the same prompts: every other model answers each prompt in
the shadow, unseen by the router). It ends with a summary and writes a plot.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from greenserv_core.cli.common import quiet_first_screen, seed_number

__all__ = ["add_commands"]


def _short_names(names: list[str]) -> dict[str, str]:
    """Each model's first word (``smollm2-135m-instruct`` → ``smollm2``) where that is unique."""
    first = {name: name.split("-")[0] for name in names}
    return first if len(set(first.values())) == len(names) else {name: name for name in names}


def _saving(spent: float, other: float) -> str:
    """``"saved 7%"`` or ``"spent 4% more"``.

    >>> _saving(93.0, 100.0), _saving(104.0, 100.0)
    ('saved 7%', 'spent 4% more')
    """
    share = 1 - spent / other
    return f"saved {share:.0%}" if share >= 0 else f"spent {-share:.0%} more"


def _shares(counts: dict[str, int], total: int, short: dict[str, str]) -> str:
    return " ".join(f"{short[name]} {count / total:4.0%}" for name, count in counts.items())


def _demo(args: argparse.Namespace) -> int:
    from greenserv_core.cli.common import PLOT_SUFFIXES, at_least, check_output_file

    at_least("--queries", args.queries, 1)
    check_output_file("--plot", args.plot, PLOT_SUFFIXES)  # before the models load
    quiet_first_screen()
    from greenserv_core import GreenServRouter
    from greenserv_core.evaluation.learning_demo import demo_stream, plot_demo, run_learning_demo, summarise_demo
    from greenserv_core.models.pool import build_backends

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    examples = demo_stream(tasks, args.queries, args.seed)
    print(f"GreenServ demo: {len(examples)} labelled prompts from {', '.join(tasks)}; every answer is scored and")
    print("the score goes back to the router as feedback. Loading the models …")
    started = time.perf_counter()
    pool = build_backends(args.model or None, meter=args.meter)
    router = GreenServRouter(pool, strategy=args.strategy, tradeoff=args.tradeoff, seed=args.seed)
    names = router.models
    print(f"pool: {', '.join(names)} | λ = {args.tradeoff} | loaded in {time.perf_counter() - started:.0f} s\n")
    counts = dict.fromkeys(names, 0)
    totals = dict.fromkeys(names, 0.0)  # each model's joules so far, measured (shadow runs included)
    short = _short_names(names)
    width = max(len(n) for n in short.values())
    spent = random = 0.0
    steps = []
    noted = False
    stream = run_learning_demo(router, examples)
    interrupted = False
    while True:
        try:
            step = next(stream, None)
        except KeyboardInterrupt:  # Ctrl-C: stop the stream, keep the summary of what ran
            print("  [stopped]")
            interrupted = True
            break
        if step is None:
            break
        steps.append(step)
        counts[step.model] += 1
        spent += step.joules
        for name, joules in step.joules_by_model.items():
            totals[name] += joules
        most = max(totals, key=totals.__getitem__)
        dearest = totals[most]
        random += sum(step.joules_by_model.values()) / len(step.joules_by_model)
        mark = "✓" if step.score >= 0.5 else "✗"
        tried = "explored" if step.explored else ""
        print(
            f"[{step.index + 1:2d}/{len(examples)}] {step.task:10s} → {short[step.model]:{width}s} {mark} "
            f"{step.joules:6.1f} J {tried:8s} | {_shares(counts, len(steps), short)} | "
            f"Σ {spent:6.0f} J (always {short[most]} {dearest:6.0f}, random {random:6.0f})"
        )
        if not step.energy_measured and not noted:
            noted = True
            print(f"   (no energy counter here: joules are estimates, {step.energy_source})")
    if not steps:
        return 130 if interrupted else 0
    summary = summarise_demo(steps)
    print("\nsummary")
    for name, model in summary.models.items():
        print(
            f"  {name:24s} chosen {model['answers']:3.0f}× ({model['share']:4.0%}; first half "
            f"{summary.first_half_shares.get(name, 0.0):4.0%} → second half "
            f"{summary.second_half_shares.get(name, 0.0):4.0%}) | "
            f"alone: right {model['own_score']:.0%}, {model['own_joules_per_answer']:.1f} J per answer"
        )
    print(f"  GreenServ: right {summary.router_score:.0%}, {summary.router_joules:.1f} J in all")
    if summary.dearest_model is not None and summary.dearest_joules and summary.random_joules:
        print(
            f"  always {summary.dearest_model}: right {summary.dearest_score:.0%}, {summary.dearest_joules:.1f} J "
            f"→ GreenServ {_saving(summary.router_joules, summary.dearest_joules)}"
        )
        print(
            f"  random routing: right {summary.random_score:.0%}, {summary.random_joules:.1f} J "
            f"→ GreenServ {_saving(summary.router_joules, summary.random_joules)}"
        )
    if args.plot:
        try:
            print(f"plot: {plot_demo(steps, args.plot)}")
        except ImportError as error:
            print(f"no plot ({error})")
    print(
        f"{time.perf_counter() - started:.0f} s in all. Next: `greenserv chat --interactive`, "
        "and rate its answers with /good or /bad"
    )
    return 130 if interrupted else 0


def add_commands(commands: Any) -> None:
    """Add ``demo`` to the top-level subparsers."""
    from greenserv_core.bandits import DEFAULT_POLICY
    from greenserv_core.cli.common import add_meter_option, model_help
    from greenserv_core.evaluation.learning_demo import DEMO_TASKS

    demo = commands.add_parser("demo", help="watch the router learn on a short labelled stream of real prompts")
    demo.add_argument("--queries", type=int, default=48, help="prompts in the stream")
    demo.add_argument("--tasks", default=",".join(DEMO_TASKS), help="comma-separated tasks the prompts come from")
    demo.add_argument("--model", action="append", help=f"a pool member (repeat): {model_help()}; default: bundled")
    demo.add_argument("--strategy", default=DEFAULT_POLICY)
    demo.add_argument("--tradeoff", type=float, default=0.4, help="λ: 0 = accuracy only, 1 = energy only")
    add_meter_option(demo)
    demo.add_argument("--seed", type=seed_number, default=0)
    demo.add_argument("--plot", default="greenserv-demo.png", help="where to write the plot ('' for none)")
    demo.set_defaults(run=_demo)
