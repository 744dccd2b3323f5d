"""``greenserv demo`` and ``greenserv chat`` where something goes wrong: a model that fails
part-way, failed attempts' joules, estimates among the readings, a plot that cannot be written
or is interrupted, and what ``/why`` and a failed answer say. Fake models throughout."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from greenserv_core import FakeBackend, GreenServRouter, cli
from greenserv_core.backends.base import GenerationResult, GenerationSettings
from greenserv_core.cli.session import ChatSession
from greenserv_core.datasets.olmo_eval import TaskExample
from greenserv_core.errors import ModelUnavailableError
from greenserv_core.evaluation import plots
from greenserv_core.evaluation.learning_demo import plot_demo, run_learning_demo, summarise_demo
from greenserv_core.messages import Message
from greenserv_core.models import pool
from greenserv_core.router import RoutedGeneration
from greenserv_core.routing.results import FailedAttempt
from tests.conftest import make_hashing_extractor, use_fake_pool

STREAM = [TaskExample("arc_easy", str(i), "Q? A) x B) y", "A", ("x", "y")) for i in range(4)]


class Metered(FakeBackend):
    """A fake whose joules count as measured (a local model on an energy counter)."""

    def generate(self, messages: Sequence[Message], settings: GenerationSettings) -> GenerationResult:
        result = super().generate(messages, settings)
        return dataclasses.replace(result, energy=dataclasses.replace(result.energy, source="counter", measured=True))


def _fails_from(call: int, error: Exception) -> Callable[[Sequence[Message]], str]:
    """A reply that raises ``error`` from its ``call``-th call on."""
    calls: list[int] = []

    def reply(messages: Sequence[Message]) -> str:
        calls.append(1)
        if len(calls) >= call:
            raise error
        return "B"

    return reply


def _use(monkeypatch: pytest.MonkeyPatch, backends: list[Any]) -> None:
    """Make the CLI build ``backends`` and the hashing features instead of the bundled ones."""
    use_fake_pool(monkeypatch, backends)


def _router(*backends: FakeBackend, policy: str = "epsilon") -> GreenServRouter:
    return GreenServRouter(list(backends), features=make_hashing_extractor(), policy=policy, seed=0)


def _with_failed_attempt(router: GreenServRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each routed answer comes after a failed attempt of ``large`` that spent 500 J."""
    generate = router.generate

    def failed_first(*args: Any, **kwargs: Any) -> RoutedGeneration:
        attempt = FailedAttempt("large", "timed out", 500.0, 1.0, "fake", False)
        return dataclasses.replace(generate(*args, **kwargs), failed_attempts=(attempt,))

    monkeypatch.setattr(router, "generate", failed_first)


# ---- 1: a model that fails part-way ------------------------------------------------------
def test_a_shadow_model_that_fails_is_missing_from_that_step_and_the_comparisons() -> None:
    flaky = FakeBackend("large", joules_per_token=9.0, reply=_fails_from(2, ModelUnavailableError("server down")))
    router = _router(FakeBackend("small", reply=lambda m: "A"), flaky, policy="static:small")
    steps = list(run_learning_demo(router, STREAM))
    assert len(steps) == 4 and "large" in steps[0].joules_by_model
    assert all("large" not in s.joules_by_model and "server down" in s.failed_by_model["large"] for s in steps[1:])
    summary = summarise_demo(steps)
    assert summary.compared == 1 and summary.dearest_joules == steps[0].joules_by_model["large"]
    assert summary.compared_router_joules == steps[0].joules


def test_a_demo_whose_model_fails_part_way_ends_with_its_summary_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = FakeBackend("large", joules_per_token=9.0, reply=_fails_from(4, ModelUnavailableError("server down")))
    _use(monkeypatch, [FakeBackend("small", reply=lambda m: "A"), flaky])
    plot = tmp_path / "demo.png"
    assert cli.main(["demo", "--queries", "6", "--tasks", "arc_easy", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "prompts every model answered" in out and plot.exists()


def test_an_error_in_the_stream_stops_it_like_ctrl_c_and_keeps_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, [FakeBackend("only", reply=_fails_from(3, RuntimeError("CUDA out of memory")))])
    plot = tmp_path / "demo.png"
    assert cli.main(["demo", "--queries", "4", "--tasks", "arc_easy", "--plot", str(plot)]) == 1
    out = capsys.readouterr().out
    assert "[error] RuntimeError: CUDA out of memory" in out
    assert "summary" in out and "[ 2/4]" in out and plot.exists()


# ---- 2: chat --state without --interactive -----------------------------------------------
def test_the_sample_chat_reports_a_model_error_goes_on_and_saves_its_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def third_breaks(messages: Sequence[Message]) -> str:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory")
        return "an answer"

    _use(monkeypatch, [FakeBackend("only", reply=third_breaks)])
    state = tmp_path / "state.json"
    assert cli.main(["chat", "--state", str(state), "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "[error] RuntimeError: CUDA out of memory" in out and "only: 5 answers" in out
    assert json.loads(state.read_text(encoding="utf-8"))["state"]["stats"]["only"]["decisions"] == 6


# ---- 3: failed attempts' joules ----------------------------------------------------------
def test_failed_attempts_joules_count_in_the_demo_the_session_and_the_chat(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    router = _router(FakeBackend("small", reply=lambda m: "A"), FakeBackend("large", joules_per_token=9.0))
    _with_failed_attempt(router, monkeypatch)
    step = next(iter(run_learning_demo(router, STREAM[:1])))
    assert step.joules == pytest.approx(step.joules_by_model[step.model] + 500.0)

    session = ChatSession(router, max_new_tokens=8, say=lambda line: None)
    answer = session.ask("What is 2 + 2?")
    assert answer is not None
    assert sum(t.joules for t in session.tallies_.values()) == pytest.approx(answer.energy_joules + 500.0)

    generate = GreenServRouter.generate

    def failed_first(self: GreenServRouter, *args: Any, **kwargs: Any) -> RoutedGeneration:
        attempt = FailedAttempt("large", "timed out", 500.0, 1.0, "fake", False)
        return dataclasses.replace(generate(self, *args, **kwargs), failed_attempts=(attempt,))

    _use(monkeypatch, [FakeBackend("small", reply=lambda m: "A"), FakeBackend("large", reply=lambda m: "A")])
    monkeypatch.setattr(GreenServRouter, "generate", failed_first)
    assert cli.main(["chat", "--strategy", "static:small", "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "large: 0 answers, 3000.0 J" in out  # six sample questions, each after a failed attempt


# ---- 4: estimates among the readings -----------------------------------------------------
def test_estimated_shadow_joules_are_labelled_in_the_lines_and_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    backends = [Metered("small", reply=lambda m: "A"), FakeBackend("large", joules_per_token=9.0)]
    router = _router(*backends, policy="static:small")
    steps = list(run_learning_demo(router, STREAM))
    assert all(s.energy_measured and s.measured_by_model == {"small": True, "large": False} for s in steps)
    labels: list[str] = []

    def spy(plt: Any, figure: Any, path: str | Path) -> Path:
        labels.append(figure.axes[1].get_ylabel())
        plt.close(figure)
        return Path(path)

    monkeypatch.setattr(plots, "_save", spy)
    plot_demo(steps, tmp_path / "demo.png")
    assert labels == ["cumulative joules (estimated)"]

    _use(monkeypatch, backends)
    assert cli.main(["demo", "--queries", "3", "--tasks", "arc_easy", "--strategy", "static:small", "--plot", ""]) == 0
    assert "large: its joules are estimates" in capsys.readouterr().out


# ---- 5: /why when the explored model had the best score ----------------------------------
def test_why_says_not_the_best_score_only_when_it_was_not() -> None:
    lines: list[str] = []
    router = _router(FakeBackend("small", reply=lambda m: "4"), FakeBackend("large", joules_per_token=9.0))
    for _ in range(3):  # small answers well, large badly: their scores differ
        router.learn("What is 2 + 2?", "small", score=1.0)
        router.learn("What is 2 + 2?", "large", score=0.0)
    session = ChatSession(router, max_new_tokens=8, say=lines.append)
    answer = session.ask("What is 2 + 2?")
    assert answer is not None
    scores = answer.decision.scores
    best, worst = sorted(scores, key=lambda m: -scores[m].score)
    assert scores[best].score > scores[worst].score
    for model, verdict in ((best, "; it had the best score too"), (worst, ", not the best score")):
        explored = dataclasses.replace(answer.decision, model=model, explored=True)
        session.last_ = dataclasses.replace(answer, model=model, decision=explored)
        lines.clear()
        session.why()
        assert [line for line in lines if "explored:" in line] == [f"  explored: yes (tried for learning{verdict})"]


# ---- 6: an interrupted plot --------------------------------------------------------------
def test_a_plot_interrupted_while_written_leaves_the_earlier_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "demo.png"
    path.write_bytes(b"the earlier plot")
    plt = plots._pyplot()
    figure = plt.figure()

    def half_written(target: Any, **kwargs: Any) -> None:
        if isinstance(target, (str, Path)):
            Path(target).write_bytes(b"half")
        else:
            target.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(figure, "savefig", half_written)
    with pytest.raises(KeyboardInterrupt):
        plots._save(plt, figure, path)
    assert path.read_bytes() == b"the earlier plot"
    assert [p.name for p in tmp_path.iterdir()] == ["demo.png"]  # no temporary file left behind


# ---- 7: a summary without the shadow runs ------------------------------------------------
def test_a_summary_without_the_other_models_answers_compares_nothing() -> None:
    router = _router(FakeBackend("small", reply=lambda m: "A"), FakeBackend("big"), policy="static:small")
    summary = summarise_demo(list(run_learning_demo(router, STREAM, shadow=False)))
    assert summary.dearest_model is None and summary.random_joules is None and summary.compared == 0
    assert summary.router_joules > 0 and list(summary.models) == ["small"]


# ---- 8: --plot checked up front ----------------------------------------------------------
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder nobody can write in (/proc)")
def test_the_demo_refuses_a_plot_it_cannot_write_before_the_models_load(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    monkeypatch.setattr(
        pool, "build_backends", lambda names, meter="auto", option=None: built.append(names) or [FakeBackend("a")]
    )
    assert cli.main(["demo", "--queries", "2", "--tasks", "arc_easy", "--plot", "/proc/greenserv-demo.png"]) == 2
    assert "cannot write in /proc" in capsys.readouterr().err and not built


# ---- 9: the "too long" hint --------------------------------------------------------------
def test_the_too_long_hint_comes_only_when_the_context_window_is_the_reason() -> None:
    lines: list[str] = []
    down = FakeBackend("only", reply=_fails_from(2, ModelUnavailableError("connection refused")))
    session = ChatSession(_router(down), max_new_tokens=8, say=lines.append)
    session.ask("What is the capital of France?")
    session.ask("And of Spain?")
    assert "connection refused" in lines[-1] and "too long" not in lines[-1]

    lines.clear()
    session = ChatSession(_router(FakeBackend("only", context_window=24)), max_new_tokens=8, say=lines.append)
    session.ask("What is the capital of France?")
    session.ask("And of Spain, and of Italy, and of Portugal, and of Greece?")
    assert "context window" in lines[-1] and "too long" in lines[-1]


def test_a_failed_attempt_that_spent_nothing_leaves_the_joules_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    router = _router(Metered("small"), Metered("large"), policy="static:small")
    generate = router.generate

    def refused_first(*args: Any, **kwargs: Any) -> RoutedGeneration:  # refused at once: 0 J, not "measured"
        attempt = FailedAttempt("large", "cooling down", 0.0, 0.0, None, False)
        return dataclasses.replace(generate(*args, **kwargs), failed_attempts=(attempt,))

    monkeypatch.setattr(router, "generate", refused_first)
    steps = list(run_learning_demo(router, STREAM))
    assert all(step.energy_measured and not step.estimated_models for step in steps)  # were labelled estimates


def test_the_shadow_runs_are_unseen_by_a_remote_models_circuit_breaker() -> None:
    """A remote model whose server fails on the first prompts: the router chooses alike with
    and without the shadow runs (they went through the router's own backend, so their failures
    opened its breaker and the router never chose the model again)."""
    import httpx

    from greenserv_core.backends.openai_compatible import OpenAICompatibleBackend

    prompts = [f"Question {i}: which one? A) yes B) no" for i in range(12)]

    def server(name: str) -> Callable[[httpx.Request], httpx.Response]:
        def handle(request: httpx.Request) -> httpx.Response:
            if name == "flaky" and json.loads(request.content)["messages"][-1]["content"] in prompts[:3]:
                return httpx.Response(500, json={"error": "down"})
            return httpx.Response(
                200,
                json={
                    "choices": [{"message": {"content": "A"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 1},
                },
            )

        return handle

    def chosen(shadow: bool) -> list[str]:
        pool = [
            OpenAICompatibleBackend(
                "http://gpu:8000/v1", name, transport=httpx.MockTransport(server(name)), max_retries=0, backoff_s=0.0
            )
            for name in ("steady", "flaky")
        ]
        router = GreenServRouter(pool, features=make_hashing_extractor(), strategy="random", seed=3)
        examples = [TaskExample("arc_easy", str(i), p, "A", ("yes", "no")) for i, p in enumerate(prompts)]
        return [step.model for step in run_learning_demo(router, examples, shadow=shadow)]

    alone = chosen(False)
    assert "flaky" in alone and chosen(True) == alone


def test_the_energy_note_names_what_was_estimated() -> None:
    """Says "no energy counter here" only where every reading was an estimate (it said so where
    the first estimate was the chosen answer's beside a measured model, and named the measuring
    counter itself where only a failed attempt's joules were estimated)."""
    from greenserv_core.cli.demo import _estimate_note
    from greenserv_core.evaluation.learning_demo import DemoStep

    def step(model: str, measured: dict[str, bool], *, total_measured: bool, source: str) -> DemoStep:
        joules = dict.fromkeys(measured, 10.0)
        return DemoStep(0, "arc_easy", model, False, 1.0, 10.0, total_measured, source, joules, {}, measured)

    short = {"local": "local", "remote": "remote"}
    mixed = step("remote", {"remote": False, "local": True}, total_measured=False, source="estimate-latency-x-300W")
    assert _estimate_note(mixed, set(), short) == "   (no energy counter for remote: its joules are estimates)"
    failed = step("local", {"local": True, "remote": True}, total_measured=False, source="nvml-counter")
    noted: set[str] = set()
    assert _estimate_note(failed, noted, short) == "   (a failed attempt's joules are estimates)"
    assert _estimate_note(failed, noted, short) is None  # once
    everywhere = step("local", {"local": False, "remote": False}, total_measured=False, source="cpu-time-estimate")
    assert (
        _estimate_note(everywhere, set(), short)
        == "   (no energy counter here: joules are estimates, cpu-time-estimate)"
    )
