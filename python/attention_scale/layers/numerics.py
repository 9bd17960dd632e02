"""Small numeric helpers the numpy cores share."""

import math

import numpy as np


def all_finite(a):
    """True if every element of `a` is finite; False if any is NaN or inf, and (rarely) if the
    values are so large that their squares overflow. Conservative, so callers use it to skip
    work that only non-finite values need. One BLAS dot product of `a` with itself: a third of
    the time of np.sum and no temporary, where np.isfinite(a).all() makes a boolean copy."""
    flat = a.reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        return math.isfinite(float(np.dot(flat, flat)))
