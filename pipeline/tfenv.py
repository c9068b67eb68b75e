"""Lazy access to TensorFlow, tf_keras and tfmot.

Importing TensorFlow costs seconds, so only the stages that need it call these functions; a rebuild with
nothing to do never imports it.
"""
from __future__ import annotations

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


def tf():
    import tensorflow

    return tensorflow


def keras():
    import tf_keras

    return tf_keras


def tfmot():
    import tensorflow_model_optimization

    return tensorflow_model_optimization
