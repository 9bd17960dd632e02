#!/usr/bin/env python3
"""Prepare PASCAL VOC 2012 + SBD the way DeepLab trains on them (the CONTRACT's data/voc).

  tools/prepare_voc.py --voc ~/data/VOCdevkit/VOC2012 --sbd ~/data/benchmark_RELEASE
  # and the test set's list for tools/segment.py --voc-server, VOC2012test.tar unpacked apart
  tools/prepare_voc.py --voc ... --sbd ... --voc-test ~/data/VOC2012test/VOCdevkit/VOC2012

Writes <out>/JPEGImages (a symlink to VOC's), <out>/SegmentationClassAug/*.png (VOC's labels where
VOC has them, else SBD's .mat labels converted), <out>/lists/{train_aug,val,train}.txt and
<out>/prepare_report.json. With the VOC 2012 test set (VOC2012test.tar unpacked over --voc's
VOCdevkit, or --voc-test) also <out>/JPEGImagesTest (a symlink to its images) and
<out>/lists/test.txt, image paths without labels; without it, the summary says why there is no
test list. Labels already written are kept, so a second run is quick. Samples
with a missing or corrupt image or label are named, counted and left out of the lists; the exit
status is then 1 (unless --allow-problems).
"""

import argparse
import sys

import _package  # noqa: F401  (says so when attention_scale is missing or stale)
from attention_scale.data.voc import prepare
from attention_scale.errors import DataError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voc", required=True,
                        help="VOC2012 folder (or VOCdevkit, or the folder holding VOCdevkit)")
    parser.add_argument("--sbd", required=True,
                        help="SBD's benchmark_RELEASE folder (or its dataset/ folder)")
    parser.add_argument("--voc-test", metavar="FOLDER",
                        help="the VOC 2012 test set's VOC2012 folder (or its VOCdevkit, or the "
                             "folder holding that), when VOC2012test.tar was not unpacked over "
                             "--voc's: writes lists/test.txt for tools/segment.py --voc-server "
                             "(default: --voc's ImageSets/Segmentation/test.txt, when it is there)")
    parser.add_argument("--out", default="data/voc", help="output folder (%(default)s)")
    parser.add_argument("--allow-problems", action="store_true",
                        help="exit 0 even when samples had to be left out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        report = prepare(args.voc, args.sbd, args.out, progress=not args.quiet,
                         voc_test=args.voc_test)
    except (DataError, OSError) as exc:
        sys.exit(f"prepare_voc: {exc}")
    print(report.format())
    print(f"written to {args.out} (details in {args.out}/prepare_report.json)")
    if report.problems and not args.allow_problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
