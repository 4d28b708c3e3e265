"""How much memory a causal LM needs to fine-tune (or run), and a refusal before it is loaded.

The pieces:

* :func:`lm_config`: a Hugging Face config from a registry name or a local folder
  (`molkit.models.registry.resolve_model_path`) or a hub id (``transformers.AutoConfig``, from the
  local cache when offline); `ConfigUnavailableError` when it cannot be had, never made-up numbers.
* :func:`param_count`: the exact parameter count from the config alone, for the Llama family
  (``llama``, ``mistral``, ``qwen2``) and ``opt`` (Galactica); other architectures raise a
  ValueError that names the supported ones.
* :func:`estimate_lm_memory` -> :class:`MemoryEstimate` (bytes; ``str()`` prints GB):

  - **weights**: 4 bytes a parameter in fp32, 2 in bf16; with ``quantization="4bit"`` the
    decoder's linear weights take 0.5 byte plus the NF4 block constants (an 8-bit absmax per 64
    weights and, double-quantized, a float32 per 256 of those: 0.516 byte a weight), and the rest
    (embeddings, norms, output head, biases) 4 bytes, as ``prepare_model_for_kbit_training``
    leaves them in float32;
  - **trainable**: LoRA (``lora_r``): the adapters, ``r * (in + out)`` per targeted linear layer,
    in float32 with their gradients and AdamW's two moments (16 bytes a parameter); full
    fine-tuning (``lora_r=None``): a gradient and two AdamW moments in the weights' dtype per
    parameter (the weights themselves are under *weights*);
  - **activations**, a rough formula: what backward needs per decoder layer and token is about
    ``10 * hidden + 4 * intermediate`` values (the inputs of the norms, of the q/k/v/o and MLP
    projections, the MLP's gate and activation, the residual stream) at 4 bytes (fp32) or 2
    (bf16, 4-bit compute), times ``layers * batch_size * seq_len``; attention scores are not
    stored (PyTorch's SDPA kernels); plus the output head's logits over the vocabulary for every
    token with their float32 copy for the loss (an upper bound: `answer_loss` takes logits only
    on answer tokens). With gradient checkpointing only each layer's input (``hidden`` values a
    token) is kept, plus one layer's full activations while it is recomputed. Without training
    (``training=False``): the KV cache (``2 * kv_heads * head_dim`` values a token and layer)
    plus one layer's activations;
  - **total**: the sum. Not counted: the CUDA context and allocator slack (a few hundred MB),
    data, the tokenizer.

* :func:`lm_memory_line`: what a notebook prints before its LM stage: `estimate_lm_memory` then
  `check_fits` (refusing with the settings to change), or a line saying the estimate is
  unavailable, and why, when the config cannot be had (the run is then not refused).
* :func:`device_memory` -> ``(total, free)`` bytes (CUDA: ``torch.cuda.mem_get_info``; CPU:
  available RAM from psutil, else ``/proc/meminfo``), and :func:`check_fits`, which raises
  `InsufficientMemoryError` (a `MemoryError`) naming the estimate, the free memory and the
  settings to change when the estimate does not fit, and returns a line to print when it does.

>>> est = estimate_lm_memory("mistralai/Mistral-7B-v0.1", "bf16", None, lora_r=8,
...                          lora_targets="all-linear", batch_size=4, seq_len=512,
...                          gradient_checkpointing=True)                      # doctest: +SKIP
>>> print(check_fits(est, "cuda", "lm_quantization='4bit', lm_batch_size"))   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigUnavailableError",
    "InsufficientMemoryError",
    "MemoryEstimate",
    "lm_config",
    "param_count",
    "linear_layers",
    "estimate_lm_memory",
    "device_memory",
    "check_fits",
    "lm_memory_line",
]

GB = 1e9
#: Bytes a 4-bit NF4 weight takes with double quantization (blocks of 64 with an 8-bit absmax,
#: blocks of 256 absmax values with a float32 constant).
NF4_BYTES_DOUBLE_QUANT = 0.5 + 1 / 64 + 4 / (64 * 256)
_LLAMA_FAMILY = ("llama", "mistral", "qwen2")
SUPPORTED_MODEL_TYPES = (*_LLAMA_FAMILY, "opt")


class ConfigUnavailableError(LookupError):
    """A model's config cannot be found: not a registry name, not a local folder, and a hub id
    that is neither in the local Hugging Face cache nor reachable."""


class InsufficientMemoryError(MemoryError):
    """An estimate exceeds the device's free memory (`check_fits`)."""


# ---------------------------------------------------------------- configs and parameter counts


def lm_config(config_or_name: Any, local_files_only: bool = False):
    """The Hugging Face config of ``config_or_name``: a config object (returned as it is), a
    registry name or local folder (`molkit.models.registry.resolve_model_path`; a registry model
    must be installed) or a hub id (``AutoConfig.from_pretrained``: the local cache, then the hub
    unless offline or ``local_files_only``). Raises `ConfigUnavailableError` when none is found."""
    if hasattr(config_or_name, "model_type") and not isinstance(config_or_name, str | Path):
        return config_or_name
    from transformers import AutoConfig

    from molkit.models.registry import resolve_model_path

    path = resolve_model_path(config_or_name)
    try:
        return AutoConfig.from_pretrained(path, local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        raise ConfigUnavailableError(
            f"no config for {config_or_name!r}: not a registry name or a local folder, and "
            "transformers cannot get it offline (download it once with network access, or pass "
            f"a config or a folder with config.json); no memory estimate without it ({exc})"
        ) from exc


def _model_type(config) -> str:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"no parameter formula for model_type {model_type!r}; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return model_type


def linear_layers(config) -> dict[str, tuple[int, int, bool]]:
    """The linear layers of one decoder layer: ``name -> (in_features, out_features, bias)``
    (the names LoRA's ``target_modules`` use)."""
    model_type = _model_type(config)
    h = config.hidden_size
    if model_type == "opt":
        bias = getattr(config, "enable_bias", True)
        return {
            "q_proj": (h, h, bias),
            "k_proj": (h, h, bias),
            "v_proj": (h, h, bias),
            "out_proj": (h, h, bias),
            "fc1": (h, config.ffn_dim, bias),
            "fc2": (config.ffn_dim, h, bias),
        }
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    qkv_bias = model_type == "qwen2" or bool(getattr(config, "attention_bias", False))
    o_bias = model_type != "qwen2" and bool(getattr(config, "attention_bias", False))
    mlp_bias = bool(getattr(config, "mlp_bias", False))
    i = config.intermediate_size
    return {
        "q_proj": (h, heads * head_dim, qkv_bias),
        "k_proj": (h, kv * head_dim, qkv_bias),
        "v_proj": (h, kv * head_dim, qkv_bias),
        "o_proj": (heads * head_dim, h, o_bias),
        "gate_proj": (h, i, mlp_bias),
        "up_proj": (h, i, mlp_bias),
        "down_proj": (i, h, mlp_bias),
    }


def _tied(config) -> bool:
    tied = getattr(config, "tie_word_embeddings", None)
    if tied is None:
        tied = config.model_type == "opt"
    return bool(tied)


def _split_counts(config) -> tuple[int, int]:
    """``(linear weights in the decoder layers, every other parameter)``: what 4-bit quantizes
    and what it leaves alone (biases, embeddings, norms, the output head)."""
    model_type = _model_type(config)
    h, v, n = config.hidden_size, config.vocab_size, config.num_hidden_layers
    linears = linear_layers(config).values()
    quantized = n * sum(i * o for i, o, _ in linears)
    other = n * sum(o for _, o, bias in linears if bias)
    if model_type == "opt":
        norm = 2 * h if getattr(config, "layer_norm_elementwise_affine", True) else 0
        proj = getattr(config, "word_embed_proj_dim", None) or h
        other += v * proj + (config.max_position_embeddings + 2) * h  # tokens, learned positions
        other += n * 2 * norm  # two LayerNorms (weight and bias) per layer
        if proj != h:  # project_in / project_out, no bias
            quantized += 2 * proj * h
        if getattr(config, "do_layer_norm_before", True) and not getattr(
            config, "_remove_final_layer_norm", False
        ):
            other += norm
        if not _tied(config):
            other += v * proj
        return quantized, other
    other += v * h + n * 2 * h + h  # embeddings, two RMSNorms per layer, the final norm
    if not _tied(config):
        other += v * h
    return quantized, other


def param_count(config) -> int:
    """Exact number of parameters of a causal LM built from ``config`` (a Hugging Face config of
    a `SUPPORTED_MODEL_TYPES` model; tied input and output embeddings counted once)."""
    quantized, other = _split_counts(config)
    return quantized + other


# ---------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a model needs (see the module docstring for the formulas): ``weights``,
    ``trainable`` (trainable parameters + gradients + AdamW moments, beyond the weights),
    ``activations`` and ``total``; ``n_parameters`` and ``n_trainable`` count parameters;
    ``setting`` describes what was estimated."""

    name: str
    n_parameters: int
    n_trainable: int
    weights: int
    trainable: int
    activations: int
    setting: str

    @property
    def total(self) -> int:
        return self.weights + self.trainable + self.activations

    def __str__(self) -> str:
        parts = [f"weights {self.weights / GB:.2f}"]
        if self.n_trainable:
            parts.append(
                f"training state of {self.n_trainable / 1e6:.1f}M trainable parameters "
                f"{self.trainable / GB:.2f}"
            )
        parts.append(f"activations {self.activations / GB:.2f}")
        return (
            f"{self.name} ({self.n_parameters / 1e9:.2f}B parameters; {self.setting}): about "
            f"{self.total / GB:.2f} GB = {' + '.join(parts)}"
        )


def _check_dtype(dtype: str) -> str:
    from molkit.models.lm.load import check_lm_dtype

    return check_lm_dtype(dtype)


def _check_quantization(quantization: str | None) -> str | None:
    from molkit.models.lm.load import check_lm_quantization

    return check_lm_quantization(quantization)


def _lora_targets(config, targets: str | Sequence[str]) -> list[str]:
    names = list(linear_layers(config))
    if isinstance(targets, str):
        if targets == "all-linear":
            return names
        targets = [targets]
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise ValueError(
            f"lora_targets {unknown} are not linear layers of a {config.model_type} decoder "
            f"layer; choose 'all-linear' or among {', '.join(names)}"
        )
    return list(targets)


def estimate_lm_memory(
    config_or_name: Any,
    dtype: str = "fp32",
    quantization: str | None = None,
    lora_r: int | None = 32,
    lora_targets: str | Sequence[str] = "all-linear",
    batch_size: int = 4,
    seq_len: int = 1024,
    gradient_checkpointing: bool = False,
    training: bool = True,
) -> MemoryEstimate:
    """The memory of fine-tuning (``training``) or running a causal LM, before loading it.

    ``config_or_name``: a config, a registry name, a folder or a hub id (`lm_config`; raises
    `ConfigUnavailableError` when it cannot be resolved). ``dtype`` / ``quantization`` as
    `molkit.models.lm.load_lm` takes them; ``lora_r`` the LoRA rank (``None``: full
    fine-tuning, not possible on 4-bit weights) on ``lora_targets`` (``"all-linear"`` or layer
    names such as ``["q_proj", "v_proj"]``); ``batch_size`` sequences of ``seq_len`` tokens per
    micro-batch.
    """
    config = lm_config(config_or_name)
    dtype = _check_dtype(dtype)
    quantization = _check_quantization(quantization)
    if training and lora_r is None and quantization is not None:
        raise ValueError(
            "4-bit weights train only through LoRA: set lora_r, or lm_quantization=None"
        )
    quantized, other = _split_counts(config)
    n_params = quantized + other
    weight_bytes = 4 if dtype == "fp32" else 2
    if quantization == "4bit":
        weights = round(quantized * NF4_BYTES_DOUBLE_QUANT) + 4 * other
        act_bytes = 2
    else:
        weights = weight_bytes * n_params
        act_bytes = weight_bytes
    n_trainable, trainable = 0, 0
    if training and lora_r:
        shapes = linear_layers(config)
        targets = _lora_targets(config, lora_targets)
        n_trainable = config.num_hidden_layers * sum(
            lora_r * (shapes[t][0] + shapes[t][1]) for t in targets
        )
        trainable = 16 * n_trainable  # float32 weight, gradient, two AdamW moments
    elif training:
        n_trainable = n_params
        trainable = 3 * weight_bytes * n_params  # gradient and two AdamW moments
    h, n = config.hidden_size, config.num_hidden_layers
    inner = getattr(config, "intermediate_size", None) or getattr(config, "ffn_dim", 4 * h)
    tokens = batch_size * seq_len
    layer = tokens * (10 * h + 4 * inner) * act_bytes
    if training:
        kept = tokens * h * act_bytes * n + layer if gradient_checkpointing else layer * n
        logits = tokens * config.vocab_size * (act_bytes + 4)
        activations = kept + logits
    else:
        heads = config.num_attention_heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or h // heads
        activations = tokens * n * 2 * kv * head_dim * act_bytes + layer
    setting = ", ".join(
        [
            "4-bit NF4" if quantization else dtype,
            (f"LoRA r {lora_r}" if lora_r else "full fine-tuning") if training else "inference",
            f"batch {batch_size} x {seq_len} tokens",
            *(["gradient checkpointing"] if training and gradient_checkpointing else []),
        ]
    )
    if isinstance(config_or_name, str | os.PathLike):
        name = str(config_or_name)
    else:
        name = str(getattr(config, "_name_or_path", "") or config.model_type)
    return MemoryEstimate(
        name=name,
        n_parameters=n_params,
        n_trainable=n_trainable,
        weights=int(weights),
        trainable=int(trainable),
        activations=int(activations),
        setting=setting,
    )


# ---------------------------------------------------------------- the device and the refusal


def _ram() -> tuple[int, int]:
    try:
        import psutil
    except ImportError:
        fields = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = int(value.split()[0]) * 1024  # kB
        return fields["MemTotal"], fields.get("MemAvailable", fields.get("MemFree", 0))
    memory = psutil.virtual_memory()
    return int(memory.total), int(memory.available)


def device_memory(device: Any = None) -> tuple[int, int]:
    """``(total, free)`` bytes of ``device`` (default: `molkit.models.runtime.default_device`):
    a CUDA device's from ``torch.cuda.mem_get_info``; otherwise the machine's RAM (total and
    available: psutil where installed, else ``/proc/meminfo``; Apple's MPS shares it)."""
    import torch

    from molkit.models.runtime import default_device

    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(total), int(free)
    return _ram()


def check_fits(
    estimate: MemoryEstimate,
    device: Any = None,
    settings_hint: str = "",
    free_bytes: int | None = None,
) -> str:
    """A line to print when ``estimate`` fits in ``device``'s free memory (`device_memory`, or
    ``free_bytes`` when given); else `InsufficientMemoryError` naming the estimate, the free
    memory and ``settings_hint``, the settings to change (e.g. ``"lm_quantization='4bit',
    lm_batch_size or gradient_checkpointing=True"``)."""
    import torch

    from molkit.models.runtime import default_device

    device = torch.device(device) if device is not None else default_device()
    if free_bytes is None:
        _, free_bytes = device_memory(device)
    if estimate.total > free_bytes:
        change = f"; change {settings_hint}" if settings_hint else ""
        raise InsufficientMemoryError(
            f"{estimate.name} needs about {estimate.total / GB:.1f} GB on {device} "
            f"({estimate}), but {free_bytes / GB:.1f} GB are free{change}"
        )
    return (
        f"memory: {estimate.name} needs about {estimate.total / GB:.1f} GB "
        f"({estimate.setting}); {free_bytes / GB:.1f} GB free on {device}"
    )


def lm_memory_line(
    name: Any,
    dtype: str = "fp32",
    quantization: str | None = None,
    settings_hint: str = "",
    device: Any = None,
    free_bytes: int | None = None,
    local_files_only: bool = False,
    **estimate: Any,
) -> str:
    """The line a notebook prints before its LM stage: `estimate_lm_memory` of ``name`` (with
    ``dtype``, ``quantization`` and the ``estimate`` keywords: ``lora_r``, ``lora_targets``,
    ``batch_size``, ``seq_len``, ``gradient_checkpointing``, ``training``) checked by
    `check_fits` on ``device`` (``free_bytes``: instead of the device's free memory), so it
    raises `InsufficientMemoryError` naming ``settings_hint`` when the setting does not fit.
    When the config cannot be had (`ConfigUnavailableError`, a registry model not installed;
    ``local_files_only``: never ask the hub) or its architecture has no parameter formula, the
    line says the estimate is unavailable and why, and nothing is refused."""
    import dataclasses
    from pathlib import Path

    from molkit.models.registry import ModelNotInstalledError

    # a local folder by its own name: a run's (temporary) folders stay out of the record
    label = Path(name).name if Path(str(name)).is_dir() else str(name)
    try:
        config = lm_config(name, local_files_only=local_files_only)
    except (ConfigUnavailableError, ModelNotInstalledError) as exc:
        return f"memory: no estimate for {label} (the run is not checked): {exc}"
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return (
            f"memory: no estimate for {label} (the run is not checked): no parameter formula for "
            f"model_type {config.model_type!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    est = dataclasses.replace(
        estimate_lm_memory(config, dtype, quantization, **estimate), name=label
    )
    return check_fits(est, device, settings_hint, free_bytes=free_bytes)
