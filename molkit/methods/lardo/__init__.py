"""MolGraph-LarDo (arXiv 2408.10124): LLM descriptions calibrated by a domain model (RDKit),
graph-text contrastive pre-training of a GIN, fine-tuning on MoleculeNet scaffold splits.

The rooms, each importing only those below it:

- `settings`: the typed `Settings` and its profiles (validated in `Settings.problems`).
- `method` (prompts, property mapping, DSM text, the official ``<MOLECULE>`` substitution),
  `factcheck` (what a description claims, checked against RDKit) and `clip` (the CLIP model,
  its pre-training, retrieval, the fine-tuning predictor): the paper's algorithm.
- `descriptions` (the LLM through the response cache) and `protocol` (the official split and
  molkit's balanced splits, one training unit of every encoder, the retrieval probe).
- `responses`: regenerating the shipped responses, and what a profile asks of the LLM.
- `experiment`: one function per Practical section of 03_lardo, each returning typed `Results`.
- `claims` (the paper's claims, every claim row, gated, and the Discussion's sentences) and
  `figures`.
"""

from molkit.eval.metrics import roc_auc_fast
from molkit.methods.lardo.claims import (
    MODEL_COMPARISONS,
    PAPER,
    PAPER_CLAIMS,
    RETRIEVAL_COMPARISONS,
    ClaimSet,
    calibration_claims,
    discussion,
    model_claims,
    paper_claims,
    retrieval_claims,
    verdict_text,
)
from molkit.methods.lardo.clip import (
    ClipFit,
    GraphTextCLIP,
    build_predictor,
    clip_loss,
    graph_to_text_hits,
    pretrain_clip,
    retrieval_hits,
)
from molkit.methods.lardo.descriptions import (
    POOL_SEED,
    REGENERATE_COMMAND,
    RESPONSE_FILE,
    Descriptions,
    describe_molecules,
    description_pool,
    example_descriptions,
    generation_settings,
    keyed_settings,
    lm_memory,
    load_generator,
    load_ranker,
    ranking_settings,
    response_cache,
    response_keys,
    stage1_free,
    stage1_keys,
    stage1_ranked,
    throughput_benchmark,
)
from molkit.methods.lardo.experiment import (
    Benchmark,
    Calibration,
    DatasetPredictions,
    ReaderView,
    Retrieval,
    Speed,
    Stage1,
    calibration,
    generation_speed,
    pretrain_and_finetune,
    reader_view,
    stage1_properties,
    text_information,
)
from molkit.methods.lardo.factcheck import (
    PropertyClaim,
    calibration_table,
    check_descriptions,
    description_checks,
    echoes_smiles,
    extract_claims,
)
from molkit.methods.lardo.figures import (
    PIPELINE_STEPS,
    plot_calibration,
    plot_embeddings,
    plot_examples,
    plot_finetuning,
    plot_pipeline,
    plot_pretraining_loss,
    plot_results,
    plot_retrieval,
    separation_score,
)
from molkit.methods.lardo.method import (
    DATASET_INFO,
    LLM_VARIANTS,
    MOLECULE_TOKEN,
    RANKED_NAMES,
    SYSTEM_PROMPT,
    VARIANTS,
    PropertyMap,
    dataset_label,
    describe_dataset,
    dsm_text,
    map_properties,
    official_substitution,
    parse_property_list,
    prompt_descriptors,
    rank_properties,
    stage1_choice_prompt,
    stage1_prompt,
    stage2_prompt,
    value_text,
)
from molkit.methods.lardo.protocol import (
    OFFICIAL_REPEATS,
    OFFICIAL_SPLIT,
    PROTOCOLS,
    RETRIEVAL_SOURCES,
    EmbeddingMap,
    Unit,
    UnitPredictions,
    official_split,
    protocol_units,
    retrieval_unit,
    text_embeddings,
    train_unit,
)
from molkit.methods.lardo.responses import (
    ResponseBudget,
    ShippedCost,
    default_output,
    generate_responses,
    response_budget,
    response_plan,
    shipped_cost,
)
from molkit.methods.lardo.settings import (
    ABLATION_ENCODERS,
    MAIN_ENCODERS,
    METHOD_LABELS,
    STAGE1_MODES,
    Settings,
)

__all__ = [
    "ABLATION_ENCODERS", "DATASET_INFO", "LLM_VARIANTS", "MAIN_ENCODERS", "METHOD_LABELS",
    "MODEL_COMPARISONS", "MOLECULE_TOKEN", "OFFICIAL_REPEATS", "OFFICIAL_SPLIT", "PAPER",
    "PAPER_CLAIMS", "PIPELINE_STEPS", "POOL_SEED", "PROTOCOLS", "RANKED_NAMES",
    "REGENERATE_COMMAND", "RESPONSE_FILE", "RETRIEVAL_COMPARISONS", "RETRIEVAL_SOURCES",
    "STAGE1_MODES", "SYSTEM_PROMPT", "VARIANTS", "Benchmark", "Calibration", "ClaimSet", "ClipFit",
    "DatasetPredictions", "Descriptions", "EmbeddingMap", "GraphTextCLIP", "PropertyClaim",
    "PropertyMap", "ReaderView", "ResponseBudget", "Retrieval", "Settings", "ShippedCost", "Speed",
    "Stage1", "Unit", "UnitPredictions", "build_predictor", "calibration", "calibration_claims",
    "calibration_table", "check_descriptions", "clip_loss", "dataset_label", "default_output",
    "describe_dataset", "describe_molecules", "description_checks", "description_pool",
    "discussion", "dsm_text", "echoes_smiles", "example_descriptions", "extract_claims",
    "generate_responses", "generation_settings", "generation_speed", "graph_to_text_hits",
    "keyed_settings", "lm_memory", "load_generator", "load_ranker", "map_properties",
    "model_claims", "official_split", "official_substitution", "paper_claims",
    "parse_property_list", "plot_calibration", "plot_embeddings", "plot_examples",
    "plot_finetuning", "plot_pipeline", "plot_pretraining_loss", "plot_results", "plot_retrieval",
    "pretrain_and_finetune", "pretrain_clip", "prompt_descriptors", "protocol_units",
    "rank_properties", "ranking_settings", "reader_view", "response_budget", "response_cache",
    "response_keys", "response_plan", "retrieval_claims", "retrieval_hits", "retrieval_unit",
    "roc_auc_fast", "separation_score", "shipped_cost", "stage1_choice_prompt", "stage1_free",
    "stage1_keys", "stage1_prompt", "stage1_properties", "stage1_ranked", "stage2_prompt",
    "text_embeddings", "text_information", "throughput_benchmark", "train_unit", "value_text",
    "verdict_text",
]  # fmt: skip
