"""The network a configuration trains, how it is compiled, and the precision it computes in."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from .config import TrainConfig

__all__ = ["build_network", "compile_for_training", "precision_policy"]


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy set to ``name`` inside the block, restored after it.

    Keras keeps the policy in a global that every layer built later reads; a
    training run that set ``mixed_float16`` and left it would make the next
    model in the same process (a notebook's, a test's) half precision too.

    Examples
    --------
    >>> import keras
    >>> with precision_policy("mixed_float16"):
    ...     inside = keras.mixed_precision.global_policy().name
    >>> inside, keras.mixed_precision.global_policy().name
    ('mixed_float16', 'float32')
    """
    import keras

    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def compile_for_training(model, config: TrainConfig, *, loss: Callable | None = None,
                         steps_per_epoch: int | None = None):
    """Compile ``model`` the way :func:`train` fits: Adam, cosine decay, Dice and IoU.

    The learning rate starts at ``config.learning_rate`` and decays along a
    cosine to 5 % of it over the run (``epochs * steps_per_epoch`` steps).

    Parameters
    ----------
    model : keras.Model
        A network with one sigmoid output.
    config : TrainConfig
        Gives the learning rate, the schedule's length and the loss.
    loss : callable, optional
        Instead of ``config.loss`` (the book's ablation trains with the source
        article's focal loss).
    steps_per_epoch : int, optional
        The steps an epoch really takes, when not ``config.steps_per_epoch``
        (a smaller batch than configured takes more: :func:`epoch_steps`).

    Returns
    -------
    keras.Model
        ``model``, compiled.
    """
    import keras

    from ..losses import DiceScore, IoUScore, get_loss

    total = config.epochs * (steps_per_epoch or config.steps_per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, total, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=loss if loss is not None else get_loss(config.loss),
                  metrics=[DiceScore(), IoUScore()])
    return model


def build_network(config: TrainConfig, *, block: Callable | None = None):
    """The U-Net a configuration trains: its grid, filters, depth, dropout and norm.

    ``block`` is passed to :func:`skullstrip_lib.model.build_unet` (its
    residual block by default; the book's ablation passes the source article's).
    """
    from ..model import build_unet

    return build_unet((*config.preprocess.shape, 1), base_filters=config.base_filters,
                      depth=config.depth, dropout=config.dropout, norm=config.norm, block=block)
