"""Every example runs and shows what it claims."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learning_from_feedback_prefers_the_cheap_model_where_it_is_as_good() -> None:
    late = load("learning_from_feedback").main()
    assert late["boolq"]["small"] > 0.8 * sum(late["boolq"].values())  # equal accuracy: the cheap one
    assert late["gsm8k"]["large"] > 0.8 * sum(late["gsm8k"].values())  # maths needs the large one
