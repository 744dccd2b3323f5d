"""Turn a simple ``models=[...]`` argument (as the adapters and the CLI take it) into model backends.

A string is an address, resolved by the registered address schemes
(:mod:`greenserv_core.backends.registry`): a bundled model name, a remote
``<base URL>#<model id>``, a local model directory, or any scheme a plug-in registers.
A remote model is named by its model id, unless another remote model of the pool has it
(the same model id on several servers): then it is ``<model id>@<host:port>``, whatever
the order of the addresses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from greenserv_core.backends.base import ModelBackend
from greenserv_core.backends.openai_compatible import OpenAICompatibleBackend, server_named
from greenserv_core.backends.registry import address_schemes, backend_from_address
from greenserv_core.backends.transformers import TransformersBackend
from greenserv_core.errors import InvalidInputError, MissingResourceError
from greenserv_core.models.bundled import bundled_pool
from greenserv_core.models.spec import ModelSpec
from greenserv_core.redaction import redacted

__all__ = ["build_backends", "check_meter", "resolve_model"]


def resolve_model(item: Any, meter: str = "auto") -> ModelBackend:
    """One backend: ``item`` as is if it is a :class:`ModelBackend`, a
    :class:`~greenserv_core.backends.transformers.TransformersBackend` for a :class:`ModelSpec`,
    or the backend its address scheme builds for a string.

    >>> resolve_model("http://gpu-1:8000/v1#qwen").info.name
    'qwen'
    """
    if isinstance(item, ModelBackend):
        return item
    if isinstance(item, ModelSpec):
        return TransformersBackend(item, meter=meter)
    if isinstance(item, str):
        return backend_from_address(item, meter)
    schemes = ", ".join(s.describes for s in address_schemes())
    raise InvalidInputError(  # its text is not shown: it may hold a key
        f"cannot use a {type(item).__name__} as a model: give {schemes}, a ModelSpec or a ModelBackend"
    )


def build_backends(
    models: Sequence[Any] | None, meter: str = "auto", *, option: str | None = None
) -> list[ModelBackend]:
    """``None``: the bundled pool; else :func:`resolve_model` of each item. ``meter`` is checked
    first (``auto`` or a registered meter's name), before any model is built, and then
    :func:`check_meter` refuses one that cannot measure a local model here, before any loads
    (naming it as ``option``, the command line's ``--meter``, where given). It meters the
    models built here from names, addresses and specs; a backend given as an object keeps the
    meter it was built with."""
    from greenserv_core.energy.registry import meter_names

    if meter != "auto" and meter not in meter_names():
        raise InvalidInputError(f"unknown energy meter {meter!r}; choose one of {meter_names()}")
    backends: list[ModelBackend] = (
        list(bundled_pool(meter=meter)) if models is None else [resolve_model(item, meter) for item in models]
    )
    if models is not None:
        backends = _named_apart(models, backends)
    check_meter(backends, meter, option=option)
    return backends


def _named_apart(items: Sequence[Any], backends: list[ModelBackend]) -> list[ModelBackend]:
    """``backends``, with each remote model given by address whose name (its model id) another
    remote model of the pool has too renamed ``<model id>@<host:port>`` (:func:`server_named`): a
    name that does not depend on the order of the addresses, so what is learned of it is found
    again. Backends given as objects keep the names they were given.

    >>> [b.info.name for b in _named_apart(["http://a:8000/v1#m", "http://b:8000/v1#m"],
    ...                                    [resolve_model("http://a:8000/v1#m"), resolve_model("http://b:8000/v1#m")])]
    ['m@a:8000', 'm@b:8000']
    """
    remote = [
        (item, backend)
        for item, backend in zip(items, backends, strict=True)
        if isinstance(backend, OpenAICompatibleBackend)
    ]  # (a local model's name may need its config read: it is not asked for here)
    taken = Counter(backend.info.name for _, backend in remote)
    addresses: dict[str, str] = {}
    for item, backend in remote:
        if not isinstance(item, str) or taken[backend.info.name] < 2:
            continue
        name = server_named(backend)
        if name in addresses:  # one model id on one server, given twice
            raise InvalidInputError(
                f"{redacted(repr(addresses[name]))} and {redacted(repr(item))} are one model on one server; "
                "give it once, or name each yourself: OpenAICompatibleBackend(base_url, model_id, name=...)"
            )
        addresses[name] = item
        backend._rename(name)  # (whichever scheme built it, with its settings; no router holds it yet)
    return backends


def check_meter(backends: Iterable[object], meter: str, *, option: str | None = None) -> None:
    """Build the named ``meter`` of each local model of ``backends`` now, before any weights load
    (each keeps it for its answers): one that cannot measure here is refused
    (:class:`InvalidInputError`, naming it as ``option``, the command line's ``--meter``, where
    given), not at the first answer. ``auto``
    always finds one; a remote model's server reports or estimates its own joules.

    >>> check_meter([resolve_model("http://gpu-1:8000/v1#qwen")], "rapl")  # a remote model: no local meter
    """
    if meter == "auto":
        return
    for backend in backends:
        if isinstance(backend, TransformersBackend):
            try:
                backend.meter  # noqa: B018  (built and kept by the backend)
            except (InvalidInputError, MissingResourceError) as error:
                named, unset = (f"the {meter} meter", "unset") if option is None else (f"{option} {meter}", "out")
                raise InvalidInputError(
                    f"{named} cannot measure {backend.name} here ({error}); leave {option or 'the meter'} {unset} "
                    "for the best meter that works here"
                ) from None
