"""Tests of skullstrip_lib.model: the residual 3D U-Net, the source network, export."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from skullstrip_lib.errors import InvalidArgumentError
from skullstrip_lib.losses import DiceScore, dice_bce_loss
from skullstrip_lib.model import (
    build_unet,
    describe_model,
    export_onnx,
    parameter_count,
    receptive_field,
)

SMALL = {"base_filters": 4, "depth": 2}


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)
    return build_unet((32, 32, 32, 1), **SMALL)


def _x(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------- shapes and args
@pytest.mark.parametrize("norm", ["instance", "group", "batch", None])
def test_output_shape_and_range(norm):
    model = build_unet((16, 24, 32, 2), base_filters=4, depth=3, norm=norm)
    y = model.predict(_x((2, 16, 24, 32, 2)), verbose=0)
    assert y.shape == (2, 16, 24, 32, 1)
    assert y.dtype == np.float32
    assert np.all((y >= 0) & (y <= 1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (32, 30, 32, 1)}, r"axis Y is 30, not divisible by 2\*\*\(depth-1\) = 8"),
        ({"input_shape": (32, 32, 32)}, "4 numbers"),
        ({"input_shape": (32, 32, 32, 0)}, "axis C must be a positive integer"),
        ({"depth": 0}, "depth must be an integer >= 1"),
        ({"depth": 2.5}, "depth must be an integer"),
        ({"base_filters": 0}, "base_filters must be"),
        ({"norm": "layer"}, "norm must be one of"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
        ({"dropout": "0.1"}, "dropout must be a number in"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"input_shape": (32, 32, 32, 1), "base_filters": 4, "depth": 4, **kwargs}
    with pytest.raises(InvalidArgumentError, match=message) as exc:
        build_unet(**args)
    assert isinstance(exc.value, ValueError)
    assert exc.value.argument == next(iter(kwargs))


def test_layer_names_and_mixed_precision_output():
    model = build_unet((16, 16, 16, 1), **SMALL)
    names = {layer.name for layer in model.layers}
    assert {"enc0_conv1", "enc0_norm1", "enc0_conv2", "enc0_proj", "enc0_pool",
            "enc1_dropout", "dec0_up", "dec0_concat", "dec0_conv1", "mask"} <= names
    assert model.get_layer("mask").kernel_size == (1, 1, 1)
    try:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
        mixed = build_unet((16, 16, 16, 1), **SMALL)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert mixed.get_layer("enc0_conv1").compute_dtype == "float16"
    assert mixed.output.dtype == "float32"


def test_block_is_pluggable():
    calls = []

    def plain_block(x, filters, norm, prefix):  # one convolution, no shortcut
        calls.append((prefix, filters, norm))
        return keras.layers.Conv3D(filters, 3, padding="same", activation="relu",
                                   name=f"{prefix}_conv")(x)

    model = build_unet((16, 16, 16, 1), base_filters=4, depth=2, norm="group", block=plain_block)
    assert calls == [("enc0", 4, "group"), ("enc1", 8, "group"), ("dec0", 4, "group")]
    assert {"enc0_conv", "enc1_conv", "dec0_conv", "mask"} <= {layer.name for layer in
                                                               model.layers}
    # 1->4, 4->8, (8+4)->4 convolutions with biases, and the 1x1x1 output.
    assert model.count_params() == (27 * 4 + 4) + (27 * 4 * 8 + 8) + (27 * 12 * 4 + 4) + 5
    default = build_unet((16, 16, 16, 1), base_filters=4, depth=2, norm="group")
    assert default.count_params() == parameter_count(4, 2, norm="group")


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("norm", ["instance", "group", "batch", None])
@pytest.mark.parametrize(("base", "depth", "channels"), [(4, 1, 1), (4, 2, 1), (6, 3, 2),
                                                         (16, 4, 1)])
def test_parameter_count_matches_keras(norm, base, depth, channels):
    model = build_unet((8, 8, 8, channels), base_filters=base, depth=depth, norm=norm)
    assert parameter_count(base, depth, channels, norm) == model.count_params()


def test_receptive_field_by_hand():
    # depth 1: two 3x3x3 convolutions, 1 + 2 + 2 = 5.
    assert receptive_field(1) == 5
    # depth 2: level 0 convs 1+2+2 = 5; pooling +1 -> 6, jump 2; level 1 convs
    # +2*2 +2*2 -> 14; upsampling +0, jump 1; decoder convs +2 +2 -> 18.
    assert receptive_field(2) == 18
    assert [receptive_field(d) for d in range(1, 6)] == [13 * 2 ** (d - 1) - 8
                                                         for d in range(1, 6)]
    assert receptive_field(4, convs_per_block=1) == 52
    with pytest.raises(ValueError, match="depth"):
        receptive_field(0)


@pytest.mark.parametrize("depth", [1, 2])
def test_receptive_field_measured(depth):
    # Which input voxels along X can change one output voxel? With positive
    # weights, no norm and a positive input, every activation is positive, and a
    # large bump at any voxel of the receptive field reaches the centre (it wins
    # its max-pooling cell). Read before the sigmoid, which would saturate.
    keras.utils.set_random_seed(1)
    model = build_unet((32, 32, 32, 1), base_filters=2, depth=depth, norm=None, dropout=0.0)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([np.abs(w) + 0.01 for w in layer.get_weights()])
    features = keras.Model(model.input, model.get_layer("mask").input)
    x = np.random.default_rng(0).uniform(0.5, 1.0, (1, 32, 32, 32, 1)).astype(np.float32)
    batch = np.repeat(x, 32, axis=0)
    batch[np.arange(32), np.arange(32), 16, 16, 0] += 100.0  # bump at X = 0..31
    y = features.predict(batch, verbose=0)[:, 16, 16, 16, :]
    base = features.predict(x, verbose=0)[0, 16, 16, 16, :]
    reached = np.flatnonzero(np.any(np.abs(y - base) > 1e-3 * np.abs(base), axis=1))
    assert len(reached) == receptive_field(depth)
    assert np.all(np.diff(reached) == 1)  # one contiguous run


def test_describe_model(small_model):
    info = describe_model(small_model, spacing_mm=2.0)
    assert info == {
        "parameters": small_model.count_params(),
        "trainable": parameter_count(4, 2),
        "depth": 2,
        "base_filters": 4,
        "receptive_field_vox": 18,
        "receptive_field_mm": 36.0,
        "input_shape": (32, 32, 32, 1),
    }
    batch = describe_model(build_unet((8, 8, 8, 1), base_filters=4, depth=2, norm="batch"))
    assert batch["parameters"] > batch["trainable"]  # moving mean and variance
    with pytest.raises(InvalidArgumentError, match="model 'sequential.*' was not built by"):
        describe_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


# --------------------------------------------------------------------------- save and export
def test_keras_round_trip(small_model, tmp_path):
    path = tmp_path / "unet.keras"
    small_model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode, no custom objects
    x = _x((1, 32, 32, 32, 1), seed=3)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), small_model.predict(x, verbose=0))
    assert describe_model(loaded) == describe_model(small_model)


def test_export_onnx_matches_keras(small_model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    path = export_onnx(small_model, tmp_path / "sub" / "unet.onnx")
    assert path.is_file()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _x((2, 32, 32, 32, 1), seed=4)  # batch 2: the batch axis is dynamic
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, small_model.predict(x, verbose=0), atol=1e-4)


def test_export_onnx_refuses_mixed_precision(tmp_path):
    try:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
        mixed = build_unet((16, 16, 16, 1), **SMALL)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    with pytest.raises(ValueError, match="float32"):
        export_onnx(mixed, tmp_path / "m.onnx")


# --------------------------------------------------------------------------- it learns
def blobs(seed: int = 0):
    """Two 16^3 toy volumes and masks, shape (2, 16, 16, 16, 1): a bright ball in noise."""
    rng = np.random.default_rng(seed)
    i, j, k = np.ogrid[:16, :16, :16]
    y = np.stack([(i - a) ** 2 + (j - b) ** 2 + (k - c) ** 2 <= r ** 2
                  for a, b, c, r in ((7, 8, 6, 4.0), (9, 7, 9, 5.0))])[..., None]
    return (y + 0.3 * rng.standard_normal(y.shape)).astype(np.float32), y.astype(np.float32)


def test_tiny_network_overfits_blobs():
    keras.utils.set_random_seed(0)

    x, y = blobs()
    model = build_unet((16, 16, 16, 1), base_filters=4, depth=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=dice_bce_loss,
                  metrics=[DiceScore()])
    history = model.fit(x, y, batch_size=2, epochs=30, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0]
    assert np.mean(history[-5:]) < np.mean(history[:5])
    dice = DiceScore()
    dice.update_state(y, model.predict(x, verbose=0))
    assert float(dice.result()) > 0.9


# --------------------------------------------------------------------------- looking inside


def test_training_memory_by_hand():
    from skullstrip_lib.model import training_memory

    # Layers: t1w (1 ch), conv1, relu1, conv2, proj, add, out (2 ch each), mask (1 ch).
    model = build_unet((8, 8, 8, 1), base_filters=2, depth=1, dropout=0.0, norm=None)
    assert [layer.name for layer in model.layers] == [
        "t1w", "enc0_conv1", "enc0_relu1", "enc0_conv2", "enc0_proj", "enc0_add", "enc0_out",
        "mask"]
    memory = training_memory(model, batch_size=3)
    params = model.count_params()
    assert memory["weights"] == memory["gradients"] == 4 * params
    assert memory["optimizer"] == 8 * params
    assert memory["activations"] == 3 * 4 * 512 * (1 + 6 * 2 + 1)
    assert memory["total"] == 16 * params + memory["activations"]
    assert training_memory(model, 1, optimizer_slots=0)["optimizer"] == 0
    try:  # float16 activations, except the float32 input and output
        keras.mixed_precision.set_dtype_policy("mixed_float16")
        mixed = build_unet((8, 8, 8, 1), base_filters=2, depth=1, dropout=0.0, norm=None)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert training_memory(mixed)["activations"] == 512 * (4 + 6 * 2 * 2 + 4)
    assert training_memory(mixed)["weights"] == 4 * params  # float32 master weights


def test_training_memory_counts_group_norms_float32_copies():
    from skullstrip_lib.model import training_memory

    # With instance norm, conv1 and conv2 are each followed by a norm (2 ch): 8 layers of
    # 2 channels between the input (1 ch) and the mask (1 ch).
    def net():
        return build_unet((8, 8, 8, 1), base_filters=2, depth=1, dropout=0.0, norm="instance")

    assert training_memory(net())["activations"] == 512 * 4 * (1 + 8 * 2 + 1)
    try:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
        mixed = net()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    # Under mixed_float16 the outputs take 2 bytes, and each of the two norms also keeps its
    # 2-channel input as float32 (4 bytes): Keras upcasts it to compute the statistics.
    assert training_memory(mixed)["activations"] == 512 * (4 + 8 * 2 * 2 + 2 * 2 * 4 + 4)


