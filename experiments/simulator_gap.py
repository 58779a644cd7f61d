"""Measures the built-in eye simulator's domain gap with a small gaze estimator.

Trains one small CNN gaze regressor on `synthetic` and one on `real` images (disjoint
seeds per split), tests both on held-out `synthetic` and `real` images, and prints the
mean angular error in degrees. The gap is the point of the simulator: trained-on-synthetic
should be clearly worse on real than on synthetic, while trained-on-real should do well on
real (the real domain keeps the gaze recoverable).

The angular error is the angle between the 3D unit gaze vectors of label and prediction,
`metrics.gaze_to_vector`: `(-cos(p) sin(y), -sin(p), -cos(p) cos(y))`.

Usage:
  python -m experiments.simulator_gap [--n_train 8000] [--n_test 2000] [--epochs 12]
      [--grid /tmp/simulator_grid.png]
"""

from __future__ import annotations

import time

from absl import app, flags
import numpy as np

from simgan_tf.evaluation import metrics
from simgan_tf.simulators import eyes
from experiments.common import to_inputs

FLAGS = flags.FLAGS
flags.DEFINE_integer("n_train", 8000, "Training images per domain.")
flags.DEFINE_integer("n_test", 2000, "Test images per domain.")
flags.DEFINE_integer("epochs", 12, "Training epochs of each estimator.")
flags.DEFINE_integer("batch_size", 64, "Batch size of each estimator.")
flags.DEFINE_string("grid", "/tmp/simulator_grid.png",
                    "PNG of synthetic and real samples; empty to skip.")

# Disjoint seeds per split; the label distribution is the same for all of them.
SEEDS = {("synthetic", "train"): 101, ("real", "train"): 202,
         ("synthetic", "test"): 303, ("real", "test"): 404}


def angular_error_degrees(gaze_true: np.ndarray, gaze_pred: np.ndarray) -> np.ndarray:
    """Angles between label and predicted gaze, `[n]` degrees, from `[n, 2]` radians."""
    return metrics.angular_errors(metrics.gaze_to_vector(gaze_true),
                                  metrics.gaze_to_vector(gaze_pred))


def build_estimator(keras, height: int, width: int):
    """A small CNN regressing (pitch, yaw) from `[batch, height, width, 1]` in [-1, 1]."""
    layers = keras.layers
    inputs = keras.Input((height, width, 1))
    x = inputs
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(2)(x)
    return keras.Model(inputs, outputs)


def save_grid(path: str, count: int = 8, seed: int = 7) -> None:
    """Saves `count` synthetic (top) and real (bottom) samples with the same gaze."""
    from PIL import Image
    gaze = eyes.sample_gaze(count, seed)
    rows = []
    for domain in eyes.DOMAINS:
        images = eyes.render(gaze, domain, seed)[..., 0]
        rows.append(np.concatenate(
            [np.pad(image, 2, constant_values=255) for image in images], axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 6, grid.shape[0] * 6),
                                 Image.NEAREST).save(path)


def measure_gap(keras, *, n_train: int, n_test: int, epochs: int, batch_size: int,
                config: eyes.SimulatorConfig = eyes.SimulatorConfig(),
                verbose: bool = True) -> dict:
    """Trains on each domain and tests on each domain.

    Returns:
      `{(train_domain, test_domain): mean angular error in degrees}`.
    """
    data = {}
    for (domain, split), seed in SEEDS.items():
        n = n_train if split == "train" else n_test
        start = time.perf_counter()
        images, gaze = eyes.simulate(n, domain, seed, config)
        if verbose:
            print(f"simulated {n} {domain}/{split} in {time.perf_counter() - start:.1f}s")
        data[domain, split] = (to_inputs(images), gaze)

    errors = {}
    for train_domain in eyes.DOMAINS:
        keras.utils.set_random_seed(0)
        model = build_estimator(keras, config.height, config.width)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        x, y = data[train_domain, "train"]
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
                  callbacks=[keras.callbacks.ReduceLROnPlateau(
                      monitor="loss", factor=0.5, patience=1)])
        if verbose:
            print(f"trained on {train_domain} in {time.perf_counter() - start:.1f}s")
        for test_domain in eyes.DOMAINS:
            x_test, y_test = data[test_domain, "test"]
            prediction = model.predict(x_test, batch_size=256, verbose=0)
            errors[train_domain, test_domain] = float(
                np.mean(angular_error_degrees(y_test, prediction)))
    return errors


def format_table(errors: dict) -> str:
    lines = ["mean angular error (degrees)",
             f"{'trained on':<12}{'test synthetic':>16}{'test real':>12}"]
    for train_domain in eyes.DOMAINS:
        lines.append(f"{train_domain:<12}{errors[train_domain, 'synthetic']:>16.2f}"
                     f"{errors[train_domain, 'real']:>12.2f}")
    lines.append(f"gap (trained on synthetic): real / synthetic = "
                 f"{errors['synthetic', 'real'] / errors['synthetic', 'synthetic']:.2f}x")
    lines.append(f"trained on real, on real / trained on synthetic, on synthetic = "
                 f"{errors['real', 'real'] / errors['synthetic', 'synthetic']:.2f}x")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = FLAGS
    import keras  # slow import: only when running
    if args.grid:
        save_grid(args.grid)
        print(f"wrote {args.grid}")
    errors = measure_gap(keras, n_train=args.n_train, n_test=args.n_test,
                         epochs=args.epochs, batch_size=args.batch_size)
    print()
    print(format_table(errors))


if __name__ == "__main__":
    app.run(main)
