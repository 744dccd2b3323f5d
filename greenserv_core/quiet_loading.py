"""Loading models without third-party progress bars on the user's first screen.

>>> with quiet_loading():
...     pass
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_loading"]

_quiet_lock = threading.Lock()
_quiet_depth = 0
_bars_were_on = False


@contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' progress bars ("Loading weights" …) off inside the block (nestable and
    thread-safe; they are back on after the last block if they were on before it)."""
    global _quiet_depth, _bars_were_on
    from transformers.utils import logging as hf_logging

    with _quiet_lock:
        if _quiet_depth == 0:
            _bars_were_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _bars_were_on:
                hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
