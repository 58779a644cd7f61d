"""Datasets of (image, labels) from any split, for a task network of the user's own.

SimGAN's point is the labels that survive refinement: a refined split keeps every label
field of the synthetic split it came from (`refine.py` copies them byte for byte). To
train a network of your own on refined (or synthetic, or labelled real) images:

    from simgan_tf.data import schema, task_data

    info = schema.read_dataset_info(data_dir)
    train = task_data.task_dataset(data_dir, "refined", "label/gaze", batch_size=64,
                                   shuffle=True, repeat=True, seed=0)
    test = task_data.task_dataset(data_dir, "real_test", "label/gaze", batch_size=256)
    model = my_model(input_shape=info.image_shape)      # any Keras model
    model.fit(train, steps_per_epoch=1000)
    model.evaluate(test)

Images are float32 `[H, W, C]` in [-1, 1] (the folder's pixel range mapped as for SimGAN);
each label is a float32 vector of the length `dataset.json` gives. `labels` picks what the
second element is: one field name gives a tensor, a list of names a dict, and `None` a
dict of every label field of the split. `preprocess`, applied per example before
batching, maps `(image, labels)` to whatever the model trains on (a target transform,
augmentation). The evaluation's own estimators read their splits through this function.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

from simgan_tf.data import reader, schema


def label_names(data_dir: str, split: str, labels: str | Sequence[str] | None = None, *,
                info: schema.DatasetInfo | None = None) -> list[str]:
    """The label fields `task_dataset` reads, checked against the split.

    Raises:
      ValueError: naming the split, the fields asked for and the fields it has, if a field
        is missing or the split has no labels at all.
    """
    info = info or schema.read_dataset_info(data_dir)
    available = sorted(info.get_split(split, data_dir).label_fields)
    if labels is None:
        if not available:
            raise ValueError(
                f"Split {split!r} of {data_dir} has no label fields: it cannot train a task "
                "network. Label it when converting (e.g. data_prep.images --labels_csv), or "
                "use it for the realism score only.")
        return available
    names = [labels] if isinstance(labels, str) else list(labels)
    missing = [name for name in names if name not in available]
    if missing or not names:
        raise ValueError(
            f"Split {split!r} of {data_dir} has no label field(s) {missing or names}; it has "
            f"{available or 'none'}. Received: labels={labels!r}")
    return names


def task_dataset(data_dir: str, split: str, labels: str | Sequence[str] | None = None, *,
                 batch_size: int | None = 32, shuffle: bool = False, repeat: bool = False,
                 seed: int | None = None, shuffle_buffer: int = 10_000,
                 drop_remainder: bool | None = None,
                 preprocess: Callable | None = None,
                 info: schema.DatasetInfo | None = None) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `(image, labels)` from one split, ready for `keras.Model.fit`.

    Args:
      data_dir: data folder with `dataset.json` (any `tf.io.gfile` path).
      split: split folder name (`synthetic`, `refined`, `real_test`, ...).
      labels: a label field name (the labels are a tensor), a list of names (a dict by
        name) or `None` (a dict of every label field of the split).
      batch_size: examples per batch; `None` for unbatched examples.
      shuffle: shuffle files and records (seeded by `seed`).
      repeat: repeat forever, reshuffling each pass.
      seed: seed of the shuffles; with it the order is a function of the seed.
      shuffle_buffer: records in the shuffle buffer.
      drop_remainder: drop the last, smaller batch; default: when `repeat` (batches of one
        shape for training), else keep it (every example for testing).
      preprocess: `(image, labels) -> element`, applied per example before batching.
      info: `dataset.json` contents (read when `None`).

    Returns:
      The dataset, prefetching.

    Raises:
      FileNotFoundError, ValueError: a missing folder or split, or missing label fields
        (`label_names`).
    """
    info = info or schema.read_dataset_info(data_dir)
    names = label_names(data_dir, split, labels, info=info)
    single = isinstance(labels, str)

    def select(example):
        if single:
            return example["image"], example[names[0]]
        return example["image"], {name: example[name] for name in names}

    dataset = reader.read_split(data_dir, split, info=info, shuffle=shuffle, repeat=repeat,
                                seed=seed, shuffle_buffer=shuffle_buffer)
    dataset = dataset.map(select, num_parallel_calls=tf.data.AUTOTUNE)
    if preprocess is not None:
        dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1 or None. Received: {batch_size}")
        keep_shape = repeat if drop_remainder is None else drop_remainder
        dataset = dataset.batch(batch_size, drop_remainder=keep_shape)
    return dataset.prefetch(tf.data.AUTOTUNE)
