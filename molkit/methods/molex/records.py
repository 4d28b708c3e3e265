"""The typed records notebook 01's sections return (`molkit.methods.molex.experiment`): one
`Results` subclass per section, whose fields the notebook reads as attributes (``data.overview``,
``cv.lm_gain``, ``llm.corrections``...); ``rows`` and ``claims`` stay for the record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from molkit.methods.experiment import Results
from molkit.methods.molex.crossval import DatasetRun
from molkit.methods.molex.ngrams import NgramTable
from molkit.methods.molex.protocol import Enrichment, GINChoice, LMChoice, PrefixCache, Splits

__all__ = [
    "CVSection",
    "CalibrationSection",
    "DataSection",
    "DatasetInputs",
    "ExplanationSection",
    "LLMArm",
    "LLMSection",
    "SpeedSection",
    "TextSection",
    "TuningSection",
    "Walkthrough",
]


@dataclass
class DataSection(Results):
    """``frames`` (name -> molecules: smiles, label, truth), ``splits`` (name -> `Splits`),
    ``overview`` (one row per dataset), ``enrichment`` (name -> `Enrichment` of its ground truth),
    ``enrichment_table`` (the same as a table), ``group_types`` (MUTAG / PTC: the share of
    positives and negatives annotating each Group-SELFIES type) and ``prompts`` (name -> the
    question the instruction LLM answers)."""

    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    splits: dict[str, Splits] = field(default_factory=dict)
    overview: pd.DataFrame = field(default_factory=pd.DataFrame)
    enrichment: dict[str, Enrichment] = field(default_factory=dict)
    enrichment_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    group_types: pd.DataFrame | None = None
    prompts: dict[str, Any] = field(default_factory=dict)

    @property
    def enriched(self) -> list[str]:
        """The datasets whose ground truth is enriched among positives (pooled verdicts)."""
        return [n for n, e in self.enrichment.items() if e.enriched]


@dataclass
class TextSection(Results):
    """``example``: the first molecule's n-grams (groups, text, atoms); ``unk_token_rate``:
    unknown-token share of the n-grams written as SMILES fragments or as group names;
    ``vocab_size`` of the LM's tokenizer."""

    example: pd.DataFrame = field(default_factory=pd.DataFrame)
    unk_token_rate: pd.Series = field(default_factory=pd.Series)
    vocab_size: int = 0


@dataclass
class DatasetInputs:
    """What every stage of one dataset reuses: its group n-grams, its frozen-prefix states and
    its molecules as graphs."""

    table: NgramTable
    prefixes: PrefixCache
    graphs: list


@dataclass
class TuningSection(Results):
    """The settings each dataset's tuning part chose: ``lm`` (name -> `LMChoice`), ``gin`` (name
    -> `GINChoice`), ``inputs`` (name -> `DatasetInputs`), ``chemical_lm`` (model, tokenizer),
    ``seconds`` per dataset."""

    lm: dict[str, LMChoice] = field(default_factory=dict)
    gin: dict[str, GINChoice] = field(default_factory=dict)
    inputs: dict[str, DatasetInputs] = field(default_factory=dict)
    chemical_lm: Any = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def lm_table(self) -> pd.DataFrame:
        return pd.concat([c.table() for c in self.lm.values()], ignore_index=True)

    @property
    def gin_table(self) -> pd.DataFrame:
        return pd.concat([c.table for c in self.gin.values()], ignore_index=True)

    @property
    def chosen(self) -> pd.DataFrame:
        """Per dataset: the chosen LM stage and GIN."""
        return pd.DataFrame(
            [
                {"dataset": n, "LM stage": str(self.lm[n].chosen), "GIN": str(self.gin[n].chosen)}
                for n in self.lm
            ]
        ).set_index("dataset")


@dataclass
class CVSection(Results):
    """``runs`` (name -> `DatasetRun`), ``accuracy_table`` (mean ± std over folds),
    ``lm_gain`` (per dataset: the fine-tuned LM's pooled test accuracy over the training prior's,
    its paired interval over molecules and seeds, and the verdict), ``ablation_table``,
    ``ablation_intervals`` (per dataset: MoleX minus each variant and baseline),
    ``finetune`` (every LM run's history), ``choices`` (what each fold's validation part chose),
    ``parameters`` (stored parameters per method), ``seconds`` per dataset."""

    runs: dict[str, DatasetRun] = field(default_factory=dict)
    accuracy_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    lm_gain: pd.DataFrame = field(default_factory=pd.DataFrame)
    ablation_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    ablation_intervals: pd.DataFrame = field(default_factory=pd.DataFrame)
    finetune: pd.DataFrame = field(default_factory=pd.DataFrame)
    choices: pd.DataFrame = field(default_factory=pd.DataFrame)
    parameters: pd.Series = field(default_factory=pd.Series)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Walkthrough(Results):
    """One test molecule of the first fold (seed 0), step by step: ``tokens`` (group tokens with
    their contribution and ground truth), ``ngrams``, ``sizes`` of each stage, the reduction's
    ``loadings`` and logistic ``weights``, ``logit`` (intercept + the n-grams' contributions =
    the model's logit), ``calibration`` history, ``atom_scores`` and ``truth`` for drawing."""

    dataset: str = ""
    molecule: str = ""
    tokens: pd.DataFrame = field(default_factory=pd.DataFrame)
    ngrams: pd.DataFrame = field(default_factory=pd.DataFrame)
    sizes: pd.Series = field(default_factory=pd.Series)
    loadings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    logit: pd.Series = field(default_factory=pd.Series)
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    atom_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    truth: Any = None


@dataclass
class ExplanationSection(Results):
    """``scores`` (dataset, method, reading, mean explanation AUC over seeds and molecules,
    molecules scored, whether the dataset's truth is enriched), ``table`` (the same pivoted)."""

    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class SpeedSection(Results):
    """``report`` (`molkit.methods.molex.benchmark.speed_report`), ``table`` (per pipeline:
    molecules/s, stage shares, stored parameters, MoleX's speed-up over it), ``dataset``."""

    dataset: str = ""
    report: dict = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class CalibrationSection(Results):
    """``gain`` (dataset, metric, gain of calibration in points: pooled accuracy and every
    explanation reading, mean over seeds), ``rounds`` (per dataset: calibration rounds kept per
    fold and seed, mean / min / max, and the folds whose kept round is the cap), ``histories``
    (dataset -> fold -> MoleX's calibration history, seed 0)."""

    gain: pd.DataFrame = field(default_factory=pd.DataFrame)
    rounds: pd.DataFrame = field(default_factory=pd.DataFrame)
    histories: dict[str, dict[int, pd.DataFrame]] = field(default_factory=dict)


@dataclass
class LLMArm:
    """One LLM row on one dataset: the cross-validation molecules it predicted (row indices) and
    their class probabilities (1, n, n_classes)."""

    idx: np.ndarray
    proba: np.ndarray


@dataclass
class LLMSection(Results):
    """``arms`` (method -> dataset -> `LLMArm`), ``table`` (per dataset and row: molecules,
    accuracy, the training prior's and MoleX's on the same molecules, ROC-AUC), ``corrections``
    (per dataset and correction: log-loss and accuracy on the tuning part, the chosen one),
    ``priors`` (per dataset: the content-free label prior), ``lora`` (per dataset and fold: the
    trainer's summary), ``lora_curves`` (the validation curves), ``rate`` (zero-shot
    molecules/s), ``parameters``, ``lm`` (the loaded model and tokenizer) and ``prompts``."""

    arms: dict[str, dict[str, LLMArm]] = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    corrections: pd.DataFrame = field(default_factory=pd.DataFrame)
    priors: pd.DataFrame = field(default_factory=pd.DataFrame)
    lora: pd.DataFrame = field(default_factory=pd.DataFrame)
    lora_curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    rate: float = float("nan")
    parameters: int = 0
    lm: Any = None
    prompts: dict[str, Any] = field(default_factory=dict)
