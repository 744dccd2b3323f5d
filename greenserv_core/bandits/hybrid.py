"""Shared structure across arms: a hybrid ridge fitted over a :class:`RidgeStack`.

Every arm's coefficients are ``θ_m = β + γ_m``. ``β`` is shared by all arms: how the context
moves every model's reward alike (a hard task type or cluster is hard for all of them). ``γ_m``
is the arm's own part: its intercept (its general ability) is held only by the arm's ``l2``,
and every other coefficient (how this model departs from the others on this task, cluster or
complexity) by ``share`` pseudo-observations towards zero. This is the hybrid linear model of
Li et al. (2010, "A contextual-bandit approach to personalized news article recommendation")
with the context as the shared features and no arm features, and it is the ability ×
difficulty shape of an item-response model: an arm that has never answered a task type starts
from its own ability plus what the other arms found about that task type.

The fit needs only each arm's sums ``Σ x xᵀ`` and ``Σ r x``, which the stack already keeps (so
replicas still share plain sums). With ``M`` arms of dimension ``d`` it is one batched
``d × d`` inversion per arm and one ``d × d`` solve, about 0.1 ms at 16 arms and ``d = 16``; a
policy refits only when the stack changed (:attr:`RidgeStack.version`).

Minimising ``Σ_m ‖r_m − X_m(β + γ_m)‖² + Σ_m (γ_m − μ_m)ᵀΛ_m(γ_m − μ_m) + l2·‖β‖²`` gives, with
``S_m = Σ x xᵀ``, ``s_m = Σ r x``, ``P_m = (S_m + Λ_m)⁻¹`` and ``l2`` the arms' own (their mean if
saved states gave them different ones), so that a loaded stack fits as the one that was saved::

    β   = (l2·I + Σ_m S_m − S_m P_m S_m)⁻¹ · Σ_m (s_m − S_m P_m (s_m + Λ_m μ_m))
    γ_m = P_m (s_m + Λ_m μ_m − S_m β)

``P_m`` is the width of arm ``m``'s own part, which LinUCB and Thompson sampling use for their
bonus (the uncertainty of the shared ``β``, learned from every arm, is left out).

>>> import numpy as np
>>> stack = RidgeStack(2, l2=1.0)
>>> for arm in ("a", "b", "c"): stack.add(arm)
>>> for _ in range(20):
...     stack.update("a", np.array([1.0, 1.0]), 0.2)   # task 1 is hard for a and b ...
...     stack.update("b", np.array([1.0, 1.0]), 0.3)
...     stack.update("c", np.array([1.0, 0.0]), 0.9)   # ... c was never asked it
>>> fit = fit_hybrid(stack, share=10.0)
>>> float(np.round(fit.theta @ np.array([1.0, 1.0]), 2)[2]) < 0.9   # so c is expected to find it hard too
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from greenserv_core.bandits.ridges import RidgeStack

__all__ = ["HybridFit", "fit_hybrid"]


@dataclass(frozen=True)
class HybridFit:
    """The hybrid coefficients of every arm of a stack, in its row order."""

    theta: np.ndarray
    """``β + γ_m`` per arm, shape ``(arms, d)``."""
    own_inverse: np.ndarray
    """``P_m = (S_m + Λ_m)⁻¹`` per arm, shape ``(arms, d, d)``: the width of the arm's own part."""
    shared: np.ndarray
    """``β``, shape ``(d,)``."""

    def variance(self, x: np.ndarray) -> np.ndarray:
        """``xᵀ P_m x`` of every arm (never negative)."""
        variance: np.ndarray = np.maximum(np.einsum("kij,i,j->k", self.own_inverse, x, x), 0.0)
        return variance


def fit_hybrid(stack: RidgeStack, share: float) -> HybridFit:
    """Fit ``θ_m = β + γ_m`` on the stack's sums (see the module). ``β`` is fitted on the arms'
    data alone and held by the arms' ``l2`` (:attr:`RidgeStack.l2s`, see the module); an arm's
    pseudo-observations (:meth:`RidgeStack.add_prior`, a model card's scores) then count as its data for its own
    part ``γ_m`` only, so that one model's prior says nothing of the others; its prior mean is
    the mean of ``γ_m``."""
    size, d = len(stack), stack.dimension
    if size == 0:
        return HybridFit(np.zeros((0, d)), np.zeros((0, d, d)), np.zeros(d))
    eye = np.eye(d)
    l2s = stack.l2s
    l2 = float(l2s[0] if (l2s == l2s[0]).all() else l2s.mean())  # a loaded state's l2, not the stack's
    sums_xx = stack.A - l2s[:, None, None] * eye
    sums_rx = stack.b - l2s[:, None] * stack.prior_mean
    strengths = np.full((size, d), float(share))
    strengths[:, 0] = l2s
    own_inverse = np.linalg.inv(sums_xx + strengths[:, :, None] * eye)
    pulled = sums_rx + strengths * stack.prior_mean
    if stack.prior_xx.any() or stack.prior_yx.any():  # β from the data alone, without the priors
        data_xx, data_rx = sums_xx - stack.prior_xx, sums_rx - stack.prior_yx
        data_inverse = np.linalg.inv(data_xx + strengths[:, :, None] * eye)
        shared = _shared(l2, data_xx, data_rx, data_inverse, data_rx + strengths * stack.prior_mean)
    else:
        shared = _shared(l2, sums_xx, sums_rx, own_inverse, pulled)
    own = np.einsum("kij,kj->ki", own_inverse, pulled - sums_xx @ shared)
    return HybridFit(shared + own, own_inverse, shared)


def _shared(
    l2: float, sums_xx: np.ndarray, sums_rx: np.ndarray, own_inverse: np.ndarray, pulled: np.ndarray
) -> np.ndarray:
    """``β`` of the module's formula, from the arms' sums and the widths of their own parts."""
    eye = np.eye(sums_xx.shape[-1])
    xx_p = sums_xx @ own_inverse
    gram = l2 * eye + (sums_xx - xx_p @ sums_xx).sum(axis=0)
    target = (sums_rx - np.einsum("kij,kj->ki", xx_p, pulled)).sum(axis=0)
    shared: np.ndarray = np.linalg.solve(gram, target)
    return shared
