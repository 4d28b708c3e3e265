"""MoleX: an LLM-augmented linear model for explainable, calibratable property prediction.

Reproduces *Unveiling Molecular Secrets: An LLM-Augmented Linear Model for
Explainable and Calibratable Molecular Property Prediction* (arXiv 2410.08829), as molkit builds it:

1. every molecule becomes functional-group tokens (`molkit.chem.group_tokens`, RDKit, atoms kept)
   and their contiguous n-grams (n <= 3); each n-gram is written as the SMILES fragment of the atoms
   it covers (`Chem.MolFragmentToSmiles`), a text the SMILES BERT (``rxnfp-bert``) can read;
2. each unique n-gram text is embedded once by the chemical LM; a molecule's features are the sum
   of its (centred) n-gram embeddings, so a linear model's score splits exactly into n-gram terms;
3. the LM is fine-tuned on the training split with a variational information bottleneck head
   (cross-entropy + beta * KL to N(0, I)); to stay inside a CPU budget only the top
   ``n_trainable_layers`` transformer layers are trained, and the frozen lower layers' outputs are
   computed once per text and reused (`encode_prefix`);
4. a sparse (L1-loaded) PCA, the EFPCA-inspired reduction, or plain PCA, reduces the features;
5. logistic regression on the reduced features is the explainable model;
6. residual calibration: linear models on the orthogonal complement of the reduced subspace are
   fit on *training* residuals, round by round, and stopped early on the validation split. Test
   labels are never used (the official code feeds them to this step).

Every map is affine, so the final model is ``logits = x @ W + c`` over the summed n-gram features
and each n-gram's contribution is ``e_g @ W`` (`MolexModel.ngram_contributions`), spread evenly
over the atoms it covers to give atom-level explanations (`atom_scores_from_ngrams`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rdkit import Chem
from scipy import sparse
from torch import nn

from molkit._progress import tqdm
from molkit.chem import group_ngrams, group_tokens, parse_smiles
from molkit.eval.explain import explanation_auc, random_attributions
from molkit.models.runtime import autocast

__all__ = [
    "EXPLAIN_DATASETS",
    "GROUND_TRUTH_TYPES",
    "GROUP_SELFIES_TYPES",
    "PROFILE_SIZES",
    "IBClassifier",
    "BenchmarkResult",
    "FineTuneHistory",
    "LinearReduction",
    "MolexModel",
    "NgramTable",
    "PrefixStates",
    "atom_scores_from_ngrams",
    "build_ngram_table",
    "classification_scores",
    "embed_prefix",
    "encode_prefix",
    "explain_split",
    "finetune_ib",
    "fit_molex",
    "fit_reduction",
    "load_chemical_lm",
    "load_explain_dataset",
    "measure_throughput",
    "molex_features",
    "morgan_atom_scores",
    "ngram_text",
    "predict_proba_lm",
    "run_benchmark",
    "save_examples",
    "sparse_loadings",
    "throughput_summary",
    "tu_ground_truth",
]

EXPLAIN_DATASETS = ("mutag", "ptc_fr", "ptc_fm", "ptc_mm", "ptc_mr", "liver")

_COMMON = {
    "lm_model": "rxnfp-bert",
    "n_max": 3,
    "pooling": "mean",
    "max_length": 256,
    "split_fractions": (0.7, 0.1, 0.2),
    "beta": 1e-3,
    "bottleneck_dim": 64,
    "lr": 1e-4,
    "head_lr": 1e-3,
    "batch_size": 32,
    "n_components": 16,
    "sparse_alpha": 0.3,
    "complement_components": 32,
    "logreg_c": 1.0,
    "calib_rounds": 200,
    "calib_lr": 0.3,
    "calib_ridge": 1.0,
    "calib_patience": 20,
    "morgan_radius": 2,
    "morgan_bits": 2048,
}

#: Settings per profile; passed to ``molkit.setup(sizes=PROFILE_SIZES)``.
PROFILE_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_COMMON,
        "datasets": ["mutag"],
        "seeds": [0],
        "max_molecules": 80,
        "n_trainable_layers": 1,
        "finetune_epochs": 1,
        "finetune_patience": 1,
        "ablation_datasets": ["mutag"],
        "n_components": 8,
        "complement_components": 8,
        "calib_rounds": 30,
        "rf_trees": 50,
        "gin_layers": 2,
        "gin_hidden": 32,
        "gin_epochs": 3,
        "speed_dataset": "mutag",
        "speed_molecules": 64,
        "speed_repeats": 1,
        "n_examples": 2,
    },
    "default": {
        **_COMMON,
        "datasets": list(EXPLAIN_DATASETS),
        "seeds": [0, 1, 2],
        "max_molecules": None,
        "n_trainable_layers": 1,
        "finetune_epochs": 4,
        "finetune_patience": 2,
        "lr": 5e-4,
        "ablation_datasets": ["mutag", "ptc_fr"],
        "rf_trees": 200,
        "gin_layers": 3,
        "gin_hidden": 64,
        "gin_epochs": 30,
        "speed_dataset": "liver",
        "speed_molecules": 128,
        "speed_repeats": 2,
        "n_examples": 4,
    },
    "full": {
        **_COMMON,
        "datasets": list(EXPLAIN_DATASETS),
        "seeds": [0, 1, 2, 3, 4],
        "max_molecules": None,
        "n_trainable_layers": 12,
        "finetune_epochs": 20,
        "finetune_patience": 4,
        "ablation_datasets": list(EXPLAIN_DATASETS),
        "rf_trees": 500,
        "gin_layers": 5,
        "gin_hidden": 300,
        "gin_epochs": 100,
        "speed_dataset": "liver",
        "speed_molecules": 1024,
        "speed_repeats": 3,
        "n_examples": 6,
    },
}

# ------------------------------------------------------------------------------------ data

#: ``TOTAL LABEL`` / ``GROUP LABEL`` codes of the mirrored MUTAG / PTC files (code 8 = no group).
GROUP_SELFIES_TYPES = {
    0: "benzene",
    1: "nitro",
    2: "carbonyl",
    3: "amido",
    4: "hydroxyl",
    5: "cyano",
    6: "carboxyl",
    7: "cyclohexene",
}

#: RDKit SMARTS that locate the atoms of each Group-SELFIES group type in the SMILES.
GROUP_TYPE_SMARTS = {
    0: "c1ccccc1",
    1: "[N;X3](~[OX1])~[OX1]",
    2: "[CX3;$(C([#6])[#6])]=[OX1]",
    3: "[CX3](=[OX1])[NX3]",
    4: "[OX2H1;$(O[#6])]",
    5: "[CX2]#[NX1]",
    6: "[CX3](=[OX1])[OX2H1,OX1-]",
    7: "C1=CCCCC1",
}

#: Which group types are the ground-truth explanation of the positive class, per dataset, following
#: Lamole's definition (a functional group together with the benzene ring it is attached to):
#: nitro-aromatics for MUTAG mutagens (every MUTAG molecule has a nitro group, so only mutagens are
#: scored), every annotated non-benzene group with its benzene ring for PTC carcinogens.
GROUND_TRUTH_TYPES = {
    "mutag": (1,),
    **{name: (1, 2, 3, 4, 5, 6, 7) for name in ("ptc_fr", "ptc_fm", "ptc_mm", "ptc_mr")},
}


def tu_ground_truth(
    smiles: str, group_labels: Sequence[int], types: Sequence[int], attached_benzene: bool = True
) -> np.ndarray | None:
    """Atom mask (n_atoms,) int8 of the annotated groups of ``types`` in one MUTAG/PTC molecule.

    ``group_labels`` is the row's ``GROUP LABEL`` (the Group-SELFIES type of each group token).
    Group-SELFIES tokens carry no atom indices, so the atoms are found by RDKit: every match of
    the type's SMARTS (`GROUP_TYPE_SMARTS`) in ``smiles``, for each type that is both annotated
    in the row and listed in ``types``. With ``attached_benzene`` (and benzene annotated in the
    row), every benzene ring bonded to one of those groups is added (Lamole's group + benzene
    pairing). None when no such group is annotated.
    """
    labels = set(int(g) for g in group_labels)
    wanted = sorted(labels & set(int(t) for t in types))
    if not wanted:
        return None
    mol = parse_smiles(smiles)
    mask = np.zeros(mol.GetNumAtoms(), dtype=np.int8)
    for code in wanted:
        for match in mol.GetSubstructMatches(Chem.MolFromSmarts(GROUP_TYPE_SMARTS[code])):
            mask[list(match)] = 1
    if attached_benzene and 0 in labels:
        group_atoms = set(np.flatnonzero(mask).tolist())
        for ring in mol.GetSubstructMatches(Chem.MolFromSmarts(GROUP_TYPE_SMARTS[0])):
            neighbours = {nb.GetIdx() for i in ring for nb in mol.GetAtomWithIdx(i).GetNeighbors()}
            if neighbours & group_atoms:
                mask[list(ring)] = 1
    return mask


def load_explain_dataset(
    name: str, max_molecules: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """One of `EXPLAIN_DATASETS` with columns ``smiles`` (the file's SMILES, whose atom order
    the ground truth follows), ``label`` (int), ``truth`` (atom mask or None) and, for Liver,
    ``split``. ``df.attrs``: ``n_classes``, ``explain_class`` (the class whose logit the
    explanations are scored for), ``n_duplicates_dropped``.

    Duplicated SMILES (7-8 per PTC file) are kept once; a duplicate with conflicting labels is
    dropped entirely. ``max_molecules`` takes a seeded, label-stratified subset (smoke runs).
    """
    from molkit.data import load_dataset

    key = name.strip().lower()
    if key not in EXPLAIN_DATASETS:
        raise ValueError(
            f"unknown explanation dataset {name!r}; choose one of {', '.join(EXPLAIN_DATASETS)}"
        )
    raw = load_dataset(key)
    df = pd.DataFrame(
        {
            "smiles": raw["smiles_raw"].astype(str),
            "canonical": raw["smiles"],
            "label": raw["label"].astype(int),
        }
    )
    if key == "liver":
        df["split"] = raw["split"].to_numpy()
        df["truth"] = [a if a.any() else None for a in raw["node_atts"]]
        n_classes, explain_class = 3, 2
    else:
        types = GROUND_TRUTH_TYPES[key]
        df["truth"] = [
            tu_ground_truth(s, g, types) if y == 1 else None
            for s, g, y in zip(raw["smiles_raw"], raw["group_label"], df["label"], strict=True)
        ]
        n_classes, explain_class = 2, 1
    conflicting = df.groupby("canonical")["label"].transform("nunique") > 1
    n_before = len(df)
    df = (
        df[~conflicting]
        .drop_duplicates("canonical")
        .drop(columns="canonical")
        .reset_index(drop=True)
    )
    if max_molecules is not None and len(df) > max_molecules:
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(
            np.arange(len(df)), train_size=max_molecules, stratify=df["label"], random_state=seed
        )
        df = df.iloc[np.sort(keep)].reset_index(drop=True)
    df.attrs.update(
        {
            "name": key,
            "n_classes": n_classes,
            "explain_class": explain_class,
            "n_duplicates_dropped": n_before - len(df),
        }
    )
    return df


def explain_split(
    df: pd.DataFrame, seed: int, fractions: Sequence[float] = (0.7, 0.1, 0.2)
) -> dict[str, np.ndarray]:
    """Label-stratified random split {"train", "valid", "test"} -> sorted indices.

    With a ``split`` column (Liver) its test part is kept and ``fractions[1]`` of the whole is
    carved out of its train part as validation (stratified, seeded); otherwise (MUTAG, PTC have no
    split column) the seeded stratified split follows ``fractions`` (train, valid, test).
    """
    from sklearn.model_selection import train_test_split

    f_train, f_valid, f_test = (float(f) for f in fractions)
    if min(f_train, f_valid, f_test) <= 0 or abs(f_train + f_valid + f_test - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three positive numbers summing to 1, got {tuple(fractions)}"
        )
    idx, y = np.arange(len(df)), df["label"].to_numpy()
    if "split" in df:
        test = idx[df["split"].to_numpy() == "test"]
        rest = idx[df["split"].to_numpy() != "test"]
    else:
        rest, test = train_test_split(idx, test_size=f_test, stratify=y, random_state=seed)
    train, valid = train_test_split(
        rest, test_size=f_valid / (f_train + f_valid), stratify=y[rest], random_state=seed
    )
    return {"train": np.sort(train), "valid": np.sort(valid), "test": np.sort(test)}


# ------------------------------------------------------------------------------------ n-grams


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
    first occurrence (for display).
    """

    texts: list[str]
    counts: sparse.csr_matrix
    occurrences: list[list[tuple[int, tuple[int, ...]]]]
    n_atoms: np.ndarray
    names: list[tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.occurrences)


def build_ngram_table(smiles: Sequence[str], n_max: int = 3, progress: bool = True) -> NgramTable:
    """Group-tokenise every SMILES (atom order of that SMILES), take its contiguous token
    n-grams (n = 1..``n_max``) and write each as `ngram_text`."""
    index: dict[str, int] = {}
    names: list[tuple[str, ...]] = []
    occurrences, n_atoms, rows, cols = [], [], [], []
    for i, s in enumerate(tqdm(smiles, desc="group n-grams", disable=not progress)):
        mol = parse_smiles(s)
        mine = []
        for group_names, atoms in group_ngrams(group_tokens(mol), n_max=n_max):
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
    return NgramTable(list(index), counts, occurrences, np.asarray(n_atoms), names)


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


# ------------------------------------------------------------------------------------ the LM


def load_chemical_lm(name_or_path: str = "rxnfp-bert"):
    """(BertModel in eval mode, tokenizer) for a registry name, a local folder or a hub id."""
    from molkit.models import load_encoder, load_tokenizer

    model = load_encoder(name_or_path, device="cpu")
    if not hasattr(model, "encoder") or not hasattr(model, "embeddings"):
        raise ValueError(
            f"{name_or_path}: MoleX needs a BERT-style encoder (embeddings + encoder.layer), got {type(model).__name__}"
        )
    return model.eval(), load_tokenizer(name_or_path)


def _extended_mask(config, hidden: torch.Tensor, mask: torch.Tensor):
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=mask)


def _run_layers(layers, config, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    ext = _extended_mask(config, hidden, mask)
    for layer in layers:
        hidden = layer(hidden, ext)
    return hidden


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")


@dataclass
class PrefixStates:
    """Outputs of a BERT's frozen lower part (embeddings + the first ``n_frozen`` layers) for a
    list of texts: ``states[i]`` is text i's (length_i, hidden) float32 tensor."""

    states: list[torch.Tensor]
    n_frozen: int

    def __len__(self) -> int:
        return len(self.states)

    def subset(self, idx: Sequence[int]) -> PrefixStates:
        return PrefixStates([self.states[int(i)] for i in idx], self.n_frozen)

    def batches(self, batch_size: int, order: Sequence[int] | None = None):
        """Yield (indices, hidden (B, L, d), mask (B, L)) padded batches in ``order``
        (default: by length, which keeps padding small)."""
        if order is None:
            order = np.argsort([len(s) for s in self.states], kind="stable")
        order = np.asarray(order)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            rows = [self.states[i] for i in idx]
            hidden = nn.utils.rnn.pad_sequence(rows, batch_first=True)
            mask = torch.zeros(hidden.shape[:2], dtype=torch.long)
            for j, r in enumerate(rows):
                mask[j, : len(r)] = 1
            yield idx, hidden, mask


@torch.no_grad()
def encode_prefix(
    model,
    tokenizer,
    texts: Sequence[str],
    n_trainable_layers: int,
    batch_size: int = 64,
    max_length: int = 256,
    progress: bool = True,
) -> PrefixStates:
    """Run the embeddings and the frozen lower ``num_layers - n_trainable_layers`` layers once
    over ``texts`` (batched by length), keeping each text's unpadded states."""
    n_layers = len(model.encoder.layer)
    if not 0 <= n_trainable_layers <= n_layers:
        raise ValueError(f"n_trainable_layers must be in 0..{n_layers}, got {n_trainable_layers}")
    n_frozen = n_layers - n_trainable_layers
    model.eval()
    texts = list(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")
    states: list[torch.Tensor | None] = [None] * len(texts)
    for start in tqdm(
        range(0, len(texts), batch_size), desc="LM (frozen layers)", disable=not progress
    ):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        with autocast("cpu"):  # the precision policy (molkit.models.runtime)
            hidden = model.embeddings(
                input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids")
            )
            hidden = _run_layers(
                model.encoder.layer[:n_frozen], model.config, hidden, enc["attention_mask"]
            ).float()
        lengths = enc["attention_mask"].sum(1).tolist()
        for j, i in enumerate(idx):
            states[i] = hidden[j, : lengths[j]].clone()
    return PrefixStates(states, n_frozen)  # type: ignore[arg-type]


def _bucketed_order(prefix: PrefixStates, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A shuffled order whose consecutive ``batch_size`` blocks hold texts of similar length
    (shuffle, sort within windows of 8 batches, shuffle the batches): less padding per step."""
    perm = rng.permutation(len(prefix))
    window = 8 * batch_size
    lengths = np.array([len(s) for s in prefix.states])
    chunks = [
        w[np.argsort(lengths[w], kind="stable")]
        for w in np.split(perm, range(window, len(perm), window))
    ]
    batches = [b for c in chunks for b in np.split(c, range(batch_size, len(c), batch_size))]
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))]) if batches else perm


class IBClassifier(nn.Module):
    """The LM's top layers + pooling + variational information bottleneck head.

    ``h = pool(top_layers(prefix states))``; ``mu, log_var = linear(h)``; ``z ~ N(mu, exp(log_var))``
    in training (``mu`` in evaluation); ``logits = linear(z)`` over ``n_classes``. ``forward``
    returns (logits (B, n_classes), KL to N(0, I) per example (B,)).
    """

    def __init__(
        self,
        model,
        n_classes: int,
        n_trainable_layers: int,
        bottleneck_dim: int = 64,
        pooling: str = "mean",
    ):
        super().__init__()
        n_layers = len(model.encoder.layer)
        self.config = model.config
        self.layers = copy.deepcopy(model.encoder.layer[n_layers - n_trainable_layers :])
        hidden = model.config.hidden_size
        self.mu = nn.Linear(hidden, bottleneck_dim)
        self.log_var = nn.Linear(hidden, bottleneck_dim)
        self.head = nn.Linear(bottleneck_dim, n_classes)
        self.pooling = pooling
        self.n_frozen = n_layers - n_trainable_layers
        self.n_classes = n_classes

    def embed(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pooled LM embedding (B, hidden) of prefix states: the vector MoleX sums per n-gram.
        The layers run under the precision policy (`molkit.models.runtime.autocast`)."""
        with autocast(hidden.device):
            out = _run_layers(self.layers, self.config, hidden, mask)
        return _pool(out.float(), mask, self.pooling)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(hidden, mask)
        mu, log_var = self.mu(h), self.log_var(h).clamp(-10, 10)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var) if self.training else mu
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
        return self.head(z), kl


@dataclass
class FineTuneHistory:
    """Per-epoch losses of `finetune_ib` and the epoch whose weights were kept."""

    records: pd.DataFrame
    best_epoch: int


@torch.no_grad()
def embed_prefix(clf: IBClassifier, prefix: PrefixStates, batch_size: int = 128) -> np.ndarray:
    """Pooled embeddings (n, hidden) float32 of prefix states through ``clf``'s top layers."""
    clf.eval()
    out = np.zeros((len(prefix), clf.config.hidden_size), dtype=np.float32)
    for idx, hidden, mask in prefix.batches(batch_size):
        out[idx] = clf.embed(hidden, mask).numpy()
    return out


@torch.no_grad()
def _predict_logits(clf: IBClassifier, prefix: PrefixStates, batch_size: int = 128) -> np.ndarray:
    clf.eval()
    out = np.zeros((len(prefix), clf.n_classes), dtype=np.float32)
    for idx, hidden, mask in prefix.batches(batch_size):
        out[idx] = clf(hidden, mask)[0].numpy()
    return out


def finetune_ib(
    model,
    train: PrefixStates,
    y_train: np.ndarray,
    valid: PrefixStates,
    y_valid: np.ndarray,
    n_classes: int,
    n_trainable_layers: int,
    beta: float = 1e-3,
    epochs: int = 8,
    patience: int = 2,
    lr: float = 1e-4,
    head_lr: float = 1e-3,
    batch_size: int = 32,
    bottleneck_dim: int = 64,
    pooling: str = "mean",
    seed: int = 0,
    progress: bool = True,
) -> tuple[IBClassifier, FineTuneHistory]:
    """Fine-tune the top ``n_trainable_layers`` of ``model`` with a VIB head on the training
    split: loss = cross-entropy + ``beta`` * KL(N(mu, sigma^2) || N(0, I)). ``beta = 0`` is plain
    fine-tuning with the same head. ``epochs = 0`` returns the untrained head on the pretrained
    layers. Keeps the epoch with the lowest validation cross-entropy (early stopping after
    ``patience`` epochs without improvement). ``model`` itself is not modified."""
    if (
        train.n_frozen != valid.n_frozen
        or train.n_frozen != len(model.encoder.layer) - n_trainable_layers
    ):
        raise ValueError(
            "prefix states were computed for another number of trainable layers; rerun encode_prefix"
        )
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clf = IBClassifier(model, n_classes, n_trainable_layers, bottleneck_dim, pooling)
    head_params = [*clf.mu.parameters(), *clf.log_var.parameters(), *clf.head.parameters()]
    optimiser = torch.optim.AdamW(
        [{"params": clf.layers.parameters(), "lr": lr}, {"params": head_params, "lr": head_lr}],
        weight_decay=0.01,
    )
    y_tr = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    y_va = torch.as_tensor(np.asarray(y_valid), dtype=torch.long)
    ce = nn.CrossEntropyLoss()
    rows, best, best_epoch, best_state, stale = (
        [],
        float("inf"),
        0,
        copy.deepcopy(clf.state_dict()),
        0,
    )
    for epoch in tqdm(
        range(1, epochs + 1), desc=f"IB fine-tuning (beta={beta:g})", disable=not progress
    ):
        clf.train()
        total_ce = total_kl = 0.0
        for idx, hidden, mask in train.batches(
            batch_size, order=_bucketed_order(train, batch_size, rng)
        ):
            logits, kl = clf(hidden, mask)
            loss_ce = ce(logits, y_tr[idx])
            loss = loss_ce + beta * kl.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total_ce += loss_ce.item() * len(idx)
            total_kl += kl.mean().item() * len(idx)
        valid_ce = float(ce(torch.from_numpy(_predict_logits(clf, valid)), y_va))
        rows.append(
            {
                "epoch": epoch,
                "train_ce": total_ce / len(train),
                "train_kl": total_kl / len(train),
                "valid_ce": valid_ce,
            }
        )
        if valid_ce < best:
            best, best_epoch, best_state, stale = (
                valid_ce,
                epoch,
                copy.deepcopy(clf.state_dict()),
                0,
            )
        else:
            stale += 1
            if stale >= patience:
                break
    clf.load_state_dict(best_state)
    clf.eval()
    return clf, FineTuneHistory(pd.DataFrame(rows), best_epoch)


def predict_proba_lm(clf: IBClassifier, prefix: PrefixStates) -> np.ndarray:
    """Class probabilities (n, n_classes) of the fine-tuned LM classifier (bottleneck mean)."""
    return torch.softmax(torch.from_numpy(_predict_logits(clf, prefix)), -1).numpy()


# ------------------------------------------------------------------------------------ linear part


@dataclass
class LinearReduction:
    """An affine reduction ``z = x @ A + b`` (A: (d, k)), fit on training rows and standardised
    so every output has mean 0, variance 1 on them. ``loadings`` (k, d) are the components
    (sparse for ``method="sparse"``)."""

    A: np.ndarray
    b: np.ndarray
    loadings: np.ndarray
    method: str

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.A + self.b

    @property
    def n_components(self) -> int:
        return self.A.shape[1]

    @property
    def sparsity(self) -> float:
        """Fraction of exactly-zero loadings."""
        return float(np.mean(self.loadings == 0))


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(0)
    scale = X.std(0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def _affine(
    mean: np.ndarray,
    scale: np.ndarray,
    M: np.ndarray,
    X: np.ndarray,
    loadings: np.ndarray,
    method: str,
) -> LinearReduction:
    """Compose x -> ((x - mean) / scale) @ M -> standardised, as one affine map."""
    A = M / scale[:, None]
    b = -(mean / scale) @ M
    z = X @ A + b
    z_mean, z_scale = _standardiser(z)
    return LinearReduction(A / z_scale, (b - z_mean) / z_scale, loadings, method)


def sparse_loadings(
    X: np.ndarray, n_components: int, alpha: float = 0.3, max_iter: int = 1000, tol: float = 1e-8
) -> np.ndarray:
    """Sparse principal loadings (k, d) of centred X (n, d), one rank-1 component at a time
    (sPCA-rSVD, Shen & Huang 2008): alternate ``u = Xv / |Xv|`` and ``v = S(X^T u) / |S(X^T u)|``
    with S the soft threshold at ``alpha`` times the largest entry (``alpha`` in [0, 1): 0 gives
    ordinary principal axes, larger values zero more loadings), then deflate X by ``X v v^T``.
    Each loading has unit norm; the sign makes its largest entry positive."""
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha is a relative soft threshold in [0, 1), got {alpha}")
    R = np.array(X, dtype=np.float64)
    out = np.zeros((n_components, R.shape[1]))
    for j in range(n_components):
        v = R[
            np.argmax(np.linalg.norm(R, axis=1))
        ]  # start from the longest row: never orthogonal to the top axis
        v = v / max(np.linalg.norm(v), 1e-300)
        for _ in range(max_iter):
            u = R @ v
            norm = np.linalg.norm(u)
            if norm == 0:
                break
            w = R.T @ (u / norm)
            w = np.sign(w) * np.maximum(np.abs(w) - alpha * np.abs(w).max(), 0)
            v_new = w / max(np.linalg.norm(w), 1e-300)
            done = np.linalg.norm(v_new - v) < tol
            v = v_new
            if done:
                break
        v = v if v[np.argmax(np.abs(v))] >= 0 else -v
        out[j] = v
        R = R - np.outer(R @ v, v)
    return out


def fit_reduction(
    X: np.ndarray, n_components: int, method: str = "sparse", alpha: float = 0.3, seed: int = 0
) -> LinearReduction:
    """Fit the dimensionality reduction on training features X (n, d), standardised per column.

    ``method="sparse"``: the EFPCA-inspired reduction: scores are projections on L1-sparse
    loadings (`sparse_loadings`, relative soft threshold ``alpha``). ``method="pca"``: plain PCA.
    """
    X = np.asarray(X, dtype=np.float64)
    k = int(min(n_components, X.shape[0] - 1, X.shape[1]))
    if k < 1:
        raise ValueError(f"cannot fit {n_components} components on {X.shape[0]} rows")
    mean, scale = _standardiser(X)
    Xs = (X - mean) / scale
    if method == "sparse":
        loadings = sparse_loadings(Xs, k, alpha)
    elif method == "pca":
        from sklearn.decomposition import PCA

        loadings = PCA(n_components=k, random_state=seed).fit(Xs).components_
    else:
        raise ValueError(f"method must be 'sparse' or 'pca', not {method!r}")
    return _affine(mean, scale, loadings.T, X, loadings, method)


def _complement(
    X: np.ndarray, main: LinearReduction, n_components: int, seed: int = 0
) -> LinearReduction:
    """PCA of the training features projected onto the orthogonal complement of the directions
    the main reduction reads (the column space of ``main.A``), as an affine map on raw x."""
    from sklearn.decomposition import PCA

    mean, scale = _standardiser(X)
    Xs = (X - mean) / scale
    Q, _ = np.linalg.qr(main.A * scale[:, None])  # main.A in standardised coordinates
    P = np.eye(X.shape[1]) - Q @ Q.T
    k = int(min(n_components, X.shape[0] - 1, X.shape[1] - Q.shape[1]))
    V = PCA(n_components=k, random_state=seed).fit(Xs @ P).components_
    return _affine(mean, scale, P @ V.T, X, V, "complement")


def _proba(F: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        p1 = 1 / (1 + np.exp(-np.clip(F[:, 0], -50, 50)))
        return np.column_stack([1 - p1, p1])
    F = F - F.max(1, keepdims=True)
    e = np.exp(F)
    return e / e.sum(1, keepdims=True)


def _log_loss(y: np.ndarray, P: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(P[np.arange(len(y)), y], 1e-12, 1))))


def _targets(y: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        return y.astype(float)[:, None]
    return np.eye(n_classes)[y]


@dataclass
class MolexModel:
    """A fitted MoleX model: reduction + logistic regression (+ residual calibration).

    Scores (n, n_out) are logits: one column for binary tasks (class 1), one per class otherwise.
    ``calibration`` holds the complement reduction and its accumulated linear map, or None.
    """

    reduction: LinearReduction
    coef: np.ndarray
    intercept: np.ndarray
    n_classes: int
    complement: LinearReduction | None = None
    calib_coef: np.ndarray | None = None
    calib_intercept: np.ndarray | None = None
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    calib_rounds: int = 0

    def weights(self, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The whole model as one affine map of the summed n-gram features: (W (d, n_out), c (n_out,))."""
        W = self.reduction.A @ self.coef
        c = self.reduction.b @ self.coef + self.intercept
        if calibrated and self.complement is not None and self.calib_coef is not None:
            W = W + self.complement.A @ self.calib_coef
            c = c + self.complement.b @ self.calib_coef + self.calib_intercept
        return W, c

    def decision_function(self, X: np.ndarray, calibrated: bool = True) -> np.ndarray:
        W, c = self.weights(calibrated)
        return np.asarray(X, dtype=np.float64) @ W + c

    def predict_proba(self, X: np.ndarray, calibrated: bool = True) -> np.ndarray:
        return _proba(self.decision_function(X, calibrated), self.n_classes)

    def predict(self, X: np.ndarray, calibrated: bool = True) -> np.ndarray:
        return self.predict_proba(X, calibrated).argmax(1)

    def ngram_contributions(
        self, centred_embeddings: np.ndarray, target: int = 1, calibrated: bool = True
    ) -> np.ndarray:
        """Each n-gram's contribution (n_texts,) to the score of class ``target``: its centred
        embedding times W (for more than two classes: that class's logit minus the mean logit)."""
        W, _ = self.weights(calibrated)
        if self.n_classes > 2:
            W = W[:, [target]] - W.mean(1, keepdims=True)
        return (np.asarray(centred_embeddings, dtype=np.float64) @ W)[:, 0]

    @property
    def n_parameters(self) -> int:
        """Weights of the deployed affine map: W (d x n_out) + c (n_out)."""
        W, c = self.weights()
        return int(W.size + c.size)


def fit_molex(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    n_classes: int,
    n_components: int = 16,
    reduction: str = "sparse",
    sparse_alpha: float = 0.3,
    logreg_c: float = 1.0,
    calibrate: bool = True,
    complement_components: int = 32,
    calib_rounds: int = 200,
    calib_lr: float = 0.3,
    calib_ridge: float = 1.0,
    calib_patience: int = 20,
    seed: int = 0,
) -> MolexModel:
    """Fit MoleX on training features (validation features only steer calibration's early stop).

    Residual calibration: with F the training logits, each round fits a ridge regression of the
    training residuals (one-hot labels minus probabilities) on the complement features u and
    adds ``calib_lr`` times it to F (a gradient-boosting step with linear learners); the number
    of rounds with the lowest validation log-loss is kept (0 means calibration is switched off).
    """
    from sklearn.linear_model import LogisticRegression

    y_train, y_valid = np.asarray(y_train, dtype=int), np.asarray(y_valid, dtype=int)
    red = fit_reduction(X_train, n_components, reduction, sparse_alpha, seed=seed)
    lr = LogisticRegression(C=logreg_c, max_iter=5000).fit(red.transform(X_train), y_train)
    model = MolexModel(red, lr.coef_.T.copy(), lr.intercept_.copy(), n_classes)
    if not calibrate:
        return model
    comp = _complement(np.asarray(X_train, dtype=np.float64), red, complement_components, seed)
    U_tr = np.column_stack([comp.transform(X_train), np.ones(len(X_train))])
    U_va = np.column_stack([comp.transform(X_valid), np.ones(len(X_valid))])
    F_tr, F_va = model.decision_function(X_train), model.decision_function(X_valid)
    T_tr = _targets(y_train, n_classes)
    gram = U_tr.T @ U_tr + calib_ridge * np.eye(U_tr.shape[1])
    acc = np.zeros((U_tr.shape[1], F_tr.shape[1]))
    best_loss, best_round, best_acc = _log_loss(y_valid, _proba(F_va, n_classes)), 0, acc.copy()
    rows = [
        {
            "round": 0,
            "train_loss": _log_loss(y_train, _proba(F_tr, n_classes)),
            "valid_loss": best_loss,
        }
    ]
    for r in range(1, calib_rounds + 1):
        residual = T_tr - (
            _proba(F_tr, n_classes)[:, 1:] if n_classes == 2 else _proba(F_tr, n_classes)
        )
        step = calib_lr * np.linalg.solve(gram, U_tr.T @ residual)
        acc += step
        F_tr, F_va = F_tr + U_tr @ step, F_va + U_va @ step
        valid_loss = _log_loss(y_valid, _proba(F_va, n_classes))
        rows.append(
            {
                "round": r,
                "train_loss": _log_loss(y_train, _proba(F_tr, n_classes)),
                "valid_loss": valid_loss,
            }
        )
        if valid_loss < best_loss - 1e-9:
            best_loss, best_round, best_acc = valid_loss, r, acc.copy()
        elif r - best_round >= calib_patience:
            break
    model.complement = comp
    model.calib_coef, model.calib_intercept = best_acc[:-1], best_acc[-1]
    model.history, model.calib_rounds = pd.DataFrame(rows), best_round
    return model


def classification_scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy (argmax) and ROC-AUC (binary; macro one-vs-rest for more classes) of (n, n_classes) probabilities."""
    from sklearn.metrics import roc_auc_score

    y, proba = np.asarray(y, dtype=int), np.asarray(proba, dtype=float)
    acc = float(np.mean(proba.argmax(1) == y))
    if len(np.unique(y)) < proba.shape[1]:
        return {"accuracy": acc, "roc_auc": float("nan")}
    auc = (
        roc_auc_score(y, proba[:, 1])
        if proba.shape[1] == 2
        else roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    return {"accuracy": acc, "roc_auc": float(auc)}


# ------------------------------------------------------------------------------------ baselines


def morgan_atom_scores(
    smiles: Sequence[str], bit_weights: np.ndarray, radius: int = 2, n_bits: int = 2048
) -> list[np.ndarray]:
    """Atom attributions of a linear model on binary Morgan bits: each set bit's weight is split
    over the environments that set it, and each environment's share over its atoms."""
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    weights = np.asarray(bit_weights, dtype=float).ravel()
    out = []
    for s in smiles:
        mol = parse_smiles(s)
        info = rdFingerprintGenerator.AdditionalOutput()
        info.AllocateBitInfoMap()
        gen.GetFingerprint(mol, additionalOutput=info)
        scores = np.zeros(mol.GetNumAtoms())
        for bit, envs in info.GetBitInfoMap().items():
            for center, rad in envs:
                atoms = {center}
                if rad > 0:
                    for bond in Chem.FindAtomEnvironmentOfRadiusN(mol, rad, center):
                        b = mol.GetBondWithIdx(bond)
                        atoms |= {b.GetBeginAtomIdx(), b.GetEndAtomIdx()}
                scores[list(atoms)] += weights[bit] / (len(envs) * len(atoms))
        out.append(scores)
    return out


def _fingerprint_baselines(
    df: pd.DataFrame, split: dict, sizes: dict, n_classes: int, target: int, seed: int
):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from molkit.chem import morgan_bits

    fp = morgan_bits(
        df["smiles"].tolist(),
        radius=sizes["morgan_radius"],
        n_bits=sizes["morgan_bits"],
        progress=False,
    )
    y = df["label"].to_numpy()
    tr, te = split["train"], split["test"]
    lr = LogisticRegression(C=0.1, max_iter=5000).fit(fp[tr], y[tr])
    rf = RandomForestClassifier(n_estimators=sizes["rf_trees"], random_state=seed, n_jobs=1).fit(
        fp[tr], y[tr]
    )
    coef = lr.coef_[0] if n_classes == 2 else lr.coef_[target] - lr.coef_.mean(0)
    attributions = morgan_atom_scores(
        df["smiles"].iloc[te], coef, sizes["morgan_radius"], sizes["morgan_bits"]
    )
    return lr.predict_proba(fp[te]), rf.predict_proba(fp[te]), attributions


def _gin_baseline(
    df: pd.DataFrame, split: dict, sizes: dict, n_classes: int, seed: int
) -> np.ndarray:
    from molkit.chem import graphs_from_smiles
    from molkit.models.gnn import GraphPredictor, predict_graph_model, train_graph_model

    y = df["label"].to_numpy()
    targets = y[:, None].astype(float) if n_classes == 2 else np.eye(n_classes)[y]
    graphs = graphs_from_smiles(df["smiles"].tolist(), progress=False)
    torch.manual_seed(seed)
    model = GraphPredictor(
        targets.shape[1], num_layers=sizes["gin_layers"], hidden=sizes["gin_hidden"], dropout=0.1
    )
    tr, va, te = split["train"], split["valid"], split["test"]
    train_graph_model(
        model,
        [graphs[i] for i in tr],
        targets[tr],
        [graphs[i] for i in va],
        targets[va],
        epochs=sizes["gin_epochs"],
        patience=10,
        seed=seed,
        progress=False,
    )
    p = predict_graph_model(model, [graphs[i] for i in te])
    if n_classes == 2:
        return np.column_stack([1 - p[:, 0], p[:, 0]])
    return p / p.sum(1, keepdims=True)


# ------------------------------------------------------------------------------------ benchmark


@dataclass
class BenchmarkResult:
    """What `run_benchmark` measured on one dataset.

    ``rows``: tidy results (dataset, method, metric, value, seed, split, note) for
    ``molkit.record_frame``. ``predictions[(seed, method)]``: test-set class probabilities.
    ``examples``: the first seed's test molecules with MoleX atom scores (calibrated and not) and
    ground truth. ``calibration[seed]``: the calibration history (round, train/valid loss).
    ``models``: the first seed's fitted objects (for `measure_throughput` and inspection).
    """

    rows: pd.DataFrame
    predictions: dict[tuple[int, str], np.ndarray]
    examples: pd.DataFrame
    calibration: dict[int, pd.DataFrame]
    models: dict[str, Any]


def _rows(
    dataset: str, method: str, seed: int, metrics: dict[str, float], note: str = ""
) -> list[dict]:
    return [
        {
            "dataset": dataset,
            "method": method,
            "metric": k,
            "value": float(v),
            "seed": seed,
            "split": "test",
            "note": note,
        }
        for k, v in metrics.items()
    ]


def _abs_auc(atoms: list[np.ndarray], truths: list) -> float:
    """Explanation AUC of unsigned importance |score| (Lamole scores tokens by gradient norms)."""
    return explanation_auc([np.abs(a) for a in atoms], truths)[0]


def run_benchmark(
    data: str | pd.DataFrame, sizes: dict[str, Any], lm=None, progress: bool = True
) -> BenchmarkResult:
    """MoleX, its ablations and the baselines on one dataset over ``sizes["seeds"]``, one split per seed.

    ``data``: a name in `EXPLAIN_DATASETS` or a frame shaped like `load_explain_dataset`'s.
    Methods: ``MoleX`` (IB fine-tuned features, sparse reduction, calibrated), ``MoleX w/o
    calibration``, ``MoleX (PCA)``, ``MoleX (beta=0)``, ``MoleX (no fine-tuning)`` (the last two on
    ``sizes["ablation_datasets"]``), ``Fine-tuned LM`` (the VIB classifier on whole SMILES),
    ``Morgan FP + LR``, ``Morgan FP + RF``, ``GIN``, ``Random attribution``. Metrics: accuracy,
    roc_auc, explanation_auc (signed scores toward the explained class), explanation_auc_abs
    (unsigned importance), n_explained, calibration_rounds, finetune_seconds, parameters.
    Test labels are read only to score predictions. ``lm``: a loaded (model, tokenizer) pair,
    default ``load_chemical_lm(sizes["lm_model"])``.
    """
    model, tokenizer = lm if lm is not None else load_chemical_lm(sizes["lm_model"])
    df = (
        load_explain_dataset(data, sizes.get("max_molecules"), seed=sizes["seeds"][0])
        if isinstance(data, str)
        else data
    )
    name = df.attrs["name"]
    n_classes, target = df.attrs["n_classes"], df.attrs["explain_class"]
    y = df["label"].to_numpy()
    k_top = sizes["n_trainable_layers"]
    table = build_ngram_table(df["smiles"].tolist(), sizes["n_max"], progress=progress)
    prefix_mols = encode_prefix(
        model,
        tokenizer,
        df["smiles"].tolist(),
        k_top,
        max_length=sizes["max_length"],
        progress=progress,
    )
    prefix_ngrams = encode_prefix(
        model, tokenizer, table.texts, k_top, max_length=sizes["max_length"], progress=progress
    )
    ablate = name in sizes["ablation_datasets"]
    emb_pretrained = (
        embed_prefix(IBClassifier(model, n_classes, k_top), prefix_ngrams) if ablate else None
    )
    rows: list[dict] = []
    predictions: dict[tuple[int, str], np.ndarray] = {}
    calibration: dict[int, pd.DataFrame] = {}
    examples, models = pd.DataFrame(), {}
    fit_kw = {
        k: sizes[k]
        for k in (
            "n_components",
            "sparse_alpha",
            "logreg_c",
            "complement_components",
            "calib_rounds",
            "calib_lr",
            "calib_ridge",
            "calib_patience",
        )
    }
    ft_kw = {k: sizes[k] for k in ("lr", "head_lr", "batch_size", "bottleneck_dim", "pooling")}
    for seed in sizes["seeds"]:
        split = explain_split(df, seed, sizes["split_fractions"])
        tr, va, te = split["train"], split["valid"], split["test"]
        truths = [df["truth"].iloc[i] for i in te]

        def finetune(beta: float, seed: int = seed, tr=tr, va=va):
            start = time.perf_counter()
            clf, hist = finetune_ib(
                model,
                prefix_mols.subset(tr),
                y[tr],
                prefix_mols.subset(va),
                y[va],
                n_classes,
                k_top,
                beta=beta,
                epochs=sizes["finetune_epochs"],
                patience=sizes["finetune_patience"],
                seed=seed,
                progress=progress,
                **ft_kw,
            )
            return clf, hist, time.perf_counter() - start

        def score(
            method: str,
            proba: np.ndarray,
            extra: dict | None = None,
            note: str = "",
            seed: int = seed,
            te=te,
        ):
            predictions[seed, method] = proba
            return _rows(
                name, method, seed, {**classification_scores(y[te], proba), **(extra or {})}, note
            )

        clf, hist, seconds = finetune(sizes["beta"])
        rows += score(
            "Fine-tuned LM",
            predict_proba_lm(clf, prefix_mols.subset(te)),
            {"finetune_seconds": seconds, "best_epoch": hist.best_epoch},
            note=f"top {k_top} of {len(model.encoder.layer)} layers + VIB head, beta={sizes['beta']:g}",
        )
        feature_sets = {"ib": embed_prefix(clf, prefix_ngrams)}
        variants = [
            ("MoleX", "ib", "sparse", True),
            ("MoleX w/o calibration", "ib", "sparse", False),
            ("MoleX (PCA)", "ib", "pca", True),
        ]
        if ablate:
            feature_sets["beta0"] = embed_prefix(finetune(0.0)[0], prefix_ngrams)
            feature_sets["pretrained"] = emb_pretrained
            variants += [
                ("MoleX (beta=0)", "beta0", "sparse", True),
                ("MoleX (no fine-tuning)", "pretrained", "sparse", True),
            ]
        fitted: dict[str, MolexModel] = {}
        for method, features, reduction, calibrated in variants:
            X, centred = molex_features(table, feature_sets[features], tr)
            key = f"{features}/{reduction}"
            if key not in fitted:
                fitted[key] = fit_molex(
                    X[tr], y[tr], X[va], y[va], n_classes, reduction=reduction, seed=seed, **fit_kw
                )
            mx = fitted[key]
            atoms = atom_scores_from_ngrams(
                table, mx.ngram_contributions(centred, target, calibrated), te
            )
            exp_auc, n_exp = explanation_auc(atoms, truths)
            extra = {
                "explanation_auc": exp_auc,
                "explanation_auc_abs": _abs_auc(atoms, truths),
                "n_explained": n_exp,
            }
            if calibrated:
                extra["calibration_rounds"] = mx.calib_rounds
            rows += score(method, mx.predict_proba(X[te], calibrated), extra)
            if method == "MoleX":
                calibration[seed] = mx.history
                rows += _rows(
                    name,
                    method,
                    seed,
                    {"n_parameters": mx.n_parameters, "loading_sparsity": mx.reduction.sparsity},
                )
                if seed == sizes["seeds"][0]:
                    uncal = atom_scores_from_ngrams(
                        table, mx.ngram_contributions(centred, target, False), te
                    )
                    examples = pd.DataFrame(
                        {
                            "smiles": df["smiles"].iloc[te].to_numpy(),
                            "label": y[te],
                            "truth": truths,
                            "molex": atoms,
                            "molex_uncalibrated": uncal,
                            "prediction": mx.predict(X[te]),
                        }
                    )
                    models = {
                        "table": table,
                        "molex": mx,
                        "centred": centred,
                        "classifier": clf,
                        "test": te,
                        "df": df,
                    }
        p_lr, p_rf, fp_atoms = _fingerprint_baselines(df, split, sizes, n_classes, target, seed)
        fp_explained = {
            "explanation_auc": explanation_auc(fp_atoms, truths)[0],
            "explanation_auc_abs": _abs_auc(fp_atoms, truths),
        }
        rows += score("Morgan FP + LR", p_lr, fp_explained)
        rows += score("Morgan FP + RF", p_rf)
        rows += score("GIN", _gin_baseline(df, split, sizes, n_classes, seed))
        rand = random_attributions(table.n_atoms[te], seed)
        rand_auc = explanation_auc(rand, truths)[0]  # uniform in [0, 1): its magnitudes are itself
        rows += _rows(
            name,
            "Random attribution",
            seed,
            {"explanation_auc": rand_auc, "explanation_auc_abs": rand_auc},
        )
    n_params_lm = sum(
        p.numel()
        for part in (model.embeddings, model.encoder, clf.mu, clf.log_var, clf.head)
        for p in part.parameters()
    )
    rows += _rows(name, "Fine-tuned LM", sizes["seeds"][0], {"n_parameters": n_params_lm})
    rows += _rows(
        name,
        "MoleX",
        sizes["seeds"][0],
        {"n_unique_ngrams": len(table.texts), "n_molecules": len(df)},
    )
    return BenchmarkResult(pd.DataFrame(rows), predictions, examples, calibration, models)


@torch.no_grad()
def _lm_pooled(model, clf: IBClassifier, enc) -> torch.Tensor:
    with autocast("cpu"):
        hidden = model.embeddings(input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids"))
        hidden = _run_layers(
            model.encoder.layer[: clf.n_frozen], model.config, hidden, enc["attention_mask"]
        ).float()
    return clf(hidden, enc["attention_mask"])[0]


def measure_throughput(
    result: BenchmarkResult,
    lm,
    n_molecules: int = 256,
    repeats: int = 3,
    batch_size: int = 64,
    max_length: int = 256,
) -> pd.DataFrame:
    """CPU inference speed of MoleX and of the fine-tuned LM classifier on the same test
    molecules (cycled up to ``n_molecules``), in one run; best of ``repeats``.

    Steps: MoleX ``group n-grams`` (RDKit group tokens + fragment texts), ``n-gram lookup``
    (summing each n-gram's stored contribution vector), ``linear model`` (the affine map on summed
    features), ``LM embedding of new n-grams`` (cold start: the molecules' unique n-grams through
    the whole LM); LM classifier ``tokenise`` and ``LM forward`` (all layers + head).
    Returns rows (pipeline, step, seconds_per_molecule, molecules_per_s).
    """
    model, tokenizer = lm
    mx: MolexModel = result.models["molex"]
    clf: IBClassifier = result.models["classifier"]
    table: NgramTable = result.models["table"]
    te = np.resize(result.models["test"], n_molecules)
    smiles = result.models["df"]["smiles"].to_numpy()[te].tolist()
    W, c = mx.weights()
    per_ngram = result.models["centred"] @ W
    lookup = {text: per_ngram[j] for j, text in enumerate(table.texts)}
    mol_texts = [[table.texts[j] for j, _ in table.occurrences[i]] for i in te]
    X = np.asarray(table.counts[te] @ result.models["centred"])
    new_texts = sorted({t for texts in mol_texts for t in texts})
    batched = [smiles[s : s + batch_size] for s in range(0, len(smiles), batch_size)]

    def tokenise(texts):
        return tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )

    encoded = [tokenise(b) for b in batched]

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) / n_molecules

    def ngrams():
        for s in smiles:
            mol = parse_smiles(s)
            [ngram_text(mol, atoms) for _, atoms in group_ngrams(group_tokens(mol), 3)]

    def table_sum():
        for texts in mol_texts:
            np.sum([lookup[t] for t in texts], axis=0) + c

    def embed_new():
        for s in range(0, len(new_texts), batch_size):
            _lm_pooled(model, clf, tokenise(new_texts[s : s + batch_size]))

    steps = [
        ("MoleX", "group n-grams", best(ngrams)),
        ("MoleX", "n-gram lookup", best(table_sum)),
        ("MoleX", "linear model", best(lambda: X @ W + c)),
        ("MoleX", "LM embedding of new n-grams", best(embed_new)),
        ("LM classifier", "tokenise", best(lambda: [tokenise(b) for b in batched])),
        ("LM classifier", "LM forward", best(lambda: [_lm_pooled(model, clf, e) for e in encoded])),
    ]
    out = pd.DataFrame(steps, columns=["pipeline", "step", "seconds_per_molecule"])
    out["molecules_per_s"] = 1 / out["seconds_per_molecule"]
    return out


def throughput_summary(steps: pd.DataFrame) -> dict[str, float]:
    """Molecules/s of the compared pipelines from `measure_throughput` rows, and the speed-ups.

    ``molex_model`` (affine map on features) vs ``lm_model`` (LM forward on token ids);
    ``molex_warm`` (n-grams + lookup) and ``molex_cold`` (+ LM embedding of every new n-gram)
    vs ``lm_end_to_end`` (tokenise + forward).
    """
    t = {
        (p, s): v
        for p, s, v in zip(
            steps["pipeline"], steps["step"], steps["seconds_per_molecule"], strict=True
        )
    }
    molex_model = t["MoleX", "linear model"]
    molex_warm = t["MoleX", "group n-grams"] + t["MoleX", "n-gram lookup"]
    molex_cold = molex_warm + t["MoleX", "LM embedding of new n-grams"]
    lm_model = t["LM classifier", "LM forward"]
    lm_e2e = lm_model + t["LM classifier", "tokenise"]
    return {
        "molex_model_mol_per_s": 1 / molex_model,
        "lm_model_mol_per_s": 1 / lm_model,
        "speedup_model": lm_model / molex_model,
        "molex_warm_mol_per_s": 1 / molex_warm,
        "molex_cold_mol_per_s": 1 / molex_cold,
        "lm_end_to_end_mol_per_s": 1 / lm_e2e,
        "speedup_end_to_end_warm": lm_e2e / molex_warm,
        "speedup_end_to_end_cold": lm_e2e / molex_cold,
    }


def save_examples(examples: pd.DataFrame, path: str | Path) -> Path:
    """Write explanation examples (atom scores as lists) as JSON lines; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = examples.copy()
    for col in ("truth", "molex", "molex_uncalibrated"):
        frame[col] = [None if v is None else np.asarray(v).tolist() for v in frame[col]]
    frame.to_json(path, orient="records", lines=True)
    return path
