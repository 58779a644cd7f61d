"""The built-in eye dataset: the simulator's two domains written as a data folder.

`ensure_simulator_data` returns a cached data folder with `synthetic/`, `real/` and
`real_test/` rendered by `simulator.py`, generating whatever is missing. Generation is
deterministic from the seed, so the same arguments always give the same records.
"""

from __future__ import annotations

import os

from absl import logging

from simgan_tf import schema
from simgan_tf.writer import SplitWriter

CACHE_ENV = "SIMGAN_TF_CACHE"
# Bump when the simulator's images change, so stale caches are not reused.
SIMULATOR_DATA_VERSION = 1
_CHUNK = 2000


def default_cache_dir() -> str:
    """`$SIMGAN_TF_CACHE`, else `~/.cache/simgan_tf`."""
    return os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "simgan_tf")


def split_seeds(seed: int) -> dict[str, int]:
    """Seeds of the three splits of dataset seed `seed` (distinct, so no image repeats)."""
    return {"synthetic": 3 * seed + 1, "real": 3 * seed + 2, "real_test": 3 * seed + 3}


def write_simulator_split(data_dir: str, split: str, domain: str, count: int, seed: int,
                          config=None) -> None:
    """Renders `count` images of `domain` and writes them as split `split` with gaze labels.

    Keys are `sim/<split>/<index>`; every record stores `label/gaze`. `config` is a
    `simulator.SimulatorConfig` (default settings when `None`).
    """
    from simgan_tf import simulator  # NumPy rendering, only needed when generating

    config = config or simulator.SimulatorConfig()
    shape = (config.height, config.width, 1)
    source = {"generator": "simgan_tf.simulator", "domain": domain, "seed": seed,
              "simulator_data_version": SIMULATOR_DATA_VERSION}
    with SplitWriter(data_dir, split, domain=domain, image_shape=shape,
                     label_fields={schema.LABEL_GAZE: 2}, source=source) as writer:
        for start in range(0, count, _CHUNK):
            n = min(_CHUNK, count - start)
            images, gaze = simulator.simulate(n, domain, seed=seed * 1_000_003 + start // _CHUNK,
                                              config=config)
            for i in range(n):
                writer.write(schema.encode_example(
                    images[i], key=f"sim/{split}/{start + i:07d}", domain=domain,
                    labels={schema.LABEL_GAZE: gaze[i]}))


def simulator_data_dir(cache_dir: str, *, num_synthetic: int, num_real: int,
                       num_real_test: int, seed: int = 0) -> str:
    """The cache folder name for these arguments."""
    name = (f"eye_simulator-v{SIMULATOR_DATA_VERSION}-syn{num_synthetic}-real{num_real}"
            f"-test{num_real_test}-seed{seed}")
    return os.path.join(cache_dir, name)


def ensure_simulator_data(cache_dir: str | None = None, *, num_synthetic: int,
                          num_real: int, num_real_test: int, seed: int = 0) -> str:
    """Returns a data folder of simulator images, generating missing splits.

    Args:
      cache_dir: parent folder of the cache (default `default_cache_dir()`).
      num_synthetic, num_real, num_real_test: images per split.
      seed: dataset seed (independent of the training seed).

    Returns:
      The data folder path.
    """
    cache_dir = cache_dir or default_cache_dir()
    data_dir = simulator_data_dir(cache_dir, num_synthetic=num_synthetic, num_real=num_real,
                                  num_real_test=num_real_test, seed=seed)
    wanted = {"synthetic": ("synthetic", num_synthetic), "real": ("real", num_real),
              "real_test": ("real", num_real_test)}
    existing = {}
    if os.path.exists(schema.dataset_info_path(data_dir)):
        existing = schema.read_dataset_info(data_dir).splits
    seeds = split_seeds(seed)
    for split, (domain, count) in wanted.items():
        if split in existing and existing[split].count == count:
            continue
        logging.info("Rendering %d %s eye images into %s/%s ...", count, domain, data_dir, split)
        write_simulator_split(data_dir, split, domain, count, seeds[split])
    return data_dir
