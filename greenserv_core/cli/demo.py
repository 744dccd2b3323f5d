"""``greenserv demo``: watch the router learn on a short labelled stream of real prompts.

Each line shows the task, the model that answered and whether it was right, the running share
of each model and the cumulative joules against always using the dearest model and against
random routing (both measured on the same prompts: every other model answers each prompt in
the shadow, unseen by the router). It ends with a summary and writes a plot.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from greenserv_core.cli.common import quiet_first_screen, seed_number
from greenserv_core.errors import InvalidInputError

if TYPE_CHECKING:
    from greenserv_core.evaluation.learning_demo import DemoStep, DemoSummary

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


@dataclass
class _Running:
    """The stream so far: each model's answers, the router's joules, and on the prompts every
    model answered, the router's joules, each model's and random routing's."""

    names: list[str]
    counts: dict[str, int] = field(init=False)
    totals: dict[str, float] = field(init=False)
    steps: int = 0
    spent: float = 0.0
    compared: int = 0
    compared_spent: float = 0.0
    random: float = 0.0

    def __post_init__(self) -> None:
        self.counts = dict.fromkeys(self.names, 0)
        self.totals = dict.fromkeys(self.names, 0.0)

    def add(self, step: DemoStep) -> None:
        from greenserv_core.evaluation.learning_demo import answered_by_all  # (loaded with the models)

        self.steps += 1
        self.counts[step.model] = self.counts.get(step.model, 0) + 1
        self.spent += step.joules
        if answered_by_all(step, self.names):
            self.compared += 1
            self.compared_spent += step.joules
            for name in self.names:
                self.totals[name] += step.joules_by_model[name]
            self.random += sum(step.joules_by_model[name] for name in self.names) / len(self.names)

    def versus(self, short: dict[str, str]) -> str:
        """``Σ`` of the router, then always using the dearest model and random routing."""
        if not self.compared:
            return f"Σ {self.spent:6.0f} J (no prompt that every model answered yet)"
        most = max(self.totals, key=self.totals.__getitem__)
        others = f"always {short[most]} {self.totals[most]:6.0f}, random {self.random:6.0f}"
        if self.compared == self.steps:
            return f"Σ {self.spent:6.0f} J ({others})"
        both = f"on the {self.compared} every model answered: GreenServ {self.compared_spent:6.0f}"
        return f"Σ {self.spent:6.0f} J ({both}, {others})"


def _estimate_note(step: DemoStep, noted: set[str], short: dict[str, str]) -> str | None:
    """A note the first time a model's joules are estimates (the line's figures include them),
    and the first time only a failed attempt's are (the answer's own were measured)."""
    own = [name for name in step.joules_by_model if not step.measured_by_model.get(name, False)]
    new = [name for name in own if name not in noted]
    failed = not step.energy_measured and step.model not in own and _FAILED_ATTEMPTS not in noted
    if not new and not failed:
        return None
    everything = not noted and set(new) >= {step.model, *step.joules_by_model}
    noted.update(new)
    if everything:  # (where some model measured its joules, the note names the others)
        return f"   (no energy counter here: joules are estimates, {step.energy_source})"
    notes = []
    if new:
        names = ", ".join(short.get(name, name) for name in new)
        notes.append(f"no energy counter for {names}: its joules are estimates")
    if failed:
        noted.add(_FAILED_ATTEMPTS)
        notes.append("a failed attempt's joules are estimates")
    return f"   ({'; '.join(notes)})"


_FAILED_ATTEMPTS = "<failed attempts>"  # (noted beside the models' names)


def _run_stream(stream: Iterator[DemoStep], total: int, names: list[str]) -> tuple[list[DemoStep], int]:
    """Print a line per step; Ctrl-C (130) or an error (1) stops the stream, keeping what ran."""
    short = _short_names(names)
    width = max(len(n) for n in short.values())
    running = _Running(names)
    steps: list[DemoStep] = []
    noted: set[str] = set()
    failed: set[str] = set()
    while True:
        try:
            step = next(stream, None)
        except KeyboardInterrupt:  # Ctrl-C: stop the stream, keep the summary of what ran
            print("  [stopped]")
            return steps, 130
        except Exception as error:  # a model that broke: the same, with the reason
            print(f"  [error] {type(error).__name__}: {error}")
            return steps, 1
        if step is None:
            return steps, 0
        steps.append(step)
        running.add(step)
        mark = "✓" if step.score >= 0.5 else "✗"
        tried = "explored" if step.explored else ""
        print(
            f"[{step.index + 1:2d}/{total}] {step.task:10s} → {short.get(step.model, step.model):{width}s} {mark} "
            f"{step.joules:6.1f} J {tried:8s} | {_shares(running.counts, len(steps), short)} | {running.versus(short)}"
        )
        for name in step.failed_by_model.keys() - failed:  # said once per model
            failed.add(name)
            print(
                f"   ({short.get(name, name)} failed on this prompt: {step.failed_by_model[name]}; "
                "a prompt that not every model answered is left out of the comparisons)"
            )
        if (note := _estimate_note(step, noted, short)) is not None:
            print(note)


def _print_summary(summary: DemoSummary) -> None:
    print("\nsummary")
    for name, model in summary.models.items():
        print(
            f"  {name:24s} chosen {model['answers']:3.0f}× ({model['share']:4.0%}; first half "
            f"{summary.first_half_shares.get(name, 0.0):4.0%} → second half "
            f"{summary.second_half_shares.get(name, 0.0):4.0%}) | "
            f"alone: right {model['own_score']:.0%}, {model['own_joules_per_answer']:.1f} J per answer"
        )
    print(f"  GreenServ: right {summary.router_score:.0%}, {summary.router_joules:.1f} J in all")
    if summary.dearest_model is None or not summary.dearest_joules or not summary.random_joules:
        if summary.compared < summary.answers:
            print("  no prompt was answered by every model, so there is nothing to compare with")
        return
    spent = summary.router_joules
    if summary.compared < summary.answers and summary.compared_router_joules is not None:
        spent = summary.compared_router_joules
        print(
            f"  compared on the {summary.compared} of {summary.answers} prompts every model answered: "
            f"GreenServ right {summary.compared_router_score:.0%}, {spent:.1f} J"
        )
    print(
        f"  always {summary.dearest_model}: right {summary.dearest_score:.0%}, {summary.dearest_joules:.1f} J "
        f"→ GreenServ {_saving(spent, summary.dearest_joules)}"
    )
    print(
        f"  random routing: right {summary.random_score:.0%}, {summary.random_joules:.1f} J "
        f"→ GreenServ {_saving(spent, summary.random_joules)}"
    )


def _demo(args: argparse.Namespace) -> int:
    from greenserv_core.bandits import make_policy
    from greenserv_core.cli.common import PLOT_SUFFIXES, at_least, check_output_file
    from greenserv_core.reward import check_tradeoff

    at_least("--queries", args.queries, 1)
    check_output_file("--plot", args.plot, PLOT_SUFFIXES, writable=True)  # before the models load
    check_tradeoff(args.tradeoff)
    make_policy(args.strategy, 1)  # an unknown strategy, before the models load
    quiet_first_screen()
    from greenserv_core import GreenServRouter
    from greenserv_core.evaluation.learning_demo import demo_stream, plot_demo, run_learning_demo, summarise_demo
    from greenserv_core.models.pool import build_backends

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    examples = demo_stream(tasks, args.queries, args.seed)
    print(f"GreenServ demo: {len(examples)} labelled prompts from {', '.join(tasks)}; every answer is scored and")
    print("the score goes back to the router as feedback. Loading the models …")
    started = time.perf_counter()
    # a meter that cannot measure here is refused, named as --meter
    pool = build_backends(args.model or None, meter=args.meter, option="--meter")
    router = GreenServRouter(pool, strategy=args.strategy, tradeoff=args.tradeoff, seed=args.seed)
    fixed = router.strategy.partition(":")[2] if router.strategy.startswith("static:") else ""
    if fixed and fixed not in router.arms:  # before any prompt runs
        raise InvalidInputError(
            f"--strategy {router.strategy} routes every query to {fixed!r}, which is not in the pool "
            f"{router.arms}; name one of them"
        )
    names = router.models
    print(f"pool: {', '.join(names)} | λ = {args.tradeoff} | loaded in {time.perf_counter() - started:.0f} s\n")
    steps, code = _run_stream(run_learning_demo(router, examples), len(examples), names)
    if not steps:
        return code
    _print_summary(summarise_demo(steps))
    if args.plot:
        try:
            print(f"plot: {plot_demo(steps, args.plot)}")
        except ImportError as error:
            print(f"no plot ({error})")
    print(
        f"{time.perf_counter() - started:.0f} s in all. Next: `greenserv chat --interactive`, "
        "and rate its answers with /good or /bad"
    )
    return code


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
