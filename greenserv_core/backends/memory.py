"""A memory budget shared by local models: beyond it, idle models are unloaded least-recently-used."""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from collections import OrderedDict
from typing import Protocol

from greenserv_core.errors import InvalidInputError

__all__ = ["ModelMemory", "Unloadable", "default_memory"]

logger = logging.getLogger("greenserv")


class Unloadable(Protocol):
    @property
    def name(self) -> str: ...

    def unload(self) -> None: ...


class ModelMemory:
    """Tracks loaded models' bytes; ``budget_bytes=None`` means no limit.

    A model in use (between :meth:`acquire` and :meth:`release`) is never unloaded; if only
    busy models remain, the budget is exceeded rather than a generation broken. A model
    being unloaded is acquired only once it is out (then it loads again). Models are held
    weakly: a backend nobody uses any more is freed, and its bytes stop counting.

    >>> memory = ModelMemory(budget_bytes=100)
    >>> class M:
    ...     def __init__(self, name): self.name, self.unloaded = name, False
    ...     def unload(self): self.unloaded = True
    >>> a, b = M("a"), M("b")
    >>> memory.loaded(a, 60); memory.loaded(b, 60)
    >>> a.unloaded, memory.used_bytes
    (True, 60)
    """

    def __init__(self, budget_bytes: int | None = None) -> None:
        if budget_bytes is not None and budget_bytes <= 0:
            raise InvalidInputError(f"memory budget must be positive, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._sizes: OrderedDict[int, tuple[weakref.ref[Unloadable], int]] = OrderedDict()
        self._busy: dict[int, int] = {}
        self._unloading: set[int] = set()

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(size for ref, size in self._sizes.values() if ref() is not None)

    def acquire(self, model: Unloadable) -> None:
        with self._changed:
            while id(model) in self._unloading:  # not mid-unload: it loads again once out
                self._changed.wait()
            self._busy[id(model)] = self._busy.get(id(model), 0) + 1
            if id(model) in self._sizes:
                self._sizes.move_to_end(id(model))

    def release(self, model: Unloadable) -> None:
        """``model`` is no longer in use by one caller; once idle, the other idle models beyond
        the budget are unloaded (they may have been kept over it while it was busy), never the
        model just used (alone over the budget, it stays loaded, as after its load)."""
        with self._lock:
            count = self._busy.get(id(model), 0) - 1
            if count <= 0:
                self._busy.pop(id(model), None)
            else:
                self._busy[id(model)] = count
            victims = self._over_budget(keep=id(model)) if count <= 0 else []
        self._unload(victims)

    def loaded(self, model: Unloadable, size_bytes: int) -> None:
        """Record a freshly loaded model and unload idle ones until the budget holds."""
        with self._lock:
            self._sizes[id(model)] = (weakref.ref(model), size_bytes)
            self._sizes.move_to_end(id(model))
            victims = self._over_budget(keep=id(model))
        self._unload(victims)

    def _over_budget(self, keep: int | None) -> list[tuple[int, Unloadable, int]]:
        """Under the lock: the idle models to unload with their bytes, least recently used first,
        until the budget holds (never ``keep``), each marked as being unloaded and its bytes uncounted."""
        for key in [key for key, (ref, _) in self._sizes.items() if ref() is None]:
            del self._sizes[key]  # freed: its bytes are gone
        victims: list[tuple[int, Unloadable, int]] = []
        if self.budget_bytes is None:
            return victims
        used = sum(size for _, size in self._sizes.values())
        for key, (ref, size) in list(self._sizes.items()):
            other = ref()
            if used <= self.budget_bytes:
                break
            if other is None or key == keep or self._busy.get(key) or key in self._unloading:
                continue
            victims.append((key, other, size))
            self._unloading.add(key)  # acquired meanwhile, it waits until it is out
            del self._sizes[key]
            used -= size
        return victims

    def _unload(self, victims: list[tuple[int, Unloadable, int]]) -> None:
        """Unload each victim. One whose ``unload()`` fails is logged and the others are unloaded
        all the same; its weights are probably still resident, so its bytes count again (as the
        least recently used, tried first next time) and the budget may stay exceeded until then."""
        for key, victim, size in victims:
            try:
                logger.info("unloading %s to stay within the memory budget", victim.name)
                victim.unload()
            except Exception:
                logger.warning("could not unload %s; its bytes still count", victim.name, exc_info=True)
                with self._lock:
                    if key not in self._sizes:  # not recorded again meanwhile
                        self._sizes[key] = (weakref.ref(victim), size)
                        self._sizes.move_to_end(key, last=False)
            finally:
                with self._changed:
                    self._unloading.discard(key)
                    self._changed.notify_all()

    def forget(self, model: Unloadable) -> None:
        with self._lock:
            self._sizes.pop(id(model), None)


_default: ModelMemory | None = None
_default_lock = threading.Lock()


def default_memory() -> ModelMemory:
    """The process-wide budget, from ``GREENSERV_MEMORY_BUDGET_GB`` (unset: unlimited)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModelMemory(_budget_from_environment())
        return _default


def _budget_from_environment() -> int | None:
    """``GREENSERV_MEMORY_BUDGET_GB`` in bytes (unset or empty: ``None``, no limit)."""
    name = "GREENSERV_MEMORY_BUDGET_GB"
    value = os.environ.get(name)
    if not value:
        return None
    try:
        gigabytes = float(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number of gigabytes, such as 4, got {value!r}") from None
    if not 0 < gigabytes < math.inf or int(gigabytes * 1024**3) <= 0:
        raise InvalidInputError(f"{name} must be a positive finite number of gigabytes, got {value!r}")
    return int(gigabytes * 1024**3)
