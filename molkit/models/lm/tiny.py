"""Tiny random causal LMs for the tests and the smoke profiles: a Llama, OPT or Mistral of a few
thousand parameters with a byte-level BPE tokenizer trained on the caller's own texts, loaded
through the same API as any checkpoint, so CI never needs pretrained weights."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def save_tiny_random_lm(
    path: str | os.PathLike,
    corpus: Sequence[str],
    architecture: str = "llama",
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 2048,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised causal LM (``llama``, ``opt`` or ``mistral``) with a byte-level
    BPE tokenizer trained on ``corpus`` into ``path``; `molkit.models.lm.load_lm` loads it like any
    checkpoint."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        OPTConfig,
        OPTForCausalLM,
        PreTrainedTokenizerFast,
    )

    path = Path(path)
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus), trainer)
    from tokenizers.processors import TemplateProcessing

    bpe.post_processor = TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bpe.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    n_vocab = len(tokenizer)
    if architecture == "llama":
        model_cls, config = (
            LlamaForCausalLM,
            LlamaConfig(
                vocab_size=n_vocab,
                hidden_size=hidden,
                intermediate_size=2 * hidden,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                num_key_value_heads=heads,
                max_position_embeddings=max_positions,
                **ids,
            ),
        )
    elif architecture == "mistral":
        model_cls, config = (
            MistralForCausalLM,
            MistralConfig(
                vocab_size=n_vocab,
                hidden_size=hidden,
                intermediate_size=2 * hidden,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                num_key_value_heads=max(1, heads // 2),
                max_position_embeddings=max_positions,
                sliding_window=None,
                **ids,
            ),
        )
    elif architecture == "opt":
        model_cls, config = (
            OPTForCausalLM,
            OPTConfig(
                vocab_size=n_vocab,
                hidden_size=hidden,
                ffn_dim=2 * hidden,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                max_position_embeddings=max_positions,
                word_embed_proj_dim=hidden,
                **ids,
            ),
        )
    else:
        raise ValueError(f"architecture must be 'llama', 'opt' or 'mistral', got {architecture!r}")
    torch.manual_seed(seed)
    model = model_cls(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


#: The one name of the smoke profiles' LM: a tiny random Llama whose tokenizer is trained on the
#: notebook's own texts (built by `resolve_lm`), so CI never needs pretrained weights.
SMOKE_LM = "tiny-random-llama"


def resolve_lm(name: str, corpus: Sequence[str], workdir: str | os.PathLike, **tiny: Any) -> str:
    """The LM to fine-tune: `SMOKE_LM` becomes a tiny random Llama with a tokenizer trained on
    ``corpus`` (`save_tiny_random_lm`, keyword arguments ``tiny``: vocab_size, hidden, layers,
    heads), saved under ``workdir``; any other name (a registry name, a folder or a Hugging Face
    id) is returned unchanged."""
    if name != SMOKE_LM:
        return name
    return str(
        save_tiny_random_lm(
            Path(workdir) / SMOKE_LM, list(corpus), **{"architecture": "llama", **tiny}
        )
    )
