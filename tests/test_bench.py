import json

import pytest

#: The notebook shapes of a quick benchmark and the one batch size each is measured at.
QUICK_SHAPES = [
    ("icma_lora_train", 1),
    ("icma_lora_train", 2),
    ("icma_generate", 8),
    ("moltc_lora_train", 4),
    ("moltc_full_train", 4),
    ("molex_score", 16),
    ("lardo_generate", 8),
]


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
                f"molex_{dataset}_end_to_end",
                f"rxnfp_bert_{dataset}_end_to_end",
                f"smollm2_{dataset}_end_to_end",
                f"molex_{dataset}_speedup_vs_rxnfp_bert",
                f"molex_{dataset}_speedup_vs_smollm2",
                f"molex_{dataset}_group_matching",
            )
        ),
        "matmul_limit_fp32",
        *(f"lm_{shape}_fp32_batch{b}" for shape, b in QUICK_SHAPES),
    }
    if saved["bf16"]:  # a CPU with native bf16 measures every shape at bf16 too
        expected |= {"matmul_limit_bf16", *(f"lm_{s}_bf16_batch{b}" for s, b in QUICK_SHAPES)}
    assert set(saved["results"]) == expected
    assert all(r["rate"] > 0 for r in saved["results"].values())
    assert saved["cpu_count"] >= 1 and isinstance(saved["bf16"], bool)
    # the machine record: precision, threads, CPU flags and the load at the start and the end
    assert (
        saved["precision"] == "fp32" and saved["requested_precision"] == "fp32"
    )  # the suite's policy
    assert saved["torch_threads"] >= 1
    # one recommended batch per notebook shape and precision, the best of those measured
    precisions = ("fp32", "bf16") if saved["bf16"] else ("fp32",)
    assert set(saved["recommended_batches"]) == {
        f"{shape}_{p}" for shape in dict(QUICK_SHAPES) for p in precisions
    }
    for name, best in saved["recommended_batches"].items():
        shape, precision = name.rsplit("_", 1)
        measured = [
            r for k, r in saved["results"].items() if k.startswith(f"lm_{shape}_{precision}_batch")
        ]
        assert best["tokens_per_s"] == max(r["tokens_per_s"] for r in measured)
    for key, row in saved["results"].items():
        if "shape" in row:
            # the quick run's limit is one small matmul timed a few times: a share above 1 there
            # says the limit was timed low, not that the figure is wrong (the full bench's is
            # a 2048-wide matmul)
            assert 0 <= row["padding_waste"] < 1 and 0 < row["share_of_limit"] < 3, key
    assert len(saved["load_average_start"]) == 3 and len(saved["load_average"]) == 3
    # MoleX against both LM classifiers: the same molecules, the ratios of the times
    for dataset in ("liver", "mutag"):
        molex = saved["results"][f"molex_{dataset}_end_to_end"]
        for other in ("rxnfp_bert", "smollm2"):
            ratio = saved["results"][f"molex_{dataset}_speedup_vs_{other}"]
            lm = saved["results"][f"{other}_{dataset}_end_to_end"]
            assert ratio["count"] == molex["count"] == lm["count"] and ratio["unit"] == "x"
            assert ratio["rate"] == pytest.approx(molex["rate"] / lm["rate"], rel=0.02)
        assert abs(sum(molex["shares"].values()) - 1) < 1e-6
    assert set(saved["machine"]["cpu_flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}


def test_padding_waste_and_model_flops():
    from molkit.models.lm.throughput import padding_waste

    assert padding_waste([10, 10, 10, 10], 2) == 0.0
    # sorted: batches (10, 8) and (2, 2): slots 20 + 4, tokens 22
    assert padding_waste([2, 10, 2, 8], 2) == pytest.approx(1 - 22 / 24)
    # unsorted: (2, 10) and (2, 8): slots 20 + 16
    assert padding_waste([2, 10, 2, 8], 2, sort=False) == pytest.approx(1 - 22 / 36)
    assert padding_waste([], 4) == 0.0
