"""ICMA: in-context molecule adaptation (Li et al., *Large Language Models are In-Context
Molecule Learners*, arXiv 2403.04197), molecule -> caption (``mol2cap``) and caption -> molecule
(``cap2mol``).

1. **Hybrid context retrieval** (`molkit.methods.icma.retrieval`): BM25 over captions for
   cap2mol (the official Okapi variant), molecular similarity for mol2cap (Morgan / RDKit
   fingerprints, a GIN pre-trained by attribute masking). A training query never retrieves an
   entry of its own molecule; the pool never holds a test molecule.
2. **Post-retrieval re-ranking** (:func:`rerank`): *random walk* (training prompts only) picks
   ``k`` of the top ``candidates`` by walking down the ranked list from the top: at each
   candidate a coin with probability ``p_skip`` decides to step past it, otherwise it is taken;
   the walk stops when ``k`` are taken; if the list runs out first, the highest-ranked candidates
   not yet taken fill the remaining slots. The order of the taken examples stays the ranked order.
   (The released training code has no random walk, only a ``bucket_sampling`` option; this rule
   implements the paper's description.) *Sequence reversal* then orders the examples from least
   to most similar, so the most similar example sits last, right before the query, as the
   official code does.
3. **In-context molecule tuning** (:func:`build_prompts`, :func:`tune_and_generate`): prompts of
   ``k`` examples in the official template's shape (:data:`TEMPLATES`) followed by the query;
   LoRA (r 32, alpha 64, dropout 0.1, every linear layer but the output head: ``icma_train.py``
   of phenixace/ICMA, lines 62-64 and 180-197) trained with the answer-only loss to the optimum of
   a validation part of prompts, then greedy generation to the end of the line
   (`molkit.models.lm.pipeline`). Examples that do not fit the cut-off lose examples from the
   front (the least similar ones after reversal).

The arms (:data:`ARMS`): ICMA; the same prompts without tuning; direct fine-tuning on the same
pairs without context; the paper's ablations retrained (no reversal, no random walk); and
test-time probes of the trained ICMA model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from molkit.methods.icma.corpus import inputs_and_outputs
from molkit.methods.icma.retrieval import Neighbours
from molkit.methods.icma.settings import Settings, check_direction
from molkit.models.lm import FewShotTemplate

__all__ = [
    "TEMPLATES",
    "ICMA",
    "NO_TUNING",
    "DIRECT",
    "NO_REVERSAL",
    "NO_RANDOM_WALK",
    "MOLT5",
    "RANDOM_OUTPUT",
    "PROBE_NAMES",
    "ARMS",
    "Arm",
    "random_walk",
    "rerank",
    "build_prompts",
    "lora_spec",
    "train_config",
    "tune_and_generate",
    "lm_memory",
]

TEMPLATES: dict[str, FewShotTemplate] = {
    "mol2cap": FewShotTemplate(
        example="Generate a caption for the molecule: {input}\nCaption: {output}",
        query="Generate a caption for the molecule: {input}\nCaption:",
        query_after_examples=(
            "Based on the above examples, analyse the similarities and differences between the "
            "examples and finally generate a caption for the molecule: {input}\nCaption:"
        ),
    ),
    "cap2mol": FewShotTemplate(
        example="Generate a molecule for the caption: {input}\nMolecule: {output}",
        query="Generate a molecule for the caption: {input}\nMolecule:",
        query_after_examples=(
            "Based on the above examples, analyse the similarities and differences between the "
            "examples and finally generate a molecule for the caption: {input}\nMolecule:"
        ),
    ),
}

ICMA = "ICMA"
NO_TUNING = "in-context prompting (no tuning)"
DIRECT = "direct fine-tuning"
NO_REVERSAL = "ICMA without reversal (retrained)"
NO_RANDOM_WALK = "ICMA without random walk (retrained)"
MOLT5 = "MolT5-base (published outputs)"
#: The trivial baseline (gate) of every generating arm: the output of a pool pair drawn at
#: random for each test item.
RANDOM_OUTPUT = {"mol2cap": "random pool caption", "cap2mol": "random pool molecule"}
#: Test-time probes of ICMA's first trained seed (`Settings.test_time_probes`).
PROBE_NAMES = {
    "no_reversal": "ICMA, test-time no reversal (probe)",
    "k0": "ICMA, test-time k = 0 (probe)",
    "morgan_contexts": "ICMA, test-time morgan contexts (probe)",
    "rdkit_contexts": "ICMA, test-time rdkit contexts (probe)",
    "gin_contexts": "ICMA, test-time gin contexts (probe)",
}


@dataclass(frozen=True)
class Arm:
    """One LM arm: its ``name``; whether its prompts hold retrieved ``context``; in training,
    whether the contexts come through the random ``walk`` and are ``reversed`` (most similar
    last; validation and test prompts reverse alike, never walk); whether it is ``tuned``."""

    name: str
    context: bool = True
    walk: bool = True
    reversed: bool = True
    tuned: bool = True


#: The arms by key: ``icma``, ``no_tuning`` (ICMA's test prompts, the pre-trained LM),
#: ``direct``, and the retrained ablations ``no_reversal`` and ``no_random_walk``.
ARMS = {
    "icma": Arm(ICMA),
    "no_tuning": Arm(NO_TUNING, tuned=False),
    "direct": Arm(DIRECT, context=False, walk=False),
    "no_reversal": Arm(NO_REVERSAL, reversed=False),
    "no_random_walk": Arm(NO_RANDOM_WALK, walk=False),
}


# ---------------------------------------------------------------- re-ranking


def random_walk(ranked: np.ndarray, k: int, p_skip: float, rng: np.random.Generator) -> np.ndarray:
    """Pick ``k`` of each row's ranked candidates (n, m) by the random walk of the module docstring:
    from the top, skip each candidate with probability ``p_skip``, else take it, until ``k`` are
    taken; fill from the top if the list runs out. Returns (n, k) in ranked order."""
    ranked = np.asarray(ranked)
    if ranked.shape[1] < k:
        raise ValueError(f"need at least k = {k} candidates per row, got {ranked.shape[1]}")
    if not 0 <= p_skip < 1:
        raise ValueError(f"p_skip must be in [0, 1), got {p_skip}")
    out = np.zeros((ranked.shape[0], k), dtype=ranked.dtype)
    for row in range(ranked.shape[0]):
        taken = [j for j in range(ranked.shape[1]) if rng.random() >= p_skip][:k]
        taken += [j for j in range(ranked.shape[1]) if j not in taken][: k - len(taken)]
        out[row] = ranked[row, sorted(taken)]
    return out


def rerank(
    neighbours: Neighbours,
    k: int,
    reverse: bool = True,
    walk_p: float | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Context example indices (n, k) in prompt order from ranked ``neighbours`` (n, m >= k).

    ``walk_p``: random-walk skip probability (``None``: plain top-k); ``reverse``: most similar
    last.
    """
    if walk_p is None:
        chosen = neighbours.indices[:, :k]
    else:
        rng = rng if rng is not None else np.random.default_rng(0)
        chosen = random_walk(neighbours.indices, k, walk_p, rng)
    return chosen[:, ::-1].copy() if reverse else chosen.copy()


# ---------------------------------------------------------------- prompts


def build_prompts(
    direction: str,
    queries: pd.DataFrame,
    pool: pd.DataFrame,
    contexts: np.ndarray | None,
    tokenizer,
    max_prompt_tokens: int | Sequence[int],
) -> tuple[list[str], list[str], np.ndarray]:
    """Prompts, answers and the number of context examples kept, for each row of ``queries``.

    ``contexts``: pool indices (n, k) in prompt order (``rerank``'s output), or ``None`` for the
    direct (no-context) prompt. ``max_prompt_tokens``: one budget for all, or one per query (e.g.
    the cut-off minus that query's answer length). Answers start with a space, as the LM writes
    them after "Caption:" / "Molecule:".
    """
    from molkit.models.lm.examples import fit_fewshot_prompt

    check_direction(direction)
    template = TEMPLATES[direction]
    q_in, q_out = inputs_and_outputs(direction, queries)
    p_in, p_out = inputs_and_outputs(direction, pool)
    budgets = np.broadcast_to(np.asarray(max_prompt_tokens), (len(q_in),))
    prompts, kept = [], np.zeros(len(q_in), dtype=int)
    for i, query in enumerate(q_in):
        examples = [] if contexts is None else [(p_in[j], p_out[j]) for j in contexts[i]]
        prompt, kept[i] = fit_fewshot_prompt(tokenizer, template, examples, query, int(budgets[i]))
        prompts.append(prompt)
    return prompts, [" " + a for a in q_out], kept


# ---------------------------------------------------------------- tuning and generation


def lora_spec(settings: Settings):
    """The LoRA adapters of ``settings`` (`molkit.models.lm.pipeline.LoraSpec`), or None for full
    fine-tuning (``lora=False``)."""
    from molkit.models.lm.pipeline import LoraSpec

    if not settings.lora:
        return None
    return LoraSpec(settings.lora_r, settings.lora_alpha, settings.lora_dropout, "all-linear")


def train_config(settings: Settings, seed: int):
    """The `molkit.models.lm.TrainConfig` of one training run: ``epochs`` at most, validated every
    ``eval_every`` optimiser steps, stopped after ``patience`` evaluations without a better
    validation loss, the precision policy's autocast."""
    from molkit.models.lm import TrainConfig

    return TrainConfig(
        epochs=settings.epochs,
        lr=settings.lr,
        batch_size=settings.batch_size,
        grad_accum=settings.grad_accum,
        seed=seed,
        gradient_checkpointing=settings.gradient_checkpointing,
        eval_every=settings.eval_every,
        patience=settings.patience,
        eval_batch_size=8,
    )


def tune_and_generate(
    settings: Settings,
    lm_path: str,
    direction: str,
    arm: Arm,
    seed: int,
    train: Sequence[tuple[str, str]] | None,
    valid: Sequence[tuple[str, str]],
    prompt_sets: Mapping[str, Sequence[str]],
    cache: bool = True,
):
    """One training run of an arm (`molkit.models.lm.pipeline.fine_tune_and_generate` with the
    settings' LoRA, `train_config` and cut-off; ``train=None``: the untuned LM), then greedy
    generation to the end of the line for each prompt set. Returns the pipeline's `PipelineRun`;
    the trained weights are cached under the arm, the direction and the seed."""
    from molkit.models.lm.pipeline import fine_tune_and_generate

    return fine_tune_and_generate(
        lm_path,
        None if train is None else list(train),
        prompt_sets,
        train_config(settings, seed),
        valid=list(valid) if train is not None else (),
        cutoff=settings.cutoff,
        max_new_tokens=settings.max_new_tokens(direction),
        batch_size=settings.gen_batch_size,
        lora=lora_spec(settings),
        dtype=settings.lm_dtype,
        quantization=settings.lm_quantization,
        one_line=True,
        cache=cache,
        key={"method": "icma", "arm": arm.name, "direction": direction},
        desc=f"{arm.name} {direction} seed {seed}",
    )


def lm_memory(
    settings: Settings,
    lm_path: str,
    seq_len: int,
    device=None,
    free_bytes: int | None = None,
    local_files_only: bool = False,
) -> str:
    """The memory line printed before fine-tuning (`molkit.models.lm.memory.lm_memory_line`): the
    LM as `tune_and_generate` trains it (LoRA r ``lora_r`` on every linear layer, or full
    fine-tuning), ``batch_size`` examples of ``seq_len`` tokens (the longest training example: a
    batch pads to its longest), ``lm_dtype`` / ``lm_quantization``. Raises
    `molkit.models.lm.memory.InsufficientMemoryError` naming the settings to change when it does
    not fit ``device`` (``free_bytes``: instead of its free memory); a line saying so when the
    estimate is unavailable (``local_files_only``: never ask the Hugging Face hub)."""
    from molkit.models.lm.memory import lm_memory_line

    hint = (
        "lm_dtype='bf16' with lora=True, batch_size (grad_accum keeps the batch), cutoff or "
        "gradient_checkpointing=True"
    )
    return lm_memory_line(
        lm_path, settings.lm_dtype, settings.lm_quantization, hint, device, free_bytes,
        local_files_only,
        lora_r=settings.lora_r if settings.lora else None, lora_targets="all-linear",
        batch_size=settings.batch_size, seq_len=int(seq_len),
        gradient_checkpointing=settings.gradient_checkpointing,
    )  # fmt: skip
