"""Data parallelism of the causal-LM layer (`molkit.models.lm`): two CPU processes
(torchrun, gloo) train one optimiser step and generate exactly as one process does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from molkit.models import lm as lt
from molkit.run import _free_port

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import distributed_worker as worker  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(lt.save_tiny_random_lm(tmp_path_factory.mktemp("lm"), worker.corpus(),
                                      vocab_size=300, hidden=32, layers=2))  # fmt: skip


@pytest.fixture(scope="module")
def single(tiny):
    return worker.run(tiny)


@pytest.mark.parametrize("launcher", ["torchrun", "notebook_launcher"])
def test_two_processes_train_and_generate_like_one(tiny, single, tmp_path, launcher):
    """torchrun (a script's launch) and accelerate.notebook_launcher (2 processes forked from
    one, as from a notebook's kernel) give the same step and texts as one process."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    script = str(HERE / "distributed_worker.py")
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", script, tiny, str(tmp_path)]  # fmt: skip
    else:
        cmd = [
            sys.executable,
            script,
            tiny,
            str(tmp_path),
            "--notebook-launcher",
            str(_free_port()),
        ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    tensors = torch.load(tmp_path / "tensors.pt")
    assert result["processes"] == 2 and single["processes"] == 1
    assert result["steps"] == single["steps"] == 1
    assert result["losses"] == pytest.approx(single["losses"], rel=1e-10)
    assert set(tensors) == set(single["tensors"])
    for name, value in single["tensors"].items():
        torch.testing.assert_close(tensors[name], value, rtol=1e-9, atol=1e-10, msg=name)
    assert result["texts"] == single["texts"]  # the same texts, gathered in input order


def test_the_step_changes_the_weights_and_the_extra_parameter(tiny, single):
    before, _ = lt.load_lm(tiny)
    after = single["tensors"]
    moved = [n for n, p in before.named_parameters() if not torch.equal(p, after[n])]
    assert moved and not torch.equal(
        after["extra"], torch.linspace(-0.5, 0.5, 32, dtype=torch.float64)[None]
    )


def test_a_global_batch_smaller_than_the_processes_is_refused(tiny):
    class TwoProcesses:
        num_processes, process_index, is_main_process = 2, 0, True

    model, tok = lt.load_lm(tiny)
    examples = [lt.encode_example(tok, "CCO is", " ethanol")]
    config = lt.TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="batch_size 1 is smaller than the 2 processes"):
        lt.train_causal_lm(model, examples, config, tok.pad_token_id, progress=False,
                           accelerator=TwoProcesses())  # fmt: skip


def test_gradient_checkpointing_trains_the_same_weights(tiny):
    import dataclasses

    plain = worker.run(tiny)
    original = worker.CONFIG
    worker.CONFIG = dataclasses.replace(original, gradient_checkpointing=True)
    try:
        checkpointed = worker.run(tiny)
    finally:
        worker.CONFIG = original
    assert checkpointed["losses"] == pytest.approx(plain["losses"], rel=1e-10)
    for name, value in plain["tensors"].items():
        torch.testing.assert_close(checkpointed["tensors"][name], value, rtol=1e-9, atol=1e-10)
