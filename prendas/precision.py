"""What the layers compute in: --precision as this process resolves it, and whether bfloat16 runs in hardware here.

Precision belongs to a run, not to its files: `auto` is decided by each process that trains (a resumed run again, on
its own machine), and what a run saves computes in float32 when loaded (prendas.models.in_precision).
"""

import os

import keras

from prendas import PrendasError, devices
from prendas.config import PRECISIONS

BF16_CAPABILITY = (8, 0)  # NVIDIA GPUs compute bfloat16 from Ampere on (T4, V100 and P100 emulate it)

# The levels at which oneDNN (TensorFlow's CPU kernels) and XLA (JAX's) compute bfloat16, in each one's names; a CPU
# held below them (ONEDNN_MAX_CPU_ISA, XLA's --xla_cpu_max_isa), as CI's AVX2 pass holds it, has none: TensorFlow's
# bfloat16 kernels even crash there on a CPU that has it, since they ask the CPU, not oneDNN.
ONEDNN_BF16 = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512",
               "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL", "DEFAULT")
XLA_BF16 = ("AVX512_BF16", "AMX", "AMX_FP16")


def resolve_precision(precision):
    """--precision as this process computes it: "auto" becomes mixed_bfloat16 where bfloat16 runs in hardware, else
    float32 (decided again by every process that trains or draws, never stored)."""
    if precision not in PRECISIONS:
        raise PrendasError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if native_bf16() else "float32"


def explain_precision(precision):
    """What `precision` computes in here, and why where it was "auto": "float32", "mixed_bfloat16 (--precision auto:
    bfloat16 in hardware, this CPU's AVX512_BF16)"."""
    used = resolve_precision(precision)
    if precision != "auto":
        return used
    hardware = bf16_hardware()
    return f"{used} (--precision auto: " + (f"bfloat16 in hardware, {hardware})" if hardware else
                                            "no bfloat16 in hardware here)")


def native_bf16():
    """Whether bfloat16 arithmetic runs in hardware here (bf16_hardware); elsewhere the kernels emulate it, slower than
    float32."""
    return bf16_hardware() is not None


def bf16_hardware():
    """What computes bfloat16 in hardware here, in words ("NVIDIA H100 (compute capability 9.0)", "this CPU's
    AVX512_BF16"), or None where nothing does (every GPU must; else the CPU's AVX512_BF16 or AMX)."""
    found = gpus()
    if found:
        if all(bf16_gpu(capability) for _, capability in found):
            name, capability = found[0]
            return name + (f" (compute capability {capability[0]}.{capability[1]})" if capability else "")
        return None
    flags = devices.cpu()[1]
    if capped_below_bf16():
        return None
    for flag, words in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512_BF16")):
        if flag in flags:
            return f"this CPU's {words}"
    return None


def bf16_gpu(capability):
    """Whether a GPU of this compute capability ((major, minor); None: unknown, as on ROCm) computes bfloat16."""
    return capability is None or tuple(capability) >= BF16_CAPABILITY


def capped_below_bf16():
    """Whether the backend's CPU kernels are held below their bfloat16 instructions: ONEDNN_MAX_CPU_ISA for
    TensorFlow, XLA_FLAGS's --xla_cpu_max_isa for JAX."""
    if keras.backend.backend() == "jax":
        flags = os.environ.get("XLA_FLAGS", "").split()
        caps, levels = [f.split("=", 1)[1] for f in flags if f.startswith("--xla_cpu_max_isa=")], XLA_BF16
    else:
        caps, levels = [os.environ.get("ONEDNN_MAX_CPU_ISA", "")], ONEDNN_BF16
    return any(cap.strip() and cap.strip().upper() not in levels for cap in caps)


def gpus():
    """(name, compute capability as (major, minor), or None where the backend gives none) of each GPU it sees."""
    if keras.backend.backend() == "jax":
        import jax

        return [(d.device_kind, _capability(getattr(d, "compute_capability", None)))
                for d in jax.devices() if d.platform == "gpu"]
    if keras.backend.backend() != "tensorflow":
        return []
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append((details.get("device_name", "GPU"), _capability(details.get("compute_capability"))))
    return found


def _capability(value):
    """A compute capability as (major, minor): TensorFlow gives a tuple, JAX a string ("8.0")."""
    if value is None:
        return None
    try:
        return tuple(int(part) for part in (value.split(".") if isinstance(value, str) else value))[:2]
    except (TypeError, ValueError):
        return None
