"""Tests of skullstrip_lib.lessons.unet_anatomy: the source network, tables, footprints."""

from __future__ import annotations

import pytest

from skullstrip_lib.lessons.unet_anatomy import build_source_unet
from skullstrip_lib.model import build_unet, describe_model


def test_source_net_conv2_reads_block_input():
    source = build_source_unet((16, 16, 16, 1), base_filters=2)
    names = [layer.name for layer in source.layers]
    assert "enc0_conv1" not in names  # its output is never used: pruned from the graph
    assert source.get_layer("enc0_conv2").input is source.inputs[0]
    assert source.get_layer("enc1_conv2").input is source.get_layer("enc0_pool").output
    assert source.get_layer("dec0_conv2").input is source.get_layer("dec0_concat").output
    assert source.get_layer("mask").kernel_size == (1, 1, 2)
    assert source.output_shape == (None, 16, 16, 16, 1)
    # Ours: conv2 reads the first convolution's (normalised, rectified) output.
    ours = build_unet((16, 16, 16, 1), base_filters=2, depth=4)
    for level in ("enc0", "enc3", "dec0"):
        assert ours.get_layer(f"{level}_conv2").input is ours.get_layer(f"{level}_relu1").output
    assert describe_model(source)["receptive_field_vox"] == 52
    assert describe_model(ours)["receptive_field_vox"] == 96


def test_layer_inputs_and_block_table_show_the_wiring():
    from skullstrip_lib.lessons.unet_anatomy import block_table, layer_inputs

    ours = build_unet((16, 16, 16, 1), base_filters=2, depth=2)
    assert layer_inputs(ours, r"enc0_conv\d") == {"enc0_conv1": ["t1w"],
                                                  "enc0_conv2": ["enc0_relu1"]}
    assert layer_inputs(ours, "dec0_concat") == {"dec0_concat": ["dec0_up", "enc0_out"]}
    table = block_table(ours)
    assert table["block"].tolist() == ["enc0", "enc1", "dec0", "mask"]
    assert table["grid"].tolist() == ["16x16x16", "8x8x8", "16x16x16", "16x16x16"]
    assert table["channels"].tolist() == [2, 4, 2, 1]
    assert table["parameters"].sum() == ours.count_params()
    assert table["conv2_reads"].tolist() == ["enc0_relu1", "enc1_relu1", "dec0_relu1", ""]
    source = block_table(build_source_unet((16, 16, 16, 1), base_filters=2))
    assert source["conv2_reads"].tolist() == ["t1w", "enc0_pool", "enc1_pool", "enc2_pool",
                                              "dec2_concat", "dec1_concat", "dec0_concat", ""]


@pytest.mark.parametrize(("base", "channels"), [(1, 1), (2, 3), (16, 1)])
def test_source_parameter_count(base, channels):
    from skullstrip_lib.lessons.unet_anatomy import source_parameter_count

    model = build_source_unet((8, 8, 8, channels), base_filters=base)
    assert source_parameter_count(base, channels) == model.count_params()
    # As described: each block gains its first convolution's f_in -> f, i.e. the
    # second one now maps f -> f (27 f^2 + f), for the 7 blocks.
    f = [base * 2**level for level in range(4)]
    extra = sum(27 * c * c + c for c in f) + sum(27 * c * c + c for c in f[:3])
    assert source_parameter_count(base, channels, as_described=True) == (
        model.count_params() + extra)


def test_conv_footprint():
    from skullstrip_lib.lessons.unet_anatomy import conv_footprint

    assert conv_footprint(3) == ((-1, 0, 1),) * 3
    assert conv_footprint(1) == ((0,),) * 3
    assert conv_footprint((1, 1, 2)) == ((0,), (0,), (0, 1))  # half a voxel off-centre
    assert conv_footprint((3, 1, 2), padding="valid") == ((-1, 0, 1), (0,), (0, 1))
    with pytest.raises(ValueError, match="kernel_size"):
        conv_footprint(9, length=9)


def test_batch_dependence():
    from skullstrip_lib.lessons.unet_anatomy import batch_dependence

    assert batch_dependence("instance") < 1e-5
    assert batch_dependence("group") < 1e-5
    assert batch_dependence(None) == 0.0
    assert batch_dependence("batch") > 0.1


def test_plot_unet_draws_every_block():
    import matplotlib

    matplotlib.use("Agg")
    from skullstrip_lib.lessons.unet_anatomy import block_table, plot_unet

    fig = plot_unet(block_table(build_unet((16, 16, 16, 1), base_filters=2, depth=3)))
    texts = [t.get_text() for t in fig.axes[0].texts if t.get_text()]  # arrows have none
    assert len(texts) == 6 and texts[0] == "enc0\n16x16x16\n2 ch"
    assert "enc2\n4x4x4\n8 ch" in texts and texts[-1].startswith("mask")
