"""The one exception type the package raises for bad layer parameters or shapes."""


class LayerConfigError(ValueError):
    """A layer's parameters or bottom shapes are invalid; the message names layer and problem."""
