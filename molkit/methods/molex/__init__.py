"""MoleX: an LLM-augmented linear model for explainable, calibratable property prediction.

Reproduces *Unveiling Molecular Secrets: An LLM-Augmented Linear Model for Explainable and
Calibratable Molecular Property Prediction* (arXiv 2410.08829), as molkit builds it:

1. every molecule becomes functional-group tokens (`molkit.chem.group_tokens`, RDKit, atoms kept)
   and their contiguous n-grams (n <= 3); each n-gram is written as the SMILES fragment of the
   atoms it covers, a text the SMILES BERT (``rxnfp-bert``) can read (`ngrams`);
2. each unique n-gram text is embedded once by the chemical LM; a molecule's features are the sum
   of its (centred) n-gram embeddings, so a linear model's score splits exactly into n-gram terms;
3. the LM is fine-tuned on the training split with a variational information bottleneck head
   (cross-entropy + beta * KL to N(0, I)); to stay inside a CPU budget only the top
   ``n_trainable_layers`` transformer layers are trained, and the frozen lower layers' outputs are
   computed once per text and reused (`molkit.models.prefix`); each n-gram's feature vector is
   its bottleneck mean mu, the vector the KL term shapes;
4. a sparse (L1-loaded) PCA, the EFPCA-inspired reduction, or plain PCA, reduces the features;
5. logistic regression on the reduced features is the explainable model;
6. residual calibration: linear models on the orthogonal complement of the reduced subspace are
   fit on *training* residuals, round by round, and stopped early on the validation split. Test
   labels are never used (the official code feeds them to this step).

Evaluation: stratified k-fold cross-validation (every molecule tested once); explanations scored
per atom and per group token.

Rooms: `method` (the algorithm), `ngrams` (features and exact contributions), `inference` (the
deployed predictor: fast group matching, n-gram lookup), `baselines` (the comparison models),
`llm` (an instruction LLM as a label-word classifier), `benchmark` (the per-dataset protocol and
throughput), `experiment` (`Settings` and one function per Practical section of notebook 01),
`figures`. The explanation datasets live in `molkit.data.explain`.
"""

from molkit.methods.molex import figures, llm
from molkit.methods.molex.baselines import morgan_atom_scores
from molkit.methods.molex.benchmark import (
    VARIANTS,
    DatasetRun,
    dataset_splits,
    measure_throughput,
    run_dataset,
    save_examples,
    throughput_summary,
)
from molkit.methods.molex.experiment import (
    PAPER,
    Settings,
    benchmark,
    calibration_gain,
    enrichment_summary,
    explanation_scores,
    findings,
    llm_classifier,
    load_data,
    ngram_texts,
    paper_comparison,
    targets_met,
    throughput,
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

__all__ = [
    "PAPER",
    "VARIANTS",
    "DatasetRun",
    "FineTuneHistory",
    "IBClassifier",
    "LinearReduction",
    "MolexModel",
    "NgramTable",
    "Settings",
    "atom_scores_from_ngrams",
    "benchmark",
    "build_ngram_table",
    "calibration_gain",
    "classification_scores",
    "dataset_splits",
    "enrichment_summary",
    "embed_prefix",
    "explanation_scores",
    "figures",
    "llm",
    "findings",
    "finetune_ib",
    "fit_molex",
    "fit_reduction",
    "llm_classifier",
    "load_data",
    "measure_throughput",
    "molex_features",
    "morgan_atom_scores",
    "ngram_text",
    "ngram_texts",
    "paper_comparison",
    "predict_proba_lm",
    "run_dataset",
    "save_examples",
    "sparse_loadings",
    "targets_met",
    "throughput",
    "throughput_summary",
    "token_scores_from_ngrams",
    "walkthrough",
]
