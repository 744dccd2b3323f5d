"""Bandit policies, one file each, behind one interface (:class:`Policy`).

To add a policy, drop one file here with a :class:`Policy` subclass that has a ``name`` and
the ``@register_policy`` decorator: every module of this package is imported with it, so the
policy is then a ``strategy=`` of the router and a name in :func:`policy_names`. It gives
each arm's estimate and bonus with ``_estimates`` (a dict, arm by arm), or with
``_estimate_arrays`` (two arrays, every arm at once: what the linear policies do over their
stacked :class:`RidgeStack`, so a decision over a thousand arms is a few array operations).
"""

import importlib
import pkgutil

from greenserv_core.bandits.base import ArmPrior, ArmScore, ArmScores, ArmValues, Choice, Policy, StatelessArmsPolicy
from greenserv_core.bandits.epsilon_greedy import EpsilonGreedy
from greenserv_core.bandits.epsilon_greedy_noncontextual import EpsilonGreedyNonContextual
from greenserv_core.bandits.linear import LinearPolicy
from greenserv_core.bandits.linucb import LinUCB
from greenserv_core.bandits.random_policy import RandomPolicy
from greenserv_core.bandits.registry import (
    DEFAULT_POLICY,
    POLICIES,
    make_policy,
    policy_names,
    register_policy,
    unregister_policy,
)
from greenserv_core.bandits.ridge import RidgeArm
from greenserv_core.bandits.ridges import RidgeStack
from greenserv_core.bandits.static import StaticPolicy
from greenserv_core.bandits.thompson import LinearThompson

for _module in pkgutil.iter_modules(__path__):  # policies in files beyond those above register too
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "ArmPrior",
    "ArmScore",
    "ArmScores",
    "ArmValues",
    "Choice",
    "EpsilonGreedy",
    "EpsilonGreedyNonContextual",
    "LinUCB",
    "LinearPolicy",
    "LinearThompson",
    "Policy",
    "RandomPolicy",
    "RidgeArm",
    "RidgeStack",
    "StatelessArmsPolicy",
    "StaticPolicy",
    "make_policy",
    "policy_names",
    "register_policy",
    "unregister_policy",
]
