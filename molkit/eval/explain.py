"""Explanation scoring: attributions against ground truth, per atom or per group token.

An attribution is one score per heavy atom (RDKit order of the SMILES it was computed on); a
ground truth is a 0/1 mask over the same atoms. The explanation AUC of a molecule is the ROC-AUC
of its scores against its mask: 1.0 when every ground-truth atom outranks every other atom, 0.5
for a random ranking. It is undefined (NaN) for a molecule whose mask is all 0 or all 1.

At the group-token level (Lamole's and MoleX's unit: a functional group or a leftover fragment
is one token), a token's score is the sum of its atoms' scores (`token_scores`: for an additive
model, the token's exact contribution) and a token is ground truth when at least half of its atoms
are (`token_truth`); the same AUC is then taken over the molecule's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "atom_auc",
    "explanation_auc",
    "random_attributions",
    "token_scores",
    "token_truth",
]


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


def token_scores(atom_scores: Sequence[float], tokens: Sequence[Sequence[int]]) -> np.ndarray:
    """One score per token (n_tokens,): the sum of the scores of the atoms it covers."""
    s = np.asarray(atom_scores, dtype=float).ravel()
    return np.array([s[list(atoms)].sum() for atoms in tokens])


def token_truth(
    truth: Sequence[int] | None, tokens: Sequence[Sequence[int]], min_share: float = 0.5
) -> np.ndarray | None:
    """Token ground truth (n_tokens,) int8 from an atom mask: 1 where at least ``min_share`` of the
    token's atoms are ground truth. None stays None (no ground truth)."""
    if truth is None:
        return None
    t = np.asarray(truth).astype(bool).ravel()
    n = max((max(a) for a in tokens if len(a)), default=-1) + 1
    if n > t.size:
        raise ValueError(
            f"tokens reach atom {n - 1} but the ground truth covers {t.size} atoms: "
            "both must follow the same atom order"
        )
    return np.array([t[list(atoms)].mean() >= min_share for atoms in tokens], dtype=np.int8)
