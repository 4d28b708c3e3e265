"""Notebook 00's settings and one function per Practical section that computes something."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from molkit.methods.experiment import Results
from molkit.methods.experiment import Settings as BaseSettings

#: Inverse L2 strengths the probe chooses from on the validation part.
PROBE_C = (0.001, 0.01, 0.1, 1.0)


@dataclass(frozen=True)
class Settings(BaseSettings):
    """``overview``: the datasets of the overview table (``("all",)``: every registered one but the
    full ChEBI-20); ``probe_n`` / ``map_n``: BBBP / ESOL molecules sampled for the probe and the map
    (None: all); ``n_seeds``: balanced scaffold splits of the probe; ``lm_model``: the chemical LM
    (registry name, Hugging Face id or folder)."""

    overview: tuple[str, ...] = ("all",)
    probe_n: int | None = None
    map_n: int | None = None
    n_seeds: int = 3
    lm_model: str = "rxnfp-bert"
    PROFILES = {
        "smoke": {
            "overview": ("bbbp", "esol", "mutag", "chebi20", "chchminer"),
            "probe_n": 300,
            "map_n": 200,
            "n_seeds": 2,
        },
        "default": {},
        "full": {"n_seeds": 5},
    }


def dataset_overview(settings: Settings) -> Results:
    """One row per dataset: kind, task, rows, targets, invalid rows, positive rate (single-task
    classification) and the upstream split. Artefacts: ``overview`` (the table) and ``frames``
    (the loaded DataFrames by name); rows: each dataset's ``n_rows``."""
    import pandas as pd

    from molkit import data

    registry = data.list_datasets()
    names = (
        [n for n in registry["name"] if n != "chebi20-full"]
        if tuple(settings.overview) == ("all",)
        else list(settings.overview)
    )
    res, rows, frames = Results(), [], {}
    for name in names:
        with warnings.catch_warnings():
            # the table's "invalid rows" column reports what each loader warns about
            warnings.simplefilter("ignore", UserWarning)
            df = data.load_dataset(name)
        frames[name] = df
        targets = df.attrs["targets"]
        row = {"dataset": name, "kind": df.attrs["kind"], "task": df.attrs["task"], "rows": len(df),
               "targets": len(targets), "invalid rows": df.attrs["n_invalid_rows"]}  # fmt: skip
        if df.attrs["task"] == "classification" and len(targets) == 1:
            row["positive rate"] = round(float(np.nanmean(df[targets[0]] > 0)), 3)
        if "split" in df.columns:
            row["upstream split"] = "/".join(
                f"{k}:{v}" for k, v in df["split"].value_counts().items()
            )
        rows.append(row)
        res.add_row(name, "dataset", "n_rows", len(df))
    res.artefacts.update(overview=pd.DataFrame(rows), frames=frames)
    return res


def probe_predictions(
    x: np.ndarray, y: np.ndarray, split: Mapping[str, Sequence[int]], Cs: Sequence[float] = PROBE_C
) -> tuple[np.ndarray, float]:
    """Test-part probabilities of a standardised logistic-regression probe whose ``C`` is chosen
    by validation ROC-AUC (ties: the larger C); returns ``(probabilities, C)``. The test labels
    are never read here."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    tr, va, te = (np.asarray(split[k]) for k in ("train", "valid", "test"))
    xs = StandardScaler().fit(x[tr]).transform(x)

    def fit(c: float):
        return LogisticRegression(C=c, max_iter=2000).fit(xs[tr], y[tr])

    best = max((roc_auc_score(y[va], fit(c).predict_proba(xs[va])[:, 1]), c) for c in Cs)
    return fit(best[1]).predict_proba(xs[te])[:, 1], best[1]


PAPER = "Notebook 00 (a linear probe, not a paper's claim)"


def probe_comparison(
    settings: Settings, smiles: Sequence[str], y: np.ndarray, features: Mapping[str, np.ndarray]
) -> Results:
    """Each representation in ``features`` (name -> (n, d) matrix; the first is the fingerprint,
    the second the LM embedding) probed on ``n_seeds`` balanced scaffold splits (80/10/10) of
    ``smiles``: one ``roc_auc`` row per seed and representation, and the claim rows: each probe
    against chance (ROC-AUC 0.5, its gate) and the LM embedding against the fingerprint on the
    same test molecules, gated, every split's test part its own stratum of the paired bootstrap
    (the splits differ; the probes are deterministic, so one training run each)."""
    from molkit import data
    from molkit.eval.metrics import roc_auc_fast
    from molkit.methods.experiment import gated, paired_claim

    res = Results()
    names = list(features)
    y = np.asarray(y)
    truth, groups, preds = [], [], {name: [] for name in names}
    for s in range(settings.n_seeds):
        split = data.scaffold_split(list(smiles), balanced=True, seed=s)
        test_labels = data.seal(y[np.asarray(split["test"])], f"BBBP test part of split {s}")
        for name in names:
            pred, c = probe_predictions(np.asarray(features[name]), y, split)
            preds[name].append(pred)
            with data.final_scoring():
                auc = roc_auc_fast(test_labels.read(), pred)
            res.add_row("bbbp", name, "roc_auc", auc, seed=s, split="scaffold_balanced",
                        note=f"C={c}")  # fmt: skip
        with data.final_scoring():
            truth.append(test_labels.read())
        groups += [s] * len(test_labels)
    with data.final_scoring():
        y_test = np.concatenate(truth)
    stacked = {name: np.concatenate(p) for name, p in preds.items()}
    chance = np.full(len(y_test), 0.5)
    where = f"BBBP, {settings.n_seeds} balanced scaffold splits (test parts pooled by split)"
    gates = [
        paired_claim(
            PAPER,
            f"a linear probe of {name} beats chance",
            "-",
            y_test,
            stacked[name],
            chance,
            roc_auc_fast,
            "ROC-AUC",
            groups=groups,
            detail=where,
            kind="gate",
            seed=settings.seed,
        )  # fmt: skip
        for name in names
    ]
    fingerprint, lm = names[0], names[-1]
    comparison = paired_claim(
        PAPER, f"{lm} beats {fingerprint} under a linear probe", "-", y_test, stacked[lm],
        stacked[fingerprint], roc_auc_fast, "ROC-AUC", groups=groups, detail=where,
        seed=settings.seed,
    )  # fmt: skip
    res.claims += [*gates, gated(comparison, gates)]
    return res
