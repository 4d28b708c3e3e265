"""The instruction LLM as a classifier on notebook 01's folds (`molkit.methods.molex.llm`), the
comparison the MoleX paper draws against LLM classifiers.

Per dataset, on the molecules it scores (the tuning part, and of the cross-validation part all
molecules of a probe / LoRA dataset, else a seeded random ``llm_molecules``):

* **zero-shot**: the label words' likelihoods after the question, as they are;
* **zero-shot, prior-corrected**: contextual calibration (Zhao et al. 2021) by the content-free
  inputs' probabilities or by the mean prediction on the fold's training molecules, whichever has
  the lower log-loss on the tuning part (none, if neither helps);
* **probe** (``llm_probe_datasets``): a logistic regression on the last hidden state, its C chosen
  on each fold's validation part;
* **LoRA** (``llm_lora_datasets``, the first ``llm_lora_folds`` folds): LoRA fine-tuning on the
  fold's training part through the toolkit's trainer (`molkit.models.lm.train_cached`), the fold's
  validation part evaluated every ``llm_lora_eval_every`` steps, the best state kept.

Test labels are read only to score the arms (inside `final_scoring`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molkit.data.sealed import final_scoring
from molkit.methods.molex.crossval import PRIOR, DatasetRun, accuracy, pooled_classes
from molkit.methods.molex.method import classification_scores, log_loss
from molkit.methods.molex.protocol import Splits
from molkit.methods.molex.records import LLMArm, LLMSection
from molkit.methods.molex.settings import Settings

__all__ = ["LLM_METHODS", "LLMArm", "LLMSection", "score_llm"]

#: The LLM rows, in the order they are judged.
LLM_METHODS = (
    "SmolLM2 zero-shot",
    "SmolLM2 zero-shot, prior-corrected",
    "SmolLM2 probe",
    "SmolLM2 LoRA",
)


def _scored(settings: Settings, name: str, splits: Splits) -> np.ndarray:
    """The cross-validation molecules the LLM scores: all of a probe / LoRA dataset, else a
    seeded random ``llm_molecules`` (labels are not looked at)."""
    tested = np.sort(splits.tested)
    n = settings.llm_molecules
    every = name in settings.llm_probe_datasets or name in settings.llm_lora_datasets
    if every or n is None or n >= len(tested):
        return tested
    rng = np.random.default_rng(settings.seed)
    return np.sort(rng.choice(tested, size=n, replace=False))


def _quietly(fn, *args):
    """``fn(*args)`` without transformers' progress bars (a tiny smoke LM is saved in shards)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return fn(*args)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _positions(scored: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.searchsorted(scored, idx)


def score_llm(
    settings: Settings,
    frames: dict[str, pd.DataFrame],
    splits: dict[str, Splits],
    prompts: dict[str, Any],
    runs: dict[str, DatasetRun],
) -> LLMSection:
    """Every LLM row on every dataset (module doc), with the tables of `LLMSection`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import molkit.methods.molex.llm as llm
    from molkit.models.lm import TrainConfig, load_lm, resolve_lm

    started = time.perf_counter()
    corpus = [s for df in frames.values() for s in df["smiles"]]
    corpus += [llm.task_prompt(p).question for p in prompts.values()]
    workdir = Path(tempfile.gettempdir()) / "molkit-molex-llm"
    lm_path = _quietly(resolve_lm, settings.llm_model, corpus, workdir)
    model, tokenizer = load_lm(lm_path, device="cpu")
    res = LLMSection(lm=(model, tokenizer), prompts=prompts)
    res.parameters = int(sum(p.numel() for p in model.parameters()))
    seconds, count = 0.0, 0
    corrections, priors, lora_rows, curves = [], [], [], []
    for name, df in frames.items():
        prompt, sp = prompts[name], splits[name]
        y, smiles = df["label"].to_numpy(), df["smiles"].to_numpy()
        cv_scored = _scored(settings, name, sp)
        scored = np.sort(np.concatenate([sp.tune, cv_scored]))
        zs = llm.zero_shot_scores(
            model, tokenizer, smiles[scored].tolist(), prompt, settings.llm_batch_size
        )
        seconds, count = seconds + zs.seconds, count + len(scored)
        proba, hidden = zs.proba, zs.hidden
        free = llm.content_free_proba(model, tokenizer, prompt)
        priors.append(
            {
                "dataset": name,
                **{
                    f"content-free P({w})": p
                    for w, p in zip(llm.task_prompt(prompt).words, free, strict=True)
                },
            }
        )
        # the correction, chosen on the tuning part (its "training mean": every scored CV molecule)
        tune_pos = _positions(scored, sp.tune)
        cv_mean = proba[_positions(scored, cv_scored)].mean(0)
        options = {"none": None, "content-free": free, "training mean": cv_mean}
        losses = {}
        for option, prior in options.items():
            p = llm.correct_prior(proba[tune_pos], prior)
            losses[option] = log_loss(y[sp.tune], p)
            corrections.append(
                {
                    "dataset": name,
                    "correction": option,
                    "tuning log-loss": losses[option],
                    "tuning accuracy": float(np.mean(p.argmax(1) == y[sp.tune])),
                }
            )
        chosen = min(losses, key=losses.get)
        for row in corrections[-len(options) :]:
            row["chosen"] = row["correction"] == chosen
        arms = {m: ([], []) for m in LLM_METHODS}
        for k, fold in enumerate(sp.folds):
            te = np.intersect1d(fold["test"], cv_scored)
            if len(te):
                pos = _positions(scored, te)
                train_pos = _positions(scored, np.intersect1d(fold["train"], cv_scored))
                prior = {
                    "none": None,
                    "content-free": free,
                    "training mean": proba[train_pos].mean(0) if len(train_pos) else cv_mean,
                }
                arms[LLM_METHODS[0]][0].append(te)
                arms[LLM_METHODS[0]][1].append(proba[pos])
                arms[LLM_METHODS[1]][0].append(te)
                arms[LLM_METHODS[1]][1].append(llm.correct_prior(proba[pos], prior[chosen]))
            tr, va = fold["train"], fold["valid"]
            if name in settings.llm_probe_datasets:

                def h(idx, hidden=hidden, scored=scored):
                    return hidden[_positions(scored, idx)]

                best = None
                for c in (0.01, 0.1, 1.0):
                    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
                    probe.fit(h(tr), y[tr])
                    loss = log_loss(y[va], probe.predict_proba(h(va)))
                    best = best if best is not None and best[0] <= loss else (loss, probe)
                arms[LLM_METHODS[2]][0].append(fold["test"])
                arms[LLM_METHODS[2]][1].append(best[1].predict_proba(h(fold["test"])))
            folds = settings.llm_lora_folds or len(sp.folds)
            if name in settings.llm_lora_datasets and k < folds:
                config = TrainConfig(
                    epochs=settings.llm_lora_epochs,
                    lr=2e-4,
                    batch_size=8,
                    seed=settings.seed + k,
                    eval_every=settings.llm_lora_eval_every,
                    patience=settings.llm_lora_patience,
                    eval_at_start=True,
                )
                run = llm.fine_tune_label_classifier(
                    lm_path,
                    prompt,
                    smiles[tr].tolist(),
                    y[tr],
                    smiles[fold["test"]].tolist(),
                    config=config,
                    valid_smiles=smiles[va].tolist(),
                    valid_labels=y[va],
                    key={
                        "fold": k,
                        "folds": len(sp.folds),
                        "cv_seed": settings.seed,
                        "tune_fraction": settings.tune_fraction,
                    },
                    batch_size=settings.llm_batch_size,
                )
                arms[LLM_METHODS[3]][0].append(fold["test"])
                arms[LLM_METHODS[3]][1].append(run.scores.proba)
                lora_rows.append({"dataset": name, "fold": k, "training": run.train.summary()})
                curves.append(run.train.curve_frame().assign(dataset=name, fold=k))
        for method, (idx, probas) in arms.items():
            if idx:
                order = np.argsort(np.concatenate(idx), kind="stable")
                res.arms.setdefault(method, {})[name] = LLMArm(
                    np.concatenate(idx)[order], np.concatenate(probas)[order][None]
                )
    res.rate = count / seconds if seconds > 0 else float("nan")
    res.corrections, res.priors = pd.DataFrame(corrections), pd.DataFrame(priors)
    res.lora = pd.DataFrame(lora_rows, columns=["dataset", "fold", "training"])
    res.lora_curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    _score(settings, res, runs)
    res.add_row(
        "all", "LLM classifier", "section_seconds", time.perf_counter() - started, settings.seed
    )
    return res


def _score(settings: Settings, res: LLMSection, runs: dict[str, DatasetRun]) -> None:
    """The table and the rows: each LLM row against the training prior and MoleX on the same
    test molecules (the one place this section reads test labels)."""
    table = []
    with final_scoring():
        for method, parts in res.arms.items():
            for name, arm in parts.items():
                one = {name: runs[name]}
                y, prior = pooled_classes(one, PRIOR, {name: arm.idx})
                _, mx = pooled_classes(one, "MoleX", {name: arm.idx})
                scores = classification_scores(y, arm.proba[0])
                table.append(
                    {
                        "dataset": name,
                        "method": method,
                        "molecules": len(y),
                        "accuracy": scores["accuracy"],
                        "training prior, same molecules": accuracy(y, prior[0]),
                        "MoleX, same molecules": float(np.mean([accuracy(y, p) for p in mx])),
                        "roc_auc": scores["roc_auc"],
                    }
                )
                note = f"{len(y)} cross-validation test molecules"
                for metric in ("accuracy", "roc_auc"):
                    res.add_row(name, method, metric, scores[metric], settings.seed, "test", note)
    res.table = pd.DataFrame(table)
    res.add_row("all", "SmolLM2 zero-shot", "molecules_per_s", res.rate, settings.seed)
    res.add_row("all", "SmolLM2", "n_parameters", res.parameters, settings.seed)
