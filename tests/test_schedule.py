import pytest

from simgan_tf.modeling.schedule import Phase, Schedule


def test_phases_follow_algorithm_1():
    s = Schedule(pretrain_refiner_steps=3, pretrain_discriminator_steps=2, k_g=2, k_d=1,
                 iterations=3)
    phases = [s.phase(i) for i in range(s.total_steps)]
    P, D, R, A = (Phase.PRETRAIN_REFINER, Phase.PRETRAIN_DISCRIMINATOR, Phase.REFINER,
                  Phase.DISCRIMINATOR)
    assert phases == [P, P, P, D, D, R, R, A, R, R, A, R, R, A]
    assert s.total_steps == 14 and s.adversarial_start == 5
    assert [s.iteration(i) for i in (0, 5, 7, 8, 13, 14)] == [0, 0, 0, 1, 2, 3]


def test_k_g_50_and_no_pretraining():
    s = Schedule(0, 0, k_g=50, k_d=2, iterations=2)
    phases = [s.phase(i) for i in range(s.total_steps)]
    assert phases == ([Phase.REFINER] * 50 + [Phase.DISCRIMINATOR] * 2) * 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(k_g=0), "k_g=0"), (dict(k_d=0), "k_d=0"),
    (dict(iterations=-1), "iterations >= 0. Received: -1"),
    (dict(pretrain_refiner_steps=-5), "Received: -5"),
])
def test_rejects_bad_values(kwargs, message):
    args = dict(pretrain_refiner_steps=1, pretrain_discriminator_steps=1, k_g=2, k_d=1,
                iterations=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Schedule(**args)
    with pytest.raises(ValueError, match="step >= 0"):
        Schedule(1, 1, 1, 1, 1).phase(-1)
