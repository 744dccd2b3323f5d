"""What counts as one word or one token of a text, in any script: the character classes that
the prompt-length count (:func:`~greenserv_core.features.complexity.approximate_tokens`) and
the lexical hasher (:class:`~greenserv_core.features.lexical.LexicalHasher`) split text by.

A combining mark (an accent typed as a character of its own, a Devanagari vowel sign, a
Hebrew point) belongs to the word it marks; regular expressions' ``\\w`` leaves it out, and
each mark would read as a token of punctuation. Text is put in Unicode's composed form (NFC)
first, so that the same words typed either way give the same tokens.

>>> import re, unicodedata
>>> words = re.compile(WORD)
>>> len(words.findall(unicodedata.normalize("NFD", "café")))  # the accent typed apart: still one word
1
>>> words.findall("नमस्ते दुनिया")
['नमस्ते', 'दुनिया']
"""

from __future__ import annotations

import unicodedata

__all__ = ["COMBINING_MARKS", "ONE_TOKEN_EACH", "WORD", "composed"]


def _ranges(points: list[int]) -> str:
    """``points`` (sorted) as the body of a character class, in ranges."""
    parts: list[str] = []
    start = previous = points[0]
    for point in [*points[1:], -1]:
        if point != previous + 1:
            parts.append(chr(start) if start == previous else f"{chr(start)}-{chr(previous)}")
            start = point
        previous = point
    return "".join(parts)


COMBINING_MARKS = _ranges([c for c in range(0x10000) if unicodedata.category(chr(c)).startswith("M")])
"""The combining marks of the Basic Multilingual Plane (categories Mn, Mc and Me), as the body
of a character class."""

ONE_TOKEN_EACH = (
    "\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff\u1a20-\u1aaf"
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
)
"""Thai, Lao, Myanmar, Khmer, Tai Tham, kana, CJK ideographs and Hangul: written without
spaces, so each character counts."""

WORD = rf"(?:\w|[{COMBINING_MARKS}])+"
"""A word: letters, digits and underscores, with the marks that combine with them."""


def composed(text: str) -> str:
    """``text`` in Unicode's composed form (NFC): an accent typed apart joins its letter.

    >>> len(composed("cafe\\u0301"))
    4
    """
    return text if text.isascii() else unicodedata.normalize("NFC", text)
