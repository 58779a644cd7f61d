"""Which of the eye simulator's camera effects the gaze estimator and the realism
classifier depend on: the oracle retrained with one effect left out at a time.

The simulator's `real` eyes are its clean renders plus a chain of camera effects (glint,
illumination, skin texture, blur, contrast, noise, JPEG, resampling; see
`simgan_tf.simulators.eyes`). For each effect this renders the `real` training split
again with only that effect turned off (same seeds, so the same eyes, gaze labels and
every other effect), trains Table 2's gaze estimator on it and tests on the labelled
`real_test` eyes, as `evaluate.py` does (with its realism score against `real_test`).

Read against the oracle (the same estimator trained on the `real` split as it is) and
the synthetic row, an effect whose absence costs many degrees is one a refiner must
reproduce for its eyes to train an estimator that works on real ones; one whose absence
costs nothing is not where the synthetic-to-real gap lies. The realism column says which
effects the realism classifier keys on.

Usage:
  python -m experiments.camera_effects --work_dir=runs/camera-effects \
      [--effects=glint,illumination,glint+illumination,...] [--seed=0]

Renders into `<work_dir>/data` (the simulator's `real`, `synthetic` and `real_test`
splits linked beside the new ones); finished renders and evaluations are not repeated.
Writes `<work_dir>/camera_effects.md`.
"""

from __future__ import annotations

import dataclasses
import os

from absl import app, flags

from simgan_tf import config as config_lib
from simgan_tf.data import builtin, schema
from simgan_tf.simulators import eyes
from simgan_tf.training import run_lock
from experiments import common, tables

# The `SimulatorConfig` fields that turn each camera effect off. JPEG cannot be skipped
# by configuration; quality 95, the highest allowed, leaves the least of it.
EFFECTS = {
    "glint": {"glint_range": (0.0, 0.0)},
    "illumination": {"illumination_strength": 0.0},
    "skin_texture": {"skin_texture_amplitude": 0.0},
    "blur": {"blur_sigma_range": (0.0, 0.0)},
    "contrast": {"contrast_range": (1.0, 1.0), "brightness_range": (0.0, 0.0)},
    "noise": {"read_noise_range": (0.0, 0.0), "shot_noise": 0.0},
    "jpeg": {"jpeg_quality_range": (95, 95)},
    "resampling": {"camera_scale": 1.0, "resample_jitter": 0.0},
}

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags: defined only when it runs, so importing this module (as the
    tests do) leaves the global flag registry to other commands."""
    flags.DEFINE_string("work_dir", "runs/camera-effects", "Where renders, results and the "
                        "table go.")
    flags.DEFINE_list("effects", list(EFFECTS), f"Effects to leave out, one at a time: "
                      f"{', '.join(EFFECTS)}; `a+b` leaves out several together.")
    flags.DEFINE_integer("seed", 0, "Estimator and realism classifier seed (`evaluate.py "
                         "--seed`).")
    flags.DEFINE_string("cache_dir", None, "Simulator data cache (default: "
                        "$SIMGAN_TF_CACHE or ~/.cache/simgan_tf).")


def config_without(effect: str) -> eyes.SimulatorConfig:
    """The default simulator config with `effect` turned off: a key of `EFFECTS`, or
    several joined by `+` (all of them off)."""
    changes = {}
    for name in effect.split("+"):
        if name not in EFFECTS:
            raise ValueError(f"Unknown effect {name!r} in {effect!r}: expected effects in "
                             f"{sorted(EFFECTS)}, joined by '+'.")
        changes.update(EFFECTS[name])
    return dataclasses.replace(eyes.SimulatorConfig(), **changes)


def split_name(effect: str) -> str:
    """`real_without_<effect>`, several effects joined by `_and_`."""
    return "real_without_" + "_and_".join(effect.split("+"))


def render_without(data_dir: str, effect: str, count: int, seed: int) -> str:
    """Writes split `real_without_<effect>` (`count` real eyes of split seed `seed`, the
    effect off) into `data_dir` unless it is there with `count` images; returns its name."""
    split = split_name(effect)
    info = schema.read_dataset_info(data_dir)
    if split in info.splits and info.splits[split].count == count:
        return split
    builtin.write_simulator_split(data_dir, split, "real", count, seed,
                                  config=config_without(effect))
    return split


def format_table(rows: list[tuple[str, float, float | None]], oracle: float,
                 synthetic: float) -> str:
    """Markdown: per training set its error, the rise over the oracle and that rise as a
    share of the synthetic-to-oracle gap."""
    lines = ["| estimator trained on | mean error (deg) | over the oracle (deg) "
             "| share of the synthetic-to-oracle gap | realism accuracy |",
             "|---|---|---|---|---|"]
    for name, error, accuracy in rows:
        rise = error - oracle
        share = 1.0 - tables.gap_closed(synthetic, error, oracle)
        realism = "-" if accuracy is None else f"{accuracy * 100:.1f}%"
        lines.append(f"| {name} | {error:.2f} | {rise:+.2f} | {share * 100:.0f}% "
                     f"| {realism} |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = [e for e in FLAGS.effects if any(n not in EFFECTS for n in e.split("+"))]
    if unknown:
        raise app.UsageError(f"Unknown effects {unknown}; expected some of {list(EFFECTS)}.")
    work_dir = os.path.abspath(FLAGS.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    with run_lock.RunLock(work_dir, holder_kind="camera-effects driver",
                          folder_flag="--work_dir"):
        data = config_lib.get_preset("gaze_demo").data
        source = common.simulator_data(FLAGS.cache_dir, data)
        data_dir = os.path.join(work_dir, "data")
        common.link_data(source, data_dir, ["synthetic", "real", "real_test"])
        real_seed = builtin.split_seeds(0)["real"]

        def evaluate(split: str) -> tuple[float, float | None]:
            """(mean error in degrees, realism accuracy) of the estimator trained on it."""
            summary = tables.evaluate(tables.GAZE, data_dir, split,
                                      os.path.join(work_dir, f"eval-{split}"), FLAGS.seed, [],
                                      os.path.join(work_dir, f"log-{split}.txt"))
            return summary["mean"], summary.get("realism", {}).get("accuracy")

        oracle, oracle_realism = evaluate("real")
        synthetic, synthetic_realism = evaluate("synthetic")
        rows = [("real (the oracle)", oracle, oracle_realism)]
        for effect in FLAGS.effects:
            split = render_without(data_dir, effect, data.simulator_num_real, real_seed)
            error, accuracy = evaluate(split)
            rows.append((f"real without {effect.replace('_', ' ').replace('+', ' and ')}",
                         error, accuracy))
            print(f"without {effect}: {error:.2f} deg", flush=True)
        rows.append(("synthetic", synthetic, synthetic_realism))
        table = format_table(rows, oracle, synthetic)
        path = os.path.join(work_dir, "camera_effects.md")
        with open(path, "w", encoding="utf-8") as f:
            f.write(table + "\n")
        print(table)
        print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
