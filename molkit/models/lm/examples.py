"""Training and scoring examples: few-shot prompts, prompt + answer token ids with an answer-only
loss mask, padding into batches, and extra input embeddings spliced in at given positions (e.g.
MolTC's graph tokens).

* :class:`FewShotTemplate` and :func:`fit_fewshot_prompt`: prompts made of solved examples followed
  by a query, dropping the first examples until the prompt fits a token budget.
* :func:`encode_example`: prompt + answer -> token ids with labels -100 on every prompt token and
  optional *extra embedding* slots (``extra_positions``).
* :func:`collate_examples`: right or left padding, with each row's offset.
* :func:`splice_embeddings`: input embeddings with the extra vectors in place, differentiably.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

IGNORE_INDEX = -100

#: ``extra_embeddings(example_indices) -> one (m_i, hidden) tensor per example`` for the examples'
#: ``extra_positions``.
ExtraEmbeddings = Callable[[Sequence[int]], Sequence[Tensor]]


@dataclass(frozen=True)
class FewShotTemplate:
    """A few-shot prompt: ``header``, then each example rendered by ``example`` (fields ``{input}``
    and ``{output}``), joined by ``separator``, then the query rendered by ``query`` (``{input}``)
    or, when examples precede it, by ``query_after_examples``. The answer follows the prompt."""

    example: str
    query: str
    query_after_examples: str | None = None
    header: str = ""
    separator: str = "\n\n"

    def render(self, examples: Sequence[tuple[str, str]], query: str) -> str:
        """The prompt text for ``examples`` ((input, output) pairs, in order) and ``query``."""
        parts = [self.header] if self.header else []
        parts += [self.example.format(input=i, output=o) for i, o in examples]
        template = (
            self.query_after_examples if examples and self.query_after_examples else self.query
        )
        parts.append(template.format(input=query))
        return self.separator.join(parts)


def fit_fewshot_prompt(
    tokenizer,
    template: FewShotTemplate,
    examples: Sequence[tuple[str, str]],
    query: str,
    max_prompt_tokens: int,
) -> tuple[str, int]:
    """The prompt with as many of ``examples`` as fit in ``max_prompt_tokens`` tokens.

    Drops examples from the front (with sequence reversal the front holds the least similar ones)
    until the prompt fits; returns ``(prompt, n_examples_kept)``. A query that alone exceeds the
    budget is returned as it is (``encode_example`` then truncates it from the left).
    """
    examples = list(examples)
    while True:
        prompt = template.render(examples, query)
        if not examples or len(tokenizer(prompt)["input_ids"]) <= max_prompt_tokens:
            return prompt, len(examples)
        examples = examples[1:]


@dataclass
class LMExample:
    """One tokenised example: ``input_ids`` (prompt + answer), ``labels`` (-100 on the prompt,
    the answer ids elsewhere), ``prompt_length``, and ``extra_positions`` (indices into
    ``input_ids`` whose embeddings an :data:`ExtraEmbeddings` callable supplies)."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    extra_positions: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_example(
    tokenizer,
    prompt: str,
    answer: str = "",
    max_length: int = 1024,
    add_eos: bool = True,
    extra_positions: Sequence[int] = (),
) -> LMExample:
    """Tokenise ``prompt`` (with the tokenizer's special prefix, e.g. BOS) and ``answer`` (plus EOS)
    separately and concatenate them; the loss covers only the answer tokens.

    Too long for ``max_length``: the answer keeps at most ``max_length - 1`` tokens (cut at its
    end), then the prompt loses tokens from its left, after any BOS prefix, so the query nearest the
    answer survives. ``extra_positions`` index the prompt tokens and move with that cut; cutting one
    away is an error. With ``answer=""`` and ``add_eos=False`` the example is a bare prompt for
    generation.
    """
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    answer_ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"]) if answer else []
    if add_eos:
        answer_ids.append(tokenizer.eos_token_id)
    positions = [int(p) for p in extra_positions]
    if any(p < 0 or p >= len(prompt_ids) for p in positions):
        raise ValueError(
            f"extra_positions must index the prompt's {len(prompt_ids)} tokens, got {positions}"
        )
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    answer_ids = answer_ids[: max_length - 1]
    excess = len(prompt_ids) + len(answer_ids) - max_length
    if excess > 0:
        keep_prefix = int(bool(prompt_ids) and prompt_ids[0] == tokenizer.bos_token_id)
        cut = slice(keep_prefix, keep_prefix + excess)
        if any(cut.start <= p < cut.stop for p in positions):
            raise ValueError(
                f"max_length {max_length} cuts away extra embedding positions; "
                "raise max_length or shorten the prompt"
            )
        prompt_ids = prompt_ids[: cut.start] + prompt_ids[cut.stop :]
        positions = [p - excess if p >= cut.stop else p for p in positions]
    return LMExample(
        input_ids=prompt_ids + answer_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids,
        prompt_length=len(prompt_ids),
        extra_positions=positions,
    )


def collate_examples(
    examples: Sequence[LMExample], pad_id: int, padding_side: str = "right"
) -> dict[str, Tensor]:
    """Pad a batch: ``input_ids``, ``labels`` (-100 on padding), ``attention_mask`` (B, T) long and
    ``offsets`` (B,) (how far each example moved: its left padding)."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE_INDEX)
    mask = torch.zeros_like(ids)
    offsets = torch.zeros(len(examples), dtype=torch.long)
    for row, e in enumerate(examples):
        start = width - len(e) if padding_side == "left" else 0
        ids[row, start : start + len(e)] = torch.tensor(e.input_ids)
        labels[row, start : start + len(e)] = torch.tensor(e.labels)
        mask[row, start : start + len(e)] = 1
        offsets[row] = start
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "offsets": offsets}


def splice_embeddings(
    model, input_ids: Tensor, positions: Sequence[Sequence[int]], vectors: Sequence[Tensor]
) -> Tensor:
    """Input embeddings (B, T, hidden) of ``input_ids`` with row b's ``positions[b]`` replaced by
    ``vectors[b]`` (len(positions[b]), hidden); differentiable in ``vectors``."""
    embeds = model.get_input_embeddings()(input_ids)
    if len(positions) != len(vectors) or len(positions) != input_ids.shape[0]:
        raise ValueError(
            f"need one positions list and one vectors tensor per row: {input_ids.shape[0]} rows"
        )
    embeds = embeds.clone()
    for b, (pos, vec) in enumerate(zip(positions, vectors, strict=True)):
        if len(pos) == 0:
            continue
        if vec.shape != (len(pos), embeds.shape[-1]):
            raise ValueError(
                f"row {b}: vectors of shape {tuple(vec.shape)}, "
                f"expected ({len(pos)}, {embeds.shape[-1]})"
            )
        embeds[b, torch.as_tensor(pos, device=embeds.device)] = vec.to(embeds.dtype)
    return embeds
