"""Tiny random-weight causal LMs built from a config, for fast backend tests (never a demo).

The tokenizer is the bundled MiniLM's (a real WordPiece tokenizer, no chat template); a
second variant gets a small chat template. :func:`build_scripted_model` is a model whose
greedy answer is known in advance, on a byte-level tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


def build_tiny_model(out: Path, *, chat_template: bool = False, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from greenserv_core.features.embedders import bundled_minilm_path

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_minilm_path()))
    tokenizer.eos_token = "[SEP]"
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.sep_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def byte_level_tokenizer() -> Any:
    """A tokenizer with one token per byte (no merges): text decodes back exactly, newlines and
    case included, so turn markers survive a round trip."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for special in ("<pad>", "<s>", "</s>"):
        vocab[special] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def build_scripted_model(out: Path, script: str, *, chat_template: bool = False) -> Path:
    """A one-layer model that, greedily, follows ``script`` as a cycle of characters: each
    character's token is followed by the next one's (the last by the first), any other token by
    EOS. Attention and MLP outputs are zero, so the next token depends on the last one only.
    The characters of ``script`` must be distinct one-byte characters."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_level_tokenizer()
    ids = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(char))[0] for char in script]
    if len(set(ids)) != len(ids) or len(ids) != len(script):
        raise ValueError(f"script characters must be distinct single bytes: {script!r}")
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    vocab = len(tokenizer)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=vocab + (vocab % 2),
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.model.norm.weight.fill_(1.0)
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        following = {token: tokenizer.eos_token_id for token in range(vocab)}
        following.update({token: ids[(i + 1) % len(ids)] for i, token in enumerate(ids)})
        for token, after in following.items():
            model.lm_head.weight[after, token] = 1.0
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
