"""ICMA: retrieval (no self-retrieval, no test molecule in the pool), re-ranking rules, prompts."""

import numpy as np
import pandas as pd
import pytest

from molkit.methods.icma import (
    TEMPLATES,
    BM25Retriever,
    FingerprintRetriever,
    GraphRetriever,
    Neighbours,
    build_prompts,
    evaluate_direction,
    pretrain_gin,
    random_walk,
    rerank,
    retrieval_only,
    same_molecule_exclusions,
)

POOL = pd.DataFrame(
    {
        "smiles": ["CCO", "CCCO", "CCO", "c1ccccc1", "c1ccccc1O", "CC(=O)O", "CCC(=O)O"],
        "text": [
            "The molecule is ethanol, a primary alcohol.",
            "The molecule is propanol, a primary alcohol.",
            "The molecule is ethanol drawn again, a primary alcohol.",
            "The molecule is benzene, an aromatic hydrocarbon.",
            "The molecule is phenol, an aromatic alcohol.",
            "The molecule is acetic acid, a carboxylic acid.",
            "The molecule is propanoic acid, a carboxylic acid.",
        ],
    }
)
POOL["smiles_raw"] = POOL["smiles"]


def test_same_molecule_exclusions():
    ex = same_molecule_exclusions(POOL["smiles"].tolist())
    assert sorted(ex[0].tolist()) == [0, 2] and sorted(ex[2].tolist()) == [0, 2] and ex[3].tolist() == [3]


@pytest.fixture(scope="module")
def retrievers():
    from molkit.chem import graphs_from_smiles

    graphs = graphs_from_smiles(POOL["smiles"].tolist(), progress=False)
    gin, losses = pretrain_gin(graphs, layers=2, hidden=16, epochs=2, progress=False)
    assert len(losses) == 2 and all(np.isfinite(losses))
    return {
        "bm25": (BM25Retriever(POOL["text"].tolist()), POOL["text"].tolist()),
        "morgan": (FingerprintRetriever(POOL["smiles"].tolist(), "morgan"), POOL["smiles"].tolist()),
        "rdkit": (FingerprintRetriever(POOL["smiles"].tolist(), "rdkit"), POOL["smiles"].tolist()),
        "gin": (GraphRetriever(graphs, gin), POOL["smiles"].tolist()),
    }


@pytest.mark.parametrize("name", ["bm25", "morgan", "rdkit", "gin"])
def test_training_queries_never_retrieve_themselves(retrievers, name):
    retriever, queries = retrievers[name]
    exclude = same_molecule_exclusions(POOL["smiles"].tolist())
    nb = retriever.search(queries, k=3, exclude=exclude)
    assert nb.indices.shape == (len(POOL), 3) and nb.scores.shape == (len(POOL), 3)
    for i, row in enumerate(nb.indices):
        assert not set(row.tolist()) & set(exclude[i].tolist()), (name, i, row)
        assert len(set(row.tolist())) == 3
    assert (np.diff(nb.scores, axis=1) <= 1e-9).all()  # most similar first
    # without exclusion an exact copy of a pool entry finds itself first
    if name != "gin":  # GIN embeddings of different molecules may tie; fingerprints/BM25 of a copy may not
        assert retriever.search(queries[:1], k=1).indices[0, 0] in (0, 2)


def test_fingerprint_neighbours_are_chemically_sensible(retrievers):
    retriever, _ = retrievers["morgan"]
    nb = retriever.search(["CCCCO"], k=1)
    assert POOL["smiles"][nb.indices[0, 0]] in ("CCCO", "CCO")
    bm25, _ = retrievers["bm25"]
    assert bm25.search(["an aromatic alcohol called phenol"], k=1).indices[0, 0] == 4


@pytest.mark.usefixtures("mirror")
def test_pool_never_contains_a_test_molecule():
    from molkit.methods.icma import load_chebi20

    pool, test, _ = load_chebi20("chebi20")
    assert len(pool) == 3301 and len(test) == 3300
    assert not set(pool["smiles"]) & set(test["smiles"])


def test_random_walk_rule():
    ranked = np.tile(np.arange(10), (2000, 1))
    rng = np.random.default_rng(0)
    assert (random_walk(ranked[:5], 3, 0.0, rng) == np.arange(3)).all()  # never skip: plain top-k
    # always skip (p -> 1): the list runs out and the top candidates fill the slots
    assert (random_walk(ranked[:5], 3, 0.999999, rng) == np.arange(3)).all()
    picks = random_walk(ranked, 2, 0.3, rng)
    assert (np.diff(picks, axis=1) > 0).all()  # ranked order is kept
    # first pick is rank r with probability 0.3**r * 0.7
    first = np.bincount(picks[:, 0], minlength=10) / len(picks)
    assert first[0] == pytest.approx(0.7, abs=0.04) and first[1] == pytest.approx(0.21, abs=0.03)
    with pytest.raises(ValueError, match="candidates"):
        random_walk(ranked[:, :1], 2, 0.3, rng)


def test_rerank_reversal_puts_most_similar_last():
    nb = Neighbours(np.array([[5, 3, 1, 0]]), np.array([[0.9, 0.8, 0.5, 0.1]]))
    assert rerank(nb, 2, reverse=True).tolist() == [[3, 5]]
    assert rerank(nb, 2, reverse=False).tolist() == [[5, 3]]
    walked = rerank(nb, 2, reverse=True, walk_p=0.5, rng=np.random.default_rng(1))
    assert walked.shape == (1, 2) and set(walked[0]) <= {5, 3, 1, 0}


class _WordTokenizer:
    """Stands in for an LM tokenizer: one id per whitespace-separated word."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": list(range(len(text.split())))}


def test_build_prompts_official_shape_and_budget():
    queries = POOL.iloc[[5]]
    prompts, answers, kept = build_prompts("mol2cap", queries, POOL, np.array([[4, 0]]), _WordTokenizer(), 10_000)
    assert kept.tolist() == [2]
    assert prompts[0] == (
        "Generate a caption for the molecule: c1ccccc1O\nCaption: The molecule is phenol, an aromatic alcohol.\n\n"
        "Generate a caption for the molecule: CCO\nCaption: The molecule is ethanol, a primary alcohol.\n\n"
        + TEMPLATES["mol2cap"].query_after_examples.format(input="CC(=O)O")
    )
    assert answers == [" The molecule is acetic acid, a carboxylic acid."]
    direct, _, kept = build_prompts("cap2mol", queries, POOL, None, _WordTokenizer(), 10_000)
    assert kept.tolist() == [0]
    assert direct == ["Generate a molecule for the caption: The molecule is acetic acid, a carboxylic acid.\nMolecule:"]
    # a tight budget drops the front (least similar after reversal) example first
    one = len(TEMPLATES["mol2cap"].render([("CCO", POOL["text"][0])], "CC(=O)O").split())
    prompts, _, kept = build_prompts("mol2cap", queries, POOL, np.array([[4, 0]]), _WordTokenizer(), one)
    assert kept.tolist() == [1] and "phenol" not in prompts[0] and "ethanol" in prompts[0]


def test_retrieval_only_and_evaluation():
    nb = Neighbours(np.array([[0], [5]]), np.ones((2, 1)))
    captions = retrieval_only("mol2cap", nb, POOL)
    assert captions == [POOL["text"][0], POOL["text"][5]]
    assert evaluate_direction("mol2cap", captions, captions)["rougeL"] == pytest.approx(1.0)
    smiles = retrieval_only("cap2mol", nb, POOL)
    assert evaluate_direction("cap2mol", smiles, ["OCC", "CC(O)=O"])["exact_match"] == 1.0
    with pytest.raises(ValueError, match="direction"):
        evaluate_direction("mol2mol", smiles, smiles)
