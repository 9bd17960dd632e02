"""Data: DeepLab-style list files, image and label reading, the VOC palette, and the training
data layer.

    lists, images, palette        reading lists, images and labels (no caffe)
    data_params, batches, prefetch  SegmentationData's parameters, batch making, worker processes
    segmentation_data             the caffe Python layer
    toy_voc                       a tiny VOC-layout data set (tests, benchmarks, trying things)

A prototxt names this package as the module of the data layer:
    python_param { module: "attention_scale.data" layer: "SegmentationData" param_str: "..." }
The layer class is loaded on first access (PEP 562), so importing attention_scale.data.lists
does not import caffe.
"""

LAYER_TYPES = ("SegmentationData",)


def __getattr__(name):
    if name in LAYER_TYPES:
        from . import segmentation_data
        return getattr(segmentation_data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(LAYER_TYPES))
