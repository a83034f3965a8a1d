"""Where a run trains: every GPU under a MirroredStrategy in mixed precision, logical CPU devices standing
in for GPUs (`train.simulate_gpus`, so the GPU path runs in tests), or the CPU in float32."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .settings import TrainSettings


@dataclass(frozen=True)
class Devices:
    """Where a run trains: the distribution strategy, its devices and the dtype policy."""

    strategy: object
    gpus: int  # physical GPUs in use
    simulated_gpus: int  # logical CPU devices standing in for GPUs (settings.simulate_gpus)
    precision: str

    def describe(self) -> dict:
        return {"gpus": self.gpus, "simulated_gpus": self.simulated_gpus,
                "replicas": self.strategy.num_replicas_in_sync, "precision": self.precision}  # fmt: skip


def logical_cpus(n: int) -> list[str]:
    """`n` logical CPU devices for a MirroredStrategy to mirror over, as it would over n GPUs."""
    import tensorflow as tf

    try:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:  # the runtime has started (training in a process that already ran TensorFlow)
        pass
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(cpus) < n:
        raise RuntimeError(
            f"train.simulate_gpus: {n} needs {n} logical CPU devices, but TensorFlow started in this process "
            f"with {len(cpus)}; set them up before TensorFlow runs (tf.config.set_logical_device_configuration)"
        )
    return cpus[:n]


def devices_for(settings: TrainSettings) -> Devices:
    """The GPU path (a MirroredStrategy over every GPU, mixed precision unless `settings.precision` says
    otherwise) where there are GPUs or `settings.simulate_gpus` asks for it on the CPU; else the CPU's
    default strategy in float32. Sets Keras's global dtype policy (the train step restores it)."""
    import keras
    import tensorflow as tf

    if settings.simulate_gpus:
        gpus, mirrored = [], logical_cpus(settings.simulate_gpus)
    else:
        gpus = tf.config.list_logical_devices("GPU")
        mirrored = [d.name for d in gpus]
    precision = settings.precision
    if precision == "auto":
        precision = "mixed_float16" if mirrored else "float32"
    keras.mixed_precision.set_global_policy(precision)
    strategy = mirrored_strategy(tuple(mirrored)) if mirrored else tf.distribute.get_strategy()
    return Devices(strategy, len(gpus), settings.simulate_gpus, precision)


@functools.cache
def mirrored_strategy(devices: tuple[str, ...]):
    """One MirroredStrategy per device set and process: a second one numbers its collective ops afresh,
    and its first all-reduce then meets the first one's (a shape-mismatch abort, training twice in a process)."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(devices))
