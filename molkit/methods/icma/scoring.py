"""How ICMA's outputs are scored: corpus metrics per direction, one score per test item for the
paired claims, the failure modes of generated outputs, and MolT5-base's published outputs (the
peer every run is compared with on ChEBI-20)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from molkit.methods.icma.corpus import molecule_keys
from molkit.methods.icma.settings import check_direction

__all__ = [
    "PER_ITEM_METRIC",
    "evaluate_direction",
    "per_item_scores",
    "mean_score",
    "failure_modes",
    "molt5_predictions",
]

#: The per-item score of each direction that paired comparisons resample (see `per_item_scores`).
PER_ITEM_METRIC = {
    "mol2cap": "ROUGE-L F1 per caption (mean)",
    "cap2mol": "Morgan Tanimoto per molecule, invalid = 0 (mean)",
}


def evaluate_direction(
    direction: str, predictions: Sequence[str], references: Sequence[str]
) -> dict[str, float]:
    """mol2cap: caption metrics; cap2mol: molecule metrics (``molkit.eval.text``). BLEU is
    MolT5's unsmoothed corpus BLEU: NLTK's warning that an n-gram order has no overlap (the score
    is then 0, as the metric means) is silenced here."""
    import warnings

    from rdkit.rdBase import BlockLogs

    from molkit.eval.text import caption_metrics, molecule_metrics

    check_direction(direction)
    with warnings.catch_warnings(), BlockLogs():
        warnings.filterwarnings("ignore", message=r"\s*The hypothesis contains 0 counts")
        if direction == "mol2cap":
            return caption_metrics(predictions, references)
        return molecule_metrics(predictions, references)


def per_item_scores(
    direction: str, predictions: Sequence[str], references: Sequence[str]
) -> np.ndarray:
    """One score per test item (n,), higher is better: mol2cap, the ROUGE-L F1 of each caption
    (``rouge_score``, as in `caption_metrics`); cap2mol, the Tanimoto similarity of Morgan count
    fingerprints (as ``morgan_fts``) with an invalid prediction scoring 0 (``morgan_fts`` instead
    averages over valid predictions only)."""
    from molkit.eval.text import molecule_similarity

    check_direction(direction)
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions for {len(references)} references")
    if direction == "mol2cap":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"])
        pairs = zip(predictions, references, strict=True)
        return np.array([scorer.score(str(r), str(p))["rougeL"].fmeasure for p, r in pairs])
    from rdkit.rdBase import BlockLogs

    with BlockLogs():  # a generated SMILES that does not parse scores 0, silently
        sims = molecule_similarity(
            [str(p).strip() for p in predictions], [str(r).strip() for r in references], "morgan"
        )
    return np.nan_to_num(sims, nan=0.0)


def mean_score(_y: np.ndarray, scores: np.ndarray) -> float:
    """The mean of per-item scores: the ``metric`` of a paired bootstrap over test items (its
    ``y_true`` is unused: the scores already compare each item with its reference)."""
    return float(np.mean(scores))


def _repeats(text: str, n: int = 4) -> bool:
    """Whether some word n-gram occurs at least three times (a decoding loop)."""
    from molkit.eval.text import word_tokenize

    words = word_tokenize(text)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return bool(grams) and max(pd.Series(grams).value_counts()) >= 3


def failure_modes(
    direction: str,
    predictions: Sequence[str],
    context_outputs: Sequence[Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Per prediction, the common failure modes as booleans: ``empty``; ``copies_context``: the
    output is (nearly) one of its prompt's context outputs (captions: ROUGE-L F1 >= 0.9 with one;
    molecules: the same InChIKey as one), i.e. copy-and-edit of the context left unedited;
    ``repeats`` (captions: a word 4-gram three times or more); ``invalid`` (molecules: RDKit cannot
    parse it). ``context_outputs[i]``: the outputs of prompt i's context examples (``None``: no
    context, the column is False)."""
    check_direction(direction)
    preds = [str(p) for p in predictions]
    contexts = context_outputs if context_outputs is not None else [[] for _ in preds]
    if len(contexts) != len(preds):
        raise ValueError(f"got {len(contexts)} context lists for {len(preds)} predictions")
    frame = pd.DataFrame({"empty": [not p.strip() for p in preds]})
    if direction == "mol2cap":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"])
        frame["copies_context"] = [
            any(scorer.score(str(c), p)["rougeL"].fmeasure >= 0.9 for c in ctx) if p else False
            for p, ctx in zip(preds, contexts, strict=True)
        ]
        frame["repeats"] = [_repeats(p) for p in preds]
    else:
        from rdkit import Chem
        from rdkit.rdBase import BlockLogs

        with BlockLogs():
            valid = [bool(p.strip()) and Chem.MolFromSmiles(p) is not None for p in preds]
        keys = molecule_keys(preds)
        frame["copies_context"] = [
            ok and key in set(molecule_keys(list(ctx))) if ctx else False
            for ok, key, ctx in zip(valid, keys, contexts, strict=True)
        ]
        frame["invalid"] = [not v for v in valid]
    return frame


def molt5_predictions(direction: str, queries: pd.DataFrame) -> list[str]:
    """MolT5-base's published test outputs for the rows of ``queries`` (matched by the input: the
    canonical SMILES for mol2cap, the caption for cap2mol; the files are not in test-file order and
    write some SMILES with different backslash escapes)."""
    from molkit.data import load_dataset

    check_direction(direction)
    df = load_dataset(f"molt5-base-{direction}")
    key = "smiles" if direction == "mol2cap" else "text"
    lookup = dict(zip(df[key].astype(str), df["prediction"].astype(str), strict=True))
    missing = [q for q in queries[key].astype(str) if q not in lookup]
    if missing:
        raise KeyError(
            f"{len(missing)} queries have no MolT5-base output, e.g. {missing[0][:60]!r}"
        )
    return [lookup[q] for q in queries[key].astype(str)]
