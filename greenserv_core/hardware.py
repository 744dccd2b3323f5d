"""What the hardware runs natively, for choosing a precision."""

from __future__ import annotations

__all__ = ["bfloat16_is_fast", "cuda_bfloat16_is_native", "device_name"]


def bfloat16_is_fast(device: str = "cpu") -> bool:
    """Whether ``device`` runs bfloat16 matrix products in hardware: a CUDA GPU that supports
    bf16, or a CPU with AVX-512 BF16 / AMX (oneDNN). Elsewhere bf16 is emulated, and slower
    than float32.

    >>> isinstance(bfloat16_is_fast("cpu"), bool)
    True
    """
    import torch

    if device.startswith("cuda"):
        return cuda_bfloat16_is_native(device)
    if device.split(":")[0] != "cpu":  # ("cpu:0" is the CPU too)
        return False
    try:  # the CPU's own flags (private, so guarded); oneDNN's bf16 flag says yes on any AVX-512
        # CPU, where bf16 is emulated (Skylake-SP to Ice Lake)
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_bfloat16_is_native(device: str = "cuda") -> bool:
    """Whether the CUDA GPU ``device`` (``cuda``: the current one) has bfloat16 tensor cores
    (compute capability 8.0, Ampere, or later). ``torch.cuda.is_bf16_supported()`` also says
    yes where bf16 is only emulated (a T4, a V100), and asks about the current GPU only.

    >>> isinstance(cuda_bfloat16_is_native("cuda:0"), bool)
    True
    """
    import torch

    if not torch.cuda.is_available():
        return False
    major, _ = torch.cuda.get_device_capability(torch.device(device))
    return major >= 8


def device_name(device: str = "cpu") -> str:
    """The name of the processor behind ``device``: the GPU's for ``cuda``/``cuda:N``, else the
    CPU's (or, where the platform does not say, its architecture).

    >>> isinstance(device_name("cpu"), str)
    True
    """
    if device.startswith("cuda"):
        import torch

        return str(torch.cuda.get_device_name(torch.device(device)))
    import platform

    return platform.processor() or platform.machine()
