"""03_lardo's settings: one typed `Settings` with its profiles, validated in `Settings.problems`.

The names the settings choose among live here too (the stage-1 modes, the encoders a protocol can
pre-train), so that the validation needs nothing above this room.
"""

from __future__ import annotations

from dataclasses import dataclass

from molkit.methods import experiment as contract

#: The two ways of running stage 1: the paper's free-text answer, parsed and mapped to
#: descriptors, and the constrained one (the LLM ranks the DSM's descriptor names).
STAGE1_MODES = {
    "free": "free-text answer (the paper's prompt), parsed and mapped to RDKit descriptors",
    "ranked": "the DSM's descriptor names ranked by the LLM's log-likelihood of each as the answer",
}
#: Encoders pre-trained on the whole pool's training part, then those of the ablation pool.
MAIN_ENCODERS = ("scratch", "attr_masking", "lardo", "dsm_only")
ABLATION_ENCODERS = ("lardo_ablation_pool", "no_dsm", "no_stage1")
#: How the notebook names each encoder, text variant and baseline.
METHOD_LABELS = {
    "scratch": "GIN from scratch",
    "attr_masking": "GIN + attribute masking",
    "lardo": "LarDo (stage 1 + DSM)",
    "no_dsm": "LarDo without DSM values",
    "no_stage1": "LarDo without stage 1 (official ablation)",
    "dsm_only": "DSM text only (no LLM)",
    "lardo_ablation_pool": "LarDo, ablation pool",
    "lardo_raw": "LarDo text, SMILES kept (no <MOLECULE>)",
    "rf": "Morgan + random forest",
}


@dataclass(frozen=True)
class Settings(contract.Settings):
    """03_lardo's settings; the field defaults are the ``default`` profile.

    ``pool``: molecules per dataset with LarDo (and DSM-only) texts, a prefix of one seeded
    permutation (`description_pool`; None: every molecule, so every split's training part is
    described); ``ablation_pool``: molecules per dataset with the ablations' texts (a prefix of the
    same permutation, so inside ``pool``; None: all). Pre-training on a split uses only the pool's
    training-part molecules. ``stage1``: which stage 1 feeds stage 2 (``"ranked"``: the LLM ranks
    the DSM's descriptor names, ``"free"``: the paper's free-text answer); ``stage1_top``: ranked
    names kept besides logP and MW.

    Two fine-tuning protocols: ``official_seeds``, training seeds on the deterministic scaffold
    split the official code fine-tunes on (MolCLR's; the seeds vary the GIN's initialisation and
    the batch order of pre-training and fine-tuning) for the encoders ``official_encoders``; and
    ``splits``, seeds of balanced scaffold splits (80/10/10, molkit's own protocol), each also the
    training seed of every model on it. ``seed``: the notebook's seed (rows not tied to a split,
    the embedding map's layout). ``ablation_pretraining``: also pre-train on the ablations' texts
    on the balanced splits (with LarDo on the same molecules, a one-factor comparison).
    ``molecule_token``: replace, in every text before it is embedded, the molecule's SMILES and
    "the molecule" by ``<MOLECULE>``, as the official code does (`official_substitution`).

    Pre-training holds out ``pretrain_valid`` of its pool and stops after ``pretrain_patience``
    epochs without a lower validation loss (restoring the best epoch; ``pretrain_epochs`` is a
    maximum); fine-tuning stops on the split's validation part after ``patience`` epochs
    (``finetune_epochs`` a maximum) with ``head_lr`` for the prediction head and ``encoder_lr``
    for the GIN (the official 5e-4 / 1e-4). ``finetune_max``: None fine-tunes on the whole split,
    else on a prefix of each part of about ``finetune_max`` molecules in all (at least 8 per part).
    ``lm_dtype`` / ``lm_quantization``: how the LLM loads when a response is not cached
    (`molkit.models.lm.generation_load_kwargs`; ``full``: Mistral-7B in 4-bit), checked against
    the device by `lm_memory`. ``offline``: replay responses only (a missing one raises).
    ``workers``: processes that pre-train and fine-tune the training units side by side, each on
    the notebook's torch threads (None: one per core; 1: one after the other, in this process).
    """

    datasets: tuple[str, ...] = ("bbbp", "bace", "esol")
    official_seeds: tuple[int, ...] = (0, 1, 2)
    official_encoders: tuple[str, ...] = ("scratch", "lardo", "dsm_only")
    splits: tuple[int, ...] = (0, 1)
    pool: int | None = None
    ablation_pool: int | None = 500
    stage1: str = "ranked"
    stage1_top: int = 4
    ablation_pretraining: bool = False
    molecule_token: bool = True
    finetune_max: int | None = None
    hidden: int = 64
    num_layers: int = 5
    pretrain_epochs: int = 60
    pretrain_patience: int = 5
    pretrain_valid: float = 0.1
    pretrain_lr: float = 1e-3
    masking_epochs: int = 20
    finetune_epochs: int = 40
    patience: int = 8
    head_lr: float = 5e-4
    encoder_lr: float = 1e-4
    batch_size: int = 64
    lm_model: str = "smollm2-135m-instruct"
    lm_dtype: str = "fp32"
    lm_quantization: str | None = None
    text_encoder: str = "minilm-l6"
    max_new_tokens: int = 64
    stage1_max_new_tokens: int = 128
    lm_batch_size: int = 64
    offline: bool = True
    rf_trees: int = 300
    throughput_prompts: int = 4
    n_examples: int = 3
    workers: int | None = None

    PROFILES = {
        "smoke": {
            "datasets": ("bbbp", "esol"), "official_seeds": (0, 1), "splits": (0,), "pool": 32,
            "ablation_pool": 32, "finetune_max": 96, "hidden": 32, "pretrain_epochs": 2,
            "pretrain_patience": 1, "masking_epochs": 1, "finetune_epochs": 1, "patience": 1,
            "batch_size": 32, "lm_batch_size": 8, "rf_trees": 50, "throughput_prompts": 0,
            "n_examples": 2,
        },
        "default": {},
        "full": {
            "datasets": (
                "bbbp", "bace", "clintox", "tox21", "sider", "hiv", "esol", "freesolv", "lipo",
            ),
            "official_encoders": MAIN_ENCODERS, "splits": (0, 1, 2, 3, 4), "pool": None,
            "ablation_pool": None, "ablation_pretraining": True, "hidden": 300,
            "pretrain_epochs": 100, "pretrain_patience": 10, "masking_epochs": 100,
            "finetune_epochs": 100, "patience": 20, "batch_size": 32,
            "lm_model": "mistralai/Mistral-7B-Instruct-v0.2", "lm_dtype": "bf16",
            "lm_quantization": "4bit", "text_encoder": "sentence-transformers/all-mpnet-base-v2",
            "max_new_tokens": 256, "stage1_max_new_tokens": 256, "lm_batch_size": 16,
            "offline": False, "rf_trees": 500, "throughput_prompts": 8, "n_examples": 4,
        },
    }  # fmt: skip

    def problems(self) -> list[str]:
        """What is wrong beyond the types, each a sentence naming the setting and the fix."""
        from molkit.models.lm import check_lm_dtype, check_lm_quantization

        found = super().problems()
        for check, value in ((check_lm_dtype, self.lm_dtype),
                             (check_lm_quantization, self.lm_quantization)):  # fmt: skip
            try:
                check(value)
            except ValueError as exc:
                found.append(str(exc))
        if self.stage1 not in STAGE1_MODES:
            found.append(f"stage1 must be one of {sorted(STAGE1_MODES)}, not {self.stage1!r}")
        if not self.datasets:
            found.append("datasets is empty: name at least one dataset (or a CSV file)")
        if any(n is not None and n < 8 for n in (self.pool, self.ablation_pool)):
            found.append(
                f"pool ({self.pool}) and ablation_pool ({self.ablation_pool}) are at least 8 "
                "molecules (None: all): contrastive pre-training needs pairs to contrast"
            )
        elif self.pool is not None and (
            self.ablation_pool is None or self.ablation_pool > self.pool
        ):
            found.append(
                f"ablation_pool ({self.ablation_pool}) must lie inside pool ({self.pool}): set "
                "ablation_pool <= pool, or pool=None"
            )
        if not self.splits and not self.official_seeds:
            found.append(
                "splits and official_seeds are both empty: give at least one balanced split seed "
                "or one training seed on the official split"
            )
        unknown = [e for e in self.official_encoders if e not in MAIN_ENCODERS]
        if unknown or (self.official_seeds and not self.official_encoders):
            found.append(
                f"official_encoders must be a non-empty selection of {MAIN_ENCODERS}, not "
                f"{self.official_encoders}"
            )
        if len(set(self.official_seeds)) != len(self.official_seeds):
            found.append(f"official_seeds repeats a seed: {self.official_seeds}")
        if self.workers is not None and self.workers < 1:
            found.append(f"workers must be at least 1 (None: one per core), not {self.workers}")
        if not 0.0 <= self.pretrain_valid < 1.0:
            found.append(f"pretrain_valid must lie in [0, 1), not {self.pretrain_valid}")
        return found
