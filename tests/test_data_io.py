"""List files, image and label reading, the VOC palette: by hand-made files and by hand-worked values."""

import cv2
import numpy as np
import pytest
from PIL import Image

from attention_scale.data import images, lists, palette
from attention_scale.errors import DataError


def test_palette_first_classes_by_hand():
    pal = palette.voc_palette()
    # VOC: background black, aeroplane (128,0,0), bicycle (0,128,0), bird (128,128,0),
    # boat (0,0,128), person = 15 -> (192,128,128), void 255 -> (224,224,192).
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0]
    assert pal[3].tolist() == [128, 128, 0]
    assert pal[4].tolist() == [0, 0, 128]
    assert pal[15].tolist() == [192, 128, 128]
    assert pal[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in pal.tolist()}) == 256


def test_label_png_round_trip_keeps_ids_and_palette(tmp_path):
    label = np.array([[0, 1, 2], [20, 255, 7]], np.uint8)
    path = tmp_path / "x.png"
    palette.write_label_png(path, label)
    with Image.open(path) as img:
        assert img.mode == "P"
        assert img.getpalette()[3:6] == [128, 0, 0]
    np.testing.assert_array_equal(images.read_label(path, num_classes=21), label)
    assert not [p for p in tmp_path.iterdir() if p.name != "x.png"]  # no temporary left


def test_read_list_resolves_against_root_and_names_lines(tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text("# comment\n/JPEGImages/a.jpg /Seg/a.png\n\nJPEGImages/b.jpg Seg/b.png\n")
    entries = lists.read_list(lst, tmp_path / "root")
    assert [e.image for e in entries] == [tmp_path / "root/JPEGImages/a.jpg",
                                          tmp_path / "root/JPEGImages/b.jpg"]
    assert entries[0].label == tmp_path / "root/Seg/a.png"
    assert [e.line_number for e in entries] == [2, 4]
    assert entries[1].name == "b" and entries[1].where == f"{lst} line 4"


@pytest.mark.parametrize("text,pattern", [
    ("", "holds no samples"),
    ("# only a comment\n", "holds no samples"),
    ("/a.jpg /a.png /extra\n", "line 1: expected 'image \\[label\\]', got 3 fields"),
    ("/a.jpg /a.png\n/b.jpg\n", "line 2: no label path after the image '/b.jpg'"),
])
def test_bad_lists_are_named(tmp_path, text, pattern):
    lst = tmp_path / "l.txt"
    lst.write_text(text)
    with pytest.raises(DataError, match=pattern):
        lists.read_list(lst, tmp_path)


def test_a_byte_order_mark_is_not_part_of_the_first_path(tmp_path):
    """Windows editors save UTF-8 with a BOM; read as text, it would start the first path."""
    lst = tmp_path / "val.txt"
    lst.write_bytes(b"\xef\xbb\xbf/JPEGImages/a.jpg /Seg/a.png\r\n/JPEGImages/b.jpg /Seg/b.png\r\n")
    entries = lists.read_list(lst, tmp_path / "root")
    assert entries[0].image == tmp_path / "root/JPEGImages/a.jpg"
    assert [e.name for e in entries] == ["a", "b"]
    lst.write_bytes(b"/JPEGImages/caf\xe9.jpg /Seg/a.png\n")  # latin-1
    with pytest.raises(DataError, match=r"val.txt: not UTF-8 text \(byte 15\)"):
        lists.read_list(lst, tmp_path)


def test_missing_list(tmp_path):
    with pytest.raises(DataError, match="cannot read list file .*nope.txt"):
        lists.read_list(tmp_path / "nope.txt", tmp_path)


def test_unlabelled_list_allowed_when_asked(tmp_path):
    lst = tmp_path / "test.txt"
    lst.write_text("/JPEGImages/a.jpg\n")
    assert lists.read_list(lst, tmp_path, require_labels=False)[0].label is None


def test_read_image_and_label_errors_name_file_and_line(tmp_path):
    where = "val.txt line 3"
    with pytest.raises(DataError, match=r"image .*missing.jpg \(val.txt line 3\): no such file"):
        images.read_image(tmp_path / "missing.jpg", where)
    (tmp_path / "corrupt.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="corrupt.jpg .*not a readable image"):
        images.read_image(tmp_path / "corrupt.jpg", where)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="corrupt.png .*not a readable image"):
        images.read_label(tmp_path / "corrupt.png", where)
    rgb = tmp_path / "rgb.png"
    cv2.imwrite(str(rgb), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="rgb.png .*mode 'RGB'"):
        images.read_label(rgb, where)


def test_label_values_checked(tmp_path):
    label = np.zeros((3, 4), np.uint8)
    label[2, 1] = 30
    path = tmp_path / "l.png"
    palette.write_label_png(path, label)
    with pytest.raises(DataError, match="value 30 at row 2, column 1 .*0..20.*ignore label 255"):
        images.read_label(path, "x.txt line 1", num_classes=21)
    label[2, 1] = 255
    palette.write_label_png(path, label)
    assert images.read_label(path, num_classes=21)[2, 1] == 255


def test_size_mismatch_named(tmp_path):
    with pytest.raises(DataError, match=r"label l.png \(t line 2\) is 3x4 but its image i.jpg is 5x4"):
        images.check_same_size(np.zeros((5, 4, 3)), np.zeros((3, 4)), "i.jpg", "l.png", "t line 2")


def test_atomic_write_names_the_file_asked_for_not_its_temporary(tmp_path):
    from attention_scale.files import atomic_write, folder_problem

    with pytest.raises(PermissionError) as error:
        atomic_write("/sys/x/y.png", b"")
    assert error.value.filename == "/sys/x/y.png"
    assert folder_problem(tmp_path / "new" / "deeper") is None
    assert not (tmp_path / "new").exists()  # the check creates nothing
    (tmp_path / "f").write_text("")
    assert folder_problem(tmp_path / "f") == "a file, not a folder"
    assert folder_problem(tmp_path / "f" / "x") == f"{tmp_path / 'f'} is a file, not a folder"
    assert folder_problem("/sys/x").startswith("cannot write in /sys (")


def _jpeg(height, width, seed=0):
    rng = np.random.default_rng(seed)
    ok, data = cv2.imencode(".jpg", rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    assert ok
    return data.tobytes()


def test_a_truncated_jpeg_is_refused_by_name_and_trailing_bytes_are_not(tmp_path):
    whole = _jpeg(60, 80)
    full = tmp_path / "full.jpg"
    full.write_bytes(whole)
    reference = images.read_image(full)
    trailed = tmp_path / "trailed.jpg"  # cameras append data after the end marker
    trailed.write_bytes(whole + b"\x00\xff\xd8 more data")
    np.testing.assert_array_equal(images.read_image(trailed), reference)
    half = tmp_path / "half.jpg"
    half.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(DataError) as info:
        images.read_image(half, where="list.txt line 3")
    assert str(info.value) == (f"image {half} (list.txt line 3): a truncated JPEG (its data ends "
                               f"before the end-of-image marker, a part of the picture is "
                               f"missing)")
    # A whole JPEG inside an application segment (as EXIF's thumbnail) has an end marker of its
    # own: it does not make the cut main image whole.
    thumbnail = _jpeg(8, 8, seed=1)
    segment = b"\xff\xef" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail
    with_thumbnail = whole[:2] + segment + whole[2:]
    kept = tmp_path / "thumb.jpg"
    kept.write_bytes(with_thumbnail)
    np.testing.assert_array_equal(images.read_image(kept), reference)
    kept.write_bytes(with_thumbnail[:len(with_thumbnail) * 2 // 3])
    with pytest.raises(DataError, match="a truncated JPEG"):
        images.read_image(kept)
    assert not images.jpeg_truncated(whole)


def test_an_image_opencv_cannot_decode_is_one_message_without_opencv_warnings(tmp_path,
                                                                              capfd):
    tiff = tmp_path / "float.tif"
    Image.fromarray(np.zeros((8, 8), np.float32)).save(tiff)  # 32-bit samples: OpenCV warns
    with pytest.raises(DataError) as info:
        images.read_image(tiff)
    assert str(info.value) == f"image {tiff}: not a readable image"
    assert capfd.readouterr().err == ""
    with pytest.raises(DataError, match=": no such file$"):
        images.read_image(tmp_path / "none.jpg")
