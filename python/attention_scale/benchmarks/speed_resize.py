"""ScaleInterp against OpenCV's cv2.resize (bilinear, one thread, plane by plane).

The two sample different grids. ScaleInterp (DeepLab's Interp) aligns the corners: output i reads
source coordinate i (in - 1) / (out - 1). cv2.resize aligns the pixel areas (half-pixel centres):
source (i + 0.5) in / out - 0.5. So at the same sizes they do the same work (the same number of
2-tap blends in each direction, both separable) on different coordinates, and their values
differ. The speed comparison uses cv2.resize at the same sizes; the values are checked against a
float64 numpy resize on the corner-aligned grid (written here from the formula) and against
cv2.warpAffine with the exact corner-aligned affine map, which samples ScaleInterp's grid.
OpenCV's warps may round sample positions to 1/32 of a pixel (INTER_BITS), so agreement is
judged against that: a difference of at most 1/32 of the input's largest neighbour-to-neighbour
step (OpenCV 5.0 agreed to about 1e-5 of it).
"""

from dataclasses import dataclass, field

import numpy as np

from . import traffic
from .speed_nets import TOP, resize_net
from ..pycaffe import net_from_text
from .speed_timing import CallRun, NetRun, median, time_rounds

# (input side, output side), each for stacks of 21 (score maps) and 1024 (fc7 features) planes:
# scale 0.75 and 0.5 of a 321 crop, 41 -> 321 and 65 -> 513 (score maps to the crop / test image).
RESIZE_SIZES = [(321, 241), (321, 161), (41, 321), (65, 513)]
RESIZE_CHANNELS = (21, 1024)
CHECKED_PLANES = 4  # planes whose values are checked against the references (time)


def corner_aligned_matrix(size_in, size_out):
    """size_out x size_in float64 matrix of the corner-aligned bilinear resize along one axis."""
    matrix = np.zeros((size_out, size_in))
    if size_out == 1 or size_in == 1:
        matrix[:, 0] = 1
        return matrix
    for dst in range(size_out):
        base, remainder = divmod(dst * (size_in - 1), size_out - 1)
        frac = remainder / (size_out - 1)
        matrix[dst, base] += 1 - frac
        if remainder:
            matrix[dst, base + 1] += frac
    return matrix


def numpy_reference(planes, out_hw):
    """float64 corner-aligned resize of C x H x W planes: A_y X A_x^T."""
    a_y = corner_aligned_matrix(planes.shape[1], out_hw[0])
    a_x = corner_aligned_matrix(planes.shape[2], out_hw[1])
    return a_y @ planes.astype(np.float64) @ a_x.T


def warp_affine_corner_aligned(cv2, plane, out_hw):
    """cv2.warpAffine sampling ScaleInterp's grid: output (x, y) reads source
    (x (W - 1) / (W_out - 1), y (H - 1) / (H_out - 1))."""
    in_h, in_w = plane.shape
    out_h, out_w = out_hw
    sx = (in_w - 1) / (out_w - 1) if out_w > 1 else 0.0
    sy = (in_h - 1) / (out_h - 1) if out_h > 1 else 0.0
    matrix = np.array([[sx, 0, 0], [0, sy, 0]], np.float64)
    return cv2.warpAffine(plane, matrix, (out_w, out_h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def max_neighbour_step(planes):
    """Largest difference between horizontally or vertically adjacent cells."""
    return float(max(np.max(np.abs(np.diff(planes, axis=1))),
                     np.max(np.abs(np.diff(planes, axis=2)))))


@dataclass
class ResizeResult:
    case: str
    channels: int
    in_side: int
    out_side: int
    mode: str
    forward_ms: float  # ScaleInterp forward
    backward_ms: float
    cv2_ms: float  # cv2.resize of every plane (CPU; None on the GPU run)
    forward_bytes: int  # traffic.resize_bytes
    backward_bytes: int
    numpy_max_abs_diff: float  # ScaleInterp vs the float64 corner-aligned reference
    warp_affine_max_diff_steps: float  # vs cv2.warpAffine, in units of the largest neighbour step
    cv2_resize_max_abs_diff: float  # vs cv2.resize: the other grid (how different it is)
    bit_identical_repeats: bool
    cold_forward_ms: float = None  # first run of each round (median)
    cold_cv2_ms: float = None
    forward_all_ms: list = field(default_factory=list)
    backward_all_ms: list = field(default_factory=list)
    cv2_all_ms: list = field(default_factory=list)

    @property
    def forward_over_cv2(self):
        return self.forward_ms / self.cv2_ms if self.cv2_ms else None

    @property
    def forward_backward_ms(self):
        return self.forward_ms + self.backward_ms


def resize_cases(sizes=RESIZE_SIZES, channels=RESIZE_CHANNELS):
    return [(f"{c} x {i}x{i} -> {o}x{o}", c, i, o) for c in channels for i, o in sizes]


def run_resize_case(caffe, cv2, label, channels, in_side, out_side, repeats, mode="cpu",
                    clock=None, seed=0, passes=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, channels, in_side, in_side), dtype=np.float32)
    top_diff = rng.standard_normal((1, channels, out_side, out_side), dtype=np.float32)
    net = net_from_text(caffe, resize_net(1, channels, (in_side, in_side), (out_side, out_side)))
    run = NetRun(net, {"x": x}, top_diff, passes=passes)
    runs = [run]
    cv2_run = None
    cv2_out = np.empty((channels, out_side, out_side), np.float32)
    if cv2 is not None:
        planes = x[0]

        def resize_planes():
            for c in range(channels):
                cv2.resize(planes[c], (out_side, out_side), dst=cv2_out[c],
                           interpolation=cv2.INTER_LINEAR)

        cv2_run = CallRun(resize_planes)
        runs.append(cv2_run)
    identical = time_rounds(runs, repeats, clock=clock)
    ours = run.net.blobs[TOP].data[0, :CHECKED_PLANES]
    checked = x[0, :CHECKED_PLANES]
    numpy_diff = float(np.max(np.abs(ours - numpy_reference(checked, (out_side, out_side)))))
    warp_steps = cv2_diff = None
    if cv2 is not None:
        warped = np.stack([warp_affine_corner_aligned(cv2, p, (out_side, out_side))
                           for p in checked])
        warp_steps = float(np.max(np.abs(ours - warped))) / max_neighbour_step(checked)
        cv2_diff = float(np.max(np.abs(ours - cv2_out[:CHECKED_PLANES])))
    forward_bytes, backward_bytes = traffic.resize_bytes(
        channels, (in_side, in_side), (out_side, out_side))
    result = ResizeResult(
        label, channels, in_side, out_side, mode, median(run.forward_ms),
        median(run.backward_ms), median(cv2_run.forward_ms) if cv2_run else None,
        forward_bytes, backward_bytes, numpy_diff, warp_steps, cv2_diff, identical[0],
        median(run.cold_forward_ms), median(cv2_run.cold_forward_ms) if cv2_run else None,
        [round(t, 3) for t in run.forward_ms], [round(t, 3) for t in run.backward_ms],
        [round(t, 3) for t in cv2_run.forward_ms] if cv2_run else [])
    del run
    return result


def run_resize_benchmarks(caffe, repeats, cases=None, mode="cpu", clock=None, progress=True,
                          passes=1):
    """run_resize_case for every case (cv2 on the CPU run only, with one OpenCV thread)."""
    from tqdm import tqdm

    cv2 = None
    if mode == "cpu":
        import cv2
        cv2.setNumThreads(1)
    return [run_resize_case(caffe, cv2, *case, repeats=repeats, mode=mode, clock=clock,
                            passes=passes)
            for case in tqdm(cases or resize_cases(), desc=f"resize ({mode})",
                             disable=not progress)]
