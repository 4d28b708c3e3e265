"""The figures of notebook 01: each function returns a matplotlib figure."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from molkit.eval.metrics import summarize
from molkit.methods.molex.claims import PAPER_CALIBRATION_GAIN, PAPER_MUTAG_ACCURACY
from molkit.methods.molex.experiment import MAIN_METHODS
from molkit.viz.explain import attribution_grid, grouped_bars, speed_bars
from molkit.viz.pipeline import pipeline_figure

__all__ = [
    "accuracy_bars",
    "calibration_curves",
    "calibration_gain_bars",
    "explanation_bars",
    "explanation_examples",
    "finetune_curves",
    "gin_tuning",
    "loadings_heatmap",
    "lm_tuning_curves",
    "lora_curves",
    "molecule_contributions",
    "pipeline",
    "speed_figure",
]


def pipeline():
    """MoleX's steps as boxes and arrows (the paper's contributions filled)."""
    return pipeline_figure(
        [
            "molecule (SMILES)",
            "functional-group n-grams as SMILES fragments",
            "chemical LM, IB fine-tuned top layers",
            "bottleneck mean of each n-gram, summed",
            "sparse reduction",
            "logistic regression",
            "residual calibration (orthogonal complement)",
            ["prediction", "exact n-gram / atom contributions"],
        ],
        title="MoleX: an LLM-augmented linear model",
        highlight=[2, 4, 6],
    )


def _panels(n: int, height: float = 3.0, width: float = 3.4):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def lm_tuning_curves(candidates: Mapping):
    """The LM stage's candidates per dataset (``TuningSection.lm``): validation cross-entropy per
    epoch on the first fold's validation part (epoch 0: the untrained head), the kept epoch
    marked, the candidate chosen on the tuning part drawn thick."""
    fig, axes = _panels(len(candidates))
    for ax, (name, choice) in zip(axes, candidates.items(), strict=True):
        for i, c in enumerate(choice.candidates):
            r = c.history.records
            chosen = c.config == choice.chosen
            ax.plot(
                r["epoch"],
                r["valid_ce"],
                c=f"C{i}",
                lw=2.2 if chosen else 0.9,
                label=f"{c.config.layers} layers, β={c.config.beta:g} "
                f"(tuning {c.tune_log_loss:.3f})",
            )
            kept = r[r["epoch"] == c.history.best_epoch]
            ax.plot(kept["epoch"], kept["valid_ce"], "o", c=f"C{i}")
        ax.axhline(choice.prior_log_loss, c="grey", ls=":", lw=1, label="training prior (tuning)")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    axes[0].set_ylabel("validation cross-entropy")
    fig.tight_layout()
    return fig


def gin_tuning(table: pd.DataFrame):
    """Log-loss of every GIN candidate on each dataset's tuning part (the chosen one dark), the
    training prior's dashed (`TuningSection.gin_table`)."""
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = _panels(len(datasets), width=3.8)
    for ax, name in zip(axes, datasets, strict=True):
        part = table[table["dataset"] == name]
        labels = [
            f"{d}x{w} {p}"
            for d, w, p in zip(part["depth"], part["width"], part["pooling"], strict=True)
        ]
        ax.barh(
            labels, part["tuning log-loss"], color=["C3" if c else "C7" for c in part["chosen"]]
        )
        ax.axvline(part["prior log-loss"].iloc[0], c="k", ls="--", lw=1, label="training prior")
        ax.set_title(name)
        ax.set_xlabel("log-loss on the tuning part")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def finetune_curves(finetune: pd.DataFrame):
    """The cross-validation's LM runs per dataset: validation cross-entropy per epoch, mean over
    folds and seeds (thin: every run), for the chosen configuration (solid), beta = 0 (dashed)
    and the frozen LM's head (dotted); the KL term below."""
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(finetune["dataset"]))
    fig, axes = plt.subplots(2, len(datasets), figsize=(3.2 * len(datasets), 5.4), squeeze=False)
    styles = {"chosen": "-", "beta=0": "--", "frozen LM": ":"}
    for j, name in enumerate(datasets):
        part = finetune[finetune["dataset"] == name]
        for arm, ls in styles.items():
            runs = part[part["arm"] == arm]
            if not len(runs):
                continue
            for _, one in runs.groupby(["fold", "seed"]):
                axes[0, j].plot(one["epoch"], one["valid_ce"], c="C1", lw=0.3, ls=ls)
            mean = runs.groupby("epoch")[["train_ce", "valid_ce", "train_kl"]].mean()
            axes[0, j].plot(mean.index, mean["train_ce"], c="C0", ls=ls, label=f"train, {arm}")
            axes[0, j].plot(mean.index, mean["valid_ce"], c="C1", ls=ls, label=f"valid, {arm}")
            axes[1, j].plot(mean.index, mean["train_kl"], c="C2", ls=ls, label=arm)
        axes[0, j].set_title(f"{name} ({part['fold'].nunique()} folds)")
        axes[1, j].set_xlabel("epoch")
    axes[0, 0].set_ylabel("cross-entropy")
    axes[1, 0].set_ylabel("KL to N(0, I)")
    axes[0, 0].legend(fontsize=6)
    axes[1, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def lora_curves(curves: pd.DataFrame):
    """The LLM's LoRA runs: validation loss per optimiser step, one line per dataset and fold, the
    kept step marked (the lowest)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, ((name, fold), part) in enumerate(curves.groupby(["dataset", "fold"], sort=False)):
        ax.plot(part["step"], part["valid_loss"], c=f"C{i}", label=f"{name}, fold {fold}")
        best = part.loc[part["valid_loss"].idxmin()]
        ax.plot(best["step"], best["valid_loss"], "o", c=f"C{i}")
    ax.set_xlabel("optimiser step (0: before training)")
    ax.set_ylabel("validation loss (answer tokens)")
    ax.set_title("SmolLM2 LoRA fine-tuning")
    ax.legend(fontsize=7)
    return fig


def accuracy_bars(results: pd.DataFrame):
    """Test accuracy (mean ± std over folds) of the main methods per dataset, with the paper's
    MoleX accuracy on MUTAG as a dashed marker (its protocol differs). ``results``: the
    cross-validation rows."""
    summary = summarize(results[results["metric"] == "accuracy"])
    return grouped_bars(
        summary[summary["method"].isin(MAIN_METHODS)],
        ylabel="test accuracy",
        title="Accuracy (mean ± std over folds); dashed: the paper's MoleX on MUTAG",
        reference={"mutag": PAPER_MUTAG_ACCURACY},
    )


def explanation_bars(scores: pd.DataFrame):
    """Explanation AUC per dataset and method in the four readings (atom / group token, signed /
    |importance|), chance at 0.5, the molecules scored under each bar; a dataset whose ground
    truth is not enriched among positives is starred. ``scores``: `ExplanationSection.scores`."""
    import matplotlib.pyplot as plt

    readings = list(dict.fromkeys(scores["reading"]))
    fig, axes = plt.subplots(len(readings), 1, figsize=(11, 3.0 * len(readings)), squeeze=False)
    for ax, reading in zip(axes[:, 0], readings, strict=True):
        part = scores[scores["reading"] == reading]
        datasets = list(dict.fromkeys(part["dataset"]))
        methods = list(dict.fromkeys(part["method"]))
        width = 0.8 / len(methods)
        for j, method in enumerate(methods):
            rows = part[part["method"] == method].set_index("dataset").reindex(datasets)
            ax.bar(np.arange(len(datasets)) + j * width, rows["auc"], width, label=method)
        ticks = []
        for d in datasets:
            one = part[part["dataset"] == d]
            star = "" if one["enriched"].iloc[0] else "*"
            ticks.append(f"{d}{star}\n(n={int(one['n_explained'].max())})")
        ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, ticks)
        ax.axhline(0.5, c="grey", lw=0.8)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"AUC ({reading.replace('_abs', ', |importance|')})")
    axes[0, 0].legend(fontsize=8, ncol=len(methods))
    axes[0, 0].set_title("Explanation AUC on test molecules (*: ground truth not enriched)")
    fig.tight_layout()
    return fig


def calibration_gain_bars(gain: pd.DataFrame):
    """Calibration gain in points per dataset in accuracy and the |importance| explanation AUCs,
    with the paper's average gains dashed. ``gain``: `CalibrationSection.gain`."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
    for ax, (metric, paper) in zip(axes, PAPER_CALIBRATION_GAIN.items(), strict=True):
        part = gain[gain["metric"] == metric]
        ax.bar(part["dataset"], part["gain"])
        ax.axhline(paper, ls="--", c="k", lw=1, label="paper (average)")
        ax.axhline(0, c="grey", lw=0.8)
        ax.set_title(f"calibration gain in {metric} (points)")
        ax.legend(fontsize=8)
    return fig


def calibration_curves(histories: Mapping[int, pd.DataFrame], name: str):
    """Training (dotted) and validation log-loss per calibration round, one colour per fold; the
    kept round (the lowest validation loss) marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, hist in enumerate(histories.values()):
        label = "valid (solid) / train (dotted), a colour per fold" if i == 0 else None
        ax.plot(hist["round"], hist["valid_loss"], c=f"C{i % 10}", label=label)
        ax.plot(hist["round"], hist["train_loss"], c=f"C{i % 10}", ls=":")
        best = hist.loc[hist["valid_loss"].idxmin()]
        ax.plot(best["round"], best["valid_loss"], "o", c=f"C{i % 10}")
    ax.set_xlabel("calibration round")
    ax.set_ylabel("log-loss")
    ax.set_title(f"residual calibration on {name}")
    ax.legend(fontsize=7)
    return fig


def loadings_heatmap(loadings, weights, dataset: str):
    """The sparse reduction's loadings (components x bottleneck features; white: exactly zero)
    next to the logistic weight of each component."""
    import matplotlib.pyplot as plt

    L = np.asarray(loadings)
    fig, (ax, bx) = plt.subplots(
        1, 2, figsize=(12, 0.3 * len(L) + 1.8), gridspec_kw={"width_ratios": [6, 1]}
    )
    lim = float(np.abs(L).max()) or 1.0
    im = ax.imshow(np.where(L == 0, np.nan, L), aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim)
    ax.set_xlabel("feature (bottleneck mean dimension)")
    ax.set_ylabel("component")
    ax.set_title(f"{dataset}: sparse loadings ({np.mean(L == 0):.0%} exactly zero)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    bx.barh(np.arange(len(weights)), weights, color=["C3" if w > 0 else "C0" for w in weights])
    bx.set_ylim(len(weights) - 0.5, -0.5)
    bx.set_title("logistic weight")
    fig.tight_layout()
    return fig


def molecule_contributions(smiles: str, atom_scores, truth, title: str = ""):
    """One molecule's MoleX atom scores (red toward the explained class) next to its truth."""
    return attribution_grid([smiles], [atom_scores], [truth], [title])


def explanation_examples(examples: pd.DataFrame, n: int):
    """MoleX atom scores next to the ground truth for the first ``n`` test molecules with a
    ground truth (`DatasetRun.examples`); None when there is none."""
    ex = examples[examples["truth"].notna()].head(n)
    if not len(ex):
        return None
    legends = [
        f"(label {label}, predicted {pred})"
        for label, pred in zip(ex["label"], ex["prediction"], strict=True)
    ]
    return attribution_grid(
        ex["smiles"].tolist(), ex["molex"].tolist(), ex["truth"].tolist(), legends
    )


def speed_figure(report: dict, dataset: str):
    """Seconds per molecule of every stage of MoleX and of the two LM classifiers
    (`molkit.methods.molex.benchmark.speed_report`), log scale."""
    names = {
        "molex": "MoleX",
        "rxnfp_bert": "rxnfp-BERT classifier",
        "smollm2": "SmolLM2 classifier",
    }
    rows = []
    for key, label in names.items():
        if key not in report:
            continue
        entry = report[key]
        per_molecule = entry["seconds"] / report["molecules"]
        for stage, share in entry["shares"].items():
            rows.append(
                {
                    "pipeline": label,
                    "step": stage,
                    "seconds_per_molecule": max(share * per_molecule, 1e-9),
                }
            )
    return speed_bars(
        pd.DataFrame(rows),
        title=f"CPU inference on {dataset} ({report['torch_threads']} torch thread(s))",
    )
