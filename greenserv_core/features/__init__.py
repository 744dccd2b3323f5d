"""Query context features: embedding, task type, semantic cluster, text complexity."""

from greenserv_core.features.bundled import DEFAULT_EMBEDDER, EMBEDDERS, bundled_classifier, bundled_embedder
from greenserv_core.features.clustering import OnlineKMeans
from greenserv_core.features.complexity import ComplexityBinner, approximate_tokens
from greenserv_core.features.embedders import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from greenserv_core.features.extractor import FeatureExtractor, QueryFeatures
from greenserv_core.features.static_embedder import StaticEmbedder, distill_static
from greenserv_core.features.task_classifier import TaskClassifier, TaskPrediction, instruction_text

__all__ = [
    "DEFAULT_EMBEDDER",
    "EMBEDDERS",
    "ComplexityBinner",
    "Embedder",
    "FeatureExtractor",
    "HashingEmbedder",
    "OnlineKMeans",
    "QueryFeatures",
    "SentenceTransformerEmbedder",
    "StaticEmbedder",
    "TaskClassifier",
    "TaskPrediction",
    "approximate_tokens",
    "bundled_classifier",
    "bundled_embedder",
    "distill_static",
    "instruction_text",
]
