"""Where a run trains and how large its batch is: devices, GPU memory, steps an epoch.

:func:`check_device` refuses a run the machine cannot train (the ``full``
profile without a GPU) before anything is written or prepared. With
``auto_batch`` the batch is sized to the GPU's free memory
(:func:`gpu_free_bytes`, read from ``nvidia-smi``, and :func:`fit_batch_size`,
from :func:`skullstrip_lib.model.training_memory`'s estimate times
:data:`MEMORY_MARGIN`); :func:`epoch_steps` keeps an epoch's volumes when the
batch is smaller than configured.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Sequence

from ..errors import DeviceError, InvalidArgumentError
from ..validate import check_int, check_number
from .config import TrainConfig, resolve_config  # noqa: F401 (resolve_config: the Examples)

__all__ = [
    "GPU_PROFILES",
    "MEMORY_MARGIN",
    "check_device",
    "epoch_steps",
    "fit_batch_size",
    "gpu_free_bytes",
]


GPU_PROFILES = ("full",)
"""Profiles too large for a CPU: :func:`check_device` refuses them without a GPU."""


MEMORY_MARGIN = 2.0
"""How many times :func:`skullstrip_lib.model.training_memory`'s estimate a step may use.

The estimate counts the layer outputs kept for the backward pass; a framework
adds the activations' gradients, convolution workspaces and allocator slack.
On 2 CPU cores (TensorFlow 2.21) one step of the full network (16 filters,
depth 4) at 48x64x80 peaked at 1.1-1.3 times the estimate, and at 1.5-2.1
times with XLA, which Keras uses on a single GPU. A margin of 2 covers that;
the out-of-memory fallback of :func:`train` catches the rest.
"""


NO_GPU = ("no GPU: the {profile} profile needs one (on Colab: Runtime > Change runtime type > "
          "GPU); pass allow_cpu=True / --allow-cpu to train on the CPU anyway, slowly")


def _device_kind(name: str) -> str:
    import tensorflow as tf

    return tf.DeviceSpec.from_string(name).device_type


def _named_devices(names: Sequence[str]) -> list[str]:
    """``names`` as TensorFlow's logical device names; unknown ones are a :class:`DeviceError`."""
    import tensorflow as tf

    if isinstance(names, str) or not names:
        raise DeviceError(f"devices: give a list of devices such as ['/gpu:0', '/gpu:1'], "
                          f"not {names!r}")
    have = {}
    for device in tf.config.list_logical_devices():
        spec = tf.DeviceSpec.from_string(device.name)
        key = (spec.device_type, spec.device_index)
        have[key] = f"/device:{spec.device_type}:{spec.device_index}"
    found = []
    for name in names:
        try:
            spec = tf.DeviceSpec.from_string(str(name))
        except ValueError:
            spec = None
        key = (spec.device_type, spec.device_index) if spec is not None else None
        if key not in have:
            raise DeviceError(f"devices: {name!r} is not a device here (this machine has "
                              f"{', '.join(sorted(have.values()))})")
        found.append(have[key])
    if len(set(found)) < len(found):
        raise DeviceError(f"devices: {', '.join(map(str, names))} names a device twice")
    if len({_device_kind(d) for d in found}) > 1:
        raise DeviceError(f"devices: {', '.join(found)} mixes kinds of device (all GPUs or "
                          f"all CPUs)")
    return found


def check_device(config: TrainConfig, *, allow_cpu: bool = False) -> list[str]:
    """Check that this machine can train ``config``; return the devices it will train on.

    :func:`train` calls it before it writes anything or prepares data; a
    notebook calls it before :func:`prepare_data`, which takes many minutes
    on NFBS, so that a run without the device it needs fails at once.

    * A profile of :data:`GPU_PROFILES` (``full``) needs a GPU, unless
      ``allow_cpu``.
    * ``config.devices`` must name devices of this machine (one kind).
    * With several devices, ``config.batch_size`` must be a multiple of their
      number (every device gets the same share of a batch).

    With ``config.devices`` None only the physical devices are listed, which
    does not start TensorFlow's GPU runtime; named devices are checked against
    the logical ones, which does (logical devices must be configured before).

    Parameters
    ----------
    config : TrainConfig
        What to train.
    allow_cpu : bool
        Train a GPU profile on the CPU anyway (a rehearsal with small settings,
        or a patient user).

    Returns
    -------
    list of str
        The devices, e.g. ``['/device:GPU:0']``; ``['/device:CPU:0']`` without
        a GPU.

    Raises
    ------
    DeviceError
        No GPU for a GPU profile, an unknown device, or a batch that does not
        split evenly between the devices.

    Examples
    --------
    >>> check_device(resolve_config("sample", devices=["/cpu:0"]))
    ['/device:CPU:0']
    >>> check_device(resolve_config("full", devices=["/cpu:0"]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.DeviceError: /device:CPU:0 is not a GPU: the full profile needs one; ...
    >>> check_device(resolve_config("full", devices=["/cpu:0"]), allow_cpu=True)
    ['/device:CPU:0']
    """
    import tensorflow as tf

    if config.devices is None:
        gpus = tf.config.list_physical_devices("GPU")
        devices = [f"/device:GPU:{i}" for i in range(len(gpus))] or ["/device:CPU:0"]
    else:
        devices = _named_devices(config.devices)
    if config.profile in GPU_PROFILES and _device_kind(devices[0]) != "GPU" and not allow_cpu:
        if config.devices is None:
            raise DeviceError(NO_GPU.format(profile=config.profile))
        raise DeviceError(f"{', '.join(devices)} is not a GPU: the {config.profile} profile "
                          f"needs one; pass allow_cpu=True / --allow-cpu to train on the CPU "
                          f"anyway, slowly")
    if len(devices) > 1 and config.batch_size % len(devices):
        raise DeviceError(f"batch_size {config.batch_size} does not split evenly over "
                          f"{len(devices)} devices ({', '.join(devices)}): use a multiple "
                          f"of {len(devices)}")
    return devices


def _strategy_and_precision(config: TrainConfig, devices: list[str]):
    import tensorflow as tf

    on_gpu = _device_kind(devices[0]) == "GPU"
    mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and on_gpu)
    if len(devices) > 1:
        # Several devices: copy the model to each and split every batch between them.
        strategy = tf.distribute.MirroredStrategy(devices)
    elif config.devices is not None:
        strategy = tf.distribute.OneDeviceStrategy(devices[0])
    else:
        strategy = tf.distribute.get_strategy()
    return strategy, mixed


def gpu_free_bytes(total_bytes: int, used_bytes: int, tf_in_use_bytes: int, *,
                   limit_bytes: int | None = None, pool_reserved: bool = False) -> int:
    """The memory a fit in this process can still use on one GPU, in bytes.

    TensorFlow normally reserves a pool of nearly all of a GPU's free memory at
    its first operation there (unless memory growth is on, or a memory limit
    is configured) and hands it out itself. ``nvidia-smi`` counts the whole
    pool as used. So:

    * with a configured limit, the pool is the limit: ``limit - in use``;
    * with a reserved pool of unknown size, the larger of ``total - used``
      (the pool is small) and ``used - in use`` (the pool is everything
      ``nvidia-smi`` counts as used: this assumes that no other process held
      memory when TensorFlow started, true of a Colab runtime; a guess too
      high by what others hold is caught by :func:`train`'s out-of-memory
      fallback);
    * with no pool reserved (memory growth, the asynchronous allocator, no GPU
      operation yet), what ``nvidia-smi`` calls free: ``total - used``.

    Parameters
    ----------
    total_bytes, used_bytes : int
        The GPU's memory and the memory in use, as ``nvidia-smi`` reports
        them (all processes), bytes.
    tf_in_use_bytes : int
        What TensorFlow in this process has handed out
        (``tf.config.experimental.get_memory_info(...)["current"]``), bytes.
    limit_bytes : int or None
        A memory limit configured for TensorFlow on this GPU, bytes.
    pool_reserved : bool
        Whether TensorFlow has reserved its pool (no memory growth, and it has
        allocated on the GPU).

    Returns
    -------
    int
        Free bytes, at least 0.

    Examples
    --------
    A 16 GB GPU before TensorFlow's first operation there, and after it (a pool
    of 15.5 GB, the model's weights 0.5 GB of it):

    >>> gpu_free_bytes(16 * 10**9, 10**9, 0)
    15000000000
    >>> gpu_free_bytes(16 * 10**9, 15_500_000_000, 500_000_000, pool_reserved=True)
    15000000000
    >>> gpu_free_bytes(16 * 10**9, 5 * 10**9, 500_000_000, limit_bytes=4 * 10**9)
    3500000000
    """
    if limit_bytes is not None:
        free = limit_bytes - tf_in_use_bytes
    elif pool_reserved:
        free = max(total_bytes - used_bytes, used_bytes - tf_in_use_bytes)
    else:
        free = total_bytes - used_bytes
    return max(int(free), 0)


def _nvidia_smi() -> list[tuple[int, str, int, int]] | None:
    """(index, uuid, total bytes, used bytes) of every GPU; None when nvidia-smi fails."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,memory.total,memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        rows = []
        for line in out.strip().splitlines():
            index, uuid, total, used = (part.strip() for part in line.split(","))
            rows.append((int(index), uuid, int(total) * 2**20, int(used) * 2**20))  # MiB
        return rows
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _visible(rows: list[tuple[int, str, int, int]]) -> list[tuple[int, str, int, int]] | None:
    """The rows of the GPUs TensorFlow sees, in its order (``CUDA_VISIBLE_DEVICES``)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return rows
    chosen = []
    for token in filter(None, (t.strip() for t in visible.split(","))):
        match = [r for r in rows if str(r[0]) == token or r[1].startswith(token)]
        if len(match) != 1:
            return None  # a MIG slice, or a name nvidia-smi does not list
        chosen.append(match[0])
    return chosen


def _device_free_bytes(devices: list[str]) -> tuple[int | None, str]:
    """The least free memory over the GPUs in ``devices``, bytes, or None and why not.

    One logical device per GPU is assumed, numbered as TensorFlow numbers
    the visible GPUs.
    """
    import tensorflow as tf

    if _device_kind(devices[0]) != "GPU":
        return None, "no GPU to size it for"
    physical = tf.config.list_physical_devices("GPU")
    rows = _nvidia_smi()
    rows = _visible(rows) if rows is not None else None
    growth_everywhere = (os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").lower() == "true"
                         or os.environ.get("TF_GPU_ALLOCATOR") == "cuda_malloc_async")
    free = []
    for device in devices:
        i = tf.DeviceSpec.from_string(device).device_index
        if i >= len(physical):
            return None, f"{device} is not one GPU (several logical devices per GPU)"
        info = tf.config.experimental.get_memory_info(f"GPU:{i}")
        limits = [c.memory_limit for c in (tf.config.get_logical_device_configuration(physical[i])
                                           or []) if c.memory_limit]
        if limits:  # a configured pool, in MiB
            free.append(gpu_free_bytes(0, 0, info["current"], limit_bytes=limits[0] * 2**20))
            continue
        if rows is None or i >= len(rows):
            return None, f"cannot read the memory of {device} (nvidia-smi missing or failed)"
        _, _, total, used = rows[i]
        growth = growth_everywhere or tf.config.experimental.get_memory_growth(physical[i])
        free.append(gpu_free_bytes(total, used, info["current"],
                                   pool_reserved=not growth and info["peak"] > 0))
    return min(free), ""


def fit_batch_size(free_bytes: float, per_volume_bytes: float, *, cap: int,
                   margin: float = MEMORY_MARGIN, fixed_bytes: float = 0,
                   replicas: int = 1) -> int:
    """The largest batch whose estimated training memory, times a margin, fits in free memory.

    Each device holds the weights, their gradients and the optimizer's state
    (``fixed_bytes``) and the activations of its share ``b`` of the batch;
    ``b`` is the largest with ``margin * (fixed_bytes + b * per_volume_bytes)
    <= free_bytes``. The batch is ``b * replicas``, at most ``cap``.

    Parameters
    ----------
    free_bytes : float
        Free memory of the device with the least, bytes (:func:`gpu_free_bytes`).
    per_volume_bytes : float
        Training activations of one volume, bytes
        (``training_memory(model, 1)["activations"]``).
    cap : int
        The most volumes a step may hold (the configured batch size), a
        multiple of ``replicas``.
    margin : float
        Factor on the estimate, at least 1 (:data:`MEMORY_MARGIN`).
    fixed_bytes : float
        Memory that does not grow with the batch, bytes (weights, gradients,
        optimizer state).
    replicas : int
        Devices the batch is split between.

    Returns
    -------
    int
        The global batch, a multiple of ``replicas``; 0 when not even one
        volume per device fits.

    Examples
    --------
    15 GB free, 1.8 GB of activations a volume and a margin of 2: three
    volumes fit (10.8 GB), four do not (14.4 GB plus the weights' 0.8 GB):

    >>> fit_batch_size(15e9, 1.8e9, cap=4, fixed_bytes=0.4e9)
    3
    >>> fit_batch_size(80e9, 1.8e9, cap=4, fixed_bytes=0.4e9)  # capped
    4
    >>> fit_batch_size(80e9, 1.8e9, cap=8, fixed_bytes=0.4e9, replicas=2)  # 2 GPUs
    8
    >>> fit_batch_size(3e9, 1.8e9, cap=4)
    0
    """
    per_volume_bytes = check_number(per_volume_bytes, "per_volume_bytes", minimum=0,
                                    open_minimum=True)
    margin = check_number(margin, "margin", minimum=1)
    replicas = check_int(replicas, "replicas", 1)
    cap = check_int(cap, "cap", 1)
    if cap % replicas:
        raise InvalidArgumentError("cap", f"must be a multiple of replicas ({replicas}), got {cap}")
    per_device = math.floor((free_bytes / margin - fixed_bytes) / per_volume_bytes)
    return max(0, min(per_device, cap // replicas)) * replicas


def _size(n_bytes: float) -> str:
    """Bytes in words: ``'12 MB'``, ``'15.0 GB'``."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def _choose_batch(config: TrainConfig, model, devices: list[str],
                  replicas: int) -> tuple[int, dict]:
    """The first attempt's batch, and how it was chosen (for ``summary.json``)."""
    choice = {"configured": config.batch_size, "auto_batch": config.auto_batch,
              "chosen_by": "config"}
    if not config.auto_batch:
        return config.batch_size, choice
    free, why_not = _device_free_bytes(devices)
    if free is None:
        choice["chosen_by"] = f"config ({why_not})"
        if _device_kind(devices[0]) == "GPU":
            print(f"batch {config.batch_size} as configured: {why_not}")
        return config.batch_size, choice
    from ..model import training_memory

    memory = training_memory(model, 1)
    per_volume = memory["activations"]
    fixed = memory["total"] - per_volume
    batch = fit_batch_size(free, per_volume, cap=config.batch_size, margin=MEMORY_MARGIN,
                           fixed_bytes=fixed, replicas=replicas)
    where = ", ".join(devices)
    if batch == 0:
        raise DeviceError(f"{_size(free)} free on {where}, and one "
                          f"{'x'.join(map(str, config.preprocess.shape))} volume needs about "
                          f"{_size(MEMORY_MARGIN * (fixed + per_volume))} to train (estimate x "
                          f"{MEMORY_MARGIN:g}): free the GPU, use a smaller grid or fewer "
                          f"base_filters, or set auto_batch=False (--fixed-batch) to try anyway")
    print(f"batch {batch} (at most {config.batch_size}): {_size(free)} free on {where}, "
          f"about {_size(MEMORY_MARGIN * per_volume)} a volume (estimate x {MEMORY_MARGIN:g})")
    choice.update(chosen_by="gpu memory", free_bytes=int(free), per_volume_bytes=per_volume,
                  fixed_bytes=fixed, margin=MEMORY_MARGIN)
    return batch, choice


def epoch_steps(config: TrainConfig, batch: int) -> int:
    """Steps of an epoch at ``batch`` volumes a step: as many volumes as the configuration's.

    ``config.steps_per_epoch`` steps of ``config.batch_size`` volumes make an
    epoch. When the batch is smaller (chosen for the GPU's memory, or halved
    after running out of it) an epoch takes more steps, so that it still sees
    as many volumes (rounded up).

    Examples
    --------
    >>> config = resolve_config("full")  # 16 steps of 4 volumes
    >>> epoch_steps(config, 4), epoch_steps(config, 2), epoch_steps(config, 3)
    (16, 32, 22)
    """
    return math.ceil(config.steps_per_epoch * config.batch_size / batch)
