"""How fast the LM toolkit trains, generates and scores at a given shape, and how much of the
machine's matrix-multiply limit that is.

`make bench` calls these at the shapes the notebooks use (ICMA's few-shot prompts, MolTC's short
pair prompts, LoRA and full fine-tuning, MoleX's label scoring, LarDo's chat generation) and
recommends the batch size with the most tokens per second for each. The figures:

* tokens/s of non-padding tokens (what the notebooks' budgets are counted in);
* ``padding_waste``: the share of the batch's token slots that are padding, after the toolkit's
  length sorting (`padding_waste`);
* ``share_of_limit``: achieved model FLOP/s over the FLOP/s a large square matmul reaches on this
  machine at the same precision and thread count (`matmul_limit`). Model FLOPs per token
  (`flops_per_token`) count the dense layers as 2 N forward, 4 N for a LoRA step (the frozen
  weights' gradients are not computed, the activations' are), 6 N for full fine-tuning, plus
  the attention matmuls; the share is therefore a lower bound of the hardware's use (no norm,
  softmax or optimiser FLOPs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "flops_per_token",
    "generation_throughput",
    "matmul_limit",
    "padding_waste",
    "scoring_throughput",
    "training_throughput",
]


def matmul_limit(precision: str = "fp32", size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a ``size`` x ``size`` matmul on the CPU at ``precision`` (``"fp32"``: float32
    operands; ``"bf16"``: bfloat16 operands, as autocast runs the LM's linear layers), best of
    ``repeats`` after a warm-up, at torch's current thread count."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(dtype)
    b = torch.randn(size, size, generator=gen).to(dtype)
    torch.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best


def _dense_parameters(model, head: bool) -> int:
    """Parameters of the decoder's linear layers, and of the LM head with ``head`` (embeddings
    excluded: a lookup)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    out = base.get_output_embeddings()
    return sum(
        m.weight.numel()
        for m in base.modules()
        if isinstance(m, torch.nn.Linear) and (head or m is not out)
    )


def flops_per_token(model, seq_len: float, mode: str, head: bool = False) -> float:
    """Model FLOPs per processed token at mean sequence length ``seq_len``: ``mode`` ``"forward"``
    (scoring, a prompt's prefill), ``"lora"`` (a LoRA step: forward and activation gradients) or
    ``"full"`` (full fine-tuning: forward, activation and weight gradients). ``head``: whether the
    LM head runs at this token (a generated token; the toolkit's trainer and scorer apply it at
    the answer positions only, a few per example)."""
    factor = {"forward": 1, "lora": 2, "full": 3}[mode]
    config = model.config
    layers = int(getattr(config, "num_hidden_layers", 0))
    hidden = int(getattr(config, "hidden_size", 0))
    attention = 4 * layers * seq_len * hidden  # QK^T and AV per token, forward
    return factor * (2 * _dense_parameters(model, head) + attention)


def padding_waste(lengths: Sequence[int], batch_size: int, sort: bool = True) -> float:
    """The share of token slots that are padding when ``lengths`` are cut into batches of
    ``batch_size`` (sorted by length first, as the toolkit's trainer, generator and scorer do)."""
    lengths = np.asarray(lengths)
    if len(lengths) == 0:
        return 0.0
    if sort:
        lengths = np.sort(lengths)[::-1]
    slots = sum(len(chunk) * chunk.max() for chunk in np.array_split(
        lengths, math.ceil(len(lengths) / batch_size)
    ))  # fmt: skip
    return float(1 - lengths.sum() / slots)


def _examples(tokenizer, prompt_lengths: Sequence[int], answer_length: int, seed: int = 0):
    from molkit.models.lm.examples import LMExample

    rng = np.random.default_rng(seed)
    vocab = min(len(tokenizer), 32000)
    out = []
    for n in prompt_lengths:
        ids = rng.integers(100, vocab, int(n) + answer_length).tolist()
        out.append(LMExample(ids, [-100] * int(n) + ids[int(n) :], int(n)))
    return out


def training_throughput(
    model,
    tokenizer,
    prompt_lengths: Sequence[int],
    answer_length: int,
    batch_size: int,
    mode: str,
    precision: str,
    limit: float,
    steps: int = 3,
) -> dict[str, Any]:
    """Tokens/s of the toolkit's trainer (`train_causal_lm`) on random token sequences of the
    given prompt lengths (+ ``answer_length`` answer tokens), ``steps`` optimiser steps of
    ``batch_size`` after one warm-up step; ``mode`` ``"lora"`` or ``"full"`` (the model is trained
    in place: pass a copy you can spare). Returns tokens_per_s, padding_waste, flops_per_s,
    share_of_limit (``limit``: `matmul_limit` at the same precision)."""
    from molkit.models.lm.train import TrainConfig, train_causal_lm

    examples = _examples(tokenizer, prompt_lengths, answer_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def run(n_steps: int):
        config = TrainConfig(epochs=n_steps * batch_size / len(examples), lr=1e-6,
                             batch_size=batch_size, warmup=0.0, precision=precision)  # fmt: skip
        return train_causal_lm(model, examples, config, pad, progress=False)

    run(1)
    report = run(steps)
    lengths = [len(e) for e in examples]
    flops = flops_per_token(model, float(np.mean(lengths)), mode) * report.tokens_per_second
    return {
        "tokens_per_s": round(report.tokens_per_second, 1),
        "batch": batch_size,
        "mean_tokens": round(float(np.mean(lengths)), 1),
        "padding_waste": round(padding_waste(lengths, batch_size), 4),
        "flops_per_s": round(flops),
        "share_of_limit": round(flops / limit, 4),
        "mode": mode,
        "precision": precision,
        "steps": report.steps,
    }


@torch.no_grad()
def generation_throughput(
    model,
    tokenizer,
    prompt_lengths: Sequence[int],
    new_tokens: int,
    batch_size: int,
    precision: str,
    limit: float,
) -> dict[str, Any]:
    """The toolkit's generator (`generate_texts`, greedy, exactly ``new_tokens`` new tokens per
    prompt: EOS suppressed) on random prompts of the given lengths, one warm-up batch first,
    timed twice: one new token (the prompts' prefill) and ``new_tokens``. Returns tokens_per_s
    (new tokens over the whole run), prefill_tokens_per_s (prompt tokens over the prefill run),
    decode_tokens_per_s (new tokens after the first over the difference), padding_waste and
    share_of_limit (the whole run's model FLOPs: prefill and decoding)."""
    from molkit.models.lm.generate import generate_texts

    rng = np.random.default_rng(0)
    vocab = min(len(tokenizer), 32000)
    prompts = [tokenizer.decode(rng.integers(100, vocab, int(n)).tolist()) for n in prompt_lengths]

    def run(n_new: int, items: list[str]) -> float:
        settings = {"min_new_tokens": n_new, "eos_token_id": None}
        t0 = time.perf_counter()
        generate_texts(model, tokenizer, items, max_new_tokens=n_new, batch_size=batch_size,
                       precision=precision, progress=False, generate_kwargs=settings)  # fmt: skip
        return time.perf_counter() - t0

    run(2, prompts[:batch_size])  # warm-up
    prefill = run(1, prompts)
    seconds = run(new_tokens, prompts)
    produced = new_tokens * len(prompts)
    prompt_tokens = float(np.sum(prompt_lengths))
    mean_prompt = float(np.mean(prompt_lengths))
    flops = (
        flops_per_token(model, mean_prompt, "forward") * prompt_tokens
        + flops_per_token(model, mean_prompt + new_tokens / 2, "forward", head=True) * produced
    )
    return {
        "tokens_per_s": round(produced / seconds, 1),
        "prefill_tokens_per_s": round(prompt_tokens / prefill, 1),
        "decode_tokens_per_s": round((produced - len(prompts)) / max(seconds - prefill, 1e-9), 1),
        "batch": batch_size,
        "prompts": len(prompts),
        "mean_prompt_tokens": round(mean_prompt, 1),
        "new_tokens": new_tokens,
        "padding_waste": round(padding_waste(prompt_lengths, batch_size), 4),
        "share_of_limit": round(flops / seconds / limit, 4),
        "precision": precision,
    }


def scoring_throughput(
    model,
    tokenizer,
    prompt_lengths: Sequence[int],
    candidates: Sequence[Sequence[int]],
    batch_size: int,
    precision: str,
    limit: float,
) -> dict[str, Any]:
    """Prompts/s and prompt tokens/s of the toolkit's scorer (`score_candidates`, the prompt's KV
    cache shared by the candidates) on random prompts of the given lengths."""
    from molkit.models.lm.score import score_candidates

    rng = np.random.default_rng(0)
    vocab = min(len(tokenizer), 32000)
    prompts = [rng.integers(100, vocab, int(n)).tolist() for n in prompt_lengths]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    score_candidates(model, prompts[:batch_size], candidates, pad, batch_size=batch_size,
                     precision=precision)  # fmt: skip
    scores = score_candidates(model, prompts, candidates, pad, batch_size=batch_size,
                              precision=precision)  # fmt: skip
    tokens = float(np.sum(prompt_lengths))
    flops = flops_per_token(model, float(np.mean(prompt_lengths)), "forward") * tokens
    return {
        "tokens_per_s": round(tokens / scores.seconds, 1),
        "prompts_per_s": round(scores.prompts_per_second, 2),
        "batch": batch_size,
        "mean_prompt_tokens": round(float(np.mean(prompt_lengths)), 1),
        "padding_waste": round(padding_waste(prompt_lengths, batch_size), 4),
        "share_of_limit": round(flops / scores.seconds / limit, 4),
        "precision": precision,
    }
