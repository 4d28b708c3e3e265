"""Pretrained language models for molecules and text: registry, encoders, causal LMs, GNNs.

``import molkit.models`` stays light: torch and transformers load on first use of a name below.

- `resolve_model_path`, `MODELS`: the registry of bundled checkpoints (rxnfp BERT, MiniLM,
  SmolLM2), verified by sha256 and prepared once in `cache_dir`.
- `Encoder`, `load_encoder`, `load_tokenizer`: embeddings with an on-disk cache.
- `RegexSmilesTokenizer`: the Schwaller regex SMILES tokenizer for rxnfp's vocabulary.
- `lm`: the one causal-LM toolkit (`molkit.models.lm`): `load_causal_lm`, `load_lm`,
  `apply_lora`, `TrainConfig`, `train_causal_lm` (validated, best state kept, patience),
  `generate_texts` (batched generation, chat templates), `candidate_log_likelihoods` and
  `expected_value` (one scorer sharing the prompt's KV cache), `splice_embeddings`.
- `fit`, `FitReport`: the one optimisation loop of the GNN, CLIP and bottleneck trainers (and
  under the LM trainer): validation, the best state kept, patience.
- `estimate_lm_memory`, `check_fits`, `device_memory`: what loading and fine-tuning a causal LM
  will need (weights by dtype or 4-bit, training state, activations) and a refusal
  (`InsufficientMemoryError`) before a model the device cannot hold is loaded.
- `ResponseCache`: a replayable, hash-keyed store of LLM responses.
- `train_cached`, `adapter_key`: `train_causal_lm` behind a cache of trained weights (LoRA adapters
  or full weights) keyed by the initial weights, examples and settings; a rerun replays them.
- `bf16_supported`, `autocast`, `default_device`, `set_threads`: run-time settings.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "cache_dir": "cache",
    "atomic_path": "cache",
    "atomic_write_bytes": "cache",
    "sha256_file": "cache",
    "EmbeddingStore": "cache",
    "MODELS": "registry",
    "ModelEntry": "registry",
    "ModelNotInstalledError": "registry",
    "HashMismatchError": "registry",
    "resolve_model_path": "registry",
    "RegexSmilesTokenizer": "smiles_tokenizer",
    "tokenize_smiles": "smiles_tokenizer",
    "unk_rate": "smiles_tokenizer",
    "Encoder": "encoders",
    "load_encoder": "encoders",
    "load_tokenizer": "encoders",
    "parameter_count": "encoders",
    "load_causal_lm": "lm",
    "load_lm": "lm",
    "apply_lora": "lm",
    "TrainConfig": "lm",
    "TrainReport": "lm",
    "train_causal_lm": "lm",
    "generate_texts": "lm",
    "candidate_log_likelihoods": "lm",
    "expected_value": "lm",
    "splice_embeddings": "lm",
    "estimate_lm_memory": "lm.memory",
    "check_fits": "lm.memory",
    "device_memory": "lm.memory",
    "InsufficientMemoryError": "lm.memory",
    "ResponseCache": "lm",
    "train_cached": "lm",
    "adapter_key": "lm",
    "fit": "fit",
    "FitReport": "fit",
    "autocast": "runtime",
    "bf16_supported": "runtime",
    "default_device": "runtime",
    "set_threads": "runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
