"""RoIAlign (and position-sensitive RoIAlign) as the plan says: the sample walk
(_align_walk.py) in every call mode, the contraction (_contract.py) for RoIs beyond the walk's
grid limit, and the contraction's adjoint as the gradient."""
from __future__ import annotations

import tensorflow as tf

from ._align_kernels import align_weights
from ._align_walk import MAX_SAMPLES_PER_BIN, walk_counts, walk_impl, walk_xla
from ._contract import contract_dense, contract_dense_vjp, contract_sparse, contract_sparse_vjp
from .compile_policy import Plan, bucketed

_GROUP = 16  # RoIs per pass of a compiled walk (16 * 49 bins of C channels stay in cache)
_UNROLL = 2  # samples per step of a compiled walk
_ONE_PASS_SAMPLES = 16  # a fixed grid up to this size: all RoIs and samples in one fused pass


def roi_align_core(features, boxes, ph, pw, scale, *, sampling_ratio: int, aligned: bool, plan: Plan):
    """RoIAlign of validated float32 inputs."""
    return align_core(features, boxes, ph, pw, scale, sampling_ratio, aligned, plan)


def align_core(features, boxes, ph, pw, scale, sampling_ratio, aligned, plan, position_sensitive=False):
    """``position_sensitive``: bin ``(p, q)`` keeps only its channel group (PS RoIAlign)."""
    boxes = tf.stop_gradient(boxes)
    contract, vjp = (contract_dense, contract_dense_vjp) if plan.xla else (contract_sparse, contract_sparse_vjp)
    static = dict(sampling_ratio=sampling_ratio, aligned=aligned, grouped_channels=position_sensitive)

    def weights(feats, bx):
        shape = tf.shape(feats)
        return align_weights(bx, ph, pw, scale, sampling_ratio, aligned, shape[1], shape[2])

    @tf.custom_gradient
    def align(feats):
        def general(bx):  # every channel of every bin, then each bin's group
            out = contract(feats, tf.cast(bx[:, 0], tf.int32), *weights(feats, bx))
            return ps_diagonal(out, ph, pw) if position_sensitive else out

        def walk(bx):
            if not plan.compiled:
                return walk_impl(feats, bx, ph, pw, scale, **static)
            one_pass = sampling_ratio > 0 and sampling_ratio**2 <= _ONE_PASS_SAMPLES  # all RoIs, one fused step
            shape = dict(group=None, unroll=sampling_ratio**2) if one_pass else dict(group=_GROUP, unroll=_UNROLL)
            if plan.xla:
                return walk_impl(feats, bx, ph, pw, scale, **shape, **static)
            return walk_xla(feats, bx, ph, pw, scale, **shape, **static)

        out = _walk_or_contract(walk, general, boxes, ph, pw, scale, sampling_ratio, aligned, plan)

        def grad(upstream):
            if position_sensitive:
                upstream = ps_spread(upstream, ph, pw)
            return vjp(feats, tf.cast(boxes[:, 0], tf.int32), *weights(feats, boxes), upstream)

        return out, grad

    return align(features)


def _walk_or_contract(walk, general, boxes, ph, pw, scale, sampling_ratio, aligned, plan):
    """The walk for every RoI with at most MAX_SAMPLES_PER_BIN samples per bin, ``general``
    for the rest (boxes many times the map, where the walk would loop as long as torchvision)."""
    if not plan.huge:
        return bucketed(walk, boxes, plan.bucket)
    walks = walk_counts(boxes, ph, pw, scale, sampling_ratio, aligned) <= MAX_SAMPLES_PER_BIN
    all_walk = tf.reduce_all(walks)
    if plan.xla:  # no data-dependent subsets under XLA: both for every RoI when one is huge
        both = lambda: tf.where(walks[:, None, None, None], walk(boxes), general(boxes))  # noqa: E731
        return tf.cond(all_walk, lambda: walk(boxes), both)
    out = bucketed(walk, boxes, plan.bucket)

    def patch():  # the walk left those RoIs at 0
        big = tf.where(tf.logical_not(walks))[:, 0]
        return tf.tensor_scatter_nd_update(out, big[:, None], general(tf.gather(boxes, big)))

    return tf.cond(all_walk, lambda: out, patch)


def ps_diagonal(full, ph, pw):
    """``(K, ph, pw, C_out)``: bin ``(p, q)``'s own channel group of an all-channel result."""
    shape = tf.shape(full)
    k, groups = shape[0], ph * pw
    grouped = tf.reshape(full, tf.stack([k, groups, shape[3] // groups, groups]))  # [k, bin, c, group]
    diagonal = tf.linalg.diag_part(tf.transpose(grouped, [0, 2, 1, 3]))  # (K, c_out, bin)
    return tf.reshape(tf.transpose(diagonal, [0, 2, 1]), tf.stack([k, ph, pw, -1]))


def ps_spread(upstream, ph, pw):
    """The adjoint of ``ps_diagonal``: each bin's gradient placed in its own channel group."""
    one_hot = tf.reshape(tf.eye(ph * pw), [1, ph, pw, 1, ph * pw])
    full = upstream[..., None] * one_hot  # (K, ph, pw, C_out, groups): channel c * groups + g
    shape = tf.shape(upstream)
    return tf.reshape(full, tf.stack([shape[0], ph, pw, shape[3] * ph * pw]))
