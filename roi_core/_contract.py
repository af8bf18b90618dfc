"""RoIAlign as a contraction of the features with separable weights:
``out[k, p, q] = sum_hw wy[k, p, h] wx[k, q, w] F[b_k, h, w]``, and its adjoint. Dense (static
shapes, for a caller's XLA) or sparse (work in proportion to the area the RoIs cover)."""
from __future__ import annotations

import tensorflow as tf

def _image_rows(b, n_img, wy):
    """``(K*ph, B*H)``: each RoI's row weights placed at its image's rows."""
    k, ph = tf.shape(wy)[0], tf.shape(wy)[1]
    one_hot = tf.one_hot(b, n_img, dtype=tf.float32)  # (K, B)
    return tf.reshape(wy[:, :, None, :] * one_hot[:, None, :, None], tf.stack([k * ph, n_img * tf.shape(wy)[2]]))


def contract_dense(features, b, wy, wx):
    """out[k, p, q] = sum_hw wy[k, p, h] wx[k, q, w] F[b_k, h, w] with static shapes (XLA)."""
    shape = tf.shape(features)
    n_img, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    k, ph = tf.shape(wy)[0], tf.shape(wy)[1]
    rows = tf.matmul(_image_rows(b, n_img, wy), tf.reshape(features, [n_img * height, width * channels]))
    rows = tf.reshape(rows, [k, ph, width, channels])
    return tf.einsum("kpwc,kqw->kpqc", rows, wx)


def contract_dense_vjp(features, b, wy, wx, upstream):
    """Gradient of contract_dense with respect to the features."""
    shape = tf.shape(features)
    n_img, width, channels = shape[0], shape[2], shape[3]
    rows = tf.einsum("kpqc,kqw->kpwc", upstream, wx)
    rows = tf.reshape(rows, [-1, width * channels])
    grad = tf.matmul(_image_rows(b, n_img, wy), rows, transpose_a=True)
    return tf.reshape(grad, shape)


def _sparse_weights(features, b, wy, wx):
    """The contraction as a sparse ``(K*ph*pw, B*H*W)`` matrix: its work is proportional to the
    area the RoIs cover, not to the map."""
    shape = tf.shape(features)
    n_img, height, width = (tf.cast(shape[i], tf.int64) for i in range(3))
    k = tf.shape(wy, out_type=tf.int64)[0]
    ph, pw = tf.shape(wy, out_type=tf.int64)[1], tf.shape(wx, out_type=tf.int64)[1]
    ny = tf.where(wy != 0.0)  # (Ny, 3) [k, p, h], sorted by k
    nx = tf.where(wx != 0.0)  # (Nx, 3) [k, q, w], sorted by k
    vy, vx = tf.gather_nd(wy, ny), tf.gather_nd(wx, nx)
    count_x = tf.math.bincount(tf.cast(nx[:, 0], tf.int32), minlength=tf.cast(k, tf.int32), maxlength=tf.cast(k, tf.int32), dtype=tf.int64)
    start_x = tf.cumsum(count_x, exclusive=True)
    ky = ny[:, 0]
    lens = tf.gather(count_x, ky)
    starts = tf.gather(start_x, ky)
    x_sel = tf.ragged.range(starts, starts + lens).flat_values
    y_sel = tf.repeat(tf.range(tf.shape(ny, out_type=tf.int64)[0]), lens)
    pick_y = tf.gather(ny, y_sel)
    pick_x = tf.gather(nx, x_sel)
    kk = pick_y[:, 0]
    row = (kk * ph + pick_y[:, 1]) * pw + pick_x[:, 1]
    col = (tf.gather(tf.cast(b, tf.int64), kk) * height + pick_y[:, 2]) * width + pick_x[:, 2]
    val = tf.gather(vy, y_sel) * tf.gather(vx, x_sel)
    return tf.SparseTensor(tf.stack([row, col], axis=1), val, tf.stack([k * ph * pw, n_img * height * width]))


def contract_sparse(features, b, wy, wx):
    shape = tf.shape(features)
    out = tf.sparse.sparse_dense_matmul(_sparse_weights(features, b, wy, wx), tf.reshape(features, [-1, shape[3]]))
    return tf.reshape(out, tf.stack([tf.shape(wy)[0], tf.shape(wy)[1], tf.shape(wx)[1], shape[3]]))


def contract_sparse_vjp(features, b, wy, wx, upstream):
    shape = tf.shape(features)
    matrix = _sparse_weights(features, b, wy, wx)
    grad = tf.sparse.sparse_dense_matmul(matrix, tf.reshape(upstream, [-1, shape[3]]), adjoint_a=True)
    return tf.reshape(grad, shape)
