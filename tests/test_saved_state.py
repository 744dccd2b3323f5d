"""A router's saved state: settings of any number type the router takes save and load, a file
that cannot be read is a StateFileError naming it, and load names the caller's own bad arguments."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.errors import DecisionAlreadyScoredError, InvalidInputError, StateFileError
from greenserv_core.features.extractor import FeatureExtractor
from greenserv_core.pending import PendingDecisions
from greenserv_core.persistence import write_state
from tests.conftest import make_hashing_extractor


def _saved_and_loaded(
    router: GreenServRouter, fakes: list[FakeBackend], extractor: FeatureExtractor, path: Path
) -> GreenServRouter:
    router.generate("What is 2 + 2?")
    router.save(path)
    return GreenServRouter.load(path, fakes, features=extractor)


@pytest.mark.parametrize("ttl", [Decimal("100"), Fraction(100), np.float32(100.0), 100])
def test_a_pending_age_of_any_number_type_answers_saves_and_loads(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path, ttl: object
) -> None:
    router = GreenServRouter(fakes, features=extractor, seed=0, pending_ttl_s=ttl)  # type: ignore[arg-type]
    loaded = _saved_and_loaded(router, fakes, extractor, tmp_path / "state.json")  # was TypeError: Decimal, Fraction
    assert loaded.pending_.state_dict()["ttl_s"] == 100.0


def test_the_pending_stores_limits_are_kept_as_numbers_a_state_file_holds() -> None:
    store = PendingDecisions(max_size=np.int64(5), ttl_s=Fraction(1, 2))  # type: ignore[arg-type]
    assert (type(store.max_size), type(store.ttl_s), store.ttl_s) == (int, float, 0.5)
    for size in (Fraction(100), 100.5, "100", 0):  # was accepted: saving then raised TypeError (a Fraction)
        with pytest.raises(InvalidInputError, match="max_size must be an integer >= 1"):
            PendingDecisions(max_size=size)  # type: ignore[arg-type]
    for ttl in ("100", Decimal("NaN"), Decimal("sNaN"), 1j, float("inf"), -1.0):
        with pytest.raises(InvalidInputError, match="ttl_s must be a positive finite number"):
            PendingDecisions(ttl_s=ttl)  # type: ignore[arg-type]


def test_a_bool_is_no_pending_store_size(fakes: list[FakeBackend], extractor: FeatureExtractor) -> None:
    with pytest.raises(InvalidInputError, match="max_size must be an integer >= 1, got True"):
        PendingDecisions(max_size=True)  # was accepted as 1 (a bool is an int)
    with pytest.raises(InvalidInputError, match="max_size must be an integer >= 1, got True"):
        GreenServRouter(fakes, features=extractor, max_pending=True)


def test_policy_params_are_saved_as_the_policy_keeps_them(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path
) -> None:
    router = GreenServRouter(
        fakes, features=extractor, seed=0, strategy="epsilon", policy_params={"epsilon": Fraction(1, 10)}
    )
    loaded = _saved_and_loaded(router, fakes, extractor, tmp_path / "state.json")  # was TypeError: the Fraction
    assert loaded.policy_.params()["epsilon"] == 0.1
    plain = {"epsilon": 0.1, "decay": 0.25}
    router = GreenServRouter(fakes, features=extractor, seed=0, strategy="epsilon", policy_params=plain)
    saved = router.state_dict()["policy_params"]
    assert json.dumps(saved) == json.dumps(plain)  # only the keys given, the same floats: the same bytes


def test_a_policy_given_at_load_with_other_settings_is_used_and_said(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from greenserv_core.bandits.epsilon_greedy import EpsilonGreedy

    router = GreenServRouter(fakes, features=extractor, seed=0, strategy="epsilon", policy_params={"epsilon": 0.2})
    router.save(tmp_path / "state.json")
    same = EpsilonGreedy(extractor.dimension, epsilon=0.2, seed=0)
    with caplog.at_level("WARNING", logger="greenserv"):
        GreenServRouter.load(tmp_path / "state.json", fakes, features=make_hashing_extractor(), policy=same)
    assert "settings are used" not in caplog.text
    other = EpsilonGreedy(extractor.dimension, epsilon=0.9, seed=0)
    with caplog.at_level("WARNING", logger="greenserv"):
        loaded = GreenServRouter.load(tmp_path / "state.json", fakes, features=make_hashing_extractor(), policy=other)
    assert loaded.policy_.params()["epsilon"] == 0.9  # the caller's, as before
    assert "epsilon=0.9 where the state was saved with epsilon=0.2" in caplog.text  # was silent


def test_a_setting_a_state_file_cannot_hold_is_a_state_file_error(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match=r"cannot save to .*state\.json.*Decimal"):  # was a raw TypeError
        write_state(tmp_path / "state.json", {"ttl_s": Decimal("1")}, fmt="f", version=1)
    assert not (tmp_path / "state.json").exists()


@pytest.mark.parametrize(
    "text",
    [
        "[" * 200_000,  # was RecursionError
        "1" * 5000,  # was ValueError: more digits than Python converts
        '{"format": "greenserv-router-state", "version": 1, "sha256": "x", "state": ' + "9" * 5000 + "}",
    ],
    ids=["deep", "digits", "digits-inside"],
)
def test_a_garbage_state_file_is_a_state_file_error(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path, text: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(StateFileError, match=r"state\.json is corrupt"):
        GreenServRouter.load(path, fakes, features=extractor)


def test_a_nesting_past_reason_with_a_matching_checksum_is_a_state_file_error(tmp_path: Path) -> None:
    import hashlib
    import sys

    from greenserv_core.persistence import read_state

    depth = sys.getrecursionlimit() - 80  # read by json, too deep to decode here
    state = '{"x":' + "[" * depth + "]" * depth + "}"
    digest = hashlib.sha256(state.encode()).hexdigest()
    path = tmp_path / "state.json"
    path.write_text(f'{{"format": "f", "version": 1, "sha256": "{digest}", "state": {state}}}')
    with pytest.raises(StateFileError, match=r"state\.json is corrupt"):  # was RecursionError
        read_state(path, fmt="f", version=1)


def test_a_folder_where_the_state_file_should_be_is_a_state_file_error(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path
) -> None:
    (tmp_path / "state.json").mkdir()
    with pytest.raises(StateFileError, match=r"cannot read the saved state at .*state\.json"):  # was IsADirectoryError
        GreenServRouter.load(tmp_path / "state.json", fakes, features=extractor)


def test_load_names_the_callers_own_bad_arguments_not_the_file(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path
) -> None:
    from greenserv_core.bandits.linucb import LinUCB

    path = tmp_path / "state.json"
    GreenServRouter(fakes, features=extractor, seed=0, strategy="linucb").save(path)
    dimension = extractor.dimension
    with pytest.raises(InvalidInputError, match=f"the policy has dimension {dimension + 3}") as raised:
        GreenServRouter.load(path, fakes, features=extractor, policy=LinUCB(dimension + 3))
    assert not isinstance(raised.value, StateFileError)  # was StateFileError: the file blamed
    used = LinUCB(dimension)
    used.add_arm("elsewhere")
    with pytest.raises(InvalidInputError, match="already has arms") as raised:
        GreenServRouter.load(path, fakes, features=extractor, policy=used)
    assert not isinstance(raised.value, StateFileError)
    with pytest.raises(InvalidInputError, match="is not a PendingStore") as raised:
        GreenServRouter.load(path, fakes, features=extractor, pending={})  # type: ignore[arg-type]
    assert not isinstance(raised.value, StateFileError)
    assert GreenServRouter.load(path, fakes, features=extractor, policy=LinUCB(dimension)).models == [
        f.info.name for f in fakes
    ]


def test_a_decision_scored_before_its_outcome_still_awaits_it_after_a_load(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path
) -> None:
    router = GreenServRouter(fakes, features=extractor, seed=0)
    decision = router.route("What is 2 + 2?")  # its answer still streaming: no outcome yet
    assert router.feedback(decision.decision_id, 1.0).applied  # scored first: kept aside for its outcome
    router.save(tmp_path / "state.json")
    loaded = GreenServRouter.load(tmp_path / "state.json", fakes, features=extractor)
    loaded.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.1)  # was UnknownDecisionError
    assert loaded.stats_[decision.model]["energy_joules"] == 5.0
    with pytest.raises(InvalidInputError, match="already recorded"):
        loaded.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.1)


def _rewritten(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """The state at ``path`` changed by ``change`` and saved again with a matching checksum (an
    older version's file, or one edited by hand)."""
    document = json.loads(path.read_text())
    change(document["state"])
    write_state(path, document["state"], fmt=document["format"], version=document["version"])
    return path


def test_a_decision_scored_before_its_outcome_in_an_older_state_is_not_scored_again(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path
) -> None:
    """Saved before 2026-12-05, it stayed among the pending items with its score: it loaded as
    unscored, and took a second score."""
    router = GreenServRouter(fakes, features=extractor, seed=0)
    decision = router.route("What is 2 + 2?")
    router.feedback(decision.decision_id, 1.0)
    router.save(tmp_path / "state.json")

    def as_before(state: dict[str, Any]) -> None:
        pending = state["pending"]
        (item,) = pending.pop("awaiting")
        del pending["gone"][decision.decision_id]
        pending["items"].append({**item, "score": 1.0})

    loaded = GreenServRouter.load(_rewritten(tmp_path / "state.json", as_before), fakes, features=extractor)
    with pytest.raises(DecisionAlreadyScoredError):
        loaded.feedback(decision.decision_id, 0.0)
    loaded.record_outcome(decision.decision_id, energy_joules=5.0, latency_s=0.1)  # still awaited
    assert loaded.stats_[decision.model]["energy_joules"] == 5.0


def _as_told_by_generations(generations: dict[str, int], of: dict[str, int]) -> Callable[[dict[str, Any]], None]:
    """A state as saved before 2026-12-05: models under one name told apart by ``generations``
    and each pending decision's ``generation`` (``of``: by decision id), no ``removed_at``."""

    def change(state: dict[str, Any]) -> None:
        del state["removed_at"], state["scored_before"]
        state["generations"] = generations
        for item in state["pending"]["items"]:
            item["generation"] = of[item["decision_id"]]

    return change


def test_an_older_state_whose_pending_decisions_are_in_redis_drops_late_scores_for_names_that_changed_hands() -> None:
    """Its decisions are not in the file: no removal time was found, and a removed model's late
    score went to the model under its name now."""
    from greenserv_core.routing.learner import _removals_of_generations

    state = {
        "generations": {"small": 1, "medium": 2, "gone": 1},
        "policy": {"arms": ["small", "medium"]},
        "pending": {"store": "redis", "items": [], "gone": {}},
    }
    assert _removals_of_generations(state, 1000.0) == {"gone": 1000.0, "medium": 1000.0}


@pytest.mark.parametrize("readded", [True, False], ids=["removed-and-added-again", "removed"])
def test_a_state_that_told_models_apart_by_generations_keeps_them_apart(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path, readded: bool
) -> None:
    tick = [1000.0]
    router = GreenServRouter(fakes, features=extractor, seed=0, pending=PendingDecisions(clock=lambda: tick[0]))
    before = router.route("What is 2 + 2?", models=["medium"], decision_id="before").decision_id
    tick[0] += 1.0
    router.remove_model("medium")
    generations = {"small": 1, "medium": 1, "large": 1}
    of = {before: 1}
    if readded:
        tick[0] += 1.0
        router.add_model(FakeBackend("medium", joules_per_token=2.0))
        generations["medium"] = 2
        of["after"] = 2
        router.route("What is 2 + 2?", models=["medium"], decision_id="after")
    router.save(tmp_path / "state.json")
    path = _rewritten(tmp_path / "state.json", _as_told_by_generations(generations, of))
    tick[0] += 1.0
    pool = [*fakes[:1], FakeBackend("medium", joules_per_token=2.0), fakes[2]]
    loaded = GreenServRouter.load(path, pool, features=extractor, pending=PendingDecisions(clock=lambda: tick[0]))
    assert not loaded.feedback(before, 0.0).applied  # was applied: the removed model's score taught the newcomer
    assert loaded.stats_["medium"]["feedback"] == 0
    if readded:
        assert loaded.feedback("after", 1.0).applied  # the model now under the name learns its own
    fresh = loaded.route("What is 2 + 2?", models=["medium"]).decision_id
    assert loaded.feedback(fresh, 1.0).applied


def test_a_state_whose_generations_cannot_be_told_apart_by_time_is_refused_naming_the_file(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path
) -> None:
    router = GreenServRouter(fakes, features=extractor, seed=0, pending=PendingDecisions(clock=lambda: 1000.0))
    router.route("What is 2 + 2?", models=["medium"], decision_id="before")
    router.remove_model("medium")
    router.add_model(FakeBackend("medium"))
    router.route("What is 2 + 2?", models=["medium"], decision_id="after")
    router.save(tmp_path / "state.json")
    change = _as_told_by_generations({"small": 1, "medium": 2, "large": 1}, {"before": 1, "after": 2})

    def made_in_one_tick(state: dict[str, Any]) -> None:  # a coarse clock: both read 1000.0
        change(state)
        for item in state["pending"]["items"]:
            item["created_at"] = 1000.0

    path = _rewritten(tmp_path / "state.json", made_in_one_tick)
    with pytest.raises(StateFileError, match=r"state\.json: .*'medium' apart by generations"):  # was loaded
        GreenServRouter.load(path, fakes, features=extractor, pending=PendingDecisions(clock=lambda: 1000.0))


def test_labelled_escalations_saved_at_the_top_level_still_count_as_labelled(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path
) -> None:
    from greenserv_core import LabelledAnswer

    router = GreenServRouter(fakes, features=extractor, tradeoff=0.1, seed=0, cascades=[("small", "large")])
    for prompt in ["What is 2 + 2?", "Tell me a joke.", "Who wrote Hamlet?", "Solve 5x = 20."]:
        answers = {"small": LabelledAnswer(score=0.0, energy_joules=1.0, confidence=0.1)}
        router.learn_answers(prompt, {**answers, "large": LabelledAnswer(score=1.0, energy_joules=2.0)})
    assert router.learner_.escalation_.labelled_thens_ == {"small->large": 4.0}
    router.save(tmp_path / "state.json")

    def as_before_2026_12_05(state: dict[str, Any]) -> None:
        state["labelled_thens"] = state["escalation"].pop("labelled_thens")

    path = _rewritten(tmp_path / "state.json", as_before_2026_12_05)
    loaded = GreenServRouter.load(path, fakes, features=extractor)
    assert loaded.learner_.escalation_.routed_escalations("small->large") == 0.0  # was 4.0: counted as routed
    scored = [r.learner_._then_scored("small->large", "large") for r in (loaded, router)]
    assert scored[0] == scored[1]  # was twice the saved router's


def test_a_model_added_again_in_the_tick_it_was_removed_learns_its_own_answers(
    fakes: list[FakeBackend], extractor: FeatureExtractor
) -> None:
    router = GreenServRouter(fakes, features=extractor, seed=0, pending=PendingDecisions(clock=lambda: 1000.0))
    first = router.route("What is 2 + 2?", models=["medium"]).decision_id  # the clock never moves
    router.remove_model("medium")
    router.add_model(FakeBackend("medium", joules_per_token=2.0))
    second = router.generate("What is 2 + 2?", models=["medium"]).decision_id
    router.remove_model("medium")
    router.add_model(FakeBackend("medium", joules_per_token=4.0))
    third = router.generate("What is 2 + 2?", models=["medium"]).decision_id
    assert not router.feedback(first, 1.0).applied
    assert not router.feedback(second, 1.0).applied  # its model left the pool too
    assert router.feedback(third, 1.0).applied  # was not applied: taken for its predecessors' decision
    assert router.learner_.energy_.state_dict()["models"]["medium"]["n"] == 1


def test_a_feature_extractor_built_alike_takes_the_routers_clusters_and_one_that_learned_others_is_refused(
    fakes: list[FakeBackend], extractor: FeatureExtractor
) -> None:
    router = GreenServRouter(fakes, features=extractor, seed=0)
    prompts = ["What is 2 + 2?", "Tell me a joke.", "Who wrote Hamlet?", "Solve 5x = 20.", "Write a poem about rain."]
    for prompt in prompts * 4:
        router.route(prompt)
    learned = extractor.clusterer.counts_.tolist()
    clusters = [extractor.extract(prompt, learn=False).cluster for prompt in prompts]
    rebuilt = make_hashing_extractor()
    router.features = rebuilt
    assert router.features is rebuilt
    assert rebuilt.clusterer.counts_.tolist() == learned  # was []: the learned clusters dropped
    assert [rebuilt.extract(prompt, learn=False).cluster for prompt in prompts] == clusters
    other = make_hashing_extractor()
    other.extract("Name three rivers in Europe.")  # learned a cluster of its own
    with pytest.raises(InvalidInputError, match="learned other clusters than the router's"):
        router.features = other
    assert router.features is rebuilt
    router.features = rebuilt  # the same one again
    assert router.features is rebuilt


class _SlowLock:
    """A re-entrant lock that waits a moment once taken: two threads that take two such locks in
    opposite orders then always meet in the middle."""

    def __init__(self) -> None:
        self.lock = threading.RLock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        taken = self.lock.acquire(blocking, timeout)
        time.sleep(0.2)
        return taken

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_two_routers_swapping_extractors_with_each_other_at_once_do_not_deadlock(fakes: list[FakeBackend]) -> None:
    one, two = make_hashing_extractor(), make_hashing_extractor()
    for extractor in (one, two):
        extractor._lock = _SlowLock()  # type: ignore[assignment]
    first, second = GreenServRouter(fakes, features=one, seed=0), GreenServRouter(fakes, features=two, seed=1)

    def swap(router: GreenServRouter, extractor: FeatureExtractor) -> None:
        router.features = extractor

    threads = [
        threading.Thread(target=swap, args=pair, daemon=True) for pair in ((first, two), (second, one))
    ]  # (each took its own extractor's lock, then waited for the other's)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in threads)
    assert first.features is two and second.features is one


@pytest.mark.parametrize(
    ("where", "value"),
    [(("policy", "rng", "state", "state"), -1), (("pending", "ttl_s"), 10**400), (("budget", "spent"), 10**400)],
    ids=["negative-rng-state", "huge-ttl", "huge-spent"],
)
def test_a_number_out_of_range_in_a_state_file_is_a_state_file_error_naming_it(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path, where: tuple[str, ...], value: int
) -> None:
    router = GreenServRouter(fakes, features=extractor, seed=0, energy_budget="20J/query")
    router.generate("What is 2 + 2?")
    router.save(tmp_path / "state.json")

    def edited(state: dict[str, Any]) -> None:
        node = state
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value

    path = _rewritten(tmp_path / "state.json", edited)
    with pytest.raises(StateFileError, match=r"state\.json"):  # was a raw OverflowError
        GreenServRouter.load(path, fakes, features=extractor)


def test_a_state_file_error_raised_while_loading_names_the_file(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    GreenServRouter(fakes, features=extractor, seed=0).save(path)
    with pytest.raises(StateFileError, match=r"state\.json: saved clustering has 3 clusters"):  # was without the file
        GreenServRouter.load(path, fakes, features=make_hashing_extractor(n_clusters=4))


@pytest.mark.parametrize(
    ("dtype", "values", "shape"),
    [("(1000,)f8", [0.0], [1, 1000]), ("O", [0.0], [1]), ("U3", [0.0], [1]), ("int64", [10**30], [1])],
    ids=["sub-array", "object", "text", "int-too-big"],
)
def test_an_array_of_a_state_file_holds_plain_numbers(
    tmp_path: Path, dtype: str, values: list[float], shape: list[int]
) -> None:
    from greenserv_core.persistence import read_state

    path = tmp_path / "state.json"
    write_state(path, {"x": {"__ndarray__": values, "dtype": dtype, "shape": shape}}, fmt="f", version=1)
    with pytest.raises(StateFileError, match=r"state\.json holds an array"):  # was read (a sub-array: 1000 times
        read_state(path, fmt="f", version=1)  # the file's numbers) or a raw OverflowError
    plain = {"x": np.arange(3.0), "y": np.array([True]), "z": np.array([3], dtype=np.uint8)}
    write_state(path, plain, fmt="f", version=1)
    read = read_state(path, fmt="f", version=1)
    assert [(read[k].tolist(), read[k].dtype) for k in plain] == [(v.tolist(), v.dtype) for v in plain.values()]


def test_the_state_is_written_as_version_2_and_versions_1_and_2_are_read(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path
) -> None:
    """Version 1 readers refuse version 2 files (whose later fields they would misread); this
    GreenServ reads both, and refuses a later one."""
    path = tmp_path / "state.json"
    GreenServRouter(fakes, features=extractor, seed=0).save(path)
    document = json.loads(path.read_text())
    assert document["version"] == 2  # was 1 since the first format, through every change
    for version, readable in ((1, True), (2, True), (3, False), (True, False), (1.0, False)):
        path.write_text(json.dumps({**document, "version": version}))
        if readable:
            GreenServRouter.load(path, fakes, features=make_hashing_extractor())
        else:
            with pytest.raises(StateFileError, match="this GreenServ reads versions 1 to 2"):
                GreenServRouter.load(path, fakes, features=make_hashing_extractor())


def test_saving_to_a_folder_or_under_a_file_is_a_state_file_error_naming_the_path(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = GreenServRouter(fakes, features=extractor, seed=0)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    monkeypatch.chdir(tmp_path)
    under_a_file = tmp_path / "file" / "s.json"
    places = [(tmp_path / "folder", "it is a folder"), ("", "it is a folder"), (under_a_file, "is a file")]
    for path, said in places:  # was IsADirectoryError naming a temporary file, and FileExistsError
        with pytest.raises(StateFileError, match=said):
            router.save(path)
    assert not list(tmp_path.glob("**/*.tmp"))


def test_a_state_path_under_the_home_folder_is_read_and_written_there(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    GreenServRouter(fakes, features=extractor, seed=0).save("~/states/router.json")
    assert (tmp_path / "home" / "states" / "router.json").is_file()
    assert not (tmp_path / "~").exists()  # was ./~/states/router.json
    assert GreenServRouter.load("~/states/router.json", fakes, features=make_hashing_extractor()).models


def test_load_takes_the_pool_as_any_iterable_and_names_a_member_that_is_no_backend(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    GreenServRouter(fakes, features=extractor, seed=0).save(path)
    loaded = GreenServRouter.load(path, (f for f in fakes), features=make_hashing_extractor())  # was StateFileError
    assert loaded.models == [f.info.name for f in fakes]
    with pytest.raises(InvalidInputError, match="does not implement ModelBackend") as raised:  # was AttributeError
        GreenServRouter.load(path, [*fakes, "large-v2"], features=make_hashing_extractor())  # type: ignore[list-item]
    assert not isinstance(raised.value, StateFileError)


def test_clusters_learned_in_an_embedding_of_another_dimension_are_refused_at_load(
    fakes: list[FakeBackend], tmp_path: Path
) -> None:
    from greenserv_core.features import HashingEmbedder, TaskClassifier

    class Named(HashingEmbedder):  # two checkpoints of one name, as a folder's last part names them
        @property
        def name(self) -> str:
            return "sentence-transformers:model:128"

    def extractor_of(dimension: int) -> FeatureExtractor:
        embedder = Named(dimension)
        texts, labels = ["2+2?", "hi", "Write a poem"], ["math", "chat", "chat"]
        classifier = TaskClassifier().fit(embedder.embed(texts), labels, embedder.name)
        return FeatureExtractor(embedder, classifier, n_clusters=2)

    router = GreenServRouter(fakes, features=extractor_of(64), seed=0)
    router.generate("What is 2 + 2?")
    router.save(tmp_path / "state.json")
    with pytest.raises(StateFileError, match="embedding dimension 64 != 32"):  # was loaded; every query then failed
        GreenServRouter.load(tmp_path / "state.json", fakes, features=extractor_of(32))


def test_a_prior_setting_given_at_load_is_said_to_apply_to_new_arms_only(
    fakes: list[FakeBackend], extractor: FeatureExtractor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from greenserv_core.bandits.linucb import LinUCB

    router = GreenServRouter(fakes, features=extractor, policy=LinUCB(extractor.dimension, seed=0))
    router.save(tmp_path / "state.json")
    with caplog.at_level("WARNING", logger="greenserv"):
        given = LinUCB(extractor.dimension, l2=50.0)
        loaded = GreenServRouter.load(tmp_path / "state.json", fakes, features=make_hashing_extractor(), policy=given)
    assert "l2 applies to arms added from now on" in caplog.text  # was "the given policy's settings are used" alone
    ridge = loaded.policy_.ridge_  # type: ignore[attr-defined]
    assert ridge.l2s[ridge.row("small")] == 1.0  # as saved, as the warning says
