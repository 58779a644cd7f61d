"""Typed, frozen configuration of a SimGAN run, with named dataset presets.

A run is fully described by one `SimGANConfig`; `train.py` picks a preset with
`resolve_preset`, applies its named flags (`FLAG_ALIASES`) and then every
`--config=PATH=VALUE` (`parse_overrides`) with `override`, and writes the resolved config
as `config.json` into the model folder. Library code receives configs, never flags.

Runtime settings are apart from what a run trains: `SimGANConfig.runtime` (a
`RuntimeConfig`) holds the distribution strategy, mixed precision and determinism. A
`config.json` written before they were grouped (`strategy` at the top,
`train.deterministic`, `train.mixed_precision`) still loads, and those old paths still
work in `override` and on the command line (`MOVED_PATHS`).

This module is over 400 lines: the config classes, the presets and the rules that turn
command-line strings into config values (field types, flag aliases, moved paths, the demo
preset rule) are one contract, shared by `train.py`, `evaluate.py` and every
`config.json`, and they change together.

Presets:
  * `gaze`: the paper's gaze setup (UnityEyes -> MPIIGaze, 35x55 grayscale) with the
    paper's networks and schedule lengths (1000 refiner and 200 discriminator pretraining
    steps, K_g=2, K_d=1, batch 512). Needs `data_dir`.
  * `gaze_demo`: the same networks on the built-in eye simulator with a schedule that
    finishes in under 10 minutes on 2 CPU cores. What `--dataset=gaze` runs when no data
    folder is given.
  * `hand`: the paper's hand networks at 224x224 (7x7 kernels, 10 ResNet blocks) and
    schedule (500 refiner and 200 discriminator pretraining steps). Needs `data_dir`.
  * `hand_demo`: the built-in hand depth simulator at a reduced resolution (64x64) with
    reduced networks (5x5 kernels, 4 ResNet blocks of 32 channels) that finish in minutes
    on 2 CPU cores. What `--dataset=hand` runs when no data folder is given.
  * `custom`: the gaze setup fitted to any other image shape (`custom_preset`): what a
    data folder of images that are neither 35x55x1 nor 224x224x1 gets when no preset is
    named.

Loss scale and defaults (see also `losses.py` and README, "Defaults"): both loss terms are
sums, the adversarial term over the discriminator's patches, the self-regularization term
over pixels, each averaged over the batch, as in the paper's equations. With those
reductions the paper's SGD at learning rate 0.001 barely moves the refiner in pretraining
and its lambda (1e-4 in public code) lets the adversarial term dominate, so the refiner
collapses to a constant image. Our defaults use Adam: refiner learning rate 1e-3 during
its pretraining and 2e-4 afterwards, discriminator learning rate 1e-3, and lambda = 0.1 per
summed pixel. README ("Defaults") gives what they did on the built-in simulator, measured
with `experiments/refine_stats.py`; lambda = 0.05 with a refiner rate of 1e-4 let the refiner
distort the eyes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from typing import Any

OPTIMIZERS = ("adam", "sgd")
DISCRIMINATOR_OUTPUTS = ("local", "global", "local+global")
GLINT_PLACEMENTS = ("features", "pupil")
PADDINGS = ("zeros", "reflect")
REG_FEATURES = ("pixels", "local_mean")
TASK_OUTPUTS = ("output", "features")
# The names of modeling.augment.TRANSFORMS (config imports nothing of simgan_tf).
AUGMENTATIONS = ("translation", "cutout", "brightness", "contrast")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are read.

    Attributes:
      data_dir: data folder with `synthetic/`, `real/` and `dataset.json`; `None` means
        the built-in eye simulator's data, generated into `cache_dir` when missing.
      synthetic_split: split with the simulator's (labelled) images, refined by R.
      real_split: split with unlabelled real images, shown to D.
      image_height, image_width, image_channels: image shape the networks are built for;
        must match `dataset.json`.
      shuffle_buffer: records in the shuffle buffer of each split.
      simulator: which built-in simulator renders the data when `data_dir` is `None`:
        `eyes` (35x55 grayscale eyes) or `hand` (depth images of `image_height` pixels).
      simulator_num_synthetic, simulator_num_real, simulator_num_real_test: sizes of the
        splits the built-in simulator generates.
      skip_bad_records: drop (and count) records that cannot be used instead of
        failing, and read corrupt or truncated shards up to the damage.
      data_service: `grpc://host:port` of a tf.data service dispatcher that runs the
        input pipeline on its workers; `None` runs it in the training process.
    """
    data_dir: str | None = None
    synthetic_split: str = "synthetic"
    real_split: str = "real"
    image_height: int = 35
    image_width: int = 55
    image_channels: int = 1
    shuffle_buffer: int = 10_000
    simulator: str = "eyes"
    simulator_num_synthetic: int = 20_000
    simulator_num_real: int = 20_000
    simulator_num_real_test: int = 4_000
    skip_bad_records: bool = False
    data_service: str | None = None


@dataclasses.dataclass(frozen=True)
class RefinerConfig:
    """The refiner R: a fully convolutional ResNet (paper, Appendix A).

    Attributes:
      filters: channels of every hidden convolution (paper: 64).
      kernel_size: kernel of the first convolution and of the ResNet blocks (gaze 3,
        hand 7).
      num_blocks: ResNet blocks of two convolutions each (gaze 4, hand 10).
      noise_channels: channels of fresh N(0, 1) noise the first convolution sees beside
        the image, drawn anew at every call, so the refiner can add random grain
        (`refiner.NoiseChannels`); 0: the paper's deterministic refiner.
      grain: starting standard deviation of learned output grain (`refiner.OutputGrain`):
        fresh noise added before the output's tanh, with a per-pixel amplitude and a
        spatial filter the refiner learns, exempt from the self-regularization and
        task terms; 0: none (the paper).
      grain_rate: how many times faster than the refiner's convolutions the grain's
        weights learn (`OutputGrain`'s `rate`).
      lighting: starting standard deviation of random lighting per image
        (`refiner.OutputLighting`): a brightness offset, a contrast gain and a smooth
        multiplicative light field, drawn anew for every image with strengths the
        refiner learns, exempt from the self-regularization and task terms; 0: none
        (the paper).
      lighting_rate: how many times faster than the refiner's convolutions the
        lighting's strengths learn (`OutputLighting`'s `rate`).
      highlights: starting value of learned highlights (`refiner.OutputHighlights`): a
        non-negative map the refiner predicts from its last features, added at a random
        offset per image, exempt from the self-regularization and task terms; 0: none
        (the paper).
      highlight_shift: largest offset of the highlights along each axis, in pixels.
      glint: starting peak of a learned glint (`refiner.OutputGlint`): one Gaussian spot
        per image with a learned peak and radius, placed where the refiner predicts from
        its last features plus a random offset per image, exempt from the
        self-regularization and task terms; 0: none (the paper).
      glint_shift: largest random offset of the glint along each axis, in pixels.
      glint_placement: where the glint starts: `features` (the image's centre, moved
        where the refiner's features point) or `pupil` (the corneal reflection: the
        image's centre plus 0.6 times the darkest region's displacement from it, a
        learned fraction; for eye images; `OutputGlint`).
      padding: how the refiner's convolutions (and its grain's filter) see beyond the
        image's edge: `zeros` (Keras' "same" padding, the usual choice) or `reflect` (the
        image mirrored at its edge, as in CycleGAN's ResNet generator; the grain's
        noise is drawn beyond the edge). Zero padding darkens a refined image's outer
        pixels and thins its grain there, which a classifier can see.
    """
    filters: int = 64
    kernel_size: int = 3
    num_blocks: int = 4
    noise_channels: int = 0
    grain: float = 0.0
    grain_rate: float = 10.0
    lighting: float = 0.0
    lighting_rate: float = 10.0
    highlights: float = 0.0
    highlight_shift: float = 2.0
    glint: float = 0.0
    glint_shift: float = 2.0
    glint_placement: str = "features"
    padding: str = "zeros"


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One layer of the discriminator.

    Attributes:
      kind: `conv` (convolution + ReLU, linear for the last layer) or `maxpool`.
      filters: output channels of a `conv` (ignored for `maxpool`).
      kernel_size: square kernel size.
      strides: stride.
    """
    kind: str
    filters: int
    kernel_size: int
    strides: int = 1


GAZE_DISCRIMINATOR = (
    ConvSpec("conv", 96, 3, 2),
    ConvSpec("conv", 64, 3, 2),
    ConvSpec("maxpool", 0, 3, 1),
    ConvSpec("conv", 32, 3, 1),
    ConvSpec("conv", 32, 1, 1),
    ConvSpec("conv", 2, 1, 1),
)

HAND_DEMO_DISCRIMINATOR = (
    ConvSpec("conv", 64, 5, 2),
    ConvSpec("conv", 64, 3, 2),
    ConvSpec("maxpool", 0, 3, 2),
    ConvSpec("conv", 32, 3, 1),
    ConvSpec("conv", 32, 1, 1),
    ConvSpec("conv", 2, 1, 1),
)

HAND_DISCRIMINATOR = (
    ConvSpec("conv", 96, 7, 4),
    ConvSpec("conv", 64, 5, 2),
    ConvSpec("maxpool", 0, 3, 2),
    ConvSpec("conv", 32, 3, 2),
    ConvSpec("conv", 32, 1, 1),
    ConvSpec("conv", 2, 1, 1),
)


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """The local discriminator D (paper, Appendix A).

    Attributes:
      layers: the layer stack; the last layer must be a `conv` with 2 filters and is
        linear (its outputs are per-patch logits for the classes refined=0, real=1).
      output: `local` (the paper's per-patch logits), `global` (the Fig. 8 ablation:
        the last layer is fully connected over the whole image) or `local+global` (each
        patch's logits plus the image's global logits; see discriminator.py).
      spectral_norm: spectral normalisation (Miyato et al., ICLR 2018) of every
        convolution (and of the `global` dense layer): each discriminator update divides
        their kernels by their largest singular value, estimated by one power iteration
        (see discriminator.py). Off: the paper's discriminator.
    """
    layers: tuple[ConvSpec, ...] = GAZE_DISCRIMINATOR
    output: str = "local"
    spectral_norm: bool = False

    def receptive_field(self) -> int:
        """Side in input pixels of the square one output position (one patch) sees.

        With `same` padding, every layer of kernel k adds `(k - 1)` times the product of
        the strides before it. An image smaller than this is one padded patch: the local
        loss would judge the whole image, so `SimGANConfig.validate` refuses it.
        """
        field, jump = 1, 1
        for spec in self.layers:
            field += (spec.kernel_size - 1) * jump
            jump *= spec.strides
        return field


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """One optimizer.

    Attributes:
      name: `adam` or `sgd`.
      learning_rate: step size.
      beta_1: Adam's first-moment decay (ignored by SGD).
      momentum: SGD momentum (ignored by Adam).
    """
    name: str = "adam"
    learning_rate: float = 2e-4
    beta_1: float = 0.9
    momentum: float = 0.0


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """How a run executes on its devices, apart from what it trains.

    Attributes:
      strategy: distribution strategy: `auto`, `one_device`, `mirrored` or `multi_worker`
        (see `distribute.build_strategy`).
      mixed_precision: compute in bfloat16 on CPU or float16 with loss scaling on GPU;
        weights, discriminator logits, losses and the history buffer stay float32.
      deterministic: deterministic input pipeline order and TensorFlow op determinism
        (bit-identical reruns and resumes, at some cost in speed).
    """
    strategy: str = "auto"
    mixed_precision: bool = False
    deterministic: bool = False


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Algorithm 1's schedule and the run's bookkeeping.

    Attributes:
      batch_size: global batch size b (split across replicas).
      steps: iterations of Algorithm 1's outer loop after pretraining; each is K_g
        refiner updates and K_d discriminator updates.
      pretrain_refiner_steps: refiner updates on the self-regularization term alone.
      pretrain_discriminator_steps: discriminator updates after refiner pretraining.
      k_g: refiner updates per iteration (paper: 2).
      k_d: discriminator updates per iteration (paper: 1).
      reg_weight: lambda, weight of the self-regularization term (per summed pixel).
      history_size: images in the history buffer; 0 disables it.
      pretrain_learning_rate: refiner learning rate during pretraining (`None`: the
        refiner optimizer's).
      seed: seeds initialization, data order, and history buffer sampling.
      log_every: update steps between scalar summaries.
      image_every: update steps between image summaries.
      checkpoint_every: update steps between checkpoints.
      keep_checkpoints: checkpoints kept on disk.
      export: export the refiner as a SavedModel at the end.
      ema_decay: decay of an exponential moving average of the refiner's weights,
        updated after every refiner update and then used for export, image summaries
        and refining (`modeling/ema.py`); in [0, 1), e.g. 0.999. `None` or 0: off.
      r1_weight: gamma of the R1 penalty gamma/2 * ||grad_x D(x)||^2 on real images
        added to the discriminator loss (`losses.r1_penalty`); 0: off.
      r1_every: the R1 penalty is applied every this many discriminator updates (the
        first one, then every N-th), weighted by `r1_weight * r1_every` (StyleGAN2's lazy
        regularization); >= 1.
      reg_feature: psi of the self-regularization term: `pixels` (the identity, the
        paper's L1 on pixels) or `local_mean` (`losses.local_mean`: the L1 between the
        channel means averaged over `reg_feature_size` blocks).
      reg_feature_size: block side of `local_mean`, >= 1.
      task_weight: weight of the task-consistency term ||f(R(x)) - f(x)||_1, f a task
        network trained on the synthetic split's labels and frozen
        (`losses.task_consistency_loss`; `training/task_network.py`); 0: off. Beside the
        self-regularization; with `reg_weight=0`, instead of it.
      task_output: what of f is compared: `output` (its predictions, e.g. the gaze
        vector) or `features` (the input of its last layer).
      task_steps: training steps of f when the run trains it (the task's evaluation
        preset otherwise: its batch, learning rate, seed `seed`).
      task_augment: train f on synthetic images with random blur, contrast, brightness
        and noise (`task_network.style_augmentation`), so that it reads the label from
        the image's content rather than its rendering style, which the refiner is meant
        to change; False: on the plain synthetic images.
      task_network: a Keras file (`.keras`) of a trained task network to use instead of
        training one; it is copied into the run folder. `None`: the run trains its own
        (or reuses the one its folder holds).
      augment: differentiable augmentations of every image the discriminator sees,
        comma-separated from `translation`, `cutout`, `brightness`, `contrast`
        (`modeling/augment.py`); empty: none.
      augment_probability: chance that each augmentation applies to each image, [0, 1].
      balance_target: accuracy on fresh refined patches that the adaptive balance holds
        by scaling the discriminator's learning rate (`modeling/balance.py`), in (0, 1);
        `None`: off.
      balance_rate: the balance's step of log(scale) per unit of accuracy error, > 0.
      balance_max_scale: the scale stays in [1/max, max]; >= 1.
      spectral_weight: weight of the spectral term of the adversarial refiner updates:
        the squared log-ratio of the refined and real images' mean power spectra in
        `spectral_bands` radial bands from `spectral_cutoff` cycles per pixel up
        (`losses.spectral_loss`), which pulls the refiner's fine texture, grain and blur
        to the real images' levels; 0: off.
      spectral_cutoff: the spectral term's lowest frequency, cycles per pixel, in [0, 0.5).
      spectral_bands: the spectral term's number of bands, >= 1.
    """
    batch_size: int = 512
    steps: int = 10_000
    pretrain_refiner_steps: int = 1000
    pretrain_discriminator_steps: int = 200
    k_g: int = 2
    k_d: int = 1
    reg_weight: float = 0.1
    history_size: int = 512 * 50
    pretrain_learning_rate: float | None = 1e-3
    seed: int = 0
    log_every: int = 50
    image_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    export: bool = True
    ema_decay: float | None = None
    r1_weight: float = 0.0
    r1_every: int = 1
    reg_feature: str = "pixels"
    reg_feature_size: int = 3
    task_weight: float = 0.0
    task_output: str = "output"
    task_steps: int = 1500
    task_augment: bool = True
    task_network: str | None = None
    augment: str = ""
    augment_probability: float = 1.0
    balance_target: float | None = None
    balance_rate: float = 0.05
    balance_max_scale: float = 10.0
    spectral_weight: float = 0.0
    spectral_cutoff: float = 0.15
    spectral_bands: int = 8


@dataclasses.dataclass(frozen=True)
class SimGANConfig:
    """Everything that decides a SimGAN run.

    Attributes:
      name: preset name the config came from.
      data, refiner, discriminator, train: see their classes.
      refiner_optimizer, discriminator_optimizer: one optimizer each.
      runtime: how the run executes (strategy, mixed precision, determinism); see
        `RuntimeConfig`.
    """
    name: str = "gaze"
    data: DataConfig = DataConfig()
    refiner: RefinerConfig = RefinerConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    refiner_optimizer: OptimizerConfig = OptimizerConfig(learning_rate=2e-4)
    discriminator_optimizer: OptimizerConfig = OptimizerConfig(learning_rate=1e-3)
    train: TrainConfig = TrainConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        d = self.data
        return (d.image_height, d.image_width, d.image_channels)

    def validate(self) -> "SimGANConfig":
        """Checks value ranges; raises ValueError saying what was received."""
        checks = _train_checks(self.train)
        checks.append((self.runtime.strategy in STRATEGIES,
                       f"runtime.strategy must be one of {STRATEGIES}. "
                       f"Received: {self.runtime.strategy!r}"))
        checks += _data_checks(self.data) + _network_checks(self)
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, data: dict) -> "SimGANConfig":
        """Reads `to_json()` output, also one written before fields moved (`MOVED_PATHS`)."""
        return _from_dict(cls, _move_old_paths(data))


def _train_checks(t: TrainConfig) -> list[tuple[bool, str]]:
    return [
        (t.batch_size >= 2 and t.batch_size % 2 == 0,
         f"train.batch_size must be an even number >= 2. Received: {t.batch_size}"),
        (t.steps >= 0, f"train.steps must be >= 0. Received: {t.steps}"),
        (t.pretrain_refiner_steps >= 0,
         f"train.pretrain_refiner_steps must be >= 0. Received: {t.pretrain_refiner_steps}"),
        (t.pretrain_discriminator_steps >= 0,
         "train.pretrain_discriminator_steps must be >= 0. "
         f"Received: {t.pretrain_discriminator_steps}"),
        (t.k_g >= 1, f"train.k_g must be >= 1. Received: {t.k_g}"),
        (t.k_d >= 1, f"train.k_d must be >= 1. Received: {t.k_d}"),
        (t.reg_weight >= 0, f"train.reg_weight (lambda) must be >= 0. Received: {t.reg_weight}"),
        (t.history_size == 0 or t.history_size >= t.batch_size // 2,
         "train.history_size must be 0 (no history) or at least half a batch "
         f"({t.batch_size // 2}). Received: {t.history_size}"),
        (t.log_every >= 1, f"train.log_every must be >= 1. Received: {t.log_every}"),
        (t.image_every >= 1, f"train.image_every must be >= 1. Received: {t.image_every}"),
        (t.checkpoint_every >= 1,
         f"train.checkpoint_every must be >= 1. Received: {t.checkpoint_every}"),
        (t.keep_checkpoints >= 1,
         f"train.keep_checkpoints must be >= 1. Received: {t.keep_checkpoints}"),
        (t.pretrain_learning_rate is None or t.pretrain_learning_rate > 0,
         f"train.pretrain_learning_rate must be > 0. Received: {t.pretrain_learning_rate}"),
        (t.ema_decay is None or 0 <= t.ema_decay < 1,
         "train.ema_decay must be in [0, 1) (e.g. 0.999), or null or 0 for no EMA. "
         f"Received: {t.ema_decay}"),
        (t.r1_weight >= 0, f"train.r1_weight must be >= 0 (0: no R1). Received: {t.r1_weight}"),
        (t.r1_every >= 1, f"train.r1_every must be >= 1. Received: {t.r1_every}"),
        (t.reg_feature in REG_FEATURES,
         f"train.reg_feature must be one of {REG_FEATURES}. Received: {t.reg_feature!r}"),
        (t.reg_feature_size >= 1,
         f"train.reg_feature_size must be >= 1. Received: {t.reg_feature_size}"),
        (t.task_weight >= 0,
         f"train.task_weight must be >= 0 (0: off). Received: {t.task_weight}"),
        (t.task_output in TASK_OUTPUTS,
         f"train.task_output must be one of {TASK_OUTPUTS}. Received: {t.task_output!r}"),
        (t.task_steps >= 1, f"train.task_steps must be >= 1. Received: {t.task_steps}"),
        (t.spectral_weight >= 0,
         f"train.spectral_weight must be >= 0 (0: off). Received: {t.spectral_weight}"),
        (0 <= t.spectral_cutoff < 0.5,
         f"train.spectral_cutoff must be in [0, 0.5). Received: {t.spectral_cutoff}"),
        (t.spectral_bands >= 1,
         f"train.spectral_bands must be >= 1. Received: {t.spectral_bands}"),
        (all(name.strip() in AUGMENTATIONS for name in t.augment.split(",") if name.strip())
         and len({n.strip() for n in t.augment.split(",") if n.strip()})
         == len([n for n in t.augment.split(",") if n.strip()]),
         f"train.augment must be comma-separated names from {AUGMENTATIONS}, each at most "
         f"once. Received: {t.augment!r}"),
        (0 <= t.augment_probability <= 1,
         f"train.augment_probability must be in [0, 1]. Received: {t.augment_probability}"),
        (t.balance_target is None or 0 < t.balance_target < 1,
         "train.balance_target must be in (0, 1) (e.g. 0.5), or null for no balance. "
         f"Received: {t.balance_target}"),
        (t.balance_rate > 0, f"train.balance_rate must be > 0. Received: {t.balance_rate}"),
        (t.balance_max_scale >= 1,
         f"train.balance_max_scale must be >= 1. Received: {t.balance_max_scale}"),
    ]


def _data_checks(d: DataConfig) -> list[tuple[bool, str]]:
    return [
        (d.simulator in SIMULATORS,
         f"data.simulator must be one of {SIMULATORS}. Received: {d.simulator!r}"),
        (d.data_service is None
         or (d.data_service.startswith("grpc://") and len(d.data_service) > len("grpc://")),
         f"data.data_service must look like grpc://host:port. Received: {d.data_service!r}"),
        (d.shuffle_buffer >= 1, f"data.shuffle_buffer must be >= 1. Received: {d.shuffle_buffer}"),
        (d.image_channels in (1, 3),
         f"data.image_channels must be 1 or 3. Received: {d.image_channels}"),
    ]


def refiner_check(refiner: RefinerConfig) -> tuple[bool, str]:
    """`(ok, message)`: whether `refiner` describes a refiner `build_refiner` can build,
    and the error to raise when not."""
    ok = (refiner.num_blocks >= 0 and refiner.filters >= 1 and refiner.kernel_size % 2 == 1
          and refiner.noise_channels >= 0 and refiner.grain >= 0 and refiner.grain_rate > 0
          and refiner.lighting >= 0 and refiner.lighting_rate > 0
          and refiner.highlights >= 0 and refiner.highlight_shift >= 0
          and refiner.glint >= 0 and refiner.glint_shift >= 0
          and refiner.glint_placement in GLINT_PLACEMENTS and refiner.padding in PADDINGS)
    return ok, ("refiner needs filters >= 1, num_blocks >= 0, an odd kernel_size, "
                "noise_channels >= 0, grain >= 0, grain_rate > 0, lighting >= 0, "
                "lighting_rate > 0, highlights >= 0, highlight_shift >= 0, glint >= 0, "
                f"glint_shift >= 0, glint_placement in {GLINT_PLACEMENTS} and padding in "
                f"{PADDINGS}. "
                f"Received: {refiner}")


def _network_checks(config: SimGANConfig) -> list[tuple[bool, str]]:
    layers = config.discriminator.layers
    checks = [
        (config.discriminator.output in DISCRIMINATOR_OUTPUTS,
         f"discriminator.output must be one of {DISCRIMINATOR_OUTPUTS}. "
         f"Received: {config.discriminator.output!r}"),
        refiner_check(config.refiner),
    ]
    for name, opt in (("refiner_optimizer", config.refiner_optimizer),
                      ("discriminator_optimizer", config.discriminator_optimizer)):
        checks.append((opt.name in OPTIMIZERS,
                       f"{name}.name must be one of {OPTIMIZERS}. Received: {opt.name!r}"))
        checks.append((opt.learning_rate > 0,
                       f"{name}.learning_rate must be > 0. Received: {opt.learning_rate}"))
    checks.append((bool(layers) and layers[-1].kind == "conv" and layers[-1].filters == 2,
                   "discriminator.layers must end with a 2-filter conv (the per-patch "
                   f"logits). Received: {layers[-1] if layers else None}"))
    for spec in layers:
        checks.append((spec.kind in ("conv", "maxpool") and spec.kernel_size >= 1
                       and spec.strides >= 1,
                       f"discriminator layer must be conv or maxpool with kernel_size "
                       f">= 1 and strides >= 1. Received: {spec}"))
    if config.discriminator.output != "global" and all(
            spec.kernel_size >= 1 and spec.strides >= 1 for spec in layers):
        field, d = config.discriminator.receptive_field(), config.data
        checks.append((min(d.image_height, d.image_width) >= field,
                       f"Images of {d.image_height}x{d.image_width} are smaller than one "
                       f"discriminator patch: its receptive field is {field}x{field}, so the "
                       f"minimum image size for this discriminator is {field}x{field} (or "
                       "give it fewer or smaller layers). Received: "
                       f"data.image_height={d.image_height}, data.image_width={d.image_width}"))
    return checks


# Old path -> new path of the fields that moved; `from_json`, `override` and
# `parse_overrides` accept the old ones.
MOVED_PATHS = {
    "strategy": "runtime.strategy",
    "train.deterministic": "runtime.deterministic",
    "train.mixed_precision": "runtime.mixed_precision",
}


def _move_old_paths(data: dict) -> dict:
    """A copy of a `to_json()` dict with values at old paths moved to the new ones."""
    data = copy.deepcopy(data)
    for old, new in MOVED_PATHS.items():
        *parents, key = old.split(".")
        source = data
        for part in parents:
            source = source.get(part) if isinstance(source, dict) else None
        if not isinstance(source, dict) or key not in source:
            continue
        value = source.pop(key)
        *parents, key = new.split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
        target.setdefault(key, value)  # a value already at the new path wins
    return data


def _from_dict(cls, data):
    """Builds dataclass `cls` from a JSON dict; missing keys keep their defaults."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value, hint = data[field.name], hints[field.name]
        if dataclasses.is_dataclass(hint):
            value = _from_dict(hint, value)
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            value = tuple(_from_dict(item, v) if dataclasses.is_dataclass(item) else v
                          for v in value)
        kwargs[field.name] = value
    return cls(**kwargs)


_GAZE = SimGANConfig(name="gaze")
# The eye presets' refiner: the paper's, plus output grain, random lighting per image and
# a glint at the corneal reflection, exempt from the self-regularization. On the built-in
# eye simulator's Table 2 protocol it beat the paper's refiner in every seed on both gaze
# error and realism (docs/results.md, "Table 2 with the glint at the corneal
# reflection"). `PAPER_REFINER` is the paper's.
PAPER_REFINER = RefinerConfig()
EYE_REFINER = dataclasses.replace(PAPER_REFINER, grain=0.03, lighting=0.05, glint=1.0,
                                  glint_placement="pupil")

PRESETS = {
    "gaze": dataclasses.replace(_GAZE, refiner=EYE_REFINER),
    "gaze_demo": dataclasses.replace(
        _GAZE,
        name="gaze_demo",
        refiner=EYE_REFINER,
        train=dataclasses.replace(
            _GAZE.train, batch_size=32, steps=200, pretrain_refiner_steps=200,
            pretrain_discriminator_steps=100, history_size=32 * 100,
            log_every=25, image_every=100, checkpoint_every=200),
    ),
    "hand": SimGANConfig(
        name="hand",
        data=DataConfig(image_height=224, image_width=224, image_channels=1,
                        shuffle_buffer=2_000),
        refiner=RefinerConfig(filters=64, kernel_size=7, num_blocks=10),
        discriminator=DiscriminatorConfig(layers=HAND_DISCRIMINATOR),
        train=dataclasses.replace(
            _GAZE.train, batch_size=32, pretrain_refiner_steps=500,
            pretrain_discriminator_steps=200, history_size=32 * 100),
    ),
}

PRESETS["hand_demo"] = SimGANConfig(
    name="hand_demo",
    data=DataConfig(image_height=64, image_width=64, image_channels=1, simulator="hand",
                    shuffle_buffer=2_000, simulator_num_synthetic=4_000,
                    simulator_num_real=4_000, simulator_num_real_test=1_000),
    refiner=RefinerConfig(filters=32, kernel_size=5, num_blocks=4),
    discriminator=DiscriminatorConfig(layers=HAND_DEMO_DISCRIMINATOR),
    train=dataclasses.replace(
        _GAZE.train, batch_size=16, steps=150, pretrain_refiner_steps=150,
        pretrain_discriminator_steps=50, history_size=16 * 100, log_every=25,
        image_every=100, checkpoint_every=200),
)

# What `--dataset=NAME` resolves to when no data folder is given.
DEMO_PRESETS = {"gaze": "gaze_demo", "hand": "hand_demo"}
SIMULATORS = ("eyes", "hand")
# The preset built for the data's own image shape (`custom_preset`).
CUSTOM = "custom"
# Image shapes whose paper preset a data folder gets when no preset is named.
SHAPE_PRESETS = {(35, 55, 1): "gaze", (224, 224, 1): "hand"}

# The custom preset's scaling rules (see `custom_preset`).
_CUSTOM_MAX_PATCHES = 9  # largest patch-map side the stride-2 stages may leave
_GAZE_PIXELS = 35 * 55
_HISTORY_BYTES = 256 * 2 ** 20  # float32 history buffer budget


def preset_names() -> list[str]:
    """The names `get_preset` knows: `PRESETS` and `custom`."""
    return sorted([*PRESETS, CUSTOM])


def custom_discriminator(height: int, width: int) -> tuple[ConvSpec, ...]:
    """The gaze discriminator with as many stride-2 stages as the image needs.

    The paper's gaze network halves the image twice (35x55 -> a 9x14 map of patches of
    23x23 pixels); its hand network leaves 7x7 of 224x224. Here stride-2 convolutions
    of 64 filters are added after the first two until the shorter side of the patch map
    is at most 9, so each patch covers a similar share of any image; at 35x55 this is
    the gaze network exactly.
    """
    stages = 2
    while -(-min(height, width) // 2 ** stages) > _CUSTOM_MAX_PATCHES:
        stages += 1
    extra = tuple(ConvSpec("conv", 64, 3, 2) for _ in range(stages - 2))
    return GAZE_DISCRIMINATOR[:2] + extra + GAZE_DISCRIMINATOR[2:]


def custom_preset(image_shape: tuple[int, int, int]) -> SimGANConfig:
    """The `custom` preset: the gaze setup fitted to images of `image_shape`.

    The gaze refiner (fully convolutional, any size) and the gaze discriminator with the
    stride-2 stages of `custom_discriminator`; the gaze schedule (1000 refiner and 200
    discriminator pretraining updates, 10,000 iterations of K_g=2, K_d=1); a batch
    scaled from the gaze batch (512 at 35x55) by pixel count, a multiple of 8 between 8
    and 512; and a history buffer of 50 batches or as many images as fit in 256 MiB of
    float32, whichever is smaller. A start, to tune with `--config`.

    Args:
      image_shape: `(height, width, channels)` of the data, channels 1 or 3.
    """
    height, width, channels = (int(v) for v in image_shape)
    batch = max(8, min(512, int(512 * _GAZE_PIXELS / (height * width)) // 8 * 8))
    fit = _HISTORY_BYTES // (height * width * channels * 4)
    history = max(batch // 2, min(50 * batch, fit))
    return dataclasses.replace(
        _GAZE, name=CUSTOM,
        data=dataclasses.replace(_GAZE.data, image_height=height, image_width=width,
                                 image_channels=channels),
        discriminator=DiscriminatorConfig(layers=custom_discriminator(height, width)),
        train=dataclasses.replace(_GAZE.train, batch_size=batch, history_size=history))


def get_preset(name: str, image_shape: tuple[int, int, int] | None = None) -> SimGANConfig:
    """Returns the named preset; `custom` is built for `image_shape` (`custom_preset`).

    Raises:
      ValueError: on an unknown name (listing the known ones), or `custom` without an
        image shape.
    """
    if name == CUSTOM:
        if image_shape is None:
            raise ValueError("The custom preset takes its image shape from the data. "
                             "Received: image_shape=None")
        return custom_preset(image_shape)
    if name not in PRESETS:
        raise ValueError(f"Unknown preset. Expected one of {preset_names()}. "
                         f"Received: {name!r}")
    return PRESETS[name]


def resolve_preset(dataset: str | None, data_dir: str | None,
                   data_shape: tuple[int, int, int] | None = None) -> tuple[str, str | None]:
    """The preset a run uses, from the preset asked for and the data it reads.

    - No preset named (`dataset=None`): with a data folder, the preset of its image shape
      (`SHAPE_PRESETS`: 35x55x1 gaze, 224x224x1 hand), else `custom`, built for that
      shape; without one, `gaze`, which then runs `gaze_demo`.
    - `gaze` and `hand` read a converted data folder; without one they run `gaze_demo`
      and `hand_demo` (`DEMO_PRESETS`) on the built-in simulators. `custom` and any other
      preset whose `data.data_dir` is `None` and that is not a demo preset need a data
      folder.

    Args:
      dataset: a preset name (`preset_names()`), or `None` to choose from the data.
      data_dir: the data folder the run reads; `None` if none was given.
      data_shape: `(height, width, channels)` of that folder's images (its
        `dataset.json`); needed when `data_dir` is given and `dataset` is `None`.

    Returns:
      `(preset name, note)`: `note` says why the preset is not `dataset` (to be logged),
      `None` when it is `dataset` itself.

    Raises:
      ValueError: on an unknown preset, or a preset that needs a data folder without one.
    """
    if dataset is None:
        if data_dir is None:
            return resolve_preset("gaze", None)
        if data_shape is None:
            raise ValueError("Choosing a preset from the data needs its image shape. "
                             f"Received: data_dir={data_dir!r}, data_shape=None")
        shape = tuple(int(v) for v in data_shape)
        name = SHAPE_PRESETS.get(shape, CUSTOM)
        return name, (f"No preset named: the {name!r} preset, chosen by the data's image "
                      f"shape {'x'.join(map(str, shape))} (height x width x channels).")
    if dataset not in preset_names():
        raise ValueError(f"Unknown preset. Expected one of {preset_names()}. "
                         f"Received: dataset={dataset!r}")
    if data_dir is None and dataset in DEMO_PRESETS:
        name = DEMO_PRESETS[dataset]
        return name, (f"dataset={dataset!r} without data_dir: running the {name!r} preset "
                      f"on the built-in {PRESETS[name].data.simulator!r} simulator.")
    if data_dir is None and (dataset == CUSTOM or (
            PRESETS[dataset].data.data_dir is None and dataset not in DEMO_PRESETS.values())):
        raise ValueError(f"Preset {dataset!r} reads a converted data folder (see "
                         "data_prep/README.md) and needs one. "
                         f"Received: dataset={dataset!r}, data_dir=None")
    return dataset, None


def override(config, overrides: dict[str, Any]):
    """Returns `config` with dotted-path fields replaced, e.g. `{"train.steps": 10}`.

    Works on any frozen config dataclass (`SimGANConfig`, the evaluation's `EvalConfig`).
    Values are used as given (`parse_overrides` makes them from strings); a path may name
    a whole section (`{"refiner": RefinerConfig(...)}`). The old paths of moved fields
    (`MOVED_PATHS`, e.g. `train.deterministic`) set the new ones.

    Raises:
      ValueError: on an unknown field path.
    """
    for path, value in overrides.items():
        path = _canonical_path(type(config), path)
        _field_type(type(config), path)  # raises on an unknown path
        config = _replace_path(config, path.split("."), value)
    return config


def _replace_path(obj, parts, value):
    if len(parts) == 1:
        return dataclasses.replace(obj, **{parts[0]: value})
    child = getattr(obj, parts[0])
    return dataclasses.replace(obj, **{parts[0]: _replace_path(child, parts[1:], value)})


def _canonical_path(config_class: type, path: str) -> str:
    if issubclass(config_class, SimGANConfig):
        return MOVED_PATHS.get(path, path)
    return path


def _field_type(config_class: type, path: str):
    """The declared type of the field at dotted `path`; ValueError if there is none."""
    hint, parts = config_class, path.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(hint):
            raise ValueError(f"Unknown config field {path!r}: {'.'.join(parts[:i])!r} is "
                             f"{_type_name(hint)}, not a section.")
        names = sorted(f.name for f in dataclasses.fields(hint))
        if part not in names:
            raise ValueError(f"Unknown config field {path!r}: {hint.__name__} has {names}.")
        hint = typing.get_type_hints(hint)[part]
    return hint


# --- Command line: named flags and `--config=PATH=VALUE` -------------------------------

# train.py's named flags: flag name -> the config field path (or paths) it sets.
FLAG_ALIASES = {
    "data_dir": "data.data_dir",
    "batch_size": "train.batch_size",
    "steps": "train.steps",
    "pretrain_refiner_steps": "train.pretrain_refiner_steps",
    "pretrain_discriminator_steps": "train.pretrain_discriminator_steps",
    "k_g": "train.k_g",
    "k_d": "train.k_d",
    "reg_weight": "train.reg_weight",
    "history_size": "train.history_size",
    "adversarial_loss": "discriminator.output",
    "optimizer": ("refiner_optimizer.name", "discriminator_optimizer.name"),
    "refiner_lr": "refiner_optimizer.learning_rate",
    "discriminator_lr": "discriminator_optimizer.learning_rate",
    "pretrain_lr": "train.pretrain_learning_rate",
    "seed": "train.seed",
    "deterministic": "runtime.deterministic",
    "strategy": "runtime.strategy",
    "log_every": "train.log_every",
    "image_every": "train.image_every",
    "checkpoint_every": "train.checkpoint_every",
    "export": "train.export",
    "refiner_filters": "refiner.filters",
    "refiner_blocks": "refiner.num_blocks",
    "refiner_noise": "refiner.noise_channels",
    "refiner_grain": "refiner.grain",
    "refiner_lighting": "refiner.lighting",
    "refiner_highlights": "refiner.highlights",
    "refiner_glint": "refiner.glint",
    "glint_placement": "refiner.glint_placement",
    "refiner_padding": "refiner.padding",
    "keep_checkpoints": "train.keep_checkpoints",
    "skip_bad_records": "data.skip_bad_records",
    "data_service": "data.data_service",
    "mixed_precision": "runtime.mixed_precision",
    "shuffle_buffer": "data.shuffle_buffer",
    "ema_decay": "train.ema_decay",
    "spectral_norm": "discriminator.spectral_norm",
    "r1_weight": "train.r1_weight",
    "r1_every": "train.r1_every",
    "reg_feature": "train.reg_feature",
    "task_weight": "train.task_weight",
    "task_network": "train.task_network",
    "augment": "train.augment",
    "balance_target": "train.balance_target",
    "spectral_weight": "train.spectral_weight",
}

_NONE_WORDS = ("none", "null")
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def command_line_overrides(flag_values: dict[str, Any], config_args: Iterable[str],
                           aliases: dict = FLAG_ALIASES,
                           config_class: type = SimGANConfig) -> dict[str, Any]:
    """The overrides of an entry point: its named flags, then its `PATH=VALUE` strings.

    Args:
      flag_values: `{flag name: value}` of the named flags; `None` means not given.
      config_args: `PATH=VALUE` strings (`--config`), see `parse_overrides`.
      aliases: `{flag name: path or tuple of paths}` (default: train.py's).
      config_class: the config dataclass the paths are in.

    Returns:
      `{path: value}` for `override`. A `PATH=VALUE` string wins over a named flag
      that sets the same field, and a later string over an earlier one.

    Raises:
      ValueError: from `parse_overrides`.
    """
    overrides = {}
    for flag, paths in aliases.items():
        if flag_values.get(flag) is not None:
            for path in paths if isinstance(paths, tuple) else (paths,):
                overrides[path] = flag_values[flag]
    overrides.update(parse_overrides(config_args, config_class))
    return overrides


def parse_overrides(config_args: Iterable[str],
                    config_class: type = SimGANConfig) -> dict[str, Any]:
    """Parses `PATH=VALUE` strings into `{path: typed value}` (a later one wins).

    Each value is parsed by the declared type of its field: `int`, `float`, `bool`
    (`true`/`false`, `1`/`0`, `yes`/`no`, any case), `str` as written, `None` or `null`
    for an optional field, and JSON for a tuple: `discriminator.layers` takes a list of
    layer objects, e.g. `[{"kind": "conv", "filters": 2, "kernel_size": 1}]`.

    Args:
      config_args: strings like `"refiner.kernel_size=5"`.
      config_class: the config dataclass the paths are in (default `SimGANConfig`).

    Raises:
      ValueError: on a string without `=`, an unknown path, a path naming a section
        rather than a field, or a value its field's type cannot take; the message names
        the path, the value and the expected type.
    """
    return dict(_parse_override(arg, config_class) for arg in config_args)


def _parse_override(arg: str, config_class: type) -> tuple[str, Any]:
    path, equals, text = arg.partition("=")
    path = path.strip()
    if not equals or not path:
        raise ValueError(f"A config override is PATH=VALUE, e.g. train.k_d=2. Received: {arg!r}")
    path = _canonical_path(config_class, path)
    try:
        hint = _field_type(config_class, path)
    except ValueError as e:
        raise ValueError(f"{e} Received: {arg!r}") from None
    if dataclasses.is_dataclass(hint):
        raise ValueError(f"Config field {path!r} is a section ({hint.__name__}): set one of "
                         f"its fields, e.g. {path}.{dataclasses.fields(hint)[0].name}=... "
                         f"Received: {arg!r}")
    try:
        return path, _parse_text(hint, text)
    except (ValueError, TypeError) as e:
        detail = f" ({e})" if _is_tuple(_unwrap_optional(hint)[0]) else ""
        raise ValueError(f"Config field {path!r} expects {_type_name(hint)}{detail}. "
                         f"Received: {arg!r}") from None


def _parse_text(hint, text: str):
    """`text` as a value of type `hint`; ValueError or TypeError if it is not one."""
    hint, optional = _unwrap_optional(hint)
    word = text.strip().lower()
    if optional and word in _NONE_WORDS:
        return None
    if hint is str:
        return text
    if hint is bool:
        if word not in _BOOL_WORDS:
            raise ValueError(text)
        return _BOOL_WORDS[word]
    if hint in (int, float):
        return hint(text)
    return _from_json_value(hint, json.loads(text))


def _from_json_value(hint, value):
    """A JSON-decoded `value` checked against (and converted to) type `hint`."""
    hint, optional = _unwrap_optional(hint)
    if value is None and optional:
        return None
    if hint is float and type(value) in (int, float):
        return float(value)
    if hint in (bool, int, str) and type(value) is hint:  # a bool is not an int here
        return value
    if _is_tuple(hint) and isinstance(value, list):
        item = (typing.get_args(hint) or (None,))[0]
        return tuple(v if item is None else _from_json_value(item, v) for v in value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        hints = typing.get_type_hints(hint)
        names = [f.name for f in dataclasses.fields(hint)]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{hint.__name__} has no field {unknown}; it has {names}")
        return hint(**{k: _from_json_value(hints[k], v) for k, v in value.items()})
    raise ValueError(f"{value!r} is not {_type_name(hint)}")


def _unwrap_optional(hint) -> tuple[Any, bool]:
    """`(T, True)` for `T | None`, `(hint, False)` otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _is_tuple(hint) -> bool:
    return hint is tuple or typing.get_origin(hint) is tuple


def _type_name(hint) -> str:
    """How an error names a type: `int`, `float or null`, `a JSON list of ConvSpec ...`."""
    hint, optional = _unwrap_optional(hint)
    if _is_tuple(hint):
        item = (typing.get_args(hint) or (None,))[0]
        name = "a JSON list"
        if dataclasses.is_dataclass(item):
            keys = ", ".join(f.name for f in dataclasses.fields(item))
            name += f" of {item.__name__} objects with keys {keys}"
    elif dataclasses.is_dataclass(hint):
        name = f"a JSON object of {hint.__name__}"
    elif hint is bool:
        name = "bool (true or false)"
    else:
        name = getattr(hint, "__name__", str(hint))
    return f"{name} or null" if optional else name
