"""A router's saved state: settings of any number type the router takes save and load, a file
that cannot be read is a StateFileError naming it, and load names the caller's own bad arguments."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.features.extractor import FeatureExtractor
from greenserv_core.pending import PendingDecisions
from greenserv_core.persistence import write_state


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
