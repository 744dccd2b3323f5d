"""A model is declared by a small :class:`ModelSpec`."""

from __future__ import annotations

from dataclasses import dataclass, field

from greenserv_core.backends.base import check_declared
from greenserv_core.errors import InvalidInputError
from greenserv_core.quality import QualityPrior

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """Where a model is and what it can do.

    Give ``path`` (a local Hugging Face model directory, optionally with ``gguf_file`` inside
    it) or ``hub_id`` (downloaded by transformers when online). ``chat_template=None`` means
    "use the tokenizer's template if it has one" (``True`` asks for it: a model whose tokenizer
    has none is refused; ``False``: the plain prompt format); ``context_window=None`` reads it from the
    model config. The priors (per input+output token) stand in for measurements until the
    router has seen the model run; ``quality`` (a :class:`QualityPrior`, e.g. from the model
    card's benchmark scores) stands in for its accuracy until it has been scored.

    >>> ModelSpec("my-model", path="/models/my-model").source
    '/models/my-model'
    """

    name: str
    path: str | None = None
    hub_id: str | None = None
    gguf_file: str | None = None
    chat_template: bool | None = None
    context_window: int | None = None
    capabilities: frozenset[str] = field(default_factory=frozenset)
    prior_joules_per_token: float | None = None
    prior_seconds_per_token: float | None = None
    quality: QualityPrior | None = None
    install_hint: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError(f"a model spec needs a name, got {self.name!r}")
        if self.quality is not None and not isinstance(self.quality, QualityPrior):
            raise InvalidInputError(
                f"model {self.name!r}: quality must be a QualityPrior, got {type(self.quality).__name__}"
            )
        if self.chat_template is not None and not isinstance(self.chat_template, bool):
            raise InvalidInputError(
                f"model {self.name!r}: chat_template is True, False or None (the tokenizer's, if it has one), "
                f"got {self.chat_template!r}"
            )
        if (self.path is None) == (self.hub_id is None):
            raise InvalidInputError(f"model {self.name!r}: give exactly one of path= or hub_id=")
        for name, where in (("path", self.path), ("hub_id", self.hub_id), ("gguf_file", self.gguf_file)):
            if where is not None and (not isinstance(where, str) or not where.strip()):
                raise InvalidInputError(f"model {self.name!r}: {name} must be a non-empty string, got {where!r}")
        check_declared(self)

    @property
    def source(self) -> str:
        """What to pass to ``from_pretrained``."""
        return self.path if self.path is not None else str(self.hub_id)
