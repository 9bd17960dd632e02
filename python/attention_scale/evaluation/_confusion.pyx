# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Confusion-matrix accumulation: one pass over the pixels, no temporaries (evaluation hot path)."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t

ctypedef fused gt_t:
    uint8_t
    uint16_t
    int32_t
    int64_t

ctypedef fused pred_t:
    uint8_t
    uint16_t
    int32_t
    int64_t


def accumulate(int64_t[:, ::1] conf, gt_t[::1] gt, pred_t[::1] pred, int64_t ignore_label):
    """conf[gt[i], pred[i]] += 1 for every i with gt[i] != ignore_label.

    Raises ValueError (leaving conf unchanged) when a label is outside [0, num_classes).
    """
    cdef Py_ssize_t i, j, n = gt.shape[0], bad = -1
    cdef int64_t g, p, k = conf.shape[0]
    if pred.shape[0] != n:
        raise ValueError(f"gt has {n} pixels but pred has {pred.shape[0]}")
    with nogil:
        for i in range(n):
            g = gt[i]
            if g == ignore_label:
                continue
            p = pred[i]
            if g < 0 or g >= k or p < 0 or p >= k:
                bad = i
                break
            conf[g, p] += 1
        if bad >= 0:  # undo, so a failed call leaves no partial counts
            for j in range(bad):
                g = gt[j]
                if g != ignore_label:
                    conf[g, pred[j]] -= 1
    if bad >= 0:
        raise ValueError(f"label out of range [0, {k}) at pixel {bad}: gt {gt[bad]}, "
                         f"pred {pred[bad]} (ignore label {ignore_label})")
