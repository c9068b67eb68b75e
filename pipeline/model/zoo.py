"""The model zoo, built with tf_keras (tfmot needs Keras 2 objects).

Each entry says its input shape, task, classes and bundled dataset (if any), and builds a model scaled by a
width multiplier and a depth (number of blocks): the knobs that trade accuracy for flash, RAM and latency. Its
`search` is the space `invoke explore` samples, declared here as data next to the model.
The MLPerf Tiny entries follow the reference architectures of the benchmark's four tasks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pipeline.model import tfenv
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
    build: Callable[..., object]  # (width, depth[, classes]) -> a Keras model; classes only for classifiers
    default_depth: int = 1
    depth_range: tuple[int, int] = (1, 1)  # the depths the builder accepts
    autoencoder: bool = False
    # Why QAT is skipped for this model (None: QAT works). tfmot folds BatchNormalization into a preceding
    # Conv2D/DepthwiseConv2D but not into Dense; the converted int8 model of Dense+BN then collapses to a
    # constant output (seen: MAE 0.58 vs 0.05 float), while post-training int8 keeps float accuracy.
    qat_unsupported: str | None = None
    # What `invoke explore` searches: width (low, high), depth (low, high), pruning kinds, sparsity (low, high),
    # precisions.
    search: dict = field(default_factory=dict)
    # A user's own model (pipeline.model.user_model): the file it comes from, whether it brings trained weights
    # (fine-tuned, not retrained), the knobs its builder declares, and its training choices.
    source: str | None = None
    pretrained: bool = False
    knobs: tuple[str, ...] = ("width", "depth")
    optimizer: str = "adam"
    loss: str | None = None  # None: sparse categorical cross-entropy for classifiers, MSE for regression
    from_logits: bool = False  # a classifier without a final softmax

    def make(self, width: float, depth: int | None = None, classes: int | None = None):
        """The model at this width and depth; a classifier's output layer has `classes` outputs (the data's
        classes; default num_classes, the benchmark's own)."""
        depth = self.default_depth if depth is None else depth
        low, high = self.depth_range
        if depth is not None and not low <= depth <= high:
            raise PipelineError(f"--depth for {self.name} must be {low} to {high} (got {depth})")
        if self.task == "classification" and not self.source:  # a user's model keeps its own outputs
            return self.build(width, depth, classes=classes or self.num_classes)
        return self.build(width, depth)


def _scaled(filters: int, width: float) -> int:
    return max(1, int(round(filters * width)))


def _digits_cnn(width: float, depth: int = 2, classes: int = 10):
    """depth 3x3 convolutions (16, 32, 32 filters; the last one unpadded), a 2x2 max pool, two dense layers."""
    k = tfenv.keras()
    L = k.layers
    convs = [L.Conv2D(_scaled(16 if i == 0 else 32, width), 3, padding="valid" if i == depth - 1 and depth > 1
                      else "same", activation="relu") for i in range(depth)]
    return k.Sequential([
        L.Input((8, 8, 1)),
        *convs,
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(_scaled(64, width), activation="relu"),
        L.Dense(classes, activation="softmax"),
    ], name="digits")


def _sine_mlp(width: float, depth: int = 2):
    k = tfenv.keras()
    L = k.layers
    hidden = [L.Dense(_scaled(16, width), activation="relu") for _ in range(depth)]
    return k.Sequential([L.Input((1,)), *hidden, L.Dense(1)], name="sine")


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


def _ds_cnn(width: float, depth: int = 4, classes: int = 12):
    """Keyword spotting: a stem conv over 49 MFCC frames x 10 coefficients, `depth` (4) depthwise-separable blocks."""
    k = tfenv.keras()
    L = k.layers
    filters = _scaled(64, width)
    inputs = L.Input((49, 10, 1))
    x = _conv_bn_relu(L, inputs, filters, (10, 4), strides=(2, 2))
    x = L.Dropout(0.2)(x)
    for _ in range(depth):
        x = _separable_block(L, x, filters)
    x = L.Dropout(0.4)(x)
    return k.Model(inputs, _pooled_classifier(L, x, classes), name="ds_cnn")


def _mobilenet_v1(width: float, depth: int = 13, classes: int = 2):
    """Visual wake words: MobileNetV1 with alpha 0.25 (times --width) on 96x96 RGB, two classes; the first `depth`
    (13) separable blocks."""
    k = tfenv.keras()
    L = k.layers
    alpha = 0.25 * width
    inputs = L.Input((96, 96, 3))
    x = _conv_bn_relu(L, inputs, _scaled(32, alpha), 3, strides=2)
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for filters, stride in blocks[:depth]:
        x = _separable_block(L, x, _scaled(filters, alpha), stride)
    return k.Model(inputs, _pooled_classifier(L, x, classes), name="mobilenet_v1")


def _resnet8(width: float, depth: int = 3, classes: int = 10):
    """Image classification: ResNet-8 on 32x32 RGB, `depth` (3) residual stacks of 16, 32 and 64 filters."""
    k = tfenv.keras()
    L = k.layers
    reg = k.regularizers.l2(1e-4)
    inputs = L.Input((32, 32, 3))
    x = L.Conv2D(_scaled(16, width), 3, padding="same", kernel_regularizer=reg)(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    for stack, filters in enumerate((16, 32, 64)[:depth]):
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
    return k.Model(inputs, _pooled_classifier(L, x, classes), name="resnet8")


def _autoencoder(width: float, depth: int = 4):
    """Anomaly detection: a fully connected autoencoder over 640 inputs (5 frames x 128 mel bins), `depth` (4) layers
    of 128 on each side of an 8-unit bottleneck."""
    k = tfenv.keras()
    L = k.layers
    inputs = L.Input((640,))
    x = inputs
    for units in (128,) * depth + (8,) + (128,) * depth:
        x = L.Dense(_scaled(units, width))(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    outputs = L.Dense(640)(x)
    return k.Model(inputs, outputs, name="autoencoder")


SEARCH_SMALL = {"width": (0.25, 2.0), "prune": ("none", "magnitude", "structured"), "sparsity": (0.2, 0.7),
                "precision": ("int8", "int16x8")}

ZOO: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("digits", "small CNN on scikit-learn's 8x8 handwritten digits (bundled)", (8, 8, 1),
                  "classification", 10, "digits", 40, 32, 2e-3, _digits_cnn, 2, (1, 3),
                  search={**SEARCH_SMALL, "depth": (1, 3)}),
        ModelSpec("sine", "TFLM hello-world regression of sin(x) (generated data)", (1,),
                  "regression", None, "sine", 300, 32, 5e-3, _sine_mlp, 2, (1, 4),
                  search={**SEARCH_SMALL, "depth": (1, 4)}),
        ModelSpec("ds_cnn", "MLPerf Tiny keyword spotting DS-CNN, 49x10x1 MFCC input, 12 classes", (49, 10, 1),
                  "classification", 12, None, 20, 32, 1e-3, _ds_cnn, 4, (1, 6),
                  search={**SEARCH_SMALL, "width": (0.25, 1.5), "depth": (1, 6)}),
        ModelSpec("mobilenet_v1", "MLPerf Tiny visual wake words MobileNetV1 a=0.25, 96x96x3, 2 classes", (96, 96, 3),
                  "classification", 2, None, 20, 32, 1e-3, _mobilenet_v1, 13, (1, 13),
                  search={**SEARCH_SMALL, "width": (0.5, 1.5), "depth": (5, 13)}),
        ModelSpec("resnet8", "MLPerf Tiny image classification ResNet-8, 32x32x3, 10 classes", (32, 32, 3),
                  "classification", 10, None, 20, 32, 1e-3, _resnet8, 3, (1, 3),
                  search={**SEARCH_SMALL, "width": (0.25, 1.5), "depth": (1, 3)}),
        ModelSpec("autoencoder", "MLPerf Tiny anomaly detection FC autoencoder, 640 inputs", (640,),
                  "regression", None, None, 20, 32, 1e-3, _autoencoder, 4, (1, 4), autoencoder=True,
                  qat_unsupported="tfmot does not fold BatchNormalization into Dense layers",
                  search={**SEARCH_SMALL, "width": (0.25, 1.5), "depth": (1, 4)}),
    )
}


def get_spec(name: str) -> ModelSpec:
    if name not in ZOO:
        raise PipelineError(f"unknown model '{name}': choose one of {', '.join(ZOO)}")
    return ZOO[name]
