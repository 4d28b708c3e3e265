"""MolTC (Fang et al. 2024, arXiv 2402.03781): molecule pairs (drug-drug interactions, solute and
solvent) in a language model, with a shared GIN, Q-Former graph tokens per role, dynamic parameter
sharing and chain-of-thought targets.

Rooms, importing downwards only: ``settings`` (`Settings` and its profiles, the names they may
take) <- ``method`` (tasks, prompts, CoT targets, answer parsing and readouts, the LM variants) and
``pair_gin`` (pair fingerprints, the pair GIN) <- ``lm`` (training through the LM toolkit,
readouts, `PairLMSession`) and ``pair_baselines`` (the pair sets, gradient boosting, the priors)
<- ``experiment`` (one function per Practical section of ``04_moltc``, typed `Results`) <-
``claims`` (every claim, the paper's and the official code's figures, the Discussion) and
``figures``. Pair data lives in `molkit.data.pairs`, the graph-token modules in
`molkit.models.graph_tokens`.
"""

from molkit.methods.moltc import claims, figures
from molkit.methods.moltc.claims import (
    OFFICIAL_CODE,
    OFFICIAL_SETTINGS,
    ONE_FACTOR,
    PAPER,
    findings,
    judge,
    lm_claims,
    paper_scale,
    results_table,
)
from molkit.methods.moltc.experiment import (
    SECTIONS,
    BaselineTable,
    BothUnseen,
    DrugCold,
    LMSection,
    LMStage,
    RegressionBaselines,
    UpstreamData,
    both_unseen,
    ddi_lm,
    ddi_upstream,
    drug_cold,
    freesolv_lm,
    pair_pretraining,
    regression_baselines,
    role_lm,
    upstream_baselines,
)
from molkit.methods.moltc.lm import LMPredictions, LMRun, PairLMSession, lm_memory, train_pair_lm
from molkit.methods.moltc.lm_data import LMSet, pair_split, prompt_lengths
from molkit.methods.moltc.method import (
    DDI_ANSWERS,
    EXPECTED_VALUE,
    GREEDY,
    LIKELIHOOD,
    LM_VARIANTS,
    PIPELINE_STEPS,
    PRETRAIN_DESCRIPTORS,
    STAGES,
    TASKS,
    LMVariant,
    PairTask,
    answer_bins,
    bin_answer_texts,
    choose_readout,
    lm_variants,
    pair_prompt,
    pair_task,
    parse_ddi_answer,
    parse_value,
    parse_values,
    pretrain_graph_encoder,
    pretrain_target,
    property_text,
    regression_target,
    swap_consistency,
    task_answers,
    task_prompts,
    value_range,
)
from molkit.methods.moltc.pair_baselines import (
    gbm_features,
    gbm_params,
    load_pairs,
    load_regression_set,
    run_baselines,
)
from molkit.methods.moltc.pair_gin import (
    FittedPairGIN,
    PairGIN,
    fit_pair_gin,
    pair_fingerprints,
    pair_graphs,
    pair_node_embeddings,
)
from molkit.methods.moltc.readouts import (
    candidate_scores,
    expected_values,
    generate_pair_answers,
    score_ddi,
)
from molkit.methods.moltc.settings import SHARED, SMILES_ONLY, VARIANT_NAMES, Settings

__all__ = [
    "BaselineTable", "BothUnseen", "DDI_ANSWERS", "DrugCold", "EXPECTED_VALUE", "FittedPairGIN",
    "GREEDY", "LIKELIHOOD", "LMPredictions", "LMRun", "LMSection", "LMSet", "LMStage",
    "LMVariant", "LM_VARIANTS", "OFFICIAL_CODE", "OFFICIAL_SETTINGS", "ONE_FACTOR", "PAPER",
    "PIPELINE_STEPS", "PRETRAIN_DESCRIPTORS", "PairGIN", "PairLMSession", "PairTask",
    "RegressionBaselines", "SECTIONS", "SHARED", "SMILES_ONLY", "STAGES", "Settings", "TASKS",
    "UpstreamData", "VARIANT_NAMES", "answer_bins", "bin_answer_texts", "both_unseen",
    "candidate_scores", "choose_readout", "claims", "ddi_lm", "ddi_upstream", "drug_cold",
    "expected_values", "figures", "findings", "fit_pair_gin", "freesolv_lm", "gbm_features",
    "gbm_params", "generate_pair_answers", "judge", "lm_claims", "lm_memory", "lm_variants",
    "load_pairs", "load_regression_set", "pair_fingerprints", "pair_graphs",
    "pair_node_embeddings", "pair_pretraining", "pair_prompt", "pair_split", "pair_task",
    "paper_scale", "prompt_lengths",
    "parse_ddi_answer", "parse_value", "parse_values", "pretrain_graph_encoder",
    "pretrain_target", "property_text", "regression_baselines", "regression_target",
    "results_table", "role_lm", "run_baselines", "score_ddi", "swap_consistency", "task_answers",
    "task_prompts", "train_pair_lm", "upstream_baselines", "value_range",
]  # fmt: skip
