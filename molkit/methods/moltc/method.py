"""MolTC (Fang et al. 2024, arXiv 2402.03781): how molecule pairs are asked and answered.

* **Tasks.** ``PairTask`` / ``TASKS``: per pair dataset the target column, the two roles' names,
  the question, the chain-of-thought bin width and the quantity's name; `pair_task` also builds
  one for a CSV file of pairs.
* **Prompts.** ``pair_prompt``: each molecule as its SMILES (whole, or cut) followed by graph
  placeholders (`molkit.models.graph_tokens.GRAPH_TOKEN`), then the question;
  ``task_prompts`` / ``task_answers`` per row of a pair frame.
* **Chain of thought.** ``regression_target`` (coarse range first, then the value),
  ``property_text`` / ``pretrain_target`` (RDKit descriptors and functional groups as text, the
  pair pre-training target), ``DDI_ANSWERS`` (scored by log-likelihood).
* **Reading answers.** ``parse_value`` / ``parse_values`` (robust, counting what could not be
  parsed), ``parse_ddi_answer``; the expected-value readout's bins (``answer_bins``,
  ``bin_answer_texts``: the answer up to each bin, scored by the LM toolkit's scorer);
  ``swap_consistency`` (how much a prediction moves when the molecules trade places).
* **Variants.** ``LMVariant`` / ``lm_variants``: MolTC and its ablations; ``STAGES`` (what trains
  in each stage); ``pretrain_graph_encoder`` (the frozen GIN behind the graph tokens).

The LM stages (training, scoring, generation, the session running the variants) are in
``molkit.methods.moltc.lm``; the pair baselines in ``molkit.methods.moltc.pair_gin`` and
``molkit.methods.moltc.pair_baselines``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from molkit.methods.moltc.settings import (
    NO_COT,
    NO_PRETRAINING,
    RANDOM_QFORMER,
    SHARED,
    SMILES_ONLY,
    is_csv,
)
from molkit.models.graph_tokens import GRAPH_TOKEN

__all__ = [
    "DDI_ANSWERS",
    "EXPECTED_VALUE",
    "GREEDY",
    "LIKELIHOOD",
    "LMVariant",
    "LM_VARIANTS",
    "PIPELINE_STEPS",
    "PRETRAIN_DESCRIPTORS",
    "PairTask",
    "SMILES_ONLY",
    "STAGES",
    "TASKS",
    "answer_bins",
    "bin_answer_texts",
    "choose_readout",
    "pair_prompt",
    "pair_task",
    "parse_ddi_answer",
    "parse_value",
    "parse_values",
    "pretrain_graph_encoder",
    "pretrain_target",
    "property_text",
    "regression_target",
    "swap_consistency",
    "task_answers",
    "task_prompts",
    "lm_variants",
    "value_range",
]

#: Which parts train in each stage: the paper, the official code's README commands (every one passes
#: ``--tune_gnn``; ``model/blip2_opt.py`` has one Q-Former and one projection for both molecules)
#: and this notebook (the Theory's table and `molkit.methods.moltc.figures.stages`): rows = stages,
#: columns = parts.
STAGES: dict[str, dict[str, str]] = {
    "paper: pair pre-training": {
        "GIN": "trained", "Q-Former": "trained, shared", "LM": "frozen", "LoRA": "-",
    },
    "paper: fine-tuning": {
        "GIN": "trained", "Q-Former": "trained, per role", "LM": "frozen", "LoRA": "trained",
    },
    "official code: fine-tuning": {
        "GIN": "trained", "Q-Former": "trained, shared", "LM": "frozen", "LoRA": "trained",
    },
    "here: pair pre-training (full only)": {
        "GIN": "frozen", "Q-Former": "trained, shared", "LM": "frozen", "LoRA": "trained",
    },
    "here: fine-tuning": {
        "GIN": "frozen", "Q-Former": "trained, per role", "LM": "frozen", "LoRA": "trained",
    },
}  # fmt: skip

#: MolTC's steps for the Theory figure (`molkit.viz.pipeline_figure`); a list is drawn stacked.
PIPELINE_STEPS: tuple = (
    ["molecule 1 (SMILES + graph)", "molecule 2 (SMILES + graph)"],
    "shared GIN (frozen here; tuned in the official runs): atom embeddings",
    ["Q-Former, role 1: 8 graph tokens", "Q-Former, role 2: 8 graph tokens"],
    "prompt: SMILES + graph tokens spliced into the LM's input embeddings",
    "LM + LoRA: pair pre-training (properties; full profile), then fine-tuning (CoT targets)",
    ["DDI: log-likelihood of yes / no", "regression: greedy value or expected value over the bins"],
)

#: The two DDI answer sentences (index = label); scored by log-likelihood for ROC-AUC.
DDI_ANSWERS: tuple[str, str] = (
    "No, these two drugs do not interact.",
    "Yes, these two drugs interact.",
)

#: The readouts of an answer: the two DDI sentences' likelihoods (classification); the value a
#: greedy decoding writes, or the expected value over the answer bins (regression).
LIKELIHOOD, GREEDY, EXPECTED_VALUE = "likelihood", "greedy", "expected value"

#: Descriptors written into the pre-training chain of thought (``molkit.chem.DESCRIPTORS`` keys).
PRETRAIN_DESCRIPTORS: tuple[tuple[str, str], ...] = (
    ("mol_weight", "molecular weight"),
    ("logp", "logP"),
    ("tpsa", "TPSA"),
    ("hbd", "H-bond donors"),
    ("hba", "H-bond acceptors"),
)


# ============================================================== tasks and prompts


@dataclass(frozen=True)
class PairTask:
    """How a pair dataset is asked and answered: target column, role names, question (may use row
    columns, e.g. ``{temperature}``), CoT bin width, decimals, the quantity's name and unit, the
    context columns (``extra``) and whether gradient boosting also reads RDKit's 2-D descriptors
    (``descriptors``: the small solvation sets)."""

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
    descriptors: bool = False


TASKS: dict[str, PairTask] = {
    t.dataset: t
    for t in (
        PairTask(
            "chchminer", "label", "classification", ("Drug 1", "Drug 2"),
            "Do these two drugs interact?",
        ),
        PairTask(
            "freesolv-pairs", "freesolv", "regression", ("Solute", "Solvent"),
            "What is the hydration free energy of the solute in kcal/mol?", 0.5, 2,
            "The hydration free energy", "kcal/mol", descriptors=True,
        ),
        PairTask(
            "combisolu", "logS", "regression", ("Solute", "Solvent"),
            "What is the solubility logS (mol/L) of the solute in the solvent at "
            "{temperature:.0f} K?", 0.5, 2, "The solubility", "log(mol/L)", ("temperature",),
            descriptors=True,
        ),
        PairTask(
            "chromophore-abs", "absorption_nm", "regression", ("Chromophore", "Solvent"),
            "What is the absorption maximum in nm?", 10, 0, "The absorption maximum", "nm",
        ),
        PairTask(
            "chromophore-emi", "emission_nm", "regression", ("Chromophore", "Solvent"),
            "What is the emission maximum in nm?", 10, 0, "The emission maximum", "nm",
        ),
        PairTask(
            "chromophore-life", "log_lifetime", "regression", ("Chromophore", "Solvent"),
            "What is the natural log of the lifetime in ns?", 0.5, 2, "The log lifetime", "ln(ns)",
        ),
    )
}  # fmt: skip


def pair_task(name: str, df: pd.DataFrame | None = None) -> PairTask:
    """The `PairTask` of a registered pair set (`TASKS`), or of a CSV file of pairs read by
    `molkit.data.load_dataset` (pass its frame ``df``): its first label column as the target, its
    numeric context columns (e.g. a temperature) as ``extra``, a generic question, and a
    chain-of-thought bin of a twentieth of the target's range rounded to 1, 2 or 5 x 10^k."""
    if name in TASKS:
        return TASKS[name]
    if not is_csv(name) or df is None:
        raise KeyError(f"no pair task {name!r}: use one of {sorted(TASKS)} or a CSV file's frame")
    target = df.attrs.get("targets", ["label"])[0]
    kind = df.attrs.get("task", "regression")
    context = [c for c in df.attrs.get("context", []) if pd.api.types.is_numeric_dtype(df[c])]
    width = 0.5
    if kind == "regression":
        span = float(np.nanmax(df[target]) - np.nanmin(df[target])) / 20 or 1.0
        power = 10.0 ** math.floor(math.log10(span))
        width = min((1, 2, 5, 10), key=lambda m: abs(m * power - span)) * power
    return PairTask(
        dataset=name, target=target, kind=kind, names=("Molecule 1", "Molecule 2"),
        question=f"What is the {target} of molecule 1 with molecule 2?", width=width,
        decimals=2, quantity=f"The {target}", extra=tuple(context),
    )  # fmt: skip


def pair_prompt(
    smiles_1: str,
    smiles_2: str,
    question: str,
    names: tuple[str, str] = ("Molecule 1", "Molecule 2"),
    n_graph_tokens: int = 0,
    max_smiles_chars: int | None = None,
    graph_token: str = GRAPH_TOKEN,
) -> str:
    """A pair prompt: each molecule as its (optionally truncated) SMILES followed by
    ``n_graph_tokens`` placeholders, then the question, ending in "Answer:" (the answer follows
    with a leading space)."""

    def molecule(name: str, smiles: str) -> str:
        short = max_smiles_chars is None or len(smiles) <= max_smiles_chars
        text = smiles if short else smiles[:max_smiles_chars] + "..."
        return f"{name}: {text}" + (" " + graph_token * n_graph_tokens if n_graph_tokens else "")

    return f"{molecule(names[0], smiles_1)}\n{molecule(names[1], smiles_2)}\n{question}\nAnswer:"


def task_prompts(
    task: PairTask,
    df: pd.DataFrame,
    n_graph_tokens: int,
    max_smiles_chars: int | None,
    swap: bool = False,
) -> list[str]:
    """One prompt per row (molecules swapped with ``swap``: molecule 2 takes role 1)."""
    first, second = ("smiles_2", "smiles_1") if swap else ("smiles_1", "smiles_2")
    return [
        pair_prompt(
            r[first],
            r[second],
            task.question.format(**r),
            task.names,
            n_graph_tokens,
            max_smiles_chars,
        )
        for r in df.to_dict("records")
    ]


def task_answers(task: PairTask, df: pd.DataFrame, cot: bool = True) -> list[str]:
    """Targets: the DDI answer sentence, or the (CoT) regression target."""
    y = df[task.target].to_numpy(dtype=float)
    if task.kind == "classification":
        return [DDI_ANSWERS[int(v)] for v in y]
    return [regression_target(v, task.width, cot, task.decimals, task.quantity) for v in y]


# ============================================================== chain-of-thought targets


def _fmt(x: float, decimals: int = 2) -> str:
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def value_range(value: float, width: float) -> tuple[float, float]:
    """The bin of ``width`` that holds ``value``: (lower, upper) with
    lower = floor(value / width) * width."""
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    lower = math.floor(value / width) * width
    return round(lower, 10), round(lower + width, 10)


def regression_target(
    value: float,
    width: float = 0.5,
    cot: bool = True,
    decimals: int = 2,
    quantity: str = "The value",
) -> str:
    """The fine-tuning answer for a regression pair.

    With ``cot`` (the paper's coarse-to-fine chain of thought): "{quantity} is above L and below
    U, so the accurate value is x." (e.g. 0.5-unit bins for solvation, 10 nm for chromophores);
    without: "The accurate value is x.".
    """
    if not math.isfinite(value):
        raise ValueError(f"cannot write a target for a non-finite value ({value})")
    x = _fmt(value, decimals)
    if not cot:
        return f"The accurate value is {x}."
    lower, upper = value_range(value, width)
    return (
        f"{quantity} is above {_fmt(lower, 4)} and below {_fmt(upper, 4)}, "
        f"so the accurate value is {x}."
    )


def answer_bins(task: PairTask, y_train: Sequence[float]) -> np.ndarray:
    """The lower bounds of the chain-of-thought bins (``task.width`` wide) that hold at least one
    training target, ascending: the ranges the LM was trained to name, which the expected-value
    readout scores."""
    y = np.asarray(y_train, dtype=float)
    y = y[np.isfinite(y)]
    if not len(y):
        raise ValueError("no finite training target to take the answer bins from")
    return np.unique([value_range(v, task.width)[0] for v in y])


def bin_answer_texts(task: PairTask, lower: Sequence[float]) -> tuple[str, list[str]]:
    """The chain-of-thought answer up to each bin, split into the part every bin shares and one
    continuation per bin: ``("The hydration free energy is above", [" -4 and", " -3.5 and",
    …])``. The shared part is appended to the prompt and the continuations scored as candidate
    answers; the word after the bound keeps them prefix-free (" -4" is also the start of
    " -4.5"). Both are prefixes of `regression_target`'s text for a value in the bin."""
    prefix = f"{task.quantity} is above"
    return prefix, [f" {_fmt(float(b), 4)} and" for b in lower]


def property_text(smiles: str, max_groups: int = 3) -> str:
    """Key properties of one molecule as text: RDKit descriptors (``PRETRAIN_DESCRIPTORS``) and up
    to ``max_groups`` functional groups (``molkit.chem.functional_groups``), e.g. "molecular weight
    180.2, logP 1.31, TPSA 63.6, H-bond donors 1, H-bond acceptors 3; groups: carboxylic acid,
    ester, benzene"."""
    from molkit.chem import descriptor_value, format_descriptor, functional_groups

    parts = [
        f"{label} {format_descriptor(key, descriptor_value(smiles, key))}"
        for key, label in PRETRAIN_DESCRIPTORS
    ]
    groups = dict.fromkeys(g.name.replace("_", " ") for g in functional_groups(smiles))
    names = list(groups)[:max_groups]
    return ", ".join(parts) + "; groups: " + (", ".join(names) if names else "none")


def pretrain_target(smiles_1: str, smiles_2: str) -> str:
    """Pre-training chain of thought for a random pair: each molecule's key properties, in order.

    (The paper draws these from DrugBank / PubChem text; offline, RDKit descriptors and functional
    groups written as text stand in for them.)"""
    return f"Molecule 1: {property_text(smiles_1)}. Molecule 2: {property_text(smiles_2)}."


# ============================================================== reading answers

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_FINAL = re.compile(rf"accurate value is\s*({_NUMBER})", re.IGNORECASE)
_RANGE = re.compile(rf"above\s*({_NUMBER})\s*and below\s*({_NUMBER})", re.IGNORECASE)


def _clean(text: str) -> str:
    text = text.replace("\u2212", "-").replace("\u2013", "-").replace("\u2014", "-")
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234 -> 1234


def parse_value(text: str) -> float | None:
    """The number an answer gives, or None when there is none.

    Rules, in order: the number after "accurate value is"; the middle of "above L and below U";
    the last number in the text. Unicode minus signs and thousands separators are normalised;
    infinite or NaN results count as unparsed.
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


def choose_readout(
    kind: str, y_valid: Sequence[float], readouts: dict[str, np.ndarray]
) -> tuple[str, dict[str, float]]:
    """The readout whose validation predictions score best, and every readout's score: the lowest
    RMSE (regression) or highest ROC-AUC (classification) on ``y_valid``; a tie keeps the first
    (greedy before the expected value). Pass validation labels only: a sealed test split's labels
    (`molkit.data.seal`) raise here, outside the final scoring."""
    from molkit.eval.metrics import regression_metrics, roc_auc_fast

    y = np.asarray(y_valid, dtype=float)
    if not readouts:
        raise ValueError("no readout to choose from")
    if kind == "classification":
        scores = {k: float(roc_auc_fast(y, p)) for k, p in readouts.items()}
        best = max(scores, key=lambda k: -np.inf if np.isnan(scores[k]) else scores[k])
    else:
        scores = {k: float(regression_metrics(y, p)["rmse"]) for k, p in readouts.items()}
        best = min(scores, key=lambda k: np.inf if np.isnan(scores[k]) else scores[k])
    return best, scores


def parse_ddi_answer(text: str) -> int | None:
    """1 / 0 when a generated DDI answer says the drugs interact / do not, None when it says
    neither."""
    if not isinstance(text, str):
        return None
    lowered = text.lower()
    if re.search(r"\b(do|does|will)\s+not\s+interact|\bno interaction|^\s*no\b", lowered):
        return 0
    if re.search(r"\binteract|^\s*yes\b", lowered):
        return 1
    return None


def swap_consistency(kind: str, y_pred: np.ndarray, y_pred_swapped: np.ndarray) -> dict[str, float]:
    """How much a prediction moves when the two molecules trade places: mean |change| and, for
    classification, the share of pairs whose predicted label (threshold 0.5) stays the same."""
    y_pred, y_pred_swapped = np.asarray(y_pred, float), np.asarray(y_pred_swapped, float)
    out = {"swap_mean_abs_change": float(np.mean(np.abs(y_pred - y_pred_swapped)))}
    if kind == "classification":
        out["swap_label_agreement"] = float(np.mean((y_pred >= 0.5) == (y_pred_swapped >= 0.5)))
    return out


# ============================================================== variants and the graph encoder


@dataclass(frozen=True)
class LMVariant:
    """One LM configuration: graph tokens or SMILES only, CoT targets, start from the pair
    pre-training, shared or role-separated projectors in fine-tuning, Q-Former initialisation."""

    graph: bool = True
    cot: bool = True
    pretrained: bool = True
    shared: bool = False
    init: str = "minilm"


def lm_variants(pretrained: bool = True) -> dict[str, LMVariant]:
    """MolTC and its one-factor variants. ``pretrained``: whether the main model starts from the
    pair pre-training (the ``full`` profile; ``default`` leaves it out). Every variant differs from
    "MolTC" in one factor: a shared projector, value-only targets, a random Q-Former, no graph
    tokens (SMILES only, from the same kind of pre-training: one without graph tokens), and, when
    the main model is pre-trained, no pre-training."""
    variants = {
        "MolTC": LMVariant(pretrained=pretrained),
        SHARED: LMVariant(shared=True, pretrained=pretrained),
        NO_COT: LMVariant(cot=False, pretrained=pretrained),
        RANDOM_QFORMER: LMVariant(init="random", pretrained=pretrained),
        SMILES_ONLY: LMVariant(graph=False, pretrained=pretrained),
    }
    if pretrained:
        variants[NO_PRETRAINING] = LMVariant(pretrained=False)
    return variants


#: The variants with the main model pre-trained (MolTC's staged training, the ``full`` profile).
LM_VARIANTS: dict[str, LMVariant] = lm_variants(pretrained=True)


def pretrain_graph_encoder(
    smiles: Sequence[str],
    hidden: int = 300,
    num_layers: int = 5,
    epochs: int = 3,
    seed: int = 0,
    progress: bool = True,
):
    """A GIN pre-trained by attribute masking (`molkit.models.gnn.attribute_masking_pretrain`,
    Hu et al. 2020, the lineage of MolTC's MoleculeSTM GIN) on ``smiles`` (pass training molecules
    only); returns it frozen, in eval mode."""
    import torch

    from molkit.chem import graphs_from_smiles
    from molkit.models.gnn import GIN, attribute_masking_pretrain

    torch.manual_seed(seed)
    gin = GIN(num_layers=num_layers, hidden=hidden)
    if epochs:
        graphs = graphs_from_smiles(list(dict.fromkeys(smiles)), progress=False)
        attribute_masking_pretrain(gin, graphs, epochs=epochs, seed=seed, progress=progress)
    return gin.eval().requires_grad_(False)
