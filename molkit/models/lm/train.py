"""The LM toolkit's one trainer: answer-only fine-tuning (LoRA or full) of a causal LM, stopped on a
validation part.

:func:`train_causal_lm` runs AdamW over length-grouped batches with linear warm-up and decay,
gradient accumulation, bf16 autocast where the precision policy says so
(`molkit.models.runtime.autocast`) and data parallelism across processes
(`molkit.models.lm.parallel`), through `molkit.models.fit.fit`: with ``valid_examples`` it
evaluates the answer loss on them (and the caller's task figures, ``valid_metric``) every
``TrainConfig.eval_every`` optimiser steps, keeps the best adapters (or weights) and extra
parameters, stops after ``TrainConfig.patience`` evaluations without improvement and restores the
best state. ``TrainConfig.epochs`` is then a maximum and `TrainReport` says which step was kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from molkit.models.fit import fit
from molkit.models.lm.examples import (
    IGNORE_INDEX,
    ExtraEmbeddings,
    LMExample,
    collate_examples,
    splice_embeddings,
)
from molkit.models.lm.parallel import data_parallel, is_main, shard
from molkit.models.runtime import autocast, release_freed_memory

#: The figure a training run with a validation part monitors by default: the mean answer-token
#: cross-entropy on it.
VALID_LOSS = "valid_loss"


@dataclass
class TrainConfig:
    """Fine-tuning settings. ``batch_size`` x ``grad_accum`` examples per optimiser step; ``epochs``
    passes over the examples at most; ``warmup`` share of those steps ramps the learning rate up,
    then it decays linearly to 0. ``precision``: ``None`` follows the precision policy
    (`molkit.models.runtime`: bf16 autocast where native under ``auto``); ``"fp32"`` or
    ``"bf16"`` force one for this run.

    With a validation part (`train_causal_lm`'s ``valid_examples``): it is evaluated every
    ``eval_every`` optimiser steps (None: once per epoch, or once at the end of a shorter run)
    and before the first step (``eval_at_start``: an LM that no step improves keeps its initial
    weights, and the report says so); the state with the best ``monitor`` (``"valid_loss"``, lower
    is better, or a key of the caller's ``valid_metric`` with ``monitor_mode="max"`` for a score)
    is kept and restored; ``patience`` evaluations in a row without improvement stop the run
    (None: run every epoch)."""

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
    eval_every: int | None = None
    patience: int | None = None
    monitor: str = VALID_LOSS
    monitor_mode: str = "min"
    eval_at_start: bool = True
    eval_batch_size: int = 16


#: TrainConfig fields that change how training runs, not the weights it produces (left out of the
#: trained-adapter cache key).
RUNTIME_ONLY_FIELDS = frozenset({"gradient_checkpointing", "eval_batch_size"})


def _answer_tokens(example: LMExample) -> int:
    """Answer tokens of an example that `answer_loss` scores (labels after the first position)."""
    return sum(1 for label in example.labels[1:] if label != IGNORE_INDEX)


@dataclass
class TrainReport:
    """What a fine-tuning run did: per-step ``losses`` (mean answer-token cross-entropy),
    ``tokens`` processed (non-padding, prompts included), ``seconds`` and ``tokens_per_second``;
    ``steps`` run of ``planned_steps``. With a validation part: ``curve`` (one row per
    evaluation: step, epoch, train_loss, valid_loss and the caller's figures), ``best_step`` (the
    optimiser step whose state the model holds; 0 is the initial state) and ``stopped_early``.
    ``replayed``: the weights came from the trained-adapter cache
    (`molkit.models.lm.adapter_cache.train_cached`) and the numbers are those of the run that
    made them; nothing was trained."""

    losses: list[float]
    tokens: int
    seconds: float
    steps: int
    replayed: bool = False
    curve: list[dict[str, float]] = field(default_factory=list)
    best_step: int | None = None
    stopped_early: bool = False
    planned_steps: int | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")

    @property
    def validated(self) -> bool:
        return any(VALID_LOSS in row for row in self.curve)

    @property
    def best_row(self) -> dict[str, float] | None:
        """The curve row of ``best_step`` (None without a validation part)."""
        return next((r for r in self.curve if r["step"] == self.best_step), None)

    def curve_frame(self):
        """``curve`` as a DataFrame (empty without a validation part)."""
        import pandas as pd

        return pd.DataFrame(self.curve)

    def summary(self) -> str:
        """One line: steps run, the kept step with its validation loss, speed."""
        text = f"{self.steps} of {self.planned_steps or self.steps} optimiser steps"
        best = self.best_row
        if best is not None:
            text += (
                f", kept step {self.best_step} (epoch {best['epoch']:.2f}; validation loss "
                f"{best[VALID_LOSS]:.3f}, {self.curve[0][VALID_LOSS]:.3f} before training)"
            )
            text += ", stopped on patience" if self.stopped_early else ""
        if self.seconds > 0:
            text += f", {self.tokens_per_second:.0f} tokens/s"
        return text + (" (replayed from the cache)" if self.replayed else "")


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
    valid_examples: Sequence[LMExample] = (),
    valid_extra_embeddings: ExtraEmbeddings | None = None,
    valid_metric: Callable[[], Mapping[str, float]] | None = None,
) -> TrainReport:
    """Fine-tune ``model`` in place on ``examples`` with the answer-only loss (AdamW over the
    parameters that require grad, plus ``extra_parameters``, e.g. a graph projector's, in a
    parameter group of their own with learning rate ``extra_lr``; ``None``: ``config.lr``).

    ``extra_embeddings(indices)`` supplies the vectors for the ``extra_positions`` of
    ``examples[i]`` for each i in ``indices`` (``valid_extra_embeddings`` likewise for
    ``valid_examples``). ``valid_examples``: the validation part (`TrainConfig` says when it is
    evaluated, what is monitored and when training stops); ``valid_metric()``: the caller's task
    figures on its own validation items (called with the model in eval mode and no gradients),
    added to each curve row. Leaves the model in eval mode, holding the best state when a
    validation part was given.

    **Several processes** (`data_parallel`: ``accelerator``, or ``WORLD_SIZE`` > 1): every
    process draws the same batches; each global batch of ``config.batch_size`` examples is split
    across the processes, each process's loss is weighted by its share of the batch's answer
    tokens and the gradients (the model's and the extra parameters') are averaged in one
    all-reduce before the step, so one optimiser step equals the single-process step on the same
    global batch; the validation loss is summed over the processes' shares.
    ``config.gradient_checkpointing`` recomputes activations in the backward pass (less memory,
    about a third more compute).
    """
    if not examples:
        raise ValueError("no training examples")
    for name, part in (("training", examples), ("validation", valid_examples)):
        if any(not any(label != IGNORE_INDEX for label in e.labels) for e in part):
            raise ValueError(
                f"a {name} example has no answer tokens to learn (empty answer without EOS?)"
            )
    if valid_metric is not None and not valid_examples:
        raise ValueError("valid_metric needs valid_examples (the validation part it belongs to)")
    if config.monitor != VALID_LOSS and valid_metric is None:
        raise ValueError(
            f"TrainConfig.monitor={config.monitor!r} needs a valid_metric that returns it"
        )
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
    batches_per_epoch = math.ceil(len(examples) / config.batch_size)
    plan = [
        b for _ in range(n_epochs) for b in _length_grouped_batches(lengths, config.batch_size, rng)
    ]
    plan = plan[: max(1, round(config.epochs * batches_per_epoch))]
    steps = [plan[i : i + config.grad_accum] for i in range(0, len(plan), config.grad_accum)]
    total_steps = len(steps)
    steps_per_epoch = batches_per_epoch / config.grad_accum
    warmup_steps = int(config.warmup * total_steps)

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    precision = autocast(device, config.precision)
    acc = data_parallel(accelerator)
    world = acc.num_processes if acc is not None else 1
    if world > 1 and config.batch_size < world:
        raise ValueError(
            f"batch_size {config.batch_size} is smaller than the {world} processes: each process "
            "needs an example of every global batch; raise batch_size or use fewer processes"
        )
    losses: list[float] = []
    counted = {"tokens": 0}
    start = time.perf_counter()

    trim_heap = device.type == "cpu"

    def step(micro_batches: list[np.ndarray]) -> float:
        model.train()
        accumulated = []
        for idx in micro_batches:
            if world > 1:
                loss, n_tokens = _shard_step(
                    acc, model, examples, idx, pad_id, extra_embeddings, precision,
                    config.grad_accum,
                )  # fmt: skip
                accumulated.append(loss)
                counted["tokens"] += n_tokens
            else:
                loss, batch = _micro_batch_loss(
                    model, examples, idx, pad_id, extra_embeddings, precision
                )
                (loss / config.grad_accum).backward()
                accumulated.append(loss.item())
                counted["tokens"] += int(batch["attention_mask"].sum())
        if world > 1:
            _average_gradients(acc, params)
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimiser.step()
        scheduler.step()
        optimiser.zero_grad(set_to_none=True)
        if trim_heap:  # the step's activations are freed: hand their pages back
            release_freed_memory()
        losses.append(float(np.mean(accumulated)))
        return losses[-1]

    validate = None
    if valid_examples:

        def validate() -> dict[str, float]:
            model.eval()
            figures = {
                VALID_LOSS: validation_loss(
                    model, valid_examples, pad_id, valid_extra_embeddings,
                    config.eval_batch_size, config.precision, acc,
                )
            }  # fmt: skip
            if valid_metric is not None:
                with torch.no_grad():
                    figures.update(valid_metric())
            return figures

    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    trained.update({f"extra.{i}": p for i, p in enumerate(extra)})
    if config.gradient_checkpointing:
        _checkpointing(model, True)
    try:
        fitted = fit(
            step,
            [steps],
            validate=validate,
            eval_every=config.eval_every or max(1, min(math.ceil(steps_per_epoch), total_steps)),
            patience=config.patience,
            state=lambda: trained,
            monitor=config.monitor,
            mode=config.monitor_mode,
            eval_at_start=config.eval_at_start,
            total_steps=total_steps,
            desc="fine-tuning",
            progress=progress and is_main(acc),
            show=lambda: {"tok_s": f"{counted['tokens'] / (time.perf_counter() - start):.0f}"},
        )
    finally:
        if config.gradient_checkpointing:
            _checkpointing(model, False)
    model.eval()
    curve = [dict(row, epoch=row["step"] / steps_per_epoch) for row in fitted.curve]
    return TrainReport(
        losses=losses,
        tokens=counted["tokens"],
        seconds=time.perf_counter() - start,
        steps=fitted.steps,
        curve=curve if validate is not None else [],
        best_step=fitted.best_step if validate is not None else fitted.steps,
        stopped_early=fitted.stopped_early,
        planned_steps=total_steps,
    )


@torch.no_grad()
def validation_loss(
    model,
    examples: Sequence[LMExample],
    pad_id: int,
    extra_embeddings: ExtraEmbeddings | None = None,
    batch_size: int = 16,
    precision: str | None = None,
    accelerator=None,
) -> float:
    """The mean answer-token cross-entropy over ``examples`` (every answer token weighs the same),
    in eval mode and length-sorted batches; with several processes each scores its share and the
    sums are added up, so every process returns the same number."""
    device = next(model.parameters()).device
    acc = data_parallel(accelerator)
    order = np.argsort([-len(e) for e in examples], kind="stable")
    mine = shard(order, acc)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    with autocast(device, precision):
        for start in range(0, len(mine), batch_size):
            rows = [int(i) for i in mine[start : start + batch_size]]
            batch = collate_examples([examples[i] for i in rows], pad_id)
            positions = vectors = None
            if extra_embeddings is not None:
                positions = [examples[i].extra_positions for i in rows]
                vectors = list(extra_embeddings(rows))
            logits, answer = answer_logits(model, batch, positions, vectors)
            labels = batch["labels"][:, 1:].to(device)[answer]
            nll = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
            total += torch.stack([nll.double(), torch.tensor(float(len(labels)), device=device)])
    if acc is not None and acc.num_processes > 1:
        total = acc.reduce(total.to(acc.device), "sum")
    return float(total[0] / total[1].clamp(min=1))


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
