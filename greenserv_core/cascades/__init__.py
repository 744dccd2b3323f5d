"""Cascades: answer with a cheap model first, escalate to a stronger one when it is unsure.

Routing picks one model before the answer; a cascade decides again after it, from the
answer's confidence (:mod:`greenserv_core.confidence`). In GreenServ a cascade is one more
arm of the same decision: ``GreenServRouter(models, cascades=[("small", "big")])`` lets the
policy choose per query among ``small``, ``big`` and ``small->big``, and learns both which
pays and, inside the cascade, when to escalate.

- :class:`CascadeBackend`: the cascade as a pool member (a
  :class:`~greenserv_core.backends.base.ModelBackend`); it runs the chain, sums the cost
  and records it, and streams only the kept answer.
- :class:`EscalationModel`: the learned escalation rule and its censored feedback.
- :func:`answers_agree`: the stated agreement proxy for answers that were not kept.
"""

from greenserv_core.cascades.agreement import answers_agree
from greenserv_core.cascades.backend import CASCADE_SEPARATOR, CascadeBackend, Escalate, cascade_name
from greenserv_core.cascades.escalation import EscalationModel, Verdict

__all__ = [
    "CASCADE_SEPARATOR",
    "CascadeBackend",
    "Escalate",
    "EscalationModel",
    "Verdict",
    "answers_agree",
    "cascade_name",
]
