"""Training runs: data preparation, the fit itself, checkpoints, export.

A run is a folder::

    runs/NAME/
      config.yaml        the resolved configuration (profile + overrides)
      split.csv          the subject-level split of the data it trains on
      log.csv            one row per epoch (loss, Dice, IoU, validation scores, lr)
      tensorboard/       TensorBoard logs
      best.keras         the checkpoint with the best validation Dice
      last.keras         the checkpoint after the last finished epoch
      backup/            Keras' BackupAndRestore state: --resume continues from here
      export/            model.onnx + model.json, for skullstrip predict / evaluate

One idea a module:

* :mod:`~skullstrip_lib.train.config`: :class:`TrainConfig`, the profiles and
  synthetic groups, :func:`resolve_config`, :func:`read_config`;
* :mod:`~skullstrip_lib.train.prepare`: the data (synthetic heads or an NFBS
  index → the preprocessing workflow → TFRecords), :func:`prepare_data`, a step
  of its own before the fit; prepared data is cached under the data folder, in
  folders named by a hash of everything that made them, so a second run reuses
  them and a changed parameter never reuses stale data;
* :mod:`~skullstrip_lib.train.devices`: where it runs and the batch it fits;
* :mod:`~skullstrip_lib.train.network`: the U-Net a configuration builds, compiled;
* :mod:`~skullstrip_lib.train.fit`: :func:`train`, which checks the devices,
  prepares the data (or finds it made), and fits;
* :mod:`~skullstrip_lib.train.export`: :func:`export_run`, ONNX for inference.

Every public name is here too: ``from skullstrip_lib.train import train``.

Where it runs is checked first (:func:`check_device`): the ``full`` profile
stops at once without a GPU, before minutes of preprocessing, unless
``allow_cpu``. With ``auto_batch`` the batch is sized to the GPU's free memory
(:func:`gpu_free_bytes`, :func:`fit_batch_size`), and a fit that runs out of
memory all the same is retried at half the batch from its last finished epoch.
With several devices (all GPUs, or ``TrainConfig.devices``) a
``tf.distribute.MirroredStrategy`` splits every batch between them.
"""

# Each module's __all__ lists its public names; the package re-exports them all.
from . import config, devices, export, fit, network, prepare
from .config import *
from .devices import *
from .export import *
from .fit import *
from .network import *
from .prepare import *

__all__ = [*config.__all__, *devices.__all__, *export.__all__, *fit.__all__, *network.__all__,
           *prepare.__all__]
