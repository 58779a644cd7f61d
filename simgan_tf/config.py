"""Typed, frozen configuration of a SimGAN run, with named dataset presets.

A run is fully described by one `SimGANConfig`; `train.py` starts from a preset, applies
its flags with `override`, and writes the resolved config as `config.json` into the model
folder. Library code receives configs, never flags.

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

Loss scale and defaults (see also `losses.py` and README, "Defaults"): both loss terms are
sums, the adversarial term over the discriminator's patches, the self-regularization term
over pixels, each averaged over the batch, as in the paper's equations. With those
reductions the paper's SGD at learning rate 0.001 barely moves the refiner in pretraining
and its lambda (1e-4 in public code) lets the adversarial term dominate, so the refiner
collapses to a constant image. Our defaults use Adam: refiner learning rate 1e-3 during
its pretraining and 2e-4 afterwards, discriminator learning rate 1e-3, and lambda = 0.1 per
summed pixel. README ("Defaults") gives what they did on the built-in simulator, measured
with `bench/refine_stats.py`; lambda = 0.05 with a refiner rate of 1e-4 let the refiner
distort the eyes.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

OPTIMIZERS = ("adam", "sgd")
DISCRIMINATOR_OUTPUTS = ("local", "global")
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
    """
    filters: int = 64
    kernel_size: int = 3
    num_blocks: int = 4


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
      output: `local` (the paper's per-patch logits) or `global` (the Fig. 8 ablation:
        the last layer is fully connected over the whole image; see discriminator.py).
    """
    layers: tuple = GAZE_DISCRIMINATOR
    output: str = "local"


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
      deterministic: deterministic input pipeline order (and op determinism).
      log_every: update steps between scalar summaries.
      image_every: update steps between image summaries.
      checkpoint_every: update steps between checkpoints.
      keep_checkpoints: checkpoints kept on disk.
      export: export the refiner as a SavedModel at the end.
      mixed_precision: compute in bfloat16 on CPU or float16 with loss scaling on GPU;
        weights, discriminator logits, losses and the history buffer stay float32.
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
    deterministic: bool = False
    log_every: int = 50
    image_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    export: bool = True
    mixed_precision: bool = False


@dataclasses.dataclass(frozen=True)
class SimGANConfig:
    """Everything that decides a SimGAN run.

    Attributes:
      name: preset name the config came from.
      data, refiner, discriminator, train: see their classes.
      refiner_optimizer, discriminator_optimizer: one optimizer each.
      strategy: `auto`, `one_device`, `mirrored` or `multi_worker`.
    """
    name: str = "gaze"
    data: DataConfig = DataConfig()
    refiner: RefinerConfig = RefinerConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    refiner_optimizer: OptimizerConfig = OptimizerConfig(learning_rate=2e-4)
    discriminator_optimizer: OptimizerConfig = OptimizerConfig(learning_rate=1e-3)
    train: TrainConfig = TrainConfig()
    strategy: str = "auto"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        d = self.data
        return (d.image_height, d.image_width, d.image_channels)

    def validate(self) -> "SimGANConfig":
        """Checks value ranges; raises ValueError saying what was received."""
        t = self.train
        checks = [
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
            (self.strategy in STRATEGIES,
             f"strategy must be one of {STRATEGIES}. Received: {self.strategy!r}"),
            (self.data.simulator in SIMULATORS,
             f"data.simulator must be one of {SIMULATORS}. Received: {self.data.simulator!r}"),
            (self.discriminator.output in DISCRIMINATOR_OUTPUTS,
             f"discriminator.output must be one of {DISCRIMINATOR_OUTPUTS}. "
             f"Received: {self.discriminator.output!r}"),
            (self.data.data_service is None
             or (self.data.data_service.startswith("grpc://")
                 and len(self.data.data_service) > len("grpc://")),
             "data.data_service must look like grpc://host:port. "
             f"Received: {self.data.data_service!r}"),
            (self.data.shuffle_buffer >= 1,
             f"data.shuffle_buffer must be >= 1. Received: {self.data.shuffle_buffer}"),
            (self.data.image_channels in (1, 3),
             f"data.image_channels must be 1 or 3. Received: {self.data.image_channels}"),
            (self.refiner.num_blocks >= 0 and self.refiner.filters >= 1
             and self.refiner.kernel_size % 2 == 1,
             "refiner needs filters >= 1, num_blocks >= 0 and an odd kernel_size. "
             f"Received: {self.refiner}"),
        ]
        for name, opt in (("refiner_optimizer", self.refiner_optimizer),
                          ("discriminator_optimizer", self.discriminator_optimizer)):
            checks.append((opt.name in OPTIMIZERS,
                           f"{name}.name must be one of {OPTIMIZERS}. Received: {opt.name!r}"))
            checks.append((opt.learning_rate > 0,
                           f"{name}.learning_rate must be > 0. Received: {opt.learning_rate}"))
        if t.pretrain_learning_rate is not None:
            checks.append((t.pretrain_learning_rate > 0,
                           "train.pretrain_learning_rate must be > 0. "
                           f"Received: {t.pretrain_learning_rate}"))
        layers = self.discriminator.layers
        checks.append((bool(layers) and layers[-1].kind == "conv" and layers[-1].filters == 2,
                       "discriminator.layers must end with a 2-filter conv (the per-patch "
                       f"logits). Received: {layers[-1] if layers else None}"))
        for spec in layers:
            checks.append((spec.kind in ("conv", "maxpool") and spec.kernel_size >= 1
                           and spec.strides >= 1,
                           f"discriminator layer must be conv or maxpool with kernel_size "
                           f">= 1 and strides >= 1. Received: {spec}"))
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
        return _from_dict(cls, data)


def _from_dict(cls, data):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value = data[field.name]
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            value = _from_dict(hint, value)
        elif field.name == "layers":
            value = tuple(ConvSpec(**layer) for layer in value)
        kwargs[field.name] = value
    return cls(**kwargs)


_GAZE = SimGANConfig(name="gaze")

PRESETS = {
    "gaze": _GAZE,
    "gaze_demo": dataclasses.replace(
        _GAZE,
        name="gaze_demo",
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


def get_preset(name: str) -> SimGANConfig:
    """Returns the named preset; raises ValueError listing the known names."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset. Expected one of {sorted(PRESETS)}. Received: {name!r}")
    return PRESETS[name]


def override(config: SimGANConfig, overrides: dict[str, Any]) -> SimGANConfig:
    """Returns `config` with dotted-path fields replaced, e.g. `{"train.steps": 10}`.

    Raises:
      ValueError: on an unknown field path.
    """
    for path, value in overrides.items():
        config = _replace_path(config, path.split("."), value, path)
    return config


def _replace_path(obj, parts, value, full_path):
    names = {f.name for f in dataclasses.fields(obj)}
    if parts[0] not in names:
        raise ValueError(
            f"Unknown config field {full_path!r}: {type(obj).__name__} has {sorted(names)}.")
    if len(parts) == 1:
        return dataclasses.replace(obj, **{parts[0]: value})
    child = getattr(obj, parts[0])
    return dataclasses.replace(obj, **{parts[0]: _replace_path(child, parts[1:], value, full_path)})
