"""Turn a model's :class:`~greenserv_core.quality.QualityPrior` into the policy's pseudo-observations.

Each task type with a believed score becomes ``strength`` pseudo-observations of that score at
the context of the task type alone (intercept and the task's one-hot entry), so the prior
speaks about task types and leaves the cluster and complexity effects to the data.
"""

from __future__ import annotations

import numpy as np

from greenserv_core.bandits import ArmPrior
from greenserv_core.errors import InvalidInputError
from greenserv_core.features.extractor import FeatureExtractor
from greenserv_core.quality import QualityPrior

__all__ = ["arm_prior"]


def arm_prior(quality: QualityPrior, features: FeatureExtractor) -> ArmPrior | None:
    """The pseudo-observations ``quality`` stands for in ``features``' context space
    (``None`` when it names no task type the features know).

    >>> from greenserv_core.features import HashingEmbedder, TaskClassifier
    >>> embedder = HashingEmbedder(16)
    >>> clf = TaskClassifier().fit(embedder.embed(["2+2", "hi"]), ["math", "chat"], embedder.name)
    >>> prior = arm_prior(QualityPrior({"math": 0.9}, strength=5), FeatureExtractor(embedder, clf))
    >>> prior.rewards.tolist(), prior.weights.tolist(), prior.contexts[0][:3].tolist()
    ([0.9], [5.0], [1.0, 0.0, 1.0])
    """
    unknown = sorted(set(quality.scores) - set(features.task_types))
    if unknown:
        raise InvalidInputError(f"quality prior names unknown task types {unknown}; known: {list(features.task_types)}")
    believed = {task: score for task in features.task_types if (score := quality.score_for(task)) is not None}
    if not believed:
        return None
    contexts = np.array([features.encode_task(task) for task in believed])
    return ArmPrior(contexts, np.array(list(believed.values())), np.full(len(believed), float(quality.strength)))
