"""The PASCAL VOC colour palette and palette PNGs of class ids (written whole or not at all)."""

import io

import numpy as np
from PIL import Image

from ..files import atomic_write


def voc_palette(num_colors=256) -> np.ndarray:
    """num_colors x 3 uint8: VOC's palette, colour k from the bits of k spread over R, G, B
    (class 0 black, 1 dark red, ..., 255 the light cream of the 'void' borders)."""
    palette = np.zeros((num_colors, 3), np.uint8)
    for k in range(num_colors):
        value, r, g, b = k, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[k] = (r, g, b)
    return palette


def colorize(label) -> np.ndarray:
    """H x W class ids -> H x W x 3 RGB uint8 in the VOC palette."""
    return voc_palette()[np.asarray(label, np.uint8)]


def label_png_bytes(label) -> bytes:
    """A palette PNG of an H x W array of class ids (0..255), as bytes."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"a label map is H x W, got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"class ids must lie in 0..255, got {label.min()}..{label.max()}")
    img = Image.fromarray(label.astype(np.uint8))  # mode "L"; putpalette makes it "P", same ids
    img.putpalette(voc_palette().ravel().tolist())
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def write_label_png(path, label) -> None:
    """Write a palette PNG atomically: readers never see a half-written file."""
    atomic_write(path, label_png_bytes(label))
