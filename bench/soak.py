#!/usr/bin/env python3
"""Soak test of resuming: SIGKILL a training run at random moments, resume, compare.

Trains a tiny deterministic configuration (the built-in eye simulator, a refiner of 8
filters and 1 ResNet block, batch 8, `--deterministic`) for `--updates` updates twice,
each `train.py` in a subprocess:

  1. the reference: one uninterrupted run;
  2. the soaked run: started, SIGKILLed at a random moment, started again with the same
     command (which takes over the lock the killed process left and resumes from the
     latest intact checkpoint), `--kills` times, then left to finish. The kill moments
     are seeded (`--seed`): `--kills` distinct target steps drawn uniformly over the run,
     and for each a random delay of up to `--max_delay` seconds after the run's latest
     checkpoint reached the target, cut short when the next checkpoint appears (so every
     restart makes progress, no kill comes after the run has finished, and kills land
     during updates, saves and start-up alike).

It then compares every tensor of both final checkpoints (all but `save_counter`, which
counts one process's saves) and prints what it did and the result. Under
`runtime.deterministic` they are expected bit-identical; the exit status is 0 if they
are, 1 if not.

    python -m bench.soak --updates=3000 --kills=6 --seed=0

`tests/test_soak.py` runs a short version. Run from the checkout root.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from bench.common import ROOT

FLAGS = flags.FLAGS
flags.DEFINE_integer("updates", 3000, "Updates of the run (pretraining included); rounded "
                     "down to whole Algorithm 1 iterations.")
flags.DEFINE_integer("kills", 6, "SIGKILLs of the soaked run.")
flags.DEFINE_integer("seed", 0, "Seed of the kill moments (and of the training).")
flags.DEFINE_float("max_delay", 3.0, "Longest wait (s) between a new checkpoint and a kill.")
flags.DEFINE_string("work_dir", None, "Where both runs and the simulator cache go "
                    "(default: a temporary folder, deleted after).")

SIMULATOR_IMAGES = 512  # per split: small, so the cache is rendered in seconds


@dataclasses.dataclass
class SoakResult:
    """What `soak` did.

    Attributes:
      total: updates of the run.
      killed_at: latest checkpoint step on disk at each kill.
      resumed_from: step each restart resumed from (from its log).
      takeovers: restarts that took over the killed process's run lock.
      missed: kills that came after the run had finished (none expected).
      tensors: tensors compared.
      different: names of the tensors that differ (empty: bit-identical).
      seconds: wall time.
    """
    total: int
    killed_at: list
    resumed_from: list
    takeovers: int
    missed: int
    tensors: int
    different: list
    seconds: float

    @property
    def identical(self) -> bool:
        return self.tensors > 0 and not self.different


def schedule(updates: int) -> dict:
    """Pretraining counts and iterations that add up to about `updates` updates."""
    pretrain_refiner = max(2, updates // 10)
    pretrain_discriminator = max(1, updates // 20)
    steps = max(1, (updates - pretrain_refiner - pretrain_discriminator) // 3)
    return dict(pretrain_refiner_steps=pretrain_refiner,
                pretrain_discriminator_steps=pretrain_discriminator, steps=steps,
                total=pretrain_refiner + pretrain_discriminator + 3 * steps)


def checkpoint_every(updates: int) -> int:
    return max(5, schedule(updates)["total"] // 25)


def command(model_dir: str, cache_dir: str, updates: int, seed: int) -> list[str]:
    """The `train.py` command of both runs."""
    s = schedule(updates)
    every = checkpoint_every(updates)
    return [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=gaze",
            f"--model_dir={model_dir}", f"--cache_dir={cache_dir}", "--batch_size=8",
            f"--steps={s['steps']}", f"--pretrain_refiner_steps={s['pretrain_refiner_steps']}",
            f"--pretrain_discriminator_steps={s['pretrain_discriminator_steps']}",
            "--history_size=16", f"--checkpoint_every={every}", "--deterministic",
            "--noexport", f"--log_every={every}", "--image_every=1000000", f"--seed={seed}",
            "--shuffle_buffer=64", "--refiner_filters=8", "--refiner_blocks=1",
            f"--config=data.simulator_num_synthetic={SIMULATOR_IMAGES}",
            f"--config=data.simulator_num_real={SIMULATOR_IMAGES}",
            "--config=data.simulator_num_real_test=8", "--verbosity=0"]


def latest_step(model_dir: str) -> int:
    """The highest checkpoint step on disk (0 if none)."""
    steps = [int(p.rsplit("-", 1)[1][: -len(".index")])
             for p in glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-*.index"))]
    return max(steps, default=0)


def _exit_status(code: int) -> str:
    """`exited with 1`, or `died of SIGSEGV (signal 11)` for a process a signal ended."""
    if code >= 0:
        return f"exited with {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "an unknown signal"
    return f"died of {name} (signal {-code})"


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_to_end(cmd: list[str], log_path: str) -> None:
    with open(log_path, "a") as log:
        code = subprocess.call(cmd, stdout=log, stderr=log, cwd=ROOT, env=_env())
    if code:
        raise RuntimeError(f"{' '.join(cmd)} {_exit_status(code)}; see {log_path}")


def kill_targets(rng: random.Random, total: int, every: int, kills: int) -> list[int]:
    """`kills` distinct checkpoint steps spread over the run (each a multiple of `every`,
    the last ones left out so that the run cannot finish before its kill)."""
    steps = list(range(every, total - 2 * every, every))
    return sorted(rng.sample(steps, min(kills, len(steps))))


def kill_once(cmd: list[str], model_dir: str, log_path: str, target: int, delay: float
              ) -> int | None:
    """Starts the run, SIGKILLs it `delay` s after its latest checkpoint reached `target`
    (or went past the one on disk at the start, whichever is later).

    Returns:
      The latest checkpoint step at the kill, `None` if the run finished first.
    """
    target = max(target, latest_step(model_dir) + 1)
    with open(log_path, "a") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT, env=_env())
    while latest_step(model_dir) < target and process.poll() is None:
        time.sleep(0.02)
    # Wait out the delay, but no longer than until the next checkpoint: a fast run could
    # otherwise finish inside the delay, and the targets leave two checkpoints after each.
    reached, deadline = latest_step(model_dir), time.time() + delay
    while (time.time() < deadline and process.poll() is None
           and latest_step(model_dir) <= reached):
        time.sleep(0.02)
    if process.poll() is not None:
        if process.returncode:
            raise RuntimeError(f"the run {_exit_status(process.returncode)} before its "
                               f"kill; see {log_path}")
        return None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return latest_step(model_dir)


def compare(reference_dir: str, soaked_dir: str, total: int) -> tuple[int, list]:
    """Tensors compared and the names of those that differ, in both final checkpoints."""
    import numpy as np

    from simgan_tf.training import checkpointing

    def tensors(model_dir):
        prefix = os.path.join(model_dir, "checkpoints", f"ckpt-{total}")
        return {k: v for k, v in checkpointing.read_tensors(prefix).items()
                if not k.startswith("save_counter")}

    expected, got = tensors(reference_dir), tensors(soaked_dir)
    different = sorted(set(expected) ^ set(got))
    different += [k for k in sorted(set(expected) & set(got))
                  if not np.array_equal(expected[k], got[k])]
    return len(expected), different


def soak(work_dir: str, *, updates: int, kills: int, seed: int,
         max_delay: float = 3.0) -> SoakResult:
    """Runs the reference and the soaked run in `work_dir`; see the module docstring."""
    start = time.time()
    cache_dir = os.path.join(work_dir, "cache")
    reference, soaked = os.path.join(work_dir, "reference"), os.path.join(work_dir, "soaked")
    log_path = os.path.join(work_dir, "soak.log")
    total = schedule(updates)["total"]
    run_to_end(command(reference, cache_dir, updates, seed), log_path)
    rng, killed_at, missed = random.Random(seed), [], 0
    soaked_cmd = command(soaked, cache_dir, updates, seed)
    for target in kill_targets(rng, total, checkpoint_every(updates), kills):
        step = kill_once(soaked_cmd, soaked, log_path, target, rng.uniform(0.0, max_delay))
        if step is None:
            missed += 1
            break
        killed_at.append(step)
    run_to_end(soaked_cmd, log_path)
    log = open(log_path).read()
    resumed = [int(part.split(" at step ")[1].split(".")[0])
               for part in log.split("Resumed from ")[1:]]
    tensors, different = compare(reference, soaked, total)
    return SoakResult(total=total, killed_at=killed_at, resumed_from=resumed,
                      takeovers=log.count("Taking over the run lock"), missed=missed,
                      tensors=tensors, different=different, seconds=time.time() - start)


def report(result: SoakResult, updates: int, kills: int, seed: int) -> str:
    verdict = ("bit-identical" if result.identical else
               f"DIFFERENT: {len(result.different)} tensors ({', '.join(result.different[:5])})")
    return "\n".join([
        f"soak: {result.total} updates (asked {updates}), {kills} SIGKILLs asked, seed {seed}",
        f"  killed with the latest checkpoint at steps: {result.killed_at}"
        + (f" ({result.missed} kill(s) came after the run finished)" if result.missed else ""),
        f"  restarts resumed from steps: {result.resumed_from}",
        f"  stale run locks taken over: {result.takeovers}",
        f"  final checkpoint vs the uninterrupted run: {result.tensors} tensors, {verdict}",
        f"  wall time: {result.seconds:.0f} s"])


def main(argv):
    del argv
    if FLAGS.work_dir:
        os.makedirs(FLAGS.work_dir, exist_ok=True)
        result = soak(FLAGS.work_dir, updates=FLAGS.updates, kills=FLAGS.kills,
                      seed=FLAGS.seed, max_delay=FLAGS.max_delay)
    else:
        with tempfile.TemporaryDirectory() as work_dir:
            result = soak(work_dir, updates=FLAGS.updates, kills=FLAGS.kills,
                          seed=FLAGS.seed, max_delay=FLAGS.max_delay)
    print(report(result, FLAGS.updates, FLAGS.kills, FLAGS.seed))
    sys.exit(0 if result.identical else 1)


if __name__ == "__main__":
    app.run(main)
