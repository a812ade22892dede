"""The U-Net taken apart: the source article's network, layer tables, footprints (chapter 6)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras
import numpy as np

from .._docs import fill_doc
from ..errors import InvalidArgumentError
from ..model import NORMS, build_unet, conv_norm, norm_layer
from ..validate import check_choice, check_int
from ..viz import pyplot


def build_source_unet(
    input_shape: Sequence[int] = (96, 128, 160, 1), base_filters: int = 16
) -> keras.Model:
    """Rebuild the source article's network, defects included.

    For the book's "what goes wrong" chapter only: do not train it for real
    use. A plain (non-residual) 4-level U-Net with max pooling, upsampling and
    skip connections, with these defects in the network itself:

    1. **The second convolution of each block reads the block input**, not the
       first convolution's output: ``conv2(x)`` where ``conv2(conv1(x))`` was
       meant. The first convolution's output is thrown away; Keras drops
       ``conv1`` from the functional graph altogether (it is in neither
       ``model.layers`` nor the parameter count). Each block is one
       convolution deep, so the network is half as deep as described and its
       receptive field much smaller (``receptive_field(4, convs_per_block=1)``
       = 52 voxels, 53 along the last axis with defect 2, against 96).
    2. **The output kernel is 1x1x2**, not 1x1x1: each output voxel mixes two
       neighbours along the last axis, and with ``"same"`` padding the result
       is shifted by half a voxel along that axis and treats its two ends
       differently.

    The article's other defects are in its training, not in the network, and
    are fixed elsewhere in the book: Adam at a learning rate of 0.1 (100 times
    the usual 1e-3; training diverges or sticks at all-background), a focal
    loss where the text says Dice, and a per-slice soft IoU reported as the
    evaluation metric (per-slice scores over-weight the small slices at the
    top of the head, and a soft score is not the thresholded mask's overlap).

    Parameters
    ----------
    input_shape : sequence of 4 int
        ``(X, Y, Z, channels)``; X, Y, Z divisible by 8.
    base_filters : int
        Channels at the first level.

    Returns
    -------
    keras.Model
        Output ``(batch, X, Y, Z, 1)``, sigmoid probabilities.

    Examples
    --------
    >>> net = build_source_unet((16, 16, 16, 1), base_filters=4)
    >>> net.count_params() == source_parameter_count(4), net.output_shape
    (True, (None, 16, 16, 16, 1))
    """
    # The book's U-Net loop (build_unet) with the article's block, no norm, no dropout; then
    # its output kernel: one version of the network, the same one chapter 8's ablation uses.
    model = build_unet(input_shape, base_filters=base_filters, depth=4, dropout=0.0, norm=None,
                       name="source_unet", block=source_article_block)
    return with_output_kernel(model, (1, 1, 2))  # DEFECT 2


def miswired_convs(x, filters: int, norm: str | None, prefix: str):
    """The source article's two convolutions, both reading ``x`` (its defect 1).

    :func:`~skullstrip_lib.model.conv_norm` twice, as in the book's block, but
    the second reads the block's input instead of the first one's output: the
    first convolution (and its norm) is computed for nothing, so Keras leaves it
    out of the graph and the block is one convolution deep. Both the article's
    network (:func:`source_article_block`) and chapter 8's ablation
    (:func:`skullstrip_lib.lessons.ablation.source_block`) are built on it.

    Returns
    -------
    tensor
        The second convolution's (normalised) output, before any activation.
    """
    conv_norm(x, filters, norm, prefix, 1)  # DEFECT: its output is never read
    return conv_norm(x, filters, norm, prefix, 2)


def source_article_block(x, filters: int, norm: str | None, prefix: str):
    """The article's plain (non-residual) block: :func:`miswired_convs`, then a ReLU.

    A block for :func:`~skullstrip_lib.model.build_unet`'s ``block`` argument.

    Examples
    --------
    >>> from skullstrip_lib.model import build_unet
    >>> model = build_unet((16, 16, 16, 1), base_filters=4, depth=2, norm=None,
    ...                    block=source_article_block)
    >>> [layer.name for layer in model.layers if layer.name.startswith("enc0_")][:2]
    ['enc0_conv2', 'enc0_relu']
    """
    return keras.layers.ReLU(name=f"{prefix}_relu")(miswired_convs(x, filters, norm, prefix))


def with_output_kernel(model: keras.Model, kernel: Sequence[int]) -> keras.Model:
    """The same network with its output convolution (layer ``"mask"``) of another size.

    Parameters
    ----------
    model : keras.Model
        Built by :func:`~skullstrip_lib.model.build_unet`.
    kernel : sequence of 3 int
        E.g. ``(1, 1, 2)``, the source article's.

    Returns
    -------
    keras.Model
        The layers up to the output are ``model``'s own (shared, not copied);
        the new output layer is new, sigmoid, float32, ``"same"`` padding.

    Examples
    --------
    >>> from skullstrip_lib.model import build_unet
    >>> model = with_output_kernel(build_unet((16, 16, 16, 1), base_filters=4, depth=2), (1, 1, 2))
    >>> tuple(model.get_layer("mask").kernel.shape)
    (1, 1, 2, 4, 1)
    """
    features = model.get_layer("mask").input
    out = keras.layers.Conv3D(1, tuple(kernel), padding="same", activation="sigmoid",
                              dtype="float32", name="mask")(features)
    return keras.Model(model.input, out, name=model.name)


def layer_inputs(model: keras.Model, pattern: str | None = None) -> dict[str, list[str]]:
    """Which layers' outputs each layer of a functional model reads.

    Read from the Keras graph itself (each layer's input tensors matched to the
    layer that produced them), so it shows the wiring the model really has,
    not the one its code meant to build.

    Parameters
    ----------
    model : keras.Model
        A functional model in which each layer is called once (as in this module).
    pattern : str, optional
        A regular expression; only layers whose whole name matches it are listed
        (``r".*_conv2"``: the second convolution of each block).

    Returns
    -------
    dict
        Layer name -> names of the layers it reads, in the order of its inputs
        (the input layer is named as the model's input, e.g. ``"t1w"``). Input
        layers themselves are left out.

    Examples
    --------
    >>> from skullstrip_lib.model import build_unet
    >>> model = build_unet((8, 8, 8, 1), base_filters=2, depth=2)
    >>> layer_inputs(model, r"enc0_conv\\d")
    {'enc0_conv1': ['t1w'], 'enc0_conv2': ['enc0_relu1']}
    """
    producer = {id(layer.output): layer.name for layer in model.layers}
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if pattern is not None and not re.fullmatch(pattern, layer.name):
            continue
        found[layer.name] = [producer.get(id(t), "?") for t in keras.tree.flatten(layer.input)]
    return found


def block_table(model: keras.Model):
    """One row per block of a model from this module: its grid, channels, weights, wiring.

    A *block* is every layer whose name starts with the same prefix (``enc0``,
    ``enc1``, ..., ``dec0``; the output layer ``mask`` is a block of its own).
    Works on :func:`build_unet` and :func:`build_source_unet` models alike,
    which is the point: the ``conv2_reads`` column shows the source network's
    defect.

    Parameters
    ----------
    model : keras.Model
        Built by this module (layer names ``encL_...``, ``decL_...``, ``mask``).

    Returns
    -------
    pandas.DataFrame
        Columns ``block`` (str), ``grid`` (str, ``"XxYxZ"`` voxels of the
        block's output), ``channels`` (int), ``parameters`` (int, weights of the
        block's layers, including its pooling, upsampling and concatenation,
        which have none), ``conv2_reads`` (str, the layer whose output the
        block's second convolution reads; empty for ``mask``), in graph order.

    Examples
    --------
    >>> table = block_table(build_source_unet((16, 16, 16, 1), base_filters=4))
    >>> print(table[["block", "grid", "channels"]].to_string(index=False))
    block     grid  channels
     enc0 16x16x16         4
     enc1    8x8x8         8
     enc2    4x4x4        16
     enc3    2x2x2        32
     dec2    4x4x4        16
     dec1    8x8x8         8
     dec0 16x16x16         4
     mask 16x16x16         1
    """
    import pandas as pd

    wiring = layer_inputs(model, r".*_conv2")
    rows: dict[str, dict] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        prefix = layer.name.split("_")[0]
        row = rows.setdefault(prefix, {"block": prefix, "parameters": 0, "conv2_reads": ""})
        row["parameters"] += int(layer.count_params())
        if layer.name in wiring:
            row["conv2_reads"] = ", ".join(wiring[layer.name])
        if isinstance(layer, (keras.layers.MaxPooling3D, keras.layers.SpatialDropout3D)):
            continue  # the block's output is before its pooling (dropout keeps the shape)
        shape = layer.output.shape
        row["grid"] = "x".join(str(s) for s in shape[1:4])
        row["channels"] = int(shape[-1])
    columns = ["block", "grid", "channels", "parameters", "conv2_reads"]
    return pd.DataFrame(list(rows.values()))[columns]


def source_parameter_count(base_filters: int = 16, in_channels: int = 1, *,
                           as_described: bool = False) -> int:
    """Number of weights of :func:`build_source_unet`, from the architecture alone.

    The source network's blocks are plain convolutions with biases and no
    normalisation; with ``f_l = base * 2**l`` its blocks map ``c_in → f_l`` as
    in :func:`parameter_count`, and its output layer is a 1x1x2 convolution
    (``2 f_0 + 1`` weights).

    Parameters
    ----------
    base_filters : int
        Channels at the first level.
    in_channels : int
        Channels of the input volume.
    as_described : bool
        False: the network the article's code builds, where each block is one
        3x3x3 convolution (``27 c_in f + f``; the first convolution is not in the
        graph). True: the network its text describes, two convolutions in a
        row (``27 c_in f + f + 27 f² + f``).

    Returns
    -------
    int

    Examples
    --------
    >>> source_parameter_count(16), source_parameter_count(16, as_described=True)
    (726577, 1459601)
    """
    base_filters = check_int(base_filters, "base_filters", 1)
    in_channels = check_int(in_channels, "in_channels", 1)
    filters = [base_filters * 2**level for level in range(4)]

    def block(c_in: int, c_out: int) -> int:
        first = 27 * c_in * c_out + c_out
        return first + (27 * c_out * c_out + c_out if as_described else 0)

    total = sum(block(in_channels if level == 0 else filters[level - 1], f)
                for level, f in enumerate(filters))
    total += sum(block(filters[level + 1] + filters[level], filters[level]) for level in range(3))
    return total + 2 * filters[0] + 1


def conv_footprint(kernel_size: int | Sequence[int], *, padding: str = "same",
                   length: int = 9) -> tuple[tuple[int, ...], ...]:
    """Which input voxels a Keras ``Conv3D`` output voxel reads, as offsets per axis.

    Measured, not derived: a ``Conv3D`` with all-one weights and no bias is run
    on a volume of zeros with a single 1 at its centre ``c``; each output voxel
    ``p`` that is non-zero reads ``c``, at offset ``c - p``. With ``"same"``
    padding an odd kernel is centred (3: offsets -1, 0, 1), but an even one is
    not: TensorFlow pads the end of the axis, so a kernel of 2 reads offsets 0
    and 1, the voxel and its next neighbour. The output is shifted by half a
    voxel along that axis (the source article's 1x1x2 output layer).

    Parameters
    ----------
    kernel_size : int or sequence of 3 int
        As for ``keras.layers.Conv3D``.
    padding : {"same", "valid"}
        As for ``keras.layers.Conv3D``. With ``"valid"`` the output grid is
        smaller; offsets are then taken relative to ``p + (k - 1) // 2``.
    length : int
        Size of the test volume along each axis (larger than the kernel).

    Returns
    -------
    tuple of 3 tuples of int
        Sorted offsets along X, Y and Z.

    Examples
    --------
    >>> conv_footprint((1, 1, 2))
    ((0,), (0,), (0, 1))
    """
    kernel = (kernel_size,) * 3 if isinstance(kernel_size, (int, np.integer)) else tuple(
        kernel_size)
    if len(kernel) != 3 or min(kernel) < 1 or max(kernel) >= length:
        raise InvalidArgumentError("kernel_size", f"must be 3 positive sizes below length "
                                                  f"{length}, got {kernel_size!r}")
    layer = keras.layers.Conv3D(1, kernel, padding=padding, use_bias=False,
                                kernel_initializer="ones", dtype="float32")
    centre = length // 2
    x = np.zeros((1, length, length, length, 1), np.float32)
    x[0, centre, centre, centre, 0] = 1.0
    y = keras.ops.convert_to_numpy(layer(x))[0, ..., 0]
    shift = [0 if padding == "same" else (k - 1) // 2 for k in kernel]
    hit = np.argwhere(y > 0.5)
    return tuple(tuple(sorted({int(centre - p - s) for p in hit[:, a]}))
                 for a, s in zip(range(3), shift, strict=True))


def batch_dependence(norm: str | None, *, channels: int = 4, shape: Sequence[int] = (8, 8, 8),
                     seed: int = 0) -> float:
    """How much one volume's normalised output changes when the *other* volume in its batch does.

    A normalisation layer (as :func:`build_unet` builds it for ``norm``) is
    applied, in training mode, to a batch of two random volumes; then the
    second volume is replaced by another, with a different mean and scale, and
    the first volume's output is compared. Instance (and group) normalisation
    use each volume's own statistics: nothing changes. Batch normalisation
    pools the statistics over the batch: the first volume's output changes
    with its neighbour, which is noise when a batch holds one or two volumes.

    Parameters
    ----------
    norm : {"instance", "group", "batch", None}
        As in :func:`build_unet`.
    channels : int
        Channels of the test volumes.
    shape : sequence of 3 int
        Grid of the test volumes.
    seed : int
        Seed of the random volumes.

    Returns
    -------
    float
        Largest absolute change of the first volume's output (0 for none).

    Examples
    --------
    >>> batch_dependence("instance") < 1e-5 < batch_dependence("batch")
    True
    """
    norm = check_choice(norm, "norm", NORMS)
    channels = check_int(channels, "channels", 1)
    layer = norm_layer(norm, channels, "norm")
    if layer is None:
        return 0.0
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((1, *shape, channels)).astype(np.float32)
    b = rng.standard_normal((1, *shape, channels)).astype(np.float32)
    c = (3.0 * rng.standard_normal((1, *shape, channels)) + 2.0).astype(np.float32)
    first = keras.ops.convert_to_numpy(layer(np.concatenate([a, b]), training=True))[0]
    second = keras.ops.convert_to_numpy(layer(np.concatenate([a, c]), training=True))[0]
    return float(np.max(np.abs(first - second)))


@fill_doc
def plot_unet(table, *, ax=None, title: str | None = None):
    """A U-shaped diagram of a network's blocks, from :func:`block_table`.

    Encoder blocks go down the left side, decoder blocks up the right side, the
    deepest block (the bottleneck) sits at the bottom; each box gives its grid
    and channel count, and is wider the more channels it has. Solid arrows are
    the main path (max pooling down, upsampling up), dashed ones the skip
    connections.

    Parameters
    ----------
    table : pandas.DataFrame
        With columns ``block`` (``encL``, ``decL``, ``mask``), ``grid`` and
        ``channels``.
    %(plot_ax)s

    %(figure_returns)s

    Examples
    --------
    >>> fig = plot_unet(block_table(build_source_unet((16, 16, 16, 1), base_filters=4)))
    >>> len(fig.axes)
    1
    """
    import itertools

    plt = pyplot()
    rows = {r.block: r for r in table.itertuples(index=False)}
    enc = sorted(int(b[3:]) for b in rows if b.startswith("enc"))
    dec = sorted((int(b[3:]) for b in rows if b.startswith("dec")), reverse=True)
    depth = len(enc)
    step, height = 1.7, 0.75  # horizontal distance between levels; box height (level = 1)
    boxes = {f"enc{level}": (step * level, -level) for level in enc}
    boxes.update({f"dec{level}": (step * (2 * (depth - 1) - level), -level) for level in dec})
    if "mask" in rows:
        boxes["mask"] = (boxes["dec0"][0] + 1.6 if "dec0" in boxes else step, 0)
    xs = [x for x, _ in boxes.values()]
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 * (max(xs) - min(xs) + 2), 1.0 * depth + 0.6))
    else:
        fig = ax.figure
    for name, (x, y) in boxes.items():
        r = rows[name]
        w = 1.05 + 0.04 * np.log2(max(int(r.channels), 1))
        colour = {"enc": "#cfe2f3", "dec": "#d9ead3", "mas": "#f4cccc"}[name[:3]]
        ax.add_patch(plt.Rectangle((x - w / 2, y - height / 2), w, height, fc=colour, ec="k",
                                   lw=0.8))
        ax.text(x, y, f"{name}\n{r.grid}\n{int(r.channels)} ch", ha="center", va="center",
                fontsize=7.5)
    arrow = {"arrowstyle": "->", "lw": 1.0}
    path = [f"enc{level}" for level in enc] + [f"dec{level}" for level in dec]
    path += ["mask"] if "mask" in boxes else []
    for a, b in itertools.pairwise(path):
        (xa, ya), (xb, yb) = boxes[a], boxes[b]
        dy = height / 2 * np.sign(ya - yb)  # leave a box at its bottom (down) or top (up)
        if ya == yb:
            ax.annotate("", xy=(xb - 0.55, yb), xytext=(xa + 0.55, ya), arrowprops=arrow)
        else:
            ax.annotate("", xy=(xb, yb + dy), xytext=(xa, ya - dy), arrowprops=arrow)
    for level in dec:
        (xa, ya), (xb, yb) = boxes[f"enc{level}"], boxes[f"dec{level}"]
        ax.annotate("", xy=(xb - 0.6, yb), xytext=(xa + 0.6, ya),
                    arrowprops={**arrow, "ls": "--", "color": "0.45"})
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(-depth + 0.5, 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return fig
