"""Loading LMs for LoRA at paper scale (bf16 weights, the 4-bit setting's errors) and the memory
estimate that refuses a model the device cannot hold, on tiny random models only."""

import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

from molkit.models import lm as lm_training
from molkit.models.lm import (
    TrainConfig,
    apply_lora,
    encode_example,
    load_lm,
    memory,
    save_tiny_random_lm,
    train_causal_lm,
)

CORPUS = ["Caption: The molecule is a primary alcohol. Molecule: CCO"] * 20
TINY = {"vocab_size": 300, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
#: Llama-2-7B's shape (6,738,415,616 parameters).
LLAMA_7B = LlamaConfig(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
)


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (LlamaForCausalLM, LlamaConfig(**TINY, intermediate_size=128, num_key_value_heads=2)),
        (
            LlamaForCausalLM,
            LlamaConfig(
                **TINY,
                intermediate_size=96,
                tie_word_embeddings=True,
                attention_bias=True,
                head_dim=32,
            ),
        ),
        (MistralForCausalLM, MistralConfig(**TINY, intermediate_size=128, num_key_value_heads=1)),
        (OPTForCausalLM, OPTConfig(**TINY, ffn_dim=128, max_position_embeddings=64)),
        (
            OPTForCausalLM,
            OPTConfig(
                **TINY,
                ffn_dim=128,
                max_position_embeddings=64,
                word_embed_proj_dim=32,
                tie_word_embeddings=False,
            ),
        ),
    ],
)
def test_param_count_is_exact(cls, config):
    assert memory.param_count(config) == _n_params(cls(config))


def test_param_count_tied_embeddings_counted_once():
    untied = LlamaConfig(**TINY, intermediate_size=128, tie_word_embeddings=False)
    tied = LlamaConfig(**TINY, intermediate_size=128, tie_word_embeddings=True)
    assert memory.param_count(untied) - memory.param_count(tied) == 300 * 64
    assert memory.param_count(LLAMA_7B) == 6_738_415_616
    with pytest.raises(ValueError, match="supported: llama"):
        memory.param_count(type("Config", (), {"model_type": "gpt2"})())


def test_weights_4bit_below_bf16_below_fp32():
    kwargs = {"lora_r": 8, "batch_size": 1, "seq_len": 256}
    fp32 = memory.estimate_lm_memory(LLAMA_7B, "fp32", None, **kwargs)
    bf16 = memory.estimate_lm_memory(LLAMA_7B, "bf16", None, **kwargs)
    nf4 = memory.estimate_lm_memory(LLAMA_7B, "bf16", "4bit", **kwargs)
    assert fp32.weights == 4 * 6_738_415_616 and bf16.weights == 2 * 6_738_415_616
    assert nf4.weights < bf16.weights / 2.5 and bf16.weights < fp32.weights
    assert fp32.total == fp32.weights + fp32.trainable + fp32.activations
    assert "GB" in str(nf4) and "4-bit NF4" in str(nf4)
    with pytest.raises(ValueError, match="lm_dtype.*fp32, bf16"):
        memory.estimate_lm_memory(LLAMA_7B, "fp16", None)
    with pytest.raises(ValueError, match="lm_quantization.*'4bit'"):
        memory.estimate_lm_memory(LLAMA_7B, "bf16", "8bit")
    with pytest.raises(ValueError, match="only through LoRA"):
        memory.estimate_lm_memory(LLAMA_7B, "bf16", "4bit", lora_r=None)


def test_gradient_checkpointing_lowers_activations_and_lora_trains_little():
    kwargs = {"dtype": "bf16", "quantization": None, "batch_size": 8, "seq_len": 1024}
    plain = memory.estimate_lm_memory(LLAMA_7B, lora_r=16, **kwargs)
    checkpointed = memory.estimate_lm_memory(
        LLAMA_7B, lora_r=16, gradient_checkpointing=True, **kwargs
    )
    assert checkpointed.activations < plain.activations / 3
    assert checkpointed.weights == plain.weights and checkpointed.trainable == plain.trainable
    full = memory.estimate_lm_memory(LLAMA_7B, lora_r=None, **kwargs)
    assert plain.n_trainable < full.n_trainable / 100  # 0.6 % of the parameters
    assert plain.trainable < full.trainable / 50
    assert full.n_trainable == 6_738_415_616
    # LoRA r on q and v: r * (in + out) per layer and projection
    qv = memory.estimate_lm_memory(LLAMA_7B, lora_r=8, lora_targets=["q_proj", "v_proj"], **kwargs)
    assert qv.n_trainable == 32 * 2 * 8 * (4096 + 4096)
    with pytest.raises(ValueError, match="gate_proj"):
        memory.estimate_lm_memory(LLAMA_7B, lora_r=8, lora_targets=["fc1"], **kwargs)
    inference = memory.estimate_lm_memory(LLAMA_7B, training=False, **kwargs)
    assert inference.n_trainable == 0 and inference.trainable == 0


def test_lora_adapter_count_matches_peft(tmp_path):
    path = save_tiny_random_lm(tmp_path / "m", CORPUS, "llama", vocab_size=300, hidden=64)
    model, _ = load_lm(path, device="cpu")
    est = memory.estimate_lm_memory(path, lora_r=4, batch_size=1, seq_len=16)
    assert est.n_parameters == _n_params(model) and est.name == str(path)
    lora = apply_lora(model, r=4, alpha=8, dropout=0.0)
    assert est.n_trainable == sum(p.numel() for p in lora.parameters() if p.requires_grad)


def test_config_that_cannot_be_resolved_offline_says_so(tmp_path):
    with pytest.raises(memory.ConfigUnavailableError, match="no config for"):
        memory.lm_config("no-such-org/no-such-model-xyz", local_files_only=True)
    with pytest.raises(memory.ConfigUnavailableError):
        memory.lm_config(tmp_path / "not-a-model-folder")


def test_check_fits_refuses_and_names_the_settings(monkeypatch):
    est = memory.estimate_lm_memory(LLAMA_7B, "bf16", None, lora_r=8, batch_size=4, seq_len=512)
    hint = "lm_quantization='4bit', lm_batch_size or gradient_checkpointing=True"
    with pytest.raises(memory.InsufficientMemoryError, match="lm_quantization='4bit'") as info:
        memory.check_fits(est, "cpu", hint, free_bytes=8 * 10**9)
    assert isinstance(info.value, MemoryError)
    assert "8.0 GB are free" in str(info.value) and f"{est.total / 1e9:.1f} GB" in str(info.value)
    line = memory.check_fits(est, "cpu", hint, free_bytes=80 * 10**9)
    assert "80.0 GB free" in line and "\n" not in line
    monkeypatch.setattr(memory, "device_memory", lambda device=None: (16 * 10**9, 10**9))
    with pytest.raises(memory.InsufficientMemoryError, match="1.0 GB are free"):
        memory.check_fits(est, "cpu", hint)


def test_device_memory_of_the_cpu_is_plausible():
    total, free = memory.device_memory("cpu")
    assert 0 < free <= total and total > 10**8


def test_4bit_without_cuda_or_bitsandbytes_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"lm_quantization='4bit'.*no CUDA device") as info:
        load_lm(tmp_path / "never-read", quantization="4bit")
    assert "set lm_quantization=None, or install bitsandbytes on a CUDA machine" in str(info.value)
    with pytest.raises(ValueError, match="lm_quantization.*None, '4bit'"):
        load_lm(tmp_path / "never-read", quantization="int4")
    with pytest.raises(ValueError, match="lm_dtype.*fp32, bf16"):
        load_lm(tmp_path / "never-read", dtype="fp16")
    assert lm_training.check_lm_dtype(torch.bfloat16) == "bf16"
    assert lm_training.check_lm_quantization("none") is None


def test_lora_on_bf16_weights_trains_float32_adapters_only(tmp_path):
    path = save_tiny_random_lm(tmp_path / "m", CORPUS, "llama", vocab_size=300, hidden=64)
    model, tok = load_lm(path, device="cpu", dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {p.dtype for p in trainable.values()} == {torch.float32}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    ex = encode_example(tok, "Caption: The molecule is", " a primary alcohol.", max_length=64)
    report = train_causal_lm(
        model,
        [ex] * 2,
        TrainConfig(epochs=1, lr=1e-2, batch_size=2, warmup=0.0),
        tok.pad_token_id,
        progress=False,
    )
    assert report.steps == 1 and torch.isfinite(torch.tensor(report.losses)).all()
    assert any(not torch.equal(p, before[n]) for n, p in trainable.items())
    for name, p in model.named_parameters():
        if "lora_" not in name:
            original = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert p.dtype == torch.bfloat16 and torch.equal(p, base[original]), name


def test_readme_figures_for_llama_7b():
    """README's "Running at paper scale": LoRA r 8, 4 x 512 tokens, gradient checkpointing."""
    totals = [
        memory.estimate_lm_memory(
            LLAMA_7B, d, q, lora_r=8, batch_size=4, seq_len=512, gradient_checkpointing=True
        ).total
        for d, q in [("fp32", None), ("bf16", None), ("bf16", "4bit")]
    ]
    assert [round(t / 1e9) for t in totals] == [30, 15, 6]


def test_lm_memory_line_estimates_refuses_or_says_why_not(tmp_path):
    from transformers import GPT2Config

    path = save_tiny_random_lm(tmp_path / "m", CORPUS, "mistral", vocab_size=300, hidden=64)
    line = memory.lm_memory_line(path, "bf16", None, "lm_batch_size", "cpu", 10**12, lora_r=8)
    # a local folder by its name: no run's temporary path in the record
    assert line.startswith("memory: m needs about") and "bf16, LoRA r 8" in line
    with pytest.raises(memory.InsufficientMemoryError, match="change lm_batch_size"):
        memory.lm_memory_line(path, "bf16", None, "lm_batch_size", "cpu", 1000, lora_r=8)
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path / "gpt2")
    other = memory.lm_memory_line(tmp_path / "gpt2", free_bytes=1000)
    assert other.startswith("memory: no estimate for gpt2 (")
    assert "no parameter formula for model_type 'gpt2'" in other
    absent = memory.lm_memory_line("no-such-org/no-such-model-xyz", local_files_only=True)
    assert absent.startswith("memory: no estimate for no-such-org/no-such-model-xyz")
    assert lm_training.generation_load_kwargs("fp32") == {}  # the precision policy decides
    assert lm_training.generation_load_kwargs("bf16") == {"dtype": torch.bfloat16}


def test_the_readme_full_profile_memory_column_is_what_the_notebooks_print(tmp_path):
    """README's `full` table: each notebook's `lm_memory` line for the published architecture of
    its model (the model cards' sizes), against 80 GB."""
    from pathlib import Path

    from molkit.methods import icma, lardo, moltc

    opt = {"vocab_size": 50000, "max_position_embeddings": 2048, "enable_bias": True}
    configs = {
        "galactica-125m": OPTConfig(hidden_size=768, num_hidden_layers=12, ffn_dim=3072,
                                    num_attention_heads=12, word_embed_proj_dim=768, **opt),
        "galactica-1.3b": OPTConfig(hidden_size=2048, num_hidden_layers=24, ffn_dim=8192,
                                    num_attention_heads=32, word_embed_proj_dim=2048, **opt),
        "mistral-7b": MistralConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                                    intermediate_size=14336, num_key_value_heads=8,
                                    vocab_size=32000),
    }  # fmt: skip
    paths = {}
    for name, config in configs.items():
        paths[name] = str(tmp_path / name)
        config.save_pretrained(paths[name])
    counts = [memory.param_count(memory.lm_config(p)) for p in paths.values()]
    assert [round(c / 1e6, 1) for c in counts] == [125.0, 1315.2, 7241.7]
    gb = 80 * 10**9
    full = {m: m.Settings.for_profile("full") for m in (icma, lardo, moltc)}
    lines = [
        icma.lm_memory(full[icma], paths["galactica-125m"], full[icma].cutoff, "cuda", gb),
        lardo.lm_memory(full[lardo].with_overrides(lm_model=paths["mistral-7b"]), "cuda", gb),
        moltc.lm_memory(full[moltc], paths["galactica-1.3b"], "cuda", gb),
    ]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    cells = (
        "13.1 GB (batch 8 x 2,048", "8.7 GB (4-bit, inference, batch 16 x 768",
        "34.5 GB (bf16, batch 16 x 696",
    )  # fmt: skip
    for line, cell in zip(lines, cells, strict=True):
        gigabytes = cell.split(" GB")[0]
        assert f"needs about {gigabytes} GB" in line, line
        assert f"| {cell} tokens) |" in readme
