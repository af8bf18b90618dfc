"""roi_core: exact, vectorized RoI pooling for TensorFlow (channels last), equal to torchvision's
kernels, with Keras 3 layers.

    from roi_core import roi_pool, roi_align, ROIPoolingLayer, ROIAlignLayer
    from roi_core import ps_roi_pool, ps_roi_align, multi_scale_roi_align
"""
from .layers import (
    MultiScaleROIAlignLayer,
    PSROIAlignLayer,
    PSROIPoolingLayer,
    ROIAlignLayer,
    ROIPoolingLayer,
)
from .ops import multi_scale_levels, multi_scale_roi_align, ps_roi_align, ps_roi_pool, roi_align, roi_pool

__all__ = [
    "roi_pool",
    "roi_align",
    "ps_roi_pool",
    "ps_roi_align",
    "multi_scale_roi_align",
    "multi_scale_levels",
    "ROIPoolingLayer",
    "ROIAlignLayer",
    "PSROIPoolingLayer",
    "PSROIAlignLayer",
    "MultiScaleROIAlignLayer",
]
