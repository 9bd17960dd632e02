"""The training benchmarks' arithmetic: MAC counts by hand, and the reports they write."""

import json

import pytest

from attention_scale.benchmarks import common, data_throughput, macs, net_timing
from attention_scale.nets import builder
from attention_scale.pycaffe import net_from_text
from pyhelpers import import_caffe

caffe = import_caffe()

NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "pool" type: "Pooling" bottom: "conv1" top: "pool"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool" top: "conv2"
        convolution_param { num_output: 5 kernel_size: 1 group: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc" inner_product_param { num_output: 7 } }
"""


def test_mac_count_by_hand():
    count = macs.count_macs(net_from_text(caffe, NET))
    conv1 = 2 * 4 * 8 * 8 * 3 * 3 * 3  # N * C_out * H * W * C_in * k * k = 13824
    conv2 = 2 * 5 * 4 * 4 * 4          # 640
    fc = 2 * 7 * (5 * 4 * 4)           # 1120
    assert count.per_layer == {"conv1": conv1, "conv2": conv2, "fc": fc}
    assert count.forward == conv1 + conv2 + fc
    # backward: weight gradients everywhere, bottom gradients except into the data
    assert count.backward == conv1 + 2 * conv2 + 2 * fc
    assert count.training == 2 * conv1 + 3 * conv2 + 3 * fc


def test_attention_head_is_the_only_extra_work():
    def training_macs(merge):
        options = builder.NetOptions(scales=(1, 0.5), merge=merge, backbone="small",
                                     crop_size=49, batch_size=1)
        return macs.count_macs(net_from_text(caffe, builder.to_text(options, "train"),
                                             caffe.TRAIN))
    attention, maximum = training_macs("ATTENTION"), training_macs("MAX")
    extra = {k: v for k, v in attention.per_layer.items() if k not in maximum.per_layer}
    # small backbone: 49 -> 25 -> 13 x 13 scores; fc7 has 32 channels, 2 scales concatenated
    # (64 in), the head's 3x3 conv 512 out, its 1x1 conv 2 out.
    assert extra == {"att_conv1": 13 * 13 * 512 * 64 * 9, "att_conv2": 13 * 13 * 2 * 512}
    assert attention.forward - maximum.forward == sum(extra.values())


def test_net_timing_report_on_the_small_backbone(tmp_path):
    timings = net_timing.run_net_timing(size=49, repeats=1, backbone="small", progress=False)
    data, markdown = net_timing.net_report(timings, common.environment(), 49, 1)
    assert data["predicted_ratio"] == pytest.approx(
        timings[0].training_macs / timings[1].training_macs)
    assert data["measured_ratio"] > 0 and "ScaleInterp (ours)" in markdown
    common.publish_report(data, markdown, tmp_path, "nets")
    assert json.loads((tmp_path / "nets.json").read_text())["nets"][0]["merge"] == "ATTENTION"


def test_data_report_rows():
    results = [data_throughput.DataTiming("crop 321", "data layer alone", "none", 100.0, 101.0,
                                          [100.0]),
               data_throughput.DataTiming("crop 321", "data layer alone", "2 worker processes",
                                          50.0, 51.0, [50.0]),
               data_throughput.DataTiming("crop 321", "C++ layers (conv 64)", "thread", 80.0,
                                          1000.0, [80.0])]
    data, markdown = data_throughput.data_report(results, {}, batch=10, net_seconds_per_image=2.0)
    assert "| data layer alone | crop 321 | none | 100.0 | 101.0 | 99.0% | 100 |" in markdown
    assert data["best_supply_images_per_s"] == pytest.approx(200.0)
    assert "supplies up to 200 images/s, 400 times" in markdown
