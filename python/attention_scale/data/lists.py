"""DeepLab's list files: one sample per line, paths relative to a data root.

    /JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png
    /JPEGImages/2007_000033.jpg                      (test lists may omit the label)

A leading "/" does not make a path absolute: as in DeepLab's ImageSegData layer, every path is
joined to the root folder given with the list. Blank lines and lines starting with "#" are skipped.
The file is UTF-8; a byte-order mark at its start (Windows editors write one) is not part of the
first path.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..errors import DataError


@dataclass(frozen=True)
class ListEntry:
    """One line of a list file, with its paths resolved against the root."""
    image: Path
    label: Optional[Path]
    list_path: Path
    line_number: int  # 1-based

    @property
    def name(self) -> str:
        """The sample's id: the image file name without extension (VOC: 2007_000032)."""
        return self.image.stem

    @property
    def where(self) -> str:
        """'list.txt line 12', for error messages."""
        return f"{self.list_path} line {self.line_number}"


def resolve(root, relative) -> Path:
    """root joined with a list path, whose leading '/' is part of DeepLab's format, not a root."""
    return Path(root) / relative.lstrip("/")


def read_list(list_path, root, require_labels=True) -> List[ListEntry]:
    """Parse a list file. Raises DataError for a missing or empty list, a line with more than two
    fields, or (with require_labels) a line without a label; files are not opened here."""
    list_path = Path(list_path)
    try:
        text = list_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read list file {list_path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"list file {list_path}: not UTF-8 text (byte {exc.start}); save it as "
                        "UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) > 2:
            raise DataError(f"{list_path} line {number}: expected 'image [label]', got "
                            f"{len(fields)} fields: {line.strip()!r}")
        if require_labels and len(fields) < 2:
            raise DataError(f"{list_path} line {number}: no label path after the image "
                            f"{fields[0]!r} (this list is read for training or evaluation)")
        label = resolve(root, fields[1]) if len(fields) == 2 else None
        entries.append(ListEntry(resolve(root, fields[0]), label, list_path, number))
    if not entries:
        raise DataError(f"list file {list_path} holds no samples")
    return entries
