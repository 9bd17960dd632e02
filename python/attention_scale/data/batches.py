"""Making SegmentationData's batches: a pure function of (parameters, list, batch index).

Training (DeepLab's augmentation): read the image (BGR) and its label, resize both by a random
factor in [scale_min, scale_max] (bilinear / nearest), subtract the mean, pad at the bottom and
right to at least crop_size (0 = the mean colour for the image, ignore_label for the label), take
a random crop_size square, flip it horizontally with probability 1/2.
Test: no randomness; pad at the bottom and right to crop_size (a larger image keeps its top-left
crop_size square), the list's order.

Sample j of the stream (j = batch * batch_size + position) is entry perm_e[j mod n] of epoch
e = j div n, where perm_e is a seeded permutation (or the list order without shuffling); its
random draws come from a generator seeded with (seed, j). So batches depend on nothing but the
seed, whoever makes them and in whatever order.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Tuple

import cv2
import numpy as np

from . import images


@dataclass(frozen=True)
class Sample:
    """What a worker needs of one list entry (plain values: sent to worker processes)."""
    image: str
    label: str
    where: str  # "list.txt line 12"


@dataclass(frozen=True)
class BatchSpec:
    """The plain-value form of the layer's parameters that batches depend on."""
    batch_size: int
    crop_size: int
    mean_bgr: Tuple[float, float, float]
    train: bool
    scale_min: float
    scale_max: float
    mirror: bool
    shuffle: bool
    seed: int
    num_classes: int
    ignore_label: int

    @property
    def data_shape(self):
        return (self.batch_size, 3, self.crop_size, self.crop_size)

    @property
    def label_shape(self):
        return (self.batch_size, 1, self.crop_size, self.crop_size)


class BatchMaker:
    """Fills data (N x 3 x c x c) and label (N x 1 x c x c) float32 arrays for a batch index."""

    def __init__(self, spec: BatchSpec, samples: List[Sample]):
        self.spec = spec
        self.samples = samples
        self._permutation = lru_cache(maxsize=2)(self._make_permutation)

    def _make_permutation(self, epoch):
        n = len(self.samples)
        if not (self.spec.train and self.spec.shuffle):
            return np.arange(n)
        return np.random.default_rng([self.spec.seed, 0xE90C, epoch]).permutation(n)

    def sample_index(self, stream_position) -> int:
        epoch, offset = divmod(stream_position, len(self.samples))
        return int(self._permutation(epoch)[offset])

    def make(self, batch_index, data_out: np.ndarray, label_out: np.ndarray) -> None:
        spec = self.spec
        for position in range(spec.batch_size):
            j = batch_index * spec.batch_size + position
            sample = self.samples[self.sample_index(j)]
            rng = np.random.default_rng([spec.seed, j]) if spec.train else None
            image, label = self.load(sample)
            self.transform(image, label, rng, data_out[position], label_out[position, 0])

    def load(self, sample: Sample):
        image = images.read_image(sample.image, sample.where)
        label = images.read_label(sample.label, sample.where, num_classes=self.spec.num_classes,
                                  ignore_label=self.spec.ignore_label)
        images.check_same_size(image, label, sample.image, sample.label, sample.where)
        return image, label

    def transform(self, image, label, rng: Optional[np.random.Generator], data_out, label_out):
        """One sample into data_out (3 x c x c) and label_out (c x c)."""
        spec, crop = self.spec, self.spec.crop_size
        if rng is not None and (spec.scale_min != 1 or spec.scale_max != 1):
            factor = (rng.uniform(spec.scale_min, spec.scale_max)
                      if spec.scale_max > spec.scale_min else spec.scale_min)
            h, w = image.shape[:2]
            size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))  # (w, h)
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
        h, w = label.shape
        top = left = 0
        if rng is not None:
            top = int(rng.integers(0, max(h, crop) - crop + 1))
            left = int(rng.integers(0, max(w, crop) - crop + 1))
        flip = bool(rng is not None and spec.mirror and rng.random() < 0.5)
        # Padding: 0 after mean subtraction is the mean colour; the label's is ignored.
        data_out[...] = 0
        label_out[...] = spec.ignore_label
        rows = slice(top, min(h, top + crop))
        cols = slice(left, min(w, left + crop))
        patch = image[rows, cols].astype(np.float32) - np.asarray(spec.mean_bgr, np.float32)
        patch_label = label[rows, cols]
        if flip:
            patch, patch_label = patch[:, ::-1], patch_label[:, ::-1]
        ph, pw = patch_label.shape
        if flip:  # the flipped crop's padding belongs on the left, where the image's right was
            data_out[:, :ph, crop - pw:] = patch.transpose(2, 0, 1)
            label_out[:ph, crop - pw:] = patch_label
        else:
            data_out[:, :ph, :pw] = patch.transpose(2, 0, 1)
            label_out[:ph, :pw] = patch_label
