"""The trained-weights cache (`molkit.models.lm.adapter_cache.train_cached`) on a tiny random Llama:
a rerun replays the weights exactly without training, any change of what trains is a miss, and a
damaged entry is retrained, not a crash."""

import json

import pytest
import torch

from molkit.models.lm import (
    TrainConfig,
    apply_lora,
    encode_example,
    generate_texts,
    load_lm,
    save_tiny_random_lm,
)
from molkit.models.lm import train as lm_train_module
from molkit.models.lm.adapter_cache import REPORT_FILE, WEIGHTS_FILE, adapter_key, train_cached

CORPUS = [
    "Generate a caption for the molecule: CCO\nCaption: The molecule is a primary alcohol.",
    "Generate a caption for the molecule: CC(=O)O\nCaption: The molecule is a carboxylic acid.",
] * 10
PAIRS = [
    ("Generate a caption for the molecule: CCO\nCaption:", " The molecule is a primary alcohol."),
    (
        "Generate a caption for the molecule: CC(=O)O\nCaption:",
        " The molecule is a carboxylic acid.",
    ),
]
CONFIG = TrainConfig(epochs=2, lr=1e-2, batch_size=2, warmup=0.0)


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory):
    return save_tiny_random_lm(
        tmp_path_factory.mktemp("lm"), CORPUS, "llama", vocab_size=300, hidden=32, layers=1
    )


def fresh(lm_path, lora=False):
    """A newly loaded copy of the tiny model (LoRA seeded, so its initialisation repeats)."""
    model, tok = load_lm(lm_path)
    if lora:
        torch.manual_seed(0)
        model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    return model, tok


def examples(tok, pairs=PAIRS):
    return [encode_example(tok, p, a, max_length=64) for p, a in pairs]


@pytest.fixture
def counted(monkeypatch):
    """Counts the training runs that `train_cached` starts."""
    calls = []
    real = lm_train_module.train_causal_lm

    def train(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(lm_train_module, "train_causal_lm", train)
    return calls


def forbid_training(monkeypatch):
    def train(*args, **kwargs):
        raise AssertionError("train_causal_lm called on a cache hit")

    monkeypatch.setattr(lm_train_module, "train_causal_lm", train)
    monkeypatch.setattr(torch.optim.AdamW, "step", train)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_second_run_replays_the_trained_weights_exactly(
    lm_path, tmp_path, monkeypatch, capsys, lora
):
    model, tok = fresh(lm_path, lora)
    data = examples(tok)
    hexkey, _ = adapter_key(model, data, CONFIG, key={"method": "test"})
    first = train_cached(
        model,
        data,
        CONFIG,
        tok.pad_token_id,
        key={"method": "test"},
        cache=tmp_path,
        progress=False,
    )
    assert not first.replayed and first.steps == 2 and len(first.losses) == 2
    assert [p.name for p in tmp_path.iterdir()] == [hexkey]  # one entry, no temporary left over
    record = json.loads((tmp_path / hexkey / REPORT_FILE).read_text())
    assert record["losses"] == first.losses and record["tokens"] == first.tokens
    assert (
        record["key"]["key"] == {"method": "test"}
        and record["key"]["config"]["precision"] == "fp32"
    )
    assert record["molkit"] and record["created"]
    trained = {n: t.detach().clone() for n, t in model.state_dict().items()}
    answers = generate_texts(model, tok, [p for p, _ in PAIRS], max_new_tokens=12, progress=False)

    forbid_training(monkeypatch)
    again, tok = fresh(lm_path, lora)
    assert not all(torch.equal(again.state_dict()[n], t) for n, t in trained.items())
    capsys.readouterr()
    second = train_cached(
        again,
        examples(tok),
        CONFIG,
        tok.pad_token_id,
        key={"method": "test"},
        cache=tmp_path,
        progress=False,
    )
    assert "replayed trained weights" in capsys.readouterr().out
    assert second.replayed and not again.training
    assert (second.losses, second.tokens, second.steps, second.seconds) == (
        first.losses,
        first.tokens,
        first.steps,
        first.seconds,
    )
    state = again.state_dict()
    assert state.keys() == trained.keys()
    assert all(torch.equal(state[n], t) for n, t in trained.items())
    assert (
        generate_texts(again, tok, [p for p, _ in PAIRS], max_new_tokens=12, progress=False)
        == answers
    )


def test_default_folder_follows_molkit_cache(lm_path, tmp_path, monkeypatch):
    monkeypatch.setenv("MOLKIT_CACHE", str(tmp_path / "cache"))
    model, tok = fresh(lm_path, lora=True)
    data = examples(tok)
    hexkey, _ = adapter_key(model, data, CONFIG)
    train_cached(model, data, CONFIG, tok.pad_token_id, progress=False)
    assert (tmp_path / "cache" / "adapters" / hexkey / WEIGHTS_FILE).is_file()


def test_changed_settings_train_again(lm_path, tmp_path, counted):
    def run(config=CONFIG, pairs=PAIRS, lora=True, key=None):
        model, tok = fresh(lm_path, lora)
        return train_cached(
            model,
            examples(tok, pairs),
            config,
            tok.pad_token_id,
            key=key,
            cache=tmp_path,
            progress=False,
        )

    assert not run().replayed
    variants = [
        dict(config=TrainConfig(epochs=2, lr=5e-3, batch_size=2, warmup=0.0)),
        dict(pairs=[PAIRS[0], (PAIRS[1][0], " The molecule is an acid.")]),
        dict(lora=False),
        dict(key={"method": "other"}),
    ]
    for variant in variants:
        assert not run(**variant).replayed, variant
    assert len(counted) == 5 and len(list(tmp_path.iterdir())) == 5
    # what trains identically shares one entry: epochs 2 == 2.0, and precision None resolves to
    # the suite's fp32 policy
    same = TrainConfig(epochs=2.0, lr=1e-2, batch_size=2, warmup=0.0, precision="fp32")
    assert run(config=same).replayed and run(**variants[3]).replayed
    assert len(counted) == 5


def test_lora_entry_holds_only_the_adapters(lm_path, tmp_path):
    sizes = {}
    for lora in (False, True):
        model, tok = fresh(lm_path, lora)
        data = examples(tok)
        hexkey, _ = adapter_key(model, data, CONFIG)
        train_cached(model, data, CONFIG, tok.pad_token_id, cache=tmp_path, progress=False)
        weights = tmp_path / hexkey / WEIGHTS_FILE
        sizes[lora] = weights.stat().st_size
        from safetensors.torch import load_file

        names = set(load_file(weights))
        assert names == {n for n, p in model.named_parameters() if p.requires_grad}
        if lora:
            assert all("lora_" in n for n in names)
    assert sizes[True] < sizes[False] / 5


def test_extra_parameters_are_cached_and_restored(lm_path, tmp_path, monkeypatch):
    def run():
        model, tok = fresh(lm_path, lora=True)
        data = [encode_example(tok, p, a, max_length=64, extra_positions=[1]) for p, a in PAIRS]
        torch.manual_seed(1)
        proj = torch.nn.Linear(3, model.config.hidden_size)
        features = torch.ones(1, 3)
        report = train_cached(
            model,
            data,
            CONFIG,
            tok.pad_token_id,
            key={"features": "ones(1, 3)"},
            cache=tmp_path,
            progress=False,
            extra_embeddings=lambda idx: [proj(features) for _ in idx],
            extra_parameters=list(proj.parameters()),
            extra_lr=1e-2,
        )
        return report, proj, model, data

    first, proj, model, data = run()
    assert not first.replayed
    with pytest.raises(ValueError, match="needs key"):  # a function's inputs cannot be hashed
        train_cached(
            model,
            data,
            CONFIG,
            0,
            cache=tmp_path,
            extra_embeddings=lambda idx: [proj(torch.ones(1, 3)) for _ in idx],
        )
    forbid_training(monkeypatch)
    second, proj2, model2, _ = run()
    assert second.replayed
    assert torch.equal(proj2.weight, proj.weight) and torch.equal(proj2.bias, proj.bias)
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def _garbage(folder):
    (folder / WEIGHTS_FILE).write_bytes(b"not a safetensors file")


def _wrong_shape(folder):
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / WEIGHTS_FILE)
    name = sorted(tensors)[0]
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, *tensors[name].shape[1:])
    save_file(tensors, str(folder / WEIGHTS_FILE))


def _missing_tensor(folder):
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / WEIGHTS_FILE)
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, str(folder / WEIGHTS_FILE))


def _bad_report(folder):
    (folder / REPORT_FILE).write_text('{"format": "molkit-adapter", "losses": [')


@pytest.mark.parametrize("damage", [_garbage, _wrong_shape, _missing_tensor, _bad_report])
def test_a_damaged_entry_is_a_miss_with_a_warning(lm_path, tmp_path, counted, damage):
    model, tok = fresh(lm_path, lora=True)
    data = examples(tok)
    hexkey, _ = adapter_key(model, data, CONFIG)
    train_cached(model, data, CONFIG, tok.pad_token_id, cache=tmp_path, progress=False)
    damage(tmp_path / hexkey)
    model, tok = fresh(lm_path, lora=True)
    with pytest.warns(UserWarning, match="not usable"):
        report = train_cached(model, data, CONFIG, tok.pad_token_id, cache=tmp_path, progress=False)
    assert not report.replayed and len(counted) == 2
    assert [p.name for p in tmp_path.iterdir()] == [hexkey]  # rewritten in place, nothing stale
    model, tok = fresh(lm_path, lora=True)
    assert train_cached(
        model, data, CONFIG, tok.pad_token_id, cache=tmp_path, progress=False
    ).replayed
    assert len(counted) == 2


def test_cache_false_always_trains_and_writes_nothing(lm_path, tmp_path, monkeypatch, counted):
    monkeypatch.setenv("MOLKIT_CACHE", str(tmp_path / "cache"))
    for _ in range(2):
        model, tok = fresh(lm_path, lora=True)
        assert not train_cached(
            model, examples(tok), CONFIG, tok.pad_token_id, cache=False, progress=False
        ).replayed
    assert len(counted) == 2 and not (tmp_path / "cache" / "adapters").exists()


def test_key_must_be_json(lm_path, tmp_path):
    model, tok = fresh(lm_path)
    with pytest.raises(TypeError, match="JSON"):
        adapter_key(model, examples(tok), CONFIG, key={"fn": print})
