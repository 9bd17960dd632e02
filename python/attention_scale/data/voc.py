"""PASCAL VOC 2012 + SBD -> the folder DeepLab trains from (the CONTRACT's data/voc):

    JPEGImages -> <VOC2012>/JPEGImages            a symlink (SBD's images are VOC's)
    SegmentationClassAug/<id>.png                  palette PNGs of class ids, 255 = ignore
    lists/train_aug.txt                            SBD train + SBD val + VOC train, minus VOC val
    lists/val.txt, lists/train.txt                 VOC 2012 segmentation val and train
    JPEGImagesTest -> <VOC2012 test>/JPEGImages    when the VOC 2012 test set is there (in the
    lists/test.txt                                 VOC2012 folder, or given apart): its images,
                                                   no labels (tools/segment.py --voc-server)
    prepare_report.json                            counts, and every sample left out and why

A label comes from VOC's SegmentationClass when VOC annotates the image (its void borders are
kept), else from SBD's cls/<id>.mat (`GTcls.Segmentation`, read with scipy.io). Labels already in
SegmentationClassAug are kept. A sample whose image or label is missing, unreadable, out of
range or of another size than its image is named in the report and left out of the lists.
Without the test set there is no test list, and the report says where it was looked for.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from ..files import atomic_write
from .images import check_label_values, read_label
from .palette import write_label_png

NUM_CLASSES = 21
LABELS = "SegmentationClassAug"
# The test images get their own link: VOC2012test.tar may be unpacked over the trainval folder
# (one JPEGImages) or apart from it, and the test list reads the same either way.
TEST_IMAGES = "JPEGImagesTest"
TEST_IDS = Path("ImageSets") / "Segmentation" / "test.txt"


def _first_existing(path, candidates, what, needed):
    path = Path(path)
    for candidate in [path] + [path / c for c in candidates]:
        if all((candidate / n).exists() for n in needed):
            return candidate
    raise DataError(f"{path} is not {what}: none of {path}"
                    + "".join(f", {path / c}" for c in candidates)
                    + f" holds {' and '.join(needed)}")


def find_voc(path) -> Path:
    """The VOC2012 folder, given it, VOCdevkit or the folder holding VOCdevkit."""
    return _first_existing(path, ["VOC2012", "VOCdevkit/VOC2012"], "PASCAL VOC 2012",
                           ["JPEGImages", "ImageSets/Segmentation/train.txt",
                            "ImageSets/Segmentation/val.txt"])


def find_voc_test(path) -> Path:
    """The VOC2012 folder of the test set (VOC2012test.tar), given it, VOCdevkit or the folder
    holding VOCdevkit."""
    return _first_existing(path, ["VOC2012", "VOCdevkit/VOC2012"], "the PASCAL VOC 2012 test set",
                           ["JPEGImages", str(TEST_IDS)])


def find_sbd(path) -> Path:
    """SBD's dataset folder (cls/, train.txt, val.txt), given it or benchmark_RELEASE."""
    return _first_existing(path, ["dataset", "benchmark_RELEASE/dataset"], "SBD",
                           ["cls", "train.txt", "val.txt"])


def read_ids(path) -> List[str]:
    try:
        return [line.split()[0] for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DataError(f"cannot read image ids from {path}: {exc.strerror}") from None


def read_sbd_label(path) -> np.ndarray:
    """H x W uint8 class ids from an SBD cls/<id>.mat (GTcls.Segmentation)."""
    import scipy.io
    try:
        mat = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=True)
    except FileNotFoundError:
        raise DataError(f"SBD label {path}: no such file") from None
    except Exception as exc:  # scipy raises several types for damaged files
        raise DataError(f"SBD label {path}: not a readable .mat file "
                        f"({type(exc).__name__}: {exc})") from None
    try:
        label = np.asarray(mat["GTcls"].Segmentation)
    except (KeyError, AttributeError):
        raise DataError(f"SBD label {path}: no GTcls.Segmentation in it "
                        f"(variables: {sorted(k for k in mat if not k.startswith('__'))})") from None
    if label.ndim != 2 or label.dtype.kind not in "iu" or (label.size and (
            label.min() < 0 or label.max() > 255)):
        raise DataError(f"SBD label {path}: GTcls.Segmentation is {label.shape} {label.dtype}, "
                        f"not an H x W map of class ids")
    return label.astype(np.uint8)


def _image_size(path) -> Tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    if not path.is_file():
        raise DataError(f"image {path}: no such file")
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as exc:
        raise DataError(f"image {path}: not a readable image ({type(exc).__name__}: {exc})") from None
    return height, width


@dataclass
class PrepareReport:
    labels_written_from_voc: int = 0
    labels_written_from_sbd: int = 0
    labels_kept: int = 0
    lists: dict = field(default_factory=dict)
    problems: List[Tuple[str, str]] = field(default_factory=list)  # (image id, what is wrong)
    no_test_list: Optional[str] = None  # why lists/test.txt was not written

    def to_json(self):
        return {"labels_written_from_voc": self.labels_written_from_voc,
                "labels_written_from_sbd": self.labels_written_from_sbd,
                "labels_kept": self.labels_kept, "lists": self.lists,
                "no_test_list": self.no_test_list,
                "problems": [{"id": i, "problem": p} for i, p in self.problems]}

    def format(self):
        lines = [f"labels: {self.labels_written_from_voc} written from VOC, "
                 f"{self.labels_written_from_sbd} from SBD, {self.labels_kept} already there"]
        for name, count in self.lists.items():
            unlabelled = " (no labels: for tools/segment.py)" if name == "test" else ""
            lines.append(f"lists/{name}.txt: {count} images{unlabelled}")
        if self.no_test_list:
            lines.append(f"lists/test.txt: not written: {self.no_test_list}")
        if self.problems:
            lines.append(f"{len(self.problems)} sample(s) left out of the lists:")
            lines += [f"  {i}: {p}" for i, p in self.problems[:20]]
            if len(self.problems) > 20:
                lines.append(f"  ... and {len(self.problems) - 20} more (prepare_report.json)")
        return "\n".join(lines)


def _link_images(voc_images, out, name="JPEGImages"):
    link = out / name
    target = voc_images.resolve()
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return
        link.unlink()
    elif link.exists():
        return  # a real folder the user put there: theirs to keep
    link.symlink_to(target, target_is_directory=True)


def _test_set(voc, voc_test):
    """(the test set's VOC2012 folder or None, why there is none): voc_test when given (a
    DataError when it is not the test set), else voc when the test tar was unpacked over it."""
    if voc_test is not None:
        return find_voc_test(voc_test), None
    if (voc / TEST_IDS).is_file():
        return voc, None
    return None, (f"no VOC 2012 test set: {voc / TEST_IDS} does not exist; for the test "
                  f"images' list (tools/segment.py --voc-server), unpack VOC2012test.tar in the "
                  f"folder holding --voc's VOCdevkit, or give the folder where it was unpacked "
                  f"with --voc-test")


def _write_test_list(test, out, report, progress):
    """lists/test.txt: one image path per line, no labels; images missing or unreadable are
    problems, as in the labelled lists."""
    ids = read_ids(test / TEST_IDS)
    _link_images(test / "JPEGImages", out, TEST_IMAGES)
    kept = []
    for image_id in tqdm(ids, desc="test images", unit="img", disable=not progress):
        try:
            _image_size(test / "JPEGImages" / f"{image_id}.jpg")
            kept.append(image_id)
        except DataError as exc:
            report.problems.append((image_id, str(exc)))
    atomic_write(out / "lists" / "test.txt",
                 "".join(f"/{TEST_IMAGES}/{i}.jpg\n" for i in kept))
    report.lists["test"] = len(kept)


def prepare(voc, sbd, out, progress=True, voc_test=None) -> PrepareReport:
    """voc_test: the VOC 2012 test set's folder when it is not unpacked inside voc."""
    voc, sbd, out = find_voc(voc), find_sbd(sbd), Path(out)
    test, no_test = _test_set(voc, voc_test)  # before any work: a wrong --voc-test is named
    segmentation = voc / "ImageSets" / "Segmentation"
    voc_train, voc_val = read_ids(segmentation / "train.txt"), read_ids(segmentation / "val.txt")
    sbd_ids = set(read_ids(sbd / "train.txt")) | set(read_ids(sbd / "val.txt"))
    val_set = set(voc_val)
    splits = {"train_aug": sorted((sbd_ids | set(voc_train)) - val_set),
              "val": list(voc_val), "train": list(voc_train)}
    wanted = sorted(set(splits["train_aug"]) | val_set | set(voc_train))

    (out / LABELS).mkdir(parents=True, exist_ok=True)
    _link_images(voc / "JPEGImages", out)
    report, bad = PrepareReport(), set()
    for image_id in tqdm(wanted, desc="labels", unit="img", disable=not progress):
        try:
            size = _image_size(voc / "JPEGImages" / f"{image_id}.jpg")
            target = out / LABELS / f"{image_id}.png"
            if target.is_file():
                report.labels_kept += 1
                continue
            voc_label = voc / "SegmentationClass" / f"{image_id}.png"
            if voc_label.is_file():
                label, source = read_label(voc_label, num_classes=NUM_CLASSES), voc_label
            elif image_id in sbd_ids:
                source = sbd / "cls" / f"{image_id}.mat"
                label = read_sbd_label(source)
                check_label_values(label, NUM_CLASSES, what=f"SBD label {source}")
            else:
                raise DataError(f"no label: neither {voc_label} nor an SBD .mat exists")
            if label.shape != size:
                raise DataError(f"label {source} is {label.shape[0]}x{label.shape[1]} "
                                f"but the image is {size[0]}x{size[1]}")
            write_label_png(target, label)
            if source == voc_label:
                report.labels_written_from_voc += 1
            else:
                report.labels_written_from_sbd += 1
        except DataError as exc:
            report.problems.append((image_id, str(exc)))
            bad.add(image_id)

    for name, ids in splits.items():
        kept = [i for i in ids if i not in bad]
        atomic_write(out / "lists" / f"{name}.txt",
                     "".join(f"/JPEGImages/{i}.jpg /{LABELS}/{i}.png\n" for i in kept))
        report.lists[name] = len(kept)
    if test is not None:
        _write_test_list(test, out, report, progress)
    report.no_test_list = no_test
    atomic_write(out / "prepare_report.json", json.dumps(report.to_json(), indent=2) + "\n")
    return report
