"""The greenserv command line."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from greenserv_core import cli
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.table import read_table

CALIBRATION_FIELDS = [
    "model",
    "params_billion",
    "task",
    "observed_queries",
    "accuracy",
    "joules_per_token_p25",
    "joules_per_token_median",
    "joules_per_token_p75",
    "max_new_tokens",
    "mean_prompt_words",
]


def write_calibration(path: Path) -> Path:
    fields = CALIBRATION_FIELDS
    rows = [
        ["small", 1, "winogrande", 100, 0.5, 0.05, 0.06, 0.07, 1, 35],
        ["large", 9, "winogrande", 100, 0.9, 0.4, 0.45, 0.5, 1, 35],
    ]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        writer.writerows(rows)
    return path


def test_bench_simulate_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calibration = write_calibration(tmp_path / "cal.csv")
    table_path = tmp_path / "table.csv"
    assert (
        cli.main(
            [
                "bench",
                "simulate",
                "--calibration",
                str(calibration),
                "--out",
                str(table_path),
                "--queries-per-task",
                "40",
            ]
        )
        == 0
    )
    assert "SIMULATED" in capsys.readouterr().out
    assert read_table(table_path).simulated

    from greenserv_core.evaluation import replay as replay_module
    from greenserv_core.evaluation import sweep as sweep_module
    from tests.conftest import make_hashing_extractor

    original = replay_module.replay
    original_sweep = sweep_module.sweep
    monkeypatch.setattr(
        replay_module, "replay", lambda *a, **k: original(*a, **{**k, "make_features": make_hashing_extractor})
    )
    report_path = tmp_path / "report.json"
    assert (
        cli.main(
            [
                "bench",
                "replay",
                "--table",
                str(table_path),
                "--strategies",
                "random,linucb,oracle",
                "--runs",
                "2",
                "--json",
                str(report_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "| linucb |" in out
    report = json.loads(report_path.read_text())
    assert set(report["strategies"]) == {"random", "linucb", "oracle"} and report["simulated"] is True

    common = ["--table", str(table_path), "--param", "linucb.alpha=0.3", "--runs", "1"]
    args = ["bench", "replay", *common, "--remove-model", "large@10", "--json", str(report_path)]
    assert cli.main([*args, "--plot", str(tmp_path / "replay.png")]) == 0
    report = json.loads(report_path.read_text())
    assert report["settings"]["policy_params"] == {"linucb": {"alpha": 0.3}}
    assert report["settings"]["pool_changes"] == ["remove large@10"]
    assert (tmp_path / "replay.png").exists()

    monkeypatch.setattr(
        sweep_module, "sweep", lambda *a, **k: original_sweep(*a, **{**k, "make_features": make_hashing_extractor})
    )
    sweep_args = ["bench", "sweep", *common, "--strategies", "random,linucb", "--tradeoffs", "0,1"]
    assert cli.main([*sweep_args, "--json", str(tmp_path / "sweep.json"), "--plot", str(tmp_path / "sweep.png")]) == 0
    out = capsys.readouterr().out
    assert "| single models |" in out and "| linucb |" in out
    swept = json.loads((tmp_path / "sweep.json").read_text())
    assert len(swept["strategies"]["linucb"]["points"]) == 2 and (tmp_path / "sweep.png").exists()
    assert swept["settings"]["energy_scale"] == "online"
    assert cli.main(["bench", "replay", "--table", str(table_path), "--param", "alpha=1"]) == 2
    assert "STRATEGY.NAME=VALUE" in capsys.readouterr().err


def test_errors_are_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "replay", "--table", str(tmp_path / "missing.parquet")]) == 2
    assert "no outcome table" in capsys.readouterr().err


def test_an_interrupted_collect_says_how_to_go_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.evaluation import collect as collect_module
    from greenserv_core.models import bundled as bundled_module

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(bundled_module, "bundled_pool", lambda **kwargs: [])
    monkeypatch.setattr(collect_module, "collect", interrupted)
    out = tmp_path / "real.parquet"
    assert cli.main(["bench", "collect", "--out", str(out)]) == 130
    assert f"{out}.rows.jsonl" in capsys.readouterr().out


BENCHMARKS = ["overhead", "local-models", "replay-speed", "tool-calling", "replicas", "synthetic-world"]


@pytest.mark.parametrize("name", ["simulate", "collect", "verify", "replay", "sweep", *BENCHMARKS])
def test_every_bench_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", name, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: greenserv bench {name}" in capsys.readouterr().out


def test_strategy_names_come_from_the_registries(capsys: pytest.CaptureFixture[str]) -> None:
    from greenserv_core.bandits.registry import POLICIES
    from greenserv_core.evaluation.diagnostics import DIAGNOSTICS

    with pytest.raises(SystemExit):
        cli.main(["bench", "replay", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in [*POLICIES, *DIAGNOSTICS, "oracle"])
    assert cli.main(["bench", "overhead", "--strategies", "linucb,nonesuch"]) == 2
    err = capsys.readouterr().err
    assert "nonesuch" in err and "linucb" in err


def test_bench_overhead_prints_a_table(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.evaluation import overhead
    from tests.conftest import make_hashing_extractor

    original = overhead.run_overhead
    monkeypatch.setattr(
        overhead, "run_overhead", lambda **k: original(**{**k, "make_features": make_hashing_extractor})
    )
    assert cli.main(["bench", "overhead", "--queries", "12", "--models", "3", "--strategies", "linucb,random"]) == 0
    out = capsys.readouterr().out
    assert "12 distinct real prompts, 3 models" in out
    # by default both embedders, MiniLM first: the baseline of the ratios
    assert "| embedder | strategy | measured | p50 ms | p99 ms | mean ms | p50 / embedding p50 | p50 / MiniLM" in out
    assert out.count("| minilm | linucb |") == 3 and out.count("| static | random | embedding only |") == 1
    assert out.index("| minilm |") < out.index("| static |")


def test_bench_overhead_routes_over_the_bundled_models_reading_their_tokenizers(  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from greenserv_core.evaluation import overhead
    from greenserv_core.models import bundled_pool
    from tests.conftest import make_hashing_extractor

    original = overhead.run_overhead
    monkeypatch.setattr(
        overhead, "run_overhead", lambda **k: original(**{**k, "make_features": make_hashing_extractor})
    )
    counted: list[str] = []
    pools: list[list[Any]] = []

    def counting_pool() -> list[Any]:
        pool: list[Any] = bundled_pool()
        pools.append(pool)
        for backend in pool:  # the bound is asked first: short prompts need no count
            bound = backend.token_bound
            monkeypatch.setattr(backend, "token_bound", lambda m, b=bound, n=backend.name: (counted.append(n), b(m))[1])
        return pool

    monkeypatch.setattr("greenserv_core.models.bundled_pool", counting_pool)
    args = ["bench", "overhead", "--queries", "4", "--strategies", "random", "--embedders", "static"]
    assert cli.main([*args, "--pool", "bundled"]) == 0
    assert "4 distinct real prompts, the bundled models" in capsys.readouterr().out
    assert sorted(set(counted)) == ["gemma-3-270m", "smollm2-135m-instruct"] and len(counted) >= 8
    assert pools and not any(backend.is_loaded for pool in pools for backend in pool)  # no weights loaded
    assert cli.main([*args, "--pool", "bundled", "--models", "3"]) == 2
    assert "--models sizes the fake pool" in capsys.readouterr().err


def test_bench_overhead_saves_its_prompts_and_times_a_prompts_file(  # type: ignore[no-untyped-def]
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from greenserv_core.evaluation import overhead
    from greenserv_core.evaluation.prompt_files import read_prompts
    from tests.conftest import make_hashing_extractor

    saved = tmp_path / "prompts.jsonl"
    assert cli.main(["bench", "overhead", "--queries", "7", "--save-prompts", str(saved)]) == 0
    prompts = read_prompts(saved)
    assert len(prompts) == len(set(prompts)) == 7 and prompts == overhead.overhead_prompts(7)
    capsys.readouterr()
    original = overhead.run_overhead
    monkeypatch.setattr(
        overhead, "run_overhead", lambda **k: original(**{**k, "make_features": make_hashing_extractor})
    )
    mine = tmp_path / "mine.jsonl"
    mine.write_text('"What is 2 + 2?"\n\n{"prompt": "Name a prime.", "id": 3}\n"Who wrote Hamlet?"\n')
    args = ["bench", "overhead", "--models", "2", "--strategies", "random", "--embedders", "static"]
    assert cli.main([*args, "--prompts", str(mine)]) == 0
    assert "3 distinct real prompts, 2 models" in capsys.readouterr().out
    mine.write_text('"fine"\n{"text": "no prompt key"}\n')
    assert cli.main([*args, "--prompts", str(mine)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_bench_local_models_refuses_an_unknown_model_before_timing(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "local-models", "--models", "nonesuch"]) == 2
    assert "nonesuch" in capsys.readouterr().err


def test_bench_replay_speed_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.evaluation import replay_speed
    from greenserv_core.features import HashingEmbedder
    from tests.conftest import make_hashing_extractor

    calibration = write_calibration(tmp_path / "cal.csv")
    text = calibration.read_text().replace("winogrande", "mmlu")
    calibration.write_text(text)
    original = replay_speed.run_replay_speed
    monkeypatch.setattr(
        replay_speed,
        "run_replay_speed",
        lambda *a, **k: original(
            *a,
            **{
                **k,
                "queries_per_task": 20,
                "make_features": lambda n: make_hashing_extractor,
                "make_embedder": lambda **_: HashingEmbedder(64),
            },
        ),
    )
    assert cli.main(["bench", "replay-speed", "--calibration", str(calibration), "--queries", "50"]) == 0
    out = capsys.readouterr().out
    assert "50 distinct real prompts × 2 models" in out
    assert "| step | seconds | ratio to the random-routing run, again |" in out
    assert "| replay run: random, in turn (the process's first run) |" in out  # no baseline: it pays one-off costs
    assert "| replay run: random, again | " in out and "| 1.00 |" in out and "| replay run: epsilon, again |" in out
    assert "(static keeps no store: embedded again)" in out  # the hashing embedder has no preload either


def test_bench_tool_calling_prints_a_table(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.backends.fake import FakeBackend
    from greenserv_core.evaluation import tool_calling

    calls = '<tool_call>{"name": "calculator", "arguments": {"expression": "1 + 1"}}</tool_call>'
    fakes = [FakeBackend("prose"), FakeBackend("caller", reply=lambda messages: calls)]
    monkeypatch.setattr(tool_calling, "_bundled_tool_backends", lambda: fakes)
    assert cli.main(["bench", "tool-calling", "--max-new-tokens", "60"]) == 0
    out = capsys.readouterr().out
    assert "| model | tools offered through | right tool | other tool | invalid call | no call |" in out
    assert "| prose | Hermes system prompt | 0/10 | 0/10 | 0/10 | 10/10 |" in out
    assert "| caller | Hermes system prompt | 5/10 | 5/10 | 0/10 | 0/10 |" in out


def test_the_long_benchmarks_show_their_progress(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """bench tool-calling ran 9 minutes, local-models 4.5, with nothing on the screen."""
    import sys

    from greenserv_core.backends.fake import FakeBackend
    from greenserv_core.evaluation import tool_calling

    monkeypatch.setattr(tool_calling, "_bundled_tool_backends", lambda: [FakeBackend("prose")])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal (a file or a pipe gets no bar)
    assert cli.main(["bench", "tool-calling"]) == 0
    assert "tool calling" in capsys.readouterr().err  # was nothing until the table
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert cli.main(["bench", "tool-calling"]) == 0
    assert "tool calling" not in capsys.readouterr().err  # its redrawn frames garbled logs


def test_bench_replicas_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.evaluation import replicas

    seen: list[tuple[str, int]] = []

    def fake_setup(table: str, *, setup: str, replicas: int, seed: int, **options: object) -> dict[str, object]:
        seen.append((setup, replicas))
        figures: dict[str, object] = {"setup": setup, "replicas": replicas, "queries": 100}
        figures.update(decisions_per_s=100.0 * replicas, regret=10.0 + replicas, mean_reward=0.5, accuracy=0.6)
        figures["energy_joules"] = 1.0
        if setup == "shared":
            figures.update(staleness_s_mean=0.1, unseen_remote_updates_mean=2.0, syncs=3, sync_s_mean=0.01)
        return figures

    monkeypatch.setattr(replicas, "run_setup", fake_setup)
    args = [
        "bench",
        "replicas",
        "--table",
        "t.parquet",
        "--store",
        f"file:{tmp_path / 'x'}",
        "--replicas",
        "2",
        "--runs",
        "2",
    ]
    assert cli.main(args) == 0
    assert seen == [("single", 1), ("shared", 2), ("independent", 2)] * 2
    out = capsys.readouterr().out
    assert "2 runs, sync every 0.2 s through file" in out
    assert "| set-up | replicas | decisions/s | throughput ÷ single |" in out
    assert "| shared | 2 | 200 | 2.00 | 12.0 | 1.09 | 0.5000 | 0.100 | 2.0 | 0.010 |" in out


def test_bench_local_models_times_each_path_first_on_every_other_prompt(extractor, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from greenserv_core.backends.base import GenerationSettings
    from greenserv_core.backends.fake import FakeBackend
    from greenserv_core.evaluation import local_models
    from greenserv_core.router import GreenServRouter

    clock = [0.0]  # the benchmark's clock: a generation takes 2 s (its reported latency 1.5 s), routing 3 ms
    order: list[str] = []
    inside = [False]

    class Timed(FakeBackend):
        load_seconds = 0.0
        name = "tiny"

        def load(self) -> None:
            pass

        def generate(self, messages, settings):  # type: ignore[no-untyped-def]
            if not inside[0]:
                order.append("direct")
            clock[0] += 2.0
            return dataclasses.replace(super().generate(messages, settings), latency_s=1.5)

    routed_generate = GreenServRouter.generate

    def routed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        order.append("routed")
        inside[0] = True
        clock[0] += 0.003
        try:
            return routed_generate(self, *args, **kwargs)
        finally:
            inside[0] = False

    monkeypatch.setattr(GreenServRouter, "generate", routed)
    monkeypatch.setattr(local_models, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    backend = Timed("tiny")
    out = local_models._measure(backend, ["a b", "c d", "e f"], GenerationSettings(max_new_tokens=4), extractor, 0)  # type: ignore[arg-type]
    assert order[1:] == ["direct", "routed", "routed", "direct", "direct", "routed"]  # after the warm-up call
    assert out["direct"] == pytest.approx(2.0) and out["routed"] == pytest.approx(2.003)
    assert out["paired"] == pytest.approx(2.003 / 2.0)
    assert out["router_ms"] == pytest.approx(3.0)  # outside the generation: routed 0.503 s, direct 0.5 s
    assert out["sources"] == "fake"


def test_bench_local_models_refuses_no_prompts() -> None:
    from greenserv_core.evaluation.local_models import run_local_models

    with pytest.raises(InvalidInputError, match="queries must be a positive integer"):
        run_local_models(queries=0)


def test_local_models_take_their_prompts_from_every_task_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from greenserv_core.evaluation import local_models

    def load(task: str, *, limit: int, seed: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(prompt=f"{task}-{i}") for i in range(limit)]

    monkeypatch.setattr(local_models, "load_task", load)
    twelve = local_models._prompts(12, 0)
    assert [sum(p.startswith(t) for p in twelve) for t in ("triviaqa", "gsm8k", "boolq", "mmlu")] == [3, 3, 3, 3]
    assert local_models._prompts(5, 0) == ["triviaqa-0", "gsm8k-0", "boolq-0", "mmlu-0", "triviaqa-1"]  # was no MMLU


def test_local_models_ratio_is_the_median_of_paired_ratios_when_known() -> None:
    from greenserv_core.evaluation.local_models import LocalModelRow

    timings = ("tiny", "float32", "float32", None, 0.2, 25.0, 30.0, "cpu-time-estimate", 2.0, 2.2, 1.0)
    assert LocalModelRow(*timings).routed_vs_direct == pytest.approx(1.1)  # the two medians
    assert LocalModelRow(*timings, paired_ratio=1.02).routed_vs_direct == 1.02


def test_bench_local_models_prints_a_table(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.evaluation import local_models
    from greenserv_core.evaluation.local_models import LocalModelRow, LocalModelsReport

    asked: dict[str, object] = {}

    def fake_run(**options: object) -> LocalModelsReport:
        asked.update(options)
        row = LocalModelRow("tiny", "float32", "float32", None, 0.2, 25.0, 30.0, "cpu-time-estimate", 1.0, 1.01, 1.0)
        return LocalModelsReport([row])

    monkeypatch.setattr(local_models, "run_local_models", fake_run)
    assert (
        cli.main(
            [
                *("bench", "local-models", "--queries", "2", "--dtypes", "float32,bfloat16", "--skip-first-load"),
                *("--models", "smollm2-135m-instruct", "--prompts", "p.jsonl"),
            ]
        )
        == 0
    )
    assert asked == {
        "queries": 2,
        "max_new_tokens": 32,
        "seed": 0,
        "skip_first_load": True,
        "dtypes": ["float32", "bfloat16"],
        "models": ["smollm2-135m-instruct"],
        "prompts_file": "p.jsonl",
        "progress": False,  # (a terminal only: the test's output is captured)
    }
    out = capsys.readouterr().out
    assert (
        "| tiny | float32 (float32) | skipped | 0.20 | 25.0 | 30.0 (cpu-time-estimate) "
        "| 1.00 | 1.01 | 1.010 | – | 1.00 |" in out
    )


def test_bench_synthetic_world_prints_a_table(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.evaluation import synthetic_world
    from tests.conftest import make_hashing_extractor

    original = synthetic_world.run_synthetic_world
    monkeypatch.setattr(
        synthetic_world, "run_synthetic_world", lambda **k: original(**{**k, "make_features": make_hashing_extractor})
    )
    args = ["--strategies", "linucb,random", "--seeds", "0,1", "--steps", "40", "--last", "10"]
    assert cli.main(["bench", "synthetic-world", *args, "--sparse-feedback", "0.5", "--queries-per-task", "5"]) == 0
    out = capsys.readouterr().out
    assert "| policy | full feedback, per seed | 50% feedback, per seed | 50% feedback, mean |" in out
    assert out.count("| linucb | ") == 1 and out.count("| random | ") == 1


def test_bench_local_models_times_each_model_on_features_of_its_own(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from greenserv_core.evaluation import local_models

    class Loaded:
        def __init__(self, spec: object, **_: object) -> None:
            self.name = getattr(spec, "name", "m")

        def load(self) -> object:
            return SimpleNamespace(parameters=lambda: iter([SimpleNamespace(dtype="torch.float32")]))

        def unload(self) -> None:
            pass

    seen: list[object] = []

    def measure(backend: object, prompts: object, settings: object, features: object, seed: int) -> dict[str, object]:
        seen.append(features)
        return dict.fromkeys(["cached", "speed", "joules", "direct", "routed", "paired", "router_ms"], 1.0) | {
            "sources": "x"
        }

    monkeypatch.setattr(local_models, "TransformersBackend", Loaded)
    monkeypatch.setattr(local_models, "_measure", measure)
    monkeypatch.setattr(local_models, "bundled_spec", lambda name: SimpleNamespace(name=name))
    monkeypatch.setattr(local_models, "_cold_features", lambda: object())
    local_models.run_local_models(models=["a", "b"], dtypes=["float32", "bfloat16"], queries=2, skip_first_load=True)
    assert len(seen) == 4 and len({id(f) for f in seen}) == 4  # was one extractor: later models on warm caches
    capsys.readouterr()
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal (a file or a pipe gets no bar)
    local_models.run_local_models(models=["a"], queries=2, skip_first_load=True, progress=True)
    assert "local models" in capsys.readouterr().err  # was nothing for minutes


def test_an_interactive_chat_ends_once_its_state_saved_once_and_its_budget_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from greenserv_core import FakeBackend, GreenServRouter
    from tests.conftest import use_fake_pool

    backends = [FakeBackend("small"), FakeBackend("large", joules_per_token=9.0)]
    use_fake_pool(monkeypatch, backends)
    saves: list[Path] = []
    save = GreenServRouter.save
    monkeypatch.setattr(GreenServRouter, "save", lambda self, path: (saves.append(path), save(self, path))[1])
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 2 + 2?\n/good\n"))
    state = tmp_path / "state.json"
    assert cli.main(["chat", "--interactive", "--budget", "50J/query", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert saves == [state] and state.exists()
    assert out.count("budget 50 J per query: λ") == 2  # the answer's line and the session's summary
    assert out.count(f"saved learned state to {state}") == 1


def test_cascade_replay_quiet_shows_no_warm_up_bar_either(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.evaluation import replay
    from greenserv_core.evaluation.simulate import read_calibration, simulate_table
    from greenserv_core.evaluation.table import write_table
    from greenserv_core.features.extractor import FeatureExtractor
    from tests.conftest import make_hashing_extractor

    monkeypatch.setattr(replay, "default_features", lambda *args, **kwargs: make_hashing_extractor)
    asked: list[bool] = []
    warm = FeatureExtractor.warm
    monkeypatch.setattr(
        FeatureExtractor,
        "warm",
        lambda self, prompts, *, store=None, progress=False: asked.append(progress) or warm(self, prompts, store=store),
    )
    table = simulate_table(
        read_calibration(write_calibration(tmp_path / "cal.csv")), queries_per_task=20, confidence_auroc=0.8
    )
    path = write_table(table, tmp_path / "t.csv")
    argv = ["bench", "cascade-replay", "--table", str(path), "--runs", "1", "--cascade", "small->large", "--quiet"]
    assert cli.main([*argv, "--no-embedding-cache"]) == 0
    assert asked == [False]  # the embedder's own progress bar stays off too


# ---- a review of 2026-12-07 (night): outputs refused up front, a reader that leaves, piped lines --------


def test_a_json_report_nowhere_writable_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was refused only after the whole replay, its report lost."""
    calibration = write_calibration(tmp_path / "cal.csv")
    table = tmp_path / "t.csv"
    simulate = ["bench", "simulate", "--calibration", str(calibration), "--out", str(table), "--queries-per-task", "5"]
    assert cli.main(simulate) == 0
    capsys.readouterr()
    (tmp_path / "ro").mkdir(mode=0o500)
    unwritable = "/proc/report.json" if Path("/proc").is_dir() else str(tmp_path / "ro" / "report.json")
    code = cli.main(["bench", "replay", "--table", str(table), "--strategies", "random", "--json", unwritable])
    out, err = capsys.readouterr()
    assert code == 2 and "cannot write" in err and "random" not in out  # no replay ran
    from greenserv_core.cli.common import check_output_file

    if Path("/dev/fd/1").exists():  # a stream's path, written as it is: not refused (a review of the check)
        check_output_file("--json", "/dev/fd/1")


def test_a_reader_that_leaves_ends_the_command_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    """`greenserv ... | head` gave a BrokenPipeError traceback and exit 1."""
    import sys

    def leaves(args: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    class Left:  # standard output whose reader has left
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            raise OSError("no file")

    monkeypatch.setattr(cli, "build_parser", lambda: _ParserRunning(leaves))
    with pytest.raises(BrokenPipeError):  # a pipe of its own (a worker's), stdout still read: not hidden
        cli.main(["anything"])
    monkeypatch.setattr(sys, "stdout", Left())
    assert cli.main(["anything"]) == 141


class _ParserRunning:
    def __init__(self, run: Any) -> None:
        self.run = run

    def parse_args(self, argv: Any) -> Any:
        return type("Args", (), {"run": staticmethod(self.run), "verbose": False})()


def test_a_sidecar_that_cannot_be_read_is_bad_input(tmp_path: Path) -> None:
    from greenserv_core.evaluation.table import OutcomeTable, write_table
    from tests.test_evaluation import _two_rows

    path = write_table(OutcomeTable(_two_rows()), tmp_path / "t.csv")
    Path(f"{path}.meta.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(InvalidInputError, match="not readable metadata"):  # was a UnicodeDecodeError
        read_table(path)


def test_piped_lines_get_no_prompts_and_a_byte_order_mark_is_no_part_of_a_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import sys

    from greenserv_core import FakeBackend, GreenServRouter
    from greenserv_core.cli.session import ChatSession, run_repl
    from tests.conftest import make_hashing_extractor

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\ufeff/stats\n/quit\n".encode()), encoding="utf-8"))
    prompts: list[str] = []

    def reading(prompt: str = "") -> str:
        prompts.append(prompt)
        return sys.stdin.readline().rstrip("\n") or (_ for _ in ()).throw(EOFError)

    monkeypatch.setattr("builtins.input", reading)
    lines: list[str] = []
    router = GreenServRouter([FakeBackend("small"), FakeBackend("large")], features=make_hashing_extractor(), seed=0)
    session = ChatSession(router, max_new_tokens=8, say=lines.append)
    run_repl(session)
    assert set(prompts) == {""}  # was "you> " between every answer
    assert router.learner_.decisions_made_ == 0  # "\ufeff/stats" was sent to a model as a message


def test_bench_replicas_starts_its_processes_with_ctrl_c_ignored() -> None:
    """A Ctrl-C printed each worker's KeyboardInterrupt traceback beside the one clean line:
    the processes start with the signal ignored (they inherit it), and the parent gets it."""
    import signal

    from greenserv_core.evaluation.replicas import _ctrl_c_to_the_parent_alone

    before = signal.getsignal(signal.SIGINT)
    with _ctrl_c_to_the_parent_alone():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is before
