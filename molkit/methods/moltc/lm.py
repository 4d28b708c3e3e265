"""MolTC's language-model stages: fine-tuning on pair prompts with graph tokens spliced in, stopped
on a validation part (`train_pair_lm`), and ``PairLMSession``, which runs the pair pre-training once
and every `LMVariant` with its own seeded adapters, choosing each run's readout on validation
(`molkit.methods.moltc.readouts`: the DDI answers' likelihood; for regression the greedy answer's
value or the expected value over the answer bins).

Every training, generation and scoring step is the LM toolkit's (`molkit.models.lm`:
`train_cached` around `train_causal_lm`, `generate_texts`, `score_candidates`); the graph-token
machinery (Q-Former projectors, role sharing, the encoder, placeholder positions) is generic and
lives in `molkit.models.graph_tokens`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from molkit.data.splits import subsample
from molkit.methods.moltc.method import (
    EXPECTED_VALUE,
    GREEDY,
    LIKELIHOOD,
    LMVariant,
    PairTask,
    answer_bins,
    choose_readout,
    pair_prompt,
    parse_values,
    pretrain_target,
    task_answers,
    task_prompts,
)
from molkit.methods.moltc.readouts import (
    expected_values,
    generate_pair_answers,
    graph_embeddings,
    score_ddi,
)
from molkit.methods.moltc.settings import Settings
from molkit.models.graph_tokens import (
    GraphTokenEncoder,
    QFormerProjector,
    RoleProjectors,
    add_graph_token,
    encode_graph_examples,
    init_projector_from_bert,
)

__all__ = [
    "LMPredictions",
    "LMRun",
    "PROMPT_TOKENS",
    "PairLMSession",
    "lm_memory",
    "quiet_transformers",
    "train_pair_lm",
]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()


def _state_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's state (names, dtypes, shapes, bytes), for the adapter-cache key."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def train_pair_lm(
    model,
    tokenizer,
    prompts: Sequence[str],
    answers: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    graph: GraphTokenEncoder | None,
    config,
    graph_token_id: int | None = None,
    progress: bool = True,
    extra_lr: float | None = None,
    cache: bool | str = True,
    key: dict | None = None,
    valid: tuple[Sequence[str], Sequence[str], Sequence[tuple[str, str]]] | None = None,
):
    """Fine-tune (LoRA or full) on pair prompts with the answer-only loss, the graph tokens spliced
    in and the projectors trained alongside (one AdamW: ``config.lr`` for the LM, ``extra_lr`` for
    the projectors, default the same).

    ``valid`` = (prompts, answers, pairs) of the validation part: the toolkit's trainer scores it
    every ``config.eval_every`` steps and before the first, keeps the best adapters and projectors
    and stops after ``config.patience`` evaluations without improvement (`TrainConfig`); the
    projectors run in eval mode while it is scored.

    The trained weights go through the shared adapter cache (`molkit.models.train_cached`): a
    re-run with the same model, examples, settings, GIN and pairs replays them (``cache=False``
    trains without it; a folder path uses that folder). The key covers the frozen GIN's weights and
    the pairs (what the graph tokens are computed from), the role sharing of the projectors and
    ``key`` (the caller's extra description). Returns ``molkit.models.lm.TrainReport`` (its
    ``curve`` and ``best_step`` with a validation part; ``replayed`` on a cache hit)."""
    from molkit.models.lm.adapter_cache import train_cached

    if graph is not None and graph_token_id is None:
        raise ValueError("graph tokens need graph_token_id (see add_graph_token)")
    gid = graph_token_id if graph is not None else None
    examples = encode_graph_examples(tokenizer, prompts, answers, gid)
    extra_params = list(graph.projectors.parameters()) if graph is not None else []
    full_key = {"method": "moltc pair LM", **(key or {})}
    valid_kwargs = {}
    if valid is not None:
        v_prompts, v_answers, v_pairs = valid
        valid_kwargs["valid_examples"] = encode_graph_examples(tokenizer, v_prompts, v_answers, gid)
        valid_kwargs["valid_extra_embeddings"] = graph_embeddings(
            graph, list(v_pairs), eval_mode=True
        )
        if graph is not None:
            full_key["valid_pairs"] = _digest([list(p) for p in v_pairs])
    if graph is not None:
        full_key.update(
            gin=_state_digest(graph.gin), shared=graph.projectors.shared,
            pairs=_digest([list(p) for p in pairs]),
        )  # fmt: skip
        graph.projectors.train()
    try:
        return train_cached(
            model, examples, config, tokenizer.pad_token_id, key=full_key, cache=cache,
            progress=progress, extra_embeddings=graph_embeddings(graph, pairs),
            extra_parameters=extra_params, extra_lr=extra_lr, **valid_kwargs,
        )  # fmt: skip
    finally:
        if graph is not None:
            graph.projectors.eval()


@dataclass
class LMPredictions:
    """One trained model's predictions on one set of pairs (no labels: they are scored later).

    ``y_pred``: the run's chosen readout (P(interact), or a value); ``readouts``: every readout
    computed here by name (`LIKELIHOOD`; `GREEDY`, `EXPECTED_VALUE`); ``texts``: the greedy
    answers (regression); ``n_unparsed``: those without a number (filled with the training
    mean); ``pairs_per_s``: inference speed; ``swap_rows`` / ``swapped``: the rows scored again
    with the two molecules trading places, and the chosen readout there."""

    y_pred: np.ndarray
    readouts: dict[str, np.ndarray]
    texts: list[str] = field(default_factory=list)
    n_unparsed: int = 0
    pairs_per_s: float = math.nan
    swap_rows: np.ndarray | None = None
    swapped: np.ndarray | None = None


@dataclass
class LMRun:
    """One variant fine-tuned with one training seed: its `TrainReport` (the validation curve and
    the kept step), the readout chosen on validation (``valid_scores``: each readout's
    validation figure, RMSE or ROC-AUC), the validation predictions and each test set's."""

    name: str
    variant: LMVariant
    seed: int
    report: object
    readout: str
    valid_scores: dict[str, float]
    valid: LMPredictions
    tests: dict[str, LMPredictions]


@contextlib.contextmanager
def quiet_transformers():
    """transformers' progress bars and notes off for the block (loading and saving a model: one
    bar each, in a notebook that shows its own), then as they were."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


#: Tokens of a MolTC prompt besides its two SMILES, graph tokens and answer (an allowance).
PROMPT_TOKENS = 128
#: The SMILES allowance of the memory estimate when prompts hold whole SMILES (characters; a token a
#: character at most).
WHOLE_SMILES_CHARS = 256


def lm_memory(
    settings: Settings,
    lm_path: str,
    device=None,
    free_bytes: int | None = None,
    local_files_only: bool = False,
) -> str:
    """The memory line printed before the LM stage (`molkit.models.lm.memory.lm_memory_line`): LoRA
    r 8 on q_proj / v_proj as `PairLMSession` trains it, ``lm_batch_size`` sequences of
    `PROMPT_TOKENS` + two SMILES (``smiles_chars``, or `WHOLE_SMILES_CHARS` for whole SMILES) with
    8 graph tokens each + ``max_new_tokens``, ``lm_dtype`` / ``lm_quantization``. Raises
    `molkit.models.lm.memory.InsufficientMemoryError` naming the settings to change when it does not
    fit ``device`` (``free_bytes``: instead of its free memory); a line saying so when the
    estimate is unavailable (``local_files_only``: never ask the Hugging Face hub)."""
    from molkit.models.lm.memory import lm_memory_line

    chars = settings.smiles_chars or WHOLE_SMILES_CHARS
    seq_len = PROMPT_TOKENS + 2 * (chars + 8) + settings.max_new_tokens
    return lm_memory_line(
        lm_path, settings.lm_dtype, settings.lm_quantization,
        "lm_quantization='4bit', lm_batch_size or smiles_chars", device, free_bytes,
        local_files_only,
        lora_r=8, lora_targets=["q_proj", "v_proj"], batch_size=settings.lm_batch_size,
        seq_len=seq_len,
    )  # fmt: skip


class PairLMSession:
    """One LM (LoRA on q/v, r 8 / alpha 32 as MolTC's defaults, dropout ``lora_dropout``) with the
    graph placeholder token, a frozen GIN and the projector settings; runs MolTC's stages and the
    ablations, every training run through the shared adapter cache.

    ``settings`` (read: ``projector_*``, ``lm_lr``, ``lm_batch_size``, ``lm_eval_batch_size``,
    ``lm_evals_per_epoch``, ``lm_patience``, ``smiles_chars``, ``max_new_tokens``, ``num_beams``,
    ``lora_dropout``, ``lm_dtype``, ``lm_quantization``). ``pretrain`` trains LoRA (+ one shared
    projector, or without graph tokens for the SMILES-only arm) on random training pairs whose
    target states both molecules' properties; ``run`` fine-tunes one `LMVariant` with one
    training seed on a task, validated, and predicts each test set. ``cache``: the adapter cache
    (``True``: the molkit cache, a folder, or ``False``).
    """

    def __init__(
        self,
        lm_model: str,
        gin,
        settings: Settings,
        seed: int = 0,
        lora_r: int = 8,
        lora_alpha: int = 32,
        progress: bool = True,
        cache: bool | str = True,
    ):
        from molkit.models.lm import apply_lora, load_lm

        torch.manual_seed(seed)
        with quiet_transformers():  # its loading bar, and its note on the resized embeddings
            model, self.tokenizer = load_lm(
                lm_model, dtype=settings.lm_dtype, quantization=settings.lm_quantization
            )
            self.graph_token_id = add_graph_token(model, self.tokenizer)
        self.model = apply_lora(
            model, r=lora_r, alpha=lora_alpha, dropout=settings.lora_dropout,
            target_modules=["q_proj", "v_proj"],
        )  # fmt: skip
        self.device = next(self.model.parameters()).device
        self.gin, self.settings, self.seed = gin.to(self.device), settings, seed
        self.progress, self.cache = progress, cache
        self.hidden = model.config.hidden_size
        #: graph tokens or not -> (adapter state, projector state or None) after pre-training
        self.pretrained: dict[bool, tuple[dict, dict | None]] = {}
        self.pretrain_reports: dict[bool, object] = {}
        self._bert = None

    @property
    def pretrain_report(self):
        """The report of the pre-training with graph tokens (None before it ran)."""
        return self.pretrain_reports.get(True)

    def adapter_state(self) -> dict[str, Tensor]:
        """A copy of the LM's trainable (LoRA) weights."""
        return {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad}

    @torch.no_grad()
    def load_adapter_state(self, state: dict[str, Tensor]) -> None:
        params = dict(self.model.named_parameters())
        for k, v in state.items():
            params[k].copy_(v)

    @torch.no_grad()
    def fresh_adapters(self, seed: int) -> None:
        """New LoRA adapters drawn with ``seed`` (A as peft draws it, B zero: the LM starts as the
        base model), so that each training seed also starts from its own adapters."""
        from peft.tuners.lora import LoraLayer

        torch.manual_seed(seed)
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                for name in module.lora_A:
                    module.reset_lora_parameters(name, True)

    def new_projector(self, init: str = "minilm", seed: int | None = None) -> QFormerProjector:
        """A fresh projector drawn with ``seed`` (default the session's), its BERT-shaped parts
        copied from registry ``minilm-l6`` (``init="minilm"``) or random."""
        s = self.settings
        torch.manual_seed(self.seed if seed is None else seed)
        proj = QFormerProjector(
            self.gin.out_dim, self.hidden, n_query=8, hidden=s.projector_hidden,
            heads=s.projector_heads, n_layers=s.projector_layers,
        )  # fmt: skip
        if init == "minilm":
            if self._bert is None:
                from transformers import AutoModel

                from molkit.models.registry import resolve_model_path

                self._bert = AutoModel.from_pretrained(resolve_model_path("minilm-l6"))
            init_projector_from_bert(proj, self._bert)
        elif init != "random":
            raise ValueError(f"init must be 'minilm' or 'random', not {init!r}")
        return proj.to(self.device)

    def config(self, n_train: int, max_epochs: float = 1.0, seed: int = 0):
        """The `molkit.models.lm.TrainConfig` of a run on ``n_train`` examples: at most
        ``max_epochs`` epochs, its validation part scored ``lm_evals_per_epoch`` times an epoch,
        stopped after ``lm_patience`` evaluations without a better validation loss."""
        from molkit.models.lm import TrainConfig

        s = self.settings
        per_epoch = max(1, math.ceil(n_train / s.lm_batch_size))
        every = max(1, math.ceil(per_epoch / s.lm_evals_per_epoch))
        return TrainConfig(
            epochs=max_epochs, lr=s.lm_lr, batch_size=s.lm_batch_size, warmup=0.1, seed=seed,
            eval_every=every, patience=s.lm_patience,
            eval_batch_size=s.lm_eval_batch_size,
        )  # fmt: skip

    def pretrain(
        self,
        smiles_1: Sequence[str],
        smiles_2: Sequence[str],
        n_pairs: int,
        graph_tokens: bool = True,
        epochs: float = 1.0,
    ):
        """MolTC's pair pre-training: ``n_pairs`` random pairs of the given molecules, target =
        both molecules' properties as text; LoRA and (``graph_tokens``) one shared projector train
        for at most ``epochs``, validated on a tenth as many other random pairs (at most 256) and
        kept at the best validation loss, as every fine-tuning run. ``graph_tokens=False``
        pre-trains the SMILES-only arm on the same pairs and targets. Keeps the resulting adapter
        (and projector) states for the pre-trained variants."""
        n_valid = max(2, min(256, n_pairs // 10))
        rng = np.random.default_rng(self.seed)
        a = [smiles_1[i] for i in rng.integers(0, len(smiles_1), n_pairs + n_valid)]
        b = [smiles_2[i] for i in rng.integers(0, len(smiles_2), n_pairs + n_valid)]
        pairs = list(zip(a, b, strict=True))
        graph = None
        if graph_tokens:
            graph = GraphTokenEncoder(
                self.gin, RoleProjectors(self.new_projector("minilm"), shared=True)
            )
        n_tokens = graph.n_query if graph is not None else 0
        prompts = [
            pair_prompt(
                x, y, "Describe both molecules.", n_graph_tokens=n_tokens,
                max_smiles_chars=self.settings.smiles_chars,
            )
            for x, y in pairs
        ]  # fmt: skip
        answers = [pretrain_target(x, y) for x, y in pairs]
        self.fresh_adapters(self.seed)
        config = self.config(n_pairs, epochs, self.seed + 1)
        train, valid = slice(0, n_pairs), slice(n_pairs, None)
        report = train_pair_lm(
            self.model, self.tokenizer, prompts[train], answers[train], pairs[train], graph,
            config, self.graph_token_id, self.progress, extra_lr=self.settings.projector_lr,
            cache=self.cache, key={"stage": "pair pre-training"},
            valid=(prompts[valid], answers[valid], pairs[valid]),
        )  # fmt: skip
        projector = graph.projectors.projectors[0].state_dict() if graph is not None else None
        self.pretrained[graph_tokens] = (self.adapter_state(), copy.deepcopy(projector))
        self.pretrain_reports[graph_tokens] = report
        return report

    def _graph_encoder(self, variant: LMVariant, seed: int) -> GraphTokenEncoder | None:
        if not variant.graph:
            return None
        proj = self.new_projector(variant.init, seed)
        if variant.pretrained:
            proj.load_state_dict(self._pretrained(variant)[1])
        roles = RoleProjectors(proj, shared=True)
        if not variant.shared:
            roles.separate()  # dynamic parameter sharing: one copy per role for fine-tuning
        return GraphTokenEncoder(self.gin, roles)

    def _pretrained(self, variant: LMVariant) -> tuple[dict, dict | None]:
        if variant.graph not in self.pretrained:
            kind = "with graph tokens" if variant.graph else "with graph_tokens=False"
            raise RuntimeError(
                f"run PairLMSession.pretrain(...) {kind} before a pre-trained variant"
            )
        return self.pretrained[variant.graph]

    def run(
        self,
        name: str,
        variant: LMVariant,
        task: PairTask,
        train: pd.DataFrame,
        valid: pd.DataFrame,
        tests: dict[str, pd.DataFrame],
        seed: int = 0,
        max_epochs: float = 1.0,
        swap: Sequence[str] = (),
        swap_pairs: int | None = None,
    ) -> LMRun:
        """Fine-tune ``variant`` with training seed ``seed`` (its adapters, projector draw and
        batch order) on ``train`` for at most ``max_epochs``, validated on ``valid`` (the toolkit's
        trainer keeps the step with the lowest validation loss), choose the readout on ``valid``
        (`choose_readout`: regression reads the greedy answer's value or the expected value over
        the answer bins of ``train``'s targets), and predict each of ``tests`` (frames without
        labels) with it; the sets named in ``swap`` also with the molecules swapped, on all their
        rows or a sample of ``swap_pairs`` drawn with the session's seed (the same rows for every
        training seed)."""
        if variant.pretrained:
            self.load_adapter_state(self._pretrained(variant)[0])
        else:
            self.fresh_adapters(seed)
        graph = self._graph_encoder(variant, seed)
        n_tokens = graph.n_query if graph is not None else 0
        gid = self.graph_token_id if graph is not None else None
        chars = self.settings.smiles_chars

        def pairs_of(frame: pd.DataFrame) -> list[tuple[str, str]]:
            return list(zip(frame["smiles_1"], frame["smiles_2"], strict=True))

        key = {"stage": "fine-tuning", "task": task.dataset, "variant": repr(variant)}
        report = train_pair_lm(
            self.model, self.tokenizer, task_prompts(task, train, n_tokens, chars),
            task_answers(task, train, variant.cot), pairs_of(train), graph,
            self.config(len(train), max_epochs, seed), gid, self.progress,
            extra_lr=self.settings.projector_lr, cache=self.cache, key=key,
            valid=(task_prompts(task, valid, n_tokens, chars),
                   task_answers(task, valid, variant.cot), pairs_of(valid)),
        )  # fmt: skip
        y_train = train[task.target].to_numpy(dtype=float)
        reader = _Reader(self, task, graph, gid, n_tokens, y_train, variant.cot)
        readouts = (LIKELIHOOD,) if task.kind == "classification" else (GREEDY, EXPECTED_VALUE)
        valid_pred = reader.predict(valid, readouts)
        y_valid = valid[task.target].to_numpy(dtype=float)
        readout, scores = choose_readout(task.kind, y_valid, valid_pred.readouts)
        valid_pred.y_pred = valid_pred.readouts[readout]
        out = {}
        for set_name, frame in tests.items():
            pred = reader.predict(frame, (readout,))  # the other readouts: validation only
            pred.y_pred = pred.readouts[readout]
            if set_name in swap:
                rows = subsample(len(frame), swap_pairs, self.seed)  # one sample for every seed
                part = frame.iloc[rows].reset_index(drop=True)
                pred.swap_rows = rows
                pred.swapped = reader.predict(part, (readout,), swap=True).readouts[readout]
            out[set_name] = pred
        return LMRun(name, variant, seed, report, readout, scores, valid_pred, out)


class _Reader:
    """The readouts of one trained model on pair frames (see `PairLMSession.run`)."""

    def __init__(self, session, task, graph, gid, n_tokens, y_train, cot):
        self.s, self.task, self.graph, self.gid, self.n_tokens = session, task, graph, gid, n_tokens
        self.fill = float(np.mean(y_train))  # for unparsed answers: the training mean
        self.bins = answer_bins(task, y_train) if task.kind == "regression" and cot else None

    def predict(self, frame: pd.DataFrame, readouts: Sequence[str], swap: bool = False):
        s, task = self.s, self.task
        settings = s.settings
        prompts = task_prompts(task, frame, self.n_tokens, settings.smiles_chars, swap=swap)
        first, second = ("smiles_2", "smiles_1") if swap else ("smiles_1", "smiles_2")
        pairs = list(zip(frame[first], frame[second], strict=True))
        common = (s.model, s.tokenizer, prompts)
        graph = {"pairs": pairs, "graph": self.graph, "graph_token_id": self.gid}
        bs, progress = settings.lm_eval_batch_size, s.progress
        start = time.perf_counter()
        out: dict[str, np.ndarray] = {}
        texts, n_bad = [], 0
        if LIKELIHOOD in readouts:
            out[LIKELIHOOD] = score_ddi(*common, **graph, batch_size=bs, progress=progress)
        if GREEDY in readouts:
            texts = generate_pair_answers(
                *common, **graph, max_new_tokens=settings.max_new_tokens, batch_size=bs,
                progress=progress, num_beams=settings.num_beams,
            )  # fmt: skip
            values, n_bad = parse_values(texts)
            out[GREEDY] = np.where(np.isnan(values), self.fill, values)
        if EXPECTED_VALUE in readouts and self.bins is not None:
            out[EXPECTED_VALUE] = expected_values(
                *common, task, self.bins, **graph, batch_size=bs, progress=progress
            )
        speed = len(frame) / max(time.perf_counter() - start, 1e-9)
        first_readout = next(iter(out.values()))
        return LMPredictions(first_readout, out, texts, n_bad, speed)
