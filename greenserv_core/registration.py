"""What the plug-in registries (policies, energy meters, address schemes) share: a name is
taken by one thing only.

>>> def meter(): ...
>>> claim_name("meter", "x", None, meter)  # free
>>> claim_name("meter", "x", meter, meter)  # the same one again (a module reloaded): fine
"""

from __future__ import annotations

from greenserv_core.errors import InvalidInputError

__all__ = ["claim_name"]


def _defined_at(thing: object) -> tuple[str, str]:
    return getattr(thing, "__module__", ""), getattr(thing, "__qualname__", repr(thing))


def claim_name(kind: str, name: str, known: object | None, new: object) -> None:
    """Refuse to register ``new`` as ``name`` when ``known``, defined elsewhere, holds it."""
    if known is not None and _defined_at(known) != _defined_at(new):
        raise InvalidInputError(f"{kind} name {name!r} is taken by {'.'.join(_defined_at(known))}")
