"""Where GreenServ keeps converted models and data: ``$GREENSERV_CACHE`` or the user cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """The cache root (created on demand).

    >>> import os; os.environ["GREENSERV_CACHE"] = "/tmp/gs-doc"; str(cache_dir())
    '/tmp/gs-doc'
    """
    override = os.environ.get("GREENSERV_CACHE")
    path = Path(override).expanduser() if override else Path(platformdirs.user_cache_dir("greenserv"))
    path.mkdir(parents=True, exist_ok=True)
    return path
