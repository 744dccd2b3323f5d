"""Task-type classifier: logistic regression on the instruction text's sentence embedding,
and optionally on its hashed word n-grams (:class:`~greenserv_core.features.lexical.LexicalHasher`).

Training uses scikit-learn's ``LogisticRegression``; the fitted weights are stored as JSON
in the package (``greenserv_core/data/task_classifier.json``), not as a pickle, so they load
under any scikit-learn version. Prediction is the same softmax, in numpy.

Training and rewriting the bundled weights: :mod:`greenserv_core.evaluation.classifier_training`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from greenserv_core.bandits.base import check_number, whole_number
from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.features.embedders import Embedder
from greenserv_core.features.lexical import LexicalHasher
from greenserv_core.persistence import write_atomically

__all__ = [
    "BUNDLED_CLASSIFIER",
    "ELISION",
    "FIGURE",
    "TaskClassifier",
    "TaskPrediction",
    "check_pair",
    "instruction_text",
]

BUNDLED_CLASSIFIER = "task_classifier.json"


ELISION = "\n[... the middle of a long text is left out ...]\n"
"""What stands for the middle of a long prompt: words, not a bare ``…``, so that the embedding
carries "a long text was here" (a passage to read or summarise) as well as the edges' content."""


FIGURE = "[figure]"
"""What stands for a drawing's code (Asymptote's ``[asy]...[/asy]``, TikZ's
``tikzpicture``): the figure is there, its coordinates say nothing of the task. A block left
open (a prompt cut short) runs to the end of its paragraph, and only where it holds a
statement (a ``;``): a ``[asy]`` named in prose hides nothing after it."""

_OPENING = re.compile(r"\[asy\]|\\begin\{tikzpicture\}", re.IGNORECASE)
_CLOSING = {
    "[asy]": re.compile(r"\[/asy\]", re.IGNORECASE),
    "\\begin{tikzpicture}": re.compile(r"\\end\{tikzpicture\}", re.IGNORECASE),
}
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _without_drawings(text: str) -> str:
    """``text`` with each drawing block replaced by :data:`FIGURE`: to its closing tag, or, left
    open, to the end of its paragraph where a ``;`` comes before it (else the tag is prose). In
    time linear in the text: what one search found (no closing tag, the paragraph's end, the
    next ``;``) serves the openings after it.

    >>> _without_drawings("Find x.\\n[asy]draw(A--B);\\n\\nWhy?"), _without_drawings("Is [asy] a language?")
    ('Find x.\\n[figure]\\n\\nWhy?', 'Is [asy] a language?')
    """
    pieces: list[str] = []
    kept = position = 0
    unclosed_from: dict[str, int] = {}  # per kind of block: no closing tag after this position
    blank = semicolon = -1  # the next blank line's and ";"'s positions found so far (len(text): none)
    while (opening := _OPENING.search(text, position)) is not None:
        start, code = opening.start(), opening.end()
        kind = "[asy]" if text[start] == "[" else "\\begin{tikzpicture}"  # (not by lower(): "[aſy]" matches too)
        end = None
        if code < unclosed_from.get(kind, len(text) + 1):
            closing = _CLOSING[kind].search(text, code)
            if closing is not None:
                end = closing.end()
            else:
                unclosed_from[kind] = code
        if end is None:
            if blank < code:
                found = _BLANK_LINE.search(text, code)
                blank = len(text) if found is None else found.start()
            if semicolon < code:
                at = text.find(";", code)
                semicolon = len(text) if at < 0 else at
            if semicolon < blank:
                end = blank
        if end is None:  # a tag named in prose: it stays
            position = code
            continue
        pieces += (text[kept:start], FIGURE)
        kept = position = end
    pieces.append(text[kept:])
    return "".join(pieces)


def instruction_text(text: str, head_chars: int = 160, tail_chars: int = 160) -> str:
    """What the features look at: the head of the prompt (the instruction) and its tail
    (the question and options), joined by :data:`ELISION`. Short prompts are returned whole.
    Drawing code is replaced by :data:`FIGURE` first: a geometry problem's ``[asy]`` block
    would otherwise fill the tail with coordinates, and its point labels read as options.

    >>> instruction_text("x" * 10)
    'xxxxxxxxxx'
    >>> instruction_text("Summarise this: " + "text " * 400 + "Thanks!", 15, 12).splitlines()
    ['Summarise this:', '[... the middle of a long text is left out ...]', 'text Thanks!']
    >>> instruction_text("Find the area of square ABCD.\\n[asy]draw((0,0)--(1,0));label('A',(0,0));[/asy]")
    'Find the area of square ABCD.\\n[figure]'
    """
    text = text.strip()
    if "[asy]" in text.lower() or "tikzpicture" in text:
        text = _without_drawings(text).strip()
    if len(text) <= head_chars + tail_chars:
        return text
    return f"{text[:head_chars]}{ELISION}{text[-tail_chars:]}" if tail_chars else text[:head_chars]


@dataclass(frozen=True)
class TaskPrediction:
    """The most probable task type, its probability, and every class's probability."""

    label: str
    probability: float
    probabilities: dict[str, float] = field(repr=False)


class TaskClassifier:
    """Multinomial logistic regression over embeddings, and optionally over hashed word n-grams.

    ``C`` is the inverse regularisation strength, as in scikit-learn. ``lexical_features``
    buckets of word unigrams and bigrams (0: none) join the embedding, scaled by
    ``lexical_weight``; such a classifier needs the text beside its embedding. Learned state:
    ``classes_``, ``coef_`` (n_classes × (dim + lexical_features)), ``intercept_``,
    ``embedder_name_``, and ``embedding_mean_``, the mean of the embeddings it was fitted on
    (the clustering of :class:`~greenserv_core.features.extractor.FeatureExtractor` measures
    directions from it; ``None`` for a classifier saved without one).

    >>> from greenserv_core.features.embedders import HashingEmbedder
    >>> embedder = HashingEmbedder(64)
    >>> texts = ["add 2 and 3", "sum of 4 and 5", "write a poem", "a poem about rain"]
    >>> clf = TaskClassifier().fit(embedder.embed(texts), ["math", "math", "chat", "chat"], embedder.name)
    >>> clf.predict(embedder.embed(["add 7 and 8"])[0]).label
    'math'
    >>> lexical = TaskClassifier(lexical_features=256)
    >>> lexical = lexical.fit(embedder.embed(texts), ["math", "math", "chat", "chat"], embedder.name, texts=texts)
    >>> lexical.predict(embedder.embed(["add 7 and 8"])[0], text="add 7 and 8").label
    'math'
    """

    def __init__(
        self, C: float = 10.0, max_iter: int = 2000, lexical_features: int = 0, lexical_weight: float = 1.0
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.lexical_features = lexical_features
        self.lexical_weight = lexical_weight
        self.classes_: tuple[str, ...] = ()
        self.coef_: np.ndarray = np.zeros((0, 0))
        self.intercept_: np.ndarray = np.zeros(0)
        self.embedder_name_: str = ""
        self.embedding_mean_: np.ndarray | None = None
        self.metrics_: dict[str, Any] = {}

    @property
    def reads_text(self) -> bool:
        """Whether predictions need the text as well as its embedding."""
        return self.lexical_features > 0

    def _hasher(self) -> LexicalHasher:
        return LexicalHasher(self.lexical_features)

    def fit(
        self,
        embeddings: np.ndarray,
        labels: Sequence[str],
        embedder_name: str,
        *,
        texts: Sequence[str] | None = None,
    ) -> TaskClassifier:
        """Fit on embeddings (and, with ``lexical_features``, the texts they embed)."""
        from sklearn.linear_model import LogisticRegression

        self._check_settings()
        if len(set(labels)) < 2:
            raise InvalidInputError("a task classifier needs at least two task types")
        x: Any = np.asarray(embeddings, dtype=np.float64)
        self._check_texts(texts, len(x))
        mean = x.mean(axis=0)
        if self.reads_text:
            from scipy.sparse import csr_matrix, hstack

            assert texts is not None  # checked above
            x = hstack([csr_matrix(x), self._hasher().transform(texts) * self.lexical_weight]).tocsr()
        model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        model.fit(x, list(labels))
        self.classes_ = tuple(str(c) for c in model.classes_)
        coef, intercept = model.coef_, model.intercept_
        if len(self.classes_) == 2:  # binary LR stores one row; expand to a two-class softmax
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self.coef_, self.intercept_ = np.asarray(coef), np.asarray(intercept)
        if self.reads_text:  # the weight is folded into the stored coefficients
            self.coef_[:, -self.lexical_features :] *= self.lexical_weight
        self.embedder_name_ = embedder_name
        self.embedding_mean_ = mean
        return self

    def _check_settings(self) -> None:
        """Refuse settings no classifier can be fitted with (as scikit-learn does, at fit)."""
        width = whole_number(self.lexical_features)
        if width is None or not (width == 0 or width >= 2):
            raise InvalidInputError(
                f"lexical_features must be 0 (none) or an integer >= 2, got {self.lexical_features!r}"
            )
        self.lexical_features = width
        check_number("lexical_weight", self.lexical_weight, low=0.0, strict=True)

    def _check_texts(self, texts: Sequence[str] | None, n: int, *, one: bool = False) -> None:
        if not self.reads_text:
            return
        if texts is None or isinstance(texts, str):
            raise InvalidInputError(
                "this task classifier reads the text as well as its embedding: "
                + ("pass text=... beside the embedding" if one else "pass texts=[...], one per embedding")
            )
        if len(texts) != n:
            raise InvalidInputError(f"{len(texts)} texts for {n} embeddings")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classes_

    def predict_proba(self, embeddings: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """Class probabilities, one row per embedding (``texts`` beside them when :attr:`reads_text`)."""
        if not self.classes_:
            raise InvalidInputError("the task classifier is not fitted")
        embeddings = np.atleast_2d(embeddings)
        self._check_texts(texts, len(embeddings))
        dim = self.coef_.shape[1] - self.lexical_features
        logits = embeddings @ self.coef_[:, :dim].T + self.intercept_
        if self.reads_text:
            assert texts is not None  # checked above
            lexical, hasher = self.coef_[:, dim:], self._hasher()
            for row, text in enumerate(texts):
                indices, values = hasher.features(text)
                logits[row] += lexical[:, indices] @ values
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        probabilities: np.ndarray = weights / weights.sum(axis=1, keepdims=True)
        return probabilities

    def predict(self, embedding: np.ndarray, text: str | None = None) -> TaskPrediction:
        """Always a label: the most probable class, however unsure (see ``probability``)."""
        if text is None:
            self._check_texts(None, 1, one=True)
        probabilities = self.predict_proba(embedding, None if text is None else [text])[0]
        best = int(np.argmax(probabilities))
        return TaskPrediction(
            self.classes_[best],
            float(probabilities[best]),
            {label: float(p) for label, p in zip(self.classes_, probabilities, strict=True)},
        )

    def to_dict(self) -> dict[str, Any]:
        if not self.classes_:
            raise InvalidInputError("the task classifier is not fitted: fit it before saving it")
        data: dict[str, Any] = {
            "format": "greenserv-task-classifier",
            "version": 2,
            "classes": list(self.classes_),
            "coef": _pack(self.coef_),
            "intercept": self.intercept_.tolist(),
            "embedder": self.embedder_name_,
            "C": self.C,
            "metrics": self.metrics_,
        }
        if self.embedding_mean_ is not None:
            data["embedding_mean"] = self.embedding_mean_.tolist()
        if self.reads_text:
            data["lexical"] = {**self._hasher().to_dict(), "weight": self.lexical_weight}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskClassifier:
        if data.get("format") != "greenserv-task-classifier" or data.get("version") not in (1, 2):
            raise StateFileError("not a GreenServ task classifier (format/version mismatch)")
        lexical = data.get("lexical") or {}
        if lexical and lexical.get("kind") != LexicalHasher.KIND:
            raise StateFileError(f"unknown lexical features {lexical.get('kind')!r} in the task classifier")
        clf = cls(
            C=float(data.get("C", 10.0)),
            lexical_features=int(lexical.get("n_features", 0)),
            lexical_weight=float(lexical.get("weight", 1.0)),
        )
        clf.classes_ = tuple(data["classes"])
        clf.coef_ = _unpack(data["coef"])
        clf.intercept_ = np.asarray(data["intercept"], dtype=np.float64)
        clf.embedder_name_ = str(data["embedder"])
        clf.metrics_ = dict(data.get("metrics", {}))
        mean = data.get("embedding_mean")  # absent from classifiers saved before 2026-12-05
        clf.embedding_mean_ = None if mean is None else np.asarray(mean, dtype=np.float64)
        if (
            clf.coef_.ndim != 2
            or clf.coef_.shape[0] != len(clf.classes_)
            or clf.coef_.shape[1] <= clf.lexical_features
            or clf.intercept_.shape != (len(clf.classes_),)
            or (
                clf.embedding_mean_ is not None
                and (
                    clf.embedding_mean_.shape != (clf.coef_.shape[1] - clf.lexical_features,)
                    or not np.all(np.isfinite(clf.embedding_mean_))
                )
            )
        ):
            raise StateFileError("task classifier weights have inconsistent shapes")
        if not (np.all(np.isfinite(clf.coef_)) and np.all(np.isfinite(clf.intercept_))):
            raise StateFileError("task classifier weights are NaN or infinite")  # every prediction would be NaN
        if len(set(clf.classes_)) != len(clf.classes_):
            raise StateFileError(f"task classifier names a class more than once: {list(clf.classes_)}")
        return clf

    def save(self, path: str | Path) -> None:
        """Write the classifier to ``path`` in one step (a failed write leaves the old file)."""
        write_atomically(path, json.dumps(self.to_dict()).encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> TaskClassifier:
        """The classifier :meth:`save` wrote to ``path``; :class:`StateFileError` names the file
        when it is missing, a folder, not JSON or not a task classifier."""
        path = Path(path)
        if not path.is_file():
            raise StateFileError(f"no task classifier file at {path}" + (" (it is a folder)" if path.is_dir() else ""))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise StateFileError(f"{path} is not a saved task classifier (not JSON: {error})") from error
        if not isinstance(data, dict):
            raise StateFileError(f"{path} is not a saved task classifier (not a JSON object)")
        try:
            return cls.from_dict(data)
        except StateFileError as error:
            raise StateFileError(f"{path}: {error}") from error
        except (KeyError, TypeError, ValueError) as error:
            raise StateFileError(f"{path} is not a saved task classifier ({type(error).__name__}: {error})") from error

    @classmethod
    def bundled(cls) -> TaskClassifier:
        """The classifier shipped with GreenServ (trained on all-MiniLM-L6-v2 embeddings)."""
        text = resources.files("greenserv_core.data").joinpath(BUNDLED_CLASSIFIER).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))


def _pack(matrix: np.ndarray) -> dict[str, Any]:
    """A float64 matrix as base64 bytes (exact, and a third of the size of a JSON list)."""
    data = np.ascontiguousarray(matrix, dtype="<f8")
    return {"dtype": "<f8", "shape": list(data.shape), "base64": base64.b64encode(data.tobytes()).decode("ascii")}


def _unpack(packed: Any) -> np.ndarray:
    """The inverse of :func:`_pack`; a nested list (format version 1) is read as it is."""
    if not isinstance(packed, dict):
        return np.asarray(packed, dtype=np.float64)
    try:
        if packed["dtype"] not in ("<f8", "<f4"):
            raise ValueError(f"dtype {packed['dtype']!r} is not a little-endian float")
        raw = np.frombuffer(base64.b64decode(packed["base64"], validate=True), dtype=np.dtype(packed["dtype"]))
        return raw.reshape([int(n) for n in packed["shape"]]).astype(np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFileError(f"task classifier weights cannot be read: {exc}") from exc


def check_pair(embedder: Embedder, classifier: TaskClassifier) -> None:
    """Refuse a classifier trained on another embedding space than ``embedder``'s.

    A classifier without a recorded space (``embedder_name_`` empty) is accepted as it is.
    """
    trained_on = classifier.embedder_name_
    if trained_on and trained_on != embedder.name:
        hint = " (re-run `greenserv setup` to distil it again)" if embedder.name.startswith("static:") else ""
        raise InvalidInputError(
            f"the task classifier was trained on {trained_on!r} embeddings, but the embedder is {embedder.name!r}{hint}"
        )


if __name__ == "__main__":  # the training command's old home
    raise SystemExit(
        "training the task classifier moved: python -m greenserv_core.evaluation.classifier_training --help"
    )
