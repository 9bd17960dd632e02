"""ScaleInterp numerics in numpy: DeepLab's corner-aligned bilinear (or nearest) resize.

Each output reads at most two input cells per axis (the taps: cells i0, i1 with weights
1 - lambda, lambda), computed exactly in integers. The resize is separable, one pass per axis,
and each pass is applied as BLAS products of small banded blocks built from the taps (a block of
32 output rows and the input columns they read), so the memory of the tables grows with the
sizes (about 32 values per row), never with their product; the backward pass uses the blocks of
the transposed taps. Blocks and taps are cached per size in a cache of bounded bytes.

NaN and inf follow the C++ layer's rule (caffe/util/scale_interp.hpp): an input cell reaches only
the outputs that read it with a non-zero weight. A BLAS product also multiplies the zero weights
of a block (0 * NaN = NaN), so where the data hold NaN or inf the resize is recomputed on the
finite values and the non-finite ones are put back exactly where their non-zero weights take them.

Nothing here needs Caffe or protobuf beyond the generated parameter module.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..attention_scale_pb2 import ScaleInterpParameter
from ..errors import LayerConfigError
from .numerics import all_finite

LAYER = "ScaleInterp"
INT_MAX = 2**31 - 1  # the largest blob, and the limits of the C++ layer's int tables


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


def reads_back(text, value):
    """Whether the decimal `text` reads back as the float32 `value`, as C's strtof reads it:
    rounded to the nearest float32, ties to the even one (exact rational arithmetic)."""
    value = np.float32(value)
    exact, here = Fraction(text), Fraction(float(value))
    if exact == here:
        return True
    toward = np.float32(np.inf if exact > here else -np.inf)
    neighbour = np.nextafter(value, toward)
    if np.isinf(neighbour):  # beyond FLT_MAX: the gap to the next power of two
        gap = here - Fraction(float(np.nextafter(value, np.float32(0))))
    else:
        gap = abs(Fraction(float(neighbour)) - here)
    distance = abs(exact - here)
    even = int(np.array(value).view(np.uint32)) % 2 == 0
    return distance < gap / 2 or (distance == gap / 2 and even)


def shortest_decimal(value):
    """(mantissa, exponent): the shortest decimal mantissa * 10**exponent (at most 9 digits) that
    reads back as the float32 `value`, i.e. the number written in the prototxt: 0.7 (stored as
    0.699999988) gives (7, -1); every decimal of up to 6 significant digits comes back as
    written. Digit for digit the C++ layer's shortest_decimal: the value rounded to 1, 2, ...
    significant digits (correctly, ties to even, as printf's %.*e), until one reads back."""
    value = np.float32(value)
    for digits in range(1, 10):  # 9 digits always read back
        text = f"{float(value):.{digits - 1}e}"
        if reads_back(text, value):
            break
    significand, power = text.split("e")
    whole, _, fraction = significand.partition(".")
    return int(whole + fraction), int(power) - len(fraction)


def scaled_size(n_eff, scale):
    """floor((n_eff - 1) * scale) + 1 for the decimal written as `scale` (shortest_decimal),
    computed exactly: 321 -> 241 at 0.75, 8401 -> 5881 at 0.7 at any size. Sizes beyond an int
    give INT_MAX + 1, as in the C++ layer (which rejects them the same way)."""
    mantissa, exponent = _decimal(float(np.float32(scale)))
    steps = (n_eff - 1) * mantissa
    steps = steps * 10**exponent if exponent >= 0 else steps // 10**-exponent
    return min(steps + 1, INT_MAX + 1)


def shape_string(shape):
    """A shape as Caffe's Blob::shape_string() writes it: "2 1 4 5 (40)"."""
    return " ".join(str(d) for d in shape) + f" ({math.prod(shape)})"


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

    def top_shape(self, bottom_shape, ref_hw=None):
        """The top's N x C x H_out x W_out for bottom[0]'s shape, within the C++ layer's limits
        (the same rules and messages): per axis 5 * H_out + 2 * H_in_eff <= INT_MAX (the C++
        layer's tables of the axis fit in a blob), and a top of at most INT_MAX elements."""
        n, c, h, w = bottom_shape
        h_eff, w_eff = (effective_size(v, self.pad_beg, self.pad_end) for v in (h, w))
        if h_eff < 1 or w_eff < 1:
            raise LayerConfigError(
                f"{LAYER}: bottom[0] has shape {shape_string(bottom_shape)}, too small for "
                f"pad_beg {self.pad_beg} and pad_end {self.pad_end} (cropped size {h_eff} x "
                f"{w_eff})")
        h_out, w_out = self.output_hw((h, w), ref_hw)
        if not all(1 <= out and 5 * out + 2 * eff <= INT_MAX
                   for out, eff in ((h_out, h_eff), (w_out, w_eff))):
            raise LayerConfigError(
                f"{LAYER}: output size {h_out} x {w_out} for bottom[0] of shape "
                f"{shape_string(bottom_shape)} (cropped {h_eff} x {w_eff}) is out of range: each "
                f"output side must be >= 1 and 5 x output side + 2 x cropped input side <= "
                f"{INT_MAX}")
        if n * c * h_out * w_out > INT_MAX:
            raise LayerConfigError(
                f"{LAYER}: the top would have shape {n} {c} {h_out} {w_out}, more than a blob "
                f"holds ({INT_MAX} elements)")
        return n, c, h_out, w_out


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
# Caches
# ---------------------------------------------------------------------------------------------

CACHE_BYTES = 64 * 2**20  # taps, blocks and indexes of every size seen, least recently used out


class _BoundedCache:
    """A least-recently-used cache of numpy arrays (or tuples of them) bounded by their bytes:
    a data layer without cropping gives every image its own sizes, and an unbounded cache of
    them grows without end. An entry larger than the whole bound is built but not kept."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.entries = OrderedDict()
        self.nbytes = 0

    def get(self, key, build):
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key][0]
        value = build()
        size = sum(a.nbytes for a in _arrays(value))
        if size <= self.max_bytes:
            self.entries[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self.entries.popitem(last=False)
                self.nbytes -= dropped
        return value

    def clear(self):
        self.entries.clear()
        self.nbytes = 0


def _arrays(value):
    if isinstance(value, np.ndarray):
        return [value]
    return [a for item in value for a in _arrays(item)] if isinstance(value, tuple) else []


_CACHE = _BoundedCache(CACHE_BYTES)


def cache_bytes():
    """Bytes held by the cache of taps, blocks and indexes."""
    return _CACHE.nbytes


def clear_caches():
    _CACHE.clear()
    _decimal_cache.clear()


_decimal_cache = {}


def _decimal(scale):
    """shortest_decimal of a scale, kept per value (a net has a few)."""
    if scale not in _decimal_cache:
        if len(_decimal_cache) > 256:
            _decimal_cache.clear()
        _decimal_cache[scale] = shortest_decimal(scale)
    return _decimal_cache[scale]


# ---------------------------------------------------------------------------------------------
# Taps and band blocks
# ---------------------------------------------------------------------------------------------

def _read_only(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def taps(n_in, n_out, nearest=False, dtype="float32"):
    """(i0, i1, lam) along one axis: output dst reads cells i0[dst] and i1[dst] with weights
    1 - lam[dst] and lam[dst] (NEAREST: i1 = i0, lam = 0). The grid is exact integer arithmetic:
    source = dst * (n_in - 1) / (n_out - 1) as the fraction num / den, so no float rounding
    decides which cells are read; lam is num % den / den in `dtype`, kept below 1 (`fraction`),
    as the C++ tables hold it. Read-only, cached."""
    return _CACHE.get(("taps", n_in, n_out, nearest, dtype),
                      lambda: _read_only(*_build_taps(n_in, n_out, nearest, np.dtype(dtype))))


def _build_taps(n_in, n_out, nearest, dtype):
    dst = np.arange(n_out, dtype=np.int64)
    if n_out == 1 or n_in == 1:
        num, den = np.zeros(n_out, np.int64), 1
    else:
        num, den = dst * (n_in - 1), n_out - 1
    if nearest:
        # floor(src + 0.5) in integers: exact halves go to the larger index.
        i0 = (2 * num + den) // (2 * den)
        return i0, i0, np.zeros(n_out, dtype)
    i0 = num // den
    return i0, np.minimum(i0 + 1, n_in - 1), fraction(num % den, den, dtype)


def fraction(rem, den, dtype):
    """The weight of the second tap: rem / den (0 <= rem < den < 2**31) in `dtype`, rounded as
    the C++ layer rounds it (float(rem) / float(den)) and kept below 1, so that the weight
    1 - lam of the first tap, exactly > 0, stays > 0 (in float32 the quotient rounds to 1 for
    some outputs of sides above 2**24 + 1: 2**24 / (2**24 + 1) does)."""
    dtype = np.dtype(dtype)
    lam = np.asarray(rem).astype(dtype) / dtype.type(den)
    return np.minimum(lam, np.nextafter(dtype.type(1), dtype.type(0)))


# Output rows per band block: small enough that a block skips most of the zeros of the
# interpolation matrix (each output reads at most two inputs), large enough for BLAS to run at
# speed.
_BAND_ROWS = 32


def band_blocks(n_in, n_out, nearest=False, dtype="float32", transpose=False):
    """The interpolation matrix M (n_out x n_in, out = M @ in along one axis; its transpose for
    the backward pass) as blocks of rows, each keeping the columns its taps read: a tuple of
    (r0, r1, c0, c1, block) with M[r0:r1, c0:c1] = block and zeros elsewhere in those rows
    (c0 == c1: an all-zero block). Built from the taps, never as the dense matrix: about
    32 (n_in + n_out) values. Read-only, cached."""
    return _CACHE.get(("blocks", n_in, n_out, nearest, dtype, transpose),
                      lambda: _build_blocks(n_in, n_out, nearest, np.dtype(dtype), transpose))


def _build_blocks(n_in, n_out, nearest, dtype, transpose):
    i0, i1, lam = taps(n_in, n_out, nearest, dtype.name)
    w0 = dtype.type(1) - lam
    mixed = lam != 0  # the second tap reads only where its weight is not zero
    rows, cols = (n_in, n_out) if transpose else (n_out, n_in)
    spans = []
    for r0 in range(0, rows, _BAND_ROWS):
        r1 = min(r0 + _BAND_ROWS, rows)
        if transpose:  # outputs whose taps fall in source rows [r0, r1); i0, i1 never decrease
            c0, c1 = int(np.searchsorted(i1, r0)), int(np.searchsorted(i0, r1))
        else:
            c0, c1 = int(i0[r0]), int(i1[r1 - 1]) + 1
        spans.append((r0, r1, c0, max(c0, c1)))
    # Where the band saves less than half of the dense work, or the dense product is short anyway
    # (few columns: BLAS runs small inner dimensions slowly), one product is faster; its size is
    # then at most twice the blocks', or 64 columns.
    band = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in spans)
    if cols <= 2 * _BAND_ROWS or 2 * band > rows * cols:
        spans = [(0, rows, 0, cols)]
    blocks = []
    for r0, r1, c0, c1 in spans:
        block = np.zeros((r1 - r0, c1 - c0), dtype)
        if transpose:
            dst = np.arange(c0, c1)
            _place(block, i0[c0:c1] - r0, dst - c0, w0[c0:c1])
            keep = mixed[c0:c1]
            _place(block, i1[c0:c1][keep] - r0, (dst - c0)[keep], lam[c0:c1][keep])
        else:
            dst = np.arange(r0, r1)
            _place(block, dst - r0, i0[r0:r1] - c0, w0[r0:r1])
            keep = mixed[r0:r1]
            _place(block, (dst - r0)[keep], i1[r0:r1][keep] - c0, lam[r0:r1][keep])
        block.flags.writeable = False
        blocks.append((r0, r1, c0, c1, block))
    return tuple(blocks)


def _place(block, rows, cols, values):
    """block[rows, cols] = values where (rows, cols) falls inside the block (the entries of a
    transposed block's edge columns that belong to the next block are left out)."""
    inside = (rows >= 0) & (rows < block.shape[0]) & (cols >= 0) & (cols < block.shape[1])
    block[rows[inside], cols[inside]] = values[inside]


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


def _resize_exact(x3, rows, cols, out3):
    """_resize_planes with the C++ layer's NaN / inf rule: a non-finite cell reaches only the
    outputs that read it with a non-zero weight.

    The products are right unless a NaN or inf was multiplied, also by a zero weight: then the
    result holds a NaN or inf, and so does the input. So one check of the smaller of the two
    (all_finite) clears the usual case. Otherwise, where the input does
    hold NaN or inf, the resize is redone on its finite values, and every output that a non-zero
    weight connects to a NaN (or to both +inf and -inf) becomes NaN, to +inf or -inf alone that
    infinity. Which outputs a set of cells reaches is the resize of its indicator: the weights
    are >= 0 and a sum of them is > 0 exactly where one of them is."""
    with np.errstate(invalid="ignore", over="ignore"):  # 0 * inf and inf - inf are redone
        _resize_planes(x3, rows, cols, out3)
    if all_finite(out3 if out3.size < x3.size else x3):
        return out3
    finite = np.isfinite(x3)
    if finite.all():  # the sum overflowed: every value is finite, the products are right
        return out3
    _resize_planes(np.where(finite, x3, 0), rows, cols, out3)

    def reached(cells):
        return _resize_planes(cells.astype(x3.dtype), rows, cols, np.empty_like(out3)) > 0

    pos, neg = reached(x3 == np.inf), reached(x3 == -np.inf)
    out3[pos] = np.inf
    out3[neg] = -np.inf
    out3[(pos & neg) | reached(np.isnan(x3))] = np.nan
    return out3


def _nearest_index(n_in, n_out):
    return taps(n_in, n_out, True)[0]


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
    _resize_exact(x3, rows, cols, out.reshape(n * c, h_out, w_out))
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
        _resize_exact(dy3, rows, cols, inner)
        out[...] = 0
        out[:, :, _crop(pad_beg, h_eff), _crop(pad_beg, w_eff)] = inner.reshape(n, c, h_eff, w_eff)
    else:
        _resize_exact(dy3, rows, cols, out.reshape(n * c, h_in, w_in))
    return out
