"""The 03_lardo notebook's experiments: typed `Settings` per profile and one function per
Practical section, each returning `molkit.methods.experiment.Results` (pure: nothing is recorded
here; the notebook records what they return).

- `stage1_properties`: which properties the LLM names per dataset, mapped to RDKit descriptors.
- `generation_speed`: tokens per second, one prompt at a time vs batched (measures the machine).
- `pretrain_and_finetune`: descriptions of the pre-training pool, graph-text pre-training, the
  baselines, fine-tuning and the frozen-encoder probe on scaffold splits; claims on the test
  molecules.
- `calibration`: how often the descriptions contradict RDKit, per text variant; the DSM claim.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from molkit.eval.metrics import roc_auc_fast
from molkit.methods import experiment as contract
from molkit.methods.experiment import Claim, Results, paired_claim
from molkit.methods.lardo.descriptions import (
    Descriptions,
    describe_molecules,
    description_pool,
    response_cache,
    stage1_free,
    stage1_ranked,
    throughput_benchmark,
)
from molkit.methods.lardo.method import (
    CALIBRATION_COLUMNS,
    DSM_TEXT_DESCRIPTORS,
    VARIANTS,
    build_predictor,
    extract_claims,
    pretrain_clip,
    prompt_descriptors,
    stage2_prompt,
    value_text,
)
from molkit.models.lm.responses import ResponseCache

PAPER = "MolGraph-LarDo (arXiv 2408.10124)"
#: The seed summary of the paper states its effects without numbers.
NOT_REPORTED = "not reported"
TEST_SPLIT = "scaffold test"

METHOD_LABELS = {
    "scratch": "GIN from scratch",
    "attr_masking": "GIN + attribute masking",
    "lardo": "LarDo (stage 1 + DSM)",
    "no_dsm": "LarDo without DSM values",
    "no_stage1": "LarDo without stage 1 (official ablation)",
    "dsm_only": "DSM text only (no LLM)",
    "lardo_ablation_pool": "LarDo, ablation pool",
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
    names kept besides logP and MW. ``splits``: seeds of the balanced scaffold splits (80/10/10),
    each also the training seed of every model on it; ``seed``: the notebook's seed (the rows not
    tied to a split, the embedding map's layout). ``ablation_pretraining``: also pre-train on the
    ablations' texts (with LarDo on the same molecules for a one-factor comparison). Pre-training
    holds out ``pretrain_valid`` of its pool and stops after ``pretrain_patience`` epochs without a
    lower validation loss (restoring the best epoch); fine-tuning uses ``head_lr`` for the
    prediction head and ``encoder_lr`` for the GIN (the official 5e-4 / 1e-4). ``finetune_max``:
    None fine-tunes on the whole split, else on a prefix of each part of about ``finetune_max``
    molecules in all (at least 8 per part). ``lm_dtype`` / ``lm_quantization``: how the LLM loads
    when a response is not cached (`molkit.models.lm.generation_load_kwargs`: ``"fp32"``
    leaves the weights to the precision policy, as before these settings; ``"bf16"`` bfloat16
    weights; ``"4bit"`` NF4, CUDA and bitsandbytes only; ``full``: Mistral-7B in 4-bit), checked
    against the device by `lm_memory`.
    """

    datasets: tuple[str, ...] = ("bbbp", "bace", "esol")
    splits: tuple[int, ...] = (0, 1, 2)
    seed: int = 0
    pool: int | None = None
    ablation_pool: int | None = 500
    stage1: str = "ranked"
    stage1_top: int = 4
    ablation_pretraining: bool = False
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

    PROFILES = {
        "smoke": {
            "datasets": ("bbbp", "esol"), "splits": (0,), "pool": 32, "ablation_pool": 32,
            "finetune_max": 96, "hidden": 32, "pretrain_epochs": 2, "pretrain_patience": 1,
            "masking_epochs": 1, "finetune_epochs": 1, "patience": 1, "batch_size": 32,
            "lm_batch_size": 8, "rf_trees": 50, "throughput_prompts": 0, "n_examples": 2,
        },
        "default": {},
        "full": {
            "datasets": (
                "bbbp", "bace", "clintox", "tox21", "sider", "hiv", "esol", "freesolv", "lipo",
            ),
            "splits": (0, 1, 2, 3, 4), "pool": None, "ablation_pool": None,
            "ablation_pretraining": True, "hidden": 300, "pretrain_epochs": 100,
            "pretrain_patience": 10, "masking_epochs": 100, "finetune_epochs": 100,
            "patience": 20, "batch_size": 32, "lm_model": "mistralai/Mistral-7B-Instruct-v0.2",
            "lm_dtype": "bf16", "lm_quantization": "4bit",
            "text_encoder": "sentence-transformers/all-mpnet-base-v2", "max_new_tokens": 256,
            "stage1_max_new_tokens": 256, "lm_batch_size": 16, "offline": False, "rf_trees": 500,
            "throughput_prompts": 8, "n_examples": 4,
        },
    }  # fmt: skip

    def __post_init__(self) -> None:
        from molkit.methods.lardo.method import STAGE1_MODES
        from molkit.models.lm import check_lm_dtype, check_lm_quantization

        check_lm_dtype(self.lm_dtype)
        check_lm_quantization(self.lm_quantization)
        if self.stage1 not in STAGE1_MODES:
            raise ValueError(f"stage1 must be one of {sorted(STAGE1_MODES)}, not {self.stage1!r}")
        sizes = (self.pool, self.ablation_pool)
        if not all(n is None or isinstance(n, int) for n in sizes):
            return  # the contract's type check names the bad value
        if any(n is not None and n < 8 for n in sizes):
            raise ValueError(
                f"pool ({self.pool}) and ablation_pool ({self.ablation_pool}) are at least 8 "
                "molecules (None: all): contrastive pre-training needs pairs to contrast"
            )
        if self.pool is not None and (self.ablation_pool is None or self.ablation_pool > self.pool):
            raise ValueError(
                f"ablation_pool ({self.ablation_pool}) must lie inside pool ({self.pool}): set "
                "ablation_pool <= pool, or pool=None"
            )


def _cache(cache: ResponseCache | None) -> ResponseCache:
    return cache if cache is not None else response_cache()


def _loading(settings: Settings) -> dict[str, Any]:
    return {"lm_dtype": settings.lm_dtype, "lm_quantization": settings.lm_quantization}


#: Tokens of a stage-2 prompt with its chat template (an allowance for the memory estimate).
PROMPT_TOKENS = 512


def lm_memory(settings: Settings, device=None, free_bytes: int | None = None) -> str:
    """The memory line printed before the LLM stages (`molkit.models.lm.memory.lm_memory_line`):
    generation only (no training) with ``lm_dtype`` / ``lm_quantization``, at the batch that will
    load the LLM: ``lm_batch_size`` prompts of `PROMPT_TOKENS` plus the longer of
    ``max_new_tokens`` / ``stage1_max_new_tokens`` when responses are generated; with ``offline``
    (every response replays from the cache) only `generation_speed` loads it, for
    ``throughput_prompts`` prompts of `PROMPT_TOKENS` + `SPEED_NEW_TOKENS`, and with
    ``throughput_prompts`` = 0 it never loads (the line says so). Raises
    `molkit.models.lm.memory.InsufficientMemoryError` naming the settings to change when it does not
    fit ``device`` (``free_bytes``: instead of its free memory); a line saying the estimate is
    unavailable when the config cannot be had (with ``offline``, from the local files only)."""
    from molkit.models.lm.memory import lm_memory_line

    if settings.offline and not settings.throughput_prompts:
        return (
            f"memory: {settings.lm_model} is not loaded (offline: every response replays from "
            "the cache; throughput_prompts = 0)"
        )
    if settings.offline:
        batch, seq_len = settings.throughput_prompts, PROMPT_TOKENS + SPEED_NEW_TOKENS
        hint = "lm_quantization='4bit' or throughput_prompts"
    else:
        batch = settings.lm_batch_size
        seq_len = PROMPT_TOKENS + max(settings.max_new_tokens, settings.stage1_max_new_tokens)
        hint = "lm_quantization='4bit', lm_batch_size or max_new_tokens"
    return lm_memory_line(
        settings.lm_model, settings.lm_dtype, settings.lm_quantization, hint, device, free_bytes,
        settings.offline, training=False, batch_size=batch, seq_len=seq_len,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------- stage 1


def stage1_properties(settings: Settings, cache: ResponseCache | None = None) -> Results:
    """Both stage-1 modes per dataset, replayed: the paper's free-text answer (parsed, mapped to
    descriptors, the unmapped names counted) and the constrained ranking of the DSM's descriptor
    names; ``settings.stage1`` picks the one stage 2 uses.

    Rows (per dataset): ``free_text_names``, ``free_text_names_mapped``,
    ``free_text_names_unmapped`` (never passed on to stage 2). Artefacts: ``table`` (the two
    property lists side by side, and the values each stage-2 prompt carries), ``rankings``
    (dataset -> `rank_properties` table), ``answers`` (dataset -> the free-text answer),
    ``properties`` (dataset -> the `PropertyMap` stage 2 uses)."""
    cache = _cache(cache)
    res = Results()
    rows, rankings, answers, used = [], {}, {}, {}
    for name in settings.datasets:
        answer, free = stage1_free(
            name,
            cache,
            settings.lm_model,
            settings.stage1_max_new_tokens,
            settings.offline,
            **_loading(settings),
        )
        ranking, ranked = stage1_ranked(
            name,
            cache,
            settings.lm_model,
            settings.stage1_top,
            settings.offline,
            **_loading(settings),
        )
        used[name] = ranked if settings.stage1 == "ranked" else free
        rankings[name], answers[name] = ranking, answer
        rows.append({
            "dataset": name, "free text: names": free.names,
            "free text: mapped": dict(free.matched), "free text: unmapped": len(free.unmatched),
            "ranked: kept": ranked.names,
            "stage-2 values": prompt_descriptors(used[name]),
        })  # fmt: skip
        for metric, value in (
            ("free_text_names", len(free.names)),
            ("free_text_names_mapped", len(free.matched)),
            ("free_text_names_unmapped", len(free.unmatched)),
        ):
            res.add_row(name, "stage 1 (free text)", metric, value, seed=settings.seed)
    res.artefacts = {
        "table": pd.DataFrame(rows), "rankings": rankings, "answers": answers, "properties": used,
    }  # fmt: skip
    return res


# -------------------------------------------------------------------------------- generation speed

SPEED_NEW_TOKENS = 32


def generation_speed(settings: Settings, properties: Mapping[str, Any]) -> Results:
    """New tokens per second for ``throughput_prompts`` stage-2 prompts of the first dataset (with
    its stage-1 ``properties``, dataset -> `PropertyMap`), one at a time and batched. Calls
    the model: it measures this machine. Rows ``tokens_per_s_one_at_a_time`` and
    ``tokens_per_s_batched``; ``artefacts["table"]``; nothing when ``throughput_prompts`` is 0."""
    from molkit.chem import compute_descriptors
    from molkit.data import load_dataset

    res = Results(
        artefacts={
            "table": pd.DataFrame(
                columns=["mode", "prompts", "new_tokens", "seconds", "tokens_per_s"]
            )
        }
    )
    if not settings.throughput_prompts:
        return res
    dataset = settings.datasets[0]
    smiles = load_dataset(dataset)["smiles"].head(settings.throughput_prompts).tolist()
    values = compute_descriptors(smiles, progress=False)
    props = properties[dataset]
    prompts = [
        stage2_prompt(s, dataset, "lardo", props, row.to_dict())
        for s, (_, row) in zip(smiles, values.iterrows(), strict=True)
    ]
    speed = throughput_benchmark(
        settings.lm_model, prompts, max_new_tokens=SPEED_NEW_TOKENS, **_loading(settings)
    )
    for row in speed.itertuples():
        res.add_row(
            "generation",
            settings.lm_model,
            "tokens_per_s_" + row.mode.replace(" ", "_"),
            row.tokens_per_s,
            seed=settings.seed,
            note=f"{row.prompts} prompts, {SPEED_NEW_TOKENS} new tokens",
        )
    res.artefacts["table"] = speed
    return res


# ----------------------------------------------------------------------------------- the benchmark


def _score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[str, float]:
    from molkit.eval.metrics import task_metrics

    metric = "roc_auc" if task == "classification" else "rmse"
    return metric, task_metrics(task, y_true, y_pred)[metric]


#: Encoders pre-trained on the whole pool's training part, then those of the ablation pool.
MAIN_ENCODERS = ("scratch", "attr_masking", "lardo", "dsm_only")
ABLATION_ENCODERS = ("lardo_ablation_pool", "no_dsm", "no_stage1")


def _text_embeddings(encoder: Any, desc: Descriptions) -> dict[str, np.ndarray]:
    """variant -> (n_molecules, d) embeddings of its texts (NaN rows where it has none)."""
    out = {}
    for variant, texts in desc.texts.items():
        described = desc.described(variant)
        emb = np.asarray(
            encoder.embed([texts[i] for i in described], batch_size=64, progress=False)
        )
        full = np.full((len(texts), emb.shape[1]), np.nan, dtype=np.float32)
        full[described] = emb
        out[variant] = full
    return out


def pretrain_and_finetune(
    settings: Settings,
    properties: Mapping[str, Any],
    cache: ResponseCache | None = None,
    encoder: Any = None,
    progress: bool = True,
) -> Results:
    """The experiment, per dataset and balanced scaffold split (80/10/10, one per seed of
    ``settings.splits``, the same for every method).

    Descriptions of the pools are replayed from the response cache (stage 2 with the stage-1
    ``properties``, dataset -> `PropertyMap`, from `stage1_properties`) and embedded with the frozen
    sentence encoder (``encoder``: anything with ``embed(texts, batch_size, progress)``; default
    ``Encoder.from_pretrained(settings.text_encoder)``). Per split, the encoders (`MAIN_ENCODERS`,
    plus `ABLATION_ENCODERS` with ``ablation_pretraining``): GIN from scratch, attribute masking on
    the pool's training-part molecules, graph-text pre-training with LarDo texts and with the DSM
    text on the same molecules (and, on the ablation pool, LarDo and its two ablations). Each is
    evaluated twice on the split's test part: fine-tuned end to end (`build_predictor`; head and
    encoder learning rates) and frozen with a linear probe; plus Morgan + random forest. Regression
    targets are standardised with the training part's mean and std for fine-tuning.

    Rows: ``roc_auc`` or ``rmse`` (``*_frozen`` for the probe) per dataset, method and split
    (``seed`` = the split's seed). Claims: `model_claims`. Artefacts: ``descriptions`` (dataset ->
    `Descriptions`), ``pretrain_history``, ``embeddings`` (dataset -> test graph embeddings before
    and after LarDo pre-training on the first split, and the first label), ``predictions`` (dataset
    -> split -> method -> test predictions, with ``y``, ``task`` and ``mean``), ``pool_sizes``,
    ``seconds``.
    """
    from molkit.chem import graphs_from_smiles
    from molkit.data import load_dataset, scaffold_split
    from molkit.methods.baselines import fit_predict_per_task, linear_probe, morgan_model
    from molkit.models.gnn import (
        GIN,
        attribute_masking_pretrain,
        embed_graphs,
        predict_graph_model,
        train_graph_model,
    )

    cache = _cache(cache)
    if encoder is None:
        from molkit.models import Encoder

        encoder = Encoder.from_pretrained(settings.text_encoder)
    res = Results()
    descriptions, histories, embeddings, predictions, pool_sizes = {}, [], {}, {}, []
    seconds = {"descriptions and embeddings": 0.0, "pre-training": 0.0, "fine-tuning": 0.0}
    encoders = MAIN_ENCODERS + (ABLATION_ENCODERS if settings.ablation_pretraining else ())
    for name in settings.datasets:
        began = time.perf_counter()
        df = load_dataset(name)
        task, targets = df.attrs["task"], df.attrs["targets"]
        smiles = df["smiles"].tolist()
        pool = description_pool(len(smiles), settings.pool)
        ablation = description_pool(len(smiles), settings.ablation_pool)
        pools = {"lardo": pool, "dsm_only": pool, "no_dsm": ablation, "no_stage1": ablation}
        desc = describe_molecules(
            name, smiles, cache, settings.lm_model, properties[name], settings.max_new_tokens,
            settings.lm_batch_size, variants=tuple(VARIANTS), pools=pools,
            offline=settings.offline, progress=progress, **_loading(settings),
        )  # fmt: skip
        descriptions[name] = desc
        emb = _text_embeddings(encoder, desc)
        y = df[targets].to_numpy(dtype=float)
        graphs = graphs_from_smiles(smiles, y, progress=False)
        seconds["descriptions and embeddings"] += time.perf_counter() - began
        predictions[name] = {"task": task}
        for split_seed in settings.splits:
            split = scaffold_split(smiles, (0.8, 0.1, 0.1), balanced=True, seed=split_seed)
            fmax = settings.finetune_max
            parts = {
                k: v if fmax is None else v[: max(8, fmax * len(v) // len(df))]
                for k, v in split.items()
            }
            data = {k: ([graphs[i] for i in v], y[v]) for k, v in parts.items()}
            if task == "classification":
                mu, sd = 0.0, 1.0
            else:
                mu, sd = np.nanmean(data["train"][1], 0), np.nanstd(data["train"][1], 0)
            y_fit = {k: (data[k][1] - mu) / sd for k in ("train", "valid")}
            on_train = {
                "pool": np.intersect1d(pool, split["train"]),
                "ablation": np.intersect1d(ablation, split["train"]),
            }
            pool_sizes.append({
                "dataset": name, "split": split_seed, "train": len(split["train"]),
                "valid": len(split["valid"]), "test": len(split["test"]),
                "pre-training pool": len(on_train["pool"]),
                "ablation pool": len(on_train["ablation"]),
            })  # fmt: skip
            began = time.perf_counter()
            gins = {}
            for method in encoders:
                _torch_seed(split_seed)
                gin = GIN(num_layers=settings.num_layers, hidden=settings.hidden)
                molecules = on_train["ablation" if method in ABLATION_ENCODERS else "pool"]
                if method == "attr_masking":
                    attribute_masking_pretrain(
                        gin, [graphs[i] for i in molecules], epochs=settings.masking_epochs,
                        batch_size=settings.batch_size, seed=split_seed, progress=False,
                    )  # fmt: skip
                elif method != "scratch":
                    variant = "lardo" if method == "lardo_ablation_pool" else method
                    watch = method == "lardo" and split_seed == settings.splits[0]
                    if watch:
                        embeddings[name] = {"before": embed_graphs(gin, data["test"][0])}
                    history = pretrain_clip(
                        gin, [graphs[i] for i in molecules], emb[variant][molecules],
                        epochs=settings.pretrain_epochs, lr=settings.pretrain_lr,
                        batch_size=settings.batch_size, seed=split_seed,
                        valid_fraction=settings.pretrain_valid,
                        patience=settings.pretrain_patience, progress=False,
                    )  # fmt: skip
                    histories.append(history.assign(
                        dataset=name, method=METHOD_LABELS[method], split=split_seed,
                        best_epoch=history.attrs["best_epoch"], pairs=len(molecules),
                    ))  # fmt: skip
                    if watch:
                        embeddings[name]["after"] = embed_graphs(gin, data["test"][0])
                        embeddings[name]["y"] = data["test"][1][:, 0]
                gins[method] = gin
            seconds["pre-training"] += time.perf_counter() - began
            began = time.perf_counter()
            preds = {"y": data["test"][1]}
            for method, gin in gins.items():
                frozen = fit_predict_per_task(
                    functools.partial(linear_probe, task), embed_graphs(gin, data["train"][0]),
                    data["train"][1], embed_graphs(gin, data["test"][0]), task,
                )  # fmt: skip
                metric, value = _score(task, data["test"][1], frozen)
                res.add_row(
                    name, METHOD_LABELS[method], f"{metric}_frozen", value, seed=split_seed,
                    split=TEST_SPLIT, note="frozen encoder + linear probe",
                )  # fmt: skip
                preds[f"{method}_frozen"] = frozen
                model = build_predictor(gin, len(targets))
                train_graph_model(
                    model, data["train"][0], y_fit["train"], data["valid"][0], y_fit["valid"],
                    task=task, epochs=settings.finetune_epochs, lr=settings.head_lr,
                    encoder_lr=settings.encoder_lr, batch_size=settings.batch_size,
                    patience=settings.patience, seed=split_seed, progress=False,
                )  # fmt: skip
                pred = predict_graph_model(model, data["test"][0], task)
                pred = pred if task == "classification" else pred * sd + mu
                metric, value = _score(task, data["test"][1], pred)
                res.add_row(
                    name, METHOD_LABELS[method], metric, value, seed=split_seed,
                    split=TEST_SPLIT, note="fine-tuned end to end",
                )  # fmt: skip
                preds[method] = pred
            seconds["fine-tuning"] += time.perf_counter() - began
            pred = fit_predict_per_task(
                functools.partial(
                    morgan_model, "rf", task, seed=split_seed, n_estimators=settings.rf_trees
                ),
                np.asarray([smiles[i] for i in parts["train"]], dtype=object), data["train"][1],
                np.asarray([smiles[i] for i in parts["test"]], dtype=object), task,
            )  # fmt: skip
            metric, value = _score(task, data["test"][1], pred)
            res.add_row(name, METHOD_LABELS["rf"], metric, value, seed=split_seed, split=TEST_SPLIT)
            preds["rf"] = pred
            preds["mean"] = _training_mean(task, data["train"][1], len(parts["test"]))
            predictions[name][split_seed] = preds
    res.claims = model_claims(predictions)
    res.artefacts = {
        "descriptions": descriptions,
        "pretrain_history": pd.concat(histories, ignore_index=True),
        "embeddings": embeddings,
        "predictions": predictions,
        "pool_sizes": pd.DataFrame(pool_sizes),
        "seconds": seconds,
    }
    return res


def _torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _training_mean(task: str, y_train: np.ndarray, n_test: int) -> np.ndarray:
    """The trivial baseline's (n_test, n_tasks) predictions: training mean or class prior."""
    from molkit.methods.baselines import fit_predict_per_task, training_mean

    return fit_predict_per_task(
        functools.partial(training_mean, task),
        np.zeros((len(y_train), 1)),
        y_train,
        np.zeros((n_test, 1)),
        task,
    )


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    from molkit.eval.metrics import regression_metrics

    return regression_metrics(y, p)["rmse"]


#: (method, baseline, what the claim says) for `model_claims`, the trivial baseline first; each
#: comparison changes one factor. ``*_frozen``: the frozen encoders' linear probes.
MODEL_COMPARISONS = (
    ("lardo", "mean", "LarDo (fine-tuned) beats the trivial baseline"),
    ("lardo", "scratch", "LarDo pre-training beats GIN from scratch (both fine-tuned)"),
    ("lardo", "attr_masking", "LarDo pre-training beats attribute masking (both fine-tuned)"),
    ("lardo", "dsm_only", "LLM descriptions beat the DSM text alone (both fine-tuned)"),
    ("lardo_frozen", "scratch_frozen", "LarDo pre-training beats a random GIN (frozen probes)"),
    (
        "lardo_frozen", "attr_masking_frozen",
        "LarDo pre-training beats attribute masking (frozen probes)",
    ),
    (
        "lardo_ablation_pool", "no_dsm",
        "DSM values in the prompt help pre-training (ablation pool, fine-tuned)",
    ),
    (
        "lardo_ablation_pool", "no_stage1",
        "stage 1 + DSM values beat the official no-stage-1 ablation (ablation pool, fine-tuned)",
    ),
)  # fmt: skip


def model_claims(predictions: Mapping[str, Mapping[Any, Any]]) -> list[Claim]:
    """Per dataset, every `MODEL_COMPARISONS` row whose two methods were run: a paired bootstrap
    over the test molecules of every split, stratified by split (each split's ROC-AUC or RMSE,
    averaged over splits; ROC-AUC higher is better, RMSE lower). ``predictions``: dataset ->
    ``{"task", split: {"y", method: (n, n_tasks) predictions, "mean", ...}}``; several tasks are
    pooled over the labelled (molecule, task) pairs."""
    claims = []
    for name, per_split in predictions.items():
        task = per_split["task"]
        splits = [k for k in per_split if k != "task"]
        classification = task == "classification"
        metric, metric_name = (roc_auc_fast, "roc_auc") if classification else (_rmse, "rmse")
        ys, groups = [], []
        for k in splits:
            y = np.asarray(per_split[k]["y"], dtype=float).ravel()
            ys.append(y)
            groups.append(np.full(len(y), k))
        y_all, g_all = np.concatenate(ys), np.concatenate(groups)
        labelled = ~np.isnan(y_all)
        for method, baseline, text in MODEL_COMPARISONS:
            if not all(method in per_split[k] and baseline in per_split[k] for k in splits):
                continue
            a = np.concatenate([np.asarray(per_split[k][method]).ravel() for k in splits])
            b = np.concatenate([np.asarray(per_split[k][baseline]).ravel() for k in splits])
            if baseline == "mean":
                text = text.replace(
                    "the trivial baseline",
                    "the training class prior" if classification else "the training mean",
                )
            claims.append(paired_claim(
                PAPER, f"{name}: {text}", NOT_REPORTED, y_all[labelled], a[labelled],
                b[labelled], metric, metric_name + " (mean over splits)",
                higher_is_better=classification, groups=g_all[labelled],
                detail=f"{METHOD_LABELS.get(method.removesuffix('_frozen'), method)} vs "
                f"{METHOD_LABELS.get(baseline.removesuffix('_frozen'), baseline)}; "
                f"{len(splits)} balanced scaffold split{'s' if len(splits) != 1 else ''}",
            ))  # fmt: skip
    return claims


# ------------------------------------------------------------------------------------- calibration


def _check_descriptions(
    desc: Descriptions, variants: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each variant's description of every molecule all ``variants`` described, checked once
    (`extract_claims`): the per-description table of `description_checks` and the per-claim table
    (`calibration_table`'s columns, variant by variant, ``molecule`` the dataset's position, plus
    ``dataset``)."""
    records = desc.values.to_dict("records")
    rows, claims = [], {variant: [] for variant in variants}
    for i in desc.described_by_all(variants):
        for variant in variants:
            found = extract_claims(desc.texts[variant][i], records[i])
            claims[variant] += [{"molecule": i, "variant": variant, **c.__dict__} for c in found]
            rows.append({
                "dataset": desc.dataset, "molecule": i, "variant": variant, "claims": len(found),
                "value_claims": sum(c.kind == "value" for c in found),
                "contradictions": sum(c.contradicts for c in found),
                "contradicts": any(c.contradicts for c in found),
                "states_mw": any(
                    c.descriptor == "mol_weight" and c.kind == "value" and not c.contradicts
                    for c in found
                ),
            })  # fmt: skip
    table = pd.DataFrame(
        [row for variant in variants for row in claims[variant]], columns=CALIBRATION_COLUMNS
    )
    return pd.DataFrame(rows), table.assign(dataset=desc.dataset)


def description_checks(desc: Descriptions, variants: Sequence[str]) -> pd.DataFrame:
    """One row per (molecule, variant) for the molecules every variant of ``variants`` described:
    ``dataset``, ``molecule`` (position), ``variant``, ``claims`` (checkable claims),
    ``value_claims``, ``contradictions``, ``contradicts`` (at least one), ``states_mw`` (states the
    molecular weight within tolerance of RDKit's)."""
    return _check_descriptions(desc, variants)[0]


def _share(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(p))


def share_interval(flags: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap percentile interval of the share of True in ``flags``."""
    flags = np.asarray(flags, dtype=float)
    rng = np.random.default_rng(seed)
    shares = [flags[rng.integers(0, len(flags), len(flags))].mean() for _ in range(n_boot)]
    low, high = np.quantile(shares, [0.025, 0.975])
    return float(low), float(high)


def calibration(settings: Settings, descriptions: Mapping[str, Descriptions]) -> Results:
    """Every description of every variant checked against RDKit, per description, on the same
    molecules for every variant (those of the ablation pool, which every variant described).

    Rows (dataset ``all``, per variant): ``share_descriptions_contradicting_rdkit`` (with its 95 %
    interval in the note), ``share_descriptions_with_checkable_claim``,
    ``share_descriptions_stating_mw``, ``share_of_claims_contradicting_rdkit``. Claim: the DSM
    values cut the share of descriptions contradicting RDKit (LarDo vs LarDo without DSM values,
    paired over the same molecules). Artefacts: ``table`` (one row per checked claim, for the
    per-property figure), ``checks`` (`description_checks`), ``summary``, ``n_descriptions``."""
    variants = tuple(VARIANTS)
    checked = [_check_descriptions(desc, variants) for desc in descriptions.values()]
    checks = pd.concat([c for c, _ in checked], ignore_index=True)
    table = pd.concat([t for _, t in checked], ignore_index=True)
    res = Results()
    summary = []
    for variant in variants:
        part = checks[checks["variant"] == variant]
        low, high = share_interval(part["contradicts"].to_numpy())
        share = float(part["contradicts"].mean())
        checkable = float((part["claims"] > 0).mean())
        states_mw = float(part["states_mw"].mean())
        n_claims = int(part["claims"].sum())
        per_claim = int(part["contradictions"].sum()) / n_claims if n_claims else np.nan
        summary.append({
            "variant": variant, "descriptions": len(part), "with a checkable claim": checkable,
            "contradicting RDKit": share, "low": low, "high": high,
            "stating MW correctly": states_mw, "checkable claims": n_claims,
            "share of claims contradicting": per_claim,
        })  # fmt: skip
        note = f"{len(part)} descriptions; 95 % interval [{low:.3f}, {high:.3f}]"
        for metric, value in (
            ("share_descriptions_contradicting_rdkit", share),
            ("share_descriptions_with_checkable_claim", checkable),
            ("share_descriptions_stating_mw", states_mw),
            ("share_of_claims_contradicting_rdkit", per_claim),
        ):
            res.add_row(
                "all", METHOD_LABELS[variant], metric, value, seed=settings.seed,
                note=note if metric == "share_descriptions_contradicting_rdkit"
                else f"{len(part)} descriptions, {n_claims} checkable claims",
            )  # fmt: skip
    with_dsm = checks[checks["variant"] == "lardo"]["contradicts"].to_numpy(float)
    without = checks[checks["variant"] == "no_dsm"]["contradicts"].to_numpy(float)
    if len(with_dsm) >= 2:
        res.claims.append(paired_claim(
            PAPER, "DSM values cut descriptions contradicting RDKit", NOT_REPORTED,
            np.zeros(len(with_dsm)), with_dsm, without, _share,
            "share of descriptions contradicting RDKit", higher_is_better=False,
            detail=f"LarDo vs no DSM values; the same {len(with_dsm)} molecules of "
            f"{', '.join(descriptions)}",
        ))  # fmt: skip
    res.artefacts = {
        "table": table, "checks": checks,
        "summary": pd.DataFrame(summary).set_index("variant"),
        "n_descriptions": int(checks["molecule"].groupby(checks["dataset"]).nunique().sum()),
    }  # fmt: skip
    return res


# --------------------------------------------------------------------------------- notebook tables


def example_descriptions(desc: Descriptions, n: int = 3) -> pd.DataFrame:
    """The first ``n`` molecules every variant described: RDKit values beside each variant's
    text."""
    rows = []
    for i in desc.described_by_all(VARIANTS)[:n]:
        values = desc.values.iloc[i]
        rdkit = "; ".join(value_text(k, values[k]) for k in DSM_TEXT_DESCRIPTORS[:4])
        row = {"smiles": desc.smiles[i], "RDKit": rdkit}
        row.update({METHOD_LABELS[v]: desc.texts[v][i] for v in VARIANTS})
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_text(res: Results) -> str:
    """One line per comparison: its verdict on each dataset with the difference and its interval,
    from the claim rows of ``res``."""
    frame = res.claims_frame()
    if frame.empty:
        return "No claim rows in this run."
    parts = frame["claim"].str.split(": ", n=1, expand=True)
    frame = frame.assign(dataset=parts[0], comparison=parts[1])
    lines = []
    for comparison, rows in frame.groupby("comparison", sort=False):
        verdicts = "; ".join(
            f"{r.dataset} {r.verdict} ({r.ours:+.3f} [{r.low:+.3f}, {r.high:+.3f}])"
            for r in rows.itertuples()
        )
        lines.append(f"{comparison}: {verdicts}")
    return "\n".join(lines)


def separation_score(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """How well the classes separate in an embedding space: the silhouette score (cosine) of
    the labels, in [-1, 1] (0: no structure by class; NaN with fewer than two classes or
    regression targets)."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels, dtype=float)
    keep = ~np.isnan(labels)
    values = np.unique(labels[keep])
    if len(values) < 2 or len(values) > 10:
        return float("nan")
    return float(silhouette_score(np.asarray(embeddings)[keep], labels[keep], metric="cosine"))


def claims_table(res: Results) -> pd.DataFrame:
    """The claims of ``res`` as a table for the notebook (paper column dropped, numbers rounded)."""
    frame = res.claims_frame().drop(columns=["paper"])
    return frame.round({"ours": 3, "low": 3, "high": 3})


def stage1_answers(answers: Mapping[str, str], width: int = 600) -> str:
    """The free-text stage-1 answers, each cut at ``width`` characters, as printable text."""
    return "\n".join(
        f"--- {name}: free-text stage-1 answer ---\n{answer[:width]}\n"
        for name, answer in answers.items()
    )


def timings(res: Results) -> dict[str, int]:
    """Seconds spent on descriptions, pre-training and fine-tuning (rounded), from
    `pretrain_and_finetune`."""
    return {k: round(v) for k, v in res.artefacts["seconds"].items()}


def response_file_header(path: str | None = None) -> str:
    """The shipped response file's header as one line: records, the command that made it, the
    machine, dtype and threads, and its generation time and speed."""
    import gzip
    import json

    from molkit.methods.lardo.descriptions import RESPONSE_FILE

    with gzip.open(path or RESPONSE_FILE, "rt", encoding="utf-8") as handle:
        head = json.loads(handle.readline())["header"]
    tokens, secs = head.get("new_tokens"), head.get("generation_seconds")
    speed = f"{tokens / secs:.0f} tokens/s" if tokens and secs else "speed not recorded"
    return (
        f"shipped responses: {head['records']} records from `{head.get('command', '?')}` "
        f"({head.get('dtype', '?')}, {head.get('torch_threads', '?')} threads, "
        f"{head.get('machine', '?')}); {tokens} new tokens in {secs} s of generation ({speed})"
    )


def pretraining_summary(history: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and pre-training method (mean over splits): the pairs, epochs run, the epoch
    kept, its held-out loss and the final learned temperature."""
    last = history.groupby(["dataset", "method", "split"], sort=False).tail(1)
    kept = history[history["epoch"] == history["best_epoch"]]
    table = last.groupby(["dataset", "method"], sort=False).agg(
        pairs=("pairs", "mean"), epochs_run=("epoch", "mean"), best_epoch=("best_epoch", "mean"),
        final_temperature=("temperature", "mean"),
    )  # fmt: skip
    table["best_valid_loss"] = kept.groupby(["dataset", "method"], sort=False)["valid_loss"].mean()
    return table.round(3)


def discussion_facts(stage1: Results, calib: Results, bench: Results) -> str:
    """The Discussion's numbers, as printable lines: stage 1's mapped and dropped names and the
    ranked names kept, the calibration shares with intervals, the DSM claim, pre-training's
    stopping epochs and temperatures, and the count of model verdicts."""
    table = stage1.artefacts["table"]
    named = sum(len(n) for n in table["free text: names"])
    mapped = sum(len(m) for m in table["free text: mapped"])
    lines = [
        f"Stage 1 (free text) named {named} properties over {len(table)} datasets; {mapped} map "
        f"to a descriptor, {int(table['free text: unmapped'].sum())} were dropped.",
        "Stage 1 (ranked) kept: "
        + "; ".join(f"{r['dataset']}: {', '.join(r['ranked: kept'])}" for _, r in table.iterrows()),
    ]
    for variant, row in calib.artefacts["summary"].iterrows():
        lines.append(
            f"{METHOD_LABELS[variant]}: {row['contradicting RDKit']:.3f} "
            f"[{row['low']:.3f}, {row['high']:.3f}] of {int(row['descriptions'])} descriptions "
            f"contradict RDKit; {row['with a checkable claim']:.3f} make a checkable claim; "
            f"{row['stating MW correctly']:.3f} state the molecular weight correctly"
        )
    for claim in calib.claims:
        lines.append(
            f"{claim.claim}: {claim.verdict} ({claim.ours:+.3f} [{claim.low:+.3f}, "
            f"{claim.high:+.3f}], n = {claim.n})"
        )
    summary = pretraining_summary(bench.artefacts["pretrain_history"]).reset_index()
    main = summary[summary["method"] == METHOD_LABELS["lardo"]]
    for _, row in main.iterrows():
        lines.append(
            f"{row['dataset']}: LarDo pre-training kept epoch {row['best_epoch']:.1f} of "
            f"{row['epochs_run']:.1f} run (mean over splits); final temperature "
            f"{row['final_temperature']:.3f}"
        )
    verdicts = pd.Series([c.verdict for c in bench.claims]).value_counts()
    lines.append(
        f"Model claims: {len(bench.claims)}; " + ", ".join(f"{k} {v}" for k, v in verdicts.items())
    )
    return "\n".join(lines)
