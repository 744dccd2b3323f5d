"""Peer contextual-bandit baselines (Vowpal Wabbit, MABWiser) as router policies."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.bandits import Policy
from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.evaluation.extras import MissingExtraError
from greenserv_core.evaluation.peers import PEERS, make_peer, peer_names
from tests.conftest import make_hashing_extractor
from tests.services import missing

ENGINE = {"vw-squarecb": "vowpalwabbit", "vw-epsilon": "vowpalwabbit", "mabwiser-linucb": "mabwiser"}
A, B = np.array([1.0, 1.0, 0.0]), np.array([1.0, 0.0, 1.0])


def peer(name: str, dimension: int = 3, seed: int = 0) -> Policy:
    pytest.importorskip(ENGINE[name])
    return make_peer(name, dimension, seed=seed)


PEERS_SITE = Path(sys.prefix) / "peers-site"
"""Where setup.sh installs MABWiser and pandas, outside the environment (see the ``peers`` extra)."""


@pytest.mark.skipif(importlib.util.find_spec("mabwiser") is not None, reason="mabwiser runs in this process")
def test_the_second_peer_passes_its_tests_beside_the_environment() -> None:
    """Where MABWiser is not installed here, its tests run in a subprocess that sees setup.sh's
    ``peers-site`` folder, so CI exercises the peer without putting pandas on every router start."""
    if not (PEERS_SITE / "mabwiser").is_dir():
        missing(f"MABWiser in {PEERS_SITE} (setup.sh installs it)")
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PEERS_SITE), os.environ.get("PYTHONPATH")])),
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "mabwiser", __file__],
        env=environment,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "5 passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-3000:]


def test_the_peers_are_named_and_an_unknown_name_lists_them() -> None:
    assert peer_names() == tuple(PEERS) == ("vw-squarecb", "vw-epsilon", "mabwiser-linucb")
    with pytest.raises(InvalidInputError, match="vw-squarecb, vw-epsilon, mabwiser-linucb"):
        make_peer("vw-nope", 3)


@pytest.mark.parametrize("name", list(PEERS))
def test_a_missing_engine_names_its_extra(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    root = ENGINE[name]
    extra = "peers" if root == "mabwiser" else "bench"
    for module in [m for m in sys.modules if m.partition(".")[0] == root]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, root, None)
    with pytest.raises(MissingExtraError, match=rf"'{extra}' extra \({root} is missing\)"):
        make_peer(name, 3)


@pytest.mark.parametrize("name", list(PEERS))
def test_a_peer_learns_which_arm_is_better_in_which_context(name: str) -> None:
    """``p`` is right in context A, ``q`` in B (accuracy 0.9 against 0.1); both cost the same."""
    policy, rng = peer(name), np.random.default_rng(1)
    policy.add_arm("p")
    policy.add_arm("q")
    right = []
    for t in range(300):
        x = A if t % 2 else B
        good = "p" if t % 2 else "q"
        choice = policy.decide(x, value_scale=0.8, costs={"p": 0.1, "q": 0.1})
        right.append(choice.arm == good)
        if rng.random() < 0.9:  # some feedback never arrives
            policy.update(choice.arm, x, float(rng.random() < (0.9 if choice.arm == good else 0.1)))
    assert np.mean(right[-100:]) >= 0.8, np.mean(right[-100:])
    for x, good in ((A, "p"), (B, "q")):
        scores = policy.decide(x, value_scale=0.8, costs={"p": 0.1, "q": 0.1}).scores
        assert max(scores, key=lambda arm: scores[arm].score) == good


@pytest.mark.parametrize("name", list(PEERS))
def test_a_peer_learns_the_full_reward_with_its_known_cost(name: str) -> None:
    """Same accuracy everywhere, but ``dear`` costs 0.5 more: the full reward prefers ``cheap``."""
    policy, rng = peer(name), np.random.default_rng(2)
    policy.add_arm("cheap")
    policy.add_arm("dear")
    costs = {"cheap": 0.0, "dear": 0.5}
    chosen = []
    for t in range(200):
        x = A if t % 2 else B
        arm = policy.decide(x, value_scale=0.5, costs=costs).arm
        chosen.append(arm)
        policy.update(arm, x, float(rng.random() < 0.7))
    assert chosen[-50:].count("cheap") >= 40


@pytest.mark.parametrize("name", list(PEERS))
def test_a_peer_respects_the_eligible_arms_and_a_changing_pool(name: str) -> None:
    policy = peer(name)
    for arm in ("a", "b", "c"):
        policy.add_arm(arm)
    for _ in range(20):
        assert policy.select(A, ["b"]) == "b"
        choice = policy.decide(B, ["a", "c"], costs={"a": 0.2})
        assert choice.arm in {"a", "c"} and set(choice.scores) == {"a", "c"}
        assert choice.scores["a"].cost == 0.2 and choice.scores["c"].cost == 0.0
        policy.update(choice.arm, B, 1.0)
    policy.update("b", A, 1.0)  # routed by nobody (a warm start): learned at probability 1/3, no cost
    policy.remove_arm("a")
    assert {policy.select(A) for _ in range(20)} <= {"b", "c"}
    policy.add_arm("a")  # back, from scratch
    policy.add_arm("d")
    policy.update("d", A, 0.5)
    assert policy.decide(A).scores.keys() == {"a", "b", "c", "d"}
    with pytest.raises(InvalidInputError, match="no eligible"):
        policy.decide(A, [])
    with pytest.raises(InvalidInputError, match="shape"):
        policy.decide(np.ones(4))
    with pytest.raises(StateFileError, match="cannot be saved"):
        policy.state_dict()


@pytest.mark.parametrize("name", list(PEERS))
def test_a_peer_routes_a_real_router(name: str) -> None:
    """Through the router: ``large`` answers well, ``small`` badly; some feedback is missing."""
    extractor = make_hashing_extractor()
    pool = [FakeBackend("small", joules_per_token=1.0), FakeBackend("large", joules_per_token=2.0)]
    router = GreenServRouter(pool, policy=peer(name, extractor.dimension), features=extractor, tradeoff=0.2, seed=0)
    prompts = ["What is 2 + 2?", "Tell me a joke.", "Who wrote Hamlet?"]
    models = []
    for t in range(90):
        answer = router.generate(prompts[t % 3], max_new_tokens=4)
        models.append(answer.model)
        if t % 4:
            assert router.feedback(answer.decision_id, 1.0 if answer.model == "large" else 0.0).applied
        if t == 60:
            router.add_model(FakeBackend("medium", joules_per_token=1.5))
    assert models[-20:].count("large") >= 12
    router.remove_model("small")
    assert router.generate("Hi there", max_new_tokens=4).model in {"medium", "large"}


@pytest.mark.parametrize("name", ["vw-squarecb", "vw-epsilon"])
def test_a_vw_peer_takes_any_seed_and_keeps_one_that_fits(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    vw = pytest.importorskip("vowpalwabbit")
    options: list[str] = []
    workspace = vw.Workspace

    def spy(arguments: str) -> object:
        options.append(arguments)
        return workspace(arguments)

    monkeypatch.setattr(vw, "Workspace", spy)
    for seed in (7, 2**64 - 1, 2**64, 2**70 + 3):  # --seed takes any integer of 0 or more
        policy = make_peer(name, 3, seed=seed)  # crashed from 2**64 on
        policy.add_arm("p")
        policy.add_arm("q")
        assert policy.select(A) in {"p", "q"}
    seeds = [int(text.rpartition("--random_seed ")[2]) for text in options]
    assert seeds[:2] == [7, 2**64 - 1]  # as before
    assert all(0 <= seed < 2**64 for seed in seeds) and len(set(seeds)) == 4
