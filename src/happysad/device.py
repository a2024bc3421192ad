"""Pick CPU or GPU before TensorFlow builds anything (``--device auto|cpu|gpu``).

Like the seed: GPU memory growth on (TensorFlow otherwise grabs all GPU memory at start-up). Training on
a GPU also uses mixed precision (float16 compute, float32 weights); every model's output layer is float32
(backbones.classifier_head) so probabilities and the loss stay in float32. Must run before the first tensor is made.
"""

from __future__ import annotations

from .errors import HappysadError, UsageError

DEVICES = ("auto", "cpu", "gpu")


def configure(device: str = "auto", mixed_precision: bool = False) -> str:
    """Apply the device choice; returns "cpu" or "gpu" (what will be used).

    ``cpu`` hides all GPUs; ``gpu`` fails with one line when none is visible; ``auto`` uses a GPU when
    there is one. ``mixed_precision`` (training) sets the mixed_float16 policy when on a GPU."""
    if device not in DEVICES:
        raise UsageError(f"unknown --device {device!r}; choose one of: {', '.join(DEVICES)}")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu" or (device == "auto" and not gpus):
        if gpus:
            try:
                tf.config.set_visible_devices([], "GPU")
            except RuntimeError as e:  # TensorFlow already initialised its devices
                raise HappysadError(f"--device cpu: too late to hide the GPU ({e})") from None
        return "cpu"
    if not gpus:
        raise HappysadError("--device gpu: TensorFlow sees no GPU (install happysad[gpu] with a CUDA driver, "
                            "or use --device cpu)")
    for g in gpus:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except (RuntimeError, ValueError):
            pass  # already initialised: memory growth can no longer change, which is harmless
    if mixed_precision:
        import keras

        keras.mixed_precision.set_global_policy("mixed_float16")
    return "gpu"
