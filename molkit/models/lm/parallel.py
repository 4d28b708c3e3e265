"""Data parallelism for the LM toolkit: the `accelerate.Accelerator` that training, generation and
scoring shard their work with when this process is one of several."""

from __future__ import annotations

import functools
import os

import torch


def data_parallel(accelerator=None):
    """The `accelerate.Accelerator` a training or generation call shards its work with, or None
    for a plain single process: ``accelerator`` when given, else one made when this process was
    started as one of several (``WORLD_SIZE`` > 1: ``accelerate launch``, ``torchrun`` or
    ``accelerate.notebook_launcher``; gloo on CPUs, NCCL on GPUs)."""
    if accelerator is not None:
        return accelerator
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return _launched_accelerator()


@functools.cache
def _launched_accelerator():
    """One `accelerate.Accelerator` per launched process (every training and generation call and
    the adapter cache share it)."""
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def is_main(acc) -> bool:
    """Whether this process writes and shows progress: a single process, or rank 0."""
    return acc is None or acc.is_main_process


def shard(indices, acc) -> list:
    """This process's share of ``indices`` (every n-th from its rank), all of them alone."""
    if acc is None or acc.num_processes <= 1:
        return list(indices)
    return list(indices)[acc.process_index :: acc.num_processes]
