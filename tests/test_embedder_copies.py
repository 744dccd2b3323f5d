"""The bundled embedders survive pickling and deep copies (LlamaIndex's pipeline workers, LangChain's
copies): the same name, parameters and vectors, the model loaded again on first use. No real weights."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenserv_core.features import HashingEmbedder, SentenceTransformerEmbedder, StaticEmbedder

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "what", "is", "two", "plus"]
TEXTS = ["hello world", "what is two plus two", ""]
ROUND_TRIPS: list[Callable[[Any], Any]] = [lambda x: pickle.loads(pickle.dumps(x)), copy.deepcopy]


def _word_tokenizer(folder: Path) -> Path:
    """A whitespace word-level tokenizer over :data:`WORDS`, saved as ``folder / "tokenizer.json"``."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


@pytest.fixture(scope="module")
def tiny_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand-written static model: random vectors for :data:`WORDS`."""
    folder = tmp_path_factory.mktemp("static") / "tiny"
    _word_tokenizer(folder)
    np.save(folder / "vectors.npy", np.random.default_rng(0).normal(size=(len(WORDS), 6)).astype(np.float32))
    config = {"format": "greenserv-static-embedder", "source": "tiny", "dimension": 6, "fingerprint": "0123456789ab"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def tiny_sentence_transformer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random one-layer BERT over :data:`WORDS`, loadable by sentence-transformers (mean pooling)."""
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-st")
    tokenizer_file = _word_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    BertModel(config).save_pretrained(folder)
    special = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), **special).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("round_trip", ROUND_TRIPS, ids=["pickle", "deepcopy"])
def test_a_static_embedder_copy_is_the_same_embedder(tiny_static: Path, round_trip: Callable[[Any], Any]) -> None:
    embedder = StaticEmbedder(tiny_static, max_tokens=3, cache_size=16)
    vectors = embedder.embed(TEXTS)  # loaded, and the texts cached
    twin = round_trip(embedder)  # was TypeError: cannot pickle '_thread.lock' object
    assert type(twin) is StaticEmbedder and twin._loaded is None and twin._cache.get(TEXTS[0]) is None
    assert (twin.model_path, twin.max_tokens, twin.cache_size) == (tiny_static, 3, 16)
    assert twin.name == embedder.name and twin.name.endswith(":max_tokens=3")
    np.testing.assert_array_equal(twin.embed(TEXTS), vectors)
    assert twin._cache.get(TEXTS[0]) is not None and embedder._cache is not twin._cache
    np.testing.assert_array_equal(embedder.embed(TEXTS), vectors)  # the original is untouched
    assert round_trip(StaticEmbedder(tiny_static)).name == StaticEmbedder(tiny_static).name  # never loaded


@pytest.mark.parametrize("round_trip", ROUND_TRIPS, ids=["pickle", "deepcopy"])
def test_a_sentence_transformer_embedder_copy_is_the_same_embedder(
    tiny_sentence_transformer: Path, round_trip: Callable[[Any], Any]
) -> None:
    embedder = SentenceTransformerEmbedder(tiny_sentence_transformer, max_seq_length=16, precision="float32")
    vectors = embedder.embed(TEXTS)  # loaded, and the texts cached
    twin = round_trip(embedder)  # was TypeError: cannot pickle '_thread.lock' object
    assert type(twin) is SentenceTransformerEmbedder and twin._model is None and twin._cache.get(TEXTS[0]) is None
    assert (twin.model_path, twin.device, twin.max_seq_length, twin.cache_size, twin.precision) == (
        tiny_sentence_transformer,
        "cpu",
        16,
        4096,
        "float32",
    )
    assert twin.name == embedder.name
    np.testing.assert_allclose(twin.embed(TEXTS), vectors, atol=1e-6)
    assert twin.model is not embedder.model and twin.model.max_seq_length == 16
    unloaded = SentenceTransformerEmbedder(max_seq_length=256, cache_size=8)  # the bundled MiniLM: never loaded
    assert round_trip(unloaded).name == unloaded.name and round_trip(unloaded)._model is None


def test_the_llama_index_and_langchain_wrappers_keep_their_embedder(tiny_static: Path) -> None:
    pytest.importorskip("llama_index.core")
    pytest.importorskip("langchain_core")
    from langchain_greenserv.embeddings import GreenServEmbeddings
    from llama_index_greenserv.embeddings import GreenServEmbedding

    embedder = StaticEmbedder(tiny_static, max_tokens=3)
    # LlamaIndex's pickling silently dropped the field: the copy embedded with the default MiniLM
    back = pickle.loads(pickle.dumps(GreenServEmbedding(embedder=embedder)))
    assert isinstance(back.embedder, StaticEmbedder) and back.embedder.name == embedder.name
    assert back.get_text_embedding("hello world") == pytest.approx(embedder.embed(["hello world"])[0].tolist())
    twin = copy.deepcopy(GreenServEmbeddings(embedder=embedder))  # was TypeError
    assert twin.embed_query("hello world") == pytest.approx(embedder.embed(["hello world"])[0].tolist())


def test_a_hashing_embedder_copy_is_the_same_embedder() -> None:
    embedder = HashingEmbedder(64)
    for round_trip in ROUND_TRIPS:
        twin = round_trip(embedder)
        assert twin.name == embedder.name
        np.testing.assert_array_equal(twin.embed(TEXTS), embedder.embed(TEXTS))
