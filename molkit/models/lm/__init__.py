"""The one language-model toolkit every LM method of molkit stands on (ICMA, MolTC, LarDo, MoleX's
LLM classifier), one room per job:

* `load`: `load_causal_lm` (generation: the precision policy's weights), `load_lm` (fine-tuning:
  float32, bf16 or QLoRA's 4-bit NF4 weights), `apply_lora`, the chat template
  (`format_prompt`, `encode_prompt`);
* `examples`: few-shot prompts, prompt + answer ids with an answer-only loss mask
  (`encode_example`), padding (`collate_examples`), extra input embeddings spliced in
  (`splice_embeddings`: MolTC's graph tokens);
* `train`: the one trainer, `train_causal_lm` with `TrainConfig`, validated every N steps, the
  best state kept, stopped on patience (`TrainReport` holds the curve and the kept step);
* `generate`: the one batched generator, `generate_texts`;
* `score`: the one scorer, `candidate_log_likelihoods` / `score_candidates` (the prompt's KV
  cache shared by every candidate) and the `expected_value` readout of numeric answers;
* `pipeline`: `fine_tune_and_generate`, the load -> LoRA -> train (validated) -> generate path
  of a method that translates (ICMA);
* `adapter_cache`: `train_cached`, trained adapters or weights replayed by key;
* `responses`: `ResponseCache`, replayable LLM responses keyed by model, settings and prompt;
* `memory`: what loading and fine-tuning a model will need, and the refusal before it loads;
* `parallel`: the process group of a data-parallel run;
* `tiny`: tiny random LMs for the tests and the smoke profiles.

``import molkit.models.lm`` stays light: each name loads its room (and torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Prompt": "load",
    "load_causal_lm": "load",
    "load_lm": "load",
    "apply_lora": "load",
    "format_prompt": "load",
    "encode_prompt": "load",
    "has_chat_template": "load",
    "LM_DTYPES": "load",
    "LM_QUANTIZATIONS": "load",
    "check_lm_dtype": "load",
    "check_lm_quantization": "load",
    "four_bit_unavailable": "load",
    "four_bit_config": "load",
    "generation_load_kwargs": "load",
    "IGNORE_INDEX": "examples",
    "LMExample": "examples",
    "FewShotTemplate": "examples",
    "fit_fewshot_prompt": "examples",
    "encode_example": "examples",
    "collate_examples": "examples",
    "splice_embeddings": "examples",
    "TrainConfig": "train",
    "TrainReport": "train",
    "RUNTIME_ONLY_FIELDS": "train",
    "VALID_LOSS": "train",
    "train_causal_lm": "train",
    "validation_loss": "train",
    "answer_logits": "train",
    "answer_loss": "train",
    "generate_texts": "generate",
    "CandidateScores": "score",
    "score_candidates": "score",
    "candidate_log_likelihoods": "score",
    "candidate_ids": "score",
    "expected_value": "score",
    "softmax": "score",
    "LoraSpec": "pipeline",
    "Generated": "pipeline",
    "PipelineRun": "pipeline",
    "fine_tune_and_generate": "pipeline",
    "newline_token_ids": "pipeline",
    "first_line": "pipeline",
    "train_cached": "adapter_cache",
    "adapter_key": "adapter_cache",
    "ResponseCache": "responses",
    "data_parallel": "parallel",
    "save_tiny_random_lm": "tiny",
    "resolve_lm": "tiny",
    "SMOKE_LM": "tiny",
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
