"""The bytes a memory-bound case must move at least, worked out from the blobs it reads and writes.

A pass of a Caffe layer reads each of its inputs and writes each of its outputs; it cannot move
less than every input element read once and every output element written once (float32: 4 bytes),
whatever it keeps in cache in between. Those are the counts here; the benchmark divides them by
the measured time and compares the result with the machine's copy bandwidth measured in the same
run (a copy of B bytes moves 2 B: B read, B written). Stores into lines not yet in cache may cost
one more read each (write-allocate); that is part of what a kernel can lose against the bound,
not part of the bound.
"""

FLOAT_BYTES = 4


def merge_terms(num, channels, height, width, num_scales):
    """Elements read + written by SoftmaxOverScales -> WeightedScaleSum ATTENTION, forward and
    backward, per pass ({pass: elements}); S = num_scales, C = channels, P = N x H x W pixels.

    softmax forward:   read h (S P), write w (S P)
    merge forward:     read f^1..f^S (S C P) and w (S P), write g (C P)
    merge backward:    read dg (C P), w (S P) and f^1..f^S (S C P); write df^1..df^S (S C P)
                       and dw (S P)
    softmax backward:  read w (S P) and dw (S P), write dh (S P)
    """
    pixels = num * height * width
    s, c = num_scales, channels
    return {
        "softmax forward": 2 * s * pixels,
        "merge forward": (s * c + s + c) * pixels,
        "merge backward": (c + s + 2 * s * c + s) * pixels,
        "softmax backward": 3 * s * pixels,
    }


def merge_bytes(num, channels, height, width, num_scales):
    """Bytes of merge_terms in all: 4 (3 S C + 2 C + 8 S) N H W."""
    return FLOAT_BYTES * sum(merge_terms(num, channels, height, width, num_scales).values())


def rows_read(size_in, size_out):
    """Source indices a corner-aligned bilinear resize along one axis reads with a non-zero
    weight: output i reads floor(i (in - 1) / (out - 1)) and, when that division leaves a
    remainder, the next index too."""
    if size_out == 1 or size_in == 1:
        return {0}
    used = set()
    for dst in range(size_out):
        base, remainder = divmod(dst * (size_in - 1), size_out - 1)
        used.add(base)
        if remainder:
            used.add(base + 1)
    return used


def resize_bytes(planes, in_hw, out_hw):
    """(forward, backward) bytes of a bilinear resize of `planes` planes: forward reads the input
    rows some output reads (whole rows: memory moves whole cache lines, and every line of such a
    row holds a cell that is read) and writes the output; backward reads the top diff and writes
    the whole bottom diff (zero where nothing reads a cell)."""
    in_h, in_w = in_hw
    out_h, out_w = out_hw
    forward = planes * (len(rows_read(in_h, out_h)) * in_w + out_h * out_w)
    backward = planes * (out_h * out_w + in_h * in_w)
    return FLOAT_BYTES * forward, FLOAT_BYTES * backward
