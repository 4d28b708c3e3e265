"""The precision policy: where it is read from, what it resolves to, and the clear error for a
typo."""

import pytest
import torch

from molkit.models import runtime


def test_suite_runs_in_float32_everywhere():
    assert runtime.requested_precision() == "fp32"
    assert runtime.resolved_precision("cpu") == "fp32"
    assert runtime.inference_dtype("cpu") == torch.float32


def test_environment_variable_then_set_precision(monkeypatch):
    monkeypatch.setenv("MOLKIT_PRECISION", "bf16")
    assert runtime.resolved_precision("cpu") == "bf16"
    monkeypatch.setenv("MOLKIT_PRECISION", "auto")
    assert runtime.resolved_precision("cpu") == (
        "bf16" if runtime.bf16_supported("cpu") else "fp32"
    )
    assert runtime.set_precision("FP32") == "fp32"  # set_precision wins over the variable
    assert runtime.requested_precision() == "fp32"
    runtime.set_precision(None)
    assert runtime.requested_precision() == "auto"
    assert (
        runtime.check_precision("bfloat16") == "bf16"
        and runtime.check_precision("float32") == "fp32"
    )


def test_use_precision_restores_the_policy():
    with runtime.use_precision("bf16") as resolved:
        assert resolved == "bf16" and runtime.inference_dtype("cpu") == torch.bfloat16
        with runtime.use_precision(None):  # None: unchanged
            assert runtime.resolved_precision("cpu") == "bf16"
    assert runtime.resolved_precision("cpu") == "fp32"
    with pytest.raises(RuntimeError), runtime.use_precision("bf16"):
        raise RuntimeError("a failing block still restores the policy")
    assert runtime.requested_precision() == "fp32"


@pytest.mark.parametrize("bad", ["fp16", "half", "double"])
def test_unknown_precision_names_the_choices(monkeypatch, bad):
    with pytest.raises(ValueError, match=r"unknown precision .*auto, fp32, bf16.*MOLKIT_PRECISION"):
        runtime.set_precision(bad)
    monkeypatch.setenv("MOLKIT_PRECISION", bad)
    with pytest.raises(ValueError, match="unknown precision"):
        runtime.resolved_precision()


def test_setup_sets_and_prints_the_precision(tmp_path, monkeypatch, capsys):
    import json

    import molkit

    monkeypatch.setenv("MOLKIT_RUN_DIR", str(tmp_path))
    cfg = molkit.setup(
        molkit.RunSettings("smoke"), notebook="99_probe", precision="bf16", theme=False, threads=1
    )
    assert cfg.precision == "bf16" and cfg.requested_precision == "bf16"
    assert "precision bf16 (asked: bf16)" in capsys.readouterr().out
    assert runtime.resolved_precision("cpu") == "bf16"
    saved = json.loads((tmp_path / "settings" / "99_probe.json").read_text())
    assert saved["precision"] == "bf16" and saved["threads"] == 1
    cfg = molkit.setup(
        molkit.RunSettings("smoke"), notebook="99_probe", precision="fp32", theme=False, threads=1
    )
    assert cfg.precision == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'bf8'"):
        molkit.setup(molkit.RunSettings("smoke"), notebook="99_probe", precision="bf8", theme=False)


def test_cpu_flags_and_name():
    flags = runtime.cpu_flags()
    assert set(flags) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert all(isinstance(v, bool) for v in flags.values())
    assert isinstance(runtime.cpu_name(), str) and runtime.cpu_name()


@pytest.mark.parametrize("native", [False, True], ids=["avx2-only", "native-bf16"])
def test_auto_follows_the_cpu(monkeypatch, native):
    """auto = bf16 where the CPU computes it natively, float32 elsewhere (AVX2-only laptops)."""
    monkeypatch.setattr(runtime, "_cpu_has_bf16", lambda: native)
    with runtime.use_precision("auto") as resolved:
        assert resolved == ("bf16" if native else "fp32")
        assert runtime.inference_dtype("cpu") == (torch.bfloat16 if native else torch.float32)
        a = torch.randn(3, 3)
        with runtime.autocast("cpu"):
            assert (a @ a).dtype == (torch.bfloat16 if native else torch.float32)
    with runtime.use_precision("bf16"):  # forced: bf16 either way
        assert runtime.resolved_precision("cpu") == "bf16"
