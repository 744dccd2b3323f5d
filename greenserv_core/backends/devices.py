"""Device placement, dtype choice and one lock per device (generations are serialised per
device, so a device-wide energy counter measures one generation at a time)."""

from __future__ import annotations

import threading
from typing import Any

from greenserv_core.errors import InvalidInputError
from greenserv_core.hardware import cuda_bfloat16_is_native

__all__ = ["cuda_index", "device_lock", "pick_device", "pick_dtype"]

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def pick_device(requested: str | None = None) -> str:
    """``requested``, else ``cuda`` when a GPU is visible, else ``cpu``. A device torch does not
    know, or a CUDA device where torch sees no GPU, is :class:`InvalidInputError` (rather than
    a failure at the first answer, after the weights load).

    >>> pick_device("cpu")
    'cpu'
    >>> pick_device("cdua")
    Traceback (most recent call last):
    ...
    greenserv_core.errors.InvalidInputError: unknown device 'cdua': use e.g. 'cpu', 'cuda' or 'cuda:1'
    """
    import torch

    if not requested:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as error:
        raise InvalidInputError(f"unknown device {requested!r}: use e.g. 'cpu', 'cuda' or 'cuda:1'") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(f"device {requested!r}: torch sees no CUDA GPU here (use 'cpu')")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidInputError(
                f"device {requested!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s) here, "
                f"numbered from 0 (use e.g. 'cuda:0')"
            )
    elif device.type != "cpu" and not _available(torch, device.type):  # meta, hip, xla, …
        raise InvalidInputError(f"device {requested!r}: torch cannot run a model there on this machine (use 'cpu')")
    return requested


def _available(torch: Any, kind: str) -> bool:
    """Whether torch can run models on devices of type ``kind`` here (never on ``meta``)."""
    if kind == "meta":
        return False
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        return bool(backend is not None and backend.is_available())
    module = getattr(torch, kind, None)
    available = getattr(module, "is_available", None)
    try:
        return bool(callable(available) and available())
    except Exception:  # (a backend module that cannot answer here)
        return False


def pick_dtype(device: str, requested: str | None = None) -> Any:
    """``requested`` (a torch floating-point dtype's name), else (``None`` or ``"auto"``)
    bfloat16 on GPUs that support it (else float16) and float32 on the CPU. On the CPU,
    bfloat16 does not pay for these small models, even with AMX: their latency in bf16 was
    0.95–1.04× their latency in float32 (BENCHMARKS.md), since decoding one token at a time is
    bound by overhead, not by matrix products.
    """
    import torch

    if requested and requested != "auto":
        dtype = getattr(torch, requested, None) if isinstance(requested, str) else None
        if not isinstance(dtype, torch.dtype):
            raise InvalidInputError(f"unknown dtype {requested!r}; use e.g. 'float32' or 'bfloat16'")
        if not dtype.is_floating_point or dtype.itemsize < 2:  # (an integer, a bool, an 8-bit float)
            raise InvalidInputError(
                f"dtype {requested!r} cannot hold a model's weights to run; use e.g. 'float32' or 'bfloat16'"
            )
        return dtype
    if device.startswith("cuda"):
        return torch.bfloat16 if cuda_bfloat16_is_native(device) else torch.float16
    return torch.float32


def cuda_index(device: str) -> int:
    """The index of the GPU a ``cuda`` or ``cuda:N`` device names (``cuda``: torch's current one).

    >>> cuda_index("cuda:1")
    1
    """
    if device.startswith("cuda:"):
        return int(device.split(":")[1])
    import torch

    return int(torch.cuda.current_device()) if torch.cuda.is_available() else 0


def device_lock(device: str) -> threading.Lock:
    """The lock of a device (``cuda`` and ``cuda:0`` share one, as do ``cpu`` and ``cpu:N``: the
    CPU-time estimate counts the whole process, so CPU generations must not overlap)."""
    key = f"cuda:{cuda_index(device)}" if device.startswith("cuda") else "cpu" if device.startswith("cpu") else device
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())
