"""`molkit.models.causal_lm.answer_logprobs` and LarDo's constrained stage 1 on a tiny Llama: the
scores equal a plain unpadded forward's, batched or not, and a model trained to prefer one
descriptor name for a dataset (and another one without it) makes `stage1_ranked` keep it, through
the response cache (the second call is a replay)."""

import json

import pytest
import torch

from molkit.methods import lardo
from molkit.methods.lardo import descriptions
from molkit.models.causal_lm import answer_logprobs, format_prompt
from molkit.models.lm_training import SMOKE_LM, load_lm, resolve_lm
from molkit.models.responses import ResponseCache

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


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_answer_logprobs_equal_a_plain_forward(lm, batch_size):
    model, tok = lm
    lengths = {len(tok(a, add_special_tokens=False)["input_ids"]) for a in ANSWERS}
    assert len(lengths) >= 3  # answers of different token lengths: padding in every batch
    chat = lardo.stage1_choice_prompt("bbbp", NAMES)
    for prompt, chat_on, special in ((chat, True, False), ("Is it toxic? Answer:", False, True)):
        got = answer_logprobs(model, tok, prompt, ANSWERS, chat=chat_on, batch_size=batch_size)
        text = format_prompt(tok, prompt, chat_on)
        for answer, (total, n) in zip(ANSWERS, got, strict=True):
            want, n_want = reference(model, tok, text, answer, special)
            assert n == n_want and total == pytest.approx(want, abs=1e-4), answer
    assert answer_logprobs(model, tok, chat, []) == []
    with pytest.raises(ValueError, match="tokenise to nothing"):
        answer_logprobs(model, tok, chat, ["formal charge", ""])


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
