"""Attention to Scale (Chen et al., CVPR 2016) for Caffe: Python fallback layers and tools.

Kept free of imports on purpose: `attention_scale.build` must load with the standard library alone.
"""

__version__ = "0.1.0"
