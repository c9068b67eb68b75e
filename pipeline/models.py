"""The model zoo, built with tf_keras (tfmot needs Keras 2 objects).

Each entry says its input shape, task, classes and bundled dataset (if any), and builds a model scaled by a
width multiplier: the knob that trades accuracy for flash, RAM and latency.
The MLPerf Tiny entries follow the reference architectures of the benchmark's four tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pipeline import tfenv
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    input_shape: tuple[int, ...]
    task: str  # "classification" or "regression"
    num_classes: int | None
    default_data: str | None  # a bundled dataset name, or None when the user must pass --data
    epochs: int
    batch_size: int
    learning_rate: float
    build: Callable[[float], object]
    autoencoder: bool = False
    # Why QAT is skipped for this model (None: QAT works). tfmot folds BatchNormalization into a preceding
    # Conv2D/DepthwiseConv2D but not into Dense; the converted int8 model of Dense+BN then collapses to a
    # constant output (seen: MAE 0.58 vs 0.05 float), while post-training int8 keeps float accuracy.
    qat_unsupported: str | None = None


def _scaled(filters: int, width: float) -> int:
    return max(1, int(round(filters * width)))


def _digits_cnn(width: float):
    k = tfenv.keras()
    L = k.layers
    return k.Sequential([
        L.Input((8, 8, 1)),
        L.Conv2D(_scaled(16, width), 3, padding="same", activation="relu"),
        L.Conv2D(_scaled(32, width), 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(_scaled(64, width), activation="relu"),
        L.Dense(10, activation="softmax"),
    ], name="digits")


def _sine_mlp(width: float):
    k = tfenv.keras()
    L = k.layers
    return k.Sequential([
        L.Input((1,)),
        L.Dense(_scaled(16, width), activation="relu"),
        L.Dense(_scaled(16, width), activation="relu"),
        L.Dense(1),
    ], name="sine")


def _conv_bn_relu(L, x, filters, kernel, strides=1):
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    return L.ReLU()(x)


def _separable_block(L, x, filters, strides=1):
    """Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU (MobileNet's building block)."""
    x = L.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    return _conv_bn_relu(L, x, filters, 1)


def _pooled_classifier(L, x, classes):
    """Average over the whole feature map, then a softmax layer."""
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = L.Flatten()(x)
    return L.Dense(classes, activation="softmax")(x)


def _ds_cnn(width: float):
    """Keyword spotting: a stem conv over 49 MFCC frames x 10 coefficients, four depthwise-separable blocks."""
    k = tfenv.keras()
    L = k.layers
    filters = _scaled(64, width)
    inputs = L.Input((49, 10, 1))
    x = _conv_bn_relu(L, inputs, filters, (10, 4), strides=(2, 2))
    x = L.Dropout(0.2)(x)
    for _ in range(4):
        x = _separable_block(L, x, filters)
    x = L.Dropout(0.4)(x)
    return k.Model(inputs, _pooled_classifier(L, x, 12), name="ds_cnn")


def _mobilenet_v1(width: float):
    """Visual wake words: MobileNetV1 with alpha 0.25 (times --width) on 96x96 RGB, two classes."""
    k = tfenv.keras()
    L = k.layers
    alpha = 0.25 * width
    inputs = L.Input((96, 96, 3))
    x = _conv_bn_relu(L, inputs, _scaled(32, alpha), 3, strides=2)
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for filters, stride in blocks:
        x = _separable_block(L, x, _scaled(filters, alpha), stride)
    return k.Model(inputs, _pooled_classifier(L, x, 2), name="mobilenet_v1")


def _resnet8(width: float):
    """Image classification: ResNet-8 on 32x32 RGB, three residual stacks of 16, 32 and 64 filters."""
    k = tfenv.keras()
    L = k.layers
    reg = k.regularizers.l2(1e-4)
    inputs = L.Input((32, 32, 3))
    x = L.Conv2D(_scaled(16, width), 3, padding="same", kernel_regularizer=reg)(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    for stack, filters in enumerate((16, 32, 64)):
        filters = _scaled(filters, width)
        stride = 1 if stack == 0 else 2
        y = L.Conv2D(filters, 3, strides=stride, padding="same", kernel_regularizer=reg)(x)
        y = L.BatchNormalization()(y)
        y = L.ReLU()(y)
        y = L.Conv2D(filters, 3, padding="same", kernel_regularizer=reg)(y)
        y = L.BatchNormalization()(y)
        if stride != 1:  # the shortcut must change shape with the residual branch
            x = L.Conv2D(filters, 1, strides=stride, padding="same", kernel_regularizer=reg)(x)
        x = L.ReLU()(L.Add()([x, y]))
    return k.Model(inputs, _pooled_classifier(L, x, 10), name="resnet8")


def _autoencoder(width: float):
    """Anomaly detection: a fully connected autoencoder over 640 inputs (5 frames x 128 mel bins)."""
    k = tfenv.keras()
    L = k.layers
    inputs = L.Input((640,))
    x = inputs
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = L.Dense(_scaled(units, width))(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    outputs = L.Dense(640)(x)
    return k.Model(inputs, outputs, name="autoencoder")


ZOO: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("digits", "small CNN on scikit-learn's 8x8 handwritten digits (bundled)", (8, 8, 1),
                  "classification", 10, "digits", 40, 32, 2e-3, _digits_cnn),
        ModelSpec("sine", "TFLM hello-world regression of sin(x) (generated data)", (1,),
                  "regression", None, "sine", 300, 32, 5e-3, _sine_mlp),
        ModelSpec("ds_cnn", "MLPerf Tiny keyword spotting DS-CNN, 49x10x1 MFCC input, 12 classes", (49, 10, 1),
                  "classification", 12, None, 20, 32, 1e-3, _ds_cnn),
        ModelSpec("mobilenet_v1", "MLPerf Tiny visual wake words MobileNetV1 a=0.25, 96x96x3, 2 classes", (96, 96, 3),
                  "classification", 2, None, 20, 32, 1e-3, _mobilenet_v1),
        ModelSpec("resnet8", "MLPerf Tiny image classification ResNet-8, 32x32x3, 10 classes", (32, 32, 3),
                  "classification", 10, None, 20, 32, 1e-3, _resnet8),
        ModelSpec("autoencoder", "MLPerf Tiny anomaly detection FC autoencoder, 640 inputs", (640,),
                  "regression", None, None, 20, 32, 1e-3, _autoencoder, autoencoder=True,
                  qat_unsupported="tfmot does not fold BatchNormalization into Dense layers"),
    )
}


def get_spec(name: str) -> ModelSpec:
    if name not in ZOO:
        raise PipelineError(f"unknown model '{name}': choose one of {', '.join(ZOO)}")
    return ZOO[name]
