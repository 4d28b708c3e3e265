"""A shared cache of trained weights: re-running a notebook replays a fine-tuning run in seconds.

:func:`train_cached` is `molkit.models.lm.train_causal_lm` behind a cache. On a miss it
trains, then stores the parameters that trained (those with ``requires_grad``, by name: LoRA's
adapters only, or every weight for full fine-tuning, plus any ``extra_parameters`` as
``extra.0``, ``extra.1``, …) in one folder::

    <molkit cache>/adapters/<sha256 key>/
        weights.safetensors   the trained tensors (safetensors, loaded without pickle)
        report.json           losses, tokens, seconds, steps, the key's readable parts,
                              the molkit version, the device, when it was made

The folder is written under a temporary name beside it and renamed into place, so a reader never
sees half an entry and two processes training the same thing leave one complete copy. On a hit the
tensors are copied into the model's parameters in place, the model is put in eval mode and a
`TrainReport` with ``replayed=True`` (and the numbers of the run that made the weights) is returned;
no optimiser step runs. An entry that cannot be read or does not fit the model (other names,
shapes or dtypes) is a miss with a warning, and the new run replaces it.

The key (:func:`adapter_key`) is a sha256 over, as canonical JSON:

- ``weights``: a fingerprint of the model's weights *before* training, a sha256 over every tensor
  of ``model.state_dict()`` in sorted name order (name, dtype, shape, bytes). It covers the base
  model and the LoRA initialisation: LoRA draws its A matrices from torch's random generator, so
  seed it before `apply_lora` (``molkit.setup`` does) or every run misses;
- ``trainable``: the names and shapes of the parameters that require grad (LoRA or full
  fine-tuning, which layers, the rank), and for a ``peft`` model its adapter configuration
  (alpha, dropout, …, which the weights do not show);
- ``examples``: every example's ``input_ids``, ``labels`` and ``extra_positions``, in order;
- ``config``: every `TrainConfig` field, ``precision`` replaced by the precision it resolves to on
  the model's device (``"fp32"`` or ``"bf16"``, `molkit.models.runtime`);
- ``train_kwargs``: ``extra_lr``, and the dtypes, shapes and bytes of ``extra_parameters`` before
  training;
- ``torch``: the torch version, and a format number of this cache;
- ``key``: the caller's dict (JSON values), for what the cache cannot see: a method name, and
  above all whatever ``extra_embeddings`` computes from (a graph encoder and its inputs). A
  function cannot be hashed, so with ``extra_embeddings`` a ``key`` is required.

The device is not in the key: weights trained on a GPU replay on a CPU at the same precision.
Delete a folder (or all of ``cache_dir("adapters")``) to retrain.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from molkit.models.cache import atomic_path, cache_dir
from molkit.models.lm import train as lm_train
from molkit.models.lm.examples import LMExample
from molkit.models.lm.parallel import data_parallel
from molkit.models.lm.train import TrainConfig, TrainReport
from molkit.models.runtime import resolved_precision, use_precision

__all__ = ["FORMAT", "FORMAT_VERSION", "REPORT_FILE", "WEIGHTS_FILE", "adapter_key", "train_cached"]

FORMAT = "molkit-adapter"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
REPORT_FILE = "report.json"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _json_value(value: Any, what: str) -> Any:
    try:
        return json.loads(_canonical(value))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{what} must be JSON-serialisable (numbers, strings, lists): {err}"
        ) from err


def _update_tensor(digest, name: str, tensor: torch.Tensor) -> None:
    digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
    data = tensor.detach().to("cpu").contiguous().reshape(-1)
    digest.update(data.view(torch.uint8).numpy())


def _weights_fingerprint(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        _update_tensor(digest, name, tensor)
    return digest.hexdigest()


def _trainable(model) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _peft_config(model) -> dict[str, Any] | None:
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict):
        return None
    # where the base came from and peft's own bookkeeping do not change what trains
    skip = {"base_model_name_or_path", "revision", "peft_version", "inference_mode", "auto_mapping"}
    out = {}
    for adapter, config in sorted(configs.items()):
        fields = config.to_dict() if hasattr(config, "to_dict") else vars(config)
        fields = {
            k: sorted(v) if isinstance(v, set) else v
            for k, v in fields.items()
            if k not in skip and v is not None
        }
        out[str(adapter)] = json.loads(json.dumps(fields, sort_keys=True, default=str))
    return out


def _examples_digest(examples: Sequence[LMExample]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        row = [list(map(int, e.input_ids)), list(map(int, e.labels))]
        row.append([int(p) for p in getattr(e, "extra_positions", None) or []])
        digest.update(_canonical(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _config_fields(config: TrainConfig, device: torch.device) -> dict[str, Any]:
    fields = {}
    for f in dataclasses.fields(config):
        if f.name in lm_train.RUNTIME_ONLY_FIELDS:  # how it trains, not what it learns
            continue
        value = getattr(config, f.name)
        # epochs=1 and epochs=1.0 train the same: one key
        if isinstance(f.default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        fields[f.name] = value
    with use_precision(config.precision):
        fields["precision"] = resolved_precision(device)
    return _json_value(fields, "TrainConfig fields")


def adapter_key(
    model,
    examples: Sequence[LMExample],
    config: TrainConfig,
    *,
    key: dict | None = None,
    extra_parameters: Sequence[torch.nn.Parameter] = (),
    **train_kwargs: Any,
) -> tuple[str, dict[str, Any]]:
    """``(hex sha256, readable parts)`` of a fine-tuning run of ``model`` (as it is now) on
    ``examples`` with ``config``: the key `train_cached` stores the trained weights under.

    ``train_kwargs`` are `train_causal_lm`'s other keyword arguments: ``extra_lr`` goes into the
    key as it is; of ``extra_embeddings`` only whether it is given, so describe its inputs in
    ``key``.
    """
    if key is not None and not isinstance(key, dict):
        raise TypeError(f"key must be a dict of JSON values, not {type(key).__name__}")
    device = next(model.parameters()).device
    trainable = _trainable(model)
    shapes = hashlib.sha256()
    for name, p in trainable.items():
        shapes.update(f"{name}:{tuple(p.shape)}\n".encode())
    extra = hashlib.sha256()
    extra_parameters = list(extra_parameters)
    for i, p in enumerate(extra_parameters):
        _update_tensor(extra, f"extra.{i}", p)
    # the accelerator decides how training is spread over processes, not what it learns; functions
    # cannot be hashed (the caller's key describes them), the validation examples can
    functions = ("extra_embeddings", "valid_extra_embeddings", "valid_metric")
    valid = list(train_kwargs.get("valid_examples") or ())
    other = {
        k: v
        for k, v in train_kwargs.items()
        if k not in (*functions, "accelerator", "valid_examples")
    }
    parts = {
        "format": FORMAT_VERSION,
        "weights": _weights_fingerprint(model),
        "trainable": {
            "sha256": shapes.hexdigest(),
            "tensors": len(trainable),
            "parameters": int(sum(p.numel() for p in trainable.values())),
            "peft": _peft_config(model),
        },
        "examples": {"sha256": _examples_digest(examples), "count": len(examples)},
        "config": _config_fields(config, device),
        "train_kwargs": {
            **_json_value(other, "train_kwargs"),
            **{name: train_kwargs.get(name) is not None for name in functions},
            "valid_examples": (
                {"sha256": _examples_digest(valid), "count": len(valid)} if valid else None
            ),
            "extra_parameters": (
                {"sha256": extra.hexdigest(), "tensors": len(extra_parameters)}
                if extra_parameters
                else None
            ),
        },
        "torch": torch.__version__,
        "key": _json_value(key, "key") if key is not None else None,
    }
    return hashlib.sha256(_canonical(parts).encode()).hexdigest(), parts


def _targets(model, extra_parameters: Sequence[torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    targets: dict[str, torch.Tensor] = dict(_trainable(model))
    for i, p in enumerate(extra_parameters):
        targets[f"extra.{i}"] = p
    return targets


def _read_entry(folder: Path, hexkey: str, targets: dict[str, torch.Tensor]):
    """``(report dict, tensors)`` of a usable entry, else a reason it is not usable (str)."""
    from safetensors.torch import load_file

    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        if report.get("format") != FORMAT or int(report.get("version", 0)) > FORMAT_VERSION:
            return f"format {report.get('format')!r} {report.get('version')!r} is not {FORMAT!r}"
        if report.get("key_sha256") != hexkey:
            return f"its report is for key {report.get('key_sha256')!r}"
        numbers = {
            "losses": [float(x) for x in report["losses"]],
            "tokens": int(report["tokens"]),
            "seconds": float(report["seconds"]),
            "steps": int(report["steps"]),
            "curve": [{k: float(v) for k, v in row.items()} for row in report.get("curve", [])],
            "best_step": report.get("best_step"),
            "stopped_early": bool(report.get("stopped_early", False)),
            "planned_steps": report.get("planned_steps"),
        }
        tensors = load_file(folder / WEIGHTS_FILE, device="cpu")
    except Exception as err:  # a damaged entry of any kind is a miss, never a crash
        return f"it cannot be read ({type(err).__name__}: {err})"
    if set(tensors) != set(targets):
        missing = sorted(set(targets) - set(tensors))[:3]
        unexpected = sorted(set(tensors) - set(targets))[:3]
        return f"its tensors do not match the model's (missing {missing}, extra {unexpected})"
    for name, target in targets.items():
        stored = tensors[name]
        if stored.shape != target.shape or stored.dtype != target.dtype:
            return (
                f"{name} is {stored.dtype} {tuple(stored.shape)} there but "
                f"{target.dtype} {tuple(target.shape)} in the model"
            )
    return numbers, tensors


def _remove(folder: Path) -> None:
    """Move a bad entry aside (one rename, so no reader sees it half-deleted), then delete it."""
    trash = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.stale")
    try:
        os.replace(folder, trash)
    except OSError:  # gone already (another process replaced it)
        return
    shutil.rmtree(trash, ignore_errors=True)


def _molkit_version() -> str:
    # the installed distribution's version: `molkit.__version__` lives in the package root, which
    # imports the notebook layer above this one
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("molkit")
    except PackageNotFoundError:
        return "unknown"


def _write_entry(
    folder: Path,
    hexkey: str,
    parts: dict[str, Any],
    targets: dict[str, torch.Tensor],
    report: TrainReport,
    device: torch.device,
) -> None:
    from safetensors.torch import save_file

    tensors = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in targets.items()}
    record = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "key_sha256": hexkey,
        "key": parts,
        "losses": [float(x) for x in report.losses],
        "tokens": int(report.tokens),
        "seconds": float(report.seconds),
        "steps": int(report.steps),
        "curve": report.curve,
        "best_step": report.best_step,
        "stopped_early": report.stopped_early,
        "planned_steps": report.planned_steps,
        "molkit": _molkit_version(),
        "device": str(device),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if folder.exists():
        _remove(folder)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT, "key": hexkey})
        (tmp / REPORT_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def train_cached(
    model,
    examples: Sequence[LMExample],
    config: TrainConfig,
    pad_id: int,
    *,
    key: dict | None = None,
    cache: bool | str | os.PathLike = True,
    progress: bool = True,
    **train_kwargs: Any,
) -> TrainReport:
    """`train_causal_lm` (``model`` fine-tuned in place, left in eval mode) whose trained weights
    are cached: a repeated run with the same key replays them instead of training.

    ``key``: a dict of JSON values for what the cache cannot see (a method name, what
    ``extra_embeddings`` computes from; required with ``extra_embeddings``). ``cache``: ``True``
    uses ``cache_dir("adapters")``, a folder path uses that folder, ``False`` trains without
    caching. ``train_kwargs`` go to `train_causal_lm` (``extra_embeddings``,
    ``extra_parameters``, whose trained values are cached too, ``extra_lr``). The module docstring
    says what the key covers and how entries are stored. Returns the `TrainReport`, with
    ``replayed=True`` on a hit.
    """
    if not cache:
        return lm_train.train_causal_lm(
            model, examples, config, pad_id, progress=progress, **train_kwargs
        )
    functions = [
        name
        for name in ("extra_embeddings", "valid_extra_embeddings", "valid_metric")
        if train_kwargs.get(name) is not None
    ]
    if functions and key is None:
        raise ValueError(
            f"train_cached with {', '.join(functions)} needs key={{...}} describing what they "
            "compute from (e.g. the graph encoder and its inputs, the metric and its items): the "
            "cache cannot hash a function; or pass cache=False"
        )
    extra_parameters = list(train_kwargs.pop("extra_parameters", ()))
    hexkey, parts = adapter_key(
        model, examples, config, key=key, extra_parameters=extra_parameters, **train_kwargs
    )
    root = cache_dir("adapters") if cache is True else Path(cache).expanduser()
    folder = root / hexkey
    targets = _targets(model, extra_parameters)
    device = next(model.parameters()).device
    if folder.is_dir():
        entry = _read_entry(folder, hexkey, targets)
        if isinstance(entry, str):
            warnings.warn(
                f"trained-weights cache entry {folder} is not usable: {entry}; training again",
                stacklevel=2,
            )
        else:
            numbers, tensors = entry
            with torch.no_grad():
                for name, target in targets.items():
                    target.data.copy_(tensors[name])
            model.eval()
            print(
                f"replayed trained weights {hexkey[:12]} from the adapter cache (trained in "
                f"{numbers['seconds']:.0f} s)",
                flush=True,
            )
            return TrainReport(**numbers, replayed=True)
    report = lm_train.train_causal_lm(
        model,
        examples,
        config,
        pad_id,
        progress=progress,
        extra_parameters=extra_parameters,
        **train_kwargs,
    )
    acc = data_parallel(train_kwargs.get("accelerator"))
    if acc is None or acc.is_main_process:  # one writer when several processes trained
        _write_entry(folder, hexkey, parts, targets, report, device)
    if acc is not None:
        acc.wait_for_everyone()
    return report
