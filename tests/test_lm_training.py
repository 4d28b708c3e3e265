"""The shared causal-LM layer on tiny random Llama / OPT (Galactica's architecture) / Mistral models
saved to disk and loaded through the same API as the registry model."""

import pytest
import torch

from molkit.models.lm import (
    IGNORE_INDEX,
    FewShotTemplate,
    TrainConfig,
    answer_loss,
    apply_lora,
    collate_examples,
    encode_example,
    fit_fewshot_prompt,
    generate_texts,
    load_lm,
    save_tiny_random_lm,
    splice_embeddings,
    train_causal_lm,
)

CORPUS = [
    "Generate a caption for the molecule: CCO\nCaption: The molecule is a primary alcohol.",
    "Generate a caption for the molecule: CC(=O)O\nCaption: The molecule is a carboxylic acid.",
    "Generate a molecule for the caption: an aromatic ring\nMolecule: c1ccccc1",
] * 10
PROMPT = "Generate a caption for the molecule: CCO\nCaption:"
ANSWER = " The molecule is a primary alcohol."


def _tiny(tmp_path_factory, arch):
    path = save_tiny_random_lm(
        tmp_path_factory.mktemp(arch), CORPUS, arch, vocab_size=300, hidden=64
    )
    model, tok = load_lm(path)
    return arch, model, tok


@pytest.fixture(scope="module", params=["llama", "opt", "mistral"])
def tiny_lm(request, tmp_path_factory):
    """Each architecture, saved to disk and loaded by path (Galactica = OPT,
    Mistral-7B = Mistral)."""
    return _tiny(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def llama_lm(tmp_path_factory):
    return _tiny(tmp_path_factory, "llama")


def test_answer_only_loss_mask(tiny_lm):
    _, _, tok = tiny_lm
    ex = encode_example(tok, PROMPT, ANSWER, max_length=128)
    prompt_ids = tok(PROMPT)["input_ids"]
    answer_ids = tok(ANSWER, add_special_tokens=False)["input_ids"]
    assert ex.input_ids == prompt_ids + answer_ids + [tok.eos_token_id]
    assert ex.labels == [IGNORE_INDEX] * len(prompt_ids) + answer_ids + [tok.eos_token_id]
    assert ex.prompt_length == len(prompt_ids)


def test_truncation_keeps_answer_and_cuts_prompt_from_the_left(llama_lm):
    _, _, tok = llama_lm
    full = encode_example(tok, PROMPT, ANSWER, max_length=512)
    n_answer = len(full) - full.prompt_length
    ex = encode_example(
        tok, PROMPT, ANSWER, max_length=n_answer + 4, extra_positions=[full.prompt_length - 1]
    )
    assert len(ex) == n_answer + 4
    assert ex.labels[-n_answer:] == full.labels[-n_answer:]
    assert ex.input_ids[0] == tok.bos_token_id  # the BOS prefix survives the left cut
    assert ex.input_ids[1:4] == full.input_ids[full.prompt_length - 3 : full.prompt_length]
    assert ex.extra_positions == [ex.prompt_length - 1]
    with pytest.raises(ValueError, match="extra embedding"):
        encode_example(tok, PROMPT, ANSWER, max_length=n_answer + 4, extra_positions=[1])


def test_loss_ignores_prompt_tokens(tiny_lm):
    _, model, tok = tiny_lm
    ex = encode_example(tok, PROMPT, ANSWER, max_length=128)
    other = encode_example(
        tok, "Generate a caption for the molecule: CC(=O)O\nCaption:", ANSWER, max_length=128
    )
    batch = collate_examples([ex], tok.pad_token_id)
    logits = model(input_ids=batch["input_ids"]).logits[0, :-1]
    targets = torch.tensor(ex.input_ids[1:])
    answer = torch.tensor(ex.labels[1:]) != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[answer], targets[answer])
    with torch.no_grad():
        assert answer_loss(model, batch).item() == pytest.approx(expected.item(), rel=1e-5)
        # padding a batch with a longer example leaves the first example's loss unchanged
        padded = collate_examples([ex, other], tok.pad_token_id)
        assert padded["labels"][0, len(ex) :].eq(IGNORE_INDEX).all()


def test_fewshot_prompt_drops_front_examples_to_fit(llama_lm):
    _, _, tok = llama_lm
    template = FewShotTemplate(
        example="Q: {input}\nA: {output}",
        query="Q: {input}\nA:",
        query_after_examples="Now Q: {input}\nA:",
    )
    examples = [("CCO", "an alcohol"), ("CC(=O)O", "an acid"), ("c1ccccc1", "benzene")]
    full = template.render(examples, "CCN")
    assert full.endswith("Q: c1ccccc1\nA: benzene\n\nNow Q: CCN\nA:")
    budget = len(tok(template.render(examples[1:], "CCN"))["input_ids"])
    prompt, kept = fit_fewshot_prompt(tok, template, examples, "CCN", budget)
    assert kept == 2 and prompt == template.render(examples[1:], "CCN")
    assert template.render([], "CCN") == "Q: CCN\nA:"


def test_full_fine_tuning_learns_the_answer(tiny_lm):
    arch, model, tok = tiny_lm
    ex = encode_example(tok, PROMPT, ANSWER, max_length=128)
    report = train_causal_lm(
        model,
        [ex] * 24,
        TrainConfig(epochs=8, lr=1e-2, batch_size=4, warmup=0.0),
        tok.pad_token_id,
        progress=False,
    )
    assert report.steps == 48 and report.tokens == 192 * len(ex)
    assert report.losses[-1] < 0.5 * report.losses[0], arch
    assert report.tokens_per_second > 0
    assert generate_texts(model, tok, [PROMPT], max_new_tokens=24, progress=False) == [
        ANSWER.strip()
    ]


def test_cpu_training_hands_freed_heap_pages_back_after_each_step(tmp_path_factory, monkeypatch):
    """After each optimiser step on a CPU the trainer calls `release_freed_memory` (glibc's
    malloc_trim: activations of every length otherwise stay on the heap); it changes no number."""
    import sys

    from molkit.models.lm import train as lm_train
    from molkit.models.runtime import release_freed_memory

    _, model, tok = _tiny(tmp_path_factory, "llama")  # its own model: this test trains it
    assert release_freed_memory() is sys.platform.startswith("linux")  # glibc here
    calls = []
    monkeypatch.setattr(lm_train, "release_freed_memory", lambda: calls.append(1) or True)
    ex = encode_example(tok, PROMPT, ANSWER, max_length=128)
    report = train_causal_lm(
        model, [ex] * 6, TrainConfig(epochs=1, lr=1e-3, batch_size=2, warmup=0.0),
        tok.pad_token_id, progress=False,
    )  # fmt: skip
    assert report.steps == 3 and len(calls) == 3


def test_batched_generation_equals_one_by_one(tiny_lm):
    _, model, tok = tiny_lm
    prompts = [PROMPT, "Generate a molecule for the caption: an aromatic ring\nMolecule:", "CC"]
    batched = generate_texts(
        model, tok, prompts, max_new_tokens=8, batch_size=3, progress=False, precision="fp32"
    )
    single = [
        generate_texts(
            model, tok, [p], max_new_tokens=8, batch_size=1, progress=False, precision="fp32"
        )[0]
        for p in prompts
    ]
    assert batched == single


def test_spliced_embeddings_match_token_embeddings_and_train(llama_lm):
    _, model, tok = llama_lm
    ex = encode_example(tok, PROMPT, ANSWER, max_length=128)
    batch = collate_examples([ex], tok.pad_token_id)
    own = model.get_input_embeddings()(batch["input_ids"])[0, [1, 2]].detach()
    embeds = splice_embeddings(model, batch["input_ids"], [[1, 2]], [own])
    with torch.no_grad():
        a = model(input_ids=batch["input_ids"]).logits
        b = model(inputs_embeds=embeds).logits
    assert torch.allclose(a, b, atol=1e-5)
    same = generate_texts(model, tok, [PROMPT], max_new_tokens=6, progress=False, precision="fp32")
    spliced = generate_texts(
        model,
        tok,
        [PROMPT],
        max_new_tokens=6,
        progress=False,
        precision="fp32",
        extra_positions=[[1, 2]],
        extra_embeddings=lambda idx: [own for _ in idx],
    )
    assert spliced == same
    # a trainable "graph token" projector receives gradients through the answer-only loss
    proj = torch.nn.Linear(3, own.shape[1])
    graph_features = torch.randn(1, 2, 3)
    ex = encode_example(tok, PROMPT, ANSWER, max_length=128, extra_positions=[1, 2])
    before = proj.weight.detach().clone()
    train_causal_lm(
        model,
        [ex],
        TrainConfig(epochs=1, lr=1e-2, batch_size=1, warmup=0.0),
        tok.pad_token_id,
        extra_embeddings=lambda idx: [proj(graph_features[0]) for _ in idx],
        extra_parameters=list(proj.parameters()),
        progress=False,
    )
    assert not torch.equal(before, proj.weight)


def test_lora_trains_only_adapters(tmp_path):
    path = save_tiny_random_lm(tmp_path / "m", CORPUS, "llama", vocab_size=300, hidden=64)
    model, tok = load_lm(path)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ex = encode_example(tok, PROMPT, ANSWER, max_length=128)
    train_causal_lm(
        model,
        [ex] * 4,
        TrainConfig(epochs=1, lr=1e-2, batch_size=2, warmup=0.0),
        tok.pad_token_id,
        progress=False,
    )
    for name, p in model.named_parameters():
        if "lora_" not in name:
            original = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, base[original]), name


def test_extra_parameters_get_their_own_learning_rate(tmp_path):
    path = save_tiny_random_lm(tmp_path / "m", CORPUS, "llama", vocab_size=300, hidden=64)
    model, tok = load_lm(path)
    ex = encode_example(tok, PROMPT, ANSWER, max_length=128, extra_positions=[1])
    proj = torch.nn.Linear(3, model.config.hidden_size)
    features = torch.randn(1, 3)
    config = TrainConfig(epochs=1, lr=1e-2, batch_size=1, warmup=0.0)
    model_before = model.get_input_embeddings().weight.detach().clone()
    proj_before = proj.weight.detach().clone()
    train_causal_lm(
        model,
        [ex] * 2,
        config,
        tok.pad_token_id,
        extra_embeddings=lambda idx: [proj(features) for _ in idx],
        extra_parameters=list(proj.parameters()),
        extra_lr=0.0,
        progress=False,
    )
    assert torch.equal(proj.weight, proj_before)  # its own group, learning rate 0
    assert not torch.equal(
        model.get_input_embeddings().weight, model_before
    )  # the model's group trains at config.lr
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        train_causal_lm(model, [ex], config, tok.pad_token_id, progress=False)


def test_generate_kwargs_reach_generate(llama_lm):
    _, model, tok = llama_lm
    prompts = [PROMPT, "Generate a molecule for the caption: an aromatic ring\nMolecule:"]
    greedy = generate_texts(model, tok, prompts, max_new_tokens=5, progress=False, precision="fp32")
    assert (
        generate_texts(
            model,
            tok,
            prompts,
            max_new_tokens=5,
            progress=False,
            precision="fp32",
            generate_kwargs={"num_beams": 1},
        )
        == greedy
    )
    own = model.get_input_embeddings()(torch.tensor([[5, 6]]))[0].detach()
    beams = generate_texts(
        model,
        tok,
        prompts,
        max_new_tokens=5,
        progress=False,
        precision="fp32",
        generate_kwargs={"num_beams": 3},
        extra_positions=[[1, 2], [1, 2]],
        extra_embeddings=lambda idx: [own for _ in idx],
    )
    assert len(beams) == 2 and all(isinstance(t, str) for t in beams)
    with pytest.raises(ValueError, match="num_beams"):
        generate_texts(
            model,
            tok,
            prompts[:1],
            max_new_tokens=5,
            progress=False,
            precision="fp32",
            generate_kwargs={"num_beams": 0},
        )


def test_bf16_fine_tuning_and_generation_run_on_any_cpu(tmp_path_factory):
    """The bf16 path forced (emulated where the CPU has no bf16): it trains and generates, and its
    first loss agrees with float32's to bf16 accuracy."""
    from molkit.models import runtime

    _, model, tok = _tiny(tmp_path_factory, "llama")
    ex = encode_example(tok, PROMPT, ANSWER, max_length=128)
    batch = collate_examples([ex], tok.pad_token_id)
    with torch.no_grad():
        fp32_loss = answer_loss(model, batch).item()
        with runtime.autocast("cpu", "bf16"):
            bf16_loss = answer_loss(model, batch).item()
    assert bf16_loss == pytest.approx(fp32_loss, rel=0.03)
    with runtime.use_precision("bf16"):
        report = train_causal_lm(
            model,
            [ex] * 24,
            TrainConfig(epochs=8, lr=1e-2, batch_size=4, warmup=0.0),
            tok.pad_token_id,
            progress=False,
        )
        texts = generate_texts(model, tok, [PROMPT], max_new_tokens=24, progress=False)
    assert all(torch.isfinite(torch.tensor(report.losses)))
    assert report.losses[-1] < 0.5 * report.losses[0]
    assert next(model.parameters()).dtype == torch.float32  # weights stay float32 under autocast
    assert len(texts) == 1 and isinstance(texts[0], str)


def test_bf16_generation_runs_on_bf16_weights_and_gives_the_float32_ones_back(tmp_path_factory):
    """On a CPU, bf16 generation swaps the float32 weights (adapters included) for bf16 copies
    for the call, so that no decoding step casts them again, and restores the very same float32
    tensors afterwards; a model taught one answer still gives it."""
    from molkit.models.lm import generate as gen

    _, model, tok = _tiny(tmp_path_factory, "llama")
    model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    ex = encode_example(tok, PROMPT, ANSWER, max_length=128)
    config = TrainConfig(epochs=40, lr=5e-3, batch_size=4, warmup=0.0, precision="fp32")
    train_causal_lm(model, [ex] * 8, config, tok.pad_token_id, progress=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    seen = []
    layer = model.get_base_model().model.layers[0]
    layer.register_forward_pre_hook(lambda *_: seen.append({p.dtype for p in model.parameters()}))
    fp32 = generate_texts(model, tok, [PROMPT], max_new_tokens=24, progress=False, precision="fp32")
    assert seen and all(s == {torch.float32} for s in seen)
    seen.clear()
    bf16 = generate_texts(model, tok, [PROMPT], max_new_tokens=24, progress=False, precision="bf16")
    assert seen and all(s == {torch.bfloat16} for s in seen)
    assert fp32 == bf16 == [ANSWER.strip()]
    for n, p in model.named_parameters():
        assert p.dtype == before[n].dtype and torch.equal(p, before[n]), n
    with (
        pytest.raises(RuntimeError, match="boom"),
        gen.bf16_weights(model, torch.device("cpu"), "bf16"),
    ):
        raise RuntimeError("boom")  # an error inside the block still restores the weights
    assert all(p.dtype == torch.float32 for p in model.parameters())


# ---------------------------------------------------------- training to a validation optimum


def _split_examples(tok):
    """Training examples that teach one caption and validation examples of another, so training
    on the first raises the validation loss after a while: an optimum exists inside the run."""
    train = [encode_example(tok, PROMPT, ANSWER)] * 4
    other = "Generate a caption for the molecule: CC(=O)O\nCaption:"
    valid = [encode_example(tok, other, " The molecule is a carboxylic acid.")] * 2
    return train, valid


def test_training_keeps_the_best_validated_state_and_stops_on_patience(tmp_path):
    from molkit.models.lm import validation_loss

    path = save_tiny_random_lm(tmp_path / "lm", CORPUS, "llama", vocab_size=300, hidden=64)
    model, tok = load_lm(path)
    train, valid = _split_examples(tok)
    config = TrainConfig(
        epochs=20, lr=5e-3, batch_size=2, warmup=0.0, eval_every=2, patience=3, seed=0
    )
    report = train_causal_lm(model, train, config, tok.pad_token_id, valid_examples=valid,
                             progress=False)  # fmt: skip
    curve = report.curve_frame()
    assert report.validated and curve["step"].iloc[0] == 0  # evaluated before the first step
    assert (curve["step"].diff().dropna() == 2).all()  # every eval_every steps
    best = curve.loc[curve["valid_loss"].idxmin()]
    assert report.best_step == best["step"] and report.best_row["valid_loss"] == best["valid_loss"]
    # patience: three evaluations without improvement after the best, then the run stopped
    assert report.stopped_early and report.steps < report.planned_steps == 40
    assert curve["step"].iloc[-1] == report.best_step + 3 * 2
    # the model holds the best state, not the last one
    held = validation_loss(model, valid, tok.pad_token_id)
    assert held == pytest.approx(best["valid_loss"], abs=1e-6)
    assert held < curve["valid_loss"].iloc[-1]
    assert curve["epoch"].iloc[1] == pytest.approx(1.0)  # 2 batches of 2 make one epoch
    assert "kept step" in report.summary() and "stopped on patience" in report.summary()


def test_a_run_that_no_step_improves_keeps_the_initial_weights(tmp_path):
    path = save_tiny_random_lm(tmp_path / "lm", CORPUS, "llama", vocab_size=300, hidden=64)
    model, tok = load_lm(path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, valid = _split_examples(tok)
    config = TrainConfig(
        epochs=3, lr=5e-2, batch_size=2, warmup=0.0, eval_every=1, seed=0, monitor="score",
        monitor_mode="max",
    )  # fmt: skip
    # a task score that only gets worse: the initial state is the best
    calls = []

    def metric():
        calls.append(1)
        return {"score": -float(len(calls))}

    report = train_causal_lm(
        model, train, config, tok.pad_token_id, valid_examples=valid, valid_metric=metric,
        progress=False,
    )  # fmt: skip
    assert report.best_step == 0 and not report.stopped_early and report.steps == 6
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    monitored = TrainConfig(epochs=1, batch_size=2, monitor="score", monitor_mode="max")
    with pytest.raises(ValueError, match="valid_metric"):
        train_causal_lm(model, train, monitored, tok.pad_token_id, progress=False)


def test_fit_helper_runs_epochs_validates_and_restores():
    from molkit.models.fit import fit

    weight = torch.nn.Parameter(torch.tensor([0.0]))
    targets = iter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    valid_values = iter([5.0, 3.0, 4.0, 4.5, 9.0])

    def step(item):
        with torch.no_grad():
            weight.fill_(next(targets))
        return float(item), 2.0

    report = fit(
        step, [[1, 2], [3, 4], [5, 6]], validate=lambda: {"valid_loss": next(valid_values)},
        patience=1, state=lambda: {"w": weight}, eval_at_start=True, progress=False,
    )  # fmt: skip
    # evaluated at the start (5.0), after epoch 1 (3.0, best, weight 2.0), after epoch 2 (4.0:
    # patience 1 runs out): stopped, the weight of epoch 1 restored
    assert [r["valid_loss"] for r in report.curve] == [5.0, 3.0, 4.0]
    assert report.best_step == 2 and report.best_epoch == 1.0 and report.stopped_early
    assert weight.item() == 2.0
    assert report.curve[1]["train_loss"] == pytest.approx((1 + 2) / 4)  # weighted by the steps
    plain = fit(lambda item: float(item), [[1, 3], [5]], progress=False)
    assert [r["train_loss"] for r in plain.curve] == [2.0, 5.0] and plain.best_step == 3
    with pytest.raises(KeyError, match="monitored"):
        fit(lambda i: 0.0, [[1]], validate=lambda: {"loss": 1.0}, progress=False)
