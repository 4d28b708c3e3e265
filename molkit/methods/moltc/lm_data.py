"""The pairs each LM task of MolTC trains, validates and is tested on (`LMSet`): the split's parts,
the LM's budgets of them, test pairs without their labels (sealed apart, `molkit.data.seal`), the
split that keeps the second molecule unseen (`pair_split`) and what whole SMILES cost in prompt
tokens (`prompt_lengths`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from molkit.data import seal
from molkit.data.pairs import make_pair_split, unseen_split
from molkit.data.sealed import SealedLabels
from molkit.data.splits import Split, subsample
from molkit.methods.moltc.method import PairTask, task_prompts
from molkit.methods.moltc.settings import Settings

__all__ = ["EARLIER_CUT", "LMSet", "budget", "lm_set", "pair_split", "prompt_lengths"]

#: The SMILES cut (characters) of the earlier records' prompts, against which `prompt_lengths`
#: measures what whole SMILES cost.
EARLIER_CUT = 24


def pair_split(df: pd.DataFrame, how: str, seed: int, fractions=(0.8, 0.1, 0.1)) -> Split:
    """A regression pair set's split: ``random``, ``grouped`` (every molecule 1, a solute, within
    one part) or ``unseen_solvent`` (every molecule 2 within one part,
    `molkit.data.pairs.unseen_split`)."""
    if how == "unseen_solvent":
        return unseen_split(df, "smiles_2", fractions, seed)
    return make_pair_split(df, how, seed=seed, fractions=fractions)


@dataclass
class LMSet:
    """One LM task's pairs: ``full_train`` / ``full_valid`` (the split's parts: the baselines and
    priors fit there), ``train`` (the LM training pairs), ``valid`` (the LM validation pairs: steps
    and readout), ``tests`` (set name -> pairs without their labels) and ``labels`` (set name ->
    the sealed test labels), ``split`` (how it was split)."""

    task: PairTask
    full_train: pd.DataFrame
    full_valid: pd.DataFrame
    train: pd.DataFrame
    valid: pd.DataFrame
    tests: dict[str, pd.DataFrame]
    labels: dict[str, SealedLabels]
    split: str


def budget(df: pd.DataFrame, idx: np.ndarray, n: int | None, seed: int) -> pd.DataFrame:
    """The rows ``idx`` of ``df``, or a seeded sample of ``n`` of them (sorted)."""
    idx = np.asarray(idx)
    if n is not None and n < len(idx):
        idx = np.sort(idx[subsample(len(idx), n, seed)])
    return df.iloc[idx].reset_index(drop=True)


def lm_set(settings: Settings, task: PairTask, df: pd.DataFrame, split: Split,
           tests: dict[str, np.ndarray], how: str) -> LMSet:  # fmt: skip
    """The `LMSet` of ``df`` split by ``split`` (named ``how``): ``lm_train_pairs`` of its training
    part, ``lm_valid_pairs`` of its valid part and ``lm_test_pairs`` of each of ``tests`` (name ->
    rows), seeded by ``seed``; the test labels sealed and dropped from the test frames."""
    seed, target = settings.seed, task.target
    frames = {k: budget(df, idx, settings.lm_test_pairs, seed) for k, idx in tests.items()}
    return LMSet(
        task=task, full_train=df.iloc[split["train"]].reset_index(drop=True),
        full_valid=df.iloc[split["valid"]].reset_index(drop=True),
        train=budget(df, split["train"], settings.lm_train_pairs, seed),
        valid=budget(df, split["valid"], settings.lm_valid_pairs, seed),
        tests={k: f.drop(columns=[target]) for k, f in frames.items()},
        labels={k: seal(f[target].to_numpy(dtype=float), f"{task.dataset} {k}")
                for k, f in frames.items()},
        split=how,
    )  # fmt: skip


def prompt_lengths(tokenizer, sets: dict[str, LMSet]) -> pd.DataFrame:
    """Per task (rows): the mean tokens of a MolTC prompt (8 graph tokens a molecule) over the LM
    training pairs with whole SMILES and with each SMILES cut at `EARLIER_CUT` characters, and the
    share of those SMILES that are longer than the cut."""
    rows = []
    for name, s in sets.items():
        row = {"task": name}
        for label, chars in (("whole SMILES", None), (f"cut at {EARLIER_CUT}", EARLIER_CUT)):
            prompts = task_prompts(s.task, s.train, 8, chars)
            row[f"prompt tokens ({label})"] = float(
                np.mean([len(tokenizer(p)["input_ids"]) for p in prompts])
            )
        smiles = [*s.train.smiles_1, *s.train.smiles_2]
        row[f"SMILES over {EARLIER_CUT} characters (share)"] = float(
            np.mean([len(m) > EARLIER_CUT for m in smiles])
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("task")
