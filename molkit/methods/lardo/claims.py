"""MolGraph-LarDo's claims: what the paper says, and every claim row 03_lardo makes from its
sections' results (`paper_claims`), each learned arm gated against its trivial baseline first
(`molkit.methods.experiment.gated`), and the Discussion's sentences printed from them
(`discussion`).

The paper (arXiv 2408.10124) states its effects in words; its abstract gives no figure, so no row
carries a paper size. A row cites the paper's direction only where the protocol is the paper's
(the official split); rows on molkit's balanced splits are probes, and so are the frozen-probe,
retrieval and DSM-only rows (no such arm in the paper).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from molkit.data import final_scoring
from molkit.eval.metrics import roc_auc_fast
from molkit.methods.experiment import HOLDS, NOT_JUDGED, Claim, Results, gated, paired_claim
from molkit.methods.lardo.experiment import (
    Benchmark,
    Calibration,
    DatasetPredictions,
    Retrieval,
    Stage1,
)
from molkit.methods.lardo.method import dataset_label
from molkit.methods.lardo.protocol import PROTOCOLS
from molkit.methods.lardo.settings import METHOD_LABELS

PAPER = "MolGraph-LarDo (arXiv 2408.10124)"
#: What the paper claims (its abstract), and the rows that test each here.
PAPER_CLAIMS = pd.DataFrame(
    [
        ("DSMs calibrate the LLM's knowledge, making its descriptions more precise",
         "calibration: DSM values cut the share of checkable claims contradicting RDKit"),
        ("aligning graphs with the descriptions guides pre-training: better property "
         "prediction", "official split: LarDo pre-training beats GIN from scratch / attribute "
         "masking"),
        ("(not claimed; what the two above rest on) the text tells the molecules apart",
         "retrieval: each text source above chance; the LLM adds information beyond the DSM "
         "values"),
    ],
    columns=["the paper (abstract, no figures)", "tested here by"],
)  # fmt: skip
DIRECTION = "direction only (abstract, no figure); not comparable in size: {why}"
PROBE = "probe: not in the paper"
GATE = "gate (no paper figure)"
BALANCED = "probe: balanced scaffold splits (the paper fine-tunes on MolCLR's deterministic one)"

#: (method, baseline, what the claim says, whether the paper states its direction, the protocols
#: it is made on); each comparison changes one factor. ``*_frozen``: the frozen encoders' linear
#: probes.
BOTH, BALANCED_ONLY = ("official", "balanced"), ("balanced",)
MODEL_COMPARISONS = (
    ("lardo", "scratch", "LarDo pre-training beats GIN from scratch (both fine-tuned)", True,
     BOTH),
    ("lardo", "attr_masking", "LarDo pre-training beats attribute masking (both fine-tuned)",
     True, BOTH),
    ("lardo", "dsm_only", "LLM descriptions beat the DSM text alone (both fine-tuned)", False,
     BOTH),
    ("lardo_frozen", "scratch_frozen", "LarDo pre-training beats a random GIN (frozen probes)",
     False, BALANCED_ONLY),
    ("lardo_ablation_pool", "no_dsm",
     "DSM values in the prompt help pre-training (ablation pool, fine-tuned)", False, BOTH),
    ("lardo_ablation_pool", "no_stage1",
     "stage 1 + DSM values beat the official no-stage-1 ablation (ablation pool, fine-tuned)",
     False, BOTH),
)  # fmt: skip
#: Retrieval comparisons: (source, other, what the claim says); each changes the text only.
RETRIEVAL_COMPARISONS = (
    ("lardo", "dsm_only",
     "the LLM adds information beyond the DSM values (LarDo text vs DSM text)"),
    ("lardo", "no_dsm", "the DSM values make the LLM's text more informative"),
    ("lardo_raw", "lardo", "the <MOLECULE> substitution removes information (SMILES kept vs "
     "substituted)"),
)  # fmt: skip
RETRIEVAL_K = 5


def _arm_label(arm: str) -> str:
    frozen = arm.endswith("_frozen")
    return METHOD_LABELS[arm.removesuffix("_frozen")] + (" (frozen probe)" if frozen else "")


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    from molkit.eval.metrics import regression_metrics

    return regression_metrics(y, p)["rmse"]


def _mean(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(p))


@dataclass
class _Items:
    """One protocol's test items of one dataset: labels, per-arm predictions (one row per
    training seed where the seeds share the split), the split of each item, the units."""

    y: np.ndarray
    preds: dict[str, np.ndarray]
    groups: np.ndarray | None
    units: int


def _protocol_items(dp: DatasetPredictions, protocol: str) -> _Items | None:
    """The final scoring's view of one protocol: the official split's seeds stacked as
    (n_seeds, n_items) per arm, the balanced splits pooled with their split as the group;
    labelled (molecule, task) entries only. Opens the test labels (`final_scoring`)."""
    units = dp.protocol(protocol)
    if not units:
        return None
    with final_scoring():
        ys = [np.asarray(u.y, dtype=float).ravel() for u in units]
    arms = set.intersection(*(set(u.preds) for u in units))
    if protocol == "official":
        if any(not np.array_equal(ys[0], y, equal_nan=True) for y in ys):
            raise ValueError("the official split's units must share their test part")
        keep = ~np.isnan(ys[0])
        preds = {a: np.vstack([np.ravel(u.preds[a])[keep] for u in units]) for a in arms}
        preds = {a: p[0] if len(p) == 1 or a == "mean" else p for a, p in preds.items()}
        return _Items(ys[0][keep], preds, None, len(units))
    y = np.concatenate(ys)
    keep = ~np.isnan(y)
    groups = np.concatenate([np.full(len(v), u.split) for v, u in zip(ys, units, strict=True)])
    preds = {a: np.concatenate([np.ravel(u.preds[a]) for u in units])[keep] for a in arms}
    return _Items(y[keep], preds, groups[keep], len(units))


@dataclass(frozen=True)
class _Context:
    """What every claim row of one dataset and protocol shares."""

    dataset: str
    where: str
    how: str
    items: _Items
    classification: bool

    @property
    def trivial(self) -> str:
        return "the training class prior" if self.classification else "the training mean"

    def compare(self, a: str, b: str, text: str, figure: str, kind: str) -> Claim:
        metric, name = (roc_auc_fast, "roc_auc") if self.classification else (_rmse, "rmse")
        unit = "mean over splits" if self.items.groups is not None else "mean over seeds"
        against = _arm_label(b) if b != "mean" else self.trivial
        return paired_claim(
            PAPER, f"{self.dataset}, {self.where}: {text}", figure, self.items.y,
            self.items.preds[a], self.items.preds[b], metric, f"{name} ({unit})",
            higher_is_better=self.classification, groups=self.items.groups,
            detail=f"{_arm_label(a)} vs {against}; {self.how}", kind=kind,
        )  # fmt: skip


def model_claims(bench: Benchmark) -> list[Claim]:
    """Per protocol (the official split first) and dataset: every arm of a `MODEL_COMPARISONS`
    row that ran, against the trivial baseline (training mean / class prior; kind ``gate``), then
    each comparison through `gated`. The official split's seeds enter the bootstrap as training
    seeds; the balanced splits are resampled within each split (each split's ROC-AUC or RMSE,
    averaged over splits)."""
    why = "SmolLM2-135M texts, a 64-wide GIN (the paper: Mistral-7B, 300)"
    claims = []
    for protocol in PROTOCOLS:
        official = protocol == "official"
        for name, dp in bench.predictions.items():
            items = _protocol_items(dp, protocol)
            if items is None:
                continue
            how = (
                f"MolCLR's deterministic scaffold split, {items.units} training seed(s)"
                if official
                else f"{items.units} balanced scaffold split(s), one run each"
            )
            where = "official split" if official else "balanced splits (probe)"
            ctx = _Context(dataset_label(name), where, how, items, dp.task == "classification")
            rows = [
                r[:4]
                for r in MODEL_COMPARISONS
                if protocol in r[4] and r[0] in items.preds and r[1] in items.preds
            ]
            arms = list(dict.fromkeys(a for r in rows for a in r[:2]))
            gates = {
                a: ctx.compare(a, "mean", f"{_arm_label(a)} beats {ctx.trivial}", GATE, "gate")
                for a in arms
            }
            claims += list(gates.values())
            for a, b, text, cited in rows:
                if not official:
                    figure = BALANCED
                else:
                    figure = DIRECTION.format(why=why) if cited else PROBE
                claim = ctx.compare(a, b, text, figure, "comparison")
                claims.append(gated(claim, [gates[a], gates[b]]))
    return claims


def retrieval_claims(retrieval: Retrieval, k: int = RETRIEVAL_K) -> list[Claim]:
    """Top-``k`` held-out retrieval: each text source against chance (kind ``gate``), then each
    `RETRIEVAL_COMPARISONS` row through `gated`; a paired bootstrap over the held-out molecules
    (resampled within each dataset) and the training seeds."""
    if not retrieval.hits or len(retrieval.groups) < 2:
        return []
    datasets = ", ".join(dataset_label(g) for g in dict.fromkeys(retrieval.groups.tolist()))
    n = len(retrieval.groups)
    chance = float(np.mean([retrieval.chance[k][retrieval.groups == g].mean()
                            for g in dict.fromkeys(retrieval.groups.tolist())]))  # fmt: skip
    detail = f"{n} held-out molecules of {datasets} ({retrieval.split}); chance {chance:.3f}"

    def compare(a: np.ndarray, b: np.ndarray, text: str, kind: str, what: str) -> Claim:
        return paired_claim(
            PAPER, f"retrieval: {text}", PROBE, np.zeros(n), a, b, _mean,
            f"top-{k} retrieval rate (mean over datasets)", groups=retrieval.groups,
            detail=f"{what}; {detail}", kind=kind,
        )  # fmt: skip

    gates = {
        s: compare(hits[k], retrieval.chance[k],
                   f"{METHOD_LABELS[s]} identifies its molecule above chance (top {k})", "gate",
                   f"{METHOD_LABELS[s]} vs chance")
        for s, hits in retrieval.hits.items()
    }  # fmt: skip
    claims = list(gates.values())
    for a, b, text in RETRIEVAL_COMPARISONS:
        if a in gates and b in gates:
            c = compare(retrieval.hits[a][k], retrieval.hits[b][k], f"{text} (top {k})",
                        "comparison", f"{METHOD_LABELS[a]} vs {METHOD_LABELS[b]}")  # fmt: skip
            claims.append(gated(c, [gates[a], gates[b]]))
    return claims


def calibration_claims(
    calib: Calibration, arm: str = "lardo", other: str = "no_dsm"
) -> list[Claim]:
    """ "DSM values cut the share of checkable claims that contradict RDKit": contradictions per
    checkable claim (a ratio of sums) with and without the DSM values, paired over the same
    molecules (each resample draws molecules, and with them every claim each arm made about
    them). The LLM is not trained here: a reference row, no gate."""
    if arm not in calib.counts or other not in calib.counts or len(calib.counts[arm][0]) < 2:
        return []
    (ca, na), (cb, nb) = calib.counts[arm], calib.counts[other]
    contradictions, claims = np.concatenate([ca, cb]), np.concatenate([na, nb])
    n = len(ca)

    def share(y: np.ndarray, pointers: np.ndarray) -> float:
        """Contradictions per checkable claim over the resampled molecules; ``pointers`` index
        one arm's half of the stacked counts (the bootstrap resamples them like items)."""
        at = np.asarray(pointers, dtype=int)
        total = claims[at].sum()
        return float(contradictions[at].sum() / total) if total else math.nan

    return [paired_claim(
        PAPER, "calibration: DSM values cut the share of checkable claims contradicting RDKit",
        "direction only (abstract: DSMs calibrate the LLM); no figure", np.zeros(n),
        np.arange(n), np.arange(n) + n, share, "contradictions per checkable claim",
        higher_is_better=False,
        detail=f"{METHOD_LABELS[arm]}: {int(ca.sum())} of {int(na.sum())} checkable claims; "
        f"{METHOD_LABELS[other]}: {int(cb.sum())} of {int(nb.sum())}; the same {n} molecules of "
        f"{', '.join(dataset_label(d) for d in calib.datasets)}",
    )]  # fmt: skip


@dataclass
class ClaimSet(Results):
    """`paper_claims`: every claim row of the notebook (``claims``), for the record."""

    def table(self) -> pd.DataFrame:
        """The claims as the notebook shows them, numbers rounded, the paper's column beside."""
        frame = self.claims_frame().drop(columns=["paper"])
        return frame.round({"ours": 3, "low": 3, "high": 3})

    def verdicts(self) -> str:
        return verdict_text(self)


def paper_claims(bench: Benchmark, retrieval: Retrieval, calib: Calibration) -> ClaimSet:
    """Every claim 03_lardo makes: retrieval (what the text carries) first, then the model rows
    (official split, then balanced), then the calibration row."""
    return ClaimSet(
        claims=retrieval_claims(retrieval) + model_claims(bench) + calibration_claims(calib)
    )


def verdict_text(res: Results) -> str:
    """One line per comparison: its verdict on each dataset and protocol with the difference and
    its interval (gates left out: the comparisons name them)."""
    rows = [c for c in res.claims if c.kind != "gate"]
    if not rows:
        return "No comparison rows in this run."
    by: dict[str, list[str]] = {}
    for c in rows:
        where, _, text = c.claim.partition(": ")
        by.setdefault(text, []).append(f"{where} {_verdict(c)}")
    return "\n".join(f"{text}: {'; '.join(parts)}" for text, parts in by.items())


def _verdict(c: Claim) -> str:
    """``holds (+0.012 [+0.003, +0.020], 3 seed(s))``, or for a comparison left unjudged, which
    arm's gate did not hold (``not judged: gate of GIN from scratch undecided``)."""
    if c.verdict == NOT_JUDGED:
        failed = []
        for reason in c.detail.removeprefix("not judged: ").split("; gate "):
            verdict, _, gate = reason.removeprefix("gate ").partition(": ")
            arm = gate.split(": ", 1)[-1].split(" beats ")[0].split(" identifies ")[0]
            failed.append(f"{arm} {verdict}")
        return f"{c.verdict}: gate of {', '.join(failed)}"
    return f"{c.verdict} ({c.ours:+.3f} [{c.low:+.3f}, {c.high:+.3f}], {c.seeds_text} seed(s))"


def _find(claims: Sequence[Claim], text: str) -> Claim | None:
    return next((c for c in claims if text in c.claim), None)


def discussion(
    stage1: Stage1,
    bench: Benchmark,
    retrieval: Retrieval,
    calib: Calibration,
    claims: ClaimSet,
) -> str:
    """The Discussion, printed from the run: what the texts carry (retrieval) first, then what
    that means for the pre-training rows, the calibration per checkable claim, the official split
    beside the balanced ones, stage 1 and pre-training's stopping."""
    lines = []
    table = retrieval.table[retrieval.table["k"] == RETRIEVAL_K] if len(retrieval.table) else None
    if table is not None and len(table):
        n = int(table["held-out molecules"].iloc[0])
        parts = [
            f"{r['source']} {r['hit rate']:.3f} (chance {r['chance']:.3f}, "
            f"difference [{r['low']:+.3f}, {r['high']:+.3f}])"
            for _, r in table.iterrows()
        ]
        lines.append(
            f"What the text tells about its molecule: after pre-training on each text source, a "
            f"graph finds its own text among the top {RETRIEVAL_K} of the held-out texts at "
            f"these rates ({n} held-out molecules, {len(retrieval.seeds)} seed(s)): "
            + "; ".join(parts)
            + "."
        )
        lardo_gate = _find(claims.claims, f"{METHOD_LABELS['lardo']} identifies its molecule")
        beyond = _find(claims.claims, "the LLM adds information beyond the DSM values")
        if lardo_gate is not None and lardo_gate.verdict != HOLDS:
            lines.append(
                "LarDo's texts do not identify their molecules better than chance here "
                f"({lardo_gate.verdict}), so every LarDo pre-training row below measures "
                "pre-training on targets that carry no molecule-specific information we can find."
            )
        elif beyond is not None:
            lines.append(
                f"LarDo's texts identify their molecules above chance; that the LLM adds "
                f"information beyond the DSM values is {_verdict(beyond)}, so the LarDo "
                "pre-training rows measure the DSM values passed through the LLM at best."
            )
    calib_claim = _find(claims.claims, "checkable claims contradicting RDKit")
    if calib_claim is not None:
        s = calib.summary
        lines.append(
            "Calibration per checkable claim: "
            + "; ".join(
                f"{METHOD_LABELS[v]} {int(s.loc[v, 'contradictions'])} of "
                f"{int(s.loc[v, 'checkable_claims'])} contradict RDKit "
                f"({s.loc[v, 'share_descriptions_with_checkable_claim']:.3f} of descriptions make "
                "one)"
                for v in s.index
            )
            + f". {calib_claim.claim.split(': ', 1)[1]}: {_verdict(calib_claim)}."
        )
    echo = calib.summary["share_descriptions_echoing_smiles"] if len(calib.summary) else None
    if echo is not None and "lardo" in echo:
        lines.append(
            f"{echo['lardo']:.3f} of LarDo's descriptions repeat their SMILES; the official "
            "substitution replaces it by <MOLECULE> before embedding (retrieval with the SMILES "
            "kept is the last retrieval row)."
        )
    lines.append("Model rows, the official split (the protocol row) beside molkit's balanced "
                 "splits:")  # fmt: skip
    lines += [
        "  " + line for line in verdict_text(ClaimSet(claims=[
            c for c in claims.claims if not c.claim.startswith(("retrieval", "calibration"))
        ])).splitlines()
    ]  # fmt: skip
    table1 = stage1.table
    named = sum(len(n) for n in table1["free text: names"])
    mapped = sum(len(m) for m in table1["free text: mapped"])
    lines.append(
        f"Stage 1 (free text) named {named} properties over {len(table1)} datasets; {mapped} map "
        f"to a descriptor. Ranked stage 1 kept: "
        + "; ".join(f"{r['dataset']}: {', '.join(r['ranked: kept'])}" for _, r in table1.iterrows())
    )
    epochs = bench.chosen_epochs()
    if len(epochs):
        kept = epochs.xs("pre-training", level="stage") if "pre-training" in set(
            epochs.index.get_level_values("stage")) else pd.DataFrame()  # fmt: skip
        for (protocol, dataset, method), row in kept.iterrows():
            if method == "lardo":
                lines.append(
                    f"{dataset} ({protocol}): LarDo pre-training kept epoch "
                    f"{row['epoch_kept']:.1f} of {row['epochs_run']:.1f} run (mean over "
                    f"{int(row['units'])} unit(s))"
                )
    verdicts = pd.Series([c.verdict for c in claims.claims if c.kind != "gate"]).value_counts()
    lines.append(f"Comparison rows: {int(verdicts.sum())}; "
                 + ", ".join(f"{k} {v}" for k, v in verdicts.items()))  # fmt: skip
    return "\n".join(lines)
