"""The three layers' Python form: numpy numerics and the Caffe Python layers built on them.

    scale_interp, softmax_over_scales, weighted_scale_sum   numpy cores (never import caffe)
    params                                                  param_str parsing (protobuf text)
    python_layers                                           the caffe.Layer classes

A prototxt names this package as the module of its Python layers:
    python_param { module: "attention_scale.layers" layer: "ScaleInterp" param_str: "scale: 0.75" }
The layer classes are loaded on first access (PEP 562), so importing a numpy core from here does
not import caffe.
"""

LAYER_TYPES = ("ScaleInterp", "SoftmaxOverScales", "WeightedScaleSum")


def __getattr__(name):
    if name in LAYER_TYPES:
        from . import python_layers
        return getattr(python_layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(LAYER_TYPES))
