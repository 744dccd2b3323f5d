"""The ``bench`` extra: packages that only benchmarks use (pyarrow, rouge-score, matplotlib).

Routing never imports them. Benchmark code imports them through :func:`bench_import`, which
names the extra when one is missing:

>>> bench_import("json").dumps([1])  # any module is imported the same way
'[1]'
>>> try:
...     bench_import("no_such_package.sub")
... except MissingExtraError as error:
...     print(error)
greenserv bench needs the 'bench' extra (no_such_package is missing): pip install 'greenserv[bench]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from greenserv_core.errors import GreenServError

__all__ = ["BENCH_PACKAGES", "MissingExtraError", "bench_import", "missing_extra"]

BENCH_PACKAGES = {
    "pyarrow": "pyarrow",
    "rouge_score": "rouge-score",
    "matplotlib": "matplotlib",
    "vowpalwabbit": "vowpalwabbit",
}
"""Import name → distribution name of each package in the ``bench`` extra."""


class MissingExtraError(GreenServError, ImportError):
    """A package of an optional extra is not installed; the message names the extra."""


def bench_import(module: str) -> ModuleType:
    """Import ``module`` (e.g. ``pyarrow.parquet``); :class:`MissingExtraError` if its package is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        root = module.partition(".")[0]
        if error.name is None or error.name.partition(".")[0] != root:
            raise  # something inside the package is missing: not the extra's fault
        raise _missing(BENCH_PACKAGES.get(root, root)) from error


def missing_extra(error: ModuleNotFoundError) -> MissingExtraError | None:
    """The :class:`MissingExtraError` that ``error`` means, if it is about a package of the extra.

    >>> str(missing_extra(ModuleNotFoundError("No module named 'pyarrow'", name="pyarrow.csv")))
    "greenserv bench needs the 'bench' extra (pyarrow is missing): pip install 'greenserv[bench]'"
    >>> missing_extra(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None
    True
    """
    root = (error.name or "").partition(".")[0]
    return _missing(BENCH_PACKAGES[root]) if root in BENCH_PACKAGES else None


def _missing(package: str) -> MissingExtraError:
    return MissingExtraError(
        f"greenserv bench needs the 'bench' extra ({package} is missing): pip install 'greenserv[bench]'"
    )
