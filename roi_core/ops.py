"""The public RoI operators, channels last, equal to torchvision's CPU kernels.

Conventions shared by every operator:

* ``features``: ``(B, H, W, C)`` float tensor or array (computed in float32).
* ``boxes``: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels;
  ``spatial_scale`` maps them onto the feature grid (``feature = pixel * spatial_scale``).
* ``output_size``: ``int`` or ``(ph, pw)``. Results are ``(K, ph, pw, C)`` float32 tensors;
  ``K = 0`` gives an empty result of that shape.
* Every call mode gives the same numbers: eager, ``tf.function`` and ``jit_compile=True``.

This module validates, picks a ``compile_policy.Plan`` and hands over to the kernels. Eager
calls run as one graph (a ``tf.function`` with relaxed shapes) instead of hundreds of eager ops.
"""
from __future__ import annotations

import tensorflow as tf

from . import compile_policy
from ._align_core import roi_align_core
from ._pool_kernels import roi_pool_core
from .boxes import (
    normalize_output_size,
    validate_boxes,
    validate_features,
    validate_sampling_ratio,
    validate_spatial_scale,
)
from .compile_policy import EAGER_COMPILE_MIN_OUTPUTS  # noqa: F401  (re-exported: the threshold's old home)

_roi_pool_graph = tf.function(roi_pool_core, reduce_retracing=True)
_roi_align_graph = tf.function(roi_align_core, reduce_retracing=True)


def _prepare(features, boxes, output_size, spatial_scale):
    ph, pw = normalize_output_size(output_size)
    scale = validate_spatial_scale(spatial_scale)
    features = validate_features(features)
    boxes = validate_boxes(boxes, num_images=features.shape[0])
    return features, boxes, ph, pw, scale


def _run(core, graph, features, boxes, ph, pw, scale, plan, **static):
    """Eagerly: the core as one graph, the scale as a tensor (new scales reuse the trace)."""
    if tf.executing_eagerly():
        return graph(features, boxes, ph, pw, tf.constant(scale, tf.float32), plan=plan, **static)
    return core(features, boxes, ph, pw, scale, plan=plan, **static)


def roi_pool(features, boxes, output_size, spatial_scale=1.0):
    """Fast R-CNN RoI max pooling, equal to ``torchvision.ops.roi_pool`` on NHWC data.

    Args:
      features: ``(B, H, W, C)`` float tensor or array.
      boxes: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels.
      output_size: ``int`` or ``(ph, pw)``.
      spatial_scale: feature cells per input pixel (``1 / stride``).

    Coordinates are scaled and rounded half away from zero; the end is inclusive (+1); bin
    edges are ``floor``/``ceil``, clipped to the map; an empty bin gives 0. The gradient goes to
    each bin's first maximum (row-major), as torchvision's strict ``>`` does.

    Returns:
      ``(K, ph, pw, C)`` float32 tensor.
    """
    features, boxes, ph, pw, scale = _prepare(features, boxes, output_size, spatial_scale)
    plan = compile_policy.make_plan(features, boxes, ph, pw, compile_policy.pool_bounds)
    return _run(roi_pool_core, _roi_pool_graph, features, boxes, ph, pw, scale, plan)


def roi_align(features, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign, equal to ``torchvision.ops.roi_align`` on NHWC data.

    Args:
      features: ``(B, H, W, C)`` float tensor or array.
      boxes: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels.
      output_size: ``int`` or ``(ph, pw)``.
      spatial_scale: feature cells per input pixel.
      sampling_ratio: samples per bin along each axis; ``<= 0`` is adaptive,
        ``ceil(roi_size / output_size)``.
      aligned: shift boxes by half a pixel (``-0.5``) so that pixel centres line up.

    Each bin averages bilinear samples; samples outside ``[-1, H] x [-1, W]`` count as 0 and
    are still counted in the average, as in torchvision. With ``aligned=False`` RoI sizes are
    clamped to at least 1.

    Returns:
      ``(K, ph, pw, C)`` float32 tensor.
    """
    features, boxes, ph, pw, scale = _prepare(features, boxes, output_size, spatial_scale)
    sampling_ratio = validate_sampling_ratio(sampling_ratio)
    plan = compile_policy.make_plan(features, boxes, ph, pw, compile_policy.align_bounds)
    static = dict(sampling_ratio=sampling_ratio, aligned=bool(aligned))
    return _run(roi_align_core, _roi_align_graph, features, boxes, ph, pw, scale, plan, **static)
