"""Text and molecule generation metrics: molecule -> caption and caption -> molecule (ChEBI-20).

They follow MolT5's evaluation scripts (``text_translation_metrics.py``,
``mol_translation_metrics.py``, ``fingerprint_metrics.py``), with one documented difference: MolT5
splits captions with SciBERT's WordPiece tokenizer for BLEU and METEOR; molkit uses a plain
lower-cased word/punctuation tokenizer (:func:`word_tokenize`, regex ``\\w+|[^\\w\\s]``), because
SciBERT's vocabulary is not available offline. WordPiece splits rare chemical words into sub-words,
which changes BLEU/METEOR by a few points; ROUGE is computed on the raw strings with
``rouge_score``'s own tokenizer, exactly as MolT5 does.

* mol2cap: corpus BLEU-2/4 (NLTK), mean ROUGE-1/2/L F1 (``rouge_score``, no stemming), mean METEOR
  (NLTK; needs WordNet: ``scripts/install_wordnet.sh`` offline, ``nltk.download('wordnet')`` online;
  without it METEOR is NaN and :func:`meteor_available` says why).
* cap2mol: character-level corpus BLEU-4 (NLTK, as MolT5), exact match (equal InChI), mean
  Levenshtein distance of the raw SMILES strings, validity (share that RDKit parses; an empty string
  is invalid), and MACCS / RDK / Morgan fingerprint Tanimoto similarity (FTS; Morgan = unfolded
  radius-2 count fingerprints, RDK = RDKit topological fingerprint) in two conventions:
  ``<kind>_fts`` averages over the valid predictions only (MolT5's convention, the one papers
  report), ``<kind>_fts_all`` averages over all predictions with an invalid one counted as 0 (so a
  model cannot raise it by emitting fewer, easier valid molecules). On MolT5-base's published
  outputs MolT5's own scripts give exactly this module's values in the same environment (and within
  0.002 at their pinned RDKit 2022.03.2 / NLTK 3.7); ``tests/test_text_metrics.py`` records how
  those values differ from the MolT5 paper's table, and why. One edge differs from MolT5's scripts:
  they count an empty output as valid (RDKit parses ``""`` to an empty molecule), molkit does not
  (no MolT5-base output is empty).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "word_tokenize",
    "meteor_available",
    "caption_metrics",
    "molecule_metrics",
    "molecule_similarity",
    "CAPTION_METRICS",
    "MOLECULE_METRICS",
]

CAPTION_METRICS = ("bleu2", "bleu4", "rouge1", "rouge2", "rougeL", "meteor")
MOLECULE_METRICS = (
    "bleu",
    "exact_match",
    "levenshtein",
    "maccs_fts",
    "rdk_fts",
    "morgan_fts",
    "validity",
    "maccs_fts_all",
    "rdk_fts_all",
    "morgan_fts_all",
)

_WORD = re.compile(r"\w+|[^\w\s]")


def word_tokenize(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks: ``"An acid."`` -> ``["an", "acid", "."]``."""
    return _WORD.findall(str(text).lower())


@functools.cache
def _meteor_status() -> str:
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        wordnet.synsets("molecule")
    except LookupError:
        return (
            "WordNet not found: run scripts/install_wordnet.sh (offline) "
            "or nltk.download('wordnet')"
        )
    except Exception as exc:  # a broken corpus folder: say what broke
        return f"WordNet could not be read ({type(exc).__name__}: {exc})"
    return ""


def meteor_available() -> bool:
    """Whether NLTK can read WordNet, which METEOR needs (the reason is warned when not)."""
    return _meteor_status() == ""


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions for {len(references)} references")
    if not len(predictions):
        raise ValueError("no predictions to score")


def caption_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    tokenize: Callable[[str], list[str]] = word_tokenize,
) -> dict[str, float]:
    """BLEU-2, BLEU-4 (corpus), ROUGE-1/2/L and METEOR (means over pairs), all in [0, 1].

    ``tokenize`` splits text for BLEU and METEOR. METEOR is NaN (with a warning) without WordNet.
    """
    from nltk.translate.bleu_score import corpus_bleu
    from rouge_score import rouge_scorer

    _check_pairs(predictions, references)
    refs = [[tokenize(r)] for r in references]
    hyps = [tokenize(p) for p in predictions]
    with warnings.catch_warnings():
        # NLTK warns when a hypothesis shares no n-gram of some order with its references; that
        # zero is the score it means (MolT5's and ICMA's BLEU use no smoothing either)
        warnings.filterwarnings("ignore", message=".*contains 0 counts of", category=UserWarning)
        out = {
            "bleu2": float(corpus_bleu(refs, hyps, weights=(0.5, 0.5))),
            "bleu4": float(corpus_bleu(refs, hyps, weights=(0.25, 0.25, 0.25, 0.25))),
        }
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    scores = [scorer.score(str(r), str(p)) for p, r in zip(predictions, references, strict=True)]
    for key in ("rouge1", "rouge2", "rougeL"):
        out[key] = float(np.mean([s[key].fmeasure for s in scores]))
    if meteor_available():
        from nltk.translate.meteor_score import meteor_score

        out["meteor"] = float(
            np.mean([meteor_score(r, h) for r, h in zip(refs, hyps, strict=True)])
        )
    else:
        warnings.warn(f"METEOR unavailable (NaN): {_meteor_status()}", stacklevel=2)
        out["meteor"] = float("nan")
    return out


def _mol(smiles: str):
    """The molecule of a (generated) SMILES, or None; RDKit's parse errors stay out of the log:
    an unparsable prediction is counted, not printed."""
    from rdkit import Chem, rdBase

    text = str(smiles).strip()
    if not text:
        return None
    with rdBase.BlockLogs():
        return Chem.MolFromSmiles(text)


def _fingerprint(mol, kind: str):
    from rdkit import Chem
    from rdkit.Chem import MACCSkeys, rdFingerprintGenerator

    if kind == "maccs":
        return MACCSkeys.GenMACCSKeys(mol)
    if kind == "rdk":
        return Chem.RDKFingerprint(mol)
    if kind == "morgan":
        return rdFingerprintGenerator.GetMorganGenerator(radius=2).GetSparseCountFingerprint(mol)
    raise ValueError(f"fingerprint kind must be 'maccs', 'rdk' or 'morgan', got {kind!r}")


def molecule_similarity(
    predictions: Sequence[str], references: Sequence[str], kind: str = "morgan"
) -> np.ndarray:
    """Per-pair Tanimoto similarity (n,) of ``kind`` fingerprints ("maccs", "rdk", "morgan"); NaN
    where a prediction (or reference) does not parse."""
    from rdkit import DataStructs

    _check_pairs(predictions, references)
    out = np.full(len(predictions), np.nan)
    for i, (p, r) in enumerate(zip(predictions, references, strict=True)):
        mp, mr = _mol(p), _mol(r)
        if mp is not None and mr is not None:
            out[i] = DataStructs.TanimotoSimilarity(_fingerprint(mp, kind), _fingerprint(mr, kind))
    return out


def molecule_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """cap2mol metrics of predicted vs reference SMILES, MolT5's definitions.

    ``bleu`` (corpus BLEU-4 over characters), ``exact_match`` (same InChI, share of all pairs),
    ``levenshtein`` (mean edit distance of the raw strings, characters), ``validity`` (share of
    predictions RDKit parses), and per fingerprint kind (``maccs``, ``rdk``, ``morgan``) two FTS
    means of the Tanimoto similarity: ``<kind>_fts`` over the valid predictions only (MolT5's
    convention; NaN if none is valid) and ``<kind>_fts_all`` over all predictions, an invalid one
    (or an unparsable reference) counting as 0. ``<kind>_fts_all`` is at most ``<kind>_fts``; it
    equals ``<kind>_fts * validity`` when every reference parses."""
    from nltk.translate.bleu_score import corpus_bleu
    from rapidfuzz.distance import Levenshtein
    from rdkit import Chem, rdBase

    _check_pairs(predictions, references)
    predictions = [str(p).strip() for p in predictions]
    references = [str(r).strip() for r in references]
    with warnings.catch_warnings():  # a zero n-gram count is the score it means (see above)
        warnings.filterwarnings("ignore", message=".*contains 0 counts of", category=UserWarning)
        bleu = corpus_bleu([[list(r)] for r in references], [list(p) for p in predictions])
    exact, valid = 0, 0
    for p, r in zip(predictions, references, strict=True):
        mp, mr = _mol(p), _mol(r)
        if mp is None:
            continue
        valid += 1
        with rdBase.BlockLogs():  # InChI's warnings on odd valences
            same = mr is not None and Chem.MolToInchi(mp) == Chem.MolToInchi(mr)
        if same:
            exact += 1
    out = {
        "bleu": float(bleu),
        "exact_match": exact / len(predictions),
        "levenshtein": float(
            np.mean(
                [Levenshtein.distance(p, r) for p, r in zip(predictions, references, strict=True)]
            )
        ),
        "validity": valid / len(predictions),
    }
    for kind in ("maccs", "rdk", "morgan"):
        sims = molecule_similarity(predictions, references, kind)
        out[f"{kind}_fts"] = float(np.nanmean(sims)) if np.isfinite(sims).any() else float("nan")
        out[f"{kind}_fts_all"] = float(np.mean(np.nan_to_num(sims, nan=0.0)))
    return {k: out[k] for k in MOLECULE_METRICS}
