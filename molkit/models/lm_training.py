"""Causal-LM fine-tuning and batched generation, shared by the LM methods (ICMA, MolTC, LarDo).

The pieces, in the order a method uses them:

* :func:`load_lm`: `molkit.models.causal_lm.load_causal_lm` for training: a registry name
  (``smollm2-135m-instruct``), a local folder or a Hugging Face id -> ``(model, tokenizer)``, with
  float32 weights by default, bfloat16 weights (``dtype="bf16"``) or QLoRA's 4-bit NF4 weights
  (``quantization="4bit"``, CUDA and ``bitsandbytes`` only) for LoRA on models that float32 would
  not fit; `molkit.models.memory` estimates what a setting needs before anything loads.
* :class:`FewShotTemplate` and :func:`fit_fewshot_prompt`: prompts made of solved examples followed
  by a query, dropping the first examples until the prompt fits a token budget.
* :func:`encode_example`: prompt + answer -> token ids with an **answer-only loss mask** (labels
  are -100 on every prompt token) and optional *extra embedding* slots.
* :func:`apply_lora` (``peft``; r 32 / alpha 64 / dropout 0.1 on all linear layers by default) or
  full fine-tuning, then :func:`train_causal_lm`: a plain AdamW loop with length-grouped batches,
  linear warm-up/decay, gradient accumulation and bf16 autocast where the hardware has it
  (:func:`molkit.models.runtime.autocast`); it measures and reports tokens/s.
* :func:`generate_texts`: greedy (or sampled) batched generation with the KV cache, left padding,
  prompts sorted by length to waste little padding, a progress bar.
* Extra input embeddings: an example may carry ``extra_positions`` (token positions in its prompt)
  whose input embeddings are replaced by vectors from a callable (e.g. a graph encoder plus a
  projector, MolTC's graph tokens); :func:`splice_embeddings` does the replacement differentiably,
  so the callable's parameters train with the LM.

:func:`save_tiny_random_lm` writes a tiny random Llama / OPT / Mistral model with a byte-level BPE
tokenizer trained on a given corpus: the smoke profile and the tests load it through the same API.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from molkit._progress import tqdm
from molkit.models.runtime import autocast

__all__ = [
    "IGNORE_INDEX",
    "SMOKE_LM",
    "resolve_lm",
    "LMExample",
    "TrainConfig",
    "TrainReport",
    "FewShotTemplate",
    "load_lm",
    "LM_DTYPES",
    "LM_QUANTIZATIONS",
    "check_lm_dtype",
    "check_lm_quantization",
    "four_bit_unavailable",
    "four_bit_config",
    "generation_load_kwargs",
    "fit_fewshot_prompt",
    "encode_example",
    "collate_examples",
    "splice_embeddings",
    "apply_lora",
    "train_causal_lm",
    "answer_logits",
    "answer_loss",
    "generate_texts",
    "data_parallel",
    "RUNTIME_ONLY_FIELDS",
    "save_tiny_random_lm",
]

IGNORE_INDEX = -100

#: ``extra_embeddings(example_indices) -> one (m_i, hidden) tensor per example`` for the examples'
#: ``extra_positions``.
ExtraEmbeddings = Callable[[Sequence[int]], Sequence[Tensor]]


# ---------------------------------------------------------------- loading


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
    """Keyword arguments of `molkit.models.causal_lm.load_causal_lm` for a model loaded only to
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
    """``(model, tokenizer)`` for fine-tuning: `molkit.models.causal_lm.load_causal_lm` (a registry
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
    from molkit.models.causal_lm import load_causal_lm

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


# ---------------------------------------------------------------- prompts


@dataclass(frozen=True)
class FewShotTemplate:
    """A few-shot prompt: ``header``, then each example rendered by ``example`` (fields ``{input}``
    and ``{output}``), joined by ``separator``, then the query rendered by ``query`` (``{input}``)
    or, when examples precede it, by ``query_after_examples``. The answer follows the prompt."""

    example: str
    query: str
    query_after_examples: str | None = None
    header: str = ""
    separator: str = "\n\n"

    def render(self, examples: Sequence[tuple[str, str]], query: str) -> str:
        """The prompt text for ``examples`` ((input, output) pairs, in order) and ``query``."""
        parts = [self.header] if self.header else []
        parts += [self.example.format(input=i, output=o) for i, o in examples]
        template = (
            self.query_after_examples if examples and self.query_after_examples else self.query
        )
        parts.append(template.format(input=query))
        return self.separator.join(parts)


def fit_fewshot_prompt(
    tokenizer,
    template: FewShotTemplate,
    examples: Sequence[tuple[str, str]],
    query: str,
    max_prompt_tokens: int,
) -> tuple[str, int]:
    """The prompt with as many of ``examples`` as fit in ``max_prompt_tokens`` tokens.

    Drops examples from the front (with sequence reversal the front holds the least similar ones)
    until the prompt fits; returns ``(prompt, n_examples_kept)``. A query that alone exceeds the
    budget is returned as it is (``encode_example`` then truncates it from the left).
    """
    examples = list(examples)
    while True:
        prompt = template.render(examples, query)
        if not examples or len(tokenizer(prompt)["input_ids"]) <= max_prompt_tokens:
            return prompt, len(examples)
        examples = examples[1:]


# ---------------------------------------------------------------- tokenisation


@dataclass
class LMExample:
    """One tokenised example: ``input_ids`` (prompt + answer), ``labels`` (-100 on the prompt,
    the answer ids elsewhere), ``prompt_length``, and ``extra_positions`` (indices into
    ``input_ids`` whose embeddings an :data:`ExtraEmbeddings` callable supplies)."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    extra_positions: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_example(
    tokenizer,
    prompt: str,
    answer: str = "",
    max_length: int = 1024,
    add_eos: bool = True,
    extra_positions: Sequence[int] = (),
) -> LMExample:
    """Tokenise ``prompt`` (with the tokenizer's special prefix, e.g. BOS) and ``answer`` (plus EOS)
    separately and concatenate them; the loss covers only the answer tokens.

    Too long for ``max_length``: the answer keeps at most ``max_length - 1`` tokens (cut at its
    end), then the prompt loses tokens from its left, after any BOS prefix, so the query nearest the
    answer survives. ``extra_positions`` index the prompt tokens and move with that cut; cutting one
    away is an error. With ``answer=""`` and ``add_eos=False`` the example is a bare prompt for
    generation.
    """
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    answer_ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"]) if answer else []
    if add_eos:
        answer_ids.append(tokenizer.eos_token_id)
    positions = [int(p) for p in extra_positions]
    if any(p < 0 or p >= len(prompt_ids) for p in positions):
        raise ValueError(
            f"extra_positions must index the prompt's {len(prompt_ids)} tokens, got {positions}"
        )
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    answer_ids = answer_ids[: max_length - 1]
    excess = len(prompt_ids) + len(answer_ids) - max_length
    if excess > 0:
        keep_prefix = int(bool(prompt_ids) and prompt_ids[0] == tokenizer.bos_token_id)
        cut = slice(keep_prefix, keep_prefix + excess)
        if any(cut.start <= p < cut.stop for p in positions):
            raise ValueError(
                f"max_length {max_length} cuts away extra embedding positions; "
                "raise max_length or shorten the prompt"
            )
        prompt_ids = prompt_ids[: cut.start] + prompt_ids[cut.stop :]
        positions = [p - excess if p >= cut.stop else p for p in positions]
    return LMExample(
        input_ids=prompt_ids + answer_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids,
        prompt_length=len(prompt_ids),
        extra_positions=positions,
    )


def collate_examples(
    examples: Sequence[LMExample], pad_id: int, padding_side: str = "right"
) -> dict[str, Tensor]:
    """Pad a batch: ``input_ids``, ``labels`` (-100 on padding), ``attention_mask`` (B, T) long and
    ``offsets`` (B,) (how far each example moved: its left padding)."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE_INDEX)
    mask = torch.zeros_like(ids)
    offsets = torch.zeros(len(examples), dtype=torch.long)
    for row, e in enumerate(examples):
        start = width - len(e) if padding_side == "left" else 0
        ids[row, start : start + len(e)] = torch.tensor(e.input_ids)
        labels[row, start : start + len(e)] = torch.tensor(e.labels)
        mask[row, start : start + len(e)] = 1
        offsets[row] = start
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "offsets": offsets}


def splice_embeddings(
    model, input_ids: Tensor, positions: Sequence[Sequence[int]], vectors: Sequence[Tensor]
) -> Tensor:
    """Input embeddings (B, T, hidden) of ``input_ids`` with row b's ``positions[b]`` replaced by
    ``vectors[b]`` (len(positions[b]), hidden); differentiable in ``vectors``."""
    embeds = model.get_input_embeddings()(input_ids)
    if len(positions) != len(vectors) or len(positions) != input_ids.shape[0]:
        raise ValueError(
            f"need one positions list and one vectors tensor per row: {input_ids.shape[0]} rows"
        )
    embeds = embeds.clone()
    for b, (pos, vec) in enumerate(zip(positions, vectors, strict=True)):
        if len(pos) == 0:
            continue
        if vec.shape != (len(pos), embeds.shape[-1]):
            raise ValueError(
                f"row {b}: vectors of shape {tuple(vec.shape)}, "
                f"expected ({len(pos)}, {embeds.shape[-1]})"
            )
        embeds[b, torch.as_tensor(pos, device=embeds.device)] = vec.to(embeds.dtype)
    return embeds


# ---------------------------------------------------------------- fine-tuning


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


@dataclass
class TrainConfig:
    """Fine-tuning settings. ``batch_size`` x ``grad_accum`` examples per optimiser step; ``epochs``
    passes over the examples; ``warmup`` share of the steps ramps the learning rate up, then it
    decays linearly to 0. ``precision``: ``None`` follows the precision policy
    (`molkit.models.runtime`: bf16 autocast where native under ``auto``); ``"fp32"`` or
    ``"bf16"`` force one for this run."""

    epochs: float = 1.0
    lr: float = 2e-5
    batch_size: int = 4
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup: float = 0.05
    max_grad_norm: float = 1.0
    precision: str | None = None
    seed: int = 0
    gradient_checkpointing: bool = False


#: TrainConfig fields that change how training runs, not the weights it produces (left out of the
#: trained-adapter cache key).
RUNTIME_ONLY_FIELDS = frozenset({"gradient_checkpointing"})


def data_parallel(accelerator=None):
    """The `accelerate.Accelerator` a training or generation call shards its work with, or None
    for a plain single process: ``accelerator`` when given, else one made when this process was
    started as one of several (``WORLD_SIZE`` > 1: ``accelerate launch``, ``torchrun`` or
    ``accelerate.notebook_launcher``; gloo on CPUs, NCCL on GPUs)."""
    if accelerator is not None:
        return accelerator
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return _launched_accelerator()


@functools.cache
def _launched_accelerator():
    """One `accelerate.Accelerator` per launched process (every training and generation call and
    the adapter cache share it)."""
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def _answer_tokens(example: LMExample) -> int:
    """Answer tokens of an example that `answer_loss` scores (labels after the first position)."""
    return sum(1 for label in example.labels[1:] if label != IGNORE_INDEX)


@dataclass
class TrainReport:
    """What a fine-tuning run did: per-step ``losses`` (mean answer-token cross-entropy),
    ``tokens`` processed (non-padding, prompts included), ``seconds`` and ``tokens_per_second``.
    ``replayed``: the weights came from the trained-adapter cache
    (`molkit.models.adapter_cache.train_cached`) and the numbers are those of the run that made
    them; nothing was trained."""

    losses: list[float]
    tokens: int
    seconds: float
    steps: int
    replayed: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def _length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort within windows of 32 batches, shuffle
    batches."""
    order = rng.permutation(len(lengths))
    window = batch_size * 32
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def answer_logits(
    model,
    batch: dict[str, Tensor],
    extra_positions: Sequence[Sequence[int]] | None = None,
    extra_vectors: Sequence[Tensor] | None = None,
    forward=None,
) -> tuple[Tensor, Tensor]:
    """The LM's logits where a collated ``batch`` predicts an answer token (labels -100
    elsewhere), with extra embeddings spliced in when given: ``(logits, answer)``, logits
    (n_answer_tokens, vocab) in the forward's dtype and ``answer`` the (batch, length - 1) mask of
    those positions in the shifted labels. ``forward``: the module that runs the forward pass (a
    data-parallel wrapper of ``model``); default ``model``."""
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    kwargs = {"attention_mask": batch["attention_mask"].to(device)}
    if extra_vectors is not None:
        kwargs["inputs_embeds"] = splice_embeddings(model, ids, extra_positions, extra_vectors)
    else:
        kwargs["input_ids"] = ids
    # logits only where an answer token is predicted: the LM head over a 49k vocabulary at every
    # prompt position is a fifth of a small model's compute and most of its memory traffic
    out = (forward or model)(**kwargs, output_hidden_states=True, logits_to_keep=1)
    answer = batch["labels"][:, 1:].to(device) != IGNORE_INDEX
    return model.get_output_embeddings()(out.hidden_states[-1][:, :-1][answer]), answer


def answer_loss(
    model,
    batch: dict[str, Tensor],
    extra_positions: Sequence[Sequence[int]] | None = None,
    extra_vectors: Sequence[Tensor] | None = None,
    forward=None,
) -> Tensor:
    """Mean cross-entropy over the answer tokens of a collated ``batch`` (`answer_logits`).
    ``forward``: the module that runs the forward pass (a data-parallel wrapper of ``model``,
    whose gradients it synchronises); default ``model``."""
    logits, answer = answer_logits(model, batch, extra_positions, extra_vectors, forward)
    if logits.dtype not in (torch.float32, torch.float64):  # bf16 autocast: the loss in float32
        logits = logits.float()
    labels = batch["labels"][:, 1:].to(logits.device)
    return torch.nn.functional.cross_entropy(logits, labels[answer])


def train_causal_lm(
    model,
    examples: Sequence[LMExample],
    config: TrainConfig,
    pad_id: int,
    extra_embeddings: ExtraEmbeddings | None = None,
    extra_parameters: Sequence[torch.nn.Parameter] = (),
    progress: bool = True,
    extra_lr: float | None = None,
    accelerator=None,
) -> TrainReport:
    """Fine-tune ``model`` in place on ``examples`` with the answer-only loss (AdamW over the
    parameters that require grad, plus ``extra_parameters``, e.g. a graph projector's, in a
    parameter group of their own with learning rate ``extra_lr``; ``None``: ``config.lr``).

    ``extra_embeddings(indices)`` supplies the vectors for the ``extra_positions`` of
    ``examples[i]`` for each i in ``indices``. Leaves the model in eval mode.

    **Several processes** (`data_parallel`: ``accelerator``, or ``WORLD_SIZE`` > 1): every
    process draws the same batches; each global batch of ``config.batch_size`` examples is split
    across the processes, each process's loss is weighted by its share of the batch's answer
    tokens and the gradients (the model's and the extra parameters') are averaged in one
    all-reduce before the step, so one optimiser step equals the single-process step on the same
    global batch. ``config.gradient_checkpointing`` recomputes
    activations in the backward pass (less memory, about a third more compute).
    """
    if not examples:
        raise ValueError("no training examples")
    if any(not any(label != IGNORE_INDEX for label in e.labels) for e in examples):
        raise ValueError("an example has no answer tokens to learn (empty answer without EOS?)")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = next(model.parameters()).device
    model_params = [p for p in model.parameters() if p.requires_grad]
    extra = list(extra_parameters)
    params = model_params + extra
    if not params:
        raise ValueError(
            "nothing to train: no model parameter requires grad and no extra_parameters were given"
        )
    groups = [{"params": model_params}] if model_params else []
    if extra:
        groups.append({"params": extra, "lr": config.lr if extra_lr is None else extra_lr})
    optimiser = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    lengths = np.array([len(e) for e in examples])
    n_epochs = max(1, math.ceil(config.epochs))
    plan = [
        b for _ in range(n_epochs) for b in _length_grouped_batches(lengths, config.batch_size, rng)
    ]
    plan = plan[: max(1, round(config.epochs * math.ceil(len(examples) / config.batch_size)))]
    total_steps = max(1, math.ceil(len(plan) / config.grad_accum))
    warmup_steps = int(config.warmup * total_steps)

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    precision = autocast(device, config.precision)
    if config.gradient_checkpointing:
        _checkpointing(model, True)
    acc = data_parallel(accelerator)
    world = acc.num_processes if acc is not None else 1
    if world > 1 and config.batch_size < world:
        raise ValueError(
            f"batch_size {config.batch_size} is smaller than the {world} processes: each process "
            "needs an example of every global batch; raise batch_size or use fewer processes"
        )
    model.train()
    losses, tokens, accumulated = [], 0, []
    start = time.perf_counter()
    bar = tqdm(plan, desc="fine-tuning", unit="batch", disable=not progress or not _main(acc))
    for i, idx in enumerate(bar):
        last = len(accumulated) + 1 == config.grad_accum or i == len(plan) - 1
        if world > 1:
            loss, n_tokens = _shard_step(
                acc, model, examples, idx, pad_id, extra_embeddings, precision, config.grad_accum
            )
            accumulated.append(loss)
            tokens += n_tokens
        else:
            loss, batch = _micro_batch_loss(
                model, examples, idx, pad_id, extra_embeddings, precision
            )
            (loss / config.grad_accum).backward()
            accumulated.append(loss.item())
            tokens += int(batch["attention_mask"].sum())
        if last:
            if world > 1:
                _average_gradients(acc, params)
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimiser.step()
            scheduler.step()
            optimiser.zero_grad(set_to_none=True)
            losses.append(float(np.mean(accumulated)))
            accumulated = []
            bar.set_postfix(
                loss=f"{losses[-1]:.3f}", tok_s=f"{tokens / (time.perf_counter() - start):.0f}"
            )
    if config.gradient_checkpointing:
        _checkpointing(model, False)
    model.eval()
    return TrainReport(
        losses=losses, tokens=tokens, seconds=time.perf_counter() - start, steps=len(losses)
    )


def _checkpointing(model, on: bool) -> None:
    """Activation (gradient) checkpointing on or off, non-reentrant (it works with LoRA's frozen
    base weights); transformers 5 names it ``activation_checkpointing_*``, older versions
    ``gradient_checkpointing_*``."""
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


def _main(acc) -> bool:
    return acc is None or acc.is_main_process


def _micro_batch_loss(model, examples, rows, pad_id, extra_embeddings, precision):
    """The answer loss of ``examples[rows]`` collated into one batch (extra embeddings spliced in
    where given), under ``precision``; returns ``(loss, batch)``."""
    batch = collate_examples([examples[j] for j in rows], pad_id)
    positions = vectors = None
    if extra_embeddings is not None:
        positions = [examples[j].extra_positions for j in rows]
        vectors = list(extra_embeddings(list(rows)))
    with precision:
        loss = answer_loss(model, batch, positions, vectors)
    return loss, batch


def _shard_step(
    acc, model, examples, idx, pad_id, extra_embeddings, precision, grad_accum
) -> tuple[float, int]:
    """One micro-batch on this process's share of the global batch ``idx``, its loss weighted so
    that the gradients averaged over the processes (`_average_gradients`) equal those of the
    global batch's mean answer loss. Returns that mean loss and the batch's tokens (all
    processes)."""
    rank, world = acc.process_index, acc.num_processes
    share = list(idx[rank::world])
    n_global = sum(_answer_tokens(examples[j]) for j in idx)
    empty = not share  # a short last batch: run the first example with zero weight
    rows = share or [idx[0]]
    n_local = 0 if empty else sum(_answer_tokens(examples[j]) for j in rows)
    loss, batch = _micro_batch_loss(model, examples, rows, pad_id, extra_embeddings, precision)
    (loss * (n_local / n_global * world / grad_accum)).backward()
    local = torch.tensor(
        [float(loss.detach()) * n_local, float(batch["attention_mask"].sum()) * (not empty)],
        dtype=torch.float64,
    )
    total = acc.reduce(local.to(acc.device), "sum").cpu()
    return float(total[0]) / n_global, int(total[1])


def _average_gradients(acc, params: Sequence[torch.nn.Parameter]) -> None:
    """Average every trainable parameter's gradient over the processes in one all-reduce (the
    model's and the extra parameters' alike: the answer loss uses the output head outside the
    model's forward, where a module wrapper would not see it)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    flat = acc.reduce(flat, "mean")
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


# ---------------------------------------------------------------- generation


@torch.no_grad()
def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 256,
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    extra_positions: Sequence[Sequence[int]] | None = None,
    extra_embeddings: ExtraEmbeddings | None = None,
    precision: str | None = None,
    progress: bool = True,
    desc: str = "generating",
    generate_kwargs: dict | None = None,
    accelerator=None,
) -> list[str]:
    """Continuations of ``prompts`` (special tokens removed, whitespace stripped), in input order.

    Greedy by default; batches of ``batch_size`` prompts of similar length, left-padded, decoded
    with the KV cache. With ``extra_embeddings``, prompt ``i``'s tokens at ``extra_positions[i]``
    take the vectors ``extra_embeddings([i])[0]`` (the prompt is passed as ``inputs_embeds``).
    ``generate_kwargs`` go to ``model.generate`` as they are (e.g. ``{"num_beams": 5}``).
    ``precision``: ``None`` follows the precision policy (`molkit.models.runtime`), else
    ``"fp32"`` / ``"bf16"`` for this call. With several processes (`data_parallel`), each
    generates every n-th prompt of the length order and the texts are gathered: every process
    returns all of them, in input order.
    """
    if extra_embeddings is not None and extra_positions is None:
        raise ValueError("extra_embeddings needs extra_positions (one list per prompt)")
    device = next(model.parameters()).device
    encoded = [list(tokenizer(p)["input_ids"]) for p in prompts]
    order = np.argsort([-len(e) for e in encoded], kind="stable")
    acc = data_parallel(accelerator)
    if acc is not None and acc.num_processes > 1:
        order = order[acc.process_index :: acc.num_processes]
    outputs: list[str] = [""] * len(prompts)
    precision = autocast(device, precision)
    settings = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "use_cache": True,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if do_sample:
        settings["temperature"] = temperature
    settings.update(generate_kwargs or {})
    if int(settings.get("num_beams", 1)) < 1:
        raise ValueError(f"num_beams must be >= 1, not {settings['num_beams']!r}")
    model.eval()
    bar = tqdm(total=len(order), desc=desc, unit="prompt", disable=not progress or not _main(acc))
    for start in range(0, len(order), batch_size):
        idx = [int(i) for i in order[start : start + batch_size]]
        batch = collate_examples(
            [LMExample(encoded[i], [IGNORE_INDEX] * len(encoded[i]), len(encoded[i])) for i in idx],
            tokenizer.pad_token_id,
            padding_side="left",
        )
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        with precision:
            if extra_embeddings is not None:
                positions = [
                    [p + int(off) for p in extra_positions[i]]
                    for i, off in zip(idx, batch["offsets"], strict=True)
                ]
                vectors = list(extra_embeddings(idx))
                embeds = splice_embeddings(model, ids, positions, vectors)
                new = model.generate(inputs_embeds=embeds, attention_mask=mask, **settings)
            else:
                new = model.generate(input_ids=ids, attention_mask=mask, **settings)[
                    :, ids.shape[1] :
                ]
        for row, i in enumerate(idx):
            outputs[i] = tokenizer.decode(new[row], skip_special_tokens=True).strip()
        bar.update(len(idx))
    bar.close()
    if acc is not None and acc.num_processes > 1:
        from accelerate.utils import gather_object

        for i, text in gather_object([(int(i), outputs[int(i)]) for i in order]):
            outputs[i] = text
    return outputs


# -------------------------------------------------- tiny random models for tests and smoke runs


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
    BPE tokenizer trained on ``corpus`` into ``path``; :func:`load_lm` loads it like any
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
