"""Choosing the compute precision of the forward pass.

`auto` picks float16 on NVIDIA GPUs with tensor cores (compute capability 7.0+), bfloat16 on CPUs
with AMX or AVX512-BF16, and float32 otherwise. Precision changes the features slightly, so the
resolved value (never "auto") is part of the cache key.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.backbones.tf_runtime import import_tensorflow
from pipeline.errors import UsageError

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
#: CPU feature flags (as in /proc/cpuinfo) that make bfloat16 matrix maths fast.
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
#: Tensor cores arrived with Volta (compute capability 7.0).
TENSOR_CORE_MIN_CAPABILITY = (7, 0)
_CPUINFO = Path("/proc/cpuinfo")
_NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def cpu_flags(cpuinfo: Path = _CPUINFO) -> frozenset[str]:
    """The CPU feature flags of the first processor (empty where /proc/cpuinfo does not exist)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def nvidia_gpu_count() -> int:
    """How many NVIDIA GPUs the driver lists (0 without a driver); imports nothing."""
    return sum(1 for _ in _NVIDIA_GPUS.iterdir()) if _NVIDIA_GPUS.is_dir() else 0


def tensor_core_gpus() -> int:
    """How many visible GPUs have tensor cores. Imports TensorFlow only if an NVIDIA driver exists."""
    if not nvidia_gpu_count():
        return 0
    tf = import_tensorflow()

    count = 0
    for device in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(device).get("compute_capability", (0, 0))
        count += tuple(capability) >= TENSOR_CORE_MIN_CAPABILITY
    return count


def resolve_precision(requested: str, flags: frozenset[str] | None = None) -> tuple[str, str]:
    """Return (precision, reason) for `requested`; ValueError for an unknown name."""
    if requested not in PRECISIONS:
        raise UsageError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested, "requested"
    if tensor_core_gpus():
        return "float16", "auto: GPU with tensor cores"
    flags = cpu_flags() if flags is None else flags
    fast = sorted(BF16_CPU_FLAGS & flags)
    if fast:
        return "bfloat16", f"auto: CPU has {', '.join(fast)}"
    return "float32", "auto: no tensor-core GPU and no AMX/AVX512-BF16 on this CPU"
