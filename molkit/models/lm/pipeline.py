"""Load -> (LoRA) -> fine-tune to the validation optimum -> generate: the pipeline every method that
fine-tunes a causal LM on prompt / answer pairs and then generates with it shares.

:func:`fine_tune_and_generate` loads a fresh copy of the LM (`load_lm`: the weights for training),
seeds torch with the training seed before anything random is drawn (LoRA's initialisation),
wraps it in LoRA (`apply_lora`, `LoraSpec`) or trains it fully, encodes the pairs with the
answer-only loss (`encode_example`), trains through the adapter cache (`train_cached`: the one
trainer, evaluated on the validation pairs every ``TrainConfig.eval_every`` steps, the best state
kept, stopped on patience; a re-run replays the weights), merges the adapters into the weights and
casts them to the precision policy's generation dtype (`molkit.models.runtime.inference_dtype`:
bf16 where native under ``auto``), then generates greedily for each named prompt set
(`generate_texts`). Without training pairs the LM is loaded for generation only (in-context
prompting of the pre-trained model).

>>> run = fine_tune_and_generate("tiny-lm", pairs, {"test": prompts}, TrainConfig(epochs=2),
...                              valid=valid_pairs, one_line=True)          # doctest: +SKIP
>>> run.report.summary(), run.texts("test")[:2]                             # doctest: +SKIP
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from molkit.models.lm.train import TrainConfig, TrainReport

__all__ = [
    "LoraSpec",
    "Generated",
    "PipelineRun",
    "newline_token_ids",
    "first_line",
    "fine_tune_and_generate",
]


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapters (`apply_lora`): rank ``r``, scaling ``alpha``, ``dropout`` on the adapters'
    input, ``targets`` (``"all-linear"``: every linear layer but the output head)."""

    r: int = 32
    alpha: int = 64
    dropout: float = 0.1
    targets: str | tuple[str, ...] = "all-linear"


@dataclass
class Generated:
    """One prompt set's generations: ``texts`` (one per prompt, in order), the wall ``seconds``
    and the number of generated tokens (re-tokenised outputs: approximate)."""

    texts: list[str]
    seconds: float
    new_tokens: int

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class PipelineRun:
    """What `fine_tune_and_generate` did: the training ``report`` (None without training) and the
    generations per prompt set."""

    report: TrainReport | None
    generated: dict[str, Generated] = field(default_factory=dict)

    def texts(self, name: str) -> list[str]:
        """The generations of prompt set ``name``."""
        return self.generated[name].texts


def newline_token_ids(tokenizer) -> list[int]:
    """The ids of every vocabulary token whose text contains a line break: generation of a one-line
    answer stops at the first of them (an LM would otherwise go on to invent the next example)."""
    vocab = tokenizer.get_vocab()
    return sorted(i for t, i in vocab.items() if "\n" in tokenizer.convert_tokens_to_string([t]))


def first_line(text: str) -> str:
    """The first line of a generated answer, stripped."""
    return text.strip().split("\n", 1)[0].strip()


def fine_tune_and_generate(
    lm: str,
    train: Sequence[tuple[str, str]] | None,
    prompt_sets: Mapping[str, Sequence[str]],
    config: TrainConfig,
    *,
    valid: Sequence[tuple[str, str]] = (),
    cutoff: int = 1024,
    max_new_tokens: int = 128,
    batch_size: int = 64,
    lora: LoraSpec | None = None,
    dtype: str = "fp32",
    quantization: str | None = None,
    one_line: bool = False,
    merge: bool = True,
    cache: bool | str = True,
    key: dict | None = None,
    progress: bool = True,
    desc: str = "",
) -> PipelineRun:
    """Fine-tune a fresh copy of ``lm`` on ``train`` (prompt, answer) pairs and generate greedily
    for each of ``prompt_sets`` (name -> prompts) with the trained model.

    ``config``: the `TrainConfig` (its ``seed`` also seeds torch before LoRA is drawn; with
    ``valid`` pairs, ``eval_every`` / ``patience`` / ``epochs`` say when it is validated and
    stopped, and the best state is kept). Examples are truncated to ``cutoff`` tokens
    (`encode_example`). ``lora``: a `LoraSpec`, or None for full fine-tuning. ``dtype`` /
    ``quantization``: how the LM loads (`load_lm`). The trained weights are cached
    (`train_cached`; ``cache=False`` trains without it; ``key``: the caller's description of the
    run, e.g. its method and arm). ``merge``: fold LoRA into the weights and cast them to the
    generation dtype of the precision policy before generating (not for 4-bit weights).
    ``one_line``: stop at the end of the first line and keep that line (`first_line`).

    ``train=None``: no training; the pre-trained LM, loaded with the generation weights of the
    precision policy (`load_causal_lm`), answers the prompts (``report`` is None)."""
    import torch

    from molkit.models.lm.adapter_cache import train_cached
    from molkit.models.lm.examples import encode_example
    from molkit.models.lm.generate import generate_texts
    from molkit.models.lm.load import (
        apply_lora,
        generation_load_kwargs,
        load_causal_lm,
        load_lm,
    )
    from molkit.models.runtime import inference_dtype

    torch.manual_seed(config.seed)
    report = None
    if train is None:
        model, tok = load_causal_lm(lm, **generation_load_kwargs(dtype, quantization))
    else:
        if not train:
            raise ValueError("no training pairs (pass train=None to generate without training)")
        model, tok = load_lm(lm, dtype=dtype, quantization=quantization)
        if lora is not None:
            model = apply_lora(
                model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout,
                target_modules=lora.targets if isinstance(lora.targets, str)
                else list(lora.targets),
            )  # fmt: skip
        examples = [encode_example(tok, p, a, max_length=cutoff) for p, a in train]
        valid_examples = [encode_example(tok, p, a, max_length=cutoff) for p, a in valid]
        report = train_cached(
            model, examples, config, tok.pad_token_id, key=key, cache=cache, progress=progress,
            valid_examples=valid_examples,
        )  # fmt: skip
        if merge and quantization is None:
            if lora is not None:
                model = model.merge_and_unload()
            device = next(model.parameters()).device
            model = model.to(inference_dtype(device)).eval()
    stop = [tok.eos_token_id, *newline_token_ids(tok)] if one_line else [tok.eos_token_id]
    generated = {}
    for name, prompts in prompt_sets.items():
        start = time.perf_counter()
        outs = generate_texts(
            model, tok, list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size,
            desc=" ".join(filter(None, ("generating", desc, name))), progress=progress,
            generate_kwargs={"eos_token_id": stop},
        )  # fmt: skip
        seconds = time.perf_counter() - start
        n_tokens = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outs)
        texts = [first_line(o) for o in outs] if one_line else outs
        generated[name] = Generated(texts, seconds, n_tokens)
    del model
    gc.collect()
    return PipelineRun(report, generated)
