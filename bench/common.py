"""What the benchmarks share: subprocesses from the checkout root, matmul peak, data.

Every measurement runs in a fresh process started here, with the checkout root as its
working directory, so that `python -m bench.tf_simgan_step` and `train.py` resolve as
they do for a user who runs `python -m bench.<name>` from the checkout root. Nothing here
imports TensorFlow: a parent process that only starts measurements stays light.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

# The checkout root: the working directory of every subprocess.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATMUL_SIZE = 4096

MATMUL_CODE = {
    "tensorflow": """
import simgan_tf, tensorflow as tf
a = tf.random.normal([{n}, {n}]); b = tf.random.normal([{n}, {n}])
f = tf.function(lambda a, b: tf.linalg.matmul(a, b))
f(a, b).numpy()
def run():
    r = f(a, b)
    r.numpy()
""",
    "numpy": """
import numpy as np
a = np.random.rand({n}, {n}).astype(np.float32); b = a.copy()
a @ b
def run():
    a @ b
""",
    "torch": """
import torch
a = torch.randn({n}, {n}); b = torch.randn({n}, {n})
a @ b
def run():
    a @ b
""",
}
MATMUL_TIMER = """
import time
best = 0.0
for _ in range(5):
    start = time.perf_counter()
    run()
    best = max(best, 2 * {n} ** 3 / (time.perf_counter() - start) / 1e9)
print(f"gflop_per_s={{best:.1f}}")
"""


def run(command: list[str], env: dict[str, str] | None = None) -> str:
    """Runs `command` in the checkout root and returns its stdout.

    Args:
      command: the program and its arguments.
      env: the child's environment (default: this process's).

    Raises:
      RuntimeError: if the command exits with a non-zero status; the message holds the
        last 3,000 characters of its stderr.
    """
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n"
                           f"{result.stderr[-3000:]}")
    return result.stdout


def field(line: str, name: str) -> float:
    """The number after `name=` in a measurement's output line.

    Raises:
      RuntimeError: if `line` has no `name=<number>`.
    """
    match = re.search(rf"\b{name}=([0-9.]+)", line)
    if not match:
        raise RuntimeError(f"No {name}= in output: {line!r}")
    return float(match.group(1))


def matmul_peak(python: str, library: str) -> float:
    """GFLOP/s of the best of 5 float32 4096x4096 products, in a fresh process.

    Args:
      python: the interpreter to run (another virtual environment for `torch`).
      library: `tensorflow`, `numpy` or `torch`.
    """
    code = (MATMUL_CODE[library] + MATMUL_TIMER).format(n=MATMUL_SIZE)
    return field(run([python, "-c", code]), "gflop_per_s")


def default_rounds(batch: int) -> int:
    """About 640 counted images per measurement (at least 2 iterations)."""
    return max(2, round(320 / batch))


def tf_step(batch: int, rounds: int, *, mode: str = "train", mixed: bool = False,
            eigen: bool = False, warmup: int = 1) -> tuple[float, float, float]:
    """Runs `python -m bench.tf_simgan_step` once in a fresh process.

    Args:
      batch: images per batch.
      rounds: timed iterations of Algorithm 1 (`mode="train"`) or refiner calls
        (`mode="infer"`).
      mode: `train` or `infer`.
      mixed: bfloat16 compute (`--mixed_precision`).
      eigen: Eigen's kernels instead of oneDNN's (`TF_ENABLE_ONEDNN_OPTS=0`).
      warmup: untimed rounds first.

    Returns:
      `(img_per_s, gflop_per_s, best_gflop_per_s)` as the step prints them.
    """
    command = [sys.executable, "-m", "bench.tf_simgan_step", "--mode", mode, "--batch",
               str(batch), "--rounds", str(rounds), "--warmup", str(warmup)]
    if mixed:
        command.append("--mixed_precision")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["TF_ENABLE_ONEDNN_OPTS"] = "0" if eigen else "1"
    line = run(command, env).strip().splitlines()[-1]
    return field(line, "img_per_s"), field(line, "gflop_per_s"), field(line, "best_gflop_per_s")


def simulator_data() -> str:
    """The `gaze_demo` preset's simulator data folder, rendered into the cache if missing."""
    # Imported here: train_lib imports TensorFlow, which the callers' parents avoid.
    from simgan_tf import config as config_lib  # pylint: disable=import-outside-toplevel
    from simgan_tf.training import train_lib  # pylint: disable=import-outside-toplevel

    return train_lib.resolve_data_dir(config_lib.get_preset("gaze_demo"))
