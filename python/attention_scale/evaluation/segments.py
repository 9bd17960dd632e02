"""Ground-truth object segments: the connected regions of one class in a label map, their areas,
log-scale bins over those areas, and each pixel's distance from its segment's edge.

A segment is an 8-connected region of pixels sharing one object class (every class but the
background and the ignore label). VOC labels are not instance maps, so touching objects of one
class form one segment; the synthetic set keeps its objects apart, so there a segment is an object.
"""

from dataclasses import dataclass
import numpy as np
from scipy import ndimage

from ..data.images import IGNORE_LABEL

BACKGROUND = 0
_EIGHT_CONNECTED = np.ones((3, 3), bool)


@dataclass(frozen=True)
class Segments:
    """The object segments of one label map."""
    ids: np.ndarray      # H x W int32: 0 where no segment (background, ignore), k for segment k
    classes: np.ndarray  # (K + 1,) int64 class id of segment k; entry 0 is -1
    areas: np.ndarray    # (K + 1,) int64 pixel count of segment k; entry 0 is 0

    @property
    def count(self) -> int:
        return len(self.areas) - 1


def find_segments(label, background=BACKGROUND, ignore_label=IGNORE_LABEL) -> Segments:
    """The 8-connected segments of every object class in an H x W label map."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"a label map is H x W, got shape {label.shape}")
    ids = np.zeros(label.shape, np.int32)
    classes, areas = [-1], [0]
    for cls in np.unique(label).tolist():
        if cls in (background, ignore_label):
            continue
        components, count = ndimage.label(label == cls, structure=_EIGHT_CONNECTED)
        inside = components > 0
        ids[inside] = components[inside] + len(classes) - 1
        classes += [cls] * count
        areas += np.bincount(components[inside], minlength=count + 1)[1:].tolist()
    return Segments(ids, np.array(classes, np.int64), np.array(areas, np.int64))


def edge_distance(segments: Segments) -> np.ndarray:
    """H x W float64: for a pixel of segment k, the Euclidean distance to the nearest pixel of the
    image that is not in segment k (1 on the segment's rim); 0 outside segments.

    The image border is not an edge (an object cut by it is measured from its other sides); a
    segment that fills the image has no edge and gets inf.
    """
    ids = segments.ids
    distance = np.zeros(ids.shape, np.float64)
    height, width = ids.shape
    for k, box in enumerate(ndimage.find_objects(ids), start=1):
        if box is None:
            continue
        # One pixel around the box, inside the image, holds the nearest non-members.
        rows = slice(max(box[0].start - 1, 0), min(box[0].stop + 1, height))
        cols = slice(max(box[1].start - 1, 0), min(box[1].stop + 1, width))
        member = ids[rows, cols] == k
        if member.all():
            local = np.full(member.shape, np.inf)
        else:
            local = ndimage.distance_transform_edt(member)
        distance[rows, cols][member] = local[member]
    return distance


def nearest_segment(segments: Segments) -> np.ndarray:
    """H x W int32: the segment each pixel lies on, or for other pixels the segment nearest to it
    (Euclidean); all 0 when the image has no segment."""
    ids = segments.ids
    if segments.count == 0:
        return np.zeros(ids.shape, np.int32)
    _, (rows, cols) = ndimage.distance_transform_edt(ids == 0, return_indices=True)
    return ids[rows, cols]


@dataclass(frozen=True)
class Bins:
    """Half-open bins between increasing edges, open at both ends: with edges e_1 < ... < e_n,
    bin 0 is x < e_1, bin i is e_i <= x < e_(i+1), bin n is x >= e_n."""
    edges: tuple
    unit: str = ""

    def __post_init__(self):
        edges = tuple(float(e) for e in self.edges)
        if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"bin edges must be a non-empty increasing sequence, got {self.edges}")
        object.__setattr__(self, "edges", edges)

    def __len__(self):
        return len(self.edges) + 1

    def index(self, values) -> np.ndarray:
        return np.searchsorted(np.asarray(self.edges), np.asarray(values, np.float64),
                               side="right")

    def labels(self) -> list:
        def num(value):
            return f"{value:g}"
        edges, unit = self.edges, self.unit
        labels = [f"< {num(edges[0])}{unit}"]
        labels += [f"{num(lo)}-{num(hi)}{unit}" for lo, hi in zip(edges, edges[1:])]
        return labels + [f">= {num(edges[-1])}{unit}"]

    def ranges(self) -> list:
        """[(low, high)] per bin; None for an open end (JSON-ready)."""
        bounds = [None, *self.edges, None]
        return list(zip(bounds[:-1], bounds[1:]))


def log_bins(low, high, factor=2.0, unit="") -> Bins:
    """Edges low, low * factor, ... up to high (inclusive when reached exactly)."""
    if not (low > 0 and high > low and factor > 1):
        raise ValueError(f"log bins need 0 < low < high and factor > 1, got {low}, {high}, {factor}")
    count = int(np.floor(np.log(high / low) / np.log(factor) + 1e-9)) + 1
    return Bins(tuple(low * factor ** i for i in range(count)), unit)


def parse_edges(text: str, unit="") -> Bins:
    """Bins from '32,128,512' (command-line form)."""
    try:
        edges = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"bin edges must be numbers separated by commas, got {text!r}") from None
    return Bins(edges, unit)


# Defaults for VOC-sized images (up to 500 x 500): object areas 32 px .. 128 kpx in steps of 4x,
# distances from an object's edge 2 .. 32 px in steps of 2x.
DEFAULT_AREA_BINS = log_bins(32, 131072, 4, " px")
DEFAULT_DISTANCE_BINS = log_bins(2, 32, 2, " px")


def segment_bins(segments: Segments, bins: Bins) -> np.ndarray:
    """(K + 1,) bin index of each segment's area (entry 0 unused, -1)."""
    index = bins.index(segments.areas)
    index[0] = -1
    return index

