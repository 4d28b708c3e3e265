"""molkit.models.gnn: shapes, masked loss, pre-training and training helpers."""

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from molkit.chem import graphs_from_smiles
from molkit.models.gnn import (
    GIN,
    GraphPredictor,
    attribute_masking_pretrain,
    embed_graphs,
    graph_model_loss,
    masked_loss,
    predict_graph_model,
    to_dense_nodes,
    train_graph_model,
)

SMILES = [
    "CCO",
    "c1ccccc1O",
    "CC(=O)Oc1ccccc1C(=O)O",
    "CCN(CC)CC",
    "ClCCl",
    "C",
    "[Na+].[Cl-]",
    "O=C(O)CCC(=O)O",
    "c1ccncc1",
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "CC(C)(C)Br",
    "CS(=O)(=O)N",
    "c1ccc2ccccc2c1",
    "NCCS",
    "FC(F)(F)c1ccccc1",
    "CCCCCCCC",
    "OCC(O)CO",
    "CC#N",
    "c1ccoc1",
    "CN1CCOCC1",
]


@pytest.fixture(scope="module")
def graphs():
    return graphs_from_smiles(SMILES, progress=False)


@pytest.mark.parametrize("jk", ["last", "sum", "max", "cat"])
@pytest.mark.parametrize("pooling", ["mean", "sum", "max"])
def test_gin_shapes(graphs, jk, pooling):
    gin = GIN(num_layers=2, hidden=16, jk=jk, pooling=pooling).eval()
    batch = Batch.from_data_list(graphs[:4])
    n_atoms = sum(g.num_nodes for g in graphs[:4])
    assert gin(batch).shape == (4, 16)
    assert gin.node_embeddings(batch).shape == (n_atoms, 16)
    assert gin(graphs[0]).shape == (1, 16)


def test_gin_sum_pooling_is_sum_of_nodes(graphs):
    gin = GIN(num_layers=2, hidden=8, pooling="add").eval()
    batch = Batch.from_data_list(graphs[:3])
    nodes = gin.node_embeddings(batch)
    torch.testing.assert_close(gin(batch)[1], nodes[batch.batch == 1].sum(0))


def test_gin_is_invariant_to_graph_order(graphs):
    gin = GIN(num_layers=2, hidden=8).eval()
    a = gin(Batch.from_data_list(graphs[:3]))
    b = gin(Batch.from_data_list(graphs[:3][::-1]))
    torch.testing.assert_close(a, b.flip(0))


def test_to_dense_nodes(graphs):
    gin = GIN(num_layers=1, hidden=8).eval()
    batch = Batch.from_data_list([graphs[0], graphs[2], graphs[5]])  # 3, 13, 1 atoms
    nodes = gin.node_embeddings(batch)
    dense, mask = to_dense_nodes(nodes, batch.batch)
    assert dense.shape == (3, 13, 8)
    assert mask.sum(1).tolist() == [3, 13, 1]
    torch.testing.assert_close(dense[1, :13], nodes[3:16])
    assert (dense[0, 3:] == 0).all()


def test_masked_loss_ignores_nan():
    pred = torch.tensor([[0.3, -1.0], [2.0, 0.5]], requires_grad=True)
    target = torch.tensor([[1.0, np.nan], [0.0, 1.0]])
    for task in ("classification", "regression"):
        loss = masked_loss(pred, target, task)
        mask = ~torch.isnan(target)
        reference = masked_loss(pred[mask].reshape(1, -1), target[mask].reshape(1, -1), task)
        torch.testing.assert_close(loss, reference)
        (grad,) = torch.autograd.grad(loss, pred)
        assert grad[0, 1] == 0 and torch.isfinite(grad).all()
        # Whatever the prediction at the missing label, the loss is the same.
        moved = pred.detach().clone()
        moved[0, 1] = 100.0
        torch.testing.assert_close(masked_loss(moved, target, task), loss.detach())
    assert masked_loss(pred, torch.full((2, 2), np.nan)).item() == 0


def test_attribute_masking_loss_decreases(graphs):
    torch.manual_seed(0)
    gin = GIN(num_layers=2, hidden=32)
    report = attribute_masking_pretrain(
        gin, graphs, epochs=20, mask_rate=0.3, lr=3e-3, batch_size=10, progress=False
    )
    history = [row["train_loss"] for row in report.curve]
    assert len(history) == 20 and not report.validated
    assert np.mean(history[-3:]) < 0.5 * np.mean(history[:3])
    assert not gin.training


def test_attribute_masking_stops_on_its_validation_loss_and_keeps_the_best(graphs):
    torch.manual_seed(0)
    gin = GIN(num_layers=2, hidden=32)
    report = attribute_masking_pretrain(
        gin, graphs[:14], epochs=30, mask_rate=0.3, lr=3e-2, batch_size=5, progress=False,
        valid_graphs=graphs[14:], patience=2,
    )  # fmt: skip
    curve = report.frame()
    assert curve["step"].iloc[0] == 0  # validated before the first epoch
    best = curve["valid_loss"].idxmin()
    assert report.best_step == curve["step"].iloc[best]
    assert report.stopped_early == (len(curve) < 31)
    if report.stopped_early:
        assert len(curve) == best + 3  # two evaluations without improvement after the best


def test_train_graph_model_restores_best_state(graphs):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(len(graphs), 2)).astype(np.float32)
    y[0, 1] = np.nan
    model = GraphPredictor(2, num_layers=2, hidden=16)
    # Random labels and a high learning rate: validation loss rises after an early best.
    history = train_graph_model(
        model,
        graphs[:14],
        y[:14],
        graphs[14:],
        y[14:],
        epochs=15,
        lr=1e-2,
        batch_size=7,
        patience=4,
        progress=False,
    )
    records = history.records
    assert list(records.columns) == ["epoch", "train_loss", "valid_loss"]
    assert history.best_epoch == int(records.loc[records.valid_loss.idxmin(), "epoch"])
    assert history.best_epoch < len(records)  # the final weights were not the best
    assert graph_model_loss(model, graphs[14:], y[14:]) == pytest.approx(history.best_valid_loss)
    probs = predict_graph_model(model, graphs[:5])
    assert probs.shape == (5, 2) and ((probs > 0) & (probs < 1)).all()


def test_train_regression_fits_training_set(graphs):
    y = np.array([g.num_nodes for g in graphs], dtype=np.float32) / 10
    model = GraphPredictor(1, num_layers=2, hidden=32, pooling="sum")
    before = graph_model_loss(model, graphs, y, task="regression")
    history = train_graph_model(
        model, graphs, y, task="regression", epochs=30, lr=3e-3, batch_size=10, progress=False
    )
    assert len(history.records) == 30 and np.isnan(history.best_valid_loss)
    assert graph_model_loss(model, graphs, y, task="regression") < 0.2 * before


def test_embed_graphs(graphs):
    gin = GIN(num_layers=2, hidden=8)
    emb = embed_graphs(gin, graphs, batch_size=7)
    assert emb.shape == (len(graphs), 8) and emb.dtype == np.float32
    np.testing.assert_allclose(
        emb[:3], gin(Batch.from_data_list(graphs[:3])).detach().numpy(), atol=1e-6
    )


def test_encoder_lr_trains_the_gin_and_the_head_at_their_own_rates(graphs, monkeypatch):
    y = np.array([g.num_nodes for g in graphs], dtype=np.float32) / 10
    seen = []

    class SpyAdam(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            super().__init__(params, **kwargs)
            seen.append(self.param_groups)

    monkeypatch.setattr(torch.optim, "Adam", SpyAdam)
    torch.manual_seed(0)
    model = GraphPredictor(1, num_layers=2, hidden=16)
    gin_before = {k: v.detach().clone() for k, v in model.gin.named_parameters()}
    head_before = {k: v.detach().clone() for k, v in model.head.named_parameters()}
    kwargs = dict(task="regression", epochs=2, batch_size=10, progress=False)
    train_graph_model(model, graphs, y, lr=1e-2, encoder_lr=0.0, **kwargs)
    (groups,) = seen
    assert [g["lr"] for g in groups] == [0.0, 1e-2]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.gin.parameters()}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.head.parameters()}
    # encoder_lr=0: the encoder's weights stay put while the head learns
    for k, v in model.gin.named_parameters():
        assert torch.equal(v, gin_before[k]), k
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.named_parameters())
    # without encoder_lr every parameter trains at lr, in one group
    train_graph_model(model, graphs, y, lr=1e-2, **kwargs)
    assert len(seen[1]) == 1 and seen[1][0]["lr"] == 1e-2
    assert any(not torch.equal(v, gin_before[k]) for k, v in model.gin.named_parameters())


def test_encoder_lr_needs_a_model_with_a_gin(graphs):
    class Bare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = GIN(num_layers=1, hidden=8)
            self.out = torch.nn.Linear(8, 1)

        def forward(self, batch):
            return self.out(self.encoder(batch))

    y = np.zeros(len(graphs), dtype=np.float32)
    with pytest.raises(ValueError, match="encoder_lr"):
        train_graph_model(Bare(), graphs, y, task="regression", epochs=1, encoder_lr=1e-4,
                          progress=False)  # fmt: skip
    history = train_graph_model(Bare(), graphs, y, task="regression", epochs=1, progress=False)
    assert len(history.records) == 1  # encoder_lr=None trains any model
