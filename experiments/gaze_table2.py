"""Reproduces the paper's Table 2 on the built-in eye simulator, over several seeds.

It trains the gaze estimator once on the synthetic split, then for each SimGAN seed S runs

  python train.py --dataset=gaze --seed=S --model_dir=<work>/simgan-S [TRAIN_FLAGS]
  python refine.py --saved_model=<work>/simgan-S/export/refiner/<step> \
      --input_dir=<data>/synthetic --output_dir=<work>/data-S/refined
  python evaluate.py --dataset=gaze --data_dir=<work>/data-S --seed=E \
      --train_splits=refined --test_split=real_test --output_dir=<work>/eval-S

where `<data>` is the simulator's cached data folder, `<work>/data-S` a data folder
holding links to its `synthetic` and `real_test` splits plus the refined split, and E the
estimator seed (`--estimator_seed`), the same for every training set, so that the rows
differ only in their training images. The synthetic baseline is

  python evaluate.py --dataset=gaze --data_dir=<work>/data --seed=E \
      --train_splits=synthetic --test_split=real_test --output_dir=<work>/eval-synthetic

It prints a table shaped like the paper's Table 2 (mean error and % of real test images
within d degrees, per training set and SimGAN seed, and the realism classifier's held-out
accuracy and cross-entropy) as Markdown into `<work>/table2.md`, and the cumulative
curves of every row on one figure, `<work>/curves.png` (the paper's Figure 7). Steps that
already finished (an export, a refined split, a results.json) are not run again, so an
interrupted run resumes.

Usage:
  python -m experiments.gaze_table2 --work_dir=runs/table2 --seeds=1,2,3 [--train_flags=...]
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

from simgan_tf.data import schema
from simgan_tf.evaluation import metrics
from experiments import common

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "runs/table2", "Where runs, data folders and the table go.")
flags.DEFINE_list("seeds", ["1", "2", "3"], "SimGAN seeds, one run each.")
flags.DEFINE_string("cache_dir", None, "Simulator data cache (default: $SIMGAN_TF_CACHE or "
                    "~/.cache/simgan_tf).")
flags.DEFINE_string("train_flags", "", "Extra train.py flags, space separated.")
flags.DEFINE_string("eval_flags", "", "Extra evaluate.py flags.")
flags.DEFINE_integer("estimator_seed", 0, "Seed of every estimator and realism classifier.")

THRESHOLDS = ("5", "7", "10")


def evaluate(data_dir: str, split: str, eval_dir: str, estimator_seed: int,
             eval_flags: list[str], log: str) -> dict:
    results_path = os.path.join(eval_dir, "results.json")
    if not os.path.exists(results_path):
        common.run(common.evaluate_command(data_dir, estimator_seed, split, eval_dir,
                                           eval_flags), log)
    with open(results_path, encoding="utf-8") as f:
        return json.load(f)["splits"][split]


def seed_run(seed: int, work_dir: str, data_dir: str, train_flags: list[str],
             estimator_seed: int, eval_flags: list[str]) -> dict:
    """Trains SimGAN with `seed`, refines the synthetic split, evaluates the refined one."""
    py = sys.executable
    model_dir = os.path.join(work_dir, f"simgan-{seed}")
    seed_data = os.path.join(work_dir, f"data-{seed}")
    log = os.path.join(work_dir, f"log-{seed}.txt")
    saved_model = common.latest_export(model_dir)
    if saved_model is None:
        common.run([py, "train.py", "--dataset=gaze", f"--seed={seed}",
                    f"--model_dir={model_dir}", *train_flags], log)
        saved_model = common.latest_export(model_dir)
        if saved_model is None:
            raise SystemExit(f"train.py exported no refiner into {model_dir}; see {log}")
    common.link_data(data_dir, seed_data, ["synthetic", "real_test"])
    if "refined" not in schema.read_dataset_info(seed_data).splits:
        common.run([py, "refine.py", f"--saved_model={saved_model}",
                    f"--input_dir={data_dir}/synthetic", f"--output_dir={seed_data}/refined"],
                   log)
    return evaluate(seed_data, "refined", os.path.join(work_dir, f"eval-{seed}"),
                    estimator_seed, eval_flags, log)


def _row(name: str, seed, s: dict) -> str:
    realism = s.get("realism", {})
    return (f"| {name} | {seed} | {s['mean']:.2f} | "
            + " | ".join(f"{s['within'][d]:.1f}" for d in THRESHOLDS)
            + f" | {realism.get('accuracy', float('nan')) * 100:.1f}% | "
            f"{realism.get('cross_entropy', float('nan')):.3f} |")


def table(synthetic: dict, refined: dict[int, dict]) -> str:
    """Markdown table: synthetic, then refined per SimGAN seed and their mean."""
    header = ("| training set | SimGAN seed | mean error (deg) | "
              + " | ".join(f"% within {d} deg" for d in THRESHOLDS)
              + " | realism accuracy | realism cross-entropy |")
    lines = [header, "|" + "---|" * (5 + len(THRESHOLDS)), _row("synthetic", "-", synthetic)]
    for seed, s in sorted(refined.items()):
        lines.append(_row("refined", seed, s))
    if refined:
        values = list(refined.values())
        mean = {"mean": sum(s["mean"] for s in values) / len(values),
                "within": {d: sum(s["within"][d] for s in values) / len(values)
                           for d in THRESHOLDS},
                "realism": {k: sum(s.get("realism", {}).get(k, float("nan")) for s in values)
                            / len(values) for k in ("accuracy", "cross_entropy")}}
        lines.append(_row("**refined, mean**",
                          f"{len(values)} seed{'s' if len(values) > 1 else ''}", mean))
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = FLAGS
    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    data_dir = common.simulator_data(args.cache_dir)
    train_flags = args.train_flags.split()
    if args.cache_dir:
        train_flags.append(f"--cache_dir={args.cache_dir}")
    eval_flags = args.eval_flags.split()
    base_data = os.path.join(work_dir, "data")
    common.link_data(data_dir, base_data, ["synthetic", "real_test"])
    synthetic = evaluate(base_data, "synthetic", os.path.join(work_dir, "eval-synthetic"),
                         args.estimator_seed, eval_flags,
                         os.path.join(work_dir, "log-synthetic.txt"))
    refined = {}
    for seed in (int(s) for s in args.seeds):
        refined[seed] = seed_run(seed, work_dir, data_dir, train_flags, args.estimator_seed,
                                 eval_flags)
        print(table(synthetic, refined), flush=True)
    text = table(synthetic, refined)
    with open(os.path.join(work_dir, "table2.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    curves = {"synthetic": synthetic,
              **{f"refined, SimGAN seed {seed}": s for seed, s in sorted(refined.items())}}
    plot = metrics.plot_curves(curves, os.path.join(work_dir, "curves.png"),
                               title="Gaze estimator trained on each set, tested on real_test")
    print(f"\nwrote {os.path.join(work_dir, 'table2.md')} and {plot}")


if __name__ == "__main__":
    app.run(main)
