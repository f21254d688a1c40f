"""Speed settings for the training step: precision, memory format, threads.

`precision="auto"` resolves per device:
  * CUDA: bf16 autocast where the GPU supports it, else fp16 autocast with a GradScaler. A sweep trial's
    `auto` on a GPU with bf16 times its step in fp32 and bf16 first and trains in the faster (auto_candidates).
  * CPU: bf16 autocast + channels_last only when the CPU has native bf16 instructions (avx512_bf16 or
    amx_bf16 in /proc/cpuinfo). Without them PyTorch emulates bf16 and a step is ~6-20x *slower*
    (measured on the 2-core AMD EPYC (Zen 3, AVX2 only) this project was developed on: baseline
    147 img/s fp32 NCHW, 88 channels_last fp32, 7 bf16 NCHW, 25 bf16 channels_last), so there auto = fp32
    NCHW. An explicit "bf16" is honoured anyway (it is correct, just slow).
Threads: `set_threads()` matches torch's intra-op pool to the CPUs this process may use (the explicit
argument, else OMP_NUM_THREADS, which Ray sets to a worker's num_cpus, else the affinity mask).
Memory: `tune_malloc()` keeps glibc from handing freed memory back to the kernel after a step, to be
page-faulted in again by the next (benchmarks/malloc_tuning.py measures what it is worth).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises bf16 instructions (x86 avx512_bf16/amx_bf16, Arm bf16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = {w for line in f if line.startswith(("flags", "Features")) for w in line.split(":", 1)[1].split()}
    except OSError:
        flags = set()
    if flags & {"avx512_bf16", "amx_bf16", "bf16"}:
        return True
    # Fallback where /proc/cpuinfo is missing (macOS, containers hiding it): ask oneDNN.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and not flags
    except (AttributeError, RuntimeError):
        return False


def host_kind() -> str:
    """What this machine trains on, for plans and reports: timings differ ~4x between the two CPU kinds."""
    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name(0)})"
    if cpu_has_native_bf16():
        return "CPU with native bf16 (avx512_bf16/amx: bf16 + channels_last)"
    return "CPU without native bf16 (AVX2-class: fp32)"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`None` -> cuda if available else cpu."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: str | torch.device | None = None) -> str:
    """Map "auto" to the fastest safe choice for `device`; validate the others."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: valid values are {', '.join(PRECISIONS)}")
    dev = resolve_device(device)
    if precision != "auto":
        if precision == "fp16" and dev.type == "cpu":
            raise ValueError("precision='fp16' is for CUDA; on CPU use 'bf16' or 'fp32'")
        return precision
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def auto_candidates(device: str | torch.device | None = None) -> tuple[str, ...]:
    """The precisions a trial's `auto` times its own training step in before it picks one (sweep.loop).

    On a GPU with bf16, fp32 and bf16: on one H200 the study's five CNNs stepped 11-18% faster in fp32 and vgg_fer
    17% faster in bf16 (benchmarks/results/gpu_epoch_h200.txt), so no one rule fits every model. On CPUs auto's
    rule stands alone: emulated bf16 is 6-20x slower than fp32 without native bf16 instructions, and native bf16
    + channels_last has not been timed against fp32 per model on one CPU."""
    dev = resolve_device(device)
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return ("fp32", "bf16")
    return (resolve_precision("auto", dev),)


def use_channels_last(precision: str, device: str | torch.device | None = None) -> bool:
    """channels_last pays off with oneDNN bf16 on CPU and with tensor cores on CUDA; not for fp32 on AVX2."""
    dev = resolve_device(device)
    p = resolve_precision(precision, dev)
    return dev.type == "cuda" or (p == "bf16" and cpu_has_native_bf16())


def autocast(precision: str, device: str | torch.device | None = None):
    """Context manager: autocast to bf16/fp16, or nothing for fp32."""
    dev = resolve_device(device)
    p = resolve_precision(precision, dev)
    if p == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=_DTYPES[p])


def grad_scaler(precision: str, device: str | torch.device | None = None) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 on CUDA (bf16 has fp32's exponent range)."""
    dev = resolve_device(device)
    return torch.amp.GradScaler(dev.type, enabled=resolve_precision(precision, dev) == "fp16")


def prepare_model(model: torch.nn.Module, precision: str = "auto", device=None) -> torch.nn.Module:
    """Move `model` to `device` in the memory format that suits `precision` there (in place; returned)."""
    dev = resolve_device(device)
    fmt = torch.channels_last if use_channels_last(precision, dev) else torch.contiguous_format
    return model.to(device=dev, memory_format=fmt)


def to_device(x: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    """Move an image batch [B, C, S, S]; channels_last when the model runs in it."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def available_cpus() -> int:
    """CPUs this process should use: OMP_NUM_THREADS (Ray sets it per worker), else the affinity mask."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """Size torch's intra-op thread pool to `n` (default `available_cpus()`); returns the count set.

    Oversubscribing (e.g. 2 Ray workers on 2 cores, each with torch's default of all cores) makes every
    step slower, so each worker should call this with the CPUs it holds.
    """
    n = int(n) if n else available_cpus()
    if n < 1:
        raise ValueError(f"set_threads: n={n} must be >= 1")
    torch.set_num_threads(n)
    return n


# glibc mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_TRIM_BYTES = 256 << 20  # freed memory at the heap's top kept for reuse, up to this much
MALLOC_MMAP_BYTES = 32 << 20  # blocks below this come from the heap, not from their own mmap (glibc's maximum)


@functools.cache
def tune_malloc() -> bool:
    """Let glibc malloc keep up to 256 MiB of freed memory and serve blocks under 32 MiB from its heap.

    A training step on the CPU allocates and frees its activations (MBs each) every step. By default glibc
    gives them their own mmap or trims them off the heap when freed, so in some processes (its adaptive
    thresholds depend on what came before) the next step page-faults the same memory in again. On a 2-core
    host the study's baseline CNN trained 27% faster with this at 64x64 and two threads, vgg_fer 3%, while
    one-thread trials at 32x32 did not change measurably (benchmarks/results/malloc_tuning_2core_bf16.txt).
    jemalloc or tcmalloc would do the same job but need LD_PRELOAD before start; this works from inside a
    running process. Both settings are needed: either alone switches off glibc's own adaptive threshold and
    is no faster than the default, or slower. Returns False (and changes nothing) where the C library is not
    glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_BYTES) and mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_BYTES))
