"""Writes the built-in eye simulator's data folder.

    python -m data_prep.eye_simulator --output_dir=<data folder> \
        [--num_synthetic=20000] [--num_real=20000] [--num_real_test=4000] [--seed=0]

Writes `synthetic/` (clean renders, the UnityEyes role), `real/` (the same geometry with
camera effects, the MPIIGaze role) and `real_test/` (held-out `real` images) with
`label/gaze` on every record. `train.py` does this by itself into its cache when it is
given no `--data_dir`; this command is for choosing sizes or the place, and takes the
common converter flags (`--shard_bytes`, `--workers`, `--resume`, ...).

The records are those of `simgan_tf.data.builtin.write_simulator_split` (same keys
`sim/<split>/<index>`, same images: rendered in chunks of `builtin._CHUNK` with the same
per-chunk seeds); one chunk is one work item.
"""

from __future__ import annotations

import functools

from data_prep import common
from simgan_tf.data import builtin
from simgan_tf.data import schema

SPLITS = (("synthetic", "synthetic"), ("real", "real"), ("real_test", "real"))
CHUNK = builtin._CHUNK  # pylint: disable=protected-access  # The seeds depend on it.


def render_chunk(split: str, domain: str, seed: int, start: int, count: int) -> list:
    """Runs in a worker: the `count` samples of `split` from index `start` (one chunk)."""
    from simgan_tf.simulators import eyes

    config = eyes.SimulatorConfig()
    images, labels = eyes.simulate(count, domain, seed=seed * 1_000_003 + start // CHUNK,
                                   config=config)
    return [common.Sample(key=f"sim/{split}/{start + i:07d}", image=images[i],
                          labels={schema.LABEL_GAZE: labels[i]},
                          source=f"simulator chunk {start // CHUNK}, image {i}")
            for i in range(count)]


def _process(split: str, domain: str, seed: int, item: tuple) -> list:
    return render_chunk(split, domain, seed, *item)


def convert(output_dir: str, *, num_synthetic: int = 20_000, num_real: int = 20_000,
            num_real_test: int = 4_000, seed: int = 0,
            options: common.ConvertOptions | None = None) -> common.Summary:
    """Renders the simulator's splits into `output_dir` (a split of 0 images is skipped).

    Args:
      output_dir: the data folder.
      num_synthetic, num_real, num_real_test: images per split.
      seed: dataset seed (`builtin.split_seeds`).
      options: common converter options.

    Returns:
      The `Summary`.
    """
    from simgan_tf.simulators import eyes

    options = options or common.ConvertOptions()
    config = eyes.SimulatorConfig()
    seeds = builtin.split_seeds(seed)
    counts = {"synthetic": num_synthetic, "real": num_real, "real_test": num_real_test}
    summary = common.Summary(output_dir=output_dir)
    for split, domain in SPLITS:
        count = int(counts[split])
        if count <= 0:
            continue
        items = [(start, min(CHUNK, count - start)) for start in range(0, count, CHUNK)]
        source = {"command": "data_prep.eye_simulator",
                  "generator": "simgan_tf.simulators.eyes", "domain": domain,
                  "seed": seeds[split], "dataset_seed": seed, "count": count,
                  "simulator_data_version": builtin.SIMULATOR_DATA_VERSION,
                  "options": options.describe()}
        summary.splits[split] = common.write_split(
            items=items, process=functools.partial(_process, split, domain, seeds[split]),
            data_dir=output_dir, split=split, domain=domain,
            image_shape=(config.height, config.width, 1), image_dtype="uint8",
            label_fields={schema.LABEL_GAZE: 2}, options=options, source=source,
            chunk_size=1, unit="chunk")
    return summary


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("output_dir", None, "Data folder to write.", required=True)
    flags.DEFINE_integer("num_synthetic", 20_000, "Images in synthetic/.", lower_bound=1)
    flags.DEFINE_integer("num_real", 20_000, "Images in real/.", lower_bound=1)
    flags.DEFINE_integer("num_real_test", 4_000, "Images in real_test/ (0: none).",
                         lower_bound=0)
    flags.DEFINE_integer("seed", 0, "Dataset seed.")
    common.define_common_flags()


def _convert_from_flags(fv) -> common.Summary:
    return convert(fv.output_dir, num_synthetic=fv.num_synthetic, num_real=fv.num_real,
                   num_real_test=fv.num_real_test, seed=fv.seed,
                   options=common.options_from_flags())


main = common.make_main(_convert_from_flags)


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
