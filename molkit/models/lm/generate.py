"""The LM toolkit's one batched generator: greedy (or sampled, or beam) continuations of many
prompts with the KV cache, prompts sorted by length into left-padded batches so that little
compute goes to padding, optional chat template, extra input embeddings spliced in (graph tokens),
and data parallelism across processes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from molkit._progress import tqdm
from molkit.models.lm.examples import (
    IGNORE_INDEX,
    ExtraEmbeddings,
    LMExample,
    collate_examples,
    splice_embeddings,
)
from molkit.models.lm.load import Prompt, encode_prompt
from molkit.models.lm.parallel import data_parallel, is_main
from molkit.models.runtime import autocast, inference_dtype


@contextlib.contextmanager
def bf16_weights(model, device: torch.device, precision: str | None) -> Iterator[None]:
    """Within the block, a float32 model's floating-point parameters hold bfloat16 copies when the
    precision resolves to bf16 on a CPU; their float32 values come back afterwards, unchanged.

    Autocast casts every frozen float32 weight to bf16 again at each forward call (it caches only
    the casts of weights that require grad), and a decoding step is one forward call per new
    token: on a CPU the casts cost more than the step's products. Generation under autocast and
    with bf16 weights compute the same bf16 products; only the norms and the softmax, which
    autocast keeps in float32, now run on bf16 inputs (Llama's RMSNorm upcasts inside). Peak
    memory grows by the bf16 copy (half the float32 weights)."""
    params = [p for p in model.parameters() if p.dtype == torch.float32]
    if device.type != "cpu" or not params or inference_dtype(device, precision) != torch.bfloat16:
        yield
        return
    kept = [p.data for p in params]
    try:
        for p in params:
            p.data = p.data.to(torch.bfloat16)
        yield
    finally:
        for p, data in zip(params, kept, strict=True):
            p.data = data


@torch.no_grad()
def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    max_new_tokens: int = 256,
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    extra_positions: Sequence[Sequence[int]] | None = None,
    extra_embeddings: ExtraEmbeddings | None = None,
    precision: str | None = None,
    progress: bool = True,
    desc: str = "generating",
    generate_kwargs: dict | None = None,
    accelerator=None,
    chat: bool = False,
) -> list[str]:
    """Continuations of ``prompts`` (special tokens removed, whitespace stripped), in input order.

    Greedy by default; batches of ``batch_size`` prompts of similar length, left-padded, decoded
    with the KV cache. With ``extra_embeddings``, prompt ``i``'s tokens at ``extra_positions[i]``
    take the vectors ``extra_embeddings([i])[0]`` (the prompt is passed as ``inputs_embeds``).
    ``generate_kwargs`` go to ``model.generate`` as they are (e.g. ``{"num_beams": 5}``).
    ``precision``: ``None`` follows the precision policy (`molkit.models.runtime`), else
    ``"fp32"`` / ``"bf16"`` for this call. ``chat``: each prompt (a string, or a list of
    ``{"role", "content"}`` messages) becomes a user turn of the tokenizer's chat template with
    the assistant turn opened (`molkit.models.lm.encode_prompt`); otherwise the text is tokenised
    with the tokenizer's special prefix, as training examples are. With several processes
    (`data_parallel`), each generates every n-th prompt of the length order and the texts are
    gathered: every process returns all of them, in input order.
    """
    if extra_embeddings is not None and extra_positions is None:
        raise ValueError("extra_embeddings needs extra_positions (one list per prompt)")
    device = next(model.parameters()).device
    encoded = [encode_prompt(tokenizer, p, chat) for p in prompts]
    order = np.argsort([-len(e) for e in encoded], kind="stable")
    acc = data_parallel(accelerator)
    if acc is not None and acc.num_processes > 1:
        order = order[acc.process_index :: acc.num_processes]
    outputs: list[str] = [""] * len(prompts)
    requested, precision = precision, autocast(device, precision)
    settings = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "use_cache": True,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if do_sample:
        settings["temperature"] = temperature
    settings.update(generate_kwargs or {})
    if int(settings.get("num_beams", 1)) < 1:
        raise ValueError(f"num_beams must be >= 1, not {settings['num_beams']!r}")
    model.eval()
    bar = tqdm(total=len(order), desc=desc, unit="prompt", disable=not progress or not is_main(acc))
    with bf16_weights(model, device, requested):
        for start in range(0, len(order), batch_size):
            idx = [int(i) for i in order[start : start + batch_size]]
            batch = collate_examples(
                [
                    LMExample(encoded[i], [IGNORE_INDEX] * len(encoded[i]), len(encoded[i]))
                    for i in idx
                ],
                tokenizer.pad_token_id,
                padding_side="left",
            )
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            with precision:
                if extra_embeddings is not None:
                    positions = [
                        [p + int(off) for p in extra_positions[i]]
                        for i, off in zip(idx, batch["offsets"], strict=True)
                    ]
                    vectors = list(extra_embeddings(idx))
                    embeds = splice_embeddings(model, ids, positions, vectors)
                    new = model.generate(inputs_embeds=embeds, attention_mask=mask, **settings)
                else:
                    new = model.generate(input_ids=ids, attention_mask=mask, **settings)[
                        :, ids.shape[1] :
                    ]
            for row, i in enumerate(idx):
                outputs[i] = tokenizer.decode(new[row], skip_special_tokens=True).strip()
            bar.update(len(idx))
    bar.close()
    if acc is not None and acc.num_processes > 1:
        from accelerate.utils import gather_object

        for i, text in gather_object([(int(i), outputs[int(i)]) for i in order]):
            outputs[i] = text
    return outputs
