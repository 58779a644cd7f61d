"""`contract_last`, and no broadcasting batch matmul in any traced training step
(simgan_tf/modeling/contraction.py says why: TensorFlow 2.21's oneDNN kernel for it
corrupts the heap)."""

import numpy as np
import pytest
import tensorflow as tf

from simgan_tf import config as config_lib
from simgan_tf.modeling.contraction import contract_last
from simgan_tf.modeling.schedule import Phase
from simgan_tf.training import train_lib

BROADCASTING_MATMULS = {"Einsum", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}


def op_types(concrete_function) -> set[str]:
    """Every op type of a traced function, the functions it calls included (gradients,
    `tf.cond` branches)."""
    graph_def = concrete_function.graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


@pytest.mark.parametrize("shape", [(3, 5, 7, 4), (6, 4), (4,), (2, 1, 1, 4)])
def test_contract_last_is_the_matrix_product_over_the_last_axis(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype("f4")
    matrix = rng.normal(size=(4, 3)).astype("f4")
    got = contract_last(x, matrix)
    assert got.shape == shape[:-1] + (3,)
    np.testing.assert_allclose(got, np.einsum("...f,fc->...c", x, matrix), rtol=1e-5,
                               atol=1e-5)


def test_contract_last_keeps_the_static_shape_and_has_the_products_gradients():
    matrix = tf.Variable(np.arange(8, dtype="f4").reshape(4, 2))

    @tf.function(input_signature=[tf.TensorSpec([None, 5, 7, 4], tf.float32)])
    def outputs(x):
        result = contract_last(x, matrix)
        assert result.shape.as_list() == [None, 5, 7, 2]
        return result

    x = tf.ones([2, 5, 7, 4])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(outputs(x))
    # d/dm sum_{b,h,w,c} x[b,h,w,f] m[f,c] = sum_{b,h,w} x[b,h,w,f] = 70 for every (f, c).
    np.testing.assert_allclose(tape.gradient(loss, matrix), np.full((4, 2), 70.0))
    assert not op_types(outputs.get_concrete_function()) & BROADCASTING_MATMULS


def test_contract_last_rejects_a_matrix_that_does_not_fit():
    with pytest.raises(ValueError, match="rank-2 matrix"):
        contract_last(tf.ones([2, 3, 4]), tf.ones([4]))
    with pytest.raises(ValueError, match=r"last axis of x \(4\) must match.*first \(5\)"):
        contract_last(tf.ones([2, 3, 4]), tf.ones([5, 2]))


def test_the_check_sees_an_einsum_of_a_feature_map_and_a_matrix():
    # The same check on the einsum the refiner's output layers used: it must be found.
    function = tf.function(lambda x, m: tf.einsum("bhwf,fc->bhwc", x, m))
    concrete = function.get_concrete_function(tf.TensorSpec([None, 5, 7, 4]),
                                              tf.TensorSpec([4, 2]))
    assert "Einsum" in op_types(concrete)


def test_no_training_step_holds_a_broadcasting_batch_matmul():
    # The gaze preset's refiner (grain, lighting, a glint at the pupil) plus every other
    # output layer and loss that multiplies a feature map by a matrix.
    config = config_lib.override(config_lib.get_preset("gaze"), {
        "refiner.filters": 8, "refiner.num_blocks": 1, "refiner.highlights": 0.1,
        "refiner.noise_channels": 1, "train.spectral_weight": 1.0, "train.batch_size": 4,
        "train.history_size": 8})
    assert config.refiner.grain and config.refiner.lighting and config.refiner.glint
    model = train_lib.build_simgan(config)
    spec = {k: tf.TensorSpec([4, *config.image_shape], tf.float32)
            for k in ("synthetic", "real")}
    for phase in Phase:
        step = tf.function(lambda data, phase=phase: model.train_step(data, phase=phase,
                                                                      r1=False))
        found = op_types(step.get_concrete_function(spec))
        assert "Conv2D" in found or "Conv2DBackpropFilter" in found, phase  # traced
        assert not found & BROADCASTING_MATMULS, (phase, found & BROADCASTING_MATMULS)
