"""Segmenting images that have no ground truth: a net's predictions and attention maps for a
folder of photos, or for the PASCAL VOC 2012 test set in the evaluation server's layout.

    inputs = gather_inputs(["photos/", "more/x.jpg"]) + list_inputs("test.txt", "data/voc")
    counts = segment_into("out", inputs, NetPredictor(prototxt, weights), voc_comp="comp6")

The output folder has the layout tools/test_voc.py writes (outputs.PredictionFolder:
predictions/<name>.png, attention/<name>.npz for attention nets, branches/), claimed by the same
run.json (outputs.claim_output: a folder made with another net, other weights or other test-time
settings is refused), so tools/visualize_attention.py reads either. A stopped run started again
reuses the images already done. Besides:

    sources.jsonl                     per image name, the file and the SHA-256 of its bytes that
                                      the prediction was made from: another image under a name
                                      already done is refused, not answered with the old result
    results/VOC2012/Segmentation/<comp>_test_cls/<name>.png
                                      with voc_comp: the evaluation server's layout (the devkit's
                                      VOCopts.seg.clsrespath), the same palette PNG as
                                      predictions/<name>.png; `tar czf results.tgz results/
                                      VOC2012/Segmentation/<comp>_test_cls` in the output
                                      folder makes the file to upload (only that comp's)

An image's name is its file name without the extension (VOC's image id); two inputs with one name
would share every output file and are refused.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from ..data.images import read_image, read_label
from ..data.lists import read_list
from ..errors import DataError
from ..files import atomic_write, file_sha256
from .inference import InputTooLarge
from .outputs import PredictionFolder, RunCounts, claim_output

# What OpenCV reads that cameras and data sets use; a file named on the command line is tried
# whatever its extension, a folder is searched for these (any case: IMG_0001.JPG).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm", ".pnm")
# The VOC segmentation competitions: comp5 trains on the VOC 2012 training data only, comp6 on
# any data but the test set (the paper's nets train with SBD's extra labels: comp6).
VOC_COMPETITIONS = ("comp5", "comp6")
LIST_SUFFIXES = (".txt", ".lst")  # a list file named where images go: --list was meant
SOURCES = "sources.jsonl"


@dataclass(frozen=True)
class ImageInput:
    """One image to segment: its file, and where it was named (a list line) for messages."""
    image: Path
    where: Optional[str] = None

    @property
    def name(self) -> str:
        return self.image.stem

    def described(self) -> str:
        return f"{self.image}" + (f" ({self.where})" if self.where else "")


def gather_inputs(paths):
    """ImageInputs of image files and folders (each folder's image files by name, not its
    subfolders; hidden files skipped). DataError for a path that does not exist or a folder
    without images."""
    inputs = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and
                            not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise DataError(f"{path}: a folder without images ({', '.join(IMAGE_SUFFIXES)}; "
                                f"its subfolders are not searched)")
            inputs += [ImageInput(p) for p in images]
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            raise DataError(f"{path}: a text file, not an image; a list of images is given as "
                            f"--list {path} --root ROOT")
        elif path.exists():
            inputs.append(ImageInput(path))
        else:
            raise DataError(f"{path}: no such image file or folder")
    return inputs


def list_inputs(list_path, root):
    """ImageInputs of a DeepLab list's images; label paths, where lines have them, are ignored."""
    return [ImageInput(entry.image, entry.where)
            for entry in read_list(list_path, root, require_labels=False)]


def unique_inputs(inputs):
    """The inputs without repeats of one file (a file named and also in a named folder); a
    DataError for two files with one name, whose outputs would share every file."""
    seen, kept = {}, []
    for entry in inputs:
        earlier = seen.get(entry.name)
        if earlier is None:
            seen[entry.name] = entry
            kept.append(entry)
        elif earlier.image.resolve() != entry.image.resolve():
            raise DataError(f"two images named {entry.name!r}: {earlier.described()} and "
                            f"{entry.described()}; an image's outputs are named after its file "
                            f"name without the extension ({entry.name}.png), so they would share "
                            f"them: rename one, or segment them into different output folders")
    return kept


class SourceRecord:
    """sources.jsonl of an output folder: which image file (by content) each prediction came
    from. Appended one line per image before its prediction is written; a later line of a name
    replaces an earlier one."""

    def __init__(self, path):
        self.path = Path(path)
        self.by_name = {}
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        except OSError as exc:
            raise DataError(f"{self.path}: unreadable ({exc.strerror})") from None
        for line in lines:
            try:
                record = json.loads(line)
                self.by_name[record["name"]] = record
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: its image is predicted again

    def check(self, entry, digest, prediction):
        recorded = self.by_name.get(entry.name)
        if recorded is not None and recorded.get("sha256") != digest:
            raise DataError(
                f"{prediction} was made from {recorded.get('image')}, other content than "
                f"{entry.described()} (sha256 {str(recorded.get('sha256'))[:12]}... there, "
                f"{digest[:12]}... now); use another --output, or delete that prediction to "
                f"make it again")

    def check_all(self, entries, folder):
        """check() for each entry whose prediction is in the PredictionFolder `folder` and
        recorded here (a folder read without a net: its images are hashed, not predicted)."""
        for entry in entries:
            path = folder.prediction_path(entry.name)
            if entry.name in self.by_name and path.is_file():
                self.check(entry, image_digest(entry), path)

    def add(self, entry, digest):
        record = {"name": entry.name, "image": str(entry.image), "sha256": digest}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.by_name[entry.name] = record


def voc_results_folder(root, comp):
    """Where the VOC evaluation server wants the test set's segmentations, under root."""
    if comp not in VOC_COMPETITIONS:
        raise ValueError(f"VOC competition {comp!r}: one of {', '.join(VOC_COMPETITIONS)}")
    return Path(root) / "results" / "VOC2012" / "Segmentation" / f"{comp}_test_cls"


def image_digest(entry):
    """The SHA-256 of an ImageInput's file; DataError naming it when it cannot be read."""
    try:
        return file_sha256(entry.image)
    except OSError as exc:
        problem = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror
        raise DataError(f"image {entry.described()}: {problem}") from None


SKIPPED = "skipped.txt"


def segment_list(inputs, root, predictor, claim=None, voc_folder=None, progress=True,
                 crf=None, desc="segmenting", skip_unreadable=False) -> RunCounts:
    """Predict every input into the folder root (PredictionFolder.under(root)), reusing the
    images done there before (made from the same file content, see SourceRecord). claim: the
    folder's outputs.OutputClaim, recorded before the first prediction is written. voc_folder:
    also keep a copy of each prediction there (voc_results_folder). crf: refine(image,
    probabilities) -> labels (evaluation.crf.DenseCRF), as in runner.evaluate_list.
    skip_unreadable: an image that cannot be read or is too large for the net is left out
    (counts.skipped, <root>/skipped.txt) instead of ending the run: one bad photo in a folder
    of a thousand."""
    inputs = unique_inputs(inputs)
    folder = PredictionFolder.under(root)
    sources = SourceRecord(Path(root) / SOURCES)
    with_attention = predictor.has_attention
    branches = predictor.branch_names
    folder.remove_stale_temporaries()
    counts, start = RunCounts(), time.monotonic()
    bar = tqdm(inputs, desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    for entry in bar:
        try:
            digest = image_digest(entry)
        except DataError as exc:
            if not skip_unreadable:
                raise
            counts.skipped.append((entry, str(exc)))
            continue
        path = folder.prediction_path(entry.name)
        if folder.has(entry.name, with_attention, branches):
            sources.check(entry, digest, path)
            if entry.name not in sources.by_name:
                counts.unrecorded += 1  # a folder test_voc.py made before it kept the record
            # Read back as test_voc does: a damaged file is named, not passed on (nor copied to
            # the server's layout, nor left for visualize_attention to trip on).
            try:
                label = read_label(path, where=entry.where, num_classes=predictor.num_classes,
                                   what="prediction")
                if with_attention:
                    folder.load_attention(entry.name, label.shape, entry.where)
            except DataError as exc:
                raise DataError(f"{exc}; delete it and the next run predicts that image "
                                f"again") from None
            counts.reused += 1
        else:
            try:
                image = read_image(entry.image, where=entry.where)
                try:
                    prediction = predictor.predict(image)
                except InputTooLarge as exc:
                    raise InputTooLarge(f"{entry.described()}: {exc}") from None
            except (DataError, InputTooLarge) as exc:
                if not skip_unreadable:
                    raise
                counts.skipped.append((entry, str(exc)))
                continue
            branch_preds = {b: prediction.branches[b].argmax(axis=0).astype("uint8")
                            for b in branches}
            label = crf(image, prediction.probabilities) if crf is not None else prediction.label
            if claim is not None:
                claim.record()
            sources.add(entry, digest)
            folder.save(entry.name, label,
                        prediction.attention if with_attention else None,
                        predictor.scale_names, branch_preds)
            counts.computed += 1
        if voc_folder is not None:
            data = path.read_bytes()
            copy = Path(voc_folder) / path.name
            if not copy.is_file() or copy.read_bytes() != data:
                atomic_write(copy, data)
        bar.set_postfix(reused=counts.reused, computed=counts.computed, refresh=False)
    counts.seconds = time.monotonic() - start
    skipped_file = Path(root) / SKIPPED
    if counts.skipped:
        atomic_write(skipped_file, "".join(f"{entry.image}\t{reason}\n"
                                           for entry, reason in counts.skipped))
    elif skipped_file.is_file():
        skipped_file.unlink()  # an earlier run's: every image of this one was done
    return counts


def segment_into(output, inputs, predictor, voc_comp=None, progress=True, crf=None,
                 skip_unreadable=False):
    """What tools/segment.py does: check that output was made with the predictor's (and the
    CRF's) settings, or is new, then segment_list into it. Returns (RunCounts, VOC folder
    or None)."""
    output = Path(output)
    inputs = unique_inputs(inputs)  # before the claim: a clash leaves nothing behind
    settings = dict(predictor.settings())
    if crf is not None:  # recorded as runner.evaluate_into records it
        settings["crf"] = crf.params.settings() if hasattr(crf, "params") else repr(crf)
    claim = claim_output(output, settings)
    voc_folder = voc_results_folder(output, voc_comp) if voc_comp else None
    counts = segment_list(inputs, output, predictor, claim, voc_folder, progress, crf,
                          skip_unreadable=skip_unreadable)
    return counts, voc_folder
