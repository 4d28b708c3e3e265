"""Device, precision and thread settings, detected at run time.

bfloat16 autocast is only worth it where the hardware computes in bf16: CUDA devices that
report it, and CPUs with AVX512-BF16 / AMX (x86) or the BF16 extension (Arm). Elsewhere
(AVX2-only laptops, most CI runners) CPU autocast to bf16 is emulated and slower than float32,
so `autocast` falls back to a no-op.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch

_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


def default_device() -> torch.device:
    """``cuda`` if a GPU is visible, else ``mps`` (Apple), else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.cache
def _cpu_has_bf16() -> bool:
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        capabilities = get_capabilities()
        return any(bool(capabilities.get(flag, False)) for flag in _CPU_BF16_FLAGS)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = set(cpuinfo.read_text(errors="ignore").split())
        return any(flag in flags for flag in _CPU_BF16_FLAGS)
    return False


def bf16_supported(device: str | torch.device | None = None) -> bool:
    """Whether ``device`` (default: `default_device()`) computes natively in bfloat16."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return _cpu_has_bf16()
    return False


def autocast(device: str | torch.device | None = None) -> contextlib.AbstractContextManager:
    """``torch.autocast(..., dtype=torch.bfloat16)`` where bf16 is native, else a no-op context."""
    device = torch.device(device) if device is not None else default_device()
    if bf16_supported(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: the CPUs this process may use); returns it."""
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(1, int(n or 1))
    torch.set_num_threads(n)
    return n
