"""SegmentationData: the training data layer (Python), DeepLab's ImageSegData in spirit.

    layer { name: "data" type: "Python" top: "data" top: "label"
            python_param { module: "attention_scale.data" layer: "SegmentationData"
                           param_str: "source: 'data/voc/lists/train_aug.txt' root: 'data/voc'" } }

Tops: data N x 3 x c x c (BGR minus the mean, float), label N x 1 x c x c (class ids, 255 where
ignored or padded). The parameters (data/segmentation_data.proto) are checked at setup; the list
is read, and every file it names must exist (check_files). A missing or unreadable file, a label
of another size than its image or with a value outside the classes stops the net with a message
naming the file and the list line. Batches come from worker processes (data/prefetch.py) unless
workers is 0.

Lifetime: pycaffe's PythonLayer keeps a reference to its own Python object, so a layer object
is never freed, even after its Net is. A watcher thread therefore looks at each layer's
reference count: once only that self-reference is left (the Net has released the layer), the
workers are stopped. If the layer runs again after all (a Caffe build whose PythonLayer counts
differently), forward() restarts them at the next batch: batches depend on their index only.
"""

import os
import sys
import threading
import time
import weakref

from ..errors import DataError, LayerConfigError
from ..python_layer import ReportingLayer
from . import data_params
from .batches import BatchMaker, BatchSpec, Sample
from .lists import read_list
from .prefetch import WorkerPool


def _train_phase(param, phase) -> bool:
    if param.mode == data_params.TRAIN:
        return True
    if param.mode == data_params.TEST:
        return False
    if phase is None:
        raise LayerConfigError(
            "SegmentationData (Python layer): mode is AUTO (the net's phase decides), but this "
            "Caffe does not tell Python layers their phase (a Caffe from before 2016, such as "
            "DeepLab-v2): add `mode: TRAIN` or `mode: TEST` to the layer's param_str")
    import caffe
    return phase == caffe.TRAIN


def load_samples(param):
    """The list's samples; DataError for an empty list, a line without label, a missing file."""
    entries = read_list(param.source, param.root, require_labels=True)
    samples = [Sample(str(e.image), str(e.label), e.where) for e in entries]
    if param.check_files:
        for sample in samples:
            for kind, path in (("image", sample.image), ("label", sample.label)):
                if not os.path.isfile(path):
                    raise DataError(f"{kind} {path} ({sample.where}): no such file")
    return samples


class SegmentationData(ReportingLayer):
    """Batches of (image, label) pairs from a DeepLab list; see the module's documentation."""

    def setup(self, bottom, top):
        param = data_params.parse(self.param_str)
        data_params.validate(param, self.param_str)
        if len(bottom) != 0 or len(top) != 2:
            raise LayerConfigError(f"SegmentationData (Python layer): takes no bottoms and 2 tops "
                                   f"(data, label), got {len(bottom)} bottoms and {len(top)} tops")
        train = _train_phase(param, getattr(self, "phase", None))
        self.spec = BatchSpec(
            batch_size=param.batch_size, crop_size=param.crop_size,
            mean_bgr=data_params.mean_bgr(param), train=train,
            scale_min=param.scale_min, scale_max=param.scale_max, mirror=param.mirror,
            shuffle=param.shuffle, seed=param.seed, num_classes=param.num_classes,
            ignore_label=param.ignore_label)
        self.samples = samples = load_samples(param)
        self.workers, self.prefetch = param.workers, param.prefetch
        self.pool = None
        self.maker = BatchMaker(self.spec, samples)
        self.next_index = data_params.start_batch() if train else 0
        self.orphan_checks = 0
        if param.workers:
            self._start_pool()
            how = (f"{param.workers} prefetch worker{'s' * (param.workers > 1)} "
                   f"(pid{'s' * (param.workers > 1)} {', '.join(map(str, self.pool.pids))})")
            _watcher.watch(self)
        else:
            how = "no prefetch workers"
        print(f"SegmentationData: {len(samples)} samples from {param.source}, "
              f"{'training' if train else 'test'} mode, batch {param.batch_size} x "
              f"{param.crop_size} x {param.crop_size}, {how}"
              + (f", from batch {self.next_index} (resumed)" if self.next_index else ""),
              file=sys.stderr, flush=True)

    def reshape(self, bottom, top):
        top[0].reshape(*self.spec.data_shape)
        top[1].reshape(*self.spec.label_shape)

    def _start_pool(self):
        self.pool = WorkerPool(self.spec, self.samples, self.workers, self.prefetch,
                               start=self.next_index)

    def forward(self, bottom, top):
        self.orphan_checks = 0
        if self.workers:
            if self.pool is None or self.pool.closed:
                self._start_pool()
            self.pool.next_batch(top[0].data, top[1].data)
        else:
            self.maker.make(self.next_index, top[0].data, top[1].data)
        self.next_index += 1

    def backward(self, top, propagate_down, bottom):
        pass  # data has no gradient

    def close(self):
        """Stop the workers now; a later forward() starts them again where the stream was."""
        if self.pool is not None:
            self.pool.close()


class _OrphanWatcher:
    """One daemon thread stopping the workers of layers whose Net is gone (module docstring)."""

    POLL_S = float(os.environ.get("ATTENTION_SCALE_ORPHAN_POLL_S", "2"))
    CHECKS = 2  # consecutive checks without a forward() in between

    def __init__(self):
        self._layers = []
        self._lock = threading.Lock()
        self._thread = None

    def watch(self, layer):
        with self._lock:
            self._layers.append(weakref.ref(layer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="SegmentationData-watcher",
                                                daemon=True)
                self._thread.start()

    def _run(self):
        while True:
            time.sleep(self.POLL_S)
            with self._lock:
                refs = list(self._layers)
            for ref in refs:
                layer = ref()
                if layer is None:
                    continue
                # getrefcount counts `layer` here and its own argument: 2 beyond the others.
                if sys.getrefcount(layer) - 2 <= 1 and layer.pool is not None:
                    layer.orphan_checks += 1
                    if layer.orphan_checks >= self.CHECKS and not layer.pool.closed:
                        layer.pool.close()
                del layer


_watcher = _OrphanWatcher()
