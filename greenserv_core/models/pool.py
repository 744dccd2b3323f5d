"""Turn a simple ``models=[...]`` argument (as the adapters and the CLI take it) into model backends.

A string is an address, resolved by the registered address schemes
(:mod:`greenserv_core.backends.registry`): a bundled model name, a remote
``<base URL>#<model id>``, a local model directory, or any scheme a plug-in registers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from greenserv_core.backends.base import ModelBackend
from greenserv_core.backends.registry import address_schemes, backend_from_address
from greenserv_core.backends.transformers import TransformersBackend
from greenserv_core.errors import InvalidInputError
from greenserv_core.models.bundled import bundled_pool
from greenserv_core.models.spec import ModelSpec

__all__ = ["build_backends", "resolve_model"]


def resolve_model(item: Any, meter: str = "auto") -> ModelBackend:
    """One backend: ``item`` as is if it is a :class:`ModelBackend`, a
    :class:`~greenserv_core.backends.transformers.TransformersBackend` for a :class:`ModelSpec`,
    or the backend its address scheme builds for a string.

    >>> resolve_model("http://gpu-1:8000/v1#qwen").info.name
    'qwen'
    """
    if isinstance(item, ModelBackend):
        return item
    if isinstance(item, ModelSpec):
        return TransformersBackend(item, meter=meter)
    if isinstance(item, str):
        return backend_from_address(item, meter)
    schemes = ", ".join(s.describes for s in address_schemes())
    raise InvalidInputError(  # its text is not shown: it may hold a key
        f"cannot use a {type(item).__name__} as a model: give {schemes}, a ModelSpec or a ModelBackend"
    )


def build_backends(models: Sequence[Any] | None, meter: str = "auto") -> list[ModelBackend]:
    """``None``: the bundled pool; else :func:`resolve_model` of each item. ``meter`` is checked
    first (``auto`` or a registered meter's name), before any model is built or loaded."""
    from greenserv_core.energy.registry import meter_names

    if meter != "auto" and meter not in meter_names():
        raise InvalidInputError(f"unknown energy meter {meter!r}; choose one of {meter_names()}")
    if models is None:
        return list(bundled_pool(meter=meter))
    return [resolve_model(item, meter) for item in models]
