"""Text and SMILES encoders: load by registry name, local path or hub id; embed with a disk cache.

>>> encoder = Encoder.from_pretrained("minilm-l6")           # doctest: +SKIP
>>> X = encoder.embed(["a sentence", "another one"])         # (2, 384) float32, L2-normalised

`Encoder.embed` batches texts by length, runs under ``torch.no_grad`` and the precision policy
(`molkit.models.runtime.autocast`: bf16 where native under ``auto``), and keeps every vector in an
`EmbeddingStore` under ``cache_dir("embeddings")``, keyed by the model's weights, its tokenizer, the
pooling, the maximum length and the precision: a later call (from any notebook) only computes texts
it has not seen.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molkit._progress import tqdm
from molkit.models.cache import EmbeddingStore, cache_dir
from molkit.models.registry import (
    Pooling,
    load_pretrained_checked,
    model_entry,
    resolve_model_path,
)
from molkit.models.runtime import autocast, default_device, resolved_precision
from molkit.models.smiles_tokenizer import CONFIG_FILE as SMILES_TOKENIZER_FILE
from molkit.models.smiles_tokenizer import RegexSmilesTokenizer

POOLINGS = ("cls", "mean", "last")
_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "longformer")


def load_tokenizer(name_or_path: str | os.PathLike, **kwargs: Any):
    """The tokenizer of a registry model, local folder or hub id.

    Folders holding ``smiles_tokenizer.json`` (rxnfp's BERT) get a `RegexSmilesTokenizer`;
    everything else goes through ``AutoTokenizer.from_pretrained(..., **kwargs)``.
    """
    path = resolve_model_path(name_or_path)
    if isinstance(path, Path) and (path / SMILES_TOKENIZER_FILE).exists():
        return RegexSmilesTokenizer.from_pretrained(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, **kwargs)


def load_encoder(
    name_or_path: str | os.PathLike,
    mlm: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
):
    """A transformer encoder in eval mode: ``AutoModel``, or ``AutoModelForMaskedLM`` if ``mlm``.

    Loading fails if a weight would be left at random init (see `load_pretrained_checked`).
    ``device`` defaults to `default_device()`; ``dtype`` to the checkpoint's.
    """
    from transformers import AutoModel, AutoModelForMaskedLM

    auto_class = AutoModelForMaskedLM if mlm else AutoModel
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = load_pretrained_checked(auto_class, resolve_model_path(name_or_path), **kwargs)
    return model.to(device or default_device()).eval()


def parameter_count(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _sentence_transformers_defaults(path: Path) -> dict[str, Any]:
    """Pooling, normalisation and max length from a sentence-transformers folder, if it is one."""
    defaults: dict[str, Any] = {}
    pooling_file = path / "1_Pooling" / "config.json"
    if pooling_file.exists():
        config = json.loads(pooling_file.read_text())
        if config.get("pooling_mode_cls_token"):
            defaults["pooling"] = "cls"
        elif config.get("pooling_mode_lasttoken"):
            defaults["pooling"] = "last"
        elif config.get("pooling_mode_mean_tokens"):
            defaults["pooling"] = "mean"
    modules_file = path / "modules.json"
    if modules_file.exists():
        modules = json.loads(modules_file.read_text())
        defaults["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
    bert_config = path / "sentence_bert_config.json"
    if bert_config.exists():
        length = json.loads(bert_config.read_text()).get("max_seq_length")
        if length:
            defaults["max_length"] = int(length)
    return defaults


def _default_max_length(model: torch.nn.Module, tokenizer: Any) -> int:
    """The longest input both the tokenizer and the position embeddings accept."""
    limits = []
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit and tokenizer_limit < 1_000_000:
        limits.append(int(tokenizer_limit))
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        if getattr(config, "model_type", "") in _ROBERTA_LIKE:
            positions -= (getattr(config, "pad_token_id", 1) or 1) + 1
        limits.append(int(positions))
    return min(limits) if limits else 512


def _is_decoder_only(model: torch.nn.Module) -> bool:
    architectures = getattr(getattr(model, "config", None), "architectures", None) or []
    return any(a.endswith("ForCausalLM") for a in architectures)


def _slug(label: str) -> str:
    name = Path(label).name if os.sep in label or "/" in label else label
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:48] or "model"


class Encoder:
    """A model, its tokenizer and a pooling rule: texts in, an ``(n, d)`` float32 array out.

    ``pooling``: "cls" (first token; rxnfp and BERT-style fingerprints), "mean" (over non-pad
    tokens; sentence-transformers) or "last" (last non-pad token; decoder-only models).
    ``normalize``: L2-normalise each vector. ``name`` labels the cache folder.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        pooling: Pooling = "cls",
        normalize: bool = False,
        max_length: int | None = None,
        name: str | None = None,
        weights_id: str | None = None,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length or _default_max_length(model, tokenizer)
        self.name = name or getattr(model, "name_or_path", None) or type(model).__name__
        self._weights_id = weights_id
        self._weights_versions = self._versions() if weights_id else None
        self._fingerprint: tuple[tuple, str] | None = None
        self._tokenizer_id: str | None = None
        self._stores: dict[str, EmbeddingStore] = {}
        base = getattr(model, "base_model", model)
        self._backbone = base
        accepted = inspect.signature(base.forward).parameters
        self._input_names = [
            k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted
        ]

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        pooling: Pooling | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ) -> Encoder:
        """Load model and tokenizer; defaults come from the registry, a sentence-transformers
        config in the folder, or else "cls" pooling (encoders) / "mean" (decoder-only models)."""
        entry = model_entry(name_or_path)
        model = load_encoder(name_or_path, device=device)
        tokenizer = load_tokenizer(name_or_path)
        if entry is not None:
            defaults = {
                "pooling": entry.pooling,
                "normalize": entry.normalize,
                "max_length": entry.max_length,
            }
        else:
            path = resolve_model_path(name_or_path)
            defaults = _sentence_transformers_defaults(path) if isinstance(path, Path) else {}
            defaults.setdefault("pooling", "mean" if _is_decoder_only(model) else "cls")
        return cls(
            model,
            tokenizer,
            pooling=pooling or defaults["pooling"],
            normalize=defaults.get("normalize", False) if normalize is None else normalize,
            max_length=max_length or defaults.get("max_length"),
            name=str(name_or_path),
            weights_id=entry.sha256 if entry is not None else None,
        )

    def __repr__(self) -> str:
        return (
            f"Encoder({self.name!r}, pooling={self.pooling!r}, normalize={self.normalize}, "
            f"max_length={self.max_length}, dim={self.dim})"
        )

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- identity of what produces the vectors ---------------------------------------------------

    def _versions(self) -> tuple:
        tensors = self.model.state_dict(keep_vars=True).values()
        return tuple((t.data_ptr(), t._version) for t in tensors)

    def weights_fingerprint(self) -> str:
        """sha256 of the weights: the registered hash while a registry model is unchanged, else a
        hash of the tensors themselves (recomputed only after an in-place update, e.g. training)."""
        versions = self._versions()
        if self._weights_id is not None and versions == self._weights_versions:
            return self._weights_id
        if self._fingerprint is not None and self._fingerprint[0] == versions:
            return self._fingerprint[1]
        digest = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            data = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(data.view(torch.uint8).numpy())
        self._fingerprint = (versions, digest.hexdigest())
        return self._fingerprint[1]

    def tokenizer_fingerprint(self) -> str:
        if self._tokenizer_id is None:
            vocab = sorted(self.tokenizer.get_vocab().items())
            payload = json.dumps([type(self.tokenizer).__name__, vocab], ensure_ascii=False)
            self._tokenizer_id = hashlib.sha256(payload.encode()).hexdigest()
        return self._tokenizer_id

    def _precision(self) -> str:
        return (
            "bf16-autocast" if resolved_precision(self.device) == "bf16" else str(self.model.dtype)
        )

    def cache_store(self, pooling: str | None = None) -> EmbeddingStore:
        """The `EmbeddingStore` for this encoder's current weights and ``pooling``."""
        meta = {
            "model": self.name,
            "weights": self.weights_fingerprint(),
            "tokenizer": self.tokenizer_fingerprint(),
            "pooling": pooling or self.pooling,
            "max_length": self.max_length,
            "precision": self._precision(),
        }
        digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
        folder = f"{_slug(self.name)}-{digest}"
        if folder not in self._stores:
            directory = cache_dir("embeddings") / folder
            self._stores[folder] = EmbeddingStore(directory, meta)
        return self._stores[folder]

    # --- embedding -------------------------------------------------------------------------------

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
        hidden = hidden.float()
        if pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        if pooling == "cls":  # first real token, whichever side the padding is on
            index = mask.int().argmax(dim=1)
        else:
            index = mask.shape[1] - 1 - mask.int().flip(dims=[1]).argmax(dim=1)
        return hidden[rows, index]

    @torch.no_grad()
    def _forward(self, texts: list[str], pooling: str) -> np.ndarray:
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        inputs = {k: batch[k].to(self.device) for k in self._input_names if k in batch}
        with autocast(self.device):
            output = self._backbone(**inputs)
        hidden = output.last_hidden_state
        mask = inputs.get("attention_mask", torch.ones(hidden.shape[:2], device=hidden.device))
        return self._pool(hidden, mask, pooling).cpu().numpy()

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        pooling: Pooling | None = None,
        normalize: bool | None = None,
        cache: bool = True,
        progress: bool = True,
    ) -> np.ndarray:
        """Embed ``texts``: float32 array ``(len(texts), dim)``, row i for ``texts[i]``.

        ``pooling``/``normalize`` default to the encoder's. With ``cache``, vectors already in
        the on-disk store are reused and only new texts go through the model.
        """
        pooling = pooling or self.pooling
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        normalize = self.normalize if normalize is None else normalize
        texts = [str(t) for t in texts]
        unique = list(dict.fromkeys(texts))
        store = self.cache_store(pooling) if cache else None
        found = store.get(unique) if store is not None else {}
        todo = sorted((t for t in unique if t not in found), key=len, reverse=True)
        if todo:
            batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
            label = f"embed {_slug(self.name)}"
            computed = [
                self._forward(chunk, pooling)
                for chunk in tqdm(batches, desc=label, disable=not progress, leave=False)
            ]
            vectors = np.concatenate(computed).astype(np.float32)
            found.update(zip(todo, vectors, strict=True))
            if store is not None:
                store.add(todo, vectors)
        dim = len(next(iter(found.values()))) if found else self.dim
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = found[text]
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
