"""Bandit policies, one file each, behind one interface (:class:`Policy`)."""

from greenserv_core.bandits.base import ArmScore, Choice, Policy, StatelessArmsPolicy
from greenserv_core.bandits.epsilon_greedy import EpsilonGreedy
from greenserv_core.bandits.epsilon_greedy_noncontextual import EpsilonGreedyNonContextual
from greenserv_core.bandits.linear import LinearPolicy
from greenserv_core.bandits.linucb import LinUCB
from greenserv_core.bandits.random_policy import RandomPolicy
from greenserv_core.bandits.registry import POLICIES, make_policy
from greenserv_core.bandits.ridge import RidgeArm
from greenserv_core.bandits.static import StaticPolicy
from greenserv_core.bandits.thompson import LinearThompson

__all__ = [
    "POLICIES",
    "ArmScore",
    "Choice",
    "EpsilonGreedy",
    "EpsilonGreedyNonContextual",
    "LinUCB",
    "LinearPolicy",
    "LinearThompson",
    "Policy",
    "RandomPolicy",
    "RidgeArm",
    "StatelessArmsPolicy",
    "StaticPolicy",
    "make_policy",
]
