"""Turn a simple ``models=[...]`` argument (as the adapters take it) into model backends."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from greenserv_core.backends.base import ModelBackend
from greenserv_core.errors import InvalidInputError
from greenserv_core.models.bundled import BUNDLED_MODELS, bundled_pool
from greenserv_core.models.spec import ModelSpec
from greenserv_core.models.transformers_backend import TransformersBackend
from greenserv_core.router import GreenServRouter

__all__ = ["build_backends", "build_router", "remote_backend"]


def remote_backend(address: str) -> ModelBackend:
    """A model on an OpenAI-compatible server, written ``<base URL>#<model id>``.

    >>> remote_backend("http://gpu-1:8000/v1#Qwen/Qwen2.5-7B-Instruct").info.name
    'Qwen/Qwen2.5-7B-Instruct'
    """
    from greenserv_core.backends.openai_compatible import OpenAICompatibleBackend

    base_url, _, model = address.partition("#")
    if not model:
        raise InvalidInputError(
            f"a remote model is <base URL>#<model id>, e.g. http://gpu-1:8000/v1#qwen, got {address!r}"
        )
    return OpenAICompatibleBackend(base_url, model)


def build_backends(models: Sequence[Any] | None, meter: str = "auto") -> list[ModelBackend]:
    """``None``: the bundled pool. Each item: a bundled model name, a local model directory,
    a remote model ``<base URL>#<model id>`` (an OpenAI-compatible server, see
    :func:`remote_backend`), a :class:`ModelSpec`, or a ready :class:`ModelBackend`."""
    if models is None:
        return list(bundled_pool(meter=meter))
    bundled = (
        {backend.name: backend for backend in bundled_pool(meter=meter)}
        if any(isinstance(m, str) and m in BUNDLED_MODELS for m in models)
        else {}
    )
    backends: list[ModelBackend] = []
    for item in models:
        if isinstance(item, ModelBackend):
            backends.append(item)
        elif isinstance(item, ModelSpec):
            backends.append(TransformersBackend(item, meter=meter))
        elif isinstance(item, str) and item in bundled:
            backends.append(bundled[item])
        elif isinstance(item, str) and item.startswith(("http://", "https://")):
            backends.append(remote_backend(item))
        elif isinstance(item, str) and Path(item).is_dir():
            backends.append(TransformersBackend(ModelSpec(Path(item).name, path=item), meter=meter))
        else:
            raise InvalidInputError(
                f"cannot use {item!r} as a model: give a bundled model name ({sorted(BUNDLED_MODELS)}), a local "
                "model directory, a remote <base URL>#<model id>, a ModelSpec or a ModelBackend"
            )
    return backends


def build_router(
    models: Sequence[Any] | None,
    *,
    meter: str = "auto",
    strategy: str = "linucb",
    tradeoff: float = 0.4,
    seed: int | None = None,
    max_latency_s: float | None = None,
) -> GreenServRouter:
    """A router over :func:`build_backends` (what the adapters build from their arguments)."""
    return GreenServRouter(
        build_backends(models, meter=meter),
        strategy=strategy,
        tradeoff=tradeoff,
        seed=seed,
        max_latency_s=max_latency_s,
    )
