"""Reproduces the paper's Table 2 on the built-in eye simulator, over several seeds.

For each seed S it runs the three user commands

  python train.py --dataset=gaze --seed=S --model_dir=<work>/simgan-S [TRAIN_FLAGS]
  python refine.py --saved_model=<work>/simgan-S/export/refiner/<step> \
      --input_dir=<data>/synthetic --output_dir=<work>/data-S/refined
  python evaluate.py --dataset=gaze --data_dir=<work>/data-S --seed=S \
      --train_splits=synthetic,refined --test_split=real_test --output_dir=<work>/eval-S

where `<data>` is the simulator's cached data folder and `<work>/data-S` a data folder
holding links to its `synthetic` and `real_test` splits plus the refined split, and prints
a table shaped like the paper's Table 2 (mean error and % of real test images within d
degrees, per training set and seed) as Markdown. Steps that already finished (an export,
a refined split, a results.json) are not run again, so an interrupted run resumes.

Usage:
  python bench/gaze_table2.py --work_dir=runs/table2 --seeds=1,2,3 [--train_flags=...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from simgan_tf import builtin_data, config as config_lib, schema  # noqa: E402

THRESHOLDS = ("5", "7", "10")


def run(command: list[str], log_path: str) -> None:
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        raise SystemExit(f"Command failed ({result.returncode}); see {log_path}")
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)


def link_data(source: str, target: str, splits: list[str]) -> None:
    """A data folder with symlinks to `splits` of `source` and their dataset.json entries."""
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


def seed_run(seed: int, work_dir: str, data_dir: str, train_flags: list[str],
             eval_flags: list[str]) -> dict:
    py = sys.executable
    model_dir = os.path.join(work_dir, f"simgan-{seed}")
    seed_data = os.path.join(work_dir, f"data-{seed}")
    eval_dir = os.path.join(work_dir, f"eval-{seed}")
    log = os.path.join(work_dir, f"log-{seed}.txt")
    export_base = os.path.join(model_dir, "export", "refiner")
    if not (os.path.isdir(export_base) and os.listdir(export_base)):
        run([py, "train.py", "--dataset=gaze", f"--seed={seed}", f"--model_dir={model_dir}",
             *train_flags], log)
    step = max(int(v) for v in os.listdir(export_base) if v.isdigit())
    link_data(data_dir, seed_data, ["synthetic", "real_test"])
    if "refined" not in schema.read_dataset_info(seed_data).splits:
        run([py, "refine.py", f"--saved_model={export_base}/{step}",
             f"--input_dir={data_dir}/synthetic", f"--output_dir={seed_data}/refined"], log)
    results_path = os.path.join(eval_dir, "results.json")
    if not os.path.exists(results_path):
        run([py, "evaluate.py", "--dataset=gaze", f"--data_dir={seed_data}", f"--seed={seed}",
             "--train_splits=synthetic,refined", "--test_split=real_test",
             f"--output_dir={eval_dir}", *eval_flags], log)
    with open(results_path, encoding="utf-8") as f:
        return json.load(f)


def table(results: dict[int, dict]) -> str:
    """Markdown table: one row per training set and seed, then the mean over seeds."""
    header = ("| training set | seed | mean error (deg) | "
              + " | ".join(f"% within {d} deg" for d in THRESHOLDS) + " | realism accuracy |")
    lines = [header, "|" + "---|" * (4 + len(THRESHOLDS))]
    for split in ("synthetic", "refined"):
        rows = []
        for seed, result in sorted(results.items()):
            s = result["splits"][split]
            rows.append([s["mean"], *(s["within"][d] for d in THRESHOLDS),
                         s.get("realism", {}).get("accuracy", float("nan")) * 100])
            lines.append(f"| {split} | {seed} | {s['mean']:.2f} | "
                         + " | ".join(f"{s['within'][d]:.1f}" for d in THRESHOLDS)
                         + f" | {rows[-1][-1]:.1f}% |")
        means = [sum(col) / len(col) for col in zip(*rows)]
        lines.append(f"| **{split}, mean** | {len(rows)} seeds | **{means[0]:.2f}** | "
                     + " | ".join(f"**{m:.1f}**" for m in means[1:-1])
                     + f" | **{means[-1]:.1f}%** |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="runs/table2")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--cache_dir", default=None,
                        help="Simulator data cache (default: $SIMGAN_TF_CACHE or "
                             "~/.cache/simgan_tf).")
    parser.add_argument("--train_flags", default="", help="Extra train.py flags, space separated.")
    parser.add_argument("--eval_flags", default="", help="Extra evaluate.py flags.")
    args = parser.parse_args(argv)

    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    d = config_lib.get_preset("gaze_demo").data
    data_dir = builtin_data.ensure_simulator_data(
        args.cache_dir, num_synthetic=d.simulator_num_synthetic,
        num_real=d.simulator_num_real, num_real_test=d.simulator_num_real_test)
    train_flags = args.train_flags.split()
    if args.cache_dir:
        train_flags.append(f"--cache_dir={args.cache_dir}")
    results = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        results[seed] = seed_run(seed, work_dir, data_dir, train_flags, args.eval_flags.split())
        print(table(results), flush=True)
    text = table(results)
    with open(os.path.join(work_dir, "table2.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(f"\nwrote {os.path.join(work_dir, 'table2.md')}")


if __name__ == "__main__":
    main()
