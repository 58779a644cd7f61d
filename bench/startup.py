#!/usr/bin/env python3
"""The fixed cost of a train.py run: process start to first update, last update to exit.

    python -m bench.startup [--repeats=3] [--data_folder=<folder>] [-- <train.py flags>]

Runs a short `train.py` (`--dataset=gaze`, paper networks, batch 64, 4 refiner
pretraining, 2 discriminator pretraining updates and 2 iterations, export on) in a
fresh process `--repeats` times, on a data folder rendered once beforehand (rendering
the simulator cache is not start-up: it happens once per machine). The run goes through
`train.py`'s own `main`, started by `python -m bench.startup --child`, which only wraps
the library's steps with timestamps (nothing is changed):

  imports        process start to train.py's flags parsed (absl, simgan_tf.config)
  tensorflow     `import tensorflow` and the training library (train.main's lazy imports)
  strategy       `distribute.build_strategy`
  data           `train_lib.prepare_data`: resolve and validate the data folder
  input          `train_lib.build_input`: the tf.data pipeline and its iterator
  model          `train_lib.build_model`: networks, optimizers, history buffer
  restore        `train_lib.restore_checkpoint` and `train_lib.make_callbacks`
  first <phase>  first call of each phase function minus a later call of it: tracing
                 and graph optimization of `SimGAN.make_train_function`'s four functions
  updates        the remaining time of `loop.run` (the updates themselves, not fixed)
  export         `train_lib.export_and_clean_up` (SavedModel of the refiner)
  exit           end of `train_lib.train` to process exit (as the parent sees it)

Prints the medians and spread (min-max) of each part over the repeats, and the fixed
total: everything but `updates`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_START = time.time()  # before any other import: the child's process start, near enough

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_boolean("child", False, "Internal: run train.py's main with timestamps.")
flags.DEFINE_integer("repeats", 3, "train.py runs.")
flags.DEFINE_string("data_folder", None, "Data folder (default: 256 simulator eyes per split, "
                    "rendered into a temporary folder).")
flags.DEFINE_string("timeline", None, "Internal: where the child writes its timestamps.")

TRAIN_FLAGS = ["--dataset=gaze", "--batch_size=64", "--steps=2",
               "--pretrain_refiner_steps=4", "--pretrain_discriminator_steps=2",
               "--history_size=128", "--log_every=100", "--image_every=100000",
               "--checkpoint_every=100000", "--shuffle_buffer=256"]
PARTS = ("imports", "tensorflow", "strategy", "data", "input", "model", "restore",
         "first pretrain_refiner", "first pretrain_discriminator", "first refiner",
         "first discriminator", "updates", "export", "exit")


def _timed(module, name: str, events: list, label: str) -> None:
    """Replaces `module.name` by a wrapper appending `(label, start, end)` to `events`."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        start, cpu = time.time(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            events.append((label, start, time.time(), time.process_time() - cpu))

    setattr(module, name, wrapper)


def _time_phase_functions(events: list) -> None:
    """Times every call of SimGAN's per-step train function, by phase."""
    from simgan_tf.modeling import simgan  # pylint: disable=import-outside-toplevel

    make = simgan.SimGAN.make_train_function

    def make_timed(self, force=False):
        train_function = make(self, force=force)

        def timed(iterator):
            phase = self.schedule.phase(self.step).name.lower()
            start, cpu = time.time(), time.process_time()
            logs = train_function(iterator)
            float(next(iter(logs.values())))  # wait for the update
            events.append((f"call {phase}", start, time.time(), time.process_time() - cpu))
            return logs

        self.train_function = timed
        return timed

    simgan.SimGAN.make_train_function = make_timed


def child(argv: list[str]) -> None:
    """Runs train.py's main with timestamps; writes them to `--timeline` as JSON."""
    from simgan_tf_cli import train  # pylint: disable=import-outside-toplevel

    events = [("train.py imported", _START, _IMPORTED["train"], _IMPORTED["cpu"])]
    start, cpu = time.time(), time.process_time()
    from simgan_tf import distribute  # pylint: disable=import-outside-toplevel
    from simgan_tf.training import loop, train_lib  # pylint: disable=import-outside-toplevel

    events.append(("tensorflow", start, time.time(), time.process_time() - cpu))
    _timed(distribute, "build_strategy", events, "strategy")
    for name, label in (("prepare_data", "data"), ("build_input", "input"),
                        ("build_model", "model"), ("restore_checkpoint", "restore"),
                        ("make_callbacks", "callbacks"), ("export_and_clean_up", "export"),
                        ("train", "train")):
        _timed(train_lib, name, events, label)
    _timed(loop, "run", events, "loop")
    _time_phase_functions(events)
    try:
        train.main([argv[0]])
    finally:
        with open(FLAGS.timeline, "w", encoding="utf-8") as f:
            json.dump({"start": _START, "events": events}, f)


def parts_of(timeline: dict, exited: float) -> dict:
    """`{part: (wall seconds, CPU seconds)}` of `PARTS` from a child's timeline.

    CPU seconds (`time.process_time`, all threads of the child) are given because on a
    shared machine wall time grows with the other tenants' load; `exit` has none.
    """
    spans, calls = {}, {}
    for label, start, end, cpu in timeline["events"]:
        if label.startswith("call "):
            calls.setdefault(label[5:], []).append((end - start, cpu))
        else:
            wall, total = spans.get(label, (0.0, 0.0))
            spans[label] = (wall + end - start, total + cpu)
    imported = next(e for l, _, e, _ in timeline["events"] if l == "train.py imported")
    train_end = next(e for l, _, e, _ in timeline["events"] if l == "train")
    parts = {name: spans[label] for name, label in (
        ("tensorflow", "tensorflow"), ("strategy", "strategy"), ("data", "data"),
        ("input", "input"), ("model", "model"), ("export", "export"))}
    parts["imports"] = (imported - timeline["start"], spans["train.py imported"][1])
    parts["restore"] = tuple(a + b for a, b in zip(spans["restore"], spans["callbacks"]))
    parts["exit"] = (exited - train_end, 0.0)
    traced = (0.0, 0.0)
    for phase, durations in calls.items():
        later = [statistics.median(d[k] for d in durations[1:]) if len(durations) > 1
                 else 0.0 for k in (0, 1)]
        parts[f"first {phase}"] = tuple(durations[0][k] - later[k] for k in (0, 1))
        traced = tuple(traced[k] + parts[f"first {phase}"][k] for k in (0, 1))
    parts["updates"] = tuple(spans["loop"][k] - traced[k] for k in (0, 1))
    return parts


def run_once(data_dir: str, extra: list[str]) -> dict:
    """One train.py run in a fresh process; its parts in seconds."""
    work = tempfile.mkdtemp(prefix="startup-")
    timeline = os.path.join(work, "timeline.json")
    try:
        command = [sys.executable, "-m", "bench.startup", "--child",
                   f"--timeline={timeline}", f"--data_dir={data_dir}",
                   f"--model_dir={os.path.join(work, 'run')}", *TRAIN_FLAGS, *extra]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        launched = time.time()
        result = subprocess.run(command, capture_output=True, text=True, env=env,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        exited = time.time()
        if result.returncode != 0:
            raise RuntimeError(f"train.py failed ({result.returncode}):\n{result.stderr[-3000:]}")
        with open(timeline, encoding="utf-8") as f:
            data = json.load(f)
        parts = parts_of(data, exited)
        wall, cpu = parts["imports"]
        parts["imports"] = (wall + data["start"] - launched, cpu)  # interpreter start
        return parts
    finally:
        shutil.rmtree(work, ignore_errors=True)


def small_data(folder: str) -> str:
    from simgan_tf.data import builtin  # pylint: disable=import-outside-toplevel

    for split, domain, seed in (("synthetic", "synthetic", 1), ("real", "real", 2)):
        builtin.write_simulator_split(folder, split, domain, 256, seed=seed)
    return folder


def report(runs: list) -> None:
    """Prints the table of parts: wall and CPU seconds, medians and spreads."""
    def cell(values):
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    print("\n| part | wall s, median (min-max) | CPU s, median (min-max) |\n|---|---|---|")
    for part in PARTS:
        print(f"| {part} | {cell([r.get(part, (0, 0))[0] for r in runs])} | "
              f"{cell([r.get(part, (0, 0))[1] for r in runs])} |")
    for k, what in ((0, "wall"), (1, "CPU")):
        fixed = [sum(v[k] for name, v in r.items() if name != "updates") for r in runs]
        print(f"fixed total (all but updates), {what}: {cell(fixed)} s")


def main(argv):
    if FLAGS.child:
        child(argv)
        return
    work = tempfile.mkdtemp(prefix="startup-data-")
    try:
        data_dir = FLAGS.data_folder or small_data(work)
        runs = []
        for repeat in range(FLAGS.repeats):
            runs.append(run_once(data_dir, argv[1:]))
            fixed = sum(v[0] for k, v in runs[-1].items() if k != "updates")
            print(f"  run {repeat}: fixed {fixed:.1f} s, updates {runs[-1]['updates'][0]:.1f} s",
                  flush=True)
        report(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


_IMPORTED = {}

if __name__ == "__main__":
    if "--child" in sys.argv:
        from simgan_tf_cli import train  # noqa: F401  (defines train.py's flags)
        _IMPORTED["train"], _IMPORTED["cpu"] = time.time(), time.process_time()
        import simgan_tf_cli  # the child ends as train.py does (`run_main`)
        simgan_tf_cli.run_main(main)
    app.run(main)
