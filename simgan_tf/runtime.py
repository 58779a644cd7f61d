"""How TensorFlow runs on this machine: oneDNN kernels and bfloat16 support.

**oneDNN.** TensorFlow's x86 CPU build carries two sets of kernels for convolutions and
matrix products: Eigen's and Intel's oneDNN. It turns oneDNN on by itself only on CPUs
with AVX512_VNNI, AVX512_BF16 or AMX; on other AVX-512 and AVX2 CPUs it runs Eigen's. For
SimGAN the difference is large: on a 2-core AVX-512 Xeon without VNNI, Algorithm 1 trained
2.0x faster with oneDNN, and with Eigen it reached 37% of the machine's float32 matmul
peak (`bench/train_speed.py`, docs/benchmarks.md). So
importing `simgan_tf` asks TensorFlow for oneDNN by setting `TF_ENABLE_ONEDNN_OPTS=1`,
unless the user has set that variable (`TF_ENABLE_ONEDNN_OPTS=0` keeps Eigen).

TensorFlow reads the variable once, when it is imported: `simgan_tf` must be imported
before `tensorflow` for this to apply (the entry points `train.py`, `evaluate.py`,
`refine.py`, ... do). `onednn_enabled()` says what TensorFlow actually uses.

**bfloat16.** Keras' `mixed_bfloat16` policy (`--mixed_precision` on CPU) is fast only on
CPUs that compute in bfloat16 natively (AVX512_BF16 or AMX); elsewhere oneDNN emulates it
and it is several times slower than float32. `bfloat16_native()` tells which, and
`precision_policy` is the one place that turns mixed precision on (SimGAN's networks,
the evaluation's estimators and realism classifier).
"""

from __future__ import annotations

import contextlib
import os
import sys

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"

# CPU flags (Linux /proc/cpuinfo names) that execute bfloat16 dot products natively.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def request_onednn() -> bool:
    """Asks TensorFlow for oneDNN kernels unless the user chose; before TF is imported.

    Returns:
      True if the request can still take effect (TensorFlow not imported yet and the
      variable not set by the user).
    """
    if ONEDNN_VARIABLE in os.environ:
        return False
    os.environ[ONEDNN_VARIABLE] = "1"
    return "tensorflow" not in sys.modules


def onednn_enabled() -> bool:
    """Whether the running TensorFlow uses oneDNN kernels (imports TensorFlow)."""
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=import-outside-toplevel
    return bool(_pywrap_util_port.IsMklEnabled())


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor listed in `cpuinfo` (empty if none)."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bfloat16_native(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BFLOAT16_CPU_FLAGS)


@contextlib.contextmanager
def precision_policy(mixed: bool):
    """Builds layers under Keras' mixed precision policy while active.

    bfloat16 on CPU (no loss scaling needed: bfloat16 has float32's exponent range),
    float16 on GPU. Yields whether loss scaling is needed (float16). Output layers that
    are declared float32 (the refiner's tanh, the discriminator's logits, the
    estimators' and the realism classifier's outputs) stay float32, and so do the
    losses computed from them. Imports TensorFlow and Keras.
    """
    if not mixed:
        yield False
        return
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from absl import logging  # pylint: disable=import-outside-toplevel

    previous = keras.config.dtype_policy()
    float16 = bool(tf.config.list_logical_devices("GPU"))
    if not float16 and not bfloat16_native():
        logging.warning(
            "mixed_precision: this CPU has no native bfloat16 (AVX512_BF16 or AMX), so "
            "bfloat16 is emulated and training runs several times slower than in float32 "
            "(docs/benchmarks.md). Leave mixed precision off on this machine.")
    keras.config.set_dtype_policy("mixed_float16" if float16 else "mixed_bfloat16")
    try:
        yield float16
    finally:
        keras.config.set_dtype_policy(previous)
