"""A synthetic segmentation set whose classes need the right scale to be seen, in VOC layout.

Small objects carry their class only in a period-2 texture (horizontal stripes, vertical stripes,
checkerboard). A corner-aligned 0.5x resize of an image of odd size 2k + 1 reads exactly the
even rows and columns, so at scale 0.5 every such texture becomes a flat patch: only scale 1 can
tell the small classes apart. Large objects share one flat look and carry their class only in a
band along their edge (brighter, darker or none): a pixel deep inside needs context reaching the
edge, which the coarse scale's receptive field gives and scale 1's does not. Object sizes span
8x (8 to 64 px across). Fill colours are drawn from one distribution for every class, so colour says
nothing about the class. (DEMO-FACTS.md's design, made 3-channel and parameterised, then tuned
for the demo: see SyntheticSpec.)

Every image is a pure function of (seed, split, index), so the set is made on the fly, in any
order, and the same on every machine. Written layout (VOC's, so the data layer, training and
tools/test_voc.py run on it unchanged):

    JPEGImages/<name>.png         the images, LOSSLESS PNG (JPEG would smear the textures)
    SegmentationClass/<name>.png  VOC palette PNGs of class ids
    lists/train.txt, lists/val.txt  DeepLab list files
    objects.json                  per image: each object's class, shape, size, area, bounding box
    classes.txt                   class names, one per line (tools/test_voc.py --classes)
    synthetic.json                the spec, seed and counts that made the set
    samples.png                   a few images beside their coloured labels
"""

import io
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..files import atomic_write
from .palette import colorize, label_png_bytes

TEXTURES = ("hstripes", "vstripes", "checker")
RIMS = ("bright_rim", "dark_rim", "plain_rim")
CUES = TEXTURES + RIMS
SHAPES = ("disc", "square")
SPLITS = ("train", "val")


@dataclass(frozen=True)
class ObjectGroup:
    """Objects that share size range, count and shapes; each one's class is drawn uniformly from
    `classes` (names). cue per class: one of CUES, in `cues` (same order as `classes`)."""
    classes: Tuple[str, ...]
    cues: Tuple[str, ...]
    size: Tuple[int, int]          # diameter (disc) or side (square) in pixels, inclusive range
    count: Tuple[int, int]         # objects per image, inclusive range
    probability: float = 1.0       # chance that an image has objects of this group at all
    shapes: Tuple[str, ...] = SHAPES
    rotate: bool = False           # squares turned by a random angle


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that shapes the images; the defaults are the demo's design (README, "Demo":
    the designs tried and their numbers). Small objects of 8-22 px (DEMO-FACTS.md's 6-10 px
    mostly vanished at scale 0.5), a textured background and object fills from a narrow range
    kept apart from the background's colour (so that both scales find the objects and only the
    class needs the right scale)."""
    image_size: int = 97                 # odd: a 0.5x resize then reads exactly every other pixel
    groups: Tuple[ObjectGroup, ...] = (
        ObjectGroup(("hstripes", "vstripes", "checker"), ("hstripes", "vstripes", "checker"),
                    size=(8, 22), count=(2, 5)),
        ObjectGroup(("bright_rim", "dark_rim", "plain_rim"), ("bright_rim", "dark_rim", "plain_rim"),
                    size=(40, 64), count=(1, 1), probability=0.9, rotate=True),
    )
    texture_amplitude: float = 40.0      # +/- grey levels of the period-2 textures
    rim_width: float = 4.0               # pixels
    rim_delta: float = 70.0              # grey levels added (bright) or taken (dark) in the rim
    noise_std: float = 6.0               # per-pixel Gaussian noise, every channel
    fill_range: Tuple[float, float] = (110.0, 150.0)  # object fill colours, per channel
    background_range: Tuple[float, float] = (30.0, 225.0)
    background_gradient: float = 10.0    # +/- grey levels of a linear ramp across the background
    # A smooth random pattern on the background (std in grey levels, Gaussian smoothing in px):
    # coarse enough to survive a 0.5x resize, so that every scale can tell background from an
    # object's flat inside, and only the class is left to the scale that sees its cue.
    background_texture: float = 18.0
    background_texture_sigma: float = 2.0
    min_contrast: float = 40.0           # |mean fill - mean background| at least this
    # Small textured objects: put the texture's phase so that the pixels a 0.5x resize keeps
    # lie on the fill's side away from the background (False: a random phase, and about half
    # the small objects fade into the background at 0.5x, contrast fill - background -+ amplitude).
    texture_away_from_background: bool = True
    margin: int = 2                      # pixels kept free between objects
    placement_tries: int = 30

    @property
    def class_names(self) -> List[str]:
        names = ["background"]
        for group in self.groups:
            names += list(group.classes)
        return names

    def validate(self):
        names = self.class_names
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        if len(names) > 255:
            raise ValueError(f"at most 254 object classes fit class ids 1..254, got {len(names) - 1}")
        for group in self.groups:
            if len(group.classes) != len(group.cues) or not group.classes:
                raise ValueError(f"group {group.classes}: one cue per class needed, got "
                                 f"{group.cues}")
            bad = [c for c in group.cues if c not in CUES]
            if bad:
                raise ValueError(f"unknown cue(s) {bad}; cues are {CUES}")
            if [s for s in group.shapes if s not in SHAPES] or not group.shapes:
                raise ValueError(f"shapes must be among {SHAPES}, got {group.shapes}")
            lo, hi = group.size
            if not 2 <= lo <= hi or hi > self.image_size - 2 * self.margin:
                raise ValueError(f"group {group.classes}: size range {group.size} must lie in "
                                 f"2..{self.image_size - 2 * self.margin}")
            if not 0 <= group.count[0] <= group.count[1]:
                raise ValueError(f"group {group.classes}: bad count range {group.count}")
            if not 0 <= group.probability <= 1:
                raise ValueError(f"group {group.classes}: probability must lie in 0..1")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if self.background_texture < 0 or self.background_texture_sigma <= 0:
            raise ValueError(f"background_texture must be >= 0 and background_texture_sigma > 0, "
                             f"got {self.background_texture} and "
                             f"{self.background_texture_sigma}")
        for key in ("fill_range", "background_range"):
            lo, hi = getattr(self, key)
            if not 0 <= lo <= hi <= 255:
                raise ValueError(f"{key} must satisfy 0 <= low <= high <= 255, got {(lo, hi)}")
        return self

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "SyntheticSpec":
        """The spec from a dict (e.g. a JSON file); fields left out keep their defaults."""
        data = dict(data)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown synthetic spec field(s): {sorted(unknown)}")
        if "groups" in data:
            groups = []
            for g in data["groups"]:
                extra = set(g) - set(ObjectGroup.__dataclass_fields__)
                if extra:
                    raise ValueError(f"unknown object group field(s): {sorted(extra)}")
                groups.append(ObjectGroup(**{k: tuple(v) if isinstance(v, list) else v
                                             for k, v in g.items()}))
            data["groups"] = tuple(groups)
        for key in ("fill_range", "background_range"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data).validate()


@dataclass
class Sample:
    image: np.ndarray      # H x W x 3 uint8, BGR (what cv2 writes and the data layer reads)
    label: np.ndarray      # H x W uint8 class ids
    objects: list = field(default_factory=list)   # dicts, see _place


def _depth(shape, size, angle, cy, cx, ys, xs):
    """How far inside the object each pixel centre lies (>= 0 inside; < 0 outside)."""
    dy, dx = ys - cy, xs - cx
    if shape == "disc":
        return size / 2.0 - np.sqrt(dy * dy + dx * dx)
    c, s = np.cos(angle), np.sin(angle)
    u, v = dx * c + dy * s, -dx * s + dy * c
    return size / 2.0 - np.maximum(np.abs(u), np.abs(v))


def _extent(shape, size, angle):
    """Half the object's width/height in pixels (its bounding square's half-side)."""
    if shape == "disc":
        return size / 2.0
    return size / 2.0 * (abs(np.cos(angle)) + abs(np.sin(angle)))


def _texture(cue, ys, xs, phase):
    if cue == "hstripes":
        parity = ys + phase
    elif cue == "vstripes":
        parity = xs + phase
    else:
        parity = ys + xs + phase
    return np.where(parity % 2 == 0, 1.0, -1.0)


class SyntheticDataset:
    """Makes sample (split, index) on demand: `sample("train", 12)`."""

    def __init__(self, spec: SyntheticSpec = SyntheticSpec(), seed: int = 0):
        self.spec = spec.validate()
        self.seed = int(seed)
        self.class_names = spec.class_names
        self._group_class_ids = []
        next_id = 1
        for group in spec.groups:
            self._group_class_ids.append(list(range(next_id, next_id + len(group.classes))))
            next_id += len(group.classes)

    @staticmethod
    def name(split, index):
        return f"{split}_{index:05d}"

    def _rng(self, split, index):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.random.default_rng([self.seed, SPLITS.index(split), int(index)])

    def _fill(self, rng, background_mean):
        spec = self.spec
        for _ in range(100):
            fill = rng.uniform(*spec.fill_range, size=3)
            if abs(fill.mean() - background_mean) >= spec.min_contrast:
                return fill
        raise ValueError(f"no fill colour in {spec.fill_range} is {spec.min_contrast} grey levels "
                         f"from the background mean {background_mean:.0f}; widen fill_range")

    def _background(self, rng):
        """The background's base colour: its mean keeps min_contrast from the middle of the fill
        range, so that every object can be given a fill that stands out from it."""
        spec = self.spec
        middle = sum(spec.fill_range) / 2.0
        for _ in range(100):
            base = rng.uniform(*spec.background_range, size=3)
            if abs(base.mean() - middle) >= spec.min_contrast:
                return base
        raise ValueError(f"background_range {spec.background_range} seldom gives a colour "
                         f"{spec.min_contrast} grey levels from the fill range's middle {middle:g}; "
                         f"widen it or lower min_contrast")

    def _smooth_field(self, rng):
        """n x n Gaussian-smoothed white noise scaled to std background_texture."""
        n, spec = self.spec.image_size, self.spec
        field_ = cv2.GaussianBlur(rng.normal(size=(n, n)), (0, 0), spec.background_texture_sigma,
                                  borderType=cv2.BORDER_REFLECT)
        return field_ * (spec.background_texture / max(field_.std(), 1e-9))

    def sample(self, split, index) -> Sample:
        spec, rng = self.spec, self._rng(split, index)
        n = spec.image_size
        ys, xs = np.ogrid[0:n, 0:n]
        base = self._background(rng)
        ramp = rng.uniform(-1, 1, size=2) * spec.background_gradient
        gradient = (ys / (n - 1) - 0.5) * ramp[0] + (xs / (n - 1) - 0.5) * ramp[1]
        image = base[None, None, :] + gradient[:, :, None]  # H x W x 3 float64
        if spec.background_texture > 0:
            image += self._smooth_field(rng)[:, :, None]
        label = np.zeros((n, n), np.uint8)
        taken = np.zeros((n, n), bool)  # object pixels and their margins
        objects = []
        # Largest objects first: placed after the small ones they would seldom find room.
        order = sorted(range(len(spec.groups)), key=lambda g: -spec.groups[g].size[1])
        for group, class_ids in ((spec.groups[g], self._group_class_ids[g]) for g in order):
            if rng.random() >= group.probability:
                continue
            for _ in range(int(rng.integers(group.count[0], group.count[1] + 1))):
                k = int(rng.integers(len(class_ids)))
                placed = self._place(rng, group, group.cues[k], class_ids[k], group.classes[k],
                                     image, label, taken, base.mean())
                if placed is not None:
                    objects.append(placed)
        image += rng.normal(0.0, spec.noise_std, image.shape)
        return Sample(np.clip(np.rint(image), 0, 255).astype(np.uint8), label, objects)

    def _place(self, rng, group, cue, class_id, class_name, image, label, taken, background_mean):
        """Draw one object where it keeps `margin` pixels from the others; None if it never fits."""
        spec, n = self.spec, self.spec.image_size
        size = int(rng.integers(group.size[0], group.size[1] + 1))
        shape = group.shapes[int(rng.integers(len(group.shapes)))]
        angle = float(rng.uniform(0, np.pi / 2)) if (group.rotate and shape == "square") else 0.0
        half = _extent(shape, size, angle)
        fill = self._fill(rng, background_mean)
        phase = int(rng.integers(2))
        if spec.texture_away_from_background:
            # the even rows and columns (all that a 0.5x resize keeps) get fill + amplitude on
            # the side away from the background: the flat patch seen at 0.5x stays an object
            phase = 0 if fill.mean() >= background_mean else 1
        # Centres keep the object inside the image; one too large for that is centred and cut.
        low, high = half - 0.5, n - half - 0.5
        if low > high:
            low = high = (n - 1) / 2.0
        for _ in range(spec.placement_tries):
            cy, cx = rng.uniform(low, high), rng.uniform(low, high)
            reach = half + spec.margin  # the object and its margin
            y0, y1 = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, n)
            x0, x1 = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, n)
            by, bx = np.ogrid[y0:y1, x0:x1]
            depth = _depth(shape, size, angle, cy, cx, by, bx)
            mask = depth >= 0
            if not mask.any() or taken[y0:y1, x0:x1][mask].any():
                continue
            taken[y0:y1, x0:x1] |= depth >= -spec.margin
            region = image[y0:y1, x0:x1]
            value = np.broadcast_to(fill, region.shape).copy()
            if cue in TEXTURES:
                value += spec.texture_amplitude * np.broadcast_to(
                    _texture(cue, by, bx, phase), mask.shape)[:, :, None]
            elif cue != "plain_rim":
                sign = 1.0 if cue == "bright_rim" else -1.0
                rim = mask & (depth < spec.rim_width)
                value[rim] += sign * spec.rim_delta
            region[mask] = value[mask]
            label[y0:y1, x0:x1][mask] = class_id
            rows, cols = np.nonzero(mask)
            return {"class": class_id, "name": class_name, "cue": cue, "shape": shape,
                    "size": size, "angle_degrees": round(float(np.degrees(angle)), 3),
                    "center": [round(float(cx), 3), round(float(cy), 3)],
                    "area": int(mask.sum()),
                    "truncated": bool(cy - half < -0.5 or cx - half < -0.5
                                      or cy + half > n - 0.5 or cx + half > n - 0.5),
                    "bbox": [int(x0 + cols.min()), int(y0 + rows.min()),
                             int(x0 + cols.max()) + 1, int(y0 + rows.max()) + 1]}
        return None


# ---------------------------------------------------------------------------------------------
# Writing the set
# ---------------------------------------------------------------------------------------------

MARKER = "synthetic.json"


def _png(image_bgr) -> bytes:
    ok, encoded = cv2.imencode(".png", image_bgr)
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return encoded.tobytes()


def samples_picture(dataset: SyntheticDataset, count=8, split="train", zoom=3) -> bytes:
    """PNG bytes: `count` images (top row) above their coloured labels (bottom row), with a
    legend strip of the class colours."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .palette import voc_palette

    samples = [dataset.sample(split, i) for i in range(count)]
    figure, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.6), squeeze=False)
    for i, sample in enumerate(samples):
        axes[0, i].imshow(sample.image[:, :, ::-1], interpolation="nearest")
        axes[0, i].set_title(dataset.name(split, i), fontsize=7)
        axes[1, i].imshow(colorize(sample.label), interpolation="nearest")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    palette = voc_palette() / 255.0
    figure.legend(handles=[Patch(color=palette[k], label=f"{k} {name}")
                           for k, name in enumerate(dataset.class_names)],
                  loc="lower center", ncol=min(len(dataset.class_names), 7), fontsize=8,
                  frameon=False)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=60 * zoom)
    plt.close(figure)
    return buffer.getvalue()


def _description(dataset, counts):
    return {"generator": "attention_scale.data.synthetic", "seed": dataset.seed,
            "counts": counts, "classes": dataset.class_names, "spec": dataset.spec.to_json()}


def write_dataset(root, spec: SyntheticSpec = SyntheticSpec(), seed=0, num_train=2000,
                  num_val=300, num_samples=8, progress=True, force=False) -> dict:
    """Write the set under root (see the module doc) and return its description.

    The set is written into a sibling folder and renamed into place at the end, so root is either
    absent or complete. A root made earlier from the same spec, seed and counts is kept as it is;
    one made otherwise is replaced only with force=True (and only if synthetic.json marks it as
    this generator's; any other folder is never deleted)."""
    root = Path(root)
    dataset = SyntheticDataset(spec, seed)
    counts = {"train": int(num_train), "val": int(num_val)}
    if min(counts.values()) < 1:
        raise ValueError(f"need at least one image per split, got {counts}")
    description = _description(dataset, counts)
    if root.exists():
        marker = root / MARKER
        existing = None
        if marker.is_file():
            try:
                existing = json.loads(marker.read_text())
            except ValueError:
                existing = None
        if existing == json.loads(json.dumps(description)):
            return dict(description, reused=True)
        if existing is None:
            raise DataError(f"{root} exists and is not a synthetic set written here; choose "
                            f"another folder")
        if not force:
            raise DataError(f"{root} holds a synthetic set made with other settings; replace "
                            f"it (tools/make_synthetic.py --force, or force=True), or choose "
                            f"another folder")
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    for sub in ("JPEGImages", "SegmentationClass", "lists"):
        (partial / sub).mkdir(parents=True)
    objects = {}
    total = sum(counts.values())
    with tqdm(total=total, desc="synthetic set", unit="img", disable=not progress) as bar:
        for split in SPLITS:
            lines = []
            for index in range(counts[split]):
                name = dataset.name(split, index)
                sample = dataset.sample(split, index)
                (partial / "JPEGImages" / f"{name}.png").write_bytes(_png(sample.image))
                (partial / "SegmentationClass" / f"{name}.png").write_bytes(
                    label_png_bytes(sample.label))
                objects[name] = sample.objects
                lines.append(f"/JPEGImages/{name}.png /SegmentationClass/{name}.png")
                bar.update()
            (partial / "lists" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (partial / "objects.json").write_text(json.dumps(objects, separators=(",", ":")))
    (partial / "classes.txt").write_text("\n".join(dataset.class_names) + "\n")
    if num_samples:
        (partial / "samples.png").write_bytes(samples_picture(dataset, num_samples))
    atomic_write(partial / MARKER, json.dumps(description, indent=2) + "\n")
    if root.exists():
        shutil.rmtree(root)
    partial.rename(root)
    return dict(description, reused=False)
