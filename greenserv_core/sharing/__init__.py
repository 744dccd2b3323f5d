"""Sharing one learned policy between router replicas (processes or machines).

* :class:`Statistics`: learned state as sums, minima and maxima that merge in any order;
* :class:`StateStore` and its implementations :class:`InMemoryStore`, :class:`FileStore`
  (the default: one machine, no server) and :class:`RedisStore`;
* :class:`SharedLearning`: pushes a router's changes and pulls the merged total on an interval.
"""

from greenserv_core.sharing.replica import SharedLearning, SyncReport
from greenserv_core.sharing.statistics import Statistics
from greenserv_core.sharing.stores import FileStore, InMemoryStore, RedisStore, StateStore

__all__ = ["FileStore", "InMemoryStore", "RedisStore", "SharedLearning", "StateStore", "Statistics", "SyncReport"]
