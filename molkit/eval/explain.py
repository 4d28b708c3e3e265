"""Explanation scoring: atom-level attributions against atom-level ground truth.

An attribution is one score per heavy atom (RDKit order of the SMILES it was computed on); a
ground truth is a 0/1 mask over the same atoms. The explanation AUC of a molecule is the ROC-AUC
of its scores against its mask: 1.0 when every ground-truth atom outranks every other atom, 0.5
for a random ranking. It is undefined (NaN) for a molecule whose mask is all 0 or all 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["atom_auc", "explanation_auc", "random_attributions"]


def atom_auc(scores: Sequence[float], truth: Sequence[int]) -> float:
    """ROC-AUC of one molecule's atom scores (n_atoms,) against its 0/1 mask (n_atoms,).

    Ties count one half (Mann-Whitney). NaN when the mask has only one class.
    """
    s = np.asarray(scores, dtype=float).ravel()
    t = np.asarray(truth).astype(bool).ravel()
    if s.shape != t.shape:
        raise ValueError(
            f"{s.size} atom scores for a ground truth over {t.size} atoms: "
            "both must follow the same atom order"
        )
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    pos, neg = s[t], s[~t]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (n_pos * n_neg))


def explanation_auc(
    scores: Sequence[Sequence[float]], truths: Sequence[Sequence[int] | None]
) -> tuple[float, int]:
    """Mean per-molecule explanation AUC over the molecules where it is defined.

    ``scores`` and ``truths`` are aligned lists (one array per molecule; a truth may be None for
    a molecule without ground truth). Returns (mean AUC, number of molecules scored); (NaN, 0)
    when no molecule has a usable ground truth.
    """
    if len(scores) != len(truths):
        raise ValueError(f"{len(scores)} attributions for {len(truths)} ground truths")
    values = [atom_auc(s, t) for s, t in zip(scores, truths, strict=True) if t is not None]
    values = [v for v in values if not np.isnan(v)]
    return (float(np.mean(values)), len(values)) if values else (float("nan"), 0)


def random_attributions(n_atoms: Sequence[int], seed: int = 0) -> list[np.ndarray]:
    """Uniform random atom scores, one array per molecule: the chance baseline of
    explanation AUC."""
    rng = np.random.default_rng(seed)
    return [rng.random(int(n)) for n in n_atoms]
