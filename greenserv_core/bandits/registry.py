"""Build a policy from its name: ``linucb``, ``thompson``, ``epsilon``, ``epsilon-nc``,
``random``, ``static:MODEL``."""

from __future__ import annotations

from typing import Any

from greenserv_core.bandits.base import Policy
from greenserv_core.bandits.epsilon_greedy import EpsilonGreedy
from greenserv_core.bandits.epsilon_greedy_noncontextual import EpsilonGreedyNonContextual
from greenserv_core.bandits.linucb import LinUCB
from greenserv_core.bandits.random_policy import RandomPolicy
from greenserv_core.bandits.static import StaticPolicy
from greenserv_core.bandits.thompson import LinearThompson
from greenserv_core.errors import InvalidInputError

__all__ = ["POLICIES", "make_policy"]

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (LinUCB, LinearThompson, EpsilonGreedy, EpsilonGreedyNonContextual, RandomPolicy, StaticPolicy)
}


def make_policy(strategy: str, dimension: int, *, seed: int | None = None, **params: Any) -> Policy:
    """A fresh policy.

    >>> make_policy("static:big", 4).arm
    'big'
    >>> make_policy("linucb", 4, alpha=0.5).alpha
    0.5
    """
    if not isinstance(strategy, str):
        raise InvalidInputError(f"strategy must be a string, got {type(strategy).__name__}")
    name, _, argument = strategy.partition(":")
    if name not in POLICIES:
        raise InvalidInputError(
            f"unknown strategy {strategy!r}; choose one of {sorted(POLICIES)} (static as 'static:MODEL')"
        )
    if name == "static":
        params.setdefault("arm", argument)
    elif argument:
        raise InvalidInputError(f"strategy {name!r} takes no ':' argument")
    try:
        return POLICIES[name](dimension, seed=seed, **params)
    except TypeError as error:
        raise InvalidInputError(f"bad parameters for {name!r}: {error}") from error
