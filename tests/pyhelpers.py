"""Shared test helpers: plain-loop reference implementations written from SPEC section 2 (not from
the package's code), finite differences, and pycaffe net construction.
"""

import math
import os
from fractions import Fraction

import numpy as np

# ---------------------------------------------------------------------------------------------
# Plain-loop references
# ---------------------------------------------------------------------------------------------


def ref_source(dst, n_in, n_out):
    """Exact source coordinate of output index dst: dst * (n_in - 1) / (n_out - 1), 0 if n_out == 1."""
    return Fraction(0) if n_out == 1 else Fraction(dst * (n_in - 1), n_out - 1)


def ref_taps(dst, n_in, n_out, nearest):
    """[(source index, weight)] read by output index dst along one axis."""
    src = ref_source(dst, n_in, n_out)
    if nearest:
        return [(math.floor(src + Fraction(1, 2)), 1.0)]
    lo = math.floor(src)
    lam = float(src - lo)
    return [(lo, 1.0 - lam), (min(lo + 1, n_in - 1), lam)]


def ref_interp_forward(x, out_hw, pad_beg=0, pad_end=0, nearest=False):
    """Resize by visiting every output pixel (vectorised over N and C only). A tap of weight 0
    reads nothing, so a NaN or inf reaches only the outputs that read it (issue 9, item 6)."""
    n, c, h, w = x.shape
    h_eff, w_eff = h + pad_beg + pad_end, w + pad_beg + pad_end
    out = np.zeros((n, c) + tuple(out_hw), np.float64)
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            for y, wy in ref_taps(i, h_eff, out_hw[0], nearest):
                for x_, wx in ref_taps(j, w_eff, out_hw[1], nearest):
                    if wy * wx != 0:
                        out[:, :, i, j] += wy * wx * x[:, :, y - pad_beg, x_ - pad_beg]
    return out


def ref_interp_backward(dy, in_hw, pad_beg=0, pad_end=0, nearest=False):
    """Scatter every output pixel's gradient back onto the input pixels it read (with a
    non-zero weight)."""
    n, c, h_out, w_out = dy.shape
    h_eff, w_eff = in_hw[0] + pad_beg + pad_end, in_hw[1] + pad_beg + pad_end
    dx = np.zeros((n, c) + tuple(in_hw), np.float64)
    for i in range(h_out):
        for j in range(w_out):
            for y, wy in ref_taps(i, h_eff, h_out, nearest):
                for x_, wx in ref_taps(j, w_eff, w_out, nearest):
                    if wy * wx != 0:
                        dx[:, :, y - pad_beg, x_ - pad_beg] += wy * wx * dy[:, :, i, j]
    return dx


def ref_softmax(h):
    """Softmax over axis 1, pixel by pixel, with math.exp after subtracting the max. Infinite
    and NaN logits as SPEC/issue 9 item 6 define them: the scales at the maximum share the
    weight when it is +inf or -inf (the limit; all -inf: equal logits), a NaN makes the pixel NaN."""
    n, s, hh, ww = h.shape
    out = np.zeros(h.shape, np.float64)
    for a in range(n):
        for y in range(hh):
            for x in range(ww):
                values = [float(h[a, k, y, x]) for k in range(s)]
                if any(math.isnan(v) for v in values):
                    out[a, :, y, x] = math.nan
                    continue
                peak = max(values)
                if math.isinf(peak):
                    exps = [1.0 if v == peak else 0.0 for v in values]
                else:
                    exps = [math.exp(v - peak) for v in values]
                total = sum(exps)
                for k in range(s):
                    out[a, k, y, x] = exps[k] / total
    return out


def ref_softmax_backward(y, dy):
    n, s, hh, ww = y.shape
    dx = np.zeros(y.shape, np.float64)
    for a in range(n):
        for r in range(hh):
            for q in range(ww):
                inner = sum(float(y[a, k, r, q]) * float(dy[a, k, r, q]) for k in range(s))
                for k in range(s):
                    dx[a, k, r, q] = y[a, k, r, q] * (dy[a, k, r, q] - inner)
    return dx


def ref_merge(scores, weights=None, merge="ATTENTION"):
    """(g, argmax) for one element at a time; argmax is -1 unless merge == 'MAX'."""
    shape = scores[0].shape
    g = np.zeros(shape, np.float64)
    argmax = np.full(shape, -1)
    for idx in np.ndindex(*shape):
        values = [float(f[idx]) for f in scores]
        if merge == "ATTENTION":
            g[idx] = sum(weights[idx[0], s, idx[2], idx[3]] * values[s] for s in range(len(values)))
        elif merge == "AVERAGE":
            g[idx] = sum(values) / len(values)
        else:  # the first NaN, else the first maximum
            nans = [s for s in range(len(values)) if math.isnan(values[s])]
            best = nans[0] if nans else 0
            for s in range(1, len(values)):
                if not nans and values[s] > values[best]:
                    best = s
            g[idx], argmax[idx] = values[best], best
    return g, argmax


def ref_merge_backward(scores, weights, dg, merge="ATTENTION"):
    """(df list, dw or None) element by element."""
    num = len(scores)
    dscores = [np.zeros(dg.shape, np.float64) for _ in range(num)]
    dweights = None
    if merge == "ATTENTION":
        dweights = np.zeros(weights.shape, np.float64)
    _, argmax = ref_merge(scores, weights, "MAX")
    for idx in np.ndindex(*dg.shape):
        a, c, y, x = idx
        for s in range(num):
            if merge == "ATTENTION":
                dscores[s][idx] = weights[a, s, y, x] * dg[idx]
                dweights[a, s, y, x] += scores[s][idx] * dg[idx]
            elif merge == "AVERAGE":
                dscores[s][idx] = dg[idx] / num
            else:
                dscores[s][idx] = dg[idx] if argmax[idx] == s else 0.0
    return dscores, dweights


def ref_confusion(gt, pred, num_classes, ignore_label=255):
    conf = np.zeros((num_classes, num_classes), np.int64)
    for g, p in zip(np.ravel(gt).tolist(), np.ravel(pred).tolist()):
        if g != ignore_label:
            conf[g, p] += 1
    return conf


# ---------------------------------------------------------------------------------------------
# Finite differences
# ---------------------------------------------------------------------------------------------


def numeric_gradient(fn, x, eps=1e-6):
    """d sum(fn(x)) / dx by central differences (fn returns an array; x is changed and restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    for idx in np.ndindex(*x.shape):
        keep = x[idx]
        x[idx] = keep + eps
        plus = float(np.sum(fn(x)))
        x[idx] = keep - eps
        minus = float(np.sum(fn(x)))
        x[idx] = keep
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


# ---------------------------------------------------------------------------------------------
# pycaffe nets
# ---------------------------------------------------------------------------------------------

def import_caffe():
    """pycaffe in CPU mode, glog quiet for this process only; a missing pycaffe fails the test
    (the README's setup installs it)."""
    from attention_scale.pycaffe import import_caffe as package_import_caffe
    return package_import_caffe()


def input_layers(shapes):
    """Input layers, one per named blob: {"x": (2, 3, 5, 5)}."""
    return "".join(
        f'layer {{ name: "{name}" type: "Input" top: "{name}" '
        f'input_param {{ shape {{ {" ".join(f"dim: {d}" for d in shape)} }} }} }}\n'
        for name, shape in shapes.items())


def cpp_layer(layer_type, bottoms, top="out", param_field=None, param_text="", name="layer"):
    fields = "".join(f'bottom: "{b}" ' for b in bottoms)
    block = f"{param_field} {{ {param_text} }}" if param_field else ""
    return f'layer {{ name: "{name}" type: "{layer_type}" {fields}top: "{top}" {block} }}\n'


def python_layer(layer_type, bottoms, top="out", param_str="", name="layer"):
    fields = "".join(f'bottom: "{b}" ' for b in bottoms)
    escaped = param_str.replace("\\", "\\\\").replace('"', '\\"')
    return (f'layer {{ name: "{name}" type: "Python" {fields}top: "{top}" python_param {{ '
            f'module: "attention_scale.layers" layer: "{layer_type}" '
            f'param_str: "{escaped}" }} }}\n')


def make_net(text):
    """caffe.Net (TEST phase, force_backward) from prototxt text."""
    from attention_scale.pycaffe import net_from_text
    return net_from_text(import_caffe(), 'name: "t" force_backward: true\n' + text)


_CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
from pyhelpers import make_net
for key, path in json.loads(sys.argv[1]).items():
    try:
        make_net(open(path).read())
        print(f"{{key}} built", flush=True)
    except Exception as exc:
        print(f"{{key}} {{type(exc).__name__}}: {{exc}}", flush=True)
"""


def build_in_child(tmp_path, nets):
    """{key: the line the child printed building nets[key]}, each net built in one fresh Python
    in turn (keys missing from the result: the child died before them, e.g. in a glog CHECK;
    "output" holds all it wrote). For nets that abort the interpreter without a fix."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    paths = {}
    for key, text in nets.items():
        paths[key] = str(tmp_path / f"{key}.prototxt")
        Path(paths[key]).write_text(text)
    script = _CHILD.format(tests=str(Path(__file__).parent))
    res = subprocess.run([sys.executable, "-c", script, json.dumps(paths)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "GLOG_minloglevel": "2"})
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
    lines["output"] = res.stdout + res.stderr
    return lines


def run_net(net, inputs, top_diff, top="out"):
    """Forward with the given inputs, backward from top_diff; returns (top data, input diffs)."""
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    net.forward()
    out = net.blobs[top].data.copy()
    for name in inputs:
        net.blobs[name].diff[...] = 0
    net.blobs[top].diff[...] = top_diff
    net.backward()
    return out, {name: net.blobs[name].diff.copy() for name in inputs}


def extract_all(tar, dest, filter):
    """tar.extractall with an extraction filter where this Python has them (3.9.17, 3.10.12,
    3.11.4 and later; Debian 11's 3.9.2 has none): the archives here are the tests' own."""
    try:
        tar.extractall(dest, filter=filter)
    except TypeError:
        tar.extractall(dest)


def default_sigint():
    """preexec_fn for a child that a test sends Ctrl-C: SIGINT's default action even where the
    test run ignores it (a run started in the background by a non-interactive shell, `cmd &`,
    inherits SIG_IGN, and Python then installs no KeyboardInterrupt)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)
