#!/usr/bin/env python3
"""Peak resident memory of a training run, and how it grows with the history buffer.

    python -m bench.memory [--batch_size=512] [--history_sizes=0,5120,25600,51200]

Runs `train.py --dataset=gaze` on the built-in eye simulator's data, once per history
buffer size, each in a fresh process, for a few updates of every phase of Algorithm 1
(2 refiner pretraining, 2 discriminator pretraining and 1 iteration of K_g=2 refiner and
K_d=1 discriminator updates, then a checkpoint and the export), and prints the process's
peak resident set size (`getrusage` ru_maxrss). The buffer holds float32 images, so it
should add 4 * 35 * 55 = 7,700 bytes per image and nothing per update: the table compares
the measured growth with that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from absl import app, flags

from bench.common import ROOT, field, simulator_data

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "default: the eye simulator's data")
flags.DEFINE_integer("batch_size", 512, "Batch size of every run.")
flags.DEFINE_list("history_sizes", ["0", "5120", "25600", "51200"],
                  "History buffer sizes, one run each; the first is the baseline.")
flags.DEFINE_multi_string("train_flag", [],
                          "extra train.py flag, e.g. --train_flag=--mixed_precision")

BYTES_PER_IMAGE = 4 * 35 * 55

CHILD = """
import resource, runpy, sys
sys.argv = {argv!r}
try:
    runpy.run_path({train!r}, run_name="__main__")
except SystemExit as e:
    if e.code not in (0, None):
        raise
print(f"peak_rss_kb={{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}")
"""


def peak_rss_mb(data_dir: str, batch: int, history: int, extra: list[str]) -> float:
    model_dir = tempfile.mkdtemp(prefix="memory-")
    try:
        argv = ["train.py", "--dataset=gaze", f"--data_dir={data_dir}",
                f"--model_dir={model_dir}", f"--batch_size={batch}",
                f"--history_size={history}", "--pretrain_refiner_steps=2",
                "--pretrain_discriminator_steps=2", "--steps=1", "--log_every=1",
                "--image_every=1000", "--checkpoint_every=1000", *extra]
        code = CHILD.format(argv=argv, train=os.path.join(ROOT, "train.py"))
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        if result.returncode != 0:
            raise RuntimeError(f"train.py failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return field(result.stdout.strip().splitlines()[-1], "peak_rss_kb") / 1024
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    a = FLAGS
    data_dir = a.data_dir or simulator_data()
    sizes = [int(s) for s in a.history_sizes if s]
    rows = []
    for size in sizes:
        mb = peak_rss_mb(data_dir, a.batch_size, size, a.train_flag)
        rows.append((size, mb))
        print(f"  history {size}: peak RSS {mb:.0f} MB", flush=True)
    base_size, base = rows[0]
    print(f"\nbatch {a.batch_size}, train.py on {data_dir}")
    print("| history buffer (images) | peak RSS (MB) | growth over the first row (MB) | "
          "buffer's own size (MB) |")
    print("|---|---|---|---|")
    for size, mb in rows:
        print(f"| {size} | {mb:.0f} | {mb - base:+.0f} | "
              f"{(size - base_size) * BYTES_PER_IMAGE / 2**20:.0f} |")


if __name__ == "__main__":
    app.run(main)
