import numpy as np
import pytest
import tensorflow as tf

from simgan_tf.modeling.history import HistoryBuffer

SHAPE = (2, 3, 1)


def _images(values):
    """One image per value, every pixel equal to it: `[n, 2, 3, 1]`."""
    return tf.constant(np.asarray(values, np.float32)[:, None, None, None] * np.ones(SHAPE,
                                                                                    np.float32))


def _ids(images):
    """The value of each image (all its pixels are equal)."""
    return np.asarray(images)[:, 0, 0, 0].tolist()


def test_fills_empty_slots_in_order_then_replaces_random_distinct_slots():
    buffer = HistoryBuffer(10, SHAPE)
    buffer.update(_images([1, 2, 3, 4]), seed=tf.constant([0, 0]))
    assert int(buffer.fill) == 4
    assert _ids(buffer.images)[:4] == [1, 2, 3, 4] and _ids(buffer.images)[4:] == [0] * 6
    buffer.update(_images([5, 6, 7, 8]), seed=tf.constant([0, 1]))
    assert int(buffer.fill) == 8
    # 2 images fill the last empty slots, 2 replace distinct random earlier slots.
    buffer.update(_images([9, 10, 11, 12]), seed=tf.constant([0, 2]))
    ids = _ids(buffer.images)
    assert int(buffer.fill) == 10
    assert ids[8:] == [9, 10]
    assert sorted(set(ids) & {11, 12}) == [11, 12]
    assert sum(i in (1, 2, 3, 4, 5, 6, 7, 8) for i in ids) == 6
    before = ids
    buffer.update(_images([20, 21, 22, 23]), seed=tf.constant([0, 3]))
    after = _ids(buffer.images)
    changed = [i for i in range(10) if before[i] != after[i]]
    assert len(changed) == 4 and sorted(after[i] for i in changed) == [20, 21, 22, 23]


def test_mix_is_all_fresh_while_empty_then_half_history():
    buffer = HistoryBuffer(6, SHAPE)
    fresh = _images([100, 101, 102, 103])
    assert _ids(buffer.mix(fresh, tf.constant([1, 1]))) == [100, 101, 102, 103]
    buffer.update(_images([1, 2, 3]), seed=tf.constant([0, 0]))
    for s in range(20):
        mixed = _ids(buffer.mix(fresh, tf.constant([1, s])))
        assert mixed[:2] == [100, 101]
        assert set(mixed[2:]) <= {1, 2, 3}  # only filled slots, never empty (zero) ones


def test_sampling_covers_every_filled_slot():
    buffer = HistoryBuffer(50, SHAPE)
    buffer.update(_images(np.arange(1, 31)), seed=tf.constant([0, 0]))
    seen = set()
    for s in range(60):
        seen |= set(_ids(buffer.mix(_images(np.full(16, -1.0)), tf.constant([7, s])))[8:])
    assert seen == set(range(1, 31))


def test_size_zero_passes_through():
    buffer = HistoryBuffer(0, SHAPE)
    fresh = _images([5, 6, 7, 8])
    assert _ids(buffer.mix(fresh, tf.constant([0, 0]))) == [5, 6, 7, 8]
    buffer.update(fresh[:2], tf.constant([0, 0]))
    assert int(buffer.fill) == 0 and not buffer.enabled


@pytest.mark.parametrize("size", [-1, 2.5])
def test_rejects_bad_size(size):
    with pytest.raises(ValueError, match=f"Received: size={size}"):
        HistoryBuffer(size, SHAPE)


def test_checkpoint_round_trip(tmp_path):
    buffer = HistoryBuffer(8, SHAPE)
    buffer.update(_images([1, 2, 3, 4, 5]), seed=tf.constant([0, 0]))
    path = tf.train.Checkpoint(history=buffer).save(str(tmp_path / "ckpt"))
    restored = HistoryBuffer(8, SHAPE)
    tf.train.Checkpoint(history=restored).restore(path).assert_consumed()
    assert int(restored.fill) == 5
    np.testing.assert_array_equal(restored.images.numpy(), buffer.images.numpy())


def test_mirrored_update_gathers_all_replicas_and_stays_identical(mirrored_strategy):
    strategy = mirrored_strategy
    with strategy.scope():
        buffer = HistoryBuffer(8, SHAPE)

    @tf.function
    def step(seed_step):
        def replica_fn():
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            base = tf.cast(replica, tf.float32) * 10 + tf.cast(seed_step, tf.float32) * 100
            fresh = _images([1, 2]) + base  # replica 0: 1, 2; replica 1: 11, 12 (+100 s)
            buffer.update(fresh, seed=tf.stack([tf.constant(3, tf.int64), seed_step]))
        strategy.run(replica_fn)

    step(tf.constant(0, tf.int64))
    copies = strategy.experimental_local_results(buffer.images)
    assert _ids(copies[0])[:4] == [1, 2, 11, 12]
    np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
    assert [int(f) for f in strategy.experimental_local_results(buffer.fill)] == [4, 4]
    for s in range(1, 4):
        step(tf.constant(s, tf.int64))
        copies = strategy.experimental_local_results(buffer.images)
        np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
    assert set(_ids(copies[0])) >= {311, 312}  # the last step's images of replica 1
