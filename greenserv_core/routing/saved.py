"""A router's saved state: what :meth:`GreenServRouter.save` writes and ``load`` reads back.

The file holds the router's parameters (policy name and parameters, λ, seed, latency limit,
energy budget and cap),
its pool's model names in order, the feature extractor's clustering and the learner's state
(:meth:`RoutingLearner.state_dict`), as versioned JSON written atomically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from greenserv_core.backends.base import ModelBackend, check_backend
from greenserv_core.bandits import Policy, policy_names
from greenserv_core.budget import BudgetPacer, EnergyBudget
from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.pending import PendingStore
from greenserv_core.persistence import read_state, write_state

__all__ = ["read_router_state", "state_errors", "write_router_state"]

logger = logging.getLogger("greenserv")

STATE_FORMAT = "greenserv-router-state"
STATE_VERSION = 2
"""The version written. Version 2 is laid out as version 1; the number moved (2026-12-07) so
that GreenServ releases that read only version 1 refuse files whose later fields they would
misread (such as a decision scored before its outcome), rather than load them wrongly."""
OLDEST_STATE_VERSION = 1
"""The oldest version read."""


def write_router_state(path: str | Path, state: Mapping[str, Any]) -> None:
    write_state(path, dict(state), fmt=STATE_FORMAT, version=STATE_VERSION)


@contextmanager
def state_errors(path: str | Path) -> Iterator[None]:
    """Turn a missing or mistyped field of a saved state into a :class:`StateFileError`, and name
    the file in one raised below that does not."""
    try:
        yield
    except StateFileError as error:
        if str(path) in str(error):
            raise
        raise StateFileError(f"{path}: {error}") from error
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as error:
        raise StateFileError(f"{path} does not hold a compatible router state: {error!r}") from error


def read_router_state(
    path: str | Path,
    models: Sequence[ModelBackend],
    policy: Policy | None = None,
    pending: PendingStore | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The saved state, and the arguments that rebuild its router over ``models``: the saved
    models first, in their order, then the new ones. Every saved model must be in ``models``.
    A pending store that does not match the saved one (``pending`` given or not) is warned of."""
    if isinstance(models, (str, bytes, Mapping)) or not isinstance(models, Iterable):
        raise InvalidInputError(f"models must be a list of model backends, got {models!r}")
    models = [check_backend(model) for model in models]  # (a generator is read once)
    names = [m.info.name for m in models]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InvalidInputError(f"the pool names {twice} more than once: each model needs its own name")
    state = read_state(path, fmt=STATE_FORMAT, version=STATE_VERSION, oldest=OLDEST_STATE_VERSION)
    with state_errors(path):
        _check_pending_store(path, state["pending"], pending)
        by_name = dict(zip(names, models, strict=True))
        missing = [name for name in state["models"] if name not in by_name]
        if missing:
            raise StateFileError(f"saved state has models {missing} that are not in the pool {sorted(by_name)}")
        if policy is not None:
            _warn_of_other_settings(path, policy, state.get("policy_params") or {})
        elif str(state["strategy"]).partition(":")[0] not in policy_names():
            raise StateFileError(
                f"{path} was saved by the policy {state['strategy']!r}, which is not registered here: import the "
                "module that registers it (register_policy), or pass the policy itself (load(..., policy=...))"
            )
        ordered = [by_name[name] for name in state["models"]]
        ordered += [m for name, m in by_name.items() if name not in state["models"]]
        saved = state["pending"]
        arguments = {
            "models": ordered,
            "policy": policy if policy is not None else state["strategy"],
            "policy_params": None if policy is not None else state["policy_params"],
            "tradeoff": state["tradeoff"],
            "seed": state["seed"],
            "max_latency_s": state["max_latency_s"],
            "max_joules": state.get("max_joules"),
            "cascades": [(str(entry[0]), str(entry[1])) for entry in state.get("cascades", [])],
            "energy_budget": _saved_budget(state.get("energy_budget")),
            "max_pending": int(saved.get("max_size") or 100_000),  # a shared store saves no size
            "pending_ttl_s": float(saved["ttl_s"]),
        }
    return state, arguments


def _warn_of_other_settings(path: str | Path, policy: Policy, saved: Mapping[str, Any]) -> None:
    """Say which of the saved policy's settings the ``policy`` given changes (its own are used:
    a caller may mean to change them, but not unknowingly)."""
    given = policy.params()

    def same(a: object, b: object) -> bool:  # as the file holds them (a tuple saved is a list)
        return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)

    changed = sorted(key for key in saved if key in given and not same(saved[key], given[key]))
    priors = [key for key in changed if key in _PRIOR_SETTINGS]
    if changed:
        logger.warning(
            "%s: the policy given has %s where the state was saved with %s; the given policy's settings are used%s",
            path,
            ", ".join(f"{key}={given[key]!r}" for key in changed),
            ", ".join(f"{key}={saved[key]!r}" for key in changed),
            ""
            if not priors
            else " (the arms saved keep the prior they were saved with: "
            f"{', '.join(priors)} applies to arms added from now on)",
        )


_PRIOR_SETTINGS = frozenset({"l2", "prior_reward"})
"""A policy's settings that shape a new arm's prior, which an arm loaded keeps as saved."""


def _saved_budget(saved: Mapping[str, Any] | None) -> BudgetPacer | None:
    """The pacer of a saved budget, in the units it priced and with its settings (a state saved
    before they were saved gets the defaults); its learned state is loaded later."""
    if saved is None:
        return None
    settings = {k: v for k, v in dict(saved.get("settings") or {}).items() if k in BudgetPacer.SETTINGS}
    return BudgetPacer(EnergyBudget.from_dict(dict(saved)), price_on=saved.get("price_on", "joules"), **settings)


def _check_pending_store(path: str | Path, saved: Mapping[str, Any], given: PendingStore | None) -> None:
    shared = saved.get("store") == "redis"
    now = given.state_dict() if given is not None else {}
    if shared and given is None:
        logger.warning(
            "%s was saved with a shared (Redis) pending store; without pending= the loaded router keeps "
            "its pending decisions in the process, and feedback for the saved ones is refused",
            path,
        )
    elif shared and now.get("prefix") != saved.get("prefix"):
        logger.warning("%s was saved with the pending store %r; the store given is another", path, saved.get("prefix"))
    elif not shared and now.get("store") == "redis" and saved.get("items"):
        logger.warning(
            "%s holds %d pending decisions, which a shared store does not take; they are dropped",
            path,
            len(saved["items"]),
        )
