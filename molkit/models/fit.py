"""One optimisation loop for every model molkit trains: the LM toolkit's trainer, the GNNs, LarDo's
graph-text contrastive pre-training and MoleX's information-bottleneck fine-tuning.

:func:`fit` runs a caller's ``step`` over the items of each epoch (a batch, or a group of
micro-batches that make one optimiser step), evaluates a validation part every ``eval_every``
steps or at the end of each epoch, keeps a copy of the best state, stops after ``patience``
evaluations without improvement and restores the best state at the end. A fixed number of epochs
is therefore a maximum; the chosen step is in the returned `FitReport`, whose ``curve`` the
notebooks plot.

The loop is deliberately small (no callbacks, loggers or checkpoints on disk): the training step
stays with its model, where its loss, precision, accumulation and data parallelism are written
once. PyTorch Lightning would bring those rooms at the price of a trainer object, a module
subclass per model and its own precision and device handling beside `molkit.models.runtime`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from molkit._progress import tqdm

#: What a step returns: its loss, or ``(loss sum, weight)`` to average an epoch by weight (e.g.
#: the number of labelled entries of each batch).
StepLoss = float | tuple[float, float]


@dataclass
class FitReport:
    """What `fit` did. ``curve``: one row per evaluation (``step``, ``epoch``, ``train_loss``: the
    mean step loss since the previous row, then whatever ``validate`` returned, e.g.
    ``valid_loss``); ``best_step`` / ``best_epoch``: where the kept state was taken (0: before any
    step; the last step where nothing was validated); ``best``: its monitored value (NaN without
    validation); ``stopped_early``: patience ran out before the plan did."""

    curve: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    best_step: int = 0
    best_epoch: float = 0.0
    best: float = math.nan
    stopped_early: bool = False
    seconds: float = 0.0
    monitor: str = "valid_loss"

    @property
    def validated(self) -> bool:
        return any(self.monitor in row for row in self.curve)

    def frame(self):
        """The curve as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.curve)


class BestState:
    """A copy of named tensors (a module's ``state_dict()``, or only the parameters that train) to
    put back later. ``take`` clones them; ``restore`` copies the clones into the same tensors in
    place (so optimisers, LoRA wrappers and data-parallel copies keep pointing at them)."""

    def __init__(self, tensors: Callable[[], Mapping[str, Tensor]]) -> None:
        self._tensors = tensors
        self._copy: dict[str, Tensor] | None = None

    def take(self) -> None:
        self._copy = {k: v.detach().clone() for k, v in self._tensors().items()}

    def restore(self) -> bool:
        """Put the copy back; False when nothing was taken."""
        if self._copy is None:
            return False
        with torch.no_grad():
            for name, tensor in self._tensors().items():
                tensor.copy_(self._copy[name])
        return True


def _better(value: float, best: float, mode: str) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value < best if mode == "min" else value > best


def fit(
    step: Callable[[Any], StepLoss],
    epochs: Iterable[Iterable[Any]],
    *,
    validate: Callable[[], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    patience: int | None = None,
    state: Callable[[], Mapping[str, Tensor]] | None = None,
    monitor: str = "valid_loss",
    mode: str = "min",
    eval_at_start: bool = False,
    total_steps: int | None = None,
    desc: str = "training",
    progress: bool = True,
    show: Callable[[], Mapping[str, str]] | None = None,
) -> FitReport:
    """Run ``step(item)`` over every item of every epoch of ``epochs`` (lazy iterables are fine: an
    epoch's order is drawn when it starts) and return a `FitReport`.

    ``validate()`` returns the validation figures (``monitor`` among them, lower is better with
    ``mode="min"``, higher with ``"max"``); it runs every ``eval_every`` steps, or at the end of
    each epoch when ``eval_every`` is None, at the very end if the last step was not evaluated, and
    before the first step with ``eval_at_start`` (so "no step helped" is a possible answer).
    ``state()`` names the tensors to keep at the best evaluation and restore at the end (default:
    nothing is kept). ``patience``: stop after that many evaluations in a row without a better
    value (None: run every epoch). Without ``validate`` every step runs and nothing is restored.
    ``show()``: extra progress-bar fields after each step."""
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
    if eval_every is not None and eval_every < 1:
        raise ValueError(f"eval_every must be >= 1 optimiser steps, got {eval_every}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 evaluations (or None), got {patience}")
    report = FitReport(monitor=monitor)
    keeper = BestState(state) if state is not None and validate is not None else None
    stale = 0
    loss_sum, loss_weight = 0.0, 0.0
    start = time.perf_counter()

    def evaluate(epoch: float) -> bool:
        """Record a curve row; True when patience has run out."""
        nonlocal stale, loss_sum, loss_weight
        row: dict[str, float] = {
            "step": report.steps,
            "epoch": epoch,
            "train_loss": loss_sum / loss_weight if loss_weight else math.nan,
        }
        loss_sum, loss_weight = 0.0, 0.0
        if validate is None:
            report.curve.append(row)
            report.best_step, report.best_epoch = report.steps, epoch
            return False
        figures = dict(validate())
        if monitor not in figures:
            raise KeyError(
                f"validate() returned {sorted(figures)}, without the monitored {monitor!r}"
            )
        row.update({k: float(v) for k, v in figures.items()})
        report.curve.append(row)
        value = float(figures[monitor])
        if _better(value, report.best, mode):
            report.best, report.best_step, report.best_epoch = value, report.steps, epoch
            stale = 0
            if keeper is not None:
                keeper.take()
            return False
        stale += 1
        return patience is not None and stale >= patience

    bar = tqdm(total=total_steps, desc=desc, unit="step", disable=not progress)
    evaluated_at = -1
    if eval_at_start and validate is not None:
        evaluate(0.0)
        evaluated_at = 0
    stop, epoch_no, position = False, 0, 0.0
    for epoch_items in epochs:
        n_items = len(epoch_items) if hasattr(epoch_items, "__len__") else None
        for i, item in enumerate(epoch_items, start=1):
            out = step(item)
            value, weight = out if isinstance(out, tuple) else (float(out), 1.0)
            loss_sum, loss_weight = loss_sum + value, loss_weight + weight
            report.steps += 1
            position = epoch_no + (i / n_items if n_items else 0.0)
            bar.update(1)
            bar.set_postfix(
                {"loss": f"{value / max(weight, 1e-12):.4f}", **(show() if show else {})}
            )
            if eval_every is not None and report.steps % eval_every == 0:
                evaluated_at = report.steps
                if evaluate(position):
                    stop = True
                    break
        if stop:
            break
        epoch_no += 1
        position = float(epoch_no)
        if eval_every is None and report.steps != evaluated_at:
            evaluated_at = report.steps
            if evaluate(position):
                stop = True
                break
    bar.close()
    if not stop and report.steps != evaluated_at:
        evaluate(position)
    report.stopped_early = stop
    if keeper is not None:
        keeper.restore()
    report.seconds = time.perf_counter() - start
    return report
