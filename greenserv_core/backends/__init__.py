"""Model backends: the :class:`ModelBackend` protocol and a deterministic fake."""

from greenserv_core.backends.base import (
    EnergyReading,
    GenerationResult,
    GenerationSettings,
    ModelBackend,
    ModelInfo,
    StreamChunk,
)
from greenserv_core.backends.fake import FakeBackend

__all__ = [
    "EnergyReading",
    "FakeBackend",
    "GenerationResult",
    "GenerationSettings",
    "ModelBackend",
    "ModelInfo",
    "StreamChunk",
]
