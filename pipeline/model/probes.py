"""Probe models for the cost model: small int8 .tflite files made to exercise one kernel code path each.

Two sets, both seeded, with random weights and random representative data (latency depends on the shapes, not on
the values):

- the GRID: single-operator layers chained into a few models, one model per family of kernels (1x1, spatial and
  k x 1 / 1 x k convolutions, depthwise 3x3 and generic, fully connected per-channel and per-tensor, pooling,
  elementwise, softmax, reshape/concat), varying the features the CMSIS-NN and reference kernels branch on: kernel
  size, stride, dilation, padding, channel counts (multiples of 4, 8, 16 and odd), depth multiplier, per-tensor vs
  per-channel weight scales. Each op is large enough (tens of thousands of instructions or more) that the
  profiler's tick (1,000 instructions under QEMU -icount) rounds it by a few percent at most. The cost model is FIT
  on these (pipeline.calibrate);
- HELD_OUT: whole models unlike the zoo, never fitted on, to CHECK the cost model: depthwise kernels k x 1 (k 3 to
  15, as the MLPerf Tiny streaming wake word model has), a fully connected stack with one weight scale per tensor,
  and an inception-like block of concatenated branches.

`make(name, path)` writes one of them through the project's one converter (pipeline.model.convert.quantize).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from pipeline import cache
from pipeline.errors import PipelineError
from pipeline.model import tfenv

REPRESENTATIVE = 16


def _chain(input_shape, layers):
    """Input -> layers in sequence, as a functional model."""
    k = tfenv.keras()
    x = inp = k.Input(shape=input_shape, batch_size=1)
    for layer in layers:
        x = layer(x)
    return k.Model(inp, x)


def _conv(filters, kernel, strides=1, padding="same", dilation=1):
    k = tfenv.keras()
    return k.layers.Conv2D(filters, kernel, strides=strides, padding=padding, dilation_rate=dilation,
                           activation="relu")


def _dw(kernel, strides=1, padding="same", multiplier=1, dilation=1):
    k = tfenv.keras()
    return k.layers.DepthwiseConv2D(kernel, strides=strides, padding=padding, depth_multiplier=multiplier,
                                    dilation_rate=dilation, activation="relu")


# --- the grid -----------------------------------------------------------------------------------------------------

def grid_conv1x1():
    # fast path (stride 1, no padding, input channels % 4 == 0), odd channels, strided 1x1
    return _chain((24, 24, 16), [_conv(32, 1), _conv(16, 1), _conv(20, 1), _conv(13, 1), _conv(24, 1),
                                 _conv(32, 1, strides=2), _conv(64, 1)])


def grid_conv1x1_deep():
    # 1x1 over few positions and many channels (late layers of image models): per-weight costs show
    return _chain((3, 3, 128), [_conv(256, 1), _conv(256, 1), _conv(96, 1), _conv(512, 1), _conv(200, 1)])


def grid_conv3x3():
    # few input channels (first layers), multiples of 8 and 16, odd, valid padding, stride 2, dilation 2
    return _chain((24, 24, 3), [_conv(8, 3), _conv(16, 3), _conv(16, 3, padding="valid"), _conv(11, 3),
                                _conv(24, 3, strides=2), _conv(32, 3, dilation=2), _conv(64, 3),
                                _conv(48, 3, strides=2)])


def grid_conv5x5():
    return _chain((24, 24, 1), [_conv(8, 5), _conv(16, 5, strides=2), _conv(16, (5, 3)), _conv(32, 5)])


def grid_conv_kx1():
    # k x 1 kernels on a time axis (height), then 1 x k on a row input (CMSIS-NN's 1 x N path)
    k = tfenv.keras()
    return _chain((48, 1, 16), [_conv(32, (3, 1)), _conv(32, (7, 1)), _conv(24, (5, 1), strides=(2, 1)),
                                k.layers.Reshape((1, 24, 24)), _conv(32, (1, 3)), _conv(16, (1, 8))])


def grid_dw3x3():
    # the 3x3 fast path (channels % 4 == 0, padding <= 1) and its neighbours: odd channels, stride 2, valid
    return _chain((24, 24, 32), [_dw(3), _dw(3, strides=2), _conv(48, 1), _dw(3), _dw(3, padding="valid"),
                                 _conv(19, 1), _dw(3)])


def grid_dw_generic():
    # depth multiplier 1 and kernels other than 3x3 (arm_depthwise_conv_s8_opt): 5x5, k x 1 and 1 x k, valid
    # padding, odd channels; and depth multiplier 2, dilation 2 (arm_depthwise_conv_s8)
    k = tfenv.keras()
    return _chain((24, 24, 16), [_dw(5), _dw((7, 1)), _dw((1, 5)), _dw(3, multiplier=2), _dw(3, dilation=2),
                                 _dw(5, strides=2), k.layers.Reshape((72, 1, 64)), _dw((9, 1)),
                                 _dw((15, 1), padding="valid"), _conv(21, 1), _dw((5, 1)), _dw((11, 1), padding="valid")])


def grid_conv_strided():
    # 1 x 1 with a stride (arm_convolve_1x1_s8) and 1 x N rows (arm_convolve_1_x_n_s8) of several widths
    k = tfenv.keras()
    return _chain((48, 48, 16), [_conv(32, 1, strides=2), _conv(48, 1, strides=2), _conv(24, 1), _conv(64, 1, strides=2),
                                 k.layers.Reshape((1, 48, 48)), _conv(32, (1, 5)), _conv(16, (1, 3), strides=(1, 2)),
                                 _conv(40, (1, 9)), _conv(20, (1, 4), padding="valid")])


def grid_dw_channels():
    # k x 1 depthwise kernels over many channels (96 to 200, and odd), valid and same padding
    return _chain((40, 1, 128), [_dw((4, 1), padding="valid"), _dw((10, 1), padding="valid"), _conv(200, 1),
                                 _dw((6, 1), padding="valid"), _conv(37, 1), _dw((3, 1)), _conv(96, 1),
                                 _dw((13, 1), padding="valid")])


def grid_dw_multiplier():
    # arm_depthwise_conv_s8: depth multiplier > 1 or dilation
    return _chain((24, 24, 8), [_dw(3, multiplier=4), _dw(5, multiplier=2), _dw(3, dilation=3), _dw((5, 1), dilation=2),
                                _dw(3, strides=2, multiplier=2)])


def _elementwise(shape, classes):
    k = tfenv.keras()
    inp = k.Input(shape=shape, batch_size=1)
    a = _conv(shape[-1], 1)(inp)
    b = _conv(shape[-1], 1)(inp)
    s = k.layers.Add()([a, b])
    m = k.layers.Multiply()([s, b])
    c = k.layers.Concatenate()([m, a, s])
    r = k.layers.Reshape((shape[0] * 2, shape[1] // 2, shape[2] * 3))(c)
    g = k.layers.GlobalAveragePooling2D()(r)
    d = k.layers.Dense(classes)(g)
    return k.Model(inp, _softmax_rows(d, classes))


def _softmax_rows(x, n, row=100):
    """SOFTMAX over n values as rows of at most `row`: TFLM's reference int8 SOFTMAX aborts (a TFLITE_CHECK) when a
    row's exponentials sum to 512 or more, which a row of 512+ near-equal logits (random weights) does."""
    k = tfenv.keras()
    if n > row and n % row == 0:
        x = k.layers.Reshape((n // row, row))(x)
    return k.layers.Softmax()(x)


def grid_mean():
    # MEAN (Keras' global average pooling) over many and few elements
    k = tfenv.keras()
    return _chain((20, 20, 32), [k.layers.GlobalAveragePooling2D(), k.layers.Reshape((4, 4, 2)),
                                 k.layers.GlobalAveragePooling2D(), k.layers.Dense(10), k.layers.Softmax()])


def grid_elementwise_small():
    return _elementwise((8, 8, 16), 200)


def grid_elementwise_large():
    return _elementwise((32, 32, 8), 2000)


def _dense_stack():
    k = tfenv.keras()
    return _chain((640,), [k.layers.Dense(256, activation="relu"), k.layers.Dense(128, activation="relu"),
                           k.layers.Dense(100, activation="relu"), k.layers.Dense(257, activation="relu"),
                           k.layers.Dense(33, activation="relu"), k.layers.Dense(640)])


def grid_fc():
    return _dense_stack()


def grid_fc_per_tensor():
    return _dense_stack()


def grid_pool():
    k = tfenv.keras()
    return _chain((32, 32, 16), [k.layers.MaxPooling2D(2), k.layers.AveragePooling2D(3, strides=1, padding="same"),
                                 k.layers.MaxPooling2D(3, strides=1, padding="same"), _conv(24, 1),
                                 k.layers.AveragePooling2D(2), k.layers.MaxPooling2D(2),
                                 k.layers.AveragePooling2D(4)])


def grid_elementwise():
    k = tfenv.keras()
    inp = k.Input(shape=(16, 16, 32), batch_size=1)
    a = _conv(32, 1)(inp)
    b = _conv(32, 1)(inp)
    s = k.layers.Add()([a, b])
    m = k.layers.Multiply()([s, b])
    c = k.layers.Concatenate()([m, a])
    r = k.layers.Reshape((32, 8, 64))(c)
    g = k.layers.GlobalAveragePooling2D()(r)
    d = k.layers.Dense(1000)(g)
    return k.Model(inp, _softmax_rows(d, 1000))


GRID: dict[str, Callable] = {  # in the order they are timed: the code paths most models use first
    "grid_conv1x1": grid_conv1x1, "grid_conv3x3": grid_conv3x3, "grid_dw3x3": grid_dw3x3,
    "grid_dw_generic": grid_dw_generic, "grid_conv5x5": grid_conv5x5, "grid_conv1x1_deep": grid_conv1x1_deep,
    "grid_dw_channels": grid_dw_channels, "grid_pool": grid_pool, "grid_fc_per_tensor": grid_fc_per_tensor,
    "grid_conv_strided": grid_conv_strided, "grid_fc": grid_fc, "grid_conv_kx1": grid_conv_kx1,
    "grid_dw_multiplier": grid_dw_multiplier, "grid_mean": grid_mean, "grid_elementwise": grid_elementwise,
    "grid_elementwise_large": grid_elementwise_large, "grid_elementwise_small": grid_elementwise_small,
}


# --- held out: models unlike the zoo -----------------------------------------------------------------------------

def held_dw_kx1():
    """Streaming-wake-word-like: 1 x 1 convolutions between depthwise kernels 3..15 x 1 on a time axis."""
    k = tfenv.keras()
    layers = [_conv(48, (5, 1), strides=(2, 1))]
    for kernel in (3, 5, 9, 15, 7):
        layers += [_dw((kernel, 1)), _conv(48, 1)]
    layers += [k.layers.GlobalAveragePooling2D(), k.layers.Dense(12), k.layers.Softmax()]
    return _chain((98, 1, 40), layers)


def held_fc_per_tensor():
    """An anomaly-detection-like autoencoder of dense layers, one weight scale per tensor."""
    k = tfenv.keras()
    sizes = (128, 128, 128, 8, 128, 128, 128)
    return _chain((640,), [k.layers.Dense(n, activation="relu") for n in sizes] + [k.layers.Dense(640)])


def held_concat():
    """Inception-like: branches of 1x1, 3x3, 5x5 and pooling, concatenated, twice, then a classifier."""
    k = tfenv.keras()
    inp = k.Input(shape=(32, 32, 3), batch_size=1)
    x = _conv(16, 3, strides=2)(inp)
    for width in (8, 12):
        b1 = _conv(width, 1)(x)
        b2 = _conv(width, 3)(_conv(width // 2, 1)(x))
        b3 = _conv(width // 2, 5)(_conv(width // 4, 1)(x))
        b4 = _conv(width // 2, 1)(k.layers.MaxPooling2D(3, strides=1, padding="same")(x))
        x = k.layers.Concatenate()([b1, b2, b3, b4])
    x = k.layers.GlobalAveragePooling2D()(x)
    out = k.layers.Softmax()(k.layers.Dense(10)(x))
    return k.Model(inp, out)


HELD_OUT: dict[str, Callable] = {"held_dw_kx1": held_dw_kx1, "held_fc_per_tensor": held_fc_per_tensor,
                                 "held_concat": held_concat}
PER_TENSOR_DENSE = {"grid_fc_per_tensor", "held_fc_per_tensor"}
ALL = {**GRID, **HELD_OUT}


def make(name: str, path: Path, seed: int = 0) -> Path:
    """Build probe `name` (seeded random weights), convert it to int8 and write it to `path`."""
    if name not in ALL:
        raise PipelineError(f"unknown probe model '{name}': choose one of {', '.join(ALL)}")
    from pipeline.model.convert import quantize
    from pipeline.target import tflite_model

    tf = tfenv.tf()
    tf.keras.utils.set_random_seed(seed)
    model = ALL[name]()
    rng = np.random.default_rng(seed)
    shape = (1,) + tuple(model.input_shape[1:])

    def representative():
        for _ in range(REPRESENTATIVE):
            yield [rng.uniform(-1.0, 1.0, shape).astype(np.float32)]

    flatbuffer = quantize(model, representative, "int8", per_tensor_dense=name in PER_TENSOR_DENSE)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.tmp_path(path)
    tmp.write_bytes(flatbuffer)
    try:
        tflite_model.require_full_integer(tflite_model.read(tmp), ("INT8",))
    except PipelineError:
        tmp.unlink()
        raise
    tmp.replace(path)
    return path
