"""MoleX's features: functional-group n-grams written as SMILES text, summed n-gram embeddings, and
the exact split of a linear score into n-gram and atom contributions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from scipy import sparse

from molkit._progress import tqdm
from molkit.chem import group_ngrams, group_tokens, parse_smiles

__all__ = [
    "NgramTable",
    "atom_scores_from_ngrams",
    "token_scores_from_ngrams",
    "build_ngram_table",
    "molex_features",
    "ngram_text",
]


def ngram_text(mol: Chem.Mol, atoms: Sequence[int]) -> str:
    """The canonical SMILES fragment of ``atoms`` in ``mol``: the text the SMILES LM embeds.

    Fragments cut out of rings keep their aromatic lower-case atoms (``cc[N+](=O)[O-]``); they
    need not be valid molecules, only readable by the regex SMILES tokenizer.
    """
    return Chem.MolFragmentToSmiles(mol, atomsToUse=sorted(int(a) for a in atoms), canonical=True)


@dataclass
class NgramTable:
    """Group n-grams of a set of molecules, each unique n-gram text stored once.

    ``texts``: unique n-gram texts (n_texts,). ``counts``: CSR (n_molecules, n_texts), how often
    each text occurs in each molecule. ``occurrences[i]``: molecule i's n-grams as (text index,
    atom indices). ``n_atoms``: heavy atoms per molecule. ``names``: the group names of each text's
    first occurrence (for display). ``tokens[i]``: molecule i's group tokens (name, atom indices),
    in token order (the unit of token-level explanation scoring).
    """

    texts: list[str]
    counts: sparse.csr_matrix
    occurrences: list[list[tuple[int, tuple[int, ...]]]]
    n_atoms: np.ndarray
    names: list[tuple[str, ...]]
    tokens: list[list[tuple[str, tuple[int, ...]]]]

    def __len__(self) -> int:
        return len(self.occurrences)


def build_ngram_table(smiles: Sequence[str], n_max: int = 3, progress: bool = True) -> NgramTable:
    """Group-tokenise every SMILES (atom order of that SMILES), take its contiguous token
    n-grams (n = 1..``n_max``) and write each as `ngram_text`."""
    index: dict[str, int] = {}
    names: list[tuple[str, ...]] = []
    occurrences, n_atoms, rows, cols, tokens = [], [], [], [], []
    for i, s in enumerate(tqdm(smiles, desc="group n-grams", disable=not progress)):
        mol = parse_smiles(s)
        mine = []
        toks = group_tokens(mol)
        tokens.append([(t.name, t.atoms) for t in toks])
        for group_names, atoms in group_ngrams(toks, n_max=n_max):
            text = ngram_text(mol, atoms)
            if text not in index:
                index[text] = len(index)
                names.append(group_names)
            mine.append((index[text], tuple(sorted(atoms))))
            rows.append(i)
            cols.append(index[text])
        occurrences.append(mine)
        n_atoms.append(mol.GetNumAtoms())
    counts = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(occurrences), len(index))
    )
    counts.sum_duplicates()
    return NgramTable(list(index), counts, occurrences, np.asarray(n_atoms), names, tokens)


def molex_features(
    table: NgramTable, embeddings: np.ndarray, train_idx: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Molecule features (n_molecules, d): the sum of a molecule's n-gram embeddings, each
    centred on the mean n-gram occurrence of the training molecules. Returns (features, the
    centred n-gram embeddings (n_texts, d)); only training molecules set the centre."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.shape[0] != len(table.texts):
        raise ValueError(f"{emb.shape[0]} embeddings for {len(table.texts)} n-gram texts")
    train_counts = np.asarray(table.counts[np.asarray(train_idx)].sum(axis=0)).ravel()
    centre = train_counts @ emb / max(train_counts.sum(), 1.0)
    centred = emb - centre
    return np.asarray(table.counts @ centred), centred


def atom_scores_from_ngrams(
    table: NgramTable, contributions: np.ndarray, molecules: Sequence[int]
) -> list[np.ndarray]:
    """Atom scores of each listed molecule: every n-gram's contribution (n_texts,) divided evenly
    over the atoms it covers, summed per atom. Per molecule the atom scores add up to the sum of
    its n-gram contributions (the logit up to the intercept)."""
    contributions = np.asarray(contributions, dtype=float).ravel()
    out = []
    for i in molecules:
        scores = np.zeros(int(table.n_atoms[i]))
        for text_id, atoms in table.occurrences[i]:
            scores[list(atoms)] += contributions[text_id] / len(atoms)
        out.append(scores)
    return out


def token_scores_from_ngrams(
    table: NgramTable, atom_scores: Sequence[np.ndarray], molecules: Sequence[int]
) -> list[np.ndarray]:
    """Token scores of each listed molecule from its atom scores (aligned with ``molecules``): a
    token's score is the sum over its atoms (`molkit.eval.explain.token_scores`), so per molecule
    the token scores also add up to the logit minus the intercept."""
    from molkit.eval.explain import token_scores

    return [
        token_scores(a, [atoms for _, atoms in table.tokens[i]])
        for a, i in zip(atom_scores, molecules, strict=True)
    ]
