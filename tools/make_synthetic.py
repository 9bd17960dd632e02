#!/usr/bin/env python3
"""Write the synthetic multi-scale segmentation set (attention_scale.data.synthetic) in VOC layout.

  tools/make_synthetic.py --root data/synthetic                    # 2000 train + 300 val, seed 0
  tools/make_synthetic.py --root data/syn1 --seed 1 --spec my_spec.json --force

Small objects carry their class in a period-2 texture that a 0.5x resize flattens; large ones in
a band along their edge that only a wide view sees from the inside. The images are PNG (lossless)
in JPEGImages/; labels are VOC palette PNGs; lists/train.txt and lists/val.txt are DeepLab lists;
objects.json lists every object's class, size, area and box; samples.png shows a few.
A JSON --spec overrides any field of SyntheticSpec (see `--print-spec` for all of them).
"""

import argparse
import json
import sys
from pathlib import Path

import _package  # noqa: F401  (says so when attention_scale is missing or stale)
from attention_scale.data.synthetic import SyntheticSpec, write_dataset
from attention_scale.errors import DataError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/synthetic", help="output folder (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="default %(default)s")
    parser.add_argument("--train", type=int, default=2000, help="training images (%(default)s)")
    parser.add_argument("--val", type=int, default=300, help="validation images (%(default)s)")
    parser.add_argument("--image-size", type=int, help="image side in pixels (default 97; odd "
                                                       "keeps the 0.5x resize exact)")
    parser.add_argument("--spec", metavar="JSON", help="file overriding SyntheticSpec fields")
    parser.add_argument("--samples", type=int, default=8,
                        help="images shown in samples.png (0: none; default %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="replace a synthetic set made there with other settings")
    parser.add_argument("--print-spec", action="store_true",
                        help="print the spec that would be used as JSON and stop")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        overrides = json.loads(Path(args.spec).read_text()) if args.spec else {}
        if args.image_size is not None:
            overrides["image_size"] = args.image_size
        spec = SyntheticSpec.from_json(overrides)
        if args.print_spec:
            print(json.dumps(spec.to_json(), indent=2))
            return
        result = write_dataset(args.root, spec, args.seed, args.train, args.val, args.samples,
                               progress=not args.quiet, force=args.force)
    except (DataError, ValueError, OSError) as exc:
        sys.exit(f"make_synthetic: {exc}")
    state = "already there, unchanged" if result["reused"] else "written"
    counts = result["counts"]
    print(f"{args.root}: {counts['train']} train + {counts['val']} val images, "
          f"{len(result['classes'])} classes ({', '.join(result['classes'])}), seed "
          f"{result['seed']}: {state}")
    if args.samples:
        print(f"samples: {Path(args.root) / 'samples.png'}")


if __name__ == "__main__":
    main()
