"""Argument checks and seeding shared by the built-in simulators.

Both simulators (`simulator.py`, eyes; `hand_simulator.py`, hand depth) draw every random
value from generators keyed by `(seed, stream, chunk)`, so outputs are byte-identical for
the same arguments and independent of how many samples are rendered at once.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def check_seed(seed) -> int:
    """Returns `seed` as an int; raises ValueError unless it is an integer >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Expected a non-negative integer seed. Received: seed={seed!r}")
    return int(seed)


def check_n(n) -> int:
    """Returns `n` as an int; raises ValueError unless it is an integer >= 0."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"Expected a non-negative integer n. Received: n={n!r}")
    return int(n)


def generator(seed: int, stream: int, chunk: int) -> np.random.Generator:
    """The generator of one (seed, stream, chunk): independent of every other triple."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, chunk)))


def check_ranges(config) -> None:
    """Checks every `*_range` field of a config dataclass is a finite (low, high) pair.

    Raises:
      ValueError: naming the field and the value received.
    """
    for field in dataclasses.fields(config):
        if not field.name.endswith("_range"):
            continue
        value = getattr(config, field.name)
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"Expected a (low, high) pair of numbers. Received: "
                             f"{field.name}={value!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"Expected finite low <= high. Received: "
                             f"{field.name}={value!r}")
