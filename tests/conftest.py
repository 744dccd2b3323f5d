"""Shared fixtures: a dependency-free feature extractor, and the real bundled one."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from greenserv_core import FakeBackend, FeatureExtractor, GreenServRouter, ModelBackend
from greenserv_core.features import HashingEmbedder, TaskClassifier

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def bundled_models_read_once() -> Iterator[None]:
    """The bundled models' tokenizers and weights are read from disk once per test session and
    shared by the backends that the tests build (each example, chat and real-model test builds
    its own router, and reading both models again cost seconds per test on CI's two cores).
    Only the converted bundled models are shared, never a test's own tiny models; the library
    sets up a shared tokenizer the same way each time (its pad token and padding side), and
    generating changes no weights. The first read in a session goes through the library's path."""
    import transformers

    from greenserv_core.models.bundled import converted_dir

    root = converted_dir("any").parent.resolve()
    lock, loaded = threading.Lock(), dict[tuple[str, str, str], Any]()
    originals = {
        kind: getattr(transformers, kind).from_pretrained for kind in ("AutoTokenizer", "AutoModelForCausalLM")
    }

    def once(kind: str) -> Callable[..., Any]:
        read = originals[kind]

        def from_pretrained(source: object, *args: Any, **options: Any) -> Any:
            if args or not isinstance(source, (str, Path)) or not Path(source).resolve().is_relative_to(root):
                return read(source, *args, **options)
            key = (kind, str(Path(source).resolve()), repr(sorted(options.items())))
            with lock:
                if key not in loaded:
                    loaded[key] = read(source, **options)
                return loaded[key]

        return from_pretrained

    with pytest.MonkeyPatch.context() as patch:
        for kind in originals:
            patch.setattr(getattr(transformers, kind), "from_pretrained", once(kind))
        yield


TINY_TRAINING = {
    "math": ["What is 2 + 2?", "Compute 17 times 3.", "How many apples are left if I eat 3 of 10?", "Solve 5x = 20."],
    "chat": ["Hi, how are you?", "Tell me a joke.", "Write a poem about rain.", "What should I cook tonight?"],
    "qa": ["Who wrote Hamlet?", "What is the capital of France?", "When did WW2 end?", "Who painted the Mona Lisa?"],
}


def spy_energy_scales(monkeypatch: pytest.MonkeyPatch, module: object) -> list[object]:
    """Make ``module``'s ``GreenServRouter`` note the ``energy_scale`` each router is built with."""
    built: list[object] = []

    def spy(*args: object, **kwargs: object) -> GreenServRouter:
        built.append(kwargs.get("energy_scale"))
        return GreenServRouter(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "GreenServRouter", spy)
    return built


def make_hashing_extractor(n_clusters: int = 3, *, centre_clusters: bool = True) -> FeatureExtractor:
    embedder = HashingEmbedder(128)
    texts = [t for texts in TINY_TRAINING.values() for t in texts]
    labels = [label for label, texts in TINY_TRAINING.items() for _ in texts]
    classifier = TaskClassifier().fit(embedder.embed(texts), labels, embedder.name)
    return FeatureExtractor(embedder, classifier, n_clusters=n_clusters, centre_clusters=centre_clusters)


def use_fake_pool(monkeypatch: pytest.MonkeyPatch, backends: Sequence[ModelBackend]) -> None:
    """The command line's models are ``backends`` (``build_backends`` returns them, whatever it
    is asked) and its default features hash words (no embedder loads)."""
    from greenserv_core.models import pool

    monkeypatch.setattr(pool, "build_backends", lambda *args, **kwargs: list(backends))
    monkeypatch.setattr(FeatureExtractor, "default", classmethod(lambda cls, **kwargs: make_hashing_extractor()))


@pytest.fixture
def extractor() -> FeatureExtractor:
    return make_hashing_extractor()


@pytest.fixture
def fakes() -> list[FakeBackend]:
    return [
        FakeBackend("small", joules_per_token=1.0, seconds_per_token=0.001),
        FakeBackend("medium", joules_per_token=3.0, seconds_per_token=0.003),
        FakeBackend("large", joules_per_token=9.0, seconds_per_token=0.01),
    ]


@pytest.fixture
def router(fakes: list[FakeBackend], extractor: FeatureExtractor) -> GreenServRouter:
    return GreenServRouter(fakes, features=extractor, tradeoff=0.4, seed=0)


@pytest.fixture(scope="session")
def minilm_extractor_factory():  # type: ignore[no-untyped-def]
    """Real bundled features (MiniLM + bundled classifier); the embedder is loaded once."""
    from greenserv_core.features import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    classifier = TaskClassifier.bundled()

    def make(n_clusters: int = 3) -> FeatureExtractor:
        return FeatureExtractor(embedder, classifier, n_clusters=n_clusters)

    return make


def errors_in_threads(target: Callable[[], object], count: int = 2) -> list[BaseException]:
    """Run ``target`` in ``count`` threads at once; the errors they raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def assert_docstring_says_what_sharing_costs(doc: str | None, own_tokens: int) -> None:
    """An adapter's embedding ``doc`` states its own embedder's input length (``own_tokens``)
    and the shorter one of the router's MiniLM, which sharing it would cost."""
    from greenserv_core.features.bundled import bundled_embedder

    routers = bundled_embedder("minilm")  # the router's with embedder="minilm" (nothing is loaded)
    assert own_tokens == 256 and routers.max_seq_length == 128
    words = " ".join((doc or "").split())
    assert f"{own_tokens}-token inputs" in words and f"first {routers.max_seq_length} tokens" in words
