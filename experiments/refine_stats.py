"""Prints how a trained refiner changes images: content kept, move toward real.

    python -m experiments.refine_stats --model_dir=runs/gaze_demo [--n=512]

Loads the run's config and its latest exported refiner, refines the first n synthetic
images of its data folder and compares them with the synthetic and the real images:

  * correlation: mean over images of the Pearson correlation between a refined image and
    its synthetic input (content kept: near 1; a collapsed refiner: near 0);
  * l1_per_pixel: mean |refined - synthetic| in [-1, 1] units;
  * mean, contrast (mean per-image standard deviation), noise (mean |horizontal pixel
    difference|) of synthetic, refined and real images.

No labels are used. These figures are a quick check, not the paper's evaluation.
"""

import os

from absl import app, flags

from experiments import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished training run.", required=True)
flags.DEFINE_integer("n", 512, "Images compared.")


def stats(images):
    import numpy as np

    return {"mean": float(images.mean()),
            "contrast": float(images.reshape(len(images), -1).std(1).mean()),
            "noise": float(np.abs(np.diff(images, axis=2)).mean())}


def main(argv):
    del argv
    import numpy as np

    from simgan_tf.data import reader
    from simgan_tf.serving import export

    config = common.load_run_config(FLAGS.model_dir)
    saved_model = common.latest_export(FLAGS.model_dir)
    if saved_model is None:
        raise SystemExit(f"No exported refiner in {FLAGS.model_dir}/export/refiner.")
    version = os.path.basename(saved_model)
    refine = export.load_refiner(saved_model)
    data_dir = config.data.data_dir

    def first(split):
        return np.stack([e["image"] for e in reader.read_split(data_dir, split)
                         .take(FLAGS.n).as_numpy_iterator()])

    synthetic, real = first(config.data.synthetic_split), first(config.data.real_split)
    refined = np.concatenate([refine(synthetic[i:i + 256]).numpy()
                              for i in range(0, len(synthetic), 256)])
    correlation = np.mean([np.corrcoef(r.ravel(), s.ravel())[0, 1]
                           for r, s in zip(refined, synthetic)])
    print(f"run {FLAGS.model_dir} (export version {version}), {len(synthetic)} images")
    print(f"correlation(refined, synthetic) {correlation:.3f}")
    print(f"l1_per_pixel |refined - synthetic| {np.abs(refined - synthetic).mean():.4f}")
    print(f"{'':10s} {'mean':>8s} {'contrast':>9s} {'noise':>8s}")
    for name, images in (("synthetic", synthetic), ("refined", refined), ("real", real)):
        s = stats(images)
        print(f"{name:10s} {s['mean']:8.4f} {s['contrast']:9.4f} {s['noise']:8.4f}")


if __name__ == "__main__":
    app.run(main)
