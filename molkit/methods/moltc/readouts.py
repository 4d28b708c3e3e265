"""MolTC's readouts of a fine-tuned pair LM, each through the LM toolkit (`molkit.models.lm`):
the log-likelihood of the two DDI answers (`score_ddi`, `candidate_scores`), the greedy (or beam)
answer (`generate_pair_answers`) and the expected value over the chain-of-thought bins
(`expected_values`), with the pair's graph tokens spliced in where the variant has them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from molkit.methods.moltc.method import (
    DDI_ANSWERS,
    PairTask,
    bin_answer_texts,
    regression_target,
)
from molkit.models.graph_tokens import GraphTokenEncoder, graph_positions

__all__ = [
    "candidate_scores",
    "expected_values",
    "graph_embeddings",
    "generate_pair_answers",
    "score_ddi",
]


def graph_embeddings(
    graph: GraphTokenEncoder | None, pairs: Sequence[tuple[str, str]], eval_mode=False
):
    """``extra_embeddings(indices)`` of ``pairs``' graph tokens (None without graph tokens);
    ``eval_mode``: the projectors run in eval mode (validation inside a training run), then
    return to the mode they were in."""
    if graph is None:
        return None

    def embeddings(indices):
        if not eval_mode:
            return graph([pairs[i] for i in indices])
        was = graph.projectors.training
        graph.projectors.eval()
        try:
            return graph([pairs[i] for i in indices])
        finally:
            graph.projectors.train(was)

    return embeddings


def candidate_scores(
    model,
    tokenizer,
    prompts: Sequence[str],
    candidates: Sequence[str],
    pairs: Sequence[tuple[str, str]] | None = None,
    graph: GraphTokenEncoder | None = None,
    graph_token_id: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
):
    """`molkit.models.lm.CandidateScores` of each candidate answer (EOS appended, as the answers
    were trained) after each pair prompt, with the pair's graph tokens spliced in when ``graph``
    is given: the LM toolkit's one scorer, the prompt's KV cache shared by the candidates."""
    from molkit.models.lm import candidate_log_likelihoods

    positions = None
    if graph is not None:
        if graph_token_id is None:
            raise ValueError("graph tokens need graph_token_id (see add_graph_token)")
        positions = [graph_positions(tokenizer, p, graph_token_id) for p in prompts]
    return candidate_log_likelihoods(
        model, tokenizer, prompts, candidates, add_eos=True, extra_positions=positions,
        extra_embeddings=graph_embeddings(graph, pairs), max_length=512, batch_size=batch_size,
        progress=progress,
    )  # fmt: skip


def score_ddi(
    model,
    tokenizer,
    prompts: Sequence[str],
    pairs: Sequence[tuple[str, str]] | None = None,
    graph: GraphTokenEncoder | None = None,
    graph_token_id: int | None = None,
    batch_size: int = 16,
    answers: tuple[str, str] = DDI_ANSWERS,
    progress: bool = True,
) -> np.ndarray:
    """P(interaction) per prompt (n,): a softmax over the log-likelihoods of the two answer
    sentences (EOS included), so ROC-AUC can be computed (string matching alone gives only a
    label); each prompt runs once for both answers (`candidate_scores`)."""
    both = candidate_scores(
        model, tokenizer, prompts, answers, pairs, graph, graph_token_id, batch_size, progress
    ).log_likelihood
    no, yes = both[:, 0], both[:, 1]
    return 1.0 / (1.0 + np.exp(np.clip(no - yes, -700, 700)))


def _bin_candidate_ids(tokenizer, task: PairTask, lower: np.ndarray):
    """Token ids of the answer part every bin shares and of each bin's continuation, checked to be
    the first tokens of the trained target of a value in that bin (else a ValueError: the
    tokenizer merges across the cut, and scoring the bins would not score what was trained)."""
    prefix, continuations = bin_answer_texts(task, lower)
    prefix_ids = list(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    out = []
    for low, text in zip(lower, continuations, strict=True):
        ids = list(tokenizer(prefix + text, add_special_tokens=False)["input_ids"])
        target = regression_target(float(low) + task.width / 2, task.width, True, task.decimals,
                                   task.quantity)  # fmt: skip
        trained = list(tokenizer(target, add_special_tokens=False)["input_ids"])
        if ids[: len(prefix_ids)] != prefix_ids or trained[: len(ids)] != ids:
            raise ValueError(
                f"the bin answer {prefix + text!r} does not tokenise as the start of the trained "
                f"answer {target!r}; the expected-value readout needs them to agree"
            )
        out.append(ids[len(prefix_ids) :])
    return prefix_ids, out


def expected_values(
    model,
    tokenizer,
    prompts: Sequence[str],
    task: PairTask,
    lower: np.ndarray,
    pairs: Sequence[tuple[str, str]] | None = None,
    graph: GraphTokenEncoder | None = None,
    graph_token_id: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> np.ndarray:
    """The expected value of each pair's answer over the chain-of-thought bins ``lower`` (their
    lower bounds, `answer_bins`): each prompt is followed by the answer's shared start ("The
    hydration free energy is above"), every bin's continuation (" -4 and") is scored by the LM
    toolkit's scorer (`molkit.models.lm.score_candidates`, the prompt's KV cache shared by the
    bins) and the bins' centres are weighted by the softmax of their log-likelihoods
    (`CandidateScores.expected_value`): the mean of the LM's answer distribution, where greedy
    decoding reads its mode. (n,) float64."""
    from molkit.models.lm import score_candidates
    from molkit.models.lm.load import encode_prompt

    lower = np.asarray(lower, dtype=float)
    prefix_ids, candidates = _bin_candidate_ids(tokenizer, task, lower)
    prompt_ids = [encode_prompt(tokenizer, p) + prefix_ids for p in prompts]
    positions = None
    if graph is not None:
        positions = [graph_positions(tokenizer, p, graph_token_id) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = score_candidates(
        model, prompt_ids, candidates, pad, extra_positions=positions,
        extra_embeddings=graph_embeddings(graph, pairs), batch_size=batch_size, progress=progress,
        desc="expected value",
    )  # fmt: skip
    return scores.expected_value(lower + task.width / 2)


def generate_pair_answers(
    model,
    tokenizer,
    prompts: Sequence[str],
    pairs: Sequence[tuple[str, str]] | None = None,
    graph: GraphTokenEncoder | None = None,
    graph_token_id: int | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    progress: bool = True,
    num_beams: int = 1,
) -> list[str]:
    """Answers (``molkit.models.lm.generate_texts``; greedy, or beam search with
    ``num_beams``, MolTC's official decoding being 5 beams) with the graph tokens spliced in."""
    from molkit.models.lm import generate_texts

    beams = {"num_beams": num_beams} if num_beams > 1 else None
    positions = None
    if graph is not None:
        positions = [graph_positions(tokenizer, p, graph_token_id) for p in prompts]
    return generate_texts(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
        extra_positions=positions, extra_embeddings=graph_embeddings(graph, pairs),
        progress=progress, generate_kwargs=beams,
    )  # fmt: skip
