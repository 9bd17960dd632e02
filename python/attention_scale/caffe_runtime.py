"""What the running libcaffe was built with (OpenMP, CUDA), read from the libraries mapped into
this process, and the CUDA runtime it loaded, through ctypes: whether pycaffe can run on a GPU
here, and the runtime's synchronize and events for timing GPU work (import caffe first).
"""

import ctypes
import os


def _mapped_libraries():
    """Paths of the shared libraries mapped into this process."""
    paths = set()
    try:
        with open("/proc/self/maps") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 6 and ".so" in parts[5]:
                    paths.add(parts[5])
    except OSError:
        pass
    return paths


def build_features():
    """{"openmp": bool, "cuda": bool, "libcaffe": path} of the libcaffe pycaffe loaded (import
    caffe first): a library built with OpenMP maps libgomp, one built with CUDA maps libcudart."""
    libs = _mapped_libraries()
    libcaffe = sorted(p for p in libs if os.path.basename(p).startswith("libcaffe"))
    return {"openmp": any("libgomp" in os.path.basename(p) or "libomp" in os.path.basename(p)
                          for p in libs),
            "cuda": any("libcudart" in os.path.basename(p) for p in libs),
            "libcaffe": libcaffe[0] if libcaffe else None}


class CudaRuntime:
    """The CUDA runtime that libcaffe loaded, through ctypes: device count, synchronize and events
    (kernel launches return before the kernels finish; timing needs the GPU's own clock)."""

    def __init__(self):
        paths = sorted(p for p in _mapped_libraries() if "libcudart" in os.path.basename(p))
        if not paths:
            raise OSError("libcaffe does not load the CUDA runtime: it was built CPU_ONLY "
                          "(build with `bash tools/setup.sh --cuda`)")
        self.path = paths[0]
        self.lib = ctypes.CDLL(self.path)

    def device_count(self):
        count = ctypes.c_int(0)
        status = self.lib.cudaGetDeviceCount(ctypes.byref(count))
        return count.value if status == 0 else 0, status

    def describe(self, device_id=0):
        """{"name", "memory_gib", "runtime", "driver"} of GPU `device_id` (for the report)."""
        info = {}
        props = ctypes.create_string_buffer(16384)  # cudaDeviceProp starts with char name[256]
        getter = getattr(self.lib, "cudaGetDeviceProperties_v2", None) or \
            self.lib.cudaGetDeviceProperties
        if getter(props, ctypes.c_int(device_id)) == 0:
            info["name"] = props.raw[:256].split(b"\0", 1)[0].decode(errors="replace")
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        if self.lib.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)) == 0:
            info["memory_gib"] = round(total.value / 2**30, 1)
        for key, call in (("runtime", "cudaRuntimeGetVersion"), ("driver", "cudaDriverGetVersion")):
            version = ctypes.c_int(0)
            if getattr(self.lib, call)(ctypes.byref(version)) == 0:
                info[key] = f"{version.value // 1000}.{version.value % 1000 // 10}"
        return info

    def _call(self, name, *args):
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise RuntimeError(f"{name} returned CUDA error {status}")

    def synchronize(self):
        self._call("cudaDeviceSynchronize")

    def event_create(self):
        event = ctypes.c_void_p()
        self._call("cudaEventCreate", ctypes.byref(event))
        return event

    def event_record(self, event):
        """Record `event` on the legacy default stream (stream 0), where Caffe's kernels and
        copies run."""
        self._call("cudaEventRecord", event, ctypes.c_void_p(0))

    def event_synchronize(self, event):
        self._call("cudaEventSynchronize", event)

    def event_elapsed_ms(self, start, end):
        elapsed = ctypes.c_float(0.0)
        self._call("cudaEventElapsedTime", ctypes.byref(elapsed), start, end)
        return elapsed.value

    def event_destroy(self, event):
        self._call("cudaEventDestroy", event)


def gpu_unavailable_reason(device_id=0):
    """None when pycaffe can run on GPU `device_id`, else why not (one sentence)."""
    try:
        runtime = CudaRuntime()
    except OSError as err:
        return str(err)
    count, status = runtime.device_count()
    if count == 0:
        return (f"the CUDA runtime finds no GPU (cudaGetDeviceCount returned error {status})"
                if status else "the CUDA runtime finds no GPU")
    if not 0 <= device_id < count:
        return f"GPU {device_id} does not exist (the CUDA runtime finds {count})"
    return None
