"""Loading a causal LM: for generation (`load_causal_lm`: the precision policy's weights) or for
fine-tuning (`load_lm`: float32, bf16 or QLoRA's 4-bit NF4 weights), LoRA adapters (`apply_lora`)
and the chat template (`format_prompt`).

A model is named by a registry name (``smollm2-135m-instruct``), a local folder or a Hugging Face
id; registry weights are hash-checked. `molkit.models.lm.memory` estimates what a setting needs
before anything loads.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from molkit.models.registry import load_pretrained_checked, resolve_model_path
from molkit.models.runtime import default_device, inference_dtype

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
    bf16, else float32). Fine-tuning loads float32 weights (`load_lm`).
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


def encode_prompt(tokenizer, prompt: Prompt, chat: bool = False) -> list[int]:
    """A prompt's token ids as training and generation see them: the chat template applied to a
    user turn (or a list of messages) when ``chat`` and the tokenizer has one, else the text with
    the tokenizer's special prefix (e.g. BOS), as `molkit.models.lm.encode_example` makes it."""
    templated = chat and has_chat_template(tokenizer)
    text = format_prompt(tokenizer, prompt, chat)
    return list(tokenizer(text, add_special_tokens=not templated)["input_ids"])


#: Weight dtypes `load_lm` loads for training (the ``lm_dtype`` setting): float32 (the default,
#: bf16 compute through autocast) or bfloat16 weights (half the memory; LoRA adapters stay float32).
LM_DTYPES = ("fp32", "bf16")
#: Quantizations `load_lm` offers (the ``lm_quantization`` setting): none, or QLoRA's 4-bit NF4.
LM_QUANTIZATIONS = (None, "4bit")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_DTYPE_ALIASES = {"float32": "fp32", "bfloat16": "bf16"}


def check_lm_dtype(value: str | torch.dtype) -> str:
    """``value`` as one of `LM_DTYPES` (``float32`` / ``bfloat16`` and the torch dtypes accepted),
    else a ValueError naming the setting and the valid values."""
    if isinstance(value, torch.dtype):
        value = {v: k for k, v in _DTYPES.items()}.get(value, str(value))
    text = str(value).strip().lower()
    text = _DTYPE_ALIASES.get(text, text)
    if text not in LM_DTYPES:
        raise ValueError(
            f"unknown LM weight dtype {value!r} (the lm_dtype setting); "
            f"choose one of {', '.join(LM_DTYPES)}"
        )
    return text


def check_lm_quantization(value: str | None) -> str | None:
    """``value`` as one of `LM_QUANTIZATIONS` (``None`` / ``"none"``: no quantization), else a
    ValueError naming the setting and the valid values."""
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    text = str(value).strip().lower()
    if text not in LM_QUANTIZATIONS:
        raise ValueError(
            f"unknown LM quantization {value!r} (the lm_quantization setting); "
            "choose one of None, '4bit'"
        )
    return text


def four_bit_unavailable(device: str | torch.device | None = None) -> str | None:
    """Why 4-bit loading cannot run here (no CUDA device, ``device`` not CUDA, no
    ``bitsandbytes``), or None when it can."""
    import importlib.util

    reasons = []
    if not torch.cuda.is_available():
        reasons.append("no CUDA device is visible")
    elif device is not None and torch.device(device).type != "cuda":
        reasons.append(f"the device is {torch.device(device)}, not CUDA")
    if importlib.util.find_spec("bitsandbytes") is None:
        reasons.append("bitsandbytes is not installed")
    if not reasons:
        return None
    return (
        f"lm_quantization='4bit' (QLoRA) needs a CUDA GPU and bitsandbytes, but "
        f"{' and '.join(reasons)}: set lm_quantization=None, or install bitsandbytes on a CUDA "
        "machine"
    )


def four_bit_config(device: str | torch.device | None = None):
    """QLoRA's ``transformers.BitsAndBytesConfig``: 4-bit NF4 with double quantization and bf16
    compute; a RuntimeError naming ``lm_quantization`` where it cannot run
    (`four_bit_unavailable`)."""
    problem = four_bit_unavailable(device)
    if problem is not None:
        raise RuntimeError(problem)
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def generation_load_kwargs(
    dtype: str | torch.dtype = "fp32",
    quantization: str | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `load_causal_lm` for a model loaded only to
    generate, from the ``lm_dtype`` / ``lm_quantization`` settings: ``"fp32"`` (default) leaves
    the weights to the precision policy (`molkit.models.runtime.inference_dtype`: float32, or
    bf16 where the policy resolves to bf16), exactly as before these settings; ``"bf16"`` loads
    bfloat16 weights whatever the policy; ``quantization="4bit"`` loads the decoder's linear
    layers in NF4 (`four_bit_config`; CUDA and bitsandbytes only) and the rest in bf16."""
    dtype = check_lm_dtype(dtype)
    quantization = check_lm_quantization(quantization)
    if quantization == "4bit":
        return {"dtype": torch.bfloat16, "quantization_config": four_bit_config(device)}
    return {"dtype": torch.bfloat16} if dtype == "bf16" else {}


def load_lm(
    name_or_path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "fp32",
    quantization: str | None = None,
):
    """``(model, tokenizer)`` for fine-tuning: `load_causal_lm` (a registry
    name, a local folder or a Hugging Face id; registry weights are hash-checked), eval mode, a pad
    token set.

    ``dtype`` (`LM_DTYPES`, the ``lm_dtype`` setting): ``"fp32"`` (default) loads float32 weights
    (bf16 compute runs through autocast, `molkit.models.runtime`); ``"bf16"`` loads bfloat16
    weights, half the memory, for LoRA on models too big for float32 (`apply_lora` keeps the
    adapters float32; full fine-tuning of bf16 weights would update them in bf16).

    ``quantization`` (`LM_QUANTIZATIONS`, the ``lm_quantization`` setting): ``"4bit"`` is QLoRA's
    loading: every linear layer of the decoder in 4-bit NF4 with double quantization and bf16
    compute (``transformers.BitsAndBytesConfig``), then ``peft.prepare_model_for_kbit_training``
    (the base frozen, the weights left unquantized: embeddings, norms, output head, cast to
    float32; activation checkpointing is left to ``TrainConfig.gradient_checkpointing``). It
    needs a CUDA device and ``bitsandbytes`` (imported only then): without them a RuntimeError
    says so (`four_bit_unavailable`). Train a 4-bit model through `apply_lora` only.
    """
    dtype = check_lm_dtype(dtype)
    quantization = check_lm_quantization(quantization)
    load_kwargs: dict[str, Any] = {}
    if quantization == "4bit":
        load_kwargs["quantization_config"] = four_bit_config(device)
        dtype = "bf16"  # the unquantized weights load in bf16; prepare_... casts them to float32
    model, tokenizer = load_causal_lm(
        name_or_path, dtype=_DTYPES[dtype], device=device, **load_kwargs
    )
    if quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False).eval()
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"{name_or_path}: the tokenizer has no EOS token; "
            "set tokenizer.eos_token before training"
        )
    return model, tokenizer


def apply_lora(
    model,
    r: int = 32,
    alpha: int = 64,
    dropout: float = 0.1,
    target_modules: str | list[str] = "all-linear",
):
    """Wrap ``model`` with LoRA adapters (``peft``); only the adapters train. ICMA's settings are
    the defaults (r 32, alpha 64, dropout 0.1, every linear layer except the output head). The
    adapters are float32 whatever the base weights' dtype (bf16 or 4-bit, `load_lm`): peft casts
    them up (``autocast_adapter_dtype``) and casts each adapter's input to float32."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError as exc:
        raise ImportError(
            "LoRA needs peft: pip install peft (or train fully with lora=False)"
        ) from exc
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
    )
    return get_peft_model(model, config, autocast_adapter_dtype=True)
