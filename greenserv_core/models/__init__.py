"""Local model pool: specs, the transformers backend, the bundled offline models."""

from greenserv_core.models.bundled import BUNDLED_MODELS, bundled_pool, bundled_specs, ensure_converted
from greenserv_core.models.memory import ModelMemory
from greenserv_core.models.spec import ModelSpec
from greenserv_core.models.transformers_backend import TransformersBackend

__all__ = [
    "BUNDLED_MODELS",
    "ModelMemory",
    "ModelSpec",
    "TransformersBackend",
    "bundled_pool",
    "bundled_specs",
    "ensure_converted",
]
