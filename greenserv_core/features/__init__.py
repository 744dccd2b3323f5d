"""Query context features: embedding, task type, semantic cluster, text complexity."""

from greenserv_core.features.clustering import OnlineKMeans
from greenserv_core.features.complexity import ComplexityBinner, approximate_tokens
from greenserv_core.features.embedders import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from greenserv_core.features.extractor import FeatureExtractor, QueryFeatures
from greenserv_core.features.task_classifier import TaskClassifier, TaskPrediction, instruction_text

__all__ = [
    "ComplexityBinner",
    "Embedder",
    "FeatureExtractor",
    "HashingEmbedder",
    "OnlineKMeans",
    "QueryFeatures",
    "SentenceTransformerEmbedder",
    "TaskClassifier",
    "TaskPrediction",
    "approximate_tokens",
    "instruction_text",
]
