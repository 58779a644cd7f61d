"""Checks what README's quick start made: config, checkpoints, TensorBoard events with
images, and an export that `saved_model_cli` lists with both signatures."""

import glob
import json
import os
import subprocess
import sys

import simgan_tf  # noqa: F401  before TensorFlow
import tensorflow as tf


def main(run_dir: str) -> None:
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["name"] == "gaze_demo", config["name"]
    state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
    assert state and state.model_checkpoint_path.endswith("ckpt-900"), state
    images = set()
    for path in glob.glob(os.path.join(run_dir, "logs", "train", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    images.add(value.tag)
    assert images, f"no image summaries under {run_dir}/logs/train"
    export = os.path.join(run_dir, "export", "refiner", "900")
    listing = subprocess.run(["saved_model_cli", "show", "--all", "--dir", export],
                             capture_output=True, text=True, check=True).stdout
    for signature in ("serving_default", "serving_bytes"):
        assert f"signature_def['{signature}']" in listing, listing[-2000:]
    print(f"quick start OK: {run_dir}: config, ckpt-900, {len(images)} image tags, export "
          "with serving_default and serving_bytes")


if __name__ == "__main__":
    main(sys.argv[1])
