"""Algorithm 1's schedule: which update a given step performs.

Steps count parameter updates from 0. The first `pretrain_refiner_steps` steps update the
refiner on the self-regularization term alone, the next `pretrain_discriminator_steps`
steps update the discriminator; after that the steps cycle through K_g refiner updates
(adversarial + self-regularization loss) followed by K_d discriminator updates. One cycle
is one iteration of Algorithm 1's outer loop.
"""

from __future__ import annotations

import dataclasses
import enum


class Phase(enum.IntEnum):
    """The kind of update a step performs."""
    PRETRAIN_REFINER = 0
    PRETRAIN_DISCRIMINATOR = 1
    REFINER = 2
    DISCRIMINATOR = 3


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Maps a step number to its `Phase`.

    Attributes:
      pretrain_refiner_steps: refiner updates on the L1 term alone.
      pretrain_discriminator_steps: discriminator updates after refiner pretraining.
      k_g: refiner updates per Algorithm 1 iteration.
      k_d: discriminator updates per Algorithm 1 iteration.
      iterations: Algorithm 1 iterations after pretraining.
    """
    pretrain_refiner_steps: int
    pretrain_discriminator_steps: int
    k_g: int
    k_d: int
    iterations: int

    def __post_init__(self):
        for name in ("pretrain_refiner_steps", "pretrain_discriminator_steps", "iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"Expected {name} >= 0. Received: {getattr(self, name)}")
        if self.k_g < 1 or self.k_d < 1:
            raise ValueError(f"Expected k_g >= 1 and k_d >= 1. Received: k_g={self.k_g}, "
                             f"k_d={self.k_d}")

    @property
    def adversarial_start(self) -> int:
        return self.pretrain_refiner_steps + self.pretrain_discriminator_steps

    @property
    def total_steps(self) -> int:
        return self.adversarial_start + self.iterations * (self.k_g + self.k_d)

    def phase(self, step: int) -> Phase:
        """The phase of update number `step` (0-based)."""
        if step < 0:
            raise ValueError(f"Expected step >= 0. Received: {step}")
        if step < self.pretrain_refiner_steps:
            return Phase.PRETRAIN_REFINER
        if step < self.adversarial_start:
            return Phase.PRETRAIN_DISCRIMINATOR
        within = (step - self.adversarial_start) % (self.k_g + self.k_d)
        return Phase.REFINER if within < self.k_g else Phase.DISCRIMINATOR

    def iteration(self, step: int) -> int:
        """Algorithm 1 iterations completed before update `step` (0 during pretraining)."""
        return max(0, step - self.adversarial_start) // (self.k_g + self.k_d)

    def discriminator_updates_before(self, step: int) -> int:
        """Discriminator updates (pretraining and adversarial) done before update `step`."""
        if step < 0:
            raise ValueError(f"Expected step >= 0. Received: {step}")
        if step < self.adversarial_start:
            return max(0, step - self.pretrain_refiner_steps)
        cycle = self.k_g + self.k_d
        iterations, within = divmod(step - self.adversarial_start, cycle)
        return (self.pretrain_discriminator_steps + iterations * self.k_d
                + max(0, within - self.k_g))
