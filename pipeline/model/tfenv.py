"""Lazy access to TensorFlow, tf_keras and tfmot.

Importing TensorFlow costs seconds, so only the stages that need it call these functions; a rebuild with
nothing to do never imports it.
"""
from __future__ import annotations

import warnings

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# Notices that say nothing about the user's model: the stages save .h5 on purpose (tfmot's QAT layers
# reload from it), and tf.lite.Interpreter is kept as the converter's own reference.
warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save\\(\\)`.*")
warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
warnings.filterwarnings("ignore", message=".*Statistics for quantized inputs were expected.*")


def tf():
    import tensorflow

    return tensorflow


def keras():
    import tf_keras

    return tf_keras


def tfmot():
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def load_model(path):
    """Load a float, pruned or QAT model saved by a stage (QAT layers need tfmot's scope)."""
    with tfmot().quantization.keras.quantize_scope():
        return keras().models.load_model(path, compile=False)


def save_model(model, path) -> None:
    """Save a Keras model as .h5, atomically: HDF5 is written into memory, then the bytes go to a temporary name
    and are renamed. (HDF5 writing straight to a full disk crashes the process; a Python write fails cleanly.)"""
    import io

    import h5py

    from pipeline.cache import write_atomic

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        model.save(f, save_format="h5")
    write_atomic(path, buf.getvalue())
