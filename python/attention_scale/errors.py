"""The exception types the package raises for bad input; every message names what is wrong and where."""


class LayerConfigError(ValueError):
    """A layer's parameters or bottom shapes are invalid; the message names layer and problem."""


class DataError(ValueError):
    """A data file or list is missing, unreadable or inconsistent; the message names the file and,
    where one exists, the list and line that referred to it."""
