"""A tiny data set in VOC's layout (coloured shapes on noise), for tests, benchmarks and trying the
training pipeline without PASCAL VOC.

    <root>/JPEGImages/toy_0000.jpg            BGR JPEG
    <root>/SegmentationClassAug/toy_0000.png  palette PNG of class ids, 255 on a 1-pixel outline
    <root>/lists/train_aug.txt, lists/val.txt DeepLab list lines

Class c >= 1 is a disc or square of one colour per class, so a few dozen iterations of a small
net learn it; the colours are far apart so JPEG's error never blurs one class into another.
"""

from pathlib import Path

import cv2
import numpy as np

from ..files import atomic_write
from .palette import write_label_png

# BGR colours of classes 1.. (background is grey noise), and their names in classes.txt
CLASS_COLOURS = [(40, 40, 220), (40, 200, 40), (220, 60, 40), (30, 220, 220), (220, 40, 220),
                 (220, 220, 40), (150, 150, 255)]
CLASS_NAMES = ["background", "red", "green", "blue", "yellow", "magenta", "cyan", "pink"]


def make_sample(rng, height, width, num_classes):
    """(image BGR uint8, label uint8) with 1-3 shapes of classes 1..num_classes-1."""
    image = rng.normal(128, 20, (height, width, 3)).clip(0, 255).astype(np.uint8)
    label = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, num_classes))
        size = int(rng.integers(max(4, min(height, width) // 6), max(5, min(height, width) // 2)))
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        mask = np.zeros((height, width), np.uint8)
        if rng.random() < 0.5:
            cv2.circle(mask, (cx, cy), size // 2, 1, -1)
        else:
            cv2.rectangle(mask, (cx - size // 2, cy - size // 2), (cx + size // 2, cy + size // 2),
                          1, -1)
        colour = CLASS_COLOURS[(cls - 1) % len(CLASS_COLOURS)]
        image[mask == 1] = colour
        label[mask == 1] = cls
        outline = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        label[(outline == 1) & (mask == 1)] = 255  # VOC marks object borders "void"
    return image, label


def make_toy_voc(root, train=24, val=8, size=(64, 96), num_classes=4, seed=0):
    """Write the data set under root (images, labels, lists/train_aug.txt and lists/val.txt, and
    classes.txt, the class names for the evaluation tools' --classes); returns (train list path,
    val list path).

    size: (min, max) side of the images, drawn per image (so padding and cropping both occur).
    """
    if not 2 <= num_classes <= 1 + len(CLASS_COLOURS):
        raise ValueError(f"num_classes must lie in 2..{1 + len(CLASS_COLOURS)}, got {num_classes}")
    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(train + val):
        name = f"toy_{i:04d}"
        h, w = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
        image, label = make_sample(rng, h, w, num_classes)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        atomic_write(root / "JPEGImages" / f"{name}.jpg", jpeg.tobytes())
        write_label_png(root / "SegmentationClassAug" / f"{name}.png", label)
        lines.append(f"/JPEGImages/{name}.jpg /SegmentationClassAug/{name}.png")
    train_list, val_list = root / "lists" / "train_aug.txt", root / "lists" / "val.txt"
    atomic_write(train_list, "\n".join(lines[:train]) + "\n")
    atomic_write(val_list, "\n".join(lines[train:]) + "\n")
    atomic_write(root / "classes.txt", "\n".join(CLASS_NAMES[:num_classes]) + "\n")
    return train_list, val_list
