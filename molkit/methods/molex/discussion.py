"""Notebook 01's comparison with the paper's numbers and its Discussion, every sentence computed
from this run's sections and claims."""

from __future__ import annotations

import numpy as np
import pandas as pd

from molkit.data.sealed import final_scoring
from molkit.methods.experiment import NOT_JUDGED
from molkit.methods.molex.claims import (
    OFFICIAL_READING,
    PAPER_CALIBRATION_GAIN,
    PAPER_MUTAG_ACCURACY,
    PAPER_SPEEDUP,
    READING_NAMES,
    ClaimSet,
)
from molkit.methods.molex.crossval import accuracy, pooled_classes
from molkit.methods.molex.records import (
    CalibrationSection,
    CVSection,
    DataSection,
    ExplanationSection,
    LLMSection,
    SpeedSection,
    TuningSection,
)

__all__ = ["findings", "paper_comparison"]


# --------------------------------------------------------------------------- the paper's numbers


def paper_comparison(cv: CVSection, calib: CalibrationSection, speed: SpeedSection) -> pd.DataFrame:
    """The paper's headline numbers next to this run's (NaN where this run lacks them)."""
    gain = calib.gain.groupby("metric")["gain"].mean()
    mutag = np.nan
    if "mutag" in cv.runs:
        with final_scoring():
            y, a = pooled_classes({"mutag": cv.runs["mutag"]}, "MoleX")
        mutag = float(np.mean([accuracy(y, p) for p in a]))
    report = speed.report
    entries = [
        ("MUTAG accuracy, MoleX (probe: protocols differ)", PAPER_MUTAG_ACCURACY, mutag),
        (
            "calibration gain, accuracy (points, mean over datasets)",
            PAPER_CALIBRATION_GAIN["accuracy"],
            gain.get("accuracy", np.nan),
        ),
        (
            "calibration gain, explanation AUC per token |importance| (points)",
            PAPER_CALIBRATION_GAIN["token_auc_abs"],
            gain.get("token_auc_abs", np.nan),
        ),
        (
            "speed-up over the LLM classifier, end to end (x)",
            PAPER_SPEEDUP,
            report.get("speedup_vs_smollm2", np.nan),
        ),
        (
            "speed-up over the chemical LM classifier, end to end (x)",
            np.nan,
            report.get("speedup_vs_rxnfp_bert", np.nan),
        ),
    ]
    return pd.DataFrame(entries, columns=["quantity", "paper", "this run"])


# --------------------------------------------------------------------------- discussion


def findings(
    data: DataSection,
    tuning: TuningSection,
    cv: CVSection,
    expl: ExplanationSection,
    llm: LLMSection | None,
    speed: SpeedSection,
    calib: CalibrationSection,
    claims: ClaimSet,
) -> list[str]:
    """The Discussion's sentences, each computed from this run's results."""
    out = []
    gain = cv.lm_gain.set_index("dataset")
    for name, choice in tuning.lm.items():
        g = gain.loc[name]
        out.append(
            f"{name}: the tuning part chose {choice.chosen} (of {len(choice.candidates)} "
            f"candidates); the fine-tuned LM's pooled test accuracy {g['LM accuracy']:.3f} against "
            f"the training prior's {g['prior accuracy']:.3f}: {g['difference']:+.3f} "
            f"[{g['low']:+.3f}, {g['high']:+.3f}], {g['verdict']} ({g['seeds']} seeds)."
        )
    for name, choice in tuning.gin.items():
        chosen = choice.table[choice.table["chosen"]].iloc[0]
        frame = cv.frame()
        acc = frame[(frame["dataset"] == name) & (frame["metric"] == "accuracy")]
        by = acc.groupby("method")["value"].mean()
        majority = float(data.overview.set_index("dataset").loc[name, "majority-class rate"])
        out.append(
            f"{name}: GIN ({choice.chosen}) {by.get('GIN', np.nan):.3f} mean test accuracy over "
            f"folds against a majority-class rate of {majority:.3f} (on the tuning part "
            f"{chosen['tuning accuracy']:.3f} against the prior's {chosen['prior accuracy']:.3f}); "
            f"MoleX {by.get('MoleX', np.nan):.3f}, Morgan FP + RF "
            f"{by.get('Morgan FP + RF', np.nan):.3f}."
        )
    gates = [c for c in claims.claims if c.kind == "gate"]
    failed = [c.claim for c in gates if c.verdict != "holds"]
    judged = [c for c in claims.claims if c.kind == "comparison"]
    withheld = sum(c.verdict == "not judged" for c in judged)
    out.append(
        f"Gates: {len(gates) - len(failed)} of {len(gates)} arms beat their trivial baseline; "
        f"{withheld} of {len(judged)} comparisons are withheld because an arm failed its gate"
        + (
            f" (failed: {'; '.join(failed[:6])}{' ...' if len(failed) > 6 else ''})."
            if failed
            else "."
        )
    )
    enrichment = data.enrichment
    judged_truth = [n for n, e in enrichment.items() if e.share_positives is not None]
    enriched = [n for n in judged_truth if enrichment[n].enriched]
    if not judged_truth:
        out.append("No dataset of this run has an explanation ground truth.")
    else:
        out.append(
            "Ground truth enriched among positives (one-sided Fisher p < 0.05): "
            + (
                ", ".join(
                    f"{n} (ratio {enrichment[n].ratio:.2f}, p = {enrichment[n].p_value:.2g})"
                    for n in enriched
                )
                or "none"
            )
            + "; not enriched: "
            + (
                ", ".join(
                    f"{n} (ratio {enrichment[n].ratio:.2f})"
                    for n in judged_truth
                    if n not in enriched
                )
                or "none"
            )
            + ". Only the enriched ones enter pooled explanation verdicts."
        )
    scores = expl.scores.set_index(["dataset", "method", "reading"])["auc"]
    for name in judged_truth:
        parts = [
            f"{READING_NAMES[r]}: MoleX {scores.get((name, 'MoleX', r), np.nan):.3f}, Morgan "
            f"{scores.get((name, 'Morgan FP + LR', r), np.nan):.3f}, random "
            f"{scores.get((name, 'Random attribution', r), np.nan):.3f}"
            for r in READING_NAMES
        ]
        out.append(f"{name} explanation AUC, " + "; ".join(parts) + ".")
    if judged_truth:
        out.append(f"The explanation reading: {OFFICIAL_READING}.")
    calibration = next(
        (c for c in claims.claims if c.claim.startswith("residual calibration makes")), None
    )
    acc_gain = calib.gain[calib.gain["metric"] == "accuracy"]["gain"]
    rounds = calib.rounds
    if calibration is not None:
        judged = calibration.verdict != NOT_JUDGED
        out.append(
            f"Calibration: {acc_gain.mean():+.1f} accuracy points on average over datasets; "
            + (
                f"the paired difference {calibration.ours:+.3f} [{calibration.low:+.3f}, "
                f"{calibration.high:+.3f}] ({calibration.verdict}); "
                if judged
                else f"the claim is {calibration.verdict_text}; "
            )
            + (
                f"the paper's +0.070 lies {calibration.paper_position} our interval"
                if calibration.paper_position
                else "without an interval the paper's +0.070 cannot be placed"
            )
            + f". Validation kept {rounds['mean'].mean():.0f} rounds per fold on average (cap "
            f"{int(rounds['cap'].iloc[0])}; share of fold-seeds at the cap "
            f"{rounds['folds at the cap (share)'].mean():.2f})."
        )
    if llm is not None and len(llm.table):
        chosen = llm.corrections[llm.corrections["chosen"]].set_index("dataset")["correction"]
        out.append(
            "LLM prior correction chosen on the tuning part: "
            + ", ".join(f"{n}: {c}" for n, c in chosen.items())
            + "."
        )
        for row in llm.table.to_dict("records"):
            out.append(
                f"{row['method']} on {row['dataset']}: accuracy {row['accuracy']:.3f} on "
                f"{row['molecules']} molecules, training prior "
                f"{row['training prior, same molecules']:.3f}, MoleX "
                f"{row['MoleX, same molecules']:.3f}."
            )
        for row in llm.lora.itertuples():
            out.append(f"LoRA on {row.dataset}, fold {row.fold}: {row.training}.")
    r = speed.report
    molex = r["molex"]
    text = (
        f"Speed on {speed.dataset} ({r['molecules']} molecules, {r['torch_threads']} torch "
        f"threads): MoleX end to end on known n-grams {molex['mol_per_s']:,.0f} molecules/s "
        f"(parse {molex['shares']['parse']:.0%}, group matching {molex['shares']['match']:.0%}, "
        f"n-gram texts {molex['shares']['texts']:.0%}, lookup {molex['shares']['lookup']:.0%}; "
        f"group matching alone {molex['group_matching_mol_per_s']:,.0f}/s; a first pass with "
        f"the training molecules' fragment keys only: {molex['first_pass_mol_per_s']:,.0f}/s), "
        f"{r['speedup_vs_rxnfp_bert']:.1f}x the rxnfp-BERT classifier (target 10x)"
    )
    if "speedup_vs_smollm2" in r:
        text += f" and {r['speedup_vs_smollm2']:.0f}x the SmolLM2 classifier (target 100x)"
    out.append(text + ".")
    return out
