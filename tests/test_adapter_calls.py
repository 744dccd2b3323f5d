"""The adapters' shared calling helpers: the lazily built routers that an adapter's copies share."""

from __future__ import annotations

import threading
import time

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.adapters import LazyRouter
from tests.conftest import make_hashing_extractor


def _router() -> GreenServRouter:
    return GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), seed=0)


def test_a_router_being_built_holds_up_neither_a_built_one_nor_its_decisions() -> None:
    lazy = LazyRouter()
    built = lazy.get(_router, key="built")
    decision = built.route("What is 2 + 2?")
    release, builds = threading.Event(), []

    def slow_build() -> GreenServRouter:  # stands for loading another copy's models
        builds.append(1)
        release.wait(2.0)
        return _router()

    others = [threading.Thread(target=lambda: lazy.get(slow_build, key="slow")) for _ in range(3)]
    for thread in others:
        thread.start()
    try:
        while not builds:
            time.sleep(0.005)
        started = time.perf_counter()
        found = lazy.deciding(decision.decision_id)  # was held until the other build finished
        again = lazy.get(_router, key="built")
        assert time.perf_counter() - started < 1.0
        assert found is built and again is built and lazy.built("slow") is None
    finally:
        release.set()
        for thread in others:
            thread.join()
    assert len(builds) == 1 and lazy.built("slow") is not None  # one key is still built once
