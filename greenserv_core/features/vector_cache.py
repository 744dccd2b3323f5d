"""A thread-safe LRU cache of embedding vectors by text, shared by the bundled embedders.

>>> import numpy as np
>>> cache = LRUCache(1)
>>> cache.put("a", np.zeros(2)); cache.put("b", np.ones(2))
>>> cache.get("a") is None, cache.get("b").tolist()
(True, [1.0, 1.0])
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

__all__ = ["LRUCache"]


class LRUCache:
    """The ``size`` most recently used vectors by text (``size`` 0 keeps nothing)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: np.ndarray) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
