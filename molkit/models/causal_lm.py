"""Causal language models: loading (registry name, local path or hub id), batched generation and
the log-likelihood of given answers (`answer_logprobs`).

>>> model, tokenizer = load_causal_lm("smollm2-135m-instruct")          # doctest: +SKIP
>>> generate(model, tokenizer, ["Name one aromatic ring."], max_new_tokens=20)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import torch

from molkit._progress import tqdm
from molkit.models.registry import load_pretrained_checked, resolve_model_path
from molkit.models.runtime import autocast, default_device, inference_dtype

Message = dict[str, str]
Prompt = str | list[Message]


def load_causal_lm(
    name_or_path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    quantization_config: Any = None,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` ready for `generate`: eval mode, pad token set, left padding.

    The pad token falls back to the EOS token. Loading fails if a weight would be left at random
    init. ``device`` defaults to `default_device()`; ``dtype`` to the precision policy's weights
    for generation (`molkit.models.runtime.inference_dtype`: bf16 where the policy resolves to
    bf16, else float32). Fine-tuning loads float32 weights (`molkit.models.lm_training.load_lm`).
    ``quantization_config`` (e.g. a ``transformers.BitsAndBytesConfig``) goes to
    ``from_pretrained``, which then places the model on ``device`` itself (a quantized model is
    not moved afterwards); ``dtype`` then applies to the weights left unquantized.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype if dtype is not None else inference_dtype(device)
    placement: dict[str, Any] = {}
    if quantization_config is not None:
        where = device
        if where.type == "cuda" and where.index is None:
            where = torch.device("cuda", torch.cuda.current_device())
        placement = {"quantization_config": quantization_config, "device_map": {"": where}}
    model = load_pretrained_checked(AutoModelForCausalLM, path, dtype=dtype, **placement)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            model.resize_token_embeddings(len(tokenizer))
    tokenizer.padding_side = "left"
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if quantization_config is None:
        model = model.to(device)
    return model.eval(), tokenizer


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(tokenizer: Any, prompt: Prompt, chat: bool = True) -> str:
    """The text fed to the model: the chat template applied to a user turn (or to a list of
    ``{"role", "content"}`` messages) with the assistant turn opened; else the prompt itself."""
    if chat and has_chat_template(tokenizer):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(prompt, str):
        raise ValueError("a list of messages needs chat=True and a tokenizer with a chat template")
    return prompt


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    chat: bool = True,
    do_sample: bool = False,
    progress: bool = True,
    **generate_kwargs: Any,
) -> list[str]:
    """Continue each prompt; returns only the newly generated text, in the order of ``prompts``.

    Prompts are batched by length with left padding and the KV cache; with ``chat`` and a
    tokenizer that has a chat template, each prompt becomes a user turn. Greedy unless
    ``do_sample``; extra keyword arguments go to ``model.generate``.
    """
    texts = [format_prompt(tokenizer, p, chat) for p in prompts]
    templated = chat and has_chat_template(tokenizer)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    device = next(model.parameters()).device
    accepts_token_types = "token_type_ids" in inspect.signature(model.forward).parameters
    results: list[str] = [""] * len(texts)
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="generate", disable=not progress, leave=False):
            index = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in index],
                padding=True,
                return_tensors="pt",
                add_special_tokens=not templated,
            ).to(device)
            if not accepts_token_types:
                batch.pop("token_type_ids", None)
            with autocast(device):
                output = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    use_cache=True,
                    pad_token_id=tokenizer.pad_token_id,
                    **generate_kwargs,
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for i, text in zip(index, decoded, strict=True):
                results[i] = text
    finally:
        tokenizer.padding_side = padding_side
    return results


@torch.no_grad()
def answer_logprobs(
    model: Any,
    tokenizer: Any,
    prompt: Prompt,
    answers: Sequence[str],
    chat: bool = True,
    batch_size: int = 16,
) -> list[tuple[float, int]]:
    """``(sum of log-probabilities, number of tokens)`` of each answer as the continuation of
    ``prompt`` (the chat template's assistant turn opened, as in `generate`), in answer order.

    The prompt and each answer are tokenised separately and concatenated, so every answer is
    scored on the same prompt tokens; padding is on the right and masked. Scores are computed in
    float32 from the model's logits (no autocast), so a ranking does not hinge on bf16 rounding.
    """
    if not answers:
        return []
    text = format_prompt(tokenizer, prompt, chat)
    templated = chat and has_chat_template(tokenizer)
    head = tokenizer(text, add_special_tokens=not templated)["input_ids"]
    tails = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    empty = [a for a, t in zip(answers, tails, strict=True) if not t]
    if empty:
        raise ValueError(f"answers {empty} tokenise to nothing; score non-empty answers only")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[tuple[float, int]] = []
    for start in range(0, len(tails), batch_size):
        chunk = tails[start : start + batch_size]
        rows = [head + t for t in chunk]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        for i, t in enumerate(chunk):
            positions = torch.arange(len(head) - 1, len(head) - 1 + len(t), device=device)
            targets = torch.tensor(t, device=device)
            out.append((float(logp[i, positions, targets].sum()), len(t)))
    return out
