"""A run's `config.json`, and what a resumed run may change in it.

A run folder holds the resolved config of the run that created it. Running `train.py`
again on the folder resumes the run, and what update number N does is a function of the
step counter and the config: Algorithm 1's phase comes from the schedule
(`modeling.schedule.Schedule`), the batch drawn from the data order (seed, shuffle
buffer, batch size), the images the discriminator sees from the history buffer. A
resumed run therefore must keep all of those; every config field is in exactly one of:

- `FIXED_FIELDS`: they decide what update N is, which data it reads or what the
  checkpoint holds. A resume with any of them changed is refused before anything is
  restored or written, with one error naming every differing field, its saved and
  received value, and the way out (another model folder, or the saved values).
- `ALLOWED_FIELDS`: tunables and bookkeeping (learning rates, lambda, intervals, export,
  where the data folder is, the strategy). A change is allowed, logged as a warning with
  the old and new value, and recorded in `config.json` under `changes`: a list of
  `{"step", "field", "old", "new"}` entries, `step` being the latest checkpoint's step
  when the changed run started; the list is kept across resumes.
- `STEPS_FIELD` (`train.steps`, Algorithm 1 iterations after pretraining): the
  documented way to continue a run is a larger value. A smaller one is allowed while the
  run's total (`Schedule.total_steps`) stays at or above the latest checkpoint's step (the
  run then ends earlier); a total below it is refused, since the checkpoint is already
  past the end. Either change is recorded like an allowed one.

A field missing from both lists is treated as fixed (and `tests/test_run_config.py`
fails), so a new config field cannot slip through unclassified. `config.json` still loads
with `SimGANConfig.from_json` (the `changes` key is not a config field), and a
`config.json` without `changes` resumes as before.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging

import simgan_tf
from simgan_tf import config as config_lib
from simgan_tf.data import schema
from simgan_tf.training import checkpointing
from simgan_tf.write_errors import writing

CONFIG_FILE = "config.json"
CHANGES_KEY = "changes"
VERSION_KEY = "simgan_tf_version"  # the release that last wrote config.json
STEPS_FIELD = "train.steps"

# Fields that decide what update N means; a resume must keep them.
FIXED_FIELDS = (
    # What the data is (its shape, splits, generated content) and its order.
    "data.synthetic_split", "data.real_split", "data.image_height", "data.image_width",
    "data.image_channels", "data.shuffle_buffer", "data.simulator",
    "data.simulator_num_synthetic", "data.simulator_num_real",
    "data.simulator_num_real_test",
    # The networks (the checkpoint's variables) and the adversarial loss kind.
    "refiner.filters", "refiner.kernel_size", "refiner.num_blocks", "refiner.noise_channels",
    "refiner.grain", "refiner.grain_rate", "refiner.lighting", "refiner.lighting_rate",
    "refiner.highlights", "refiner.highlight_shift", "refiner.glint", "refiner.glint_shift",
    "refiner.glint_placement", "refiner.padding",
    "discriminator.layers", "discriminator.output",
    # Stabilising options that change the networks or what the run exports: the EMA
    # refiner (its variables in the checkpoint, the refiner exported), spectral
    # normalisation (its power-iteration vectors), and which discriminator updates
    # carry the R1 penalty (a schedule, as k_d is).
    "train.ema_decay", "discriminator.spectral_norm", "train.r1_every",
    # Label-preserving options that change the form of a loss or what D sees: psi of the
    # self-regularization, what the task network compares and how it is trained,
    # the augmentations, whether the balance's scale (a checkpointed variable) exists,
    # and the spectral term's bands.
    "train.reg_feature", "train.reg_feature_size", "train.task_output", "train.task_steps",
    "train.task_augment",
    "train.augment", "train.balance_target", "train.spectral_cutoff", "train.spectral_bands",
    # Optimizer state held in the checkpoint (slot variables).
    "refiner_optimizer.name", "refiner_optimizer.momentum",
    "discriminator_optimizer.name", "discriminator_optimizer.momentum",
    # Algorithm 1's schedule, the batch, the history buffer and the random draws.
    "train.batch_size", "train.pretrain_refiner_steps", "train.pretrain_discriminator_steps",
    "train.k_g", "train.k_d", "train.history_size", "train.seed",
    # The numbers of every update and, with float16, the loss scale in the checkpoint.
    "runtime.mixed_precision",
)

# Fields a resumed run may change (warned about and recorded in `config.json`).
ALLOWED_FIELDS = (
    "name",
    # Where the data is read from, not what it is.
    "data.data_dir", "data.data_service", "data.skip_bad_records",
    # Step sizes and the loss balance.
    "refiner_optimizer.learning_rate", "refiner_optimizer.beta_1",
    "discriminator_optimizer.learning_rate", "discriminator_optimizer.beta_1",
    "train.reg_weight", "train.pretrain_learning_rate",
    # Loss weights like lambda and the balance's tuning: nothing of them is in the
    # checkpoint. A task network is read from the run folder once the run has one.
    "train.r1_weight", "train.task_weight", "train.task_network", "train.spectral_weight",
    "train.augment_probability", "train.balance_rate", "train.balance_max_scale",
    # Bookkeeping.
    "train.log_every", "train.image_every", "train.checkpoint_every",
    "train.keep_checkpoints", "train.export",
    # How the same updates are run.
    "runtime.strategy", "runtime.deterministic",
)


def config_fields(config_json: dict, prefix: str = "") -> dict:
    """`{dotted path: value}` of every field of a `SimGANConfig.to_json()` dict.

    Nested configs become dotted paths; lists (the discriminator's layers) stay one value.
    """
    fields = {}
    for key, value in config_json.items():
        if isinstance(value, dict):
            fields.update(config_fields(value, f"{prefix}{key}."))
        else:
            fields[f"{prefix}{key}"] = value
    return fields


def _total_steps(config: config_lib.SimGANConfig) -> int:
    t = config.train
    return t.pretrain_refiner_steps + t.pretrain_discriminator_steps + t.steps * (t.k_g + t.k_d)


def _differences(saved: config_lib.SimGANConfig, config: config_lib.SimGANConfig):
    """`[(path, saved value, received value)]` of the fields that differ."""
    old, new = config_fields(saved.to_json()), config_fields(config.to_json())
    return [(path, old.get(path), new[path]) for path in new
            if _comparable(old.get(path)) != _comparable(new[path])]


def _comparable(value):
    return json.dumps(value, sort_keys=True)  # tuples and lists of layers compare alike


def check_resume(saved: config_lib.SimGANConfig, config: config_lib.SimGANConfig, *,
                 checkpoint_step: int, path: str) -> list[dict]:
    """Compares a resumed run's config with the saved one.

    Args:
      saved: the config in the run folder's `config.json`.
      config: the config of the run that resumes.
      checkpoint_step: the step of the folder's latest checkpoint (0 if none).
      path: the `config.json` (named in the error).

    Returns:
      The allowed changes, `[{"step", "field", "old", "new"}]`.

    Raises:
      ValueError: naming every refused field, its saved and received value, and the way
        out, if a fixed field differs or `train.steps` ends the run before the checkpoint.
    """
    refused, changes = [], []
    for field, old, new in _differences(saved, config):
        if field == STEPS_FIELD and _total_steps(config) < checkpoint_step:
            refused.append(f"{field}: saved {old!r}, received {new!r} (the run would end "
                           f"at step {_total_steps(config)}, before its checkpoint at step "
                           f"{checkpoint_step})")
        elif field == STEPS_FIELD or field in ALLOWED_FIELDS:
            changes.append(dict(step=checkpoint_step, field=field, old=old, new=new))
        else:  # FIXED_FIELDS, and any field left unclassified
            refused.append(f"{field}: saved {old!r}, received {new!r}")
    if refused:
        raise ValueError(
            f"Cannot resume the run in {os.path.dirname(path) or '.'} (latest checkpoint at "
            f"step {checkpoint_step}): these settings differ from its {path} and would "
            "change what its updates mean:\n  " + "\n  ".join(refused) + "\nUse another "
            "--model_dir for a run with these settings, or the saved values to resume. "
            f"(Fields a resume may change: {', '.join(ALLOWED_FIELDS)}, and a larger "
            f"{STEPS_FIELD}.)")
    return changes


def read_saved(path: str) -> tuple[config_lib.SimGANConfig, list[dict]]:
    """The config and the `changes` record of a `config.json`."""
    config, changes, _ = _read_saved(path)
    return config, changes


def _read_saved(path: str) -> tuple[config_lib.SimGANConfig, list[dict], str | None]:
    """The config, the `changes` record and the simgan-tf version of a `config.json`
    (`None` for a file written before the version was recorded)."""
    with tf.io.gfile.GFile(path, "r") as f:
        data = json.load(f)
    return (config_lib.SimGANConfig.from_json(data), list(data.get(CHANGES_KEY, [])),
            data.get(VERSION_KEY))


def write_config(config: config_lib.SimGANConfig, model_dir: str, *, checkpoint_dir: str,
                 write: bool = True) -> str:
    """Checks a resumed run against `config.json`, then writes it (if `write`).

    Nothing is written if the check fails. Allowed changes are logged and appended to
    the `changes` record.

    Args:
      config: the run's resolved config.
      model_dir: the run folder.
      checkpoint_dir: the run's checkpoint folder (the step of its latest checkpoint is
        the step of a change).
      write: write `config.json` (the chief) or only check (other workers).

    Returns:
      The path of `config.json`.

    Raises:
      ValueError: if the run folder holds a run this config would change the meaning of,
        or checkpoints without a `config.json`.
      RunWriteError: if `config.json` cannot be written.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    record = []
    if tf.io.gfile.exists(path):
        saved, record, version = _read_saved(path)
        step = checkpointing.latest_step(checkpoint_dir)
        changes = check_resume(saved, config, checkpoint_step=step, path=path)
        if version != simgan_tf.__version__:  # resumed by another release: say so
            changes.append({"step": step, "field": VERSION_KEY, "old": version,
                            "new": simgan_tf.__version__})
        for change in changes:
            logging.warning("Resuming at step %d with %s changed: %r -> %r (recorded in %s).",
                            step, change["field"], change["old"], change["new"], path)
        record += changes
    else:
        step = checkpointing.latest_step(checkpoint_dir)
        if step > 0:  # a run folder that lost its config.json cannot be checked
            raise ValueError(
                f"Cannot resume the run in {model_dir}: it holds checkpoints up to step "
                f"{step} but no {CONFIG_FILE}, so nothing tells whether these settings keep "
                f"what its updates mean. Put its {CONFIG_FILE} back, or use another "
                "--model_dir.")
    if write:
        data = {**config.to_json(), VERSION_KEY: simgan_tf.__version__}
        if record:
            data[CHANGES_KEY] = record
        with writing(path):
            schema.write_json_atomic(path, data)
    return path
