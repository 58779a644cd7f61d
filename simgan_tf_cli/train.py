"""Trains SimGAN: `python train.py --dataset=gaze [--data_dir=...] [--model_dir=...]`.

Parses flags, builds the config from a preset (`config.resolve_preset`) with the named
flags and every `--config=PATH=VALUE` applied, builds the distribution strategy, and calls
`simgan_tf.training.train_lib.train`. Nothing else happens here.
"""

import os
import shlex
import signal
import sys

from absl import app, flags, logging

import simgan_tf_cli as cli

from simgan_tf import config as config_lib

FLAGS = flags.FLAGS
# A run stopped by a signal after saving a checkpoint exits with 128 + the signal number,
# as a shell reports a process that signal ended: 143 for SIGTERM (preemption), 130 for
# SIGINT (Ctrl-C). The job did not finish; run the same command again to resume.
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT

flags.DEFINE_string("dataset", None, f"Preset: one of {config_lib.preset_names()}. "
                    "Default: chosen by --data_dir's image shape (35x55x1 gaze, 224x224x1 "
                    "hand, anything else `custom`, the gaze setup fitted to that shape); "
                    "without --data_dir, `gaze`. Without --data_dir, `gaze` runs "
                    "`gaze_demo` on the built-in eye simulator and `hand` runs `hand_demo` "
                    "on the built-in hand depth simulator.")
flags.DEFINE_string("data_dir", None, "Data folder (synthetic/, real/, dataset.json). "
                    "Default: the built-in eye simulator's data, generated into --cache_dir.")
flags.DEFINE_string("model_dir", None, "Output folder (config, checkpoints, TensorBoard logs, "
                    "export). Default: runs/<preset>. Rerunning with the same folder resumes.")
flags.DEFINE_string("cache_dir", None, "Where the simulator data is cached "
                    "(default: $SIMGAN_TF_CACHE or ~/.cache/simgan_tf).")
flags.DEFINE_integer("batch_size", None, "Global batch size b (even; split across replicas).")
flags.DEFINE_integer("steps", None, "Iterations of Algorithm 1 after pretraining, each "
                     "K_g refiner and K_d discriminator updates.")
flags.DEFINE_integer("pretrain_refiner_steps", None, "Refiner updates on the L1 term alone "
                     "(paper: 1000 gaze, 500 hand).")
flags.DEFINE_integer("pretrain_discriminator_steps", None, "Discriminator pretraining "
                     "updates (paper: 200).")
flags.DEFINE_integer("k_g", None, "Refiner updates per iteration (paper: 2).")
flags.DEFINE_integer("k_d", None, "Discriminator updates per iteration (paper: 1).")
flags.DEFINE_float("reg_weight", None, "lambda, weight of the self-regularization L1 term "
                   "(summed over pixels).")
flags.DEFINE_integer("history_size", None, "Images in the history buffer; 0 disables it "
                     "(the paper's Fig. 9 ablation).")
flags.DEFINE_enum("adversarial_loss", None, list(config_lib.DISCRIMINATOR_OUTPUTS),
                  "local: per-patch discriminator (paper); global: one decision per image "
                  "(the paper's Fig. 8 ablation); local+global: each patch's logits plus "
                  "one decision per image.")
flags.DEFINE_enum("optimizer", None, list(config_lib.OPTIMIZERS), "Optimizer of both networks.")
flags.DEFINE_float("refiner_lr", None, "Refiner learning rate (adversarial phase).")
flags.DEFINE_float("discriminator_lr", None, "Discriminator learning rate.")
flags.DEFINE_float("pretrain_lr", None, "Refiner learning rate during its pretraining.")
flags.DEFINE_integer("seed", None, "Random seed (initialization, data order, buffer draws).")
flags.DEFINE_bool("deterministic", None, "Deterministic data order and ops.")
flags.DEFINE_enum("strategy", None, list(config_lib.STRATEGIES), "Distribution strategy.")
flags.DEFINE_integer("log_every", None, "Updates between TensorBoard scalar summaries.")
flags.DEFINE_integer("image_every", None, "Updates between TensorBoard image summaries.")
flags.DEFINE_integer("checkpoint_every", None, "Updates between checkpoints.")
flags.DEFINE_bool("export", None, "Export the refiner as a SavedModel at the end.")
flags.DEFINE_integer("refiner_filters", None, "Channels of the refiner's convolutions "
                     "(paper: 64).")
flags.DEFINE_integer("refiner_blocks", None, "ResNet blocks of the refiner (paper: 4 gaze, "
                     "10 hand).")
flags.DEFINE_integer("refiner_noise", None, "Channels of fresh random noise the refiner "
                     "sees beside the image, so it can add camera grain (default 0: the "
                     "paper's deterministic refiner).")
flags.DEFINE_float("refiner_grain", None, "Starting standard deviation of learned grain "
                   "added at the refiner's output, exempt from the self-regularization "
                   "(default: 0.03 for the gaze presets, else 0, the paper's refiner).")
flags.DEFINE_float("refiner_lighting", None, "Starting standard deviation of random "
                   "per-image lighting (brightness, contrast, a smooth light field) at the "
                   "refiner's output, with learned strengths, exempt from the "
                   "self-regularization (default: 0.05 for the gaze presets, else 0, the "
                   "paper's refiner).")
flags.DEFINE_float("refiner_highlights", None, "Starting value of learned highlights "
                   "added at a random offset per image at the refiner's output, exempt "
                   "from the self-regularization (default 0: none, the paper's refiner).")
flags.DEFINE_float("refiner_glint", None, "Starting peak of a learned glint: one "
                   "Gaussian spot per image, where the refiner predicts it plus a random "
                   "offset, exempt from the self-regularization (default: 1.0 for the "
                   "gaze presets, else 0, the paper's refiner).")
flags.DEFINE_enum("refiner_padding", None, list(config_lib.PADDINGS),
                  "How the refiner's convolutions see beyond the image's edge: zeros "
                  "(Keras' same padding) or reflect (the image mirrored at its edge; "
                  "default: the preset's).")
flags.DEFINE_enum("glint_placement", None, list(config_lib.GLINT_PLACEMENTS),
                  "Where the learned glint starts: features (the image's centre, moved "
                  "where the refiner's features point) or pupil (the corneal reflection, "
                  "found from the eye's darkest region; default: pupil for the gaze "
                  "presets, else features).")
flags.DEFINE_integer("keep_checkpoints", None, "Checkpoints kept on disk.")
flags.DEFINE_bool("skip_bad_records", None, "Skip (and count) bad input records instead of "
                  "failing; truncated or corrupt shards are read up to the damage.")
flags.DEFINE_string("data_service", None, "grpc://host:port of a tf.data service "
                    "dispatcher that runs the input pipeline.")
flags.DEFINE_bool("mixed_precision", None, "bfloat16 compute on CPU, float16 with loss "
                  "scaling on GPU (weights, logits, losses and history buffer in float32).")
flags.DEFINE_integer("shuffle_buffer", None, "Records in each split's shuffle buffer.")
flags.DEFINE_float("ema_decay", None, "Decay of an exponential moving average of the "
                   "refiner's weights, used for export, image summaries and refining "
                   "(e.g. 0.999; 0: off, the default).")
flags.DEFINE_bool("spectral_norm", None, "Spectral normalisation of the discriminator's "
                  "convolutions (default off).")
flags.DEFINE_float("r1_weight", None, "gamma of the R1 gradient penalty on real images in "
                   "the discriminator loss (0: off, the default).")
flags.DEFINE_integer("r1_every", None, "Apply R1 every this many discriminator updates, "
                     "weighted by r1_weight * r1_every (default 1).")
flags.DEFINE_enum("reg_feature", None, list(config_lib.REG_FEATURES), "psi of the "
                  "self-regularization: pixels (the paper's L1, the default) or local_mean "
                  "(block means, train.reg_feature_size pixels a side).")
flags.DEFINE_float("task_weight", None, "Weight of the task-consistency term "
                   "||f(R(x)) - f(x)||_1 through a frozen task network f trained on the "
                   "synthetic labels (0: off, the default).")
flags.DEFINE_string("task_network", None, "A trained task network (.keras file, e.g. "
                    "task_network.keras of another run) to use for --task_weight instead "
                    "of training one in this run.")
flags.DEFINE_string("augment", None, "Differentiable augmentations of the discriminator's "
                    "inputs, comma-separated: translation,cutout,brightness,contrast "
                    "(default none).")
flags.DEFINE_float("spectral_weight", None, "Weight of the spectral term: the squared "
                   "log-ratio of the refined and real images' mean power spectra above "
                   "train.spectral_cutoff cycles per pixel, in the adversarial refiner "
                   "updates (0: off, the default).")
flags.DEFINE_float("balance_target", None, "Hold the discriminator's accuracy on fresh "
                   "refined patches near this value by scaling its learning rate "
                   "(e.g. 0.5; default off).")

flags.DEFINE_multi_string(
    "config", [], "Sets any config field by its dotted path, PATH=VALUE; repeatable, e.g. "
    "--config=refiner.kernel_size=5 --config=train.k_d=2. Values are parsed by the "
    "field's type (true/false for bools, null for optional fields, JSON for "
    "discriminator.layers). Applied after the named flags above (each an alias of config "
    "paths, see simgan_tf.config.FLAG_ALIASES), so --config wins when both set a field.")


def resolve_config() -> config_lib.SimGANConfig:
    """The preset named by --dataset with the named flags, then every --config, applied."""
    overrides = config_lib.command_line_overrides(
        {flag: FLAGS[flag].value for flag in config_lib.FLAG_ALIASES}, FLAGS.config)
    data_dir = overrides.get("data.data_dir")
    shape = None
    if data_dir is not None and FLAGS.dataset in (None, config_lib.CUSTOM):
        from simgan_tf.data import schema  # imports TensorFlow
        shape = schema.read_dataset_info(data_dir).image_shape
    name, note = config_lib.resolve_preset(FLAGS.dataset, data_dir, shape)
    if note:
        logging.info(note)
    preset = config_lib.get_preset(name, image_shape=shape)
    return config_lib.override(preset, overrides).validate()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.start_tensorflow_quietly()
    try:
        config = resolve_config()
    except (FileNotFoundError, ValueError) as e:  # names the folder, or config fields
        raise app.UsageError(str(e)) from None
    from simgan_tf import distribute  # imports TensorFlow
    from simgan_tf.training import train_lib

    strategy = distribute.build_strategy(config.runtime.strategy)
    logging.info("Distribution: %s", distribute.describe(strategy))
    model_dir = FLAGS.model_dir or f"runs/{config.name}"
    try:
        result = train_lib.train(config, model_dir, strategy=strategy,
                                 cache_dir=FLAGS.cache_dir)
    except (FileNotFoundError, ValueError, FloatingPointError, train_lib.RunWriteError,
            train_lib.RunLockedError) as e:
        # Bad data, bad settings or a refused resume, non-finite losses, a failed write, a
        # folder in use: the message says what and where.
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(1)
    if result.preempted:
        stop = signal.Signals(result.stop_signal or signal.SIGTERM)
        logging.warning("Stopped by %s at step %d after saving a checkpoint; run the same "
                        "command again to resume.", stop.name, result.step)
        sys.exit(128 + stop)
    logging.info("Done at step %d. TensorBoard: tensorboard --logdir %s/logs", result.step,
                 model_dir)
    if result.export_path:
        print(next_commands(result.config, model_dir, result.export_path,
                            simulator=not FLAGS.data_dir), flush=True)


def next_commands(config, model_dir: str, export_path: str, *, simulator: bool) -> str:
    """The commands that refine the run's synthetic split and evaluate it, with the run's
    paths. The simulator's cached data folder is copied into the run folder first, so the
    refined split is written there and not into the shared cache."""
    from simgan_tf.data import schema

    data_dir = config.data.data_dir
    splits = schema.read_dataset_info(data_dir).splits
    checkout = os.path.basename(sys.argv[0]) == "train.py"

    def command(name):  # `python refine.py` in a checkout, else the console script
        return f"python {name}.py" if checkout else f"simgan-{name}"

    lines = ["Next: refine the synthetic split and evaluate it:"]
    if simulator:
        copy = os.path.join(model_dir, "data")
        lines.append(f"  cp -r {shlex.quote(data_dir)} {shlex.quote(copy)}")
        data_dir = copy
    synthetic = os.path.join(data_dir, config.data.synthetic_split)
    lines.append(f"  {command('refine')} --saved_model={shlex.quote(export_path)} "
                 f"--input_dir={shlex.quote(synthetic)} "
                 f"--output_dir={shlex.quote(os.path.join(data_dir, 'refined'))}")
    task = config.name.split("_")[0]
    label = {"gaze": "label/gaze", "hand": "label/joints_uvd"}.get(task)
    labelled = label and all(name in splits and label in splits[name].label_fields
                             for name in (config.data.synthetic_split, "real_test"))
    evaluation = os.path.join(model_dir, "eval")
    if labelled:
        lines.append(f"  {command('evaluate')} --dataset={task} "
                     f"--data_dir={shlex.quote(data_dir)} --train_splits={config.data.synthetic_split},refined "
                     f"--test_split=real_test --output_dir={shlex.quote(evaluation)}")
    else:  # no task network for this data: the realism score alone
        real = "real_test" if "real_test" in splits else config.data.real_split
        lines.append(f"  {command('evaluate')} --data_dir={shlex.quote(data_dir)} "
                     f"--candidate_splits={config.data.synthetic_split},refined "
                     f"--realism_split={real} "
                     f"--output_dir={shlex.quote(evaluation)}")
    return "\n".join(lines)


def run():
    """The `simgan-train` command (and `python train.py` in a checkout)."""
    cli.list_flags_in_help(__name__)
    cli.run_main(main)


if __name__ == "__main__":
    run()
