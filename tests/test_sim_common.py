import dataclasses

import numpy as np
import pytest

from simgan_tf.simulators import common


@pytest.mark.parametrize("value", [-1, 1.5, True, "3", None])
def test_seed_and_n_must_be_non_negative_integers(value):
    with pytest.raises(ValueError, match=f"Received: seed={value!r}"):
        common.check_seed(value)
    with pytest.raises(ValueError, match=f"Received: n={value!r}"):
        common.check_n(value)
    assert common.check_seed(np.int64(7)) == 7 and common.check_n(0) == 0


def test_generators_are_deterministic_and_independent_per_key():
    draw = lambda *key: common.generator(*key).uniform(size=4)
    np.testing.assert_array_equal(draw(1, 0, 0), draw(1, 0, 0))
    for other in [(2, 0, 0), (1, 1, 0), (1, 0, 1)]:
        assert not np.allclose(draw(1, 0, 0), draw(*other))


@dataclasses.dataclass(frozen=True)
class _Config:
    size: int = 3
    a_range: tuple = (0.0, 1.0)


@pytest.mark.parametrize("value, message", [
    ((2.0, 1.0), "finite low <= high"), ((0.0, float("inf")), "finite low <= high"),
    ((1.0,), "pair of numbers"), ("ab", "pair of numbers")])
def test_check_ranges_names_the_field(value, message):
    common.check_ranges(_Config())
    with pytest.raises(ValueError, match=f"{message}. Received: a_range="):
        common.check_ranges(_Config(a_range=value))
