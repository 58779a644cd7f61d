"""The built-in datasets: the simulators' two domains written as data folders.

`ensure_simulator_data` returns a cached data folder with `synthetic/`, `real/` and
`real_test/`, rendered by the eye simulator (`eyes.py`: 35x55 grayscale eyes with
`label/gaze`) or the hand depth simulator (`hand.py`: depth in mm, background 0,
`pixel_range` [-1000, 2000], with `label/joints_uvd`), generating whatever is missing.
Generation is deterministic from the seed, so the same arguments give the same records.
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from simgan_tf.data import schema
from simgan_tf.data.writer import SplitWriter

CACHE_ENV = "SIMGAN_TF_CACHE"
# Bump when a simulator's images change, so stale caches are not reused.
SIMULATOR_DATA_VERSION = 3
KINDS = ("eyes", "hand")
HAND_PIXEL_RANGE = (-1000, 2000)  # as data_prep.nyu_hand: background 0 mm -> -1/3
_CHUNK = 2000


def default_cache_dir() -> str:
    """`$SIMGAN_TF_CACHE`, else `~/.cache/simgan_tf`."""
    return os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "simgan_tf")


def split_seeds(seed: int) -> dict[str, int]:
    """Seeds of the three splits of dataset seed `seed` (distinct, so no image repeats)."""
    return {"synthetic": 3 * seed + 1, "real": 3 * seed + 2, "real_test": 3 * seed + 3}


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"Expected simulator kind in {KINDS}. Received: {kind!r}")


def write_simulator_split(data_dir: str, split: str, domain: str, count: int, seed: int,
                          config=None, kind: str = "eyes") -> None:
    """Renders `count` images of `domain` and writes them as split `split`.

    Keys are `sim/<split>/<index>`. Eyes carry `label/gaze`, hands `label/joints_uvd`.

    Args:
      data_dir: data folder.
      split: split name.
      domain: `synthetic` or `real`.
      count: number of images.
      seed: split seed.
      config: `eyes.SimulatorConfig` or `hand.HandSimulatorConfig`
        (default settings when `None`).
      kind: `eyes` or `hand`.
    """
    _check_kind(kind)
    if kind == "eyes":
        from simgan_tf.simulators import eyes  # NumPy rendering, only needed when generating

        config = config or eyes.SimulatorConfig()
        shape, dtype, pixel_range = (config.height, config.width, 1), "uint8", None
        label, label_size, simulate = schema.LABEL_GAZE, 2, eyes.simulate
    else:
        from simgan_tf.simulators import hand

        config = config or hand.HandSimulatorConfig()
        shape, dtype, pixel_range = (config.size, config.size, 1), "uint16", HAND_PIXEL_RANGE
        label, label_size = schema.LABEL_JOINTS_UVD, 3 * hand.NUM_JOINTS
        simulate = hand.simulate
    source = {"generator": f"simgan_tf.simulators.{kind}",
              "domain": domain, "seed": seed, "simulator_data_version": SIMULATOR_DATA_VERSION}
    with SplitWriter(data_dir, split, domain=domain, image_shape=shape, image_dtype=dtype,
                     label_fields={label: label_size}, source=source,
                     pixel_range=pixel_range) as writer:
        for start in range(0, count, _CHUNK):
            n = min(_CHUNK, count - start)
            images, labels = simulate(n, domain, seed=seed * 1_000_003 + start // _CHUNK,
                                      config=config)
            for i in range(n):
                writer.write(schema.encode_example(
                    images[i], key=f"sim/{split}/{start + i:07d}", domain=domain,
                    labels={label: labels[i]}))


def simulator_data_dir(cache_dir: str, *, num_synthetic: int, num_real: int,
                       num_real_test: int, seed: int = 0, kind: str = "eyes",
                       size: int = 64) -> str:
    """The cache folder name for these arguments."""
    _check_kind(kind)
    prefix = "eye_simulator" if kind == "eyes" else f"hand_simulator-size{size}"
    name = (f"{prefix}-v{SIMULATOR_DATA_VERSION}-syn{num_synthetic}-real{num_real}"
            f"-test{num_real_test}-seed{seed}")
    return os.path.join(cache_dir, name)


def ensure_simulator_data(cache_dir: str | None = None, *, num_synthetic: int,
                          num_real: int, num_real_test: int, seed: int = 0,
                          kind: str = "eyes", size: int = 64) -> str:
    """Returns a data folder of simulator images, generating missing splits.

    Args:
      cache_dir: parent folder of the cache (default `default_cache_dir()`).
      num_synthetic, num_real, num_real_test: images per split.
      seed: dataset seed (independent of the training seed).
      kind: `eyes` or `hand`.
      size: image size of the hand simulator (ignored for eyes).

    Returns:
      The data folder path.
    """
    cache_dir = cache_dir or default_cache_dir()
    data_dir = simulator_data_dir(cache_dir, num_synthetic=num_synthetic, num_real=num_real,
                                  num_real_test=num_real_test, seed=seed, kind=kind, size=size)
    config = None
    if kind == "hand":
        from simgan_tf.simulators import hand

        config = hand.HandSimulatorConfig(size=size)
    wanted = {"synthetic": ("synthetic", num_synthetic), "real": ("real", num_real),
              "real_test": ("real", num_real_test)}
    existing = {}
    if tf.io.gfile.exists(schema.dataset_info_path(data_dir)):
        existing = schema.read_dataset_info(data_dir).splits
    seeds = split_seeds(seed)
    noun = "eye images" if kind == "eyes" else f"{size}x{size} hand depth images"
    for split, (domain, count) in wanted.items():
        if split in existing and existing[split].count == count:
            continue
        logging.info("Rendering %d %s %s into %s/%s ...", count, domain, noun, data_dir, split)
        write_simulator_split(data_dir, split, domain, count, seeds[split], config=config,
                              kind=kind)
    return data_dir
