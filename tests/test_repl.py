"""``greenserv chat --interactive`` driven as a person would, in a pseudo-terminal: type a
question, rate it, ask why, and check that the feedback reached the router's saved state."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pexpect
import pytest

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.cli.session import ChatSession, run_repl
from greenserv_core.messages import Message
from tests.conftest import make_hashing_extractor, use_fake_pool

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "you> "


def _spawn(*options: str, cache: Path | None = None) -> pexpect.spawn:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "dumb"}
    if cache is not None:
        env["GREENSERV_CACHE"] = str(cache)
    child = pexpect.spawn(
        sys.executable, ["-m", "tests.repl_app", *options], cwd=str(ROOT), env=env, encoding="utf-8", timeout=60
    )
    child.expect_exact(PROMPT)
    return child


def test_a_person_asks_rates_asks_why_and_the_router_learns(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    child = _spawn("--state", str(state), "--strategy", "static:large", cache=tmp_path / "cache")
    child.sendline("What is 2 + 2?")
    child.expect(r"large › large answer to: What is 2 \+ 2\? \(turn 1\)")
    child.expect_exact(PROMPT)
    child.sendline("/good")
    child.expect("thanks: large scored 1")
    child.expect_exact(PROMPT)
    child.sendline("/good")  # one score per answer
    child.expect("already rated")
    child.expect_exact(PROMPT)
    child.sendline("/why")
    child.expect("why large: task ")
    child.expect(r"large .* ←")
    child.expect("explored: no")
    child.expect_exact(PROMPT)
    child.sendline("And times 3?")  # the conversation goes on: the second user turn
    child.expect(r"\(turn 2\)")
    child.expect_exact(PROMPT)
    child.sendline("/new")
    child.expect("new conversation")
    child.expect_exact(PROMPT)
    child.sendline("Hello")
    child.expect(r"\(turn 1\)")
    child.expect_exact(PROMPT)
    child.sendline("/stats")
    child.expect(r"large\s+3\s+")
    child.expect_exact(PROMPT)
    child.sendline("/frobnicate")
    child.expect("unknown command /frobnicate")
    child.expect_exact(PROMPT)
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    saved = json.loads(state.read_text(encoding="utf-8"))
    assert saved["state"]["stats"]["large"]["feedback"] == 1 and saved["state"]["stats"]["large"]["decisions"] == 3
    history = (tmp_path / "cache" / "chat_history").read_text(encoding="utf-8")  # lines typed, kept for next time
    assert "What is 2 + 2?" in history and "/why" in history


def test_ctrl_c_stops_an_answer_not_the_chat() -> None:
    child = _spawn("--strategy", "static:large")
    child.sendline("Answer slowly please")
    child.expect_exact("[slow answer started]")  # (its echo alone came before the line was read, at times)
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact(PROMPT)
    child.sendline("/bad")  # nothing was answered, so there is nothing to rate
    child.expect("nothing to rate yet")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_the_session_checks_scores_and_commands() -> None:
    lines: list[str] = []
    router = GreenServRouter([FakeBackend("small"), FakeBackend("large")], features=make_hashing_extractor(), seed=0)
    session = ChatSession(router, max_new_tokens=8, say=lines.append)
    feed = iter(["/why", "/score 0.5", "What is 2 + 2?", "/score 7", "/score x", "/score 0.25", "/help", "/quit", "no"])
    run_repl(session, read=lambda prompt: next(feed))
    text = "\n".join(lines)
    assert "nothing to explain yet" in text and "nothing to rate yet" in text
    assert "a score is a number in [0, 1], got 7.0" in text and "/score takes a number in [0, 1], got 'x'" in text
    assert "scored 0.25" in text and "/good  /bad  /score X" in text
    assert session.last_ is not None and router.stats_[session.last_.model]["feedback"] == 1


def test_the_demo_shows_the_router_learning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``greenserv demo`` over two fake models on real labelled prompts: every line, the
    summary with the measured comparisons, and the plot."""
    from greenserv_core import cli

    fakes = [FakeBackend("small", reply=lambda m: "A"), FakeBackend("large", joules_per_token=9.0, reply=lambda m: "B")]
    use_fake_pool(monkeypatch, fakes)
    plot = tmp_path / "demo.png"
    assert cli.main(["demo", "--queries", "8", "--tasks", "arc_easy,mmlu", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 8 and lines[-1].startswith("[ 8/8]")
    assert "always large" in lines[-1] and "random" in lines[-1]
    assert "joules are estimates" in out  # said once
    assert out.count("joules are estimates") == 1
    assert "always large: right" in out and "GreenServ saved" in out
    assert plot.exists() and plot.stat().st_size > 10_000


def test_the_real_chat_learns_from_a_rating(tmp_path: Path) -> None:
    """``greenserv chat --interactive`` over the bundled models, in a pseudo-terminal: nothing
    but the chat's own lines before the first answer, and a rating that reaches the state."""
    state = tmp_path / "state.json"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "greenserv_core.cli", "chat", "--interactive", "--state", str(state), "--max-new-tokens", "12"],
        cwd=str(ROOT),
        env={**os.environ, "TERM": "dumb"},
        encoding="utf-8",
        timeout=300,
    )
    child.expect_exact(PROMPT)
    first_screen = child.before
    assert "WARNING" not in first_screen and "it/s" not in first_screen and "%|" not in first_screen
    child.sendline("What is the capital of France?")
    child.expect(r"› [^\r\n]+\r\n")
    child.expect_exact(PROMPT)
    assert "joules are estimates" in child.before or "J ·" in child.before
    child.sendline("/good")
    child.expect("the router learned from it")
    child.expect_exact(PROMPT)
    child.sendline("/why")
    child.expect("explored: ")
    child.expect_exact(PROMPT)
    child.sendline("/quit")
    child.expect(pexpect.EOF, timeout=120)
    child.close()
    assert child.exitstatus == 0
    counts = json.loads(state.read_text(encoding="utf-8"))["state"]["stats"]
    assert sum(model["feedback"] for model in counts.values()) == 1


def _session(reply: Callable[[Sequence[Message]], str]) -> tuple[ChatSession, list[str], GreenServRouter]:
    lines: list[str] = []
    router = GreenServRouter(
        [FakeBackend("small", reply=reply), FakeBackend("large", joules_per_token=9.0, reply=reply)],
        features=make_hashing_extractor(),
        policy="static:small",
        seed=0,
    )
    return ChatSession(router, max_new_tokens=8, say=lines.append), lines, router


def test_a_stopped_or_failed_answer_leaves_nothing_to_rate() -> None:
    def reply(messages: Sequence[Message]) -> str:
        text = str(messages[-1]["content"])
        if "intr" in text:
            raise KeyboardInterrupt
        if "boom" in text:
            raise RuntimeError("CUDA out of memory")
        return "fine"

    session, lines, router = _session(reply)
    feed = iter(["hello", "please intr", "/bad", "please go boom", "/good", "/quit"])
    run_repl(session, read=lambda prompt: next(feed))
    text = "\n".join(lines)
    assert "[stopped]" in text and "[error] RuntimeError: CUDA out of memory" in text
    assert text.count("nothing to rate yet") == 2  # neither the stopped nor the failed answer is rated
    assert router.stats_["small"]["feedback"] == 0


def test_stats_compare_predictions_with_predictions() -> None:
    session, lines, router = _session(lambda m: "an answer of five words")
    for _ in range(3):  # teach the energy model both models' joules
        for model, joules in (("small", 10.0), ("large", 90.0)):
            router.learn("What is 2 + 2?", model, energy_joules=joules)
    answer = session.ask("What is 2 + 2?")
    assert answer is not None and answer.model == "small"
    predicted = answer.decision.predicted_joules
    assert session.compared_ == 1
    assert session.saved_joules_ == pytest.approx(predicted["large"] - predicted["small"])  # type: ignore[operator]
    session.stats()
    assert any("saved against always using the dearest model" in line for line in lines)
    assert not any("not yet known" in line for line in lines)  # the saving, not both verdicts


def test_a_one_prompt_demo_still_summarises(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core import cli

    use_fake_pool(monkeypatch, [FakeBackend("a"), FakeBackend("b")])
    assert cli.main(["demo", "--queries", "1", "--tasks", "arc_easy", "--plot", ""]) == 0
    assert "summary" in capsys.readouterr().out


def test_a_line_that_is_not_valid_text_is_skipped_and_the_chat_goes_on() -> None:
    session, lines, router = _session(lambda m: "fine")

    feed: Iterator[str | bytes] = iter(["hello", b"caf\xe9", "/good", "/quit"])

    def read(prompt: str) -> str:
        line = next(feed)
        if isinstance(line, bytes):
            raise UnicodeDecodeError("utf-8", line, 3, 4, "invalid continuation byte")
        return line

    run_repl(session, read=read)
    assert any("[skipped] a line that is not valid text" in line for line in lines)
    assert router.stats_["small"]["feedback"] == 1  # the rating after it still reached the router
    escaped = iter(["caf\udce9", "/quit"])  # what stdin read with surrogateescape gives for b"caf\xe9"
    lines.clear()
    run_repl(session, read=lambda prompt: next(escaped))
    assert any("[skipped] a line that is not valid text" in line for line in lines)
    assert not any("[error]" in line for line in lines)


def test_each_answer_line_shows_the_budget_after_that_answer_and_stats_say_more_joules_plainly() -> None:
    lines: list[str] = []
    router = GreenServRouter(
        [FakeBackend("small", reply=lambda m: "fine")], features=make_hashing_extractor(), seed=0, energy_budget="2Wh/h"
    )
    session = ChatSession(router, max_new_tokens=8, say=lines.append)
    answer = session.ask("What is 2 + 2?")
    assert answer is not None and router.budget_ is not None
    left = router.budget_.window_remaining_joules
    assert left is not None and left < 7200.0
    assert any(f"{left:.0f} J left in this window" in line and "rate it" in line for line in lines)
    session.saved_joules_, session.compared_ = -10.0, 1  # a cascade ran both models
    session.stats()
    assert any("spent 10.0 J more than always using the dearest model" in line for line in lines)
    assert any(line.strip().startswith("budget 2 Wh per 1 h") for line in lines)


def test_an_interrupted_demo_exits_130_and_a_demo_refuses_tasks_it_cannot_score(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core import InvalidInputError, cli
    from greenserv_core.evaluation.learning_demo import demo_stream

    def interrupted(messages: Sequence[Message]) -> str:
        raise KeyboardInterrupt

    use_fake_pool(monkeypatch, [FakeBackend("a", reply=interrupted)])
    assert cli.main(["demo", "--queries", "2", "--tasks", "arc_easy", "--plot", ""]) == 130
    assert "[stopped]" in capsys.readouterr().out
    with pytest.raises(InvalidInputError, match="code or LaTeX references, which the demo cannot score"):
        demo_stream(["arc_easy", "codex_humaneval"], 4)


def test_an_interrupted_chat_keeps_its_state_and_exits_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core import cli

    calls: list[str] = []

    def second_interrupts(messages: Sequence[Message]) -> str:
        calls.append("x")
        if len(calls) > 1:
            raise KeyboardInterrupt
        return "fine"

    use_fake_pool(monkeypatch, [FakeBackend("a", reply=second_interrupts)])
    state = tmp_path / "state.json"
    assert cli.main(["chat", "--state", str(state), "--max-new-tokens", "8"]) == 130
    assert state.exists() and "[stopped]" in capsys.readouterr().out
