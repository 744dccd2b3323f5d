"""Turn a model's :class:`~greenserv_core.quality.QualityPrior` into the policy's pseudo-observations.

Each task type with a believed score becomes pseudo-observations of that score at every
context of the task type (each cluster with each complexity bin), weighted so that the prior
is worth ``strength`` answers wherever a query of a named type falls: a context ``x`` holds
``strength·h(x)``, where ``h(x) = xᵀ(XᵀX)⁺x`` is its leverage among the prior's contexts
``X``, since an estimate at ``x`` draws on every context that shares a coefficient with it.
For one task type, ``h = (C + B − 1)/(C·B)``; the intercept, cluster and complexity
coefficients are shared by every named type, so each type named besides (or a ``default``)
lowers it. (Weighted for one type whatever the number named, three types counted as 2.2
times ``strength``, a default over nine as 3.9 times.) (Put at the
task's entry alone, the cluster and complexity coefficients, held by the ridge's penalty only,
took up the whole gap to one real answer: a prior of 0.9 at strength 1,000 fell to 0.37 after
one answer scoring 0.1.)

The pseudo-observations act exactly like real answers at those contexts: they fit the task's
own coefficient and also the intercept and the cluster and complexity-bin coefficients that
every task type shares, so a task type the prior does not name is moved too, and not always
a little: with the default ``epsilon`` policy, whose unplayed arm reads 1.0, ``{"math": 0.1}``
brings a chat query's estimate well below 1.0. A task type without a score gets no
pseudo-observations of its own; it does not keep the policy's untouched prior.
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
    >>> per_context = 5 * (3 + 4 - 1) / (3 * 4)  # this extractor: 3 clusters, 4 complexity bins
    >>> len(prior.rewards), set(prior.rewards.tolist()), bool(np.allclose(prior.weights, per_context))
    (12, {0.9}, True)
    """
    unknown = sorted(set(quality.scores) - set(features.task_types))
    if unknown:
        raise InvalidInputError(f"quality prior names unknown task types {unknown}; known: {list(features.task_types)}")
    believed = {task: score for task in features.task_types if (score := quality.score_for(task)) is not None}
    if not believed:
        return None
    bins = [(c, b) for c in range(features.clusterer.n_clusters) for b in range(features.complexity.n_bins)]
    contexts = np.array([features.encode(task, c, b) for task in believed for c, b in bins])
    rewards = np.repeat(np.array(list(believed.values()), dtype=np.float64), len(bins))
    leverage = np.einsum("ki,ij,kj->k", contexts, np.linalg.pinv(contexts.T @ contexts), contexts)
    return ArmPrior(contexts, rewards, float(quality.strength) * leverage)
