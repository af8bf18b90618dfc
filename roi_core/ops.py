"""The public RoI operators, channels last, equal to torchvision's CPU kernels.

Conventions shared by every operator:

* ``features``: ``(B, H, W, C)`` float tensor or array (computed in float32).
* ``boxes``: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels;
  ``spatial_scale`` maps them onto the feature grid (``feature = pixel * spatial_scale``).
* ``output_size``: ``int`` or ``(ph, pw)``. Results are ``(K, ph, pw, C)`` float32 tensors;
  ``K = 0`` gives an empty result of that shape.
* Every call mode gives the same numbers: eager, ``tf.function`` and ``jit_compile=True``.

This module validates, picks a ``compile_policy.Plan`` and hands over to the kernels. Eager
calls run as one graph (``compile_policy.EagerGraphs``: traced once for any shape) instead of
hundreds of eager ops.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from . import _cpu_path, compile_policy
from ._align_core import roi_align_core
from ._align_walk import any_beyond_walk_graph
from ._multi_scale import box_levels, infer_scale, level_range
from ._pool_kernels import roi_pool_core
from ._position_sensitive import ps_roi_align_core, ps_roi_pool_core
from .boxes import (
    normalize_output_size,
    validate_boxes,
    validate_features,
    validate_sampling_ratio,
    validate_spatial_scale,
)
from .compile_policy import EAGER_COMPILE_MIN_OUTPUTS  # noqa: F401  (re-exported: the threshold's old home)

_roi_pool_graph = compile_policy.EagerGraphs(roi_pool_core)
_roi_align_graph = compile_policy.EagerGraphs(roi_align_core)
_ps_roi_pool_graph = compile_policy.EagerGraphs(ps_roi_pool_core)
_ps_roi_align_graph = compile_policy.EagerGraphs(ps_roi_align_core)


def _prepare(features, boxes, output_size, spatial_scale):
    ph, pw = normalize_output_size(output_size)
    scale = validate_spatial_scale(spatial_scale)
    features = validate_features(features)
    boxes = validate_boxes(boxes, num_images=features.shape[0])
    return features, boxes, ph, pw, scale


def _run(core, graph, features, boxes, ph, pw, scale, plan, direct=None, **static):
    """Eagerly: the core as one graph for any shape, the scale as a tensor (new scales reuse
    the trace); a large call on the CPU takes the ``direct`` loop (``_cpu_path``) instead of
    compiled kernels, when Numba is installed, and so does every later call of that op."""
    if tf.executing_eagerly():
        scale_t = tf.constant(scale, tf.float32)
        graph_call = lambda f: graph(f, boxes, ph, pw, scale_t, plan=plan, **static)  # noqa: E731
        # Small calls take the loops only once they are ready: no Numba import or compile
        # before the first grid.
        if direct and (plan.compiled or _cpu_path.ready(direct)) and _cpu_path.available(features):
            return _cpu_path.run(direct, features, boxes, ph, pw, scale_t, graph_call, **static)
        return graph_call(features)
    return core(features, boxes, ph, pw, scale, plan=plan, **static)


def _align_plan(features, boxes, ph, pw, scale, sampling_ratio, aligned):
    plan = compile_policy.make_plan(features, boxes, ph, pw, compile_policy.no_bounds)
    if tf.executing_eagerly():  # the boxes are known: is any beyond the sample walk's limit?
        beyond = any_beyond_walk_graph(ph, pw, sampling_ratio, aligned)(boxes, tf.constant(scale, tf.float32))
        plan = dataclasses.replace(plan, huge=bool(beyond))
    return plan


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
    return _run(roi_pool_core, _roi_pool_graph, features, boxes, ph, pw, scale, plan, direct="pool")


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
    plan = _align_plan(features, boxes, ph, pw, scale, sampling_ratio, bool(aligned))
    static = dict(sampling_ratio=sampling_ratio, aligned=bool(aligned))
    return _run(roi_align_core, _roi_align_graph, features, boxes, ph, pw, scale, plan, direct="align", **static)


def _channel_groups(features, ph, pw):
    channels = features.shape[3]
    if channels is not None and channels % (ph * pw):
        raise ValueError(
            f"features must have a multiple of ph * pw = {ph * pw} channels for position-sensitive pooling, got {channels}"
        )


def ps_roi_pool(features, boxes, output_size, spatial_scale=1.0):
    """Position-sensitive RoI average pooling (R-FCN), equal to ``torchvision.ops.ps_roi_pool``.

    Args:
      features: ``(B, H, W, C)`` with ``C = ph * pw * C_out``; output channel ``c`` of bin
        ``(p, q)`` reads input channel ``(c * ph + p) * pw + q`` (torchvision's NCHW index).
      boxes: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels.
      output_size: ``int`` or ``(ph, pw)``.
      spatial_scale: feature cells per input pixel.

    Coordinates are scaled and rounded half away from zero, RoI sizes are at least 1 (no +1 on
    the end), ``floor``/``ceil`` bin edges are clipped to ``H - 1`` / ``W - 1`` as in
    torchvision's forward; each bin averages its cells; an empty bin gives 0. The gradient is
    the adjoint of this forward (torchvision's CPU backward clips to ``H`` / ``W`` instead).

    Returns:
      ``(K, ph, pw, C_out)`` float32 tensor.
    """
    features, boxes, ph, pw, scale = _prepare(features, boxes, output_size, spatial_scale)
    _channel_groups(features, ph, pw)
    plan = compile_policy.make_plan(features, boxes, ph, pw, compile_policy.no_bounds)
    return _run(ps_roi_pool_core, _ps_roi_pool_graph, features, boxes, ph, pw, scale, plan, direct="ps_pool")


def ps_roi_align(features, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1):
    """Position-sensitive RoIAlign (R-FCN), equal to ``torchvision.ops.ps_roi_align``.

    Args:
      features: ``(B, H, W, C)`` with ``C = ph * pw * C_out``, channels as in ``ps_roi_pool``.
      boxes: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels.
      output_size: ``int`` or ``(ph, pw)``.
      spatial_scale: feature cells per input pixel.
      sampling_ratio: samples per bin along each axis; ``<= 0`` is adaptive.

    Boxes are shifted by half a pixel and not clamped in size (as ``roi_align(aligned=True)``);
    each bin averages its bilinear samples in its own channel group. A bin with no samples
    gives 0 (torchvision divides 0 by 0 there).

    Returns:
      ``(K, ph, pw, C_out)`` float32 tensor.
    """
    features, boxes, ph, pw, scale = _prepare(features, boxes, output_size, spatial_scale)
    _channel_groups(features, ph, pw)
    sampling_ratio = validate_sampling_ratio(sampling_ratio)
    plan = _align_plan(features, boxes, ph, pw, scale, sampling_ratio, True)
    static = dict(sampling_ratio=sampling_ratio)
    return _run(ps_roi_align_core, _ps_roi_align_graph, features, boxes, ph, pw, scale, plan, direct="ps_align", **static)


def _map_heights(features_shapes_or_scales, image_size):
    """Level scales from map shapes ``(B, H, W, C)`` / ``(H, W)`` or from the scales themselves."""
    image_h, _ = _image_size(image_size)
    scales = []
    for i, item in enumerate(features_shapes_or_scales):
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            scales.append(float(item))
            continue
        dims = tuple(item)
        height = dims[1] if len(dims) == 4 else dims[0]
        if height is None:
            raise ValueError(f"features[{i}] must have a known height to infer its scale, got shape {dims}")
        scales.append(infer_scale(int(height), image_h))
    if not scales:
        raise ValueError("features must hold at least one feature map")
    return scales


def _image_size(image_size):
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from exc
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return h, w


def multi_scale_levels(boxes, features_shapes_or_scales, image_size, canonical_scale=224, canonical_level=4):
    """Which map each box pools from in ``multi_scale_roi_align`` (for display).

    Args:
      boxes: ``(K, 4)`` pixel boxes ``(x1, y1, x2, y2)`` or ``(K, 5)`` operator rows.
      features_shapes_or_scales: the maps' shapes ``(B, H, W, C)`` (or ``(H, W)``), finest
        first, or their spatial scales.
      image_size: ``(H, W)`` of the input image.

    Returns:
      ``(K,)`` int array: 0 for the finest map; -1 for a box that pools from none (its area is
      negative: inverted along one axis; its output is 0).
    """
    scales = _map_heights(features_shapes_or_scales, image_size)
    rows = np.asarray(boxes, dtype=np.float32)
    if rows.ndim == 2 and rows.shape[1] == 4:
        rows = np.concatenate([np.zeros((rows.shape[0], 1), np.float32), rows], axis=1)
    rows = validate_boxes(rows.reshape(-1, 5) if rows.size == 0 else rows)
    if len(scales) == 1:
        return np.zeros(rows.shape[0], np.int64)
    k_min, k_max = level_range(scales)
    return box_levels(rows, k_min, k_max, canonical_scale, canonical_level).numpy().astype(np.int64)


def multi_scale_roi_align(
    features, boxes, output_size, image_size, sampling_ratio=2, canonical_scale=224, canonical_level=4
):
    """Multi-scale RoIAlign (FPN), equal to ``torchvision.ops.MultiScaleRoIAlign``.

    Args:
      features: list of ``(B, H_l, W_l, C)`` maps, finest first (static heights).
      boxes: ``(K, 5)`` rows ``[batch_index, x1, y1, x2, y2]`` in input-image pixels.
      output_size: ``int`` or ``(ph, pw)``.
      image_size: ``(H, W)`` of the input image; each map's scale is the power of two nearest
        to ``H_l / H``.
      sampling_ratio: samples per bin along each axis (``<= 0`` adaptive).
      canonical_scale, canonical_level: the FPN level mapper's ``k0`` and ``224``.

    Each box pools (``roi_align``, ``aligned=False``) from level
    ``floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6)``, clamped to the
    maps' levels; see ``multi_scale_levels``.

    Returns:
      ``(K, ph, pw, C)`` float32 tensor.
    """
    if tf.is_tensor(features) or not isinstance(features, (list, tuple)) or not features:
        raise ValueError("features must be a non-empty list of (B, H, W, C) feature maps, finest first")
    maps = [validate_features(f) for f in features]
    channels = {m.shape[3] for m in maps} - {None}
    if len(channels) > 1:
        raise ValueError(f"features must all have the same number of channels, got {sorted(channels)}")
    scales = _map_heights([m.shape for m in maps], image_size)
    boxes = validate_boxes(boxes, num_images=maps[0].shape[0])
    sampling_ratio = validate_sampling_ratio(sampling_ratio)
    if len(maps) == 1:
        return roi_align(maps[0], boxes, output_size, scales[0], sampling_ratio, False)
    k_min, k_max = level_range(scales)
    levels = box_levels(boxes, k_min, k_max, canonical_scale, canonical_level)
    # Boxes of other levels pool a one-cell stand-in (cheap) and are masked out.
    stand_in = tf.concat([boxes[:, :1], tf.zeros_like(boxes[:, 1:])], axis=1)
    out = None
    for level, (feats, scale) in enumerate(zip(maps, scales)):
        mine = (levels == level)[:, None]
        pooled = roi_align(feats, tf.where(mine, boxes, stand_in), output_size, scale, sampling_ratio, False)
        keep = mine[:, :, None, None]
        out = tf.where(keep, pooled, 0.0) if out is None else tf.where(keep, pooled, out)
    return out
