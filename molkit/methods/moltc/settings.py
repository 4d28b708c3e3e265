"""MolTC's settings: every size of the ``04_moltc`` notebook, per profile, validated in one hook.

The names a setting may take live here too (the LM variants, the pair sets, the splits), so that
`Settings.problems` can check them without importing the method's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from molkit.methods.experiment import Settings as BaseSettings

__all__ = [
    "CLASSIFICATION_SETS",
    "FREESOLV",
    "NO_COT",
    "NO_PRETRAINING",
    "RANDOM_QFORMER",
    "REGRESSION_SETS",
    "ROLE_SPLITS",
    "SHARED",
    "SMILES_ONLY",
    "Settings",
    "VARIANT_NAMES",
    "is_csv",
]

#: The SMILES-only variant's name (the same LM, no graph tokens).
SMILES_ONLY = "SMILES only (same LM, no graph tokens)"
SHARED = "MolTC, shared projector"
NO_COT = "MolTC, no CoT"
RANDOM_QFORMER = "MolTC, random Q-Former"
NO_PRETRAINING = "MolTC, no pre-training"
#: Every LM variant's name: MolTC and the variants that change one factor of it
#: (`molkit.methods.moltc.method.lm_variants`).
VARIANT_NAMES: tuple[str, ...] = ("MolTC", SHARED, NO_COT, RANDOM_QFORMER, SMILES_ONLY,
                                  NO_PRETRAINING)  # fmt: skip
#: The registered pair sets by kind (`molkit.methods.moltc.method.TASKS`); a CSV file of pairs
#: (`molkit.data.load_dataset`) may stand in a regression set's place.
CLASSIFICATION_SETS: tuple[str, ...] = ("chchminer",)
REGRESSION_SETS: tuple[str, ...] = (
    "freesolv-pairs", "combisolu", "chromophore-abs", "chromophore-emi", "chromophore-life",
)  # fmt: skip
FREESOLV = "freesolv-pairs"
#: How the role set is split for the LM (`molkit.data.pairs`): ``unseen_solvent`` keeps every
#: second molecule (solvent) of a valid or test pair out of training.
ROLE_SPLITS: tuple[str, ...] = ("unseen_solvent", "grouped", "random")


def is_csv(name: str) -> bool:
    """Whether a dataset name is a CSV file of the user's (a path ending in ``.csv``)."""
    return str(name).lower().endswith(".csv") or Path(str(name)).is_file()


@dataclass(frozen=True)
class Settings(BaseSettings):
    """The notebook's sizes. Defaults are the ``default`` profile; ``PROFILES`` holds the values
    that differ. ``seed`` is the notebook's seed (the LM sections and the single-seed baselines use
    its split); ``seeds`` the seeds of the baseline splits.

    Gradient boosting (LightGBM, `molkit.methods.baselines.fit_gradient_boosting`: constant
    columns dropped, early stopping on the validation RMSE or log-loss) reads Morgan counts
    (``gbm_counts``; bits otherwise) of both molecules, RDKit's 2-D descriptors for the tasks
    whose `PairTask` asks for them and the context columns; sets under 2,000 pairs use the
    ``gbm_*`` settings (FreeSolv), larger ones ``gbm_large_*``.

    The LM sections. Every fine-tuning run goes through the LM toolkit's trainer with a validation
    part (``lm_valid_pairs`` of the split's valid part): it is scored ``lm_evals_per_epoch`` times
    an epoch and before the first step, the best state is kept, and ``lm_patience`` evaluations
    without a better validation loss stop it; ``*_max_epochs`` are maxima. ``lm_seeds`` training
    seeds for MolTC on FreeSolv (the headline gate), ``control_lm_seeds`` for FreeSolv's other
    arms (SMILES only: graph tokens vs SMILES only rests on both counts), ``ddi_lm_seeds`` on
    DDI, ``role_lm_seeds`` on the role set. ``ddi_variants`` run on
    DDI, ``lm_variants`` on FreeSolv, ``role_variants`` on ``role_set`` (a set whose second
    molecule varies) split by ``role_split``; ``lm_pretrain_pairs`` = 0 leaves MolTC's pair
    pre-training out (``default``); ``lm_train_pairs`` caps each task's LM training pairs
    (FreeSolv is smaller), ``lm_test_pairs`` each test set; ``smiles_chars`` cuts each SMILES in
    the prompt (None: whole SMILES, so the SMILES-only arm reads what the graph arm sees);
    ``ddi_swap`` also scores DDI with the drugs swapped (a consistency check); ``swap_pairs`` caps
    the pairs scored swapped (a seeded sample of each test set; None: all). ``lm_dtype`` /
    ``lm_quantization``: how the LM loads (`molkit.models.lm.load_lm`; ``full``: Galactica-1.3B
    in bf16), checked against the device by `molkit.methods.moltc.lm.lm_memory` before it
    loads."""

    seed: int = 0
    ddi_rows: int | None = None  # seeded subsample of ChCh-Miner rows; None: all rows
    reg_rows: int | None = None  # seeded subsample of each regression set
    #: the chromophore sets (baselines only, about 4.5 minutes) run in ``full``
    regression_sets: tuple[str, ...] = ("freesolv-pairs", "combisolu")
    n_bits: int = 2048  # per molecule (2 x n_bits fingerprint features)
    gbm_counts: bool = True
    gbm_iter: int = 3000
    gbm_lr: float = 0.03
    gbm_leaves: int = 15
    gbm_min_child: int = 5
    gbm_colsample: float = 0.3
    gbm_patience: int = 200
    gbm_large_iter: int = 2000
    gbm_large_lr: float = 0.1
    gbm_large_leaves: int = 63
    gbm_large_patience: int = 100
    gin_hidden: int = 128  # the pair-GIN baseline (the LM's GIN is 5 x lm_gin_hidden)
    gin_layers: int = 4
    gin_epochs: int = 2
    gin_min_steps: int = 1500  # sets under 1,000 pairs train this many steps at least (FreeSolv)
    gin_patience: int = 10  # epochs without a better validation loss before the pair GIN stops
    seeds: tuple[int, ...] = (0, 1, 2)
    lm_model: str = "smollm2-135m-instruct"  # registry name, folder or HF id; or SMOKE_LM
    lm_dtype: str = "fp32"  # the LM's weights: fp32 or bf16 (LoRA adapters stay float32)
    lm_quantization: str | None = None  # "4bit": QLoRA's NF4 weights (CUDA + bitsandbytes)
    lm_gin_hidden: int = 300
    lm_gin_epochs: int = 1
    projector_layers: int = 2
    projector_hidden: int = 384  # minilm-l6's width, so its layers can initialise the projector
    projector_heads: int = 12
    projector_lr: float = 1e-3
    lora_dropout: float = 0.05  # the official 0.1 in ``full``
    lm_pretrain_pairs: int = 0  # 0: no pair pre-training (it runs in full)
    lm_variants: tuple[str, ...] = ("MolTC", SMILES_ONLY)
    ddi_variants: tuple[str, ...] = ("MolTC",)
    role_variants: tuple[str, ...] = ("MolTC", SHARED)
    role_set: str = "combisolu"
    role_split: str = "unseen_solvent"
    lm_train_pairs: int | None = 384  # per task; None: the whole training part
    lm_valid_pairs: int | None = 64  # per task, from the split's valid part; None: all of it
    lm_test_pairs: int | None = 200  # per test set; None: the whole test part
    freesolv_lm_test: float = 0.33  # FreeSolv's LM split: test share (642 pairs -> 212)
    lm_seeds: int = 3  # training seeds of MolTC on FreeSolv
    control_lm_seeds: int | None = None  # fewer seeds for FreeSolv's other arms; None: lm_seeds
    ddi_lm_seeds: int = 1
    role_lm_seeds: int = 1
    ddi_max_epochs: float = 1.0
    freesolv_max_epochs: float = 2.0
    role_max_epochs: float = 1.0
    lm_evals_per_epoch: int = 2  # validation-loss evaluations per epoch (and one before step 1)
    lm_patience: int = 2  # evaluations without a better validation loss before a run stops
    smiles_chars: int | None = None  # None: whole SMILES in every prompt
    max_new_tokens: int = 34  # the longest FreeSolv CoT target is 29 tokens + EOS
    num_beams: int = 1  # 5: the official decoding
    lm_lr: float = 1e-3
    lm_batch_size: int = 4
    lm_eval_batch_size: int = 64  # greedy decoding: 6.0 prompts/s at 64 vs 3.4 at 16 (2 cores)
    ddi_swap: bool = False  # DDI is symmetric: the swap test is a consistency check (smoke, full)
    swap_pairs: int | None = 100  # pairs per test set scored again swapped; None: every pair

    PROFILES = {
        "smoke": {
            "ddi_rows": 1200, "reg_rows": 300, "n_bits": 128, "gbm_iter": 20,
            "gbm_large_iter": 20, "gbm_patience": 5, "gbm_large_patience": 5, "gin_hidden": 16,
            "gin_layers": 2, "gin_epochs": 1, "gin_min_steps": 0, "gin_patience": 3,
            "seeds": (0,), "lm_model": "tiny-random-llama", "lm_gin_hidden": 32,
            "projector_layers": 1, "lm_train_pairs": 8, "lm_valid_pairs": 6, "lm_test_pairs": 6,
            "lm_seeds": 2, "freesolv_max_epochs": 1.0, "role_max_epochs": 1.0,
            "max_new_tokens": 8, "lm_lr": 5e-4, "lm_eval_batch_size": 4,
            "ddi_variants": ("MolTC", SMILES_ONLY), "ddi_swap": True, "swap_pairs": 4,
        },
        "default": {},
        "full": {
            "regression_sets": REGRESSION_SETS, "gin_hidden": 300, "gin_layers": 5,
            "gin_epochs": 100, "gin_min_steps": 2000, "lm_model": "facebook/galactica-1.3b",
            "lm_dtype": "bf16", "lm_gin_epochs": 20, "lora_dropout": 0.1,
            "projector_layers": 6, "lm_pretrain_pairs": 20000,
            "lm_variants": ("MolTC", SMILES_ONLY, NO_COT, NO_PRETRAINING, RANDOM_QFORMER),
            "ddi_variants": ("MolTC", SMILES_ONLY), "lm_train_pairs": None,
            "lm_valid_pairs": None, "lm_test_pairs": None, "lm_seeds": 3, "ddi_lm_seeds": 3,
            "role_lm_seeds": 3, "ddi_max_epochs": 20.0, "freesolv_max_epochs": 100.0,
            "role_max_epochs": 50.0, "lm_evals_per_epoch": 1, "lm_patience": 5,
            "max_new_tokens": 40, "num_beams": 5, "lm_lr": 1e-4, "projector_lr": 1e-4,
            "lm_batch_size": 16, "lm_eval_batch_size": 32, "ddi_swap": True, "swap_pairs": None,
        },
    }  # fmt: skip

    def problems(self) -> list[str]:
        from molkit.models.lm.load import LM_DTYPES, LM_QUANTIZATIONS

        out = []
        if self.lm_dtype not in LM_DTYPES:
            out.append(f"the lm_dtype setting must be one of {LM_DTYPES}, not {self.lm_dtype!r}")
        if self.lm_quantization not in LM_QUANTIZATIONS:
            out.append(
                f"the lm_quantization setting must be one of {LM_QUANTIZATIONS}, not "
                f"{self.lm_quantization!r}"
            )
        for name in ("lm_variants", "ddi_variants", "role_variants"):
            value = getattr(self, name)
            unknown = [v for v in value if v not in VARIANT_NAMES]
            if unknown or "MolTC" not in value:
                out.append(
                    f"{name} must hold 'MolTC' and names of moltc.lm_variants(); got {value} "
                    f"(unknown: {unknown})"
                )
        if NO_PRETRAINING in (*self.lm_variants, *self.ddi_variants, *self.role_variants) and (
            not self.lm_pretrain_pairs
        ):
            out.append(
                f"'{NO_PRETRAINING}' needs lm_pretrain_pairs > 0 (without pre-training MolTC "
                "itself is not pre-trained)"
            )
        unknown_sets = [
            s for s in self.regression_sets if s not in REGRESSION_SETS and not is_csv(s)
        ]
        if unknown_sets:
            out.append(
                f"regression_sets names {unknown_sets}: use {REGRESSION_SETS} or CSV files of pairs"
            )
        if FREESOLV not in self.regression_sets:
            out.append(f"regression_sets must hold {FREESOLV!r}: the LM sections fine-tune on it")
        if self.role_set not in REGRESSION_SETS and not is_csv(self.role_set):
            out.append(f"role_set must be a regression pair set, not {self.role_set!r}")
        elif self.role_set not in self.regression_sets:
            out.append(f"role_set {self.role_set!r} must also be among regression_sets")
        if self.role_split not in ROLE_SPLITS:
            out.append(f"role_split must be one of {ROLE_SPLITS}, not {self.role_split!r}")
        if not 0 < self.freesolv_lm_test < 0.9:
            out.append(f"freesolv_lm_test must lie in (0, 0.9), not {self.freesolv_lm_test}")
        for name in ("lm_seeds", "ddi_lm_seeds", "role_lm_seeds", "lm_evals_per_epoch",
                     "lm_patience"):  # fmt: skip
            if getattr(self, name) < 1:
                out.append(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.control_lm_seeds is not None and not 1 <= self.control_lm_seeds <= self.lm_seeds:
            out.append(
                f"control_lm_seeds must lie in [1, lm_seeds = {self.lm_seeds}] (None: lm_seeds), "
                f"not {self.control_lm_seeds}"
            )
        for name in ("ddi_max_epochs", "freesolv_max_epochs", "role_max_epochs"):
            if not getattr(self, name) > 0:
                out.append(f"{name} must be positive, not {getattr(self, name)}")
        if self.lm_valid_pairs is not None and self.lm_valid_pairs < 2:
            out.append("lm_valid_pairs must be at least 2 (or None: the whole valid part)")
        if self.smiles_chars is not None and self.smiles_chars < 1:
            out.append("smiles_chars must be positive, or None for whole SMILES")
        if self.seed not in self.seeds:
            out.append(
                f"seed {self.seed} must be among seeds {self.seeds}: the single-seed baselines "
                "and the LM sections use the split of `seed`"
            )
        return out

    @property
    def training_seeds(self) -> dict[str, tuple[int, ...]]:
        """The training seeds of each LM section: ``seed``, ``seed + 1``, … (``lm_seeds`` for
        FreeSolv, ``ddi_lm_seeds`` for DDI, ``role_lm_seeds`` for the role set)."""
        counts = {"ddi": self.ddi_lm_seeds, "freesolv": self.lm_seeds, "role": self.role_lm_seeds}
        return {k: tuple(self.seed + i for i in range(n)) for k, n in counts.items()}

    def seeds_of(self, section: str, variant: str) -> tuple[int, ...]:
        """The training seeds of ``variant`` in ``section`` (`training_seeds`): on FreeSolv, arms
        other than MolTC train the first ``control_lm_seeds`` of MolTC's seeds."""
        seeds = self.training_seeds[section]
        if section == "freesolv" and variant != "MolTC" and self.control_lm_seeds is not None:
            return seeds[: self.control_lm_seeds]
        return seeds
