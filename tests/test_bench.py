import json

import pytest


@pytest.mark.slow
def test_quick_benchmark_writes_every_figure(tmp_path, mirror):
    from molkit.bench import run_benchmarks

    record = run_benchmarks(profile="smoke", quick=True, out_dir=tmp_path)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["results"].keys() == record["results"].keys()
    expected = {
        "smiles_to_graph",
        "morgan_fingerprint",
        "descriptors",
        "lm_embedding_rxnfp_bert_batch64",
        "sentence_encoder_minilm_batch64",
        *(
            key
            for dataset in ("liver", "mutag")
            for key in (
                f"molex_{dataset}_known_ngrams",
                f"molex_{dataset}_known_ngrams_full_memo",
                f"molex_{dataset}_plain_functions",
                f"lm_classifier_{dataset}_rxnfp_bert_batch64",
                f"molex_{dataset}_speedup_over_lm_classifier",
            )
        ),
        "causal_lm_generation_fp32_batch1",
        "causal_lm_generation_fp32_batch8",
        "causal_lm_training_fp32",
    }
    if saved[
        "bf16"
    ]:  # a CPU with native bf16 also measures bf16 weights, bf16 autocast and bf16 training
        expected |= {
            "causal_lm_generation_bf16_batch1",
            "causal_lm_generation_bf16_batch8",
            "causal_lm_generation_fp32_weights_bf16_autocast_batch8",
            "causal_lm_training_bf16",
        }
    assert set(saved["results"]) == expected
    assert all(r["rate"] > 0 for r in saved["results"].values())
    assert saved["cpu_count"] >= 1 and isinstance(saved["bf16"], bool)
    # the machine record: precision, threads, CPU flags and the load at the start and the end
    assert (
        saved["precision"] == "fp32" and saved["requested_precision"] == "fp32"
    )  # the suite's policy
    assert saved["torch_threads"] >= 1 and saved["recommended_generation_batch"] in (1, 8)
    assert len(saved["load_average_start"]) == 3 and len(saved["load_average"]) == 3
    # MoleX against the LM classifier: same molecules, the ratio of the two times
    for dataset in ("liver", "mutag"):
        ratio = saved["results"][f"molex_{dataset}_speedup_over_lm_classifier"]
        molex = saved["results"][f"molex_{dataset}_known_ngrams"]
        lm = saved["results"][f"lm_classifier_{dataset}_rxnfp_bert_batch64"]
        assert ratio["count"] == molex["count"] == lm["count"] and ratio["unit"] == "x"
        assert 0 <= molex["memo_hit_rate"] <= 1 and molex["contributions"].startswith("random")
    assert set(saved["machine"]["cpu_flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
