"""What the experiments share: the simulator's data, data folders, runs and commands.

Commands run in the checkout root, so `train.py`, `refine.py` and `evaluate.py` resolve
as they do for a user who runs `python -m experiments.<name>` from there. Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Sequence

import numpy as np

from simgan_tf import config as config_lib
from simgan_tf.data import builtin, schema

# The checkout root: the working directory of every command.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def simulator_data(cache_dir: str | None,
                   data: config_lib.DataConfig | None = None) -> str:
    """The eye simulator's data folder at `data`'s split sizes, rendered if missing.

    Args:
      cache_dir: parent folder of the simulator cache (default: `$SIMGAN_TF_CACHE` or
        `~/.cache/simgan_tf`).
      data: the split sizes (`simulator_num_*`); default: the `gaze_demo` preset's.
    """
    d = data or config_lib.get_preset("gaze_demo").data
    return builtin.ensure_simulator_data(
        cache_dir, num_synthetic=d.simulator_num_synthetic,
        num_real=d.simulator_num_real, num_real_test=d.simulator_num_real_test)


def link_data(source: str, target: str, splits: list[str]) -> None:
    """A data folder with symlinks to `splits` of `source` and their dataset.json entries.

    Splits already in `target`'s dataset.json and not in `splits` are kept.
    """
    os.makedirs(target, exist_ok=True)
    info = schema.read_dataset_info(source)
    for split in splits:
        link = os.path.join(target, split)
        if not os.path.exists(link):
            os.symlink(os.path.join(source, split), link)
    existing = {}
    if os.path.exists(schema.dataset_info_path(target)):
        existing = schema.read_dataset_info(target).splits
    keep = {name: s for name, s in existing.items() if name not in splits}
    info.splits = {**{s: info.splits[s] for s in splits}, **keep}
    schema.write_json_atomic(schema.dataset_info_path(target), info.to_json())


def run(command: list[str], log_path: str | None = None) -> None:
    """Prints `command`, runs it in the checkout root and prints how long it took.

    Args:
      command: the program and its arguments.
      log_path: a file its stdout and stderr are appended to; `None` leaves them on the
        terminal.

    Raises:
      SystemExit: if the command exits with a non-zero status.
    """
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    if log_path is None:
        result = subprocess.run(command, cwd=ROOT, check=False)
    else:
        with open(log_path, "a", encoding="utf-8") as log:
            result = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    check=False)
    if result.returncode:
        where = f"; see {log_path}" if log_path else ""
        raise SystemExit(f"Command failed ({result.returncode}){where}")
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)


def evaluate_command(data_dir: str, seed: int, train_splits: str, output_dir: str,
                     extra: Sequence[str] = (), task: str = "gaze") -> list[str]:
    """`evaluate.py` on `task` (`gaze` or `hand`): estimators trained on `train_splits`
    (comma separated), tested on `real_test`, results in `output_dir`."""
    return [sys.executable, "evaluate.py", f"--dataset={task}", f"--data_dir={data_dir}",
            f"--seed={seed}", f"--train_splits={train_splits}", "--test_split=real_test",
            f"--output_dir={output_dir}", *extra]


def load_run_config(model_dir: str) -> config_lib.SimGANConfig:
    """The resolved config a `train.py` run wrote into `model_dir` (`config.json`)."""
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        return config_lib.SimGANConfig.from_json(json.load(f))


def latest_export(model_dir: str) -> str | None:
    """The newest exported refiner of a run, `<model_dir>/export/refiner/<version>`.

    Returns:
      Its path, or `None` if the run has exported none.
    """
    base = os.path.join(model_dir, "export", "refiner")
    versions = [int(v) for v in os.listdir(base) if v.isdigit()] if os.path.isdir(base) else []
    return os.path.join(base, str(max(versions))) if versions else None


def to_inputs(images: np.ndarray) -> np.ndarray:
    """uint8 images in [0, 255] -> float32 network inputs in [-1, 1], same shape."""
    return images.astype(np.float32) / 127.5 - 1.0
