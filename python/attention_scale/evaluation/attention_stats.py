"""Where the attention model looks: mean attention weight per scale by object size and by the
pixel's distance from its object's edge.

The paper's claim is that scale 1 gets the weight on small objects and the coarse scales on large
ones. Averaging over whole large objects hides much of it: their rims look like small structures
and their interiors need the coarse scale's context, so the weights are also split by distance
from the segment's edge (see shared/DEMO-FACTS.md). Inputs are the attention maps already resized
to the image (S x H x W, each pixel's weights summing to 1) and the ground-truth label map.
"""

import numpy as np

from .metrics import IGNORE_LABEL
from .segments import (BACKGROUND, DEFAULT_AREA_BINS, DEFAULT_DISTANCE_BINS, Bins, edge_distance,
                       find_segments, segment_bins)


def _means(sums, counts):
    """sums[..., S] / counts[...] with None where the count is 0 (JSON-ready nested lists)."""
    out = []
    for s, c in zip(sums.reshape(-1, sums.shape[-1]), counts.ravel()):
        out.append([float(v) for v in s / c] if c else None)
    return out


class AttentionStatistics:
    """Accumulates attention sums over images, indexed by (area bin, distance bin, scale)."""

    def __init__(self, scale_names, area_bins: Bins = DEFAULT_AREA_BINS,
                 distance_bins: Bins = DEFAULT_DISTANCE_BINS, background=BACKGROUND,
                 ignore_label=IGNORE_LABEL):
        self.scale_names = [str(s) for s in scale_names]
        self.area_bins, self.distance_bins = area_bins, distance_bins
        self.background, self.ignore_label = background, ignore_label
        shape = (len(area_bins), len(distance_bins))
        self.pixel_sums = np.zeros(shape + (self.num_scales,), np.float64)
        self.pixel_counts = np.zeros(shape, np.int64)
        self.segment_sums = np.zeros((len(area_bins), self.num_scales), np.float64)
        self.segment_counts = np.zeros(len(area_bins), np.int64)
        self.background_sums = np.zeros(self.num_scales, np.float64)
        self.background_count = 0

    @property
    def num_scales(self):
        return len(self.scale_names)

    def update(self, attention, gt, segments=None):
        """Add one image: attention S x H x W (image size), gt H x W."""
        attention, gt = np.asarray(attention, np.float64), np.asarray(gt)
        if attention.ndim != 3 or attention.shape[0] != self.num_scales:
            raise ValueError(f"attention must be {self.num_scales} (scales) x H x W, got "
                             f"{attention.shape}")
        if attention.shape[1:] != gt.shape:
            raise ValueError(f"attention is {attention.shape[1]}x{attention.shape[2]} but the "
                             f"ground truth is {gt.shape[0]}x{gt.shape[1]}")
        segments = segments if segments is not None else find_segments(
            gt, self.background, self.ignore_label)
        flat = attention.reshape(self.num_scales, -1)
        back = (gt == self.background).ravel()
        self.background_sums += flat[:, back].sum(axis=1)
        self.background_count += int(back.sum())
        if segments.count == 0:
            return self
        ids = segments.ids.ravel()
        on = ids > 0
        area_bin = segment_bins(segments, self.area_bins)[ids[on]]
        distance_bin = self.distance_bins.index(edge_distance(segments).ravel()[on])
        cell = area_bin * len(self.distance_bins) + distance_bin
        cells = self.pixel_counts.size
        self.pixel_counts += np.bincount(cell, minlength=cells).reshape(self.pixel_counts.shape)
        per_segment = np.empty((segments.count + 1, self.num_scales))
        for s in range(self.num_scales):
            weights = flat[s, on]
            self.pixel_sums[..., s] += np.bincount(cell, weights, cells).reshape(
                self.pixel_counts.shape)
            per_segment[:, s] = np.bincount(ids[on], weights, segments.count + 1)
        per_segment = per_segment[1:] / segments.areas[1:, None]
        bins = segment_bins(segments, self.area_bins)[1:]
        for s in range(self.num_scales):
            self.segment_sums[:, s] += np.bincount(bins, per_segment[:, s], len(self.area_bins))
        self.segment_counts += np.bincount(bins, minlength=len(self.area_bins))
        return self

    def merge(self, other):
        for name in ("pixel_sums", "pixel_counts", "segment_sums", "segment_counts",
                     "background_sums"):
            getattr(self, name)[...] += getattr(other, name)
        self.background_count += other.background_count
        return self

    # -- results ---------------------------------------------------------------------------------

    def by_size(self):
        """Per area bin: mean weight per scale over the bin's object pixels (pixel_mean) and the
        mean of the per-segment means (segment_mean)."""
        pixel = _means(self.pixel_sums.sum(axis=1), self.pixel_counts.sum(axis=1))
        segment = _means(self.segment_sums, self.segment_counts)
        return [{"bin": label, "area_min": lo, "area_max": hi,
                 "segments": int(self.segment_counts[b]),
                 "pixels": int(self.pixel_counts[b].sum()),
                 "pixel_mean": pixel[b], "segment_mean": segment[b]}
                for b, (label, (lo, hi)) in enumerate(zip(self.area_bins.labels(),
                                                          self.area_bins.ranges()))]

    def by_distance(self, area_bins=None):
        """Per distance bin: mean weight per scale over object pixels at that distance from their
        edge, over all objects or only those in the given area bin indices."""
        chosen = slice(None) if area_bins is None else list(area_bins)
        sums = self.pixel_sums[chosen].sum(axis=0)
        counts = self.pixel_counts[chosen].sum(axis=0)
        means = _means(sums, counts)
        return [{"bin": label, "distance_min": lo, "distance_max": hi,
                 "pixels": int(counts[d]), "pixel_mean": means[d]}
                for d, (label, (lo, hi)) in enumerate(zip(self.distance_bins.labels(),
                                                          self.distance_bins.ranges()))]

    def by_size_and_distance(self):
        """pixel_mean[area bin][distance bin] = per-scale means or None."""
        means = _means(self.pixel_sums, self.pixel_counts)
        width = len(self.distance_bins)
        return [means[b * width:(b + 1) * width] for b in range(len(self.area_bins))]

    def summary(self):
        return {
            "scales": self.scale_names,
            "area_bins": self.area_bins.labels(),
            "distance_bins": self.distance_bins.labels(),
            "by_size": self.by_size(),
            "by_distance": self.by_distance(),
            "by_size_and_distance": self.by_size_and_distance(),
            "size_and_distance_pixels": self.pixel_counts.tolist(),
            "background": {"pixels": self.background_count,
                           "pixel_mean": _means(self.background_sums,
                                                np.array(self.background_count))[0]},
        }
