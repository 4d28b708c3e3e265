"""MolTC's language-model stages: fine-tuning on pair prompts with graph tokens spliced in,
log-likelihood scoring of the two DDI answers, generation, and ``PairLMSession``, which runs the
pair pre-training once and every `LMVariant` from saved adapter states.

The graph-token machinery (Q-Former projectors, role sharing, the encoder, placeholder positions)
is generic and lives in `molkit.models.graph_tokens`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from molkit.data.splits import subsample
from molkit.eval.metrics import task_metrics
from molkit.methods.moltc.method import (
    DDI_ANSWERS,
    LMVariant,
    PairTask,
    pair_prompt,
    parse_values,
    pretrain_target,
    task_answers,
    task_prompts,
)
from molkit.models.graph_tokens import (
    GraphTokenEncoder,
    QFormerProjector,
    RoleProjectors,
    add_graph_token,
    encode_graph_examples,
    graph_positions,
    init_projector_from_bert,
)

if TYPE_CHECKING:
    from molkit.methods.moltc.experiment import Settings

__all__ = [
    "PairLMSession",
    "candidate_scores",
    "generate_pair_answers",
    "score_ddi",
    "train_pair_lm",
]


def _extra(graph: GraphTokenEncoder | None, pairs: Sequence[tuple[str, str]]):
    if graph is None:
        return None

    def embeddings(indices):
        return graph([pairs[i] for i in indices])

    return embeddings


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
):
    """Fine-tune (LoRA or full) on pair prompts with the answer-only loss, the graph tokens spliced
    in and the projectors trained alongside (one AdamW: ``config.lr`` for the LM, ``extra_lr`` for
    the projectors, default the same).

    The trained weights go through the shared adapter cache (`molkit.models.train_cached`): a
    re-run with the same model, examples, settings, GIN and pairs replays them (``cache=False``
    trains without it; a folder path uses that folder). The key covers the frozen GIN's weights and
    the pairs (what the graph tokens are computed from), the role sharing of the projectors and
    ``key`` (the caller's extra description). Returns
    ``molkit.models.lm.TrainReport`` (tokens/s included; ``replayed`` on a cache hit)."""
    from molkit.models.lm.adapter_cache import train_cached

    if graph is not None and graph_token_id is None:
        raise ValueError("graph tokens need graph_token_id (see add_graph_token)")
    gid = graph_token_id if graph is not None else None
    examples = encode_graph_examples(tokenizer, prompts, answers, gid)
    extra_params = list(graph.projectors.parameters()) if graph is not None else []
    full_key = {"method": "moltc pair LM", **(key or {})}
    if graph is not None:
        full_key.update(
            gin=_state_digest(graph.gin), shared=graph.projectors.shared,
            pairs=hashlib.sha256(json.dumps([list(p) for p in pairs]).encode()).hexdigest(),
        )  # fmt: skip
        graph.projectors.train()
    try:
        return train_cached(
            model, examples, config, tokenizer.pad_token_id, key=full_key, cache=cache,
            progress=progress, extra_embeddings=_extra(graph, pairs),
            extra_parameters=extra_params, extra_lr=extra_lr,
        )  # fmt: skip
    finally:
        if graph is not None:
            graph.projectors.eval()


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
        extra_embeddings=_extra(graph, pairs), max_length=512, batch_size=batch_size,
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
    if graph is None:
        return generate_texts(
            model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
            progress=progress, generate_kwargs=beams,
        )  # fmt: skip
    positions = [graph_positions(tokenizer, p, graph_token_id) for p in prompts]
    return generate_texts(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
        extra_positions=positions, extra_embeddings=_extra(graph, pairs), progress=progress,
        generate_kwargs=beams,
    )  # fmt: skip


class PairLMSession:
    """One LM (LoRA on q/v, r 8 / alpha 32 as MolTC's defaults, dropout ``lora_dropout``) with the
    graph placeholder token, a frozen GIN and the projector settings; runs MolTC's stages and the
    ablations from saved adapter states, every training run through the shared adapter cache.

    ``settings`` is the method's `Settings` (read: ``projector_hidden``, ``projector_heads``,
    ``projector_layers``, ``projector_lr``, ``lm_lr``, ``lm_batch_size``, ``lm_eval_batch_size``,
    ``smiles_chars``, ``max_new_tokens``, ``num_beams``, ``lora_dropout``, ``lm_dtype``,
    ``lm_quantization``: how `molkit.models.lm.load_lm` loads the LM). ``pretrain`` trains
    LoRA (+ one shared projector, or without graph tokens for the SMILES-only arm) on random
    training pairs whose target states both molecules' properties; ``run`` fine-tunes one
    `LMVariant` on a task and evaluates it on one or more test sets. ``cache``: the adapter cache
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
        model, self.tokenizer = load_lm(
            lm_model, dtype=settings.lm_dtype, quantization=settings.lm_quantization
        )
        self.graph_token_id = add_graph_token(model, self.tokenizer)
        self.model = apply_lora(
            model,
            r=lora_r,
            alpha=lora_alpha,
            dropout=settings.lora_dropout,
            target_modules=["q_proj", "v_proj"],
        )
        self.device = next(self.model.parameters()).device
        self.gin, self.settings, self.seed = gin.to(self.device), settings, seed
        self.progress, self.cache = progress, cache
        self.hidden = model.config.hidden_size
        self.initial_state = self.adapter_state()
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

    def new_projector(self, init: str = "minilm") -> QFormerProjector:
        """A fresh projector, its BERT-shaped parts copied from registry ``minilm-l6``
        (``init="minilm"``) or random."""
        s = self.settings
        torch.manual_seed(self.seed)
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

    def _config(self, epochs: float = 1.0, seed_offset: int = 0):
        from molkit.models.lm import TrainConfig

        s = self.settings
        return TrainConfig(
            epochs=epochs, lr=s.lm_lr, batch_size=s.lm_batch_size, warmup=0.1,
            seed=self.seed + seed_offset,
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
        both molecules' properties as text; LoRA and (``graph_tokens``) one shared projector train,
        as in the official code's stage 1 here (see the notebook on what the official run
        freezes). ``graph_tokens=False`` pre-trains the SMILES-only arm on the same pairs and
        targets. Keeps the resulting adapter (and projector) states for the pre-trained
        variants."""
        rng = np.random.default_rng(self.seed)
        a = [smiles_1[i] for i in rng.integers(0, len(smiles_1), n_pairs)]
        b = [smiles_2[i] for i in rng.integers(0, len(smiles_2), n_pairs)]
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
        self.load_adapter_state(self.initial_state)
        report = train_pair_lm(
            self.model, self.tokenizer, prompts, answers, pairs, graph, self._config(epochs, 1),
            self.graph_token_id, self.progress, extra_lr=self.settings.projector_lr,
            cache=self.cache, key={"stage": "pair pre-training"},
        )  # fmt: skip
        projector = graph.projectors.projectors[0].state_dict() if graph is not None else None
        self.pretrained[graph_tokens] = (self.adapter_state(), copy.deepcopy(projector))
        self.pretrain_reports[graph_tokens] = report
        return report

    def _graph_encoder(self, variant: LMVariant) -> GraphTokenEncoder | None:
        if not variant.graph:
            return None
        proj = self.new_projector(variant.init)
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
        test: pd.DataFrame | dict[str, pd.DataFrame],
        swap: bool | Sequence[str] = False,
        epochs: float = 1.0,
        swap_pairs: int | None = None,
    ) -> dict:
        """Fine-tune ``variant`` on ``train`` for ``epochs`` and evaluate it on ``test`` (one frame,
        or several named test sets: one trained model scored on each).

        Returns ``report`` (tokens/s, ``replayed`` when the cache replayed the weights) and, per
        test set (the top level for one frame, else ``out["tests"][set name]``): ``y_true``,
        ``y_pred`` (P(interact) or parsed values, unparsed filled with the training mean),
        ``texts`` (generated answers, regression), ``n_unparsed``, ``pairs_per_s`` (inference),
        ``metrics`` and, with ``swap`` (True, or the names of the sets to swap), the same
        predictions with the molecules swapped (``y_pred_swapped``, ``texts_swapped``) on the rows
        ``swap_rows`` of the set: all of them, or a seeded sample of ``swap_pairs``.
        """
        state = self._pretrained(variant)[0] if variant.pretrained else self.initial_state
        self.load_adapter_state(state)
        graph = self._graph_encoder(variant)
        n_tokens = graph.n_query if graph is not None else 0
        gid = self.graph_token_id if graph is not None else None
        chars = self.settings.smiles_chars
        pairs = list(zip(train["smiles_1"], train["smiles_2"], strict=True))
        key = {"stage": "fine-tuning", "task": task.dataset, "variant": repr(variant)}
        report = train_pair_lm(
            self.model, self.tokenizer, task_prompts(task, train, n_tokens, chars),
            task_answers(task, train, variant.cot), pairs, graph, self._config(epochs), gid,
            self.progress, extra_lr=self.settings.projector_lr, cache=self.cache, key=key,
        )  # fmt: skip
        y_train = train[task.target].to_numpy(dtype=float)
        fill = float(np.mean(y_train))  # for unparsed answers: the training mean
        tests = test if isinstance(test, dict) else {"test": test}
        results = {}
        for set_name, frame in tests.items():
            swapped = swap is True or (not isinstance(swap, bool) and set_name in swap)
            results[set_name] = self._evaluate(
                task, frame, graph, gid, n_tokens, fill, swapped, swap_pairs
            )
        out = {"name": name, "variant": variant, "report": report}
        if isinstance(test, dict):
            out["tests"] = results
        else:
            out.update(results["test"])
        return out

    def _evaluate(
        self, task, test, graph, gid, n_tokens, fill, swap: bool, swap_pairs: int | None = None
    ) -> dict:
        out = {"y_true": test[task.target].to_numpy(dtype=float)}
        start = time.perf_counter()
        out.update(self._predict(task, test, graph, gid, n_tokens, fill, swap=False))
        out["pairs_per_s"] = len(test) / (time.perf_counter() - start)
        if swap:
            rows = subsample(len(test), swap_pairs, self.seed)
            part = test.iloc[rows].reset_index(drop=True)
            swapped = self._predict(task, part, graph, gid, n_tokens, fill, swap=True)
            out["y_pred_swapped"], out["texts_swapped"] = swapped["y_pred"], swapped.get("texts")
            out["swap_rows"] = rows
        out["metrics"] = task_metrics(task.kind, out["y_true"], out["y_pred"])
        return out

    def _predict(self, task, test, graph, gid, n_tokens, fill: float, swap: bool) -> dict:
        s = self.settings
        prompts = task_prompts(task, test, n_tokens, s.smiles_chars, swap=swap)
        first, second = ("smiles_2", "smiles_1") if swap else ("smiles_1", "smiles_2")
        pairs = list(zip(test[first], test[second], strict=True))
        bs = s.lm_eval_batch_size
        if task.kind == "classification":
            probs = score_ddi(
                self.model, self.tokenizer, prompts, pairs, graph, gid, batch_size=bs,
                progress=self.progress,
            )  # fmt: skip
            return {"y_pred": probs}
        texts = generate_pair_answers(
            self.model, self.tokenizer, prompts, pairs, graph, gid,
            max_new_tokens=s.max_new_tokens, batch_size=bs, progress=self.progress,
            num_beams=s.num_beams,
        )  # fmt: skip
        values, n_bad = parse_values(texts)
        return {
            "y_pred": np.where(np.isnan(values), fill, values),
            "texts": texts,
            "n_unparsed": n_bad,
        }
