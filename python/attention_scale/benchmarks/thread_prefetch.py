"""A SegmentationData that prefetches with a Python thread instead of worker processes.

For the data-throughput benchmark only: it shows why the real layer uses processes. Under the
`caffe` tool the main thread keeps the GIL while the C++ layers run, so this thread makes
batches only while Python code runs, and the net waits for the data as if nothing were
prefetched.
"""

import queue
import threading

from ..data.segmentation_data import SegmentationData


class ThreadPrefetchData(SegmentationData):
    """param_str as SegmentationData's; `workers` is ignored, `prefetch` is the queue size."""

    def setup(self, bottom, top):
        super().setup(bottom, top)
        if self.pool is not None:
            self.pool.close()
        self.workers, self.pool = 0, None
        self.queue = queue.Queue(maxsize=self.prefetch)
        self.thread = threading.Thread(target=self._produce, daemon=True)
        self.thread.start()

    def _produce(self):
        import numpy as np
        index = 0
        while True:
            data = np.empty(self.spec.data_shape, np.float32)
            label = np.empty(self.spec.label_shape, np.float32)
            self.maker.make(index, data, label)
            self.queue.put((data, label))
            index += 1

    def forward(self, bottom, top):
        data, label = self.queue.get()
        top[0].data[...] = data
        top[1].data[...] = label
