"""The load -> LoRA -> train to the validation optimum -> generate pipeline ICMA runs every arm
through (`molkit.models.lm.pipeline`), on tiny random LMs; ICMA's memory line and the `full`
profile's Galactica loading."""

import os

import pandas as pd
import pytest
import torch

CORPUS = [
    "Generate a caption for the molecule: CCO\nCaption: The molecule is ethanol.",
    "Generate a caption for the molecule: CCN\nCaption: The molecule is ethylamine.",
    "Generate a molecule for the caption: an acid\nMolecule: CC(=O)O",
] * 20
TRAIN = [("Generate a caption for the molecule: CCO\nCaption:", " The molecule is ethanol.")] * 4
VALID = [("Generate a caption for the molecule: CCN\nCaption:", " The molecule is ethylamine.")]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from molkit.models.lm import save_tiny_random_lm

    return str(save_tiny_random_lm(tmp_path_factory.mktemp("lm") / "lm", CORPUS, vocab_size=300))


def test_newline_token_ids_stop_generation_at_the_end_of_the_line(tiny_lm):
    from molkit.models.lm import load_lm
    from molkit.models.lm.pipeline import first_line, newline_token_ids

    _, tok = load_lm(tiny_lm, device="cpu")
    ids = newline_token_ids(tok)
    assert ids and all("\n" in tok.decode([i]) for i in ids)
    others = [i for i in range(len(tok)) if i not in ids]
    assert not any("\n" in tok.decode([i]) for i in others)
    assert first_line("  The molecule.\nGenerate a caption") == "The molecule."


def _spy(monkeypatch, module, name, seen):
    """Record each call's model, keyword arguments and parameters (name -> (trains, dtype)) as
    they are when the call starts (the pipeline merges LoRA away afterwards)."""
    real = getattr(module, name)

    def spy(model, *args, **kwargs):
        params = {n: (p.requires_grad, p.dtype) for n, p in model.named_parameters()}
        seen.append((model, kwargs, params))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def test_lora_trains_to_the_validation_optimum_then_generates_merged(tiny_lm, monkeypatch):
    import molkit.models.lm.adapter_cache as adapter_cache
    import molkit.models.lm.generate as generate
    from molkit.models.lm import TrainConfig
    from molkit.models.lm.pipeline import LoraSpec, fine_tune_and_generate

    trained, generated = [], []
    _spy(monkeypatch, adapter_cache, "train_cached", trained)
    _spy(monkeypatch, generate, "generate_texts", generated)
    config = TrainConfig(epochs=3, lr=5e-3, batch_size=2, eval_every=1, patience=2, seed=1)
    prompts = {"test": [TRAIN[0][0], VALID[0][0]], "other": [VALID[0][0]]}
    run = fine_tune_and_generate(
        tiny_lm, TRAIN, prompts, config, valid=VALID, cutoff=64, max_new_tokens=6, batch_size=2,
        lora=LoraSpec(r=4, alpha=8, dropout=0.0), one_line=True, cache=False,
    )  # fmt: skip
    ((_, kwargs, params),) = trained
    names = [n for n, (trains, _) in params.items() if trains]
    assert names and all("lora_" in n for n in names)  # only the adapters train
    assert len(kwargs["valid_examples"]) == 1
    report = run.report
    losses = [row["valid_loss"] for row in report.curve]
    assert report.curve[0]["step"] == 0 and report.best_row["valid_loss"] == min(losses)
    assert report.planned_steps == 6 and report.steps <= 6
    # generation runs on the merged model (no LoRA wrapper left), float32 under the fp32 policy
    assert {type(m).__name__ for m, _, _ in generated} == {"LlamaForCausalLM"}
    assert {dtype for _, _, p in generated for _, dtype in p.values()} == {torch.float32}
    assert list(run.generated) == ["test", "other"] and len(run.texts("test")) == 2
    assert all("\n" not in t for t in run.texts("test"))
    assert run.generated["test"].new_tokens <= 2 * 6 and run.generated["test"].seconds > 0


def test_untuned_generation_and_cached_replay(tiny_lm, tmp_path, monkeypatch):
    import molkit.models.lm.train as lm_train
    from molkit.models.lm import TrainConfig
    from molkit.models.lm.pipeline import LoraSpec, fine_tune_and_generate
    from molkit.models.runtime import use_precision

    prompts = {"test": [TRAIN[0][0]]}
    with use_precision("bf16"):  # a model loaded only to generate: the policy's bf16 weights
        untuned = fine_tune_and_generate(tiny_lm, None, prompts, TrainConfig(), max_new_tokens=3)
    assert untuned.report is None and len(untuned.texts("test")) == 1
    with pytest.raises(ValueError, match="no training pairs"):
        fine_tune_and_generate(tiny_lm, [], prompts, TrainConfig())
    config = TrainConfig(epochs=1, batch_size=2, eval_every=1, seed=0)
    common = dict(valid=VALID, cutoff=64, max_new_tokens=4, lora=LoraSpec(r=4, alpha=8),
                  cache=str(tmp_path / "adapters"), key={"test": "replay"})  # fmt: skip
    first = fine_tune_and_generate(tiny_lm, TRAIN, prompts, config, **common)
    assert not first.report.replayed

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the weights are cached")

    monkeypatch.setattr(lm_train, "train_causal_lm", no_training)
    again = fine_tune_and_generate(tiny_lm, TRAIN, prompts, config, **common)
    assert again.report.replayed and again.texts("test") == first.texts("test")
    assert again.report.best_step == first.report.best_step
    pd.testing.assert_frame_equal(  # the curve of the run that trained (NaN train loss at 0)
        again.report.curve_frame(), first.report.curve_frame(), check_dtype=False
    )


def test_full_profile_loads_galactica_in_bf16_with_lora_and_checks_memory(tmp_path, monkeypatch):
    """``full`` fine-tunes Galactica-125m (not a 7B model: no 4-bit) with LoRA on bf16 weights; a
    tiny random OPT (the same architecture) goes through `tune_and_generate` that way (bf16 base,
    float32 adapters that train); 4-bit without CUDA names the setting; the memory line, its
    refusal and the unavailable estimate."""
    import molkit.models.lm.adapter_cache as adapter_cache
    from molkit.methods.icma import ARMS, Settings, lm_memory, tune_and_generate
    from molkit.models import lm as lm_training
    from molkit.models.lm.memory import InsufficientMemoryError

    smoke, default, full = (Settings.for_profile(p) for p in ("smoke", "default", "full"))
    assert (full.lm_dtype, full.lm_quantization, full.lora) == ("bf16", None, True)
    assert (smoke.lm_dtype, smoke.lm_quantization) == (default.lm_dtype, None) == ("fp32", None)
    with pytest.raises(ValueError, match="lm_dtype setting"):
        smoke.with_overrides(lm_dtype="half")
    with pytest.raises(ValueError, match="lm_quantization setting"):
        smoke.with_overrides(lm_quantization="int8")
    with pytest.raises(ValueError, match="lm_quantization='4bit' trains through LoRA only"):
        smoke.with_overrides(lm_quantization="4bit", lora=False)
    corpus = [t for pair in TRAIN + VALID for t in pair] * 10
    path = str(lm_training.save_tiny_random_lm(tmp_path / "opt", corpus, "opt", vocab_size=300))
    trained = []
    _spy(monkeypatch, adapter_cache, "train_cached", trained)
    settings = full.with_overrides(
        lm_model=path, cutoff=64, max_new_tokens_mol2cap=2, max_new_tokens_cap2mol=2,
        gen_batch_size=1, batch_size=2,
        grad_accum=1, eval_every=1, epochs=1.0,
    )  # fmt: skip
    run = tune_and_generate(
        settings, path, "mol2cap", ARMS["icma"], 0, TRAIN, VALID, {"test": [TRAIN[0][0]]},
        cache=False,
    )  # fmt: skip
    ((_, _, params),) = trained
    assert run.report.validated and len(run.texts("test")) == 1
    trainable = {n for n, (trains, _) in params.items() if trains}
    assert trainable and all("lora_" in n and params[n][1] == torch.float32 for n in trainable)
    assert {dtype for n, (_, dtype) in params.items() if n not in trainable} == {torch.bfloat16}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="lm_quantization='4bit'.*no CUDA device"):
        tune_and_generate(
            settings.with_overrides(lm_quantization="4bit"), path, "mol2cap", ARMS["icma"], 0,
            None, (), {"test": [TRAIN[0][0]]},
        )  # fmt: skip
    lora = smoke.with_overrides(lm_dtype="bf16")
    line = lm_memory(lora, path, 64, "cpu", free_bytes=10**12)
    assert line.startswith(f"memory: {os.path.basename(path)} needs about")
    assert "bf16, LoRA r 32, batch 4 x 64 tokens" in line
    assert "full fine-tuning" in lm_memory(
        smoke.with_overrides(lora=False), path, 64, "cpu", free_bytes=10**12
    )
    with pytest.raises(InsufficientMemoryError, match="lm_dtype='bf16' with lora=True"):
        lm_memory(lora, path, 64, "cpu", free_bytes=1000)
    absent = lm_memory(full, "no-such-org/no-such-model-xyz", 2048, local_files_only=True)
    assert absent.startswith("memory: no estimate for no-such-org/no-such-model-xyz")
