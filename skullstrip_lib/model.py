"""The network: a residual 3D U-Net, and the source article's defective one.

:func:`build_unet` builds the model the book trains. It is a U-Net
(Ronneberger et al., 2015; in 3D, Çiçek et al., 2016) whose blocks are
residual (He et al., 2016):

* **Encoder**: ``depth`` levels; level ``l`` has ``base_filters * 2**l``
  channels. Each level is a residual block, then a 2x2x2 max pooling halves
  the grid (except at the deepest level, the *bottleneck*).
* **Residual block**: Conv3D 3x3x3 → norm → ReLU → Conv3D 3x3x3 *on the first
  convolution's output* → norm, plus a shortcut (the block input, or a 1x1x1
  convolution of it when the channel count changes), then ReLU.
* **Decoder**: at each level from ``depth - 2`` down to 0, nearest-neighbour
  upsampling by 2, concatenation with the encoder's output at that level (the
  *skip connection*), then a residual block.
* **Output**: a 1x1x1 convolution to one channel with a sigmoid: the
  probability that a voxel is brain. It computes in float32 even under mixed
  precision, so the loss never sees float16 probabilities.

The source article's network, defects and all, is rebuilt for the book's
chapter 6 in the lessons room
(:func:`skullstrip_lib.lessons.unet_anatomy.build_source_unet`). :func:`receptive_field`,
:func:`parameter_count` and :func:`describe_model` give the numbers the book
quotes; :func:`export_onnx` writes the model for ONNX Runtime and checks it.

Layer names are readable (``enc0_conv1``, ``enc0_norm1``, ``dec1_concat``,
``mask``, ...) so that ``model.summary()`` reads like the description above.
Only built-in Keras layers are used: a saved ``.keras`` file loads with
``keras.models.load_model(path)`` and no custom objects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .errors import InvalidArgumentError
from .validate import check_choice, check_input_shape, check_int, check_number

__all__ = [
    "build_unet",
    "conv_norm",
    "describe_model",
    "export_onnx",
    "norm_layer",
    "parameter_count",
    "receptive_field",
    "residual_block",
    "residual_sum",
    "training_memory",
]

NORMS = ("instance", "group", "batch", None)
_MAX_GROUPS = 8  # "group" norm: at most 8 groups (Wu & He, 2018, found 8-32 all fine)


def _groups(channels: int, norm: str) -> int:
    if norm == "instance":
        return channels  # one group per channel: instance normalisation
    # The largest divisor of `channels` that is at most 8 (GroupNormalization needs a divisor).
    return max(g for g in range(1, min(_MAX_GROUPS, channels) + 1) if channels % g == 0)


# --------------------------------------------------------------------------- building blocks
def norm_layer(norm: str | None, channels: int, name: str):
    """The normalisation layer for ``norm`` over ``channels`` channels (None for no norm)."""
    if norm is None:
        return None
    if norm == "batch":
        return keras.layers.BatchNormalization(name=name)
    return keras.layers.GroupNormalization(groups=_groups(channels, norm), name=name)


def conv_norm(x, filters: int, norm: str | None, prefix: str, n: int):
    """A 3x3x3 convolution and its norm, named ``{prefix}_conv{n}`` and ``{prefix}_norm{n}``.

    The convolution has no bias when a normalisation follows: the norm
    subtracts the mean, so a bias would be learnt and then removed.
    """
    y = keras.layers.Conv3D(filters, 3, padding="same", use_bias=norm is None,
                            name=f"{prefix}_conv{n}")(x)
    if (layer := norm_layer(norm, filters, f"{prefix}_norm{n}")) is not None:
        y = layer(y)
    return y


def residual_sum(y, x, prefix: str):
    """``ReLU(y + x)``, the end of a residual block; ``x`` projected when the channels differ."""
    shortcut = x
    if x.shape[-1] != y.shape[-1]:
        # A 1x1x1 projection so the channel counts match for the sum.
        shortcut = keras.layers.Conv3D(y.shape[-1], 1, name=f"{prefix}_proj")(x)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


def residual_block(x, filters: int, norm: str | None, prefix: str):
    """conv → norm → ReLU → conv → norm, + shortcut, → ReLU: :func:`build_unet`'s block."""
    y = conv_norm(x, filters, norm, prefix, 1)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    # The second convolution reads the FIRST one's output (the source article's
    # network read the block input here, see lessons.unet_anatomy.build_source_unet).
    y = conv_norm(y, filters, norm, prefix, 2)
    return residual_sum(y, x, prefix)


# --------------------------------------------------------------------------- the model
def build_unet(
    input_shape: Sequence[int] = (96, 128, 160, 1),
    *,
    base_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.1,
    norm: str | None = "instance",
    name: str = "resunet3d",
    block: Callable[..., Any] | None = None,
) -> keras.Model:
    """Build the residual 3D U-Net the book trains.

    Downsampling is a 2x2x2 max pooling rather than a strided convolution: it
    has no weights (a strided convolution adds ``8 C²`` per level), keeps the
    strongest response in each cell, and keeps the receptive-field arithmetic
    of :func:`receptive_field` simple. Upsampling is nearest-neighbour
    (``UpSampling3D``) followed by the block's convolutions rather than a
    transposed convolution, which is prone to checkerboard artefacts (Odena
    et al., 2016) and adds weights.

    Parameters
    ----------
    input_shape : sequence of 4 int
        ``(X, Y, Z, channels)`` of one input volume, without the batch axis.
        X, Y and Z must be divisible by ``2**(depth - 1)``. The default is the
        model grid of :mod:`skullstrip_lib.preprocess` (96x128x160 voxels of
        2 mm) with one channel (T1w intensity).
    base_filters : int
        Channels at the first level; level ``l`` has ``base_filters * 2**l``.
    depth : int
        Number of levels (1 = a single residual block, no pooling).
    dropout : float
        Rate of ``SpatialDropout3D`` (whole channels dropped, which regularises
        3D feature maps better than dropping single, strongly correlated voxels)
        after the bottleneck block; 0 for none. Only active in training.
    norm : {"instance", "group", "batch", None}
        Normalisation after each convolution. ``"instance"`` (the default)
        normalises each channel of each volume on its own: it does not depend
        on the batch, which is 1 or 2 for volumes of this size, where batch
        normalisation's statistics are noise. ``"group"`` uses the largest
        divisor of the channel count that is at most 8 as number of groups.
    name : str
        The model's name.
    block : callable, optional
        Builds one level's block, ``block(x, filters, norm, prefix) -> tensor``,
        naming its layers ``prefix + "_..."``; :func:`residual_block` by
        default. The book's ablation passes the source article's miswired one
        (:func:`skullstrip_lib.lessons.ablation.source_block`).

    Returns
    -------
    keras.Model
        Input ``(batch, X, Y, Z, channels)`` float32; output
        ``(batch, X, Y, Z, 1)`` float32 probabilities in [0, 1].

    Raises
    ------
    InvalidArgumentError
        A bad argument (a :class:`ValueError`); the message names it (and, for
        the shape, the axis).

    Examples
    --------
    >>> model = build_unet((32, 32, 32, 1), base_filters=4, depth=2)
    >>> model.output_shape
    (None, 32, 32, 32, 1)
    """
    depth = check_int(depth, "depth", 1)
    base_filters = check_int(base_filters, "base_filters", 1)
    shape = check_input_shape(input_shape, depth)
    norm = check_choice(norm, "norm", NORMS)
    dropout = check_number(dropout, "dropout", minimum=0, maximum=1, open_maximum=True)
    block = block or residual_block

    inputs = keras.Input(shape=shape, name="t1w")
    x = inputs
    skips = []
    for level in range(depth):
        x = block(x, base_filters * 2**level, norm, f"enc{level}")
        if level < depth - 1:
            skips.append(x)
            x = keras.layers.MaxPooling3D(2, name=f"enc{level}_pool")(x)
    if dropout > 0:
        x = keras.layers.SpatialDropout3D(float(dropout), name=f"enc{depth - 1}_dropout")(x)
    for level in reversed(range(depth - 1)):
        x = keras.layers.UpSampling3D(2, name=f"dec{level}_up")(x)
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = block(x, base_filters * 2**level, norm, f"dec{level}")
    # float32 even under a mixed_float16 policy: probabilities near 0 and 1 and
    # the loss's logarithms need the precision.
    outputs = keras.layers.Conv3D(1, 1, activation="sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------- numbers
def receptive_field(depth: int, convs_per_block: int = 2, kernel: int = 3) -> int:
    """Receptive field of :func:`build_unet`'s output, in voxels along one axis.

    A layer with kernel ``k`` and stride ``s`` applied where one step is ``j``
    input voxels (the *jump*) widens the field by ``(k - 1) j`` and multiplies
    the jump by ``s``. At level ``l`` of the U-Net the jump is ``2**l``. With
    ``D = depth``, ``n = convs_per_block`` and ``k = kernel``:

    * encoder convolutions, levels 0 to D-1: ``n (k-1) (2**D - 1)``;
    * the D-1 poolings (kernel 2, stride 2), at levels 0 to D-2:
      ``2**(D-1) - 1``;
    * decoder convolutions, levels D-2 to 0: ``n (k-1) (2**(D-1) - 1)``;
    * nearest-neighbour upsampling, 1x1x1 shortcuts and the 1x1x1 output
      layer add nothing.

    so ``RF = 1 + n (k-1) (2**D - 1) + (n (k-1) + 1) (2**(D-1) - 1)``; for the
    default ``n = 2, k = 3`` that is ``13 * 2**(D-1) - 8``: 5, 18, 44, 96, 200
    voxels for depths 1 to 5. (The *effective* receptive field, where the
    output is sensitive in practice, is much smaller and roughly Gaussian.)

    Parameters
    ----------
    depth : int
        Number of U-Net levels, >= 1.
    convs_per_block : int
        Convolutions along the main path of each block (2 for
        :func:`build_unet`; 1 for the source article's network
        (``lessons.unet_anatomy.build_source_unet``), whose first
        convolution is thrown away).
    kernel : int
        Convolution kernel size along the axis.

    Returns
    -------
    int
        Voxels; multiply by the voxel size for mm.

    Examples
    --------
    >>> receptive_field(1), receptive_field(2), receptive_field(4)
    (5, 18, 96)
    """
    depth = check_int(depth, "depth", 1)
    n = check_int(convs_per_block, "convs_per_block", 0)
    k = check_int(kernel, "kernel", 1)
    return 1 + n * (k - 1) * (2**depth - 1) + (n * (k - 1) + 1) * (2 ** (depth - 1) - 1)


def _block_params(c_in: int, c_out: int, norm: str | None) -> int:
    # Two 3x3x3 convolutions (27 weights per input/output pair), biases only
    # without a norm; each norm has a scale and an offset per channel (batch
    # norm also a moving mean and variance, counted by count_params though not
    # trainable); a 1x1x1 projection with bias when the channel count changes.
    convs = 27 * c_in * c_out + 27 * c_out * c_out
    if norm is None:
        convs += 2 * c_out
    norms = 0 if norm is None else 2 * (4 if norm == "batch" else 2) * c_out
    proj = c_in * c_out + c_out if c_in != c_out else 0
    return convs + norms + proj


def parameter_count(base_filters: int, depth: int, in_channels: int = 1,
                    norm: str | None = "instance") -> int:
    """Number of weights of :func:`build_unet`, from the architecture alone.

    Equals ``build_unet(...).count_params()`` (which counts batch norm's moving
    statistics too) without building the model. With ``f_l = base * 2**l``:
    encoder blocks ``in_channels → f_0`` and ``f_{l-1} → f_l``, decoder blocks
    ``f_{l+1} + f_l → f_l`` (upsampled features concatenated with the skip),
    and the output layer's ``f_0 + 1``. Each block with ``c_in → c_out`` has
    ``27 c_in c_out + 27 c_out²`` convolution weights, ``4 c_out`` norm weights
    (8 for batch norm; without a norm, ``2 c_out`` biases instead), and, when
    ``c_in != c_out``, a projection of ``c_in c_out + c_out``. Dropout, pooling
    and upsampling have no weights.

    Parameters
    ----------
    base_filters, depth : int
        As in :func:`build_unet`.
    in_channels : int
        Channels of the input volume.
    norm : {"instance", "group", "batch", None}
        As in :func:`build_unet`; "instance" and "group" have the same count.

    Returns
    -------
    int

    Examples
    --------
    >>> parameter_count(16, 4)
    1487537
    """
    base_filters = check_int(base_filters, "base_filters", 1)
    depth = check_int(depth, "depth", 1)
    in_channels = check_int(in_channels, "in_channels", 1)
    norm = check_choice(norm, "norm", NORMS)
    filters = [base_filters * 2**level for level in range(depth)]
    total = 0
    for level, f in enumerate(filters):
        total += _block_params(in_channels if level == 0 else filters[level - 1], f, norm)
    for level in range(depth - 1):
        total += _block_params(filters[level + 1] + filters[level], filters[level], norm)
    return total + filters[0] + 1


def describe_model(model: keras.Model, spacing_mm: float | None = None) -> dict:
    """The numbers the book quotes about a model from this module.

    Depth and base filters are read back from the layer names (``encL_conv2``
    and its filter count), so this works on a model loaded from a ``.keras``
    file as well as on a freshly built one.

    Parameters
    ----------
    model : keras.Model
        Built by :func:`build_unet` or ``lessons.unet_anatomy.build_source_unet`` (or loaded
        from one).
    spacing_mm : float, optional
        Voxel size in mm, to give the receptive field in mm.

    Returns
    -------
    dict
        ``parameters`` (int, all weights), ``trainable`` (int),
        ``depth`` (int), ``base_filters`` (int), ``receptive_field_vox`` (int,
        along one axis; for the source network, one convolution per block),
        ``receptive_field_mm`` (float or None), ``input_shape`` (tuple
        ``(X, Y, Z, channels)``).

    Raises
    ------
    InvalidArgumentError
        The model has no ``enc0_conv2`` layer (it was not built here).

    Examples
    --------
    A 16^3 network with two levels (one pooling) and 4 base filters:

    >>> net = build_unet((16, 16, 16, 1), base_filters=4, depth=2)
    >>> facts = describe_model(net, spacing_mm=2.0)
    >>> facts["parameters"] == parameter_count(4, 2), facts["depth"], facts["base_filters"]
    (True, 2, 4)
    >>> facts["receptive_field_vox"], facts["receptive_field_mm"], facts["input_shape"]
    (18, 36.0, (16, 16, 16, 1))
    """
    levels = [int(m.group(1)) for layer in model.layers
              if (m := re.fullmatch(r"enc(\d+)_conv2", layer.name))]
    if 0 not in levels:
        raise InvalidArgumentError("model", f"{model.name!r} was not built by "
                                   "skullstrip_lib.model (it has no 'enc0_conv2' layer)")
    depth = max(levels) + 1
    # The source network's conv1 is not in the graph: one convolution per block.
    has_conv1 = any(layer.name == "enc0_conv1" for layer in model.layers)
    rf = receptive_field(depth, convs_per_block=2 if has_conv1 else 1)
    return {
        "parameters": int(model.count_params()),
        "trainable": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        "depth": depth,
        "base_filters": int(model.get_layer("enc0_conv2").filters),
        "receptive_field_vox": rf,
        "receptive_field_mm": None if spacing_mm is None else float(rf * spacing_mm),
        "input_shape": tuple(model.input_shape[1:]),
    }


# --------------------------------------------------------------------------- ONNX
def export_onnx(model: keras.Model, path: str | PathLike, *, atol: float = 1e-4,
                seed: int = 0) -> Path:
    """Export ``model`` to ONNX and check ONNX Runtime gives the same output.

    Keras 3 exports through ``tf2onnx`` (TensorFlow backend) and needs the
    model to have been called once, so it is called on zeros first. The batch
    axis stays dynamic; the spatial axes are fixed to the model's input shape.
    The file is then run in ONNX Runtime on a random input and compared with
    Keras's prediction.

    Parameters
    ----------
    model : keras.Model
        A float32 model (mixed-precision models are refused by the exporter:
        rebuild under the float32 policy and copy the weights).
    path : str or path-like
        The ``.onnx`` file to write; its folder is created.
    atol : float
        Largest absolute difference allowed between the two outputs. 1e-4 holds
        on small grids (32³: about 1e-6). On the full model grid, instance and
        group normalisation average over 10⁵-10⁶ voxels in float32, and ONNX
        Runtime's ``ReduceMean`` sums in a different (less accurate) order than
        TensorFlow: expect differences of a few 1e-4 to a few 1e-3 in the
        probabilities there, and pass ``atol=1e-2``. (Without normalisation the
        two agree to about 1e-7 at any size.)
    seed : int
        Seed of the random test input.

    Returns
    -------
    pathlib.Path
        ``path``, the ONNX file written.

    Raises
    ------
    InvalidArgumentError
        The model does not compute in float32.
    RuntimeError
        ONNX Runtime's output differs from Keras's by more than ``atol``.
    """
    import onnxruntime as ort

    if any(layer.compute_dtype != "float32" for layer in model.layers):
        raise InvalidArgumentError("model", "must compute in float32 for ONNX export; this one "
                                            "uses mixed precision")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (1, *model.input_shape[1:])
    model(np.zeros(shape, np.float32), training=False)  # the exporter needs a called model
    model.export(str(path), format="onnx", verbose=False)

    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    diff = float(np.max(np.abs(got - expected)))
    if got.shape != expected.shape or not diff <= atol:
        raise RuntimeError(
            f"{path}: ONNX Runtime output differs from Keras's by {diff:.3g} (> atol {atol:g}), "
            f"shapes {got.shape} and {expected.shape}; on large grids float32 normalisation "
            "statistics differ by about 1e-3 between the two, see export_onnx's atol")
    return path


# --------------------------------------------------------------------------- looking inside


def training_memory(model: keras.Model, batch_size: int = 1, *,
                    optimizer_slots: int = 2) -> dict[str, int]:
    """A back-of-the-envelope estimate of the memory a training step needs, in bytes.

    * **weights**: every weight, at its variable's dtype (float32 also under
      mixed precision, where Keras keeps float32 master weights);
    * **gradients**: one per trainable weight, same size;
    * **optimizer**: ``optimizer_slots`` values per trainable weight (Adam keeps
      two moments);
    * **activations**: the output of every layer for ``batch_size`` volumes, at
      the layer's compute dtype (2 bytes under ``mixed_float16``, 4 in
      float32), input included. Backpropagation needs them, so they are kept
      from the forward pass until the backward pass has used them. Under a
      16-bit policy a ``GroupNormalization`` layer (instance and group norm)
      also keeps a float32 copy of its input (Keras computes its statistics
      in float32 to avoid overflow, and the backward pass needs that copy):
      4 more bytes per input value, counted here too.

    It is a lower bound of what a framework really uses: the gradients with
    respect to the activations during the backward pass, convolution
    workspaces, copies made by casts and the allocator's slack come on top.
    What it gets right is the scaling: activations grow linearly with the batch
    and with the number of voxels, and at 3D sizes they dominate everything
    else.

    Parameters
    ----------
    model : keras.Model
        Built with its real input shape (building does not allocate activations).
    batch_size : int
        Volumes per step.
    optimizer_slots : int
        Values the optimizer keeps per weight: 2 for Adam, 1 for SGD with
        momentum, 0 for plain SGD.

    Returns
    -------
    dict
        ``weights``, ``gradients``, ``optimizer``, ``activations`` and
        ``total``, all int, bytes.

    Examples
    --------
    >>> m = build_unet((16, 16, 16, 1), base_filters=2, depth=1, dropout=0.0, norm=None)
    >>> training_memory(m)["weights"] == 4 * m.count_params()
    True
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    slots = check_int(optimizer_slots, "optimizer_slots", 0)

    def nbytes(variable) -> int:
        return math.prod(variable.shape) * np.dtype(variable.dtype).itemsize

    weights = sum(nbytes(w) for w in model.weights)
    trainable = sum(nbytes(w) for w in model.trainable_weights)
    activations = 0
    for layer in model.layers:
        dtype = "float32" if isinstance(layer, keras.layers.InputLayer) else layer.compute_dtype
        for tensor in keras.tree.flatten(layer.output):
            activations += math.prod(tensor.shape[1:]) * np.dtype(dtype).itemsize
        if isinstance(layer, keras.layers.GroupNormalization) and dtype != "float32":
            # Its input upcast to float32 (GroupNormalization._apply_normalization).
            for tensor in keras.tree.flatten(layer.input):
                activations += math.prod(tensor.shape[1:]) * 4
    activations *= batch_size
    out = {"weights": weights, "gradients": trainable, "optimizer": slots * trainable,
           "activations": activations}
    out["total"] = sum(out.values())
    return out
