"""Device, precision and thread settings: one precision policy for every model path.

``precision`` is ``"auto"`` (the default), ``"fp32"`` or ``"bf16"``. It is read from one place,
in this order: the last :func:`set_precision` call (``molkit.setup(precision=...)`` makes it), else
the ``MOLKIT_PRECISION`` environment variable, else ``"auto"``. ``auto`` resolves to bf16 where the
device computes it natively (CUDA devices that report it; CPUs with AVX512-BF16 / AMX on x86 or
the BF16 extension on Arm) and to float32 elsewhere: on AVX2-only laptops and most CI runners CPU
bf16 is emulated and slower than float32. ``bf16`` forces bf16 anywhere (emulated where it is not
native: slow, but it runs, which is what the bf16 tests use).

Every training, embedding and generation path asks this module:

- :func:`autocast` for forward passes of models whose weights stay float32 (training, embedding,
  scoring): ``torch.autocast(bfloat16)`` when the resolved precision is bf16, else nothing;
- :func:`inference_dtype` for models loaded only to generate: bf16 *weights* when the resolved
  precision is bf16 (measured faster than autocast for generation: 117 against 107 tokens/s at
  batch 8 on a 2-core AVX512-BF16 CPU), else float32.

A result made at one precision is reproduced at the same precision; bf16 and float32 runs differ in
the last digits and, through greedy decoding, sometimes in whole answers. The precision used is
written into each notebook's printed settings, ``run.json`` and ``bench.json``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path

import torch

_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")
PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_ENV = "MOLKIT_PRECISION"
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "": "auto"}
_PRECISION: str | None = None  # set by set_precision; None: the environment variable decides


def default_device() -> torch.device:
    """``cuda`` if a GPU is visible (``cuda:LOCAL_RANK`` in a process of several, ``WORLD_SIZE``
    > 1: one GPU each), else ``mps`` (Apple), else ``cpu``."""
    if torch.cuda.is_available():
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
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


def check_precision(value: str) -> str:
    """``value`` as one of `PRECISIONS` (``float32`` / ``bfloat16`` accepted); else a ValueError
    that names the valid values and where the setting comes from."""
    text = str(value).strip().lower()
    text = _ALIASES.get(text, text)
    if text not in PRECISIONS:
        raise ValueError(
            f"unknown precision {value!r}; choose one of {', '.join(PRECISIONS)} "
            "(molkit.setup(precision=...), the notebook's `precision` parameter "
            f"or ${PRECISION_ENV})"
        )
    return text


def requested_precision() -> str:
    """The precision asked for: the last `set_precision`, else ``$MOLKIT_PRECISION``, else auto."""
    if _PRECISION is not None:
        return _PRECISION
    return check_precision(os.environ.get(PRECISION_ENV, "auto"))


def set_precision(value: str | None) -> str:
    """Set the policy for this process (``None``: follow ``$MOLKIT_PRECISION`` again); returns
    the precision it resolves to on the default device (``"fp32"`` or ``"bf16"``)."""
    global _PRECISION
    _PRECISION = None if value is None else check_precision(value)
    return resolved_precision()


def resolved_precision(device: str | torch.device | None = None) -> str:
    """``"bf16"`` or ``"fp32"``: what the policy means on ``device`` (default:
    `default_device()`)."""
    requested = requested_precision()
    if requested == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return requested


@contextlib.contextmanager
def use_precision(value: str | None) -> Iterator[str]:
    """Within the block the policy is ``value`` (``None``: unchanged); yields the resolved
    precision."""
    global _PRECISION
    previous = _PRECISION
    if value is not None:
        _PRECISION = check_precision(value)
    try:
        yield resolved_precision()
    finally:
        _PRECISION = previous


def autocast(
    device: str | torch.device | None = None, precision: str | None = None
) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when the policy (or ``precision``) resolves to bf16 there, else a
    no-op context: float32 weights stay float32, only the matrix products run in bf16."""
    device = torch.device(device) if device is not None else default_device()
    with use_precision(precision):
        chosen = resolved_precision(device)
    if chosen == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def inference_dtype(
    device: str | torch.device | None = None, precision: str | None = None
) -> torch.dtype:
    """Weight dtype for a model loaded only to generate or embed: bf16 when the policy (or
    ``precision``) resolves to bf16 on ``device``, else float32."""
    with use_precision(precision):
        chosen = resolved_precision(device)
    return torch.bfloat16 if chosen == "bf16" else torch.float32


def cpu_flags() -> dict[str, bool]:
    """The x86 CPU features that decide molkit's speed and precision (``avx2``, ``avx512f``,
    ``avx512_bf16``, ``amx_bf16``), from torch's capability probe or else ``/proc/cpuinfo``."""
    names = {
        "avx2": "avx2",
        "avx512f": "avx512_f",
        "avx512_bf16": "avx512_bf16",
        "amx_bf16": "amx_bf16",
    }
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        caps = get_capabilities()
        return {name: bool(caps.get(key, False)) for name, key in names.items()}
    cpuinfo = Path("/proc/cpuinfo")
    present = set(cpuinfo.read_text(errors="ignore").split()) if cpuinfo.exists() else set()
    return {name: name in present for name in names}


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else torch's probe, else the platform's word)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="ignore").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None and get_capabilities().get("cpu_name"):
        return str(get_capabilities()["cpu_name"])
    import platform

    return platform.processor() or platform.machine()


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: the CPUs this process may use); returns
    it."""
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(1, int(n or 1))
    torch.set_num_threads(n)
    return n


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere: macOS, musl)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Hand the C heap's freed pages back to the operating system (glibc's ``malloc_trim(0)``);
    False where there is no such call. The LM trainer calls it after each optimiser step on a
    CPU: its activations change shape with every batch's length, and the heap otherwise keeps
    every freed block (measured on ICMA's prompts of 364-1,064 tokens, batch 1 x 8: 4.1 GB
    resident after 24 examples and growing, 7.6 GB over 192 in a notebook; trimmed after each
    optimiser step, 1.3 GB between steps, at about the same speed). Frees nothing in use: no
    number changes."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
