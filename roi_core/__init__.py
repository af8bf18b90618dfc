"""roi_core: exact, vectorized RoIPool / RoIAlign for TensorFlow, with Keras 3 layers.

    from roi_core import roi_pool, roi_align, ROIPoolingLayer, ROIAlignLayer
"""
from .layers import ROIAlignLayer, ROIPoolingLayer
from .ops import roi_align, roi_pool

__all__ = ["roi_pool", "roi_align", "ROIPoolingLayer", "ROIAlignLayer"]
