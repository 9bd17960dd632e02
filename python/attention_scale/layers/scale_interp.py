"""ScaleInterp numerics in numpy: DeepLab's corner-aligned bilinear (or nearest) resize.

The resize is separable, so it is applied as two small interpolation matrices (rows x rows and
columns x columns, built once per shape and cached) multiplied into the N*C planes; the backward
pass is the same products with the transposed matrices. Each output reads at most two inputs, so
the matrices are banded: they are applied in blocks of rows restricted to their non-zero columns,
which skips most of the zeros a dense product would multiply. Nothing here needs Caffe or protobuf.
"""

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..attention_scale_pb2 import ScaleInterpParameter
from ..errors import LayerConfigError

LAYER = "ScaleInterp"
# Added before the floor so that a float-stored scale (0.7f * 10 = 6.9999999) lands on the integer.
SCALE_EPS = 1e-4


# ---------------------------------------------------------------------------------------------
# Output size
# ---------------------------------------------------------------------------------------------

def effective_size(n_in, pad_beg=0, pad_end=0):
    """Input extent after cropping (pads are <= 0)."""
    return n_in + pad_beg + pad_end


def factor_size(n_eff, zoom_factor=None, shrink_factor=None):
    """DeepLab's Interp sizes: shrink first, then zoom."""
    n = n_eff
    if shrink_factor is not None:
        n = (n - 1) // shrink_factor + 1
    if zoom_factor is not None:
        n = n + (n - 1) * (zoom_factor - 1)
    return n


def scaled_size(n_eff, scale):
    """floor((n_eff - 1) * scale + 1e-4) + 1, in float64 of the float32-stored scale."""
    return int(math.floor((n_eff - 1) * float(np.float32(scale)) + SCALE_EPS)) + 1


@dataclass(frozen=True)
class InterpSpec:
    """The validated size rule of one ScaleInterp layer (mode is which rule applies)."""
    mode: str  # "factors", "size", "scale" or "reference"
    height: int = 0
    width: int = 0
    zoom_factor: int = None
    shrink_factor: int = None
    scale: float = None
    pad_beg: int = 0
    pad_end: int = 0
    nearest: bool = False

    def output_hw(self, in_hw, ref_hw=None):
        """(H_out, W_out) for an input of spatial size in_hw (and the reference bottom's size)."""
        h_eff, w_eff = (effective_size(n, self.pad_beg, self.pad_end) for n in in_hw)
        if h_eff < 1 or w_eff < 1:
            raise LayerConfigError(
                f"{LAYER}: pad_beg {self.pad_beg} and pad_end {self.pad_end} crop the whole "
                f"{in_hw[0]}x{in_hw[1]} input of bottom[0] (effective size {h_eff}x{w_eff})")
        if self.mode == "factors":
            return tuple(factor_size(n, self.zoom_factor, self.shrink_factor)
                         for n in (h_eff, w_eff))
        if self.mode == "size":
            return self.height, self.width
        if self.mode == "scale":
            return scaled_size(h_eff, self.scale), scaled_size(w_eff, self.scale)
        return tuple(ref_hw)


def spec_from_param(param, num_bottoms):
    """Validate a ScaleInterpParameter message (any object with HasField and the fields)."""
    if num_bottoms not in (1, 2):
        raise LayerConfigError(
            f"{LAYER}: takes 1 bottom (or 2: the second gives the output size), got {num_bottoms}")
    has = param.HasField
    rules = []
    if has("zoom_factor") or has("shrink_factor"):
        rules.append("zoom_factor/shrink_factor")
    if has("height") or has("width"):
        rules.append("height+width")
    if has("scale"):
        rules.append("scale")
    if num_bottoms == 2:
        rules.append("a second bottom")
    if len(rules) != 1:
        raise LayerConfigError(
            f"{LAYER}: the output size needs exactly one of zoom_factor/shrink_factor, "
            f"height+width, scale or a second bottom; got "
            f"{' and '.join(rules) if rules else 'none'}")
    for field in ("pad_beg", "pad_end"):
        if getattr(param, field) > 0:
            raise LayerConfigError(
                f"{LAYER}: {field} must be <= 0 (cropping), got {getattr(param, field)}")
    common = dict(pad_beg=param.pad_beg, pad_end=param.pad_end,
                  nearest=param.interpolation == ScaleInterpParameter.NEAREST)
    if rules[0] == "zoom_factor/shrink_factor":
        for field in ("zoom_factor", "shrink_factor"):
            if has(field) and getattr(param, field) < 1:
                raise LayerConfigError(
                    f"{LAYER}: {field} must be >= 1, got {getattr(param, field)}")
        return InterpSpec("factors",
                          zoom_factor=param.zoom_factor if has("zoom_factor") else None,
                          shrink_factor=param.shrink_factor if has("shrink_factor") else None,
                          **common)
    if rules[0] == "height+width":
        if not (has("height") and has("width")):
            raise LayerConfigError(f"{LAYER}: height and width must be given together")
        if param.height < 1 or param.width < 1:
            raise LayerConfigError(
                f"{LAYER}: height and width must be >= 1, got {param.height}x{param.width}")
        return InterpSpec("size", height=param.height, width=param.width, **common)
    if rules[0] == "scale":
        if not (param.scale > 0 and math.isfinite(param.scale)):
            raise LayerConfigError(f"{LAYER}: scale must be a finite number > 0, got {param.scale}")
        return InterpSpec("scale", scale=float(np.float32(param.scale)), **common)
    return InterpSpec("reference", **common)


# ---------------------------------------------------------------------------------------------
# Interpolation matrices
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=128)
def interp_matrix(n_in, n_out, nearest=False, dtype="float32"):
    """(n_out x n_in) matrix M with out = M @ in along one axis (read-only, cached).

    The grid is exact integer arithmetic: source = dst * (n_in - 1) / (n_out - 1) as the
    fraction num / den, so no float rounding decides which rows are read.
    """
    dtype = np.dtype(dtype)
    dst = np.arange(n_out, dtype=np.int64)
    if n_out == 1:
        num, den = np.zeros(1, np.int64), 1
    else:
        num, den = dst * (n_in - 1), n_out - 1
    matrix = np.zeros((n_out, n_in), dtype)
    if nearest:
        # floor(src + 0.5) in integers: exact halves go to the larger index.
        matrix[dst, (2 * num + den) // (2 * den)] = 1
    else:
        lo = num // den
        lam = (num % den).astype(dtype) / dtype.type(den)
        hi = np.minimum(lo + 1, n_in - 1)
        np.add.at(matrix, (dst, lo), dtype.type(1) - lam)
        np.add.at(matrix, (dst, hi), lam)
    matrix.flags.writeable = False
    return matrix


# Output rows per band block: small enough that a block skips most of the matrix's zeros (each
# output reads at most two inputs), large enough for BLAS to run at speed.
_BAND_ROWS = 32


@functools.lru_cache(maxsize=256)
def band_blocks(n_in, n_out, nearest=False, dtype="float32", transpose=False):
    """The interpolation matrix (its transpose for the backward pass) cut into blocks of rows,
    each keeping only the columns it has non-zeros in: a tuple of (r0, r1, c0, c1, block), with
    M[r0:r1, c0:c1] = block and M[r0:r1, everything else] = 0 (c0 == c1: an all-zero block)."""
    matrix = interp_matrix(n_in, n_out, nearest, dtype)
    if transpose:
        matrix = matrix.T
    blocks = []
    for r0 in range(0, matrix.shape[0], _BAND_ROWS):
        r1 = min(r0 + _BAND_ROWS, matrix.shape[0])
        cols = np.flatnonzero((matrix[r0:r1] != 0).any(axis=0))
        c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)
        block = np.ascontiguousarray(matrix[r0:r1, c0:c1])
        block.flags.writeable = False
        blocks.append((r0, r1, c0, c1, block))
    # Where the band saves less than half of the dense work, or the dense product is short
    # anyway (few columns: BLAS runs small inner dimensions slowly), one product is faster.
    if matrix.shape[1] <= 2 * _BAND_ROWS or 2 * sum(b.size for *_, b in blocks) > matrix.size:
        whole = np.ascontiguousarray(matrix)
        whole.flags.writeable = False
        blocks = [(0, matrix.shape[0], 0, matrix.shape[1], whole)]
    return tuple(blocks)


def _apply_rows(blocks, x3, out3):
    """out3 = M @ x3[b] for every plane b (M given as band blocks)."""
    for r0, r1, c0, c1, block in blocks:
        if c0 == c1:
            out3[:, r0:r1, :] = 0
        else:
            np.matmul(block, x3[:, c0:c1, :], out=out3[:, r0:r1, :])
    return out3


def _apply_cols(blocks, x3, out3):
    """out3 = x3[b] @ M.T for every plane b (M given as band blocks). The planes are stacked
    into one 2-D product per block: one large GEMM instead of one small one per plane."""
    x2 = x3.reshape(-1, x3.shape[2])
    out2 = out3.reshape(-1, out3.shape[2])
    for r0, r1, c0, c1, block in blocks:
        if c0 == c1:
            out2[:, r0:r1] = 0
        elif r1 - r0 == out2.shape[1]:
            np.matmul(x2[:, c0:c1], block.T, out=out2)
        else:
            out2[:, r0:r1] = np.matmul(x2[:, c0:c1], block.T)
    return out3


def _resize_planes(x3, rows, cols, out3):
    """out3[b] = M_h @ x3[b] @ M_w.T for every plane b, in the cheaper of the two orders (M_h, M_w
    given as band blocks; the cost model counts multiply-adds of the dense products)."""
    planes, h_in, w_in = x3.shape
    h_out, w_out = out3.shape[1:]
    if h_out * w_in * (h_in + w_out) <= h_in * w_out * (w_in + h_out):
        mid = _apply_rows(rows, x3, np.empty((planes, h_out, w_in), x3.dtype))
        _apply_cols(cols, mid, out3)
    else:
        mid = _apply_cols(cols, x3, np.empty((planes, h_in, w_out), x3.dtype))
        _apply_rows(rows, mid, out3)
    return out3


@functools.lru_cache(maxsize=128)
def _nearest_index(n_in, n_out):
    dst = np.arange(n_out, dtype=np.int64)
    if n_out == 1:
        return np.zeros(1, np.int64)
    return (2 * dst * (n_in - 1) + (n_out - 1)) // (2 * (n_out - 1))


def _nearest_picks(h_eff, w_eff, h_out, w_out, nearest):
    """NEAREST without upsampling selects each source cell at most once (the source index grows
    by >= 1 per output step): the row and column indices, else None."""
    if not nearest or h_out > h_eff or w_out > w_eff:
        return None
    return _nearest_index(h_eff, h_out), _nearest_index(w_eff, w_out)


def _output(out, shape, dtype):
    """A fresh result array, or the caller's after checking it can be written through reshape."""
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != shape or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous array of shape {shape}, got {out.shape}")
    return out


def _crop(pad_beg, n_eff):
    return slice(-pad_beg, -pad_beg + n_eff)


def forward(x, out_hw, pad_beg=0, pad_end=0, nearest=False, out=None):
    """Resize x (N x C x H x W) to out_hw after cropping -pad_beg / -pad_end rows and columns."""
    n, c, h_in, w_in = x.shape
    h_eff, w_eff = effective_size(h_in, pad_beg, pad_end), effective_size(w_in, pad_beg, pad_end)
    h_out, w_out = out_hw
    out = _output(out, (n, c, h_out, w_out), x.dtype)
    if pad_beg or pad_end:
        x = x[:, :, _crop(pad_beg, h_eff), _crop(pad_beg, w_eff)]
    picks = _nearest_picks(h_eff, w_eff, h_out, w_out, nearest)
    if picks is not None:  # a pure selection: index instead of multiplying
        out[...] = x[:, :, picks[0][:, None], picks[1]]
        return out
    x3 = np.ascontiguousarray(x).reshape(n * c, h_eff, w_eff)
    rows = band_blocks(h_eff, h_out, nearest, x.dtype.name)
    cols = band_blocks(w_eff, w_out, nearest, x.dtype.name)
    _resize_planes(x3, rows, cols, out.reshape(n * c, h_out, w_out))
    return out


def backward(dy, in_hw, pad_beg=0, pad_end=0, nearest=False, out=None):
    """Gradient w.r.t. the input of `forward`: the transposed products; cropped cells get 0."""
    n, c, h_out, w_out = dy.shape
    h_in, w_in = in_hw
    h_eff, w_eff = effective_size(h_in, pad_beg, pad_end), effective_size(w_in, pad_beg, pad_end)
    out = _output(out, (n, c, h_in, w_in), dy.dtype)
    picks = _nearest_picks(h_eff, w_eff, h_out, w_out, nearest)
    if picks is not None:  # every source cell is read at most once: scatter, nothing to add
        out[...] = 0
        rows, cols = picks[0] - pad_beg, picks[1] - pad_beg
        out[:, :, rows[:, None], cols] = dy
        return out
    rows = band_blocks(h_eff, h_out, nearest, dy.dtype.name, transpose=True)
    cols = band_blocks(w_eff, w_out, nearest, dy.dtype.name, transpose=True)
    dy3 = np.ascontiguousarray(dy).reshape(n * c, h_out, w_out)
    if pad_beg or pad_end:
        inner = np.empty((n * c, h_eff, w_eff), dy.dtype)
        _resize_planes(dy3, rows, cols, inner)
        out[...] = 0
        out[:, :, _crop(pad_beg, h_eff), _crop(pad_beg, w_eff)] = inner.reshape(n, c, h_eff, w_eff)
    else:
        _resize_planes(dy3, rows, cols, out.reshape(n * c, h_in, w_in))
    return out
