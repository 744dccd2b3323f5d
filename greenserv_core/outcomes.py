"""Per-model estimates of what a generation costs (joules, seconds), learned from every call.

Each model has one ridge regression per quantity on ``[context vector, prompt_tokens/1000]``,
so cost can depend on the task type (short vs long answers), cluster, complexity and prompt
length. These are observed right after each generation, independent of user feedback. All
models' regressions are stacked (:class:`~greenserv_core.bandits.ridges.RidgeStack`), so
predicting for the whole pool is one matrix-vector product (:meth:`CostModel.predict_array`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from greenserv_core.bandits.ridge import RidgeArm
from greenserv_core.bandits.ridges import RidgeStack
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
        self.ridge_ = RidgeStack(dimension + 1, l2=l2)
        """Every model's regression, one row each."""
        self.models_: dict[str, RidgeArm] = {}
        """A view of each model's row."""

    def _x(self, context: np.ndarray, prompt_tokens: int) -> np.ndarray:
        x = np.empty(self.dimension + 1)
        x[:-1] = context
        x[-1] = prompt_tokens / 1000.0
        return x

    def add_model(self, name: str) -> None:
        """A new model, not yet observed (one already here starts afresh)."""
        self.remove_model(name)
        self.ridge_.add(name)
        self.models_[name] = RidgeArm.of(self.ridge_, name)

    def remove_model(self, name: str) -> None:
        if self.models_.pop(name, None) is not None:
            self.ridge_.remove(name)

    def observe(self, name: str, context: np.ndarray, prompt_tokens: int, value: float) -> None:
        self.observe_checked(self.check_observation(name, context, prompt_tokens, value))

    def check_observation(
        self, name: str, context: np.ndarray, prompt_tokens: int, value: float
    ) -> tuple[int, np.ndarray, float]:
        """Raise as :meth:`observe` would refuse ``value`` (an unknown model, sums that would
        overflow), changing nothing: a caller that learns several things checks each first,
        then makes each with :meth:`observe_checked`."""
        if name not in self.models_:
            raise UnknownModelError(f"unknown model {name!r}")
        return self.ridge_.checked_update(name, self._x(context, prompt_tokens), float(value))

    def observe_checked(self, checked: tuple[int, np.ndarray, float]) -> None:
        """:meth:`observe` with what :meth:`check_observation` returned (nothing changed since)."""
        self.ridge_.apply_update(checked)

    def predict(self, name: str, context: np.ndarray, prompt_tokens: int) -> float | None:
        """Estimated value (never negative), or ``None`` for a model not yet observed."""
        return self.predict_all([name], context, prompt_tokens)[name]

    def predict_all(self, names: Sequence[str], context: np.ndarray, prompt_tokens: int) -> dict[str, float | None]:
        """:meth:`predict` for several models, building the feature vector once."""
        values = self.predict_array(names, context, prompt_tokens)
        return {name: None if np.isnan(value) else float(value) for name, value in zip(names, values, strict=True)}

    def predict_array(self, names: Sequence[str], context: np.ndarray, prompt_tokens: int) -> np.ndarray:
        """:meth:`predict` of each of ``names`` as one array, NaN for a model not yet observed
        (or not known): one matrix-vector product over all models.

        >>> costs = CostModel(dimension=1); costs.add_model("a"); costs.add_model("b")
        >>> costs.observe("b", np.ones(1), prompt_tokens=0, value=2.0)
        >>> costs.predict_array(["a", "b"], np.ones(1), prompt_tokens=0).round(2).tolist()
        [nan, 1.98]
        """
        stack = self.ridge_
        try:
            rows = stack.rows(names)
        except UnknownModelError:
            positions = [i for i, name in enumerate(names) if name in stack]
            out = np.full(len(names), np.nan)
            out[positions] = self.predict_array([names[i] for i in positions], context, prompt_tokens)
            return out
        predicted: np.ndarray = np.maximum(0.0, stack.predict(self._x(context, prompt_tokens))[rows])
        predicted[stack.n[rows] == 0] = np.nan
        return predicted

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
        l2 = float(state["l2"])
        stack = RidgeStack(self.dimension + 1, l2=l2)
        for name, data in state["models"].items():
            stack.add(name)
            stack.load_state_dict(name, data)
        self.l2, self.ridge_ = l2, stack
        self.models_ = {name: RidgeArm.of(stack, name) for name in stack.names}
