"""Contracting a tensor's last axis with a matrix, without TensorFlow's broadcasting matmul.

`tf.matmul` of a rank-4 tensor and a rank-2 one runs as a batch matmul whose second
operand is broadcast over the batch axes, and so does `tf.einsum("bhwf,fc->bhwc", x, w)`
once TensorFlow's oneDNN rewrite (on by default on CPU, see `simgan_tf.runtime`) has made
it a `_MklEinsum`. TensorFlow 2.21's oneDNN kernel for that case reads past the broadcast
operand's buffer and corrupts the heap. The damage surfaces at random, as a SIGSEGV or a
glibc abort ("corrupted double-linked list", "corrupted size vs. prev_size") in whatever
kernel allocates next, typically in a process's first training step.

`contract_last` flattens the leading axes instead and runs one 2-D matmul, which is the
same product; every network and loss of the package that multiplies a feature map by a
matrix goes through it (`tests/test_contraction.py` checks that no traced training step
holds an `Einsum` or `BatchMatMul` op).
"""

from __future__ import annotations

import tensorflow as tf


def contract_last(x: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """`x @ matrix` over `x`'s last axis: `[..., F] x [F, C] -> [..., C]`.

    Args:
      x: a tensor of rank 1 or more whose last axis has size F.
      matrix: `[F, C]`, of `x`'s dtype.

    Returns:
      `[..., C]`: `sum_f x[..., f] * matrix[f, c]`, with `x`'s leading static shape kept.

    Raises:
      ValueError: if `matrix` is not rank 2 or the contracted sizes differ (when known).
    """
    x, matrix = tf.convert_to_tensor(x), tf.convert_to_tensor(matrix)
    if matrix.shape.rank != 2:
        raise ValueError(f"Expected a rank-2 matrix. Received: shape={matrix.shape}")
    if x.shape.rank is not None and x.shape.rank < 1:
        raise ValueError(f"Expected x of rank 1 or more. Received: shape={x.shape}")
    features, outputs = matrix.shape[0], matrix.shape[1]
    if x.shape[-1] is not None and features is not None and x.shape[-1] != features:
        raise ValueError(f"The last axis of x ({x.shape[-1]}) must match the matrix's first "
                         f"({features}). Received: x.shape={x.shape}, "
                         f"matrix.shape={matrix.shape}")
    flat = tf.matmul(tf.reshape(x, [-1, tf.shape(x)[-1]]), matrix)
    result = tf.reshape(flat, tf.concat([tf.shape(x)[:-1], tf.shape(matrix)[-1:]], 0))
    result.set_shape(x.shape[:-1].concatenate([outputs]))
    return result
