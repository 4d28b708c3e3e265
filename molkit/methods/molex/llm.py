"""An instruction LLM as a classifier on the explanation datasets, the comparison MoleX makes.

MoleX (arXiv 2410.08829) sets its explainable linear model against LLMs that classify molecules.
Here the LLM (the registry's ``smollm2-135m-instruct`` by default) answers a yes/no (or, for
Liver, three-way) question about a SMILES, and each class is *scored*, not generated: the summed
log-probability of the class's label word as the continuation of the prompt.

* `TASK_PROMPTS`: per dataset, the question and one label word per class (class index order).
* `label_prompt`: the prompt text for one molecule, through the chat template when the tokenizer
  has one (`molkit.models.lm.format_prompt`), ending where the answer begins;
  `label_words`: the continuation strings scored for that prompt form (``"Yes"`` after the chat
  template's ``assistant\\n``, ``" Yes"`` after a plain ``Answer:``).
* `score_label_words`: ``log_likelihood`` (n, n_classes), ``proba`` (softmax over the classes)
  and ``hidden`` (the last hidden state at the prompt's final token, for a linear probe), plus the
  wall seconds of the scoring, by the LM toolkit's one scorer
  (`molkit.models.lm.score_candidates`: the prompt runs once, its KV cache shared by the label
  words; a batched score equals an unbatched one).
* `fine_tune_label_classifier`: LoRA (or full) fine-tuning on training prompts with the label word
  as the answer (answer-only loss), through `molkit.models.train_cached` so a re-run replays the
  trained weights, then `score_label_words` on the test prompts.
* `scoring_throughput`: molecules/s of the zero-shot scorer at several batch sizes.
* `content_free_proba` and `correct_prior`: contextual calibration of the label prior (Zhao et
  al., ICML 2021): the class probabilities divided by those of a content-free input (``"N/A"``,
  ``"[MASK]"``, an empty SMILES; `CONTENT_FREE`) or by the mean prediction over training
  molecules, renormalised (`PRIOR_CORRECTIONS`).
* `generic_prompt`: a yes/no (or lettered) question for a dataset of the user's (a CSV file).

Prompts and label words are tokenised separately and their ids concatenated, the way
`molkit.models.lm.encode_example` builds training examples, so scoring and fine-tuning
see the same token sequences.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "CONTENT_FREE",
    "PRIOR_CORRECTIONS",
    "TASK_PROMPTS",
    "DEFAULT_LM",
    "content_free_proba",
    "correct_prior",
    "generic_prompt",
    "TaskPrompt",
    "LabelScores",
    "LabelRun",
    "task_prompt",
    "label_prompt",
    "label_prompts",
    "label_words",
    "label_token_ids",
    "score_label_words",
    "zero_shot_scores",
    "fine_tune_label_classifier",
    "scoring_throughput",
]

#: The registry's instruction LM.
DEFAULT_LM = "smollm2-135m-instruct"


@dataclass(frozen=True)
class TaskPrompt:
    """One dataset's question (``{smiles}`` marks the molecule) and its label words, one per class
    in class-index order, written without a leading space (`label_words` adds it where the prompt
    form needs one)."""

    question: str
    words: tuple[str, ...]


_YES_NO = ("No", "Yes")  # label 0 = negative, label 1 = positive

_PTC = (
    "Is the molecule with SMILES {smiles} carcinogenic in {animals} in a long-term rodent "
    "carcinogenicity study? Answer Yes or No."
)

#: dataset name (`molkit.data.explain.EXPLAIN_DATASETS`) -> question and label words. Every word is
#: one SmolLM2 token both bare (after the chat template's newline) and after a space: No 5230 /
#: 2838, Yes 10539 / 9230, Less 24910 / 11373, Most 6101 / 3529.
TASK_PROMPTS: dict[str, TaskPrompt] = {
    "mutag": TaskPrompt(
        "Is the molecule with SMILES {smiles} mutagenic in Salmonella typhimurium (Ames test)? "
        "Answer Yes or No.",
        _YES_NO,
    ),
    "ptc_fr": TaskPrompt(_PTC.replace("{animals}", "female rats"), _YES_NO),
    "ptc_fm": TaskPrompt(_PTC.replace("{animals}", "female mice"), _YES_NO),
    "ptc_mm": TaskPrompt(_PTC.replace("{animals}", "male mice"), _YES_NO),
    "ptc_mr": TaskPrompt(_PTC.replace("{animals}", "male rats"), _YES_NO),
    "liver": TaskPrompt(
        "How much drug-induced liver injury (DILI) concern does the molecule with SMILES "
        "{smiles} raise? Answer No (no DILI concern), Less (less DILI concern) or Most "
        "(most DILI concern).",
        ("No", "Less", "Most"),
    ),
}

_PLAIN_SUFFIX = "\nAnswer:"


def generic_prompt(label: str, classes: Sequence[str] = ("0", "1")) -> TaskPrompt:
    """A question for a dataset of the user's: for two classes "Is the molecule with SMILES ...
    {label}? Answer Yes or No." (No: the first class), for more a choice between the letters
    A, B, C... in class order."""
    if len(classes) == 2:
        return TaskPrompt(
            f"Is the molecule with SMILES {{smiles}} {label}? Answer Yes or No.", _YES_NO
        )
    letters = tuple("ABCDEFGHIJ"[: len(classes)])
    options = ", ".join(f"{w} ({c})" for w, c in zip(letters, classes, strict=True))
    return TaskPrompt(
        f"Which class of {label} does the molecule with SMILES {{smiles}} belong to? "
        f"Answer {options}.",
        letters,
    )


def task_prompt(dataset: str | TaskPrompt) -> TaskPrompt:
    """`TASK_PROMPTS` entry of ``dataset`` (a `TaskPrompt` is returned as it is); a ValueError
    naming the known datasets otherwise."""
    if isinstance(dataset, TaskPrompt):
        return dataset
    key = str(dataset).lower()
    if key not in TASK_PROMPTS:
        raise ValueError(
            f"unknown dataset {dataset!r}: label prompts exist for {', '.join(TASK_PROMPTS)}"
        )
    return TASK_PROMPTS[key]


def _chat(tokenizer, chat: bool) -> bool:
    from molkit.models.lm import has_chat_template

    return bool(chat and has_chat_template(tokenizer))


def label_prompt(tokenizer, smiles: str, dataset: str | TaskPrompt, chat: bool = True) -> str:
    """The prompt text asking ``dataset``'s question about ``smiles``, ending where the answer
    begins: the chat template's opened assistant turn when the tokenizer has one (and ``chat``),
    else the question followed by ``"\\nAnswer:"``."""
    from molkit.models.lm import format_prompt

    question = task_prompt(dataset).question.format(smiles=smiles)
    if _chat(tokenizer, chat):
        return format_prompt(tokenizer, question, chat=True)
    return question + _PLAIN_SUFFIX


def label_prompts(
    tokenizer, smiles: Sequence[str], dataset: str | TaskPrompt, chat: bool = True
) -> list[str]:
    """`label_prompt` for each of ``smiles``."""
    return [label_prompt(tokenizer, s, dataset, chat) for s in smiles]


def label_words(tokenizer, dataset: str | TaskPrompt, chat: bool = True) -> list[str]:
    """The continuation strings scored for ``dataset``'s classes with `label_prompt`'s prompts:
    the bare words after the chat template (it ends in a newline), a space before each word after
    a plain ``Answer:``."""
    words = task_prompt(dataset).words
    return list(words) if _chat(tokenizer, chat) else [" " + w for w in words]


def _encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Prompt ids as `encode_example` makes them (the tokenizer's special prefix included)."""
    return list(tokenizer(prompt)["input_ids"])


def label_token_ids(tokenizer, words: Sequence[str]) -> list[list[int]]:
    """Each label word's token ids (no special tokens); a ValueError when a word is empty, when two
    words are equal or tokenise identically."""
    words = [str(w) for w in words]
    if len(words) < 2:
        raise ValueError(f"need at least two label words, got {words!r}")
    if len(set(words)) != len(words):
        raise ValueError(f"label words collide: {words!r} has duplicates")
    ids = [list(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in words]
    for w, i in zip(words, ids, strict=True):
        if not i:
            raise ValueError(f"label word {w!r} has no tokens")
    seen: dict[tuple[int, ...], str] = {}
    for w, i in zip(words, ids, strict=True):
        if tuple(i) in seen:
            raise ValueError(
                f"label words collide: {seen[tuple(i)]!r} and {w!r} are the same tokens {i}"
            )
        seen[tuple(i)] = w
    return ids


@dataclass
class LabelScores:
    """Scores of ``n`` prompts against ``n_classes`` label words.

    ``log_likelihood`` (n, n_classes) float64: summed log-probability of each label word's tokens
    after the prompt; ``proba``: its softmax over the classes; ``hidden`` (n, hidden_size)
    float32: the final (normed) hidden state at each prompt's last token; ``seconds``: wall time
    of the scoring (tokenisation included); ``label_words`` and ``label_tokens`` (ids per word);
    ``fast_path``: whether every label word is one token (read off the prompt's forward pass)."""

    log_likelihood: np.ndarray
    proba: np.ndarray
    hidden: np.ndarray
    label_words: list[str]
    label_tokens: list[list[int]]
    seconds: float
    batch_size: int
    fast_path: bool

    def __len__(self) -> int:
        return len(self.log_likelihood)

    @property
    def predictions(self) -> np.ndarray:
        """The argmax class of each prompt."""
        return self.log_likelihood.argmax(axis=1)

    @property
    def molecules_per_second(self) -> float:
        return len(self) / self.seconds if self.seconds > 0 else float("nan")

    def accuracy(self, labels: Sequence[int]) -> float:
        labels = np.asarray(labels)
        if labels.shape != (len(self),):
            raise ValueError(f"need {len(self)} labels, got shape {labels.shape}")
        return float((self.predictions == labels).mean())


def score_label_words(
    model,
    tokenizer,
    prompts: Sequence[str],
    label_words: Sequence[str],
    batch_size: int = 32,
    progress: bool = False,
    precision: str | None = None,
) -> LabelScores:
    """Score each of ``label_words`` as the continuation of each of ``prompts`` with the LM
    toolkit's scorer (`molkit.models.lm.score_candidates`: prompts sorted by length into
    left-padded batches, position ids counted from each row's first token, the prompt's KV cache
    shared by the label words; a one-token word costs nothing beyond the prompt's forward pass).

    Returns `LabelScores` (in the order of ``prompts``). Prompts are tokenised like
    `molkit.models.lm.encode_example` (with the tokenizer's special prefix), label words without
    special tokens. ``precision``: ``None`` follows the policy (`molkit.models.runtime.autocast`),
    else ``"fp32"`` / ``"bf16"`` for this call.
    """
    from molkit.models.lm import score_candidates

    start_time = time.perf_counter()
    words = [str(w) for w in label_words]
    label_ids = label_token_ids(tokenizer, words)
    encoded = [_encode_prompt(tokenizer, p) for p in prompts]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = score_candidates(
        model, encoded, label_ids, pad_id, batch_size=batch_size, return_hidden=True,
        precision=precision, progress=progress, desc="scoring label words",
    )  # fmt: skip
    return LabelScores(
        log_likelihood=scores.log_likelihood,
        proba=scores.proba,
        hidden=scores.hidden,
        label_words=words,
        label_tokens=label_ids,
        seconds=time.perf_counter() - start_time,
        batch_size=batch_size,
        fast_path=all(len(i) == 1 for i in label_ids),
    )


def zero_shot_scores(
    model,
    tokenizer,
    smiles: Sequence[str],
    dataset: str | TaskPrompt,
    batch_size: int = 32,
    chat: bool = True,
    progress: bool = False,
) -> LabelScores:
    """`score_label_words` of ``dataset``'s prompts and label words for ``smiles``."""
    return score_label_words(
        model,
        tokenizer,
        label_prompts(tokenizer, smiles, dataset, chat),
        label_words(tokenizer, dataset, chat),
        batch_size=batch_size,
        progress=progress,
    )


#: Content-free inputs whose mean class probabilities estimate the LM's label prior (Zhao et
#: al. 2021 average "N/A", "[MASK]" and the empty string).
CONTENT_FREE = ("N/A", "[MASK]", "")
#: How zero-shot probabilities are corrected for the LM's label prior: not at all, by the
#: content-free inputs' probabilities, or by the mean prediction on training molecules.
PRIOR_CORRECTIONS = ("none", "content-free", "training mean")


def content_free_proba(
    model, tokenizer, dataset: str | TaskPrompt, chat: bool = True, batch_size: int = 8
) -> np.ndarray:
    """Mean class probabilities (n_classes,) of the content-free inputs `CONTENT_FREE` written
    where the SMILES goes: the label prior the LM brings to the question."""
    scores = zero_shot_scores(model, tokenizer, list(CONTENT_FREE), dataset, batch_size, chat)
    return scores.proba.mean(0)


def correct_prior(proba: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    """Contextual calibration: ``proba`` (n, n_classes) divided by the label prior
    (n_classes,) and renormalised per row (``None``: unchanged). Dividing by the prior is
    `W = diag(prior)^-1` of Zhao et al. with no bias term."""
    proba = np.asarray(proba, dtype=float)
    if prior is None:
        return proba
    corrected = proba / np.clip(np.asarray(prior, dtype=float), 1e-12, None)
    return corrected / corrected.sum(1, keepdims=True)


@dataclass
class LabelRun:
    """A fine-tuned label-word classifier: the test set's `LabelScores`, the `TrainReport`
    (``replayed=True`` when the weights came from the cache) and the number of training
    examples."""

    scores: LabelScores
    train: Any
    n_train: int
    lora: bool


def fine_tune_label_classifier(
    lm: str | os.PathLike,
    dataset: str | TaskPrompt,
    train_smiles: Sequence[str],
    train_labels: Sequence[int],
    test_smiles: Sequence[str],
    config=None,
    valid_smiles: Sequence[str] = (),
    valid_labels: Sequence[int] = (),
    lora: bool = True,
    lora_kwargs: dict | None = None,
    chat: bool = True,
    max_length: int = 256,
    add_eos: bool = False,
    batch_size: int = 32,
    cache: bool | str | os.PathLike = True,
    key: dict | None = None,
    progress: bool = False,
) -> LabelRun:
    """Load a fresh copy of ``lm`` (`molkit.models.lm.load_lm`; torch seeded with
    ``config.seed`` first, so the LoRA initialisation repeats), wrap it with LoRA (``lora``;
    `apply_lora` with ``lora_kwargs``) or train it fully, fine-tune on ``dataset``'s prompts of
    ``train_smiles`` with the label word of ``train_labels`` as the answer (answer-only loss; EOS
    after it with ``add_eos``), through `molkit.models.train_cached` (``cache``: True, a folder, or
    False), then score the prompts of ``test_smiles`` with `score_label_words`.

    ``valid_smiles`` / ``valid_labels``: the validation part, built like the training examples and
    passed to the trainer (``config`` says how often it is evaluated, the patience and the
    monitored figure; the best state is kept, so ``config.epochs`` is a maximum).
    ``config``: a `TrainConfig`; ``None``: 2 epochs, batch 8, lr 2e-4 with LoRA or 2e-5 fully.
    ``key``: extra JSON values for the cache key (the method, dataset and prompt form are in it).
    """
    from molkit.models import train_cached
    from molkit.models.lm import LMExample, TrainConfig, apply_lora, load_lm

    if config is None:
        config = TrainConfig(epochs=2, lr=2e-4 if lora else 2e-5, batch_size=8, warmup=0.05)
    labels = [int(y) for y in train_labels]
    valid = [int(y) for y in valid_labels]
    if len(labels) != len(train_smiles) or len(valid) != len(valid_smiles):
        raise ValueError(
            f"{len(train_smiles)} training and {len(valid_smiles)} validation molecules but "
            f"{len(labels)} and {len(valid)} labels"
        )
    torch.manual_seed(config.seed)
    model, tokenizer = load_lm(lm)
    if lora:
        model = apply_lora(model, **(lora_kwargs or {}))
    words = label_words(tokenizer, dataset, chat)
    word_ids = label_token_ids(tokenizer, words)
    if any(y < 0 or y >= len(words) for y in labels + valid):
        raise ValueError(f"labels must lie in 0..{len(words) - 1} for {dataset!r}")

    def example(smiles: str, y: int) -> LMExample:
        prompt = _encode_prompt(tokenizer, label_prompt(tokenizer, smiles, dataset, chat))
        answer = word_ids[y] + ([tokenizer.eos_token_id] if add_eos else [])
        prompt = prompt[-(max_length - len(answer)) :]  # too long: keep the prompt's end
        return LMExample(
            input_ids=prompt + answer,
            labels=[-100] * len(prompt) + answer,
            prompt_length=len(prompt),
        )

    examples = [example(s, y) for s, y in zip(train_smiles, labels, strict=True)]
    valid_examples = [example(s, y) for s, y in zip(valid_smiles, valid, strict=True)]
    question = task_prompt(dataset).question
    run_key = {"method": "molex-llm-label", "dataset": question, "chat": _chat(tokenizer, chat)}
    report = train_cached(
        model,
        examples,
        config,
        tokenizer.pad_token_id,
        key={**run_key, **(key or {})},
        cache=cache,
        progress=progress,
        **({"valid_examples": valid_examples} if valid_examples else {}),
    )
    scores = score_label_words(
        model,
        tokenizer,
        label_prompts(tokenizer, test_smiles, dataset, chat),
        words,
        batch_size=batch_size,
        progress=progress,
    )
    return LabelRun(scores=scores, train=report, n_train=len(examples), lora=lora)


def scoring_throughput(
    model,
    tokenizer,
    smiles: Sequence[str],
    dataset: str,
    batch_sizes: Sequence[int] = (32, 64),
    repeats: int = 1,
    threads: int | None = None,
) -> pd.DataFrame:
    """Molecules/s of the zero-shot scorer (`zero_shot_scores`) on ``smiles`` at each batch size,
    best of ``repeats`` after one warm-up batch; ``threads``: torch's intra-op threads for the
    measurement (restored after). Rows: dataset, batch_size, threads, molecules, seconds,
    molecules_per_s, mean_prompt_tokens."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        zero_shot_scores(model, tokenizer, list(smiles)[: min(batch_sizes)], dataset)  # warm-up
        prompts = label_prompts(tokenizer, smiles, dataset)
        tokens = float(np.mean([len(_encode_prompt(tokenizer, p)) for p in prompts]))
        rows = []
        for b in batch_sizes:
            seconds = min(
                zero_shot_scores(model, tokenizer, smiles, dataset, batch_size=b).seconds
                for _ in range(max(1, repeats))
            )
            rows.append(
                {
                    "dataset": dataset,
                    "batch_size": int(b),
                    "threads": torch.get_num_threads(),
                    "molecules": len(smiles),
                    "seconds": seconds,
                    "molecules_per_s": len(smiles) / seconds,
                    "mean_prompt_tokens": tokens,
                }
            )
    finally:
        torch.set_num_threads(previous)
    return pd.DataFrame(rows)
