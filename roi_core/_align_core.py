"""Which RoIAlign kernel runs, as the plan says, with the transposed contraction as gradient."""
from __future__ import annotations

import tensorflow as tf

from ._align_adaptive import align_adaptive_impl, align_adaptive_xla, align_fits
from ._align_kernels import align_fixed_impl, align_fixed_xla, align_weights
from ._contract import contract_dense, contract_dense_vjp, contract_sparse, contract_sparse_vjp
from .compile_policy import Plan, bucketed


def roi_align_core(features, boxes, ph, pw, scale, *, sampling_ratio: int, aligned: bool, plan: Plan):
    """RoIAlign of validated float32 inputs. A fixed ``sampling_ratio`` takes the fused direct
    kernel when compiled; otherwise the adaptive windowed kernel for RoIs that fit
    ``plan.bounds`` and the contraction (sparse, or dense under XLA) for the rest."""
    boxes = tf.stop_gradient(boxes)
    if sampling_ratio > 0 and plan.compiled:  # a fixed sample count: the fused direct form is the fastest
        if plan.xla:
            return align_fixed_impl(features, boxes, ph, pw, scale, sampling_ratio, aligned)
        fixed = lambda bx: align_fixed_xla(features, bx, ph, pw, scale, sampling_ratio, aligned)  # noqa: E731
        return bucketed(fixed, boxes, plan.bucket)
    contract, vjp = (contract_dense, contract_dense_vjp) if plan.xla else (contract_sparse, contract_sparse_vjp)

    def weights(feats, bx):
        shape = tf.shape(feats)
        return align_weights(bx, ph, pw, scale, sampling_ratio, aligned, shape[1], shape[2])

    @tf.custom_gradient
    def align(feats):
        general = lambda bx: contract(feats, tf.cast(bx[:, 0], tf.int32), *weights(feats, bx))  # noqa: E731
        if sampling_ratio > 0 or not plan.compiled:
            out = general(boxes)
        else:
            out = align_adaptive_dispatch(feats, boxes, ph, pw, scale, aligned=aligned, plan=plan, general=general)

        def grad(upstream):
            return vjp(feats, tf.cast(boxes[:, 0], tf.int32), *weights(feats, boxes), upstream)

        return out, grad

    return align(features)


def align_adaptive_dispatch(features, boxes, ph, pw, scale, *, aligned, plan: Plan, general):
    """The windowed kernel for RoIs whose windows fit ``plan.bounds``; ``general(boxes)`` (the
    sparse or, under XLA, the dense contraction) for the rest: RoIs well beyond the map."""
    bounds = plan.bounds
    if bounds is None:
        return general(boxes)
    shape = tf.shape(features)
    fits = align_fits(boxes, ph, pw, scale, aligned, shape[1], shape[2], bounds)
    all_fit = tf.reduce_all(fits)
    if plan.xla:  # no data-dependent subsets under XLA: all or nothing
        spare = boxes.shape[0] is None
        kernel = lambda: align_adaptive_impl(features, boxes, ph, pw, scale, aligned, bounds, spare)  # noqa: E731
        return tf.cond(all_fit, kernel, lambda: general(boxes))
    windowed = lambda bx: align_adaptive_xla(features, bx, ph, pw, scale, aligned, bounds)  # noqa: E731
    run = lambda: bucketed(windowed, boxes, plan.bucket)  # noqa: E731
    if boxes.shape[0] is not None:
        out = run()
    else:  # a count known only at run time: never compile the kernel for 0 boxes
        empty = lambda: tf.zeros(tf.stack([0, ph, pw, tf.shape(features)[3]]))  # noqa: E731
        out = tf.cond(tf.shape(boxes)[0] > 0, run, empty)

    def patch():  # the kernel left the RoIs that do not fit at 0
        big = tf.where(tf.logical_not(fits))[:, 0]
        return tf.tensor_scatter_nd_update(out, big[:, None], general(tf.gather(boxes, big)))

    return tf.cond(all_fit, lambda: out, patch)
