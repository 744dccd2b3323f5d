"""The rooms of a routed query, in the order it passes them.

* :mod:`~greenserv_core.routing.request`: :class:`RouteRequest`, the query and its options,
  checked once (the keyword options of ``generate``, ``stream``, ``generate_batch`` and
  ``route`` are the typed dicts :class:`GenerateOptions`, :class:`BatchOptions`,
  :class:`RouteOptions`);
* :mod:`~greenserv_core.routing.pool`: :class:`ModelPool`, the pool's models as columns, and
  each query's :class:`Candidates` among them (availability, prompt tokens);
* :mod:`~greenserv_core.routing.eligibility`: which models may answer. **An eligibility rule
  goes here**: one function ``(Candidate, Limits) -> reason | None``, added to ``RULES``
  (and, for large pools, its column form to ``COLUMN_RULES``);
* :mod:`~greenserv_core.routing.labelled`: :class:`LabelledAnswer`, a model's labelled answer
  to a query that was not routed (a warm start);
* :mod:`~greenserv_core.routing.learner`: :class:`RoutingLearner`, which decides and learns
  (policy, cost models, energy normaliser, tallies, pending decisions) behind one lock;
* :mod:`~greenserv_core.routing.executor`: :class:`Executor`, which runs the chosen model
  with one failover helper for generate, stream and batch;
* :mod:`~greenserv_core.routing.results`: what comes back (:class:`RoutingDecision`,
  :class:`RoutedGeneration`, :class:`RoutedChunk`, :class:`FeedbackRecord`).

:class:`~greenserv_core.router.GreenServRouter` puts them together. Policies live in
:mod:`greenserv_core.bandits`, energy meters in :mod:`greenserv_core.energy`, model
backends in :mod:`greenserv_core.backends`.
"""

from greenserv_core.routing.eligibility import (
    COLUMN_RULES,
    RULES,
    Candidate,
    Candidates,
    Eligibility,
    Limits,
    check_eligibility,
)
from greenserv_core.routing.executor import Executor
from greenserv_core.routing.labelled import LabelledAnswer
from greenserv_core.routing.learner import RoutingLearner
from greenserv_core.routing.pool import ModelPool
from greenserv_core.routing.request import (
    BatchOptions,
    GenerateOptions,
    ResponseFormat,
    RouteOptions,
    RouteRequest,
    check_positive,
)
from greenserv_core.routing.results import FeedbackRecord, RoutedChunk, RoutedGeneration, RoutingDecision
from greenserv_core.routing.tallies import Tallies

__all__ = [
    "COLUMN_RULES",
    "RULES",
    "BatchOptions",
    "Candidate",
    "Candidates",
    "Eligibility",
    "Executor",
    "FeedbackRecord",
    "GenerateOptions",
    "LabelledAnswer",
    "Limits",
    "ModelPool",
    "ResponseFormat",
    "RouteOptions",
    "RouteRequest",
    "RoutedChunk",
    "RoutedGeneration",
    "RoutingDecision",
    "RoutingLearner",
    "Tallies",
    "check_eligibility",
    "check_positive",
]
