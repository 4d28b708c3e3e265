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
from collections.abc import Mapping
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
    generation_settings,
    load_generator,
    pretraining_pool,
    response_cache,
    throughput_benchmark,
)
from molkit.methods.lardo.method import (
    DSM_TEXT_DESCRIPTORS,
    VARIANTS,
    build_predictor,
    calibration_table,
    map_properties,
    parse_property_list,
    pretrain_clip,
    prompt_descriptors,
    stage1_prompt,
    stage2_prompt,
    value_text,
)
from molkit.models.responses import ResponseCache

PAPER = "MolGraph-LarDo (arXiv 2408.10124)"
#: The seed summary of the paper states its effects without numbers.
NOT_REPORTED = "not reported"
TEST_SPLIT = "scaffold test"

METHOD_LABELS = {
    "scratch": "GIN from scratch",
    "attr_masking": "GIN + attribute masking",
    "lardo": "LarDo (stage 1 + DSM)",
    "no_dsm": "LarDo without DSM values",
    "no_stage1": "LarDo without stage 1",
    "dsm_only": "DSM text only (no LLM)",
    "lardo_transductive": "LarDo, transductive pool",
    "rf": "Morgan + random forest",
}


@dataclass(frozen=True)
class Settings(contract.Settings):
    """03_lardo's settings; the field defaults are the ``default`` profile.

    ``pool_train``: training molecules per dataset that get descriptions and pre-training (a seeded
    subset of the scaffold split's training part; None: all); ``pool_rest``: valid/test molecules
    added for the transductive pool (None: all). The smoke pool is a prefix of the default pool,
    so smoke replays the shipped default responses. ``finetune_max``: None fine-tunes on the whole
    split, else on a prefix of each part of about ``finetune_max`` molecules in all (at least 8 per
    part). ``seeds``: the training seeds; ``seed``: the notebook's seed, which labels the rows not
    tied to a training seed (calibration, generation speed) and lays out the embedding maps.
    """

    datasets: tuple[str, ...] = ("bbbp", "bace", "esol")
    seeds: tuple[int, ...] = (0, 1, 2)
    seed: int = 0
    pool_train: int | None = 64
    pool_rest: int | None = 16
    finetune_max: int | None = None
    hidden: int = 64
    num_layers: int = 5
    pretrain_epochs: int = 30
    finetune_epochs: int = 8
    patience: int = 3
    finetune_lr: float = 1e-3
    batch_size: int = 64
    lm_model: str = "smollm2-135m-instruct"
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
            "datasets": ("bbbp", "esol"), "seeds": (0,), "pool_train": 16, "pool_rest": 8,
            "finetune_max": 96, "hidden": 32, "pretrain_epochs": 1, "finetune_epochs": 1,
            "patience": 1, "batch_size": 32, "lm_batch_size": 8, "rf_trees": 50,
            "throughput_prompts": 0, "n_examples": 2,
        },
        "default": {},
        "full": {
            "datasets": (
                "bbbp", "bace", "clintox", "tox21", "sider", "hiv", "esol", "freesolv", "lipo",
            ),
            "pool_train": None, "pool_rest": None, "hidden": 300, "pretrain_epochs": 100,
            "finetune_epochs": 100, "patience": 20, "finetune_lr": 5e-4, "batch_size": 32,
            "lm_model": "mistralai/Mistral-7B-Instruct-v0.2",
            "text_encoder": "sentence-transformers/all-mpnet-base-v2", "max_new_tokens": 256,
            "stage1_max_new_tokens": 256, "lm_batch_size": 16, "offline": False, "rf_trees": 500,
            "throughput_prompts": 8, "n_examples": 4,
        },
    }  # fmt: skip


def _cache(cache: ResponseCache | None) -> ResponseCache:
    return cache if cache is not None else response_cache()


# ----------------------------------------------------------------------------------------- stage 1


def stage1_properties(settings: Settings, cache: ResponseCache | None = None) -> Results:
    """Per dataset: the stage-1 answer (replayed), the parsed property names, their descriptors,
    the unmatched ones and the descriptors whose values the stage-2 prompt carries.
    ``artefacts["table"]``: that table. No result rows."""
    cache = _cache(cache)
    rows = []
    for name in settings.datasets:
        generation = generation_settings(settings.stage1_max_new_tokens)
        (answer,), _ = cache.generate(
            settings.lm_model, [stage1_prompt(name)], generation,
            load_generator(settings.lm_model, generation), offline=settings.offline,
            progress=False,
        )  # fmt: skip
        mapped = map_properties(parse_property_list(answer))
        rows.append({
            "dataset": name, "answer": answer, "properties": mapped.names,
            "descriptors": dict(mapped.matched), "no descriptor": mapped.unmatched,
            "values in stage-2 prompt": prompt_descriptors(mapped),
        })  # fmt: skip
    return Results(artefacts={"table": pd.DataFrame(rows)})


# -------------------------------------------------------------------------------- generation speed

SPEED_NEW_TOKENS = 32


def generation_speed(settings: Settings, stage1: pd.DataFrame) -> Results:
    """New tokens per second for ``throughput_prompts`` stage-2 prompts of the first dataset (with
    its stage-1 properties from the `stage1_properties` table), one at a time and batched. Calls
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
    props = map_properties(stage1["properties"].iloc[0])
    prompts = [
        stage2_prompt(s, dataset, "lardo", props, row.to_dict())
        for s, (_, row) in zip(smiles, values.iterrows(), strict=True)
    ]
    speed = throughput_benchmark(settings.lm_model, prompts, max_new_tokens=SPEED_NEW_TOKENS)
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


def pretrain_and_finetune(
    settings: Settings,
    cache: ResponseCache | None = None,
    encoder: Any = None,
    progress: bool = True,
) -> Results:
    """The experiment, per dataset: a deterministic scaffold split 80/10/10 (the same for every
    method and seed); descriptions of the pool replayed from the response cache; text embeddings
    from the frozen sentence encoder (``encoder``: anything with ``embed(texts, batch_size,
    progress)``; default ``Encoder.from_pretrained(settings.text_encoder)``). Per seed, the
    encoders: GIN from scratch, attribute masking on the training pool, graph-text pre-training
    with each text variant on the training pool and with LarDo texts on the transductive pool.
    Each is evaluated twice on the test part: fine-tuned end to end (`build_predictor`: starts
    from the pre-trained weights) and as a frozen encoder with a linear probe; plus Morgan
    fingerprints + random forest. Regression targets are standardised with the training part's
    mean and std for fine-tuning (predictions are scaled back).

    Rows: ``roc_auc`` or ``rmse`` (``*_frozen`` for the probe) per dataset, method and seed.
    Claims (first seed, fine-tuned, the same test molecules): LarDo beats the training mean /
    class prior, GIN from scratch and attribute masking. Artefacts: ``descriptions`` (dataset ->
    `Descriptions` of the training pool), ``pretrain_history``, ``embeddings`` (dataset -> test
    graph embeddings before and after LarDo pre-training, first seed, and the first label),
    ``predictions`` (dataset -> the first seed's test predictions per method), ``seconds``.
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
    descriptions, histories, embeddings, predictions = {}, [], {}, {}
    seconds = {"pretraining": 0.0, "fine-tuning": 0.0}
    first_seed = settings.seeds[0]
    for name in settings.datasets:
        df = load_dataset(name)
        task, targets = df.attrs["task"], df.attrs["targets"]
        smiles = df["smiles"].tolist()
        split = scaffold_split(smiles, (0.8, 0.1, 0.1))
        pool_train = pretraining_pool(split, settings.pool_train)
        pool_all = pretraining_pool(split, settings.pool_train, settings.pool_rest)
        common = dict(
            cache=cache, lm_model=settings.lm_model, max_new_tokens=settings.max_new_tokens,
            stage1_max_new_tokens=settings.stage1_max_new_tokens,
            batch_size=settings.lm_batch_size, offline=settings.offline, progress=progress,
        )  # fmt: skip
        desc = describe_molecules(
            name, [smiles[i] for i in pool_train], variants=tuple(VARIANTS), **common
        )
        trans = describe_molecules(
            name, [smiles[i] for i in pool_all], variants=("lardo",), **common
        )
        descriptions[name] = desc
        # the fine-tuning split (smoke: a subset of each part), identical for every method and seed
        fmax = settings.finetune_max
        parts = {
            k: v if fmax is None else v[: max(8, fmax * len(v) // len(df))]
            for k, v in split.items()
        }
        y = df[targets].to_numpy(dtype=float)
        needed = np.unique(np.concatenate([*parts.values(), pool_all]))
        graph_list = graphs_from_smiles([smiles[i] for i in needed], y[needed], progress=False)
        graphs = dict(zip(needed.tolist(), graph_list, strict=True))
        data = {k: ([graphs[i] for i in v], y[v]) for k, v in parts.items()}
        # regression targets are standardised with the training part's mean and std (as chemprop)
        if task == "classification":
            mu, sd = 0.0, 1.0
        else:
            mu, sd = np.nanmean(data["train"][1], 0), np.nanstd(data["train"][1], 0)
        y_fit = {k: (data[k][1] - mu) / sd for k in ("train", "valid")}
        texts = {v: (pool_train, desc.texts[v]) for v in VARIANTS}
        texts["lardo_transductive"] = (pool_all, trans.texts["lardo"])
        text_emb = {
            k: encoder.embed(t, batch_size=64, progress=False) for k, (_, t) in texts.items()
        }
        predictions[name] = {"task": task, "y": data["test"][1]}
        for seed in settings.seeds:
            gins = {}
            began = time.perf_counter()
            for method in ("scratch", "attr_masking", *texts):
                _torch_seed(seed)
                gin = GIN(num_layers=settings.num_layers, hidden=settings.hidden)
                if method == "attr_masking":
                    attribute_masking_pretrain(
                        gin, [graphs[i] for i in pool_train], epochs=settings.pretrain_epochs,
                        batch_size=settings.batch_size, seed=seed, progress=False,
                    )  # fmt: skip
                elif method != "scratch":
                    pool = texts[method][0]
                    watch = method == "lardo" and seed == first_seed
                    if watch:
                        embeddings[name] = {
                            "before": embed_graphs(gin, data["test"][0]),
                            "y": data["test"][1][:, 0],
                        }
                    history = pretrain_clip(
                        gin, [graphs[i] for i in pool], text_emb[method],
                        epochs=settings.pretrain_epochs, batch_size=settings.batch_size,
                        seed=seed, progress=False,
                    )  # fmt: skip
                    histories.append(
                        history.assign(dataset=name, method=METHOD_LABELS[method], seed=seed)
                    )
                    if watch:
                        embeddings[name]["after"] = embed_graphs(gin, data["test"][0])
                gins[method] = gin
            seconds["pretraining"] += time.perf_counter() - began
            began = time.perf_counter()
            for method, gin in gins.items():
                # the frozen encoder's probe: baselines.linear_probe (scaler + logistic / ridge)
                frozen = fit_predict_per_task(
                    functools.partial(linear_probe, task), embed_graphs(gin, data["train"][0]),
                    data["train"][1], embed_graphs(gin, data["test"][0]), task,
                )  # fmt: skip
                metric, value = _score(task, data["test"][1], frozen)
                res.add_row(
                    name,
                    METHOD_LABELS[method],
                    f"{metric}_frozen",
                    value,
                    seed=seed,
                    split=TEST_SPLIT,
                    note="frozen encoder + linear probe",
                )
                # not baselines.GINBaseline for "scratch": every encoder here is built the same
                # way (seeded GIN, then a predictor head with dropout 0.3 after all pre-training)
                model = build_predictor(gin, len(targets))
                train_graph_model(
                    model, data["train"][0], y_fit["train"], data["valid"][0], y_fit["valid"],
                    task=task, epochs=settings.finetune_epochs, lr=settings.finetune_lr,
                    batch_size=settings.batch_size, patience=settings.patience, seed=seed,
                    progress=False,
                )  # fmt: skip
                pred = predict_graph_model(model, data["test"][0], task)
                pred = pred if task == "classification" else pred * sd + mu
                metric, value = _score(task, data["test"][1], pred)
                res.add_row(
                    name,
                    METHOD_LABELS[method],
                    metric,
                    value,
                    seed=seed,
                    split=TEST_SPLIT,
                    note="fine-tuned end to end",
                )
                if seed == first_seed:
                    predictions[name][method] = pred
            seconds["fine-tuning"] += time.perf_counter() - began
            # baselines.morgan_model fits with one job (lardo used to fit with every core: a
            # forest's fit is the same either way) and predicts with one (a reproducible sum)
            pred = fit_predict_per_task(
                functools.partial(
                    morgan_model, "rf", task, seed=seed, n_estimators=settings.rf_trees
                ),
                np.asarray([smiles[i] for i in parts["train"]], dtype=object), data["train"][1],
                np.asarray([smiles[i] for i in parts["test"]], dtype=object), task,
            )  # fmt: skip
            metric, value = _score(task, data["test"][1], pred)
            res.add_row(name, METHOD_LABELS["rf"], metric, value, seed=seed, split=TEST_SPLIT)
            if seed == first_seed:
                predictions[name]["rf"] = pred
        predictions[name]["mean"] = _training_mean(task, data["train"][1], len(parts["test"]))
    res.claims = model_claims(predictions, first_seed)
    res.artefacts = {
        "descriptions": descriptions,
        "pretrain_history": pd.concat(histories, ignore_index=True),
        "embeddings": embeddings,
        "predictions": predictions,
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


#: The baselines LarDo's fine-tuned predictions are compared with, the trivial one first.
_MODEL_BASELINES = ("mean", "scratch", "attr_masking")


def model_claims(predictions: Mapping[str, Mapping[str, Any]], seed: int) -> list[Claim]:
    """Per dataset: LarDo pre-training, fine-tuned, beats the training mean / class prior, GIN from
    scratch and attribute masking (both fine-tuned), by a paired bootstrap over the same test
    molecules (ROC-AUC for classification, higher is better; RMSE for regression, lower is better).
    ``predictions``: dataset -> ``{"task", "y", "lardo", "mean", "scratch", "attr_masking", ...}``
    (n, n_tasks) arrays; several tasks are pooled over the labelled (molecule, task) pairs."""
    claims = []
    for name, pred in predictions.items():
        task, y = pred["task"], np.asarray(pred["y"], dtype=float)
        classification = task == "classification"
        metric, metric_name = (roc_auc_fast, "roc_auc") if classification else (_rmse, "rmse")
        if y.ndim == 2 and y.shape[1] > 1:
            metric_name += " (pooled over tasks)"
        labelled = ~np.isnan(y.ravel())
        for baseline in _MODEL_BASELINES:
            if baseline == "mean":
                beaten = "the training class prior" if classification else "the training mean"
                detail = "LarDo fine-tuned"
            else:
                beaten, detail = METHOD_LABELS[baseline], "both fine-tuned"
            claims.append(paired_claim(
                PAPER, f"{name}: LarDo beats {beaten}", NOT_REPORTED, y.ravel()[labelled],
                np.asarray(pred["lardo"]).ravel()[labelled],
                np.asarray(pred[baseline]).ravel()[labelled], metric, metric_name,
                higher_is_better=classification, detail=f"{detail}; {TEST_SPLIT}; seed {seed}",
            ))  # fmt: skip
    return claims


# ------------------------------------------------------------------------------------- calibration


def calibration_summary(calibration: pd.DataFrame) -> pd.DataFrame:
    """Per text variant: claims about RDKit-computable properties, value claims, contradicting
    ones and the share contradicting RDKit."""
    grouped = calibration.groupby("variant", sort=False)
    out = pd.DataFrame({
        "claims": grouped.size(),
        "value claims": grouped["kind"].apply(lambda k: int((k == "value").sum())),
        "contradicting": grouped["contradicts"].sum().astype(int),
    })  # fmt: skip
    out["share contradicting"] = out["contradicting"] / out["claims"]
    return out.reindex([v for v in VARIANTS if v in out.index])


def contradiction_indicators(
    calibration: pd.DataFrame, sizes: Mapping[str, int], variant: str
) -> np.ndarray:
    """1.0 for each description of ``variant`` that makes at least one claim contradicting RDKit,
    else 0.0, over the datasets' pools in order (``sizes``: dataset -> descriptions)."""
    part = calibration[(calibration["variant"] == variant) & calibration["contradicts"]]
    out = []
    for dataset, n in sizes.items():
        bad = set(part.loc[part["dataset"] == dataset, "molecule"])
        out.append(np.array([float(i in bad) for i in range(n)]))
    return np.concatenate(out) if out else np.zeros(0)


def _share(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(p))


def calibration(settings: Settings, descriptions: Mapping[str, Descriptions]) -> Results:
    """Checks every description of the training pools against RDKit (`calibration_table`).

    Rows: per text variant, ``share_of_claims_contradicting_rdkit`` (dataset ``all``). Claim:
    DSM calibration lowers the share of descriptions contradicting RDKit (LarDo vs LarDo without
    DSM values, paired over the same molecules). Artefacts: ``table`` (one row per checked claim),
    ``summary`` (`calibration_summary`), ``n_descriptions``."""
    tables = [
        calibration_table(desc.texts[variant], desc.values, variant).assign(dataset=name)
        for name, desc in descriptions.items()
        for variant in VARIANTS
    ]
    table = pd.concat(tables, ignore_index=True)
    summary = calibration_summary(table)
    res = Results()
    for variant, row in summary.iterrows():  # row is float64: the note reads "14.0 claims"
        res.add_row(
            "all",
            METHOD_LABELS[variant],
            "share_of_claims_contradicting_rdkit",
            row["share contradicting"],
            seed=settings.seed,
            note=f"{row['claims']} claims",
        )
    sizes = {name: len(desc.smiles) for name, desc in descriptions.items()}
    with_dsm = contradiction_indicators(table, sizes, "lardo")
    without = contradiction_indicators(table, sizes, "no_dsm")
    if len(with_dsm) >= 2:
        res.claims.append(paired_claim(
            PAPER, "DSM values cut descriptions contradicting RDKit", NOT_REPORTED,
            np.zeros(len(with_dsm)), with_dsm, without, _share,
            "share of descriptions contradicting RDKit", higher_is_better=False,
            detail=f"LarDo vs no DSM values; pools of {', '.join(sizes)}",
        ))  # fmt: skip
    res.artefacts = {"table": table, "summary": summary, "n_descriptions": sum(sizes.values())}
    return res


# --------------------------------------------------------------------------------- notebook tables


def example_descriptions(
    descriptions: Mapping[str, Descriptions], dataset: str, n: int = 3
) -> pd.DataFrame:
    """The first ``n`` pool molecules of ``dataset``: RDKit values beside each variant's text."""
    desc = descriptions[dataset]
    rows = []
    for i in range(min(n, len(desc.smiles))):
        values = desc.values.iloc[i]
        rdkit = "; ".join(value_text(k, values[k]) for k in DSM_TEXT_DESCRIPTORS[:4])
        row = {"smiles": desc.smiles[i], "RDKit": rdkit}
        row.update({METHOD_LABELS[v]: desc.texts[v][i] for v in VARIANTS})
        rows.append(row)
    return pd.DataFrame(rows)


def lardo_verdict(results: pd.DataFrame, metric: str = "roc_auc") -> pd.DataFrame:
    """Per classification dataset: mean test ROC-AUC of GIN from scratch and LarDo, their
    difference (mean over seeds of the per-seed difference), its std over seeds and whether the
    difference exceeds that std (an empty table when no row has ``metric``)."""
    scratch, lardo = METHOD_LABELS["scratch"], METHOD_LABELS["lardo"]
    columns = [scratch, lardo, "LarDo - scratch", "seed std of difference", "beyond seed spread"]
    table = results[results["metric"] == metric]
    if table.empty:
        return pd.DataFrame(columns=columns).rename_axis("dataset")
    wide = table.pivot_table(
        index=["dataset", "seed"], columns="method", values="value", aggfunc="first"
    )
    wide["LarDo - scratch"] = wide[lardo] - wide[scratch]
    out = wide.groupby("dataset")[[scratch, lardo, "LarDo - scratch"]].mean()
    out["seed std of difference"] = wide.groupby("dataset")["LarDo - scratch"].std().fillna(0.0)
    out["beyond seed spread"] = out["LarDo - scratch"].abs() > out["seed std of difference"]
    return out


def verdict_text(verdict: pd.DataFrame, settings: Settings) -> str:
    """One sentence on `lardo_verdict`'s table: the mean ROC-AUC change and whether it is an
    improvement on every classification set beyond the seed spread."""
    if verdict.empty:
        return "No classification dataset in this run: no ROC-AUC verdict."
    change = verdict["LarDo - scratch"].mean()
    clear = bool(verdict["beyond seed spread"].all()) and bool(
        (verdict["LarDo - scratch"] > 0).all()
    )
    head = f"Mean ROC-AUC change from LarDo pre-training over GIN from scratch: {change:+.3f}. "
    if clear:
        return head + "An improvement on every classification set, beyond the seed spread."
    return head + (
        "Not a clear improvement at this scale: on at least one set the change is negative or "
        f"within the seed spread ({settings.pool_train} described training molecules per dataset, "
        f"{settings.lm_model}, {settings.finetune_epochs} fine-tuning "
        f"epoch{'s' if settings.finetune_epochs != 1 else ''}, "
        f"{len(settings.seeds)} seed{'s' if len(settings.seeds) != 1 else ''})."
    )


def claims_table(res: Results) -> pd.DataFrame:
    """The claims of ``res`` as a table for the notebook (paper column dropped, numbers rounded)."""
    frame = res.claims_frame().drop(columns=["paper"])
    return frame.round({"ours": 3, "low": 3, "high": 3})


def stage1_answers(stage1: pd.DataFrame, width: int = 600) -> str:
    """The stage-1 answers, each cut at ``width`` characters, as printable text."""
    return "\n".join(
        f"--- {row.dataset}: stage-1 answer ---\n{row.answer[:width]}\n"
        for row in stage1.itertuples()
    )


def timings(res: Results) -> dict[str, int]:
    """Seconds spent pre-training and fine-tuning (rounded), from `pretrain_and_finetune`."""
    return {k: round(v) for k, v in res.artefacts["seconds"].items()}
