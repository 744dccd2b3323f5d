"""Backends by address: a string such as ``http://gpu-1:8000/v1#qwen`` names a model, and the
address scheme it matches builds the backend.

A scheme registers its factory ``(address, meter) -> ModelBackend`` with
``@register_address_scheme(name, matches, describes=...)``; ``matches`` is a prefix (or a
tuple of prefixes) or a predicate on the address, and ``meter`` is the energy meter's name
for models measured locally. Schemes are tried from the highest ``priority`` down (equal
priorities in registration order): bundled names, then URLs, then local directories.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from greenserv_core.backends.base import ModelBackend
from greenserv_core.errors import InvalidInputError
from greenserv_core.redaction import redacted
from greenserv_core.registration import claim_name

__all__ = [
    "ADDRESS_SCHEMES",
    "AddressScheme",
    "address_schemes",
    "backend_from_address",
    "register_address_scheme",
    "unregister_address_scheme",
]


AddressFactory = Callable[[str, str], ModelBackend]
_F = TypeVar("_F", bound=AddressFactory)


@dataclass(frozen=True)
class AddressScheme:
    """A registered scheme: which addresses it ``matches``, how it builds their backend, and
    what it ``describes`` in help and errors (e.g. ``"a remote <base URL>#<model id>"``)."""

    name: str
    matches: Callable[[str], bool]
    build: AddressFactory
    describes: str
    priority: int = 0


ADDRESS_SCHEMES: dict[str, AddressScheme] = {}
"""Every registered scheme by name (filled by :func:`register_address_scheme`)."""


def register_address_scheme(
    name: str, matches: str | tuple[str, ...] | Callable[[str], bool], *, describes: str, priority: int = 0
) -> Callable[[_F], _F]:
    """Decorator for a factory ``(address, meter) -> ModelBackend``.

    >>> from greenserv_core.backends.fake import FakeBackend
    >>> @register_address_scheme("echo", "echo:", describes="echo:<name>")
    ... def echo(address, meter):
    ...     return FakeBackend(address.removeprefix("echo:"))
    >>> backend_from_address("echo:parrot").info.name
    'parrot'
    >>> unregister_address_scheme("echo")
    """
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"an address scheme needs a name, got {name!r}")
    predicate: Callable[[str], bool]
    if isinstance(matches, (str, tuple)):
        prefixes = (matches,) if isinstance(matches, str) else matches
        predicate = functools.partial(_starts_with, prefixes=prefixes)
    elif callable(matches):
        predicate = matches
    else:
        raise InvalidInputError(f"matches must be a prefix, a tuple of prefixes or a predicate, got {matches!r}")

    def register(factory: _F) -> _F:
        known = ADDRESS_SCHEMES.get(name)
        claim_name("address scheme", name, None if known is None else known.build, factory)
        ADDRESS_SCHEMES[name] = AddressScheme(name, predicate, factory, describes, int(priority))
        return factory

    return register


def _starts_with(address: str, *, prefixes: tuple[str, ...]) -> bool:
    """Whether ``address`` starts with one of ``prefixes`` (a URL's scheme in any case)."""
    return any(
        address[: len(prefix)].lower() == prefix.lower() if prefix.endswith("://") else address.startswith(prefix)
        for prefix in prefixes
    )


def unregister_address_scheme(name: str) -> None:
    """Forget the scheme registered as ``name`` (no error if there is none)."""
    ADDRESS_SCHEMES.pop(name, None)


def address_schemes() -> list[AddressScheme]:
    """The registered schemes in the order they are tried.

    >>> [scheme.name for scheme in address_schemes()][:2]
    ['bundled', 'remote']
    """
    return sorted(ADDRESS_SCHEMES.values(), key=lambda scheme: -scheme.priority)


def backend_from_address(address: str, meter: str = "auto") -> ModelBackend:
    """The backend of the first scheme that matches ``address``.

    >>> backend_from_address("http://gpu-1:8000/v1#qwen").info.name
    'qwen'
    """
    for scheme in address_schemes():
        if scheme.matches(address):
            return scheme.build(address, meter)
    raise InvalidInputError(
        f"cannot use {redacted(repr(address))} as a model: give {', '.join(s.describes for s in address_schemes())}"
    )
