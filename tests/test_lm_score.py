"""The LM toolkit's one scorer (`molkit.models.lm.candidate_log_likelihoods` /
`score_candidates`) and its expected-value readout, on tiny random LMs: the shared-prompt scores
equal each (prompt, candidate) scored on its own by a plain unpadded forward, batched or not, with
the chat template or without, with graph-token embeddings spliced in or not; the hidden state is
the LM head's input at the prompt's last token; the expected value equals a brute-force sum.
LarDo's constrained stage 1 on a tiny Llama: a model trained to prefer one descriptor name for a
dataset (and another one without it) makes `stage1_ranked` keep it, through the response cache
(the second call is a replay)."""

import json

import numpy as np
import pytest
import torch

from molkit.methods import lardo
from molkit.methods.lardo import descriptions
from molkit.models.lm import (
    SMOKE_LM,
    candidate_log_likelihoods,
    expected_value,
    format_prompt,
    load_lm,
    resolve_lm,
    save_tiny_random_lm,
    score_candidates,
)
from molkit.models.lm.responses import ResponseCache

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
NAMES = list(lardo.RANKED_NAMES.values())
#: The name the trained model gives for BBBP (and never without a dataset).
TASK_ANSWER = "polar surface area"


def corpus() -> list[str]:
    prompts = [lardo.stage1_choice_prompt(d, NAMES) for d in ("bbbp", "esol", None)]
    texts = [m["content"] for p in prompts for m in p]
    return (texts + NAMES + ["<|system|>", "<|user|>", "<|assistant|>"]) * 3


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory):
    return resolve_lm(
        SMOKE_LM, corpus(), tmp_path_factory.mktemp("lm"), vocab_size=1000, hidden=32, layers=2
    )


def chat_lm(path):
    model, tok = load_lm(path)
    tok.chat_template = CHAT_TEMPLATE
    return model, tok


@pytest.fixture(scope="module")
def lm(lm_path):
    return chat_lm(lm_path)


def reference(model, tok, text: str, answer: str, special: bool) -> tuple[float, int]:
    """Summed log-probability of ``answer`` after ``text`` from one plain unpadded forward."""
    head = list(tok(text, add_special_tokens=special)["input_ids"])
    tail = list(tok(answer, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logits = model(torch.tensor([head + tail])).logits[0]
    logp = torch.log_softmax(logits.double(), -1)
    return sum(float(logp[len(head) - 1 + j, t]) for j, t in enumerate(tail)), len(tail)


ANSWERS = [" Yes", "polar surface area", "Lipinski rule-of-five violations", "formal charge"]


def answer_logprobs(model, tok, prompt, answers, chat=True, batch_size=16):
    """``(log-likelihood, tokens)`` per answer after one prompt, by the shared scorer."""
    scores = candidate_log_likelihoods(
        model, tok, [prompt], answers, chat=chat, batch_size=batch_size
    )
    return list(zip(scores.log_likelihood[0].tolist(), scores.n_tokens.tolist(), strict=True))


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_shared_prompt_scores_equal_a_plain_forward_per_candidate(lm, batch_size):
    model, tok = lm
    lengths = {len(tok(a, add_special_tokens=False)["input_ids"]) for a in ANSWERS}
    assert len(lengths) >= 3  # one- and many-token candidates: both paths of the scorer
    chat = lardo.stage1_choice_prompt("bbbp", NAMES)
    prompts = [
        chat,
        lardo.stage1_choice_prompt("esol", NAMES),
        lardo.stage1_choice_prompt(None, NAMES),
    ]
    # prompts of unequal lengths in one batch: left padding and position ids are exercised
    got = candidate_log_likelihoods(model, tok, prompts, ANSWERS, chat=True, batch_size=batch_size)
    assert got.log_likelihood.shape == (3, len(ANSWERS))
    for i, prompt in enumerate(prompts):
        text = format_prompt(tok, prompt, True)
        for j, answer in enumerate(ANSWERS):
            want, n_want = reference(model, tok, text, answer, special=False)
            assert got.n_tokens[j] == n_want
            assert got.log_likelihood[i, j] == pytest.approx(want, abs=1e-4), (i, answer)
    plain = answer_logprobs(model, tok, "Is it toxic? Answer:", ANSWERS, chat=False)
    for answer, (total, n) in zip(ANSWERS, plain, strict=True):
        want, n_want = reference(model, tok, "Is it toxic? Answer:", answer, special=True)
        assert n == n_want and total == pytest.approx(want, abs=1e-4)
    assert np.allclose(got.proba.sum(1), 1) and (got.best == got.log_likelihood.argmax(1)).all()
    with pytest.raises(ValueError, match="tokenises to nothing"):
        candidate_log_likelihoods(model, tok, [chat], ["formal charge", ""], chat=True)
    with pytest.raises(ValueError, match="no candidate"):
        score_candidates(model, [[1, 2]], [], tok.pad_token_id)


def test_hidden_state_is_the_heads_input_at_the_last_prompt_token(lm):
    model, tok = lm
    prompts = ["Is CCO toxic? Answer:", "Is c1ccccc1O an irritant? Answer:"]
    got = candidate_log_likelihoods(
        model, tok, prompts, [" Yes", " No"], batch_size=2, return_hidden=True
    )
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([tok(prompt)["input_ids"]])
        with torch.no_grad():
            last = model(ids, output_hidden_states=True).hidden_states[-1][0, -1]
        assert np.allclose(got.hidden[i], last.numpy(), atol=1e-5)


def test_graph_token_embeddings_are_spliced_into_the_scored_prompt(tmp_path):
    """With extra embeddings at given prompt positions, the shared-prompt scores equal a plain
    forward whose input embeddings carry the same vectors at the same positions."""
    path = save_tiny_random_lm(tmp_path / "lm", ["CCO is ethanol", "yes no maybe"] * 20, hidden=32)
    model, tok = load_lm(path)
    prompts = ["A B C CCO is", "CCO CCO is it"]
    rng = torch.Generator().manual_seed(0)
    vectors = [torch.randn(2, 32, generator=rng) for _ in prompts]
    positions = [[1, 2], [2, 3]]
    got = candidate_log_likelihoods(
        model, tok, prompts, [" yes", " no maybe"], extra_positions=positions,
        extra_embeddings=lambda idx: [vectors[i] for i in idx], batch_size=2,
    )  # fmt: skip
    for i, prompt in enumerate(prompts):
        for j, answer in enumerate([" yes", " no maybe"]):
            head = tok(prompt)["input_ids"]
            tail = tok(answer, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([head + tail])
            with torch.no_grad():
                embeds = model.get_input_embeddings()(ids).clone()
                embeds[0, positions[i]] = vectors[i]
                logp = torch.log_softmax(model(inputs_embeds=embeds).logits[0].double(), -1)
            want = sum(float(logp[len(head) - 1 + k, t]) for k, t in enumerate(tail))
            assert got.log_likelihood[i, j] == pytest.approx(want, abs=1e-4)


def test_expected_value_equals_the_brute_force_sum(lm):
    model, tok = lm
    bins = [" 1", " 2", " 3", " 4"]
    values = [-1.5, 0.0, 0.5, 2.0]
    prompts = ["Solubility of CCO:", "Solubility of c1ccccc1:"]
    scores = candidate_log_likelihoods(model, tok, prompts, bins)
    ev = scores.expected_value(values)
    for i, prompt in enumerate(prompts):
        logl = [reference(model, tok, prompt, b, special=True)[0] for b in bins]
        weights = np.exp(np.array(logl) - max(logl))
        assert ev[i] == pytest.approx(float(weights @ values / weights.sum()), abs=1e-5)
    assert expected_value(np.array([[0.0, 0.0]]), [1.0, 3.0])[0] == pytest.approx(2.0)
    assert expected_value(np.array([[0.0, -1e9]]), [1.0, 3.0])[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="candidate values"):
        expected_value(np.zeros((2, 3)), [1.0, 2.0])


def train_preference(model, tok, steps: int = 40) -> None:
    """A few Adam steps (the loss on the answer tokens only) on the BBBP prompt answered
    `TASK_ANSWER` and the content-free prompt answered with each other name: a prior spread over
    the other options, and a dataset prompt that picks the one the prior finds unlikely."""
    pairs = [("bbbp", TASK_ANSWER)] + [(None, n) for n in NAMES if n != TASK_ANSWER]
    rows = []
    for dataset, answer in pairs:
        text = format_prompt(tok, lardo.stage1_choice_prompt(dataset, NAMES))
        head = tok(text, add_special_tokens=False)["input_ids"]
        tail = tok(answer, add_special_tokens=False)["input_ids"]
        rows.append((head + tail, [-100] * len(head) + tail))
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, target) in enumerate(rows):
        ids[i, : len(row)], labels[i, : len(row)], mask[i, : len(row)] = (
            torch.tensor(row), torch.tensor(target), 1,
        )  # fmt: skip
    # the dataset's example weighs as much as all the content-free ones
    weight = torch.tensor([len(rows) - 1.0] + [1.0] * (len(rows) - 1))
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none"
        ).sum(1)
        loss = (weight * nll).sum() / weight.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()


@pytest.fixture(scope="module")
def trained_lm(lm_path):
    model, tok = chat_lm(lm_path)  # a fresh copy: `lm` stays untrained
    train_preference(model, tok)
    return model, tok


def test_constrained_stage1_keeps_the_name_the_model_was_trained_to_prefer(
    trained_lm, tmp_path, monkeypatch
):
    model, tok = trained_lm
    # the real `load_ranker`, on the tiny model
    monkeypatch.setattr(descriptions, "_causal_lm", lambda name, *loading: (model, tok))
    cache = ResponseCache(tmp_path / "r.jsonl")
    table, kept = lardo.stage1_ranked("bbbp", cache, "tiny-lm", top=4)
    assert cache.model_calls == 1 and len(table) == len(NAMES)
    assert table["property"].iloc[0] == TASK_ANSWER and table["rank"].iloc[0] == 1
    assert table["pmi"].is_monotonic_decreasing
    # the dataset prompt made TASK_ANSWER likely and the prior made it unlikely: only it gains
    assert table["pmi"].iloc[0] > 0 > table["pmi"].iloc[1:].max()
    psa = table.iloc[0]
    assert psa["pmi"] == pytest.approx(psa["logprob"] - psa["prior_logprob"])
    assert psa["logprob"] > -1.0 and psa["descriptor"] == "tpsa"
    assert kept.names[0] == TASK_ANSWER and kept.matched[TASK_ANSWER] == "tpsa"
    assert len(kept.names) == 4 and not set(kept.descriptors) & {"logp", "mol_weight"}
    assert table.loc[table["kept"], "property"].tolist() == kept.names
    # the cache holds the scores as JSON: (log p | dataset, tokens, log p | content-free)
    (record,) = cache.records()
    scores = json.loads(record["response"])
    assert list(scores) == NAMES
    dataset_lp = answer_logprobs(model, tok, lardo.stage1_choice_prompt("bbbp", NAMES), NAMES)
    prior_lp = answer_logprobs(model, tok, lardo.stage1_choice_prompt(None, NAMES), NAMES)
    for name, (lp, n), (prior, _) in zip(NAMES, dataset_lp, prior_lp, strict=True):
        assert scores[name] == pytest.approx([lp, n, prior], abs=1e-5)
    assert record["settings"] == lardo.ranking_settings(NAMES)
    assert {record["key"]} < lardo.stage1_keys("bbbp", "tiny-lm", 128)

    # a second call replays, offline, without the model
    def forbidden(name, *loading):
        raise AssertionError("loaded the model on a cache hit")

    monkeypatch.setattr(descriptions, "_causal_lm", forbidden)
    again_cache = ResponseCache(tmp_path / "r.jsonl")
    again, kept_again = lardo.stage1_ranked("bbbp", again_cache, "tiny-lm", top=4, offline=True)
    assert again_cache.model_calls == 0
    assert again.equals(table) and kept_again == kept
    with pytest.raises(LookupError, match="not in the response cache"):
        lardo.stage1_ranked("esol", again_cache, "tiny-lm", offline=True)
