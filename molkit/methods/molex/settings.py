"""MoleX's settings (notebook 01): one typed field per knob, one value set per profile, validated in
`Settings.problems` (the contract's one hook, `molkit.methods.experiment.Settings`).

Where a setting is chosen by measurement, the field holds the *candidates* (``lm_layer_grid``,
``beta_grid``, ``gin_depth_grid``, ``morgan_c_grid``...) and a count of epochs or rounds is a
*maximum* (``finetune_epochs``, ``gin_epochs``, ``calib_rounds``): the choice is made on a
validation part, never on test molecules (`molkit.methods.molex.protocol`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from molkit.data.explain import EXPLAIN_DATASETS
from molkit.methods.experiment import Settings as BaseSettings
from molkit.models.lm import SMOKE_LM

__all__ = ["GIN_POOLINGS", "Settings", "is_csv_dataset"]

#: Graph poolings the GIN grid may hold (`molkit.models.gnn.GIN`).
GIN_POOLINGS = ("mean", "sum", "max")


def is_csv_dataset(name: str) -> bool:
    """Whether a ``datasets`` entry is a CSV file of the user's (a path ending in ``.csv``)."""
    return str(name).lower().endswith(".csv")


@dataclass(frozen=True)
class Settings(BaseSettings):
    """MoleX's settings; the field defaults are the ``default`` profile.

    **Data and protocol.** ``datasets``: names in `molkit.data.explain.EXPLAIN_DATASETS` or CSV
    paths (smiles + one class label; no explanation ground truth). ``max_molecules``: a stratified
    subset (None: all). ``tune_fraction``: the *tuning part*, a stratified share of each dataset
    held out of the cross-validation; it only chooses settings (the LM stage, the GIN, the LLM's
    prior correction) and is never tested. ``cv_folds`` / ``liver_folds``: stratified folds of the
    rest (every molecule of it tested once); ``valid_fraction``: the validation part carved out of
    every training fold (early stopping, calibration rounds, Morgan's regularisation).

    **The LM stage.** ``lm_model`` (a BERT-style SMILES model), ``n_max`` (longest group n-gram),
    ``pooling``, ``max_length``. The grid of the information-bottleneck fine-tuning, one candidate
    per position of the three aligned tuples ``lm_layer_grid`` (top layers trained),
    ``lm_lr_grid`` (their learning rate) and ``beta_grid`` (KL weight, > 0: beta = 0 is the
    ablation), chosen per dataset on the tuning part; ``finetune_epochs`` (maximum) and
    ``finetune_patience`` (early stopping on the fold's validation part); ``lm_seeds``: training
    seeds of the chosen configuration per fold (the headline claims resample them);
    ``bottleneck_dim``, ``head_lr``, ``batch_size``.

    **The linear part.** ``n_components``, ``sparse_alpha``, ``logreg_c``; calibration:
    ``complement_components``, ``calib_rounds`` (maximum), ``calib_lr``, ``calib_ridge``,
    ``calib_patience``. ``ablation_datasets``: where the one-factor variants run.

    **Baselines.** Morgan: ``morgan_radius``, ``morgan_bits``, ``morgan_c_grid`` (the logistic
    regression's C) and ``rf_leaf_grid`` (the forest's min_samples_leaf), chosen per fold on its
    validation part, ``rf_trees``. GIN: ``gin_depth_grid`` x ``gin_width_grid`` x
    ``gin_pooling_grid`` chosen per dataset on the tuning part, ``gin_epochs`` (maximum),
    ``gin_patience``.

    **The instruction LLM as a classifier.** ``llm_model``, ``llm_molecules`` (molecules of each
    dataset's cross-validation part scored zero-shot, stratified; None: all),
    ``llm_probe_datasets`` (every molecule scored, a logistic probe on the hidden state per fold),
    ``llm_lora_datasets`` (LoRA-tuned per fold on the first ``llm_lora_folds`` folds, None: all),
    ``llm_lora_epochs`` (maximum), ``llm_lora_eval_every`` (optimiser steps between validations),
    ``llm_lora_patience``, ``llm_batch_size``.

    **Speed.** ``speed_dataset``, ``speed_molecules``, ``speed_repeats``. ``n_examples``:
    molecules drawn per dataset; ``n_boot``: bootstrap resamples of each claim.
    """

    datasets: tuple[str, ...] = EXPLAIN_DATASETS
    max_molecules: int | None = None
    tune_fraction: float = 0.1
    cv_folds: int = 5
    liver_folds: int = 5
    valid_fraction: float = 0.1
    lm_model: str = "rxnfp-bert"
    n_max: int = 3
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = 256
    # default: the top 2 layers at two KL weights. The 12-layer candidate (full) won the tuning
    # part on two of six datasets but costs about three times the training of a 2-layer one and
    # took the default to ~25 min on 2 cores; Exercise 1 widens the grid back.
    lm_layer_grid: tuple[int, ...] = (2, 2)
    lm_lr_grid: tuple[float, ...] = (3e-4, 3e-4)
    beta_grid: tuple[float, ...] = (0.01, 0.1)
    finetune_epochs: int = 8
    finetune_patience: int = 2
    lm_seeds: int = 3
    bottleneck_dim: int = 64
    head_lr: float = 1e-3
    batch_size: int = 32
    n_components: int = 16
    sparse_alpha: float = 0.3
    logreg_c: float = 1.0
    complement_components: int = 32
    calib_rounds: int = 2000
    calib_lr: float = 0.5
    calib_ridge: float = 1.0
    calib_patience: int = 50
    ablation_datasets: tuple[str, ...] = EXPLAIN_DATASETS
    morgan_radius: int = 2
    morgan_bits: int = 2048
    morgan_c_grid: tuple[float, ...] = (0.01, 0.1, 1.0)
    rf_trees: int = 200
    rf_leaf_grid: tuple[int, ...] = (1, 3)
    gin_depth_grid: tuple[int, ...] = (3,)
    gin_width_grid: tuple[int, ...] = (32, 128)
    gin_pooling_grid: tuple[str, ...] = ("mean", "sum")
    gin_epochs: int = 100
    gin_patience: int = 10
    llm_model: str = "smollm2-135m-instruct"
    llm_molecules: int | None = 48
    llm_probe_datasets: tuple[str, ...] = ("mutag",)
    llm_lora_datasets: tuple[str, ...] = ("mutag",)
    llm_lora_folds: int | None = 2
    llm_lora_epochs: float = 1.0
    llm_lora_eval_every: int = 5
    llm_lora_patience: int = 2
    llm_batch_size: int = 32
    speed_dataset: str = "liver"
    speed_molecules: int = 128
    speed_repeats: int = 2
    n_examples: int = 4
    n_boot: int = 2000
    PROFILES = {
        "smoke": {
            "datasets": ("mutag",),
            "max_molecules": 80,
            "cv_folds": 2,
            "liver_folds": 2,
            "lm_layer_grid": (1, 1),
            "lm_lr_grid": (1e-4, 1e-4),
            "beta_grid": (0.01, 0.1),
            "finetune_epochs": 1,
            "finetune_patience": 1,
            "lm_seeds": 2,
            "n_components": 8,
            "complement_components": 8,
            "calib_rounds": 30,
            "calib_patience": 10,
            "ablation_datasets": ("mutag",),
            "morgan_c_grid": (0.1, 1.0),
            "rf_trees": 50,
            "rf_leaf_grid": (1,),
            "gin_depth_grid": (2,),
            "gin_width_grid": (32,),
            "gin_pooling_grid": ("mean", "sum"),
            "gin_epochs": 3,
            "gin_patience": 2,
            "llm_model": SMOKE_LM,
            "llm_molecules": 16,
            "llm_lora_folds": 1,
            "llm_lora_eval_every": 2,
            "llm_lora_patience": 1,
            "speed_dataset": "mutag",
            "speed_molecules": 64,
            "speed_repeats": 1,
            "n_examples": 2,
            "n_boot": 500,
        },
        "default": {},
        "full": {
            "cv_folds": 10,
            "liver_folds": 10,
            "lm_layer_grid": (2, 2, 12, 12),
            "lm_lr_grid": (3e-4, 3e-4, 1e-4, 1e-4),
            "beta_grid": (0.01, 0.1, 0.01, 0.1),
            "finetune_epochs": 20,
            "finetune_patience": 4,
            "lm_seeds": 5,
            "rf_trees": 500,
            "gin_depth_grid": (2, 3, 5),
            "gin_pooling_grid": ("mean", "sum", "max"),
            "gin_width_grid": (64, 300),
            "gin_epochs": 200,
            "gin_patience": 20,
            "llm_molecules": None,
            "llm_probe_datasets": EXPLAIN_DATASETS,
            "llm_lora_datasets": EXPLAIN_DATASETS,
            "llm_lora_folds": None,
            "llm_lora_epochs": 2.0,
            "speed_molecules": 1024,
            "speed_repeats": 3,
            "n_examples": 6,
        },
    }

    @property
    def lm_grid(self) -> list[tuple[int, float, float]]:
        """The LM stage's candidates: (top layers trained, learning rate, beta)."""
        return list(zip(self.lm_layer_grid, self.lm_lr_grid, self.beta_grid, strict=True))

    def folds_of(self, dataset: str) -> int:
        """The cross-validation folds of ``dataset`` (``liver_folds`` for Liver)."""
        return self.liver_folds if dataset == "liver" else self.cv_folds

    def problems(self) -> list[str]:
        out = []
        unknown = [d for d in self.datasets if d not in EXPLAIN_DATASETS and not is_csv_dataset(d)]
        if unknown:
            out.append(
                f"datasets: {', '.join(map(repr, unknown))} unknown; use names of "
                f"{', '.join(EXPLAIN_DATASETS)} or paths of CSV files (ending in .csv)"
            )
        if not self.datasets:
            out.append("datasets: give at least one dataset")
        lengths = {len(self.lm_layer_grid), len(self.lm_lr_grid), len(self.beta_grid)}
        if len(lengths) != 1 or not self.lm_layer_grid:
            out.append(
                "lm_layer_grid, lm_lr_grid and beta_grid: one candidate per position, so give "
                "three non-empty tuples of the same length"
            )
        if any(k < 1 for k in self.lm_layer_grid):
            out.append(
                "lm_layer_grid: train at least 1 top layer (0 is the no-fine-tuning ablation)"
            )
        if any(b <= 0 for b in self.beta_grid):
            out.append("beta_grid: use betas > 0 (beta = 0 is the ablation MoleX (beta=0))")
        if any(lr <= 0 for lr in (*self.lm_lr_grid, self.head_lr)):
            out.append("lm_lr_grid and head_lr: learning rates must be > 0")
        for name in (
            "lm_seeds",
            "finetune_epochs",
            "finetune_patience",
            "gin_epochs",
            "gin_patience",
            "calib_rounds",
            "calib_patience",
            "n_components",
            "complement_components",
            "rf_trees",
            "speed_molecules",
            "speed_repeats",
            "llm_lora_eval_every",
            "llm_lora_patience",
            "n_boot",
        ):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be at least 1")
        if self.cv_folds < 2 or self.liver_folds < 2:
            out.append("cv_folds and liver_folds: cross-validation needs at least 2 folds")
        if not 0 < self.tune_fraction < 0.5:
            out.append("tune_fraction: the tuning part must be a share in (0, 0.5)")
        if not 0 < self.valid_fraction < 0.5:
            out.append("valid_fraction: the validation part must be a share in (0, 0.5)")
        if self.llm_lora_folds is not None and self.llm_lora_folds < 1:
            out.append("llm_lora_folds: at least 1 fold, or None for every fold")
        if self.llm_lora_epochs <= 0:
            out.append("llm_lora_epochs: must be > 0")
        for name in (
            "morgan_c_grid",
            "rf_leaf_grid",
            "gin_depth_grid",
            "gin_width_grid",
            "gin_pooling_grid",
        ):
            if not getattr(self, name):
                out.append(f"{name}: give at least one candidate")
        if any(c <= 0 for c in self.morgan_c_grid):
            out.append("morgan_c_grid: C must be > 0")
        bad = [p for p in self.gin_pooling_grid if p not in GIN_POOLINGS]
        if bad:
            out.append(f"gin_pooling_grid: {bad} unknown; choose from {GIN_POOLINGS}")
        if self.sparse_alpha < 0 or self.sparse_alpha >= 1:
            out.append("sparse_alpha: a relative soft threshold in [0, 1)")
        return out
