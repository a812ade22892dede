"""Training losses and Keras metrics for brain masks.

The losses are *soft*: they take the network's probabilities as they are, so
they have gradients. The metrics are *hard*: they threshold the probabilities
into a mask first and report what :mod:`skullstrip_lib.metrics` would report
on that mask, so the numbers printed during training are the ones the book
evaluates with.

Everything is **volumetric per sample**: each volume's overlap is computed
over all its voxels, then averaged over volumes. (The source article computed
its score slice by slice, which gives the small slices at the top of the head
as much weight as the large ones in the middle.) Everything is computed in
float32, even when the network's output is float16 under mixed precision.

All of them are registered with Keras under the package name ``skullstrip``,
so a model compiled with them can be saved and loaded again (import this
module before ``keras.models.load_model``).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops

from ._docs import fill_doc
from .validate import check_choice, check_number

__all__ = ["DiceScore", "IoUScore", "dice_bce_loss", "get_loss", "soft_dice_loss"]


def _as_float32(y_true, y_pred):
    return ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")


def _sample_axes(x) -> tuple[int, ...]:
    # Every axis but the batch axis: (1, 2, 3, 4) for (batch, X, Y, Z, 1).
    return tuple(range(1, len(x.shape)))


@keras.saving.register_keras_serializable(package="skullstrip")
def soft_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """One minus the soft Dice coefficient, per sample.

    ``1 - (2 Σ t p + s) / (Σ t + Σ p + s)``, the sums over all voxels of one
    volume. ``smooth`` (``s``) keeps the ratio defined for two empty masks
    (it is then 1: a perfect score) and softens the gradient on near-empty
    ones; at the size of a brain (10⁵ voxels or more) it changes nothing else.

    Parameters
    ----------
    y_true : tensor
        Reference mask, shape ``(batch, X, Y, Z, 1)``, values in {0, 1}.
    y_pred : tensor
        Probabilities, same shape, in [0, 1]; any float dtype.
    smooth : float
        Added to numerator and denominator, in voxels.

    Returns
    -------
    tensor of float32
        Shape ``(batch,)``, each in [0, 1]; Keras averages it over the batch.

    Examples
    --------
    A 3x3x3 reference of 18 voxels, predicted exactly, then with 9 voxels of
    0.5 outside it (Dice ``(36 + 1) / (18 + 22.5 + 1)``):

    >>> import numpy as np
    >>> ref = np.zeros((1, 3, 3, 3, 1), "float32")
    >>> ref[0, :2] = 1
    >>> round(float(soft_dice_loss(ref, ref)[0]), 4)
    0.0
    >>> prob = ref.copy()
    >>> prob[0, 2] = 0.5
    >>> round(float(soft_dice_loss(ref, prob)[0]), 4)
    0.1084
    """
    y_true, y_pred = _as_float32(y_true, y_pred)
    axes = _sample_axes(y_pred)
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


@keras.saving.register_keras_serializable(package="skullstrip")
def dice_bce_loss(y_true, y_pred, bce_weight: float = 1.0, smooth: float = 1.0):
    """Soft Dice loss plus weighted binary cross-entropy, per sample.

    Dice looks at the whole mask and is insensitive to the brain being a small
    part of the volume; cross-entropy gives every voxel a well-behaved gradient
    from the first step, when Dice's is weak and noisy. The sum trains faster
    and more stably than either alone.

    Parameters
    ----------
    y_true, y_pred : tensor
        As in :func:`soft_dice_loss`.
    bce_weight : float
        Weight of the cross-entropy term (mean over the voxels of a volume).
    smooth : float
        Passed to :func:`soft_dice_loss`.

    Returns
    -------
    tensor of float32
        Shape ``(batch,)``.

    Examples
    --------
    A perfect, certain prediction: no Dice loss and almost no cross-entropy
    (Keras clips probabilities to [1e-7, 1 - 1e-7]):

    >>> import numpy as np
    >>> ref = np.zeros((1, 3, 3, 3, 1), "float32")
    >>> ref[0, :2] = 1
    >>> round(float(dice_bce_loss(ref, ref)[0]), 4)
    0.0
    >>> prob = np.full_like(ref, 0.5)  # undecided everywhere: the cross-entropy is ln 2
    >>> round(float(dice_bce_loss(ref, prob, bce_weight=1.0)[0] - soft_dice_loss(ref, prob)[0]), 4)
    0.6931
    """
    y_true, y_pred = _as_float32(y_true, y_pred)
    # keras.ops.binary_crossentropy clips probabilities away from 0 and 1.
    bce = ops.mean(ops.binary_crossentropy(y_true, y_pred), axis=_sample_axes(y_pred))
    return soft_dice_loss(y_true, y_pred, smooth=smooth) + bce_weight * bce


_LOSSES: dict[str, Callable] = {"dice": soft_dice_loss, "dice_bce": dice_bce_loss}


def get_loss(name: str) -> Callable:
    """The loss function called ``name``: ``"dice"`` or ``"dice_bce"``.

    Parameters
    ----------
    name : {"dice", "dice_bce"}
        :func:`soft_dice_loss` or :func:`dice_bce_loss`.

    Returns
    -------
    callable
        ``loss(y_true, y_pred)``, as Keras's ``compile(loss=...)`` takes it.

    Raises
    ------
    InvalidArgumentError
        Any other name (a :class:`ValueError`); the message lists the known ones.

    Examples
    --------
    >>> get_loss("dice").__name__
    'soft_dice_loss'
    >>> get_loss("l2")
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: loss must be one of 'dice' or 'dice_bce', got 'l2'
    """
    return _LOSSES[check_choice(name, "loss", _LOSSES)]


class _OverlapScore(keras.metrics.Metric):
    """Mean over samples of an overlap score of thresholded masks (base class)."""

    _default_name: str  # the name in Keras's logs unless one is given

    def __init__(self, threshold: float = 0.5, name: str | None = None, dtype=None) -> None:
        super().__init__(name=name or self._default_name, dtype=dtype)
        self.threshold = check_number(threshold, "threshold", minimum=0, maximum=1)
        # float32 whatever the dtype policy: sums of up to 10^6 voxels overflow float16.
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32",
                                       name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32",
                                       name="count")

    def _score(self, intersection, pred_sum, true_sum):  # pragma: no cover - abstract
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch; ``sample_weight``, if given, weighs each sample (shape ``(batch,)``)."""
        y_true, y_pred = _as_float32(y_true, y_pred)
        pred = ops.cast(y_pred > self.threshold, "float32")
        true = ops.cast(y_true > 0.5, "float32")
        axes = _sample_axes(pred)
        score = self._score(ops.sum(pred * true, axis=axes), ops.sum(pred, axis=axes),
                            ops.sum(true, axis=axes))
        if sample_weight is None:
            weight = ops.ones_like(score)
        else:
            weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
            weight = ops.broadcast_to(weight, ops.shape(score))
        self.total.assign_add(ops.sum(score * weight))
        self.count.assign_add(ops.sum(weight))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold}


def _ratio(numerator, denominator):
    # Two empty masks (denominator 0) agree perfectly: 1, as in skullstrip_lib.metrics.
    return ops.where(denominator > 0, numerator / ops.maximum(denominator, 1.0), 1.0)


@keras.saving.register_keras_serializable(package="skullstrip")
@fill_doc
class DiceScore(_OverlapScore):
    """Dice of the thresholded prediction, per volume, averaged over volumes.

    Agrees with :func:`skullstrip_lib.metrics.dice` on each volume, including
    its convention that two empty masks score 1.

    Parameters
    ----------
    %(score_params)s

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.zeros((2, 3, 3, 3, 1), "float32")
    >>> ref[0, :2] = 1  # 18 voxels; the second volume is empty
    >>> prob = ref.copy()
    >>> prob[0, 2] = 0.7  # 9 more voxels predicted: Dice 36 / 45
    >>> score = DiceScore()
    >>> score.update_state(ref, prob)
    >>> round(float(score.result()), 4)  # (0.8 + 1) / 2, the empty pair scoring 1
    0.9
    """

    _default_name = "dice"

    def _score(self, intersection, pred_sum, true_sum):
        return _ratio(2.0 * intersection, pred_sum + true_sum)


@keras.saving.register_keras_serializable(package="skullstrip")
@fill_doc
class IoUScore(_OverlapScore):
    """Intersection over union of the thresholded prediction, per volume, averaged.

    Agrees with :func:`skullstrip_lib.metrics.iou` on each volume (two empty
    masks score 1).

    Parameters
    ----------
    %(score_params)s

    Examples
    --------
    Two slabs of a 3x3x3 volume against two others: 9 voxels shared, 27 in either.

    >>> import numpy as np
    >>> slabs = np.arange(3).reshape(1, 3, 1, 1, 1) * np.ones((1, 3, 3, 3, 1), "float32")
    >>> metric = IoUScore()
    >>> metric.update_state(slabs >= 1, np.where(slabs <= 1, 0.9, 0.1))
    >>> round(float(metric.result()), 4), metric.name
    (0.3333, 'iou')
    """

    _default_name = "iou"

    def _score(self, intersection, pred_sum, true_sum):
        return _ratio(intersection, pred_sum + true_sum - intersection)
