"""Sharing one learned policy between router replicas (processes or machines).

* :class:`Statistics` (from :mod:`greenserv_core.statistics`): learned state as sums, minima
  and maxima that merge in any order; a router shares through the small
  :class:`SharedLearner` protocol and never imports this package;
* :class:`StateStore` and its implementations :class:`InMemoryStore`, :class:`FileStore`
  (the default: one machine, no server) and :class:`RedisStore`;
* :class:`SharedLearning`: pushes a router's changes and pulls the merged total on an interval;
* :class:`RedisPendingDecisions`: decisions awaiting feedback, shared, so that feedback may
  reach any replica.
"""

from greenserv_core.sharing.pending_redis import RedisPendingDecisions
from greenserv_core.sharing.replica import SharedLearner, SharedLearning, SyncReport
from greenserv_core.sharing.stores import FileStore, InMemoryStore, KeepsReceipts, RedisStore, StateStore
from greenserv_core.statistics import Statistics

__all__ = [
    "FileStore",
    "InMemoryStore",
    "KeepsReceipts",
    "RedisPendingDecisions",
    "RedisStore",
    "SharedLearner",
    "SharedLearning",
    "StateStore",
    "Statistics",
    "SyncReport",
]
