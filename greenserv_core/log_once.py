"""Warnings said once per process: the same message to the same logger again is dropped."""

from __future__ import annotations

import logging
import threading

__all__ = ["warn_once"]

_LOCK = threading.Lock()
_SAID: set[tuple[str, str]] = set()
"""The (logger name, message) pairs already said."""


def warn_once(logger: logging.Logger, message: str, *args: object) -> bool:
    """Log ``message % args`` as a warning on ``logger`` unless this process already has (from
    any thread); return whether it did.

    >>> import logging
    >>> log = logging.getLogger("greenserv.doc")
    >>> warn_once(log, "the %s is %s", "sky", "green"), warn_once(log, "the %s is %s", "sky", "green")
    (True, False)
    """
    key = (logger.name, message % args if args else message)
    with _LOCK:
        if key in _SAID:
            return False
        _SAID.add(key)
    logger.warning(message, *args)
    return True
