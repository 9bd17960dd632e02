#!/usr/bin/env python3
"""Attention pictures: per image, input / ground truth / prediction / each scale's attention map;
over a list, the mean attention per scale against object size (plot + markdown and JSON table).

  # from the folder tools/test_voc.py wrote for an attention net
  tools/visualize_attention.py --results results/attention --list data/voc/lists/val.txt \\
      --root data/voc --images 2007_000129 2007_000323
  # or let it run the net for whatever is missing there (same files as test_voc.py writes)
  tools/visualize_attention.py --results results/attention --net prototxt/.../test.prototxt \\
      --weights snapshots/.../x.caffemodel --list ... --root ...

  # images without ground truth (a tools/segment.py folder): input / prediction / attention
  tools/visualize_attention.py --results results/photos photos/ more/cat.jpg

Writes <figures>/<name>.png per image and, for a labelled list, <figures>/attention_by_size.
{png,md,json} (by object size needs the ground truth: skipped for images without labels);
<figures> is <results>/figures unless --figures says otherwise.
"""

import argparse
import json
from pathlib import Path

import _package  # says so when attention_scale is missing or stale
from attention_scale.data.images import read_image, read_label
from attention_scale.errors import DataError
from attention_scale.evaluation.cli import (add_data_arguments, add_input_arguments,
                                            add_net_arguments, check_list_arguments,
                                            check_output_folder, errors_end_in_one_line,
                                            make_evaluation, make_predictor, read_entries,
                                            read_inputs)
from attention_scale.evaluation.figures import (attention_figure, attention_size_plot,
                                                save_figure)
from attention_scale.evaluation.outputs import RUN_SETTINGS, PredictionFolder, claim_output
from attention_scale.evaluation.report import attention_distance_table, attention_size_table
from attention_scale.evaluation.runner import evaluate_list
from attention_scale.evaluation.segment_images import SOURCES, SourceRecord, segment_list
from attention_scale.files import atomic_write
_package.uses_caffe()  # and when the setup's Caffe has other layers than the checkout


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser)
    add_data_arguments(parser, required=False)
    parser.add_argument("--results", required=True,
                        help="a tools/test_voc.py or tools/segment.py --output folder "
                             "(predictions/, attention/)")
    parser.add_argument("--figures", help="where the pictures go (default <results>/figures)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--images", nargs="+", metavar="NAME",
                       help="images (names: file names without the extension, e.g. "
                            "2007_000129) to draw one figure each")
    which.add_argument("--num-images", type=int, default=4, metavar="K",
                       help="draw the first K images (default %(default)s)")
    add_net_arguments(parser, output="<results>")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    # Images may follow the options too (`... --quiet photos/`).
    args = parser.parse_intermixed_args(argv)
    check_list_arguments(parser, args)
    if args.list is not None and args.inputs:
        parser.error("give the images either as --list LIST --root ROOT or as files and folders")
    if args.num_images < 1:
        parser.error(f"--num-images must be at least 1, got {args.num_images}")
    return args


def _read_images(args):
    """(entries, labelled): a list's entries, labelled when every line has a label path (one
    without it among labelled lines is a data error), or the image files and folders given."""
    if args.list is None:
        return read_inputs(args), False
    entries = read_entries(args, labels="optional")
    unlabelled = [entry for entry in entries if entry.label is None]
    if not unlabelled:
        return entries, True
    if len(unlabelled) < len(entries):
        raise DataError(f"{unlabelled[0].where}: no label path, while other lines of {args.list} "
                        f"have one; a list has labels on every line or on none")
    return read_inputs(args), False


def _no_attention_maps(folder, entries):
    """The message for a results folder whose net has no attention (predictions, no maps)."""
    if folder.attention.is_dir() and any(folder.attention.glob("*.npz")):
        return None
    if not any(folder.prediction_path(entry.name).is_file() for entry in entries):
        return None
    made_by = ""
    try:
        made_by = f" ({json.loads((folder.predictions.parent / RUN_SETTINGS).read_text())['net']})"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return (f"{folder.predictions.parent} holds predictions but no attention maps: the net that "
            f"made them{made_by} has no attention (a max or average merge, or one scale); "
            f"attention pictures need the results of an attention net")


def main(argv=None):
    args = parse_args(argv)
    results = Path(args.results)
    figures = Path(args.figures) if args.figures else results / "figures"
    folder = PredictionFolder.under(results)
    # An OSError without a file is named by the pictures' folder.
    with errors_end_in_one_line("visualize_attention", figures):
        if args.figures:
            check_output_folder(figures, "--figures")
        else:
            try:
                check_output_folder(figures, "--results")
            except ValueError as exc:  # e.g. a read-only results folder: the pictures can go
                raise ValueError(f"{exc}; give --figures DIR for the pictures") from None
        if args.net is not None:
            check_output_folder(results, "--results")
        elif not folder.predictions.is_dir():
            raise ValueError(f"--results {results}: no {folder.predictions.name}/ there; make "
                             f"it first with tools/segment.py (or tools/test_voc.py) --output "
                             f"{results}, or give --net and --weights to predict the images "
                             f"drawn")
        evaluation = make_evaluation(args)
        entries, labelled = _read_images(args)
        by_name = {entry.name: entry for entry in entries}
        chosen = args.images or [entry.name for entry in entries[:args.num_images]]
        unknown = [name for name in chosen if name not in by_name]
        if unknown:
            where = args.list if args.list is not None else "the images given"
            if args.limit is not None:
                where += f" (its first {len(entries)} entries, --limit)"
            hint = ""
            if any(Path(name).suffix and Path(name).stem in by_name for name in unknown):
                hint = ("; --images takes names without the extension, e.g. "
                        f"{Path(next(n for n in unknown if Path(n).suffix)).stem}")
            raise DataError(f"not in {where}: {', '.join(unknown)}{hint}")
        predictor, claim = None, None
        if args.net is not None:
            predictor = make_predictor(args)
            if not predictor.has_attention:
                raise ValueError(f"{args.net} has no `attention` blob: not an attention net")
            claim = claim_output(results, predictor.settings(), option="--results")
        else:
            problem = _no_attention_maps(folder, entries)
            if problem:
                raise ValueError(problem)
        if labelled:
            evaluate_list(entries, evaluation, folder, predictor, with_attention=True,
                          progress=not args.quiet, claim=claim)
        elif predictor is not None:
            # No ground truth, no statistics: only the images drawn are needed.
            segment_list([by_name[name] for name in chosen], results, predictor, claim,
                         progress=not args.quiet)
        else:
            # segment.py's record of which image each name came from (segment_list and
            # evaluate_list check it in the other modes).
            SourceRecord(results / SOURCES).check_all([by_name[name] for name in chosen], folder)
        num_classes = predictor.num_classes if predictor is not None and not labelled \
            else evaluation.num_classes
        written = []
        for name in chosen:
            entry = by_name[name]
            image = read_image(entry.image, where=entry.where)
            shape = image.shape[:2]
            gt = read_label(entry.label, where=entry.where) if labelled else None
            pred = folder.load_prediction(name, shape, num_classes, entry.where,
                                          image=None if labelled else entry.image)
            attention, scales = folder.load_attention(name, shape, entry.where)
            path = figures / f"{name}.png"
            save_figure(attention_figure(image, gt, pred, attention, scales, title=name), path)
            written.append(path)

        stats = None
        if labelled:
            stats = evaluation.attention.summary()
            save_figure(attention_size_plot(stats, title=f"{args.list} ({evaluation.images} "
                                                         "images)"),
                        figures / "attention_by_size.png")
            atomic_write(figures / "attention_by_size.json", json.dumps(stats, indent=2) + "\n")
            markdown = (f"# Mean attention per scale ({evaluation.images} images of {args.list})"
                        "\n\n## By object size\n\n" + attention_size_table(stats, markdown=True)
                        + "\n\n## By distance from the object's edge\n\n"
                        + attention_distance_table(stats, markdown=True) + "\n")
            atomic_write(figures / "attention_by_size.md", markdown)
    plural = "s" if len(written) != 1 else ""
    if stats is None:
        print("attention by object size: skipped, it needs ground-truth labels and these images "
              "have none")
        print(f"{len(written)} attention figure{plural} in {figures}")
        return
    print(attention_size_table(stats))
    print()
    print(attention_distance_table(stats))
    print(f"\n{len(written)} attention figure{plural} and "
          f"attention_by_size.png/.md/.json in {figures}")


if __name__ == "__main__":
    main()
