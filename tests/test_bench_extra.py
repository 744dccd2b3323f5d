"""The ``bench`` extra: routing imports none of its packages, and benchmarks name it when one is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from greenserv_core import cli
from greenserv_core.evaluation.extras import BENCH_PACKAGES, MissingExtraError
from greenserv_core.evaluation.simulate import simulate_table
from greenserv_core.evaluation.table import OutcomeTable, read_table, write_table
from tests.test_evaluation import CALIBRATION

TABLE = simulate_table(CALIBRATION, queries_per_task=2, seed=0)  # drawn while the bench packages are there

ROOT = Path(__file__).resolve().parent.parent

ROUTING = """
import sys
import greenserv_core
from greenserv_core import FakeBackend, GreenServRouter
import greenserv_core.cli
import langchain_greenserv, llama_index_greenserv
from tests.conftest import make_hashing_extractor

router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], features=make_hashing_extractor(), seed=0)
result = router.generate("What is 2 + 2?", max_new_tokens=4)
router.feedback(result.decision.decision_id, 1.0)
print(sorted(name for name in {names} if name in sys.modules))
"""


def test_routing_and_the_adapters_import_no_bench_package() -> None:
    code = ROUTING.format(names=sorted(BENCH_PACKAGES))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture
def without_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the extra were not installed: importing its packages fails."""
    for name in list(sys.modules):
        if name.partition(".")[0] in BENCH_PACKAGES:
            monkeypatch.delitem(sys.modules, name)
    for name in BENCH_PACKAGES:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.usefixtures("without_bench")
def test_without_the_extra_benchmarks_name_it_and_csv_tables_still_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from greenserv_core.evaluation import scoring
    from greenserv_core.evaluation.plots import plot_sweep

    table = OutcomeTable({name: [values[0]] for name, values in TABLE.columns.items()}, {"simulated": True})
    assert read_table(write_table(table, tmp_path / "t.csv")).columns == table.columns
    extra = r"greenserv bench needs the 'bench' extra \(pyarrow is missing\): pip install 'greenserv\[bench\]'"
    with pytest.raises(MissingExtraError, match=extra):
        write_table(table, tmp_path / "t.parquet")
    with pytest.raises(ImportError, match="'bench' extra"):
        plot_sweep({}, tmp_path / "sweep.png")
    scoring._rouge_scorer.cache_clear()
    try:
        with pytest.raises(MissingExtraError, match=r"rouge-score is missing"):
            scoring.rouge_l("a cat", "the cat")
    finally:
        scoring._rouge_scorer.cache_clear()
    calibration = tmp_path / "cal.csv"
    calibration.write_text(
        "model,task,accuracy,joules_per_token_p25,joules_per_token_median,joules_per_token_p75,max_new_tokens\n"
        "small,winogrande,0.5,0.05,0.06,0.07,1\n",
        encoding="utf-8",
    )
    args = ["bench", "simulate", "--calibration", str(calibration), "--out", str(tmp_path / "s.parquet")]
    assert cli.main([*args, "--queries-per-task", "3"]) == 2  # the prompts are read with pyarrow too
    assert "greenserv: error: greenserv bench needs the 'bench' extra (pyarrow" in capsys.readouterr().err
