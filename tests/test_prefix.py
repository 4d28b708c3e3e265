"""The frozen-prefix BERT (molkit.models.prefix) on a tiny random BERT."""

from __future__ import annotations

import numpy as np
import pytest

TEXTS = ["CCO", "c1ccccc1[N+](=O)[O-]", "CC(=O)O", "CCCCCCCCN"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, tiny_smiles_bert):
    from molkit.models.prefix import load_chemical_lm

    path = tiny_smiles_bert(tmp_path_factory.mktemp("tiny_prefix_bert"), TEXTS, num_layers=3)
    return load_chemical_lm(path)


@pytest.mark.parametrize("n_trainable", [0, 1, 3])
def test_prefix_then_top_layers_equals_the_whole_model(tiny_bert, n_trainable):
    import torch

    from molkit.models.prefix import encode_prefix, pool, run_layers

    model, tok = tiny_bert
    prefix = encode_prefix(model, tok, TEXTS, n_trainable, batch_size=2, progress=False)
    assert prefix.n_frozen == 3 - n_trainable and len(prefix) == len(TEXTS)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    assert [len(s) for s in prefix.states] == enc["attention_mask"].sum(1).tolist()
    with torch.no_grad():
        whole = model(**enc).last_hidden_state
        out = np.zeros((len(TEXTS), 16), dtype=np.float32)
        for idx, hidden, mask in prefix.batches(2):
            top = run_layers(model.encoder.layer[prefix.n_frozen :], model.config, hidden, mask)
            out[idx] = pool(top, mask, "mean").numpy()
    expected = pool(whole, enc["attention_mask"], "mean").numpy()
    assert np.allclose(out, expected, atol=1e-5)
    assert np.allclose(pool(whole, enc["attention_mask"], "cls"), whole[:, 0])


def test_prefix_states_batches_pad_and_mask(tiny_bert):
    from molkit.models.prefix import encode_prefix

    model, tok = tiny_bert
    prefix = encode_prefix(model, tok, TEXTS, 1, progress=False)
    sub = prefix.subset([1, 3])
    assert len(sub) == 2 and sub.states[0] is prefix.states[1]
    seen = []
    for idx, hidden, mask in prefix.batches(3, order=[3, 0, 2, 1]):
        assert hidden.shape[:2] == mask.shape and hidden.shape[0] == len(idx)
        for j, i in enumerate(idx):
            n = len(prefix.states[i])
            assert mask[j].sum() == n and np.allclose(hidden[j, :n], prefix.states[i])
            assert (hidden[j, n:] == 0).all()
        seen += list(idx)
    assert seen == [3, 0, 2, 1]


def test_bucketed_order_is_a_seeded_permutation(tiny_bert):
    from molkit.models.prefix import bucketed_order, encode_prefix

    model, tok = tiny_bert
    prefix = encode_prefix(model, tok, TEXTS * 5, 1, progress=False)
    a = bucketed_order(prefix, 4, np.random.default_rng(0))
    b = bucketed_order(prefix, 4, np.random.default_rng(0))
    assert sorted(a.tolist()) == list(range(20)) and np.array_equal(a, b)


def test_encode_prefix_and_pool_reject_bad_arguments(tiny_bert):
    import torch

    from molkit.models.prefix import encode_prefix, pool

    model, tok = tiny_bert
    with pytest.raises(ValueError, match="n_trainable_layers must be in 0..3"):
        encode_prefix(model, tok, TEXTS, 4, progress=False)
    with pytest.raises(ValueError, match="pooling must be"):
        pool(torch.zeros(1, 2, 3), torch.ones(1, 2), "max")
