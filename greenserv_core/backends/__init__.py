"""Model backends: the :class:`ModelBackend` protocol, local transformers models, remote
OpenAI-compatible servers and a deterministic fake.

To add a backend, drop one file here with a class implementing the four members of
:class:`ModelBackend` (``info``, ``count_tokens``, ``generate``, ``stream``; optional ones are
declared in :mod:`~greenserv_core.backends.base`) and, to name its models by a string, a factory
decorated ``@register_address_scheme(...)``: every module of this package is imported with it.
"""

import importlib
import pkgutil

from greenserv_core.backends.base import (
    EnergyReading,
    GenerationResult,
    GenerationSettings,
    JsonFormat,
    ModelBackend,
    ModelInfo,
    StreamChunk,
)
from greenserv_core.backends.fake import FakeBackend
from greenserv_core.backends.openai_compatible import OpenAICompatibleBackend
from greenserv_core.backends.registry import (
    address_schemes,
    backend_from_address,
    register_address_scheme,
    unregister_address_scheme,
)
from greenserv_core.backends.transformers import TransformersBackend
from greenserv_core.energy.remote import ExporterEnergyCounter

for _module in pkgutil.iter_modules(__path__):  # backends in files beyond those above register too
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "EnergyReading",
    "ExporterEnergyCounter",
    "FakeBackend",
    "GenerationResult",
    "GenerationSettings",
    "JsonFormat",
    "ModelBackend",
    "ModelInfo",
    "OpenAICompatibleBackend",
    "StreamChunk",
    "TransformersBackend",
    "address_schemes",
    "backend_from_address",
    "register_address_scheme",
    "unregister_address_scheme",
]
