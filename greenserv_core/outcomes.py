"""Per-model estimates of what a generation costs (joules, seconds), learned from every call.

Each model has one ridge regression per quantity on ``[context vector, prompt_tokens/1000]``,
so cost can depend on the task type (short vs long answers), cluster, complexity and prompt
length. These are observed right after each generation, independent of user feedback.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import numpy as np

from greenserv_core.bandits.ridge import RidgeArm
from greenserv_core.errors import UnknownModelError
from greenserv_core.statistics import Statistics

__all__ = ["CostModel"]


class CostModel:
    """Ridge estimates of one non-negative quantity per model; ``None`` until first observed.

    >>> costs = CostModel(dimension=2)
    >>> costs.add_model("m")
    >>> costs.observe("m", np.array([1.0, 0.0]), prompt_tokens=1000, value=4.0)
    >>> round(costs.predict("m", np.array([1.0, 0.0]), prompt_tokens=1000), 3)
    3.98
    """

    def __init__(self, dimension: int, *, l2: float = 0.01) -> None:
        self.dimension = dimension
        self.l2 = l2
        self.models_: dict[str, RidgeArm] = {}

    def _x(self, context: np.ndarray, prompt_tokens: int) -> np.ndarray:
        return np.append(np.asarray(context, dtype=np.float64), prompt_tokens / 1000.0)

    def add_model(self, name: str) -> None:
        self.models_[name] = RidgeArm(self.dimension + 1, l2=self.l2)

    def remove_model(self, name: str) -> None:
        self.models_.pop(name, None)

    def observe(self, name: str, context: np.ndarray, prompt_tokens: int, value: float) -> None:
        if name not in self.models_:
            raise UnknownModelError(f"unknown model {name!r}")
        self.models_[name].update(self._x(context, prompt_tokens), float(value))

    def predict(self, name: str, context: np.ndarray, prompt_tokens: int) -> float | None:
        """Estimated value (never negative), or ``None`` for a model not yet observed."""
        return self.predict_all([name], context, prompt_tokens)[name]

    def predict_all(self, names: list[str], context: np.ndarray, prompt_tokens: int) -> dict[str, float | None]:
        """:meth:`predict` for several models, building the feature vector once."""
        x = self._x(context, prompt_tokens)
        out: dict[str, float | None] = {}
        for name in names:
            model = self.models_.get(name)
            out[name] = None if model is None or model.n == 0 else max(0.0, model.predict(x))
        return out

    def statistics(self) -> Statistics:
        """Every model's ridge sums, under its percent-encoded name."""
        return Statistics.join({quote(name, safe=""): arm.statistics() for name, arm in self.models_.items()})

    def load_statistics(self, stats: Statistics) -> None:
        """Set the models this cost model has from ``stats`` (others are skipped)."""
        for name, arm in self.models_.items():
            arm.load_statistics(stats.under(quote(name, safe="")))

    def state_dict(self) -> dict[str, Any]:
        return {"l2": self.l2, "models": {name: arm.state_dict() for name, arm in self.models_.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.l2 = float(state["l2"])
        models = {}
        for name, data in state["models"].items():
            arm = RidgeArm(self.dimension + 1, l2=self.l2)
            arm.load_state_dict(data)
            models[name] = arm
        self.models_ = models
