"""molkit.models.graph_tokens: the Q-Former projector, role projectors, the graph-token encoder and
the placeholder positions spliced into a (tiny, random) causal LM."""

import pytest
import torch

from molkit.models.graph_tokens import (
    GRAPH_TOKEN,
    GraphTokenEncoder,
    QFormerProjector,
    RoleProjectors,
    add_graph_token,
    encode_graph_examples,
    graph_positions,
    init_projector_from_bert,
)

SMILES = ["CCO", "c1ccccc1O", "CC(=O)O", "CCN", "O", "CCCl", "c1ccncc1", "CC(C)=O"]


def _prompt(a: str, b: str, n_tokens: int = 0) -> str:
    graph = " " + GRAPH_TOKEN * n_tokens if n_tokens else ""
    return f"Molecule 1: {a}{graph}\nMolecule 2: {b}{graph}\nQ?\nAnswer:"


def _projector(**kw):
    torch.manual_seed(0)
    kw = {"n_query": 3, "hidden": 8, "heads": 2, "n_layers": 2, "dropout": 0.0, **kw}
    return QFormerProjector(atom_dim=6, out_dim=10, **kw).eval()


def test_projector_shapes_and_padding_invariance():
    proj = _projector()
    atoms = torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = proj(atoms, mask)
    assert out.shape == (2, 3, 10)
    # padded atoms are invisible: changing them changes nothing
    atoms2 = atoms.clone()
    atoms2[1, 2:] = 100.0
    assert torch.allclose(proj(atoms2, mask), out, atol=1e-6)
    with pytest.raises(ValueError, match="mask"):
        proj(atoms, mask[:, :3])
    with pytest.raises(ValueError, match="divisible"):
        QFormerProjector(atom_dim=6, out_dim=10, hidden=10, heads=3)


def test_init_projector_from_bert_copies_self_attention_and_ffn():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=8, num_attention_heads=2, num_hidden_layers=2, intermediate_size=16,
        vocab_size=20, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    bert = BertModel(config).eval()
    proj = _projector(intermediate=16)
    copied = init_projector_from_bert(proj, bert)
    assert "layers.1.ffn_out.weight" in copied and not any("cross" in n for n in copied)
    # the copied self-attention block computes what BERT's does
    x = torch.randn(2, 3, 8)
    layer = proj.layers[0]
    ours = layer.self_norm(x + layer.self_attn(x, x, x, need_weights=False)[0])
    theirs = bert.encoder.layer[0].attention(x)[0]
    assert torch.allclose(ours, theirs, atol=1e-5)
    wide = BertConfig(hidden_size=12, num_attention_heads=2, num_hidden_layers=1, vocab_size=20)
    with pytest.raises(ValueError, match="hidden"):
        init_projector_from_bert(_projector(), BertModel(wide))


def test_role_projectors_shared_vs_separate():
    atoms, mask = torch.randn(1, 4, 6), torch.ones(1, 4, dtype=torch.bool)
    roles = RoleProjectors(_projector(), shared=True)
    assert roles.shared and torch.equal(roles(atoms, mask, 0), roles(atoms, mask, 1))
    roles.separate()
    assert not roles.shared and len(roles.projectors) == 2
    assert torch.equal(roles(atoms, mask, 0), roles(atoms, mask, 1))  # copies start equal
    with torch.no_grad():
        roles.projectors[1].queries.add_(0.5)  # fine-tuning moves the roles apart
    assert not torch.allclose(roles(atoms, mask, 0), roles(atoms, mask, 1))
    assert roles.projectors[0].queries.data_ptr() != roles.projectors[1].queries.data_ptr()
    with pytest.raises(ValueError, match="role"):
        roles(atoms, mask, 2)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from molkit.models.lm import load_lm, save_tiny_random_lm

    corpus = [_prompt(a, b) for a in SMILES for b in SMILES[:3]] + ["A.", "B.", "Yes."]
    path = save_tiny_random_lm(
        tmp_path_factory.mktemp("lm") / "tiny", corpus, hidden=32, layers=1, heads=2
    )
    torch.manual_seed(0)
    model, tokenizer = load_lm(path, device="cpu")
    graph_id = add_graph_token(model, tokenizer)
    return model, tokenizer, graph_id


def _graph_encoder(hidden, n_query=2, shared=False):
    from molkit.models.gnn import GIN

    torch.manual_seed(0)
    gin = GIN(num_layers=2, hidden=16)
    proj = QFormerProjector(
        atom_dim=16, out_dim=hidden, n_query=n_query, hidden=8, heads=2, n_layers=1, dropout=0.0
    )
    roles = RoleProjectors(proj, shared=shared)
    if not shared:
        with torch.no_grad():
            roles.projectors[1].queries.add_(1.0)  # as after role-specific fine-tuning
    return GraphTokenEncoder(gin, roles)


def test_graph_placeholders_are_single_positions(tiny_lm):
    model, tokenizer, graph_id = tiny_lm
    assert add_graph_token(model, tokenizer) == graph_id  # idempotent
    prompt = _prompt("CCO", "O", n_tokens=3)
    pos = graph_positions(tokenizer, prompt, graph_id)
    ids = tokenizer(prompt)["input_ids"]
    assert len(pos) == 6 and all(ids[p] == graph_id for p in pos) and pos[2] + 1 < pos[3]


def test_graph_tokens_are_spliced_at_their_positions(tiny_lm):
    from molkit.models.lm import collate_examples, splice_embeddings

    model, tokenizer, graph_id = tiny_lm
    graph = _graph_encoder(model.config.hidden_size).eval()
    pairs = [("CCO", "O"), ("c1ccccc1O", "CCN")]
    prompts = [_prompt(a, b, n_tokens=2) for a, b in pairs]
    examples = encode_graph_examples(tokenizer, prompts, ["A.", "B."], graph_id)
    batch = collate_examples(examples, tokenizer.pad_token_id)
    vectors = graph(pairs)
    assert [tuple(v.shape) for v in vectors] == [(4, model.config.hidden_size)] * 2
    positions = [e.extra_positions for e in examples]
    embeds = splice_embeddings(model, batch["input_ids"], positions, vectors)
    plain = model.get_input_embeddings()(batch["input_ids"])
    for row, e in enumerate(examples):
        assert torch.allclose(embeds[row, e.extra_positions], vectors[row])
        others = [i for i in range(embeds.shape[1]) if i not in e.extra_positions]
        assert torch.equal(embeds[row, others], plain[row, others])
    # answer-only loss: the prompt (graph positions included) carries no label
    assert all(examples[0].labels[p] == -100 for p in examples[0].extra_positions)
    # no graph token id: no extra positions
    (plain_example,) = encode_graph_examples(tokenizer, prompts[:1], ["A."], None)
    assert plain_example.extra_positions == []
    # the role-separated encoder: swapping the molecules changes the tokens, not just their order
    swapped = graph([("O", "CCO")])[0]
    assert not torch.allclose(swapped[:2], vectors[0][2:])
    shared = _graph_encoder(model.config.hidden_size, shared=True).eval()
    a, b = shared([("CCO", "O")])[0], shared([("O", "CCO")])[0]
    assert torch.allclose(a[:2], b[2:], atol=1e-6) and torch.allclose(a[2:], b[:2], atol=1e-6)
