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


_JPEG_SOI, _JPEG_EOI, _JPEG_SOS = b"\xff\xd8", b"\xff\xd9", 0xDA


def jpeg_truncated(data: bytes) -> bool:
    """Whether JPEG bytes end before their end-of-image marker (FF D9), which libjpeg decodes
    anyway, filling the rest with grey and saying so only on stderr without the file's name.
    The marker segments before the first scan are skipped by their lengths (an EXIF thumbnail
    in APP1 has an end marker of its own); after it FF D9 cannot occur in the coded data (an FF
    there is followed by 00 or a restart marker) and only marks the end, whatever trails it."""
    pos, size = len(_JPEG_SOI), len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return False  # not the marker layout expected: left to the decoder
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == _JPEG_EOI[1]:
            return False
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        else:
            length = int.from_bytes(data[pos + 2:pos + 4], "big")
            if marker == _JPEG_SOS:
                return data.find(_JPEG_EOI, pos + 2 + length) < 0
            pos += 2 + length
    return True  # the data ends among the headers


def _decode(data):
    # OpenCV's own warnings (a TIFF it cannot decode) would come before the tool's one line;
    # only errors are let through while decoding.
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:  # an OpenCV build without the logging bindings
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    level = logging.getLogLevel()
    logging.setLogLevel(min(level, logging.LOG_LEVEL_ERROR))
    try:
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    finally:
        logging.setLogLevel(level)


def read_image(path, where=None) -> np.ndarray:
    """H x W x 3 uint8, BGR (Caffe's channel order). DataError if missing, undecodable or a
    JPEG cut short."""
    try:
        data = np.fromfile(str(path), np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {_where(path, where)}: no such file") from None
    except OSError as exc:
        problem = "no such file" if not os.path.isfile(path) else exc.strerror
        raise DataError(f"image {_where(path, where)}: {problem}") from None
    if data[:2].tobytes() == _JPEG_SOI and jpeg_truncated(data.tobytes()):
        raise DataError(f"image {_where(path, where)}: a truncated JPEG (its data ends before the "
                        f"end-of-image marker, a part of the picture is missing)")
    image = _decode(data) if data.size else None
    if image is None:
        raise DataError(f"image {_where(path, where)}: not a readable image")
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
