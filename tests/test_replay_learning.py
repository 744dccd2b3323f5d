"""The replay's learning curves, per-task cut, drift shifts, warm start, newcomers and peers."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenserv_core import GreenServRouter, cli
from greenserv_core.bandits import Policy
from greenserv_core.bandits.registry import make_policy
from greenserv_core.budget import EnergyBudget
from greenserv_core.errors import InvalidInputError
from greenserv_core.evaluation.extras import MissingExtraError
from greenserv_core.evaluation.learning_curves import newcomer_time, readapt_time, share_around, trailing_share
from greenserv_core.evaluation.replay import PoolChange, Shift, replay
from greenserv_core.evaluation.shifts import shift_outcomes
from greenserv_core.evaluation.table import OutcomeTable, write_table
from greenserv_core.evaluation.warm_start import parse_overstatement
from tests.conftest import make_hashing_extractor

MODELS = ("good", "bad")


def make_table(accuracy: np.ndarray, energy: np.ndarray, tasks: Sequence[str]) -> OutcomeTable:
    """A table from (query × model) arrays; models are ``MODELS``."""
    columns: dict[str, list[Any]] = {name: [] for name in ("query_id", "task", "prompt", "reference", "model")}
    columns.update({name: [] for name in ("output", "accuracy", "energy_joules", "energy_source", "latency_s")})
    columns.update({"input_tokens": [], "output_tokens": []})
    for q, task in enumerate(tasks):
        for j, model in enumerate(MODELS):
            for name, value in (
                ("query_id", f"q{q}"),
                ("task", task),
                ("prompt", f"{task} question number {q}: what is {q} plus {q % 7}?"),
                ("reference", ""),
                ("model", model),
                ("output", ""),
                ("accuracy", float(accuracy[q, j])),
                ("energy_joules", float(energy[q, j])),
                ("energy_source", "simulated"),
                ("latency_s", 0.1 * (j + 1)),
                ("input_tokens", 10),
                ("output_tokens", 5),
            ):
                columns[name].append(value)
    return OutcomeTable(columns, {"simulated": True})


def two_model_table(per_task: int, good: float = 0.9, bad: float = 0.5, seed: int = 0) -> OutcomeTable:
    """Two tasks; "good" answers right with chance ``good``, "bad" with ``bad``; bad costs less."""
    rng = np.random.default_rng(seed)
    tasks = ["alpha"] * per_task + ["beta"] * per_task
    accuracy = (rng.random((len(tasks), 2)) < [good, bad]).astype(float)
    energy = np.column_stack([rng.uniform(2.0, 3.0, len(tasks)), rng.uniform(1.0, 1.5, len(tasks))])
    return make_table(accuracy, energy, tasks)


def quick(table: OutcomeTable, strategies: Sequence[str], **options: Any) -> dict[str, Any]:
    return replay(table, strategies, make_features=make_hashing_extractor, **options)


def test_per_task_cut_streams_the_first_queries_and_its_baselines() -> None:
    tasks = ["alpha"] * 30 + ["beta"] * 30
    accuracy = np.zeros((60, 2))
    accuracy[:10, 1] = 1.0  # alpha: "bad" wins the first 10, "good" the rest
    accuracy[10:30, 0] = 1.0
    accuracy[30:, 0] = 1.0
    table = make_table(accuracy, np.ones((60, 2)), tasks)
    whole = quick(table, ["oracle"], runs=1, tradeoff=0.0)
    cut = quick(table, ["oracle"], runs=1, tradeoff=0.0, per_task=10)
    assert whole["settings"]["queries"] == 60 and cut["settings"]["queries"] == 20
    assert cut["settings"]["per_task"] == 10 and cut["settings"]["horizons"] == [20]
    per_task = cut["baselines"]["per_task"]
    assert per_task["alpha"]["queries"] == 10 and per_task["alpha"]["best_model"] == "bad"
    assert whole["baselines"]["per_task"]["alpha"]["best_model"] == "good"
    assert cut["baselines"]["best_fixed_model_per_task"]["reward"] == 1.0
    with pytest.raises(InvalidInputError, match="per_task"):
        quick(table, ["oracle"], per_task=0)


def test_horizon_metrics_match_a_hand_computation() -> None:
    table = two_model_table(60, good=0.8, bad=0.4)
    tradeoff, horizons, runs = 0.4, [10, 50], 2
    report = quick(table, ["oracle", "static:bad"], runs=runs, tradeoff=tradeoff, horizons=[*horizons, 500])
    data = table.matrices()
    reward = (1 - tradeoff) * data.accuracy - tradeoff * data.energy_norm()
    tasks = np.asarray(data.tasks)
    best = {t: int(reward[tasks == t].mean(axis=0).argmax()) for t in set(data.tasks)}
    fixed = reward[np.arange(len(tasks)), [best[t] for t in data.tasks]]
    curve = report["learning_curve"]
    assert curve["horizons"] == [10, 50, 120]
    for i, h in enumerate(curve["horizons"]):
        expected: dict[str, list[float]] = {"oracle_gap": [], "bad_gap": [], "bad_acc": [], "bad_energy": []}
        for run in range(runs):
            first = np.random.default_rng(run).permutation(len(tasks))[:h]
            low, high, top = reward[first].mean(), fixed[first].mean(), reward[first].max(axis=1).mean()
            bad = reward[first, 1].mean()
            expected["oracle_gap"].append((top - low) / (high - low))
            expected["bad_gap"].append((bad - low) / (high - low))
            expected["bad_acc"].append(data.accuracy[first, 1].mean() / data.accuracy[first].mean() - 1)
            expected["bad_energy"].append(data.energy[first, 1].mean() / data.energy[first].mean() - 1)
        oracle, static = curve["strategies"]["oracle"][i], curve["strategies"]["static:bad"][i]
        assert oracle["queries"] == static["queries"] == h
        assert oracle["gap_closed_to_oracle"]["mean"] == pytest.approx(1.0)
        assert oracle["gap_closed_to_best_fixed_per_task"]["mean"] == pytest.approx(np.mean(expected["oracle_gap"]))
        assert static["gap_closed_to_best_fixed_per_task"]["mean"] == pytest.approx(np.mean(expected["bad_gap"]))
        assert static["accuracy_vs_random"]["mean"] == pytest.approx(np.mean(expected["bad_acc"]))
        assert static["energy_vs_random"]["mean"] == pytest.approx(np.mean(expected["bad_energy"]))
    # at the end, the oracle's reward is the table's oracle baseline (shared with the existing section)
    end = curve["strategies"]["oracle"][-1]["reward"]["mean"]
    assert end == pytest.approx(report["baselines"]["oracle"]["reward"])
    assert set(report["relative"]) == {"oracle", "static:bad"}
    with pytest.raises(InvalidInputError, match="horizons"):
        quick(table, ["oracle"], horizons=[0])


def test_shift_outcomes_flip_only_after_the_step_and_keep_the_mean_drop() -> None:
    rng = np.random.default_rng(1)
    accuracy = (rng.random((4000, 2)) < 0.8).astype(float)
    energy, latency = np.ones((4000, 2)), np.ones((4000, 2))
    means = np.full((4000, 2), 0.8)
    shifts = [Shift.parse("good@1000:accuracy-0.3"), Shift.parse("good@2000:energy*2")]
    binary = np.array([True, True])
    acc, joules, _ = shift_outcomes(accuracy, energy, latency, means, binary, shifts, {"good": 0, "bad": 1}, 7)
    assert np.array_equal(acc[:1000], accuracy[:1000]) and np.array_equal(acc[:, 1], accuracy[:, 1])
    assert np.all(acc[1000:, 0] <= accuracy[1000:, 0])  # a drop flips right answers only
    assert acc[1000:, 0].mean() == pytest.approx(0.5, abs=0.03)
    assert np.all(joules[2000:, 0] == 2.0) and np.all(joules[:2000, 0] == 1.0)
    again, _, _ = shift_outcomes(accuracy, energy, latency, means, binary, shifts, {"good": 0, "bad": 1}, 7)
    assert np.array_equal(acc, again)  # seeded by the run's seed only
    fractional = np.full((10, 2), 0.5)
    rise_bad = [Shift("bad", 5, "accuracy", 0.7)]
    columns = {"good": 0, "bad": 1}
    rise, _, _ = shift_outcomes(fractional, energy[:10], latency[:10], means[:10], ~binary, rise_bad, columns, 0)
    assert rise[:5, 1].tolist() == [0.5] * 5 and rise[5:, 1].tolist() == [1.0] * 5
    for text in ("good@10", "good@10:accuracy*2", "good@10:energy-1", "good@x:energy*2", "good@1:accuracy-1.5"):
        with pytest.raises(InvalidInputError):
            Shift.parse(text)
    assert str(Shift.parse("a@b@3:latency*0.5")) == "a@b@3:latency*0.5"
    for text in ("m@10:energy*0.00001", "m@10:energy*1234567", "m@1:accuracy-0.1234567", "m@1:energy*2"):
        shift = Shift.parse(text)  # the label of a report: it read 1e-05 (refused), 1.23457e+06, 0.123457
        assert Shift.parse(str(shift)) == shift
    assert str(Shift.parse("m@1:energy*2")) == "m@1:energy*2"


def test_two_shifts_of_one_models_accuracy_add_up() -> None:
    rng = np.random.default_rng(2)
    accuracy = (rng.random((20_000, 1)) < 0.8).astype(float)
    ones, means, binary = np.ones((20_000, 1)), np.full((20_000, 1), 0.8), np.array([True])
    twice = [Shift.parse("m@0:accuracy-0.3"), Shift.parse("m@10000:accuracy-0.3")]
    shifted, _, _ = shift_outcomes(accuracy, ones, ones, means, binary, twice, {"m": 0}, 3)
    assert shifted[:10_000, 0].mean() == pytest.approx(0.5, abs=0.02)
    assert shifted[10_000:, 0].mean() == pytest.approx(0.2, abs=0.02)  # 0.8 − 0.3 − 0.3, not 0.5 − 0.3·0.5/0.8


def test_a_shift_lowers_the_models_accuracy_and_policies_re_adapt() -> None:
    table = two_model_table(300, good=0.9, bad=0.6)
    shift = Shift.parse("good@60:accuracy-0.8")
    report = quick(
        table, ["static:good", "task-thompson", "oracle"], runs=1, tradeoff=0.0, shifts=[shift], horizons=[60]
    )
    assert report["settings"]["shifts"] == ["good@60:accuracy-0.8"]
    static = report["learning_curve"]["strategies"]["static:good"]
    early, end = static[0]["accuracy"]["mean"], report["strategies"]["static:good"]["accuracy"]["mean"]
    expected_end = (60 * 0.9 + 540 * 0.1) / 600
    assert early == pytest.approx(0.9, abs=0.1) and end == pytest.approx(expected_end, abs=0.08)
    [found] = report["shifts"]
    assert found["shift"] == str(shift) and found["worsens"] and found["new_optimum_share"]["mean"] == 0.0
    strategies = found["strategies"]
    assert strategies["static:good"]["readapt_steps"]["mean"] is None  # it never turns away
    assert strategies["static:good"]["share_before"]["mean"] == strategies["static:good"]["share_after"]["mean"] == 1
    learned = strategies["task-thompson"]["readapt_steps"]
    assert learned["reached"] == 1 and 100 < learned["runs"][0] < 540
    with pytest.raises(InvalidInputError, match="does not have"):
        quick(table, ["oracle"], shifts=[Shift.parse("huge@3:energy*2")])


def test_a_shifts_and_a_newcomers_targets_end_at_the_next_shift_or_pool_change() -> None:
    """The new optimum after a shift or a join is measured up to the next shift or pool change,
    not over the later stretches to the end of the stream (200 queries here)."""
    table = two_model_table(100, good=0.9, bad=0.5)
    options: dict[str, Any] = {"runs": 1, "tradeoff": 0.0, "horizons": [50]}
    twice = [Shift.parse("good@60:accuracy-0.8"), Shift.parse("good@100:accuracy+0.8")]
    first, second = quick(table, ["static:good"], shifts=twice, **options)["shifts"]
    assert first["new_optimum_share"]["mean"] == 0.0  # bad is every task's best over [60, 100); was 1.0
    assert first["strategies"]["static:good"]["readapt_steps"]["mean"] is None  # it never turns away; was 1
    assert second["new_optimum_share"]["mean"] == 1.0
    joins = [PoolChange("add", "bad", 100)]
    [alone] = quick(table, ["static:good"], shifts=twice[:1], changes=joins, **options)["shifts"]
    assert alone["new_optimum_share"]["mean"] == 1.0  # good is alone in the pool until bad joins; was 0.0
    later = [Shift.parse("good@80:accuracy-0.8")]
    [newcomer] = quick(table, ["static:bad"], shifts=later, changes=[PoolChange("add", "good", 40)], **options)[
        "newcomers"
    ]
    assert newcomer["new_optimum_share"]["mean"] == 1.0  # good is best until its shift at 80; was 0.0
    picked = np.array([0] * 100 + [1] * 50 + [0] * 50, dtype=bool)
    assert share_around(picked, 100) == (0.0, 0.5)
    assert share_around(picked, 100, stop=150) == (0.0, 1.0)  # up to the next shift or pool change


def test_the_time_to_re_adapt_is_searched_only_up_to_the_next_shift_or_pool_change() -> None:
    """'good' worsens at 100 and leaves the pool at 150 (500 queries): random keeps it at about half
    until 150, so it never re-adapts to the shift; the removal brings its share down later."""
    table = two_model_table(250, good=0.9, bad=0.5)
    shift, leaves = Shift.parse("good@100:accuracy-0.8"), PoolChange("remove", "good", 150)
    [found] = quick(table, ["random"], runs=1, tradeoff=0.0, shifts=[shift], changes=[leaves], horizons=[100])["shifts"]
    assert found["new_optimum_share"]["mean"] == 0.0
    assert found["strategies"]["random"]["readapt_steps"]["runs"] == [None]  # was about 225: after the removal
    picked = np.array([1, 0] * 75 + [0] * 350, dtype=bool)
    assert readapt_time(picked, 100, 0.0, worsens=True) == 229  # to the end of the stream
    assert readapt_time(picked, 100, 0.0, worsens=True, stop=150) is None
    assert readapt_time(picked, 100, 0.5, worsens=True, stop=150) == 1


def test_a_newcomers_times_are_searched_only_up_to_the_next_shift_or_pool_change() -> None:
    """'good' joins at 100 and 'bad' leaves at 150 (500 queries): random picks good about half the
    time until 150, too few for half of any share over the last 200; only the removal brings it up."""
    table = two_model_table(250, good=0.9, bad=0.5)
    joins, leaves = PoolChange("add", "good", 100), PoolChange("remove", "bad", 150)
    [found] = quick(table, ["random"], runs=1, tradeoff=0.0, changes=[joins, leaves], horizons=[100])["newcomers"]
    assert found["new_optimum_share"]["mean"] == 1.0 and found["final_window"] == 10  # was 80: to the end
    chance = found["strategies"]["random"]
    assert chance["steps_to_half_optimum"]["runs"] == [None]  # was 123: after the removal
    assert chance["steps_to_half"]["runs"] == [None] and chance["final_share"]["mean"] < 1.0  # was 123 and 1.0
    picked = np.array([0] * 100 + [1, 0] * 25 + [1] * 350, dtype=bool)
    assert newcomer_time(picked, 100, optimum=1.0) == {
        "steps_to_half": 125,
        "final_share": 1.0,
        "final_window": 80,
        "steps_to_half_optimum": 125,
    }  # to the end of the stream
    assert newcomer_time(picked, 100, optimum=1.0, stop=150) == {
        "steps_to_half": None,
        "final_share": 0.5,
        "final_window": 10,
        "steps_to_half_optimum": None,
    }
    assert newcomer_time(picked, 100, optimum=0.2, stop=150)["steps_to_half_optimum"] == 25


def test_trailing_shares_re_adaptation_and_newcomer_times() -> None:
    picked = np.array([1] * 300 + [0] * 300, dtype=bool)
    share = trailing_share(picked)
    assert share[0] == 1.0 and share[399] == pytest.approx(0.5) and share[499] == 0.0
    assert readapt_time(picked, 300, 0.0, worsens=True) == 190  # the window is at 5% after 190 decisions
    assert readapt_time(~picked, 300, 1.0, worsens=False) == 190  # a rise: up to 95%
    assert readapt_time(picked, 300, 1.0, worsens=False) == 1  # already there
    assert readapt_time(np.zeros(600, dtype=bool), 300, 1.0, worsens=False) is None
    joined = np.array([0] * 100 + [0, 1] * 250, dtype=bool)  # joins at 100, then half of the queries
    found = newcomer_time(joined, 100)
    assert found["final_share"] == 0.5 and found["final_window"] == 100
    assert found["steps_to_half"] == 100  # the trailing 200 reach 25% after 100 decisions
    assert newcomer_time(np.zeros(50, dtype=bool), 10)["steps_to_half"] is None
    barely = np.array([0] * 100 + ([1] + [0] * 49) * 10, dtype=bool)  # one query in 50
    found = newcomer_time(barely, 100, optimum=0.5)  # though it is the best model for half the queries
    assert found["steps_to_half"] == 51  # half of its own 2% final share, within 51 queries: "met"
    assert found["steps_to_half_optimum"] is None  # never half of the optimum's share
    assert newcomer_time(joined, 100, optimum=0.5)["steps_to_half_optimum"] == 100


def test_warm_start_teaches_every_router_before_its_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    table = two_model_table(40, good=1.0, bad=0.0)
    taught: list[tuple[str, float | None]] = []
    original = GreenServRouter.learn

    def spy(self: GreenServRouter, messages: Any, model: str, **kwargs: Any) -> None:
        taught.append((model, kwargs["score"]))
        original(self, messages, model, **kwargs)

    monkeypatch.setattr(GreenServRouter, "learn", spy)
    strategies = ["task-thompson", "linucb", "oracle"]
    cold = quick(table, strategies, runs=1, tradeoff=0.0, per_task=30, horizons=[8])
    warm = quick(table, strategies, runs=1, tradeoff=0.0, per_task=30, warm_start=5, horizons=[8])
    assert len(taught) == 2 * (5 * 2 * 2)  # 5 queries per task, 2 tasks, both models, to each router but the oracle
    data = table.matrices()
    after_cut = [q for t in (0, 40) for q in range(t + 30, t + 35)]
    info = warm["warm_start"]
    assert info["rows"] == 20 and info["queries"] == 10 and info["queries_per_task"] == 5
    assert info["joules"] == pytest.approx(data.energy[after_cut].sum())
    assert warm["settings"]["queries"] == cold["settings"]["queries"] == 60  # the same stream
    assert warm["baselines"] == cold["baselines"]
    first = {name: points[0] for name, points in warm["learning_curve"]["strategies"].items()}
    cold_first = {name: points[0] for name, points in cold["learning_curve"]["strategies"].items()}
    assert first["task-thompson"]["queries"] == 8 and first["task-thompson"]["accuracy"]["mean"] == 1.0  # from step 0
    assert cold_first["task-thompson"]["accuracy"]["mean"] < 1.0
    assert first["linucb"]["accuracy"]["mean"] > cold_first["linucb"]["accuracy"]["mean"]
    taught.clear()
    overstated = quick(table, ["task-thompson"], runs=1, warm_start=3, overstate={"bad": 1.0}, horizons=[8])
    assert overstated["settings"]["queries"] == 74  # without a cut the last 3 per task leave the stream
    assert overstated["warm_start"]["overstated"] == {"bad": 1.0}
    assert {score for model, score in taught if model == "bad"} == {1.0}
    assert {score for model, score in taught if model == "good"} == {1.0}
    assert parse_overstatement("bad:-0.2") == ("bad", -0.2)
    with pytest.raises(InvalidInputError, match="MODEL:"):
        parse_overstatement("bad")
    with pytest.raises(InvalidInputError, match="warm_start"):
        quick(table, ["linucb"], overstate={"bad": 0.2})
    with pytest.raises(InvalidInputError, match="too few"):
        quick(table, ["linucb"], per_task=38, warm_start=5)


def test_newcomer_time_is_reported_per_strategy() -> None:
    table = two_model_table(120, good=0.95, bad=0.3)
    report = quick(
        table, ["task-thompson", "static:bad"], runs=1, tradeoff=0.0, changes=[PoolChange("add", "good", 40)]
    )
    [newcomer] = report["newcomers"]
    assert newcomer["model"] == "good" and newcomer["step"] == 40 and newcomer["final_window"] == 40
    adopted = newcomer["strategies"]["task-thompson"]
    assert adopted["final_share"]["mean"] > 0.7 and 0 < adopted["steps_to_half"]["runs"][0] < 120
    ignored = newcomer["strategies"]["static:bad"]
    assert ignored["final_share"]["mean"] == 0.0 and ignored["steps_to_half"]["mean"] is None
    assert newcomer["new_optimum_share"]["mean"] == 1.0  # the good model is every task's best after it joins
    assert 0 < adopted["steps_to_half_optimum"]["runs"][0] < 120
    assert ignored["steps_to_half_optimum"]["mean"] is None


def test_peers_are_built_by_the_peers_module(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, int, int | None]] = []

    def make_peer(name: str, dimension: int, seed: int | None = None) -> Policy:
        made.append((name, dimension, seed))
        return make_policy("epsilon", dimension, seed=seed)

    fake = types.ModuleType("greenserv_core.evaluation.peers")
    fake.peer_names = lambda: ["fake-peer"]  # type: ignore[attr-defined]
    fake.make_peer = make_peer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "greenserv_core.evaluation.peers", fake)
    table = two_model_table(20)
    report = quick(table, ["fake-peer", "random"], runs=2, seed=3)
    assert report["settings"]["peers"] == ["fake-peer"]
    dimension = make_hashing_extractor().dimension
    assert made == [("fake-peer", dimension, 3)] * 2 + [("fake-peer", dimension, 4)]  # checked once, then the runs
    from greenserv_core.cli.replay import learning_curve_rows, replay_rows

    assert [row["strategy"] for row in replay_rows(report)] == ["fake-peer (peer)", "random"]
    assert " ± " in replay_rows(report)[0]["accuracy"]  # two runs: an interval
    single = quick(table, ["random"], runs=1, seed=3)
    assert " ± " not in replay_rows(single)[0]["accuracy"]  # one run has none ("± 0.000" before)
    assert learning_curve_rows(report)[0]["strategy"] == "fake-peer (peer)"


def test_cli_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.evaluation import replay as replay_module

    original = replay_module.replay
    monkeypatch.setattr(
        replay_module, "replay", lambda *a, **k: original(*a, **{**k, "make_features": make_hashing_extractor})
    )
    table_path = write_table(two_model_table(50), tmp_path / "t.csv")
    report_path = tmp_path / "r.json"
    args = ["bench", "replay", "--table", str(table_path), "--strategies", "random,oracle", "--runs", "1"]
    options = [
        "--per-task",
        "40",
        "--horizons",
        "10,30",
        "--shift",
        "good@20:accuracy-0.3",
        "--shift",
        "bad@25:energy*2",
        "--warm-start",
        "5",
        "--overstate",
        "bad:+0.4",
        "--add-model",
        "good@5",
        "--json",
        str(report_path),
    ]
    assert cli.main([*args, *options]) == 0
    out = capsys.readouterr().out
    assert "learning curve" in out and "| first 10 | first 30 | all 80 |" in out
    assert "shift good@20:accuracy-0.3" in out and "shift bad@25:energy*2" in out and "newcomer good@5" in out
    assert "warm start: 5 queries per task" in out and "20 rows taught" in out
    report = json.loads(report_path.read_text())
    settings = report["settings"]
    assert settings["per_task"] == 40 and settings["horizons"] == [10, 30, 80] and settings["warm_start"] == 5
    assert settings["overstate"] == {"bad": 0.4} and settings["peers"] == []
    assert settings["shifts"] == ["good@20:accuracy-0.3", "bad@25:energy*2"]
    assert {"learning_curve", "shifts", "newcomers", "warm_start", "relative"} <= set(report)
    assert [s["shift"] for s in report["shifts"]] == settings["shifts"]
    for bad in (["--shift", "good@20"], ["--horizons", "ten"], ["--overstate", "bad"], ["--strategies", "nope"]):
        assert cli.main([*args, *bad]) == 2


def test_the_router_energy_scale_is_chosen_per_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    import greenserv_core.evaluation.replay as replay_module
    from tests.conftest import spy_energy_scales

    built = spy_energy_scales(monkeypatch, replay_module)
    table = two_model_table(40)
    for scale, given in (("known", "known"), ("seen", "seen"), ("pool", "pool"), ("online", None)):
        built.clear()
        report = quick(table, ["linucb"], runs=1, tradeoff=0.1, energy_scale=scale)
        assert report["settings"]["energy_scale"] == scale and built == [given]
        assert report["strategies"]["linucb"]["accuracy"]["mean"] > 0.6  # the good model is learned
    with pytest.raises(InvalidInputError, match="energy_scale"):
        quick(table, ["linucb"], runs=1, energy_scale="widest")
    from greenserv_core.cli.replay import ENERGY_SCALE_CHOICES
    from greenserv_core.routing.energy_costs import ENERGY_SCALES

    assert ENERGY_SCALE_CHOICES == replay_module.REPLAY_ENERGY_SCALES == ("online", *ENERGY_SCALES, "table")


def test_the_gap_with_a_pool_change_counts_only_the_models_present() -> None:
    # one task; a is always wrong, b always right, at equal joules (λ 0.4: rewards 0 and 0.6); b joins at query 2
    queries = [f"q{i}" for i in range(4)]
    rows = {
        "query_id": [q for q in queries for _ in range(2)],
        "task": ["t"] * 8,
        "prompt": [f"What is {i} plus {i}?" for i in range(4) for _ in range(2)],
        "reference": [""] * 8,
        "model": ["a", "b"] * 4,
        "output": [""] * 8,
        "accuracy": [0.0, 1.0] * 4,
        "energy_joules": [1.0] * 8,
        "energy_source": ["x"] * 8,
        "latency_s": [0.1] * 8,
        "input_tokens": [1] * 8,
        "output_tokens": [1] * 8,
    }
    report = replay(OutcomeTable(rows), ["oracle"], runs=1, changes=[PoolChange("add", "b", 2)], horizons=())
    # present models: random earns 0, 0, 0.3, 0.3 and the oracle (and best fixed) 0, 0, 0.6, 0.6
    assert report["stream_baselines"]["random"]["reward"] == pytest.approx(0.15)
    assert report["stream_baselines"]["oracle"]["reward"] == pytest.approx(0.30)
    gaps = report["relative"]["oracle"]
    assert gaps["gap_closed_to_oracle"] == pytest.approx(1.0)
    assert gaps["gap_closed_to_best_fixed_per_task"] == pytest.approx(1.0)
    curve = report["learning_curve"]["strategies"]["oracle"][-1]
    assert curve["gap_closed_to_oracle"]["mean"] == pytest.approx(gaps["gap_closed_to_oracle"])


def test_under_a_shift_the_best_fixed_model_per_task_is_the_best_of_each_stretch() -> None:
    """One task, equal joules, λ = 0.4: a scores 0.5 (reward 0.30), b 0.9 (0.54) until query 2
    and 0.3 (0.18) after, c 0. Before the shift b is the best fixed model, after it a: the
    baseline is (2·0.54 + 8·0.30)/10 = 0.348, never b's shifted 0.252."""
    models, scores = ["a", "b", "c"], [0.5, 0.9, 0.0]
    rows = [
        {
            "query_id": f"q{q}",
            "task": "t",
            "prompt": f"what is {q} plus {q}?",
            "reference": "",
            "model": m,
            "output": "",
            "accuracy": a,
            "energy_joules": 1.0,
            "energy_source": "x",
            "latency_s": 0.1,
            "input_tokens": 1,
            "output_tokens": 1,
        }
        for q in range(10)
        for m, a in zip(models, scores, strict=True)
    ]
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    table = OutcomeTable(columns, {"simulated": True})
    report = replay(
        table,
        ["random"],
        runs=1,
        tradeoff=0.4,
        shifts=[Shift.parse("b@2:accuracy-0.6")],
        horizons=(),
        make_features=make_hashing_extractor,
    )
    baselines = report["stream_baselines"]
    assert baselines["best_fixed_model_per_task"]["reward"] == pytest.approx(0.348)
    assert baselines["random"]["reward"] == pytest.approx(0.184)


def test_a_shift_that_changes_no_outcome_changes_no_baseline() -> None:
    rng = np.random.default_rng(0)
    models, queries = ["a", "b", "c"], 40
    correct = rng.random((queries, 3)) < [0.6, 0.55, 0.3]
    columns: dict[str, list[Any]] = {
        "query_id": [f"q{q}" for q in range(queries) for _ in models],
        "task": [("t", "u")[q % 2] for q in range(queries) for _ in models],
        "prompt": [f"what is {q} plus {q}?" for q in range(queries) for _ in models],
        "reference": [""] * (3 * queries),
        "model": models * queries,
        "output": [""] * (3 * queries),
        "accuracy": correct.astype(float).ravel().tolist(),
        "energy_joules": [1.0, 2.0, 0.5] * queries,
        "energy_source": ["x"] * (3 * queries),
        "latency_s": [0.1] * (3 * queries),
        "input_tokens": [1] * (3 * queries),
        "output_tokens": [1] * (3 * queries),
    }
    table = OutcomeTable(columns, {"simulated": True})
    plain, null = (
        replay(table, ["random"], runs=3, horizons=(), make_features=make_hashing_extractor, shifts=shifts)
        for shifts in ([], [Shift.parse("a@10:latency*1"), Shift.parse("b@25:energy*1")])
    )
    for key in ("gap_closed_to_best_fixed_per_task", "gap_closed_to_oracle"):  # the best fixed was re-ranked
        assert null["relative"]["random"][key] == pytest.approx(plain["relative"]["random"][key])  # per stretch


def test_peers_are_refused_with_a_warm_start_whose_rows_they_would_learn_on_another_scale() -> None:
    with pytest.raises(InvalidInputError, match=r"peers \['vw-squarecb'\] would learn a warm start"):
        replay(two_model_table(20), ["epsilon", "vw-squarecb"], runs=1, warm_start=2, horizons=())


def test_peers_are_refused_under_an_energy_budget_that_would_override_their_choices() -> None:
    with pytest.raises(InvalidInputError, match=r"peers \['vw-squarecb'\] cannot be paced: .* routed by nobody"):
        replay(two_model_table(20), ["epsilon", "vw-squarecb"], runs=1, energy_budget=EnergyBudget.per_query(2.0))


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the work ran before the strategies were checked")


@pytest.mark.parametrize(
    ("strategies", "options", "message"),
    [
        (["random", "static:nope"], {}, "'nope', which the table does not have"),
        (["random", "static:"], {}, "needs a model name"),
        (["random", "linucb"], {"policy_params": {"linucb": {"alpha": -1}}}, "alpha"),
        (["random", "epsilon"], {"policy_params": {"epsilon": {"nope": 1}}}, "nope"),
        (["random", "static:good"], {"changes": [PoolChange("add", "good", 2)]}, "a pool change leaves out"),
        (["random", "static:good"], {"changes": [PoolChange("remove", "good", 2)]}, "a pool change leaves out"),
        (["random", "static"], {"policy_params": {"static": {"arm": "nope"}}}, "the table does not have"),
        (["random"], {"policy_params": {"linucb": {"alpha": 0.3}}}, r"\['linucb'\], which are not among"),
        (["random", "vw-epsilon"], {"policy_params": {"vw-epsilon": {"epsilon": 1.0}}}, r"\['vw-epsilon'\] take no"),
        (["random", "task-thompson"], {"policy_params": {"task-thompson": {"nope": 1}}}, "policies only"),
        (["random", "oracle"], {"policy_params": {"oracle": {}}}, r"\['oracle'\] take no parameters"),
    ],
)
def test_every_strategy_is_checked_before_the_warm_up_and_any_run(
    strategies: list[str], options: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenserv_core.evaluation import replay as replay_module
    from greenserv_core.features.extractor import FeatureExtractor

    monkeypatch.setattr(replay_module, "_run", _never)  # ran the other strategies first
    monkeypatch.setattr(FeatureExtractor, "warm", _never)
    with pytest.raises(InvalidInputError, match=message):
        quick(two_model_table(10), strategies, runs=2, horizons=(), **options)


def test_a_static_arm_always_in_the_pool_still_replays() -> None:
    changes = [PoolChange("add", "good", 0), PoolChange("remove", "bad", 5)]
    report = quick(two_model_table(10), ["static:good"], runs=1, horizons=(), changes=changes)
    assert report["strategies"]["static:good"]["shares"] == {"good": {"mean": 1.0, "ci95": 0.0, "runs": 1}}


def test_a_missing_peer_extra_is_refused_before_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenserv_core.evaluation import replay as replay_module

    for module in [m for m in sys.modules if m.partition(".")[0] == "vowpalwabbit"]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "vowpalwabbit", None)
    monkeypatch.setattr(replay_module, "_run", _never)  # epsilon's runs came first
    with pytest.raises(MissingExtraError, match="'bench' extra"):
        quick(two_model_table(10), ["epsilon", "vw-squarecb"], runs=2, horizons=())


@pytest.mark.parametrize("tradeoff", [1.5, -0.5, float("nan")])
def test_a_tradeoff_outside_zero_to_one_is_refused(tradeoff: float) -> None:
    with pytest.raises(InvalidInputError, match=r"tradeoff λ must be a number in \[0, 1\]"):
        quick(two_model_table(5), ["oracle"], runs=1, horizons=(), tradeoff=tradeoff)  # a nonsense report


def test_a_model_added_at_step_0_is_in_the_pool_from_the_start() -> None:
    table = two_model_table(10)
    report = quick(
        table, ["oracle"], runs=1, horizons=(), changes=[PoolChange("add", "good", 0), PoolChange("add", "bad", 4)]
    )
    assert report["settings"]["pool_changes"] == ["add good@0", "add bad@4"]  # was refused: no model from the start
    assert report["strategies"]["oracle"]["shares"].keys() == {"good", "bad"}
    with pytest.raises(InvalidInputError, match="from the start"):
        quick(
            table, ["oracle"], runs=1, horizons=(), changes=[PoolChange("add", "good", 1), PoolChange("add", "bad", 4)]
        )


def test_a_strategy_named_twice_is_refused_by_the_replay() -> None:
    with pytest.raises(InvalidInputError, match=r"strategies named twice: \['random'\]"):
        quick(two_model_table(10), ["random", "linucb", "random"], runs=2, horizons=())  # one row of both runs
