#!/usr/bin/env python3
"""Batch refinement speed of an exported refiner over a TFRecord split (`refine.py`).

    python -m bench.refine_speed [--saved_model=<export>] [--num_images=4096]
        [--batch_size=256] [--repeats=10]

Renders `--num_images` synthetic eyes with the built-in simulator into a temporary data
folder, then alternates, in one process:
  * `simgan_tf.serving.refine_split.refine_split` end to end (read records, decode PNG,
    refine through the SavedModel's `serving_default`, encode PNG, write a checksummed
    split);
  * the SavedModel's `serving_default` alone on the same batch size (compute only).
It prints both in images per second, the share of the compute-only speed that the whole
command keeps in every run (target: at least 90% in each), and the refiner's achieved
FLOP/s against this machine's float32 matmul peak measured in the same run.

Where the end-to-end seconds go: every run of `refine_split` is timed by stage (wall
time around `RefinerClient` construction, reading and parsing records, decoding, the
refiner call, mapping back to pixels, PNG encoding, writing, publishing the split), and
the process's CPU time (`time.process_time`, all threads) is taken with it. `refiner
share` is the refiner calls' share of the run's own wall time: unlike `kept` (two
measurements some seconds apart), it does not move with the load of a shared machine
between them. Seconds of a run that no stage accounts for are `other`; a run whose wall
time exceeds its CPU time divided by the cores used lost time to other processes on the
machine, not to us (`cpu/wall`: about 2 when the refiner has both cores of a 2-core
machine). Without `--saved_model` a freshly initialized gaze refiner is exported (the
speed does not depend on the weights).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time

from absl import app, flags
import numpy as np

from simgan_tf import config as config_lib
from simgan_tf.data import builtin, reader, schema, writer as writer_lib
from simgan_tf.modeling.refiner import build_refiner
from simgan_tf.serving import export, refine_split, refiner_client
from bench import flops
from bench.common import matmul_peak

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "An exported refiner (default: a freshly "
                    "initialized gaze refiner, exported into a temporary folder).")
flags.DEFINE_integer("num_images", 4096, "Synthetic eyes rendered and refined.")
flags.DEFINE_integer("batch_size", 256, "Images per refiner call.")
flags.DEFINE_integer("repeats", 10, "Measurements of each kind.")

SHAPE = (35, 55, 1)
STAGES = ("load", "read", "decode", "refine", "pixels", "encode", "write", "publish")
# Python's garbage collector runs inside any of the stages: its seconds are also shown on
# their own (`gc`, from `gc.callbacks`), and are not subtracted from the stages.


class StageClock:
    """Wall seconds spent in each stage of `refine_split`, by wrapping what it calls.

    Only this benchmark's process is affected; the wrapped functions behave as before
    (each call of the refiner is waited for, as `RefinerClient.refine` does anyway).
    """

    def __init__(self):
        self.seconds = collections.Counter()
        self.longest = (0, 0.0)  # (item, seconds) of the longest wait for one read item
        self._patches = contextlib.ExitStack()

    def wrap(self, owner, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        setattr(owner, name, timed)
        self._patches.callback(setattr, owner, name, original)

    def wrap_generator(self, owner, name: str, stage: str) -> None:
        """Times the work of producing each item of a generator function (not the
        consumer's work between items)."""
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            items = iter(original(*args, **kwargs))
            index = 0
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    item = None
                wait = time.perf_counter() - start
                self.seconds[stage] += wait
                if wait > self.longest[1]:
                    self.longest = (index, wait)
                if item is None:
                    return
                yield item
                index += 1
                start = time.perf_counter()

        setattr(owner, name, timed)
        self._patches.callback(setattr, owner, name, original)

    def _gc(self, phase, info):
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.seconds["gc"] += time.perf_counter() - self._gc_start
            if info.get("generation") == 2:
                self.seconds["gc2 count"] += 1

    def __enter__(self):
        gc.callbacks.append(self._gc)
        self._patches.callback(gc.callbacks.remove, self._gc)
        client = refiner_client.RefinerClient
        self.wrap(client, "__init__", "load")
        self.wrap(client, "refine", "client")  # decode + refine + pixels
        load_refiner = export.load_refiner
        self._patches.callback(setattr, export, "load_refiner", load_refiner)

        def timed_load(path):
            loaded = load_refiner(path)

            def refine(images):
                start = time.perf_counter()
                try:
                    return loaded(images)
                finally:
                    self.seconds["refine"] += time.perf_counter() - start

            refine.input_spec, refine.loaded = loaded.input_spec, loaded.loaded
            return refine

        export.load_refiner = timed_load
        self.wrap(reader, "to_uint", "pixels")
        self.wrap_generator(refine_split, "_examples", "read")
        self.wrap(schema, "encode_png", "encode")
        self.wrap(writer_lib.SplitWriter, "write", "write")
        self.wrap(writer_lib.SplitWriter, "__exit__", "publish")
        return self

    def stages(self) -> dict:
        """Seconds per stage of `STAGES` (decode: the client's refine minus the rest)."""
        seconds = dict(self.seconds)
        seconds["decode"] = (seconds.pop("client", 0.0) - seconds.get("refine", 0.0)
                             - seconds.get("pixels", 0.0))
        return seconds

    def __exit__(self, *exc):
        self._patches.close()
        return False


def timed_refine_split(saved_model, data_dir, batch_size):
    """One end-to-end run: `(seconds, cpu_seconds, {stage: seconds}, (item, seconds))`,
    the last the longest wait for one record of the read stage and its index."""
    with StageClock() as clock:
        start, cpu = time.perf_counter(), time.process_time()
        refine_split.refine_split(saved_model, os.path.join(data_dir, "synthetic"),
                                  os.path.join(data_dir, "refined"), batch_size=batch_size)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall, cpu, clock.stages(), clock.longest


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    a = FLAGS
    work = tempfile.mkdtemp(prefix="refine_speed-")
    try:
        saved_model = a.saved_model or export.export_refiner(
            build_refiner(SHAPE), os.path.join(work, "export"), 0, SHAPE)
        data_dir = os.path.join(work, "data")
        builtin.write_simulator_split(data_dir, "synthetic", "synthetic", a.num_images,
                                      seed=1)
        refine = export.load_refiner(saved_model)
        card_config = export.read_model_card(saved_model).get("config") or {}
        refiner_config = config_lib.SimGANConfig.from_json(card_config).refiner
        per_image = flops.forward_flops(
            build_refiner(tuple(refine.input_spec.shape[1:]), refiner_config))
        images = np.random.default_rng(0).uniform(
            -1, 1, (a.batch_size, *refine.input_spec.shape[1:])).astype(np.float32)
        refine(images).numpy()
        peak = matmul_peak(sys.executable, "tensorflow")
        rows = []
        print("| run | refine.py img/s | alone img/s | kept | refiner share | cpu/wall | "
              + " | ".join(STAGES)
              + " | other | gc (full collections) | longest read wait (item) |")
        print("|---" * (9 + len(STAGES)) + "|")
        for run in range(a.repeats):
            seconds, cpu, stages, longest = timed_refine_split(saved_model, data_dir,
                                                               a.batch_size)
            whole = a.num_images / seconds
            calls = max(3, a.num_images // a.batch_size)
            start = time.perf_counter()
            for _ in range(calls):
                refine(images).numpy()
            compute = calls * a.batch_size / (time.perf_counter() - start)
            rows.append((whole, compute))
            # "encode" runs inside refine_split's loop, "decode"/"refine"/"pixels" inside
            # the client's refine: all are disjoint stages of one thread.
            other = seconds - sum(stages.get(st, 0.0) for st in STAGES)
            print(f"| {run} | {whole:.1f} | {compute:.1f} | {100 * whole / compute:.0f}% | "
                  f"{100 * stages.get('refine', 0.0) / seconds:.0f}% | "
                  f"{cpu / seconds:.2f} | "
                  + " | ".join(f"{stages.get(st, 0.0):.2f}" for st in STAGES)
                  + f" | {other:.2f} | {stages.get('gc', 0.0):.2f} "
                  f"({stages.get('gc2 count', 0):.0f}) | {longest[1]:.2f} ({longest[0]}) |",
                  flush=True)
        whole = statistics.median(w for w, _ in rows)
        compute = statistics.median(c for _, c in rows)
        print(f"\nmatmul peak (TensorFlow, float32): {peak:.1f} GFLOP/s; refiner: "
              f"{per_image / 1e9:.3f} GFLOP per image")
        print("| what | img/s | GFLOP/s | % of matmul peak |")
        print("|---|---|---|---|")
        for what, rate in ((f"refine.py over {a.num_images} records, batch {a.batch_size}",
                            whole),
                           (f"serving_default alone, batch {a.batch_size}", compute)):
            print(f"| {what} | {rate:.1f} | {rate * per_image / 1e9:.1f} | "
                  f"{100 * rate * per_image / 1e9 / peak:.0f}% |")
        kept = [w / c for w, c in rows]
        print(f"\nrefine.py keeps {100 * statistics.median(kept):.0f}% of the compute-only "
              f"speed (median; min {100 * min(kept):.0f}%, max {100 * max(kept):.0f}% over "
              f"{len(kept)} runs); stage times are wall seconds per run.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
