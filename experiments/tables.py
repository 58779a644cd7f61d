"""The paper's Table 2 (gaze) and Table 4 (hand) protocol on a built-in simulator.

Shared by `experiments.gaze_table2` and `experiments.hand_table4`. For a task it trains
the estimator once on the synthetic split (and, with `oracle`, once on the simulator's
labelled `real` split: the oracle row), then for each SimGAN seed S runs

  python train.py --dataset=<task> --seed=S --model_dir=<work>/simgan-S [TRAIN_FLAGS]
  python refine.py --saved_model=<work>/simgan-S/export/refiner/<step> \
      --input_dir=<data>/synthetic --output_dir=<work>/data-S/refined
  python evaluate.py --dataset=<task> --data_dir=<work>/data-S --seed=E \
      --train_splits=refined --test_split=real_test --output_dir=<work>/eval-S

where `<data>` is the simulator's cached data folder, `<work>/data-S` a data folder
holding links to its `synthetic` and `real_test` splits plus the refined split, and E the
estimator seed, the same for every training set, so that the rows differ only in their
training images. The synthetic baseline (and the oracle) are

  python evaluate.py --dataset=<task> --data_dir=<work>/data --seed=E \
      --train_splits=synthetic --test_split=real_test --output_dir=<work>/eval-synthetic

It writes a Markdown table (mean error and % of real test images within d, per training
set and SimGAN seed, the realism classifier's held-out accuracy and cross-entropy, and
the gap closed: (synthetic - refined) / (synthetic - oracle) when there is an oracle row)
into `<work>/<table file>`, and the cumulative curves of every row on one figure,
`<work>/curves.png` (the paper's Figures 7 and 12). Steps that already finished (an
export, a refined split, a results.json) are not run again, so an interrupted run
resumes. The driver holds `<work>/run.lock` (`run_lock.RunLock`) for its whole run, so a
second driver on the same work folder stops at once with an error naming the first,
instead of training and evaluating the same seeds into the same folders.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from absl import flags

from simgan_tf import config as config_lib
from simgan_tf.data import builtin, schema
from simgan_tf.evaluation import metrics
from simgan_tf.training import run_lock
from experiments import common


@dataclasses.dataclass(frozen=True)
class Task:
    """What differs between Table 2 and Table 4.

    Attributes:
      name: `train.py` and `evaluate.py`'s `--dataset` (`gaze` or `hand`).
      preset: the demo preset SimGAN trains with on the simulator.
      thresholds: the d of the "% within d" columns.
      unit: the error's unit in the headers.
      table_file: the Markdown file written into the work folder.
      title: the curves' title.
      within_label: what "% within d" counts (images, or images whose joints all are).
    """
    name: str
    preset: str
    thresholds: tuple[str, ...]
    unit: str
    table_file: str
    title: str
    within_label: str = "% within"


GAZE = Task("gaze", "gaze_demo", ("5", "7", "10"), "deg", "table2.md",
            "Gaze estimator trained on each set, tested on real_test")
HAND = Task("hand", "hand_demo", ("5", "7", "10"), "px", "table4.md",
            "Hand estimator trained on each set, tested on real_test: images whose joints "
            "are all within d", within_label="% all joints within")


def define_flags(work_dir: str) -> None:
    """The flags of a table's entry point (`work_dir`: the default work folder)."""
    flags.DEFINE_string("work_dir", work_dir, "Where runs, data folders and the table go.")
    flags.DEFINE_list("seeds", ["1", "2", "3"], "SimGAN seeds, one run each.")
    flags.DEFINE_string("cache_dir", None, "Simulator data cache (default: $SIMGAN_TF_CACHE "
                        "or ~/.cache/simgan_tf).")
    flags.DEFINE_string("train_flags", "", "Extra train.py flags, space separated.")
    flags.DEFINE_string("eval_flags", "", "Extra evaluate.py flags.")
    flags.DEFINE_integer("estimator_seed", 0, "Seed of every estimator and realism "
                         "classifier.")


def simulator_data(task: Task, cache_dir: str | None) -> str:
    """The task's simulator data folder at its demo preset's sizes, rendered if missing."""
    d = config_lib.get_preset(task.preset).data
    return builtin.ensure_simulator_data(
        cache_dir, num_synthetic=d.simulator_num_synthetic, num_real=d.simulator_num_real,
        num_real_test=d.simulator_num_real_test, kind=d.simulator, size=d.image_height)


def evaluate(task: Task, data_dir: str, split: str, eval_dir: str, estimator_seed: int,
             eval_flags: list[str], log: str) -> dict:
    """`evaluate.py` on `split` (once: a results.json is reused); its figures."""
    results_path = os.path.join(eval_dir, "results.json")
    if not os.path.exists(results_path):
        common.run(common.evaluate_command(data_dir, estimator_seed, split, eval_dir,
                                           eval_flags, task=task.name), log)
    with open(results_path, encoding="utf-8") as f:
        return json.load(f)["splits"][split]


def seed_run(task: Task, seed: int, work_dir: str, data_dir: str, train_flags: list[str],
             estimator_seed: int, eval_flags: list[str]) -> dict:
    """Trains SimGAN with `seed`, refines the synthetic split, evaluates the refined one."""
    py = sys.executable
    model_dir = os.path.join(work_dir, f"simgan-{seed}")
    seed_data = os.path.join(work_dir, f"data-{seed}")
    log = os.path.join(work_dir, f"log-{seed}.txt")
    saved_model = common.latest_export(model_dir)
    if saved_model is None:
        common.run([py, "train.py", f"--dataset={task.name}", f"--seed={seed}",
                    f"--model_dir={model_dir}", *train_flags], log)
        saved_model = common.latest_export(model_dir)
        if saved_model is None:
            raise SystemExit(f"train.py exported no refiner into {model_dir}; see {log}")
    common.link_data(data_dir, seed_data, ["synthetic", "real_test"])
    if "refined" not in schema.read_dataset_info(seed_data).splits:
        common.run([py, "refine.py", f"--saved_model={saved_model}",
                    f"--input_dir={data_dir}/synthetic", f"--output_dir={seed_data}/refined"],
                   log)
    return evaluate(task, seed_data, "refined", os.path.join(work_dir, f"eval-{seed}"),
                    estimator_seed, eval_flags, log)


def gap_closed(synthetic: float, refined: float, oracle: float) -> float:
    """(synthetic - refined) / (synthetic - oracle): the share of the gap to the oracle
    that refinement closes (1: as good as the oracle; below 0: worse than synthetic)."""
    return (synthetic - refined) / (synthetic - oracle)


def _realism_cell(realism: dict) -> str:
    """The realism accuracy in percent; with several classifiers, their mean +- sd."""
    text = f"{realism.get('accuracy', float('nan')) * 100:.1f}%"
    if len(realism.get("accuracies", ())) > 1:
        text += f" ± {realism['accuracy_sd'] * 100:.1f}"
    return text


def _row(task: Task, name: str, seed, s: dict, gap: str) -> str:
    realism = s.get("realism", {})
    return (f"| {name} | {seed} | {s['mean']:.2f} | "
            + " | ".join(f"{s['within'][d]:.1f}" for d in task.thresholds)
            + f" | {_realism_cell(realism)} | "
            f"{realism.get('cross_entropy', float('nan')):.3f} | {gap} |")


def table(task: Task, synthetic: dict, refined: dict[int, dict],
          oracle: dict | None = None) -> str:
    """Markdown table: synthetic, refined per SimGAN seed and their mean, the oracle."""
    header = (f"| training set | SimGAN seed | mean error ({task.unit}) | "
              + " | ".join(f"{task.within_label} {d} {task.unit}" for d in task.thresholds)
              + " | realism accuracy | realism cross-entropy | gap closed |")

    def gap(s):
        if oracle is None:
            return "-"
        return f"{gap_closed(synthetic['mean'], s['mean'], oracle['mean']) * 100:.0f}%"

    lines = [header, "|" + "---|" * (6 + len(task.thresholds)),
             _row(task, "synthetic", "-", synthetic, "-")]
    for seed, s in sorted(refined.items()):
        lines.append(_row(task, "refined", seed, s, gap(s)))
    if refined:
        values = list(refined.values())
        mean = {"mean": sum(s["mean"] for s in values) / len(values),
                "within": {d: sum(s["within"][d] for s in values) / len(values)
                           for d in task.thresholds},
                "realism": {k: sum(s.get("realism", {}).get(k, float("nan")) for s in values)
                            / len(values) for k in ("accuracy", "cross_entropy")}}
        lines.append(_row(task, "**refined, mean**",
                          f"{len(values)} seed{'s' if len(values) > 1 else ''}", mean,
                          gap(mean)))
    if oracle is not None:
        lines.append(_row(task, "oracle (labelled real)", "-", oracle, "100%"))
    return "\n".join(lines)


def run(task: Task, args, *, oracle: bool = False) -> str:
    """The whole protocol with the flags of `define_flags`; returns the table.

    Raises:
      RunLockedError: another driver is running on `args.work_dir`.
    """
    work_dir = os.path.abspath(args.work_dir)
    with run_lock.RunLock(work_dir, holder_kind="table driver", folder_flag="--work_dir"):
        return _run(task, args, work_dir, oracle)


def _run(task: Task, args, work_dir: str, oracle: bool) -> str:
    data_dir = simulator_data(task, args.cache_dir)
    train_flags = args.train_flags.split()
    if args.cache_dir:
        train_flags.append(f"--cache_dir={args.cache_dir}")
    eval_flags = args.eval_flags.split()
    base_data = os.path.join(work_dir, "data")
    common.link_data(data_dir, base_data, ["synthetic", "real_test"]
                     + (["real"] if oracle else []))
    synthetic = evaluate(task, base_data, "synthetic", os.path.join(work_dir, "eval-synthetic"),
                         args.estimator_seed, eval_flags,
                         os.path.join(work_dir, "log-synthetic.txt"))
    oracle_row = None
    if oracle:
        oracle_row = evaluate(task, base_data, "real", os.path.join(work_dir, "eval-oracle"),
                              args.estimator_seed, eval_flags,
                              os.path.join(work_dir, "log-oracle.txt"))
    refined = {}
    for seed in (int(s) for s in args.seeds):
        refined[seed] = seed_run(task, seed, work_dir, data_dir, train_flags,
                                 args.estimator_seed, eval_flags)
        print(table(task, synthetic, refined, oracle_row), flush=True)
    text = table(task, synthetic, refined, oracle_row)
    with open(os.path.join(work_dir, task.table_file), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    curves = {"synthetic": synthetic,
              **{f"refined, SimGAN seed {seed}": s for seed, s in sorted(refined.items())}}
    if oracle_row is not None:
        curves["oracle (labelled real)"] = oracle_row
    plot = metrics.plot_curves(curves, os.path.join(work_dir, "curves.png"), title=task.title)
    print(f"\nwrote {os.path.join(work_dir, task.table_file)} and {plot}")
    return text
