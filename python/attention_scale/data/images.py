"""Reading images (OpenCV, BGR) and label maps (Pillow, class indices), checked on the way in.

Labels are read with Pillow because OpenCV turns a palette PNG (VOC's SegmentationClass) into
colours; Pillow gives the palette indices, which are the class ids, and reads SBD-style
single-channel PNGs (SegmentationClassAug) unchanged.
"""

import os

import cv2
import numpy as np
from PIL import Image

from ..errors import DataError

IGNORE_LABEL = 255


def _where(path, where):
    return f"{path}" + (f" ({where})" if where else "")


def read_image(path, where=None) -> np.ndarray:
    """H x W x 3 uint8, BGR (Caffe's channel order). DataError if missing or undecodable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        problem = "no such file" if not os.path.isfile(path) else "not a readable image"
        raise DataError(f"image {_where(path, where)}: {problem}")
    return image


def read_label(path, where=None, num_classes=None, ignore_label=IGNORE_LABEL,
               what="label") -> np.ndarray:
    """H x W uint8 class ids. With num_classes, values must lie in [0, num_classes) or equal
    ignore_label. DataError if missing, undecodable, not one channel, or out of range; its message
    calls the file `what` ("label", "prediction")."""
    if not os.path.isfile(path):
        raise DataError(f"{what} {_where(path, where)}: no such file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("P", "L", "I", "I;16"):
                raise DataError(f"{what} {_where(path, where)}: mode {img.mode!r}; expected a "
                                f"palette or single-channel PNG of class ids")
            label = np.array(img)
    except DataError:
        raise
    except Exception as exc:  # Pillow raises several types for corrupt files
        raise DataError(f"{what} {_where(path, where)}: not a readable image "
                        f"({type(exc).__name__}: {exc})") from None
    if label.dtype != np.uint8:
        if label.min() < 0 or label.max() > 255:
            raise DataError(f"{what} {_where(path, where)}: values {label.min()}..{label.max()} "
                            f"do not fit class ids 0..255")
        label = label.astype(np.uint8)
    if num_classes is not None:
        check_label_values(label, num_classes, ignore_label, f"{what} {_where(path, where)}")
    return label


def check_label_values(label, num_classes, ignore_label=IGNORE_LABEL, what="label"):
    """DataError naming the first bad value and its pixel when a class id is out of range."""
    bad = (label >= num_classes) & (label != ignore_label)
    if bad.any():
        y, x = np.argwhere(bad)[0]
        values = sorted(set(np.unique(label[bad]).tolist()))
        raise DataError(f"{what}: value {label[y, x]} at row {y}, column {x} is not a class id "
                        f"(0..{num_classes - 1}) nor the ignore label {ignore_label}; bad values: "
                        f"{values[:10]}")


def check_same_size(image, label, image_path, label_path, where=None):
    if image.shape[:2] != label.shape[:2]:
        raise DataError(f"label {_where(label_path, where)} is {label.shape[0]}x{label.shape[1]} "
                        f"but its image {image_path} is {image.shape[0]}x{image.shape[1]}")

