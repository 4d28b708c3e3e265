"""MoleX: an LLM-augmented linear model for explainable, calibratable property prediction.

Reproduces *Unveiling Molecular Secrets: An LLM-Augmented Linear Model for Explainable and
Calibratable Molecular Property Prediction* (arXiv 2410.08829), as molkit builds it:

1. every molecule becomes functional-group tokens (`molkit.chem.group_tokens`, RDKit, atoms kept)
   and their contiguous n-grams (n <= 3); each n-gram is written as the SMILES fragment of the
   atoms it covers, a text the SMILES BERT (``rxnfp-bert``) can read (`ngrams`);
2. the LM is fine-tuned on the training molecules with a variational information bottleneck head
   (cross-entropy + beta * KL to N(0, I)); the trained top layers, their learning rate and beta
   are chosen on a tuning part, the epochs by early stopping on the fold's validation part;
3. each n-gram text is embedded by the fine-tuned LM at the bottleneck mean; a molecule's features
   are the sum of its (centred) n-gram vectors, so a linear score splits exactly into n-gram terms;
4. a sparse (L1-loaded) PCA, the EFPCA-inspired reduction, reduces the features;
5. logistic regression on the reduced features is the explainable model;
6. residual calibration: linear models on the orthogonal complement of the reduced subspace are
   fit on *training* residuals, round by round, the rounds chosen on the validation part. Test
   labels are never used (the official code feeds them to this step).

Rooms (imports go downwards only): `settings` (the typed `Settings` and profiles) <- `method`
(the algorithm) and `fragments` (what identifies an n-gram) <- the algorithm's helpers `ngrams`,
`inference` (the deployed predictor), `baselines`, `llm` (an instruction LLM as a label-word
classifier) <- `protocol` (splits, the tuning part's choices) <- `crossval` (one dataset fold by
fold) <- `records` (the typed results of each section) <- `llm_arms` (the LLM rows), `benchmark`
(the speed report) <- `experiment` (one function per Practical section of notebook 01) <- `claims`
(the paper's figures and every claim) <- `figures`, `discussion`.
"""

from molkit.methods.molex import claims, figures, llm
from molkit.methods.molex.baselines import morgan_atom_scores
from molkit.methods.molex.benchmark import group_matching_rate, speed_report
from molkit.methods.molex.claims import PAPER, build_claims
from molkit.methods.molex.crossval import DatasetRun, run_dataset, save_examples
from molkit.methods.molex.discussion import findings, paper_comparison
from molkit.methods.molex.experiment import (
    calibration_gain,
    cross_validate,
    explanation_scores,
    llm_classifier,
    load_data,
    ngram_texts,
    throughput,
    tune,
    walkthrough,
)
from molkit.methods.molex.method import (
    FineTuneHistory,
    IBClassifier,
    LinearReduction,
    MolexModel,
    classification_scores,
    embed_prefix,
    finetune_ib,
    fit_molex,
    fit_reduction,
    log_loss,
    predict_proba_lm,
    sparse_loadings,
)
from molkit.methods.molex.ngrams import (
    NgramTable,
    atom_scores_from_ngrams,
    build_ngram_table,
    molex_features,
    ngram_text,
    token_scores_from_ngrams,
)
from molkit.methods.molex.protocol import dataset_splits
from molkit.methods.molex.settings import Settings

__all__ = [
    "PAPER",
    "DatasetRun",
    "FineTuneHistory",
    "IBClassifier",
    "LinearReduction",
    "MolexModel",
    "NgramTable",
    "Settings",
    "atom_scores_from_ngrams",
    "build_claims",
    "build_ngram_table",
    "calibration_gain",
    "claims",
    "classification_scores",
    "cross_validate",
    "dataset_splits",
    "embed_prefix",
    "explanation_scores",
    "figures",
    "findings",
    "finetune_ib",
    "fit_molex",
    "fit_reduction",
    "group_matching_rate",
    "llm",
    "llm_classifier",
    "load_data",
    "log_loss",
    "molex_features",
    "morgan_atom_scores",
    "ngram_text",
    "ngram_texts",
    "paper_comparison",
    "predict_proba_lm",
    "run_dataset",
    "save_examples",
    "sparse_loadings",
    "speed_report",
    "throughput",
    "token_scores_from_ngrams",
    "tune",
    "walkthrough",
]
