"""Where a demo run keeps its files (one output folder), and the nets and solvers it trains.

    <out>/config.json                       the DemoConfig of the run (and its digest)
    <out>/data/                             the synthetic set (VOC layout, samples.png)
    <out>/runs/seed-<k>/<variant>/          train/test/solver prototxt, Caffe's snapshots,
                                            train.log, loss.png, train.json, eval/ (test_voc's
                                            output: predictions, attention, metrics.json)
    <out>/results.md, results.json          the table over variants and seeds
    <out>/figures/                          loss curves, mIOU chart, attention pictures

The nets are the project's own (attention_scale.nets.builder, C++ layer form) with the demo's
small backbone; the solvers come from nets.solver. Paths inside them are absolute, so `caffe
train` runs from any working directory.
"""

from dataclasses import dataclass
from pathlib import Path

from ..data import data_params
from ..files import atomic_write
from ..nets import builder
from ..nets.solver import solver_text
from .experiment import DemoConfig, DemoVariant

CONFIG_JSON = "config.json"


@dataclass(frozen=True)
class RunPaths:
    """The files of one (seed, variant) training and evaluation."""
    folder: Path

    @property
    def train_net(self):
        return self.folder / "train.prototxt"

    @property
    def test_net(self):
        return self.folder / "test.prototxt"

    @property
    def solver(self):
        return self.folder / "solver.prototxt"

    @property
    def snapshot_prefix(self):
        return self.folder / "snapshot"

    def weights(self, iterations):
        return self.folder / f"snapshot_iter_{iterations}.caffemodel"

    @property
    def log(self):
        return self.folder / "train.log"

    @property
    def loss_plot(self):
        return self.folder / "loss.png"

    @property
    def train_json(self):
        return self.folder / "train.json"

    @property
    def eval_dir(self):
        return self.folder / "eval"

    @property
    def metrics(self):
        return self.eval_dir / "metrics.json"


class DemoLayout:
    def __init__(self, output):
        self.root = Path(output).resolve()

    @property
    def config(self):
        return self.root / CONFIG_JSON

    @property
    def data(self):
        return self.root / "data"

    @property
    def train_list(self):
        return self.data / "lists" / "train.txt"

    @property
    def val_list(self):
        return self.data / "lists" / "val.txt"

    @property
    def classes(self):
        return self.data / "classes.txt"

    @property
    def figures(self):
        return self.root / "figures"

    @property
    def results_md(self):
        return self.root / "results.md"

    @property
    def results_json(self):
        return self.root / "results.json"

    def run(self, seed, variant: DemoVariant) -> RunPaths:
        return RunPaths(self.root / "runs" / f"seed-{seed}" / variant.key)


def train_data_param(config: DemoConfig, layout: DemoLayout, seed):
    """SegmentationData for training: the whole image (crop = image size), random mirror, a seeded
    order; one prefetch worker (two trainings share two cores)."""
    return data_params.make(source=str(layout.train_list), root=str(layout.data),
                            batch_size=config.batch_size, crop_size=config.spec.image_size,
                            mean_bgr=list(data_params.VOC_MEAN_BGR), mirror=True, shuffle=True,
                            seed=int(seed), num_classes=len(config.class_names), workers=1,
                            prefetch=4)


def write_run_files(config: DemoConfig, layout: DemoLayout, seed, variant: DemoVariant,
                    protos=None) -> RunPaths:
    """Write the train and test nets and the solver of one (seed, variant); returns its paths."""
    paths = layout.run(seed, variant)
    options = config.net_options(variant)
    header = f"# demo: {variant.label}, seed {seed} (written by attention_scale.demo)\n"
    texts = {
        paths.train_net: builder.to_text(options, "train", train_data_param(config, layout, seed),
                                         protos=protos),
        paths.test_net: builder.to_text(options, "test", protos=protos),
    }
    for path, text in texts.items():
        _write_if_changed(path, header + text)
    _write_if_changed(paths.solver, solver_text(paths.train_net, paths.snapshot_prefix,
                                                config.solver_options(seed), header=header))
    return paths


def _write_if_changed(path, text):
    path = Path(path)
    if not path.is_file() or path.read_text() != text:
        atomic_write(path, text)
