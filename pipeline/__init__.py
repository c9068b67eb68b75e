"""mcu-deploy: a model from data to a measured microcontroller deployment.

tfmot only works with Keras 2, so TensorFlow must load tf_keras as its Keras. That choice is read once,
when TensorFlow is first imported, so it is made here, before any module of this package can import it.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The layout, lowest layer first; a module imports only from its own layer or the ones above it in this list
# (tests/test_layout.py checks it):
#   errors, quiet          the one error type (and Interrupted, Ctrl-C with what was kept); TensorFlow's noise kept
#                          off the console
#   cache                  stage keys, stage locks and atomic writes
#   boards/                board files (data) and the rules they must meet (ESP-IDF partition table)
#   buildfolder            what a build folder holds (its manifest, read only here), names, clean's plan
#   target/                the .tflite on the target: graph, kernels' scratch, arena, memory plan, cost model, profile, fit
#   model/                 TensorFlow side: datasets, zoo, train, prune, QAT, convert, validate
#   firmware/              generated C sources and the framework projects
#   report/                what a build means: findings and budget gates, report.html, a firmware ELF's real sizes
#   build                  the pipeline: stages from data to firmware, keyed in the stage cache
#   hil/                   devices on a serial port: protocol, measure, emulate, flash, history, rigs
#   calibrate              re-measures a cost model under QEMU
#   explore, bench, compare  the workflows built on all of the above
