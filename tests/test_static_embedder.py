"""The static embedder: distillation (on a tiny random BERT), serving, the bundled pair, and the
``embedder=`` and ``task_encoding=`` options of the features and the router."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.errors import InvalidInputError, MissingResourceError, StateFileError
from greenserv_core.features import FeatureExtractor, HashingEmbedder, StaticEmbedder, TaskClassifier, distill_static
from greenserv_core.features.bundled import bundled_features, bundled_name
from greenserv_core.features.embedders import bundled_minilm_path
from greenserv_core.features.extractor import check_pair
from greenserv_core.features.static_embedder import _pca, _special_wrap, static_model_dir

from .conftest import TINY_TRAINING, errors_in_threads, make_hashing_extractor


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer BERT beside the bundled MiniLM's real tokenizer (30,522 tokens)."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    BertModel(config).save_pretrained(folder)
    shutil.copyfile(bundled_minilm_path() / "tokenizer.json", folder / "tokenizer.json")
    return folder


@pytest.fixture(scope="module")
def tiny_static(tiny_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return distill_static(tiny_source, tmp_path_factory.mktemp("static") / "tiny", dimension=8, show_progress=False)


def test_distillation_writes_a_loadable_table(tiny_source: Path, tiny_static: Path) -> None:
    config = json.loads((tiny_static / "config.json").read_text())
    vectors = np.load(tiny_static / "vectors.npy")
    assert vectors.shape == (30522, 8) and config["dimension"] == 8
    assert not vectors[1].any()  # "[unused0]": a placeholder the tokenizer never produces
    embedder = StaticEmbedder(tiny_static)
    out = embedder.embed(["What is 12 times 3?", "Which element has the symbol Fe?", ""])
    assert out.shape == (3, 8) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert embedder.name == f"static:{tiny_source.name}:8:{config['fingerprint']}"
    np.testing.assert_allclose(embedder.embed(["hello world"]), embedder.embed(["hello world", "x"])[:1], atol=1e-6)


def test_distillation_is_reproducible(tiny_source: Path, tiny_static: Path, tmp_path: Path) -> None:
    again = distill_static(tiny_source, tmp_path / "again", dimension=8, show_progress=False)
    assert StaticEmbedder(again).name == StaticEmbedder(tiny_static).name  # same bytes, same recipe
    np.testing.assert_allclose(np.load(again / "vectors.npy"), np.load(tiny_static / "vectors.npy"), atol=1e-5)
    other = distill_static(tiny_source, tmp_path / "other", dimension=12, show_progress=False)
    assert StaticEmbedder(other).name != StaticEmbedder(tiny_static).name


def test_a_token_is_wrapped_in_cls_and_sep_only() -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bundled_minilm_path() / "tokenizer.json"))  # it pads every text to 128
    assert _special_wrap(tokenizer) == ([101], [102])


def test_pca_fixes_each_axis_sign() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(200, 5)) * np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    one, two = _pca(data, 3), _pca(-data, 3)  # a sign flip of the input flips the data, not the axes
    np.testing.assert_allclose(one, -two, atol=1e-8)
    assert np.all(np.diff(one.var(axis=0)) < 0)  # largest variance first


def test_static_embedder_refuses_bad_input(tiny_static: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="sequence of strings"):
        StaticEmbedder(tiny_static).embed("one string")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="max_tokens"):
        StaticEmbedder(tiny_static, max_tokens=0)
    with pytest.raises(MissingResourceError, match="greenserv setup"):
        StaticEmbedder(tmp_path / "nothing").embed(["hi"])
    with pytest.raises(InvalidInputError, match="dimension"):
        distill_static(tmp_path, tmp_path / "x", dimension=2)


def test_the_cache_returns_the_vectors_it_would_compute(tiny_static: Path) -> None:
    texts = ["What is 12 times 3?", "Which element has the symbol Fe?", "What is 12 times 3?"]
    uncached = StaticEmbedder(tiny_static, cache_size=0)
    cached = StaticEmbedder(tiny_static, cache_size=2)
    expected = uncached.embed(texts)
    np.testing.assert_array_equal(cached.embed(texts), expected)  # a batch fills the cache
    np.testing.assert_array_equal(cached.embed(texts[:1]), expected[:1])  # a hit, bit for bit
    assert cached._cache.get(texts[0]) is not None and len(cached._cache._items) == 2
    assert all(vector.base is None for vector in cached._cache._items.values())  # never a view of a batch
    cached.embed(["a third text"])  # evicts the least recently used
    assert len(cached._cache._items) == 2
    assert uncached.embed([]).shape == cached.embed([]).shape == (0, 8)
    with pytest.raises(InvalidInputError, match="cache_size"):
        StaticEmbedder(tiny_static, cache_size=-1)


DistilledBy = Callable[[Callable[[Path], Path], Path], tuple[Path, list[Path]]]


@pytest.fixture
def default_model_distilled_by(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DistilledBy:
    """``(distil, minilm) -> (target, calls)``: the default static model's folder is ``target``,
    empty at first, under ``tmp_path``; the MiniLM it is distilled from is ``minilm``, and
    ``distil(out)`` makes it (each ``out`` it is called with is added to ``calls``)."""
    import greenserv_core.features.embedders as embedders
    import greenserv_core.features.static_embedder as static

    def set_up(distil: Callable[[Path], Path], minilm: Path) -> tuple[Path, list[Path]]:
        target, calls = tmp_path / "cache" / "minilm-static-v2", []

        def counted(out: str | Path) -> Path:
            calls.append(Path(out))
            return distil(Path(out))

        monkeypatch.setattr(static, "static_model_dir", lambda name=static.STATIC_MODEL: target)
        monkeypatch.setattr(static, "distill_static", counted)
        monkeypatch.setattr(embedders, "bundled_minilm_path", lambda: minilm)
        return target, calls

    return set_up


def test_the_default_model_is_distilled_on_first_use(
    tiny_source: Path, default_model_distilled_by: DistilledBy
) -> None:
    target, calls = default_model_distilled_by(
        lambda out: distill_static(tiny_source, out, dimension=8, show_progress=False), tiny_source
    )
    assert StaticEmbedder().embed(["What is 12 times 3?"]).shape == (1, 8)
    assert calls == [target] and (target / "config.json").exists()
    StaticEmbedder().embed(["again"])
    assert calls == [target]  # once: the next embedder finds it in the cache


def test_without_minilm_the_default_model_asks_for_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import greenserv_core.features.embedders as embedders
    import greenserv_core.features.static_embedder as static

    def missing() -> Path:
        raise MissingResourceError("the bundled embedder all-MiniLM-L6-v2 is not installed")

    monkeypatch.setattr(static, "static_model_dir", lambda name=static.STATIC_MODEL: tmp_path / "none")
    monkeypatch.setattr(embedders, "bundled_minilm_path", missing)
    with pytest.raises(MissingResourceError, match="greenserv setup"):
        StaticEmbedder().embed(["hi"])
    assert not (tmp_path / "none").exists()


def test_a_classifier_of_another_space_is_refused() -> None:
    classifier = make_hashing_extractor().task_classifier
    check_pair(HashingEmbedder(128), classifier)
    with pytest.raises(InvalidInputError, match="trained on 'hashing:128'"):
        check_pair(HashingEmbedder(64), classifier)


def test_bundled_names() -> None:
    assert bundled_name("sentence-transformers:all-MiniLM-L6-v2:128") == "minilm"
    assert bundled_name("static:all-MiniLM-L6-v2:384:abc") == "static"
    assert bundled_name("hashing:64") is None
    with pytest.raises(InvalidInputError, match="embedder must be one of"):
        bundled_features("word2vec")


def test_probability_encoding_spreads_the_task_block() -> None:
    embedder = HashingEmbedder(128)
    texts = [t for group in TINY_TRAINING.values() for t in group]
    labels = [label for label, group in TINY_TRAINING.items() for _ in group]
    classifier = TaskClassifier().fit(embedder.embed(texts), labels, embedder.name)
    onehot = FeatureExtractor(embedder, classifier)
    spread = FeatureExtractor(embedder, classifier, task_encoding="probabilities")
    a, b = onehot.extract("What is 7 + 5?", learn=False), spread.extract("What is 7 + 5?", learn=False)
    block = slice(1, 1 + len(classifier.labels))
    assert a.vector[block].sum() == 1.0 and set(a.vector[block]) == {0.0, 1.0}
    assert b.vector[block].sum() == pytest.approx(1.0) and 0 < b.vector[block].max() < 1
    assert b.vector[block].argmax() == a.vector[block].argmax()
    np.testing.assert_array_equal(a.vector[block.stop :], b.vector[block.stop :])
    with pytest.raises(StateFileError, match="task encoding"):
        spread.load_state_dict(onehot.state_dict())
    with pytest.raises(InvalidInputError, match="task_encoding"):
        FeatureExtractor(embedder, classifier, task_encoding="soft")  # type: ignore[arg-type]


def test_router_takes_an_embedder_or_features_not_both() -> None:
    with pytest.raises(InvalidInputError, match="not both"):
        GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), embedder="static")


needs_static = pytest.mark.skipif(
    not (static_model_dir() / "config.json").exists(), reason="run `greenserv setup` to distil the static embedder"
)


@needs_static
def test_the_bundled_static_pair_matches_and_reads_everyday_queries() -> None:
    embedder, classifier = bundled_features("static")
    assert classifier.embedder_name_ == embedder.name
    labels = {
        text: classifier.predict(v, text).label
        for text, v in zip(_EVERYDAY, embedder.embed(list(_EVERYDAY)), strict=True)
    }
    assert labels["What is 12 times 3?"] == "math_word_problem"
    assert labels["Write a python function that reverses a string."] == "code"


_EVERYDAY = ("What is 12 times 3?", "Write a python function that reverses a string.")


@needs_static
def test_a_static_router_saves_and_loads_with_its_own_embedder(tmp_path: Path) -> None:
    router = GreenServRouter([FakeBackend("a"), FakeBackend("b")], embedder="static", seed=0)
    decision = router.route("What is 12 times 3?", max_new_tokens=4)
    assert decision.features.task == "math_word_problem"
    router.save(tmp_path / "state.json")
    loaded = GreenServRouter.load(tmp_path / "state.json", [FakeBackend("a"), FakeBackend("b")])
    assert loaded.features.embedder.name == router.features.embedder.name
    minilm = FeatureExtractor(*bundled_features("minilm"))
    with pytest.raises(StateFileError, match="embedder"):
        GreenServRouter.load(tmp_path / "state.json", [FakeBackend("a"), FakeBackend("b")], features=minilm)


def test_a_fake_that_counts_otherwise_shares_no_token_count() -> None:
    class Wordy(FakeBackend):
        def count_tokens(self, messages):  # type: ignore[no-untyped-def]
            return 10_000

    assert FakeBackend("a").token_count_key == "fake:words"
    assert Wordy("b").token_count_key is None
    router = GreenServRouter([FakeBackend("a"), Wordy("b")], features=make_hashing_extractor(), seed=0)
    decision = router.route("hello there", max_new_tokens=4)
    assert decision.model == "a" and "b" in decision.excluded  # its context window cannot hold 10,000


def test_loading_a_state_of_an_unbundled_embedder_asks_for_features(tmp_path: Path) -> None:
    router = GreenServRouter([FakeBackend("a")], features=make_hashing_extractor(), seed=0)
    router.save(tmp_path / "state.json")
    with pytest.raises(InvalidInputError, match="'hashing:128', which is not bundled: pass features="):
        GreenServRouter.load(tmp_path / "state.json", [FakeBackend("a")])


def test_threads_distilling_into_one_folder_each_leave_a_whole_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import greenserv_core.features.static_embedder as static

    source = tmp_path / "source"
    source.mkdir()
    shutil.copyfile(bundled_minilm_path() / "tokenizer.json", source / "tokenizer.json")

    def token_vectors(*args: object) -> np.ndarray:  # no transformer: the race is in the writing
        return np.random.default_rng(0).normal(size=(len(args[1]), 16)).astype(np.float32)  # type: ignore[arg-type]

    saving, save = threading.Barrier(2, timeout=5), np.save

    def save_then_wait(*args: object, **kwargs: object) -> None:  # both have written vectors before either moves
        save(*args, **kwargs)  # type: ignore[arg-type]
        saving.wait()

    monkeypatch.setattr(static, "_token_vectors", token_vectors)
    monkeypatch.setattr(np, "save", save_then_wait)
    out = tmp_path / "models" / "model"
    assert errors_in_threads(lambda: distill_static(source, out, dimension=8, show_progress=False)) == []
    assert [p.name for p in out.parent.iterdir()] == ["model"]  # no partial folder left
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "tokenizer.json", "vectors.npy"]
    assert StaticEmbedder(out).embed(["hello"]).shape == (1, 8)


def test_two_embedders_used_first_at_once_distil_the_default_model_once(
    tiny_static: Path, default_model_distilled_by: DistilledBy
) -> None:
    import threading
    import time

    def distil(out: Path) -> Path:
        time.sleep(0.3)  # long enough for the other embedder to look for the model meanwhile
        shutil.copytree(tiny_static, out)
        return out

    target, calls = default_model_distilled_by(distil, tiny_static)
    shapes: list[tuple[int, ...]] = []
    threads = [threading.Thread(target=lambda: shapes.append(StaticEmbedder().embed(["hi"]).shape)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert shapes == [(1, 8), (1, 8)] and calls == [target]


def test_distilling_over_a_folder_of_other_files_is_refused_before_the_work(
    tiny_static: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import greenserv_core.features.static_embedder as static

    source = tmp_path / "source"
    source.mkdir()
    shutil.copyfile(bundled_minilm_path() / "tokenizer.json", source / "tokenizer.json")
    passes: list[int] = []

    def token_vectors(*args: object) -> np.ndarray:  # no transformer: the refusal comes before it
        passes.append(len(args[1]))  # type: ignore[arg-type]
        return np.random.default_rng(0).normal(size=(len(args[1]), 16)).astype(np.float32)  # type: ignore[arg-type]

    monkeypatch.setattr(static, "_token_vectors", token_vectors)
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "notes.txt").write_text("months of work")
    foreign = tmp_path / "foreign"  # another model's config beside a static model's file names
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model_type": "bert"}')
    (foreign / "tokenizer.json").write_text("{}")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out in (project, foreign, a_file):
        with pytest.raises(InvalidInputError, match="not a static embedder's folder"):
            distill_static(source, out, dimension=8, show_progress=False)
    assert passes == [] and (project / "notes.txt").read_text() == "months of work" and (project / "data").is_dir()
    assert (foreign / "config.json").exists() and a_file.read_text() == "x"

    earlier, damaged, empty = tmp_path / "earlier", tmp_path / "damaged", tmp_path / "empty"
    shutil.copytree(tiny_static, earlier)
    shutil.copytree(tiny_static, damaged)
    (damaged / "config.json").write_text('{"format": "greenserv-static-embed')  # cut short
    (damaged / "vectors.npy").unlink()
    empty.mkdir()
    for out in (earlier, damaged, empty):  # an earlier or damaged static model is replaced
        distill_static(source, out, dimension=8, show_progress=False)
        assert sorted(p.name for p in out.iterdir()) == ["config.json", "tokenizer.json", "vectors.npy"]
        assert StaticEmbedder(out).embed(["hello"]).shape == (1, 8)
    assert len(passes) == 3


@pytest.mark.parametrize("damage", ["tokenizer.json", "vectors.npy", "config.json", "config.json cut short"])
def test_a_damaged_model_names_its_file_and_setup_distils_it_again(
    damage: str, tiny_static: Path, tmp_path: Path
) -> None:
    from greenserv_core.cli.chat import _static_matches

    folder = tmp_path / "model"
    shutil.copytree(tiny_static, folder)
    file = folder / damage.split()[0]
    if damage == "config.json cut short":
        file.write_text('{"format": "greenserv-static-embed')
    elif damage == "config.json":
        file.write_text('{"format": "greenserv-static-embedder", "version": 1}')  # no fingerprint
    else:
        file.unlink()
    with pytest.raises(MissingResourceError, match=rf"{file.name} is .*greenserv setup"):
        StaticEmbedder(folder).embed(["hi"])
    assert not _static_matches(folder)  # so `greenserv setup` distils it again


def test_sizes_are_whole_numbers_numpy_ones_too(tiny_static: Path) -> None:
    embedder = StaticEmbedder(tiny_static, max_tokens=np.int64(64), cache_size=np.int64(8))  # type: ignore[arg-type]
    assert embedder.embed(["hi"]).shape == (1, 8)
    assert type(embedder.max_tokens) is int and type(embedder.cache_size) is int
    for bad in (100.5, "256", True, 0):
        with pytest.raises(InvalidInputError, match="max_tokens must be an integer >= 1"):
            StaticEmbedder(tiny_static, max_tokens=bad)  # type: ignore[arg-type]
    for bad in (8.0, "8", False, -1):
        with pytest.raises(InvalidInputError, match="cache_size must be an integer >= 0"):
            StaticEmbedder(tiny_static, cache_size=bad)  # type: ignore[arg-type]
