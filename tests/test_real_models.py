"""End to end with the real bundled weights (SmolLM2-135M-Instruct, Gemma-3-270m) on the CPU.

Needs `greenserv setup` (done by setup.sh and CI). The default test run includes the first
test; the slower ones are marked ``slow``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from greenserv_core import GreenServRouter
from greenserv_core.models.bundled import bundled_pool


@pytest.fixture(scope="module")
def router(minilm_extractor_factory) -> GreenServRouter:  # type: ignore[no-untyped-def]
    return GreenServRouter(
        bundled_pool(meter="auto"), features=minilm_extractor_factory(), strategy="linucb", tradeoff=0.4, seed=0
    )


def test_routes_real_queries_through_real_models(router: GreenServRouter) -> None:
    assert set(router.models) == {"smollm2-135m-instruct", "gemma-3-270m"}
    answers = [router.generate("What is the capital of France?", max_new_tokens=16) for _ in range(4)]
    assert {a.model for a in answers} == set(router.models)  # LinUCB tries both before it knows
    for answer in answers:
        assert "paris" in answer.text.lower(), answer
        assert answer.input_tokens > 5 and 1 <= answer.output_tokens <= 16
        assert answer.energy_joules > 0
        assert answer.energy_source in {"nvml-counter", "nvml-power", "rapl", "cpu-time-estimate"}
        assert answer.energy_measured == (answer.energy_source != "cpu-time-estimate")
        assert router.feedback(answer.decision_id, 1.0).applied
    assert all(router.energy_.predict(m, answers[0].decision.features.vector, 10) for m in router.models)


@pytest.mark.slow
def test_real_streaming_matches_generation(router: GreenServRouter) -> None:
    chunks = list(router.stream("What is the capital of France?", max_new_tokens=16))
    final = chunks[-1].generation
    assert final is not None and "paris" in final.text.lower()
    assert "".join(c.delta for c in chunks[:-1]) == final.text


@pytest.mark.slow
def test_the_demo_command_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "greenserv_core.cli", "chat", "--max-new-tokens", "12"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "J (" in done.stdout and "tokens" in done.stdout


def test_collect_a_real_table_with_the_bundled_models(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.evaluation.collect import collect

    pool = bundled_pool(meter="auto")
    table = collect(pool, tmp_path / "real.parquet", tasks=["arc_easy", "boolq"], limit=2, batch_size=2)
    data = table.matrices()
    assert data.models == ["smollm2-135m-instruct", "gemma-3-270m"] and len(data.queries) == 4
    assert not table.simulated and set(table.columns["energy_source"]) <= {
        "nvml-counter",
        "nvml-power",
        "rapl",
        "cpu-time-estimate",
    }
    assert (data.energy > 0).all() and (data.latency > 0).all()
    assert all(n >= 1 for n in table.columns["output_tokens"])
    assert set(table.columns["accuracy"]) <= {0.0, 1.0}


def test_the_bundled_models_token_bounds_hold_on_real_prompts() -> None:
    """Where the router skips counting (the bound fits the window), the count fits too."""
    from greenserv_core.evaluation.overhead import overhead_prompts

    prompts = overhead_prompts(100, seed=1)
    for backend in bundled_pool():
        for prompt in prompts:
            messages = [{"role": "user", "content": prompt}]
            assert backend.count_tokens(messages) <= backend.token_bound(messages)
