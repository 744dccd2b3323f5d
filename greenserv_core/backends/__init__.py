"""Model backends: the :class:`ModelBackend` protocol, a deterministic fake, and remote
OpenAI-compatible servers."""

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
from greenserv_core.backends.remote_energy import ExporterEnergyCounter

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
]
