"""GreenServ: energy-aware routing of queries over a pool of local LLMs.

Where things live: :mod:`~greenserv_core.router` (the :class:`GreenServRouter` facade),
:mod:`~greenserv_core.routing` (request, eligibility rules, learner, executor),
:mod:`~greenserv_core.features` (the context), :mod:`~greenserv_core.bandits` (one file per
policy), :mod:`~greenserv_core.energy` (one file per meter), :mod:`~greenserv_core.backends`
(one file per kind of model), :mod:`~greenserv_core.models` (the bundled pool),
:mod:`~greenserv_core.sharing` (replicas), :mod:`~greenserv_core.adapters` (what the
LangChain and LlamaIndex adapters share).

Without ``features=`` a router uses the bundled static features; here, a tiny hashing
embedder and classifier keep the example self-contained:

>>> from greenserv_core import GreenServRouter, FakeBackend, FeatureExtractor
>>> from greenserv_core.features import HashingEmbedder, TaskClassifier
>>> embedder = HashingEmbedder(16)
>>> classifier = TaskClassifier().fit(embedder.embed(["2+2?", "hi"]), ["math", "chat"], embedder.name)
>>> features = FeatureExtractor(embedder, classifier)
>>> router = GreenServRouter([FakeBackend("small"), FakeBackend("large")], features=features, tradeoff=0.4, seed=0)
>>> answer = router.generate("What is the capital of France?")
>>> router.feedback(answer.decision_id, 1.0).applied
True
"""

from greenserv_core.backends import (
    EnergyReading,
    FakeBackend,
    GenerationResult,
    GenerationSettings,
    ModelBackend,
    ModelInfo,
    StreamChunk,
)
from greenserv_core.errors import (
    DecisionAlreadyScoredError,
    DecisionIdInUseError,
    DecisionStillAnsweringError,
    GreenServError,
    InvalidInputError,
    MissingResourceError,
    ModelUnavailableError,
    NoEligibleModelError,
    PendingStoreUnreachableError,
    StateFileError,
    UnknownDecisionError,
    UnknownModelError,
)
from greenserv_core.features import FeatureExtractor, QueryFeatures
from greenserv_core.quality import QualityPrior
from greenserv_core.router import FeedbackRecord, GreenServRouter, RoutedChunk, RoutedGeneration, RoutingDecision
from greenserv_core.routing.labelled import LabelledAnswer

__version__ = "0.1.0"

__all__ = [
    "DecisionAlreadyScoredError",
    "DecisionIdInUseError",
    "DecisionStillAnsweringError",
    "EnergyReading",
    "FakeBackend",
    "FeatureExtractor",
    "FeedbackRecord",
    "GenerationResult",
    "GenerationSettings",
    "GreenServError",
    "GreenServRouter",
    "InvalidInputError",
    "LabelledAnswer",
    "MissingResourceError",
    "ModelBackend",
    "ModelInfo",
    "ModelUnavailableError",
    "NoEligibleModelError",
    "PendingStoreUnreachableError",
    "QualityPrior",
    "QueryFeatures",
    "RoutedChunk",
    "RoutedGeneration",
    "RoutingDecision",
    "StateFileError",
    "StreamChunk",
    "UnknownDecisionError",
    "UnknownModelError",
    "__version__",
]
