"""The LM toolkit's one scorer: the log-likelihood of candidate answers after each prompt, the
prompt run once and its KV cache shared by every candidate, and the expected-value readout of
numeric answers.

Every method that reads an LM's answer by likelihood scores through here: MoleX's label words (a
zero-shot or fine-tuned classifier), MolTC's two DDI answers and its numeric bins, LarDo's
constrained stage-1 choices. :func:`score_candidates` works on token ids (graph tokens spliced in
through ``extra_embeddings``, as in training and generation); :func:`candidate_log_likelihoods`
tokenises texts first (the chat template applied with ``chat``). A candidate of one token costs
nothing beyond the prompt's forward pass (its log-probability is read from the prompt's last
position); a longer one costs a forward pass over its own tokens only, on a copy of the prompt's
cache, so two answers of 10 tokens after a 60-token prompt cost 80 token positions instead of
140. The values equal scoring each (prompt, candidate) on its own, to float error (tested).

:func:`expected_value` turns the scores of numeric candidates (bins or values) into the
probability-weighted value: the mean of the LM's answer distribution over the candidates, where
greedy decoding reads its mode.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from molkit._progress import tqdm
from molkit.models.lm.examples import IGNORE_INDEX, ExtraEmbeddings, LMExample, collate_examples
from molkit.models.lm.examples import splice_embeddings as _splice
from molkit.models.lm.load import Prompt, encode_prompt
from molkit.models.runtime import autocast


@dataclass
class CandidateScores:
    """Scores of ``n`` prompts against ``k`` candidate answers.

    ``log_likelihood`` (n, k) float64: the summed log-probability of each candidate's tokens after
    the prompt; ``n_tokens`` (k,): each candidate's tokens; ``hidden`` (n, hidden) float32 or
    None: the final (normed) hidden state at each prompt's last token, the LM head's input;
    ``seconds``: wall time, tokenisation included."""

    log_likelihood: np.ndarray
    n_tokens: np.ndarray
    hidden: np.ndarray | None
    seconds: float
    batch_size: int

    def __len__(self) -> int:
        return len(self.log_likelihood)

    @property
    def proba(self) -> np.ndarray:
        """(n, k): the softmax of the log-likelihoods over the candidates."""
        return softmax(self.log_likelihood)

    @property
    def best(self) -> np.ndarray:
        """(n,): the index of the most likely candidate."""
        return self.log_likelihood.argmax(axis=1)

    def expected_value(self, values: Sequence[float]) -> np.ndarray:
        """(n,): `expected_value` of these scores over the candidates' ``values``."""
        return expected_value(self.log_likelihood, values)

    @property
    def prompts_per_second(self) -> float:
        return len(self) / self.seconds if self.seconds > 0 else float("nan")


def softmax(log_likelihood: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, k) scores, computed stably."""
    z = np.asarray(log_likelihood, dtype=np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def expected_value(log_likelihood: np.ndarray, values: Sequence[float]) -> np.ndarray:
    """The probability-weighted value of each row: ``sum_j softmax(log_likelihood)_ij values_j``,
    (n,) float64. ``values``: the number each of the k candidates stands for (a bin's centre)."""
    values = np.asarray(values, dtype=np.float64)
    log_likelihood = np.asarray(log_likelihood, dtype=np.float64)
    if log_likelihood.ndim != 2 or log_likelihood.shape[1] != len(values):
        raise ValueError(
            f"need (n, {len(values)}) scores for {len(values)} candidate values, "
            f"got shape {log_likelihood.shape}"
        )
    return softmax(log_likelihood) @ values


def _forward_options(model) -> tuple[bool, str]:
    """Whether the (base) model's forward takes ``position_ids``, and its KV cache keyword:
    ``cache`` in recent transformers 5 releases, ``past_key_values`` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "position_ids" in params, ("cache" if "cache" in params else "past_key_values")


@torch.no_grad()
def score_candidates(
    model,
    prompt_ids: Sequence[Sequence[int]],
    candidate_ids: Sequence[Sequence[int]],
    pad_id: int,
    *,
    extra_positions: Sequence[Sequence[int]] | None = None,
    extra_embeddings: ExtraEmbeddings | None = None,
    batch_size: int = 16,
    return_hidden: bool = False,
    precision: str | None = None,
    progress: bool = False,
    desc: str = "scoring",
) -> CandidateScores:
    """`CandidateScores` of each token-id candidate after each token-id prompt (prompts sorted by
    length into left-padded batches of ``batch_size``, positions counted from each prompt's first
    token). ``extra_embeddings(indices)`` supplies the vectors for prompt i's
    ``extra_positions[i]`` (graph tokens). ``precision``: ``None`` follows the precision policy,
    else ``"fp32"`` / ``"bf16"`` for this call; log-probabilities are taken in float32."""
    start_time = time.perf_counter()
    if not candidate_ids:
        raise ValueError("no candidate answers to score")
    if any(len(c) == 0 for c in candidate_ids):
        raise ValueError("a candidate answer has no tokens")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("a prompt has no tokens")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if extra_embeddings is not None and extra_positions is None:
        raise ValueError("extra_embeddings needs extra_positions (one list per prompt)")
    takes_positions, cache_name = _forward_options(model)
    device = next(model.parameters()).device
    head = model.get_output_embeddings()
    n, k = len(prompt_ids), len(candidate_ids)
    loglik = np.zeros((n, k), dtype=np.float64)
    hidden = np.zeros((n, head.weight.shape[1]), dtype=np.float32) if return_hidden else None
    first = torch.tensor([int(c[0]) for c in candidate_ids], device=device)
    order = np.argsort([-len(p) for p in prompt_ids], kind="stable")
    was_training = model.training
    model.eval()
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
    bar = tqdm(total=n, desc=desc, unit="prompt", disable=not progress)
    try:
        with autocast(device, precision):
            for start in range(0, n, batch_size):
                rows = [int(i) for i in order[start : start + batch_size]]
                bare = [
                    LMExample(list(prompt_ids[i]), [IGNORE_INDEX] * len(prompt_ids[i]), 0)
                    for i in rows
                ]
                batch = collate_examples(bare, pad_id, padding_side="left")
                ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                kwargs: dict[str, Any] = {"attention_mask": mask}
                if takes_positions:
                    kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
                if extra_embeddings is not None:
                    shifted = [
                        [p + int(off) for p in extra_positions[i]]
                        for i, off in zip(rows, batch["offsets"], strict=True)
                    ]
                    vectors = list(extra_embeddings(rows))
                    kwargs["inputs_embeds"] = _splice(model, ids, shifted, vectors)
                else:
                    kwargs["input_ids"] = ids
                captured.clear()
                out = model(**kwargs, use_cache=True, logits_to_keep=1)
                if return_hidden:
                    hidden[rows] = captured[-1][:, -1].float().cpu().numpy()
                logp_head = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
                scores = logp_head[:, first].double()
                cache = getattr(out, cache_name)
                croppable = callable(getattr(cache, "crop", None))
                last = (
                    kwargs["position_ids"][:, -1:]
                    if takes_positions
                    else mask.sum(-1, keepdim=True) - 1
                )
                for c, answer in enumerate(candidate_ids):
                    if len(answer) == 1:
                        continue
                    follow = torch.tensor(answer[:-1], device=device).expand(len(rows), -1)
                    more_kwargs: dict[str, Any] = {
                        "input_ids": follow,
                        "attention_mask": torch.cat([mask, torch.ones_like(follow)], dim=1),
                        "use_cache": True,
                        # the prompt's cache, shared: cut back to the prompt after this candidate
                        cache_name: cache if croppable else copy.deepcopy(cache),
                    }
                    if takes_positions:
                        more_kwargs["position_ids"] = last + torch.arange(
                            1, len(answer), device=device
                        )
                    more = model(**more_kwargs)
                    if croppable:  # drop this candidate's keys and values (a slice, no copy)
                        cache.crop(-follow.shape[1])
                    token_logp = torch.log_softmax(more.logits.float(), dim=-1)
                    target = torch.tensor(answer[1:], device=device).expand(len(rows), -1)
                    picked = token_logp.gather(-1, target[..., None])[..., 0].double().sum(1)
                    scores[:, c] += picked
                loglik[rows] = scores.cpu().numpy()
                bar.update(len(rows))
    finally:
        hook.remove()
        bar.close()
        model.train(was_training)
    return CandidateScores(
        log_likelihood=loglik,
        n_tokens=np.array([len(c) for c in candidate_ids]),
        hidden=hidden,
        seconds=time.perf_counter() - start_time,
        batch_size=batch_size,
    )


def candidate_ids(tokenizer, candidates: Sequence[str], add_eos: bool = False) -> list[list[int]]:
    """Each candidate's token ids (no special tokens; EOS appended with ``add_eos``, as training
    examples end); a ValueError when two candidates tokenise identically or one to nothing."""
    out = []
    seen: dict[tuple[int, ...], str] = {}
    for text in candidates:
        ids = list(tokenizer(str(text), add_special_tokens=False)["input_ids"])
        if not ids:
            raise ValueError(f"candidate {text!r} tokenises to nothing; score non-empty answers")
        ids += [tokenizer.eos_token_id] if add_eos else []
        if tuple(ids) in seen:
            raise ValueError(f"candidates {seen[tuple(ids)]!r} and {text!r} are the same tokens")
        seen[tuple(ids)] = str(text)
        out.append(ids)
    return out


def candidate_log_likelihoods(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    candidates: Sequence[str],
    *,
    add_eos: bool = False,
    chat: bool = False,
    extra_positions: Sequence[Sequence[int]] | None = None,
    extra_embeddings: ExtraEmbeddings | None = None,
    max_length: int | None = None,
    batch_size: int = 16,
    return_hidden: bool = False,
    precision: str | None = None,
    progress: bool = False,
    desc: str = "scoring",
) -> CandidateScores:
    """`score_candidates` of text ``candidates`` after text ``prompts`` (`encode_prompt`,
    `candidate_ids`). ``max_length``: a prompt whose tokens and longest candidate exceed it loses
    tokens from its left, after any BOS prefix, as `molkit.models.lm.encode_example` cuts
    training examples (its ``extra_positions`` move with the cut; cutting one away is an
    error)."""
    start = time.perf_counter()
    if not candidates:
        raise ValueError("no candidate answers to score")
    answers = candidate_ids(tokenizer, candidates, add_eos)
    encoded = [encode_prompt(tokenizer, p, chat) for p in prompts]
    positions = [list(p) for p in extra_positions] if extra_positions is not None else None
    if max_length is not None:
        room = max_length - max(len(a) for a in answers)
        if room < 2:
            raise ValueError(f"max_length {max_length} leaves no room for a prompt")
        for i, ids in enumerate(encoded):
            excess = len(ids) - room
            if excess <= 0:
                continue
            keep = int(ids[0] == tokenizer.bos_token_id)
            cut = range(keep, keep + excess)
            if positions is not None and any(p in cut for p in positions[i]):
                raise ValueError(
                    f"max_length {max_length} cuts away extra embedding positions of prompt {i}"
                )
            encoded[i] = ids[:keep] + ids[keep + excess :]
            if positions is not None:
                positions[i] = [p - excess if p >= cut.stop else p for p in positions[i]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = score_candidates(
        model, encoded, answers, pad, extra_positions=positions,
        extra_embeddings=extra_embeddings, batch_size=batch_size, return_hidden=return_hidden,
        precision=precision, progress=progress, desc=desc,
    )  # fmt: skip
    scores.seconds = time.perf_counter() - start
    return scores
