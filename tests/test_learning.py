"""SimGAN learns: refined images move toward the real domain and keep their content.

`real` is the synthetic pattern family (dark blobs on a striped background) shifted 50
gray levels darker plus noise. A short run must move the refiner's output toward the real
mean while each refined image stays close to its input (same blob, correlated pixels) and
refined images stay different from each other (no collapse to a constant image).
"""

import numpy as np

from simgan_tf import config as config_lib
from simgan_tf.data import reader
from simgan_tf.training import train_lib


def _darkest(images):
    flat = images.reshape(len(images), -1).argmin(1)
    return np.stack(np.unravel_index(flat, images.shape[1:3]), 1)


def test_refiner_moves_toward_real_and_keeps_content(shifted_data_dir, tmp_path):
    config = config_lib.override(config_lib.get_preset("gaze_demo"), {
        # The paper's refiner: its output is a function of its input.
        "refiner.grain": 0.0, "refiner.lighting": 0.0, "refiner.glint": 0.0,
        "data.data_dir": shifted_data_dir, "refiner.filters": 16, "refiner.num_blocks": 2,
        "train.batch_size": 16, "train.pretrain_refiner_steps": 60,
        "train.pretrain_discriminator_steps": 30, "train.steps": 100,
        "train.history_size": 320, "train.log_every": 50, "train.image_every": 1000,
        "train.checkpoint_every": 1000, "train.export": False, "train.seed": 2,
        "runtime.deterministic": True})
    model = train_lib.train(config, str(tmp_path / "run"), verbose=0).model

    synthetic = np.stack([e["image"] for e in reader.read_split(shifted_data_dir, "synthetic")
                          .take(128).as_numpy_iterator()])
    real = np.stack([e["image"] for e in reader.read_split(shifted_data_dir, "real")
                     .take(128).as_numpy_iterator()])
    refined = model.refiner(synthetic).numpy()

    gap = real.mean() - synthetic.mean()
    assert gap < -0.3  # real is ~50/127.5 darker
    moved = (refined.mean() - synthetic.mean()) / gap
    assert moved > 0.5, f"refined mean moved only {moved:.2f} of the way to real"
    assert np.abs(refined - synthetic).mean() < 1.5 * abs(gap)
    correlation = np.mean([np.corrcoef(r.ravel(), s.ravel())[0, 1]
                           for r, s in zip(refined, synthetic)])
    assert correlation > 0.5, f"refined images lost their content (corr {correlation:.2f})"
    blob_shift = np.abs(_darkest(refined[..., 0]) - _darkest(synthetic[..., 0])).sum(1)
    assert np.median(blob_shift) <= 2
    assert refined.std(axis=0).mean() > 0.5 * synthetic.std(axis=0).mean()  # not constant
