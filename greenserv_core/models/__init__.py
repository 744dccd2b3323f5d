"""The model pool: :class:`ModelSpec` (where a local model is), the bundled offline models, and
:func:`~greenserv_core.models.pool.build_backends`, which turns ``models=[...]`` into backends.

Backends themselves live in :mod:`greenserv_core.backends`; a new kind of model address is an
address scheme registered there (``@register_address_scheme``), not a change here.
"""

from greenserv_core.models.bundled import BUNDLED_MODELS, bundled_pool, bundled_specs, ensure_converted
from greenserv_core.models.spec import ModelSpec

__all__ = [
    "BUNDLED_MODELS",
    "ModelSpec",
    "bundled_pool",
    "bundled_specs",
    "ensure_converted",
]
