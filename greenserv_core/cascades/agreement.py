"""Whether two answers agree: the stated proxy label of a cascade's answer that was not kept.

When a cascade escalates, nobody scores the first model's answer. If the stronger model's
answer agrees with it, the first answer is taken to be as right as the second; if they
disagree and the second is right, the first is taken to be wrong. That is a proxy, not a
label, and :func:`answers_agree` is deliberately simple:

- answers that both commit to a final answer of one kind are compared by it, read as scoring
  reads answers (:mod:`greenserv_core.evaluation.scoring` uses the same readers): a choice
  letter A to E (:func:`extract_choice`, strictly: ``"B) Paris"``, ``"Answer: B"``, ``"(B)"``,
  ``"[B]"``, ``"B, because"``, ``"B. the mitochondria"``; never an initial or abbreviation, as
  in ``"C. S. Lewis"`` or ``"e.g."``, nor a hedge such as ``"B or C"``, nor free text that
  starts with a letter, as ``"D minor"``), then the number after the
  last ``####`` (GSM8K's mark), then yes or no (also true or false; after ``"the answer is"`` or
  ``"answer:"``, the last one said, else as the first word, else as the last word of an answer
  of a few words, ``"not true"`` being no), then the last number that ``"the answer is"`` names,
  then the last number, in digits or words below a million (``"forty-two"``; a bare ``"one"``,
  which is mostly the pronoun, only as the whole answer, as in ``"Answer: one."``; a clock time
  such as ``"2:30"`` is one value), whatever the words around it;
- otherwise they are compared as lowercase words without punctuation: a short answer (up to
  three words) agrees with another that begins with it (``"Paris"`` and ``"Paris is the
  capital"``, never ``"Canberra, not Sydney"`` with ``"Sydney"``), longer ones when their
  word-level F1 is at least ``threshold``.

A known limit: a name's initial before a lower-case word is read as a choice (``"E. coli"`` is
choice E): telling it from a choice followed by its option's text needs the options' text, which
scoring has (:func:`extract_choice`, given them, reads it as the option that says ``"E. coli"``)
and agreement between two answers does not.

>>> answers_agree("B) Paris", "b")
True
>>> answers_agree("The capital of France is Paris.", "Paris is the capital of France")
True
>>> answers_agree("The answer is 41.", "The answer is 42.")
False
>>> answers_agree("The answer is 42.", "42"), answers_agree("Answer: B", "B")
(True, True)
>>> answers_agree("twenty-one", "21"), answers_agree("B. the mitochondria", "(B)")
(True, True)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from greenserv_core.datasets.olmo_eval import LETTERS

__all__ = [
    "ARTICLE",
    "INITIALS",
    "MARKED_NUMBER",
    "NAMED_NUMBER",
    "NAMED_YES_NO",
    "NUMBER_PATTERN",
    "NUMBER_WORD_VALUES",
    "answers_agree",
    "canonical_number",
    "extract_choice",
    "final_answer",
    "minus_signs",
]

_WORD = re.compile(r"[\w.%-]+")
INITIALS = r"\.\s*[A-Za-z]\."
"""What follows a letter that makes it an initial or abbreviation, never a choice (the ``". S."`` of
``"C. S. Lewis"``, the ``".g."`` of ``"e.g."``): a pattern to put in a negative lookahead."""
# after a letter, what makes it no choice: an initial or abbreviation (INITIALS), and after "A" a
# word the article goes with ("Answer: A kangaroo"; "Answer: A because ..." is a choice)
_REASON = r"(?:because|since|as|is|was|and|or|but|so|which)\b"
ARTICLE = rf"(?<=A)[ \t]+(?!{_REASON})[a-z]"
"""What follows an "A" that is the article, not option A (``"A kangaroo"``; ``"A because"`` is
the option): a pattern to put in a negative lookahead."""
NUMBER_PATTERN = re.compile(r"(?:(?<![\w-])-)?(?:\d[\d,]*(?:\.\d+)?|(?<![\w.])\.\d+)(?:/\d+)?")
"""A number as answers write it: a sign (not a dash between numbers, as in ``3-5``),
thousands separators, decimals (``.5`` too, but not the ``.3`` of ``1.2.3`` or ``...3``), or a
fraction (``3/4``)."""
MARKED_NUMBER = re.compile(
    r"####[\s*_]*(?:(?:the\s+)?(?:final\s+)?answer(?:\s*is\b)?(?:\s*:)?[\s*_]*)?"  # (spaces read one way: linear)
    r"\$?(-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:/\d+)?)",
    re.IGNORECASE,
)
"""A number right after ``####`` (its sign, separators, decimals or fraction as in
:data:`NUMBER_PATTERN`), through emphasis and an "(the final) answer is" between them."""
NAMED_NUMBER = re.compile(  # (the spaces read one way: linear, not quadratic)
    r"\banswer(?:\s+is\b|\s*:)[\s*_:]*\$?((?:(?<![\w-])-)?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:/\d+)?)",
    re.IGNORECASE,
)
"""A number that "the answer is" or "answer:" names (its sign, separators, decimals or fraction
as in :data:`NUMBER_PATTERN`)."""


_SIGN_BEFORE_DOLLAR = re.compile(r"(?<![\w-])-\$(?=\.?\d)")


def minus_signs(text: str) -> str:
    """``text`` with its minus signs where the number patterns read them: U+2212 as ``-``, and
    a sign written before a dollar sign moved after it (``-$5`` reads as ``$-5``, a -5).

    >>> minus_signs("It fell by -$5, to \u22123 in all"), minus_signs("Pay $5-$7")
    ('It fell by $-5, to -3 in all', 'Pay $5-$7')
    """
    return _SIGN_BEFORE_DOLLAR.sub("$-", text.replace("\u2212", "-"))


_YES_NO = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}
# "the answer is yes", "Answer: No", "answer is: true" (one way to read the spaces: no quadratic search)
# the word ends its clause: never "the answer is no more than 5", "Answer: True Grit"
NAMED_YES_NO = re.compile(  # (its word: group 1)
    r"\banswer(?:\s+is\b\s*(?::\s*)?|\s*:\s*)[\"'(]?(yes|no|true|false)\b(?=[\"')]?[ \t]*(?:[.,;!?\n]|$))",
    re.IGNORECASE,
)
_SHORT = 5
"""The most words an answer may have for its last word to be read as its yes or no ("The statement is false.")."""
# a clock time, "2:30" or "14:05:59", read as one value: never its minutes
_TIME = re.compile(r"(?<![\w.:])(\d{1,2}):(\d{2}(?::\d{2})?)(?![\w:]|\.\d)")


def _words(text: str) -> list[str]:
    return [w.strip(".").lower() for w in _WORD.findall(text) if w.strip(".")]


def extract_choice(text: str, n_choices: int, choices: Sequence[str] = (), *, strict: bool = False) -> str | None:
    """The option letter an answer commits to, or ``None``.

    A leading letter (``"B"``, ``"(B)"``, ``"[B]"``, ``"'B'"``, ``"B. blue"``, ``"B, blue"``,
    ``"B - blue"``, ``"B is right"``, ``"C because"``, not ``"A man"`` nor ``"I think"``) wins;
    otherwise the first explicit ``answer is B`` (``option is B``, ``choice: B``, ``answer: b.``, ``answer is "B"``;
    a lowercase letter only where it stands alone, so never the article in ``answer is a
    cow``); otherwise the first ``option B``, ``choice B`` or ``answer B`` (so ``Option A is
    tempting, but the answer is B`` and ``The option is B, as answer A ignores friction``
    commit to B); otherwise the first letter that stands alone as ``B.`` or ``B)``. Markdown emphasis (``**B**``) is
    read through. Letters beyond the number of options do not count, nor do initials and abbreviations
    (``"C. S. Lewis"``, ``"E. B. White"``, ``"e.g."``; as in :func:`~greenserv_core.cascades.agreement.final_answer`).
    Given the options' texts (``choices``), a letter that begins the text of an option (``"E.
    coli"`` among five options, ``"B is tangential"`` where B says ``"B is perpendicular"``)
    reads as that option; an option that is only a letter (``"B"``) still reads as the letter.
    ``strict`` (how :func:`final_answer` reads an answer that need not be a choice at all) keeps
    only the forms that state one: a leading letter followed by punctuation, a dash or nothing
    (never ``"B is 4"``, ``"D minor"`` nor ``"C'est"``), and the letter an answer, option or
    choice names (never a lone ``"C."`` further on, as in ``"Take vitamin C."``).

    >>> extract_choice("C) because", 4), extract_choice("I think the answer is d.", 4), extract_choice("I'm", 4)
    ('C', 'D', None)
    >>> extract_choice("The answer is: **B**", 4), extract_choice("The answer is a cow, C.", 4)
    ('B', 'C')
    >>> [extract_choice(text, 4) for text in (" Option C", " [C]", " C - Paris", "A man")]
    ['C', 'C', 'C', None]
    >>> extract_choice("C. S. Lewis", 4), extract_choice("It was E. B. White", 5), extract_choice("e.g. 42", 5)
    (None, None, None)
    >>> extract_choice("The answer is E. coli.", 5, ("Salmonella", "E. coli", "Listeria", "Vibrio", "Shigella"))
    'B'
    """
    valid = LETTERS[:n_choices]
    lower = valid.lower()
    words = "".join(letter for letter in "ai" if letter in lower)  # lowercase letters that are also words
    plain = "".join(letter for letter in lower if letter not in words)
    either = f"[{plain}]\\b|" if plain else ""
    text = re.sub(r"[*_`]", "", text)
    capitals = "".join(letter for letter in valid if letter not in "AI")  # capitals that are not words
    leading_word = rf"|^\s*([{capitals}])\s+(?=\w)" if capitals and not strict else ""
    closing = "" if strict else "\\'\""
    quoted = rf"(?<='[{words}])'|(?<=\"[{words}])\""  # a quoted "a" ends at its closing quote
    named = (  # the letter "answer" names, maybe bracketed or quoted (not the apostrophe of "answer'd"),
        # never the article of "the answer is A kangaroo"
        rf"(?:[(\[]|(?<!\w)[\'\"])?([{valid}]\b|{either}[{words}](?=[.)\]]|\s*$|{quoted}))(?!{INITIALS})(?!{ARTICLE})"
    )
    reason = "" if strict else r"|\s+(?:is|would|was|because|since)\b"
    patterns = (
        rf"^\s*[(\[\'\"]?([{valid}{lower}])"
        rf"(?:(?!{INITIALS})[.):;,!?\]{closing}\n]|\s*$|\s+[-–—:(]{reason}){leading_word}",
        rf"(?i:answer|option|choice)\s*(?:(?i:is)\s*(?::\s*)?|:\s*){named}",  # (one way to read spaces: linear)
        rf"(?i:answer|option|choice)\s*{named}",
        # "B)", or "B." but neither an initial nor right after one (no B in "E. B. White")
        rf"(?:^|\s)(?:\(?([{valid}])\)|(?<!\b[A-Z]\.\s)\(?([{valid}])(?!{INITIALS})\.)(?:\s|$)",
    )[: 3 if strict else 4]
    hedge = re.compile(  # another letter joined on, or an "or" the answer was cut after
        rf"\s*(?:,|/|\bor\b|\band\b)\s*[(\[]?[{valid}]\b(?!{INITIALS})(?!{ARTICLE})|\s+(?:or|and)\s*$"
    )
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            group = next(i for i, letter in enumerate(match.groups(), 1) if letter)
            after = match.end(group)  # (past a closing bracket or quote: "(B) or (C)")
            if hedge.match(text, after + (text[after : after + 1] in (")", "]", "'", '"'))):
                return None  # "B or C", "B, C or D": no one letter committed to
            at = match.start(group)  # the letter, or the bracket or quote just before it (never "answer is")
            starts = (at, at - 1) if at and text[at - 1] in "([\"'" else (at,)
            reading = _quoted_option(text, starts, choices[:n_choices])
            return reading if reading is not None else match.group(group).upper()
    return None


def _quoted_option(text: str, starts: tuple[int, ...], choices: Sequence[str]) -> str | None:
    """The letter of the longest option whose text (more than a letter) ``text`` holds from one
    of ``starts`` on, up to a word's end; ``None`` when none does."""
    best: tuple[int, int] | None = None
    for index, choice in enumerate(choices):
        option = re.sub(r"[*_`]", "", choice).strip().casefold()
        if not re.search(r"\w\W*\w", option):  # "B", "(C)": a letter, not a text
            continue
        for start in starts:
            rest, end = text[start:].lstrip().casefold(), len(option)
            whole = rest.startswith(option) and not (rest[end : end + 1].isalnum() and option[-1:].isalnum())
            if whole and (best is None or end > best[0]):
                best = end, index
    return None if best is None else LETTERS[best[1]]


def final_answer(text: str) -> tuple[str, str] | None:
    """The answer ``text`` commits to, as ``(kind, value)``: ``("choice", "b")``,
    ``("yes/no", "yes")`` or ``("number", "42")``; ``None`` for free text.

    >>> final_answer("The answer is (C)."), final_answer("True."), final_answer("It costs 1,200 J.")
    (('choice', 'c'), ('yes/no', 'yes'), ('number', '1200'))
    >>> final_answer("It is a hundred and five"), final_answer("12 left, one each"), final_answer("**One.**")
    (('number', '105'), ('number', '12'), ('number', '1'))
    >>> final_answer("B. the mitochondria"), final_answer("C. S. Lewis"), final_answer("**B. dog**")
    (('choice', 'b'), None, ('choice', 'b'))
    >>> final_answer("#### 18 (Question: A baker has 24 rolls)"), final_answer("It ends at 2:30.")
    (('number', '18'), ('number', '2:30'))
    >>> final_answer("The answer is yes."), final_answer("The statement is not true."), final_answer("There is no way")
    (('yes/no', 'yes'), ('yes/no', 'no'), None)
    """
    plain = re.sub(r"[*_`]", "", text)  # markdown emphasis read through ("**B. dog**"), as scoring does
    # A to E as scoring reads them (a hedge, "B or C", is none), but only where the answer states
    # a choice: never "D minor", "C'est", "B is 4", nor a "C." that ends "Take vitamin C."
    choice = extract_choice(text, 5, strict=True)
    if choice is not None:
        return "choice", choice.lower()
    numeric = minus_signs(text)  # as scoring reads them
    marked = list(MARKED_NUMBER.finditer(numeric))
    if marked:  # GSM8K's final answer, as scoring reads it ("#### 9:30" a time)
        return "number", _number_at(numeric, marked[-1])
    yes_no = _yes_no(text, plain)
    if yes_no is not None:
        return "yes/no", yes_no
    named = list(NAMED_NUMBER.finditer(numeric))
    if named:  # "The answer is 18 (that is 3 * 6).": not the 6 of the working, as scoring reads it
        return "number", _number_at(numeric, named[-1])
    text = numeric
    times = list(_TIME.finditer(text))
    inside = {at for found in times for at in range(found.start(), found.end())}
    numbers = [(found.end(), f"{int(found[1])}:{found[2]}") for found in times]  # "02:30" is 2:30
    numbers += [(found.end(), found.group()) for found in NUMBER_PATTERN.finditer(text) if found.start() not in inside]
    words_found = list(_NUMBER_WORDS.finditer(text))
    one_alone = any(found.group().lower() == "one" for found in words_found) and bool(_ONE_ALONE.fullmatch(text))
    numbers += [  # a bare "one" is the pronoun, unless it is the whole answer
        (found.end(), str(_word_number(found.group())))
        for found in words_found
        if found.group().lower() != "one" or one_alone
    ]
    if numbers:
        last = max(numbers)[1]
        return "number", canonical_number(last) or last
    return None


def _number_at(text: str, found: re.Match[str]) -> str:
    """The number a :data:`MARKED_NUMBER` or :data:`NAMED_NUMBER` match read, in one form; a
    clock time where minutes follow it (``"#### 9:30"``)."""
    minutes = re.match(r":(\d{2})(?![\d:])", text[found.end() : found.end() + 4])
    if minutes is not None and re.fullmatch(r"\d{1,2}", found[1]):
        return f"{int(found[1])}:{minutes[1]}"
    return canonical_number(found[1]) or found[1]


def _yes_no(text: str, plain: str) -> str | None:
    """The yes or no ``text`` commits to: the word after "the answer is" or "answer:" (the
    last one said, in ``plain``, its markdown emphasis read through: "No doubt, the answer is
    yes" is yes, as scoring reads it), else its first word, else the last word of an answer of
    at most :data:`_SHORT` words (``"not true"`` is no)."""
    named = [found[1] for found in NAMED_YES_NO.finditer(plain)]  # the last one said ("at first ... no, ... yes")
    if named:
        return _YES_NO[named[-1].lower()]
    words = _words(text)
    if words and words[0] in _YES_NO:
        return _YES_NO[words[0]]
    if not words or len(words) > _SHORT or words[-1] not in _YES_NO:
        return None
    flipped = {"true": "no", "false": "yes"} if len(words) > 1 and words[-2] == "not" else {}
    return flipped.get(words[-1], _YES_NO[words[-1]])


_SMALL = (  # noqa: SIM905
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()  # noqa: SIM905
NUMBER_WORD_VALUES = {word: value for value, word in enumerate(_SMALL)} | {
    word: 10 * n for n, word in enumerate(_TENS, 2)
}
"""Each number word's value, ``zero`` to ``nineteen`` and the tens to ``ninety``."""
_BELOW_100 = rf"(?:(?:{'|'.join(_TENS)})(?:(?:-|\s+)(?:{'|'.join(_SMALL[1:10])}))?|{'|'.join(reversed(_SMALL))})"
_BELOW_1000 = rf"(?:(?:a|{'|'.join(_SMALL[1:10])})\s+hundred(?:\s+(?:and\s+)?{_BELOW_100})?|{_BELOW_100})"
_NUMBER_WORDS = re.compile(
    rf"(?<![\w-])(?:(?:a|{_BELOW_1000})\s+thousand(?:\s+(?:and\s+)?{_BELOW_1000})?|{_BELOW_1000})(?![\w-])",
    re.IGNORECASE,
)
"""A whole number in words below a million: ``four``, ``twenty-one``, ``a hundred and five``, ``two thousand``."""
# "one" as the whole answer, or all that follows "the answer is" or "answer:" ("**One.**", "Answer: one")
_ONE_ALONE = re.compile(r"(?:.*\banswer(?:\s+is\b|\s*:))?[\W_]*one[\W_]*", re.IGNORECASE | re.DOTALL)


def _word_number(text: str) -> int:
    """The value of a number :data:`_NUMBER_WORDS` found (``"a hundred and five"`` is 105)."""
    total = current = 0
    for word in re.findall(r"[a-z]+", text.lower()):
        if word == "thousand":
            total, current = total + current * 1000, 0
        elif word == "hundred":
            current *= 100
        elif word != "and":
            current += NUMBER_WORD_VALUES.get(word, 1)  # "a" hundred
    return total + current


def canonical_number(text: str) -> str | None:
    """A number written as answers write it, in one form (``None`` if it is none), exact
    however long: no thousands separators, no trailing point, a whole number without
    decimals, a fraction as its decimal where that ends (``3/4`` is ``0.75``), else reduced.

    >>> canonical_number("1,200.00"), canonical_number("-3.50"), canonical_number("6/8"), canonical_number("2/6")
    ('1200', '-3.5', '0.75', '1/3')
    >>> canonical_number("9" * 5000) == "9" * 5000, canonical_number("x"), canonical_number("1/0")
    (True, None, None)
    >>> canonical_number(".50"), canonical_number("-.5"), canonical_number("."), canonical_number("")
    ('0.5', '-0.5', None, None)
    """
    cleaned = re.sub(r"^([+-]?)\.(?=\d)", r"\g<1>0.", text.replace(",", "").rstrip("."))  # ".5" is 0.5
    try:
        if "/" in cleaned:
            numerator, denominator = cleaned.split("/")
            return _fraction_text(Fraction(int(numerator), int(denominator)))
    except (ValueError, ZeroDivisionError):  # not two whole numbers, or too long for int()
        return None
    found = _DECIMAL.fullmatch(cleaned)
    return None if found is None else _decimal_text(*found.groups())


_DECIMAL = re.compile(r"([+-]?)(\d+)(?:\.(\d*))?")


def _decimal_text(sign: str, whole: str, decimals: str | None) -> str:
    """A decimal in one form, by its digits (exact at any length)."""
    whole, decimals = whole.lstrip("0") or "0", (decimals or "").rstrip("0")
    sign = "-" if sign == "-" and (whole != "0" or decimals) else ""
    return f"{sign}{whole}.{decimals}" if decimals else f"{sign}{whole}"


def _fraction_text(value: Fraction) -> str:
    """A fraction as its decimal where one ends it, else reduced (``1/3``)."""
    if value.denominator == 1:
        return str(value.numerator)
    rest, places = value.denominator, 0
    for factor in (2, 5):
        count = 0
        while rest % factor == 0:
            rest, count = rest // factor, count + 1
        places = max(places, count)
    if rest != 1:  # no decimal ends it
        return f"{value.numerator}/{value.denominator}"
    digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
    return _decimal_text("-" if value < 0 else "", digits[:-places], digits[-places:])


def answers_agree(first: str, second: str, *, threshold: float = 0.5) -> bool:
    """Whether ``first`` and ``second`` give the same answer (see the module's docstring)."""
    key_a, key_b = final_answer(first), final_answer(second)
    if key_a is not None and key_b is not None and key_a[0] == key_b[0]:
        return key_a[1] == key_b[1]
    a, b = _words(first), _words(second)
    if not a or not b:
        return not a and not b
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    if len(short) <= 3:
        return long[: len(short)] == short
    common = sum((Counter(a) & Counter(b)).values())
    if common == 0:
        return False
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall) >= threshold
