"""Hashed word n-grams beside the embedding: the hasher, and a task classifier that reads text."""

import json
import zlib

import numpy as np
import pytest

from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.features import FeatureExtractor, HashingEmbedder, TaskClassifier
from greenserv_core.features.lexical import LexicalHasher

TEXTS = [
    "def add(a, b): return a + b",
    "def square(x): return x * x",
    "Summarise this article in one line",
    "Please summarise the text below",
]
LABELS = ["code", "code", "summarization", "summarization"]


class ConstantEmbedder:
    """Every text is the same point: only the words can tell texts apart."""

    name = "constant:4"
    dimension = 4

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 4), dtype=np.float32) / 2.0


def test_hasher_buckets_are_crc32_of_unigrams_and_bigrams() -> None:
    indices, values = LexicalHasher(n_features=1 << 20).features("Hello, world")
    grams = ["hello", ",", "world", "hello ,", ", world"]
    assert sorted(indices.tolist()) == sorted(zlib.crc32(g.encode()) % (1 << 20) for g in grams)
    np.testing.assert_allclose(values, np.full(5, 1 / np.sqrt(5)))


def test_hasher_counts_repeats_and_normalises() -> None:
    indices, values = LexicalHasher(n_features=1 << 20).features("go go")
    counts = dict(zip(indices.tolist(), values.tolist(), strict=True))
    go, go_go = zlib.crc32(b"go") % (1 << 20), zlib.crc32(b"go go") % (1 << 20)
    assert counts[go] == pytest.approx(2 / np.sqrt(5)) and counts[go_go] == pytest.approx(1 / np.sqrt(5))


def test_hasher_matrix_matches_its_rows_and_handles_empty_text() -> None:
    hasher = LexicalHasher(n_features=64)
    matrix = hasher.transform(["a b c", "", "c b a"]).toarray()
    assert matrix.shape == (3, 64)
    assert not matrix[1].any()
    indices, values = hasher.features("c b a")
    expected = np.zeros(64)
    np.add.at(expected, indices, values)
    np.testing.assert_allclose(matrix[2], expected)


@pytest.mark.parametrize("bad", [0, 1, -3, 2.5, True, "8"])
def test_hasher_refuses_a_bad_size(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="n_features"):
        LexicalHasher(n_features=bad)  # type: ignore[arg-type]


def test_hasher_refuses_one_string() -> None:
    with pytest.raises(InvalidInputError, match="sequence"):
        LexicalHasher(8).transform("one text")  # type: ignore[arg-type]


def fitted(lexical_features: int) -> TaskClassifier:
    embedder = ConstantEmbedder()
    return TaskClassifier(lexical_features=lexical_features).fit(
        embedder.embed(TEXTS), LABELS, embedder.name, texts=TEXTS
    )


def test_words_separate_what_the_embedding_cannot() -> None:
    queries = ["def cube(y): return y * y * y", "summarise this report please"]
    x = ConstantEmbedder().embed(queries)
    without = TaskClassifier().fit(ConstantEmbedder().embed(TEXTS), LABELS, "constant:4")
    assert len({without.predict(v).label for v in x}) == 1  # one point, one answer
    with_words = fitted(256)
    assert [with_words.predict(v, q).label for v, q in zip(x, queries, strict=True)] == ["code", "summarization"]


def test_a_text_reading_classifier_needs_the_texts() -> None:
    clf = fitted(256)
    x = ConstantEmbedder().embed(["a", "b"])
    with pytest.raises(InvalidInputError, match="texts"):
        clf.predict_proba(x)
    with pytest.raises(InvalidInputError, match="1 texts for 2"):
        clf.predict_proba(x, ["a"])
    with pytest.raises(InvalidInputError, match="texts"):
        TaskClassifier(lexical_features=16).fit(x, ["p", "q"], "constant:4")


def test_text_reading_classifier_round_trips_exactly() -> None:
    clf = fitted(256)
    again = TaskClassifier.from_dict(json.loads(json.dumps(clf.to_dict())))
    assert again.reads_text and again.lexical_features == 256
    np.testing.assert_array_equal(again.coef_, clf.coef_)
    x = ConstantEmbedder().embed(TEXTS)
    np.testing.assert_array_equal(again.predict_proba(x, TEXTS), clf.predict_proba(x, TEXTS))


def test_version_one_classifiers_still_load() -> None:
    embedder = HashingEmbedder(32)
    clf = TaskClassifier().fit(embedder.embed(TEXTS), LABELS, embedder.name)
    old = {**clf.to_dict(), "version": 1, "coef": clf.coef_.tolist()}
    again = TaskClassifier.from_dict(old)
    assert not again.reads_text
    np.testing.assert_allclose(again.predict_proba(embedder.embed(TEXTS)), clf.predict_proba(embedder.embed(TEXTS)))


@pytest.mark.parametrize(
    "change",
    [
        {"coef": {"dtype": "object", "shape": [2, 2], "base64": ""}},
        {"coef": {"dtype": "<f8", "shape": [2, 999], "base64": ""}},
        {"coef": {"dtype": "<f8", "shape": [2, 260], "base64": "not base64!"}},
        {"lexical": {"kind": "char-5-grams", "n_features": 256, "weight": 1.0}},
        {"lexical": {"kind": "word-1-2-crc32", "n_features": 9999, "weight": 1.0}},
    ],
)
def test_damaged_classifier_files_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(StateFileError):
        TaskClassifier.from_dict({**fitted(256).to_dict(), **change})


def test_the_extractor_hands_the_classifier_its_instruction_text() -> None:
    extractor = FeatureExtractor(ConstantEmbedder(), fitted(256), n_clusters=2)
    assert extractor.extract("def cube(y): return y ** 3").task == "code"
    assert extractor.extract("Summarise the text below, please").task == "summarization"


def test_the_bundled_static_classifier_reads_words() -> None:
    from greenserv_core.features.bundled import bundled_classifier

    clf = bundled_classifier("static")
    assert clf.reads_text and clf.lexical_features > 0
    assert clf.metrics_["held_out_macro_f1"] >= 0.95
