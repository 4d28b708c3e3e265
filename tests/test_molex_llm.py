"""The LLM label-word classifier of notebook 01 (`molkit.methods.molex.llm`) on a tiny random
Llama: the single-token fast path equals the general path and a plain unpadded forward, padding
changes nothing, and the fine-tuned classifier replays from the trained-weights cache."""

import numpy as np
import pytest
import torch

from molkit.methods.molex import llm
from molkit.models import lm as lm_training
from molkit.models.lm import SMOKE_LM, load_lm, resolve_lm

SMILES = [
    "O=[N+]([O-])c1ccccc1",
    "CCO",
    "Cc1ccc(cc1)[N+](=O)[O-]",
    "c1ccc2cc3ccccc3cc2c1",
    "CC(=O)Nc1ccc(O)cc1",
    "ClC(Cl)Cl",
    "O=[N+]([O-])c1ccc2ccccc2c1",
    "CN(C)N=O",
]
LABELS = [1, 0, 1, 1, 0, 0, 1, 0]


def corpus() -> list[str]:
    texts = []
    for name in ("mutag", "liver"):
        words = llm.TASK_PROMPTS[name].words
        for i, s in enumerate(SMILES):
            q = llm.TASK_PROMPTS[name].question.format(smiles=s)
            texts.append(f"{q}\nAnswer: {words[i % len(words)]}")
    return texts * 5


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory):
    return resolve_lm(
        SMOKE_LM, corpus(), tmp_path_factory.mktemp("lm"), vocab_size=400, hidden=32, layers=2
    )


@pytest.fixture(scope="module")
def lm(lm_path):
    return load_lm(lm_path)


def reference(model, tok, prompt: str, word: str) -> tuple[float, np.ndarray]:
    """Summed log-probability of ``word`` after ``prompt`` and the final hidden state at the
    prompt's last token, from one plain unpadded forward with logits everywhere."""
    p = list(tok(prompt)["input_ids"])
    w = list(tok(word, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        out = model(torch.tensor([p + w]), output_hidden_states=True)
    logp = torch.log_softmax(out.logits[0].double(), -1)
    total = sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(w))
    return total, out.hidden_states[-1][0, len(p) - 1].numpy()


def test_label_words_are_single_tokens_of_the_tiny_tokenizer(lm):
    _, tok = lm
    for name in ("mutag", "liver"):
        words = llm.label_words(tok, name)
        assert words == [" " + w for w in llm.TASK_PROMPTS[name].words]  # no chat template
        assert all(len(ids) == 1 for ids in llm.label_token_ids(tok, words))
        assert llm.label_prompt(tok, "CCO", name).endswith("\nAnswer:")


@pytest.mark.parametrize("dataset", ["mutag", "liver"])
def test_label_scores_equal_a_plain_forward(lm, dataset):
    model, tok = lm
    prompts = llm.label_prompts(tok, SMILES, dataset)
    words = llm.label_words(tok, dataset)
    fast = llm.score_label_words(model, tok, prompts, words, batch_size=3)
    assert fast.fast_path  # one-token label words: read off the prompt's forward pass
    k = len(words)
    assert fast.log_likelihood.shape == (len(SMILES), k) and fast.proba.shape == (len(SMILES), k)
    assert fast.hidden.shape == (len(SMILES), model.config.hidden_size)
    assert fast.hidden.dtype == np.float32
    for i in (0, 5):
        for c, w in enumerate(words):
            total, hidden = reference(model, tok, prompts[i], w)
            assert fast.log_likelihood[i, c] == pytest.approx(total, abs=1e-5)
        np.testing.assert_allclose(fast.hidden[i], hidden, atol=1e-5)
    np.testing.assert_allclose(fast.proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(
        fast.proba,
        np.exp(fast.log_likelihood) / np.exp(fast.log_likelihood).sum(1, keepdims=True),
        atol=1e-12,
    )
    assert fast.predictions.tolist() == fast.log_likelihood.argmax(1).tolist()
    assert fast.molecules_per_second == pytest.approx(len(SMILES) / fast.seconds)
    labels = LABELS if k == 2 else [0] * len(SMILES)
    assert fast.accuracy(labels) == np.mean(fast.log_likelihood.argmax(1) == np.array(labels))


@pytest.fixture(scope="module")
def opt_lm(tmp_path_factory):
    """A tiny OPT: learned absolute positions, so wrong position ids under left padding show
    (rotary Llama scores are invariant to the shift padding causes)."""
    path = lm_training.save_tiny_random_lm(
        tmp_path_factory.mktemp("opt"), corpus(), "opt", vocab_size=400, hidden=32, layers=2
    )
    return load_lm(path)


@pytest.mark.parametrize("arch", ["llama", "opt"])
@pytest.mark.parametrize("words", ["single", "multi"])
def test_batched_equals_unbatched(lm, opt_lm, arch, words):
    model, tok = lm if arch == "llama" else opt_lm
    # prompts of very different lengths, so the batches carry plenty of left padding
    smiles = [*SMILES, "C", "CCCCCCCCCCCCCCCCCCCCc1ccccc1CCCCCCCCCCCCCCCC"]
    prompts = llm.label_prompts(tok, smiles, "mutag")
    words = llm.label_words(tok, "mutag") if words == "single" else [" Yes No", " carcinogenic!"]
    one = llm.score_label_words(model, tok, prompts, words, batch_size=1)
    many = llm.score_label_words(model, tok, prompts, words, batch_size=4)
    all_ = llm.score_label_words(model, tok, prompts, words, batch_size=64)
    for other in (many, all_):
        np.testing.assert_allclose(other.log_likelihood, one.log_likelihood, atol=1e-5)
        np.testing.assert_allclose(other.proba, one.proba, atol=1e-5)
        np.testing.assert_allclose(other.hidden, one.hidden, atol=1e-5)


def test_multi_token_label_words(lm):
    model, tok = lm
    words = [" Yes No", " carcinogenic!", " No"]
    ids = llm.label_token_ids(tok, words)
    assert len(ids[0]) > 1 and len(ids[1]) > 1
    prompts = llm.label_prompts(tok, SMILES[:5], "liver")
    scores = llm.score_label_words(model, tok, prompts, words, batch_size=2)
    single = llm.score_label_words(model, tok, prompts, words, batch_size=1)
    assert not scores.fast_path and scores.log_likelihood.shape == (5, 3)
    np.testing.assert_allclose(scores.log_likelihood, single.log_likelihood, atol=1e-5)
    np.testing.assert_allclose(scores.proba.sum(axis=1), 1.0, atol=1e-12)
    for c, w in enumerate(words):
        total, _ = reference(model, tok, prompts[3], w)
        assert scores.log_likelihood[3, c] == pytest.approx(total, abs=1e-5)


def test_collisions_and_unknown_datasets_are_clear_errors(lm):
    model, tok = lm
    with pytest.raises(ValueError, match="collide"):
        llm.score_label_words(model, tok, ["Is it?\nAnswer:"], [" Yes", " Yes"])
    with pytest.raises(ValueError, match="at least two"):
        llm.label_token_ids(tok, [" Yes"])
    with pytest.raises(ValueError, match="no tokens"):
        llm.label_token_ids(tok, [" Yes", ""])
    for call in (
        lambda: llm.task_prompt("tox21"),
        lambda: llm.label_prompt(tok, "CCO", "tox21"),
        lambda: llm.label_words(tok, "tox21"),
    ):
        with pytest.raises(ValueError, match="unknown dataset 'tox21'.*mutag"):
            call()


def test_label_words_are_distinct_for_every_dataset():
    from molkit.data.explain import EXPLAIN_DATASETS

    assert set(llm.TASK_PROMPTS) == set(EXPLAIN_DATASETS)
    for name in EXPLAIN_DATASETS:
        entry = llm.TASK_PROMPTS[name]
        assert "{smiles}" in entry.question and len(set(entry.words)) == len(entry.words)
    assert len(llm.TASK_PROMPTS["liver"].words) == 3


def test_chat_template_prompts_end_at_the_assistant_turn(lm_path):
    _, tok = load_lm(lm_path)
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    prompt = llm.label_prompt(tok, "CCO", "mutag")
    assert prompt.startswith("<|user|>\n") and prompt.endswith("<|assistant|>\n")
    assert "CCO" in prompt and llm.label_words(tok, "mutag") == ["No", "Yes"]
    assert llm.label_prompt(tok, "CCO", "mutag", chat=False).endswith("\nAnswer:")


def test_fine_tuned_classifier_replays_from_the_cache(lm_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLKIT_CACHE", str(tmp_path / "cache"))
    config = lm_training.TrainConfig(epochs=2, lr=1e-2, batch_size=3, warmup=0.0)
    kwargs = dict(config=config, lora_kwargs={"r": 4, "alpha": 8, "dropout": 0.0}, batch_size=4)
    first = llm.fine_tune_label_classifier(
        lm_path, "mutag", SMILES[:6], LABELS[:6], SMILES[6:], **kwargs
    )
    assert not first.train.replayed and first.train.steps == 4 and first.n_train == 6
    assert first.lora and first.scores.log_likelihood.shape == (2, 2)
    entries = list((tmp_path / "cache" / "adapters").iterdir())
    assert len(entries) == 1

    def forbidden(*args, **kwargs):
        raise AssertionError("trained on a cache hit")

    monkeypatch.setattr(lm_training.train, "train_causal_lm", forbidden)
    monkeypatch.setattr(torch.optim.AdamW, "step", forbidden)
    capsys.readouterr()
    second = llm.fine_tune_label_classifier(
        lm_path, "mutag", SMILES[:6], LABELS[:6], SMILES[6:], **kwargs
    )
    assert "replayed trained weights" in capsys.readouterr().out
    assert second.train.replayed and second.train.losses == first.train.losses
    np.testing.assert_allclose(second.scores.log_likelihood, first.scores.log_likelihood, atol=1e-6)
    # training moved the scores away from the untrained model's
    model, tok = load_lm(lm_path)
    base = llm.zero_shot_scores(model, tok, SMILES[6:], "mutag")
    assert not np.allclose(base.log_likelihood, first.scores.log_likelihood, atol=1e-4)


def test_scoring_throughput_reports_each_batch_size(lm):
    model, tok = lm
    threads = torch.get_num_threads()
    table = llm.scoring_throughput(model, tok, SMILES, "liver", batch_sizes=(2, 4), threads=1)
    assert table["batch_size"].tolist() == [2, 4] and (table["threads"] == 1).all()
    np.testing.assert_allclose(table["molecules_per_s"], len(SMILES) / table["seconds"])
    assert (table["molecules"] == len(SMILES)).all()
    assert torch.get_num_threads() == threads


def test_prior_correction_divides_by_the_prior_and_renormalises():
    proba = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    corrected = llm.correct_prior(proba, np.array([0.75, 0.25]))
    expected = proba / [0.75, 0.25]
    np.testing.assert_allclose(corrected, expected / expected.sum(1, keepdims=True))
    assert corrected.argmax(1).tolist() == [0, 1, 1]  # 0.6 "No" under a 0.75 "No" prior: "Yes"
    np.testing.assert_allclose(llm.correct_prior(proba, None), proba)
    # the prior itself becomes the uniform distribution
    np.testing.assert_allclose(llm.correct_prior(np.array([[0.75, 0.25]]), [0.75, 0.25]), 0.5)


def test_content_free_prior_is_the_mean_over_the_content_free_inputs(lm):
    model, tok = lm
    prior = llm.content_free_proba(model, tok, "mutag")
    one = llm.zero_shot_scores(model, tok, list(llm.CONTENT_FREE), "mutag").proba
    np.testing.assert_allclose(prior, one.mean(0), atol=1e-6)
    assert prior.shape == (2,) and prior.sum() == pytest.approx(1.0)


def test_generic_prompts_for_a_csv_of_the_users():
    binary = llm.generic_prompt("aromatic")
    assert binary.words == ("No", "Yes") and "{smiles}" in binary.question
    assert llm.task_prompt(binary) is binary
    three = llm.generic_prompt("toxicity", ["low", "mid", "high"])
    assert three.words == ("A", "B", "C") and "A (low), B (mid), C (high)" in three.question


def test_fine_tuning_keeps_the_best_validation_state(lm_path, tmp_path, monkeypatch):
    monkeypatch.setenv("MOLKIT_CACHE", str(tmp_path / "cache"))
    config = lm_training.TrainConfig(
        epochs=3, lr=1e-2, batch_size=2, warmup=0.0, eval_every=1, patience=2
    )
    run = llm.fine_tune_label_classifier(
        lm_path,
        "mutag",
        SMILES[:6],
        LABELS[:6],
        SMILES[6:],
        config=config,
        valid_smiles=SMILES[:2],
        valid_labels=LABELS[:2],
        lora_kwargs={"r": 4, "alpha": 8, "dropout": 0.0},
        batch_size=4,
    )
    curve = run.train.curve_frame()
    assert curve["step"].iloc[0] == 0 and run.train.validated
    assert run.train.best_row["valid_loss"] == curve["valid_loss"].min()
    assert "kept step" in run.train.summary()
    with pytest.raises(ValueError, match="validation molecules"):
        llm.fine_tune_label_classifier(
            lm_path, "mutag", SMILES[:6], LABELS[:6], SMILES[6:], valid_smiles=SMILES[:2]
        )
