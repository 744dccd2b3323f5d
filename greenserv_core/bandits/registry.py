"""Policies by name. A policy class registers itself with ``@register_policy`` under its
``name``; :func:`make_policy` builds one from a strategy string (``linucb``, ``static:MODEL`` …)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from greenserv_core.bandits.base import Policy
from greenserv_core.errors import InvalidInputError
from greenserv_core.registration import claim_name

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "ROUTER_SET",
    "check_policy_params",
    "make_policy",
    "policy_names",
    "register_policy",
    "strategy_forms",
    "unregister_policy",
]

DEFAULT_POLICY = "epsilon"
"""The policy of a router, adapter or ``greenserv chat`` that names none: contextual ε-greedy,
chosen from the replays of BENCHMARKS.md (issue 15) on the simulated paper-scale table, the
real table and the synthetic world, against LinUCB, Thompson sampling and the peers."""

POLICIES: dict[str, type[Policy]] = {}
"""Every registered policy class by its ``name`` (filled by :func:`register_policy`)."""

_P = TypeVar("_P", bound=type[Policy])


def register_policy(cls: _P) -> _P:
    """Class decorator: make ``cls`` available to :func:`make_policy` as ``cls.name``.

    >>> from greenserv_core.bandits.random_policy import RandomPolicy
    >>> @register_policy
    ... class Coin(RandomPolicy):
    ...     name = "coin"
    >>> make_policy("coin", 2).name
    'coin'
    >>> unregister_policy("coin")
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or ":" in name:
        raise InvalidInputError(f"policy {cls.__name__} needs a class attribute name without ':', got {name!r}")
    claim_name("policy", name, POLICIES.get(name), cls)
    POLICIES[name] = cls
    return cls


def unregister_policy(name: str) -> None:
    """Forget the policy registered as ``name`` (no error if there is none)."""
    POLICIES.pop(name, None)


def policy_names() -> list[str]:
    """The registered policy names, sorted (one with a ``strategy_argument`` is used as
    ``NAME:ARGUMENT``, e.g. ``static:MODEL``).

    >>> {"linucb", "static"} <= set(policy_names())
    True
    """
    return sorted(POLICIES)


def strategy_forms() -> list[str]:
    """How each registered policy is named as a strategy: its name, followed by
    ``:ARGUMENT`` for one that takes a ``strategy_argument``.

    >>> "static:ARM" in strategy_forms() and "linucb" in strategy_forms()
    True
    """
    return [
        name if cls.strategy_argument is None else f"{name}:{cls.strategy_argument.upper()}"
        for name, cls in sorted(POLICIES.items())
    ]


ROUTER_SET = ("dimension", "seed", "strategy")
"""What a router (or a replay) sets of its policy: never a policy parameter."""


def check_policy_params(
    params: Mapping[str, Any], name: str = "policy parameters", seed: str = "GreenServRouter(seed=...)"
) -> None:
    """Refuse policy parameters (given as ``name``) that the router sets itself (:data:`ROUTER_SET`);
    the error says to give the seed as ``seed`` says.

    >>> check_policy_params({"alpha": 0.5})
    >>> check_policy_params({"seed": 3})
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: policy parameters cannot set seed: the router sets its policy's ...
    """
    named = [key for key in params if not isinstance(key, str)]
    if named:
        raise InvalidInputError(f"{name} are named by strings, got the keys {named!r}")
    taken = sorted(set(ROUTER_SET) & set(params))
    if taken:
        raise InvalidInputError(
            f"{name} cannot set {', '.join(taken)}: the router sets its policy's seed, dimension and strategy "
            f"(give {seed} for the seed)"
        )


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
        raise InvalidInputError(f"unknown strategy {strategy!r}; choose one of {', '.join(strategy_forms())}")
    keyword = POLICIES[name].strategy_argument
    if keyword is not None:
        if argument and keyword in params and params[keyword] != argument:  # "static:big" with arm="small"
            raise InvalidInputError(
                f"strategy {strategy!r} names its {keyword} after ':' and {keyword}={params[keyword]!r} names "
                "another: give one"
            )
        params.setdefault(keyword, argument)
    elif argument:
        raise InvalidInputError(f"strategy {name!r} takes no ':' argument")
    try:
        return POLICIES[name](dimension, seed=seed, **params)
    except (TypeError, InvalidInputError) as error:
        given = ", ".join(f"{key}={value!r}" for key, value in params.items())
        raise InvalidInputError(f"bad parameters for {name!r} ({given}): {error}") from error
