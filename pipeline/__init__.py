"""mcu-deploy: a model from data to a measured microcontroller deployment.

tfmot only works with Keras 2, so TensorFlow must load tf_keras as its Keras. That choice is read once,
when TensorFlow is first imported, so it is made here, before any module of this package can import it.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
