"""Caffe Python layers with the numerics of the C++ layers, for a pycaffe built without them.

Use as
    type: "Python"
    python_param { module: "attention_scale.layers" layer: "ScaleInterp" param_str: "scale: 0.75" }
where param_str is protobuf text of the layer's parameter message (attention_scale.proto).

This pycaffe's boost bindings cannot iterate or slice the bottom/top vectors, so every access
below indexes them by position.
"""

import math

import numpy as np

from ..errors import LayerConfigError
from ..python_layer import ReportingLayer
from . import scale_interp, softmax_over_scales, weighted_scale_sum
from .params import parse_param_str
from .weighted_scale_sum import ATTENTION, AVERAGE


class _ScaleLayer(ReportingLayer):
    """Shared error messages: every one names the layer type and its param_str."""

    TYPE = None

    def _fail(self, problem):
        problem = str(problem)
        if problem.startswith(f"{self.TYPE}: "):  # a message of the numpy core, already named
            problem = problem[len(self.TYPE) + 2:]
        raise LayerConfigError(
            f"{self.TYPE} (Python layer, param_str {self.param_str!r}): {problem}") from None

    def _param(self):
        return parse_param_str(self.TYPE, self.param_str)

    def _check_counts(self, bottom, top, min_bottoms, max_bottoms=None):
        if len(top) != 1:
            self._fail(f"takes exactly 1 top, got {len(top)}")
        if len(bottom) < min_bottoms or (max_bottoms is not None and len(bottom) > max_bottoms):
            want = (f"{min_bottoms}" if max_bottoms == min_bottoms else
                    f"at least {min_bottoms}" if max_bottoms is None else
                    f"{min_bottoms} to {max_bottoms}")
            self._fail(f"takes {want} bottoms, got {len(bottom)}")

    def _check_not_in_place(self, bottom, top):
        # Called after top[0] is reshaped: an in-place top shares the bottom's memory.
        address = top[0].data.__array_interface__["data"][0]
        for i in range(len(bottom)):
            if bottom[i].data.size and bottom[i].data.__array_interface__["data"][0] == address:
                self._fail(f"cannot run in place (top[0] is bottom[{i}])")

    def _shape4(self, bottom, i, axes="N x C x H x W"):
        """Bottom i's shape, checked as the C++ layers check it: 4-D, every axis >= 1 (an empty
        blob has no data: pycaffe would abort on .data, so only .shape is read before)."""
        shape = tuple(bottom[i].shape)
        if len(shape) != 4:
            self._fail(f"bottom[{i}] must be 4-D ({axes}), got shape {shape}")
        if min(shape) < 1:
            self._fail(f"bottom[{i}] has shape {scale_interp.shape_string(shape)}, expected every "
                       f"axis >= 1 ({axes}; empty blobs are not supported)")
        return shape


class ScaleInterp(_ScaleLayer):
    """Bilinear (or nearest) resize; an optional second bottom gives the output H x W."""

    TYPE = "ScaleInterp"

    def setup(self, bottom, top):
        self._check_counts(bottom, top, 1)  # spec_from_param explains the 1-or-2 rule
        param = self._param()
        try:
            self.spec = scale_interp.spec_from_param(param, len(bottom))
        except LayerConfigError as exc:
            self._fail(exc)

    def reshape(self, bottom, top):
        shape = self._shape4(bottom, 0)
        ref_hw = self._shape4(bottom, 1)[2:] if len(bottom) == 2 else None
        try:
            top_shape = self.spec.top_shape(shape, ref_hw)
        except LayerConfigError as exc:
            self._fail(exc)
        self.out_hw = top_shape[2:]
        top[0].reshape(*top_shape)
        self._check_not_in_place(bottom, top)

    def forward(self, bottom, top):
        spec = self.spec
        scale_interp.forward(bottom[0].data, self.out_hw, spec.pad_beg, spec.pad_end, spec.nearest,
                       out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        spec = self.spec
        if propagate_down[0]:
            scale_interp.backward(top[0].diff, bottom[0].data.shape[2:], spec.pad_beg, spec.pad_end,
                            spec.nearest, out=bottom[0].diff)
        if len(bottom) == 2 and propagate_down[1]:
            bottom[1].diff[...] = 0  # the reference bottom only lends its size


class SoftmaxOverScales(_ScaleLayer):
    """Softmax over scales of one N x S x H x W bottom or of S bottoms of N x 1 x H x W."""

    TYPE = "SoftmaxOverScales"

    def setup(self, bottom, top):
        self._check_counts(bottom, top, 1)
        self._param()  # no fields yet, but unknown ones must still fail here

    def reshape(self, bottom, top):
        first = self._shape4(bottom, 0, "N x S x H x W")
        if len(bottom) == 1:
            top[0].reshape(*first)
            self._check_not_in_place(bottom, top)
            return
        for i in range(len(bottom)):
            shape = self._shape4(bottom, i, "N x S x H x W")
            if shape[1] != 1 or (shape[0], shape[2], shape[3]) != (first[0], first[2], first[3]):
                self._fail(
                    f"with {len(bottom)} bottoms each must be N x 1 x H x W with bottom[0]'s N, H, "
                    f"W: expected {(first[0], 1, first[2], first[3])}, bottom[{i}] has {shape}")
        top_shape = (first[0], len(bottom), first[2], first[3])
        if math.prod(top_shape) > scale_interp.INT_MAX:  # as the C++ layer, before Caffe aborts
            self._fail(f"the top would have shape {scale_interp.shape_string(top_shape)} for "
                       f"{len(bottom)} bottoms of shape {scale_interp.shape_string(first)} "
                       f"(bottom[0] and the others), more than a blob holds "
                       f"({scale_interp.INT_MAX} elements)")
        top[0].reshape(*top_shape)
        self._check_not_in_place(bottom, top)

    def forward(self, bottom, top):
        if len(bottom) == 1:
            softmax_over_scales.forward(bottom[0].data, out=top[0].data)
        else:
            stacked = np.concatenate([bottom[i].data for i in range(len(bottom))], axis=1)
            softmax_over_scales.forward(stacked, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if len(bottom) == 1:
            if propagate_down[0]:
                softmax_over_scales.backward(top[0].data, top[0].diff, out=bottom[0].diff)
            return
        grad = softmax_over_scales.backward(top[0].data, top[0].diff)
        for i in range(len(bottom)):
            if propagate_down[i]:
                bottom[i].diff[...] = grad[:, i:i + 1]


class WeightedScaleSum(_ScaleLayer):
    """Merge of S score maps: attention-weighted (weights as the last bottom), average or max."""

    TYPE = "WeightedScaleSum"

    def setup(self, bottom, top):
        self.merge = self._param().merge
        attention = self.merge == ATTENTION
        self._check_counts(bottom, top, 2 if attention else 1)
        self.num_scales = len(bottom) - 1 if attention else len(bottom)

    def reshape(self, bottom, top):
        first = self._shape4(bottom, 0)
        for s in range(1, self.num_scales):
            shape = self._shape4(bottom, s)
            if shape != first:
                self._fail(f"score bottoms must have one shape: bottom[0] is {first}, "
                           f"bottom[{s}] is {shape}")
        if self.merge == ATTENTION:
            expected = (first[0], self.num_scales, first[2], first[3])
            shape = self._shape4(bottom, self.num_scales, "N x S x H x W")
            if shape != expected:
                self._fail(f"the weights (last bottom, bottom[{self.num_scales}]) must be "
                           f"N x S x H x W = {expected} for {self.num_scales} score maps of "
                           f"{first}, got {shape}")
        top[0].reshape(*first)
        self._check_not_in_place(bottom, top)

    def _scores(self, bottom):
        return [bottom[s].data for s in range(self.num_scales)]

    def forward(self, bottom, top):
        if self.merge == ATTENTION:
            weighted_scale_sum.attention_forward(self._scores(bottom), bottom[self.num_scales].data,
                                          out=top[0].data)
        elif self.merge == AVERAGE:
            weighted_scale_sum.average_forward(self._scores(bottom), out=top[0].data)
        else:
            _, self.argmax = weighted_scale_sum.max_forward(self._scores(bottom), out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        num = self.num_scales
        dg = top[0].diff
        if self.merge == ATTENTION:
            weights = bottom[num].data
            for s in range(num):
                if propagate_down[s]:
                    weighted_scale_sum.attention_backward_scores(weights, dg, s, out=bottom[s].diff)
            if propagate_down[num]:
                weighted_scale_sum.attention_backward_weights(self._scores(bottom), dg,
                                                       out=bottom[num].diff)
        elif self.merge == AVERAGE:
            for s in range(num):
                if propagate_down[s]:
                    weighted_scale_sum.average_backward(dg, num, out=bottom[s].diff)
        else:
            for s in range(num):
                if propagate_down[s]:
                    weighted_scale_sum.max_backward(dg, self.argmax, s, out=bottom[s].diff)
