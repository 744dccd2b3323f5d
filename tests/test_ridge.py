"""Sherman–Morrison updates equal the closed-form ridge solution."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from greenserv_core.bandits import RidgeArm
from greenserv_core.errors import InvalidInputError

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    data=st.integers(1, 6).flatmap(
        lambda d: st.tuples(
            st.just(d),
            st.integers(1, 40).flatmap(
                lambda n: st.tuples(
                    arrays(np.float64, (n, d), elements=finite), arrays(np.float64, (n,), elements=finite)
                )
            ),
        )
    ),
    l2=st.floats(0.1, 10),
    prior=st.floats(-1, 1),
)
def test_rank_one_updates_equal_closed_form(data, l2: float, prior: float) -> None:  # type: ignore[no-untyped-def]
    d, (X, y) = data
    theta0 = np.zeros(d)
    theta0[0] = prior
    arm = RidgeArm(d, l2=l2, prior_mean=theta0, refresh_every=0)
    for x_i, y_i in zip(X, y, strict=True):
        arm.update(x_i, float(y_i))
    A = l2 * np.eye(d) + X.T @ X
    closed = np.linalg.solve(A, l2 * theta0 + X.T @ y)
    np.testing.assert_allclose(arm.theta, closed, atol=1e-8, rtol=0)
    np.testing.assert_allclose(arm.A_inv, np.linalg.inv(A), atol=1e-8, rtol=0)


def test_refresh_keeps_long_runs_exact() -> None:
    rng = np.random.default_rng(0)
    d = 16
    arm = RidgeArm(d, l2=1.0, refresh_every=500)
    X = (rng.random((5000, d)) < 0.3).astype(float)
    X[:, 0] = 1.0
    y = rng.random(5000)
    for x_i, y_i in zip(X, y, strict=True):
        arm.update(x_i, float(y_i))
    closed = np.linalg.solve(np.eye(d) + X.T @ X, X.T @ y)
    np.testing.assert_allclose(arm.theta, closed, atol=1e-8, rtol=0)


def test_variance_shrinks_with_data() -> None:
    arm = RidgeArm(3)
    x = np.array([1.0, 0.0, 1.0])
    before = arm.variance(x)
    for _ in range(10):
        arm.update(x, 1.0)
    assert arm.variance(x) < before / 5


def test_an_update_whose_inverse_step_would_overflow_is_refused_and_changes_nothing() -> None:
    import pytest

    from greenserv_core.bandits import RidgeStack
    from greenserv_core.errors import InvalidInputError

    for l2, x in ((1e-8, [1e150, 0.0]), (1.0, [1e154, 1e154])):  # A's entries finite, A⁻¹'s step not
        stack = RidgeStack(2, l2=l2)
        stack.add("a")
        with pytest.raises(InvalidInputError, match="overflows"):  # was accepted: A⁻¹ -inf, θ NaN
            stack.update("a", np.array(x), 0.0)
        np.testing.assert_array_equal(stack.A_inv[0], np.eye(2) / l2)
        stack.update("a", np.array([1e3, 0.0]), 1.0)  # a large context that fits is still learned
        assert np.all(np.isfinite(stack.theta[0]))


def test_a_ridge_refuses_settings_it_cannot_learn_with_by_name() -> None:
    from greenserv_core.bandits.ridges import RidgeStack

    with pytest.raises(InvalidInputError, match="prior_mean must be 2 finite numbers"):
        RidgeStack(2, prior_mean=np.zeros(3))  # accepted; the first arm failed to be added
    with pytest.raises(InvalidInputError, match="forget must be a finite number"):
        RidgeArm(2, forget="x")  # type: ignore[arg-type]  # a bare TypeError
    with pytest.raises(InvalidInputError, match="dimension"):
        RidgeStack(0)
