import json

import pytest


@pytest.mark.slow
def test_quick_benchmark_writes_every_figure(tmp_path, mirror):
    from molkit.bench import run_benchmarks

    record = run_benchmarks(profile="smoke", quick=True, out_dir=tmp_path)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["results"].keys() == record["results"].keys()
    expected = {
        "smiles_to_graph", "morgan_fingerprint", "descriptors", "lm_embedding_rxnfp_bert_batch64",
        "sentence_encoder_minilm_batch64", "causal_lm_generation_batch1", "causal_lm_generation_batch8",
        "causal_lm_training_fwd_bwd",
    }
    assert set(saved["results"]) == expected
    assert all(r["rate"] > 0 for r in saved["results"].values())
    assert saved["cpu_count"] >= 1 and isinstance(saved["bf16"], bool)
