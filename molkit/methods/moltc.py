"""MolTC (Fang et al. 2024, arXiv 2402.03781): molecule pairs in a language model, with graph tokens
and chain-of-thought targets.

What this module holds, in the order a notebook uses it:

* **Pair data.** ``pair_key`` / ``deduplicate_pairs`` (unordered pairs, conflicting labels dropped),
  ``drug_cold_split`` (every valid/test pair holds a molecule absent from training),
  ``make_pair_split`` (upstream / random / grouped by molecule 1 / drug-cold), and
  ``split_overlap`` / ``check_cold_split`` (how much of each part the training part already shows).
* **Baselines.** ``DrugPrior`` (no chemistry: product of each drug's training positive rate),
  ``pair_fingerprints`` + ``fit_gradient_boosting`` (Morgan bits of both molecules), ``PairGIN``
  (one GIN for both molecules, concatenated or symmetric graph embeddings, MLP head).
* **Graph tokens.** ``QFormerProjector``: learned query tokens that self-attend, cross-attend to a
  molecule's atom embeddings (from ``molkit.models.gnn.GIN``) and are mapped to the LM's hidden size;
  ``init_projector_from_bert`` copies a BERT's self-attention and feed-forward weights into it;
  ``RoleProjectors`` holds one projector shared by both roles or one per role (``separate()`` is the
  paper's dynamic parameter sharing: shared in pre-training, copied per role for fine-tuning).
* **Targets and answers.** ``regression_target`` (coarse range first, then the value), ``property_text``
  / ``pretrain_target`` (RDKit descriptors and functional groups as text), ``DDI_ANSWERS``,
  ``parse_value`` / ``parse_values`` (robust, counting what could not be parsed), ``parse_ddi_answer``.

The LM part (prompts with graph-token slots, splicing into ``inputs_embeds``, LoRA training,
log-likelihood scoring of the two DDI answers, generation) follows in the second half of the module.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from molkit.data.splits import Split, group_split, predefined_split, random_split

__all__ = [
    "DDI_ANSWERS",
    "DrugPrior",
    "FittedPairGIN",
    "GRAPH_TOKEN",
    "GraphTokenEncoder",
    "LMVariant",
    "LM_VARIANTS",
    "OFFICIAL_SETTINGS",
    "PRETRAIN_DESCRIPTORS",
    "PROFILE_SIZES",
    "PairGIN",
    "PairLMSession",
    "PairTask",
    "QFormerLayer",
    "QFormerProjector",
    "RoleProjectors",
    "TASKS",
    "add_graph_token",
    "answer_log_likelihoods",
    "check_cold_split",
    "deduplicate_pairs",
    "drug_cold_split",
    "encode_pair_examples",
    "fit_gradient_boosting",
    "fit_pair_gin",
    "generate_pair_answers",
    "graph_positions",
    "init_projector_from_bert",
    "load_pairs",
    "make_pair_split",
    "metrics_for",
    "pair_fingerprints",
    "pair_graphs",
    "pair_key",
    "pair_node_embeddings",
    "pair_prompt",
    "parse_ddi_answer",
    "parse_value",
    "parse_values",
    "pretrain_graph_encoder",
    "pretrain_target",
    "property_text",
    "regression_target",
    "run_baselines",
    "save_smoke_lm",
    "score_ddi",
    "split_overlap",
    "swap_consistency",
    "task_answers",
    "task_prompts",
    "train_pair_lm",
    "value_range",
]

#: The official MolTC settings, for the notebook's comparison table.
OFFICIAL_SETTINGS: dict[str, str] = {
    "graph encoder": "GIN, 5 layers x 300 (MoleculeSTM / Hu et al. pre-trained), frozen",
    "projector": "Q-Former from SciBERT, 8 query tokens per molecule, one projector in every stage",
    "language model": "Galactica-1.3B with LoRA r 8 / alpha 32 on q_proj, v_proj",
    "optimiser": "AdamW, lr 1e-4 -> 1e-5 cosine, warm-up",
    "decoding": "5-beam generation; DDI read by string matching",
    "CoT bins": "0.5 units (solvation), 10 nm (chromophore)",
}

#: Sizes per profile (passed to ``molkit.setup(sizes=...)``).
PROFILE_SIZES: dict[str, dict] = {
    "smoke": {
        "ddi_rows": 1200,  # seeded subsample of ChCh-Miner rows
        "reg_rows": 300,  # seeded subsample of each regression set
        "regression_sets": ["freesolv-pairs", "combisolu"],
        "n_bits": 128,
        "gbm_iter": 20,
        "gbm_lr": 0.2,
        "gin_hidden": 16,
        "gin_layers": 2,
        "gin_epochs": 1,
        "seeds": [0],
        "lm": "tiny",  # a tiny random Llama saved to a tmp dir
        "lm_gin_hidden": 32,
        "lm_gin_epochs": 1,
        "projector_layers": 1,
        "projector_hidden": 384,  # minilm-l6's width, so its layers can initialise the projector
        "projector_heads": 12,
        "lm_pretrain_pairs": 4,
        "lm_train_pairs": 8,
        "lm_test_pairs": 4,
        "smiles_chars": 16,
        "max_new_tokens": 8,
        "lm_lr": 5e-4,
        "lm_batch_size": 4,
    },
    "default": {
        "ddi_rows": None,  # all rows
        "reg_rows": None,
        "regression_sets": ["freesolv-pairs", "combisolu", "chromophore-abs", "chromophore-emi", "chromophore-life"],
        "n_bits": 1024,  # per molecule (2 x 1024 features)
        "gbm_iter": 200,  # early stopping on the validation part usually ends sooner
        "gbm_lr": 0.2,
        "gin_hidden": 64,  # the pair-GIN baseline (the LM's GIN below is 5 x 300)
        "gin_layers": 3,
        "gin_epochs": 2,
        "gin_min_steps": 150,  # small sets get more epochs (FreeSolv: ~16 batches of 32 an epoch)
        "seeds": [0, 1, 2],
        "lm": "smollm2-135m-instruct",
        "lm_gin_hidden": 300,
        "lm_gin_epochs": 1,
        "projector_layers": 2,
        "projector_hidden": 384,
        "projector_heads": 12,
        "lm_pretrain_pairs": 256,
        "lm_train_pairs": 256,  # ~64 optimiser steps per variant: ~2 min each at ~175 training tokens/s (2 idle cores)
        "lm_test_pairs": 64,
        "smiles_chars": 24,
        "max_new_tokens": 34,  # the longest FreeSolv CoT target is 29 tokens + EOS
        "lm_lr": 1e-3,
        "lm_batch_size": 4,
    },
    "full": {
        "ddi_rows": None,
        "reg_rows": None,
        "regression_sets": ["freesolv-pairs", "combisolu", "chromophore-abs", "chromophore-emi", "chromophore-life"],
        "n_bits": 2048,
        "gbm_iter": 1000,
        "gbm_lr": 0.1,
        "gin_hidden": 300,
        "gin_layers": 5,
        "gin_epochs": 100,
        "gin_min_steps": 2000,
        "seeds": [0, 1, 2],
        "lm": "facebook/galactica-1.3b",
        "lm_gin_hidden": 300,
        "lm_gin_epochs": 20,
        "projector_layers": 6,
        "projector_hidden": 384,
        "projector_heads": 12,
        "lm_pretrain_pairs": 20000,
        "lm_train_pairs": None,  # the whole training part
        "lm_test_pairs": None,
        "smiles_chars": 256,
        "max_new_tokens": 40,
        "num_beams": 5,  # the official decoding
        "lm_lr": 1e-4,
        "lm_batch_size": 16,
    },
}


# ============================================================== pair data and splits


def pair_key(a: str, b: str) -> tuple[str, str]:
    """The unordered key of a pair: ``(min(a, b), max(a, b))``."""
    return (a, b) if a <= b else (b, a)


def _keys(df: pd.DataFrame, cols: tuple[str, str]) -> list[tuple[str, str]]:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"pair columns {missing} not in the frame (columns: {list(df.columns)}); pass cols=(...)")
    return [pair_key(str(a), str(b)) for a, b in zip(df[cols[0]], df[cols[1]], strict=True)]


def deduplicate_pairs(
    df: pd.DataFrame, label: str = "label", cols: tuple[str, str] = ("smiles_1", "smiles_2")
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per unordered pair: the first occurrence is kept; pairs whose copies disagree on
    ``label`` are dropped entirely (neither label can be trusted).

    Returns the de-duplicated frame (index reset) and counts: ``rows``, ``unique_pairs``,
    ``duplicate_rows`` (rows removed as repeats), ``conflicting_pairs`` (dropped), ``kept``.
    """
    keys = pd.Series(_keys(df, cols), index=df.index)
    n_labels = df[label].groupby(keys).nunique()
    conflicting = set(n_labels.index[n_labels > 1])
    first = ~keys.duplicated(keep="first")
    keep = first & ~keys.isin(conflicting)
    out = df[keep].reset_index(drop=True)
    report = {
        "rows": len(df),
        "unique_pairs": int(first.sum()),
        "duplicate_rows": int((~first).sum()),
        "conflicting_pairs": len(conflicting),
        "kept": len(out),
    }
    return out, report


def drug_cold_split(
    df: pd.DataFrame,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    cols: tuple[str, str] = ("smiles_1", "smiles_2"),
    unseen: str = "one",
) -> Split:
    """Seeded drug-cold split of de-duplicated pairs.

    Molecules are shuffled with ``seed`` and assigned to train / valid / test.
    ``unseen="one"``: a pair lands in test when it holds a test molecule, in valid when it holds a valid
    molecule and no test one, else in train, with molecule shares chosen so that the pair shares come out
    near ``fractions``; every valid and test pair contains a molecule absent from every training pair.
    ``unseen="both"``: a pair is kept only when both molecules fall in the same part (molecule shares
    proportional to the square roots of ``fractions``), so no valid or test pair shares a molecule with
    train; the pairs that straddle two parts (about half) are left out of every part.
    Raises when an unordered pair occurs twice (run :func:`deduplicate_pairs` first).
    """
    f_train, f_valid, f_test = (float(f) for f in fractions)
    if abs(f_train + f_valid + f_test - 1) > 1e-6 or min(f_train, f_valid, f_test) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    keys = _keys(df, cols)
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"{len(keys) - len(set(keys))} unordered pairs occur more than once; run deduplicate_pairs(df) first "
            "so that no pair (or its swap) can sit on both sides of the split"
        )
    if unseen == "one":
        # P(pair has >= 1 test molecule) = 1 - (1 - m_test)^2, and likewise for valid given no test one.
        m_test = 1 - math.sqrt(1 - f_test)
        m_valid = math.sqrt(1 - f_test) - math.sqrt(max(f_train, 0.0)) if f_valid > 0 else 0.0
    elif unseen == "both":
        roots = [math.sqrt(f) for f in (f_train, f_valid, f_test)]
        m_valid, m_test = roots[1] / sum(roots), roots[2] / sum(roots)
    else:
        raise ValueError(f"unseen must be 'one' or 'both', not {unseen!r}")
    molecules = sorted(set(df[cols[0]].astype(str)) | set(df[cols[1]].astype(str)))
    order = np.random.default_rng(seed).permutation(len(molecules))
    n_test, n_valid = int(round(m_test * len(molecules))), int(round(m_valid * len(molecules)))
    role = {}
    for rank, j in enumerate(order):
        role[molecules[j]] = 2 if rank < n_test else 1 if rank < n_test + n_valid else 0
    first, second = df[cols[0]].astype(str).map(role).to_numpy(), df[cols[1]].astype(str).map(role).to_numpy()
    part = np.maximum(first, second) if unseen == "one" else np.where(first == second, first, -1)
    return {name: np.flatnonzero(part == k) for k, name in enumerate(("train", "valid", "test"))}


def make_pair_split(
    df: pd.DataFrame,
    how: str,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    cols: tuple[str, str] = ("smiles_1", "smiles_2"),
) -> Split:
    """A split of a pair frame by name.

    ``upstream`` (the ``split`` column), ``random`` (seeded rows), ``grouped`` (seeded, every
    molecule 1 (solute, chromophore) within one part), ``drug_cold`` / ``drug_cold_both`` (see
    :func:`drug_cold_split`, ``unseen="one"`` / ``"both"``).
    """
    if how == "upstream":
        if "split" not in df.columns:
            raise ValueError("this frame has no upstream 'split' column; use how='random', 'grouped' or 'drug_cold'")
        return predefined_split(df["split"].tolist())
    if how == "random":
        return random_split(len(df), fractions, seed)
    if how == "grouped":
        return group_split(df[cols[0]].astype(str).tolist(), fractions, seed)
    if how in ("drug_cold", "drug_cold_both"):
        return drug_cold_split(df, fractions, seed, cols, unseen="both" if how == "drug_cold_both" else "one")
    raise ValueError(f"unknown split {how!r}; choose 'upstream', 'random', 'grouped', 'drug_cold' or 'drug_cold_both'")


def split_overlap(
    df: pd.DataFrame,
    split: Split,
    label: str | None = "label",
    cols: tuple[str, str] = ("smiles_1", "smiles_2"),
) -> pd.DataFrame:
    """How much of each part the training part already shows, one row per part.

    Columns: ``pairs``; ``repeated_pairs`` (unordered pairs occurring more than once within the part);
    ``repeated_conflicting`` (of those, with different labels); ``pairs_in_train`` (valid/test pairs whose
    unordered pair also occurs in train); ``opposite_label_in_train``; ``both_molecules_in_train``;
    ``new_molecule`` (pairs holding a molecule that no training pair holds); ``both_molecules_new``;
    ``positive_rate``.
    """
    keys = _keys(df, cols)
    labels = df[label].to_numpy(dtype=float) if label is not None else None
    train_idx = split["train"]
    train_labels: dict[tuple[str, str], set] = {}
    for i in train_idx:
        train_labels.setdefault(keys[i], set()).add(None if labels is None else labels[i])
    train_mols = set(df[cols[0]].astype(str).iloc[train_idx]) | set(df[cols[1]].astype(str).iloc[train_idx])
    rows = []
    for name, idx in split.items():
        part_keys = pd.Series([keys[i] for i in idx], dtype=object)
        counts = part_keys.value_counts()
        repeated = set(counts.index[counts > 1])
        conflicting = 0
        if labels is not None and repeated:
            by_key = pd.Series(labels[idx]).groupby(part_keys.to_numpy()).nunique()
            conflicting = int((by_key > 1).sum())
        a = df[cols[0]].astype(str).to_numpy()[idx]
        b = df[cols[1]].astype(str).to_numpy()[idx]
        in_train = opposite = 0
        if name != "train":
            for i in idx:
                seen = train_labels.get(keys[i])
                if seen is not None:
                    in_train += 1
                    if labels is not None and any(v != labels[i] for v in seen):
                        opposite += 1
        both = sum(x in train_mols and y in train_mols for x, y in zip(a, b, strict=True))
        neither = sum(x not in train_mols and y not in train_mols for x, y in zip(a, b, strict=True))
        rows.append(
            {
                "part": name,
                "pairs": len(idx),
                "repeated_pairs": len(repeated),
                "repeated_conflicting": conflicting,
                "pairs_in_train": in_train,
                "opposite_label_in_train": opposite,
                "both_molecules_in_train": both,
                "new_molecule": len(idx) - both,
                "both_molecules_new": neither,
                "positive_rate": float(np.nanmean(labels[idx])) if labels is not None and len(idx) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def check_cold_split(df: pd.DataFrame, split: Split, cols: tuple[str, str] = ("smiles_1", "smiles_2"),
                     unseen: str = "one") -> None:
    """Raise ``ValueError`` unless the split is cold: no unordered pair in two parts, and every valid
    and test pair holds a molecule that no training pair holds (``unseen="both"``: holds no molecule
    that a training pair holds)."""
    report = split_overlap(df, split, label=None, cols=cols).set_index("part")
    problems = []
    for part in ("valid", "test"):
        if part not in report.index:
            continue
        row = report.loc[part]
        if row["pairs_in_train"]:
            problems.append(f"{row['pairs_in_train']} {part} pairs also occur in train")
        if row["both_molecules_in_train"]:
            problems.append(f"{row['both_molecules_in_train']} {part} pairs have both molecules in train")
        if unseen == "both" and row["new_molecule"] - row["both_molecules_new"]:
            problems.append(f"{row['new_molecule'] - row['both_molecules_new']} {part} pairs have one molecule in train")
    keys = _keys(df, cols)
    valid_keys = {keys[i] for i in split.get("valid", [])}
    shared = sum(keys[i] in valid_keys for i in split.get("test", []))
    if shared:
        problems.append(f"{shared} test pairs also occur in valid")
    if problems:
        raise ValueError("the split is not cold: " + "; ".join(problems) + ". Use drug_cold_split on deduplicate_pairs(df).")


# ============================================================== no-chemistry prior


class DrugPrior:
    """Per-drug prior with no chemistry: score(a, b) = rate(a) * rate(b), where rate is a drug's
    positive rate over the training pairs it appears in (either position), shrunk towards the global
    rate with ``smoothing`` pseudo-pairs; unseen drugs get the global rate."""

    def __init__(self, smoothing: float = 1.0):
        self.smoothing = float(smoothing)
        self.rates: dict[str, float] = {}
        self.global_rate = float("nan")

    def fit(self, a: Sequence[str], b: Sequence[str], y: Sequence[float]) -> DrugPrior:
        y = np.asarray(y, dtype=float)
        if len(a) != len(y) or len(b) != len(y):
            raise ValueError(f"got {len(a)} / {len(b)} molecules for {len(y)} labels")
        self.global_rate = float(y.mean())
        frame = pd.DataFrame({"drug": list(a) + list(b), "y": np.concatenate([y, y])})
        stats = frame.groupby("drug")["y"].agg(["sum", "count"])
        s = self.smoothing
        self.rates = ((stats["sum"] + s * self.global_rate) / (stats["count"] + s)).to_dict()
        return self

    def predict(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Scores (n,) in [0, 1]."""
        if not self.rates:
            raise RuntimeError("call DrugPrior.fit(...) first")
        g = self.global_rate
        return np.array([self.rates.get(x, g) * self.rates.get(z, g) for x, z in zip(a, b, strict=True)])


# ============================================================== fingerprints + gradient boosting


def pair_fingerprints(
    smiles_1: Sequence[str],
    smiles_2: Sequence[str],
    radius: int = 2,
    n_bits: int = 1024,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Morgan bits of molecule 1, then of molecule 2 (each molecule fingerprinted once), then ``extra``
    context columns (e.g. temperature): float32 (n, 2 * n_bits + n_extra)."""
    from molkit.chem import morgan_bits

    unique = list(dict.fromkeys([*smiles_1, *smiles_2]))
    table = morgan_bits(unique, radius=radius, n_bits=n_bits, progress=False)
    row = {s: i for i, s in enumerate(unique)}
    parts = [table[[row[s] for s in smiles_1]], table[[row[s] for s in smiles_2]]]
    if extra is not None:
        parts.append(np.asarray(extra, dtype=np.float32).reshape(len(smiles_1), -1))
    return np.hstack(parts).astype(np.float32)


def fit_gradient_boosting(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    task: str = "classification",
    max_iter: int = 300,
    learning_rate: float = 0.1,
    seed: int = 0,
):
    """Histogram gradient boosting (scikit-learn) with early stopping on the given validation part
    (10 rounds without improvement). Returns the fitted estimator."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = {"classification": HistGradientBoostingClassifier, "regression": HistGradientBoostingRegressor}.get(task)
    if cls is None:
        raise ValueError(f"task must be 'classification' or 'regression', not {task!r}")
    model = cls(max_iter=max_iter, learning_rate=learning_rate, early_stopping=True, n_iter_no_change=10, random_state=seed)
    return model.fit(x_train, y_train, X_val=x_valid, y_val=y_valid)


# ============================================================== pair GIN


def pair_graphs(smiles_1: Sequence[str], smiles_2: Sequence[str], progress: bool = False) -> list:
    """One PyG ``Data`` per pair: both molecules as one disconnected graph, molecule 1's atoms first,
    with ``role`` (N,) = 0 / 1 marking the molecule (each molecule is featurised once)."""
    from torch_geometric.data import Data

    from molkit.chem import graphs_from_smiles

    unique = list(dict.fromkeys([*smiles_1, *smiles_2]))
    parts = {
        s: (g.x.numpy(), g.edge_index.numpy(), g.edge_attr.numpy())
        for s, g in zip(unique, graphs_from_smiles(unique, progress=progress), strict=True)
    }
    out = []
    for a, b in zip(smiles_1, smiles_2, strict=True):
        (x1, e1, f1), (x2, e2, f2) = parts[a], parts[b]
        n1, n2 = len(x1), len(x2)
        out.append(
            Data(
                x=torch.from_numpy(np.concatenate([x1, x2])),
                edge_index=torch.from_numpy(np.concatenate([e1, e2 + n1], axis=1)),
                edge_attr=torch.from_numpy(np.concatenate([f1, f2])),
                role=torch.from_numpy(np.repeat(np.array([0, 1]), [n1, n2])),
                num_nodes=n1 + n2,
            )
        )
    return out


class PairGIN(nn.Module):
    """One GIN shared by both molecules of a pair graph (see :func:`pair_graphs`) and an MLP head.

    ``combine="concat"``: head on [h1, h2] (role-aware: solute / solvent); ``"symmetric"``: head on
    [h1 + h2, h1 * h2] (invariant to swapping the molecules, for DDI). ``forward(batch)`` -> (B, n_tasks).
    """

    def __init__(self, n_tasks: int = 1, gin=None, combine: str = "concat", head_hidden: int = 256,
                 dropout: float = 0.1, **gin_kwargs):
        from molkit.models.gnn import GIN

        super().__init__()
        if combine not in ("concat", "symmetric"):
            raise ValueError(f"combine must be 'concat' or 'symmetric', not {combine!r}")
        self.gin = gin if gin is not None else GIN(**gin_kwargs)
        self.combine = combine
        d = self.gin.out_dim
        self.head = nn.Sequential(nn.Linear(2 * d, head_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(head_hidden, n_tasks))

    def node_embeddings(self, batch):
        """Dense atom embeddings per molecule: (B, 2, max_atoms, d) and a bool mask (B, 2, max_atoms)."""
        return pair_node_embeddings(self.gin, batch)

    def molecule_embeddings(self, batch):
        """Mean-pooled molecule embeddings (B, 2, d)."""

        nodes = self.gin.node_embeddings(batch)
        index = _molecule_index(batch)
        n = 2 * _n_pairs(batch)
        sums = torch.zeros(n, nodes.shape[1], dtype=nodes.dtype, device=nodes.device).index_add_(0, index, nodes)
        counts = torch.bincount(index, minlength=n).clamp(min=1).unsqueeze(1).to(nodes.dtype)
        return (sums / counts).view(-1, 2, nodes.shape[1])

    def forward(self, batch):

        h = self.molecule_embeddings(batch)
        h1, h2 = h[:, 0], h[:, 1]
        z = torch.cat([h1, h2], dim=1) if self.combine == "concat" else torch.cat([h1 + h2, h1 * h2], dim=1)
        return self.head(z)


def _n_pairs(batch) -> int:
    return int(batch.num_graphs) if getattr(batch, "batch", None) is not None else 1


def _molecule_index(batch):

    vector = getattr(batch, "batch", None)
    if vector is None:
        vector = torch.zeros(batch.x.shape[0], dtype=torch.long, device=batch.x.device)
    return 2 * vector + batch.role


def pair_node_embeddings(gin, batch, max_atoms: int | None = None):
    """Atom embeddings of every molecule of a batch of pair graphs, padded:
    (B, 2, max_atoms, d) and a bool mask (B, 2, max_atoms), True on real atoms."""
    from molkit.models.gnn import to_dense_nodes

    nodes = gin.node_embeddings(batch)
    dense, mask = to_dense_nodes(nodes, _molecule_index(batch), max_atoms)
    n = 2 * _n_pairs(batch)
    if dense.shape[0] < n:  # a trailing molecule without atoms cannot occur (RDKit needs >= 1 atom)
        raise ValueError("every molecule of a pair graph needs at least one atom")
    return dense.view(-1, 2, *dense.shape[1:]), mask.view(-1, 2, mask.shape[-1])


@dataclass
class FittedPairGIN:
    """A trained :class:`PairGIN`, its training history and the target scaling (regression)."""

    model: object
    history: object
    task: str
    mean: float = 0.0
    std: float = 1.0

    def predict(self, graphs: Sequence) -> np.ndarray:
        """Probabilities (classification) or values in the original unit (regression), shape (n,)."""
        from molkit.models.gnn import predict_graph_model

        out = predict_graph_model(self.model, graphs, self.task)[:, 0]
        return out if self.task == "classification" else out * self.std + self.mean


def fit_pair_gin(
    train_graphs: Sequence,
    y_train: np.ndarray,
    valid_graphs: Sequence,
    y_valid: np.ndarray,
    task: str = "classification",
    combine: str = "concat",
    hidden: int = 300,
    num_layers: int = 5,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 128,
    patience: int = 5,
    seed: int = 0,
    progress: bool = True,
    min_steps: int = 0,
) -> FittedPairGIN:
    """Train a :class:`PairGIN` with ``molkit.models.gnn.train_graph_model`` (early stopping on the
    validation loss; regression targets standardised on the training part).

    ``min_steps`` raises ``epochs`` until they hold at least that many optimiser steps, so a small set
    (FreeSolv: ~500 training pairs, 2 batches an epoch) is not left at the training mean by an epoch
    budget sized for a large one."""
    if min_steps > 0:
        steps_per_epoch = max(1, math.ceil(len(train_graphs) / batch_size))
        epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    y_train = np.asarray(y_train, dtype=np.float32)
    y_valid = np.asarray(y_valid, dtype=np.float32)
    mean, std = (0.0, 1.0) if task == "classification" else (float(y_train.mean()), float(y_train.std() or 1.0))
    torch.manual_seed(seed)
    model = PairGIN(1, combine=combine, hidden=hidden, num_layers=num_layers)
    from molkit.models.gnn import train_graph_model

    history = train_graph_model(
        model, train_graphs, (y_train - mean) / std, valid_graphs, (y_valid - mean) / std, task=task,
        epochs=epochs, lr=lr, batch_size=batch_size, patience=patience, seed=seed, progress=progress,
    )
    return FittedPairGIN(model, history, task, mean, std)


# ============================================================== Q-Former projector


class QFormerLayer(nn.Module):
    """One BERT-style (post-norm) block for query tokens: self-attention over the queries, cross-
    attention from the queries to atom embeddings (keys/values of width ``kv_dim``), feed-forward.

    The self-attention, its LayerNorm, the feed-forward and its LayerNorm have a BERT layer's shapes,
    so :func:`init_projector_from_bert` can copy them; the cross-attention is new (random), as in
    BLIP-2's Q-Former.
    """

    def __init__(self, hidden: int, heads: int, kv_dim: int, intermediate: int | None = None, dropout: float = 0.1):
        super().__init__()
        intermediate = intermediate or 4 * hidden
        self.self_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.self_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.cross_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, kdim=kv_dim, vdim=kv_dim, batch_first=True)
        self.cross_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn_in = nn.Linear(hidden, intermediate)
        self.ffn_out = nn.Linear(intermediate, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: Tensor, atoms: Tensor, atom_mask: Tensor) -> Tensor:
        """``queries`` (B, Q, hidden), ``atoms`` (B, A, kv_dim), ``atom_mask`` (B, A) True on real atoms."""
        h = self.self_norm(queries + self.dropout(self.self_attn(queries, queries, queries, need_weights=False)[0]))
        attended = self.cross_attn(h, atoms, atoms, key_padding_mask=~atom_mask, need_weights=False)[0]
        h = self.cross_norm(h + self.dropout(attended))
        ffn = self.ffn_out(nn.functional.gelu(self.ffn_in(h)))
        return self.ffn_norm(h + self.dropout(ffn))


class QFormerProjector(nn.Module):
    """Q-Former-style projector: ``n_query`` learned query tokens (a parameter) pass ``n_layers``
    :class:`QFormerLayer` blocks attending to a molecule's atom embeddings, then a linear map to
    the LM's hidden size. ``forward(atoms (B, A, atom_dim), mask (B, A))`` -> (B, n_query, out_dim).
    """

    def __init__(self, atom_dim: int, out_dim: int, n_query: int = 8, hidden: int = 384, heads: int = 12,
                 n_layers: int = 2, intermediate: int | None = None, dropout: float = 0.1):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.n_query, self.hidden, self.out_dim = n_query, hidden, out_dim
        self.queries = nn.Parameter(torch.randn(1, n_query, hidden) * 0.02)
        self.query_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(QFormerLayer(hidden, heads, atom_dim, intermediate, dropout) for _ in range(n_layers))
        self.to_lm = nn.Linear(hidden, out_dim)

    def forward(self, atoms: Tensor, atom_mask: Tensor) -> Tensor:
        if atoms.dim() != 3 or atom_mask.shape != atoms.shape[:2]:
            raise ValueError(f"atoms must be (B, A, d) with a (B, A) mask; got {tuple(atoms.shape)} and {tuple(atom_mask.shape)}")
        h = self.query_norm(self.queries.expand(atoms.shape[0], -1, -1))
        for layer in self.layers:
            h = layer(h, atoms, atom_mask)
        return self.to_lm(h)


@torch.no_grad()
def init_projector_from_bert(projector: QFormerProjector, bert) -> list[str]:
    """Copy the first ``len(projector.layers)`` layers of a Hugging Face ``BertModel`` (e.g. registry
    ``minilm-l6``) into ``projector``: self-attention (query/key/value/output), its LayerNorm, the
    feed-forward and its LayerNorm, and the embedding LayerNorm into ``query_norm``. Cross-attention,
    queries and the output map stay random. Returns the copied parameter names of the projector.
    """
    config = bert.config
    if config.hidden_size != projector.hidden:
        raise ValueError(f"BERT hidden size {config.hidden_size} != projector hidden {projector.hidden}; "
                         f"build QFormerProjector(hidden={config.hidden_size}, heads={config.num_attention_heads})")
    if len(projector.layers) > config.num_hidden_layers:
        raise ValueError(f"the projector has {len(projector.layers)} layers, the BERT only {config.num_hidden_layers}")
    copied = []

    def put(target: Tensor, source: Tensor, name: str) -> None:
        if target.shape != source.shape:
            raise ValueError(f"{name}: shape {tuple(source.shape)} does not fit {tuple(target.shape)}")
        target.copy_(source)
        copied.append(name)

    put(projector.query_norm.weight, bert.embeddings.LayerNorm.weight, "query_norm.weight")
    put(projector.query_norm.bias, bert.embeddings.LayerNorm.bias, "query_norm.bias")
    for i, layer in enumerate(projector.layers):
        src = bert.encoder.layer[i]
        att = src.attention.self
        put(layer.self_attn.in_proj_weight, torch.cat([att.query.weight, att.key.weight, att.value.weight]), f"layers.{i}.self_attn.in_proj_weight")
        put(layer.self_attn.in_proj_bias, torch.cat([att.query.bias, att.key.bias, att.value.bias]), f"layers.{i}.self_attn.in_proj_bias")
        pairs = {
            "self_attn.out_proj": src.attention.output.dense,
            "self_norm": src.attention.output.LayerNorm,
            "ffn_in": src.intermediate.dense,
            "ffn_out": src.output.dense,
            "ffn_norm": src.output.LayerNorm,
        }
        for name, module in pairs.items():
            target = layer.get_submodule(name)
            put(target.weight, module.weight, f"layers.{i}.{name}.weight")
            put(target.bias, module.bias, f"layers.{i}.{name}.bias")
    return copied


class RoleProjectors(nn.Module):
    """Projectors for the two roles of a pair (molecule 1 / molecule 2, e.g. solute / solvent).

    ``shared=True``: one projector serves both roles; :meth:`separate` copies it into one projector
    per role (MolTC's dynamic parameter sharing: shared in pre-training, role-specific in fine-tuning).
    ``forward(atoms, mask, role)`` -> (B, n_query, out_dim).
    """

    def __init__(self, projector: QFormerProjector, shared: bool = True):
        super().__init__()
        self.projectors = nn.ModuleList([projector] if shared else [projector, copy.deepcopy(projector)])

    @property
    def shared(self) -> bool:
        return len(self.projectors) == 1

    def separate(self) -> RoleProjectors:
        """Give each role its own copy of the shared projector (in place); returns ``self``."""
        if self.shared:
            self.projectors.append(copy.deepcopy(self.projectors[0]))
        return self

    def forward(self, atoms: Tensor, atom_mask: Tensor, role: int) -> Tensor:
        if role not in (0, 1):
            raise ValueError(f"role must be 0 (molecule 1) or 1 (molecule 2), not {role!r}")
        return self.projectors[0 if self.shared else role](atoms, atom_mask)


# ============================================================== chain-of-thought targets and parsing

#: The two DDI answer sentences (index = label); scored by log-likelihood for ROC-AUC.
DDI_ANSWERS: tuple[str, str] = ("No, these two drugs do not interact.", "Yes, these two drugs interact.")

#: Descriptors written into the pre-training chain of thought (``molkit.chem.DESCRIPTORS`` keys, labels).
PRETRAIN_DESCRIPTORS: tuple[tuple[str, str], ...] = (
    ("mol_weight", "molecular weight"),
    ("logp", "logP"),
    ("tpsa", "TPSA"),
    ("hbd", "H-bond donors"),
    ("hba", "H-bond acceptors"),
)


def _fmt(x: float, decimals: int = 2) -> str:
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def value_range(value: float, width: float) -> tuple[float, float]:
    """The bin of ``width`` that holds ``value``: (lower, upper) with lower = floor(value / width) * width."""
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    lower = math.floor(value / width) * width
    return round(lower, 10), round(lower + width, 10)


def regression_target(value: float, width: float = 0.5, cot: bool = True, decimals: int = 2,
                      quantity: str = "The value") -> str:
    """The fine-tuning answer for a regression pair.

    With ``cot`` (the paper's coarse-to-fine chain of thought): "{quantity} is above L and below U, so the
    accurate value is x." (e.g. 0.5-unit bins for solvation, 10 nm for chromophores); without:
    "The accurate value is x.".
    """
    if not math.isfinite(value):
        raise ValueError(f"cannot write a target for a non-finite value ({value})")
    x = _fmt(value, decimals)
    if not cot:
        return f"The accurate value is {x}."
    lower, upper = value_range(value, width)
    return f"{quantity} is above {_fmt(lower, 4)} and below {_fmt(upper, 4)}, so the accurate value is {x}."


def property_text(smiles: str, max_groups: int = 3) -> str:
    """Key properties of one molecule as text: RDKit descriptors (``PRETRAIN_DESCRIPTORS``) and up to
    ``max_groups`` functional groups (``molkit.chem.functional_groups``), e.g. "molecular weight 180.2,
    logP 1.31, TPSA 63.6, H-bond donors 1, H-bond acceptors 3; groups: carboxylic acid, ester, benzene"."""
    from molkit.chem import descriptor_value, format_descriptor, functional_groups

    parts = [f"{label} {format_descriptor(key, descriptor_value(smiles, key))}" for key, label in PRETRAIN_DESCRIPTORS]
    names = list(dict.fromkeys(g.name.replace("_", " ") for g in functional_groups(smiles)))[:max_groups]
    return ", ".join(parts) + "; groups: " + (", ".join(names) if names else "none")


def pretrain_target(smiles_1: str, smiles_2: str) -> str:
    """Pre-training chain of thought for a random pair: each molecule's key properties, in order.

    (The paper draws these from DrugBank / PubChem text; offline, RDKit descriptors and functional
    groups written as text stand in for them.)"""
    return f"Molecule 1: {property_text(smiles_1)}. Molecule 2: {property_text(smiles_2)}."


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_FINAL = re.compile(rf"accurate value is\s*({_NUMBER})", re.IGNORECASE)
_RANGE = re.compile(rf"above\s*({_NUMBER})\s*and below\s*({_NUMBER})", re.IGNORECASE)


def _clean(text: str) -> str:
    text = text.replace("\u2212", "-").replace("\u2013", "-").replace("\u2014", "-")
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234 -> 1234


def parse_value(text: str) -> float | None:
    """The number an answer gives, or None when there is none.

    Rules, in order: the number after "accurate value is"; the middle of "above L and below U"; the
    last number in the text. Unicode minus signs and thousands separators are normalised; infinite
    or NaN results count as unparsed.
    """
    if not isinstance(text, str):
        return None
    text = _clean(text)
    value = None
    if match := _FINAL.search(text):
        value = float(match.group(1))
    elif match := _RANGE.search(text):
        value = (float(match.group(1)) + float(match.group(2))) / 2
    elif numbers := re.findall(_NUMBER, text):
        value = float(numbers[-1])
    return value if value is not None and math.isfinite(value) else None


def parse_values(texts: Sequence[str]) -> tuple[np.ndarray, int]:
    """:func:`parse_value` over texts: float array (NaN where unparsed) and the number unparsed."""
    values = [parse_value(t) for t in texts]
    out = np.array([np.nan if v is None else v for v in values], dtype=float)
    return out, int(np.isnan(out).sum())


def parse_ddi_answer(text: str) -> int | None:
    """1 / 0 when a generated DDI answer says the drugs interact / do not, None when it says neither."""
    if not isinstance(text, str):
        return None
    lowered = text.lower()
    if re.search(r"\b(do|does|will)\s+not\s+interact|\bno interaction|^\s*no\b", lowered):
        return 0
    if re.search(r"\binteract|^\s*yes\b", lowered):
        return 1
    return None


# ============================================================== graph tokens in a causal LM

#: The placeholder token whose input embeddings the graph tokens replace.
GRAPH_TOKEN = "<graph>"


def add_graph_token(model, tokenizer, token: str = GRAPH_TOKEN) -> int:
    """Register ``token`` as a special token (never merged with its neighbours, so each copy in a prompt is
    one position) and grow the model's embeddings when it is new. Returns its id. Its own embedding is
    never read: :func:`molkit.models.lm_training.splice_embeddings` replaces it by a graph token."""
    if token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [token]}, replace_extra_special_tokens=False)
        model.resize_token_embeddings(len(tokenizer))
    return int(tokenizer.convert_tokens_to_ids(token))


def pair_prompt(
    smiles_1: str,
    smiles_2: str,
    question: str,
    names: tuple[str, str] = ("Molecule 1", "Molecule 2"),
    n_graph_tokens: int = 0,
    max_smiles_chars: int | None = None,
    graph_token: str = GRAPH_TOKEN,
) -> str:
    """A pair prompt: each molecule as its (optionally truncated) SMILES followed by ``n_graph_tokens``
    placeholders, then the question, ending in "Answer:" (the answer follows with a leading space)."""

    def molecule(name: str, smiles: str) -> str:
        text = smiles if max_smiles_chars is None or len(smiles) <= max_smiles_chars else smiles[:max_smiles_chars] + "..."
        return f"{name}: {text}" + (" " + graph_token * n_graph_tokens if n_graph_tokens else "")

    return f"{molecule(names[0], smiles_1)}\n{molecule(names[1], smiles_2)}\n{question}\nAnswer:"


def graph_positions(tokenizer, prompt: str, graph_token_id: int) -> list[int]:
    """Token positions of the graph placeholders in ``tokenizer(prompt)``."""
    ids = tokenizer(prompt)["input_ids"]
    return [i for i, t in enumerate(ids) if t == graph_token_id]


class GraphTokenEncoder(nn.Module):
    """Graph tokens for molecule pairs: a frozen GIN's atom embeddings (computed once per molecule and
    kept) go through :class:`RoleProjectors`; ``forward(pairs)`` -> one (2 * n_query, lm_hidden) tensor
    per pair (molecule 1's tokens, then molecule 2's)."""

    def __init__(self, gin, projectors: RoleProjectors):
        super().__init__()
        self.gin = gin.eval().requires_grad_(False)
        self.projectors = projectors
        self._atoms: dict[str, Tensor] = {}

    @property
    def n_query(self) -> int:
        return self.projectors.projectors[0].n_query

    @torch.no_grad()
    def cache_atoms(self, smiles: Sequence[str], batch_size: int = 256) -> None:
        """Compute and keep the GIN atom embeddings of molecules not seen yet."""
        from torch_geometric.data import Batch

        from molkit.chem import graphs_from_smiles

        new = [s for s in dict.fromkeys(smiles) if s not in self._atoms]
        device = next(self.gin.parameters()).device
        for start in range(0, len(new), batch_size):
            chunk = new[start : start + batch_size]
            batch = Batch.from_data_list(graphs_from_smiles(chunk, progress=False)).to(device)
            nodes = self.gin.node_embeddings(batch).float().cpu()
            for k, s in enumerate(chunk):
                self._atoms[s] = nodes[batch.batch.cpu() == k]

    def _dense(self, smiles: Sequence[str]) -> tuple[Tensor, Tensor]:
        self.cache_atoms(smiles)
        width = max(self._atoms[s].shape[0] for s in smiles)
        device = next(self.projectors.parameters()).device
        atoms = torch.zeros(len(smiles), width, self.gin.out_dim)
        mask = torch.zeros(len(smiles), width, dtype=torch.bool)
        for i, s in enumerate(smiles):
            n = self._atoms[s].shape[0]
            atoms[i, :n], mask[i, :n] = self._atoms[s], True
        return atoms.to(device), mask.to(device)

    def forward(self, pairs: Sequence[tuple[str, str]]) -> list[Tensor]:
        first = self.projectors(*self._dense([a for a, _ in pairs]), role=0)
        second = self.projectors(*self._dense([b for _, b in pairs]), role=1)
        return list(torch.cat([first, second], dim=1).float())


def encode_pair_examples(tokenizer, prompts: Sequence[str], answers: Sequence[str], graph_token_id: int | None,
                         max_length: int = 512) -> list:
    """``molkit.models.lm_training.encode_example`` per (prompt, answer) with the graph placeholders as
    ``extra_positions`` (none when ``graph_token_id`` is None): answer-only loss labels."""
    from molkit.models.lm_training import encode_example

    out = []
    for prompt, answer in zip(prompts, answers, strict=True):
        positions = graph_positions(tokenizer, prompt, graph_token_id) if graph_token_id is not None else []
        out.append(encode_example(tokenizer, prompt, answer, max_length=max_length, extra_positions=positions))
    return out


def _extra(graph: GraphTokenEncoder | None, pairs: Sequence[tuple[str, str]]):
    if graph is None:
        return None
    return lambda indices: graph([pairs[i] for i in indices])


def train_pair_lm(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], pairs: Sequence[tuple[str, str]],
                  graph: GraphTokenEncoder | None, config, graph_token_id: int | None = None, progress: bool = True):
    """Fine-tune (LoRA or full) on pair prompts with the answer-only loss, the graph tokens spliced in and
    the projectors trained alongside (one AdamW, ``config.lr``). Returns
    ``molkit.models.lm_training.TrainReport`` (tokens/s included)."""
    from molkit.models.lm_training import train_causal_lm

    if graph is not None and graph_token_id is None:
        raise ValueError("graph tokens need graph_token_id (see add_graph_token)")
    examples = encode_pair_examples(tokenizer, prompts, answers, graph_token_id if graph is not None else None)
    extra_params = list(graph.projectors.parameters()) if graph is not None else []
    if graph is not None:
        graph.projectors.train()
    try:
        return train_causal_lm(model, examples, config, tokenizer.pad_token_id, _extra(graph, pairs),
                               extra_parameters=extra_params, progress=progress)
    finally:
        if graph is not None:
            graph.projectors.eval()


@torch.no_grad()
def answer_log_likelihoods(model, tokenizer, prompts: Sequence[str], answers: Sequence[str],
                           pairs: Sequence[tuple[str, str]] | None = None, graph: GraphTokenEncoder | None = None,
                           graph_token_id: int | None = None, batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Sum of log-probabilities of each answer's tokens (EOS included) given its prompt, (n,) float64."""
    from molkit._progress import tqdm
    from molkit.models.lm_training import IGNORE_INDEX, collate_examples, splice_embeddings
    from molkit.models.runtime import autocast

    examples = encode_pair_examples(tokenizer, prompts, answers, graph_token_id if graph is not None else None)
    device = next(model.parameters()).device
    out = np.zeros(len(examples))
    model.eval()
    for start in tqdm(range(0, len(examples), batch_size), desc="scoring", disable=not progress, leave=False):
        idx = list(range(start, min(start + batch_size, len(examples))))
        batch = collate_examples([examples[i] for i in idx], tokenizer.pad_token_id)
        ids = batch["input_ids"].to(device)
        with autocast(device):
            if graph is not None:
                embeds = splice_embeddings(model, ids, [examples[i].extra_positions for i in idx], graph([pairs[i] for i in idx]))
                logits = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"].to(device)).logits
            else:
                logits = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        labels = batch["labels"][:, 1:].to(device)
        mask = labels != IGNORE_INDEX
        token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        out[idx] = (token_logp * mask).sum(1).double().cpu().numpy()
    return out


def score_ddi(model, tokenizer, prompts: Sequence[str], pairs: Sequence[tuple[str, str]] | None = None,
              graph: GraphTokenEncoder | None = None, graph_token_id: int | None = None, batch_size: int = 16,
              answers: tuple[str, str] = DDI_ANSWERS, progress: bool = True) -> np.ndarray:
    """P(interaction) per prompt (n,): a softmax over the log-likelihoods of the two answer sentences,
    so ROC-AUC can be computed (string matching alone gives only a label)."""
    n = len(prompts)
    both = answer_log_likelihoods(model, tokenizer, [*prompts, *prompts], [answers[0]] * n + [answers[1]] * n,
                                  None if pairs is None else [*pairs, *pairs], graph, graph_token_id, batch_size, progress)
    no, yes = both[:n], both[n:]
    return 1.0 / (1.0 + np.exp(np.clip(no - yes, -700, 700)))


def generate_pair_answers(model, tokenizer, prompts: Sequence[str], pairs: Sequence[tuple[str, str]] | None = None,
                          graph: GraphTokenEncoder | None = None, graph_token_id: int | None = None,
                          max_new_tokens: int = 32, batch_size: int = 16, progress: bool = True,
                          num_beams: int = 1) -> list[str]:
    """Answers (``molkit.models.lm_training.generate_texts``; greedy, or beam search with ``num_beams``,
    MolTC's official decoding being 5 beams) with the graph tokens spliced in."""
    from molkit.models.lm_training import generate_texts

    beams = {"num_beams": num_beams} if num_beams > 1 else None
    if graph is None:
        return generate_texts(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                              progress=progress, generate_kwargs=beams)
    positions = [graph_positions(tokenizer, p, graph_token_id) for p in prompts]
    return generate_texts(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          extra_positions=positions, extra_embeddings=_extra(graph, pairs), progress=progress,
                          generate_kwargs=beams)


# ============================================================== tasks, baselines and experiments


@dataclass(frozen=True)
class PairTask:
    """How a pair dataset is asked and answered: target column, role names, question (may use row
    columns, e.g. ``{temperature}``), CoT bin width, decimals, the quantity's name and unit."""

    dataset: str
    target: str
    kind: str
    names: tuple[str, str]
    question: str
    width: float = 0.5
    decimals: int = 2
    quantity: str = "The value"
    unit: str = ""
    extra: tuple[str, ...] = ()


TASKS: dict[str, PairTask] = {
    t.dataset: t
    for t in (
        PairTask("chchminer", "label", "classification", ("Drug 1", "Drug 2"), "Do these two drugs interact?"),
        PairTask("freesolv-pairs", "freesolv", "regression", ("Solute", "Solvent"),
                 "What is the hydration free energy of the solute in kcal/mol?", 0.5, 2, "The hydration free energy", "kcal/mol"),
        PairTask("combisolu", "logS", "regression", ("Solute", "Solvent"),
                 "What is the solubility logS (mol/L) of the solute in the solvent at {temperature:.0f} K?", 0.5, 2,
                 "The solubility", "log(mol/L)", ("temperature",)),
        PairTask("chromophore-abs", "absorption_nm", "regression", ("Chromophore", "Solvent"),
                 "What is the absorption maximum in nm?", 10, 0, "The absorption maximum", "nm"),
        PairTask("chromophore-emi", "emission_nm", "regression", ("Chromophore", "Solvent"),
                 "What is the emission maximum in nm?", 10, 0, "The emission maximum", "nm"),
        PairTask("chromophore-life", "log_lifetime", "regression", ("Chromophore", "Solvent"),
                 "What is the natural log of the lifetime in ns?", 0.5, 2, "The log lifetime", "ln(ns)"),
    )
}


def load_pairs(name: str, rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """A registered pair dataset (``molkit.data.load_dataset``) without rows whose target is missing,
    optionally a seeded subsample of ``rows`` rows (smoke runs). Rows with invalid SMILES are dropped
    by the loader, which reports them in ``df.attrs['invalid']``."""
    import warnings

    from molkit.data import load_dataset

    task = TASKS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = load_dataset(name)
    df = df[np.isfinite(df[task.target].to_numpy(dtype=float))].reset_index(drop=True)
    if rows is not None and rows < len(df):
        df = df.iloc[np.sort(np.random.default_rng(seed).choice(len(df), rows, replace=False))].reset_index(drop=True)
    return df


def metrics_for(kind: str, y_true, y_pred) -> dict[str, float]:
    """Accuracy / ROC-AUC / F1 (classification, ``y_pred`` = P(class 1)) or MAE / RMSE / R2."""
    from molkit.eval.metrics import classification_metrics, regression_metrics

    return classification_metrics(y_true, y_pred) if kind == "classification" else regression_metrics(y_true, y_pred)


def run_baselines(df: pd.DataFrame, split: Split, task: PairTask, sizes: dict, seed: int = 0, gin: bool = True,
                  graphs: Sequence | None = None, gbm: bool = True,
                  progress: bool = False) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every baseline on one split: the no-chemistry prior (classification) or the training mean
    (regression), (with ``gbm``) Morgan + gradient boosting (``extra`` context columns appended), and (with ``gin``) the
    pair GIN (symmetric head for DDI, role-aware otherwise; pass ``graphs = pair_graphs(...)`` of ``df``
    to reuse them across splits). Returns tidy rows (method, metric, value, ``seconds`` of wall time
    included) and the test predictions per method."""
    import time

    y = df[task.target].to_numpy(dtype=float)
    tr, va, te = split["train"], split["valid"], split["test"]
    a, b = df["smiles_1"].tolist(), df["smiles_2"].tolist()
    preds: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if task.kind == "classification":
        prior = DrugPrior().fit([a[i] for i in tr], [b[i] for i in tr], y[tr])
        preds["per-drug prior (no chemistry)"] = prior.predict([a[i] for i in te], [b[i] for i in te])
    else:
        preds["training mean"] = np.full(len(te), y[tr].mean())
    seconds[next(iter(preds))] = time.perf_counter() - start
    if gbm:
        start = time.perf_counter()
        extra = df[list(task.extra)].to_numpy(dtype=float) if task.extra else None
        x = pair_fingerprints(a, b, n_bits=sizes["n_bits"], extra=extra)
        model = fit_gradient_boosting(x[tr], y[tr], x[va], y[va], task.kind, sizes["gbm_iter"], sizes.get("gbm_lr", 0.1), seed)
        preds["Morgan + gradient boosting"] = model.predict_proba(x[te])[:, 1] if task.kind == "classification" else model.predict(x[te])
        seconds["Morgan + gradient boosting"] = time.perf_counter() - start
    if gin:
        start = time.perf_counter()
        graphs = pair_graphs(a, b) if graphs is None else graphs
        if len(graphs) != len(df):
            raise ValueError(f"{len(graphs)} pair graphs for {len(df)} rows; pass graphs=pair_graphs(df.smiles_1, df.smiles_2)")
        fitted = fit_pair_gin([graphs[i] for i in tr], y[tr], [graphs[i] for i in va], y[va], task.kind,
                              combine="symmetric" if task.kind == "classification" else "concat",
                              hidden=sizes["gin_hidden"], num_layers=sizes["gin_layers"], epochs=sizes["gin_epochs"],
                              batch_size=int(np.clip(len(tr) // 16, 32, 256)), patience=3, seed=seed, progress=progress,
                              min_steps=sizes.get("gin_min_steps", 0))
        preds["pair GIN"] = fitted.predict([graphs[i] for i in te])
        seconds["pair GIN"] = time.perf_counter() - start
    rows = [
        {"method": m, "metric": k, "value": v}
        for m, p in preds.items()
        for k, v in {**metrics_for(task.kind, y[te], p), "seconds": seconds[m]}.items()
    ]
    return pd.DataFrame(rows), preds


def pretrain_graph_encoder(smiles: Sequence[str], hidden: int = 300, num_layers: int = 5, epochs: int = 3,
                           seed: int = 0, progress: bool = True):
    """A GIN pre-trained by attribute masking (Hu et al. 2020, the lineage of MolTC's MoleculeSTM GIN)
    on ``smiles`` (pass training molecules only); returns it frozen, in eval mode."""
    from molkit.chem import graphs_from_smiles
    from molkit.models.gnn import GIN, attribute_masking_pretrain

    torch.manual_seed(seed)
    gin = GIN(num_layers=num_layers, hidden=hidden)
    if epochs:
        attribute_masking_pretrain(gin, graphs_from_smiles(list(dict.fromkeys(smiles)), progress=False), epochs=epochs,
                                   seed=seed, progress=progress)
    return gin.eval().requires_grad_(False)


@dataclass(frozen=True)
class LMVariant:
    """One LM configuration: graph tokens or SMILES only, CoT targets, start from the pair pre-training,
    shared or role-separated projectors in fine-tuning, Q-Former initialisation."""

    graph: bool = True
    cot: bool = True
    pretrained: bool = True
    shared: bool = False
    init: str = "minilm"


LM_VARIANTS: dict[str, LMVariant] = {
    "MolTC": LMVariant(),
    "MolTC, shared projector": LMVariant(shared=True),
    "MolTC, no CoT": LMVariant(cot=False),
    "MolTC, no pre-training": LMVariant(pretrained=False),
    "MolTC, no pre-training, random Q-Former": LMVariant(pretrained=False, init="random"),
    "SMILES only (same LM, no graph tokens)": LMVariant(graph=False, pretrained=False),
}


def task_prompts(task: PairTask, df: pd.DataFrame, n_graph_tokens: int, max_smiles_chars: int | None,
                 swap: bool = False) -> list[str]:
    """One prompt per row (molecules swapped with ``swap``: molecule 2 takes role 1)."""
    first, second = ("smiles_2", "smiles_1") if swap else ("smiles_1", "smiles_2")
    records = df.to_dict("records")
    return [pair_prompt(r[first], r[second], task.question.format(**r), task.names, n_graph_tokens, max_smiles_chars)
            for r in records]


def task_answers(task: PairTask, df: pd.DataFrame, cot: bool = True) -> list[str]:
    """Targets: the DDI answer sentence, or the (CoT) regression target."""
    y = df[task.target].to_numpy(dtype=float)
    if task.kind == "classification":
        return [DDI_ANSWERS[int(v)] for v in y]
    return [regression_target(v, task.width, cot, task.decimals, task.quantity) for v in y]


class PairLMSession:
    """One LM (LoRA on q/v, r 8 / alpha 32, as MolTC) with the graph placeholder token, a frozen GIN and
    the projector settings; runs MolTC's stages and the ablations from saved adapter states.

    ``pretrain`` trains LoRA + one shared projector on random training pairs whose target states both
    molecules' properties; ``run`` fine-tunes one :class:`LMVariant` on a task and evaluates it.
    """

    def __init__(self, lm: str, gin, sizes: dict, seed: int = 0, lora_r: int = 8, lora_alpha: int = 32,
                 progress: bool = True):
        from molkit.models.lm_training import apply_lora, load_lm

        torch.manual_seed(seed)
        model, self.tokenizer = load_lm(lm)
        self.graph_token_id = add_graph_token(model, self.tokenizer)
        self.model = apply_lora(model, r=lora_r, alpha=lora_alpha, dropout=0.05, target_modules=["q_proj", "v_proj"])
        self.device = next(self.model.parameters()).device
        self.gin, self.sizes, self.seed, self.progress = gin.to(self.device), sizes, seed, progress
        self.hidden = model.config.hidden_size
        self.initial_state = self.adapter_state()
        self.pretrained: tuple[dict, dict] | None = None
        self.pretrain_report = None
        self._bert = None

    def adapter_state(self) -> dict[str, Tensor]:
        """A copy of the LM's trainable (LoRA) weights."""
        return {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad}

    @torch.no_grad()
    def load_adapter_state(self, state: dict[str, Tensor]) -> None:
        params = dict(self.model.named_parameters())
        for k, v in state.items():
            params[k].copy_(v)

    def new_projector(self, init: str = "minilm") -> QFormerProjector:
        """A fresh projector, its BERT-shaped parts copied from registry ``minilm-l6`` (``init="minilm"``) or random."""
        s = self.sizes
        torch.manual_seed(self.seed)
        proj = QFormerProjector(self.gin.out_dim, self.hidden, n_query=8, hidden=s["projector_hidden"],
                                heads=s["projector_heads"], n_layers=s["projector_layers"])
        if init == "minilm":
            if self._bert is None:
                from transformers import AutoModel

                from molkit.models.registry import resolve_model_path

                self._bert = AutoModel.from_pretrained(resolve_model_path("minilm-l6"))
            init_projector_from_bert(proj, self._bert)
        elif init != "random":
            raise ValueError(f"init must be 'minilm' or 'random', not {init!r}")
        return proj.to(self.device)

    def _config(self, seed_offset: int = 0):
        from molkit.models.lm_training import TrainConfig

        return TrainConfig(epochs=1, lr=self.sizes["lm_lr"], batch_size=self.sizes["lm_batch_size"], warmup=0.1,
                           seed=self.seed + seed_offset)

    def pretrain(self, smiles_1: Sequence[str], smiles_2: Sequence[str], n_pairs: int):
        """MolTC's pair pre-training (shared projector): ``n_pairs`` random pairs of the given molecules,
        target = both molecules' properties as text. Keeps the resulting adapter and projector states."""
        rng = np.random.default_rng(self.seed)
        a = [smiles_1[i] for i in rng.integers(0, len(smiles_1), n_pairs)]
        b = [smiles_2[i] for i in rng.integers(0, len(smiles_2), n_pairs)]
        pairs = list(zip(a, b, strict=True))
        graph = GraphTokenEncoder(self.gin, RoleProjectors(self.new_projector("minilm"), shared=True))
        prompts = [pair_prompt(x, y, "Describe both molecules.", n_graph_tokens=graph.n_query,
                               max_smiles_chars=self.sizes["smiles_chars"]) for x, y in pairs]
        answers = [pretrain_target(x, y) for x, y in pairs]
        self.load_adapter_state(self.initial_state)
        self.pretrain_report = train_pair_lm(self.model, self.tokenizer, prompts, answers, pairs, graph,
                                             self._config(1), self.graph_token_id, self.progress)
        self.pretrained = (self.adapter_state(), copy.deepcopy(graph.projectors.projectors[0].state_dict()))
        return self.pretrain_report

    def _graph_encoder(self, variant: LMVariant) -> GraphTokenEncoder | None:
        if not variant.graph:
            return None
        proj = self.new_projector(variant.init)
        if variant.pretrained:
            if self.pretrained is None:
                raise RuntimeError("run PairLMSession.pretrain(...) before a pre-trained variant")
            proj.load_state_dict(self.pretrained[1])
        roles = RoleProjectors(proj, shared=True)
        if not variant.shared:
            roles.separate()  # dynamic parameter sharing: one copy per role for fine-tuning
        return GraphTokenEncoder(self.gin, roles)

    def run(self, name: str, variant: LMVariant, task: PairTask, train: pd.DataFrame, test: pd.DataFrame,
            swap: bool = False) -> dict:
        """Fine-tune ``variant`` on ``train`` (1 epoch) and evaluate on ``test``.

        Returns ``report`` (tokens/s), ``y_true``, ``y_pred`` (P(interact) or parsed values, unparsed filled
        with the training mean), ``texts`` (generated answers, regression), ``n_unparsed``, ``pairs_per_s``
        (inference), ``metrics`` and, with ``swap``, the same predictions with the molecules swapped.
        """
        import time

        if variant.pretrained and self.pretrained is None:
            raise RuntimeError("run PairLMSession.pretrain(...) before a pre-trained variant")
        self.load_adapter_state(self.pretrained[0] if variant.pretrained else self.initial_state)
        graph = self._graph_encoder(variant)
        n_tokens = graph.n_query if graph is not None else 0
        gid = self.graph_token_id if graph is not None else None
        chars = self.sizes["smiles_chars"]
        pairs = list(zip(train["smiles_1"], train["smiles_2"], strict=True))
        report = train_pair_lm(self.model, self.tokenizer, task_prompts(task, train, n_tokens, chars),
                               task_answers(task, train, variant.cot), pairs, graph, self._config(), gid, self.progress)
        out = {"name": name, "variant": variant, "report": report, "y_true": test[task.target].to_numpy(dtype=float)}
        start = time.perf_counter()
        out.update(self._predict(task, test, graph, gid, n_tokens, float(train[task.target].mean()), swap=False))
        out["pairs_per_s"] = len(test) / (time.perf_counter() - start)
        if swap:
            swapped = self._predict(task, test, graph, gid, n_tokens, float(train[task.target].mean()), swap=True)
            out["y_pred_swapped"], out["texts_swapped"] = swapped["y_pred"], swapped.get("texts")
        out["metrics"] = metrics_for(task.kind, out["y_true"], out["y_pred"])
        return out

    def _predict(self, task, test, graph, gid, n_tokens, fill: float, swap: bool) -> dict:
        prompts = task_prompts(task, test, n_tokens, self.sizes["smiles_chars"], swap=swap)
        first, second = ("smiles_2", "smiles_1") if swap else ("smiles_1", "smiles_2")
        pairs = list(zip(test[first], test[second], strict=True))
        bs = self.sizes["lm_batch_size"]
        if task.kind == "classification":
            probs = score_ddi(self.model, self.tokenizer, prompts, pairs, graph, gid, batch_size=bs, progress=self.progress)
            return {"y_pred": probs}
        texts = generate_pair_answers(self.model, self.tokenizer, prompts, pairs, graph, gid,
                                      max_new_tokens=self.sizes["max_new_tokens"], batch_size=2 * bs, progress=self.progress,
                                      num_beams=self.sizes.get("num_beams", 1))
        values, n_bad = parse_values(texts)
        return {"y_pred": np.where(np.isnan(values), fill, values), "texts": texts, "n_unparsed": n_bad}


def save_smoke_lm(path, corpus: Sequence[str]) -> str:
    """A tiny random Llama (``molkit.models.lm_training.save_tiny_random_lm``) with a tokenizer trained on
    ``corpus`` (this notebook's prompts and answers), for smoke runs; returns its folder."""
    from molkit.models.lm_training import save_tiny_random_lm

    return str(save_tiny_random_lm(path, list(corpus) + list(DDI_ANSWERS), vocab_size=384, hidden=64, layers=2, heads=4))


def swap_consistency(kind: str, y_pred: np.ndarray, y_pred_swapped: np.ndarray) -> dict[str, float]:
    """How much a prediction moves when the two molecules trade places: mean |change| and, for
    classification, the share of pairs whose predicted label (threshold 0.5) stays the same."""
    y_pred, y_pred_swapped = np.asarray(y_pred, float), np.asarray(y_pred_swapped, float)
    out = {"swap_mean_abs_change": float(np.mean(np.abs(y_pred - y_pred_swapped)))}
    if kind == "classification":
        out["swap_label_agreement"] = float(np.mean((y_pred >= 0.5) == (y_pred_swapped >= 0.5)))
    return out
